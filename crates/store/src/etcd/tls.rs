//! Client TLS towards etcd: which files to trust and present, and the checks that turn a
//! misconfiguration into an error naming the file or the endpoints at start, rather than a
//! store that times out on every request.
//!
//! etcd speaks gRPC over TLS from the first byte, so TLS is decided by the endpoints' scheme
//! alone (`https://`); the files only say what to trust and what to present (ADR 0019).

use std::path::{Path, PathBuf};

use etcd_client::{Certificate, Identity, TlsOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The client TLS files for etcd. The default (no file) trusts the system's roots and
/// presents no certificate; it is also what plain `http://` endpoints need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM bundle of the CAs that sign the members' server certificates; `None` trusts the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// The certificate presented to members running with `--client-cert-auth` (mutual TLS).
    pub identity: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl EtcdTls {
    /// True when no file is given.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.identity.is_none()
    }
}

/// Why the etcd client configuration is refused before any connection is tried.
#[derive(Debug, thiserror::Error)]
pub enum EtcdConfigError {
    /// Some endpoints are `https://` and others are not: one client has one TLS setting.
    #[error("etcd endpoints mix https:// and http:// ({endpoints}); use one scheme")]
    MixedSchemes {
        /// The endpoints as configured.
        endpoints: String,
    },
    /// TLS files were given for `http://` endpoints, which would silently not use them.
    #[error("etcd TLS files are given but the endpoints are not https:// ({endpoints})")]
    FilesWithoutHttps {
        /// The endpoints as configured.
        endpoints: String,
    },
    /// A TLS file cannot be read.
    #[error("reading the etcd {role} file {}: {source}", path.display())]
    Read {
        /// Which file (`CA`, `client certificate`, `client key`).
        role: &'static str,
        /// The file as configured.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A TLS file holds no usable PEM item of the expected kind.
    #[error("the etcd {role} file {} holds no PEM {expected}", path.display())]
    NoPem {
        /// Which file (`CA`, `client certificate`, `client key`).
        role: &'static str,
        /// The file as configured.
        path: PathBuf,
        /// What was looked for (`certificate`, `private key`).
        expected: &'static str,
    },
    /// A member answered the TLS handshake but the two sides do not trust each other (its
    /// certificate is not signed by the CA trusted here, or it refused the client's).
    #[error("TLS with etcd member {endpoint} failed: {reason}")]
    Handshake {
        /// The member's endpoint.
        endpoint: String,
        /// What TLS reported.
        reason: String,
    },
    /// The TLS client could not be set up from otherwise readable files (e.g. no CA file
    /// and no system root certificates).
    #[error("setting up TLS towards etcd: {0} (without a CA file the system's roots are used)")]
    Setup(String),
}

/// Whether the endpoints need TLS; refuses a mixture and files without `https://`.
pub(super) fn wants_tls(endpoints: &[String], tls: &EtcdTls) -> Result<bool, EtcdConfigError> {
    let https = endpoints
        .iter()
        .filter(|e| e.trim_start().starts_with("https://"))
        .count();
    let joined = || endpoints.join(",");
    if https > 0 && https < endpoints.len() {
        return Err(EtcdConfigError::MixedSchemes {
            endpoints: joined(),
        });
    }
    if https == 0 && !tls.is_empty() {
        return Err(EtcdConfigError::FilesWithoutHttps {
            endpoints: joined(),
        });
    }
    Ok(https > 0)
}

/// The tonic TLS options for `tls`, the files read and checked now.
pub(super) fn options(tls: &EtcdTls) -> Result<TlsOptions, EtcdConfigError> {
    let mut options = TlsOptions::new();
    match &tls.ca_file {
        Some(path) => {
            let pem = read_certificates("CA", path)?;
            options = options.ca_certificate(Certificate::from_pem(pem));
        }
        // etcd-client refuses to build the client when the system has no root certificates.
        None => options = options.with_native_roots(),
    }
    if let Some(identity) = &tls.identity {
        let cert = read_certificates("client certificate", &identity.cert_file)?;
        let key = read_key(&identity.key_file)?;
        options = options.identity(Identity::from_pem(cert, key));
    }
    Ok(options)
}

fn read(role: &'static str, path: &Path) -> Result<Vec<u8>, EtcdConfigError> {
    std::fs::read(path).map_err(|source| EtcdConfigError::Read {
        role,
        path: path.to_owned(),
        source,
    })
}

/// The file's bytes, once checked to hold at least one PEM certificate (tonic would only
/// notice at the first handshake).
fn read_certificates(role: &'static str, path: &Path) -> Result<Vec<u8>, EtcdConfigError> {
    let pem = read(role, path)?;
    let found = CertificateDer::pem_slice_iter(&pem).any(|c| c.is_ok());
    if !found {
        return Err(EtcdConfigError::NoPem {
            role,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(pem)
}

fn read_key(path: &Path) -> Result<Vec<u8>, EtcdConfigError> {
    let role = "client key";
    let pem = read(role, path)?;
    if PrivateKeyDer::from_pem_slice(&pem).is_err() {
        return Err(EtcdConfigError::NoPem {
            role,
            path: path.to_owned(),
            expected: "private key",
        });
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_scheme_decides_and_mixtures_are_refused() {
        let none = EtcdTls::default();
        let with_ca = EtcdTls {
            ca_file: Some("/ca.crt".into()),
            identity: None,
        };
        assert!(!wants_tls(&endpoints(&["http://a:2379", "b:2379"]), &none).unwrap());
        assert!(wants_tls(&endpoints(&["https://a:2379"]), &none).unwrap());
        assert!(wants_tls(&endpoints(&["https://a:2379", "https://b:2379"]), &with_ca).unwrap());
        assert!(matches!(
            wants_tls(&endpoints(&["https://a:2379", "http://b:2379"]), &with_ca),
            Err(EtcdConfigError::MixedSchemes { .. })
        ));
        let refused = wants_tls(&endpoints(&["http://a:2379"]), &with_ca).unwrap_err();
        assert!(matches!(refused, EtcdConfigError::FilesWithoutHttps { .. }));
        assert!(refused.to_string().contains("http://a:2379"));
    }

    #[test]
    fn unreadable_or_empty_files_are_named() {
        let missing = EtcdTls {
            ca_file: Some("/nonexistent/etcd-ca.crt".into()),
            identity: None,
        };
        let error = options(&missing).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/etcd-ca.crt"), "{error}");
        assert!(error.contains("CA"), "{error}");

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let not_pem = EtcdTls {
            ca_file: Some(junk.clone()),
            identity: None,
        };
        let error = options(&not_pem).unwrap_err().to_string();
        assert!(
            error.contains("junk.pem") && error.contains("no PEM certificate"),
            "{error}"
        );
    }
}
