//! The spectrum the detector works on: the DFT of every 40-sample sub-block at the eight DTMF
//! frequencies (table, portable kernel), the sub-block and window records built from it, the
//! single-window test, and the tone powers free of window loss and leakage that the start rule uses.

use super::{COL_FREQS, MIN_TONE_POWER, ROW_FREQS, SAMPLE_RATE, SUB, WIN, WIN_SUBS};
use std::f64::consts::PI;
use std::sync::LazyLock;

/// Per-window limits (loose: a mobile codec makes twist and purity jump from window to window).
/// Largest normal twist (row stronger) in one window, 14 dB.
const WIN_NORMAL_TWIST: f32 = 25.1;
/// Largest reverse twist (column stronger) in one window, 12 dB.
const WIN_REVERSE_TWIST: f32 = 15.8;
/// Each chosen tone must beat the runner-up of its group in one window by this power ratio (4 dB).
const WIN_REL_PEAK: f32 = 2.51;
/// Share of the window energy the pair must carry in one window (uncorrected).
const WIN_RATIO: f32 = 0.40;

/// Per-position DFT coefficients: `[n][k]` = cos(ω_k n) for k < 8, −sin(ω_{k−8} n) for k ≥ 8.
pub(super) struct Tables {
    pub(super) dft: [[f32; 16]; SUB],
    /// Rotation e^{−jω_k·SUB} from one sub-block start to the next.
    pub(super) step_re: [f32; 8],
    pub(super) step_im: [f32; 8],
    /// ω_k in radians per sample.
    pub(super) omega: [f64; 8],
}

pub(super) static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let mut omega = [0.0; 8];
    for k in 0..4 {
        omega[k] = 2.0 * PI * ROW_FREQS[k] / f64::from(SAMPLE_RATE);
        omega[k + 4] = 2.0 * PI * COL_FREQS[k] / f64::from(SAMPLE_RATE);
    }
    let mut dft = [[0.0f32; 16]; SUB];
    for (n, row) in dft.iter_mut().enumerate() {
        for k in 0..8 {
            let a = omega[k] * n as f64;
            row[k] = a.cos() as f32;
            row[k + 8] = -(a.sin() as f32);
        }
    }
    let (mut step_re, mut step_im) = ([0.0f32; 8], [0.0f32; 8]);
    for k in 0..8 {
        let a = omega[k] * SUB as f64;
        step_re[k] = a.cos() as f32;
        step_im[k] = -(a.sin() as f32);
    }
    Tables {
        dft,
        step_re,
        step_im,
        omega,
    }
});

/// One analysed sub-block: absolute-phase DFT (re 0..8, im 8..16) and energy.
#[derive(Clone, Copy, Default)]
pub(super) struct SubBlock {
    pub(super) dft: [f32; 16],
    pub(super) energy: f32,
    pub(super) start: u64,
}

/// One analysed window.
#[derive(Clone, Copy, Default)]
pub(super) struct Window {
    pub(super) dft: [f32; 16],
    /// Per-bin mean power of the tone the bin sees (A²/2 for a sine of amplitude A at the bin).
    pub(super) power: [f32; 8],
    /// Mean power of the whole window.
    pub(super) mean_power: f32,
    /// Digit index (row·4 + col) this window qualifies for, if any.
    pub(super) candidate: Option<u8>,
}

impl Window {
    /// Makes this the window of three consecutive sub-blocks (`subs`, newest first): their summed
    /// DFT, the bin powers, the mean power and the single-window test.
    #[inline(always)]
    pub(super) fn build(&mut self, subs: [&SubBlock; WIN_SUBS]) {
        let mut dft = [0.0f32; 16];
        let mut energy = 0.0f32;
        for s in subs {
            for (d, v) in dft.iter_mut().zip(&s.dft) {
                *d += v;
            }
            energy += s.energy;
        }
        let scale = 2.0 / (WIN as f32 * WIN as f32);
        let mut power = [0.0f32; 8];
        for k in 0..8 {
            power[k] = (dft[k] * dft[k] + dft[k + 8] * dft[k + 8]) * scale;
        }
        let mean_power = energy / WIN as f32;
        // Quiet windows skip the test (no bin can exceed twice the mean power, by Cauchy–Schwarz).
        self.candidate =
            if 2.0 * mean_power < MIN_TONE_POWER || !any_reaches(&power, MIN_TONE_POWER) {
                None
            } else {
                qualify(&power, mean_power)
            };
        self.dft = dft;
        self.power = power;
        self.mean_power = mean_power;
    }

    /// Powers of the row tone (bin `r`) and column tone (bin `c + 4`) at their measured frequencies
    /// (`g`, made for the same `r` and `c`), free of the window loss and of each tone's leakage into
    /// the other's bin: solves the 2×2 system X_bin = Σ_tone b_tone·G(Ω_tone − ω_bin) for this
    /// window (first sample `start`), where G is the rectangular window's response on the absolute
    /// time axis.
    pub(super) fn tone_powers(&self, r: usize, c: usize, g: [(f64, f64); 4]) -> [f32; 2] {
        let bins = [r, c + 4];
        let x = bins.map(|b| (f64::from(self.dft[b]), f64::from(self.dft[b + 8])));
        let [g_rr, g_cr, g_rc, g_cc] = g;
        // X_r = b_r·g_rr + b_c·g_cr ; X_c = b_r·g_rc + b_c·g_cc
        let det = c_sub(c_mul(g_rr, g_cc), c_mul(g_cr, g_rc));
        let den = det.0 * det.0 + det.1 * det.1;
        if den < 1e-12 {
            return [0.0; 2];
        }
        let b_r = c_div(c_sub(c_mul(x[0], g_cc), c_mul(x[1], g_cr)), det, den);
        let b_c = c_div(c_sub(c_mul(x[1], g_rr), c_mul(x[0], g_rc)), det, den);
        let p = |b: (f64, f64)| (2.0 * (b.0 * b.0 + b.1 * b.1)) as f32;
        [p(b_r), p(b_c)]
    }
}

/// The rectangular window's response G(θ) = Σ_{n=start}^{start+WIN−1} e^{jθn} for the four
/// (tone, bin) pairs of one digit, θ = Ω_tone − ω_bin, in the order (row tone, row bin), (column
/// tone, row bin), (row tone, column bin), (column tone, column bin). The magnitude does not depend on
/// where the window starts, and from one window to the next (`SUB` samples on) the phase turns by
/// θ·SUB: two sines and cosines per pair for a run of windows, not two per window.
pub(super) struct Leakage {
    theta: [f64; 4],
    mag: [f64; 4],
}

impl Leakage {
    /// For the row tone (bin `r`) and column tone (bin `c + 4`) at `omega` (rad/sample).
    pub(super) fn new(r: usize, c: usize, omega: [f64; 2]) -> Leakage {
        let t = &*TABLES;
        let bins = [r, c + 4];
        let theta = [(0, 0), (1, 0), (0, 1), (1, 1)]
            .map(|(tone, bin): (usize, usize)| omega[tone] - t.omega[bins[bin]]);
        let mag = theta.map(|theta| {
            let half = theta / 2.0;
            if half.abs() < 1e-12 {
                WIN as f64
            } else {
                (half * WIN as f64).sin() / half.sin()
            }
        });
        Leakage { theta, mag }
    }

    /// G for `N` consecutive windows, the first of which starts at sample `start`, each `SUB`
    /// samples after the one before.
    pub(super) fn windows<const N: usize>(&self, start: u64) -> [[(f64, f64); 4]; N] {
        let mut out = [[(0.0, 0.0); 4]; N];
        for (i, (&theta, &mag)) in self.theta.iter().zip(&self.mag).enumerate() {
            let phase = theta * (start as f64 + (WIN as f64 - 1.0) / 2.0);
            let (mut re, mut im) = (mag * phase.cos(), mag * phase.sin());
            let step = theta * SUB as f64;
            let (c, s) = (step.cos(), step.sin());
            for g in out.iter_mut() {
                g[i] = (re, im);
                (re, im) = (re * c - im * s, re * s + im * c);
            }
        }
        out
    }
}

fn c_mul(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

fn c_sub(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0 - b.0, a.1 - b.1)
}

/// a / d where `den` = |d|².
fn c_div(a: (f64, f64), d: (f64, f64), den: f64) -> (f64, f64) {
    ((a.0 * d.0 + a.1 * d.1) / den, (a.1 * d.0 - a.0 * d.1) / den)
}

/// Complex DFT of one sub-block at the eight frequencies (re 0..8, im 8..16), and its energy. Written as 16-lane array
/// loops so LLVM vectorises them; `FUSED` uses fused multiply–add (only where the CPU has it).
#[inline(always)]
pub(super) fn dft_kernel<const FUSED: bool>(
    block: &[f32; SUB],
    table: &[[f32; 16]; SUB],
) -> ([f32; 16], f32) {
    // Four accumulator sets (samples 4m … 4m+3): eight independent multiply–add chains of ten steps
    // keep the FMA units busy instead of waiting on each chain's latency (two sets were latency-bound).
    let mut acc = [[0.0f32; 16]; 4];
    for (quad, coef) in block.chunks_exact(4).zip(table.chunks_exact(4)) {
        for (j, a) in acc.iter_mut().enumerate() {
            let x = quad[j];
            for k in 0..16 {
                a[k] = if FUSED {
                    x.mul_add(coef[j][k], a[k])
                } else {
                    a[k] + x * coef[j][k]
                };
            }
        }
    }
    let mut out = [0.0f32; 16];
    for k in 0..16 {
        out[k] = (acc[0][k] + acc[1][k]) + (acc[2][k] + acc[3][k]);
    }
    let mut e = [0.0f32; 8];
    for chunk in block.chunks_exact(8) {
        for i in 0..8 {
            e[i] = if FUSED {
                chunk[i].mul_add(chunk[i], e[i])
            } else {
                e[i] + chunk[i] * chunk[i]
            };
        }
    }
    (out, e.iter().sum())
}

#[cfg(test)]
pub(super) fn dft_portable(block: &[f32; SUB], table: &[[f32; 16]; SUB]) -> ([f32; 16], f32) {
    dft_kernel::<false>(block, table)
}

/// Single-window test: the digit index this window's spectrum looks like, if any.
#[inline]
fn qualify(power: &[f32; 8], mean_power: f32) -> Option<u8> {
    let (r, p_row, r2) = best_two(&power[..4]);
    let (c, p_col, c2) = best_two(&power[4..]);
    let ok = p_row >= MIN_TONE_POWER
        && p_col >= MIN_TONE_POWER
        && p_row <= WIN_NORMAL_TWIST * p_col
        && p_col <= WIN_REVERSE_TWIST * p_row
        && p_row >= WIN_REL_PEAK * r2
        && p_col >= WIN_REL_PEAK * c2
        && p_row + p_col >= WIN_RATIO * mean_power;
    ok.then_some((r * 4 + c) as u8)
}

/// Index and value of the largest of four powers, and the second largest value.
#[inline]
fn best_two(p: &[f32]) -> (usize, f32, f32) {
    let (mut best, mut top, mut second) = (0, p[0], 0.0f32);
    for (i, &v) in p.iter().enumerate().skip(1) {
        // Selects, not branches: noise makes the order random.
        let above = v > top;
        second = if above {
            top
        } else if v > second {
            v
        } else {
            second
        };
        best = if above { i } else { best };
        top = if above { v } else { top };
    }
    (best, top, second)
}

/// Whether any of eight powers reaches `level` (one vector compare; powers are never NaN).
#[inline(always)]
fn any_reaches(p: &[f32; 8], level: f32) -> bool {
    p.iter().fold(0u8, |any, &v| any | u8::from(v >= level)) != 0
}

/// Largest of `p` other than index `skip`.
#[inline]
pub(super) fn runner_up(p: &[f32], skip: usize) -> f32 {
    p.iter()
        .enumerate()
        .filter(|&(i, _)| i != skip)
        .fold(0.0f32, |m, (_, &v)| m.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window responses for a run of windows, by rotation, are Σ e^{jθn} over each window.
    #[test]
    fn leakage_of_a_run_of_windows_is_the_window_sum() {
        let t = &*TABLES;
        let omega = [t.omega[1] * 1.013, t.omega[6] * 0.991];
        let start = 28_800_000 - 7 * SUB as u64;
        let g = Leakage::new(1, 2, omega).windows::<5>(start);
        let bins = [1, 6];
        for (i, g) in g.iter().enumerate() {
            let first = start + (i * SUB) as u64;
            for (p, (tone, bin)) in [(0, 0), (1, 0), (0, 1), (1, 1)].into_iter().enumerate() {
                let theta = omega[tone] - t.omega[bins[bin]];
                let (mut re, mut im) = (0.0f64, 0.0f64);
                for n in first..first + WIN as u64 {
                    re += (theta * n as f64).cos();
                    im += (theta * n as f64).sin();
                }
                assert!(
                    (g[p].0 - re).abs() < 1e-6 && (g[p].1 - im).abs() < 1e-6,
                    "{i} {p}"
                );
            }
        }
    }
}
