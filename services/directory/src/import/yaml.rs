//! The YAML format: one document, a section per kind, each a list of records.

use serde::{Deserialize, Serialize};
use serde_norway::Value;

use super::records::{Record, collect_record};
use super::{ExportError, ImportError, ImportErrors, ImportFault, ImportSet, Location};
use crate::model::{Directory, Kind};

/// The document's shape: a list of (not yet checked) records per kind; absent sections are
/// `None` (which matters for [`super::ImportMode::Replace`]).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Document {
    sites: Option<Vec<Value>>,
    classes_of_service: Option<Vec<Value>>,
    trunks: Option<Vec<Value>>,
    users: Option<Vec<Value>>,
    devices: Option<Vec<Value>>,
    extensions: Option<Vec<Value>>,
    hunt_groups: Option<Vec<Value>>,
    pickup_groups: Option<Vec<Value>>,
    routes: Option<Vec<Value>>,
}

impl Document {
    fn section(&mut self, kind: Kind) -> &mut Option<Vec<Value>> {
        match kind {
            Kind::Site => &mut self.sites,
            Kind::User => &mut self.users,
            Kind::Extension => &mut self.extensions,
            Kind::Device => &mut self.devices,
            Kind::HuntGroup => &mut self.hunt_groups,
            Kind::PickupGroup => &mut self.pickup_groups,
            Kind::ClassOfService => &mut self.classes_of_service,
            Kind::Trunk => &mut self.trunks,
            Kind::Route => &mut self.routes,
        }
    }
}

/// Parses a YAML import, checking every record; returns every fault found.
pub fn parse_yaml(text: &str) -> Result<ImportSet, ImportErrors> {
    let mut document: Document = if text.trim().is_empty() {
        Document::default()
    } else {
        serde_norway::from_str(text)
            .map_err(|e| ImportErrors(vec![ImportError::file(None, ImportFault::Yaml(e))]))?
    };
    let mut set = ImportSet::default();
    let mut errors = Vec::new();
    for kind in Kind::ALL {
        let Some(values) = document.section(kind).take() else {
            continue;
        };
        set.kinds.insert(kind);
        set.entries.reserve(values.len());
        for (index, value) in values.into_iter().enumerate() {
            let location = Location::Item { kind, index };
            collect_record(kind, value, location, &mut set, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(ImportErrors(errors))
    }
}

/// The whole directory as a YAML document that [`parse_yaml`] reads back to the same entries.
/// Every section is present (even empty), so that a [`super::ImportMode::Replace`] import of
/// an export restores exactly that directory.
pub fn export_yaml(directory: &Directory) -> Result<String, ExportError> {
    let mut document = Document::default();
    for kind in Kind::ALL {
        let values = directory
            .entries_of(kind)
            .into_iter()
            .map(|entry| Record::from_entry(entry).to_value())
            .collect::<Result<Vec<Value>, _>>()?;
        *document.section(kind) = Some(values);
    }
    Ok(serde_norway::to_string(&document)?)
}
