//! Signal level: the RMS of a frame in dBFS, for deciding whether a frame is heard at all (the
//! agent's phone's music on hold against the silence it streams, `src/call/hold.rs`).
//!
//! dBFS here follows AES17: 0 dBFS is the RMS of a full-scale sine (peak 32768), so a sine of
//! peak `32768 · 10^(L/20)` reads `L` dBFS, and a full-scale square wave reads +3.01 dBFS. On the
//! G.711 scale that is [`tone::FULL_SCALE_DBM0`](crate::tone::FULL_SCALE_DBM0) below dBm0 readings:
//! `dBm0 = dBFS + 3.14`.
//!
//! Exact integer sums, no allocation: 160 multiply-adds for a 20 ms frame.

/// The RMS level of `samples` (16-bit linear PCM) in dBFS; [`f64::NEG_INFINITY`] for digital
/// silence (all zeros) or no samples.
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    // Each square is at most 2^30, so 2^33 samples fit a u64: far beyond any frame.
    let energy: u64 = samples
        .iter()
        .map(|&s| {
            let s = u64::from(s.unsigned_abs());
            s * s
        })
        .sum();
    if energy == 0 {
        return f64::NEG_INFINITY;
    }
    let mean_square = energy as f64 / samples.len() as f64;
    // 20·log10(rms·√2 / 32768) = 10·log10(2·mean_square / 32768²).
    10.0 * (2.0 * mean_square / (32768.0 * 32768.0)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711;

    fn sine(peak: f64, freq: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let x = peak * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin();
                x.round().clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    fn peak_at(dbfs: f64) -> f64 {
        32768.0 * 10f64.powf(dbfs / 20.0)
    }

    #[test]
    fn a_sine_reads_its_level() {
        // 160 samples of 400 Hz are eight whole periods: the RMS is exactly peak/√2.
        for level in [-3.0, -20.0, -30.0, -50.0] {
            let got = rms_dbfs(&sine(peak_at(level), 400.0, 160));
            assert!((got - level).abs() < 0.05, "{level} dBFS read as {got}");
        }
        // Half the amplitude: 6.02 dB less.
        let full = rms_dbfs(&sine(20_000.0, 400.0, 160));
        let half = rms_dbfs(&sine(10_000.0, 400.0, 160));
        assert!((full - half - 6.02).abs() < 0.01, "{full} vs {half}");
    }

    #[test]
    fn the_extremes() {
        assert_eq!(rms_dbfs(&[]), f64::NEG_INFINITY);
        assert_eq!(rms_dbfs(&[0; 160]), f64::NEG_INFINITY);
        let square = rms_dbfs(&[i16::MIN; 160]);
        assert!((square - 3.01).abs() < 0.01, "full-scale square {square}");
        let square = rms_dbfs(&[32767, -32768].repeat(80));
        assert!((square - 3.01).abs() < 0.01, "full-scale square {square}");
    }

    #[test]
    fn g711_silence_is_far_below_minus_50() {
        // A-law's idle code decodes to ±8: −69 dBFS. µ-law's decodes to 0: digital silence.
        let mut pcm = [0i16; 160];
        g711::decode_alaw_into(&[0xD5; 160], &mut pcm);
        let alaw = rms_dbfs(&pcm);
        assert!((alaw + 69.2).abs() < 0.1, "A-law silence {alaw}");
        g711::decode_ulaw_into(&[0xFF; 160], &mut pcm);
        assert_eq!(rms_dbfs(&pcm), f64::NEG_INFINITY);
    }
}
