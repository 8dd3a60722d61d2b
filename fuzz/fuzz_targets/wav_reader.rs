//! Fuzz target: arbitrary bytes as a recording for `veilig-bellen dtmf` (`audio_file::AudioReader`),
//! in every input format. Must never panic; reading must end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veilig_bellen::audio_file::{AudioReader, InputFormat};

fuzz_target!(|data: &[u8]| {
    for format in [
        InputFormat::Wav,
        InputFormat::RawS16le,
        InputFormat::RawUlaw,
        InputFormat::RawAlaw,
    ] {
        let Ok(mut reader) = AudioReader::new(data, format) else {
            continue;
        };
        let mut buf = [0i16; 160];
        // Every successful read consumes input, so this ends; bound it anyway.
        for _ in 0..=data.len() {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
});
