//! The start rule: five consecutive windows that qualify for the same digit start it when, over
//! them together, both tones are within the frequency limit (measured from the phase advance of
//! the window DFT), the leakage-free tone powers keep the twist, peak and energy-share limits, the
//! windows are consistent, and the talk-off guards ([`super::guards`]: harmonic and chord) pass.
//! After [`MAX_REJECTIONS`] guard verdicts against a digit (one if it is
//! [`Verdict::FarOff`]) it is not tried again until a window no longer qualifies for it.

use super::guards::{Pair, Verdict};
use super::spectrum::{runner_up, Leakage, TABLES};
use super::{
    key, split, DtmfDetector, DtmfEvent, State, MAX_REJECTIONS, START_WINDOWS, SUB, WIN, WIN_SUBS,
};
use std::f64::consts::PI;

/// Start limits, over the five start windows together.
/// Largest normal twist of the summed powers, 9 dB (spec: accept 8 dB).
const START_NORMAL_TWIST: f32 = 7.943;
/// Largest reverse twist of the summed powers, 6 dB (spec: accept 4 dB).
const START_REVERSE_TWIST: f32 = 3.98;
/// Summed power of each tone over summed power of its group's runner-up, 8 dB.
const START_REL_PEAK: f32 = 6.31;
/// Share of energy the pair must carry in *every* start window after loss correction (a 20 ms tone
/// cannot fill five consecutive windows more than half each).
const MIN_RATIO_START: f32 = 0.64;
/// Mean share of energy the pair must carry over the start windows after loss correction.
const MIN_MEAN_RATIO_START: f32 = 0.80;
/// Tones within this relative frequency error of nominal on both groups count as exact…
pub(super) const EXACT_FREQ_ERROR: f64 = 0.006;
/// …and then need only this share of energy in every start window (still > ½: 20 ms tones fail)…
const MIN_RATIO_START_EXACT: f32 = 0.55;
/// …and this mean share, and may have up to 8 dB reverse twist (AMR-NB lifts the high group).
const MIN_MEAN_RATIO_START_EXACT: f32 = 0.62;
const START_REVERSE_TWIST_EXACT: f32 = 6.31;
/// Largest accepted frequency error, relative (spec: accept 1.5 %, reject 3.5 %; speech and music
/// that fooled the detector at 2.2 % measured 1.8–2.2 %).
const MAX_FREQ_ERROR: f64 = 0.019;
/// No start window may be weaker than this fraction of the strongest one (−8 dB).
const MIN_CONSISTENCY: f32 = 0.158;
/// A start window counts as fully covered by the tone (for the frequency estimate) at this fraction
/// of the strongest start window's pair power.
const FULL_WINDOW: f32 = 0.7;

impl DtmfDetector {
    /// Start rule over the last `START_WINDOWS` windows (see module docs).
    /// (Called through `try_start_with`, which compiles it once per instruction set.)
    #[inline(always)]
    pub(super) fn try_start(&mut self, last: u64) {
        let first_window = WIN_SUBS as u64 - 1;
        if last < first_window + START_WINDOWS as u64 - 1 {
            return;
        }
        let Some(digit) = self.win(last).candidate else {
            return;
        };
        let oldest = last + 1 - START_WINDOWS as u64;
        if (oldest..last).any(|w| self.win(w).candidate != Some(digit)) {
            return;
        }
        let (r, c) = split(digit);
        let t = &*TABLES;
        let mut corrected = [[0.0f32; 2]; START_WINDOWS];
        let mut worst_error = 0.0f64;
        let pair_power = |w: u64| self.win(w).power[r] + self.win(w).power[c + 4];
        let strongest = (oldest..=last).map(pair_power).fold(0.0f32, f32::max);
        let mut full = 0u32;
        for (i, w) in (oldest..=last).enumerate() {
            if pair_power(w) >= FULL_WINDOW * strongest {
                full |= 1 << i;
            }
        }
        if full.count_ones() < 2 {
            full = (1 << START_WINDOWS) - 1;
        }
        let mut tone_omega = [0.0f64; 2];
        for (slot, bin) in [r, c + 4].into_iter().enumerate() {
            let Some(offset) = self.frequency_offset(bin, oldest, last, full) else {
                return;
            };
            let error = (offset / t.omega[bin]).abs();
            if error > MAX_FREQ_ERROR {
                return;
            }
            worst_error = worst_error.max(error);
            tone_omega[slot] = t.omega[bin] + offset;
        }
        // Window w starts with sub-block w + 1 − WIN_SUBS; sub-blocks follow each other SUB apart.
        let first_start = self.sub(oldest + 1 - WIN_SUBS as u64).start;
        let leakage = Leakage::new(r, c, tone_omega).windows::<START_WINDOWS>(first_start);
        for (i, (w, g)) in (oldest..=last).zip(leakage).enumerate() {
            corrected[i] = self.win(w).tone_powers(r, c, g);
        }
        // Tones exactly on frequency may share the line with more other sound (speech over a held digit).
        let exact = worst_error <= EXACT_FREQ_ERROR;
        let (min_ratio, min_mean_ratio) = if exact {
            (MIN_RATIO_START_EXACT, MIN_MEAN_RATIO_START_EXACT)
        } else {
            (MIN_RATIO_START, MIN_MEAN_RATIO_START)
        };
        // …and a mobile codec can lift their high group a few dB more.
        let reverse_twist = if exact {
            START_REVERSE_TWIST_EXACT
        } else {
            START_REVERSE_TWIST
        };
        let (mut sum_row, mut sum_col, mut max_pair) = (0.0f32, 0.0f32, 0.0f32);
        let (mut runner_row, mut runner_col) = (0.0f32, 0.0f32);
        let mut ratio_sum = 0.0f32;
        for (i, w) in (oldest..=last).enumerate() {
            let win = self.win(w);
            let pair = corrected[i][0] + corrected[i][1];
            if pair < min_ratio * win.mean_power {
                return;
            }
            ratio_sum += pair / win.mean_power;
            sum_row += corrected[i][0];
            sum_col += corrected[i][1];
            runner_row += runner_up(&win.power[..4], r);
            runner_col += runner_up(&win.power[4..], c);
            max_pair = max_pair.max(win.power[r] + win.power[c + 4]);
        }
        if sum_row > START_NORMAL_TWIST * sum_col
            || sum_col > reverse_twist * sum_row
            || ratio_sum < min_mean_ratio * START_WINDOWS as f32
            || sum_row < START_REL_PEAK * runner_row
            || sum_col < START_REL_PEAK * runner_col
        {
            return;
        }
        for w in oldest..=last {
            let win = self.win(w);
            if win.power[r] + win.power[c + 4] < MIN_CONSISTENCY * max_pair {
                return;
            }
        }
        let pair = Pair {
            omega: tone_omega,
            mean_share: ratio_sum / START_WINDOWS as f32,
            error: worst_error,
            twist: sum_row / sum_col,
            level: sum_row.max(sum_col) / START_WINDOWS as f32,
        };
        let verdict = self.guards(last, &pair);
        if verdict != Verdict::Digit {
            let before = match self.state {
                State::Idle {
                    rejected: Some((d, n)),
                } if d == digit => n,
                _ => 0,
            };
            let n = if verdict == Verdict::FarOff {
                MAX_REJECTIONS
            } else {
                before.saturating_add(1)
            };
            self.state = State::Idle {
                rejected: Some((digit, n)),
            };
            return;
        }
        let n = START_WINDOWS as f32;
        let ref_row = (oldest..=last).map(|w| self.win(w).power[r]).sum::<f32>() / n;
        let ref_col = (oldest..=last)
            .map(|w| self.win(w).power[c + 4])
            .sum::<f32>()
            / n;
        let start = self.estimate_onset(last, ref_row + ref_col);
        self.events.push_back(DtmfEvent::Started {
            digit: key(digit),
            start,
        });
        self.state = State::Active {
            digit,
            start,
            ref_row,
            ref_col,
            absent: 0,
            last_present: last,
        };
    }

    /// Frequency offset (radians/sample) of the tone in `bin` over windows `oldest..=last`, from the phase
    /// advance of the window DFT over 40 samples (coarse, unambiguous to ±100 Hz) refined over 120 samples.
    ///
    /// Only windows flagged in `full` (bit i = window `oldest + i`) are used: a window the tone covers
    /// only partly has its phase centre elsewhere and would bias the estimate towards zero offset.
    fn frequency_offset(&self, bin: usize, oldest: u64, last: u64, full: u32) -> Option<f64> {
        let used = |w: u64| full & (1 << (w - oldest)) != 0;
        let lag_sum = |lag: u64| {
            let (mut re, mut im) = (0.0f64, 0.0f64);
            for w in (oldest + lag..=last).filter(|&w| used(w) && used(w - lag)) {
                let a = &self.win(w).dft;
                let b = &self.win(w - lag).dft;
                let (ar, ai) = (f64::from(a[bin]), f64::from(a[bin + 8]));
                let (br, bi) = (f64::from(b[bin]), f64::from(b[bin + 8]));
                re += ar * br + ai * bi;
                im += ai * br - ar * bi;
            }
            (re, im)
        };
        let (re1, im1) = lag_sum(1);
        if re1 == 0.0 && im1 == 0.0 {
            return None;
        }
        let coarse = im1.atan2(re1) / SUB as f64;
        let (re3, im3) = lag_sum(WIN_SUBS as u64);
        if re3 == 0.0 && im3 == 0.0 {
            return Some(coarse);
        }
        let lag = WIN as f64;
        let fine = im3.atan2(re3);
        let turns = ((coarse * lag - fine) / (2.0 * PI)).round();
        Some((fine + turns * 2.0 * PI) / lag)
    }
}
