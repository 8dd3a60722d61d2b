//! The harmonic guard against talk-off: a voice or an instrument that puts one harmonic of its
//! pitch on a DTMF frequency nearly always has the next one too, a sender's sines have none. Runs
//! once per would-be digit start, after every other start limit has passed.

use super::{DtmfDetector, SAMPLE_RATE, SUB, SUB_RING};
use std::f64::consts::PI;
use std::sync::LazyLock;

/// Harmonic guard (talk-off): sub-blocks at the end of the start span it looks at (25 ms, all tone
/// once a digit can start).
pub(super) const GUARD_SUBS: usize = 5;
const GUARD_LEN: usize = SUB * GUARD_SUBS;
// The sub-block being filled shares the ring with the analysed ones; the guard must not see it.
const _: () = assert!(GUARD_SUBS < SUB_RING);
/// Partials judged around each tone of frequency f: (multiple of f, largest power relative to the
/// tone). A DTMF sender's sine has no harmonics worth the name (≥ 20 dB down, ETSI ES 201 235-2) and
/// nothing at f/2 or 3f/2. Voiced speech and instruments that put one harmonic of a pitch on a DTMF
/// frequency nearly always carry the next one too: at 2f and 3f when the tone is the pitch itself,
/// at f/2 and 3f/2 when it is the pitch's second harmonic (an octave under a played note).
const PARTIALS: [(f64, f64); 4] = [
    (0.5, 0.1),   // −10 dB
    (1.5, 0.1),   // −10 dB
    (2.0, 0.1),   // −10 dB
    (3.0, 0.025), // −16 dB (a triangle-like note's; a sender's and a codec's stay lower)
];
/// A partial this close (rad/sample, 110 Hz) to the other tone is not judged: a mobile codec leaves
/// enough of that tone's wobble beside it after the fit to look like a partial.
const GUARD_NEAR: f64 = 2.0 * PI * 110.0 / SAMPLE_RATE as f64;
/// A pair that leaves much of the energy to other sound, or is off its nominal frequencies, must be
/// clean where it is judged: below this mean share of the energy over the start windows, or with a
/// frequency error over [`EXACT_FREQ_ERROR`](super::start::EXACT_FREQ_ERROR), the partial limits are 4 dB stricter…
const GUARD_LOW_SHARE: f32 = 0.75;
const GUARD_STRICT: f64 = 0.4;
/// …and below this share 10 dB stricter (speech and music that fooled the detector sat at 0.6–0.7;
/// a digit through AMR-NB 4.75 kbit/s has its partials ≥ 16 dB down even there)…
const GUARD_LOWEST_SHARE: f32 = 0.68;
const GUARD_STRICTEST: f64 = 0.1;
/// …and a column tone within this relative distance (1 %) of twice the row tone is the row's second
/// harmonic, not a second tone (an octave; on-frequency DTMF pairs are ≥ 4 % from one).
const OCTAVE: f64 = 0.01;
/// Harmonics above this (3.9 kHz, rad/sample) are not judged (the band ends at 4 kHz).
const GUARD_TOP: f64 = 2.0 * PI * 3900.0 / SAMPLE_RATE as f64;

/// Hann window over the harmonic guard's span.
static HANN: LazyLock<[f64; GUARD_LEN]> = LazyLock::new(|| {
    std::array::from_fn(|n| 0.5 - 0.5 * (2.0 * PI * (n as f64 + 0.5) / GUARD_LEN as f64).cos())
});

/// Σ of [`HANN`] (the fit's gain).
static HANN_GAIN: LazyLock<f64> = LazyLock::new(|| HANN.iter().sum());

impl DtmfDetector {
    /// Harmonic guard: fits the two tones (measured frequencies `omega`, row then column, rad/sample)
    /// to the last [`GUARD_SUBS`] sub-blocks by weighted least squares (Hann window), removes them,
    /// and measures the remainder at each of [`PARTIALS`] of each tone: every partial must stay below
    /// its limit relative to its tone, [`GUARD_STRICT`] times that when the pair's `mean_share` of the
    /// energy is below [`GUARD_LOW_SHARE`] or the tones are not `exact`ly on frequency, and
    /// [`GUARD_STRICTEST`] times that below [`GUARD_LOWEST_SHARE`]. The fit removes each tone's leakage; a partial within
    /// [`GUARD_NEAR`] of the other tone, or above [`GUARD_TOP`], is not judged. A column tone an
    /// octave above the row tone ([`OCTAVE`]) is that tone's harmonic: rejected.
    #[inline(always)] // one caller, compiled per instruction set (`try_start_with`)
    pub(super) fn harmonics_ok(
        &self,
        last: u64,
        omega: [f64; 2],
        mean_share: f32,
        exact: bool,
    ) -> bool {
        if (omega[1] - 2.0 * omega[0]).abs() < OCTAVE * omega[1] {
            return false;
        }
        let strict = if mean_share < GUARD_LOWEST_SHARE {
            GUARD_STRICTEST
        } else if mean_share < GUARD_LOW_SHARE || !exact {
            GUARD_STRICT
        } else {
            1.0
        };
        let clean = strict * PARTIALS.iter().map(|p| p.1).fold(f64::MAX, f64::min);
        self.partial_ratios(last, omega, clean)
            .iter()
            .flatten()
            .zip(PARTIALS.iter().chain(&PARTIALS))
            .all(|(ratio, (_, limit))| ratio.is_none_or(|r| r <= strict * limit))
    }

    /// Power of each of [`PARTIALS`] of each tone relative to the tone (see [`Self::harmonics_ok`]);
    /// `None` where not judged.
    ///
    /// When the whole remainder is too weak for any partial to reach `clean` relative to the weaker
    /// tone, nothing is judged (all `None`): the usual case for a real digit, and the cheap one.
    #[allow(clippy::needless_range_loop)] // (row, column) indices of one small matrix read clearest
    #[inline(always)] // as above
    fn partial_ratios(
        &self,
        last: u64,
        omega: [f64; 2],
        clean: f64,
    ) -> [[Option<f64>; PARTIALS.len()]; 2] {
        let mut out = [[None; PARTIALS.len()]; 2];
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
        let Some(coef) = solve4(g) else {
            return out;
        };
        let gain = *HANN_GAIN;
        let tone = |slot: usize| coef[2 * slot].powi(2) + coef[2 * slot + 1].powi(2);
        // Σw·r² of the least-squares remainder is Σw·x² − coef·rhs; by Cauchy–Schwarz no partial's
        // amplitude² (2|Σ w·r·e^{−jωn}| / Σw)² exceeds 4·Σw·r² / Σw.
        let remainder = energy - (0..4).map(|i| coef[i] * g[i][4]).sum::<f64>();
        if 4.0 * remainder / gain <= clean * tone(0).min(tone(1)) {
            return out;
        }
        for (v, b) in x.iter_mut().zip(&basis) {
            *v -= coef.iter().zip(b).map(|(c, b)| c * b).sum::<f64>();
        }
        // Weighted once here for every partial below.
        for (v, &h) in x.iter_mut().zip(hann) {
            *v *= h;
        }
        // Goertzel at all eight partials at once: |Σ v·e^{−jωn}|² = s1² + s2² − c·s1·s2, c = 2 cos ω.
        let mut c = [0.0f64; 8];
        for (k, ck) in c.iter_mut().enumerate() {
            *ck = 2.0 * (PARTIALS[k % PARTIALS.len()].0 * omega[k / PARTIALS.len()]).cos();
        }
        let (mut s1, mut s2) = ([0.0f64; 8], [0.0f64; 8]);
        for &v in &x {
            for k in 0..8 {
                let s0 = v + c[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        // Amplitude² of the remainder at partial k: (2|Σ w·r·e^{−jωn}| / Σw)².
        let remainder_at =
            |k: usize| 4.0 * (s1[k] * s1[k] + s2[k] * s2[k] - c[k] * s1[k] * s2[k]) / (gain * gain);
        for (slot, ratios) in out.iter_mut().enumerate() {
            let tone = tone(slot);
            if tone <= 0.0 {
                continue;
            }
            for (i, (ratio, (h, _))) in ratios.iter_mut().zip(PARTIALS).enumerate() {
                let partial = h * omega[slot];
                if partial > GUARD_TOP || (partial - omega[1 - slot]).abs() < GUARD_NEAR {
                    continue;
                }
                *ratio = Some(remainder_at(slot * PARTIALS.len() + i) / tone);
            }
        }
        out
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
