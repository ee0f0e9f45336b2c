//! The file records: one flat record per entry kind, shared by YAML (one mapping per entry)
//! and CSV (one row per entry; the columns are the record's fields, in order). Every field is
//! text; lists are YAML sequences or `;`-separated CSV cells. A record becomes a protobuf
//! message (syntax: list items, enum names, integers) and then a model entry (every other check),
//! so an import accepts exactly what the API accepts.

use std::fmt;

use proto::v1;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{
    CallCategory, Entry, FieldFault, HuntStrategy, Kind, MediaPolicy, ModelError, ModelErrors,
    Transport, TrunkKind,
};

/// A text cell. YAML scalars that are not strings (`number: 4512`) are taken as their text;
/// quote numbers with leading zeros.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Text(pub(crate) String);

impl Text {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text(text)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Text, E> {
                Ok(Text::default())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn texts(items: impl IntoIterator<Item = String>) -> Vec<Text> {
    items.into_iter().map(Text).collect()
}

fn strings(items: &[Text]) -> Vec<String> {
    items.iter().map(|t| t.0.clone()).collect()
}

/// Syntax errors found while turning a record into its protobuf message.
#[derive(Default)]
struct Syntax(Vec<ModelError>);

impl Syntax {
    /// An enum by its file name (`round-robin`); empty is UNSPECIFIED (0).
    fn name<T: Copy>(
        &mut self,
        field: &str,
        text: &Text,
        parse: fn(&str) -> Result<T, FieldFault>,
        to_proto: fn(T) -> i32,
    ) -> i32 {
        if text.is_empty() {
            return 0;
        }
        match parse(&text.0) {
            Ok(v) => to_proto(v),
            Err(fault) => {
                self.0.push(ModelError::field(field, fault));
                0
            }
        }
    }

    /// An unsigned integer; empty is 0.
    fn number(&mut self, field: &str, text: &Text) -> u32 {
        if text.is_empty() {
            return 0;
        }
        text.0.parse().unwrap_or_else(|_| {
            self.0.push(ModelError::field(
                field,
                FieldFault::NotDigits {
                    value: text.0.clone(),
                },
            ));
            0
        })
    }

    /// Combines these syntax errors with the result of the model conversion, dropping model
    /// errors about fields that already have a syntax error (they would only repeat it).
    fn finish<T>(self, model: Result<T, ModelErrors>) -> Result<T, ModelErrors> {
        if self.0.is_empty() {
            return model;
        }
        let mut errors = self.0;
        if let Err(ModelErrors(more)) = model {
            let bad: Vec<String> = errors.iter().map(|e| e.field_name().to_owned()).collect();
            errors.extend(
                more.into_iter()
                    .filter(|e| !bad.iter().any(|b| e.field_name().starts_with(b.as_str()))),
            );
        }
        Err(ModelErrors(errors))
    }
}

fn ranges(items: &[Text]) -> Vec<v1::NumberRange> {
    items
        .iter()
        .map(|t| {
            let (first, last) = t.0.split_once('-').unwrap_or((&t.0, &t.0));
            v1::NumberRange {
                first: first.trim().to_owned(),
                last: last.trim().to_owned(),
            }
        })
        .collect()
}

fn range_texts(ranges: Vec<v1::NumberRange>) -> Vec<Text> {
    texts(
        ranges
            .into_iter()
            .map(|r| format!("{}-{}", r.first, r.last)),
    )
}

/// Declares a record struct with its CSV columns (`[list]` marks a list column).
macro_rules! record {
    ($(#[$meta:meta])* $name:ident { $($field:ident $(: $list:ident)?),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub(crate) struct $name {
            $(
                #[serde(skip_serializing_if = "is_empty")]
                pub(crate) $field: record!(@type $($list)?),
            )+
        }

        impl $name {
            /// The CSV columns, in order, and whether each is a list.
            pub(crate) const COLUMNS: &'static [(&'static str, bool)] =
                &[$((stringify!($field), record!(@is_list $($list)?))),+];
        }
    };
    (@type list) => { Vec<Text> };
    (@type) => { Text };
    (@is_list list) => { true };
    (@is_list) => { false };
}

/// Whether a field is left out of the YAML (empty text or list).
fn is_empty<T: IsEmpty>(value: &T) -> bool {
    value.is_blank()
}

trait IsEmpty {
    fn is_blank(&self) -> bool;
}

impl IsEmpty for Text {
    fn is_blank(&self) -> bool {
        self.is_empty()
    }
}

impl IsEmpty for Vec<Text> {
    fn is_blank(&self) -> bool {
        self.is_empty()
    }
}

record!(
    /// A site: `number_ranges` items are `first-last`, `emergency_routes` items `number=trunk`.
    SiteRecord { id, name, number_ranges: list, emergency_routes: list, media_policy }
);
record!(
    /// A user.
    UserRecord { id, display_name, given_name, family_name, email, site_id }
);
record!(
    /// An extension.
    ExtensionRecord { number, site_id, display_name, class_of_service, user_id, device_ids: list }
);
record!(
    /// A device (HA1s, never a password).
    DeviceRecord { id, sip_username, site_id, realm, ha1_md5, ha1_sha256, transport }
);
record!(
    /// A hunt group.
    HuntGroupRecord { number, name, members: list, strategy, ring_timeout_seconds }
);
record!(
    /// A pickup group.
    PickupGroupRecord { number, name, members: list }
);
record!(
    /// A class of service.
    ClassOfServiceRecord { name, allowed: list }
);
record!(
    /// A trunk; the `auth_*` columns are all empty when it presents no credentials.
    TrunkRecord {
        name, kind, address, transport, auth_username, auth_realm, auth_ha1_md5, auth_ha1_sha256,
        number_ranges: list, max_channels,
    }
);
record!(
    /// A route: exactly one of `trunk` and `site_id`.
    RouteRecord { id, pattern, trunk, site_id, priority, category, strip_digits, prepend }
);

/// Any record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Site(SiteRecord),
    User(UserRecord),
    Extension(ExtensionRecord),
    Device(DeviceRecord),
    HuntGroup(HuntGroupRecord),
    PickupGroup(PickupGroupRecord),
    ClassOfService(ClassOfServiceRecord),
    Trunk(TrunkRecord),
    Route(RouteRecord),
}

/// The CSV columns of a kind.
pub(crate) fn columns(kind: Kind) -> &'static [(&'static str, bool)] {
    match kind {
        Kind::Site => SiteRecord::COLUMNS,
        Kind::User => UserRecord::COLUMNS,
        Kind::Extension => ExtensionRecord::COLUMNS,
        Kind::Device => DeviceRecord::COLUMNS,
        Kind::HuntGroup => HuntGroupRecord::COLUMNS,
        Kind::PickupGroup => PickupGroupRecord::COLUMNS,
        Kind::ClassOfService => ClassOfServiceRecord::COLUMNS,
        Kind::Trunk => TrunkRecord::COLUMNS,
        Kind::Route => RouteRecord::COLUMNS,
    }
}

impl Record {
    /// Deserialises a record of `kind` from a YAML value (a mapping).
    pub(crate) fn from_value(
        kind: Kind,
        value: serde_norway::Value,
    ) -> Result<Record, serde_norway::Error> {
        use serde_norway::from_value;
        Ok(match kind {
            Kind::Site => Record::Site(from_value(value)?),
            Kind::User => Record::User(from_value(value)?),
            Kind::Extension => Record::Extension(from_value(value)?),
            Kind::Device => Record::Device(from_value(value)?),
            Kind::HuntGroup => Record::HuntGroup(from_value(value)?),
            Kind::PickupGroup => Record::PickupGroup(from_value(value)?),
            Kind::ClassOfService => Record::ClassOfService(from_value(value)?),
            Kind::Trunk => Record::Trunk(from_value(value)?),
            Kind::Route => Record::Route(from_value(value)?),
        })
    }

    /// Serialises the record as a YAML value.
    pub(crate) fn to_value(&self) -> Result<serde_norway::Value, serde_norway::Error> {
        use serde_norway::to_value;
        match self {
            Record::Site(r) => to_value(r),
            Record::User(r) => to_value(r),
            Record::Extension(r) => to_value(r),
            Record::Device(r) => to_value(r),
            Record::HuntGroup(r) => to_value(r),
            Record::PickupGroup(r) => to_value(r),
            Record::ClassOfService(r) => to_value(r),
            Record::Trunk(r) => to_value(r),
            Record::Route(r) => to_value(r),
        }
    }

    /// The key text of the record (to name it in errors, even when invalid).
    pub(crate) fn key_text(&self) -> &str {
        match self {
            Record::Site(r) => &r.id.0,
            Record::User(r) => &r.id.0,
            Record::Extension(r) => &r.number.0,
            Record::Device(r) => &r.id.0,
            Record::HuntGroup(r) => &r.number.0,
            Record::PickupGroup(r) => &r.number.0,
            Record::ClassOfService(r) => &r.name.0,
            Record::Trunk(r) => &r.name.0,
            Record::Route(r) => &r.id.0,
        }
    }

    /// Checks the record into a model entry, reporting every invalid field.
    pub(crate) fn into_entry(self) -> Result<Entry, ModelErrors> {
        let mut syntax = Syntax::default();
        match self {
            Record::Site(r) => {
                let mut emergency_routes = Vec::new();
                for (i, item) in r.emergency_routes.iter().enumerate() {
                    match item.0.split_once('=') {
                        Some((number, trunk)) => emergency_routes.push(v1::EmergencyRoute {
                            number: number.trim().to_owned(),
                            trunk: trunk.trim().to_owned(),
                        }),
                        None => syntax.0.push(ModelError::field(
                            format!("emergency_routes[{i}]"),
                            FieldFault::Malformed {
                                value: item.0.clone(),
                                expected: "number=trunk",
                            },
                        )),
                    }
                }
                let message = v1::Site {
                    id: r.id.0,
                    name: r.name.0,
                    number_ranges: ranges(&r.number_ranges),
                    emergency_routes,
                    media_policy: syntax.name(
                        "media_policy",
                        &r.media_policy,
                        MediaPolicy::parse,
                        |v| {
                            (match v {
                                MediaPolicy::Direct => v1::MediaPolicy::Direct,
                                MediaPolicy::Relay => v1::MediaPolicy::Relay,
                            }) as i32
                        },
                    ),
                };
                syntax.finish(message.try_into().map(Entry::Site))
            }
            Record::User(r) => v1::User {
                id: r.id.0,
                display_name: r.display_name.0,
                given_name: r.given_name.0,
                family_name: r.family_name.0,
                email: r.email.0,
                site_id: r.site_id.0,
            }
            .try_into()
            .map(Entry::User),
            Record::Extension(r) => v1::Extension {
                number: r.number.0,
                site_id: r.site_id.0,
                display_name: r.display_name.0,
                class_of_service: r.class_of_service.0,
                user_id: r.user_id.0,
                device_ids: strings(&r.device_ids),
            }
            .try_into()
            .map(Entry::Extension),
            Record::Device(r) => {
                let message = v1::Device {
                    id: r.id.0,
                    sip_username: r.sip_username.0,
                    site_id: r.site_id.0,
                    realm: r.realm.0,
                    ha1_md5: r.ha1_md5.0,
                    ha1_sha256: r.ha1_sha256.0,
                    transport: syntax.name(
                        "transport",
                        &r.transport,
                        Transport::parse,
                        transport_to_proto,
                    ),
                };
                syntax.finish(message.try_into().map(Entry::Device))
            }
            Record::HuntGroup(r) => {
                let message = v1::HuntGroup {
                    number: r.number.0,
                    name: r.name.0,
                    members: strings(&r.members),
                    strategy: syntax.name("strategy", &r.strategy, HuntStrategy::parse, |v| {
                        (match v {
                            HuntStrategy::Simultaneous => v1::HuntStrategy::Simultaneous,
                            HuntStrategy::Linear => v1::HuntStrategy::Linear,
                            HuntStrategy::RoundRobin => v1::HuntStrategy::RoundRobin,
                            HuntStrategy::LongestIdle => v1::HuntStrategy::LongestIdle,
                        }) as i32
                    }),
                    ring_timeout_seconds: syntax
                        .number("ring_timeout_seconds", &r.ring_timeout_seconds),
                };
                syntax.finish(message.try_into().map(Entry::HuntGroup))
            }
            Record::PickupGroup(r) => v1::PickupGroup {
                number: r.number.0,
                name: r.name.0,
                members: strings(&r.members),
            }
            .try_into()
            .map(Entry::PickupGroup),
            Record::ClassOfService(r) => {
                let allowed = r
                    .allowed
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        syntax.name(
                            &format!("allowed[{i}]"),
                            t,
                            CallCategory::parse,
                            category_to_proto,
                        )
                    })
                    .collect();
                let message = v1::ClassOfService {
                    name: r.name.0,
                    allowed,
                };
                syntax.finish(message.try_into().map(Entry::ClassOfService))
            }
            Record::Trunk(r) => {
                let has_auth = [
                    &r.auth_username,
                    &r.auth_realm,
                    &r.auth_ha1_md5,
                    &r.auth_ha1_sha256,
                ]
                .iter()
                .any(|t| !t.is_empty());
                let message = v1::Trunk {
                    name: r.name.0,
                    kind: syntax.name("kind", &r.kind, TrunkKind::parse, |v| {
                        (match v {
                            TrunkKind::Carrier => v1::TrunkKind::Carrier,
                            TrunkKind::LegacyPbx => v1::TrunkKind::LegacyPbx,
                        }) as i32
                    }),
                    address: r.address.0,
                    transport: syntax.name(
                        "transport",
                        &r.transport,
                        Transport::parse,
                        transport_to_proto,
                    ),
                    auth: has_auth.then_some(v1::TrunkAuth {
                        username: r.auth_username.0,
                        realm: r.auth_realm.0,
                        ha1_md5: r.auth_ha1_md5.0,
                        ha1_sha256: r.auth_ha1_sha256.0,
                    }),
                    number_ranges: ranges(&r.number_ranges),
                    max_channels: syntax.number("max_channels", &r.max_channels),
                };
                // The model names nested fields `auth.username`; the file says `auth_username`.
                let entry = Entry::try_from(v1::Entry {
                    kind: Some(v1::entry::Kind::Trunk(message)),
                })
                .map_err(|e| {
                    ModelErrors(
                        e.0.into_iter()
                            .map(|err| match err {
                                ModelError::InvalidField { field, reason } => {
                                    ModelError::InvalidField {
                                        field: field.replacen("auth.", "auth_", 1),
                                        reason,
                                    }
                                }
                                other => other,
                            })
                            .collect(),
                    )
                });
                syntax.finish(entry)
            }
            Record::Route(r) => {
                let target = match (r.trunk.is_empty(), r.site_id.is_empty()) {
                    (false, true) => Some(v1::route::Target::Trunk(r.trunk.0)),
                    (true, false) => Some(v1::route::Target::SiteId(r.site_id.0)),
                    (true, true) => None,
                    (false, false) => {
                        syntax
                            .0
                            .push(ModelError::field("trunk", FieldFault::BothTargets));
                        Some(v1::route::Target::Trunk(r.trunk.0))
                    }
                };
                let message = v1::Route {
                    id: r.id.0,
                    pattern: r.pattern.0,
                    target,
                    priority: syntax.number("priority", &r.priority),
                    category: syntax.name(
                        "category",
                        &r.category,
                        CallCategory::parse,
                        category_to_proto,
                    ),
                    strip_digits: syntax.number("strip_digits", &r.strip_digits),
                    prepend: r.prepend.0,
                };
                syntax.finish(message.try_into().map(Entry::Route))
            }
        }
    }

    /// The record of a model entry (for export).
    pub(crate) fn from_entry(entry: Entry) -> Record {
        let name = |text: &str| Text(text.to_owned());
        match entry {
            Entry::Site(m) => {
                let emergency = texts(
                    m.emergency_routes
                        .iter()
                        .map(|r| format!("{}={}", r.number, r.trunk)),
                );
                let media_policy = name(m.media_policy.as_str());
                let p = v1::Site::from(m);
                Record::Site(SiteRecord {
                    id: p.id.into(),
                    name: p.name.into(),
                    number_ranges: range_texts(p.number_ranges),
                    emergency_routes: emergency,
                    media_policy,
                })
            }
            Entry::User(m) => {
                let p = v1::User::from(m);
                Record::User(UserRecord {
                    id: p.id.into(),
                    display_name: p.display_name.into(),
                    given_name: p.given_name.into(),
                    family_name: p.family_name.into(),
                    email: p.email.into(),
                    site_id: p.site_id.into(),
                })
            }
            Entry::Extension(m) => {
                let p = v1::Extension::from(m);
                Record::Extension(ExtensionRecord {
                    number: p.number.into(),
                    site_id: p.site_id.into(),
                    display_name: p.display_name.into(),
                    class_of_service: p.class_of_service.into(),
                    user_id: p.user_id.into(),
                    device_ids: texts(p.device_ids),
                })
            }
            Entry::Device(m) => {
                let transport = Text(
                    m.transport
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                );
                let p = v1::Device::from(m);
                Record::Device(DeviceRecord {
                    id: p.id.into(),
                    sip_username: p.sip_username.into(),
                    site_id: p.site_id.into(),
                    realm: p.realm.into(),
                    ha1_md5: p.ha1_md5.into(),
                    ha1_sha256: p.ha1_sha256.into(),
                    transport,
                })
            }
            Entry::HuntGroup(m) => {
                let strategy = name(m.strategy.as_str());
                let p = v1::HuntGroup::from(m);
                Record::HuntGroup(HuntGroupRecord {
                    number: p.number.into(),
                    name: p.name.into(),
                    members: texts(p.members),
                    strategy,
                    ring_timeout_seconds: p.ring_timeout_seconds.to_string().into(),
                })
            }
            Entry::PickupGroup(m) => {
                let p = v1::PickupGroup::from(m);
                Record::PickupGroup(PickupGroupRecord {
                    number: p.number.into(),
                    name: p.name.into(),
                    members: texts(p.members),
                })
            }
            Entry::ClassOfService(m) => Record::ClassOfService(ClassOfServiceRecord {
                name: m.name.to_string().into(),
                allowed: texts(m.allowed.iter().map(|c| c.as_str().to_owned())),
            }),
            Entry::Trunk(m) => {
                let kind = name(m.kind.as_str());
                let transport = name(m.transport.as_str());
                let p = v1::Trunk::from(m);
                let auth = p.auth.unwrap_or_default();
                Record::Trunk(TrunkRecord {
                    name: p.name.into(),
                    kind,
                    address: p.address.into(),
                    transport,
                    auth_username: auth.username.into(),
                    auth_realm: auth.realm.into(),
                    auth_ha1_md5: auth.ha1_md5.into(),
                    auth_ha1_sha256: auth.ha1_sha256.into(),
                    number_ranges: range_texts(p.number_ranges),
                    max_channels: if p.max_channels == 0 {
                        Text::default()
                    } else {
                        p.max_channels.to_string().into()
                    },
                })
            }
            Entry::Route(m) => {
                let category = name(m.category.as_str());
                let p = v1::Route::from(m);
                let (trunk, site_id) = match p.target {
                    Some(v1::route::Target::Trunk(t)) => (t, String::new()),
                    Some(v1::route::Target::SiteId(s)) => (String::new(), s),
                    None => (String::new(), String::new()),
                };
                Record::Route(RouteRecord {
                    id: p.id.into(),
                    pattern: p.pattern.into(),
                    trunk: trunk.into(),
                    site_id: site_id.into(),
                    priority: p.priority.to_string().into(),
                    category,
                    strip_digits: p.strip_digits.to_string().into(),
                    prepend: p.prepend.into(),
                })
            }
        }
    }
}

fn transport_to_proto(transport: Transport) -> i32 {
    (match transport {
        Transport::Udp => v1::Transport::Udp,
        Transport::Tcp => v1::Transport::Tcp,
        Transport::Tls => v1::Transport::Tls,
    }) as i32
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

/// Reads one file record (a YAML item or a CSV row) into `set`, or its faults into `errors`:
/// the one place both formats turn records into entries, so they report faults alike.
pub(crate) fn collect_record(
    kind: Kind,
    value: serde_norway::Value,
    location: super::Location,
    set: &mut super::ImportSet,
    errors: &mut Vec<super::ImportError>,
) {
    use super::{ImportError, ImportFault, Imported};
    let record = match Record::from_value(kind, value) {
        Ok(record) => record,
        Err(e) => {
            errors.push(ImportError::file(Some(location), ImportFault::Record(e)));
            return;
        }
    };
    let key = record.key_text().to_owned();
    match record.into_entry() {
        Ok(entry) => set.entries.push(Imported { location, entry }),
        Err(e) => errors.extend(ImportError::fields(location, kind, &key, e.0)),
    }
}
