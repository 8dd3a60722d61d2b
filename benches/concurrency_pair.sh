#!/usr/bin/env bash
# Concurrency, this tree against another commit, both at the same time (issue 13). One command:
#   benches/concurrency_pair.sh <commit>          e.g. benches/concurrency_pair.sh HEAD~3
#
# Run one after the other, the same binary's CPU per call-second moves by ± 12 % on a shared VM
# (other tenants, the host's caches): more than most changes to the media path. Here the two
# builds run the `concurrency` bench side by side, VB_CONCURRENT/2 calls each (1,000 by default),
# each with its own server and load generator in its own process, so whatever the machine does
# meanwhile falls on both. Each round prints both builds' CPU per call-second in the two phases
# and the ratio this/other; the last line the ratios over all rounds.
#   VB_CONCURRENT (2000, split over the two), VB_ROUNDS (3); other VB_* knobs of the concurrency
#   bench (benches/call_rate.sh) pass through.
# The other commit is built in a git worktree under target/pair-<commit>, into a target dir of
# its own, target/pair-target (the first run builds the dependencies there once). Not into this
# tree's: cargo tells a workspace's own crates apart by their path relative to the workspace,
# the same in both trees, so with the same Cargo.lock the two builds would be one artifact — the
# last one built — and the pair would compare a build with itself. For the same reason the
# workspace's crates are cleaned there before each build (else a build of another commit could
# find the last one's crates up to date).
set -euo pipefail
cd "$(dirname "$0")/.."
other=${1:?usage: benches/concurrency_pair.sh <commit>}
rev=$(git rev-parse --short "$other")
rounds=${VB_ROUNDS:-3}
half=$(((${VB_CONCURRENT:-2000} + 1) / 2))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

bench_binary() { # <source dir> <target dir>: builds the bench there, prints the binary's path
    (cd "$1" && CARGO_TARGET_DIR=$2 cargo test --release -p veilig-bellen --test call_path_bench \
        --no-run --message-format=json 2>/dev/null) |
        sed -n 's/.*"executable":"\([^"]*call_path_bench[^"]*\)".*/\1/p' | tail -1
}

here=$(bench_binary . "$PWD/target")
tree=target/pair-$rev
[ -d "$tree" ] || git worktree add --detach "$tree" "$rev" >/dev/null
for crate in $(cargo metadata --no-deps --format-version 1 | grep -o '"name":"[^"]*","version"' |
    sed 's/"name":"\([^"]*\)".*/\1/' | sort -u); do
    (cd "$tree" && CARGO_TARGET_DIR=$PWD/../pair-target cargo clean -q --release -p "$crate" 2>/dev/null) || true
done
there=$(bench_binary "$tree" "$PWD/target/pair-target")
[ -x "$here" ] && [ -x "$there" ] || { echo "concurrency_pair: a build failed" >&2; exit 1; }
if cmp -s "$here" "$there"; then
    echo "concurrency_pair: both builds are the same binary ($here); is $rev this tree?" >&2
    exit 1
fi

out=$(mktemp -d)
figure() { # <file> <phase>: CPU µs per call-second of the phase
    grep '^BENCH' "$1" | grep -o "$2 ([^)]*): server [0-9]*% of a core = [0-9]* µs" | grep -o '[0-9]* µs$' | grep -o '[0-9]*'
}
ratios=()
for round in $(seq 1 "$rounds"); do
    VB_CONCURRENT=$half "$here" --ignored --nocapture --exact concurrency >"$out/here" 2>&1 &
    VB_CONCURRENT=$half "$there" --ignored --nocapture --exact concurrency >"$out/there" 2>&1 &
    wait
    line="round $round ($half calls each):"
    for phase in collecting waiting; do
        a=$(figure "$out/here" "$phase") b=$(figure "$out/there" "$phase")
        if [ -z "$a" ] || [ -z "$b" ]; then
            echo "concurrency_pair: no $phase figure; the bench said:" >&2
            grep -E '^BENCH|panicked' "$out/here" "$out/there" >&2 || true
            exit 1
        fi
        r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')
        ratios+=("$phase $r")
        line+=" $phase this $a µs, $rev $b µs ($r×);"
    done
    echo "BENCH concurrency_pair $line"
done
printf '%s\n' "${ratios[@]}" | awk '{ s[$1] = s[$1] " " $2 } END { for (p in s) printf "BENCH concurrency_pair %s this/%s:%s\n", p, "'"$rev"'", s[p] }'
rm -rf "$out"
