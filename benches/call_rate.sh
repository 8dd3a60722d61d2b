#!/usr/bin/env bash
# Call-path benchmarks of issue 4, SIPp-driven, loopback only, bounded (release build):
#   call_rate         calls that answer, receive 8 RFC 4733 digits and hang up: calls/s with 0 failed
#                     (target >= 300/s on 2 cores)            VB_RATE (300), VB_CALLS (3000)
#   concurrency       simultaneous calls with RTP both ways and the in-band detector on: CPU and memory
#                     per call (target >= 2000)                VB_CONCURRENT (2000), VB_RAMP_RATE (250)
#   verified_latency  last digit's end packet -> `verified` event, p50/p90/p99 (target p99 <= 50 ms)
#                                                              VB_LATENCY_CALLS (50)
# The harness is tests/call_path_bench.rs (#[ignore]d, so CI never runs it): the server runs in the
# harness process, SIPp plays the pcaps (needs raw-socket permission: root or CAP_NET_RAW).
# Pick one with: benches/call_rate.sh [call_rate|concurrency|verified_latency]
# Needs: cargo, sipp (Debian sip-tester). Raise `ulimit -n` for large VB_CONCURRENT (2 sockets per call).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sipp >/dev/null || { echo "call_rate: sipp not found (Debian sip-tester)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo test --release -p veilig-bellen --test call_path_bench --no-run >/dev/null 2>&1 || \
    cargo test --release -p veilig-bellen --test call_path_bench --no-run
for bench in ${1:-call_rate verified_latency concurrency}; do
    cargo test --release -q -p veilig-bellen --test call_path_bench -- --ignored --nocapture --exact "$bench" \
        2>&1 | grep -E '^BENCH|panicked|FAILED|sipp errors' || true
done
