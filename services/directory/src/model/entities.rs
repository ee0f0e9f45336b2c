//! The directory's entries as validated domain types. A value of these types is well-formed on
//! its own (every field checked); whether it fits the rest of the directory (references, number
//! plan) is checked by [`super::Directory`].

use std::collections::BTreeSet;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use super::credentials::Ha1Pair;
use super::pattern::RoutePattern;
use super::values::{
    CosName, DeviceId, DigitPrefix, Email, EmergencyNumber, ExtensionNumber, HostPort, Name,
    NumberRange, Realm, RouteId, SipUsername, SiteId, TrunkName, UserId,
};

/// How a site's phones carry audio to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MediaPolicy {
    /// On-net phones exchange RTP directly.
    Direct,
    /// Media is always anchored on the relay.
    Relay,
}

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

/// A category of destination (routes say what a number is, classes of service what may be
/// dialled). Emergency is not one: it is always allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallCategory {
    /// Inside the PBX.
    Internal,
    /// Local public numbers.
    Local,
    /// National public numbers.
    National,
    /// International numbers.
    International,
    /// Premium-rate numbers.
    Premium,
}

/// How a hunt group offers a call to its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HuntStrategy {
    /// All members ring at once.
    Simultaneous,
    /// Members ring in the listed order.
    Linear,
    /// Linear, starting after the member offered the previous call.
    RoundRobin,
    /// The member idle the longest rings first.
    LongestIdle,
}

/// What is at the far end of a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrunkKind {
    /// A carrier.
    Carrier,
    /// The legacy PBX during the migration.
    LegacyPbx,
}

/// Declares the kebab-case name of each variant (`as_str`, `Display`, `parse`), as used in
/// serde and in the import files.
macro_rules! named_enum {
    ($name:ident, $expected:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every variant.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in import files and serde.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The variant named `text` (as in [`Self::as_str`]).
            pub fn parse(text: &str) -> Result<$name, super::FieldFault> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text).ok_or_else(|| {
                    super::FieldFault::UnknownName {
                        value: text.to_owned(),
                        expected: $expected,
                    }
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(MediaPolicy, "direct, relay", { Direct => "direct", Relay => "relay" });
named_enum!(Transport, "udp, tcp, tls", { Udp => "udp", Tcp => "tcp", Tls => "tls" });
named_enum!(CallCategory, "internal, local, national, international, premium", {
    Internal => "internal",
    Local => "local",
    National => "national",
    International => "international",
    Premium => "premium",
});
named_enum!(HuntStrategy, "simultaneous, linear, round-robin, longest-idle", {
    Simultaneous => "simultaneous",
    Linear => "linear",
    RoundRobin => "round-robin",
    LongestIdle => "longest-idle",
});
named_enum!(TrunkKind, "carrier, legacy-pbx", { Carrier => "carrier", LegacyPbx => "legacy-pbx" });

/// An emergency number of a site and the trunk it leaves through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyRoute {
    /// The number dialled.
    pub number: EmergencyNumber,
    /// The trunk used.
    pub trunk: TrunkName,
}

/// A site: number ranges, emergency routing, media policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Key.
    pub id: SiteId,
    /// Human name.
    pub name: Name,
    /// The site's extension numbers (at least one range).
    pub number_ranges: Vec<NumberRange>,
    /// Emergency numbers (each at most once) and their trunks.
    pub emergency_routes: Vec<EmergencyRoute>,
    /// Direct or relayed media.
    pub media_policy: MediaPolicy,
}

/// A person on the staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Key.
    pub id: UserId,
    /// Name shown on phones.
    pub display_name: Name,
    /// Given name.
    pub given_name: Option<Name>,
    /// Family name.
    pub family_name: Option<Name>,
    /// E-mail address.
    pub email: Option<Email>,
    /// Where the user works.
    pub site_id: SiteId,
}

/// A directory number ringing devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// Key; inside the site's ranges.
    pub number: ExtensionNumber,
    /// The site whose range holds the number.
    pub site_id: SiteId,
    /// Caller name presented.
    pub display_name: Name,
    /// What the extension may dial.
    pub class_of_service: CosName,
    /// Owner; `None` for a shared line.
    pub user_id: Option<UserId>,
    /// Devices that ring (each at most once).
    pub device_ids: Vec<DeviceId>,
}

/// A SIP device and its digest credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Key.
    pub id: DeviceId,
    /// Digest username, unique in the directory.
    pub sip_username: SipUsername,
    /// Where the device is.
    pub site_id: SiteId,
    /// Realm of the HA1s.
    pub realm: Realm,
    /// The HA1s.
    pub ha1: Ha1Pair,
    /// Expected transport; `None` means any.
    pub transport: Option<Transport>,
}

/// Seconds a hunt group rings a member (or the whole group, for simultaneous): 1–600.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct RingTimeout(u32);

impl RingTimeout {
    /// Longest allowed ring time.
    pub const MAX_SECONDS: u32 = 600;

    /// A ring timeout of `seconds` (1–600).
    pub fn from_seconds(seconds: u32) -> Result<RingTimeout, super::FieldFault> {
        if (1..=Self::MAX_SECONDS).contains(&seconds) {
            Ok(RingTimeout(seconds))
        } else {
            Err(super::FieldFault::OutOfRange {
                value: u64::from(seconds),
                min: 1,
                max: u64::from(Self::MAX_SECONDS),
            })
        }
    }

    /// The timeout in seconds.
    pub fn seconds(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for RingTimeout {
    type Error = super::FieldFault;
    fn try_from(seconds: u32) -> Result<RingTimeout, super::FieldFault> {
        RingTimeout::from_seconds(seconds)
    }
}

impl From<RingTimeout> for u32 {
    fn from(timeout: RingTimeout) -> u32 {
        timeout.0
    }
}

/// A number offering calls to several extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HuntGroup {
    /// Key, in the shared numbering plan.
    pub number: ExtensionNumber,
    /// Human name.
    pub name: Name,
    /// Member extensions in order (each at most once; may be empty while being set up).
    pub members: Vec<ExtensionNumber>,
    /// How members are offered calls.
    pub strategy: HuntStrategy,
    /// Ring time per member (or for the group, when simultaneous).
    pub ring_timeout: RingTimeout,
}

/// Extensions that may pick up each other's ringing calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickupGroup {
    /// Key, in the shared numbering plan (dialled to pick up).
    pub number: ExtensionNumber,
    /// Human name.
    pub name: Name,
    /// Member extensions (each at most once).
    pub members: Vec<ExtensionNumber>,
}

/// What an extension may dial; emergency numbers are always allowed and not listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassOfService {
    /// Key.
    pub name: CosName,
    /// Allowed categories.
    pub allowed: BTreeSet<CallCategory>,
}

impl ClassOfService {
    /// Whether a call of `category` is allowed. Emergency calls do not ask: they always are.
    pub fn allows(&self, category: CallCategory) -> bool {
        self.allowed.contains(&category)
    }
}

/// Credentials a trunk presents (HA1 only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkAuth {
    /// Username.
    pub username: SipUsername,
    /// Realm of the HA1s.
    pub realm: Realm,
    /// The HA1s.
    pub ha1: Ha1Pair,
}

/// A SIP trunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trunk {
    /// Key.
    pub name: TrunkName,
    /// Carrier or legacy PBX.
    pub kind: TrunkKind,
    /// Far end.
    pub address: HostPort,
    /// Transport towards the far end.
    pub transport: Transport,
    /// Credentials, when the far end asks for them.
    pub auth: Option<TrunkAuth>,
    /// Numbers the trunk owns (never overlapping another trunk's).
    pub number_ranges: Vec<NumberRange>,
    /// Simultaneous calls allowed; `None` is unlimited.
    pub max_channels: Option<NonZeroU32>,
}

/// Where a route sends matching calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteTarget {
    /// Out through a trunk.
    Trunk(TrunkName),
    /// To another site.
    Site(SiteId),
}

/// A dialling rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Key.
    pub id: RouteId,
    /// Numbers matched.
    pub pattern: RoutePattern,
    /// Where they go.
    pub target: RouteTarget,
    /// Lower first.
    pub priority: u32,
    /// What the destination is (checked against the class of service).
    pub category: CallCategory,
    /// Digits removed from the front (at most the pattern's shortest match).
    pub strip_digits: u32,
    /// Digits added in front after stripping.
    pub prepend: Option<DigitPrefix>,
}
