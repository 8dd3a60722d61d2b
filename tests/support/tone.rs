//! Test support: how much of a short frame of 8 kHz audio is one tone (Goertzel), to tell which
//! signal a caller heard in each 20 ms RTP packet.

/// Energy share of `freq` in a frame of 8 kHz samples: Goertzel power against total power (a pure
/// sine at `freq` gives about 1).
pub fn frame_share(samples: &[i16], freq: f64) -> f64 {
    dsp::testsig::tone_share(samples, freq, 8000)
}
