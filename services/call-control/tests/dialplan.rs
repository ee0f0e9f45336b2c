//! The dial plan against a small city: two sites, extensions with devices, a hunt group, a
//! pickup group, two classes of service, routes to two trunks, emergency routes per site; and a
//! smoke test over a generated city.

// Fixture builders parse literal values: a failure is a bug in the fixture.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use call_control::dialplan::{HuntMember, MemoryDirectory, Refusal, Target, route};
use directory::import::{CityParams, generate_city};
use directory::model::{
    CallCategory, ClassOfService, CosName, Device, DeviceId, DigitPrefix, Directory,
    EmergencyNumber, EmergencyRoute, Entry, Extension, ExtensionNumber, Ha1Pair, HostPort,
    HuntGroup, HuntStrategy, MediaPolicy, Name, NumberRange, PickupGroup, Realm, RingTimeout,
    Route, RouteId, RoutePattern, RouteTarget, SipUsername, Site, SiteId, Transport, Trunk,
    TrunkKind, TrunkName,
};

fn site(id: &str, range: &str, emergency: &[(&str, &str)]) -> Entry {
    Entry::Site(Site {
        id: SiteId::parse(id).unwrap(),
        name: Name::parse(id).unwrap(),
        number_ranges: vec![NumberRange::parse(range).unwrap()],
        emergency_routes: emergency
            .iter()
            .map(|(number, trunk)| EmergencyRoute {
                number: EmergencyNumber::parse(number).unwrap(),
                trunk: TrunkName::parse(trunk).unwrap(),
            })
            .collect(),
        media_policy: MediaPolicy::Direct,
    })
}

fn device(id: &str, site: &str) -> Entry {
    let username = SipUsername::parse(&id.to_lowercase()).unwrap();
    let realm = Realm::parse("city.example").unwrap();
    Entry::Device(Device {
        id: DeviceId::parse(id).unwrap(),
        ha1: Ha1Pair::from_password(&username, &realm, "secret"),
        sip_username: username,
        site_id: SiteId::parse(site).unwrap(),
        realm,
        transport: Some(Transport::Udp),
    })
}

fn extension(number: &str, site: &str, cos: &str, devices: &[&str]) -> Entry {
    Entry::Extension(Extension {
        number: ExtensionNumber::parse(number).unwrap(),
        site_id: SiteId::parse(site).unwrap(),
        display_name: Name::parse(&format!("Ext {number}")).unwrap(),
        class_of_service: CosName::parse(cos).unwrap(),
        user_id: None,
        device_ids: devices
            .iter()
            .map(|d| DeviceId::parse(d).unwrap())
            .collect(),
    })
}

fn cos(name: &str, allowed: &[CallCategory]) -> Entry {
    Entry::ClassOfService(ClassOfService {
        name: CosName::parse(name).unwrap(),
        allowed: allowed.iter().copied().collect(),
    })
}

fn trunk(name: &str, address: &str) -> Entry {
    Entry::Trunk(Trunk {
        name: TrunkName::parse(name).unwrap(),
        kind: TrunkKind::Carrier,
        address: HostPort::parse(address).unwrap(),
        transport: Transport::Udp,
        auth: None,
        number_ranges: Vec::new(),
        max_channels: None,
    })
}

fn route_to(
    id: &str,
    pattern: &str,
    target: RouteTarget,
    priority: u32,
    category: CallCategory,
    strip: u32,
    prepend: Option<&str>,
) -> Entry {
    Entry::Route(Route {
        id: RouteId::parse(id).unwrap(),
        pattern: RoutePattern::parse(pattern).unwrap(),
        target,
        priority,
        category,
        strip_digits: strip,
        prepend: prepend.map(|p| DigitPrefix::parse(p).unwrap()),
    })
}

fn to_trunk(name: &str) -> RouteTarget {
    RouteTarget::Trunk(TrunkName::parse(name).unwrap())
}

/// Two sites: the port (`21000-21999`, emergency through carrier A) and the hill
/// (`22000-22999`, emergency through carrier B).
fn city_entries() -> Vec<Entry> {
    use CallCategory::*;
    vec![
        cos("internal-only", &[Internal]),
        cos("national", &[Internal, Local, National]),
        trunk("carrier-a", "sbc.carrier-a.example:5060"),
        trunk("carrier-b", "sbc.carrier-b.example:5060"),
        site(
            "S-port",
            "21000-21999",
            &[
                ("112", "carrier-a"),
                ("18", "carrier-a"),
                ("17", "carrier-a"),
            ],
        ),
        site(
            "S-hill",
            "22000-22999",
            &[
                ("112", "carrier-b"),
                ("15", "carrier-b"),
                ("17", "carrier-b"),
            ],
        ),
        device("D-alice-desk", "S-port"),
        device("D-alice-soft", "S-port"),
        device("D-bob", "S-port"),
        device("D-carol", "S-hill"),
        device("D-dave", "S-hill"),
        device("D-lobby", "S-hill"),
        extension(
            "21001",
            "S-port",
            "national",
            &["D-alice-desk", "D-alice-soft"],
        ),
        extension("21002", "S-port", "internal-only", &["D-bob"]),
        extension("22001", "S-hill", "national", &["D-carol"]),
        extension("22002", "S-hill", "internal-only", &["D-dave"]),
        Entry::HuntGroup(HuntGroup {
            number: ExtensionNumber::parse("21900").unwrap(),
            name: Name::parse("Reception").unwrap(),
            members: vec![
                ExtensionNumber::parse("21002").unwrap(),
                ExtensionNumber::parse("22001").unwrap(),
            ],
            strategy: HuntStrategy::Linear,
            ring_timeout: RingTimeout::from_seconds(20).unwrap(),
        }),
        Entry::PickupGroup(PickupGroup {
            number: ExtensionNumber::parse("21950").unwrap(),
            name: Name::parse("Port pickup").unwrap(),
            members: vec![
                ExtensionNumber::parse("21001").unwrap(),
                ExtensionNumber::parse("21002").unwrap(),
            ],
        }),
        route_to(
            "R-local",
            "0[1-5]XXXXXXXX",
            to_trunk("carrier-a"),
            10,
            Local,
            1,
            Some("+33"),
        ),
        // Same priority, more specific: Paris numbers leave through carrier B.
        route_to(
            "R-paris",
            "01XXXXXXXX",
            to_trunk("carrier-b"),
            10,
            Local,
            1,
            Some("+33"),
        ),
        // A backup for local numbers, used only when the better routes' trunks are gone.
        route_to(
            "R-local-backup",
            "0[1-5]XXXXXXXX",
            to_trunk("carrier-b"),
            50,
            Local,
            1,
            Some("+33"),
        ),
        route_to(
            "R-mobile",
            "0[67]XXXXXXXX",
            to_trunk("carrier-a"),
            10,
            National,
            1,
            Some("+33"),
        ),
        route_to(
            "R-e164-fr",
            "+33.",
            to_trunk("carrier-a"),
            10,
            National,
            0,
            None,
        ),
        route_to(
            "R-intl",
            "00.",
            to_trunk("carrier-b"),
            20,
            International,
            2,
            Some("+"),
        ),
        // Premium: the lower priority value wins although both patterns are the same.
        route_to(
            "R-premium-a",
            "08XXXXXXXX",
            to_trunk("carrier-a"),
            30,
            Premium,
            1,
            Some("+33"),
        ),
        route_to(
            "R-premium-b",
            "08XXXXXXXX",
            to_trunk("carrier-b"),
            5,
            Premium,
            1,
            Some("+33"),
        ),
        // A route whose trunk is gone (the directory would refuse it; the cache may see it).
        route_to(
            "R-ghost",
            "09XXXXXXXX",
            to_trunk("carrier-gone"),
            10,
            National,
            1,
            Some("+33"),
        ),
        // The old numbering of the hill: 3-digit codes after 6 reach the hill's extensions.
        route_to(
            "R-hill-legacy",
            "6XXX",
            RouteTarget::Site(SiteId::parse("S-hill").unwrap()),
            10,
            Internal,
            1,
            Some("22"),
        ),
    ]
}

fn city() -> MemoryDirectory {
    MemoryDirectory::from_entries(city_entries())
}

fn ext(number: &str, devices: &[&str], site: &str) -> Target {
    Target::Extension {
        number: number.into(),
        device_ids: devices.iter().map(|d| (*d).to_owned()).collect(),
        site_id: site.into(),
    }
}

fn via(route_id: &str, trunk: &str, number: &str, category: CallCategory) -> Target {
    Target::Trunk {
        route_id: route_id.into(),
        trunk: trunk.into(),
        number: number.into(),
        category,
    }
}

fn barred_reason(result: Result<Target, Refusal>) -> String {
    match result {
        Err(Refusal::Barred { reason }) => reason,
        other => panic!("expected Barred, got {other:?}"),
    }
}

#[test]
fn the_fixture_is_a_valid_directory_except_for_the_ghost_route() {
    let entries: Vec<Entry> = city_entries()
        .into_iter()
        .filter(|e| !matches!(e, Entry::Route(r) if r.id.as_str() == "R-ghost"))
        .collect();
    Directory::from_entries(entries).expect("valid fixture");
}

#[test]
fn a_short_number_reaches_an_extension_of_the_callers_site() {
    let d = city();
    assert_eq!(
        route(&d, "D-bob", "001"),
        Ok(ext("21001", &["D-alice-desk", "D-alice-soft"], "S-port"))
    );
    // The same short number from the other site is that site's extension.
    assert_eq!(
        route(&d, "D-dave", "001"),
        Ok(ext("22001", &["D-carol"], "S-hill"))
    );
}

#[test]
fn the_full_number_reaches_an_extension_across_sites() {
    let d = city();
    assert_eq!(
        route(&d, "D-bob", "22001"),
        Ok(ext("22001", &["D-carol"], "S-hill"))
    );
    assert_eq!(
        route(&d, "D-carol", "sip:21002@pbx.city.example;user=phone"),
        Ok(ext("21002", &["D-bob"], "S-port"))
    );
    assert_eq!(
        route(&d, "D-carol", "tel:21-002"),
        Ok(ext("21002", &["D-bob"], "S-port"))
    );
}

#[test]
fn an_extension_rings_all_its_devices_whichever_calls() {
    let d = city();
    let alice = ext("21001", &["D-alice-desk", "D-alice-soft"], "S-port");
    assert_eq!(route(&d, "D-carol", "21001"), Ok(alice.clone()));
    // Alice's own second device calls her first one's number: it rings both (forking).
    assert_eq!(route(&d, "D-alice-soft", "001"), Ok(alice));
}

#[test]
fn unknown_numbers_are_not_found() {
    let d = city();
    // In the port's range but no extension there.
    assert_eq!(route(&d, "D-bob", "21777"), Err(Refusal::NotFound));
    assert_eq!(route(&d, "D-bob", "777"), Err(Refusal::NotFound));
    // Outside every range and pattern.
    assert_eq!(route(&d, "D-bob", "+44"), Err(Refusal::NotFound));
    assert_eq!(route(&d, "D-bob", "99999"), Err(Refusal::NotFound));
    // Not a number at all.
    assert_eq!(route(&d, "D-bob", "alice"), Err(Refusal::NotFound));
    // A route to a site whose extension does not exist.
    assert_eq!(route(&d, "D-carol", "6999"), Err(Refusal::NotFound));
}

#[test]
fn too_few_digits_are_incomplete() {
    let d = city();
    // The beginning of a local number.
    assert_eq!(
        route(&d, "D-alice-desk", "049100"),
        Err(Refusal::Incomplete)
    );
    // The beginning of an international number (the pattern needs a digit after 00).
    assert_eq!(route(&d, "D-alice-desk", "00"), Err(Refusal::Incomplete));
    // The beginning of a full number of the caller's site, or of a short number.
    assert_eq!(route(&d, "D-bob", "210"), Err(Refusal::Incomplete));
    assert_eq!(route(&d, "D-bob", "2"), Err(Refusal::Incomplete));
    assert_eq!(route(&d, "D-bob", "5"), Err(Refusal::Incomplete));
    // The beginning of an E.164 number a route takes.
    assert_eq!(route(&d, "D-bob", "+3"), Err(Refusal::Incomplete));
    // The beginning of an emergency number of the hill (in no range or pattern otherwise).
    let mut entries = city_entries();
    entries.push(site("S-hill", "22000-22999", &[("1999", "carrier-b")]));
    let hill = MemoryDirectory::from_entries(entries);
    assert_eq!(route(&hill, "D-dave", "199"), Err(Refusal::Incomplete));
    assert_eq!(route(&d, "D-dave", "199"), Err(Refusal::NotFound));
    // Too many digits is not incomplete.
    assert_eq!(route(&d, "D-bob", "049100000000"), Err(Refusal::NotFound));
}

#[test]
fn an_internal_only_class_of_service_bars_national_calls_with_a_reason() {
    let d = city();
    let reason = barred_reason(route(&d, "D-bob", "0612345678"));
    assert!(reason.contains("internal-only"), "{reason}");
    assert!(reason.contains("national"), "{reason}");
    assert!(reason.contains("R-mobile"), "{reason}");
    // Local calls too, and the E.164 form is no way around it.
    barred_reason(route(&d, "D-bob", "0491000000"));
    barred_reason(route(&d, "D-bob", "+33612345678"));
    // A national class of service places the same calls.
    assert_eq!(
        route(&d, "D-alice-desk", "06 12 34 56 78"),
        Ok(via(
            "R-mobile",
            "carrier-a",
            "+33612345678",
            CallCategory::National
        ))
    );
    assert_eq!(
        route(&d, "D-alice-desk", "tel:+33612345678"),
        Ok(via(
            "R-e164-fr",
            "carrier-a",
            "+33612345678",
            CallCategory::National
        ))
    );
}

#[test]
fn a_national_class_of_service_bars_international_calls() {
    let d = city();
    let reason = barred_reason(route(&d, "D-carol", "0014155550100"));
    assert!(reason.contains("international"), "{reason}");
}

#[test]
fn emergency_calls_from_a_barred_extension_leave_through_the_callers_site_trunk() {
    let d = city();
    assert_eq!(
        route(&d, "D-bob", "112"),
        Ok(Target::Emergency {
            number: "112".into(),
            trunk: "carrier-a".into(),
            site_id: "S-port".into(),
        })
    );
    assert_eq!(
        route(&d, "D-bob", "sip:18@pbx.city.example"),
        Ok(Target::Emergency {
            number: "18".into(),
            trunk: "carrier-a".into(),
            site_id: "S-port".into(),
        })
    );
}

#[test]
fn emergency_calls_from_the_other_site_leave_through_that_sites_trunk() {
    let d = city();
    for device in ["D-dave", "D-carol"] {
        assert_eq!(
            route(&d, device, "112"),
            Ok(Target::Emergency {
                number: "112".into(),
                trunk: "carrier-b".into(),
                site_id: "S-hill".into(),
            }),
            "{device}"
        );
    }
    // Each site has its own list: 15 is an emergency number on the hill only.
    assert!(matches!(
        route(&d, "D-dave", "15"),
        Ok(Target::Emergency { .. })
    ));
    assert!(route(&d, "D-bob", "15").is_err());
}

#[test]
fn a_device_without_an_extension_may_call_emergency_numbers_only() {
    let d = city();
    assert_eq!(
        route(&d, "D-lobby", "17"),
        Ok(Target::Emergency {
            number: "17".into(),
            trunk: "carrier-b".into(),
            site_id: "S-hill".into(),
        })
    );
    let reason = barred_reason(route(&d, "D-lobby", "22001"));
    assert!(reason.contains("no extension"), "{reason}");
    barred_reason(route(&d, "D-lobby", "0491000000"));
}

#[test]
fn an_unknown_device_is_barred() {
    let d = city();
    let reason = barred_reason(route(&d, "D-stolen", "112"));
    assert!(reason.contains("D-stolen"), "{reason}");
}

#[test]
fn the_best_route_is_the_lowest_priority_then_the_most_specific() {
    let d = city();
    // Same priority 10: the fixed "01XXXXXXXX" beats "0[1-5]XXXXXXXX".
    assert_eq!(
        route(&d, "D-alice-desk", "0140000000"),
        Ok(via(
            "R-paris",
            "carrier-b",
            "+33140000000",
            CallCategory::Local
        ))
    );
    assert_eq!(
        route(&d, "D-alice-desk", "0491000000"),
        Ok(via(
            "R-local",
            "carrier-a",
            "+33491000000",
            CallCategory::Local
        ))
    );
    // Priority 5 beats priority 30 on the same pattern; premium is barred for national.
    let reason = barred_reason(route(&d, "D-alice-desk", "0899000000"));
    assert!(reason.contains("R-premium-b"), "{reason}");
}

#[test]
fn a_premium_class_of_service_takes_the_best_premium_route() {
    let mut entries = city_entries();
    entries.push(cos(
        "national",
        &[
            CallCategory::Internal,
            CallCategory::Local,
            CallCategory::National,
            CallCategory::Premium,
        ],
    ));
    let d = MemoryDirectory::from_entries(entries);
    assert_eq!(
        route(&d, "D-alice-desk", "0899000000"),
        Ok(via(
            "R-premium-b",
            "carrier-b",
            "+33899000000",
            CallCategory::Premium
        ))
    );
}

#[test]
fn a_missing_trunk_falls_back_to_the_next_route_or_is_unavailable() {
    let d = city();
    let result = route(&d, "D-alice-desk", "0912345678");
    assert!(
        matches!(&result, Err(Refusal::Unavailable { reason }) if reason.contains("carrier-gone")),
        "{result:?}"
    );
    // Without carrier A, local calls take the backup route through carrier B.
    let without_a: Vec<Entry> = city_entries()
        .into_iter()
        .filter(|e| !matches!(e, Entry::Trunk(t) if t.name.as_str() == "carrier-a"))
        .collect();
    let d = MemoryDirectory::from_entries(without_a);
    assert_eq!(
        route(&d, "D-alice-desk", "0491000000"),
        Ok(via(
            "R-local-backup",
            "carrier-b",
            "+33491000000",
            CallCategory::Local
        ))
    );
}

#[test]
fn international_numbers_lose_00_and_gain_a_plus() {
    let mut entries = city_entries();
    entries.push(cos("national", CallCategory::ALL));
    let d = MemoryDirectory::from_entries(entries);
    assert_eq!(
        route(&d, "D-carol", "00 1 415 555 0100"),
        Ok(via(
            "R-intl",
            "carrier-b",
            "+14155550100",
            CallCategory::International
        ))
    );
}

#[test]
fn a_hunt_group_number_offers_the_call_to_its_members() {
    let d = city();
    let expected = Target::HuntGroup {
        number: "21900".into(),
        members: vec![
            HuntMember {
                number: "21002".into(),
                device_ids: vec!["D-bob".into()],
            },
            HuntMember {
                number: "22001".into(),
                device_ids: vec!["D-carol".into()],
            },
        ],
        strategy: HuntStrategy::Linear,
        ring_timeout: Duration::from_secs(20),
    };
    assert_eq!(route(&d, "D-dave", "21900"), Ok(expected.clone()));
    assert_eq!(route(&d, "D-bob", "900"), Ok(expected));
}

#[test]
fn a_pickup_group_number_serves_its_members_only() {
    let d = city();
    assert_eq!(
        route(&d, "D-bob", "950"),
        Ok(Target::Pickup {
            number: "21950".into(),
            members: vec!["21001".into(), "21002".into()],
        })
    );
    let reason = barred_reason(route(&d, "D-carol", "21950"));
    assert!(reason.contains("21950"), "{reason}");
}

#[test]
fn a_route_to_a_site_reaches_that_sites_extension_after_digit_manipulation() {
    let d = city();
    assert_eq!(
        route(&d, "D-bob", "6001"),
        Ok(ext("22001", &["D-carol"], "S-hill"))
    );
}

#[test]
fn emergency_numbers_shadow_short_numbers() {
    // A site whose 3-digit short numbers include 112: the short form reaches help, the full
    // number still reaches the extension.
    let mut entries = city_entries();
    entries.push(extension("21112", "S-port", "national", &["D-alice-desk"]));
    let d = MemoryDirectory::from_entries(entries);
    assert!(matches!(
        route(&d, "D-bob", "112"),
        Ok(Target::Emergency { .. })
    ));
    assert!(matches!(
        route(&d, "D-bob", "21112"),
        Ok(Target::Extension { .. })
    ));
}

/// Every extension of a generated city is reachable by its full number from a device on
/// another site, and by its short number from a device of its own site; every device reaches
/// its site's emergency trunk.
#[test]
fn every_extension_of_a_generated_city_is_reachable() {
    let entries = generate_city(&CityParams {
        sites: 6,
        users: 120,
        devices: 90,
        hunt_groups: 4,
        seed: 7,
    })
    .expect("city");
    let directory = Directory::from_entries(entries.clone()).expect("valid city");
    let view = MemoryDirectory::from_entries(entries.clone());

    let mut devices_by_site: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for entry in &entries {
        if let Entry::Extension(e) = entry {
            for d in &e.device_ids {
                devices_by_site
                    .entry(e.site_id.to_string())
                    .or_default()
                    .push(d.to_string());
            }
        }
    }
    let mut checked = 0;
    let mut sites_seen = BTreeSet::new();
    for entry in &entries {
        match entry {
            Entry::Extension(e) => {
                let site = e.site_id.as_str();
                let expected = Target::Extension {
                    number: e.number.to_string(),
                    device_ids: e.device_ids.iter().map(ToString::to_string).collect(),
                    site_id: site.to_owned(),
                };
                let caller = devices_by_site
                    .iter()
                    .find(|(s, _)| s.as_str() != site)
                    .and_then(|(_, d)| d.first())
                    .expect("a device on another site");
                assert_eq!(
                    route(&view, caller, e.number.as_str()),
                    Ok(expected.clone()),
                    "{} from {caller}",
                    e.number
                );
                // Generated ranges are 1iii000-1iii999: three short digits.
                let short = &e.number.as_str()[4..];
                let neighbour = &devices_by_site[site][0];
                let result = route(&view, neighbour, short);
                // Short forms shadowed by an emergency number reach help instead.
                if ["112"].contains(&short) {
                    assert!(matches!(result, Ok(Target::Emergency { .. })));
                } else {
                    assert_eq!(result, Ok(expected), "{short} from {neighbour}");
                }
                checked += 1;
            }
            Entry::Device(d) => {
                let result = route(&view, d.id.as_str(), "112");
                assert_eq!(
                    result,
                    Ok(Target::Emergency {
                        number: "112".into(),
                        trunk: "carrier-a".into(),
                        site_id: d.site_id.to_string(),
                    })
                );
                sites_seen.insert(d.site_id.to_string());
            }
            Entry::HuntGroup(g) => {
                let caller = &devices_by_site.values().next().expect("devices")[0];
                assert!(matches!(
                    route(&view, caller, g.number.as_str()),
                    Ok(Target::HuntGroup { .. })
                ));
            }
            _ => {}
        }
    }
    assert_eq!(checked, 90);
    assert_eq!(sites_seen.len(), 6);
    assert!(directory.len() > checked);
}
