//! A generator of a city-sized directory, for tests and the import benchmark: sites with their
//! number ranges and emergency routing, users, devices with HA1s, extensions, hunt and pickup
//! groups, classes of service, carrier and legacy-PBX trunks, routes. Deterministic for a seed.
//!
//! Numbering: site `i` owns the 7-digit range `1iii000-1iii999`; hunt groups are `8000000+g`,
//! pickup groups `8500000+p`; the legacy PBX owns `7000-7999`; carriers own `+33` DID blocks.

use std::collections::BTreeSet;
use std::num::NonZeroU32;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::{
    CallCategory, ClassOfService, CosName, Device, DeviceId, DigitPrefix, Email, EmergencyNumber,
    EmergencyRoute, Entry, Extension, ExtensionNumber, FieldFault, Ha1Pair, HostPort, HuntGroup,
    HuntStrategy, MediaPolicy, Name, NumberRange, PatternError, PickupGroup, Realm, RingTimeout,
    Route, RouteId, RoutePattern, RouteTarget, SipUsername, Site, SiteId, Transport, Trunk,
    TrunkAuth, TrunkKind, TrunkName, User, UserId,
};

/// The size of the generated city.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CityParams {
    /// Sites (at most 899).
    pub sites: usize,
    /// Users (staff).
    pub users: usize,
    /// Devices; each has one extension (at most 1,000 per site).
    pub devices: usize,
    /// Hunt groups.
    pub hunt_groups: usize,
    /// Seed of the pseudo-random choices.
    pub seed: u64,
}

impl CityParams {
    /// The reference customer: 300 sites, 12,000 users, 6,000 devices, 50 hunt groups.
    pub fn reference(seed: u64) -> CityParams {
        CityParams {
            sites: 300,
            users: 12_000,
            devices: 6_000,
            hunt_groups: 50,
            seed,
        }
    }
}

/// Why a city cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The sizes do not fit the numbering plan.
    #[error(
        "cannot generate {devices} devices on {sites} sites (at most 899 sites, 1,000 extensions per site, and at least one site)"
    )]
    TooLarge {
        /// Sites asked for.
        sites: usize,
        /// Devices asked for.
        devices: usize,
    },
    /// A generated value failed its own check (a bug in the generator).
    #[error("generated an invalid value: {0}")]
    Invalid(#[from] FieldFault),
    /// A generated route pattern failed its check (a bug in the generator).
    #[error("generated an invalid pattern: {0}")]
    Pattern(#[from] PatternError),
}

const GIVEN: &[&str] = &[
    "Camille",
    "Léa",
    "Manon",
    "Chloé",
    "Inès",
    "Sarah",
    "Jade",
    "Louise",
    "Emma",
    "Zoé",
    "Lucas",
    "Hugo",
    "Thomas",
    "Nathan",
    "Louis",
    "Théo",
    "Arthur",
    "Jules",
    "Gabriel",
    "Raphaël",
    "Karim",
    "Yasmine",
    "Mehdi",
    "Fatou",
    "Moussa",
    "Élodie",
    "François",
    "Hélène",
    "Noël",
    "Anaïs",
];
const FAMILY: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèbvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "Benali",
    "N'Diaye",
    "Nguyen",
];
const BUILDINGS: &[&str] = &[
    "Town hall",
    "Library",
    "School",
    "Swimming pool",
    "Depot",
    "Police station",
    "Fire station",
    "Museum",
    "Nursery",
    "Sports hall",
    "Community centre",
    "Technical services",
    "Archives",
];
const DISTRICTS: &[&str] = &[
    "Vieux-Port",
    "Belsunce",
    "Noailles",
    "Castellane",
    "Joliette",
    "Estaque",
    "Goudes",
    "Mazargues",
    "Endoume",
    "Sormiou",
    "Valmer",
    "Saint-Just",
    "Chartreux",
    "Pointe-Rouge",
];

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// Generates a valid city directory (see the module documentation), deterministic for the seed.
/// Import it with `Directory::from_entries`, or export it with `export_yaml` / `export_csv`.
pub fn generate_city(params: &CityParams) -> Result<Vec<Entry>, GenerateError> {
    let CityParams {
        sites,
        users,
        devices,
        hunt_groups,
        seed,
    } = *params;
    if sites == 0 || sites > 899 || devices.div_ceil(sites) > 1000 {
        return Err(GenerateError::TooLarge { sites, devices });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut entries = Vec::new();
    let realm = Realm::parse("city.example")?;

    // Classes of service, from the most restricted.
    let cos_names = ["internal", "local", "national", "international"];
    let categories = [
        CallCategory::Internal,
        CallCategory::Local,
        CallCategory::National,
        CallCategory::International,
    ];
    for (i, name) in cos_names.iter().enumerate() {
        entries.push(Entry::ClassOfService(ClassOfService {
            name: CosName::parse(name)?,
            allowed: categories[..=i].iter().copied().collect(),
        }));
    }

    // Trunks: two carriers (one with credentials) and the legacy PBX.
    let password: String = (0..16)
        .map(|_| char::from(rng.random_range(b'a'..=b'z')))
        .collect();
    let carrier_user = SipUsername::parse("city-trunk")?;
    let carrier_realm = Realm::parse("sbc.carrier-b.example")?;
    let trunks = [
        (
            "carrier-a",
            TrunkKind::Carrier,
            "sbc.carrier-a.example:5060",
            Transport::Udp,
            None,
            "+33491000000-+33491099999",
            240,
        ),
        (
            "carrier-b",
            TrunkKind::Carrier,
            "sbc.carrier-b.example:5061",
            Transport::Tls,
            Some(TrunkAuth {
                ha1: Ha1Pair::from_password(&carrier_user, &carrier_realm, &password),
                username: carrier_user.clone(),
                realm: carrier_realm.clone(),
            }),
            "+33486000000-+33486009999",
            120,
        ),
        (
            "legacy-pbx",
            TrunkKind::LegacyPbx,
            "192.0.2.10:5060",
            Transport::Tcp,
            None,
            "7000-7999",
            0,
        ),
    ];
    for (name, kind, address, transport, auth, range, channels) in trunks {
        entries.push(Entry::Trunk(Trunk {
            name: TrunkName::parse(name)?,
            kind,
            address: HostPort::parse(address)?,
            transport,
            auth,
            number_ranges: vec![NumberRange::parse(range)?],
            max_channels: NonZeroU32::new(channels),
        }));
    }
    let carrier_a = TrunkName::parse("carrier-a")?;

    // Sites.
    let site_ids: Vec<SiteId> = (0..sites)
        .map(|i| SiteId::parse(&format!("S-{i:03}")))
        .collect::<Result<_, _>>()?;
    for (i, id) in site_ids.iter().enumerate() {
        let base = 1_000_000 + i * 1000;
        let emergency_routes = ["112", "15", "17", "18"]
            .into_iter()
            .map(|n| {
                Ok(EmergencyRoute {
                    number: EmergencyNumber::parse(n)?,
                    trunk: carrier_a.clone(),
                })
            })
            .collect::<Result<_, FieldFault>>()?;
        entries.push(Entry::Site(Site {
            id: id.clone(),
            name: Name::parse(&format!(
                "{} {} {}",
                pick(&mut rng, BUILDINGS),
                pick(&mut rng, DISTRICTS),
                i
            ))?,
            number_ranges: vec![NumberRange::new(
                &base.to_string(),
                &(base + 999).to_string(),
            )?],
            emergency_routes,
            // Police sites (every 25th) keep media anchored.
            media_policy: if i % 25 == 7 {
                MediaPolicy::Relay
            } else {
                MediaPolicy::Direct
            },
        }));
    }

    // Users.
    let mut user_names = Vec::with_capacity(users);
    for i in 0..users {
        let given = pick(&mut rng, GIVEN);
        let family = pick(&mut rng, FAMILY);
        let display = format!("{given} {family}");
        let ascii = |s: &str| -> String {
            s.chars()
                .filter(char::is_ascii_alphabetic)
                .collect::<String>()
                .to_lowercase()
        };
        entries.push(Entry::User(User {
            id: UserId::parse(&format!("U-{i:05}"))?,
            display_name: Name::parse(&display)?,
            given_name: Some(Name::parse(given)?),
            family_name: Some(Name::parse(family)?),
            email: rng
                .random_bool(0.9)
                .then(|| {
                    Email::parse(&format!(
                        "{}.{}.{i}@city.example",
                        ascii(given),
                        ascii(family)
                    ))
                })
                .transpose()?,
            site_id: site_ids[i % sites].clone(),
        }));
        user_names.push(display);
    }

    // Devices and their extensions: device j is on site j % sites; every 25th extension is a
    // shared line without a user.
    let transports = [
        None,
        Some(Transport::Udp),
        Some(Transport::Tcp),
        Some(Transport::Tls),
    ];
    let mut site_extensions: Vec<Vec<ExtensionNumber>> = vec![Vec::new(); sites];
    for j in 0..devices {
        let site = j % sites;
        let device_id = DeviceId::parse(&format!("D-{j:05}"))?;
        let username = SipUsername::parse(&format!("dev{j:05}"))?;
        let password: String = (0..12)
            .map(|_| char::from(rng.random_range(b'a'..=b'z')))
            .collect();
        let mut ha1 = Ha1Pair::from_password(&username, &realm, &password);
        if j % 50 == 3 {
            // Migrated from the legacy PBX with an MD5 HA1 only.
            ha1.sha256 = None;
        }
        entries.push(Entry::Device(Device {
            id: device_id.clone(),
            sip_username: username,
            site_id: site_ids[site].clone(),
            realm: realm.clone(),
            ha1,
            transport: transports[rng.random_range(0..transports.len())],
        }));
        let number = ExtensionNumber::parse(&(1_000_000 + site * 1000 + j / sites).to_string())?;
        let (user_id, display) = match user_names.get(j) {
            Some(name) if j % 25 != 24 => {
                (Some(UserId::parse(&format!("U-{j:05}"))?), name.clone())
            }
            _ => (None, format!("Shared line {j}")),
        };
        let cos = cos_names[rng.random_range(0..cos_names.len())];
        entries.push(Entry::Extension(Extension {
            number: number.clone(),
            site_id: site_ids[site].clone(),
            display_name: Name::parse(&display)?,
            class_of_service: CosName::parse(cos)?,
            user_id,
            device_ids: vec![device_id],
        }));
        site_extensions[site].push(number);
    }

    // Hunt groups: members drawn from a few sites (the crisis line spans the city).
    let all_extensions: Vec<&ExtensionNumber> = site_extensions.iter().flatten().collect();
    let strategies = HuntStrategy::ALL;
    for g in 0..hunt_groups {
        let mut members = BTreeSet::new();
        let wanted = rng.random_range(2..=20).min(all_extensions.len());
        while members.len() < wanted {
            members.insert(all_extensions[rng.random_range(0..all_extensions.len())].clone());
        }
        entries.push(Entry::HuntGroup(HuntGroup {
            number: ExtensionNumber::parse(&(8_000_000 + g).to_string())?,
            name: Name::parse(&format!("Hunt group {g}"))?,
            members: members.into_iter().collect(),
            strategy: strategies[rng.random_range(0..strategies.len())],
            ring_timeout: RingTimeout::from_seconds(rng.random_range(10..=60))?,
        }));
    }

    // Pickup groups: one per site with at least two extensions.
    for (p, members) in site_extensions
        .iter()
        .enumerate()
        .filter(|(_, m)| m.len() >= 2)
    {
        entries.push(Entry::PickupGroup(PickupGroup {
            number: ExtensionNumber::parse(&(8_500_000 + p).to_string())?,
            name: Name::parse(&format!("Pickup {}", site_ids[p]))?,
            members: members.clone(),
        }));
    }

    // Routes: national and international through carrier A, premium through carrier B, the
    // legacy PBX's numbers to it.
    let routes = [
        (
            "R-local",
            "0[1-5]XXXXXXXX",
            "carrier-a",
            CallCategory::Local,
            10,
            Some("+33"),
        ),
        (
            "R-mobile",
            "0[67]XXXXXXXX",
            "carrier-a",
            CallCategory::National,
            10,
            Some("+33"),
        ),
        (
            "R-intl",
            "00.",
            "carrier-a",
            CallCategory::International,
            20,
            Some("+"),
        ),
        (
            "R-premium",
            "08XXXXXXXX",
            "carrier-b",
            CallCategory::Premium,
            10,
            Some("+33"),
        ),
        (
            "R-legacy",
            "7XXX",
            "legacy-pbx",
            CallCategory::Internal,
            5,
            None,
        ),
    ];
    for (id, pattern, trunk, category, priority, prepend) in routes {
        let strip = match prepend {
            Some("+") => 2,
            Some(_) => 1,
            None => 0,
        };
        entries.push(Entry::Route(Route {
            id: RouteId::parse(id)?,
            pattern: RoutePattern::parse(pattern)?,
            target: RouteTarget::Trunk(TrunkName::parse(trunk)?),
            priority,
            category,
            strip_digits: strip,
            prepend: prepend.map(DigitPrefix::parse).transpose()?,
        }));
    }
    Ok(entries)
}
