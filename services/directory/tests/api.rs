//! The directory service's API suite: every case is written once, over an [`Env`], and run
//! against (a) an embedded store in a temporary directory with the in-process bus and (b) a real
//! etcd and a real nats-server started by `testkit` (a server that does not start fails the
//! test). REST is exercised through the router with `oneshot` (no socket), gRPC over an
//! in-memory duplex pipe. Cases (b)-only: store outage and recovery, two replicas.

#![allow(clippy::print_stdout)] // timings (import, outage) are printed for the record

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use bus::{Bus, BusHeaders, InProcessBus, NatsBus, NatsOptions};
use directory::api::BearerToken;
use directory::import::{CityParams, export_csv, export_yaml, generate_city};
use directory::model::{Directory, Kind};
use directory::{Config, Handle};
use prost::Message;
use proto::subjects;
use proto::v1;
use serde_json::{Value, json};
use store::Store;
use store::embedded::EmbeddedStore;
use store::etcd::{EtcdConfig, EtcdStore};
use testkit::etcd::EtcdServer;
use testkit::nats::NatsServer;
use tower::ServiceExt;

const TOKEN: &str = "test-token-7f3a";

#[derive(Debug, Clone, Copy)]
enum Backend {
    Embedded,
    Real,
}

struct Env {
    backend: Backend,
    handle: Handle,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    etcd: Option<EtcdServer>,
    nats: Option<NatsServer>,
    _dir: Option<tempfile::TempDir>,
}

fn config() -> Config {
    Config::new(vec![BearerToken::new(TOKEN)])
}

async fn etcd_store(endpoint: String) -> Arc<dyn Store> {
    let mut config = EtcdConfig::new([endpoint]);
    config.request_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(1);
    Arc::new(EtcdStore::connect(&config).await.expect("connect etcd"))
}

impl Env {
    async fn start(backend: Backend) -> Env {
        let (store, bus, etcd, nats, dir): (Arc<dyn Store>, Arc<dyn Bus>, _, _, _) = match backend {
            Backend::Embedded => {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = EmbeddedStore::open(dir.path().join("directory.redb"))
                    .await
                    .expect("embedded store");
                (
                    Arc::new(store),
                    Arc::new(InProcessBus::new(Default::default())),
                    None,
                    None,
                    Some(dir),
                )
            }
            Backend::Real => {
                let etcd = EtcdServer::start().expect("etcd must start");
                let nats = NatsServer::start().expect("nats-server must start");
                let store = etcd_store(etcd.endpoint()).await;
                let bus = NatsBus::connect(NatsOptions::new("directory-test", vec![nats.url()]))
                    .await
                    .expect("connect nats");
                (store, Arc::new(bus), Some(etcd), Some(nats), None)
            }
        };
        let handle = directory::service::start(config(), store.clone(), bus.clone())
            .await
            .expect("start");
        assert!(
            handle.wait_loaded(Duration::from_secs(10)).await,
            "directory not loaded"
        );
        Env {
            backend,
            handle,
            store,
            bus,
            etcd,
            nats,
            _dir: dir,
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<&str>) -> Reply {
        call(&self.handle, method, uri, Some(TOKEN), body).await
    }

    async fn revision(&self) -> i64 {
        self.handle
            .repository()
            .snapshot()
            .map(|s| s.revision)
            .expect("loaded")
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts the status and, for an error, the error body's shape; returns the code.
    fn expect(&self, status: StatusCode) -> &Reply {
        assert_eq!(self.status, status, "body: {}", self.text);
        if !status.is_success() {
            let body = self.json();
            let error = &body["error"];
            assert!(error["code"].is_string(), "{body}");
            assert!(error["message"].is_string(), "{body}");
            assert!(error["details"].is_array(), "{body}");
        }
        self
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

async fn call(
    handle: &Handle,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Body::from(body.unwrap_or_default().to_owned()))
        .expect("request");
    let response = handle.router().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{method} {uri}: {}",
        String::from_utf8_lossy(&bytes)
    );
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// One valid entry of every kind, in an order where each one's references exist already.
fn fixtures() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "class_of_service",
            "national",
            json!({"name": "national", "allowed": ["internal", "local", "national"]}),
        ),
        (
            "trunk",
            "carrier-a",
            json!({"name": "carrier-a", "kind": "carrier", "address": "sbc.example:5060",
                   "transport": "udp", "auth": null,
                   "number_ranges": ["+33491000000-+33491099999"], "max_channels": 30}),
        ),
        (
            "site",
            "S-1",
            json!({"id": "S-1", "name": "Town hall", "number_ranges": ["4500-4599"],
                   "emergency_routes": [{"number": "112", "trunk": "carrier-a"}],
                   "media_policy": "direct"}),
        ),
        (
            "user",
            "U-1",
            json!({"id": "U-1", "display_name": "Louise Michel", "given_name": "Louise",
                   "family_name": "Michel", "email": "louise@city.example", "site_id": "S-1"}),
        ),
        (
            "device",
            "D-1",
            json!({"id": "D-1", "sip_username": "louise", "site_id": "S-1",
                   "realm": "city.example",
                   "ha1": {"md5": "0123456789abcdef0123456789abcdef", "sha256": null},
                   "transport": null}),
        ),
        (
            "extension",
            "4512",
            json!({"number": "4512", "site_id": "S-1", "display_name": "Louise Michel",
                   "class_of_service": "national", "user_id": "U-1", "device_ids": ["D-1"]}),
        ),
        (
            "hunt_group",
            "4590",
            json!({"number": "4590", "name": "Reception", "members": ["4512"],
                   "strategy": "linear", "ring_timeout": 20}),
        ),
        (
            "pickup_group",
            "4591",
            json!({"number": "4591", "name": "Floor 1", "members": ["4512"]}),
        ),
        (
            "route",
            "R-nat",
            json!({"id": "R-nat", "pattern": "0ZXXXXXXXX", "target": {"trunk": "carrier-a"},
                   "priority": 10, "category": "national", "strip_digits": 1,
                   "prepend": "+33"}),
        ),
    ]
}

async fn create_fixtures(env: &Env, up_to: &str) {
    for (kind, _, body) in fixtures() {
        env.call("POST", &format!("/v1/{kind}"), Some(&body.to_string()))
            .await
            .expect(StatusCode::CREATED);
        if kind == up_to {
            break;
        }
    }
}

// ---------------------------------------------------------------- cases (both backends)

async fn crud_every_kind(env: Env) {
    let fixtures = fixtures();
    for (kind, id, body) in &fixtures {
        let created = env
            .call("POST", &format!("/v1/{kind}"), Some(&body.to_string()))
            .await;
        created.expect(StatusCode::CREATED);
        assert_eq!(&created.json(), body, "{kind}");
        let read = env.call("GET", &format!("/v1/{kind}/{id}"), None).await;
        read.expect(StatusCode::OK);
        assert_eq!(&read.json(), body, "{kind}");
        let listed = env.call("GET", &format!("/v1/{kind}"), None).await;
        listed.expect(StatusCode::OK);
        assert_eq!(listed.json()["items"], json!([body]), "{kind}");
        assert!(listed.json()["next_page_token"].is_null());
    }
    // Replace: PUT changes the value; the id in the body must match the path.
    let mut user = fixtures[3].2.clone();
    user["display_name"] = json!("Louise M.");
    env.call("PUT", "/v1/user/U-1", Some(&user.to_string()))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        env.call("GET", "/v1/user/U-1", None).await.json()["display_name"],
        "Louise M."
    );
    let mismatch = env
        .call("PUT", "/v1/user/U-2", Some(&user.to_string()))
        .await;
    mismatch.expect(StatusCode::BAD_REQUEST);
    assert_eq!(mismatch.code(), "id_mismatch");
    // PUT creates when absent.
    let mut other = user.clone();
    other["id"] = json!("U-2");
    env.call("PUT", "/v1/user/U-2", Some(&other.to_string()))
        .await
        .expect(StatusCode::OK);
    env.call("GET", "/v1/user/U-2", None)
        .await
        .expect(StatusCode::OK);
    // A referenced entry cannot go.
    let referenced = env.call("DELETE", "/v1/site/S-1", None).await;
    referenced.expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(referenced.code(), "still_referenced");
    assert!(
        !referenced.json()["error"]["details"]
            .as_array()
            .expect("details")
            .is_empty()
    );
    // Delete everything in reverse order.
    env.call("DELETE", "/v1/user/U-2", None)
        .await
        .expect(StatusCode::NO_CONTENT);
    for (kind, id, _) in fixtures.iter().rev() {
        env.call("DELETE", &format!("/v1/{kind}/{id}"), None)
            .await
            .expect(StatusCode::NO_CONTENT);
        let gone = env.call("GET", &format!("/v1/{kind}/{id}"), None).await;
        gone.expect(StatusCode::NOT_FOUND);
        assert_eq!(gone.code(), "not_found");
        env.call("DELETE", &format!("/v1/{kind}/{id}"), None)
            .await
            .expect(StatusCode::NOT_FOUND);
    }
}

fn small_city() -> Vec<directory::model::Entry> {
    generate_city(&CityParams {
        sites: 6,
        users: 250,
        devices: 120,
        hunt_groups: 2,
        seed: 11,
    })
    .expect("city")
}

async fn list_pagination_and_search(env: Env) {
    let entries = small_city();
    let model = Directory::from_entries(entries.clone()).expect("valid");
    let yaml = export_yaml(&model).expect("yaml");
    let imported = env
        .call("POST", "/v1/import?format=yaml&mode=merge", Some(&yaml))
        .await;
    imported.expect(StatusCode::OK);
    assert_eq!(imported.json()["puts"], json!(entries.len()));

    // Page through the users: every user exactly once, in key order.
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..20 {
        let uri = match &token {
            None => "/v1/user?page_size=40".to_owned(),
            Some(t) => format!("/v1/user?page_size=40&page_token={t}"),
        };
        let page = env.call("GET", &uri, None).await;
        page.expect(StatusCode::OK);
        let body = page.json();
        let items = body["items"].as_array().expect("items");
        assert!(items.len() <= 40);
        ids.extend(
            items
                .iter()
                .map(|u| u["id"].as_str().expect("id").to_owned()),
        );
        match body["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = model
        .keys(Kind::User)
        .iter()
        .map(|k| k.id().to_owned())
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(ids.len(), 250);

    // Switchboard phonebook: name prefix, case-insensitive, paged.
    let some_user = model.entries_of(Kind::User)[17].clone();
    let directory::model::Entry::User(user) = some_user else {
        panic!("not a user")
    };
    let family = user.family_name.expect("family name").to_string();
    let prefix: String = family.chars().take(3).collect::<String>().to_lowercase();
    let found = env
        .call(
            "GET",
            &format!("/v1/user?name_prefix={prefix}&page_size=1000"),
            None,
        )
        .await;
    found.expect(StatusCode::OK);
    let found_ids: Vec<String> = found.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect();
    assert!(found_ids.contains(&user.id.to_string()));
    let expected: Vec<String> = model
        .search(Kind::User, &prefix, "")
        .iter()
        .map(|k| k.id().to_owned())
        .collect();
    assert_eq!(found_ids, expected);
    for item in found.json()["items"].as_array().expect("items") {
        let names = [
            &item["display_name"],
            &item["given_name"],
            &item["family_name"],
        ];
        assert!(
            names.iter().any(|n| n
                .as_str()
                .is_some_and(|n| n.to_lowercase().starts_with(&prefix)
                    || n.to_lowercase().split(' ').any(|w| w.starts_with(&prefix)))),
            "{item}"
        );
    }
    // Paged search gives the same set.
    let first = env
        .call(
            "GET",
            &format!("/v1/user?name_prefix={prefix}&page_size=1"),
            None,
        )
        .await;
    first.expect(StatusCode::OK);
    if expected.len() > 1 {
        let t = first.json()["next_page_token"]
            .as_str()
            .expect("more pages")
            .to_owned();
        let second = env
            .call(
                "GET",
                &format!("/v1/user?name_prefix={prefix}&page_size=1&page_token={t}"),
                None,
            )
            .await;
        assert_eq!(second.json()["items"][0]["id"], json!(expected[1]));
    }
    // Number prefix on extensions.
    let numbers = env
        .call(
            "GET",
            "/v1/extension?number_prefix=100&page_size=1000",
            None,
        )
        .await;
    numbers.expect(StatusCode::OK);
    let items = numbers.json()["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), model.search(Kind::Extension, "", "100").len());
    assert!(!items.is_empty());
    assert!(
        items
            .iter()
            .all(|e| e["number"].as_str().is_some_and(|n| n.starts_with("100")))
    );
}

async fn auth_is_required(env: Env) {
    for (method, uri) in [
        ("GET", "/v1/user"),
        ("GET", "/v1/user/U-1"),
        ("POST", "/v1/user"),
        ("DELETE", "/v1/user/U-1"),
        ("POST", "/v1/import?format=yaml"),
        ("GET", "/v1/export?format=yaml"),
    ] {
        for token in [None, Some("wrong"), Some("")] {
            let reply = call(&env.handle, method, uri, token, Some("{}")).await;
            reply.expect(StatusCode::UNAUTHORIZED);
            assert_eq!(reply.code(), "unauthenticated");
            assert!(reply.headers.contains_key("www-authenticate"));
        }
    }
    call(&env.handle, "GET", "/healthz", None, None)
        .await
        .expect(StatusCode::OK);
    call(&env.handle, "GET", "/readyz", None, None)
        .await
        .expect(StatusCode::OK);
    call(&env.handle, "GET", "/v1/user", Some(TOKEN), None)
        .await
        .expect(StatusCode::OK);
}

async fn malformed_requests_are_4xx_with_an_error_body(env: Env) {
    create_fixtures(&env, "site").await;
    let cases: Vec<(&str, String, Option<&str>, StatusCode, &str)> = vec![
        (
            "POST",
            "/v1/user".into(),
            Some("{not json"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/user".into(),
            Some(""),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/nokind".into(),
            Some("{}"),
            StatusCode::BAD_REQUEST,
            "unknown_kind",
        ),
        (
            "GET",
            "/v1/nokind".into(),
            None,
            StatusCode::BAD_REQUEST,
            "unknown_kind",
        ),
        (
            "GET",
            "/v1/nokind/x".into(),
            None,
            StatusCode::BAD_REQUEST,
            "unknown_kind",
        ),
        (
            "GET",
            "/v1/user/bad%20id".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_id",
        ),
        (
            "GET",
            "/v1/extension/12ab".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_id",
        ),
        (
            "DELETE",
            "/v1/site/%2F..".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_id",
        ),
        (
            "GET",
            "/v1/user?page_size=abc".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_page_size",
        ),
        (
            "GET",
            "/v1/user?page_size=5000".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_page_size",
        ),
        (
            "GET",
            "/v1/user?page_token=%21%21".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_page_token",
        ),
        (
            "POST",
            "/v1/import?format=xml".into(),
            Some("x"),
            StatusCode::BAD_REQUEST,
            "bad_format",
        ),
        (
            "POST",
            "/v1/import?format=csv".into(),
            Some("x"),
            StatusCode::BAD_REQUEST,
            "missing_kind",
        ),
        (
            "POST",
            "/v1/import?format=yaml&mode=wipe".into(),
            Some(""),
            StatusCode::BAD_REQUEST,
            "bad_mode",
        ),
        (
            "GET",
            "/v1/export?format=csv&kind=nope".into(),
            None,
            StatusCode::BAD_REQUEST,
            "unknown_kind",
        ),
        (
            "GET",
            "/v1/user/U-404".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/nowhere".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "PATCH",
            "/v1/user/U-1".into(),
            Some("{}"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        // Well-formed JSON with an invalid value: 422.
        (
            "POST",
            "/v1/user".into(),
            Some(r#"{"id":"U 1","display_name":"x","site_id":"S-1"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "POST",
            "/v1/user".into(),
            Some(r#"{"id":"U-1"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "POST",
            "/v1/import?format=yaml".into(),
            Some("users: [[[["),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let reply = env.call(method, &uri, body).await;
        assert_eq!(reply.status, status, "{method} {uri}: {}", reply.text);
        reply.expect(status);
        assert_eq!(reply.code(), code, "{method} {uri}: {}", reply.text);
    }
}

async fn create_of_an_existing_entry_is_409(env: Env) {
    create_fixtures(&env, "class_of_service").await;
    let (_, _, body) = fixtures().remove(0);
    let reply = env
        .call("POST", "/v1/class_of_service", Some(&body.to_string()))
        .await;
    reply.expect(StatusCode::CONFLICT);
    assert_eq!(reply.code(), "already_exists");
}

async fn invalid_entries_are_422_with_every_problem(env: Env) {
    create_fixtures(&env, "site").await;
    let before = env.revision().await;
    // An extension of an unknown site, with an unknown class of service and an unknown device.
    let reply = env
        .call(
            "POST",
            "/v1/extension",
            Some(
                &json!({"number": "4513", "site_id": "S-999", "display_name": "X",
                        "class_of_service": "nope", "user_id": null,
                        "device_ids": ["D-404"]})
                .to_string(),
            ),
        )
        .await;
    reply.expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.code(), "invalid");
    let details: Vec<String> = reply.json()["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| d.as_str().expect("text").to_owned())
        .collect();
    assert!(details.len() >= 3, "{details:?}");
    for needle in ["S-999", "nope", "D-404"] {
        assert!(
            details.iter().any(|d| d.contains(needle)),
            "{needle}: {details:?}"
        );
    }
    assert_eq!(env.revision().await, before, "nothing written");
    env.call("GET", "/v1/extension/4513", None)
        .await
        .expect(StatusCode::NOT_FOUND);
}

async fn city_import_in_one_call(env: Env) {
    let entries = generate_city(&CityParams::reference(42)).expect("city");
    let model = Directory::from_entries(entries.clone()).expect("valid city");
    let yaml = export_yaml(&model).expect("yaml");
    let started = Instant::now();
    let reply = env
        .call("POST", "/v1/import?format=yaml&mode=replace", Some(&yaml))
        .await;
    let took = started.elapsed();
    reply.expect(StatusCode::OK);
    println!(
        "{:?}: imported the reference city ({} entries, {} bytes of YAML) in {took:?}",
        env.backend,
        entries.len(),
        yaml.len()
    );
    let body = reply.json();
    assert_eq!(body["puts"], json!(entries.len()));
    assert_eq!(body["deletes"], json!(0));
    let revision = body["revision"].as_i64().expect("revision");
    assert_eq!(env.revision().await, revision);
    let counts = model.counts();
    assert_eq!(counts[&Kind::Site], 300);
    assert_eq!(counts[&Kind::User], 12_000);
    assert_eq!(counts[&Kind::Device], 6_000);
    assert_eq!(counts[&Kind::HuntGroup], 50);
    env.call("GET", "/v1/user/U-08122", None)
        .await
        .expect(StatusCode::OK);

    // The same file again changes nothing.
    let started = Instant::now();
    let again = env
        .call("POST", "/v1/import?format=yaml&mode=replace", Some(&yaml))
        .await;
    again.expect(StatusCode::OK);
    println!(
        "{:?}: re-import (no change) took {:?}",
        env.backend,
        started.elapsed()
    );
    assert_eq!(again.json()["puts"], json!(0));
    assert_eq!(again.json()["deletes"], json!(0));
    assert_eq!(again.json()["revision"], json!(revision));

    // One bad row among 12,000: named, and nothing applied.
    let csv = export_csv(&model, Kind::User).expect("csv");
    let mut lines: Vec<String> = csv.lines().map(str::to_owned).collect();
    let line = lines
        .iter()
        .position(|l| l.starts_with("U-08122,"))
        .expect("U-08122 row");
    let header: Vec<&str> = lines[0].split(',').collect();
    let site_column = header
        .iter()
        .position(|c| *c == "site_id")
        .expect("site_id");
    let mut cells: Vec<String> = lines[line].split(',').map(str::to_owned).collect();
    cells[site_column] = "S-999".to_owned();
    lines[line] = cells.join(",");
    // Also change another user's name, which must not be applied either.
    let renamed = lines[1].replacen(',', ",Renamed ", 1);
    lines[1] = renamed;
    let bad = lines.join("\n") + "\n";
    let rejected = env
        .call(
            "POST",
            "/v1/import?format=csv&kind=user&mode=merge",
            Some(&bad),
        )
        .await;
    rejected.expect(StatusCode::UNPROCESSABLE_ENTITY);
    let details = rejected.json()["error"]["details"].clone();
    let details = details.as_array().expect("details");
    assert_eq!(details.len(), 1, "{details:?}");
    let detail = details[0].as_str().expect("text");
    assert!(
        detail.contains(&format!("row {line} (line {})", line + 1))
            && detail.contains("U-08122")
            && detail.contains("S-999"),
        "{detail}"
    );
    assert_eq!(env.revision().await, revision, "nothing applied");
    let first_user = env.call("GET", "/v1/user/U-00000", None).await.json();
    assert!(
        !first_user["display_name"]
            .as_str()
            .expect("name")
            .starts_with("Renamed")
    );
}

async fn change_events_for_a_put_and_a_delete(env: Env) {
    let mut events = env
        .bus
        .subscribe(subjects::DIRECTORY_CHANGED_ALL)
        .await
        .expect("subscribe");
    env.bus.flush().await.expect("flush");
    create_fixtures(&env, "class_of_service").await;
    let put_revision = env.revision().await;
    env.call("DELETE", "/v1/class_of_service/national", None)
        .await
        .expect(StatusCode::NO_CONTENT);
    let delete_revision = env.revision().await;
    assert!(delete_revision > put_revision);
    let mut received = Vec::new();
    for _ in 0..2 {
        let message = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("event within 5 s")
            .expect("subscription open");
        assert_eq!(
            message.subject,
            subjects::directory_changed(v1::EntryKind::ClassOfService).expect("subject")
        );
        assert_eq!(
            message.headers.get(subjects::TYPE_HEADER),
            Some(subjects::types::DIRECTORY_CHANGE)
        );
        assert!(message.headers.get(subjects::TRACEPARENT_HEADER).is_some());
        received.push(v1::DirectoryChange::decode(message.payload).expect("decode"));
    }
    assert_eq!(received[0].kind(), v1::EntryKind::ClassOfService);
    assert_eq!(received[0].id, "national");
    assert_eq!(received[0].operation(), v1::ChangeOperation::Put);
    assert_eq!(received[0].revision, put_revision as u64);
    assert!(received[0].entry.is_some());
    assert_eq!(received[1].id, "national");
    assert_eq!(received[1].operation(), v1::ChangeOperation::Delete);
    assert_eq!(received[1].revision, delete_revision as u64);
    assert!(received[1].entry.is_none());
}

async fn grpc_crud_and_errors(env: Env) {
    use proto::v1::directory_service_client::DirectoryServiceClient;
    use tonic::Code;

    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let service = env.handle.grpc_service();
    let health = env.handle.health_service();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(service)
            .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(server_io)))
            .await
    });
    let mut client_io = Some(client_io);
    let channel = tonic::transport::Endpoint::try_from("http://in-memory.invalid")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: axum::http::Uri| {
            let io = client_io.take();
            async move {
                io.map(hyper_util::rt::TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("the duplex is used"))
            }
        }))
        .await
        .expect("connect");

    let mut anonymous = DirectoryServiceClient::new(channel.clone());
    let status = anonymous
        .get(v1::GetRequest {
            kind: v1::EntryKind::Site as i32,
            id: "S-1".into(),
            ..Default::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);

    let mut client = DirectoryServiceClient::with_interceptor(
        channel.clone(),
        |mut request: tonic::Request<()>| {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {TOKEN}").parse().expect("ascii"),
            );
            Ok(request)
        },
    );
    let cos = v1::Entry::from(v1::ClassOfService {
        name: "national".into(),
        allowed: vec![
            v1::CallCategory::Internal as i32,
            v1::CallCategory::National as i32,
        ],
    });
    let written = client
        .create(v1::CreateRequest {
            entry: Some(cos.clone()),
        })
        .await
        .expect("create")
        .into_inner();
    assert!(written.revision > 0);
    let again = client
        .create(v1::CreateRequest {
            entry: Some(cos.clone()),
        })
        .await
        .expect_err("duplicate");
    assert_eq!(again.code(), Code::AlreadyExists);
    let got = client
        .get(v1::GetRequest {
            kind: v1::EntryKind::ClassOfService as i32,
            id: "national".into(),
            ..Default::default()
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.entry, Some(cos.clone()));
    assert_eq!(got.revision, written.revision);
    for (request, code) in [
        (
            v1::GetRequest {
                kind: v1::EntryKind::ClassOfService as i32,
                id: "nope".into(),
                ..Default::default()
            },
            Code::NotFound,
        ),
        (
            v1::GetRequest {
                kind: 0,
                id: "x".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            v1::GetRequest {
                kind: v1::EntryKind::Extension as i32,
                id: "12ab".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
    ] {
        assert_eq!(client.get(request).await.expect_err("error").code(), code);
    }
    let invalid = client
        .create(v1::CreateRequest {
            entry: Some(v1::Entry::default()),
        })
        .await
        .expect_err("empty entry");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let unknown_site = client
        .create(v1::CreateRequest {
            entry: Some(v1::Entry::from(v1::User {
                id: "U-1".into(),
                display_name: "X".into(),
                site_id: "S-404".into(),
                ..Default::default()
            })),
        })
        .await
        .expect_err("unknown site");
    assert_eq!(unknown_site.code(), Code::InvalidArgument);
    assert!(unknown_site.message().contains("S-404"));

    // Update, with and without the right expected revision.
    let wider = v1::Entry::from(v1::ClassOfService {
        name: "national".into(),
        allowed: vec![
            v1::CallCategory::Internal as i32,
            v1::CallCategory::Local as i32,
            v1::CallCategory::National as i32,
        ],
    });
    let stale = client
        .update(v1::UpdateRequest {
            entry: Some(wider.clone()),
            expected_revision: written.revision - 1,
        })
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::Aborted);
    let updated = client
        .update(v1::UpdateRequest {
            entry: Some(wider.clone()),
            expected_revision: written.revision,
        })
        .await
        .expect("update")
        .into_inner();
    assert!(updated.revision > written.revision);
    let absent = client
        .update(v1::UpdateRequest {
            entry: Some(v1::Entry::from(v1::ClassOfService {
                name: "other".into(),
                allowed: vec![],
            })),
            expected_revision: 0,
        })
        .await
        .expect_err("absent");
    assert_eq!(absent.code(), Code::NotFound);

    // A referenced entry cannot be deleted.
    create_fixtures_after_cos(&env).await;
    let referenced = client
        .delete(v1::DeleteRequest {
            kind: v1::EntryKind::Trunk as i32,
            id: "carrier-a".into(),
            expected_revision: 0,
        })
        .await
        .expect_err("referenced");
    assert_eq!(referenced.code(), Code::FailedPrecondition);
    let listed = client
        .list(v1::ListRequest {
            kind: v1::EntryKind::Trunk as i32,
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let searched = client
        .search(v1::SearchRequest {
            kind: v1::EntryKind::Site as i32,
            name_prefix: "town".into(),
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner();
    assert_eq!(searched.entries.len(), 1);
    client
        .delete(v1::DeleteRequest {
            kind: v1::EntryKind::Site as i32,
            id: "S-1".into(),
            expected_revision: 0,
        })
        .await
        .expect("delete site");
    client
        .delete(v1::DeleteRequest {
            kind: v1::EntryKind::Trunk as i32,
            id: "carrier-a".into(),
            expected_revision: 0,
        })
        .await
        .expect("delete trunk");
    let gone = client
        .delete(v1::DeleteRequest {
            kind: v1::EntryKind::Trunk as i32,
            id: "carrier-a".into(),
            expected_revision: 0,
        })
        .await
        .expect_err("gone");
    assert_eq!(gone.code(), Code::NotFound);

    // Import reports file errors in the response; export round-trips.
    let bad = client
        .import(v1::ImportRequest {
            format: v1::ImportFormat::Yaml as i32,
            content: b"users:\n  - id: U-9\n    display_name: X\n    site_id: S-404\n".to_vec(),
            mode: v1::ImportMode::Merge as i32,
            ..Default::default()
        })
        .await
        .expect("import answers")
        .into_inner();
    assert_eq!(bad.errors.len(), 1, "{bad:?}");
    assert!(bad.errors[0].message.contains("S-404"));
    assert_eq!(bad.revision, 0);
    let exported = client
        .export(v1::ExportRequest {
            format: v1::ImportFormat::Yaml as i32,
            kind: 0,
        })
        .await
        .expect("export")
        .into_inner();
    assert!(String::from_utf8_lossy(&exported.content).contains("national"));

    // Health: SERVING once ready (reported within about a second).
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "calanque.v1.DirectoryService".into(),
            })
            .await
            .map(|r| r.into_inner().status);
        if status.as_ref().ok()
            == Some(&(tonic_health::pb::health_check_response::ServingStatus::Serving as i32))
        {
            break;
        }
        assert!(Instant::now() < deadline, "health not serving: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.abort();
}

/// Trunk and site (the class of service exists already).
async fn create_fixtures_after_cos(env: &Env) {
    for (kind, _, body) in fixtures().into_iter().skip(1).take(2) {
        env.call("POST", &format!("/v1/{kind}"), Some(&body.to_string()))
            .await
            .expect(StatusCode::CREATED);
    }
}

async fn bus_get_by_sip_username_and_number(env: Env) {
    create_fixtures(&env, "extension").await;
    let ask = |request: v1::GetRequest| {
        let bus = env.bus.clone();
        async move {
            let reply = bus
                .request(
                    subjects::DIRECTORY_GET,
                    BusHeaders::new(),
                    request.encode_to_vec().into(),
                    Duration::from_secs(3),
                )
                .await
                .expect("reply");
            (
                reply.headers.get(subjects::TYPE_HEADER).map(str::to_owned),
                reply.payload,
            )
        }
    };
    let (kind, payload) = ask(v1::GetRequest {
        sip_username: "louise".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(kind.as_deref(), Some(subjects::types::GET_RESPONSE));
    let response = v1::GetResponse::decode(payload).expect("decode");
    match response.entry.and_then(|e| e.kind) {
        Some(v1::entry::Kind::Device(device)) => {
            assert_eq!(device.id, "D-1");
            assert_eq!(device.sip_username, "louise");
        }
        other => panic!("not a device: {other:?}"),
    }
    let (_, payload) = ask(v1::GetRequest {
        number: "4512".into(),
        ..Default::default()
    })
    .await;
    let response = v1::GetResponse::decode(payload).expect("decode");
    assert!(matches!(
        response.entry.and_then(|e| e.kind),
        Some(v1::entry::Kind::Extension(e)) if e.number == "4512"
    ));
    let (_, payload) = ask(v1::GetRequest {
        kind: v1::EntryKind::User as i32,
        id: "U-1".into(),
        ..Default::default()
    })
    .await;
    assert!(
        v1::GetResponse::decode(payload)
            .expect("decode")
            .entry
            .is_some()
    );
    let (kind, payload) = ask(v1::GetRequest {
        sip_username: "nobody".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(kind.as_deref(), Some(subjects::types::BUS_ERROR));
    let error = v1::BusError::decode(payload).expect("decode");
    assert_eq!(error.code(), v1::BusErrorCode::NotFound);
    let reply = env
        .bus
        .request(
            subjects::DIRECTORY_GET,
            BusHeaders::new(),
            bytes::Bytes::from_static(b"\xff\xff\xff"),
            Duration::from_secs(3),
        )
        .await
        .expect("reply");
    let error = v1::BusError::decode(reply.payload).expect("decode");
    assert_eq!(error.code(), v1::BusErrorCode::InvalidArgument);
}

async fn oversized_change_sets_and_bodies_are_413(env: Env) {
    let mut small = config();
    small.repository.max_changes = 10;
    small.max_body_bytes = 64 * 1024;
    small.bus_responder = false;
    let limited = directory::service::start(small, env.store.clone(), env.bus.clone())
        .await
        .expect("start");
    assert!(limited.wait_loaded(Duration::from_secs(10)).await);
    let model = Directory::from_entries(small_city()).expect("valid");
    let csv = export_csv(&model, Kind::ClassOfService).expect("csv");
    let sites = export_csv(&model, Kind::Site).expect("csv");
    let before = limited.repository().snapshot().map(|s| s.revision);
    // Fits: the classes of service of the small city (fewer than 10).
    call(
        &limited,
        "POST",
        "/v1/import?format=csv&kind=class_of_service",
        Some(TOKEN),
        Some(&csv),
    )
    .await
    .expect(StatusCode::OK);
    let users = export_csv(&model, Kind::Trunk).expect("csv");
    call(
        &limited,
        "POST",
        "/v1/import?format=csv&kind=trunk",
        Some(TOKEN),
        Some(&users),
    )
    .await
    .expect(StatusCode::OK);
    let after_small = limited.repository().snapshot().map(|s| s.revision);
    assert!(after_small > before);
    // 6 sites are fine, but the 250 users are too many for one transaction of at most 10.
    call(
        &limited,
        "POST",
        "/v1/import?format=csv&kind=site",
        Some(TOKEN),
        Some(&sites),
    )
    .await
    .expect(StatusCode::OK);
    let users = export_csv(&model, Kind::User).expect("csv");
    let revision = limited.repository().snapshot().map(|s| s.revision);
    let refused = call(
        &limited,
        "POST",
        "/v1/import?format=csv&kind=user",
        Some(TOKEN),
        Some(&users),
    )
    .await;
    refused.expect(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(refused.code(), "too_large");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .expect("message")
            .contains("250 changes")
    );
    assert_eq!(
        limited.repository().snapshot().map(|s| s.revision),
        revision
    );
    // A body over the limit is refused before it is parsed.
    let big = "x".repeat(100 * 1024);
    let refused = call(
        &limited,
        "POST",
        "/v1/import?format=yaml",
        Some(TOKEN),
        Some(&big),
    )
    .await;
    refused.expect(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(refused.code(), "too_large");
    limited.shutdown().await;
}

async fn a_taken_port_fails_the_start_and_the_service_runs_on(env: Env) {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut conflicting = config();
    conflicting.rest = Some(taken.local_addr().expect("address"));
    conflicting.bus_responder = false;
    let failed = directory::service::start(conflicting, env.store.clone(), env.bus.clone()).await;
    assert!(
        matches!(failed, Err(directory::StartError::Bind { .. })),
        "{failed:?}"
    );
    let mut bad = config();
    bad.tokens.clear();
    let refused = directory::service::start(bad, env.store.clone(), env.bus.clone()).await;
    assert!(matches!(refused, Err(directory::StartError::Config(_))));
    env.call("GET", "/v1/site", None)
        .await
        .expect(StatusCode::OK);
}

// ------------------------------------------------------- cases (real etcd and NATS only)

async fn store_outage_answers_503_and_recovers(mut env: Env) {
    create_fixtures(&env, "site").await;
    let etcd = env.etcd.as_mut().expect("etcd");
    etcd.kill();
    let started = Instant::now();
    let (_, _, user) = fixtures().remove(3);
    let refused = env.call("POST", "/v1/user", Some(&user.to_string())).await;
    let took = started.elapsed();
    refused.expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.code(), "unavailable");
    assert!(refused.headers.contains_key("retry-after"));
    assert!(took < Duration::from_secs(8), "503 took {took:?}");
    println!("write during the outage refused with 503 in {took:?}");
    call(&env.handle, "GET", "/readyz", None, None)
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    // Reads keep being served from the snapshot.
    env.call("GET", "/v1/site/S-1", None)
        .await
        .expect(StatusCode::OK);

    env.etcd
        .as_mut()
        .expect("etcd")
        .restart()
        .expect("etcd restarts");
    let started = Instant::now();
    loop {
        let ready = call(&env.handle, "GET", "/readyz", None, None).await;
        if ready.status == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not ready again: {}",
            ready.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("ready again {:?} after the restart", started.elapsed());
    // Nothing lost, nothing half-done: what was written is there, the refused write is not.
    for (kind, id) in [
        ("class_of_service", "national"),
        ("trunk", "carrier-a"),
        ("site", "S-1"),
    ] {
        env.call("GET", &format!("/v1/{kind}/{id}"), None)
            .await
            .expect(StatusCode::OK);
    }
    env.call("GET", "/v1/user/U-1", None)
        .await
        .expect(StatusCode::NOT_FOUND);
    // Writes work again, without restarting the service.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = env.call("POST", "/v1/user", Some(&user.to_string())).await;
        if reply.status == StatusCode::CREATED {
            break;
        }
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text
        );
        assert!(Instant::now() < deadline, "writes did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And a fresh load from the store agrees.
    let store = etcd_store(env.etcd.as_ref().expect("etcd").endpoint()).await;
    let (kvs, _) = store
        .list_prefix(directory::storage::DIRECTORY_PREFIX)
        .await
        .expect("list");
    assert_eq!(kvs.len(), 4);
}

async fn a_write_through_one_replica_is_visible_through_another(env: Env) {
    let etcd = env.etcd.as_ref().expect("etcd");
    let nats = env.nats.as_ref().expect("nats");
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(NatsOptions::new("directory-test-2", vec![nats.url()]))
            .await
            .expect("nats"),
    );
    let second = directory::service::start(config(), etcd_store(etcd.endpoint()).await, bus)
        .await
        .expect("second replica");
    assert!(second.wait_loaded(Duration::from_secs(10)).await);
    for (kind, id, body) in fixtures().into_iter().take(4) {
        env.call("POST", &format!("/v1/{kind}"), Some(&body.to_string()))
            .await
            .expect(StatusCode::CREATED);
        let started = Instant::now();
        loop {
            let reply = call(
                &second,
                "GET",
                &format!("/v1/{kind}/{id}"),
                Some(TOKEN),
                None,
            )
            .await;
            if reply.status == StatusCode::OK {
                assert_eq!(reply.json(), body);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{kind} {id} not visible on the other replica within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Writes through the second replica are fenced against the first one's: a create of the
    // same key through both gives one 201 and one 409.
    let (_, _, device) = fixtures().remove(4);
    let device_text = device.to_string();
    let one = call(
        &env.handle,
        "POST",
        "/v1/device",
        Some(TOKEN),
        Some(&device_text),
    );
    let two = call(
        &second,
        "POST",
        "/v1/device",
        Some(TOKEN),
        Some(&device_text),
    );
    let (one, two) = tokio::join!(one, two);
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{one:?} {two:?}"
    );
    second.shutdown().await;
}

// ------------------------------------------------------------------------ instantiation

macro_rules! suite {
    ($backend:ident: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let env = super::Env::start(super::Backend::$backend).await;
                tokio::time::timeout(Duration::from_secs(60), super::$case(env))
                    .await
                    .expect("case finished within 60 s");
            }
        )*
    };
}

mod embedded {
    use super::*;
    suite!(Embedded:
        crud_every_kind,
        list_pagination_and_search,
        auth_is_required,
        malformed_requests_are_4xx_with_an_error_body,
        create_of_an_existing_entry_is_409,
        invalid_entries_are_422_with_every_problem,
        city_import_in_one_call,
        change_events_for_a_put_and_a_delete,
        grpc_crud_and_errors,
        bus_get_by_sip_username_and_number,
        oversized_change_sets_and_bodies_are_413,
        a_taken_port_fails_the_start_and_the_service_runs_on,
    );
}

mod etcd_nats {
    use super::*;
    suite!(Real:
        crud_every_kind,
        list_pagination_and_search,
        auth_is_required,
        malformed_requests_are_4xx_with_an_error_body,
        create_of_an_existing_entry_is_409,
        invalid_entries_are_422_with_every_problem,
        city_import_in_one_call,
        change_events_for_a_put_and_a_delete,
        grpc_crud_and_errors,
        bus_get_by_sip_username_and_number,
        oversized_change_sets_and_bodies_are_413,
        a_taken_port_fails_the_start_and_the_service_runs_on,
        store_outage_answers_503_and_recovers,
        a_write_through_one_replica_is_visible_through_another,
    );
}
