//! The directory's domain model: validated value types, the entries, the [`Directory`]
//! aggregate with its whole-directory checks, and the conversions to and from the `calanque.v1`
//! protobuf messages (`TryFrom<proto>` checks every field, `From<model>` cannot fail).
//!
//! Build a directory with [`Directory::from_entries`], change it with [`Directory::apply`]
//! (a [`ChangeSet`]); both return every problem found ([`ValidationErrors`]).

mod convert;
mod credentials;
mod directory;
mod entities;
pub(crate) mod error;
mod pattern;
mod values;

pub use credentials::{Ha1Md5, Ha1Pair, Ha1Sha256};
pub(crate) use directory::key_field;
pub use directory::{
    ChangeSet, Directory, Entry, EntryKey, Fault, Kind, Problem, ValidationErrors,
};
pub use entities::{
    CallCategory, ClassOfService, Device, EmergencyRoute, Extension, HuntGroup, HuntStrategy,
    MediaPolicy, PickupGroup, RingTimeout, Route, RouteTarget, Site, Transport, Trunk, TrunkAuth,
    TrunkKind, User,
};
pub use error::{FieldFault, ModelError, ModelErrors};
pub use pattern::{PatternError, RoutePattern};
pub use values::{
    CosName, DeviceId, DigitPrefix, Email, EmergencyNumber, ExtensionNumber, HostPort, Name,
    NumberRange, Realm, RouteId, SipUsername, SiteId, TrunkName, UserId,
};

#[cfg(test)]
pub(crate) mod fixtures;
