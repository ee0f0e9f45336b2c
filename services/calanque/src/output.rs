//! What `list` and the other commands print: aligned tables of chosen fields, and import
//! summaries.

use serde_json::Value;

use crate::client::ImportOutcome;

/// The table columns of a kind: (header, JSON field). HA1s are never shown.
pub fn columns(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "user" => &[
            ("ID", "id"),
            ("DISPLAY NAME", "display_name"),
            ("SITE", "site_id"),
            ("EMAIL", "email"),
        ],
        "site" => &[
            ("ID", "id"),
            ("NAME", "name"),
            ("RANGES", "number_ranges"),
            ("MEDIA", "media_policy"),
        ],
        "extension" => &[
            ("NUMBER", "number"),
            ("SITE", "site_id"),
            ("DISPLAY NAME", "display_name"),
            ("COS", "class_of_service"),
            ("USER", "user_id"),
            ("DEVICES", "device_ids"),
        ],
        "device" => &[
            ("ID", "id"),
            ("SIP USERNAME", "sip_username"),
            ("SITE", "site_id"),
            ("REALM", "realm"),
            ("TRANSPORT", "transport"),
        ],
        _ => &[("ENTRY", "")],
    }
}

/// One cell: text as is, absent as `-`, lists joined with `,`.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.is_empty() => "-".to_owned(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| cell(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// An aligned table (two spaces between columns, no trailing spaces), header first.
pub fn table(kind: &str, items: &[Value]) -> String {
    let columns = columns(kind);
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, field)| {
                    if field.is_empty() {
                        item.to_string()
                    } else {
                        cell(item.get(*field))
                    }
                })
                .collect()
        })
        .collect();
    let headers: Vec<String> = columns.iter().map(|(h, _)| (*h).to_owned()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&headers).chain(&rows) {
        let mut line = String::new();
        for (i, (text, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(text);
            if i + 1 < row.len() {
                line.extend(std::iter::repeat_n(' ', width - text.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `imported: 24662 puts, 0 deletes, revision 3`.
pub fn import_summary(outcome: &ImportOutcome) -> String {
    format!(
        "imported: {} puts, {} deletes, revision {}\n",
        outcome.puts, outcome.deletes, outcome.revision
    )
}

/// Latency percentiles of a load test, in microseconds, from unsorted samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Slowest.
    pub max: u64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` without samples.
    pub fn of(samples: &mut [u64]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: usize| {
            let index = (samples.len() * p).div_ceil(100).max(1) - 1;
            samples[index.min(samples.len() - 1)]
        };
        Some(Percentiles {
            p50: rank(50),
            p95: rank(95),
            p99: rank(99),
            max: samples[samples.len() - 1],
        })
    }
}
