//! The directory's APIs: REST ([`rest`]), gRPC ([`grpc`]) and the bus responder ([`bus`]).
//! The operations they share (paging, import, export, token checks) live here, so that the
//! three answer the same things the same way.

pub mod bus;
pub mod grpc;
pub mod rest;

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ServiceError;
use crate::import::{self, ImportMode, ImportSet};
use crate::model::{ChangeSet, Entry, Kind};
use crate::repository::{Committed, Repository, Snapshot};

/// Default number of entries in a page.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page served.
pub const MAX_PAGE_SIZE: usize = 1000;

/// A bearer token accepted by the admin APIs. Never printed (`Debug` is redacted).
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    /// A token; surrounding whitespace (a trailing newline in a file) is trimmed.
    pub fn new(token: impl AsRef<str>) -> BearerToken {
        BearerToken(token.as_ref().trim().to_owned())
    }

    /// Whether the token is empty (refused in configuration).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Whether `presented` is one of `tokens`, in time independent of where they differ (both sides
/// are hashed first so that the length does not leak either). Every token is compared.
pub fn token_matches(tokens: &[BearerToken], presented: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let mut matched = subtle::Choice::from(0);
    for token in tokens {
        let expected = Sha256::digest(token.0.as_bytes());
        matched |= expected.as_slice().ct_eq(presented.as_slice());
    }
    !tokens.is_empty() && bool::from(matched)
}

/// The kind named by a URL/CLI token, or a 400.
pub fn parse_kind(token: &str) -> Result<Kind, ServiceError> {
    Kind::from_token(token).ok_or_else(|| ServiceError::BadRequest {
        code: "unknown_kind",
        message: format!("unknown kind {token:?}"),
        details: vec![format!("kinds: {}", Kind::ALL.map(Kind::token).join(", "))],
    })
}

/// The kind of a proto `EntryKind` number, or a 400.
pub fn kind_from_proto(kind: i32) -> Result<Kind, ServiceError> {
    proto::v1::EntryKind::try_from(kind)
        .ok()
        .and_then(Kind::from_proto)
        .ok_or_else(|| ServiceError::bad_request("unknown_kind", format!("unknown kind {kind}")))
}

/// A page of entries and the token of the next one.
#[derive(Debug)]
pub struct Page {
    /// The entries, in key order.
    pub entries: Vec<Entry>,
    /// Token of the next page; `None` on the last.
    pub next_page_token: Option<String>,
    /// Revision of the snapshot read.
    pub revision: i64,
}

/// One page of `kind` (filtered by the prefixes when non-empty).
pub fn page(
    snapshot: &Snapshot,
    kind: Kind,
    page_size: usize,
    page_token: &str,
    name_prefix: &str,
    number_prefix: &str,
) -> Result<Page, ServiceError> {
    let size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n > MAX_PAGE_SIZE => {
            return Err(ServiceError::bad_request(
                "bad_page_size",
                format!("page_size must be 1–{MAX_PAGE_SIZE}"),
            ));
        }
        n => n,
    };
    let after = decode_page_token(page_token)?;
    let directory = &snapshot.directory;
    let (entries, next) = if name_prefix.is_empty() && number_prefix.is_empty() {
        directory.page(kind, after.as_deref(), size)
    } else {
        let keys = directory.search(kind, name_prefix, number_prefix);
        let start = after
            .as_deref()
            .map_or(0, |after| keys.partition_point(|k| k.id() <= after));
        let entries: Vec<Entry> = keys[start..]
            .iter()
            .take(size)
            .filter_map(|k| directory.get(k))
            .collect();
        let next = (start + entries.len() < keys.len() && !entries.is_empty())
            .then(|| entries.last().map(|e| e.key().id().to_owned()))
            .flatten();
        (entries, next)
    };
    Ok(Page {
        entries,
        next_page_token: next.map(|id| URL_SAFE_NO_PAD.encode(id)),
        revision: snapshot.revision,
    })
}

fn decode_page_token(token: &str) -> Result<Option<String>, ServiceError> {
    if token.is_empty() {
        return Ok(None);
    }
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(Some)
        .ok_or_else(|| ServiceError::bad_request("bad_page_token", "page_token is not valid"))
}

/// A bulk file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One YAML document, every kind.
    Yaml,
    /// One CSV file of one kind.
    Csv(Kind),
}

/// Imports `content`: parses, plans against the snapshot and commits in one transaction (all
/// or nothing). With `dry_run`, plans only.
pub async fn import(
    repository: &Repository,
    format: Format,
    mode: ImportMode,
    content: &str,
    dry_run: bool,
) -> Result<Committed, ServiceError> {
    let set: ImportSet = match format {
        Format::Yaml => import::parse_yaml(content),
        Format::Csv(kind) => import::parse_csv(kind, content),
    }
    .map_err(|e| ServiceError::import(&e))?
    .with_mode(mode);
    if dry_run {
        let snapshot = repository.ready_snapshot()?;
        let changes = plan(&snapshot, &set)?;
        return Ok(Committed {
            changes,
            revision: snapshot.revision,
        });
    }
    repository.commit(|snapshot| plan(snapshot, &set)).await
}

fn plan(snapshot: &Snapshot, set: &ImportSet) -> Result<ChangeSet, ServiceError> {
    import::plan(&snapshot.directory, set.clone()).map_err(|e| ServiceError::import(&e))
}

/// Exports the snapshot.
pub fn export(snapshot: &Snapshot, format: Format) -> Result<String, ServiceError> {
    match format {
        Format::Yaml => import::export_yaml(&snapshot.directory),
        Format::Csv(kind) => import::export_csv(&snapshot.directory, kind),
    }
    .map_err(|e| ServiceError::Export(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_exactly() {
        let tokens = [BearerToken::new("s3cret\n"), BearerToken::new("other")];
        assert!(token_matches(&tokens, "s3cret"));
        assert!(token_matches(&tokens, "other"));
        assert!(!token_matches(&tokens, "s3cre"));
        assert!(!token_matches(&tokens, "s3crett"));
        assert!(!token_matches(&tokens, ""));
        assert!(!token_matches(&[], ""));
        assert_eq!(format!("{:?}", tokens[0]), "BearerToken(<redacted>)");
    }

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let token = URL_SAFE_NO_PAD.encode("U-00042");
        assert_eq!(
            decode_page_token(&token).unwrap().as_deref(),
            Some("U-00042")
        );
        assert!(decode_page_token("!!!").is_err());
        assert_eq!(decode_page_token("").unwrap(), None);
    }
}
