//! Pure signal processing for veilig-bellen: G.711 companding, DTMF detection and tone generation.
//!
//! Nothing in this crate does I/O, reads a clock or allocates per sample. Samples are 16-bit linear PCM
//! at 8 kHz; positions are sample counts since the detector was created or last reset.

pub mod dtmf;
pub mod g711;
#[cfg(feature = "testsig")]
pub mod testsig;
pub mod tone;
