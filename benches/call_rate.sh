#!/usr/bin/env bash
# Call-path benchmarks (issues 4 and 13), loopback only, bounded, release build. One command:
#   benches/call_rate.sh                 all four below, in this order
#   benches/call_rate.sh call_rate       or any of them by name (several: separate them by spaces)
#
#   call_rate         the Rust load generator places calls that answer, receive 8 RFC 4733 digits
#                     and hang up (~0.9 s each): calls/s achieved with 0 failed and every call's
#                     digits read, server CPU per call beside the generator's
#                                                    VB_RATE (1000; a list like 1000,1500 runs each),
#                                                    VB_CALLS (10000)
#   call_rate_sipp    the same calls from SIPp, the peer   VB_SIPP_RATE (500), VB_SIPP_CALLS (3000)
#   verified_latency  last digit's end packet -> `verified` event, p50/p90/p99 (SIPp)
#                                                    VB_LATENCY_CALLS (50)
#   concurrency       simultaneous calls from the Rust generator, RTP both ways, the in-band
#                     detector on, each call keying its code as tones at the end: CPU per
#                     call-second while collecting and while waiting (ringback out), socket-buffer
#                     drops per socket, RSS per call
#                                                    VB_CONCURRENT (2000), VB_RAMP_RATE (400),
#                                                    VB_HOLD_S (10), VB_WAIT_S (5),
#                                                    VB_REAL_CODES (= VB_CONCURRENT)
# The harness is tests/call_path_bench.rs (#[ignore]d, so CI never runs it); the server runs in the
# harness process, the Rust generator (tests/support/loadgen.rs) on threads of its own.
# Needs: cargo; sipp (Debian sip-tester) for call_rate_sipp and verified_latency, which are skipped
# without it. SIPp plays pcaps with raw sockets: root or CAP_NET_RAW.
# Other load on the machine skews every figure: each BENCH line starts with the load average, and
# CPU is reported per call or per call-second, the peer's (generator, SIPp) beside ours.
set -euo pipefail
cd "$(dirname "$0")/.."
# Two sockets per call at most; the generator raises its soft limit itself up to this.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo test --release -p veilig-bellen --test call_path_bench --no-run >/dev/null 2>&1 ||
    cargo test --release -p veilig-bellen --test call_path_bench --no-run
benches=${*:-call_rate call_rate_sipp verified_latency concurrency}
for bench in $benches; do
    case $bench in
    call_rate_sipp | verified_latency)
        if ! command -v sipp >/dev/null; then
            echo "call_rate: $bench skipped: sipp not found (Debian sip-tester)" >&2
            continue
        fi
        ;;
    esac
    cargo test --release -q -p veilig-bellen --test call_path_bench -- --ignored --nocapture --exact "$bench" \
        2>&1 | grep -E '^BENCH|panicked|FAILED|sipp errors|assertion' || true
done
