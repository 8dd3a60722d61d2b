//! Fuzz target: arbitrary bytes as an IRMA server's `statusevents` stream (`irma::SseParser`), fed
//! in two chunks split at every position the first byte picks. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veilig_bellen::irma::SseParser;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let mut parser = SseParser::new();
    let _ = parser.push(&rest[..at]);
    let _ = parser.push(&rest[at..]);
});
