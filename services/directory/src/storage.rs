//! How directory entries live in the store: one key per entry under a versioned prefix,
//! the value a protobuf-encoded `calanque.v1.Entry`. The service writes this layout and the
//! caching client (`crates/directory-client`) reads and watches it, so both name it here.
//!
//! `calanque/v1/directory/<kind token>/<id>`, e.g. `calanque/v1/directory/extension/4512`.

use bytes::Bytes;
use prost::Message;

use crate::model::{Entry, EntryKey, Kind, ModelErrors};

/// Every directory key starts with this.
pub const DIRECTORY_PREFIX: &str = "calanque/v1/directory/";

/// Why a stored value or key could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The value is not a protobuf `calanque.v1.Entry`.
    #[error("stored value under {key} is not a calanque.v1.Entry: {source}")]
    Decode {
        key: String,
        #[source]
        source: prost::DecodeError,
    },
    /// The value decodes but is not a valid entry.
    #[error("stored entry under {key} is invalid: {source}")]
    Invalid {
        key: String,
        #[source]
        source: ModelErrors,
    },
    /// The key is not `<prefix><kind>/<id>` with a known kind and a valid id.
    #[error("not a directory key: {0}")]
    BadKey(String),
}

/// The prefix of every entry of `kind` (`…/extension/`).
pub fn kind_prefix(kind: Kind) -> String {
    format!("{DIRECTORY_PREFIX}{}/", kind.token())
}

/// The store key of an entry.
pub fn entry_key(key: &EntryKey) -> String {
    format!("{DIRECTORY_PREFIX}{}/{}", key.kind().token(), key.id())
}

/// Reads a store key back into an entry key.
pub fn parse_entry_key(store_key: &str) -> Result<EntryKey, StorageError> {
    let bad = || StorageError::BadKey(store_key.to_owned());
    let rest = store_key.strip_prefix(DIRECTORY_PREFIX).ok_or_else(bad)?;
    let (kind, id) = rest.split_once('/').ok_or_else(bad)?;
    let kind = Kind::from_token(kind).ok_or_else(bad)?;
    EntryKey::parse(kind, id).map_err(|_| bad())
}

/// The stored form of an entry.
pub fn encode(entry: &Entry) -> Bytes {
    Bytes::from(proto::v1::Entry::from(entry.clone()).encode_to_vec())
}

/// Reads a stored value back into a validated entry.
pub fn decode(store_key: &str, value: &[u8]) -> Result<Entry, StorageError> {
    let message = proto::v1::Entry::decode(value).map_err(|source| StorageError::Decode {
        key: store_key.to_owned(),
        source,
    })?;
    Entry::try_from(message).map_err(|source| StorageError::Invalid {
        key: store_key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{CityParams, generate_city};

    #[test]
    fn every_generated_entry_round_trips_through_its_stored_form() {
        let entries = generate_city(&CityParams::reference(7)).expect("city");
        for entry in entries.iter().take(2_000) {
            let key = entry_key(&entry.key());
            assert!(key.starts_with(&kind_prefix(entry.kind())));
            assert_eq!(parse_entry_key(&key).expect("key"), entry.key());
            assert_eq!(&decode(&key, &encode(entry)).expect("decode"), entry);
        }
    }

    #[test]
    fn foreign_keys_and_values_are_refused() {
        assert!(parse_entry_key("calanque/v1/other/x").is_err());
        assert!(parse_entry_key("calanque/v1/directory/nokind/1").is_err());
        assert!(decode("k", b"\xff\xff\xff").is_err());
    }
}
