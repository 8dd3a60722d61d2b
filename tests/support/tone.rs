//! Test support: how much of a short frame of 8 kHz audio is one tone (Goertzel), to tell which
//! signal a caller heard in each 20 ms RTP packet.

/// Energy share of `freq` in a frame of 8 kHz samples: Goertzel power against total power (a pure
/// sine at `freq` gives about 1).
pub fn frame_share(samples: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
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
