//! Streaming in-band DTMF detector (ITU-T Q.23 frequencies, Q.24 / ETSI ES 201 235-3 receiver limits).
//!
//! # How it works
//!
//! Samples are cut into *sub-blocks* of 40 samples (5 ms). For every sub-block the detector computes the
//! complex DFT at the eight DTMF frequencies (one fixed table, one 16-lane multiply–add per sample)
//! plus the sub-block energy. On CPUs with AVX2 + FMA a second copy of the whole per-sample and
//! per-window path (conversion, DFT, window sums, window test, start rule) compiled for them is
//! used, with the DFT written in intrinsics. Each DFT value is rotated to an absolute time
//! reference, so the DFT of any run of consecutive sub-blocks is just their sum.
//!
//! Every sub-block the detector looks at the *window* made of the last three sub-blocks (120 samples,
//! 15 ms, main-lobe null at ±67 Hz, so adjacent rows are resolved). A window *qualifies* for a digit when
//! the strongest row and column tone are both loud enough (≥ −48 dBm0), each beats the runner-up in its
//! group, the twist is not absurd and the pair carries a fair share of the energy. These per-window
//! limits are deliberately loose: a mobile codec (AMR-NB 4.75 kbit/s) makes twist and purity jump by
//! 10 dB from one 15 ms window to the next.
//!
//! A digit **starts** when five consecutive windows (35 ms of signal, so `Started` comes ≤ 40 ms after the
//! onset) qualify for the same digit and, over those windows together:
//! * the frequency of each tone, measured from the phase advance of the window DFT over 40 and 120
//!   samples (fully covered windows only), is within ±1.9 % (spec: accept ±1.5 %, reject ±3.5 %);
//! * the powers of the two tones at their measured frequencies, solved free of window loss and of
//!   each other's leakage, give a twist of at most 9 dB normal / 6 dB reverse (spec: 8 / 4; 8 dB reverse
//!   for tones within 0.6 % of nominal) and beat the runners-up by 8 dB;
//! * those powers carry ≥ 64 % of the energy in *every* window and ≥ 80 % on average (for tones within
//!   0.6 % of nominal, as a digit held over speech is: 55 % / 62 %). A 40 ms tone always fills five
//!   windows completely; a 20 ms tone cannot fill five consecutive windows more than half each, so it
//!   fails the every-window share.
//!
//! * *harmonic guard* (talk-off): the two tones, fitted over the last 25 ms and removed, leave little
//!   at f/2, 3f/2, 2f and 3f of either tone f (≤ −10 dB, −16 dB at 3f and −18 dB at the column
//!   tone's 2f; 4 dB stricter for a pair that carries < 82 % of the energy or is off frequency,
//!   10 dB stricter below 70 % or with its stronger tone under −37 dBm0, below the accept range),
//!   and the column is not an octave of the row. A sender's sines have no such partials; a voice
//!   or an instrument that puts one harmonic of its pitch on a DTMF frequency nearly always has
//!   the next.
//! * *chord guard* (talk-off): in the same remainder, a pair twisted by more than 5 dB either way
//!   may have no other tone within 6 dB of its weaker tone below the row tone or above the column
//!   tone (140 Hz clear of both; between them AMR-NB puts products of the pair), and a pair that
//!   must stand alone — more than 1.1 % off frequency, more than 0.65 % when twisted, or with its
//!   stronger tone under −32 dBm0 — nothing above −22 dB of its weaker tone anywhere 40 Hz clear
//!   of its tones. Two notes of a chord on a row and a column frequency come with the chord's
//!   other notes, two notes straddling a DTMF frequency beat as one tone off it, and
//!   equal-tempered notes near DTMF frequencies (F5, G5, A♯5, E6, F♯6) are 0.2–1.8 % off them;
//!   through AMR-NB 4.75 kbit/s their partials are gone, but the codec's noise is left beside
//!   them. A sender's sines stand alone however twisted, off frequency or quiet they arrive.
//! * The guards judge each attempt (one every 5 ms while the windows qualify), and a held note's
//!   remainder now and then dips under a limit: after six verdicts against the same digit (one for
//!   a pair more than 1.65 % off with other sound beside it) it is not tried again until a window
//!   no longer qualifies for it. A digit through AMR-NB 4.75 kbit/s passed within five attempts;
//!   held notes through it that fooled the detector passed on the sixth to the twelfth.
//!
//! The guards run only when everything else has passed, so they cost nothing per sample.
//!
//! A digit **ends** after five consecutive windows (25 ms) that neither qualify for it nor keep its pair
//! within 10 dB of its running level (each tone within 20 dB), or in which another digit qualifies: a
//! 40 ms pause leaves at least five windows fully silent, a 20 ms drop-out at most four mostly silent.
//!
//! Onset and end positions are refined from the sub-block energies to a few milliseconds.
//!
//! # Use
//!
//! One [`DtmfDetector`] per call. Feed it linear 8 kHz samples with [`DtmfDetector::push`] (any length;
//! one RTP frame is 160 samples), then drain [`DtmfDetector::poll_event`]. At the end of the stream call
//! [`DtmfDetector::finish`] and drain again. The detector never allocates per sample; its event queue only
//! grows if the caller pushes minutes of audio without polling.
//!
//! # Layout
//!
//! `dtmf/mod.rs` holds the detector's state machine (per window: start, present, end) and the onset
//! and end estimates; `spectrum.rs` the sub-block DFT and the single-window test; `start.rs` the
//! start rule over five windows; `guards.rs` the harmonic and chord guards; `simd.rs` the AVX2 + FMA
//! path.

mod guards;
mod simd;
mod spectrum;
mod start;

use simd::cpu_has_fma;
pub use simd::{prefetch, prefetch_start};
use spectrum::{SubBlock, Window, TABLES};
use std::collections::VecDeque;

/// Sample rate the detector works at.
pub const SAMPLE_RATE: u32 = 8000;
/// Row (low-group) frequencies in Hz.
pub const ROW_FREQS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column (high-group) frequencies in Hz.
pub const COL_FREQS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Keypad layout: `KEYS[row][col]`.
pub const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The row and column frequency (Hz) of a DTMF digit, or `None` for a character that is no digit.
pub fn digit_freqs(digit: char) -> Option<(f64, f64)> {
    let d = digit.to_ascii_uppercase();
    for (r, row) in KEYS.iter().enumerate() {
        for (c, &k) in row.iter().enumerate() {
            if k == d {
                return Some((ROW_FREQS[r], COL_FREQS[c]));
            }
        }
    }
    None
}

/// What the detector reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfEvent {
    /// A digit was recognised; `start` is the sample position of its onset (estimated).
    Started { digit: char, start: u64 },
    /// The digit stopped; `end` is the sample position just after its last tone sample (estimated).
    Ended { digit: char, start: u64, end: u64 },
}

/// Samples per sub-block (5 ms).
const SUB: usize = 40;
/// Sub-blocks per analysis window (120 samples, 15 ms).
const WIN_SUBS: usize = 3;
/// Samples per analysis window.
const WIN: usize = SUB * WIN_SUBS;
/// Consecutive qualifying windows needed to start a digit.
const START_WINDOWS: usize = 5;
/// Consecutive windows without the tone pair that end a digit.
const END_WINDOWS: u32 = 5;
/// Guard rejections after which a digit may not start until a window no longer qualifies for it
/// (each 5 ms apart at the most: a digit through AMR-NB 4.75 kbit/s was turned down at most 4
/// times before it passed, a held note or vowel through it that fooled the detector 6–12 times).
const MAX_REJECTIONS: u8 = 6;
/// Sub-block history kept for onset/end refinement.
const SUB_RING: usize = 16;
/// Window history kept for the start rule.
const WIN_RING: usize = 8;

/// Power (mean square, linear sample units) of a 0 dBm0 sine: peak 32768·10^(−3.14/20).
const DBM0_POWER: f32 = 2.605_1e8;
/// Lowest accepted per-tone level, −48 dBm0 (spec: accept −36, reject −55; room for 8 dB twist at −36).
const MIN_TONE_POWER: f32 = DBM0_POWER * 1.584_893_2e-5;
/// A digit in progress is present while its pair stays above this fraction of its start level (−10 dB)…
const PRESENT_FRACTION: f32 = 0.1;
/// …each tone stays above this fraction of its own start level (−20 dB; a codec may fade one tone)…
const PRESENT_SINGLE: f32 = 0.01;
/// …and the pair carries at least this share of the window energy.
const PRESENT_RATIO: f32 = 0.15;
/// A sub-block counts as fully toned when its energy reaches this fraction of the tone's energy.
const FULL_SUB: f32 = 0.7;

#[derive(Clone, Copy, Debug)]
enum State {
    /// No digit sounds. `rejected`: the digit the newest windows qualify for and how many times
    /// the talk-off guards have turned it down since they began to (at [`MAX_REJECTIONS`] it may
    /// not start until a window no longer qualifies for it).
    Idle { rejected: Option<(u8, u8)> },
    Active {
        digit: u8,
        start: u64,
        ref_row: f32,
        ref_col: f32,
        absent: u32,
        /// Index (sub-block counter) of the last sub-block of the last window where the pair was present.
        last_present: u64,
    },
}

/// Streaming DTMF detector for one 8 kHz audio stream. See the module docs.
///
/// Polling order: `push` → drain `poll_event` → … → `finish` → drain `poll_event`.
pub struct DtmfDetector {
    /// Samples of the sub-block being filled (they go straight into its slot in `raw`).
    fill: usize,
    /// Samples pushed since new/reset.
    position: u64,
    /// Sub-blocks analysed since new/reset.
    subs_done: u64,
    /// e^{−jω_k·n0} for the next sub-block start n0.
    phasor_re: [f32; 8],
    phasor_im: [f32; 8],
    subs: [SubBlock; SUB_RING],
    /// The samples of each sub-block in `subs` (the DFT kernel reads them from here; the harmonic
    /// guard, run only at a digit's start, reads the last few), and of the one being filled.
    raw: [[f32; SUB]; SUB_RING],
    wins: [Window; WIN_RING],
    state: State,
    events: VecDeque<DtmfEvent>,
    /// Use the AVX2 + FMA kernel.
    fused: bool,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl DtmfDetector {
    /// A detector for 8 kHz audio with the default (specification) thresholds.
    pub fn new() -> Self {
        DtmfDetector {
            fill: 0,
            position: 0,
            subs_done: 0,
            phasor_re: [1.0; 8],
            phasor_im: [0.0; 8],
            subs: [SubBlock::default(); SUB_RING],
            raw: [[0.0; SUB]; SUB_RING],
            wins: [Window::default(); WIN_RING],
            state: State::Idle { rejected: None },
            events: VecDeque::with_capacity(16),
            fused: cpu_has_fma(),
        }
    }

    /// Feed linear 16-bit samples at 8 kHz. Any length.
    pub fn push(&mut self, samples: &[i16]) {
        self.push_on_this_cpu(samples)
    }

    /// The whole per-sample and per-sub-block path: conversion, DFT (`FUSED`: the AVX2 + FMA
    /// kernel, only reached through `simd.rs`), window sums, the window test and the
    /// state machine.
    #[inline(always)]
    fn push_with<const FUSED: bool>(&mut self, samples: &[i16]) {
        let mut rest = samples;
        if self.fill > 0 {
            let take = (SUB - self.fill).min(rest.len());
            let slot = &mut self.raw[ring(self.subs_done, SUB_RING)];
            convert(&mut slot[self.fill..self.fill + take], &rest[..take]);
            self.fill += take;
            self.position += take as u64;
            rest = &rest[take..];
            if self.fill < SUB {
                return;
            }
            self.fill = 0;
            self.analyse::<FUSED>();
        }
        let (chunks, tail) = rest.as_chunks::<SUB>();
        for chunk in chunks {
            convert(&mut self.raw[ring(self.subs_done, SUB_RING)], chunk);
            self.position += SUB as u64;
            self.analyse::<FUSED>();
        }
        convert(&mut self.raw[ring(self.subs_done, SUB_RING)], tail);
        self.fill = tail.len();
        self.position += tail.len() as u64;
    }

    /// Asks the CPU to bring what a [`push`](DtmfDetector::push) of `samples` samples is going to
    /// touch into its caches (a hint: nothing changes). For a caller with many detectors: one
    /// packet's push touches ~20 of the detector's 75 cache lines, and with thousands of calls
    /// they are out of the cache when its packet comes; prefetched for a batch of packets first,
    /// they arrive together instead of one miss after the other.
    ///
    /// It reads the detector's positions: call [`prefetch_head`](DtmfDetector::prefetch_head)
    /// for a batch first, then this.
    pub fn prefetch(&self, samples: usize) {
        // (Never more than the rings hold, whatever `samples` says.)
        let subs = (self.fill.saturating_add(samples) / SUB).min(SUB_RING - 1) as u64;
        // The raw slots filled, the sub-blocks written and those the windows sum with them.
        for i in 0..=subs {
            prefetch(&self.raw[ring(self.subs_done + i, SUB_RING)]);
        }
        let back = self.subs_done.saturating_sub(WIN_SUBS as u64 - 1);
        for i in back..self.subs_done + subs {
            prefetch(&self.subs[ring(i, SUB_RING)]);
            prefetch(&self.wins[ring(i, WIN_RING)]);
        }
    }

    /// Asks the CPU to bring the detector's positions and state into its caches (a hint that
    /// reads nothing): what [`prefetch`](DtmfDetector::prefetch) and every push read first.
    pub fn prefetch_head(&self) {
        prefetch(&self.fill);
        prefetch(&self.position);
        prefetch(&self.subs_done);
        prefetch(&self.phasor_re);
        prefetch(&self.phasor_im);
        prefetch(&self.state);
        prefetch(&self.events);
        prefetch(&self.fused);
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<DtmfEvent> {
        self.events.pop_front()
    }

    /// End of stream: a digit still sounding is closed (its `Ended` is queued).
    pub fn finish(&mut self) {
        if let State::Active {
            digit,
            start,
            ref_row,
            ref_col,
            last_present,
            ..
        } = self.state
        {
            let end = self
                .estimate_end(last_present, ref_row + ref_col)
                .max(start + 1);
            self.events.push_back(DtmfEvent::Ended {
                digit: key(digit),
                start,
                end,
            });
            self.state = State::Idle { rejected: None };
        }
    }

    /// Forget everything, as if newly created (queued events are dropped too).
    pub fn reset(&mut self) {
        let events = std::mem::take(&mut self.events);
        *self = DtmfDetector {
            events,
            ..DtmfDetector::new()
        };
        self.events.clear();
    }

    /// Samples pushed since `new` or `reset`.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// DFT + energy of the sub-block just filled in `raw`, then the per-sub-block decision logic.
    /// The kernel reads the samples back from there: it broadcasts each one straight from memory,
    /// cheaper than from a register. The slot being filled is never one the guards read
    /// (the last [`GUARD_SUBS`] analysed ones, fewer than [`SUB_RING`]).
    ///
    /// [`GUARD_SUBS`]: guards::GUARD_SUBS
    #[inline(always)]
    fn analyse<const FUSED: bool>(&mut self) {
        let t = &*TABLES;
        let idx = self.subs_done;
        let (sums, energy) = simd::dft::<FUSED>(&self.raw[ring(idx, SUB_RING)], &t.dft);
        let mut dft = [0.0f32; 16];
        let (pr, pi) = (&mut self.phasor_re, &mut self.phasor_im);
        for k in 0..8 {
            let (re, im) = (sums[k], sums[k + 8]);
            dft[k] = re * pr[k] - im * pi[k];
            dft[k + 8] = re * pi[k] + im * pr[k];
            let nr = pr[k] * t.step_re[k] - pi[k] * t.step_im[k];
            let ni = pr[k] * t.step_im[k] + pi[k] * t.step_re[k];
            // Keep |phasor| = 1 against rounding drift.
            let g = 1.5 - 0.5 * (nr * nr + ni * ni);
            pr[k] = nr * g;
            pi[k] = ni * g;
        }
        let start = self.position - SUB as u64 - self.fill as u64;
        self.subs[ring(idx, SUB_RING)] = SubBlock { dft, energy, start };
        self.subs_done += 1;
        if self.subs_done >= WIN_SUBS as u64 {
            self.decide::<FUSED>();
        }
    }

    /// Sub-block number `i` (must be within the ring).
    fn sub(&self, i: u64) -> &SubBlock {
        &self.subs[(i % SUB_RING as u64) as usize]
    }

    /// Window ending with sub-block `last` (window counter = sub-block counter of its last sub-block).
    fn win(&self, last: u64) -> &Window {
        &self.wins[(last % WIN_RING as u64) as usize]
    }

    /// Build the newest window and run the state machine.
    #[inline(always)]
    fn decide<const FUSED: bool>(&mut self) {
        let last = self.subs_done - 1;
        let subs = std::array::from_fn(|i| &self.subs[ring(last - i as u64, SUB_RING)]);
        let window = &mut self.wins[ring(last, WIN_RING)];
        window.build(subs);
        let Window {
            power,
            mean_power,
            candidate,
            ..
        } = *window;

        match self.state {
            State::Idle { rejected } => match rejected {
                Some((digit, n)) if candidate == Some(digit) => {
                    if n < MAX_REJECTIONS {
                        self.try_start_with::<FUSED>(last);
                    }
                }
                _ => {
                    if rejected.is_some() {
                        self.state = State::Idle { rejected: None };
                    }
                    if candidate.is_some() {
                        self.try_start_with::<FUSED>(last);
                    }
                }
            },
            State::Active {
                digit,
                start,
                ref_row,
                ref_col,
                absent,
                last_present,
            } => {
                let (r, c) = split(digit);
                let p_row = power[r];
                let p_col = power[c + 4];
                let same = candidate == Some(digit);
                let other = candidate.is_some() && !same;
                let present = same
                    || (!other
                        && p_row + p_col >= PRESENT_FRACTION * (ref_row + ref_col)
                        && p_row >= PRESENT_SINGLE * ref_row
                        && p_col >= PRESENT_SINGLE * ref_col
                        && p_row + p_col >= PRESENT_RATIO * mean_power);
                if present {
                    // Follow slow level changes (a codec's gain control) while the digit clearly sounds.
                    let track = |r: f32, p: f32| if same { 0.75 * r + 0.25 * p } else { r };
                    self.state = State::Active {
                        digit,
                        start,
                        ref_row: track(ref_row, p_row),
                        ref_col: track(ref_col, p_col),
                        absent: 0,
                        last_present: last,
                    };
                } else if absent + 1 >= END_WINDOWS {
                    let end = self
                        .estimate_end(last_present, ref_row + ref_col)
                        .max(start + 1);
                    self.events.push_back(DtmfEvent::Ended {
                        digit: key(digit),
                        start,
                        end,
                    });
                    self.state = State::Idle { rejected: None };
                } else {
                    self.state = State::Active {
                        digit,
                        start,
                        ref_row,
                        ref_col,
                        absent: absent + 1,
                        last_present,
                    };
                }
            }
        }
    }

    /// Onset estimate: walk back over sub-blocks that carry the full tone energy, then add the covered
    /// part of the sub-block before them.
    fn estimate_onset(&self, last: u64, tone_power: f32) -> u64 {
        let tone_energy = tone_power * SUB as f32;
        let oldest_kept = self.subs_done.saturating_sub(SUB_RING as u64);
        let mut k = last;
        while k > oldest_kept && self.sub(k - 1).energy >= FULL_SUB * tone_energy {
            k -= 1;
        }
        let full_start = self.sub(k).start;
        if k == oldest_kept || k == 0 {
            return full_start;
        }
        let partial = self.sub(k - 1).energy;
        let floor = if k >= oldest_kept + 2 {
            self.sub(k - 2).energy.min(partial)
        } else {
            0.0
        };
        let frac = ((partial - floor) / tone_energy).clamp(0.0, 1.0);
        full_start - (frac * SUB as f32).round() as u64
    }

    /// End estimate: from the first sub-block of the last window where the pair was present, walk forward
    /// over fully toned sub-blocks, then add the covered part of the next one.
    fn estimate_end(&self, last_present: u64, tone_power: f32) -> u64 {
        let tone_energy = tone_power * SUB as f32;
        let newest = self.subs_done.saturating_sub(1);
        let oldest_kept = self.subs_done.saturating_sub(SUB_RING as u64);
        let mut k = last_present
            .saturating_sub(WIN_SUBS as u64 - 1)
            .max(oldest_kept);
        if self.subs_done == 0 {
            return self.position;
        }
        while k <= newest && self.sub(k).energy >= FULL_SUB * tone_energy {
            k += 1;
        }
        if k > newest {
            return self.sub(newest).start + SUB as u64;
        }
        let partial = self.sub(k).energy;
        let floor = if k < newest {
            self.sub(k + 1).energy.min(partial)
        } else {
            0.0
        };
        let frac = ((partial - floor) / tone_energy).clamp(0.0, 1.0);
        self.sub(k).start + (frac * SUB as f32).round() as u64
    }
}

/// Slot of counter `i` in a ring of `len` entries.
#[inline(always)]
fn ring(i: u64, len: usize) -> usize {
    (i % len as u64) as usize
}

/// Converts samples to `f32` (exactly) into the front of `out`.
#[inline(always)]
fn convert(out: &mut [f32], samples: &[i16]) {
    for (d, &s) in out.iter_mut().zip(samples) {
        *d = f32::from(s);
    }
}

fn split(digit: u8) -> (usize, usize) {
    (usize::from(digit / 4), usize::from(digit % 4))
}

fn key(digit: u8) -> char {
    let (r, c) = split(digit);
    KEYS[r][c]
}

#[cfg(test)]
mod tests {
    use super::spectrum::dft_portable;
    use super::*;
    use std::f64::consts::PI;

    fn tone(digit: char, amp: f64, len: usize, phase: u64) -> Vec<i16> {
        let (fr, fc) = digit_freqs(digit).unwrap();
        (0..len)
            .map(|n| {
                let t = (n as u64 + phase) as f64 / 8000.0;
                (amp * ((2.0 * PI * fr * t).sin() + (2.0 * PI * fc * t).sin())) as i16
            })
            .collect()
    }

    fn run(samples: &[i16]) -> Vec<DtmfEvent> {
        let mut d = DtmfDetector::new();
        for chunk in samples.chunks(160) {
            d.push(chunk);
        }
        d.finish();
        std::iter::from_fn(|| d.poll_event()).collect()
    }

    #[test]
    fn every_key_is_detected_with_its_timing() {
        for row in KEYS {
            for k in row {
                let mut s = vec![0i16; 403];
                s.extend(tone(k, 5000.0, 640, 0));
                s.extend(vec![0i16; 800]);
                let ev = run(&s);
                assert_eq!(ev.len(), 2, "{k}: {ev:?}");
                let DtmfEvent::Ended { digit, start, end } = ev[1] else {
                    panic!("{ev:?}")
                };
                assert_eq!(digit, k);
                assert!(start.abs_diff(403) <= 16, "{k} start {start}");
                assert!(end.abs_diff(403 + 640) <= 16, "{k} end {end}");
            }
        }
    }

    #[test]
    fn chunking_does_not_change_results() {
        let mut s = vec![0i16; 97];
        for k in ['1', '5', '9', '#'] {
            s.extend(tone(k, 3000.0, 480, 7));
            s.extend(vec![0i16; 480]);
        }
        let whole = run(&s);
        let mut d = DtmfDetector::new();
        for chunk in s.chunks(7) {
            d.push(chunk);
        }
        d.finish();
        let bits: Vec<_> = std::iter::from_fn(|| d.poll_event()).collect();
        assert_eq!(whole, bits);
        assert_eq!(whole.len(), 8);
    }

    #[test]
    fn digit_still_sounding_at_finish_is_closed() {
        let ev = run(&tone('7', 4000.0, 800, 3));
        assert_eq!(ev.len(), 2);
        assert!(
            matches!(
                ev[1],
                DtmfEvent::Ended {
                    digit: '7',
                    end: 800,
                    ..
                }
            ),
            "{ev:?}"
        );
    }

    /// The energy and the DFT are right (the AVX2 + FMA kernel is checked against this one in
    /// `simd.rs`).
    #[test]
    fn portable_kernel_is_right() {
        let t = &*TABLES;
        let mut block = [0.0f32; SUB];
        for (n, x) in block.iter_mut().enumerate() {
            *x = (20000.0 * (n as f32 * 0.7).sin()).round() - 3000.0;
        }
        let (_, plain_energy) = dft_portable(&block, &t.dft);
        let energy: f32 = block.iter().map(|x| x * x).sum();
        assert!((plain_energy / energy - 1.0).abs() < 1e-5);
        // Bin k of a pure tone at ω_k carries amplitude·SUB/2.
        let w = t.omega[5];
        let tone: [f32; SUB] = std::array::from_fn(|n| (1000.0 * (w * n as f64).cos()) as f32);
        let (x, _) = dft_portable(&tone, &t.dft);
        let mag = (x[5] * x[5] + x[13] * x[13]).sqrt();
        assert!(
            (mag / (1000.0 * SUB as f32 / 2.0) - 1.0).abs() < 0.05,
            "{mag}"
        );
    }

    /// Each sub-block's DFT, rotated by the running phasor, is the DFT on the absolute time axis, Σ x[n]·e^{−jω_k·n} over the sub-block's samples n (to f32
    /// precision), on either kernel. (Hours into a stream the phasor has drifted by a hundredth of
    /// a radian or so; only the phase between nearby sub-blocks matters, and that stays right.)
    #[test]
    fn sub_block_dft_is_on_the_absolute_time_axis() {
        let t = &*TABLES;
        let mut seed = 12345u64;
        let samples: Vec<i16> = (0..SUB * 64)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 49) as i16 - 8000
            })
            .collect();
        for fused in [false, cpu_has_fma()] {
            let mut d = DtmfDetector::new();
            d.fused = fused;
            d.push(&samples[..7]);
            d.push(&samples[7..]);
            // The sub-blocks still in the ring.
            for idx in 64 - SUB_RING as u64..64 {
                let sub = d.sub(idx);
                let block = &samples[idx as usize * SUB..][..SUB];
                for k in 0..8 {
                    let (mut re, mut im) = (0.0f64, 0.0f64);
                    for (n, &x) in block.iter().enumerate() {
                        let a = t.omega[k] * (idx * SUB as u64 + n as u64) as f64;
                        re += f64::from(x) * a.cos();
                        im -= f64::from(x) * a.sin();
                    }
                    let scale = 8000.0 * SUB as f64;
                    let (got_re, got_im) = (f64::from(sub.dft[k]), f64::from(sub.dft[k + 8]));
                    assert!(
                        (got_re - re).abs() < 1e-5 * scale && (got_im - im).abs() < 1e-5 * scale,
                        "fused {fused}, sub-block {idx}, bin {k}: {got_re} {got_im} vs {re} {im}"
                    );
                }
            }
        }
    }

    #[test]
    fn reset_forgets_position_and_state() {
        let mut d = DtmfDetector::new();
        d.push(&tone('3', 4000.0, 800, 0));
        assert_eq!(d.position(), 800);
        d.reset();
        assert_eq!(d.position(), 0);
        d.finish();
        assert_eq!(d.poll_event(), None);
    }
}
