//! Client TLS towards NATS: which files to trust and present, checked before connecting so
//! that a misconfiguration names the file instead of surfacing as a connection failure
//! retried forever.
//!
//! NATS upgrades to TLS inside its own protocol (after the server's INFO), so a server with
//! a `tls {}` block is reachable through `nats://` URLs as well as `tls://`. TLS is on when a
//! URL says `tls://` or any file is given; it is then required of every server, so that no
//! server can downgrade the connection to plaintext (ADR 0019).

use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The client TLS files for NATS. The default (no file) trusts the system's roots and
/// presents no certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// PEM bundle of the CAs that sign the servers' certificates; `None` trusts the system's
    /// roots.
    pub ca_file: Option<PathBuf>,
    /// The certificate presented to servers that verify clients (`tls { verify: true }`).
    pub identity: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl NatsTls {
    /// True when no file is given.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.identity.is_none()
    }
}

/// Why the NATS client configuration is refused before any connection is tried.
#[derive(Debug, thiserror::Error)]
pub enum NatsConfigError {
    /// Some URLs are `tls://` and others are not: one client has one TLS setting.
    #[error("NATS servers mix tls:// and plain URLs ({servers}); use one scheme")]
    MixedSchemes {
        /// The servers as configured.
        servers: String,
    },
    /// A TLS file cannot be read.
    #[error("reading the NATS {role} file {}: {source}", path.display())]
    Read {
        /// Which file (`CA`, `client certificate`, `client key`).
        role: &'static str,
        /// The file as configured.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A TLS file holds no usable PEM item of the expected kind.
    #[error("the NATS {role} file {} holds no PEM {expected}", path.display())]
    NoPem {
        /// Which file (`CA`, `client certificate`, `client key`).
        role: &'static str,
        /// The file as configured.
        path: PathBuf,
        /// What was looked for (`certificate`, `private key`).
        expected: &'static str,
    },
}

/// Whether the connection must use TLS; refuses a mixture of schemes.
pub(super) fn wants_tls(servers: &[String], tls: &NatsTls) -> Result<bool, NatsConfigError> {
    let secure = servers
        .iter()
        .filter(|s| s.trim_start().starts_with("tls://"))
        .count();
    if secure > 0 && secure < servers.len() {
        return Err(NatsConfigError::MixedSchemes {
            servers: servers.join(","),
        });
    }
    Ok(secure > 0 || !tls.is_empty())
}

/// `options` requiring TLS with `tls`'s files, once they are checked to be readable PEM
/// (async-nats reads them again at every connection attempt).
pub(super) fn apply(
    mut options: ConnectOptions,
    tls: &NatsTls,
) -> Result<ConnectOptions, NatsConfigError> {
    options = options.require_tls(true);
    if let Some(path) = &tls.ca_file {
        check_certificates("CA", path)?;
        options = options.add_root_certificates(path.clone());
    }
    if let Some(identity) = &tls.identity {
        check_certificates("client certificate", &identity.cert_file)?;
        check_key(&identity.key_file)?;
        options =
            options.add_client_certificate(identity.cert_file.clone(), identity.key_file.clone());
    }
    Ok(options)
}

fn read(role: &'static str, path: &Path) -> Result<Vec<u8>, NatsConfigError> {
    std::fs::read(path).map_err(|source| NatsConfigError::Read {
        role,
        path: path.to_owned(),
        source,
    })
}

fn check_certificates(role: &'static str, path: &Path) -> Result<(), NatsConfigError> {
    let pem = read(role, path)?;
    if !CertificateDer::pem_slice_iter(&pem).any(|c| c.is_ok()) {
        return Err(NatsConfigError::NoPem {
            role,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(())
}

fn check_key(path: &Path) -> Result<(), NatsConfigError> {
    let role = "client key";
    let pem = read(role, path)?;
    if PrivateKeyDer::from_pem_slice(&pem).is_err() {
        return Err(NatsConfigError::NoPem {
            role,
            path: path.to_owned(),
            expected: "private key",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn tls_is_on_for_tls_urls_or_files_and_mixtures_are_refused() {
        let none = NatsTls::default();
        let with_ca = NatsTls {
            ca_file: Some("/ca.crt".into()),
            identity: None,
        };
        assert!(!wants_tls(&servers(&["nats://a:4222"]), &none).unwrap());
        assert!(wants_tls(&servers(&["tls://a:4222", "tls://b:4222"]), &none).unwrap());
        assert!(wants_tls(&servers(&["nats://a:4222"]), &with_ca).unwrap());
        assert!(matches!(
            wants_tls(&servers(&["tls://a:4222", "nats://b:4222"]), &none),
            Err(NatsConfigError::MixedSchemes { .. })
        ));
    }

    #[test]
    fn unreadable_or_empty_files_are_named() {
        let missing = NatsTls {
            ca_file: Some("/nonexistent/nats-ca.crt".into()),
            identity: None,
        };
        let error = apply(ConnectOptions::new(), &missing)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("/nonexistent/nats-ca.crt"), "{error}");

        let dir = std::env::temp_dir().join(format!("calanque-bus-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("client.crt");
        std::fs::write(&cert, "no certificate here\n").unwrap();
        let key = dir.join("client.key");
        std::fs::write(&key, "no key here\n").unwrap();
        let junk = NatsTls {
            ca_file: None,
            identity: Some(ClientIdentity {
                cert_file: cert,
                key_file: key,
            }),
        };
        let error = apply(ConnectOptions::new(), &junk)
            .err()
            .unwrap()
            .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            error.contains("client.crt") && error.contains("no PEM certificate"),
            "{error}"
        );
    }
}
