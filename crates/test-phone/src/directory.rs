//! A small directory for call tests, written straight into the store's directory keys: one
//! site (1000–1999), extensions 1001–1003 on devices `user1`–`user3` (passwords `pw1`–`pw3`),
//! 1003 limited to internal calls, a national route (0 + 9 digits) to a carrier trunk, and the
//! emergency number 112 through that trunk; hunt groups on request ([`add_hunt_group`]); fleet
//! phones ([`add_phones`]) and registration-storm phones on a site of their own
//! ([`add_storm_phones`]).

use std::sync::Arc;

use directory::model::{
    ClassOfService, Device, Entry, Extension, ExtensionNumber, HuntGroup, HuntStrategy, Name,
    RingTimeout, Route, Site, Trunk,
};
use directory::storage::{encode, entry_key};
use proto::v1;
use sip_core::digest::{Algorithm, ha1};
use store::{Op, Store};

fn put(entry: Entry) -> Op {
    Op::Put {
        key: entry_key(&entry.key()),
        value: encode(&entry),
        lease: None,
    }
}

/// One site (1000–1999), extensions 1001–1003 on devices user1–user3, 1003 internal-only, and
/// a national route to a carrier trunk.
pub async fn seed_small_city(store: &Arc<dyn Store>, realm: &str) {
    let site = Site::try_from(v1::Site {
        id: "S-1".into(),
        name: "Town hall".into(),
        number_ranges: vec![v1::NumberRange {
            first: "1000".into(),
            last: "1999".into(),
        }],
        media_policy: v1::MediaPolicy::Direct as i32,
        emergency_routes: vec![v1::EmergencyRoute {
            number: "112".into(),
            trunk: "carrier".into(),
        }],
    })
    .unwrap();
    let mut ops = vec![put(Entry::Site(site))];
    for (name, allowed) in [
        ("internal", vec![v1::CallCategory::Internal]),
        (
            "national",
            vec![v1::CallCategory::Internal, v1::CallCategory::National],
        ),
    ] {
        let cos = ClassOfService::try_from(v1::ClassOfService {
            name: name.into(),
            allowed: allowed.into_iter().map(|c| c as i32).collect(),
        })
        .unwrap();
        ops.push(put(Entry::ClassOfService(cos)));
    }
    for i in 1..=3 {
        let user = format!("user{i}");
        let pw = format!("pw{i}");
        let device = Device::try_from(v1::Device {
            id: format!("D-{i}"),
            sip_username: user.clone(),
            site_id: "S-1".into(),
            realm: realm.into(),
            ha1_md5: ha1(Algorithm::Md5, &user, realm, &pw).as_hex().into(),
            ha1_sha256: ha1(Algorithm::Sha256, &user, realm, &pw).as_hex().into(),
            transport: 0,
        })
        .unwrap();
        ops.push(put(Entry::Device(device)));
        let extension = Extension::try_from(v1::Extension {
            number: format!("100{i}"),
            site_id: "S-1".into(),
            display_name: format!("Phone {i}"),
            class_of_service: if i == 3 { "internal" } else { "national" }.into(),
            user_id: String::new(),
            device_ids: vec![format!("D-{i}")],
        })
        .unwrap();
        ops.push(put(Entry::Extension(extension)));
    }
    // A carrier trunk and a national route (0 + 9 digits) to it.
    let trunk = Trunk::try_from(v1::Trunk {
        name: "carrier".into(),
        kind: v1::TrunkKind::Carrier as i32,
        // Loopback, discard port: tests that call out point it at their own fake carrier
        // with `set_trunk_address`; nothing here ever leaves the machine.
        address: "127.0.0.1:9".into(),
        transport: v1::Transport::Udp as i32,
        ..Default::default()
    })
    .unwrap();
    ops.push(put(Entry::Trunk(trunk)));
    let route = Route::try_from(v1::Route {
        id: "national".into(),
        pattern: "0ZXXXXXXXX".into(),
        target: Some(v1::route::Target::Trunk("carrier".into())),
        priority: 10,
        category: v1::CallCategory::National as i32,
        ..Default::default()
    })
    .unwrap();
    ops.push(put(Entry::Route(route)));
    store.txn(vec![], ops).await.unwrap();
}

/// Changes a site's media policy (`relay` true: every call of the site goes through the relay).
pub async fn set_media_policy(store: &Arc<dyn Store>, site_id: &str, relay: bool) {
    let key = entry_key(&directory::model::EntryKey::Site(
        directory::model::SiteId::parse(site_id).unwrap(),
    ));
    let value = store
        .get(&key)
        .await
        .unwrap()
        .expect("the site exists")
        .value;
    let Entry::Site(mut site) = directory::storage::decode(&key, &value).unwrap() else {
        panic!("not a site")
    };
    site.media_policy = if relay {
        directory::model::MediaPolicy::Relay
    } else {
        directory::model::MediaPolicy::Direct
    };
    store
        .put(&key, encode(&Entry::Site(site)), None)
        .await
        .unwrap();
}

/// Points the `carrier` trunk at `address` (a test's fake carrier socket).
pub async fn set_trunk_address(store: &Arc<dyn Store>, address: std::net::SocketAddr) {
    let trunk = Trunk::try_from(v1::Trunk {
        name: "carrier".into(),
        kind: v1::TrunkKind::Carrier as i32,
        address: address.to_string(),
        transport: v1::Transport::Udp as i32,
        ..Default::default()
    })
    .unwrap();
    let entry = Entry::Trunk(trunk);
    store
        .put(&entry_key(&entry.key()), encode(&entry), None)
        .await
        .unwrap();
}

/// Adds hunt group `number` (give it a number of site S-1, 1000–1999, not an extension's)
/// offering calls to the extensions `members` in this order with `strategy`, ringing
/// `ring_seconds` per member (for the whole group, when simultaneous).
pub async fn add_hunt_group(
    store: &Arc<dyn Store>,
    number: &str,
    members: &[&str],
    strategy: HuntStrategy,
    ring_seconds: u32,
) {
    let group = HuntGroup {
        number: ExtensionNumber::parse(number).unwrap(),
        name: Name::parse(&format!("Hunt group {number}")).unwrap(),
        members: members
            .iter()
            .map(|m| ExtensionNumber::parse(m).unwrap())
            .collect(),
        strategy,
        ring_timeout: RingTimeout::from_seconds(ring_seconds).unwrap(),
    };
    let entry = Entry::HuntGroup(group);
    store
        .put(&entry_key(&entry.key()), encode(&entry), None)
        .await
        .unwrap();
}

/// `count` more phones on site S-1 for the fleet tests: extensions 1100, 1101, … on devices
/// `p1100`, `p1101`, … (SIP username = device, password `pw` + the extension), national class
/// of service.
pub async fn add_phones(
    store: &Arc<dyn Store>,
    realm: &str,
    count: u32,
) -> Vec<(String, String, String)> {
    let phones = fleet_phones(count);
    put_phones(store, realm, "S-1", "Fleet phone", &phones, Vec::new()).await;
    phones
}

/// The (SIP username, password, extension) of the phones [`add_phones`] writes.
pub fn fleet_phones(count: u32) -> Vec<(String, String, String)> {
    (0..count)
        .map(|n| {
            let number = format!("{}", 1100 + n);
            (format!("p{number}"), format!("pw{number}"), number)
        })
        .collect()
}

/// The site of the registration-storm phones, and its number range: the storm stands for the
/// rest of the city (thousands of handsets), more than S-1's range (1000–1999) holds.
pub const STORM_SITE: &str = "S-2";
const STORM_FIRST: u32 = 20_000;
/// The most storm phones [`add_storm_phones`] can write (the site's range, 20000–29999).
pub const STORM_MAX: u32 = 10_000;

/// `count` registration-storm phones on their own site S-2 (20000–29999): extensions 20000,
/// 20001, … on devices `s20000`, `s20001`, … (password `pw` + the extension), national class
/// of service. Apart from the fleet's phones, so the fleet's bindings are counted alone.
/// Panics when `count` exceeds [`STORM_MAX`].
pub async fn add_storm_phones(
    store: &Arc<dyn Store>,
    realm: &str,
    count: u32,
) -> Vec<(String, String, String)> {
    assert!(
        count <= STORM_MAX,
        "at most {STORM_MAX} storm phones (site {STORM_SITE}'s range)"
    );
    let site = Site::try_from(v1::Site {
        id: STORM_SITE.into(),
        name: "Storm site".into(),
        number_ranges: vec![v1::NumberRange {
            first: STORM_FIRST.to_string(),
            last: (STORM_FIRST + STORM_MAX - 1).to_string(),
        }],
        media_policy: v1::MediaPolicy::Direct as i32,
        emergency_routes: vec![v1::EmergencyRoute {
            number: "112".into(),
            trunk: "carrier".into(),
        }],
    })
    .unwrap();
    let phones = storm_phones(count);
    put_phones(
        store,
        realm,
        STORM_SITE,
        "Storm phone",
        &phones,
        vec![put(Entry::Site(site))],
    )
    .await;
    phones
}

/// The (SIP username, password, extension) of the phones [`add_storm_phones`] writes.
pub fn storm_phones(count: u32) -> Vec<(String, String, String)> {
    (0..count)
        .map(|n| {
            let number = format!("{}", STORM_FIRST + n);
            (format!("s{number}"), format!("pw{number}"), number)
        })
        .collect()
}

/// Writes one device and one extension per phone on `site`, after `ops`, in batches (etcd
/// allows 128 operations per transaction by default).
async fn put_phones(
    store: &Arc<dyn Store>,
    realm: &str,
    site: &str,
    label: &str,
    phones: &[(String, String, String)],
    mut ops: Vec<Op>,
) {
    for (user, pw, number) in phones {
        let device = Device::try_from(v1::Device {
            id: format!("D-{number}"),
            sip_username: user.clone(),
            site_id: site.into(),
            realm: realm.into(),
            ha1_md5: ha1(Algorithm::Md5, user, realm, pw).as_hex().into(),
            ha1_sha256: ha1(Algorithm::Sha256, user, realm, pw).as_hex().into(),
            transport: 0,
        })
        .unwrap();
        ops.push(put(Entry::Device(device)));
        let extension = Extension::try_from(v1::Extension {
            number: number.clone(),
            site_id: site.into(),
            display_name: format!("{label} {number}"),
            class_of_service: "national".into(),
            user_id: String::new(),
            device_ids: vec![format!("D-{number}")],
        })
        .unwrap();
        ops.push(put(Entry::Extension(extension)));
        if ops.len() >= 100 {
            store.txn(vec![], std::mem::take(&mut ops)).await.unwrap();
        }
    }
    if !ops.is_empty() {
        store.txn(vec![], ops).await.unwrap();
    }
}
