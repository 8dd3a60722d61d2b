//! Fuzz target: arbitrary text as a `serve` config file, with and without an environment override
//! (`config::load_str`). Must never panic; every outcome is a config or a list of errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/fuzz.toml");
    let _ = veilig_bellen::config::load_str(text, path, Vec::new());
    let env = vec![
        ("VEILIG_BELLEN_TENANTS__0__NAME".to_owned(), text.to_owned()),
        ("VEILIG_BELLEN_SIP__TRUNKS".to_owned(), format!("[{text}]")),
    ];
    let _ = veilig_bellen::config::load_str(text, path, env);
});
