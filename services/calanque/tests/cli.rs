//! The `calanque` CLI: argument parsing and output formatting without a process, then an
//! end-to-end run of the binary against a real `calanque-directory` process (embedded store in
//! a temporary directory, in-process bus, free loopback ports).

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use calanque::cli::{Command as Top, DirCommand, EntityCommand, FormatArg, ModeArg};
use calanque::client::{ApiFailure, ImportOutcome, parse_page, percent_encode};
use calanque::output::{Percentiles, import_summary, table};
use calanque::{Cli, dir};
use clap::Parser;
use directory::import::parse_yaml;
use directory::model::{Ha1Pair, Realm, SipUsername};
use serde_json::{Value, json};

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("calanque").chain(args.iter().copied())).unwrap()
}

#[test]
fn global_options_are_accepted_after_the_subcommand() {
    let cli = parse(&[
        "dir",
        "user",
        "list",
        "--name-prefix",
        "ada",
        "--server",
        "http://127.0.0.1:9999",
        "--token",
        "t0k",
        "--json",
    ]);
    assert_eq!(cli.connection.server, "http://127.0.0.1:9999");
    assert_eq!(cli.connection.token.as_deref(), Some("t0k"));
    let Top::Dir(DirCommand::User(EntityCommand::List(list))) = cli.command else {
        panic!("not user list: {:?}", cli.command)
    };
    assert_eq!(list.name_prefix.as_deref(), Some("ada"));
    assert!(list.json);
    assert_eq!(list.page_size, 500);
}

#[test]
fn token_and_token_file_conflict_and_unknown_flags_fail() {
    let both = Cli::try_parse_from([
        "calanque",
        "--token",
        "a",
        "--token-file",
        "/x",
        "dir",
        "user",
        "list",
    ]);
    assert!(both.is_err());
    assert!(Cli::try_parse_from(["calanque", "dir", "user", "list", "--bogus"]).is_err());
    assert!(Cli::try_parse_from(["calanque", "dir", "user", "add", "--id", "U-1"]).is_err());
    assert!(Cli::try_parse_from(["calanque", "dir", "import"]).is_err());
}

#[test]
fn import_options_and_the_format_guess() {
    let cli = parse(&[
        "dir",
        "import",
        "people.CSV",
        "--kind",
        "user",
        "--mode",
        "replace",
    ]);
    let Top::Dir(DirCommand::Import(args)) = cli.command else {
        panic!()
    };
    assert_eq!(args.mode, ModeArg::Replace);
    assert_eq!(args.kind.as_deref(), Some("user"));
    assert_eq!(dir::import_format(&args), FormatArg::Csv);
    let cli = parse(&["dir", "import", "city.yaml"]);
    let Top::Dir(DirCommand::Import(args)) = cli.command else {
        panic!()
    };
    assert_eq!(args.mode, ModeArg::Merge);
    assert_eq!(dir::import_format(&args), FormatArg::Yaml);
    let cli = parse(&["dir", "import", "x.csv", "--format", "yaml"]);
    let Top::Dir(DirCommand::Import(args)) = cli.command else {
        panic!()
    };
    assert_eq!(dir::import_format(&args), FormatArg::Yaml);
}

#[test]
fn loadtest_and_generate_city_options() {
    let cli = parse(&[
        "dir",
        "loadtest",
        "--nats",
        "nats://127.0.0.1:4222",
        "--usernames-from",
        "city.yaml",
        "--requests",
        "20000",
        "--concurrency",
        "32",
    ]);
    let Top::Dir(DirCommand::Loadtest(args)) = cli.command else {
        panic!()
    };
    assert_eq!((args.requests, args.concurrency), (20_000, 32));
    assert_eq!(args.usernames_from, PathBuf::from("city.yaml"));
    let cli = parse(&["dir", "generate-city", "--seed", "9", "-o", "c.yaml"]);
    let Top::Dir(DirCommand::GenerateCity(args)) = cli.command else {
        panic!()
    };
    assert_eq!((args.seed, args.output), (9, PathBuf::from("c.yaml")));
}

#[test]
fn user_add_builds_the_model_json_and_refuses_bad_values() {
    let Top::Dir(DirCommand::User(EntityCommand::Add(args))) = parse(&[
        "dir",
        "user",
        "add",
        "--id",
        "U-00042",
        "--display-name",
        "Ada Lovelace",
        "--site",
        "S-001",
        "--email",
        "ada@example.org",
    ])
    .command
    else {
        panic!()
    };
    let value = dir::user_json(args.clone()).unwrap();
    assert_eq!(value["id"], "U-00042");
    assert_eq!(value["display_name"], "Ada Lovelace");
    assert_eq!(value["site_id"], "S-001");
    assert_eq!(value["email"], "ada@example.org");
    assert_eq!(value["given_name"], Value::Null);

    let mut bad = args;
    bad.email = Some("not an address".to_owned());
    let error = dir::user_json(bad).unwrap_err().to_string();
    assert!(error.starts_with("--email: "), "{error}");
}

#[test]
fn device_add_sends_ha1s_and_never_the_password() {
    let Top::Dir(DirCommand::Device(EntityCommand::Add(args))) = parse(&[
        "dir",
        "device",
        "add",
        "--id",
        "D-7",
        "--sip-username",
        "ada.desk",
        "--site",
        "S-001",
        "--realm",
        "pbx.example.org",
        "--transport",
        "tls",
    ])
    .command
    else {
        panic!()
    };
    let secret = "correct horse battery";
    let value = dir::device_json(args, || Ok(secret.to_owned())).unwrap();
    let expected = Ha1Pair::from_password(
        &SipUsername::parse("ada.desk").unwrap(),
        &Realm::parse("pbx.example.org").unwrap(),
        secret,
    );
    assert_eq!(value["ha1"]["md5"], expected.md5.as_str());
    assert_eq!(
        value["ha1"]["sha256"],
        expected.sha256.as_ref().unwrap().as_str()
    );
    assert_eq!(value["transport"], "tls");
    assert!(!value.to_string().contains("horse"));
}

#[test]
fn tables_align_columns_and_show_absent_values_as_dashes() {
    let items = vec![
        json!({"id": "U-1", "display_name": "Ada Lovelace", "site_id": "S-001", "email": null}),
        json!({"id": "U-12345", "display_name": "Bo", "site_id": "S-2", "email": "bo@x.org"}),
    ];
    assert_eq!(
        table("user", &items),
        "ID       DISPLAY NAME  SITE   EMAIL\n\
         U-1      Ada Lovelace  S-001  -\n\
         U-12345  Bo            S-2    bo@x.org\n"
    );
    let extension = vec![
        json!({"number": "4512", "site_id": "S-1", "display_name": "Desk",
        "class_of_service": "local", "user_id": null, "device_ids": ["D-1", "D-2"]}),
    ];
    assert!(
        table("extension", &extension)
            .ends_with("4512    S-1   Desk          local  -     D-1,D-2\n")
    );
    assert_eq!(table("user", &[]), "ID  DISPLAY NAME  SITE  EMAIL\n");
}

#[test]
fn api_errors_read_every_detail_and_401_says_the_token_was_rejected() {
    let body = br#"{"error":{"code":"invalid","message":"the import is invalid","details":["row 3 (line 4) (user 'U-2'): site_id: site 'S-9' does not exist","row 5 (line 6): id: empty"]}}"#;
    let failure = ApiFailure::from_body(422, body);
    assert_eq!(failure.details.len(), 2);
    assert_eq!(
        failure.to_string(),
        "the import is invalid (422 invalid)\n  - row 3 (line 4) (user 'U-2'): site_id: site 'S-9' does not exist\n  - row 5 (line 6): id: empty"
    );
    let unauthorized = ApiFailure::from_body(
        401,
        br#"{"error":{"code":"unauthenticated","message":"x","details":[]}}"#,
    );
    assert!(unauthorized.to_string().starts_with("token rejected"));
    let html = ApiFailure::from_body(502, b"<html>bad gateway</html>");
    assert_eq!(html.code, "http_error");
    assert!(html.to_string().contains("bad gateway"));
}

#[test]
fn pages_end_on_a_null_or_empty_token() {
    let (items, next) = parse_page(&json!({"items": [1, 2], "next_page_token": "k2"})).unwrap();
    assert_eq!((items.len(), next.as_deref()), (2, Some("k2")));
    assert_eq!(
        parse_page(&json!({"items": [], "next_page_token": null}))
            .unwrap()
            .1,
        None
    );
    assert_eq!(
        parse_page(&json!({"items": [], "next_page_token": ""}))
            .unwrap()
            .1,
        None
    );
    assert!(parse_page(&json!({"entries": []})).is_err());
    assert_eq!(percent_encode("a b/+c@"), "a%20b%2F%2Bc%40");
}

#[test]
fn summaries_and_percentiles() {
    let outcome = ImportOutcome {
        puts: 24_662,
        deletes: 3,
        revision: 9,
    };
    assert_eq!(
        import_summary(&outcome),
        "imported: 24662 puts, 3 deletes, revision 9\n"
    );
    let mut samples: Vec<u64> = (1..=1000).rev().collect();
    let p = Percentiles::of(&mut samples).unwrap();
    assert_eq!((p.p50, p.p95, p.p99, p.max), (500, 950, 990, 1000));
    assert_eq!(Percentiles::of(&mut []), None);
    let p = Percentiles::of(&mut [7]).unwrap();
    assert_eq!((p.p50, p.max), (7, 7));
}

// ---- end to end: the binary against a running calanque-directory -------------------------

/// Bound on the directory process listening.
const START_WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "e2e-admin-token";

/// `calanque-directory`, built by `cargo test --workspace` beside this package's binary.
fn directory_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_calanque")).with_file_name("calanque-directory");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p directory --bins` (cargo test --workspace does)",
        path.display()
    );
    path
}

struct DirectoryProcess {
    child: Child,
    url: String,
    log: PathBuf,
}

impl DirectoryProcess {
    /// Starts the directory on free ports; again on others when one was taken between being
    /// picked and bound (tests run in parallel: another process can take a "free" port).
    fn start(dir: &Path) -> DirectoryProcess {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match DirectoryProcess::start_once(dir) {
                Ok(process) => return process,
                Err(log) if attempt < ATTEMPTS && log.contains("Address already in use") => {}
                Err(log) => panic!("calanque-directory exited: {log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One start: `Err` with the log when the process exits before listening.
    fn start_once(dir: &Path) -> Result<DirectoryProcess, String> {
        let rest = SocketAddr::from(([127, 0, 0, 1], testkit::process::free_port()));
        let grpc = SocketAddr::from(([127, 0, 0, 1], testkit::process::free_port()));
        let log = dir.join("directory.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(directory_binary())
            .arg("--store")
            .arg(format!("embedded:{}", dir.join("directory.redb").display()))
            .args(["--bus", "in-process"])
            .args(["--rest", &rest.to_string(), "--grpc", &grpc.to_string()])
            .env("CALANQUE_DIRECTORY_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut process = DirectoryProcess {
            child,
            url: format!("http://{rest}"),
            log,
        };
        let step = Duration::from_millis(50);
        for _ in 0..(START_WAIT.as_millis() / step.as_millis()) {
            if TcpStream::connect_timeout(&rest, step).is_ok() {
                return Ok(process);
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                return Err(format!("({status}) {}", process.log_text()));
            }
            std::thread::sleep(step);
        }
        panic!(
            "calanque-directory not listening after {START_WAIT:?}: {}",
            process.log_text()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DirectoryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI against `url` with the admin token (unless `token` says otherwise).
fn calanque(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_calanque"))
        .args(args)
        .env("CALANQUE_DIRECTORY_URL", url)
        .env("CALANQUE_TOKEN", token)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "calanque failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn failed(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "expected exit code 1");
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn end_to_end_against_a_directory_process() {
    let dir = tempfile::tempdir().unwrap();
    let service = DirectoryProcess::start(dir.path());
    let url = service.url.clone();
    let url = url.as_str();
    let run = |args: &[&str]| calanque(url, TOKEN, args);
    let city = dir.path().join("city.yaml");
    let city_arg = city.to_str().unwrap();

    let generated = ok(&run(&[
        "dir",
        "generate-city",
        "--seed",
        "4",
        "--sites",
        "3",
        "--users",
        "30",
        "--devices",
        "12",
        "-o",
        city_arg,
    ]));
    assert!(generated.starts_with("generated "), "{generated}");
    let city_entries = parse_yaml(&std::fs::read_to_string(&city).unwrap())
        .unwrap()
        .entries
        .len();

    let imported = ok(&run(&["dir", "import", city_arg]));
    assert!(
        imported.starts_with(&format!(
            "imported: {city_entries} puts, 0 deletes, revision "
        )),
        "{imported}"
    );
    let again = ok(&run(&["dir", "import", city_arg, "--mode", "merge"]));
    assert!(again.starts_with("imported: 0 puts, 0 deletes"), "{again}");

    // Users: add, list (table and JSON, every page), show, rm.
    let sites: Value = serde_json::from_str(&ok(&run(&["dir", "site", "list", "--json"]))).unwrap();
    assert_eq!(sites.as_array().unwrap().len(), 3);
    let site = sites[0]["id"].as_str().unwrap().to_owned();
    let added = ok(&run(&[
        "dir",
        "user",
        "add",
        "--id",
        "U-E2E-1",
        "--display-name",
        "Zoë Quarantotto",
        "--site",
        &site,
        "--email",
        "zoe@example.org",
    ]));
    assert_eq!(added, "created user U-E2E-1\n");
    let listed = ok(&run(&["dir", "user", "list", "--name-prefix", "zoë"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("ID "));
    assert!(
        lines[1].starts_with("U-E2E-1  Zoë Quarantotto  "),
        "{listed}"
    );
    let all: Value = serde_json::from_str(&ok(&run(&[
        "dir",
        "user",
        "list",
        "--json",
        "--page-size",
        "7",
    ])))
    .unwrap();
    assert_eq!(
        all.as_array().unwrap().len(),
        31,
        "30 generated users and one added"
    );
    let shown: Value =
        serde_json::from_str(&ok(&run(&["dir", "user", "show", "U-E2E-1"]))).unwrap();
    assert_eq!(shown["display_name"], "Zoë Quarantotto");
    assert_eq!(shown["site_id"], site.as_str());
    assert_eq!(
        ok(&run(&["dir", "user", "rm", "U-E2E-1"])),
        "deleted user U-E2E-1\n"
    );
    let gone = failed(&run(&["dir", "user", "show", "U-E2E-1"]));
    assert!(gone.contains("404"), "{gone}");

    // A device: the password becomes HA1s in the CLI.
    let added = ok(&run(&[
        "dir",
        "device",
        "add",
        "--id",
        "D-E2E-1",
        "--sip-username",
        "zoe.desk",
        "--site",
        &site,
        "--realm",
        "calanque",
        "--password",
        "s3cret-pw",
    ]));
    assert_eq!(added, "created device D-E2E-1\n");
    let device = ok(&run(&["dir", "device", "show", "D-E2E-1"]));
    let expected = Ha1Pair::from_password(
        &SipUsername::parse("zoe.desk").unwrap(),
        &Realm::parse("calanque").unwrap(),
        "s3cret-pw",
    );
    let device: Value = serde_json::from_str(&device).unwrap();
    assert_eq!(device["ha1"]["md5"], expected.md5.as_str());

    // A site and an extension ringing that device.
    let added = ok(&run(&[
        "dir",
        "site",
        "add",
        "--id",
        "S-E2E",
        "--name",
        "Test lab",
        "--range",
        "2000000-2000099",
        "--emergency",
        "112=carrier-a",
        "--media-policy",
        "relay",
    ]));
    assert_eq!(added, "created site S-E2E\n");
    let added = ok(&run(&[
        "dir",
        "extension",
        "add",
        "--number",
        "2000001",
        "--site",
        "S-E2E",
        "--display-name",
        "Lab desk",
        "--cos",
        "local",
        "--device",
        "D-E2E-1",
    ]));
    assert_eq!(added, "created extension 2000001\n");
    let extensions = ok(&run(&[
        "dir",
        "extension",
        "list",
        "--number-prefix",
        "20000",
    ]));
    let lines: Vec<&str> = extensions.lines().collect();
    assert_eq!(
        lines,
        [
            "NUMBER   SITE   DISPLAY NAME  COS    USER  DEVICES",
            "2000001  S-E2E  Lab desk      local  -     D-E2E-1",
        ]
    );
    let site_row = ok(&run(&["dir", "site", "list", "--name-prefix", "test l"]));
    assert!(
        site_row
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("Test lab  2000000-2000099  relay"),
        "{site_row}"
    );
    let referenced = failed(&run(&["dir", "device", "rm", "D-E2E-1"]));
    assert!(referenced.contains("422"), "{referenced}");

    // Export gives back the city and what was added.
    let exported = dir.path().join("export.yaml");
    ok(&run(&["dir", "export", "-o", exported.to_str().unwrap()]));
    let back = parse_yaml(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    assert_eq!(back.entries.len(), city_entries + 3);
    let users_csv = ok(&run(&[
        "dir", "export", "--format", "csv", "--kind", "user",
    ]));
    assert_eq!(users_csv.lines().count(), 31, "header and 30 users");

    // Errors: an invalid file lists every problem; a wrong token is named as such.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "users:\n- id: U-BAD-1\n  display_name: A\n  site_id: S-999\n- id: U-BAD-2\n  display_name: B\n  site_id: S-998\n",
    )
    .unwrap();
    let refused = failed(&run(&["dir", "import", bad.to_str().unwrap()]));
    assert!(
        refused.contains("S-999") && refused.contains("S-998"),
        "{refused}"
    );
    assert!(refused.contains("422"), "{refused}");
    let rejected = failed(&calanque(url, "wrong-token", &["dir", "user", "list"]));
    assert!(rejected.contains("token rejected"), "{rejected}");
    drop(service);
    let unreachable = failed(&run(&["dir", "user", "list"]));
    assert!(
        unreachable.contains("cannot reach the directory"),
        "{unreachable}"
    );
}
