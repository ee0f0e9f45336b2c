//! Conversions between the `calanque.v1` protobuf messages and the model. `TryFrom<proto>`
//! checks every field and reports all invalid ones at once ([`ModelErrors`], field names as in
//! the proto); `From<model>` cannot fail. Empty strings are the proto's "absent" for optional
//! fields (user, e-mail, SHA-256 HA1, prepend).

use std::collections::BTreeSet;
use std::fmt::Display;
use std::num::NonZeroU32;

use proto::v1;

use super::credentials::{Ha1Md5, Ha1Pair, Ha1Sha256};
use super::directory::{Entry, Kind};
use super::entities::{
    CallCategory, ClassOfService, Device, EmergencyRoute, Extension, HuntGroup, HuntStrategy,
    MediaPolicy, PickupGroup, RingTimeout, Route, RouteTarget, Site, Transport, Trunk, TrunkAuth,
    TrunkKind, User,
};
use super::error::{FieldFault, ModelError, ModelErrors, all_fields};
use super::pattern::RoutePattern;
use super::values::{
    CosName, DeviceId, DigitPrefix, Email, EmergencyNumber, ExtensionNumber, HostPort, Name,
    NumberRange, Realm, RouteId, SipUsername, SiteId, TrunkName, UserId,
};

/// Names the field of a fault.
pub(crate) fn field<T>(name: &str, result: Result<T, FieldFault>) -> Result<T, ModelError> {
    result.map_err(|fault| ModelError::field(name, fault))
}

/// An optional text field: empty is `None`.
pub(crate) fn optional<T>(
    name: &str,
    text: &str,
    parse: impl Fn(&str) -> Result<T, FieldFault>,
) -> Result<Option<T>, ModelError> {
    if text.is_empty() {
        Ok(None)
    } else {
        field(name, parse(text)).map(Some)
    }
}

/// A list field: every item parsed (errors named `name[i]`), no item twice.
pub(crate) fn items<S, T: PartialEq + Display>(
    name: &str,
    items: &[S],
    parse: impl Fn(&S) -> Result<T, FieldFault>,
) -> Result<Vec<T>, ModelErrors> {
    let mut errors = Vec::new();
    let mut values: Vec<T> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match parse(item) {
            Ok(value) if values.contains(&value) => errors.push(ModelError::field(
                name,
                FieldFault::DuplicateItem {
                    item: value.to_string(),
                },
            )),
            Ok(value) => values.push(value),
            Err(fault) => errors.push(ModelError::field(format!("{name}[{i}]"), fault)),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(ModelErrors(errors))
    }
}

/// A protobuf enum field (`i32` on the wire) of type `P`.
fn proto_enum<P: TryFrom<i32>>(name: &str, value: i32) -> Result<P, ModelError> {
    P::try_from(value).map_err(|_| ModelError::field(name, FieldFault::UnknownEnumValue { value }))
}

/// Non-empty list check.
fn non_empty<T>(name: &str, values: Vec<T>) -> Result<Vec<T>, ModelErrors> {
    if values.is_empty() {
        Err(ModelError::field(name, FieldFault::Empty).into())
    } else {
        Ok(values)
    }
}

fn media_policy(value: i32) -> Result<MediaPolicy, ModelError> {
    match proto_enum("media_policy", value)? {
        v1::MediaPolicy::Unspecified => {
            Err(ModelError::field("media_policy", FieldFault::Unspecified))
        }
        v1::MediaPolicy::Direct => Ok(MediaPolicy::Direct),
        v1::MediaPolicy::Relay => Ok(MediaPolicy::Relay),
    }
}

fn transport(name: &str, value: i32) -> Result<Option<Transport>, ModelError> {
    Ok(match proto_enum(name, value)? {
        v1::Transport::Unspecified => None,
        v1::Transport::Udp => Some(Transport::Udp),
        v1::Transport::Tcp => Some(Transport::Tcp),
        v1::Transport::Tls => Some(Transport::Tls),
    })
}

fn category(name: &str, value: i32) -> Result<CallCategory, ModelError> {
    match proto_enum(name, value)? {
        v1::CallCategory::Unspecified => Err(ModelError::field(name, FieldFault::Unspecified)),
        v1::CallCategory::Internal => Ok(CallCategory::Internal),
        v1::CallCategory::Local => Ok(CallCategory::Local),
        v1::CallCategory::National => Ok(CallCategory::National),
        v1::CallCategory::International => Ok(CallCategory::International),
        v1::CallCategory::Premium => Ok(CallCategory::Premium),
    }
}

fn hunt_strategy(value: i32) -> Result<HuntStrategy, ModelError> {
    match proto_enum("strategy", value)? {
        v1::HuntStrategy::Unspecified => {
            Err(ModelError::field("strategy", FieldFault::Unspecified))
        }
        v1::HuntStrategy::Simultaneous => Ok(HuntStrategy::Simultaneous),
        v1::HuntStrategy::Linear => Ok(HuntStrategy::Linear),
        v1::HuntStrategy::RoundRobin => Ok(HuntStrategy::RoundRobin),
        v1::HuntStrategy::LongestIdle => Ok(HuntStrategy::LongestIdle),
    }
}

fn trunk_kind(value: i32) -> Result<TrunkKind, ModelError> {
    match proto_enum("kind", value)? {
        v1::TrunkKind::Unspecified => Err(ModelError::field("kind", FieldFault::Unspecified)),
        v1::TrunkKind::Carrier => Ok(TrunkKind::Carrier),
        v1::TrunkKind::LegacyPbx => Ok(TrunkKind::LegacyPbx),
    }
}

fn number_ranges(name: &str, ranges: &[v1::NumberRange]) -> Result<Vec<NumberRange>, ModelErrors> {
    items(name, ranges, |r| NumberRange::new(&r.first, &r.last))
}

fn ha1_pair(md5: &str, sha256: &str) -> Result<Ha1Pair, ModelErrors> {
    all_fields!(
        md5 = field("ha1_md5", Ha1Md5::parse(md5)),
        sha256 = optional("ha1_sha256", sha256, Ha1Sha256::parse),
    );
    Ok(Ha1Pair { md5, sha256 })
}

impl TryFrom<v1::Site> for Site {
    type Error = ModelErrors;
    fn try_from(p: v1::Site) -> Result<Site, ModelErrors> {
        all_fields!(
            id = field("id", SiteId::parse(&p.id)),
            name = field("name", Name::parse(&p.name)),
            number_ranges = number_ranges("number_ranges", &p.number_ranges)
                .and_then(|r| non_empty("number_ranges", r)),
            emergency_routes = emergency_routes(&p.emergency_routes),
            media_policy = media_policy(p.media_policy),
        );
        Ok(Site {
            id,
            name,
            number_ranges,
            emergency_routes,
            media_policy,
        })
    }
}

fn emergency_routes(routes: &[v1::EmergencyRoute]) -> Result<Vec<EmergencyRoute>, ModelErrors> {
    let mut errors = Vec::new();
    let mut values: Vec<EmergencyRoute> = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let number = field(
            &format!("emergency_routes[{i}].number"),
            EmergencyNumber::parse(&r.number),
        );
        let trunk = field(
            &format!("emergency_routes[{i}].trunk"),
            TrunkName::parse(&r.trunk),
        );
        match (number, trunk) {
            (Ok(number), Ok(_)) if values.iter().any(|v| v.number == number) => {
                errors.push(ModelError::field(
                    "emergency_routes",
                    FieldFault::DuplicateItem {
                        item: number.to_string(),
                    },
                ));
            }
            (Ok(number), Ok(trunk)) => values.push(EmergencyRoute { number, trunk }),
            (number, trunk) => errors.extend(number.err().into_iter().chain(trunk.err())),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(ModelErrors(errors))
    }
}

impl From<Site> for v1::Site {
    fn from(m: Site) -> v1::Site {
        v1::Site {
            id: m.id.into(),
            name: m.name.into(),
            number_ranges: m
                .number_ranges
                .into_iter()
                .map(v1::NumberRange::from)
                .collect(),
            emergency_routes: m
                .emergency_routes
                .into_iter()
                .map(|r| v1::EmergencyRoute {
                    number: r.number.into(),
                    trunk: r.trunk.into(),
                })
                .collect(),
            media_policy: match m.media_policy {
                MediaPolicy::Direct => v1::MediaPolicy::Direct,
                MediaPolicy::Relay => v1::MediaPolicy::Relay,
            } as i32,
        }
    }
}

impl From<NumberRange> for v1::NumberRange {
    fn from(range: NumberRange) -> v1::NumberRange {
        v1::NumberRange {
            first: range.first().to_owned(),
            last: range.last().to_owned(),
        }
    }
}

impl TryFrom<v1::User> for User {
    type Error = ModelErrors;
    fn try_from(p: v1::User) -> Result<User, ModelErrors> {
        all_fields!(
            id = field("id", UserId::parse(&p.id)),
            display_name = field("display_name", Name::parse(&p.display_name)),
            given_name = optional("given_name", &p.given_name, Name::parse),
            family_name = optional("family_name", &p.family_name, Name::parse),
            email = optional("email", &p.email, Email::parse),
            site_id = field("site_id", SiteId::parse(&p.site_id)),
        );
        Ok(User {
            id,
            display_name,
            given_name,
            family_name,
            email,
            site_id,
        })
    }
}

impl From<User> for v1::User {
    fn from(m: User) -> v1::User {
        v1::User {
            id: m.id.into(),
            display_name: m.display_name.into(),
            given_name: m.given_name.map(String::from).unwrap_or_default(),
            family_name: m.family_name.map(String::from).unwrap_or_default(),
            email: m.email.map(String::from).unwrap_or_default(),
            site_id: m.site_id.into(),
        }
    }
}

impl TryFrom<v1::Extension> for Extension {
    type Error = ModelErrors;
    fn try_from(p: v1::Extension) -> Result<Extension, ModelErrors> {
        all_fields!(
            number = field("number", ExtensionNumber::parse(&p.number)),
            site_id = field("site_id", SiteId::parse(&p.site_id)),
            display_name = field("display_name", Name::parse(&p.display_name)),
            class_of_service = field("class_of_service", CosName::parse(&p.class_of_service)),
            user_id = optional("user_id", &p.user_id, UserId::parse),
            device_ids = items("device_ids", &p.device_ids, |s| DeviceId::parse(s)),
        );
        Ok(Extension {
            number,
            site_id,
            display_name,
            class_of_service,
            user_id,
            device_ids,
        })
    }
}

impl From<Extension> for v1::Extension {
    fn from(m: Extension) -> v1::Extension {
        v1::Extension {
            number: m.number.into(),
            site_id: m.site_id.into(),
            display_name: m.display_name.into(),
            class_of_service: m.class_of_service.into(),
            user_id: m.user_id.map(String::from).unwrap_or_default(),
            device_ids: m.device_ids.into_iter().map(String::from).collect(),
        }
    }
}

impl TryFrom<v1::Device> for Device {
    type Error = ModelErrors;
    fn try_from(p: v1::Device) -> Result<Device, ModelErrors> {
        all_fields!(
            id = field("id", DeviceId::parse(&p.id)),
            sip_username = field("sip_username", SipUsername::parse(&p.sip_username)),
            site_id = field("site_id", SiteId::parse(&p.site_id)),
            realm = field("realm", Realm::parse(&p.realm)),
            ha1 = ha1_pair(&p.ha1_md5, &p.ha1_sha256),
            transport = transport("transport", p.transport),
        );
        Ok(Device {
            id,
            sip_username,
            site_id,
            realm,
            ha1,
            transport,
        })
    }
}

fn transport_to_proto(transport: Option<Transport>) -> i32 {
    (match transport {
        None => v1::Transport::Unspecified,
        Some(Transport::Udp) => v1::Transport::Udp,
        Some(Transport::Tcp) => v1::Transport::Tcp,
        Some(Transport::Tls) => v1::Transport::Tls,
    }) as i32
}

impl From<Device> for v1::Device {
    fn from(m: Device) -> v1::Device {
        v1::Device {
            id: m.id.into(),
            sip_username: m.sip_username.into(),
            site_id: m.site_id.into(),
            realm: m.realm.into(),
            ha1_md5: m.ha1.md5.into(),
            ha1_sha256: m.ha1.sha256.map(String::from).unwrap_or_default(),
            transport: transport_to_proto(m.transport),
        }
    }
}

impl TryFrom<v1::HuntGroup> for HuntGroup {
    type Error = ModelErrors;
    fn try_from(p: v1::HuntGroup) -> Result<HuntGroup, ModelErrors> {
        all_fields!(
            number = field("number", ExtensionNumber::parse(&p.number)),
            name = field("name", Name::parse(&p.name)),
            members = items("members", &p.members, |s| ExtensionNumber::parse(s)),
            strategy = hunt_strategy(p.strategy),
            ring_timeout = field(
                "ring_timeout_seconds",
                RingTimeout::from_seconds(p.ring_timeout_seconds)
            ),
        );
        Ok(HuntGroup {
            number,
            name,
            members,
            strategy,
            ring_timeout,
        })
    }
}

impl From<HuntGroup> for v1::HuntGroup {
    fn from(m: HuntGroup) -> v1::HuntGroup {
        v1::HuntGroup {
            number: m.number.into(),
            name: m.name.into(),
            members: m.members.into_iter().map(String::from).collect(),
            strategy: (match m.strategy {
                HuntStrategy::Simultaneous => v1::HuntStrategy::Simultaneous,
                HuntStrategy::Linear => v1::HuntStrategy::Linear,
                HuntStrategy::RoundRobin => v1::HuntStrategy::RoundRobin,
                HuntStrategy::LongestIdle => v1::HuntStrategy::LongestIdle,
            }) as i32,
            ring_timeout_seconds: m.ring_timeout.seconds(),
        }
    }
}

impl TryFrom<v1::PickupGroup> for PickupGroup {
    type Error = ModelErrors;
    fn try_from(p: v1::PickupGroup) -> Result<PickupGroup, ModelErrors> {
        all_fields!(
            number = field("number", ExtensionNumber::parse(&p.number)),
            name = field("name", Name::parse(&p.name)),
            members = items("members", &p.members, |s| ExtensionNumber::parse(s)),
        );
        Ok(PickupGroup {
            number,
            name,
            members,
        })
    }
}

impl From<PickupGroup> for v1::PickupGroup {
    fn from(m: PickupGroup) -> v1::PickupGroup {
        v1::PickupGroup {
            number: m.number.into(),
            name: m.name.into(),
            members: m.members.into_iter().map(String::from).collect(),
        }
    }
}

fn category_to_proto(category: CallCategory) -> i32 {
    (match category {
        CallCategory::Internal => v1::CallCategory::Internal,
        CallCategory::Local => v1::CallCategory::Local,
        CallCategory::National => v1::CallCategory::National,
        CallCategory::International => v1::CallCategory::International,
        CallCategory::Premium => v1::CallCategory::Premium,
    }) as i32
}

impl TryFrom<v1::ClassOfService> for ClassOfService {
    type Error = ModelErrors;
    fn try_from(p: v1::ClassOfService) -> Result<ClassOfService, ModelErrors> {
        let allowed = items(
            "allowed",
            &p.allowed,
            |value| match v1::CallCategory::try_from(*value) {
                Err(_) => Err(FieldFault::UnknownEnumValue { value: *value }),
                Ok(v1::CallCategory::Unspecified) => Err(FieldFault::Unspecified),
                Ok(v1::CallCategory::Internal) => Ok(CallCategory::Internal),
                Ok(v1::CallCategory::Local) => Ok(CallCategory::Local),
                Ok(v1::CallCategory::National) => Ok(CallCategory::National),
                Ok(v1::CallCategory::International) => Ok(CallCategory::International),
                Ok(v1::CallCategory::Premium) => Ok(CallCategory::Premium),
            },
        )
        .map(|v| v.into_iter().collect::<BTreeSet<_>>());
        all_fields!(
            name = field("name", CosName::parse(&p.name)),
            allowed = allowed
        );
        Ok(ClassOfService { name, allowed })
    }
}

impl From<ClassOfService> for v1::ClassOfService {
    fn from(m: ClassOfService) -> v1::ClassOfService {
        v1::ClassOfService {
            name: m.name.into(),
            allowed: m.allowed.into_iter().map(category_to_proto).collect(),
        }
    }
}

impl TryFrom<v1::TrunkAuth> for TrunkAuth {
    type Error = ModelErrors;
    fn try_from(p: v1::TrunkAuth) -> Result<TrunkAuth, ModelErrors> {
        all_fields!(
            username = field("username", SipUsername::parse(&p.username)),
            realm = field("realm", Realm::parse(&p.realm)),
            ha1 = ha1_pair(&p.ha1_md5, &p.ha1_sha256),
        );
        Ok(TrunkAuth {
            username,
            realm,
            ha1,
        })
    }
}

impl TryFrom<v1::Trunk> for Trunk {
    type Error = ModelErrors;
    fn try_from(p: v1::Trunk) -> Result<Trunk, ModelErrors> {
        all_fields!(
            name = field("name", TrunkName::parse(&p.name)),
            kind = trunk_kind(p.kind),
            address = field("address", HostPort::parse(&p.address)),
            transport = transport("transport", p.transport)
                .and_then(|t| t.ok_or(ModelError::field("transport", FieldFault::Unspecified))),
            auth = p
                .auth
                .map(TrunkAuth::try_from)
                .transpose()
                .map_err(|e| e.nested("auth")),
            number_ranges = number_ranges("number_ranges", &p.number_ranges),
        );
        Ok(Trunk {
            name,
            kind,
            address,
            transport,
            auth,
            number_ranges,
            max_channels: NonZeroU32::new(p.max_channels),
        })
    }
}

impl From<Trunk> for v1::Trunk {
    fn from(m: Trunk) -> v1::Trunk {
        v1::Trunk {
            name: m.name.into(),
            kind: (match m.kind {
                TrunkKind::Carrier => v1::TrunkKind::Carrier,
                TrunkKind::LegacyPbx => v1::TrunkKind::LegacyPbx,
            }) as i32,
            address: m.address.into(),
            transport: transport_to_proto(Some(m.transport)),
            auth: m.auth.map(|a| v1::TrunkAuth {
                username: a.username.into(),
                realm: a.realm.into(),
                ha1_md5: a.ha1.md5.into(),
                ha1_sha256: a.ha1.sha256.map(String::from).unwrap_or_default(),
            }),
            number_ranges: m
                .number_ranges
                .into_iter()
                .map(v1::NumberRange::from)
                .collect(),
            max_channels: m.max_channels.map_or(0, NonZeroU32::get),
        }
    }
}

impl TryFrom<v1::Route> for Route {
    type Error = ModelErrors;
    fn try_from(p: v1::Route) -> Result<Route, ModelErrors> {
        let target = match p.target {
            Some(v1::route::Target::Trunk(t)) => {
                field("trunk", TrunkName::parse(&t)).map(RouteTarget::Trunk)
            }
            Some(v1::route::Target::SiteId(s)) => {
                field("site_id", SiteId::parse(&s)).map(RouteTarget::Site)
            }
            None => Err(ModelError::MissingField {
                field: "target".to_owned(),
            }),
        };
        all_fields!(
            id = field("id", RouteId::parse(&p.id)),
            pattern = field(
                "pattern",
                RoutePattern::parse(&p.pattern).map_err(FieldFault::from)
            ),
            target = target,
            category = category("category", p.category),
            prepend = optional("prepend", &p.prepend, DigitPrefix::parse),
        );
        let max_strip = u32::try_from(pattern.min_len()).unwrap_or(u32::MAX);
        if p.strip_digits > max_strip {
            return Err(ModelError::field(
                "strip_digits",
                FieldFault::OutOfRange {
                    value: u64::from(p.strip_digits),
                    min: 0,
                    max: u64::from(max_strip),
                },
            )
            .into());
        }
        Ok(Route {
            id,
            pattern,
            target,
            priority: p.priority,
            category,
            strip_digits: p.strip_digits,
            prepend,
        })
    }
}

impl From<Route> for v1::Route {
    fn from(m: Route) -> v1::Route {
        v1::Route {
            id: m.id.into(),
            pattern: m.pattern.into(),
            target: Some(match m.target {
                RouteTarget::Trunk(t) => v1::route::Target::Trunk(t.into()),
                RouteTarget::Site(s) => v1::route::Target::SiteId(s.into()),
            }),
            priority: m.priority,
            category: category_to_proto(m.category),
            strip_digits: m.strip_digits,
            prepend: m.prepend.map(String::from).unwrap_or_default(),
        }
    }
}

impl TryFrom<v1::Entry> for Entry {
    type Error = ModelErrors;
    fn try_from(p: v1::Entry) -> Result<Entry, ModelErrors> {
        use v1::entry::Kind as K;
        Ok(match p.kind {
            None => {
                return Err(ModelError::MissingField {
                    field: "kind".to_owned(),
                }
                .into());
            }
            Some(K::Site(m)) => Entry::Site(m.try_into()?),
            Some(K::User(m)) => Entry::User(m.try_into()?),
            Some(K::Extension(m)) => Entry::Extension(m.try_into()?),
            Some(K::Device(m)) => Entry::Device(m.try_into()?),
            Some(K::HuntGroup(m)) => Entry::HuntGroup(m.try_into()?),
            Some(K::PickupGroup(m)) => Entry::PickupGroup(m.try_into()?),
            Some(K::ClassOfService(m)) => Entry::ClassOfService(m.try_into()?),
            Some(K::Trunk(m)) => Entry::Trunk(m.try_into()?),
            Some(K::Route(m)) => Entry::Route(m.try_into()?),
        })
    }
}

impl From<Entry> for v1::Entry {
    fn from(m: Entry) -> v1::Entry {
        use v1::entry::Kind as K;
        v1::Entry {
            kind: Some(match m {
                Entry::Site(e) => K::Site(e.into()),
                Entry::User(e) => K::User(e.into()),
                Entry::Extension(e) => K::Extension(e.into()),
                Entry::Device(e) => K::Device(e.into()),
                Entry::HuntGroup(e) => K::HuntGroup(e.into()),
                Entry::PickupGroup(e) => K::PickupGroup(e.into()),
                Entry::ClassOfService(e) => K::ClassOfService(e.into()),
                Entry::Trunk(e) => K::Trunk(e.into()),
                Entry::Route(e) => K::Route(e.into()),
            }),
        }
    }
}

impl TryFrom<v1::EntryKind> for Kind {
    type Error = ModelError;
    fn try_from(kind: v1::EntryKind) -> Result<Kind, ModelError> {
        Kind::from_proto(kind).ok_or(ModelError::field("kind", FieldFault::Unspecified))
    }
}

impl From<Kind> for v1::EntryKind {
    fn from(kind: Kind) -> v1::EntryKind {
        kind.to_proto()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proto::Message as _;

    use super::*;
    use crate::model::fixtures::{device, extension, hunt_group, site, small_city, trunk};

    fn fields(errors: &ModelErrors) -> Vec<String> {
        errors.0.iter().map(|e| e.field_name().to_owned()).collect()
    }

    #[test]
    fn every_invalid_field_of_a_site_is_reported() {
        let mut s = site("S 1", "4500", "4599");
        s.name = String::new();
        s.number_ranges.push(v1::NumberRange {
            first: "4700".into(),
            last: "4600".into(),
        });
        s.emergency_routes.push(v1::EmergencyRoute {
            number: "112".into(),
            trunk: "other".into(),
        });
        s.media_policy = 0;
        let err = Site::try_from(s).unwrap_err();
        assert_eq!(
            fields(&err),
            [
                "id",
                "name",
                "number_ranges[1]",
                "emergency_routes",
                "media_policy"
            ]
        );
        assert_eq!(
            err.to_string(),
            "id: contains the character ' ', which is not allowed here; name: must not be empty; \
             number_ranges[1]: range 4700-4600 ends before it starts; emergency_routes: lists \"112\" \
             twice; media_policy: must be set"
        );
    }

    #[test]
    fn a_site_needs_a_number_range() {
        let mut s = site("S-1", "4500", "4599");
        s.number_ranges.clear();
        assert_eq!(fields(&Site::try_from(s).unwrap_err()), ["number_ranges"]);
    }

    #[test]
    fn a_malformed_ha1_is_named_by_its_field() {
        let mut d = device("D-1", "alice", "S-1");
        d.ha1_md5 = "xyz".into();
        d.ha1_sha256 = "0".repeat(63);
        let err = Device::try_from(d).unwrap_err();
        assert_eq!(fields(&err), ["ha1_md5", "ha1_sha256"]);
    }

    #[test]
    fn device_transport_unspecified_means_any_but_unknown_values_are_refused() {
        let d = Device::try_from(device("D-1", "alice", "S-1")).unwrap();
        assert_eq!(d.transport, None);
        let mut p = device("D-1", "alice", "S-1");
        p.transport = 42;
        let err = Device::try_from(p).unwrap_err();
        assert_eq!(
            err.0,
            [ModelError::field(
                "transport",
                FieldFault::UnknownEnumValue { value: 42 }
            )]
        );
    }

    #[test]
    fn extension_lists_refuse_duplicates_and_bad_items() {
        let e = extension("4501", "S-1", "U-1", &["D-1", "D 2", "D-1"]);
        let err = Extension::try_from(e).unwrap_err();
        assert_eq!(fields(&err), ["device_ids[1]", "device_ids"]);
    }

    #[test]
    fn hunt_groups_check_strategy_timeout_and_members() {
        let mut h = hunt_group("5000", &["4501", "45x"]);
        h.strategy = 0;
        h.ring_timeout_seconds = 0;
        let err = HuntGroup::try_from(h).unwrap_err();
        assert_eq!(
            fields(&err),
            ["members[1]", "strategy", "ring_timeout_seconds"]
        );
    }

    #[test]
    fn trunk_faults_are_named_inside_auth() {
        let mut t = trunk("carrier", "+33491000000", "+33491099999");
        t.transport = v1::Transport::Unspecified as i32;
        t.address = "carrier.example".into();
        t.auth = Some(v1::TrunkAuth {
            username: "city".into(),
            realm: "carrier.example".into(),
            ha1_md5: "nothex".into(),
            ha1_sha256: String::new(),
        });
        let err = Trunk::try_from(t).unwrap_err();
        assert_eq!(fields(&err), ["address", "transport", "auth.ha1_md5"]);
    }

    #[test]
    fn routes_need_a_target_a_valid_pattern_and_a_possible_strip() {
        let route = v1::Route {
            id: "R-1".into(),
            pattern: "0.1".into(),
            target: None,
            priority: 1,
            category: 0,
            strip_digits: 0,
            prepend: "x".into(),
        };
        let err = Route::try_from(route).unwrap_err();
        assert_eq!(fields(&err), ["pattern", "target", "category", "prepend"]);
        let too_much = v1::Route {
            id: "R-1".into(),
            pattern: "0X".into(),
            target: Some(v1::route::Target::Trunk("carrier".into())),
            priority: 1,
            category: v1::CallCategory::Local as i32,
            strip_digits: 3,
            prepend: String::new(),
        };
        assert_eq!(
            fields(&Route::try_from(too_much).unwrap_err()),
            ["strip_digits"]
        );
    }

    #[test]
    fn classes_of_service_refuse_unspecified_and_repeated_categories() {
        let cos = v1::ClassOfService {
            name: "x".into(),
            allowed: vec![1, 0, 1, 99],
        };
        let err = ClassOfService::try_from(cos).unwrap_err();
        assert_eq!(fields(&err), ["allowed[1]", "allowed", "allowed[3]"]);
    }

    #[test]
    fn an_empty_entry_is_missing_its_kind() {
        let err = Entry::try_from(v1::Entry::default()).unwrap_err();
        assert_eq!(
            err.0,
            [ModelError::MissingField {
                field: "kind".into()
            }]
        );
    }

    #[test]
    fn the_fixture_round_trips_through_proto_and_the_wire() {
        for entry in small_city() {
            let bytes = v1::Entry::from(entry.clone()).encode_to_vec();
            let back = Entry::try_from(v1::Entry::decode(bytes.as_slice()).unwrap()).unwrap();
            assert_eq!(back, entry);
        }
    }

    // Property: any valid message converts to the model and back to the same message.
    fn ident() -> impl Strategy<Value = String> {
        "[A-Za-z0-9][A-Za-z0-9._-]{0,20}"
    }
    fn digits() -> impl Strategy<Value = String> {
        "[0-9]{1,15}"
    }
    fn name() -> impl Strategy<Value = String> {
        "[A-Za-zÀ-ÿ0-9][A-Za-zÀ-ÿ0-9 '-]{0,30}[A-Za-zÀ-ÿ0-9]"
    }
    fn hex(len: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[0-9a-f]{{{len}}}")).unwrap()
    }
    fn range() -> impl Strategy<Value = v1::NumberRange> {
        ("[0-9]{4}", "[0-9]{4}").prop_map(|(a, b)| {
            let (first, last) = if a <= b { (a, b) } else { (b, a) };
            v1::NumberRange { first, last }
        })
    }

    fn device_message() -> impl Strategy<Value = v1::Device> {
        (
            ident(),
            "[a-z0-9._+-]{1,20}",
            ident(),
            "[a-z.]{1,20}",
            hex(32),
            prop_oneof![Just(String::new()), hex(64)],
            0..4i32,
        )
            .prop_map(
                |(id, sip_username, site_id, realm, ha1_md5, ha1_sha256, transport)| v1::Device {
                    id,
                    sip_username,
                    site_id,
                    realm,
                    ha1_md5,
                    ha1_sha256,
                    transport,
                },
            )
    }

    fn trunk_message() -> impl Strategy<Value = v1::Trunk> {
        let auth = proptest::option::of(
            ("[a-z0-9]{1,10}", "[a-z.]{1,20}", hex(32), hex(64)).prop_map(
                |(username, realm, ha1_md5, ha1_sha256)| v1::TrunkAuth {
                    username,
                    realm,
                    ha1_md5,
                    ha1_sha256,
                },
            ),
        );
        (
            ident(),
            1..3i32,
            "[a-z]{1,10}(\\.[a-z]{1,10}){0,2}",
            1..=65535u16,
            1..4i32,
            auth,
            proptest::collection::hash_set(range(), 0..3),
            any::<u32>(),
        )
            .prop_map(
                |(name, kind, host, port, transport, auth, number_ranges, max_channels)| {
                    let number_ranges = number_ranges
                        .into_iter()
                        .map(|r| v1::NumberRange {
                            first: r.first,
                            last: r.last,
                        })
                        .collect();
                    v1::Trunk {
                        name,
                        kind,
                        address: format!("{host}:{port}"),
                        transport,
                        auth,
                        number_ranges,
                        max_channels,
                    }
                },
            )
    }

    fn route_message() -> impl Strategy<Value = v1::Route> {
        let element = prop_oneof![
            "[0-9*#]",
            Just("X".to_owned()),
            Just("N".to_owned()),
            Just("Z".to_owned()),
            Just("[1-5]".to_owned()),
            Just("[13]".to_owned()),
        ];
        let target = prop_oneof![
            ident().prop_map(v1::route::Target::Trunk),
            ident().prop_map(v1::route::Target::SiteId),
        ];
        (
            ident(),
            proptest::collection::vec(element, 1..10),
            any::<bool>(),
            target,
            any::<u32>(),
            1..6i32,
            "(\\+?[0-9]{1,5})?",
        )
            .prop_flat_map(
                |(id, elements, open, target, priority, category, prepend)| {
                    let len = elements.len() as u32;
                    let pattern = elements.concat() + if open { "." } else { "" };
                    (0..=len).prop_map(move |strip_digits| v1::Route {
                        id: id.clone(),
                        pattern: pattern.clone(),
                        target: Some(target.clone()),
                        priority,
                        category,
                        strip_digits,
                        prepend: prepend.clone(),
                    })
                },
            )
    }

    fn site_message() -> impl Strategy<Value = v1::Site> {
        let emergency = proptest::collection::btree_map(digits(), ident(), 0..4);
        (
            ident(),
            name(),
            proptest::collection::hash_set(range(), 1..4),
            emergency,
            1..3i32,
        )
            .prop_map(|(id, name, ranges, emergency, media_policy)| v1::Site {
                id,
                name,
                number_ranges: ranges
                    .into_iter()
                    .map(|r| v1::NumberRange {
                        first: r.first,
                        last: r.last,
                    })
                    .collect(),
                emergency_routes: emergency
                    .into_iter()
                    .map(|(number, trunk)| v1::EmergencyRoute { number, trunk })
                    .collect(),
                media_policy,
            })
    }

    fn group_message() -> impl Strategy<Value = v1::HuntGroup> {
        (
            digits(),
            name(),
            proptest::collection::btree_set(digits(), 0..8),
            1..5i32,
            1..=600u32,
        )
            .prop_map(|(number, name, members, strategy, ring_timeout_seconds)| {
                v1::HuntGroup {
                    number,
                    name,
                    members: members.into_iter().collect(),
                    strategy,
                    ring_timeout_seconds,
                }
            })
    }

    fn entry_message() -> impl Strategy<Value = v1::Entry> {
        prop_oneof![
            device_message().prop_map(v1::Entry::from),
            trunk_message().prop_map(v1::Entry::from),
            route_message().prop_map(v1::Entry::from),
            site_message().prop_map(v1::Entry::from),
            group_message().prop_map(v1::Entry::from),
            (
                ident(),
                name(),
                "([a-z]{1,8}@[a-z]{1,8}\\.[a-z]{2,3})?",
                ident()
            )
                .prop_map(|(id, display_name, email, site_id)| v1::Entry::from(
                    v1::User {
                        id,
                        display_name: display_name.clone(),
                        given_name: display_name,
                        family_name: String::new(),
                        email,
                        site_id,
                    }
                )),
            (
                digits(),
                ident(),
                name(),
                ident(),
                proptest::option::of(ident()),
                proptest::collection::btree_set(ident(), 0..4)
            )
                .prop_map(
                    |(number, site_id, display_name, class_of_service, user, devices)| {
                        v1::Entry::from(v1::Extension {
                            number,
                            site_id,
                            display_name,
                            class_of_service,
                            user_id: user.unwrap_or_default(),
                            device_ids: devices.into_iter().collect(),
                        })
                    }
                ),
            (ident(), proptest::collection::btree_set(1..6i32, 0..5)).prop_map(
                |(name, allowed)| {
                    v1::Entry::from(v1::ClassOfService {
                        name,
                        allowed: allowed.into_iter().collect(),
                    })
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn valid_messages_round_trip_through_the_model(message in entry_message()) {
            let model = Entry::try_from(message.clone());
            prop_assert!(model.is_ok(), "{:?} refused: {}", message, model.unwrap_err());
            let model = model.unwrap();
            prop_assert_eq!(v1::Entry::from(model.clone()), message);
            // And the model survives the wire.
            let bytes = v1::Entry::from(model.clone()).encode_to_vec();
            let decoded = Entry::try_from(v1::Entry::decode(bytes.as_slice()).unwrap()).unwrap();
            prop_assert_eq!(decoded, model);
        }

        #[test]
        fn arbitrary_messages_never_panic_the_conversion(
            id in ".{0,10}", number in ".{0,10}", n in any::<i32>(), u in any::<u32>()
        ) {
            let messages = [
                v1::Entry::from(v1::Site { id: id.clone(), name: number.clone(), number_ranges: vec![v1::NumberRange { first: number.clone(), last: id.clone() }], emergency_routes: vec![], media_policy: n }),
                v1::Entry::from(v1::Route { id: id.clone(), pattern: number.clone(), target: None, priority: u, category: n, strip_digits: u, prepend: id.clone() }),
                v1::Entry::from(v1::HuntGroup { number: number.clone(), name: id.clone(), members: vec![id.clone()], strategy: n, ring_timeout_seconds: u }),
                v1::Entry::from(v1::Trunk { name: id.clone(), kind: n, address: number.clone(), transport: n, auth: None, number_ranges: vec![], max_channels: u }),
            ];
            for message in messages {
                let _ = Entry::try_from(message);
            }
        }
    }
}
