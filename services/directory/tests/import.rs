//! Bulk import at the reference customer's scale: a generated city (300 sites, 12,000 users,
//! 6,000 devices, 50 hunt groups) through YAML and CSV, validated whole, planned, re-imported.

use std::time::Instant;

use directory::import::{
    CityParams, ImportMode, ImportSet, Location, export_csv, export_yaml, generate_city, parse_csv,
    parse_yaml, plan,
};
use directory::model::{Directory, Entry, Kind};
use proto::Message as _;
use proto::v1;

fn city() -> Directory {
    let entries = generate_city(&CityParams::reference(2024)).expect("generate");
    Directory::from_entries(entries).expect("the generated city is valid")
}

/// One CSV file per kind, in dependency order, as an admin would import them.
fn csv_files(directory: &Directory) -> Vec<(Kind, String)> {
    Kind::ALL
        .into_iter()
        .map(|k| (k, export_csv(directory, k).expect("export")))
        .collect()
}

#[test]
#[allow(clippy::disallowed_methods)] // wall-clock timing printed for the record, not asserted
fn the_generated_city_parses_and_validates() {
    let generated = city();
    let counts = generated.counts();
    assert_eq!(counts[&Kind::Site], 300);
    assert_eq!(counts[&Kind::User], 12_000);
    assert_eq!(counts[&Kind::Device], 6_000);
    assert_eq!(counts[&Kind::Extension], 6_000);
    assert_eq!(counts[&Kind::HuntGroup], 50);
    let yaml = export_yaml(&generated).expect("export");

    let start = Instant::now();
    let set = parse_yaml(&yaml).expect("parse");
    let parsed = start.elapsed();
    let changes = plan(&Directory::new(), set).expect("plan");
    let planned = start.elapsed();
    let mut imported = Directory::new();
    imported.apply(&changes).expect("apply");
    let total = start.elapsed();
    println!(
        "generated city: {} entries, {} KiB of YAML; parse {parsed:?}, parse+validate+plan \
         {planned:?}, +apply {total:?}",
        generated.len(),
        yaml.len() / 1024
    );
    assert_eq!(changes.puts.len(), generated.len());
    assert_eq!(imported, generated);
}

#[test]
fn one_bad_row_out_of_12000_is_named_and_nothing_is_planned() {
    let generated = city();
    // The sites exist; the 12,000 users arrive in one file.
    let existing = Directory::from_entries(
        generated
            .entries()
            .into_iter()
            .filter(|e| matches!(e.kind(), Kind::Site | Kind::Trunk | Kind::ClassOfService)),
    )
    .expect("sites, trunks and classes of service alone are valid");
    let users = export_csv(&generated, Kind::User).expect("export");
    let mut lines: Vec<String> = users.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 12_001, "header + 12,000 rows");
    // Row 8123 is line 8124 (after the header); move that user to a site that does not exist.
    let victim = lines[8123].clone();
    let site = victim.split(',').nth(5).expect("site column").to_owned();
    lines[8123] = victim.replacen(&format!(",{site}"), ",S-999", 1);
    let id = victim.split(',').next().expect("id").to_owned();
    let text = lines.join("\n");

    let set = parse_csv(Kind::User, &text).expect("every row is well-formed on its own");
    assert_eq!(set.entries.len(), 12_000);
    let errors = plan(&existing, set).expect_err("the plan must be refused");
    assert_eq!(errors.0.len(), 1, "{errors}");
    let error = &errors.0[0];
    assert_eq!(
        error.location,
        Some(Location::Row {
            row: 8123,
            line: 8124
        })
    );
    assert_eq!(error.field.as_deref(), Some("site_id"));
    assert_eq!(
        error.to_string(),
        format!("row 8123 (line 8124) (user '{id}'): site_id: site 'S-999' does not exist")
    );
}

#[test]
fn one_malformed_ha1_among_6000_devices_is_refused_at_parse() {
    let generated = city();
    let devices = export_csv(&generated, Kind::Device).expect("export");
    let mut lines: Vec<String> = devices.lines().map(str::to_owned).collect();
    let mut cells: Vec<String> = lines[4512].split(',').map(str::to_owned).collect();
    cells[4] = "not-a-digest".to_owned(); // ha1_md5
    lines[4512] = cells.join(",");
    let errors = parse_csv(Kind::Device, &lines.join("\n")).expect_err("must be refused");
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(
        errors.0[0].to_string(),
        format!(
            "row 4512 (line 4513) (device '{}'): ha1_md5: must be 32 hexadecimal characters, found 12",
            cells[0]
        )
    );
}

#[test]
fn reimporting_the_same_files_changes_nothing() {
    let generated = city();
    let yaml = export_yaml(&generated).expect("export");
    let again = plan(&generated, parse_yaml(&yaml).expect("parse")).expect("plan");
    assert!(again.is_empty(), "{:?}", again.counts());
    let replace = parse_yaml(&yaml)
        .expect("parse")
        .with_mode(ImportMode::Replace);
    assert!(plan(&generated, replace).expect("plan").is_empty());
    for (kind, csv) in csv_files(&generated) {
        let set = parse_csv(kind, &csv)
            .expect("parse")
            .with_mode(ImportMode::Replace);
        let changes = plan(&generated, set).expect("plan");
        assert!(changes.is_empty(), "{kind}: {:?}", changes.counts());
    }
}

#[test]
fn export_then_import_gives_the_same_directory_in_yaml_and_in_csv() {
    let generated = city();
    let from_yaml = {
        let set = parse_yaml(&export_yaml(&generated).expect("export")).expect("parse");
        let mut d = Directory::new();
        d.apply(&plan(&d, set).expect("plan")).expect("apply");
        d
    };
    assert_eq!(from_yaml, generated);

    let mut from_csv = Directory::new();
    for (kind, csv) in csv_files(&generated) {
        let changes = plan(&from_csv, parse_csv(kind, &csv).expect("parse")).expect("plan");
        from_csv.apply(&changes).expect("apply");
    }
    assert_eq!(from_csv, generated);
}

#[test]
fn a_replace_import_deletes_what_the_file_no_longer_holds() {
    let generated = city();
    let csv = export_csv(&generated, Kind::HuntGroup).expect("export");
    // Drop the last hunt group from the file.
    let kept: Vec<&str> = csv.lines().take(50).collect();
    let dropped = csv
        .lines()
        .nth(50)
        .and_then(|l| l.split(',').next())
        .expect("row 50")
        .to_owned();
    let set: ImportSet = parse_csv(Kind::HuntGroup, &kept.join("\n")).expect("parse");
    assert!(
        plan(&generated, set.clone())
            .expect("merge plan")
            .is_empty()
    );
    let changes = plan(&generated, set.with_mode(ImportMode::Replace)).expect("replace plan");
    assert!(changes.puts.is_empty());
    assert_eq!(changes.deletes.len(), 1);
    assert_eq!(changes.deletes[0].id(), dropped);
}

#[test]
fn the_whole_city_round_trips_through_protobuf() {
    let generated = city();
    let mut back = Vec::new();
    for entry in generated.entries() {
        let bytes = v1::Entry::from(entry).encode_to_vec();
        let decoded = v1::Entry::decode(bytes.as_slice()).expect("decode");
        back.push(Entry::try_from(decoded).expect("valid"));
    }
    assert_eq!(Directory::from_entries(back).expect("valid"), generated);
}

#[test]
fn the_generator_is_deterministic_for_a_seed() {
    let params = CityParams {
        sites: 10,
        users: 100,
        devices: 50,
        hunt_groups: 3,
        seed: 7,
    };
    assert_eq!(
        generate_city(&params).expect("a"),
        generate_city(&params).expect("b")
    );
    let other = CityParams { seed: 8, ..params };
    assert_ne!(
        generate_city(&params).expect("a"),
        generate_city(&other).expect("c")
    );
}
