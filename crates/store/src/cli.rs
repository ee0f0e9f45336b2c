//! The etcd client TLS flags every cluster binary takes, flattened into its own `clap`
//! arguments so that the five binaries name them alike (ADR 0019).

use std::path::PathBuf;

use crate::etcd::{ClientIdentity, EtcdTls};

/// `--etcd-ca-file`, `--etcd-cert-file`, `--etcd-key-file` (and their `CALANQUE_ETCD_*`
/// environment variables). Flatten with `#[command(flatten)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct EtcdTlsArgs {
    /// PEM bundle of the CAs signing etcd's server certificates (https:// endpoints; without
    /// it the system's roots are trusted).
    #[arg(long, env = "CALANQUE_ETCD_CA_FILE", value_name = "PEM")]
    pub etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate for etcd's `--client-cert-auth` (mutual TLS).
    #[arg(
        long,
        env = "CALANQUE_ETCD_CERT_FILE",
        value_name = "PEM",
        requires = "etcd_key_file"
    )]
    pub etcd_cert_file: Option<PathBuf>,
    /// PEM private key of `--etcd-cert-file`.
    #[arg(
        long,
        env = "CALANQUE_ETCD_KEY_FILE",
        value_name = "PEM",
        requires = "etcd_cert_file"
    )]
    pub etcd_key_file: Option<PathBuf>,
}

impl EtcdTlsArgs {
    /// The TLS setting for [`EtcdConfig::with_tls`](crate::etcd::EtcdConfig::with_tls).
    /// clap has already refused a certificate without its key and the reverse.
    pub fn tls(&self) -> EtcdTls {
        EtcdTls {
            ca_file: self.etcd_ca_file.clone(),
            identity: match (&self.etcd_cert_file, &self.etcd_key_file) {
                (Some(cert_file), Some(key_file)) => Some(ClientIdentity {
                    cert_file: cert_file.clone(),
                    key_file: key_file.clone(),
                }),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        etcd_tls: EtcdTlsArgs,
    }

    #[test]
    fn flags_become_the_tls_setting_and_a_lone_certificate_is_refused() {
        let cli = Cli::try_parse_from([
            "x",
            "--etcd-ca-file",
            "/tls/ca.crt",
            "--etcd-cert-file",
            "/tls/tls.crt",
            "--etcd-key-file",
            "/tls/tls.key",
        ])
        .unwrap();
        assert_eq!(
            cli.etcd_tls.tls(),
            EtcdTls {
                ca_file: Some("/tls/ca.crt".into()),
                identity: Some(ClientIdentity {
                    cert_file: "/tls/tls.crt".into(),
                    key_file: "/tls/tls.key".into(),
                }),
            }
        );
        assert!(
            Cli::try_parse_from(["x"])
                .unwrap()
                .etcd_tls
                .tls()
                .is_empty()
        );
        assert!(Cli::try_parse_from(["x", "--etcd-cert-file", "/tls/tls.crt"]).is_err());
        assert!(Cli::try_parse_from(["x", "--etcd-key-file", "/tls/tls.key"]).is_err());
    }
}
