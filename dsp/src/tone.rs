//! Comfort signals the caller hears while we work: cadenced call-progress tones ([`ToneGenerator`]:
//! Dutch ringback and busy, ITU-T E.180 Suppl. 2 / KPN: 425 Hz) and a looped recorded prompt
//! ([`LoopedPrompt`]), or [`Silence`]. All fill caller-supplied frames of 16-bit linear PCM at 8 kHz, keep their place
//! between calls (so consecutive 20 ms frames join without a click) and never allocate.
//!
//! Levels are in dBm0 on the A-law scale of ITU-T G.711: a sine whose peak just reaches the codec's
//! overload point (±32768 at 16-bit scale) is +3.14 dBm0, so 0 dBm0 is a peak of 32768·10^(−3.14/20).

use std::f64::consts::TAU;

/// Samples per second of every signal in this module.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms RTP frame.
pub const FRAME: usize = 160;
/// Level of a full-scale sine in dBm0 (A-law overload point, G.711 §3). Not π, despite the digits.
#[allow(clippy::approx_constant)]
pub const FULL_SCALE_DBM0: f64 = 3.14;

/// Why a signal could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ToneError {
    /// Frequency must be between 1 Hz and just below the Nyquist frequency (4000 Hz).
    #[error("tone frequency {0} Hz is outside 1..4000 Hz")]
    Frequency(u32),
    /// Level must be a finite number no louder than full scale.
    #[error("tone level {0} dBm0 is not a finite level at or below +3.14 dBm0")]
    Level(f64),
    /// A cadence needs a tone part; a cycle of only silence is not a tone.
    #[error("cadence has no tone part")]
    EmptyCadence,
    /// A prompt needs at least one sample.
    #[error("prompt has no samples")]
    EmptyPrompt,
}

/// Anything that can fill the next frame of outgoing audio.
pub trait SignalSource {
    /// Overwrites all of `out` with the next `out.len()` samples and advances by that many.
    fn fill(&mut self, out: &mut [i16]);
}

/// Digital silence: what an answered call sends before there is anything to hear, so the far end's
/// RTP inactivity timers and NAT bindings see a live stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Silence;

impl SignalSource for Silence {
    fn fill(&mut self, out: &mut [i16]) {
        out.fill(0);
    }
}

/// On/off pattern of a tone, in samples. `off == 0` means a continuous tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// Samples of tone at the start of each cycle.
    pub on: u32,
    /// Samples of silence after the tone.
    pub off: u32,
}

impl Cadence {
    /// A tone that never pauses.
    pub const CONTINUOUS: Cadence = Cadence {
        on: SAMPLE_RATE,
        off: 0,
    };

    /// Cadence from milliseconds (8 samples per millisecond).
    pub const fn from_ms(on_ms: u32, off_ms: u32) -> Cadence {
        Cadence {
            on: on_ms.saturating_mul(SAMPLE_RATE / 1000),
            off: off_ms.saturating_mul(SAMPLE_RATE / 1000),
        }
    }

    fn period(self) -> u64 {
        u64::from(self.on) + u64::from(self.off)
    }
}

/// A single-frequency tone gated by a [`Cadence`]. Each burst starts at phase 0 (sine starts at 0,
/// so no click); within a burst the phase runs on across `fill` calls.
///
/// The phase is kept as the exact rational `n·f / 8000` (an integer modulo 8000), so the frequency
/// does not drift however long the tone plays.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    freq: u32,
    peak: f64,
    cadence: Cadence,
    /// Position within the current cadence cycle, `0..cadence.period()`.
    pos: u64,
    /// `(samples since burst start · freq) mod 8000`.
    phase: u32,
}

impl ToneGenerator {
    /// Dutch ringback ("kiestoon"/"beltoon" of KPN): 425 Hz, 1 s on, 4 s off, −13 dBm0.
    pub fn dutch_ringback() -> ToneGenerator {
        // Invariant: 425 Hz, −13 dBm0 and a 1 s burst are all within the limits `new` checks.
        Self::new(425, -13.0, Cadence::from_ms(1000, 4000)).expect("constant, valid parameters")
    }

    /// Dutch busy tone ("bezettoon"): 425 Hz, 0.5 s on, 0.5 s off, −13 dBm0.
    pub fn dutch_busy() -> ToneGenerator {
        // Invariant: as for `dutch_ringback`.
        Self::new(425, -13.0, Cadence::from_ms(500, 500)).expect("constant, valid parameters")
    }

    /// A tone of `freq_hz` at `level_dbm0`, switched on and off by `cadence`, starting at the
    /// beginning of a burst.
    pub fn new(
        freq_hz: u32,
        level_dbm0: f64,
        cadence: Cadence,
    ) -> Result<ToneGenerator, ToneError> {
        if freq_hz == 0 || freq_hz >= SAMPLE_RATE / 2 {
            return Err(ToneError::Frequency(freq_hz));
        }
        if !level_dbm0.is_finite() || level_dbm0 > FULL_SCALE_DBM0 {
            return Err(ToneError::Level(level_dbm0));
        }
        if cadence.on == 0 {
            return Err(ToneError::EmptyCadence);
        }
        Ok(ToneGenerator {
            freq: freq_hz,
            peak: dbm0_to_peak(level_dbm0),
            cadence,
            pos: 0,
            phase: 0,
        })
    }

    /// Peak amplitude of the tone at 16-bit scale.
    pub fn peak(&self) -> f64 {
        self.peak
    }

    /// Starts again at the beginning of a burst.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.phase = 0;
    }
}

impl SignalSource for ToneGenerator {
    fn fill(&mut self, out: &mut [i16]) {
        let on = u64::from(self.cadence.on);
        let period = self.cadence.period();
        for o in out.iter_mut() {
            *o = if self.pos < on {
                let s = self.peak * (TAU * f64::from(self.phase) / f64::from(SAMPLE_RATE)).sin();
                self.phase = (self.phase + self.freq) % SAMPLE_RATE;
                // |s| ≤ peak ≤ 32768·10^0 and `as` saturates, so this cannot wrap.
                s.round() as i16
            } else {
                0
            };
            self.pos += 1;
            if self.pos >= period {
                // A continuous tone (off == 0) keeps its phase across the cycle boundary.
                self.pos = 0;
                if self.cadence.off != 0 {
                    self.phase = 0;
                }
            }
        }
    }
}

/// Plays a recorded prompt over and over, optionally with silence between repetitions. `B` is any
/// sample buffer: `&[i16]`, `Vec<i16>`, or an `Arc<[i16]>` shared by all calls.
#[derive(Debug, Clone)]
pub struct LoopedPrompt<B> {
    samples: B,
    gap: usize,
    pos: usize,
}

impl<B: AsRef<[i16]>> LoopedPrompt<B> {
    /// Loops `samples` back to back.
    pub fn new(samples: B) -> Result<LoopedPrompt<B>, ToneError> {
        if samples.as_ref().is_empty() {
            return Err(ToneError::EmptyPrompt);
        }
        Ok(LoopedPrompt {
            samples,
            gap: 0,
            pos: 0,
        })
    }

    /// Inserts `gap` samples of silence after each repetition.
    pub fn with_gap(mut self, gap: usize) -> LoopedPrompt<B> {
        self.gap = gap;
        self
    }

    /// Starts again at the first sample of the prompt.
    pub fn reset(&mut self) {
        self.pos = 0;
    }
}

impl<B: AsRef<[i16]>> SignalSource for LoopedPrompt<B> {
    fn fill(&mut self, mut out: &mut [i16]) {
        let samples = self.samples.as_ref();
        let len = samples.len();
        let period = len + self.gap;
        while !out.is_empty() {
            let (chunk, rest) = if self.pos < len {
                let n = (len - self.pos).min(out.len());
                let (chunk, rest) = out.split_at_mut(n);
                chunk.copy_from_slice(&samples[self.pos..self.pos + n]);
                (n, rest)
            } else {
                let n = (period - self.pos).min(out.len());
                let (chunk, rest) = out.split_at_mut(n);
                chunk.fill(0);
                (n, rest)
            };
            out = rest;
            self.pos += chunk;
            if self.pos >= period {
                self.pos = 0;
            }
        }
    }
}

/// Peak amplitude (16-bit scale) of a sine at `level_dbm0`.
pub fn dbm0_to_peak(level_dbm0: f64) -> f64 {
    32768.0 * 10f64.powf((level_dbm0 - FULL_SCALE_DBM0) / 20.0)
}

/// Level in dBm0 of a signal with RMS value `rms` (16-bit scale).
pub fn rms_to_dbm0(rms: f64) -> f64 {
    20.0 * (rms * std::f64::consts::SQRT_2 / 32768.0).log10() + FULL_SCALE_DBM0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(gen: &mut impl SignalSource, n: usize) -> Vec<i16> {
        let mut out = vec![0i16; n];
        for frame in out.chunks_mut(FRAME) {
            gen.fill(frame);
        }
        out
    }

    /// Frequency from the first and last upward zero crossing, interpolated between samples.
    fn measured_frequency(s: &[i16]) -> f64 {
        let mut crossings = Vec::new();
        for i in 1..s.len() {
            let (a, b) = (f64::from(s[i - 1]), f64::from(s[i]));
            if a < 0.0 && b >= 0.0 {
                crossings.push((i - 1) as f64 + (-a) / (b - a));
            }
        }
        let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
        (crossings.len() - 1) as f64 * f64::from(SAMPLE_RATE) / (last - first)
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    /// Goertzel power of `freq` in `s`, normalised so a sine of amplitude A gives A²/4·N².
    fn goertzel(s: &[i16], freq: f64) -> f64 {
        let k = 2.0 * (TAU * freq / f64::from(SAMPLE_RATE)).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in s {
            let s0 = f64::from(x) + k * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - k * s1 * s2
    }

    #[test]
    fn ringback_is_425_hz() {
        let s = generate(&mut ToneGenerator::dutch_ringback(), 8000);
        let f = measured_frequency(&s);
        assert!((f - 425.0).abs() < 0.05, "measured {f} Hz");
        let at = goertzel(&s, 425.0);
        assert!(at > 1000.0 * goertzel(&s, 400.0) && at > 1000.0 * goertzel(&s, 450.0));
    }

    #[test]
    fn ringback_level_is_minus_13_dbm0() {
        let mut gen = ToneGenerator::dutch_ringback();
        // 8000 samples is a whole number (425) of periods, so the RMS is exact.
        let s = generate(&mut gen, 8000);
        let level = rms_to_dbm0(rms(&s));
        assert!((level - -13.0).abs() < 0.01, "level {level} dBm0");
        assert!((gen.peak() - 5110.0).abs() < 2.0, "peak {}", gen.peak());
        // Through the A-law codec the level stays within 0.1 dB.
        let coded: Vec<i16> = s
            .iter()
            .map(|&x| crate::g711::alaw_decode(crate::g711::alaw_encode(x)))
            .collect();
        assert!((rms_to_dbm0(rms(&coded)) - -13.0).abs() < 0.1);
    }

    #[test]
    fn custom_level_is_honoured() {
        let mut gen = ToneGenerator::new(1000, 0.0, Cadence::CONTINUOUS).unwrap();
        let s = generate(&mut gen, 8000);
        assert!((rms_to_dbm0(rms(&s)) - 0.0).abs() < 0.01);
        let mut quiet = ToneGenerator::new(1000, -30.0, Cadence::CONTINUOUS).unwrap();
        let q = generate(&mut quiet, 8000);
        assert!((rms_to_dbm0(rms(&q)) - -30.0).abs() < 0.05);
    }

    /// Asserts the tone is audible in every 8-sample window inside `0..on` of each cycle and exactly
    /// silent in `on..on+off`. An 8-sample window spans < 140° of a 425 Hz cycle, so it always holds a
    /// sample above half the peak.
    fn assert_cadence(s: &[i16], on: usize, off: usize, peak: f64) {
        let period = on + off;
        for start in 0..s.len() - 8 {
            let c = start % period;
            let w = &s[start..start + 8];
            if c + 8 <= on {
                let max = w
                    .iter()
                    .map(|x| f64::from(x.unsigned_abs()))
                    .fold(0.0, f64::max);
                assert!(max > peak / 2.0, "quiet window at sample {start}");
            } else if c >= on && c + 8 <= period {
                assert!(
                    w.iter().all(|&x| x == 0),
                    "sound in the pause at sample {start}"
                );
            }
        }
    }

    #[test]
    fn ringback_cadence_is_one_second_on_four_off_to_the_sample() {
        let mut gen = ToneGenerator::dutch_ringback();
        let s = generate(&mut gen, 3 * 40_000);
        assert_cadence(&s, 8000, 32_000, gen.peak());
        // The burst ends on sample 7999 and the next starts on sample 40 000.
        assert_ne!(s[7999], 0);
        assert!(s[8000..40_000].iter().all(|&x| x == 0));
        assert_eq!(s[40_000], 0, "burst starts at phase 0");
        assert_ne!(s[40_001], 0);
        assert_eq!(s[..8000], s[40_000..48_000], "every burst is the same");
    }

    #[test]
    fn busy_cadence_is_half_second_on_half_off_to_the_sample() {
        let mut gen = ToneGenerator::dutch_busy();
        let s = generate(&mut gen, 4 * 8000);
        assert_cadence(&s, 4000, 4000, gen.peak());
        assert_ne!(s[3999], 0);
        assert!(s[4000..8000].iter().all(|&x| x == 0));
        assert_eq!(s[..4000], s[8000..12_000]);
        let f = measured_frequency(&s[..4000]);
        assert!((f - 425.0).abs() < 0.1, "measured {f} Hz");
    }

    #[test]
    fn phase_is_continuous_across_frames_of_any_size() {
        let whole = {
            let mut g = ToneGenerator::dutch_ringback();
            let mut v = vec![0i16; 20_000];
            g.fill(&mut v);
            v
        };
        let mut g = ToneGenerator::dutch_ringback();
        let mut pieces = Vec::new();
        for len in [160usize, 1, 7, 333, 160, 19_339] {
            let mut f = vec![0i16; len];
            g.fill(&mut f);
            pieces.extend_from_slice(&f);
        }
        assert_eq!(pieces, whole);
        // Inside a burst no step between samples exceeds what a 425 Hz sine can do.
        let max_step = gen_max_step(ToneGenerator::dutch_ringback().peak(), 425.0);
        for w in whole[..8000].windows(2) {
            assert!(f64::from((w[1] - w[0]).abs()) <= max_step, "jump {w:?}");
        }
    }

    fn gen_max_step(peak: f64, freq: f64) -> f64 {
        peak * TAU * freq / f64::from(SAMPLE_RATE) + 1.0
    }

    #[test]
    fn continuous_tone_never_pauses_or_jumps() {
        let mut g = ToneGenerator::new(440, -10.0, Cadence::CONTINUOUS).unwrap();
        let s = generate(&mut g, 5 * 8000 + 80);
        let max_step = gen_max_step(g.peak(), 440.0);
        for w in s.windows(2) {
            assert!(f64::from((w[1] - w[0]).abs()) <= max_step);
        }
        assert_cadence(&s, 8000, 0, g.peak());
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert_eq!(
            ToneGenerator::new(0, -13.0, Cadence::CONTINUOUS).unwrap_err(),
            ToneError::Frequency(0)
        );
        assert!(ToneGenerator::new(4000, -13.0, Cadence::CONTINUOUS).is_err());
        assert!(ToneGenerator::new(425, 3.5, Cadence::CONTINUOUS).is_err());
        assert!(ToneGenerator::new(425, f64::NAN, Cadence::CONTINUOUS).is_err());
        assert_eq!(
            ToneGenerator::new(425, -13.0, Cadence { on: 0, off: 8000 }).unwrap_err(),
            ToneError::EmptyCadence
        );
        assert_eq!(
            LoopedPrompt::new(&[][..]).unwrap_err(),
            ToneError::EmptyPrompt
        );
    }

    #[test]
    fn prompt_loops_seamlessly_across_frames() {
        let prompt: Vec<i16> = (1..=250).collect();
        let mut p = LoopedPrompt::new(prompt.as_slice()).unwrap();
        let s = generate(&mut p, 1000);
        for (i, &x) in s.iter().enumerate() {
            assert_eq!(x, (i % 250) as i16 + 1, "sample {i}");
        }
    }

    #[test]
    fn prompt_gap_is_silence_of_the_given_length() {
        let prompt = std::sync::Arc::<[i16]>::from(vec![5i16; 100]);
        let mut p = LoopedPrompt::new(prompt).unwrap().with_gap(60);
        let s = generate(&mut p, 480);
        for (i, &x) in s.iter().enumerate() {
            let expect = if i % 160 < 100 { 5 } else { 0 };
            assert_eq!(x, expect, "sample {i}");
        }
        p.reset();
        let mut f = [0i16; 3];
        p.fill(&mut f);
        assert_eq!(f, [5, 5, 5]);
    }

    #[test]
    fn prompt_shorter_than_a_frame_repeats_within_the_frame() {
        let mut p = LoopedPrompt::new([1i16, 2, 3]).unwrap();
        let mut f = [0i16; 8];
        p.fill(&mut f);
        assert_eq!(f, [1, 2, 3, 1, 2, 3, 1, 2]);
        p.fill(&mut f);
        assert_eq!(f[0], 3);
    }
}
