//! The [`Directory`] aggregate: an in-memory snapshot of every entry, always valid as a whole,
//! with indexes by number, SIP username and name prefix. Every way to build or change one
//! ([`Directory::from_entries`], [`Directory::apply`]) checks the result as a whole and returns
//! every problem found ([`ValidationErrors`]), leaving the directory unchanged when there is one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Bound;

use proto::v1;

use super::entities::{
    ClassOfService, Device, Extension, HuntGroup, PickupGroup, Route, RouteTarget, Site, Trunk,
    User,
};
use super::error::FieldFault;
use super::values::{
    CosName, DeviceId, ExtensionNumber, NumberRange, RouteId, SipUsername, SiteId, TrunkName,
    UserId,
};

/// The kinds of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// [`Site`].
    Site,
    /// [`User`].
    User,
    /// [`Extension`].
    Extension,
    /// [`Device`].
    Device,
    /// [`HuntGroup`].
    HuntGroup,
    /// [`PickupGroup`].
    PickupGroup,
    /// [`ClassOfService`].
    ClassOfService,
    /// [`Trunk`].
    Trunk,
    /// [`Route`].
    Route,
}

impl Kind {
    /// Every kind, in dependency order (what is referenced comes first).
    pub const ALL: [Kind; 9] = [
        Kind::ClassOfService,
        Kind::Trunk,
        Kind::Site,
        Kind::User,
        Kind::Device,
        Kind::Extension,
        Kind::HuntGroup,
        Kind::PickupGroup,
        Kind::Route,
    ];

    /// The name used in subjects, CSV `kind` arguments and YAML sections (`hunt_group`).
    pub fn token(self) -> &'static str {
        match self {
            Kind::Site => "site",
            Kind::User => "user",
            Kind::Extension => "extension",
            Kind::Device => "device",
            Kind::HuntGroup => "hunt_group",
            Kind::PickupGroup => "pickup_group",
            Kind::ClassOfService => "class_of_service",
            Kind::Trunk => "trunk",
            Kind::Route => "route",
        }
    }

    /// The kind named by [`Kind::token`].
    pub fn from_token(token: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.token() == token)
    }

    /// The name for humans (`hunt group`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::HuntGroup => "hunt group",
            Kind::PickupGroup => "pickup group",
            Kind::ClassOfService => "class of service",
            other => other.token(),
        }
    }

    /// The protobuf kind.
    pub fn to_proto(self) -> v1::EntryKind {
        match self {
            Kind::Site => v1::EntryKind::Site,
            Kind::User => v1::EntryKind::User,
            Kind::Extension => v1::EntryKind::Extension,
            Kind::Device => v1::EntryKind::Device,
            Kind::HuntGroup => v1::EntryKind::HuntGroup,
            Kind::PickupGroup => v1::EntryKind::PickupGroup,
            Kind::ClassOfService => v1::EntryKind::ClassOfService,
            Kind::Trunk => v1::EntryKind::Trunk,
            Kind::Route => v1::EntryKind::Route,
        }
    }

    /// The kind of a protobuf kind; `None` for `Unspecified`.
    pub fn from_proto(kind: v1::EntryKind) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.to_proto() == kind)
    }

    /// Whether entries of this kind are keyed by a directory number.
    fn is_numbered(self) -> bool {
        matches!(self, Kind::Extension | Kind::HuntGroup | Kind::PickupGroup)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Any directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A site.
    Site(Site),
    /// A user.
    User(User),
    /// An extension.
    Extension(Extension),
    /// A device.
    Device(Device),
    /// A hunt group.
    HuntGroup(HuntGroup),
    /// A pickup group.
    PickupGroup(PickupGroup),
    /// A class of service.
    ClassOfService(ClassOfService),
    /// A trunk.
    Trunk(Trunk),
    /// A route.
    Route(Route),
}

impl Entry {
    /// The entry's kind.
    pub fn kind(&self) -> Kind {
        self.key().kind()
    }

    /// The entry's key.
    pub fn key(&self) -> EntryKey {
        match self {
            Entry::Site(e) => EntryKey::Site(e.id.clone()),
            Entry::User(e) => EntryKey::User(e.id.clone()),
            Entry::Extension(e) => EntryKey::Extension(e.number.clone()),
            Entry::Device(e) => EntryKey::Device(e.id.clone()),
            Entry::HuntGroup(e) => EntryKey::HuntGroup(e.number.clone()),
            Entry::PickupGroup(e) => EntryKey::PickupGroup(e.number.clone()),
            Entry::ClassOfService(e) => EntryKey::ClassOfService(e.name.clone()),
            Entry::Trunk(e) => EntryKey::Trunk(e.name.clone()),
            Entry::Route(e) => EntryKey::Route(e.id.clone()),
        }
    }
}

/// The key of an entry: its kind and id (or number, or name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKey {
    /// A site's id.
    Site(SiteId),
    /// A user's id.
    User(UserId),
    /// An extension's number.
    Extension(ExtensionNumber),
    /// A device's id.
    Device(DeviceId),
    /// A hunt group's number.
    HuntGroup(ExtensionNumber),
    /// A pickup group's number.
    PickupGroup(ExtensionNumber),
    /// A class of service's name.
    ClassOfService(CosName),
    /// A trunk's name.
    Trunk(TrunkName),
    /// A route's id.
    Route(RouteId),
}

impl EntryKey {
    /// Parses the key `id` of an entry of `kind` (as in Get/Delete requests).
    pub fn parse(kind: Kind, id: &str) -> Result<EntryKey, FieldFault> {
        Ok(match kind {
            Kind::Site => EntryKey::Site(SiteId::parse(id)?),
            Kind::User => EntryKey::User(UserId::parse(id)?),
            Kind::Extension => EntryKey::Extension(ExtensionNumber::parse(id)?),
            Kind::Device => EntryKey::Device(DeviceId::parse(id)?),
            Kind::HuntGroup => EntryKey::HuntGroup(ExtensionNumber::parse(id)?),
            Kind::PickupGroup => EntryKey::PickupGroup(ExtensionNumber::parse(id)?),
            Kind::ClassOfService => EntryKey::ClassOfService(CosName::parse(id)?),
            Kind::Trunk => EntryKey::Trunk(TrunkName::parse(id)?),
            Kind::Route => EntryKey::Route(RouteId::parse(id)?),
        })
    }

    /// The kind of the keyed entry.
    pub fn kind(&self) -> Kind {
        match self {
            EntryKey::Site(_) => Kind::Site,
            EntryKey::User(_) => Kind::User,
            EntryKey::Extension(_) => Kind::Extension,
            EntryKey::Device(_) => Kind::Device,
            EntryKey::HuntGroup(_) => Kind::HuntGroup,
            EntryKey::PickupGroup(_) => Kind::PickupGroup,
            EntryKey::ClassOfService(_) => Kind::ClassOfService,
            EntryKey::Trunk(_) => Kind::Trunk,
            EntryKey::Route(_) => Kind::Route,
        }
    }

    /// The id, number or name.
    pub fn id(&self) -> &str {
        match self {
            EntryKey::Site(k) => k.as_str(),
            EntryKey::User(k) => k.as_str(),
            EntryKey::Extension(k) | EntryKey::HuntGroup(k) | EntryKey::PickupGroup(k) => {
                k.as_str()
            }
            EntryKey::Device(k) => k.as_str(),
            EntryKey::ClassOfService(k) => k.as_str(),
            EntryKey::Trunk(k) => k.as_str(),
            EntryKey::Route(k) => k.as_str(),
        }
    }
}

/// `extension 4512`, `site 'S-001'`: numbers bare, names quoted.
impl fmt::Display for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind().is_numbered() {
            write!(f, "{} {}", self.kind(), self.id())
        } else {
            write!(f, "{} '{}'", self.kind(), self.id())
        }
    }
}

/// What is wrong with an entry in the context of the whole directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// Two entries share one key.
    #[error("is defined more than once")]
    DuplicateKey,
    /// A delete names an entry that does not exist.
    #[error("does not exist, so it cannot be deleted")]
    NotFound,
    /// A directory number used by another extension or group.
    #[error("number {number} is already used by {owner}")]
    DuplicateNumber {
        /// The number.
        number: ExtensionNumber,
        /// Who has it.
        owner: EntryKey,
    },
    /// A reference to an entry that does not exist.
    #[error("{} '{id}' does not exist", .kind.label())]
    UnknownReference {
        /// Kind of the missing entry.
        kind: Kind,
        /// Its key.
        id: String,
    },
    /// An extension number outside its site's ranges.
    #[error("number {number} is outside the number ranges of site '{site}'")]
    NumberOutsideSite {
        /// The number.
        number: ExtensionNumber,
        /// The site.
        site: SiteId,
    },
    /// An internal number also owned by a trunk (e.g. still on the legacy PBX).
    #[error("number {number} is inside number range {range} of trunk '{trunk}'")]
    NumberOwnedByTrunk {
        /// The number.
        number: ExtensionNumber,
        /// The trunk owning it.
        trunk: TrunkName,
        /// The trunk's range holding it.
        range: NumberRange,
    },
    /// A group member that is not an extension.
    #[error("member {member} is not an extension{}", .actual.as_ref().map(|k| format!(" (it is {k})")).unwrap_or_default())]
    MemberNotExtension {
        /// The member number.
        member: ExtensionNumber,
        /// What the number is, when it is something else.
        actual: Option<EntryKey>,
    },
    /// Two devices with one SIP username.
    #[error("SIP username '{username}' is already used by device '{device}'")]
    DuplicateSipUsername {
        /// The username.
        username: SipUsername,
        /// The other device.
        device: DeviceId,
    },
    /// Number ranges of two sites, or of two trunks, overlap.
    #[error("range {range} overlaps range {other_range} of {other}")]
    RangeOverlap {
        /// This entry's range.
        range: NumberRange,
        /// The other entry.
        other: EntryKey,
        /// The other entry's range.
        other_range: NumberRange,
    },
}

/// One problem: which entry, which field, what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {field}: {fault}")]
pub struct Problem {
    /// The entry at fault.
    pub key: EntryKey,
    /// The field at fault (as named in the proto and the import columns).
    pub field: &'static str,
    /// What is wrong.
    pub fault: Fault,
}

/// Every problem found in a directory (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<Problem>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the directory", self.0.len())?;
        for problem in &self.0 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Entries to create or replace, and keys to delete, applied together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Entries created or replaced.
    pub puts: Vec<Entry>,
    /// Entries deleted.
    pub deletes: Vec<EntryKey>,
}

impl ChangeSet {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }

    /// Number of puts and deletes.
    pub fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    /// `(puts, deletes)` per kind, for reports.
    pub fn counts(&self) -> BTreeMap<Kind, (usize, usize)> {
        let mut counts = BTreeMap::new();
        for put in &self.puts {
            counts.entry(put.kind()).or_insert((0, 0)).0 += 1;
        }
        for delete in &self.deletes {
            counts.entry(delete.kind()).or_insert((0, 0)).1 += 1;
        }
        counts
    }

    /// The change events to publish once the change set is committed at `revision`.
    pub fn events(&self, revision: u64) -> Vec<v1::DirectoryChange> {
        let puts = self.puts.iter().map(|entry| v1::DirectoryChange {
            kind: entry.kind().to_proto() as i32,
            id: entry.key().id().to_owned(),
            operation: v1::ChangeOperation::Put as i32,
            revision,
            entry: Some(v1::Entry::from(entry.clone())),
        });
        let deletes = self.deletes.iter().map(|key| v1::DirectoryChange {
            kind: key.kind().to_proto() as i32,
            id: key.id().to_owned(),
            operation: v1::ChangeOperation::Delete as i32,
            revision,
            entry: None,
        });
        puts.chain(deletes).collect()
    }
}

/// The whole directory, valid as a whole, with its indexes.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    sites: BTreeMap<SiteId, Site>,
    users: BTreeMap<UserId, User>,
    extensions: BTreeMap<ExtensionNumber, Extension>,
    devices: BTreeMap<DeviceId, Device>,
    hunt_groups: BTreeMap<ExtensionNumber, HuntGroup>,
    pickup_groups: BTreeMap<ExtensionNumber, PickupGroup>,
    classes_of_service: BTreeMap<CosName, ClassOfService>,
    trunks: BTreeMap<TrunkName, Trunk>,
    routes: BTreeMap<RouteId, Route>,
    index: Indexes,
}

/// Lookups derived from the entries, rebuilt after each accepted change.
#[derive(Debug, Clone, Default)]
struct Indexes {
    /// Extension, hunt group and pickup group numbers.
    numbers: BTreeMap<ExtensionNumber, EntryKey>,
    /// Devices by SIP username.
    sip_usernames: BTreeMap<SipUsername, DeviceId>,
    /// Lower-cased names (display, given, family, site, group and trunk names) per kind.
    names: BTreeMap<(Kind, String), BTreeSet<EntryKey>>,
    /// Extensions of each user.
    user_extensions: HashMap<UserId, Vec<ExtensionNumber>>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Directory {
        Directory::default()
    }

    /// A directory of `entries`, checked as a whole: every problem is returned (keys defined
    /// twice, unknown references, number plan conflicts…).
    pub fn from_entries(
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Directory, ValidationErrors> {
        let mut directory = Directory::new();
        let mut problems = Vec::new();
        for entry in entries {
            let key = entry.key();
            // The first definition stays; later ones are reported.
            if directory.contains(&key) {
                problems.push(Problem {
                    field: key_field(key.kind()),
                    key,
                    fault: Fault::DuplicateKey,
                });
            } else {
                directory.insert(entry);
            }
        }
        problems.extend(directory.problems());
        if problems.is_empty() {
            directory.rebuild_indexes();
            Ok(directory)
        } else {
            Err(ValidationErrors(problems))
        }
    }

    /// Applies `changes` (deletes, then puts) if the result is valid as a whole; otherwise
    /// returns every problem and leaves the directory as it was.
    pub fn apply(&mut self, changes: &ChangeSet) -> Result<(), ValidationErrors> {
        *self = self.with_changes(changes)?;
        Ok(())
    }

    /// The directory `changes` would give, checked as a whole; `self` is not modified.
    pub fn with_changes(&self, changes: &ChangeSet) -> Result<Directory, ValidationErrors> {
        let mut next = self.clone();
        let mut problems = Vec::new();
        for key in &changes.deletes {
            if next.remove(key).is_none() {
                problems.push(Problem {
                    key: key.clone(),
                    field: key_field(key.kind()),
                    fault: Fault::NotFound,
                });
            }
        }
        for entry in &changes.puts {
            next.insert(entry.clone());
        }
        problems.extend(next.problems());
        if problems.is_empty() {
            next.rebuild_indexes();
            Ok(next)
        } else {
            Err(ValidationErrors(problems))
        }
    }

    /// Inserts or replaces an entry without checking (callers check the result as a whole).
    fn insert(&mut self, entry: Entry) -> Option<Entry> {
        match entry {
            Entry::Site(e) => self.sites.insert(e.id.clone(), e).map(Entry::Site),
            Entry::User(e) => self.users.insert(e.id.clone(), e).map(Entry::User),
            Entry::Extension(e) => self
                .extensions
                .insert(e.number.clone(), e)
                .map(Entry::Extension),
            Entry::Device(e) => self.devices.insert(e.id.clone(), e).map(Entry::Device),
            Entry::HuntGroup(e) => self
                .hunt_groups
                .insert(e.number.clone(), e)
                .map(Entry::HuntGroup),
            Entry::PickupGroup(e) => self
                .pickup_groups
                .insert(e.number.clone(), e)
                .map(Entry::PickupGroup),
            Entry::ClassOfService(e) => self
                .classes_of_service
                .insert(e.name.clone(), e)
                .map(Entry::ClassOfService),
            Entry::Trunk(e) => self.trunks.insert(e.name.clone(), e).map(Entry::Trunk),
            Entry::Route(e) => self.routes.insert(e.id.clone(), e).map(Entry::Route),
        }
    }

    /// Removes an entry without checking.
    fn remove(&mut self, key: &EntryKey) -> Option<Entry> {
        match key {
            EntryKey::Site(k) => self.sites.remove(k).map(Entry::Site),
            EntryKey::User(k) => self.users.remove(k).map(Entry::User),
            EntryKey::Extension(k) => self.extensions.remove(k).map(Entry::Extension),
            EntryKey::Device(k) => self.devices.remove(k).map(Entry::Device),
            EntryKey::HuntGroup(k) => self.hunt_groups.remove(k).map(Entry::HuntGroup),
            EntryKey::PickupGroup(k) => self.pickup_groups.remove(k).map(Entry::PickupGroup),
            EntryKey::ClassOfService(k) => {
                self.classes_of_service.remove(k).map(Entry::ClassOfService)
            }
            EntryKey::Trunk(k) => self.trunks.remove(k).map(Entry::Trunk),
            EntryKey::Route(k) => self.routes.remove(k).map(Entry::Route),
        }
    }

    /// Every cross-entry problem, in a stable order (kinds in [`Kind::ALL`] order, then keys).
    fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut push = |key: EntryKey, field: &'static str, fault: Fault| {
            problems.push(Problem { key, field, fault });
        };
        let unknown = |kind: Kind, id: &str| Fault::UnknownReference {
            kind,
            id: id.to_owned(),
        };

        // Sites: emergency trunks exist; ranges of two sites never overlap.
        for site in self.sites.values() {
            for route in &site.emergency_routes {
                if !self.trunks.contains_key(&route.trunk) {
                    push(
                        EntryKey::Site(site.id.clone()),
                        "emergency_routes",
                        unknown(Kind::Trunk, route.trunk.as_str()),
                    );
                }
            }
        }
        let site_ranges = self.sites.values().flat_map(|s| {
            s.number_ranges
                .iter()
                .map(move |r| (r, EntryKey::Site(s.id.clone())))
        });
        for (key, fault) in overlaps(site_ranges) {
            push(key, "number_ranges", fault);
        }
        let trunk_ranges = self.trunks.values().flat_map(|t| {
            t.number_ranges
                .iter()
                .map(move |r| (r, EntryKey::Trunk(t.name.clone())))
        });
        let trunk_overlaps = overlaps(trunk_ranges);

        for user in self.users.values() {
            if !self.sites.contains_key(&user.site_id) {
                push(
                    EntryKey::User(user.id.clone()),
                    "site_id",
                    unknown(Kind::Site, user.site_id.as_str()),
                );
            }
        }

        // One numbering plan for extensions, hunt groups and pickup groups.
        let mut numbers: BTreeMap<&ExtensionNumber, EntryKey> = BTreeMap::new();
        let numbered = self
            .extensions
            .keys()
            .map(|n| (n, EntryKey::Extension(n.clone())))
            .chain(
                self.hunt_groups
                    .keys()
                    .map(|n| (n, EntryKey::HuntGroup(n.clone()))),
            )
            .chain(
                self.pickup_groups
                    .keys()
                    .map(|n| (n, EntryKey::PickupGroup(n.clone()))),
            );
        for (number, key) in numbered {
            if let Some(owner) = numbers.get(number) {
                push(
                    key,
                    "number",
                    Fault::DuplicateNumber {
                        number: number.clone(),
                        owner: owner.clone(),
                    },
                );
                continue;
            }
            for trunk in self.trunks.values() {
                if let Some(range) = trunk
                    .number_ranges
                    .iter()
                    .find(|r| r.contains(number.as_str()))
                {
                    push(
                        key.clone(),
                        "number",
                        Fault::NumberOwnedByTrunk {
                            number: number.clone(),
                            trunk: trunk.name.clone(),
                            range: range.clone(),
                        },
                    );
                }
            }
            numbers.insert(number, key);
        }

        let mut usernames: BTreeMap<&SipUsername, &DeviceId> = BTreeMap::new();
        for device in self.devices.values() {
            let key = || EntryKey::Device(device.id.clone());
            if !self.sites.contains_key(&device.site_id) {
                push(
                    key(),
                    "site_id",
                    unknown(Kind::Site, device.site_id.as_str()),
                );
            }
            if let Some(other) = usernames.insert(&device.sip_username, &device.id) {
                push(
                    key(),
                    "sip_username",
                    Fault::DuplicateSipUsername {
                        username: device.sip_username.clone(),
                        device: other.clone(),
                    },
                );
                // Keep the first holder as the one named in later duplicates.
                usernames.insert(&device.sip_username, other);
            }
        }

        for ext in self.extensions.values() {
            let key = || EntryKey::Extension(ext.number.clone());
            match self.sites.get(&ext.site_id) {
                None => push(key(), "site_id", unknown(Kind::Site, ext.site_id.as_str())),
                Some(site) => {
                    if !site
                        .number_ranges
                        .iter()
                        .any(|r| r.contains(ext.number.as_str()))
                    {
                        push(
                            key(),
                            "number",
                            Fault::NumberOutsideSite {
                                number: ext.number.clone(),
                                site: site.id.clone(),
                            },
                        );
                    }
                }
            }
            if !self.classes_of_service.contains_key(&ext.class_of_service) {
                push(
                    key(),
                    "class_of_service",
                    unknown(Kind::ClassOfService, ext.class_of_service.as_str()),
                );
            }
            if let Some(user) = &ext.user_id
                && !self.users.contains_key(user)
            {
                push(key(), "user_id", unknown(Kind::User, user.as_str()));
            }
            for device in &ext.device_ids {
                if !self.devices.contains_key(device) {
                    push(key(), "device_ids", unknown(Kind::Device, device.as_str()));
                }
            }
        }

        let groups = self
            .hunt_groups
            .values()
            .map(|g| (EntryKey::HuntGroup(g.number.clone()), &g.members))
            .chain(
                self.pickup_groups
                    .values()
                    .map(|g| (EntryKey::PickupGroup(g.number.clone()), &g.members)),
            );
        for (key, members) in groups {
            for member in members {
                if !self.extensions.contains_key(member) {
                    push(
                        key.clone(),
                        "members",
                        Fault::MemberNotExtension {
                            member: member.clone(),
                            actual: numbers.get(member).cloned(),
                        },
                    );
                }
            }
        }

        for (key, fault) in trunk_overlaps {
            push(key, "number_ranges", fault);
        }

        for route in self.routes.values() {
            let key = EntryKey::Route(route.id.clone());
            match &route.target {
                RouteTarget::Trunk(trunk) if !self.trunks.contains_key(trunk) => {
                    push(key, "trunk", unknown(Kind::Trunk, trunk.as_str()));
                }
                RouteTarget::Site(site) if !self.sites.contains_key(site) => {
                    push(key, "site_id", unknown(Kind::Site, site.as_str()));
                }
                _ => {}
            }
        }
        problems
    }

    fn rebuild_indexes(&mut self) {
        let mut index = Indexes::default();
        for number in self.extensions.keys() {
            index
                .numbers
                .insert(number.clone(), EntryKey::Extension(number.clone()));
        }
        for number in self.hunt_groups.keys() {
            index
                .numbers
                .insert(number.clone(), EntryKey::HuntGroup(number.clone()));
        }
        for number in self.pickup_groups.keys() {
            index
                .numbers
                .insert(number.clone(), EntryKey::PickupGroup(number.clone()));
        }
        for device in self.devices.values() {
            index
                .sip_usernames
                .insert(device.sip_username.clone(), device.id.clone());
        }
        let mut name = |key: EntryKey, text: &str| {
            index
                .names
                .entry((key.kind(), text.to_lowercase()))
                .or_default()
                .insert(key);
        };
        for site in self.sites.values() {
            name(EntryKey::Site(site.id.clone()), site.name.as_str());
        }
        for user in self.users.values() {
            let key = EntryKey::User(user.id.clone());
            name(key.clone(), user.display_name.as_str());
            for other in [&user.given_name, &user.family_name].into_iter().flatten() {
                name(key.clone(), other.as_str());
            }
        }
        for ext in self.extensions.values() {
            name(
                EntryKey::Extension(ext.number.clone()),
                ext.display_name.as_str(),
            );
        }
        for device in self.devices.values() {
            name(EntryKey::Device(device.id.clone()), device.id.as_str());
        }
        for group in self.hunt_groups.values() {
            name(
                EntryKey::HuntGroup(group.number.clone()),
                group.name.as_str(),
            );
        }
        for group in self.pickup_groups.values() {
            name(
                EntryKey::PickupGroup(group.number.clone()),
                group.name.as_str(),
            );
        }
        for cos in self.classes_of_service.keys() {
            name(EntryKey::ClassOfService(cos.clone()), cos.as_str());
        }
        for trunk in self.trunks.keys() {
            name(EntryKey::Trunk(trunk.clone()), trunk.as_str());
        }
        for route in self.routes.keys() {
            name(EntryKey::Route(route.clone()), route.as_str());
        }
        for ext in self.extensions.values() {
            if let Some(user) = &ext.user_id {
                index
                    .user_extensions
                    .entry(user.clone())
                    .or_default()
                    .push(ext.number.clone());
            }
        }
        self.index = index;
    }

    /// The site with this id.
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.get(id)
    }

    /// The user with this id.
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    /// The extension with this number.
    pub fn extension(&self, number: &str) -> Option<&Extension> {
        self.extensions.get(number)
    }

    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.get(id)
    }

    /// The hunt group with this number.
    pub fn hunt_group(&self, number: &str) -> Option<&HuntGroup> {
        self.hunt_groups.get(number)
    }

    /// The pickup group with this number.
    pub fn pickup_group(&self, number: &str) -> Option<&PickupGroup> {
        self.pickup_groups.get(number)
    }

    /// The class of service with this name.
    pub fn class_of_service(&self, name: &str) -> Option<&ClassOfService> {
        self.classes_of_service.get(name)
    }

    /// The trunk with this name.
    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.get(name)
    }

    /// The route with this id.
    pub fn route(&self, id: &str) -> Option<&Route> {
        self.routes.get(id)
    }

    /// The device registering with this digest username (the registrar's lookup).
    pub fn device_by_sip_username(&self, username: &str) -> Option<&Device> {
        self.index
            .sip_usernames
            .get(username)
            .and_then(|id| self.devices.get(id))
    }

    /// What a dialled internal number is: an extension, a hunt group or a pickup group.
    pub fn number_owner(&self, number: &str) -> Option<&EntryKey> {
        self.index.numbers.get(number)
    }

    /// The extensions of a user.
    pub fn extensions_of_user(&self, user: &str) -> &[ExtensionNumber] {
        self.index
            .user_extensions
            .get(user)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The entry with this key (a copy).
    pub fn get(&self, key: &EntryKey) -> Option<Entry> {
        match key {
            EntryKey::Site(k) => self.sites.get(k).cloned().map(Entry::Site),
            EntryKey::User(k) => self.users.get(k).cloned().map(Entry::User),
            EntryKey::Extension(k) => self.extensions.get(k).cloned().map(Entry::Extension),
            EntryKey::Device(k) => self.devices.get(k).cloned().map(Entry::Device),
            EntryKey::HuntGroup(k) => self.hunt_groups.get(k).cloned().map(Entry::HuntGroup),
            EntryKey::PickupGroup(k) => self.pickup_groups.get(k).cloned().map(Entry::PickupGroup),
            EntryKey::ClassOfService(k) => self
                .classes_of_service
                .get(k)
                .cloned()
                .map(Entry::ClassOfService),
            EntryKey::Trunk(k) => self.trunks.get(k).cloned().map(Entry::Trunk),
            EntryKey::Route(k) => self.routes.get(k).cloned().map(Entry::Route),
        }
    }

    /// Whether an entry with this key exists.
    pub fn contains(&self, key: &EntryKey) -> bool {
        match key {
            EntryKey::Site(k) => self.sites.contains_key(k),
            EntryKey::User(k) => self.users.contains_key(k),
            EntryKey::Extension(k) => self.extensions.contains_key(k),
            EntryKey::Device(k) => self.devices.contains_key(k),
            EntryKey::HuntGroup(k) => self.hunt_groups.contains_key(k),
            EntryKey::PickupGroup(k) => self.pickup_groups.contains_key(k),
            EntryKey::ClassOfService(k) => self.classes_of_service.contains_key(k),
            EntryKey::Trunk(k) => self.trunks.contains_key(k),
            EntryKey::Route(k) => self.routes.contains_key(k),
        }
    }

    /// The keys of one kind, in key order.
    pub fn keys(&self, kind: Kind) -> Vec<EntryKey> {
        fn keys<K: Clone, V>(map: &BTreeMap<K, V>, f: impl Fn(K) -> EntryKey) -> Vec<EntryKey> {
            map.keys().cloned().map(f).collect()
        }
        match kind {
            Kind::Site => keys(&self.sites, EntryKey::Site),
            Kind::User => keys(&self.users, EntryKey::User),
            Kind::Extension => keys(&self.extensions, EntryKey::Extension),
            Kind::Device => keys(&self.devices, EntryKey::Device),
            Kind::HuntGroup => keys(&self.hunt_groups, EntryKey::HuntGroup),
            Kind::PickupGroup => keys(&self.pickup_groups, EntryKey::PickupGroup),
            Kind::ClassOfService => keys(&self.classes_of_service, EntryKey::ClassOfService),
            Kind::Trunk => keys(&self.trunks, EntryKey::Trunk),
            Kind::Route => keys(&self.routes, EntryKey::Route),
        }
    }

    /// The entries of one kind (copies), in key order.
    pub fn entries_of(&self, kind: Kind) -> Vec<Entry> {
        self.keys(kind).iter().filter_map(|k| self.get(k)).collect()
    }

    /// Every entry (copies), kinds in [`Kind::ALL`] order, keys in order.
    pub fn entries(&self) -> Vec<Entry> {
        Kind::ALL
            .into_iter()
            .flat_map(|k| self.entries_of(k))
            .collect()
    }

    /// A page of one kind: up to `limit` entries whose key comes after `after` (the previous
    /// page's last key; `None` for the first page), and the key to continue after, if any.
    pub fn page(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<Entry>, Option<String>) {
        let keys = self.keys(kind);
        let start = after.map_or(0, |after| keys.partition_point(|k| k.id() <= after));
        let page: Vec<Entry> = keys[start..]
            .iter()
            .take(limit)
            .filter_map(|k| self.get(k))
            .collect();
        let next = (start + page.len() < keys.len() && !page.is_empty())
            .then(|| page.last().map(|e| e.key().id().to_owned()))
            .flatten();
        (page, next)
    }

    /// Keys of the entries of `kind` whose name starts with `name_prefix` (case-insensitive; any
    /// of a user's display, given or family name) and whose number starts with `number_prefix`
    /// (extension and group numbers, a device's SIP username, a user's extensions; kinds without
    /// numbers never match a non-empty number prefix). Empty prefixes match everything. Sorted.
    pub fn search(&self, kind: Kind, name_prefix: &str, number_prefix: &str) -> Vec<EntryKey> {
        let by_name: Option<BTreeSet<EntryKey>> = (!name_prefix.is_empty()).then(|| {
            let prefix = name_prefix.to_lowercase();
            self.index
                .names
                .range((kind, prefix.clone())..)
                .take_while(|((k, name), _)| *k == kind && name.starts_with(&prefix))
                .flat_map(|(_, keys)| keys.iter().cloned())
                .collect()
        });
        let by_number: Option<BTreeSet<EntryKey>> =
            (!number_prefix.is_empty()).then(|| self.by_number_prefix(kind, number_prefix));
        match (by_name, by_number) {
            (Some(a), Some(b)) => a.intersection(&b).cloned().collect(),
            (Some(a), None) | (None, Some(a)) => a.into_iter().collect(),
            (None, None) => self.keys(kind),
        }
    }

    fn by_number_prefix(&self, kind: Kind, prefix: &str) -> BTreeSet<EntryKey> {
        let numbers = || {
            self.index
                .numbers
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(n, _)| n.as_str().starts_with(prefix))
        };
        match kind {
            Kind::Extension | Kind::HuntGroup | Kind::PickupGroup => numbers()
                .filter(|(_, k)| k.kind() == kind)
                .map(|(_, k)| k.clone())
                .collect(),
            Kind::User => numbers()
                .filter_map(|(n, _)| self.extensions.get(n)?.user_id.clone())
                .map(EntryKey::User)
                .collect(),
            Kind::Device => self
                .index
                .sip_usernames
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(u, _)| u.as_str().starts_with(prefix))
                .map(|(_, id)| EntryKey::Device(id.clone()))
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Number of entries of each kind.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        BTreeMap::from([
            (Kind::Site, self.sites.len()),
            (Kind::User, self.users.len()),
            (Kind::Extension, self.extensions.len()),
            (Kind::Device, self.devices.len()),
            (Kind::HuntGroup, self.hunt_groups.len()),
            (Kind::PickupGroup, self.pickup_groups.len()),
            (Kind::ClassOfService, self.classes_of_service.len()),
            (Kind::Trunk, self.trunks.len()),
            (Kind::Route, self.routes.len()),
        ])
    }

    /// Total number of entries.
    pub fn len(&self) -> usize {
        self.counts().values().sum()
    }

    /// Whether the directory holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Two directories are equal when they hold the same entries (indexes are derived).
impl PartialEq for Directory {
    fn eq(&self, other: &Directory) -> bool {
        self.sites == other.sites
            && self.users == other.users
            && self.extensions == other.extensions
            && self.devices == other.devices
            && self.hunt_groups == other.hunt_groups
            && self.pickup_groups == other.pickup_groups
            && self.classes_of_service == other.classes_of_service
            && self.trunks == other.trunks
            && self.routes == other.routes
    }
}

impl Eq for Directory {}

/// The field holding the key of an entry of `kind`.
pub(crate) fn key_field(kind: Kind) -> &'static str {
    match kind {
        Kind::Site | Kind::User | Kind::Device | Kind::Route => "id",
        Kind::Extension | Kind::HuntGroup | Kind::PickupGroup => "number",
        Kind::ClassOfService | Kind::Trunk => "name",
    }
}

/// Overlapping ranges of different owners: each overlap reported once, on the later owner.
fn overlaps<'a>(
    ranges: impl Iterator<Item = (&'a NumberRange, EntryKey)>,
) -> Vec<(EntryKey, Fault)> {
    let mut sorted: Vec<(&NumberRange, EntryKey)> = ranges.collect();
    sorted.sort_by(|a, b| (a.0.first().len(), a.0.first()).cmp(&(b.0.first().len(), b.0.first())));
    let mut faults = Vec::new();
    // Sweep: compare each range with the earlier ones still open (ending at or after its start).
    let mut open: Vec<(&NumberRange, &EntryKey)> = Vec::new();
    for (range, owner) in &sorted {
        open.retain(|(r, _)| r.overlaps(range));
        for (other_range, other) in &open {
            if *other != owner {
                faults.push((
                    owner.clone(),
                    Fault::RangeOverlap {
                        range: (*range).clone(),
                        other: (*other).clone(),
                        other_range: (*other_range).clone(),
                    },
                ));
            }
        }
        open.push((range, owner));
    }
    faults.sort_by(|a, b| a.0.cmp(&b.0));
    faults
}

#[cfg(test)]
mod tests {
    use proto::v1;

    use super::*;
    use crate::model::fixtures::{device, entry, extension, hunt_group, site, small_city, trunk};

    fn city() -> Directory {
        match Directory::from_entries(small_city()) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// The problems of `small_city()` plus `extra` entries (replacing same keys).
    fn problems_with(extra: Vec<Entry>) -> Vec<Problem> {
        let changes = ChangeSet {
            puts: extra,
            deletes: vec![],
        };
        city()
            .with_changes(&changes)
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
    }

    fn key(kind: Kind, id: &str) -> EntryKey {
        EntryKey::parse(kind, id).unwrap()
    }

    #[test]
    fn the_fixture_is_valid_and_indexed() {
        let d = city();
        assert_eq!(d.len(), 14);
        assert_eq!(
            d.device_by_sip_username("alice").unwrap().id.as_str(),
            "D-1"
        );
        assert!(d.device_by_sip_username("carol").is_none());
        assert_eq!(d.number_owner("5000"), Some(&key(Kind::HuntGroup, "5000")));
        assert_eq!(d.number_owner("4501"), Some(&key(Kind::Extension, "4501")));
        assert_eq!(d.extensions_of_user("U-1").len(), 1);
        assert!(d.extensions_of_user("U-2").is_empty());
        assert_eq!(d.counts()[&Kind::Extension], 3);
    }

    #[test]
    fn a_key_defined_twice_is_reported() {
        let mut entries = small_city();
        entries.push(entry(site("S-1", "4800", "4899")));
        let err = Directory::from_entries(entries).unwrap_err();
        assert_eq!(
            err.0,
            vec![Problem {
                key: key(Kind::Site, "S-1"),
                field: "id",
                fault: Fault::DuplicateKey
            }]
        );
    }

    #[test]
    fn an_extension_number_taken_by_a_group_is_a_duplicate_number() {
        let problems = problems_with(vec![entry(hunt_group("4501", &["4502"]))]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, key(Kind::HuntGroup, "4501"));
        assert_eq!(problems[0].field, "number");
        assert_eq!(
            problems[0].to_string(),
            "hunt group 4501: number: number 4501 is already used by extension 4501"
        );
    }

    #[test]
    fn every_unknown_reference_is_reported_at_once() {
        let mut bad = extension("4503", "S-9", "U-9", &["D-9", "D-1"]);
        bad.class_of_service = "gold".into();
        let mut route = v1::Route {
            id: "R-x".into(),
            pattern: "00.".into(),
            target: Some(v1::route::Target::Trunk("nowhere".into())),
            priority: 1,
            category: v1::CallCategory::International as i32,
            strip_digits: 0,
            prepend: String::new(),
        };
        let route_to_trunk = entry(route.clone());
        route.id = "R-y".into();
        route.target = Some(v1::route::Target::SiteId("S-9".into()));
        let problems = problems_with(vec![
            entry(bad),
            entry(device("D-3", "carol", "S-9")),
            route_to_trunk,
            entry(route),
        ]);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "device 'D-3': site_id: site 'S-9' does not exist",
                "extension 4503: site_id: site 'S-9' does not exist",
                "extension 4503: class_of_service: class of service 'gold' does not exist",
                "extension 4503: user_id: user 'U-9' does not exist",
                "extension 4503: device_ids: device 'D-9' does not exist",
                "route 'R-x': trunk: trunk 'nowhere' does not exist",
                "route 'R-y': site_id: site 'S-9' does not exist",
            ]
        );
    }

    #[test]
    fn unknown_user_site_and_emergency_trunk_are_reported() {
        let mut s = site("S-3", "4700", "4799");
        s.emergency_routes[0].trunk = "gone".into();
        let mut user = match &small_city()[5] {
            Entry::User(u) => v1::User::from(u.clone()),
            other => panic!("{other:?}"),
        };
        user.id = "U-2".into();
        user.site_id = "S-7".into();
        let problems = problems_with(vec![entry(s), entry(user)]);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "site 'S-3': emergency_routes: trunk 'gone' does not exist",
                "user 'U-2': site_id: site 'S-7' does not exist",
            ]
        );
    }

    #[test]
    fn an_extension_outside_its_site_ranges_is_reported() {
        let problems = problems_with(vec![entry(extension("4650", "S-1", "", &[]))]);
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].fault,
            Fault::NumberOutsideSite {
                number: ExtensionNumber::parse("4650").unwrap(),
                site: SiteId::parse("S-1").unwrap()
            }
        );
    }

    #[test]
    fn an_internal_number_still_owned_by_a_trunk_is_reported() {
        let problems = problems_with(vec![
            entry(site("S-7", "7000", "7099")),
            entry(extension("7001", "S-7", "", &[])),
        ]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].to_string(),
            "extension 7001: number: number 7001 is inside number range 7000-7999 of trunk 'legacy'"
        );
    }

    #[test]
    fn group_members_must_be_extensions() {
        let problems = problems_with(vec![entry(hunt_group("5002", &["4501", "4999", "5000"]))]);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "hunt group 5002: members: member 4999 is not an extension",
                "hunt group 5002: members: member 5000 is not an extension (it is hunt group 5000)",
            ]
        );
    }

    #[test]
    fn a_sip_username_is_used_by_one_device_only() {
        let problems = problems_with(vec![entry(device("D-3", "alice", "S-1"))]);
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].to_string(),
            "device 'D-3': sip_username: SIP username 'alice' is already used by device 'D-1'"
        );
    }

    #[test]
    fn overlapping_ranges_of_trunks_or_sites_are_reported() {
        let problems = problems_with(vec![
            entry(trunk("legacy-2", "7900", "8099")),
            entry(site("S-3", "4550", "4649")),
        ]);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "site 'S-2': number_ranges: range 4600-4699 overlaps range 4550-4649 of site 'S-3'",
                "site 'S-3': number_ranges: range 4550-4649 overlaps range 4500-4599 of site 'S-1'",
                "trunk 'legacy-2': number_ranges: range 7900-8099 overlaps range 7000-7999 of trunk 'legacy'",
            ]
        );
    }

    #[test]
    fn ranges_of_different_lengths_do_not_overlap() {
        let problems = problems_with(vec![entry(site("S-3", "45000", "45999"))]);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_failed_apply_leaves_the_directory_unchanged() {
        let mut d = city();
        let before = d.clone();
        let changes = ChangeSet {
            puts: vec![entry(extension("4503", "S-1", "", &[]))],
            deletes: vec![key(Kind::Site, "S-1"), key(Kind::Site, "S-404")],
        };
        let err = d.apply(&changes).unwrap_err();
        assert_eq!(d, before);
        let text: Vec<String> = err.0.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&"site 'S-404': id: does not exist, so it cannot be deleted".to_owned()),
            "{text:?}"
        );
        // Every entry on the deleted site says so.
        for referencing in [
            "user 'U-1'",
            "device 'D-1'",
            "device 'D-2'",
            "extension 4501",
            "extension 4502",
            "extension 4503",
        ] {
            assert!(
                text.contains(&format!(
                    "{referencing}: site_id: site 'S-1' does not exist"
                )),
                "{referencing} in {text:?}"
            );
        }
    }

    #[test]
    fn a_valid_apply_updates_entries_and_indexes() {
        let mut d = city();
        let changes = ChangeSet {
            puts: vec![
                entry(device("D-2", "robert", "S-1")),
                entry(extension("4503", "S-1", "", &[])),
            ],
            deletes: vec![key(Kind::PickupGroup, "5001")],
        };
        d.apply(&changes).unwrap();
        assert!(d.device_by_sip_username("bob").is_none());
        assert_eq!(
            d.device_by_sip_username("robert").unwrap().id.as_str(),
            "D-2"
        );
        assert!(d.extension("4503").is_some());
        assert!(d.number_owner("5001").is_none());
    }

    #[test]
    fn search_finds_by_name_prefix_and_number_prefix() {
        let d = city();
        assert_eq!(
            d.search(Kind::User, "mar", ""),
            vec![key(Kind::User, "U-1")]
        );
        assert_eq!(
            d.search(Kind::User, "ÉLO", ""),
            vec![key(Kind::User, "U-1")]
        );
        assert_eq!(
            d.search(Kind::User, "", "450"),
            vec![key(Kind::User, "U-1")]
        );
        assert!(d.search(Kind::User, "bob", "").is_empty());
        assert_eq!(
            d.search(Kind::Extension, "", "45"),
            vec![key(Kind::Extension, "4501"), key(Kind::Extension, "4502")]
        );
        assert_eq!(
            d.search(Kind::Extension, "extension 46", "4"),
            vec![key(Kind::Extension, "4601")]
        );
        assert_eq!(
            d.search(Kind::Device, "", "al"),
            vec![key(Kind::Device, "D-1")]
        );
        assert_eq!(
            d.search(Kind::HuntGroup, "", "5"),
            vec![key(Kind::HuntGroup, "5000")]
        );
        assert!(d.search(Kind::Trunk, "", "7").is_empty());
        assert_eq!(d.search(Kind::Site, "", "").len(), 2);
    }

    #[test]
    fn pages_cover_every_entry_once() {
        let d = city();
        let (first, next) = d.page(Kind::Extension, None, 2);
        assert_eq!(first.len(), 2);
        let next = next.unwrap();
        assert_eq!(next, "4502");
        let (second, after) = d.page(Kind::Extension, Some(&next), 2);
        assert_eq!(
            second.iter().map(|e| e.key()).collect::<Vec<_>>(),
            vec![key(Kind::Extension, "4601")]
        );
        assert_eq!(after, None);
    }

    #[test]
    fn change_events_name_kind_key_operation_and_revision() {
        let changes = ChangeSet {
            puts: vec![entry(extension("4503", "S-1", "", &[]))],
            deletes: vec![key(Kind::Device, "D-2")],
        };
        let events = changes.events(7);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, v1::EntryKind::Extension as i32);
        assert_eq!((events[0].id.as_str(), events[0].revision), ("4503", 7));
        assert_eq!(events[0].operation, v1::ChangeOperation::Put as i32);
        assert!(events[0].entry.is_some());
        assert_eq!(events[1].operation, v1::ChangeOperation::Delete as i32);
        assert!(events[1].entry.is_none());
        assert_eq!(changes.counts()[&Kind::Device], (0, 1));
    }

    #[test]
    fn kinds_map_to_proto_and_subject_tokens() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_proto(kind.to_proto()), Some(kind));
            assert_eq!(
                proto::subjects::kind_token(kind.to_proto()),
                Some(kind.token())
            );
            assert_eq!(Kind::from_token(kind.token()), Some(kind));
        }
        assert_eq!(Kind::from_proto(v1::EntryKind::Unspecified), None);
    }
}
