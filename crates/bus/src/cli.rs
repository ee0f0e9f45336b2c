//! The NATS client TLS flags every cluster binary takes, flattened into its own `clap`
//! arguments so that the five binaries name them alike (ADR 0019).

use std::path::PathBuf;

use crate::nats::{ClientIdentity, NatsTls};

/// `--nats-ca-file`, `--nats-cert-file`, `--nats-key-file` (and their `CALANQUE_NATS_*`
/// environment variables). Flatten with `#[command(flatten)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct NatsTlsArgs {
    /// PEM bundle of the CAs signing the NATS servers' certificates; giving it requires TLS
    /// (without it, tls:// URLs trust the system's roots).
    #[arg(long, env = "CALANQUE_NATS_CA_FILE", value_name = "PEM")]
    pub nats_ca_file: Option<PathBuf>,
    /// PEM client certificate for servers with `tls { verify: true }` (mutual TLS).
    #[arg(
        long,
        env = "CALANQUE_NATS_CERT_FILE",
        value_name = "PEM",
        requires = "nats_key_file"
    )]
    pub nats_cert_file: Option<PathBuf>,
    /// PEM private key of `--nats-cert-file`.
    #[arg(
        long,
        env = "CALANQUE_NATS_KEY_FILE",
        value_name = "PEM",
        requires = "nats_cert_file"
    )]
    pub nats_key_file: Option<PathBuf>,
}

impl NatsTlsArgs {
    /// The TLS setting for [`NatsOptions::with_tls`](crate::NatsOptions::with_tls).
    /// clap has already refused a certificate without its key and the reverse.
    pub fn tls(&self) -> NatsTls {
        NatsTls {
            ca_file: self.nats_ca_file.clone(),
            identity: match (&self.nats_cert_file, &self.nats_key_file) {
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
        nats_tls: NatsTlsArgs,
    }

    #[test]
    fn flags_become_the_tls_setting_and_a_lone_certificate_is_refused() {
        let cli = Cli::try_parse_from([
            "x",
            "--nats-ca-file",
            "/tls/ca.crt",
            "--nats-cert-file",
            "/tls/tls.crt",
            "--nats-key-file",
            "/tls/tls.key",
        ])
        .unwrap();
        assert_eq!(
            cli.nats_tls.tls(),
            NatsTls {
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
                .nats_tls
                .tls()
                .is_empty()
        );
        assert!(Cli::try_parse_from(["x", "--nats-cert-file", "/tls/tls.crt"]).is_err());
        assert!(Cli::try_parse_from(["x", "--nats-key-file", "/tls/tls.key"]).is_err());
    }
}
