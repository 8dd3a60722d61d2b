#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ with libFuzzer (no cargo-fuzz needed: nightly rustc with
# sanitizer-coverage flags, as cargo-fuzz sets them). Not part of the test run.
#   scripts/fuzz.sh [RUNS] [TARGET...]      default: 1000000 runs each, every target
# Seeds are committed in fuzz/seeds/<target>/; what libFuzzer finds is kept in fuzz/corpus/<target>/
# (not committed); crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000000}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v veilig-bellen-fuzz)
fi
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR=target/fuzz
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros (as cargo-fuzz does).
triple=$(rustc -vV | sed -n 's/^host: //p')
cargo +nightly build --release --target "$triple" -p veilig-bellen-fuzz "${bins[@]}"
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    echo "== $t: $runs runs"
    "target/fuzz/$triple/release/$t" -runs="$runs" -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" "fuzz/corpus/$t" $( [[ -d fuzz/seeds/$t ]] && echo "fuzz/seeds/$t" ) 2>&1 \
        | grep -E "^(Done|#[0-9]+ +DONE|stat::number_of_executed_units|==|.*(panicked|ERROR|SUMMARY))" || true
done
