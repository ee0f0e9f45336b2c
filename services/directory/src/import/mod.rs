//! Bulk import and export of the directory (ADR 0006).
//!
//! - YAML: one document with a section per kind (`sites`, `users`, `extensions`, `devices`,
//!   `hunt_groups`, `pickup_groups`, `classes_of_service`, `trunks`, `routes`), each a list of
//!   records: [`parse_yaml`], [`export_yaml`].
//! - CSV: one file per kind, a header row naming the record's columns (all of them, any order),
//!   list cells separated by `;`: [`parse_csv`], [`export_csv`].
//!
//! Parsing checks every record on its own and returns every fault with its place (`row 8123
//! (line 8124)` in a CSV file, `extensions[8122]` in YAML). [`plan`] then checks the import as a
//! whole against the existing directory and computes the [`ChangeSet`] — empty when the file
//! holds nothing new — without applying anything (the service commits it in one transaction).

mod generate;
mod records;
mod table;
mod yaml;

use std::collections::{BTreeSet, HashMap};
use std::fmt;

pub use generate::{CityParams, GenerateError, generate_city};
pub use table::{export_csv, parse_csv};
pub use yaml::{export_yaml, parse_yaml};

use crate::model::{
    ChangeSet, Directory, Entry, EntryKey, Fault, FieldFault, Kind, ModelError, key_field,
};

/// Where an imported record is in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The CSV header row (line 1).
    Header,
    /// A CSV record: `row` counts records from 1 (the header is not one), `line` is the file's
    /// line where the record starts.
    Row {
        /// Record number.
        row: usize,
        /// Line in the file.
        line: u64,
    },
    /// A YAML record: the `index`th (from 0) item of the `kind`'s section.
    Item {
        /// The section.
        kind: Kind,
        /// Index in the section.
        index: usize,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Header => f.write_str("header (line 1)"),
            Location::Row { row, line } => write!(f, "row {row} (line {line})"),
            Location::Item { kind, index } => write!(f, "{}[{index}]", section(*kind)),
        }
    }
}

/// The YAML section of a kind.
pub fn section(kind: Kind) -> &'static str {
    match kind {
        Kind::Site => "sites",
        Kind::User => "users",
        Kind::Extension => "extensions",
        Kind::Device => "devices",
        Kind::HuntGroup => "hunt_groups",
        Kind::PickupGroup => "pickup_groups",
        Kind::ClassOfService => "classes_of_service",
        Kind::Trunk => "trunks",
        Kind::Route => "routes",
    }
}

/// What is wrong in an import.
#[derive(Debug, thiserror::Error)]
pub enum ImportFault {
    /// The YAML text is not a well-formed document of the expected shape.
    #[error("the YAML document is malformed: {0}")]
    Yaml(#[source] serde_norway::Error),
    /// The CSV text is malformed (unbalanced quotes, a row with the wrong number of cells, not
    /// UTF-8).
    #[error("malformed CSV: {0}")]
    Csv(#[source] csv::Error),
    /// A record is not a mapping of the known fields to text (an unknown field, a nested value).
    #[error("{0}")]
    Record(#[source] serde_norway::Error),
    /// A CSV header names a column the kind does not have.
    #[error("unknown column {column:?} (expected: {expected})")]
    UnknownColumn {
        /// The column.
        column: String,
        /// The kind's columns.
        expected: String,
    },
    /// A CSV header lacks a column of the kind (every column is required so that a missing one
    /// cannot silently erase values).
    #[error("missing column {column:?}")]
    MissingColumn {
        /// The column.
        column: &'static str,
    },
    /// A field's value is invalid.
    #[error("{0}")]
    Field(FieldFault),
    /// A required field is absent.
    #[error("missing")]
    Missing,
    /// The same key appears twice in the import.
    #[error("is already defined at {first}")]
    DuplicateKey {
        /// Where it first appears.
        first: Location,
    },
    /// The import does not fit the directory as a whole.
    #[error("{0}")]
    Directory(Fault),
}

/// One fault in an import: where, which entry, which field, what.
#[derive(Debug, thiserror::Error)]
pub struct ImportError {
    /// Where in the file; `None` for the whole file or for an existing entry the import breaks.
    pub location: Option<Location>,
    /// Kind and key (as written) of the entry concerned, when known.
    pub entry: Option<(Kind, String)>,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong.
    pub fault: ImportFault,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(location) = &self.location {
            parts.push(location.to_string());
        }
        if let Some((kind, key)) = &self.entry {
            let name = match EntryKey::parse(*kind, key) {
                Ok(key) => key.to_string(),
                Err(_) => format!("{kind} {key:?}"),
            };
            if self.location.is_some() {
                parts.push(format!("({name})"));
            } else {
                parts.push(format!("existing {name}"));
            }
        }
        let head = parts.join(" ");
        match (&self.field, head.is_empty()) {
            (Some(field), false) => write!(f, "{head}: {field}: {}", self.fault),
            (Some(field), true) => write!(f, "{field}: {}", self.fault),
            (None, false) => write!(f, "{head}: {}", self.fault),
            (None, true) => write!(f, "{}", self.fault),
        }
    }
}

impl ImportError {
    /// A fault of the whole file.
    fn file(location: Option<Location>, fault: ImportFault) -> ImportError {
        ImportError {
            location,
            entry: None,
            field: None,
            fault,
        }
    }

    /// Field faults of one record.
    fn fields(
        location: Location,
        kind: Kind,
        key: &str,
        errors: Vec<ModelError>,
    ) -> Vec<ImportError> {
        errors
            .into_iter()
            .map(|e| {
                let (field, fault) = match e {
                    ModelError::InvalidField { field, reason } => {
                        (field, ImportFault::Field(reason))
                    }
                    ModelError::MissingField { field } => (field, ImportFault::Missing),
                };
                ImportError {
                    location: Some(location),
                    entry: Some((kind, key.to_owned())),
                    field: Some(field),
                    fault,
                }
            })
            .collect()
    }
}

/// Every fault found in an import (never empty when returned as an error).
#[derive(Debug, thiserror::Error)]
pub struct ImportErrors(pub Vec<ImportError>);

impl fmt::Display for ImportErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the import has {} error(s)", self.0.len())?;
        for error in &self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// Errors of an export (a serialiser failure; not expected with the record types).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// YAML serialisation failed.
    #[error("YAML serialisation failed: {0}")]
    Yaml(#[from] serde_norway::Error),
    /// CSV writing failed.
    #[error("CSV writing failed: {0}")]
    Csv(#[from] csv::Error),
    /// The CSV writer produced bytes that are not UTF-8.
    #[error("CSV output is not UTF-8")]
    Utf8,
}

/// How an import treats entries it does not mention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImportMode {
    /// Create or replace what the file holds; leave the rest.
    #[default]
    Merge,
    /// For every kind the file holds (a YAML section present, even empty; the CSV's kind), the
    /// file is the whole truth: entries of that kind it does not hold are deleted.
    Replace,
}

/// An imported record, checked on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Where it is in the file.
    pub location: Location,
    /// The entry.
    pub entry: Entry,
}

/// The parsed content of an import file, each entry valid on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSet {
    /// The entries, in file order.
    pub entries: Vec<Imported>,
    /// The kinds the file holds (for [`ImportMode::Replace`]).
    pub kinds: BTreeSet<Kind>,
    /// Merge (default) or replace.
    pub mode: ImportMode,
}

impl ImportSet {
    /// The same import in another mode.
    pub fn with_mode(mut self, mode: ImportMode) -> ImportSet {
        self.mode = mode;
        self
    }
}

/// Checks `import` as a whole against `existing` and computes the changes it makes: puts for
/// entries that are new or differ, deletes for entries a [`ImportMode::Replace`] import drops.
/// Re-importing a file already applied gives an empty change set. Nothing is applied: on
/// success, `existing.apply(&changes)` (or the store transaction) cannot fail validation.
pub fn plan(existing: &Directory, import: ImportSet) -> Result<ChangeSet, ImportErrors> {
    let mut errors = Vec::new();
    let mut locations: HashMap<EntryKey, Location> = HashMap::new();
    let mut changes = ChangeSet::default();
    for Imported { location, entry } in import.entries {
        let key = entry.key();
        if let Some(first) = locations.get(&key) {
            errors.push(ImportError {
                location: Some(location),
                entry: Some((key.kind(), key.id().to_owned())),
                field: Some(key_field(key.kind()).to_owned()),
                fault: ImportFault::DuplicateKey { first: *first },
            });
            continue;
        }
        locations.insert(key.clone(), location);
        if existing.get(&key).as_ref() != Some(&entry) {
            changes.puts.push(entry);
        }
    }
    if import.mode == ImportMode::Replace {
        for kind in &import.kinds {
            changes.deletes.extend(
                existing
                    .keys(*kind)
                    .into_iter()
                    .filter(|k| !locations.contains_key(k)),
            );
        }
    }
    if !errors.is_empty() {
        return Err(ImportErrors(errors));
    }
    match existing.with_changes(&changes) {
        Ok(_) => Ok(changes),
        Err(problems) => Err(ImportErrors(
            problems
                .0
                .into_iter()
                .map(|p| ImportError {
                    location: locations.get(&p.key).copied(),
                    entry: Some((p.key.kind(), p.key.id().to_owned())),
                    field: Some(p.field.to_owned()),
                    fault: ImportFault::Directory(p.fault),
                })
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::small_city;

    fn city() -> Directory {
        Directory::from_entries(small_city()).unwrap()
    }

    fn messages(errors: &ImportErrors) -> Vec<String> {
        errors.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn yaml_records_report_every_field_fault_with_their_place() {
        let yaml = r#"
sites:
  - id: S-3
    name: Annex
    number_ranges: [4700-4799]
    emergency_routes: ["112", "17=carrier"]
    media_policy: sometimes
extensions:
  - number: 4701
    site_id: S-3
    display_name: Annex lobby
    class_of_service: national
  - number: "47a1"
    site_id: S-3
    display_name: ""
    class_of_service: national
    colour: blue
"#;
        let errors = parse_yaml(yaml).unwrap_err();
        let text = messages(&errors);
        assert_eq!(text.len(), 3, "{text:?}");
        assert_eq!(
            text[0],
            "sites[0] (site 'S-3'): emergency_routes[0]: \"112\" is not of the form number=trunk"
        );
        assert_eq!(
            text[1],
            "sites[0] (site 'S-3'): media_policy: \"sometimes\" is not one of direct, relay"
        );
        assert!(
            text[2].starts_with("extensions[1]: unknown field `colour`"),
            "{}",
            text[2]
        );
    }

    #[test]
    fn unquoted_yaml_numbers_are_read_as_text() {
        let yaml = "hunt_groups:\n  - number: 5002\n    name: Crisis\n    members: [4501, 4502]\n    strategy: round-robin\n    ring_timeout_seconds: 15\n";
        let set = parse_yaml(yaml).unwrap();
        assert_eq!(set.kinds, BTreeSet::from([Kind::HuntGroup]));
        let changes = plan(&city(), set).unwrap();
        assert_eq!(changes.puts.len(), 1);
        assert_eq!(changes.puts[0].key().to_string(), "hunt group 5002");
    }

    #[test]
    fn a_malformed_yaml_document_is_one_error() {
        let errors = parse_yaml("sites: [").unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert!(matches!(errors.0[0].fault, ImportFault::Yaml(_)));
        let errors = parse_yaml("phones: []").unwrap_err();
        assert!(messages(&errors)[0].contains("unknown field `phones`"));
    }

    #[test]
    fn csv_headers_must_name_every_column_and_only_known_ones() {
        let errors = parse_csv(Kind::PickupGroup, "number,name,colour\n5002,x,blue\n").unwrap_err();
        assert_eq!(
            messages(&errors),
            [
                "header (line 1): unknown column \"colour\" (expected: number,name,members)",
                "header (line 1): missing column \"members\"",
            ]
        );
    }

    #[test]
    fn csv_lists_are_semicolon_separated_and_columns_may_come_in_any_order() {
        let csv = "\u{feff}members,name,number\n\"4501; 4502\",Floor 2,5002\n";
        let set = parse_csv(Kind::PickupGroup, csv).unwrap();
        let changes = plan(&city(), set).unwrap();
        match &changes.puts[..] {
            [Entry::PickupGroup(g)] => {
                assert_eq!(g.members.len(), 2);
                assert_eq!(g.name.as_str(), "Floor 2");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_csv_row_with_the_wrong_number_of_cells_is_named() {
        let errors = parse_csv(
            Kind::PickupGroup,
            "number,name,members\n5002,x,4501\n5003,y\n",
        )
        .unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert_eq!(
            errors.0[0].location,
            Some(Location::Row { row: 2, line: 3 })
        );
        assert!(matches!(errors.0[0].fault, ImportFault::Csv(_)));
    }

    #[test]
    fn a_key_twice_in_one_import_is_refused_naming_both_places() {
        let csv = "number,name,members\n5002,x,4501\n5002,y,4502\n";
        let errors = plan(&city(), parse_csv(Kind::PickupGroup, csv).unwrap()).unwrap_err();
        assert_eq!(
            messages(&errors),
            ["row 2 (line 3) (pickup group 5002): number: is already defined at row 1 (line 2)"]
        );
    }

    #[test]
    fn a_replace_import_reports_the_existing_entries_it_would_break() {
        // Replacing the sites with S-1 alone leaves extension 4601 on a deleted site.
        let yaml = "sites:\n  - id: S-1\n    name: Site S-1\n    number_ranges: [4500-4599]\n    emergency_routes: [112=carrier]\n    media_policy: direct\n";
        let set = parse_yaml(yaml).unwrap().with_mode(ImportMode::Replace);
        let errors = plan(&city(), set).unwrap_err();
        assert_eq!(
            messages(&errors),
            ["existing extension 4601: site_id: site 'S-2' does not exist"]
        );
    }

    #[test]
    fn route_records_take_one_target_and_text_enums() {
        let csv = "id,pattern,trunk,site_id,priority,category,strip_digits,prepend\n\
                   R-1,00.,carrier,S-1,x,premium,0,\n\
                   R-2,46XX,,S-2,5,internal,,\n";
        let errors = parse_csv(Kind::Route, csv).unwrap_err();
        assert_eq!(
            messages(&errors),
            [
                "row 1 (line 2) (route 'R-1'): trunk: a route goes to a trunk or to a site, not both",
                "row 1 (line 2) (route 'R-1'): priority: \"x\" is not a number made of decimal digits",
            ]
        );
    }

    #[test]
    fn trunk_auth_columns_are_named_as_in_the_file() {
        let csv = "name,kind,address,transport,auth_username,auth_realm,auth_ha1_md5,auth_ha1_sha256,number_ranges,max_channels\n\
                   carrier-c,carrier,sbc.example:5060,tls,city,,abc,,,\n";
        let errors = parse_csv(Kind::Trunk, csv).unwrap_err();
        let fields: Vec<_> = errors.0.iter().filter_map(|e| e.field.clone()).collect();
        assert_eq!(fields, ["auth_realm", "auth_ha1_md5"]);
    }

    #[test]
    fn the_small_city_exports_and_imports_back_in_both_formats() {
        let d = city();
        let set = parse_yaml(&export_yaml(&d).unwrap()).unwrap();
        let mut from_yaml = Directory::new();
        from_yaml.apply(&plan(&from_yaml, set).unwrap()).unwrap();
        assert_eq!(from_yaml, d);
        let mut from_csv = Directory::new();
        for kind in Kind::ALL {
            let set = parse_csv(kind, &export_csv(&d, kind).unwrap()).unwrap();
            from_csv.apply(&plan(&from_csv, set).unwrap()).unwrap();
        }
        assert_eq!(from_csv, d);
    }
}
