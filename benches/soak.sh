#!/usr/bin/env bash
# Soak bench of issue 11 (not in CI): the release binary's `demo` on loopback takes a bounded stream
# of mixed calls for SOAK_SECONDS while its memory, file descriptors and sockets are sampled; at the
# end each resource is judged "flat" or "GROWING" and the exit code is 1 if anything grew.
#
#   benches/soak.sh [SECONDS]            (default SOAK_SECONDS or 3600; runs itself at nice 10)
#
# Load, all at once and all on loopback (about 1.1 calls/s, about 10 calls up at a time):
#   verified  a fresh link code per call, as a citizen gets it: POST /api/v1/sessions (from a
#             rotating 127.0.1.x source, so the public API's per-client limit is not what is
#             measured), the IRMA simulator discloses, GET .../status; then one sipp (-m 1) keys the
#             code as RFC 4733 digits from a pcap made for that code and hangs up after
#             SOAK_HOLD_MS.                                    one every SOAK_VERIFIED_EVERY s (2.5)
#   wrong     one long sipp keying an 8-digit code nobody holds, callers from a pool of 192
#             numbers plus one persistent guesser that gets blocked.  SOAK_WRONG_RATE calls/s (0.4)
#   no code   one long sipp sending PCMA silence only, staying on SOAK_NOCODE_HOLD_MS (15000): we
#             hang up on it (first-digit timeout) or it does.   SOAK_NOCODE_RATE calls/s (0.3)
#   scanner   SOAK_SCAN_RATE messages/s (5) from 127.0.0.2-9 (the demo takes every loopback address
#             as a trunk, so these come from "trunk" addresses): OPTIONS, REGISTER without and with
#             wrong credentials, INVITEs never ACKed or CANCELled, garbage, stray responses,
#             oversized and truncated messages, half-open TCP connections, junk HTTP requests;
#             SIPVicious svmap every 5 min if found (optional: $VB_SIPVICIOUS_VENV/bin,
#             /tmp/svv/bin, PATH).
#   agent     one agents' event stream (GET /api/v1/calls/events), as an open portal keeps.
#             SOAK_LIST_EVERY=N also lists the calls every N s, as a portal reload does (0: never).
# Sampled every SOAK_SAMPLE s (30) into target/soak/soak-<timestamp>.csv: the server's VmRSS,
# open fds, threads, UDP and TCP sockets (ss), live calls and counters from /metrics, the data
# directory's size. After load, SOAK_DRAIN s (75) without load and one last sample: live calls must
# be back to 0, sockets and fds near the idle baseline.
# Verdict per resource, on the samples after SOAK_WARMUP s (SOAK_SECONDS/6, at most 600): the mean
# of the last quarter against the mean of the second quarter; more than SOAK_GROWTH_PCT % (10) plus
# a small absolute slack is GROWING.
# Ports (SOAK_PORT_BASE, 61000): SIP +60, HTTP +80, RTP +1000..+1999, sipp above +2000 — outside
# the kernel's ephemeral range and the integration tests' ports (tests/support/ports.rs).
# Needs: cargo (or SOAK_BIN), sipp (Debian sip-tester) with raw-socket permission for pcap play
# (root or CAP_NET_RAW), curl, jq, python3, ss. Logs and the CSV stay in target/soak/.
set -euo pipefail
# The whole script is one block, read before it runs: editing the file during an hour's soak cannot
# change the run.
{
cd "$(dirname "$0")/.."
renice -n "${SOAK_NICE:-10}" -p $$ >/dev/null 2>&1 || true

SECONDS_TOTAL=${1:-${SOAK_SECONDS:-3600}}
SAMPLE=${SOAK_SAMPLE:-30}
WARMUP=${SOAK_WARMUP:-$((SECONDS_TOTAL / 6 < 600 ? SECONDS_TOTAL / 6 : 600))}
DRAIN=${SOAK_DRAIN:-75}
VERIFIED_EVERY=${SOAK_VERIFIED_EVERY:-2.5}
WRONG_RATE=${SOAK_WRONG_RATE:-0.4}
NOCODE_RATE=${SOAK_NOCODE_RATE:-0.3}
HOLD_MS=${SOAK_HOLD_MS:-3000}
NOCODE_HOLD_MS=${SOAK_NOCODE_HOLD_MS:-15000}
SCAN_RATE=${SOAK_SCAN_RATE:-5}
LIST_EVERY=${SOAK_LIST_EVERY:-0}
GROWTH_PCT=${SOAK_GROWTH_PCT:-10}
BASE=${SOAK_PORT_BASE:-61000}
SIP_PORT=$((BASE + 60))
HTTP_PORT=$((BASE + 80))
RTP_PORTS="$((BASE + 1000))-$((BASE + 1999))"
WRONG_SIPP_PORT=$((BASE + 2000))
NOCODE_SIPP_PORT=$((BASE + 2010))
SVMAP_PORT=$((BASE + 2020))
VERIFIED_PORTS=$((BASE + 2100)) # 150 slots of 8 ports
TENANT_NUMBER=+31850000000
HTTP="127.0.0.1:$HTTP_PORT"
TOKEN="soak-api-token-$RANDOM$RANDOM"

for tool in sipp curl jq python3 ss; do
    command -v "$tool" >/dev/null || { echo "soak: $tool not found" >&2; exit 2; }
done
if [[ $(id -u) -ne 0 ]] && ! capsh --print 2>/dev/null | grep -q cap_net_raw; then
    echo "soak: sipp needs raw-socket permission to play pcaps (root or CAP_NET_RAW)" >&2
    exit 2
fi
ulimit -n 4096 2>/dev/null || true

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=target/soak
mkdir -p "$OUT"
CSV="$OUT/soak-$STAMP.csv"
SERVER_LOG="$OUT/soak-$STAMP.server.log"
RUN=$(mktemp -d "${TMPDIR:-/tmp}/vb-soak.XXXXXX")
DATA="$RUN/data"
mkdir -p "$RUN/verified" "$RUN/wrong" "$RUN/nocode"
mkdir -m 700 "$DATA"

BIN=${SOAK_BIN:-}
if [[ -z $BIN ]]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
    cargo build --release -q --bin veilig-bellen
    BIN="$CARGO_TARGET_DIR/release/veilig-bellen"
fi

SERVER_PID=
WORKERS=()
SLEEPER=
# Sleeps in the background: a signal's trap runs at once, not after the sleep.
pause() { sleep "$1" & SLEEPER=$!; wait "$SLEEPER" || true; }
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +m # no "Terminated" notices for the jobs ended here
    [[ -n $SLEEPER ]] && kill "$SLEEPER" 2>/dev/null || true
    for pid in "${WORKERS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || true # the worker's process group: its sipp, curl too
    done
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -INT "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    if [[ ${SOAK_KEEP:-0} == 1 ]]; then
        echo "soak: kept $RUN"
    else
        rm -rf "$RUN"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Job control: every background job gets a process group of its own, so cleanup can end a worker
# with everything it started (and Ctrl-C reaches only this script, which then cleans up).
set -m

# --- helpers in python: RFC 4733 pcaps per code, the scanner ------------------------------------
cat >"$RUN/soak_tools.py" <<'PY'
"""benches/soak.sh helpers: `pcap CODE OUT [SILENCE_MS]` and `scan ...`."""
import collections, http.client, json, os, random, shutil, signal, socket, struct, subprocess, sys, time

def call_rtp(code, silence_ms):
    """A phone's RTP as tests/support/pcap.rs writes it (DtmfPcapConfig::default): PCMA silence
    every 20 ms, per digit RFC 4733 updates every 50 ms (marker on the first) and three end
    packets, all with the digit's one timestamp; 400 ms lead-in and tail, 120 ms digits and gaps."""
    ssrc, seq, ts0, out, talk = random.getrandbits(32), [1000], 16000, [], [True]
    def ts_at(us): return (ts0 + us * 8 // 1000) & 0xFFFFFFFF
    def push(at, pt, ts, marker, payload):
        out.append((at, struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq[0] & 0xFFFF, ts, ssrc) + payload))
        seq[0] += 1
    def audio(start, length):
        t = start
        while t < start + length:
            marker, talk[0] = talk[0], False
            push(t, 8, ts_at(t), marker, b"\xd5" * 160)
            t += 20000
        return start + length
    if not code:
        audio(0, silence_ms * 1000)
        return out
    now = audio(0, 400000)
    for i, ch in enumerate(code):
        event, stamp, total, at = int(ch), ts_at(now), 960, 0
        while at * 8 // 1000 < total:
            push(now + at, 101, stamp, at == 0, struct.pack("!BBH", event, 10, at * 8 // 1000))
            at += 50000
        for _ in range(3):
            push(now + 120000, 101, stamp, False, struct.pack("!BBH", event, 0x80 | 10, total))
        now += 120000
        talk[0] = True
        now = audio(now, 400000 if i == len(code) - 1 else 120000)
    return out

def checksum(header):
    s = sum(struct.unpack("!10H", header))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def to_pcap(packets):
    """libpcap 2.4, Ethernet/IPv4/UDP, 127.0.0.1:6000 -> :10000 (sipp rewrites the ports)."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for n, (at, rtp) in enumerate(packets):
        udp = struct.pack("!HHHH", 6000, 10000, 8 + len(rtp), 0) + rtp
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0x4000, 64, 17, 0,
                                   bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])))
        ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
        frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + bytes(ip) + udp
        out += struct.pack("<IIII", 1_700_000_000 + at // 1_000_000, at % 1_000_000, len(frame), len(frame)) + frame
    return bytes(out)

def scan(host, sip_port, http_port, rate, seconds, stats_path, svmap_port):
    """A scanner: SIP junk over UDP and TCP and HTTP junk, `rate` messages/s for `seconds`."""
    sources = ["127.0.0.%d" % i for i in range(2, 10)]
    socks = []
    for src in sources:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.setblocking(False)
        socks.append(s)
    counts = collections.Counter()
    def save(*_):
        with open(stats_path, "w") as f:
            json.dump(dict(sorted(counts.items())), f, indent=1)
        sys.exit(0)
    signal.signal(signal.SIGTERM, save)
    rnd = random.Random()
    tcp_open = []  # (socket, close at)
    svmap = None
    for d in (os.environ.get("VB_SIPVICIOUS_VENV", "") + "/bin", "/tmp/svv/bin"):
        if os.access(d + "/sipvicious_svmap", os.X_OK):
            svmap = d + "/sipvicious_svmap"
            break
    svmap = svmap or shutil.which("sipvicious_svmap")
    next_svmap = time.time() + 60

    def sip(method, sock, ruri, extra="", body="", branch=None, callid=None, cseq=1):
        src, sport = sock.getsockname()
        branch = branch or "z9hG4bK%x" % rnd.getrandbits(48)
        callid = callid or "%x@scan" % rnd.getrandbits(64)
        msg = (f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{sport};branch={branch};rport\r\n"
               f"From: \"scanner\" <sip:100@{src}>;tag={rnd.getrandbits(32):x}\r\nTo: <{ruri}>\r\n"
               f"Call-ID: {callid}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
               f"Contact: <sip:100@{src}:{sport}>\r\nUser-Agent: friendly-scanner\r\n{extra}"
               f"Content-Length: {len(body)}\r\n\r\n{body}")
        sock.sendto(msg.encode(), (host, sip_port))
        return branch, callid

    def sdp(sock):
        src = sock.getsockname()[0]
        return (f"v=0\r\no=- 1 1 IN IP4 {src}\r\ns=-\r\nc=IN IP4 {src}\r\nt=0 0\r\n"
                f"m=audio {rnd.randrange(40000, 50000, 2)} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
                "a=rtpmap:101 telephone-event/8000\r\n")

    pending_cancel = []
    kinds = [("options", 30), ("register", 15), ("register_badauth", 10), ("invite_noack", 2),
             ("invite_cancel", 2), ("invite_nosdp", 1), ("garbage", 10), ("truncated", 5),
             ("stray_response", 5), ("oversized", 2), ("bad_length", 3), ("tcp", 5), ("http", 7)]
    names, weights = zip(*kinds)
    deadline = time.time() + seconds
    tick = time.time()
    while time.time() < deadline:
        for s in socks:
            while True:
                try:
                    data = s.recv(65535)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                first = data.split(b"\r\n", 1)[0].split(b" ")
                if first[0] == b"SIP/2.0" and len(first) > 1:
                    counts["reply " + first[1].decode(errors="replace")] += 1
                else:
                    counts["request " + first[0].decode(errors="replace")[:16]] += 1
        now = time.time()
        for (s, at, ruri, branch, callid) in [p for p in pending_cancel if p[1] <= now]:
            sip("CANCEL", s, ruri, branch=branch, callid=callid)
            counts["sent CANCEL"] += 1
        pending_cancel = [p for p in pending_cancel if p[1] > now]
        for entry in [t for t in tcp_open if t[1] <= now]:
            entry[0].close()
        tcp_open = [t for t in tcp_open if t[1] > now]
        if svmap and now >= next_svmap:
            next_svmap = now + 300
            try:
                subprocess.run([svmap, "-b", "127.0.0.9", "-P", str(svmap_port), "-p", str(sip_port), host],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
                counts["svmap runs"] += 1
            except subprocess.TimeoutExpired:
                counts["svmap timeouts"] += 1
        kind = rnd.choices(names, weights)[0]
        sock = rnd.choice(socks)
        user = rnd.choice(["100", "101", "1000", "admin", "test", "+31850000000", str(rnd.randrange(10**6))])
        ruri = f"sip:{user}@{host}:{sip_port}"
        try:
            if kind == "options":
                sip("OPTIONS", sock, ruri)
            elif kind == "register":
                sip("REGISTER", sock, f"sip:{host}:{sip_port}")
            elif kind == "register_badauth":
                sip("REGISTER", sock, f"sip:{host}:{sip_port}", extra=(
                    f'Authorization: Digest username="{user}", realm="veilig-bellen", nonce="{rnd.getrandbits(64):x}", '
                    f'uri="sip:{host}", response="{rnd.getrandbits(128):032x}", algorithm=MD5\r\n'))
            elif kind in ("invite_noack", "invite_cancel"):
                branch, callid = sip("INVITE", sock, ruri, extra="Content-Type: application/sdp\r\n", body=sdp(sock))
                if kind == "invite_cancel":
                    pending_cancel.append((sock, now + rnd.uniform(0.05, 2.0), ruri, branch, callid))
            elif kind == "invite_nosdp":
                sip("INVITE", sock, ruri)
            elif kind == "garbage":
                sock.sendto(os.urandom(rnd.randrange(1, 1400)), (host, sip_port))
            elif kind == "truncated":
                sock.sendto(b"INVITE sip:100@%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2;bran" % host.encode(), (host, sip_port))
            elif kind == "stray_response":
                src, sport = sock.getsockname()
                sock.sendto((f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {host}:{sip_port};branch=z9hG4bK{rnd.getrandbits(40):x}\r\n"
                             f"From: <sip:a@{host}>;tag=1\r\nTo: <sip:b@{src}>;tag=2\r\nCall-ID: {rnd.getrandbits(64):x}\r\n"
                             "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode(), (host, sip_port))
            elif kind == "oversized":
                sip("OPTIONS", sock, ruri, extra="X-Junk: " + "A" * rnd.randrange(4000, 60000) + "\r\n")
            elif kind == "bad_length":
                sip("MESSAGE", sock, ruri, extra="Content-Length: 99999\r\n", body="hi")
            elif kind == "tcp":
                t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                t.bind((sock.getsockname()[0], 0))
                t.settimeout(1)
                t.connect((host, sip_port))
                t.setblocking(False)
                if rnd.random() < 0.5:
                    t.send(b"OPTIONS sip:100@%s SIP/2.0\r\nVia: SIP/2.0/TCP x;branch=z9hG4bK1\r\n" % host.encode())
                if len(tcp_open) < 8:
                    tcp_open.append((t, now + rnd.uniform(0, 10)))
                else:
                    t.close()
            elif kind == "http":
                src = "127.0.2.%d" % rnd.randrange(1, 255)
                c = http.client.HTTPConnection(host, http_port, timeout=5, source_address=(src, 0))
                method, path, body = rnd.choice([
                    ("GET", "/wp-login.php", None), ("GET", "/.env", None),
                    ("POST", "/api/v1/sessions", "{bad json"), ("POST", "/api/v1/sessions", '{"tenant":"nope"}'),
                    ("GET", "/api/v1/sessions/%x/status" % rnd.getrandbits(64), None),
                    ("GET", "/api/v1/calls", None), ("POST", "/irma-sim/session/nope/disclose", "{}")])
                c.request(method, path, body=body, headers={"Content-Type": "application/json"})
                counts["http %d" % c.getresponse().status] += 1
                c.close()
            counts["sent " + kind] += 1
        except OSError as e:
            counts["error %s %s" % (kind, type(e).__name__)] += 1
        tick += 1.0 / rate
        time.sleep(max(0.0, tick - time.time()))
    save()

if __name__ == "__main__":
    if sys.argv[1] == "pcap":
        silence = int(sys.argv[4]) if len(sys.argv) > 4 else 3000
        with open(sys.argv[3], "wb") as f:
            f.write(to_pcap(call_rtp(sys.argv[2], silence)))
    elif sys.argv[1] == "scan":
        scan(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]),
             sys.argv[7], int(sys.argv[8]))
PY
tools() { python3 "$RUN/soak_tools.py" "$@"; }

# --- the server --------------------------------------------------------------------------------
"$BIN" --log-format json demo --sip "127.0.0.1:$SIP_PORT" --http "$HTTP" --rtp-ports "$RTP_PORTS" \
    --data "$DATA" --api-token "$TOKEN" --agent-password "soak-agent-pw" \
    >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    curl -sf -o /dev/null "http://$HTTP/healthz" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "soak: the server did not start:" >&2; tail -20 "$SERVER_LOG" >&2; exit 1; }
    sleep 0.2
done
echo "soak: server pid $SERVER_PID, sip 127.0.0.1:$SIP_PORT, http $HTTP, ${SECONDS_TOTAL}s of load," \
    "samples every ${SAMPLE}s after a ${WARMUP}s warm-up; CSV $CSV"

# --- sampling ----------------------------------------------------------------------------------
START=$(date +%s)
COLUMNS_CSV="time,elapsed_s,phase,rss_kb,fds,threads,udp_sockets,tcp_sockets,calls_active,calls_started,calls_ended,verified,wrong_codes,numbers_blocked,data_kb,load1"
echo "$COLUMNS_CSV" >"$CSV"
metric() { # NAME [LABEL-FILTER]: the sum of matching series in $METRICS
    awk -v name="$1" -v filter="${2:-}" '
        $1 ~ ("^" name "([{]|$)") && (filter == "" || index($1, filter)) { sum += $2; seen = 1 }
        END { printf "%d", seen ? sum : 0 }' <<<"$METRICS"
}
sample() { # PHASE
    local now rss fds threads udp tcp
    now=$(date +%s)
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status")
    threads=$(awk '/^Threads:/ { print $2 }' "/proc/$SERVER_PID/status")
    fds=$(find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    udp=$(ss -uapnH 2>/dev/null | grep -c "pid=$SERVER_PID," || true)
    tcp=$(ss -tapnH 2>/dev/null | grep -c "pid=$SERVER_PID," || true)
    METRICS=$(curl -s --max-time 10 "http://$HTTP/metrics" || true)
    echo "$now,$((now - START)),$1,$rss,$fds,$threads,$udp,$tcp,$(metric veilig_bellen_calls_active)," \
        "$(metric veilig_bellen_calls_started_total),$(metric veilig_bellen_calls_ended_total)," \
        "$(metric veilig_bellen_calls_ended_total 'outcome="verified"'),$(metric veilig_bellen_wrong_codes_total)," \
        "$(metric veilig_bellen_calling_numbers_blocked_total),$(du -sk "$DATA" | cut -f1)," \
        "$(cut -d' ' -f1 /proc/loadavg)" | tr -d ' ' >>"$CSV"
}
sample idle

# --- load --------------------------------------------------------------------------------------
END=$((START + SECONDS_TOTAL))
random_code() { printf '%08d' $(((RANDOM * 32768 + RANDOM) % 100000000)); }

# Verified: one citizen every VERIFIED_EVERY s; each result a line in verified/results.
verified_call() { # N
    local n=$1 src="127.0.1.$(($1 % 200 + 1))" dir="$RUN/verified/$1" slot=$(($1 % 150)) session ct token code
    mkdir -p "$dir"
    if ! session=$(curl -sf --max-time 10 --interface "$src" -H 'content-type: application/json' \
        -d '{"tenant":"demo"}' "http://$HTTP/api/v1/sessions"); then
        echo "session_refused" >>"$RUN/verified/results"; rm -rf "$dir"; return
    fi
    token=$(jq -r .token <<<"$session")
    ct=$(jq -r .sessionPtr.u <<<"$session"); ct=${ct##*/}
    code=$(curl -sf --max-time 10 -H 'content-type: application/json' -d '{"attributes":{}}' \
        "http://$HTTP/irma-sim/session/$ct/disclose" | jq -r .clientReturnUrl) || code=
    code=${code#tel:"$TENANT_NUMBER",}
    curl -sf --max-time 10 --interface "$src" -o /dev/null "http://$HTTP/api/v1/sessions/$token/status?wait=5" || true
    if [[ ! $code =~ ^[0-9]{8}$ ]]; then
        echo "disclosure_failed" >>"$RUN/verified/results"; rm -rf "$dir"; return
    fi
    tools pcap "$code" "$dir/call.pcap"
    printf 'SEQUENTIAL\n+3161%07d\n' "$n" >"$dir/caller.csv"
    cd "$dir"
    sipp "127.0.0.1:$SIP_PORT" -sf "$SCENARIO" -inf caller.csv -s "$TENANT_NUMBER" \
        -i 127.0.0.1 -p $((VERIFIED_PORTS + slot * 8)) -mp $((VERIFIED_PORTS + slot * 8 + 4)) \
        -m 1 -d "$HOLD_MS" -timeout 60s -timeout_error -nostdin -trace_err -error_file errors.log \
        >/dev/null 2>sipp.stderr &
    if wait $!; then
        echo "call_ok" >>"$RUN/verified/results"; rm -rf "$dir"
    else
        echo "call_failed" >>"$RUN/verified/results"
    fi
}
verified_worker() {
    local n=0
    while (($(date +%s) < END)); do
        n=$((n + 1))
        verified_call "$n" &
        sleep "$VERIFIED_EVERY"
    done
    wait
}

# Wrong codes and no code: one sipp each at a steady rate, bounded by count and time.
long_sipp() { # DIR PORT RATE HOLD_MS
    local dir=$1 count
    count=$(awk -v r="$3" -v s="$SECONDS_TOTAL" 'BEGIN { printf "%d", r * s }')
    ((count > 0)) || return 0
    cd "$dir"
    exec sipp "127.0.0.1:$SIP_PORT" -sf "$SCENARIO" -inf callers.csv -s "$TENANT_NUMBER" \
        -i 127.0.0.1 -p "$2" -mp $(($2 + 4)) -r "$3" -rp 1000 -m "$count" -l 200 -d "$4" \
        -timeout $((SECONDS_TOTAL + 120))s -nostdin -trace_stat -stf stat.csv -fd 10 \
        -trace_err -error_file errors.log -trace_screen -screen_file screen.log >/dev/null 2>sipp.stderr
}
SCENARIO="$PWD/fixtures/sipp/soak_trunk_call.xml"
WRONG_CODE=$(random_code)
tools pcap "$WRONG_CODE" "$RUN/wrong/call.pcap"
tools pcap "" "$RUN/nocode/call.pcap" 3000
{
    echo SEQUENTIAL
    for i in $(seq 0 191); do
        ((i % 4 == 0)) && echo "+31612345678" # the persistent guesser, blocked after 5
        printf '+3162%07d\n' $((i * 7919))
    done
} >"$RUN/wrong/callers.csv"
{ echo SEQUENTIAL; for i in $(seq 0 99); do printf '+3163%07d\n' "$i"; done; } >"$RUN/nocode/callers.csv"

verified_worker &
WORKERS+=($!)
(long_sipp "$RUN/wrong" "$WRONG_SIPP_PORT" "$WRONG_RATE" "$HOLD_MS") &
WORKERS+=($!)
(long_sipp "$RUN/nocode" "$NOCODE_SIPP_PORT" "$NOCODE_RATE" "$NOCODE_HOLD_MS") &
WORKERS+=($!)
tools scan 127.0.0.1 "$SIP_PORT" "$HTTP_PORT" "$SCAN_RATE" "$SECONDS_TOTAL" "$RUN/scan.json" "$SVMAP_PORT" \
    2>"$RUN/scan.stderr" &
WORKERS+=($!)
(while (($(date +%s) < END)); do
    curl -sN --max-time $((END - $(date +%s) + 1)) -H "Authorization: Bearer $TOKEN" \
        "http://$HTTP/api/v1/calls/events" >/dev/null 2>&1 || sleep 1
done) &
WORKERS+=($!)
if ((LIST_EVERY > 0)); then
    (while (($(date +%s) < END)); do
        curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "http://$HTTP/api/v1/calls"
        sleep "$LIST_EVERY"
    done) &
    WORKERS+=($!)
fi

next=$((START + SAMPLE))
while (($(date +%s) < END)); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "soak: the server died; see $SERVER_LOG" >&2; exit 1; }
    pause $((next - $(date +%s) > 0 ? next - $(date +%s) : 0))
    sample load
    next=$((next + SAMPLE))
    last=$(tail -1 "$CSV")
    echo "soak: $(cut -d, -f2 <<<"$last")s rss=$(cut -d, -f4 <<<"$last")kB fds=$(cut -d, -f5 <<<"$last")" \
        "udp=$(cut -d, -f7 <<<"$last") calls=$(cut -d, -f9 <<<"$last") started=$(cut -d, -f10 <<<"$last")"
done

# --- drain, last sample ------------------------------------------------------------------------
echo "soak: load time over; waiting for the last calls (at most $((NOCODE_HOLD_MS / 1000 + 60))s), then ${DRAIN}s idle"
deadline=$(($(date +%s) + NOCODE_HOLD_MS / 1000 + 60))
for pid in "${WORKERS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && (($(date +%s) < deadline)); do pause 1; done
    kill -TERM -- "-$pid" 2>/dev/null || true
done
wait "${WORKERS[@]}" 2>/dev/null || true
WORKERS=()
pause "$DRAIN"
sample drained
METRICS_FINAL=$METRICS
ss -tuapn 2>/dev/null | grep "pid=$SERVER_PID," >"$OUT/soak-$STAMP.sockets-drained.txt" || true

# --- summary -----------------------------------------------------------------------------------
sipp_stat() { # DIR COLUMN: the last value of a sipp -trace_stat column
    [[ -f $1/stat.csv ]] || { echo 0; return; }
    awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        c { v = $c } END { print v + 0 }' "$1/stat.csv"
}
count() { grep -cx "$1" "$RUN/verified/results" 2>/dev/null || true; }
echo
echo "== soak $STAMP: ${SECONDS_TOTAL}s of load, warm-up ${WARMUP}s, samples every ${SAMPLE}s ($CSV)"
printf 'calls placed by the trunk (scanner INVITEs not included): verified %d ok / %d failed (sessions refused %d, disclosures failed %d);\n' \
    "$(count call_ok)" "$(count call_failed)" "$(count session_refused)" "$(count disclosure_failed)"
for s in wrong nocode; do
    printf '  %-6s sipp: %d created, %d successful, %d failed\n' "$s" \
        "$(sipp_stat "$RUN/$s" 'TotalCallCreated')" "$(sipp_stat "$RUN/$s" 'SuccessfulCall(C)')" \
        "$(sipp_stat "$RUN/$s" 'FailedCall(C)')"
done
echo "server counters (/metrics):"
grep -E '^veilig_bellen_(calls_(started|ended|active)|code_lookups|wrong_codes|calling_numbers_blocked|sip_registrations|sip_unknown_source|sip_events_shed|sip_connections_refused|rtp_packets_lost)' \
    <<<"$METRICS_FINAL" | sed 's/^/  /'
echo "scanner: $(jq -c . "$RUN/scan.json" 2>/dev/null || echo 'no stats')"
echo "server log: $(grep -c '"level":"ERROR"' "$SERVER_LOG" || true) ERROR, $(grep -c '"level":"WARN"' "$SERVER_LOG" || true) WARN," \
    "$(grep -c 'panicked' "$SERVER_LOG" || true) panics ($SERVER_LOG); warnings and errors by message:"
jq -rR 'fromjson? | select(.level == "WARN" or .level == "ERROR") | "\(.level) \(.fields.message)"' "$SERVER_LOG" |
    sort | uniq -c | sort -rn | head -10 | sed 's/^/  /'
echo "data directory: $(awk -F, '$3 == "idle" { print $15 }' "$CSV") kB idle, $(tail -1 "$CSV" | cut -d, -f15) kB" \
    "at the end (link rows are kept links.forget_after, 24 h: it grows by design)"
for f in "$RUN"/verified/*/errors.log "$RUN"/wrong/errors.log "$RUN"/nocode/errors.log; do
    # SIPp 3.6 notes where it found call.pcap in every error log; only other lines count.
    grep -v -e 'prefers looking for pcap files' -e '^The following events occurred:$' -e '^$' "$f" 2>/dev/null |
        head -5 >"$RUN/errors.head" || true
    [[ -s $RUN/errors.head ]] || continue
    echo "sipp errors in ${f#"$RUN"/} (first lines):"
    sed 's/^/  /' "$RUN/errors.head"
    break
done
echo
awk -F, -v warmup="$WARMUP" -v pct="$GROWTH_PCT" '
    NR == 1 { next }
    $3 == "idle" { for (i = 4; i <= 9; i++) idle[i] = $i; next }
    $3 == "drained" { for (i = 4; i <= 9; i++) drained[i] = $i; next }
    $2 >= warmup { n++; t[n] = $2; for (i = 4; i <= 9; i++) v[n, i] = $i }
    END {
        split("rss_kb fds threads udp_sockets tcp_sockets calls_active", name, " ")
        split("2048 10 4 10 5 5", slack, " ")
        printf "%-13s %8s %8s %8s %8s %9s %9s %8s %8s  %s\n", "resource", "idle", "first", "last", "max", "mean Q2", "mean Q4", "slope/h", "drained", "verdict"
        bad = 0
        for (k = 1; k <= 6; k++) {
            i = k + 3; max = 0; q2 = 0; q4 = 0; n2 = 0; n4 = 0
            for (j = 1; j <= n; j++) {
                if (v[j, i] > max) max = v[j, i]
                if (j > n / 4 && j <= n / 2) { q2 += v[j, i]; n2++ }
                if (j > 3 * n / 4) { q4 += v[j, i]; n4++ }
            }
            # Least-squares slope over the samples after warm-up, per hour: for reading, not judged.
            st = sv = stt = stv = 0
            for (j = 1; j <= n; j++) { st += t[j]; sv += v[j, i]; stt += t[j] * t[j]; stv += t[j] * v[j, i] }
            slope = (n > 1 && n * stt - st * st) ? (n * stv - st * sv) / (n * stt - st * st) * 3600 : 0
            if (n2 == 0 || n4 == 0 || n < 8) { verdict = "too few samples"; q2m = q4m = 0 }
            else {
                q2m = q2 / n2; q4m = q4 / n4
                verdict = (q4m > q2m * (1 + pct / 100) + slack[k]) ? "GROWING" : "flat"
                # Memory rising steadily, too slowly for the quarters of a short run but enough to
                # pass the limit within an hour: noted, not judged (the other columns are too noisy).
                if (name[k] == "rss_kb" && verdict == "flat" && slope > q2m * pct / 100 + slack[k])
                    verdict = "flat (trend up: over the limit within an hour)"
            }
            # After the drain nothing may be left over: no call up, sockets and fds back near idle.
            if (name[k] == "calls_active" && drained[i] > 0) verdict = verdict ", NOT DRAINED"
            if ((name[k] == "udp_sockets" || name[k] == "fds" || name[k] == "tcp_sockets") && drained[i] > idle[i] + slack[k])
                verdict = verdict ", NOT DRAINED"
            if (verdict ~ /GROWING|NOT DRAINED/) bad = 1
            printf "%-13s %8d %8d %8d %8d %9.1f %9.1f %8.1f %8d  %s\n", name[k], idle[i], v[1, i], v[n, i], max, q2m, q4m, slope, drained[i], verdict
        }
        exit bad
    }' "$CSV" && verdict=0 || verdict=1
if ((verdict)); then
    echo "soak: something grew or was left over (exit 1)"
else
    echo "soak: flat"
fi
exit "$verdict"
}
