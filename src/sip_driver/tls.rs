//! TLS for SIP over TLS (RFC 3261 §26.2, `sips:`): a rustls server configuration built from PEM
//! certificate-chain and private-key files. Optional: only used when [`TlsConfig`] is given.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Where the TLS certificate chain and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert_chain: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading certificate chain {path}: {source}")]
    Certs {
        path: PathBuf,
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error("certificate chain {0} holds no certificate")]
    NoCerts(PathBuf),
    #[error("reading private key {path}: {source}")]
    Key {
        path: PathBuf,
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error("certificate and key do not fit: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// Builds the acceptor (no client certificates requested; phones authenticate with digest).
pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert_chain)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certs {
            path: cfg.cert_chain.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCerts(cfg.cert_chain.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.private_key).map_err(|source| TlsError::Key {
        path: cfg.private_key.clone(),
        source,
    })?;
    // Name the provider: with more than one compiled in, rustls has no process default.
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_reported_with_their_path() {
        let cfg = TlsConfig {
            cert_chain: "/nonexistent/cert.pem".into(),
            private_key: "/nonexistent/key.pem".into(),
        };
        let e = acceptor(&cfg)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("vb-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("empty.pem");
        std::fs::write(&p, "not a pem file\n").unwrap();
        let cfg = TlsConfig {
            cert_chain: p.clone(),
            private_key: p,
        };
        assert!(matches!(acceptor(&cfg), Err(TlsError::NoCerts(_))));
        let _ = std::fs::remove_dir_all(dir);
    }
}
