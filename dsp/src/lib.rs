//! Pure signal processing for veilig-bellen: G.711 companding, DTMF detection and tone generation.
//!
//! Nothing in this crate does I/O, reads a clock or allocates per sample. Samples are 16-bit linear PCM
//! at 8 kHz; positions are sample counts since the detector was created or last reset.
//!
//! # What it owns
//!
//! * [`g711`]: A-law (PCMA) and µ-law (PCMU) encode/decode and A↔µ transcoding (ITU-T G.711), on the
//!   maintained `audio-codec-algorithms` crate, re-checked against G.711's segment rules.
//! * [`dtmf`]: the streaming in-band DTMF detector (ITU-T Q.23/Q.24, ETSI ES 201 235-3): one
//!   [`dtmf::DtmfDetector`] per call; `push` samples (any length, typically one 160-sample RTP
//!   frame), drain `poll_event`, and `finish` at the end of the stream.
//! * [`level`]: the RMS level of a frame in dBFS (is the peer's audio heard at all?).
//! * [`tone`]: what the caller hears while we work: cadenced Dutch ringback/busy tones and a looped
//!   prompt, filling caller-supplied frames without clicks between frames.
//! * `testsig` (feature `testsig`, tests and benches only): deterministic DTMF test signals with noise,
//!   twist, frequency error and G.711 round trips.
//!
//! # Driving it
//!
//! The call task decodes each received audio frame with [`g711`] into a reused buffer, pushes it into
//! the call's detector, then drains the detector's events; RFC 4733 and SIP INFO digits are handled in
//! the `sip` crate, not here. Outgoing audio is a [`tone`] frame encoded with [`g711`].
//!
//! # Panics and errors
//!
//! Samples are never an error: any values and any frame length are accepted, and a panic on sample
//! input is a bug. Settings out of range (a tone frequency or level, an empty cadence or prompt) are
//! rejected by the constructors with [`tone::ToneError`].

pub mod dtmf;
pub mod g711;
pub mod level;
#[cfg(feature = "testsig")]
pub mod testsig;
pub mod tone;

pub use dtmf::{prefetch, prefetch_start};
