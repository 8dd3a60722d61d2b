#!/usr/bin/env bash
# DTMF detection speed: our detector (`veilig-bellen dtmf`, release build) against spandsp's dtmf_rx
# (Debian libspandsp-dev), on the same ONE HOUR of 8 kHz s16le audio made with sox: white noise with
# 8-digit link codes (80 ms tone, 80 ms pause, each tone −10 dBFS-ish) every 10 s, 2880 digits in all.
# Both programs read the same raw file; each is timed best of 3 (warm page cache) and
# must find exactly the digits that were put in. Prints ns/sample, × real time and the ratio, by wall
# clock and by CPU time (user + system; steadier on a shared machine). ROUNDS=n for best of n.
#
# Needs: cargo, cc, pkg-config, sox, bc, libspandsp-dev. Work files go to $WORK (default: a fresh temp dir, removed
# on exit unless KEEP=1; ~60 MB). The binary is built in $CARGO_TARGET_DIR (default: target). Usage:
# benches/dtmf_vs_spandsp.sh
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cc pkg-config sox bc cargo; do
    command -v "$tool" >/dev/null || { echo "dtmf_vs_spandsp: $tool not found" >&2; exit 1; }
done
pkg-config --exists spandsp || { echo "dtmf_vs_spandsp: libspandsp-dev not installed" >&2; exit 1; }

WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
trap 'if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; fi' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

# --- the spandsp harness ---------------------------------------------------------------------------
cat >"$WORK/spandsp_dtmf.c" <<'EOF'
/* Feed an 8 kHz s16le file to spandsp's DTMF receiver, print the digits it reports. */
#include <stdio.h>
#include <stdint.h>
#include <spandsp.h>

static void on_digits(void *user, const char *digits, int len) {
    (void) user;
    fwrite(digits, 1, (size_t) len, stdout);
}

int main(int argc, char **argv) {
    FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
    if (!f) { fprintf(stderr, "usage: spandsp_dtmf FILE.s16le\n"); return 2; }
    dtmf_rx_state_t *rx = dtmf_rx_init(NULL, on_digits, NULL);
    static int16_t buf[8192];
    size_t n;
    while ((n = fread(buf, sizeof buf[0], sizeof buf / sizeof buf[0], f)) > 0)
        dtmf_rx(rx, buf, (int) n);
    dtmf_rx_free(rx);
    fclose(f);
    putchar('\n');
    return 0;
}
EOF
# shellcheck disable=SC2046 # pkg-config output is meant to split into words
cc -O2 -o "$WORK/spandsp_dtmf" "$WORK/spandsp_dtmf.c" $(pkg-config --cflags --libs spandsp)

# VEILIG_BELLEN=path times another build (an older detector, for before/after figures in one run).
if [ -n "${VEILIG_BELLEN:-}" ]; then
    OURS=$VEILIG_BELLEN
else
    cargo build --release --quiet --locked --bin veilig-bellen
    OURS="$CARGO_TARGET_DIR/release/veilig-bellen"
fi

# --- one hour of audio ---------------------------------------------------------------------------
declare -A ROW=([1]=697 [2]=697 [3]=697 [A]=697 [4]=770 [5]=770 [6]=770 [B]=770
                [7]=852 [8]=852 [9]=852 [C]=852 ['*']=941 [0]=941 ['#']=941 [D]=941)
declare -A COL=([1]=1209 [4]=1209 [7]=1209 ['*']=1209 [2]=1336 [5]=1336 [8]=1336 [0]=1336
                [3]=1477 [6]=1477 [9]=1477 ['#']=1477 [A]=1633 [B]=1633 [C]=1633 [D]=1633)
FMT=(-r 8000 -c 1 -b 16 -e signed-integer)
CODES=(31415926 27182818 05551234 90210#*7 ABCD0123 86753090)

sox -n "${FMT[@]}" "$WORK/gap.wav" trim 0 0.08
sox -n "${FMT[@]}" "$WORK/lead.wav" trim 0 1
sox -n "${FMT[@]}" "$WORK/fill.wav" trim 0 10
for key in "${!ROW[@]}"; do
    name=$(printf '%s' "$key" | od -An -tx1 | tr -d ' ')
    sox -n "${FMT[@]}" "$WORK/key_$name.wav" synth 0.08 sine "${ROW[$key]}" sine mix "${COL[$key]}" gain -8
done
expected=""
units=()
for i in "${!CODES[@]}"; do
    parts=("$WORK/lead.wav")
    code=${CODES[$i]}
    for ((j = 0; j < ${#code}; j++)); do
        name=$(printf '%s' "${code:j:1}" | od -An -tx1 | tr -d ' ')
        parts+=("$WORK/key_$name.wav" "$WORK/gap.wav")
    done
    # Fill every slot with silence and cut it to exactly 10 s.
    sox "${parts[@]}" "$WORK/fill.wav" "$WORK/slot_$i.wav" trim 0 10
    units+=("$WORK/slot_$i.wav")
    expected+=$code
done
sox "${units[@]}" "$WORK/minute_clean.wav"
sox -n "${FMT[@]}" "$WORK/noise.wav" synth 60 whitenoise gain -40
sox -m -v 1 "$WORK/minute_clean.wav" -v 1 "$WORK/noise.wav" "$WORK/minute.wav"
sox "$WORK/minute.wav" -t raw "$WORK/hour.s16le" repeat 59
expected=$(for _ in $(seq 60); do printf '%s' "$expected"; done)
samples=$(($(stat -c %s "$WORK/hour.s16le") / 2))
echo "audio: $samples samples ($((samples / 8000)) s), ${#expected} digits"

# --- timing --------------------------------------------------------------------------------------
# Prints "best-wall best-cpu" in seconds over ROUNDS runs (default 3; CPU = user + system, which a
# busy machine does not inflate the way it does wall time); the command's stdout goes to $WORK/out.
best_of() {
    local best_wall="" best_cpu="" wall cpu TIMEFORMAT='%R %U %S'
    for _ in $(seq "${ROUNDS:-3}"); do
        read -r wall user sys < <({ time "$@" >"$WORK/out"; } 2>&1)
        cpu=$(echo "$user + $sys" | bc -l)
        if [ -z "$best_wall" ] || [ "$(echo "$wall < $best_wall" | bc -l)" = 1 ]; then best_wall=$wall; fi
        if [ -z "$best_cpu" ] || [ "$(echo "$cpu < $best_cpu" | bc -l)" = 1 ]; then best_cpu=$cpu; fi
    done
    echo "$best_wall $best_cpu"
}

read -r t_ours c_ours < <(best_of "$OURS" dtmf --format s16le "$WORK/hour.s16le")
got_ours=$(cut -f1 "$WORK/out" | tr -d '\n')
read -r t_span c_span < <(best_of "$WORK/spandsp_dtmf" "$WORK/hour.s16le")
got_span=$(tr -d '\n' <"$WORK/out")

status=0
check() {
    if [ "$2" = "$expected" ]; then
        echo "$1: all ${#expected} digits found"
    else
        echo "$1: WRONG DIGITS: found ${#2}, expected ${#expected}" >&2
        status=1
    fi
}
check "veilig-bellen" "$got_ours"
check "spandsp      " "$got_span"

report() {
    awk -v n="$1" -v t="$2" -v c="$3" -v s="$samples" 'BEGIN {
        printf "%s wall %7.3f s  %6.2f ns/sample  %8.0f x real time;  cpu %7.3f s  %6.2f ns/sample\n",
            n, t, t * 1e9 / s, s / 8000 / t, c, c * 1e9 / s }'
}
report "veilig-bellen" "$t_ours" "$c_ours"
report "spandsp      " "$t_span" "$c_span"
awk -v a="$t_ours" -v b="$t_span" -v c="$c_ours" -v d="$c_span" 'BEGIN {
    printf "ratio: spandsp takes %.2f x the wall time of veilig-bellen, %.2f x its cpu time\n", b / a, d / c }'
exit $status
