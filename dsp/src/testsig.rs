//! Deterministic test-signal generator for the DTMF detector (feature `testsig`; tests and benches only).
//!
//! Own small PRNG (splitmix64 + Box–Muller), so results are reproducible from a seed without a `rand`
//! dependency. Builds 8 kHz signals from DTMF digits (level in dBm0 per tone, twist, frequency error,
//! random phase, duration), pauses, drop-outs and white or pink noise, records the ground truth, and
//! round-trips through G.711 A-law/µ-law.

use crate::dtmf::digit_freqs;
use crate::g711;
use std::f64::consts::PI;

/// Peak amplitude of a 0 dBm0 sine (ITU-T G.711: 3.14 dBm0 full scale).
pub const DBM0_PEAK: f64 = 22_827.0;

/// Full-scale sine level of G.711 in dBm0 (not π).
#[allow(clippy::approx_constant)]
pub const FULL_SCALE_DBM0: f64 = 3.14;

/// Peak amplitude of a sine at `dbm0`.
pub fn dbm0_amplitude(dbm0: f64) -> f64 {
    32768.0 * 10f64.powf((dbm0 - FULL_SCALE_DBM0) / 20.0)
}

/// Mean power (mean square) of a sine at `dbm0`.
pub fn dbm0_power(dbm0: f64) -> f64 {
    let a = dbm0_amplitude(dbm0);
    a * a / 2.0
}

/// splitmix64 pseudo-random generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_5EED)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in [lo, hi].
    pub fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }

    /// A random DTMF digit from all 16 keys.
    pub fn digit(&mut self) -> char {
        b"0123456789*#ABCD"[self.int(0, 15) as usize] as char
    }
}

/// One DTMF tone burst.
#[derive(Clone, Copy, Debug)]
pub struct Tone {
    pub digit: char,
    /// Level of the low-group (row) tone in dBm0.
    pub row_dbm0: f64,
    /// Level of the high-group (column) tone in dBm0.
    pub col_dbm0: f64,
    /// Relative frequency error of the row tone (0.015 = +1.5 %).
    pub row_error: f64,
    /// Relative frequency error of the column tone.
    pub col_error: f64,
    /// Duration in samples.
    pub len: usize,
}

impl Tone {
    /// Both tones at `dbm0`, nominal frequency.
    pub fn new(digit: char, dbm0: f64, len: usize) -> Self {
        Tone {
            digit,
            row_dbm0: dbm0,
            col_dbm0: dbm0,
            row_error: 0.0,
            col_error: 0.0,
            len,
        }
    }

    /// Twist in dB: positive = normal (row stronger), negative = reverse. Keeps the stronger tone at the
    /// level given to `new` and lowers the weaker one.
    pub fn twist(mut self, db: f64) -> Self {
        let strong = self.row_dbm0.max(self.col_dbm0);
        if db >= 0.0 {
            self.row_dbm0 = strong;
            self.col_dbm0 = strong - db;
        } else {
            self.col_dbm0 = strong;
            self.row_dbm0 = strong + db;
        }
        self
    }

    /// Same relative frequency error on both tones.
    pub fn freq_error(mut self, rel: f64) -> Self {
        self.row_error = rel;
        self.col_error = rel;
        self
    }

    /// Mean power of the two-tone signal.
    pub fn power(&self) -> f64 {
        dbm0_power(self.row_dbm0) + dbm0_power(self.col_dbm0)
    }
}

/// Where a generated digit really is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truth {
    pub digit: char,
    pub start: u64,
    pub end: u64,
}

/// A signal under construction (f64, 8 kHz) with its ground truth.
#[derive(Clone, Debug)]
pub struct Signal {
    pub samples: Vec<f64>,
    pub truth: Vec<Truth>,
    rng: Rng,
}

impl Signal {
    pub fn new(seed: u64) -> Self {
        Signal {
            samples: Vec::new(),
            truth: Vec::new(),
            rng: Rng::new(seed),
        }
    }

    /// The generator's random source (for choosing digits, timings, …).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Append `n` samples of silence.
    pub fn silence(&mut self, n: usize) -> &mut Self {
        self.samples.resize(self.samples.len() + n, 0.0);
        self
    }

    /// Append a tone burst with random phases; records its truth.
    pub fn tone(&mut self, t: Tone) -> &mut Self {
        let start = self.samples.len() as u64;
        self.tone_untracked(t);
        self.truth.push(Truth {
            digit: t.digit,
            start,
            end: self.samples.len() as u64,
        });
        self
    }

    /// Append a tone burst without recording it (e.g. a too-short burst that must not be reported).
    pub fn tone_untracked(&mut self, t: Tone) -> &mut Self {
        let Some((fr, fc)) = digit_freqs(t.digit) else {
            return self;
        };
        let (pr, pc) = (self.rng.range(0.0, 2.0 * PI), self.rng.range(0.0, 2.0 * PI));
        let (ar, ac) = (dbm0_amplitude(t.row_dbm0), dbm0_amplitude(t.col_dbm0));
        let (wr, wc) = (
            2.0 * PI * fr * (1.0 + t.row_error) / 8000.0,
            2.0 * PI * fc * (1.0 + t.col_error) / 8000.0,
        );
        self.samples.extend(
            (0..t.len).map(|n| ar * (wr * n as f64 + pr).sin() + ac * (wc * n as f64 + pc).sin()),
        );
        self
    }

    /// Append a tone whose middle `gap` samples are silent (a drop-out); the phase runs on through it.
    pub fn tone_with_dropout(&mut self, t: Tone, gap_at: usize, gap: usize) -> &mut Self {
        let start = self.samples.len();
        self.tone_untracked(Tone { len: t.len, ..t });
        for s in &mut self.samples[start + gap_at..(start + gap_at + gap).min(start + t.len)] {
            *s = 0.0;
        }
        self.truth.push(Truth {
            digit: t.digit,
            start: start as u64,
            end: (start + t.len) as u64,
        });
        self
    }

    /// Append another signal (e.g. speech) as-is.
    pub fn extend(&mut self, other: &[f64]) -> &mut Self {
        self.samples.extend_from_slice(other);
        self
    }

    /// Add white Gaussian noise of the given mean power over the whole signal so far.
    pub fn add_white_noise(&mut self, power: f64) -> &mut Self {
        let sigma = power.sqrt();
        for s in &mut self.samples {
            *s += sigma * self.rng.normal();
        }
        self
    }

    /// Add white noise at `snr_db` relative to the two-tone power of `t`.
    pub fn add_noise_snr(&mut self, t: &Tone, snr_db: f64) -> &mut Self {
        self.add_white_noise(t.power() / 10f64.powf(snr_db / 10.0))
    }

    /// Add pink (1/f) noise of roughly the given mean power (Paul Kellet's filter).
    pub fn add_pink_noise(&mut self, power: f64) -> &mut Self {
        let mut b = [0.0f64; 7];
        let mut pink = Vec::with_capacity(self.samples.len());
        for _ in 0..self.samples.len() {
            let w = self.rng.normal();
            b[0] = 0.99886 * b[0] + w * 0.0555179;
            b[1] = 0.99332 * b[1] + w * 0.0750759;
            b[2] = 0.96900 * b[2] + w * 0.1538520;
            b[3] = 0.86650 * b[3] + w * 0.3104856;
            b[4] = 0.55000 * b[4] + w * 0.5329522;
            b[5] = -0.7616 * b[5] - w * 0.0168980;
            let p = b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + w * 0.5362;
            b[6] = w * 0.115926;
            pink.push(p);
        }
        let mean_sq = pink.iter().map(|p| p * p).sum::<f64>() / pink.len().max(1) as f64;
        let g = if mean_sq > 0.0 {
            (power / mean_sq).sqrt()
        } else {
            0.0
        };
        for (s, p) in self.samples.iter_mut().zip(pink) {
            *s += g * p;
        }
        self
    }

    /// Linear 16-bit samples (saturating).
    pub fn pcm(&self) -> Vec<i16> {
        to_pcm(&self.samples)
    }
}

/// Saturating conversion to 16-bit samples.
pub fn to_pcm(samples: &[f64]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| s.round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// The channel a test signal goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Linear,
    ALaw,
    MuLaw,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Linear, Channel::ALaw, Channel::MuLaw];

    /// Pass `pcm` through this channel (G.711 encode + decode, or nothing).
    pub fn apply(self, pcm: &[i16]) -> Vec<i16> {
        match self {
            Channel::Linear => pcm.to_vec(),
            Channel::ALaw => pcm
                .iter()
                .map(|&s| g711::alaw_decode(g711::alaw_encode(s)))
                .collect(),
            Channel::MuLaw => pcm
                .iter()
                .map(|&s| g711::ulaw_decode(g711::ulaw_encode(s)))
                .collect(),
        }
    }
}

/// A phone-like keyed code: each digit `tone_ms` long, `gap_ms` apart, `dbm0` per tone, led and trailed
/// by `lead_ms` of silence.
pub fn code(seed: u64, digits: &str, tone_ms: f64, gap_ms: f64, dbm0: f64, lead_ms: f64) -> Signal {
    let mut s = Signal::new(seed);
    let ms = |m: f64| (m * 8.0).round() as usize;
    s.silence(ms(lead_ms));
    for d in digits.chars() {
        s.tone(Tone::new(d, dbm0, ms(tone_ms)));
        s.silence(ms(gap_ms));
    }
    s.silence(ms(lead_ms));
    s
}

/// 50 seeded 8-digit link codes with phone-like timing (digits and gaps 70–100 ms, −20 to −10 dBm0,
/// twist up to 3 dB), one signal, codes 600 ms apart: the AMR-NB round trip's material
/// (`tests/dtmf_real_audio.rs` uses seed 4733). Each code with its first and end sample.
pub fn amr_codes(seed: u64) -> (Signal, Vec<(String, u64, u64)>) {
    let mut s = Signal::new(seed);
    let mut codes = Vec::new();
    s.silence(4000);
    for _ in 0..50 {
        let begin = s.len() as u64;
        let mut code = String::new();
        for _ in 0..8 {
            let d = s.rng().digit();
            let ms = |r: &mut Rng| (r.range(70.0, 100.0) * 8.0) as usize;
            let len = ms(s.rng());
            let gap = ms(s.rng());
            let level = s.rng().range(-20.0, -10.0);
            let twist = s.rng().range(0.0, 3.0);
            s.tone(Tone::new(d, level, len).twist(twist)).silence(gap);
            code.push(d);
        }
        codes.push((code, begin, s.len() as u64));
        s.silence(4800);
    }
    (s, codes)
}

/// Share of `samples`' energy (at `rate` Hz) that is one tone at `freq`: Goertzel power against
/// total power, so a pure sine at `freq` gives about 1 and silence 0. For telling which signal a
/// listener heard in a short frame.
pub fn tone_share(samples: &[i16], freq: f64, rate: u32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2, mut total) = (0.0f64, 0.0f64, 0.0f64);
    for &x in samples {
        let x = f64::from(x);
        total += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if total <= 0.0 {
        return 0.0;
    }
    // For a pure sine of N samples the Goertzel power is N/2 × total energy.
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (total * samples.len() as f64 / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_dbm0_sine_has_the_g711_power() {
        // 0 dBm0 = 1 mW at the 0 dBr point: a sine with peak 22767 (3.14 dB below full scale).
        assert!((dbm0_amplitude(0.0) - DBM0_PEAK).abs() < 1.0);
        let mut s = Signal::new(1);
        s.tone(Tone::new('1', -10.0, 80_000));
        let p = s.samples.iter().map(|x| x * x).sum::<f64>() / s.len() as f64;
        let expect = 2.0 * dbm0_power(-10.0);
        assert!((p / expect - 1.0).abs() < 0.01, "{p} vs {expect}");
    }

    #[test]
    fn same_seed_same_signal_and_noise_has_its_power() {
        let mk = |seed| {
            let mut s = Signal::new(seed);
            s.silence(16_000).add_white_noise(1000.0);
            s.samples
        };
        assert_eq!(mk(3), mk(3));
        assert_ne!(mk(3), mk(4));
        let p = mk(5).iter().map(|x| x * x).sum::<f64>() / 16_000.0;
        assert!((p / 1000.0 - 1.0).abs() < 0.05, "{p}");
    }
}
