//! The TLS listener's certificate and key, read from PEM files (in Kubernetes, a Secret
//! mounted as files; a later issue adds reloading and client-certificate policy).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("cannot read private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Config(String),
}

/// The notAfter of the first certificate (the leaf) in a PEM chain, in Unix seconds: what the
/// expiry metric shows, so an alert fires before phones start refusing the edge.
pub fn certificate_not_after(cert: &Path) -> Result<i64, TlsError> {
    let failed = |reason: String| TlsError::Certificate {
        path: cert.display().to_string(),
        reason,
    };
    let leaf = CertificateDer::pem_file_iter(cert)
        .map_err(|e| failed(e.to_string()))?
        .next()
        .ok_or_else(|| failed("no CERTIFICATE block".into()))?
        .map_err(|e| failed(e.to_string()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| failed(format!("not an X.509 certificate: {e}")))?;
    Ok(parsed.validity().not_after.timestamp())
}

/// A TLS acceptor for the certificate chain and private key in these PEM files.
pub fn load_tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: cert.display().to_string(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
