#!/usr/bin/env bash
# Instructions per message for `benches/sip_parse.rs`'s mix (INVITE+SDP, 200 OK+SDP, REGISTER with
# digest, OPTIONS), ours beside rsip 0.4 and ezk-sip-types 0.6, counted by callgrind: unlike time, the
# count is the same on a busy machine and from run to run. Each routine runs twice (ROUNDS and
# 3 × ROUNDS rounds of the four messages) and the difference is divided by the extra messages, so
# start-up and the bench's own set-up cancel out.
#
# Needs: cargo, valgrind. Usage: sip/benches/sip_parse_instructions.sh   (ROUNDS=n, default 1000)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "sip_parse_instructions: valgrind not found" >&2; exit 1; }

ROUNDS=${ROUNDS:-1000}
bin=$(cargo bench -p sip --bench sip_parse --locked --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*sip_parse[^"]*\)".*/\1/p' | tail -1)
[ -n "$bin" ] || { echo "sip_parse_instructions: bench did not build" >&2; exit 1; }

count() { # <implementation>/<routine> <rounds> -> instructions
    SIP_PARSE_REPEAT="$1:$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

per_message() { # <implementation>/<routine> -> instructions per message
    local a b
    a=$(count "$1" "$ROUNDS")
    b=$(count "$1" $((3 * ROUNDS)))
    echo $(((b - a) / (8 * ROUNDS)))
}

printf '%-20s %14s %10s %16s %10s\n' "instructions/msg" "parse" "ours ×" "parse + typed" "ours ×"
ours_p=$(per_message "ours/parse")
ours_t=$(per_message "ours/parse_typed")
for impl in "ours" "rsip 0.4" "ezk-sip-types 0.6"; do
    if [ "$impl" = ours ]; then p=$ours_p t=$ours_t; else
        p=$(per_message "$impl/parse")
        t=$(per_message "$impl/parse_typed")
    fi
    printf '%-20s %14s %10s %16s %10s\n' "$impl" "$p" "$(echo "scale=1; $p / $ours_p" | bc)" \
        "$t" "$(echo "scale=1; $t / $ours_t" | bc)"
done
