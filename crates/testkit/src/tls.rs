//! A throwaway PKI for TLS tests: a CA, a server certificate for `localhost`/`127.0.0.1`, a
//! client certificate, and a second CA that signed neither (for "wrong CA" tests), written
//! as PEM files in a temporary directory that goes when the guard drops.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::process::HarnessError;

/// The PEM files of a test PKI; deleted when dropped.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Generates the CA, the server and client certificates and the other CA.
    pub fn generate() -> Result<TestPki, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("calanque-pki-")
            .tempdir()
            .map_err(|e| certificates("creating the directory", e))?;
        let pki = TestPki { dir };
        let ca = issuer("calanque test CA")?;
        pki.write("ca.crt", &ca.pem())?;
        let other = issuer("calanque other CA")?;
        pki.write("other-ca.crt", &other.pem())?;
        pki.leaf(
            &ca,
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        pki.leaf(
            &ca,
            "client",
            &["calanque-test-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(pki)
    }

    /// The CA that signed the server and client certificates.
    pub fn ca_file(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A CA that signed nothing here: trusting it alone must fail the handshake.
    pub fn other_ca_file(&self) -> PathBuf {
        self.path("other-ca.crt")
    }

    /// The server certificate (SANs `localhost` and `127.0.0.1`).
    pub fn server_cert_file(&self) -> PathBuf {
        self.path("server.crt")
    }

    pub fn server_key_file(&self) -> PathBuf {
        self.path("server.key")
    }

    /// The client certificate (extended key usage clientAuth).
    pub fn client_cert_file(&self) -> PathBuf {
        self.path("client.crt")
    }

    pub fn client_key_file(&self) -> PathBuf {
        self.path("client.key")
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn leaf(
        &self,
        ca: &CertifiedIssuer<'_, KeyPair>,
        name: &str,
        subject_alt_names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(), HarnessError> {
        let names: Vec<String> = subject_alt_names.iter().map(|s| (*s).to_owned()).collect();
        let mut params =
            CertificateParams::new(names).map_err(|e| certificates("leaf parameters", e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, subject_alt_names[0]);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().map_err(|e| certificates("a leaf key", e))?;
        let cert = params
            .signed_by(&key, ca)
            .map_err(|e| certificates("signing a leaf", e))?;
        self.write(&format!("{name}.crt"), &cert.pem())?;
        self.write(&format!("{name}.key"), &key.serialize_pem())
    }

    fn write(&self, name: &str, contents: &str) -> Result<(), HarnessError> {
        std::fs::write(self.path(name), contents).map_err(|e| certificates("writing a file", e))
    }
}

fn issuer(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, HarnessError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| certificates("CA", e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().map_err(|e| certificates("a CA key", e))?;
    CertifiedIssuer::self_signed(params, key).map_err(|e| certificates("signing a CA", e))
}

fn certificates(
    step: &'static str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> HarnessError {
    HarnessError::Certificates {
        step,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_as_pem() {
        let pki = TestPki::generate().expect("PKI");
        for file in [
            pki.ca_file(),
            pki.other_ca_file(),
            pki.server_cert_file(),
            pki.client_cert_file(),
        ] {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{file:?}");
        }
        for file in [pki.server_key_file(), pki.client_key_file()] {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.contains("PRIVATE KEY-----"), "{file:?}");
        }
    }
}
