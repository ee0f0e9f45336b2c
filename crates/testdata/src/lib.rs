//! Loaders for the shared SIP test corpora, read at run time from the directory named by
//! `CALANQUE_TESTDATA` (default: `../shared/testdata` beside the repository checkout).
//!
//! The corpora are never copied into the repository: their licences differ (RFC text, GPL-2
//! PROTOS material, PJSIP seeds) and CI provides them beside the checkout. A missing corpus is
//! an error, never a silent skip, so a test that needs one fails with a message saying where
//! it looked.
//!
//! - [`rfc4475`]: the RFC 4475 torture messages (`rfc4475/*.dat`), by file name.
//! - [`protos_cases`]: the 4,527 PROTOS c07-sip INVITEs with their placeholders filled.
//! - [`pjsip_seeds`]: the PJSIP libFuzzer seed messages (`sip` and `sip-dialog` corpora).

use std::io::Read;
use std::path::{Path, PathBuf};

mod protos;

pub use protos::{PROTOS_CASE_COUNT, ProtosCase, ProtosFill, protos_cases, protos_cases_with};

/// Environment variable naming the corpus directory (overrides the default location).
pub const ENV_TESTDATA: &str = "CALANQUE_TESTDATA";

/// Why a corpus could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TestdataError {
    /// The corpus directory or one of its files is missing or unreadable.
    #[error(
        "test corpus not readable at {path}: {source} (set {ENV_TESTDATA} to the shared \
         testdata directory; CI provides it as ../shared/testdata beside the checkout)"
    )]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A zip archive could not be read.
    #[error("seed archive {path} is not a readable zip: {source}")]
    Zip {
        /// The archive.
        path: PathBuf,
        /// The underlying zip error.
        source: zip::result::ZipError,
    },
    /// A PROTOS test case file does not follow the `<length> <bytes>` record format.
    #[error("PROTOS case {name} is malformed: {reason}")]
    ProtosFormat {
        /// The member name inside the tarball.
        name: String,
        /// What did not match the record format.
        reason: &'static str,
    },
    /// A corpus held fewer entries than its provenance file promises.
    #[error("corpus {what} has {found} entries, expected {expected}")]
    Incomplete {
        /// Which corpus.
        what: &'static str,
        /// Entries found.
        found: usize,
        /// Entries expected.
        expected: usize,
    },
}

/// One named message (a file of a corpus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedMessage {
    /// The file name inside its corpus, e.g. `clerr.dat` or `basic_invite.sip`.
    pub name: String,
    /// The bytes as stored.
    pub bytes: Vec<u8>,
}

/// The corpus directory: `$CALANQUE_TESTDATA`, else `shared/testdata` beside the checkout
/// (the checkout being the nearest ancestor of the working directory holding `Cargo.lock`;
/// `cargo test` runs tests in the package directory).
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_TESTDATA).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let checkout = std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            cwd.ancestors()
                .find(|d| d.join("Cargo.lock").is_file())
                .map(Path::to_owned)
        })
        // crates/testdata → the checkout, as built.
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    checkout.join("../shared/testdata")
}

fn read(path: &Path) -> Result<Vec<u8>, TestdataError> {
    std::fs::read(path).map_err(|source| TestdataError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Number of RFC 4475 message files (49 from the RFC plus `test.dat`, see PROVENANCE.txt).
pub const RFC4475_FILE_COUNT: usize = 50;

/// Every `rfc4475/*.dat` file, sorted by name.
pub fn rfc4475() -> Result<Vec<NamedMessage>, TestdataError> {
    let dir = root().join("rfc4475");
    let entries = std::fs::read_dir(&dir).map_err(|source| TestdataError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| TestdataError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".dat") {
            out.push(NamedMessage {
                bytes: read(&entry.path())?,
                name,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if out.len() != RFC4475_FILE_COUNT {
        return Err(TestdataError::Incomplete {
            what: "rfc4475",
            found: out.len(),
            expected: RFC4475_FILE_COUNT,
        });
    }
    Ok(out)
}

/// One RFC 4475 file by name (e.g. `"clerr.dat"`).
pub fn rfc4475_file(name: &str) -> Result<Vec<u8>, TestdataError> {
    read(&root().join("rfc4475").join(name))
}

/// The PJSIP seed corpora that hold SIP messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PjsipCorpus {
    /// `fuzz-sip_seed_corpus.zip`: whole SIP messages.
    Sip,
    /// `fuzz-sip-dialog_seed_corpus.zip`: dialog-forming requests (and a list of URIs).
    SipDialog,
}

impl PjsipCorpus {
    /// The archive's file name under `pjsip-fuzz-seeds/`.
    pub fn archive(self) -> &'static str {
        match self {
            PjsipCorpus::Sip => "fuzz-sip_seed_corpus.zip",
            PjsipCorpus::SipDialog => "fuzz-sip-dialog_seed_corpus.zip",
        }
    }
}

/// Every file of a PJSIP seed archive (directories skipped), sorted by name.
pub fn pjsip_seeds(corpus: PjsipCorpus) -> Result<Vec<NamedMessage>, TestdataError> {
    let path = root().join("pjsip-fuzz-seeds").join(corpus.archive());
    let zip_err = |source| TestdataError::Zip {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(|source| TestdataError::Io {
        path: path.clone(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut member = archive.by_index(i).map_err(zip_err)?;
        if member.is_dir() {
            continue;
        }
        let full_name = member.name().map_err(zip_err)?.into_owned();
        let name = full_name.rsplit('/').next().unwrap_or_default().to_owned();
        let mut bytes = Vec::with_capacity(usize::try_from(member.size()).unwrap_or(0));
        member
            .read_to_end(&mut bytes)
            .map_err(|source| TestdataError::Io {
                path: path.join(&name),
                source,
            })?;
        out.push(NamedMessage { name, bytes });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if out.is_empty() {
        return Err(TestdataError::Incomplete {
            what: corpus.archive(),
            found: 0,
            expected: 1,
        });
    }
    Ok(out)
}
