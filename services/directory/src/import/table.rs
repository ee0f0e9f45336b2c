//! The CSV format: one file per kind; a header row naming every column of the kind's record
//! (in any order); one record per row; list cells hold `;`-separated items.

use serde_norway::{Mapping, Value};

use super::records::{Record, collect_record, columns};
use super::{ExportError, ImportError, ImportErrors, ImportFault, ImportSet, Location};
use crate::model::{Directory, Kind};

/// Parses a CSV file of `kind` records, checking every row; returns every fault found.
pub fn parse_csv(kind: Kind, text: &str) -> Result<ImportSet, ImportErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let columns = columns(kind);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header_location = Some(Location::Header);
    let headers = reader
        .headers()
        .map_err(|e| {
            ImportErrors(vec![ImportError::file(
                header_location,
                ImportFault::Csv(e),
            )])
        })?
        .clone();
    let mut errors = Vec::new();
    let mut is_list = Vec::with_capacity(headers.len());
    for header in &headers {
        match columns.iter().find(|(name, _)| *name == header) {
            Some((_, list)) => is_list.push(*list),
            None => {
                is_list.push(false);
                errors.push(ImportError::file(
                    header_location,
                    ImportFault::UnknownColumn {
                        column: header.to_owned(),
                        expected: columns
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(","),
                    },
                ));
            }
        }
    }
    for (name, _) in columns {
        if !headers.iter().any(|h| h == *name) {
            errors.push(ImportError::file(
                header_location,
                ImportFault::MissingColumn { column: name },
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ImportErrors(errors));
    }

    let mut set = ImportSet::default();
    set.kinds.insert(kind);
    for (index, row) in reader.records().enumerate() {
        let row_number = index + 1;
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                errors.push(ImportError::file(
                    Some(Location::Row {
                        row: row_number,
                        line,
                    }),
                    ImportFault::Csv(e),
                ));
                continue;
            }
        };
        let location = Location::Row {
            row: row_number,
            line: row.position().map_or(0, csv::Position::line),
        };
        let mut mapping = Mapping::new();
        for ((header, cell), list) in headers.iter().zip(row.iter()).zip(&is_list) {
            let value = if *list {
                Value::Sequence(
                    cell.split(';')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(|item| Value::String(item.to_owned()))
                        .collect(),
                )
            } else {
                Value::String(cell.to_owned())
            };
            mapping.insert(Value::String(header.to_owned()), value);
        }
        collect_record(
            kind,
            Value::Mapping(mapping),
            location,
            &mut set,
            &mut errors,
        );
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(ImportErrors(errors))
    }
}

/// The entries of one kind as a CSV file that [`parse_csv`] reads back to the same entries.
pub fn export_csv(directory: &Directory, kind: Kind) -> Result<String, ExportError> {
    let columns = columns(kind);
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(columns.iter().map(|(name, _)| *name))?;
    for entry in directory.entries_of(kind) {
        let value = Record::from_entry(entry).to_value()?;
        let cells = columns.iter().map(|(name, _)| match value.get(*name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(";"),
            _ => String::new(),
        });
        writer.write_record(cells)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ExportError::Csv(e.into_error().into()))?;
    String::from_utf8(bytes).map_err(|_| ExportError::Utf8)
}
