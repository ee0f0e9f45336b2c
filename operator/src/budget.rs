//! The calendar year's error budget, as a pure function of the objective, the failovers and
//! outages recorded, and `now` (`docs/pbxcluster.md`, `status.errorBudget`).
//!
//! - allowed = (1 − objective) × the seconds of the current calendar year (UTC), rounded down;
//!   exact decimal arithmetic, so `"99.977"` over 2026 is 7253 s, not 7253.28 rounded by a float.
//! - spent = the time, this year, during which a failover ran (`startedAt` → `completedAt`, or
//!   → now while it runs) or no serving datacenter was healthy (every serving datacenter inside
//!   one of its outages at once). Overlapping periods count once; periods are clipped to the
//!   year, so a failover straddling New Year counts only its part after midnight. Rounded up to
//!   the second.
//! - remainingRatio = 1 − spent/allowed (against the exact allowed), four decimals, negative
//!   once the budget is overspent.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::civil::date;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{Timestamp, ToSpan as _};

use crate::resource::{ErrorBudget, parse_objective};

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// A period of unavailability: `end` is `None` while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// When it began.
    pub start: Timestamp,
    /// When it ended, if it has.
    pub end: Option<Timestamp>,
}

/// What the budget is computed from.
#[derive(Debug, Clone, Default)]
pub struct BudgetInput<'a> {
    /// The objective, a percentage string (`"99.977"`).
    pub objective: &'a str,
    /// Failovers, completed or running.
    pub failovers: Vec<Period>,
    /// For each serving datacenter, its outages (one entry per serving datacenter, even with no
    /// outage: a datacenter never lost keeps the cluster serving).
    pub serving_outages: Vec<Vec<Period>>,
}

/// The calendar year (UTC) holding `now`: `[start, end)`.
pub fn year_of(now: Timestamp) -> (Timestamp, Timestamp) {
    let year = TimeZone::UTC.to_datetime(now).year();
    let start_of = |year: i16| {
        TimeZone::UTC
            .to_timestamp(date(year, 1, 1).at(0, 0, 0, 0))
            .unwrap_or(Timestamp::MIN)
    };
    let start = start_of(year);
    let end = year
        .checked_add(1)
        .map(start_of)
        .unwrap_or_else(|| start.checked_add(365.days()).unwrap_or(Timestamp::MAX));
    (start, end)
}

/// The error budget at `now`, or `None` if the objective does not parse.
pub fn error_budget(input: &BudgetInput<'_>, now: Timestamp) -> Option<ErrorBudget> {
    let (unavailable, scale) = parse_objective(input.objective)?;
    let (year_start, year_end) = year_of(now);
    let year_seconds = i128::from(year_end.as_second() - year_start.as_second());
    let allowed_seconds = year_seconds * i128::from(unavailable) / i128::from(scale);

    let now_ns = now.as_nanosecond();
    let window = (
        year_start.as_nanosecond(),
        now_ns.min(year_end.as_nanosecond()),
    );
    let to_ns = |p: &Period| {
        (
            p.start.as_nanosecond(),
            p.end.map_or(now_ns, |end| end.as_nanosecond()).min(now_ns),
        )
    };
    let mut spans: Vec<(i128, i128)> = input.failovers.iter().map(to_ns).collect();
    spans.extend(no_serving_spans(&input.serving_outages, to_ns));
    let spent_ns = union_length(spans, window);
    let spent_seconds = (spent_ns + NANOS_PER_SECOND - 1) / NANOS_PER_SECOND;

    Some(ErrorBudget {
        objective: input.objective.to_owned(),
        period_start: Time(year_start),
        allowed_seconds: i64::try_from(allowed_seconds).unwrap_or(i64::MAX),
        spent_seconds: i64::try_from(spent_seconds).unwrap_or(i64::MAX),
        remaining_ratio: remaining_ratio(spent_seconds, year_seconds, unavailable, scale),
    })
}

/// 1 − spent / (year × unavailable / scale), rounded half away from zero to four decimals.
fn remaining_ratio(spent: i128, year_seconds: i128, unavailable: u64, scale: u64) -> String {
    let allowed_scaled = year_seconds * i128::from(unavailable);
    let used_ten_thousandths = if allowed_scaled == 0 {
        if spent == 0 { 0 } else { 10_000 }
    } else {
        let numerator = spent * i128::from(scale) * 10_000;
        (2 * numerator + allowed_scaled) / (2 * allowed_scaled)
    };
    let remaining = 10_000 - used_ten_thousandths;
    let sign = if remaining < 0 { "-" } else { "" };
    let magnitude = remaining.abs();
    format!("{sign}{}.{:04}", magnitude / 10_000, magnitude % 10_000)
}

/// The periods in which every serving datacenter was inside one of its outages.
fn no_serving_spans(
    serving_outages: &[Vec<Period>],
    to_ns: impl Fn(&Period) -> (i128, i128),
) -> Vec<(i128, i128)> {
    let mut per_datacenter = serving_outages
        .iter()
        .map(|outages| merge(outages.iter().map(&to_ns).collect()));
    let Some(first) = per_datacenter.next() else {
        return Vec::new();
    };
    per_datacenter.fold(first, |all_down, down| intersect(&all_down, &down))
}

/// Sorted, disjoint, non-empty spans covering the same time as `spans`.
fn merge(mut spans: Vec<(i128, i128)>) -> Vec<(i128, i128)> {
    spans.retain(|(start, end)| start < end);
    spans.sort_unstable();
    let mut merged: Vec<(i128, i128)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// The intersection of two sorted, disjoint span lists.
fn intersect(a: &[(i128, i128)], b: &[(i128, i128)]) -> Vec<(i128, i128)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let start = a[i].0.max(b[j].0);
        let end = a[i].1.min(b[j].1);
        if start < end {
            out.push((start, end));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The time `spans` cover inside `window`, overlaps counted once.
fn union_length(spans: Vec<(i128, i128)>, window: (i128, i128)) -> i128 {
    let clipped = spans
        .into_iter()
        .map(|(start, end)| (start.max(window.0), end.min(window.1)))
        .collect();
    merge(clipped).iter().map(|(start, end)| end - start).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    fn period(start: &str, end: Option<&str>) -> Period {
        Period {
            start: t(start),
            end: end.map(t),
        }
    }

    fn budget(
        objective: &str,
        failovers: Vec<Period>,
        outages: [Vec<Period>; 2],
        now: &str,
    ) -> ErrorBudget {
        let input = BudgetInput {
            objective,
            failovers,
            serving_outages: outages.to_vec(),
        };
        error_budget(&input, t(now)).expect("a valid objective")
    }

    #[test]
    fn years_are_calendar_years_in_utc() {
        let cases = [
            (
                "2026-06-01T12:00:00Z",
                "2026-01-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            (
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            (
                "2026-12-31T23:59:59.999Z",
                "2026-01-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            (
                "2028-02-29T08:00:00Z",
                "2028-01-01T00:00:00Z",
                "2029-01-01T00:00:00Z",
            ),
        ];
        for (now, start, end) in cases {
            assert_eq!(year_of(t(now)), (t(start), t(end)), "{now}");
        }
    }

    /// (objective, now, allowed seconds): 365- and 366-day years, rounding down, extremes.
    #[test]
    fn allowed_is_exact_and_rounded_down() {
        let cases = [
            ("99.977", "2026-06-01T00:00:00Z", 7253), // 31 536 000 × 0.00023 = 7253.28
            ("99.977", "2028-06-01T00:00:00Z", 7273), // leap year: 31 622 400 × 0.00023
            ("99.9", "2026-06-01T00:00:00Z", 31536),
            ("99", "2026-06-01T00:00:00Z", 315360),
            ("99.9999", "2026-06-01T00:00:00Z", 31), // 31.536
            ("99.999999", "2026-06-01T00:00:00Z", 0), // 0.315
            ("0", "2026-06-01T00:00:00Z", 31_536_000),
        ];
        for (objective, now, allowed) in cases {
            let b = budget(objective, vec![], [vec![], vec![]], now);
            assert_eq!(b.allowed_seconds, allowed, "{objective} at {now}");
            assert_eq!(b.spent_seconds, 0);
            assert_eq!(b.remaining_ratio, "1.0000");
        }
    }

    #[test]
    fn the_contract_example() {
        let b = budget(
            "99.977",
            vec![period("2026-11-29T11:00:00Z", Some("2026-11-29T11:00:07Z"))],
            [
                vec![period("2026-11-29T11:00:00Z", Some("2026-11-29T11:20:00Z"))],
                vec![],
            ],
            "2026-11-29T12:00:00Z",
        );
        assert_eq!(b.period_start, Time(t("2026-01-01T00:00:00Z")));
        assert_eq!(b.allowed_seconds, 7253);
        // dc-a's outage alone leaves dc-b serving: only the failover's 7 s count.
        assert_eq!(b.spent_seconds, 7);
        assert_eq!(b.remaining_ratio, "0.9990");
    }

    /// (what, failovers, dc-a's outages, dc-b's outages, now, spent seconds).
    #[test]
    fn spent_counts_failovers_and_no_serving_periods_once_within_the_year() {
        type Case = (
            &'static str,
            Vec<Period>,
            Vec<Period>,
            Vec<Period>,
            &'static str,
            i64,
        );
        let cases: Vec<Case> = vec![
            (
                "two failovers add up",
                vec![
                    period("2026-03-01T10:00:00Z", Some("2026-03-01T10:00:12Z")),
                    period("2026-04-01T10:00:00Z", Some("2026-04-01T10:00:05Z")),
                ],
                vec![],
                vec![],
                "2026-05-01T00:00:00Z",
                17,
            ),
            (
                "a running failover counts up to now",
                vec![period("2026-03-01T10:00:00Z", None)],
                vec![],
                vec![],
                "2026-03-01T10:00:09Z",
                9,
            ),
            (
                "a failover straddling New Year counts from midnight",
                vec![period("2025-12-31T23:59:50Z", Some("2026-01-01T00:00:10Z"))],
                vec![],
                vec![],
                "2026-01-01T00:00:30Z",
                10,
            ),
            (
                "a failover still running across New Year counts from midnight to now",
                vec![period("2025-12-31T23:59:50Z", None)],
                vec![],
                vec![],
                "2026-01-01T00:00:30Z",
                30,
            ),
            (
                "last year's failovers are not this year's",
                vec![period("2025-12-31T23:00:00Z", Some("2025-12-31T23:10:00Z"))],
                vec![],
                vec![],
                "2026-01-01T00:00:30Z",
                0,
            ),
            (
                "on New Year's Eve the whole year counts",
                vec![period("2026-01-01T00:00:00Z", Some("2026-01-01T00:00:04Z"))],
                vec![],
                vec![],
                "2026-12-31T23:59:59Z",
                4,
            ),
            (
                "one datacenter down leaves the other serving",
                vec![],
                vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T11:00:00Z"))],
                vec![],
                "2026-05-01T00:00:00Z",
                0,
            ),
            (
                "both down at once: the overlap counts",
                vec![],
                vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:20:00Z"))],
                vec![period("2026-03-01T10:10:00Z", Some("2026-03-01T10:30:00Z"))],
                "2026-05-01T00:00:00Z",
                600,
            ),
            (
                "both down, one still: up to now",
                vec![],
                vec![period("2026-03-01T10:00:00Z", None)],
                vec![period("2026-03-01T10:10:00Z", Some("2026-03-01T10:30:00Z"))],
                "2026-03-01T10:15:00Z",
                300,
            ),
            (
                "a failover inside a no-serving period counts once",
                vec![period("2026-03-01T10:12:00Z", Some("2026-03-01T10:13:00Z"))],
                vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:20:00Z"))],
                vec![period("2026-03-01T10:10:00Z", Some("2026-03-01T10:30:00Z"))],
                "2026-05-01T00:00:00Z",
                600,
            ),
            (
                "a failover beside a no-serving period adds",
                vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:00:07Z"))],
                vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:20:00Z"))],
                vec![period("2026-03-01T10:10:00Z", Some("2026-03-01T10:30:00Z"))],
                "2026-05-01T00:00:00Z",
                607,
            ),
            (
                "an outage of both across New Year counts from midnight",
                vec![],
                vec![period("2025-12-31T23:00:00Z", Some("2026-01-01T01:00:00Z"))],
                vec![period("2025-12-31T23:30:00Z", Some("2026-01-01T00:30:00Z"))],
                "2026-01-02T00:00:00Z",
                1800,
            ),
            (
                "part of a second is a second",
                vec![period(
                    "2026-03-01T10:00:00Z",
                    Some("2026-03-01T10:00:02.1Z"),
                )],
                vec![],
                vec![],
                "2026-05-01T00:00:00Z",
                3,
            ),
            (
                "a record ending in the future (clock skew) stops at now",
                vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:10:00Z"))],
                vec![],
                vec![],
                "2026-03-01T10:00:30Z",
                30,
            ),
        ];
        for (what, failovers, dc_a, dc_b, now, spent) in cases {
            let b = budget("99.977", failovers, [dc_a, dc_b], now);
            assert_eq!(b.spent_seconds, spent, "{what}");
        }
    }

    /// (spent seconds over 2026 at 99.977 %, remaining ratio).
    #[test]
    fn remaining_ratio_has_four_decimals_and_goes_negative() {
        let cases = [
            (0, "1.0000"),
            (7, "0.9990"),
            (3627, "0.5000"), // 3627 / 7253.28 = 0.50005 used
            (7253, "0.0000"),
            (7254, "-0.0001"),
            (14507, "-1.0001"),
        ];
        for (spent, ratio) in cases {
            let failovers = vec![Period {
                start: t("2026-03-01T00:00:00Z"),
                end: Some(
                    t("2026-03-01T00:00:00Z")
                        .checked_add(spent.seconds())
                        .unwrap(),
                ),
            }];
            let b = budget(
                "99.977",
                failovers,
                [vec![], vec![]],
                "2026-06-01T00:00:00Z",
            );
            assert_eq!(b.spent_seconds, spent);
            assert_eq!(b.remaining_ratio, ratio, "spent {spent}");
        }
    }

    #[test]
    fn an_unparsable_objective_has_no_budget() {
        for objective in ["100", "99.", ".9", "99.9999999", "abc", "", "-1"] {
            let input = BudgetInput {
                objective,
                ..BudgetInput::default()
            };
            assert!(
                error_budget(&input, t("2026-01-01T00:00:00Z")).is_none(),
                "{objective}"
            );
        }
    }
}
