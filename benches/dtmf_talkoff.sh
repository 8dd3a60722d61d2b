#!/usr/bin/env bash
# DTMF talk-off: how many digits does the in-band detector (and spandsp's dtmf_rx beside it) find in
# hours of audio that holds no digit? All material is made here, nothing is downloaded:
#
# * speech: espeak-ng reading a long text (the GPL-3 from /usr/share/common-licenses, cut into ~1,500
#   character chunks, each opened by a phone phrase such as "hallo? hoort u mij?") in Dutch, English,
#   German and French, with voice variants, speeds 100–260 words/min, pitches 10–95, and levels from
#   −30 dBFS to clipped (+8 dB over full scale); telephone band-limited for part of it;
# * babble: the speech hour mixed with itself at other offsets, two and four talkers at once;
# * music: sox-synthesised chords and runs of 1–4 equal-tempered notes (pluck, sawtooth, square,
#   trapezium, and sines with harmonics), with glides, at several levels;
# * every kind again after an A-law, a µ-law and an AMR-NB 4.75 kbit/s round trip (sox).
#
# Prints false digits per kind and codec, and per hour, for both detectors, and how many of the 50
# link codes of the AMR-NB round trip test (tests/dtmf_real_audio.rs) ours still reads fully
# correct after AMR-NB 4.75 kbit/s (the dsp example dtmf_amr_codes), so that the cost of the
# guards shows beside what they buy. Work files go to $WORK
# (default: a fresh temp dir, removed on exit unless KEEP=1; ~1 GB for the default ~2.5 h of speech).
# SCALE=0.25 makes a quarter of the material for a quick look; TEXT=file and SEED=n make other
# material (held out from what the thresholds were tuned on). REUSE=1 with a kept WORK scans the
# material an earlier run made there (same TEXT, SEED, SCALE) instead of making it again.
# BEFORE=path adds a column for another build of the dsp example dtmf_scan (an older detector), so
# before/after figures come from one run on the same material. Every false digit of ours is listed
# at the end with its time (all of them in $WORK/ours.tsv).
#
# Needs: cargo, cc, pkg-config, sox (with amr-nb, Debian libsox-fmt-all), espeak-ng, libspandsp-dev.
# Usage: benches/dtmf_talkoff.sh
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cc pkg-config sox espeak-ng cargo awk; do
    command -v "$tool" >/dev/null || { echo "dtmf_talkoff: $tool not found" >&2; exit 1; }
done
pkg-config --exists spandsp || { echo "dtmf_talkoff: libspandsp-dev not installed" >&2; exit 1; }
TEXT=${TEXT:-/usr/share/common-licenses/GPL-3}
SEED=${SEED:-4733}
[ -r "$TEXT" ] || { echo "dtmf_talkoff: $TEXT not found" >&2; exit 1; }

WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
trap 'if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; fi' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
SCALE=${SCALE:-1}
JOBS=$(nproc)
export SEED
RAW=(-t raw -r 8000 -c 1 -b 16 -e signed-integer)
export WORK

# --- the detectors -------------------------------------------------------------------------------
cat >"$WORK/spandsp_scan.c" <<'EOF'
/* Count the digits spandsp's DTMF receiver reports in each 8 kHz s16le file. */
#include <stdio.h>
#include <stdint.h>
#include <spandsp.h>

static long found;
static void on_digits(void *user, const char *digits, int len) { (void) user; (void) digits; found += len; }

int main(int argc, char **argv) {
    static int16_t buf[160];
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) { perror(argv[i]); return 2; }
        dtmf_rx_state_t *rx = dtmf_rx_init(NULL, on_digits, NULL);
        size_t n;
        found = 0;
        while ((n = fread(buf, sizeof buf[0], sizeof buf / sizeof buf[0], f)) > 0)
            dtmf_rx(rx, buf, (int) n);
        dtmf_rx_free(rx);
        fclose(f);
        printf("%s\t%ld\n", argv[i], found);
    }
    return 0;
}
EOF
# shellcheck disable=SC2046 # pkg-config output is meant to split into words
cc -O2 -o "$WORK/spandsp_scan" "$WORK/spandsp_scan.c" $(pkg-config --cflags --libs spandsp)
# DTMF_SCAN=path runs another build of the scanner (an older detector, for before/after figures).
if [ -n "${DTMF_SCAN:-}" ]; then
    OURS=$DTMF_SCAN
else
    cargo build --release --quiet --locked -p dsp --example dtmf_scan
    OURS="$CARGO_TARGET_DIR/release/examples/dtmf_scan"
fi
cargo build --release --quiet --locked -p dsp --example dtmf_amr_codes
AMR_CODES="$CARGO_TARGET_DIR/release/examples/dtmf_amr_codes"

# Making the material; REUSE=1 skips it where an earlier run finished it ($WORK/made).
if [ -n "${REUSE:-}" ] && [ -f "$WORK/made" ]; then
    echo "dtmf_talkoff: reusing the material in $WORK" >&2
else
    rm -f "$WORK/made"
    # --- speech --------------------------------------------------------------------------------------
    mkdir -p "$WORK/seg"
    # One job per text chunk: index, voice, words/min, pitch, level. Levels: norm to −1/−10/−20/−30 dBFS,
    # "clip" = norm −1 then +8 dB (hard clipping, as an overdriven handset). "band" = telephone band 300–3400 Hz.
    awk -v n="$(awk -v RS= '{ c = c " " $0 } length(c) > 1500 { k++; c = "" } END { print k + (c != "") }' "$TEXT")" \
        -v scale="$SCALE" 'BEGIN {
        # Four rounds (scale 1), one per language; each reads every chunk (every 1/scale-th with scale < 1).
        split("nl nl+f2 nl+m3 nl+f4|en-us en+f3 en+m2 en+f4|de de+f2 de+m4 de+m1|fr fr+f1 fr+m3 fr+f4", lang, "|")
        ns = split("100 130 150 170 190 220 260", speed, " ")
        np = split("10 30 45 55 70 85 95", pitch, " ")
        nl = split("-1 -10 -20 -30 clip -6 -15", level, " ")
        nb = split("flat band flat", band, " ")
        step = scale < 1 ? int(1 / scale + 0.5) : 1
        for (r = 0; r < 4; r++) {
            nv = split(lang[r + 1], voice, " ")
            for (i = r % step; i < n; i += step) {
                j = r * n + i
                printf "%d %s %s %s %s %s %d\n", j, voice[i % nv + 1], speed[(j * 5) % ns + 1],
                    pitch[(j * 3) % np + 1], level[(j * 11) % nl + 1], band[(j * 7) % nb + 1], i
            }
        }
    }' >"$WORK/jobs"

    awk -v RS= '{ gsub(/[ \t\n]+/, " "); chunk = chunk " " $0 } length(chunk) > 1500 { print chunk; chunk = "" }
        END { if (chunk != "") print chunk }' "$TEXT" >"$WORK/chunks"

    speak() { # index voice wpm pitch level band chunk
        local i=$1 voice=$2 wpm=$3 pitch=$4 level=$5 band=$6 chunk=$7 lang phrase gain
        lang=${voice%%+*}
        case "$lang" in
            nl) phrase="Hallo? Hallo, hoort u mij? Ja, met wie spreek ik? Een ogenblik alstublieft." ;;
            de) phrase="Hallo? Hallo, hören Sie mich? Ja, wer spricht da? Einen Moment bitte." ;;
            fr) phrase="Allô? Allô, vous m'entendez? Oui, qui est à l'appareil? Un instant s'il vous plaît." ;;
            *) phrase="Hello? Hello, can you hear me? Yes, who is speaking? One moment please." ;;
        esac
        sed -n "$((chunk + 1))p" "$WORK/chunks" | { printf '%s ' "$phrase"; cat; } >"$WORK/seg/$i.txt"
        espeak-ng -v "$voice" -s "$wpm" -p "$pitch" -f "$WORK/seg/$i.txt" -w "$WORK/seg/$i.wav"
        if [ "$level" = clip ]; then gain=(norm -1 gain 8); else gain=(norm "$level"); fi
        if [ "$band" = band ]; then gain=(sinc 300-3400 "${gain[@]}"); fi
        sox -V1 "$WORK/seg/$i.wav" -t raw -r 8000 -c 1 -b 16 -e signed-integer "$WORK/seg/$i.s16le" \
            rate 8000 "${gain[@]}"
        rm -f "$WORK/seg/$i.wav" "$WORK/seg/$i.txt"
    }
    export -f speak
    xargs -P "$JOBS" -L 1 bash -c 'speak "$@"' _ <"$WORK/jobs"
    # Concatenate in job order.
    awk '{ print ENVIRON["WORK"] "/seg/" $1 ".s16le" }' "$WORK/jobs" | xargs cat >"$WORK/speech.s16le"
    rm -rf "$WORK/seg"

    secs() { echo $(($(stat -c %s "$1") / 16000)); }
    speech_s=$(secs "$WORK/speech.s16le")

    # --- babble: the speech mixed with itself, two and four talkers ------------------------------------
    part=$((speech_s / 8))
    # sox -m cannot offset inputs itself: cut the parts first.
    for k in 0 1 2 3; do
        sox -V1 "${RAW[@]}" "$WORK/speech.s16le" "${RAW[@]}" "$WORK/cut$k.s16le" trim $((k * part * 2)) "$part"
    done
    sox -V1 -m "${RAW[@]}" "$WORK/cut0.s16le" "${RAW[@]}" "$WORK/cut1.s16le" "${RAW[@]}" "$WORK/cut2.s16le" \
        "${RAW[@]}" "$WORK/cut3.s16le" "${RAW[@]}" "$WORK/babble4.s16le" norm -12
    sox -V1 -m "${RAW[@]}" "$WORK/cut1.s16le" "${RAW[@]}" "$WORK/cut3.s16le" "${RAW[@]}" "$WORK/babble2.s16le" norm -6
    cat "$WORK/babble2.s16le" "$WORK/babble4.s16le" >"$WORK/babble.s16le"
    rm -f "$WORK"/cut?.s16le "$WORK/babble2.s16le" "$WORK/babble4.s16le"

    # --- music ---------------------------------------------------------------------------------------
    mkdir -p "$WORK/notes"
    awk -v n="$(awk -v s="$SCALE" 'BEGIN { print int(2400 * s) }')" 'BEGIN {
        srand(ENVIRON["SEED"] + 0)  # + 0: mawk ignores a seed given as a string
        nt = split("pluck sawtooth square trapezium harm pluck sawtooth", timbre, " ")
        for (i = 0; i < n; i++) {
            notes = 1 + int(rand() * 4); len = 0.08 + rand() * 0.6; t = timbre[1 + int(rand() * nt)]
            line = i " " len " " t " " (-1 - int(rand() * 25))
            for (k = 0; k < notes; k++) {
                semis = int(rand() * 40) - 9            # C4 … E7, around the DTMF band
                f = 440 * 2 ^ (semis / 12)
                glide = rand() < 0.2 ? f * (1 + (rand() - 0.5) * 0.06) : f
                line = line " " sprintf("%.2f:%.2f", f, glide)
            }
            print line
        }
    }' >"$WORK/notes.txt"
    note() { # index length timbre level f:f…
        local i=$1 len=$2 timbre=$3 level=$4 args=() f mix=()
        shift 4
        for f in "$@"; do
            local a=${f%%:*} b=${f##*:}
            local spec=$a
            if [ "$a" != "$b" ] && [ "$timbre" != pluck ]; then spec="$a-$b"; fi  # pluck cannot glide
            # Every generator after the first mixes into the one channel.
            if [ "$timbre" = harm ]; then
                # A sine with its octave as loud (sox gives every generator full scale).
                args+=(sine "${mix[@]}" "$spec" sine mix "$(awk -v x="$a" 'BEGIN { print 2 * x }')")
            else
                args+=("$timbre" "${mix[@]}" "$spec")
            fi
            mix=(mix)
        done
        sox -V1 -n -r 8000 -c 1 -b 16 -e signed-integer -t raw "$WORK/notes/$i.s16le" \
            synth "$len" "${args[@]}" fade 0.005 "$len" 0.02 norm "$level"
    }
    export -f note
    xargs -P "$JOBS" -L 1 bash -c 'note "$@"' _ <"$WORK/notes.txt" 2>/dev/null || true
    for order in 1 2 3; do
        awk '{ print ENVIRON["WORK"] "/notes/" $1 ".s16le" }' "$WORK/notes.txt" |
            awk -v seed="$order" 'BEGIN { srand(seed + 0) } { print rand() "\t" $0 }' | sort -k1,1 | cut -f2 |
            while read -r f; do if [ -f "$f" ]; then cat "$f"; fi; done
    done >"$WORK/music.s16le"
    rm -rf "$WORK/notes"

    # --- codecs --------------------------------------------------------------------------------------
    for kind in speech babble music; do
        src="$WORK/$kind.s16le"
        sox -V1 "${RAW[@]}" "$src" -t raw -e a-law -b 8 - |
            sox -V1 -t raw -r 8000 -c 1 -e a-law -b 8 - "${RAW[@]}" "$WORK/$kind.alaw.s16le" &
        sox -V1 "${RAW[@]}" "$src" -t raw -e mu-law -b 8 - |
            sox -V1 -t raw -r 8000 -c 1 -e mu-law -b 8 - "${RAW[@]}" "$WORK/$kind.ulaw.s16le" &
        wait
    done
    if sox -h 2>&1 | grep -q 'amr-nb'; then
        for kind in speech babble music; do
            sox -V1 "${RAW[@]}" "$WORK/$kind.s16le" -C 0 -t amr-nb "$WORK/$kind.amr" &
        done
        wait
        for kind in speech babble music; do
            sox -V1 -t amr-nb "$WORK/$kind.amr" "${RAW[@]}" "$WORK/$kind.amr475.s16le" && rm -f "$WORK/$kind.amr" &
        done
        wait
    else
        echo "dtmf_talkoff: sox has no AMR-NB, skipping that codec" >&2
    fi
    touch "$WORK/made"
fi

# --- scan ----------------------------------------------------------------------------------------
files=()
for kind in speech babble music; do
    for codec in "" .alaw .ulaw .amr475; do
        [ -f "$WORK/$kind$codec.s16le" ] && files+=("$WORK/$kind$codec.s16le")
    done
done
"$OURS" "${files[@]}" >"$WORK/ours.tsv" 2>/dev/null
"$WORK/spandsp_scan" "${files[@]}" >"$WORK/spandsp.tsv"
if [ -n "${BEFORE:-}" ]; then
    "$BEFORE" "${files[@]}" >"$WORK/before.tsv" 2>/dev/null
else
    : >"$WORK/before.tsv"
fi
[ -n "${KEEP:-}" ] && echo "work files and the digits found (ours.tsv: file, digit, start s, end s) in $WORK"

# One line per file: name, hours, ours, spandsp, before; then totals and rates by kind (speech and
# babble together, music) and overall.
for f in "${files[@]}"; do
    awk -F'\t' -v f="$f" -v b="$(stat -c %s "$f")" -v name="$(basename "$f" .s16le)" \
        'FILENAME ~ /ours.tsv$/ && $1 == f { o++ }
         FILENAME ~ /spandsp.tsv$/ && $1 == f { s = $2 }
         FILENAME ~ /before.tsv$/ && $1 == f { p++ }
         END { printf "%s\t%.4f\t%d\t%d\t%d\n", name, b / 16000 / 3600, o, s, p }' \
        "$WORK/ours.tsv" "$WORK/spandsp.tsv" "$WORK/before.tsv"
done | awk -F'\t' -v before="${BEFORE:+1}" '
    function row(n, h, o, s, p) {
        printf "%-22s %8.2f %14s %10s", n, h, o (h > 0 ? sprintf(" %5.2f/h", o / h) : ""), s
        if (before) printf " %14s", p (h > 0 ? sprintf(" %5.2f/h", p / h) : "")
        printf "\n"
    }
    BEGIN {
        printf "%-22s %8s %14s %10s", "material", "hours", "veilig-bellen", "spandsp"
        if (before) printf " %14s", "before"
        printf "\n"
    }
    {
        row($1, $2, $3, $4, $5)
        k = ($1 ~ /^music/) ? "music" : "speech+babble"
        h[k] += $2; o[k] += $3; s[k] += $4; p[k] += $5
        H += $2; O += $3; S += $4; P += $5
    }
    END {
        row("speech+babble", h["speech+babble"], o["speech+babble"], s["speech+babble"], p["speech+babble"])
        row("music", h["music"], o["music"], s["music"], p["music"])
        row("total", H, O, S, P)
        printf "false digits per hour: veilig-bellen %.2f, spandsp %.2f", O / H, S / H
        if (before) printf ", before %.2f", P / H
        printf "\n"
    }'
if [ -s "$WORK/ours.tsv" ]; then
    echo "veilig-bellen's false digits (file, digit, start s, end s):"
    sed "s|$WORK/||" "$WORK/ours.tsv" | head -50
fi
if sox -h 2>&1 | grep -q 'amr-nb'; then
    "$AMR_CODES" write "$WORK/codes.s16le"
    sox -V1 "${RAW[@]}" "$WORK/codes.s16le" -C 0 -t amr-nb "$WORK/codes.amr"
    sox -V1 -t amr-nb "$WORK/codes.amr" "${RAW[@]}" "$WORK/codes.amr475.s16le"
    echo "AMR-NB 4.75 round trip, the 50 codes of tests/dtmf_real_audio.rs read fully correct:" \
        "$("$AMR_CODES" score "$WORK/codes.amr475.s16le")"
    rm -f "$WORK/codes.s16le" "$WORK/codes.amr" "$WORK/codes.amr475.s16le"
fi
