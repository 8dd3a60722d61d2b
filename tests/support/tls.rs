//! Test support: a TLS listener for the server under test and the demo agent's SRTP policy, as the
//! agent-phone tests over TLS (baresip and PJSIP) set them up.

use std::path::Path;

use veilig_bellen::server::ServerConfig;
use veilig_bellen::sip_driver::TlsConfig;
use veilig_bellen::tenant::{AgentId, SrtpPolicy, Tenants};

/// A TLS listener with a self-signed certificate for 127.0.0.1, written (with its key) to `dir` as
/// `cert.pem` and `key.pem` (a phone's CA: `dir.join("cert.pem")`).
pub fn with_tls(c: &mut ServerConfig, dir: &Path) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("cert");
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).expect("write key");
    c.sip.tls = vec!["127.0.0.1:0".parse().expect("address")];
    c.sip.tls_files = Some(TlsConfig {
        cert_chain: dir.join("cert.pem"),
        private_key: dir.join("key.pem"),
    });
}

/// The demo agent's SRTP policy.
pub fn set_srtp(c: &mut ServerConfig, policy: SrtpPolicy) {
    let tenants = c
        .tenants
        .iter()
        .cloned()
        .map(|mut t| {
            if let Some(a) = t.agents.get_mut(&AgentId("agent".into())) {
                a.srtp = policy;
            }
            t
        })
        .collect();
    c.tenants = Tenants::new(tenants);
}

/// Our count of SRTP packets rejected so far (`veilig_bellen_srtp_rejected_packets_total`, summed
/// over its labels).
pub fn rejected_srtp() -> f64 {
    veilig_bellen::metrics::global()
        .render()
        .lines()
        .filter(|l| l.starts_with("veilig_bellen_srtp_rejected_packets_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
