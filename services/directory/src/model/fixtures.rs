//! A small valid directory for the model's and the import's unit tests, written as protobuf
//! messages (the API's form) and converted.

use proto::v1;

use super::Entry;

fn range(first: &str, last: &str) -> v1::NumberRange {
    v1::NumberRange {
        first: first.into(),
        last: last.into(),
    }
}

pub(crate) fn site(id: &str, first: &str, last: &str) -> v1::Site {
    v1::Site {
        id: id.into(),
        name: format!("Site {id}"),
        number_ranges: vec![range(first, last)],
        emergency_routes: vec![v1::EmergencyRoute {
            number: "112".into(),
            trunk: "carrier".into(),
        }],
        media_policy: v1::MediaPolicy::Direct as i32,
    }
}

pub(crate) fn extension(number: &str, site: &str, user: &str, devices: &[&str]) -> v1::Extension {
    v1::Extension {
        number: number.into(),
        site_id: site.into(),
        display_name: format!("Extension {number}"),
        class_of_service: "national".into(),
        user_id: user.into(),
        device_ids: devices.iter().map(|d| (*d).to_owned()).collect(),
    }
}

pub(crate) fn device(id: &str, username: &str, site: &str) -> v1::Device {
    v1::Device {
        id: id.into(),
        sip_username: username.into(),
        site_id: site.into(),
        realm: "city.example".into(),
        ha1_md5: "0123456789abcdef0123456789abcdef".into(),
        ha1_sha256: String::new(),
        transport: v1::Transport::Unspecified as i32,
    }
}

pub(crate) fn trunk(name: &str, first: &str, last: &str) -> v1::Trunk {
    v1::Trunk {
        name: name.into(),
        kind: v1::TrunkKind::Carrier as i32,
        address: format!("{name}.example:5060"),
        transport: v1::Transport::Udp as i32,
        auth: None,
        number_ranges: vec![range(first, last)],
        max_channels: 30,
    }
}

pub(crate) fn hunt_group(number: &str, members: &[&str]) -> v1::HuntGroup {
    v1::HuntGroup {
        number: number.into(),
        name: format!("Group {number}"),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        strategy: v1::HuntStrategy::Linear as i32,
        ring_timeout_seconds: 20,
    }
}

pub(crate) fn entry(message: impl Into<v1::entry::Kind>) -> Entry {
    match Entry::try_from(v1::Entry {
        kind: Some(message.into()),
    }) {
        Ok(entry) => entry,
        Err(e) => panic!("fixture does not convert: {e}"),
    }
}

/// Two sites (4500-4599, 4600-4699), a user, two devices, three extensions, a hunt group, a
/// pickup group, a class of service, a carrier and a legacy trunk (7000-7999), a route.
pub(crate) fn small_city() -> Vec<Entry> {
    vec![
        entry(v1::ClassOfService {
            name: "national".into(),
            allowed: vec![
                v1::CallCategory::Internal as i32,
                v1::CallCategory::National as i32,
            ],
        }),
        entry(trunk("carrier", "+33491000000", "+33491099999")),
        entry(trunk("legacy", "7000", "7999")),
        entry(site("S-1", "4500", "4599")),
        entry(site("S-2", "4600", "4699")),
        entry(v1::User {
            id: "U-1".into(),
            display_name: "Élodie Martin".into(),
            given_name: "Élodie".into(),
            family_name: "Martin".into(),
            email: "elodie.martin@city.example".into(),
            site_id: "S-1".into(),
        }),
        entry(device("D-1", "alice", "S-1")),
        entry(device("D-2", "bob", "S-1")),
        entry(extension("4501", "S-1", "U-1", &["D-1"])),
        entry(extension("4502", "S-1", "", &["D-2"])),
        entry(extension("4601", "S-2", "", &[])),
        entry(hunt_group("5000", &["4501", "4502"])),
        entry(v1::PickupGroup {
            number: "5001".into(),
            name: "Accounts".into(),
            members: vec!["4501".into(), "4502".into()],
        }),
        entry(v1::Route {
            id: "R-nat".into(),
            pattern: "0[1-5]XXXXXXXX".into(),
            target: Some(v1::route::Target::Trunk("carrier".into())),
            priority: 10,
            category: v1::CallCategory::National as i32,
            strip_digits: 1,
            prepend: "+33".into(),
        }),
    ]
}
