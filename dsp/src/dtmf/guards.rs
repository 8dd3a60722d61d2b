//! The talk-off guards, run once per would-be digit start after every other start limit has
//! passed (so they cost nothing per sample). Both judge what is left of the last 25 ms once the two
//! tones are fitted and removed:
//!
//! * the *harmonic guard*: a voice or an instrument that puts one harmonic of its pitch on a DTMF
//!   frequency nearly always has the next one too; a sender's sines have none;
//! * the *chord guard*: a twisted pair with a third tone beside it nearly as strong as its weaker
//!   tone is two notes of a chord, and an off-frequency or quiet pair with anything clearly tonal
//!   beside it is music or speech (or two notes beating as one tone). A sender's two sines stand
//!   alone, and twist, a frequency error or a low level leaves a real digit no less clean.
//!
//! Through AMR-NB 4.75 kbit/s an instrument's partials are gone: two notes near DTMF
//! frequencies come out as two sines, 0.2–1.9 % off (equal-tempered F5, G5, A♯5, E6, F♯6), often
//! twisted, with the codec's noise beside them, and the guards turn them down only on some of the
//! attempts the start rule makes every 5 ms. The start rule therefore stops trying after
//! [`MAX_REJECTIONS`](super::MAX_REJECTIONS) verdicts against the same run of qualifying windows,
//! or after one [`Verdict::FarOff`].

use super::{DtmfDetector, SAMPLE_RATE, SUB, SUB_RING};
use std::f64::consts::PI;
use std::sync::LazyLock;

/// Sub-blocks at the end of the start span the guards look at (25 ms, all tone once a digit can
/// start).
pub(super) const GUARD_SUBS: usize = 5;
const GUARD_LEN: usize = SUB * GUARD_SUBS;
// The sub-block being filled shares the ring with the analysed ones; the guards must not see it.
const _: () = assert!(GUARD_SUBS < SUB_RING);
/// Partials judged around each tone of frequency f: (multiple of f, largest power relative to the
/// row tone and to the column tone). A DTMF sender's sine has no harmonics worth the name (≥ 20 dB
/// down, ETSI ES 201 235-2) and nothing at f/2 or 3f/2. Voiced speech and instruments that put one
/// harmonic of a pitch on a DTMF frequency nearly always carry the next one too: at 2f and 3f when
/// the tone is the pitch itself, at f/2 and 3f/2 when it is the pitch's second harmonic (an octave
/// under a played note). The row tone's 2f (1.4–1.9 kHz) may hold 10 dB under it what AMR-NB
/// 4.75 kbit/s makes of the pair; the column tone's (2.4–3.3 kHz) keeps ≥ 27 dB down through
/// that codec (the 550 codes), so it is held to 18 dB (a sender's: ≥ 20 dB; a note through
/// AMR-NB that fooled the detector: 14–16 dB).
const PARTIALS: [(f64, [f64; 2]); 4] = [
    (0.5, [0.1, 0.1]),     // −10 dB
    (1.5, [0.1, 0.1]),     // −10 dB
    (2.0, [0.1, 0.0158]),  // −10 dB, −18 dB
    (3.0, [0.025, 0.025]), // −16 dB (a triangle-like note's; a sender's and a codec's stay lower)
];
/// The lowest of the [`PARTIALS`] limits.
const PARTIALS_LOWEST: f64 = 0.0158;
/// A partial this close (rad/sample, 110 Hz) to the other tone is not judged: a mobile codec leaves
/// enough of that tone's wobble beside it after the fit to look like a partial.
const GUARD_NEAR: f64 = 2.0 * PI * 110.0 / SAMPLE_RATE as f64;
/// A pair that leaves much of the energy to other sound, or is off its nominal frequencies, must be
/// clean where it is judged: below this mean share of the energy over the start windows, or with a
/// frequency error over [`EXACT_FREQ_ERROR`](super::start::EXACT_FREQ_ERROR), the partial limits
/// are 4 dB stricter (speech through AMR-NB 4.75 kbit/s that fooled the detector: a pitch harmonic
/// on the row tone, the next one down 11 dB under it, at a share of 0.76–0.79; the 550 codes
/// through that codec keep such partials ≥ 16 dB down; a digit with speech 12 dB under it, as
/// `digits_held_during_speech_are_found` keys it, carries 0.88–0.96)…
const GUARD_LOW_SHARE: f32 = 0.82;
const GUARD_STRICT: f64 = 0.4;
/// …and below this share 10 dB stricter (speech and music that fooled the detector sat at 0.6–0.7,
/// a decaying plucked chord through AMR-NB at 0.685; a digit through AMR-NB 4.75 kbit/s has its
/// partials ≥ 16 dB down even there)…
const GUARD_LOWEST_SHARE: f32 = 0.70;
const GUARD_STRICTEST: f64 = 0.1;
/// …as they are when the stronger tone is under −37 dBm0, below the levels a receiver must accept
/// (−36 dBm0; quiet speech that fooled the detector: −38 dBm0, a pitch harmonic on the row tone
/// and the next one up 14 dB under it).
const GUARD_QUIET_POWER: f32 = super::DBM0_POWER * 1.995_262_3e-4;
/// …and a column tone within this relative distance (1 %) of twice the row tone is the row's second
/// harmonic, not a second tone (an octave; on-frequency DTMF pairs are ≥ 4 % from one).
const OCTAVE: f64 = 0.01;
/// Harmonics above this (3.9 kHz, rad/sample) are not judged (the band ends at 4 kHz).
const GUARD_TOP: f64 = 2.0 * PI * 3900.0 / SAMPLE_RATE as f64;

/// Chord guard: a pair with more than this twist either way (power ratio, 5 dB)…
const CHORD_TWIST: f32 = 3.162;
/// …may have no other tone within 6 dB of its weaker tone (music that fooled the detector: a
/// square-wave F5 under F♯6 and B6, twist 9 dB, B6 as strong as F♯6). Speech under a digit
/// seldom comes that close: of 12,600 digits keyed over eSpeak speech 6–8 dB under them on
/// average, 2 more were lost; of 550 codes through AMR-NB 4.75 kbit/s, none…
const CHORD_TWISTED: f64 = 0.25;
/// …and a pair must stand alone when it is off its nominal frequencies by more than this
/// (relative, 1.1 %; the 550 codes through AMR-NB 4.75 kbit/s measured more at one attempt in
/// 110, and nearly all passed on a later one)…
const CHORD_OFF_ERROR: f64 = 0.011;
/// …or twisted (over [`CHORD_TWIST`]) and off by more than this (0.65 %: A♯5 and E6 through
/// AMR-NB 4.75 kbit/s measured 0.7–1.3 % off 941 and 1336 Hz with 6–9 dB twist; the 550 codes
/// were that twisted and that far off at one attempt in 60)…
const CHORD_TWISTED_OFF_ERROR: f64 = 0.0065;
/// …or when its stronger tone is under −32 dBm0 (the 550 codes through AMR-NB: ≥ −31 dBm0; F5
/// and F♯6 through it that fooled the detector: −33 dBm0; a receiver must accept −36 dBm0, which
/// a sender's pair does alone)…
const CHORD_QUIET_POWER: f32 = super::DBM0_POWER * 6.309_573e-4;
/// Standing alone: nothing above −22 dB of the weaker tone anywhere, between the tones and beside
/// them too, only [`CHORD_CLEAR`] away (speech, babble and music that fooled the detector: the
/// strongest other tone at −19 to +3 dB, or two notes straddling a DTMF frequency beating as one
/// tone off it; a sender's 1.5 % off pair in 30 dB SNR noise: ≤ −37 dB). A pair more than
/// [`BAR_ERROR`] off that fails this is [`Verdict::FarOff`].
const CHORD_OFF: f64 = 0.0063;
/// 1.65 %: G5 and E6 through AMR-NB 4.75 kbit/s measure 1.4–1.9 % off 770 and 1336 Hz, and their
/// remainder, tried every 5 ms, now and then dips under [`CHORD_OFF`]; the 550 codes through the
/// codec measured more at one attempt in 4,600, a sender's 1.5 % off pair alone in linear or G.711
/// audio leaves no remainder to fail.
const BAR_ERROR: f64 = 0.0165;
/// The fit removes a tone at its measured frequency; from this far (40 Hz) on, what is left is
/// other sound.
const CHORD_CLEAR: f64 = 2.0 * PI * 40.0 / SAMPLE_RATE as f64;
// The chord guard's limit for a twisted pair is never below the partials' (so a real digit's clean
// remainder still ends the guards' work early, whatever its twist); an off pair's remainder is
// judged down to `CHORD_OFF`. Off pairs are never exact, and a barred pair is always off.
const _: () = assert!(
    CHORD_TWISTED >= PARTIALS_LOWEST
        && CHORD_TWISTED_OFF_ERROR > super::start::EXACT_FREQ_ERROR
        && CHORD_OFF_ERROR > CHORD_TWISTED_OFF_ERROR
        && BAR_ERROR > CHORD_OFF_ERROR
);
/// Other tones are looked for from here to [`CHORD_TOP_HZ`] on a grid of [`CHORD_STEP_HZ`] (20 Hz:
/// the Hann window over 25 ms has a main lobe ±80 Hz wide, so a tone between grid points loses
/// < 0.3 dB)…
const CHORD_BOTTOM_HZ: usize = 200;
const CHORD_TOP_HZ: usize = 3800;
const CHORD_STEP_HZ: usize = 20;
const CHORD_POINTS: usize = (CHORD_TOP_HZ - CHORD_BOTTOM_HZ) / CHORD_STEP_HZ + 1;
/// …and beside a twisted pair not within this (140 Hz) of either tone, nor between the two: a
/// mobile codec leaves the tone's wobble beside it (AMR-NB 4.75: −4 dB at 120 Hz from a tone) and
/// puts products of the pair between them (up to +5 dB over the weaker tone); a chord's other
/// notes elsewhere are judged.
const CHORD_NEAR: f64 = 2.0 * PI * 140.0 / SAMPLE_RATE as f64;

/// What a would-be digit looks like to the guards, from the start rule.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pair {
    /// Measured frequencies, row then column (rad/sample).
    pub(super) omega: [f64; 2],
    /// Mean share of the energy the pair carries over the start windows.
    pub(super) mean_share: f32,
    /// The larger relative frequency error of the two tones.
    pub(super) error: f64,
    /// Row tone power over column tone power over the start windows.
    pub(super) twist: f32,
    /// Mean power of the stronger tone over the start windows (linear sample units, as
    /// [`DBM0_POWER`](super::DBM0_POWER)).
    pub(super) level: f32,
}

/// The guards' verdict on a would-be digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing against it.
    Digit,
    /// The column tone is the row tone's second harmonic.
    Octave,
    /// A partial of a tone (harmonic guard).
    Partial,
    /// A third tone beside a twisted pair (chord guard).
    Chord,
    /// A third tone beside a pair that must stand alone: off frequency, or twisted and quiet, or
    /// below the accept range (chord guard).
    NotAlone,
    /// The same beside a pair more than [`BAR_ERROR`] off: a sender that far off is alone on the
    /// line, so this is music or speech for as long as the pair lasts (the start rule bars the
    /// digit until a window no longer qualifies for it).
    FarOff,
}

/// Hann window over the harmonic guard's span.
static HANN: LazyLock<[f64; GUARD_LEN]> = LazyLock::new(|| {
    std::array::from_fn(|n| 0.5 - 0.5 * (2.0 * PI * (n as f64 + 0.5) / GUARD_LEN as f64).cos())
});

/// Σ of [`HANN`] (the fit's gain).
static HANN_GAIN: LazyLock<f64> = LazyLock::new(|| HANN.iter().sum());

impl DtmfDetector {
    /// The guards on the would-be digit `pair` whose start span ends with sub-block `last`.
    ///
    /// Fits the two tones (at their measured frequencies) to the last [`GUARD_SUBS`] sub-blocks by
    /// weighted least squares (Hann window) and removes them. Harmonic guard: every one of
    /// [`PARTIALS`] of each tone in the remainder must stay below its limit relative to its tone,
    /// [`GUARD_STRICT`] times that when the pair's mean share of the energy is below
    /// [`GUARD_LOW_SHARE`] or the tones are off by more than
    /// [`EXACT_FREQ_ERROR`](super::start::EXACT_FREQ_ERROR), [`GUARD_STRICTEST`] times that below
    /// [`GUARD_LOWEST_SHARE`] or with the stronger tone under [`GUARD_QUIET_POWER`]; a partial
    /// within [`GUARD_NEAR`] of the other tone, or above [`GUARD_TOP`], is not judged. A column
    /// tone an octave above the row tone ([`OCTAVE`]) is that tone's harmonic. Chord guard: with a
    /// twist over [`CHORD_TWIST`] no other tone in the remainder outside the span of the pair and
    /// [`CHORD_NEAR`] away from it may reach [`CHORD_TWISTED`] of the weaker tone; with a frequency
    /// error over [`CHORD_OFF_ERROR`] (over [`CHORD_TWISTED_OFF_ERROR`] when twisted) or the
    /// stronger tone under [`CHORD_QUIET_POWER`], none anywhere [`CHORD_CLEAR`] away from the tones
    /// may reach [`CHORD_OFF`].
    #[inline(always)] // one caller, compiled per instruction set (`try_start_with`)
    pub(super) fn guards(&self, last: u64, pair: &Pair) -> Verdict {
        let omega = pair.omega;
        if (omega[1] - 2.0 * omega[0]).abs() < OCTAVE * omega[1] {
            return Verdict::Octave;
        }
        let exact = pair.error <= super::start::EXACT_FREQ_ERROR;
        let strict = if pair.mean_share < GUARD_LOWEST_SHARE || pair.level < GUARD_QUIET_POWER {
            GUARD_STRICTEST
        } else if pair.mean_share < GUARD_LOW_SHARE || !exact {
            GUARD_STRICT
        } else {
            1.0
        };
        let twisted = pair.twist > CHORD_TWIST || pair.twist * CHORD_TWIST < 1.0;
        let alone = pair.error > CHORD_OFF_ERROR
            || pair.level < CHORD_QUIET_POWER
            || (twisted && pair.error > CHORD_TWISTED_OFF_ERROR);
        // The lowest limit anything in the remainder is held to: the partials', and a lone pair's.
        let partials = strict * PARTIALS_LOWEST;
        let clean = if alone {
            partials.min(CHORD_OFF)
        } else {
            partials
        };
        let Some(rest) = self.remainder(last, omega, clean) else {
            return Verdict::Digit;
        };
        let partials_ok = rest
            .partial_ratios(omega)
            .iter()
            .flatten()
            .zip(
                PARTIALS
                    .iter()
                    .map(|p| p.1[0])
                    .chain(PARTIALS.iter().map(|p| p.1[1])),
            )
            .all(|(ratio, limit)| ratio.is_none_or(|r| r <= strict * limit));
        if !partials_ok {
            return Verdict::Partial;
        }
        let weaker = rest.weaker();
        let outside = |w: f64| w < omega[0] - CHORD_NEAR || w > omega[1] + CHORD_NEAR;
        let clear = |w: f64| omega.iter().all(|&o| (w - o).abs() >= CHORD_CLEAR);
        if twisted && rest.strongest(outside) > CHORD_TWISTED * weaker {
            Verdict::Chord
        } else if alone && rest.strongest(clear) > CHORD_OFF * weaker {
            if pair.error > BAR_ERROR {
                Verdict::FarOff
            } else {
                Verdict::NotAlone
            }
        } else {
            Verdict::Digit
        }
    }

    /// The last [`GUARD_SUBS`] sub-blocks with the two tones at `omega` fitted and removed, or
    /// `None` when nothing in what is left could reach `clean` relative to the weaker tone (the
    /// usual case for a real digit, and the cheap one) or the fit is singular.
    #[allow(clippy::needless_range_loop)] // (row, column) indices of one small matrix read clearest
    #[inline(always)] // as above
    fn remainder(&self, last: u64, omega: [f64; 2], clean: f64) -> Option<Remainder> {
        let first = (last + 1).saturating_sub(GUARD_SUBS as u64);
        let hann = &*HANN;
        let mut x = [0.0f64; GUARD_LEN];
        for (span, k) in x.chunks_exact_mut(SUB).zip(first..=last) {
            for (v, &s) in span
                .iter_mut()
                .zip(&self.raw[(k % SUB_RING as u64) as usize])
            {
                *v = f64::from(s);
            }
        }
        let basis = basis(omega);
        // Whole rows and the right-hand side as four-lane vectors; only the upper triangle is
        // kept, as the matrix is symmetric.
        let mut gram = [[0.0f64; 4]; 4];
        let mut rhs = [0.0f64; 4];
        let mut energy = 0.0f64;
        for ((&w, &v), b) in hann.iter().zip(&x).zip(&basis) {
            energy += w * v * v;
            let wb = b.map(|b| w * b);
            for (row, &wb) in gram.iter_mut().zip(&wb) {
                for (gj, &bj) in row.iter_mut().zip(b) {
                    *gj += wb * bj;
                }
            }
            rhs = std::array::from_fn(|i| rhs[i] + wb[i] * v);
        }
        let g: [[f64; 5]; 4] = std::array::from_fn(|i| {
            std::array::from_fn(|j| match j {
                4 => rhs[i],
                _ => gram[i.min(j)][i.max(j)],
            })
        });
        let coef = solve4(g)?;
        let gain = *HANN_GAIN;
        let tones = [0, 1].map(|slot| coef[2 * slot].powi(2) + coef[2 * slot + 1].powi(2));
        // Σw·r² of the least-squares remainder is Σw·x² − coef·rhs; by Cauchy–Schwarz no
        // sinusoid's amplitude² in it, (2|Σ w·r·e^{−jωn}| / Σw)², exceeds 4·Σw·r² / Σw.
        let remainder = energy - (0..4).map(|i| coef[i] * g[i][4]).sum::<f64>();
        if 4.0 * remainder / gain <= clean * tones[0].min(tones[1]) {
            return None;
        }
        for (v, b) in x.iter_mut().zip(&basis) {
            *v -= coef.iter().zip(b).map(|(c, b)| c * b).sum::<f64>();
        }
        // Weighted once here for every frequency judged.
        for (v, &h) in x.iter_mut().zip(hann) {
            *v *= h;
        }
        Some(Remainder { x, tones })
    }
}

/// What is left of the guards' span once the two tones are removed, Hann-weighted, and the
/// tones' amplitudes².
struct Remainder {
    x: [f64; GUARD_LEN],
    tones: [f64; 2],
}

impl Remainder {
    /// Amplitude² of the weaker tone.
    fn weaker(&self) -> f64 {
        self.tones[0].min(self.tones[1])
    }

    /// Amplitude² of the remainder at each of `N` frequencies given as 2 cos ω:
    /// (2|Σ w·r·e^{−jωn}| / Σw)², by Goertzel, all frequencies in one pass.
    #[inline(always)]
    fn amplitudes<const N: usize>(&self, c: [f64; N]) -> [f64; N] {
        let (mut s1, mut s2) = ([0.0f64; N], [0.0f64; N]);
        for &v in &self.x {
            for k in 0..N {
                let s0 = v + c[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        let gain = *HANN_GAIN;
        std::array::from_fn(|k| {
            4.0 * (s1[k] * s1[k] + s2[k] * s2[k] - c[k] * s1[k] * s2[k]) / (gain * gain)
        })
    }

    /// Power of each of [`PARTIALS`] of each tone relative to the tone; `None` where not judged.
    #[inline(always)]
    fn partial_ratios(&self, omega: [f64; 2]) -> [[Option<f64>; PARTIALS.len()]; 2] {
        let c: [f64; 2 * PARTIALS.len()] = std::array::from_fn(|k| {
            2.0 * (PARTIALS[k % PARTIALS.len()].0 * omega[k / PARTIALS.len()]).cos()
        });
        let at = self.amplitudes(c);
        let mut out = [[None; PARTIALS.len()]; 2];
        for (slot, ratios) in out.iter_mut().enumerate() {
            let tone = self.tones[slot];
            if tone <= 0.0 {
                continue;
            }
            for (i, (ratio, (h, _))) in ratios.iter_mut().zip(PARTIALS).enumerate() {
                let partial = h * omega[slot];
                if partial > GUARD_TOP || (partial - omega[1 - slot]).abs() < GUARD_NEAR {
                    continue;
                }
                *ratio = Some(at[slot * PARTIALS.len() + i] / tone);
            }
        }
        out
    }

    /// Amplitude² of the strongest tone in the remainder at the points of the chord guard's grid
    /// (rad/sample) that `keep` keeps.
    #[inline(always)]
    fn strongest(&self, keep: impl Fn(f64) -> bool) -> f64 {
        let mut c = [0.0f64; CHORD_POINTS];
        let mut n = 0;
        for hz in (CHORD_BOTTOM_HZ..=CHORD_TOP_HZ).step_by(CHORD_STEP_HZ) {
            let w = 2.0 * PI * hz as f64 / SAMPLE_RATE as f64;
            if keep(w) {
                c[n] = 2.0 * w.cos();
                n += 1;
            }
        }
        // Eight frequencies per pass; the last pass repeats its first one to fill up.
        c[..n]
            .chunks(LANES)
            .map(|chunk| {
                let c: [f64; LANES] = std::array::from_fn(|k| chunk[k.min(chunk.len() - 1)]);
                self.amplitudes(c).into_iter().fold(0.0, f64::max)
            })
            .fold(0.0, f64::max)
    }
}

/// Lanes of the basis rotation: e^{jωn} for n < `LANES` one step at a time, then `LANES` chains side
/// by side, each stepping by e^{jω·LANES}.
const LANES: usize = 8;
const _: () = assert!(GUARD_LEN.is_multiple_of(LANES));

/// cos ωn, sin ωn of both tones (`omega`, rad/sample) for n < [`GUARD_LEN`]: `[cos, sin]` of the row
/// tone then of the column tone. By rotation, no trigonometry per sample; eight short chains of
/// dependent steps that run side by side rather than one of 200, which also rounds less.
#[inline(always)] // into the start rule, compiled per instruction set
fn basis(omega: [f64; 2]) -> [[f64; 4]; GUARD_LEN] {
    let mut basis = [[0.0f64; 4]; GUARD_LEN];
    for (slot, &w) in omega.iter().enumerate() {
        let (c1, s1) = (w.cos(), w.sin());
        let jump = LANES as f64 * w;
        let (cj, sj) = (jump.cos(), jump.sin());
        let (mut re, mut im) = ([1.0f64; LANES], [0.0f64; LANES]);
        for n in 1..LANES {
            (re[n], im[n]) = (
                re[n - 1] * c1 - im[n - 1] * s1,
                re[n - 1] * s1 + im[n - 1] * c1,
            );
        }
        for chunk in basis.chunks_exact_mut(LANES) {
            for (b, (&r, &i)) in chunk.iter_mut().zip(re.iter().zip(&im)) {
                b[2 * slot] = r;
                b[2 * slot + 1] = i;
            }
            for (r, i) in re.iter_mut().zip(im.iter_mut()) {
                (*r, *i) = (*r * cj - *i * sj, *r * sj + *i * cj);
            }
        }
    }
    basis
}

/// Solves the 4×4 system whose augmented matrix is `g` (Gaussian elimination, partial pivoting);
/// `None` when it is singular.
#[allow(clippy::needless_range_loop)] // (row, column) indices of one small matrix read clearest
#[inline]
fn solve4(mut g: [[f64; 5]; 4]) -> Option<[f64; 4]> {
    for col in 0..4 {
        let pivot = (col..4).max_by(|&a, &b| g[a][col].abs().total_cmp(&g[b][col].abs()))?;
        if g[pivot][col].abs() < 1e-9 {
            return None;
        }
        g.swap(col, pivot);
        for row in col + 1..4 {
            let f = g[row][col] / g[col][col];
            for k in col..5 {
                g[row][k] -= f * g[col][k];
            }
        }
    }
    let mut out = [0.0f64; 4];
    for row in (0..4).rev() {
        let rest: f64 = (row + 1..4).map(|k| g[row][k] * out[k]).sum();
        out[row] = (g[row][4] - rest) / g[row][row];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sines (Hz, amplitude) summed over `len` samples, with a phase of its own for each.
    fn sines(parts: &[(f64, f64)], len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| {
                let x: f64 = parts
                    .iter()
                    .enumerate()
                    .map(|(i, &(f, a))| {
                        a * (2.0 * PI * f * n as f64 / SAMPLE_RATE as f64 + 0.7 * i as f64).sin()
                    })
                    .sum();
                x.round().clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    /// The guards' verdict on the row and column tones at `freqs` (Hz, as measured) after `samples`
    /// (≥ the guards' span); `error` the pair's relative frequency error, `twist_db` row over
    /// column, the pair carrying 90 % of the energy.
    fn verdict(samples: &[i16], freqs: [f64; 2], error: f64, twist_db: f32) -> Verdict {
        let mut d = DtmfDetector::new();
        d.push(samples);
        let pair = Pair {
            omega: freqs.map(|f| 2.0 * PI * f / SAMPLE_RATE as f64),
            mean_share: 0.9,
            error,
            twist: 10f32.powf(twist_db / 10.0),
            level: crate::dtmf::DBM0_POWER,
        };
        d.guards(d.subs_done - 1, &pair)
    }

    #[test]
    fn a_clean_pair_is_a_digit_whatever_its_twist_or_frequency_error() {
        for (twist, error) in [(0.0, 0.0), (8.0, 0.0), (-6.0, 0.0), (0.0, 0.015)] {
            let a = 8000.0;
            let (fr, fc) = (770.0 * (1.0 + error), 1477.0 * (1.0 + error));
            let weaker = a * 10f64.powf(-f64::from(twist).abs() / 20.0);
            let (ar, ac) = if twist >= 0.0 {
                (a, weaker)
            } else {
                (weaker, a)
            };
            let s = sines(&[(fr, ar), (fc, ac)], 400);
            assert_eq!(
                verdict(&s, [fr, fc], error, twist),
                Verdict::Digit,
                "twist {twist} error {error}"
            );
        }
    }

    #[test]
    fn a_twisted_pair_with_a_third_tone_as_strong_as_its_weaker_one_is_a_chord() {
        // F5, F♯6 8 dB under it and B6 as strong as F♯6: the chord that fooled the detector.
        let s = sines(&[(698.5, 8000.0), (1480.0, 3200.0), (1975.5, 3200.0)], 400);
        assert_eq!(verdict(&s, [698.5, 1480.0], 0.002, 8.0), Verdict::Chord);
        // A third tone under the row tone judges the same.
        let s = sines(&[(698.5, 8000.0), (1480.0, 3200.0), (440.0, 3200.0)], 400);
        assert_eq!(verdict(&s, [698.5, 1480.0], 0.002, 8.0), Verdict::Chord);
    }

    #[test]
    fn what_a_digit_keyed_over_speech_or_through_a_codec_carries_is_no_chord() {
        // Balanced pair, third tone as strong as either: speech over a digit may be that loud.
        let s = sines(&[(697.0, 5000.0), (1477.0, 5000.0), (1975.5, 5000.0)], 400);
        assert_eq!(verdict(&s, [697.0, 1477.0], 0.0, 0.0), Verdict::Digit);
        // Twisted pair, third tone 10 dB under the weaker one.
        let s = sines(&[(697.0, 8000.0), (1477.0, 3200.0), (1975.5, 1000.0)], 400);
        assert_eq!(verdict(&s, [697.0, 1477.0], 0.0, 8.0), Verdict::Digit);
        // Twisted pair with a product between the tones, as AMR-NB leaves one.
        let s = sines(&[(697.0, 8000.0), (1477.0, 3200.0), (1090.0, 4000.0)], 400);
        assert_eq!(verdict(&s, [697.0, 1477.0], 0.0, 8.0), Verdict::Digit);
    }

    #[test]
    fn an_off_frequency_pair_must_stand_alone() {
        let (fr, fc) = (852.0 * 1.013, 1336.0 * 1.013);
        let s = sines(&[(fr, 5000.0), (fc, 5000.0), (2400.0, 1200.0)], 400);
        assert_eq!(verdict(&s, [fr, fc], 0.013, 0.0), Verdict::NotAlone);
        // Two notes straddling 1336 Hz beat as one tone 1.6 % above it: what is left beside it.
        let (fr, fc) = (697.0, 1357.7);
        let s = sines(&[(fr, 5000.0), (1318.5, 2500.0), (1396.9, 2500.0)], 400);
        assert_eq!(verdict(&s, [fr, fc], 0.016, 0.0), Verdict::NotAlone);
        // The same third tone beside the pair on frequency is judged by the partial limits only.
        let (fr, fc) = (852.0, 1336.0);
        let s = sines(&[(fr, 5000.0), (fc, 5000.0), (2400.0, 1200.0)], 400);
        assert_eq!(verdict(&s, [fr, fc], 0.0, 0.0), Verdict::Digit);
    }

    #[test]
    fn a_strong_second_harmonic_is_a_partial_and_an_octave_no_pair() {
        let s = sines(&[(770.0, 5000.0), (1336.0, 5000.0), (1540.0, 2500.0)], 400);
        assert_eq!(verdict(&s, [770.0, 1336.0], 0.0, 0.0), Verdict::Partial);
        let s = sines(&[(833.5, 5000.0), (1667.0, 5000.0)], 400);
        assert_eq!(verdict(&s, [833.5, 1667.0], 0.02, 0.0), Verdict::Octave);
    }

    /// The rotated basis is cos ωn, sin ωn to within rounding, for every DTMF frequency and a
    /// few off-nominal ones.
    #[test]
    fn basis_is_the_sines_and_cosines() {
        for f in [697.0, 770.0, 941.0, 1209.0, 1633.0, 3900.0, 123.4] {
            let w = 2.0 * PI * f / SAMPLE_RATE as f64;
            let b = basis([w, 1.5 * w]);
            for (n, b) in b.iter().enumerate() {
                for (slot, w) in [w, 1.5 * w].into_iter().enumerate() {
                    let a = w * n as f64;
                    assert!((b[2 * slot] - a.cos()).abs() < 1e-13, "{f} Hz, n {n}");
                    assert!((b[2 * slot + 1] - a.sin()).abs() < 1e-13, "{f} Hz, n {n}");
                }
            }
        }
    }
}
