//! The demo directory `calanque run` creates on first start: two sites, three extensions with
//! their phones' credentials, two classes of service. Passwords are random; only their HA1s go
//! into the directory, the passwords themselves into `<data>/demo-credentials.txt` for the
//! person trying calanque out.

use std::sync::Arc;

use anyhow::Context as _;
use directory::model::{ClassOfService, Device, Directory, Entry, Extension, Site};
use directory::storage::{encode, entry_key, kind_prefix};
use proto::v1;
use store::{Op, Store};

/// One phone of the demo: its extension, site and password.
#[derive(Debug, Clone)]
pub(super) struct DemoPhone {
    pub(super) extension: String,
    pub(super) site: &'static str,
    pub(super) password: String,
}

/// Writes the demo directory if the store has no device yet; returns the phones created
/// (empty when a directory was already there).
pub(super) async fn seed_if_empty(
    store: &Arc<dyn Store>,
    realm: &str,
) -> anyhow::Result<Vec<DemoPhone>> {
    let (devices, _) = store
        .list_prefix(&kind_prefix(directory::model::Kind::Device))
        .await
        .context("reading the directory")?;
    if !devices.is_empty() {
        return Ok(Vec::new());
    }
    let phones: Vec<DemoPhone> = [("1001", "S-1"), ("1002", "S-1"), ("2001", "S-2")]
        .into_iter()
        .map(|(extension, site)| DemoPhone {
            extension: extension.into(),
            site,
            password: password(),
        })
        .collect();
    let entries = entries(&phones, realm)?;
    Directory::from_entries(entries.clone())
        .map_err(|e| anyhow::anyhow!("the demo directory is invalid: {e:?}"))?;
    let ops = entries
        .iter()
        .map(|entry| Op::Put {
            key: entry_key(&entry.key()),
            value: encode(entry),
            lease: None,
        })
        .collect();
    store
        .txn(vec![], ops)
        .await
        .context("writing the demo directory")?;
    Ok(phones)
}

fn password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..12)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn entries(phones: &[DemoPhone], realm: &str) -> anyhow::Result<Vec<Entry>> {
    let invalid = |what: &str, e| anyhow::anyhow!("demo {what}: {e:?}");
    let mut entries = Vec::new();
    // The library is a `Relay` site: with `--media-ip` its calls go through the media relay.
    for (id, name, first, last, policy) in [
        ("S-1", "Town hall", "1000", "1999", v1::MediaPolicy::Direct),
        ("S-2", "Library", "2000", "2999", v1::MediaPolicy::Relay),
    ] {
        let site = Site::try_from(v1::Site {
            id: id.into(),
            name: name.into(),
            number_ranges: vec![v1::NumberRange {
                first: first.into(),
                last: last.into(),
            }],
            media_policy: policy as i32,
            ..Default::default()
        })
        .map_err(|e| invalid("site", e))?;
        entries.push(Entry::Site(site));
    }
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
        .map_err(|e| invalid("class of service", e))?;
        entries.push(Entry::ClassOfService(cos));
    }
    for phone in phones {
        let user = phone.extension.as_str();
        let ha1 = |a| {
            sip_core::digest::ha1(a, user, realm, &phone.password)
                .as_hex()
                .to_owned()
        };
        let device = Device::try_from(v1::Device {
            id: format!("D-{user}"),
            sip_username: user.into(),
            site_id: phone.site.into(),
            realm: realm.into(),
            ha1_md5: ha1(sip_core::digest::Algorithm::Md5),
            ha1_sha256: ha1(sip_core::digest::Algorithm::Sha256),
            transport: 0,
        })
        .map_err(|e| invalid("device", e))?;
        entries.push(Entry::Device(device));
        let extension = Extension::try_from(v1::Extension {
            number: user.into(),
            site_id: phone.site.into(),
            display_name: format!("Demo {user}"),
            class_of_service: "national".into(),
            user_id: String::new(),
            device_ids: vec![format!("D-{user}")],
        })
        .map_err(|e| invalid("extension", e))?;
        entries.push(Entry::Extension(extension));
    }
    Ok(entries)
}
