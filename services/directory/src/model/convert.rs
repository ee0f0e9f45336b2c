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
