#!/usr/bin/env bash
# Call-path benchmarks of issue 4, loopback only, bounded (release build):
#   call_rate         calls that answer, receive 8 RFC 4733 digits and hang up: calls/s with 0 failed
#                     (target >= 300/s on 2 cores)            VB_RATE (300), VB_CALLS (3000)
#   concurrency       simultaneous calls with RTP both ways and the in-band detector on, each call keying
#                     its code as tones at the end: calls up, codes read, CPU and RSS per call, server vs
#                     generator (target >= 2000)               VB_CONCURRENT (2000), VB_RAMP_RATE (400),
#                                                              VB_HOLD_S (10), VB_WAIT_S (5),
#                                                              VB_REAL_CODES (= VB_CONCURRENT)
#   verified_latency  last digit's end packet -> `verified` event, p50/p90/p99 (target p99 <= 50 ms)
#                                                              VB_LATENCY_CALLS (50)
# The harness is tests/call_path_bench.rs (#[ignore]d, so CI never runs it): the server runs in the
# harness process; call_rate and verified_latency use SIPp to play pcaps (needs raw-socket permission:
# root or CAP_NET_RAW), concurrency a Rust trunk on its own threads (tests/support/loadgen.rs).
# Pick one with: benches/call_rate.sh [call_rate|concurrency|verified_latency]
# Needs: cargo, sipp (Debian sip-tester). Raise `ulimit -n` for large VB_CONCURRENT (2 sockets per call).
# The machine's other load skews the figures: each BENCH line starts with the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sipp >/dev/null || { echo "call_rate: sipp not found (Debian sip-tester)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo test --release -p veilig-bellen --test call_path_bench --no-run >/dev/null 2>&1 || \
    cargo test --release -p veilig-bellen --test call_path_bench --no-run
for bench in ${1:-call_rate verified_latency concurrency}; do
    cargo test --release -q -p veilig-bellen --test call_path_bench -- --ignored --nocapture --exact "$bench" \
        2>&1 | grep -E '^BENCH|panicked|FAILED|sipp errors' || true
done
