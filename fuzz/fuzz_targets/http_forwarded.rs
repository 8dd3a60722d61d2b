//! Fuzz target: arbitrary bytes as the `X-Forwarded-For` and `Forwarded` header lines of a request
//! from a trusted proxy (`http::client_addr::resolve`): lines split at every NUL byte, the first
//! byte says how many of them are `X-Forwarded-For`. Must never panic, and the same headers from a
//! peer that is not a trusted proxy must leave that peer the client.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use veilig_bellen::http::client_addr::resolve;
use veilig_bellen::http::TrustedProxies;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let lines: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    let at = usize::from(split).min(lines.len());
    let (x_forwarded_for, forwarded) = lines.split_at(at);
    let trusted = TrustedProxies::new(vec![
        ipnet::IpNet::from(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        "10.1.0.0/16".parse().expect("literal CIDR"),
        "2001:db8:ffff::/48".parse().expect("literal CIDR"),
    ]);
    let _ = resolve(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        x_forwarded_for,
        forwarded,
        &trusted,
    );
    let stranger = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        resolve(stranger, x_forwarded_for, forwarded, &trusted),
        stranger
    );
});
