//! calanque's protobuf contracts: every bus message and gRPC service, generated at build time
//! from `proto/calanque/v1/*.proto` (package `calanque.v1`), and [`subjects`], the one list of
//! bus subjects and header names.
//!
//! Received messages are checked into domain types at the boundary (`TryFrom` in each
//! service's model); nothing here validates beyond what protobuf decoding does.

pub mod subjects;

/// Generated code (prost messages, tonic client and server stubs) for package `calanque.v1`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    rust_2018_idioms
)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/calanque.v1.rs"));
}

pub use prost::Message;

impl v1::Entry {
    /// The kind of the entry this wraps (`Unspecified` when the oneof is empty).
    pub fn entry_kind(&self) -> v1::EntryKind {
        use v1::entry::Kind;
        match &self.kind {
            None => v1::EntryKind::Unspecified,
            Some(Kind::Site(_)) => v1::EntryKind::Site,
            Some(Kind::User(_)) => v1::EntryKind::User,
            Some(Kind::Extension(_)) => v1::EntryKind::Extension,
            Some(Kind::Device(_)) => v1::EntryKind::Device,
            Some(Kind::HuntGroup(_)) => v1::EntryKind::HuntGroup,
            Some(Kind::PickupGroup(_)) => v1::EntryKind::PickupGroup,
            Some(Kind::ClassOfService(_)) => v1::EntryKind::ClassOfService,
            Some(Kind::Trunk(_)) => v1::EntryKind::Trunk,
            Some(Kind::Route(_)) => v1::EntryKind::Route,
        }
    }
}

/// `From<message> for entry::Kind` and `for Entry`, so that any entry message wraps with `.into()`.
macro_rules! wrap_entry {
    ($($message:ident),+) => {
        $(
            impl From<v1::$message> for v1::entry::Kind {
                fn from(message: v1::$message) -> v1::entry::Kind {
                    v1::entry::Kind::$message(message)
                }
            }

            impl From<v1::$message> for v1::Entry {
                fn from(message: v1::$message) -> v1::Entry {
                    v1::Entry {
                        kind: Some(message.into()),
                    }
                }
            }
        )+
    };
}

wrap_entry!(
    Site,
    User,
    Extension,
    Device,
    HuntGroup,
    PickupGroup,
    ClassOfService,
    Trunk,
    Route
);

#[cfg(test)]
mod tests {
    use super::v1;
    use prost::Message;

    #[test]
    fn directory_change_round_trips_through_the_wire_format() {
        let change = v1::DirectoryChange {
            kind: v1::EntryKind::Extension as i32,
            id: "4512".to_owned(),
            operation: v1::ChangeOperation::Put as i32,
            revision: 42,
            entry: Some(v1::Entry {
                kind: Some(v1::entry::Kind::Extension(v1::Extension {
                    number: "4512".to_owned(),
                    site_id: "S-001".to_owned(),
                    ..Default::default()
                })),
            }),
        };
        let bytes = change.encode_to_vec();
        let decoded = v1::DirectoryChange::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, change);
        assert_eq!(
            decoded.entry.unwrap().entry_kind(),
            v1::EntryKind::Extension
        );
    }

    #[test]
    fn messages_wrap_into_entries_of_their_kind() {
        let entry = v1::Entry::from(v1::HuntGroup::default());
        assert_eq!(entry.entry_kind(), v1::EntryKind::HuntGroup);
        let entry: v1::Entry = v1::Route::default().into();
        assert_eq!(entry.entry_kind(), v1::EntryKind::Route);
    }

    #[test]
    fn an_empty_entry_has_no_kind() {
        assert_eq!(
            v1::Entry::default().entry_kind(),
            v1::EntryKind::Unspecified
        );
    }

    #[test]
    fn enum_names_follow_the_proto_file() {
        assert_eq!(
            v1::HuntStrategy::LongestIdle.as_str_name(),
            "HUNT_STRATEGY_LONGEST_IDLE"
        );
        assert_eq!(
            v1::CallCategory::from_str_name("CALL_CATEGORY_PREMIUM"),
            Some(v1::CallCategory::Premium)
        );
    }
}
