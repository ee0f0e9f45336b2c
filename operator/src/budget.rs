//! The calendar year's error budget, as a pure function of the objective, the failovers and
//! outages recorded, and `now` (`docs/pbxcluster.md`, `status.errorBudget`).
//!
//! - allowed = (1 − objective) × the seconds of the current calendar year (UTC), rounded down;
//!   exact decimal arithmetic, so `"99.977"` over 2026 is 7253 s, not 7253.28 rounded by a float.
//! - spent = the time, this year, during which
//!   - the active datacenter was lost and its roles not yet moved: from the start of each
//!     outage of the datacenter that was active when the outage began, until the failover
//!     away from it completed (→ now while it runs), or until the outage ended if it recovered
//!     without one. Users lose service from the moment the datacenter fails, not from when the
//!     failover controller decides (a detection period, 10 s by default, later);
//!   - a failover ran (`startedAt` → `completedAt`, or → now while it runs; a failback too);
//!   - no serving datacenter was healthy (every serving datacenter inside one of its outages at
//!     once).
//!
//!   Overlapping periods count once; periods are clipped to the year, so a failover straddling
//!   New Year counts only its part after midnight. Rounded up to the second. An outage of the
//!   standby costs nothing: the active datacenter serves.
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

/// A move of the roles between datacenters (a failover or a failback), completed or running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// Where the roles were.
    pub from: String,
    /// Where they went.
    pub to: String,
    /// From its start to its completion (`end` is `None` while it runs).
    pub period: Period,
}

/// What the budget is computed from.
#[derive(Debug, Clone, Default)]
pub struct BudgetInput<'a> {
    /// The objective, a percentage string (`"99.977"`).
    pub objective: &'a str,
    /// The datacenter holding the roles now; with no move recorded, it held them throughout.
    pub active: &'a str,
    /// Moves, completed or running (any order): with `active`, which datacenter was active
    /// when each outage began.
    pub moves: Vec<Move>,
    /// For each serving datacenter, its name and its outages (one entry per serving
    /// datacenter, even with no outage: a datacenter never lost keeps the cluster serving).
    pub serving_outages: Vec<(String, Vec<Period>)>,
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

    let spent_ns = spent_nanoseconds(input, now);
    let spent_seconds = (spent_ns + NANOS_PER_SECOND - 1) / NANOS_PER_SECOND;

    Some(ErrorBudget {
        objective: input.objective.to_owned(),
        period_start: Time(year_start),
        allowed_seconds: i64::try_from(allowed_seconds).unwrap_or(i64::MAX),
        spent_seconds: i64::try_from(spent_seconds).unwrap_or(i64::MAX),
        remaining_ratio: remaining_ratio(spent_seconds, year_seconds, unavailable, scale),
    })
}

/// The unavailable time this year up to `now`, exactly (see the module's first lines).
fn spent_nanoseconds(input: &BudgetInput<'_>, now: Timestamp) -> i128 {
    let (year_start, year_end) = year_of(now);
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
    let mut moves: Vec<&Move> = input.moves.iter().collect();
    moves.sort_by_key(|m| m.period.start);
    let mut spans: Vec<(i128, i128)> = moves.iter().map(|m| to_ns(&m.period)).collect();
    spans.extend(no_serving_spans(&input.serving_outages, to_ns));
    spans.extend(active_loss_spans(input, &moves, now_ns));
    union_length(spans, window)
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

/// For each outage of the datacenter active when it began: from its start until the first
/// move away from that datacenter completed (now while it runs), or until the outage ended,
/// whichever came first. `moves` are sorted by start.
fn active_loss_spans(input: &BudgetInput<'_>, moves: &[&Move], now_ns: i128) -> Vec<(i128, i128)> {
    // Before the first move, its origin was active; with none, the datacenter active now.
    let initial = moves.first().map_or(input.active, |m| m.from.as_str());
    let mut spans = Vec::new();
    for (datacenter, outages) in &input.serving_outages {
        for outage in outages {
            // A move whose start write is at or after the outage's start did not yet hold the
            // roles elsewhere when it began (the start write names the target active).
            let active = moves
                .iter()
                .take_while(|m| m.period.start < outage.start)
                .last()
                .map_or(initial, |m| m.to.as_str());
            if active != datacenter {
                continue;
            }
            let moved_away = moves
                .iter()
                .find(|m| m.from == *datacenter && m.period.start >= outage.start)
                .map(|m| m.period.end.map_or(now_ns, |end| end.as_nanosecond()));
            let recovered = outage.end.map_or(now_ns, |end| end.as_nanosecond());
            let end = moved_away.map_or(recovered, |moved| moved.min(recovered));
            spans.push((outage.start.as_nanosecond(), end.min(now_ns)));
        }
    }
    spans
}

/// The periods in which every serving datacenter was inside one of its outages.
fn no_serving_spans(
    serving_outages: &[(String, Vec<Period>)],
    to_ns: impl Fn(&Period) -> (i128, i128),
) -> Vec<(i128, i128)> {
    let mut per_datacenter = serving_outages
        .iter()
        .map(|(_, outages)| merge(outages.iter().map(&to_ns).collect()));
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

    /// A move of the roles, completed at `end` or running.
    fn moved(from: &str, to: &str, start: &str, end: Option<&str>) -> Move {
        Move {
            from: from.to_owned(),
            to: to.to_owned(),
            period: period(start, end),
        }
    }

    /// The budget with `active` holding the roles now, `moves`, and dc-a's and dc-b's outages.
    fn budget(
        objective: &str,
        active: &str,
        moves: Vec<Move>,
        outages: [Vec<Period>; 2],
        now: &str,
    ) -> ErrorBudget {
        error_budget(&input(objective, active, moves, outages), t(now)).expect("a valid objective")
    }

    fn input<'a>(
        objective: &'a str,
        active: &'a str,
        moves: Vec<Move>,
        [dc_a, dc_b]: [Vec<Period>; 2],
    ) -> BudgetInput<'a> {
        BudgetInput {
            objective,
            active,
            moves,
            serving_outages: vec![("dc-a".to_owned(), dc_a), ("dc-b".to_owned(), dc_b)],
        }
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
            let b = budget(objective, "dc-a", vec![], [vec![], vec![]], now);
            assert_eq!(b.allowed_seconds, allowed, "{objective} at {now}");
            assert_eq!(b.spent_seconds, 0);
            assert_eq!(b.remaining_ratio, "1.0000");
        }
    }

    #[test]
    fn the_contract_example() {
        // dc-a, active, is lost at 11:00:00; the failover to dc-b starts once the detection
        // period has passed and completes 0.5 s later.
        let b = budget(
            "99.977",
            "dc-b",
            vec![moved(
                "dc-a",
                "dc-b",
                "2026-11-29T11:00:10Z",
                Some("2026-11-29T11:00:10.5Z"),
            )],
            [
                vec![period("2026-11-29T11:00:00Z", Some("2026-11-29T11:20:00Z"))],
                vec![],
            ],
            "2026-11-29T12:00:00Z",
        );
        assert_eq!(b.period_start, Time(t("2026-01-01T00:00:00Z")));
        assert_eq!(b.allowed_seconds, 7253);
        // From the loss to the completed failover: 10.5 s, rounded up; dc-b served after.
        assert_eq!(b.spent_seconds, 11);
        assert_eq!(b.remaining_ratio, "0.9985");
    }

    /// A spent-time case: the datacenter active now, the moves, dc-a's and dc-b's outages,
    /// now, and the time spent in milliseconds (exact, before rounding up to the second).
    struct Case {
        what: &'static str,
        active: &'static str,
        moves: Vec<Move>,
        dc_a: Vec<Period>,
        dc_b: Vec<Period>,
        now: &'static str,
        spent_ms: i128,
    }

    fn check(cases: Vec<Case>) {
        for case in cases {
            let input = input("99.977", case.active, case.moves, [case.dc_a, case.dc_b]);
            let now = t(case.now);
            let spent_ns = spent_nanoseconds(&input, now);
            assert_eq!(spent_ns, case.spent_ms * 1_000_000, "{}", case.what);
            let b = error_budget(&input, now).expect("a budget");
            let rounded_up = (case.spent_ms + 999) / 1000;
            assert_eq!(i128::from(b.spent_seconds), rounded_up, "{}", case.what);
        }
    }

    #[test]
    fn spent_counts_moves_and_no_serving_periods_once_within_the_year() {
        check(vec![
            Case {
                what: "two failovers add up",
                active: "dc-a",
                moves: vec![
                    moved(
                        "dc-a",
                        "dc-b",
                        "2026-03-01T10:00:00Z",
                        Some("2026-03-01T10:00:12Z"),
                    ),
                    moved(
                        "dc-b",
                        "dc-a",
                        "2026-04-01T10:00:00Z",
                        Some("2026-04-01T10:00:05Z"),
                    ),
                ],
                dc_a: vec![],
                dc_b: vec![],
                now: "2026-05-01T00:00:00Z",
                spent_ms: 17_000,
            },
            Case {
                what: "a running failover counts up to now",
                active: "dc-b",
                moves: vec![moved("dc-a", "dc-b", "2026-03-01T10:00:00Z", None)],
                dc_a: vec![],
                dc_b: vec![],
                now: "2026-03-01T10:00:09Z",
                spent_ms: 9_000,
            },
            Case {
                what: "a failover straddling New Year counts from midnight",
                active: "dc-b",
                moves: vec![moved(
                    "dc-a",
                    "dc-b",
                    "2025-12-31T23:59:50Z",
                    Some("2026-01-01T00:00:10Z"),
                )],
                dc_a: vec![],
                dc_b: vec![],
                now: "2026-01-01T00:00:30Z",
                spent_ms: 10_000,
            },
            Case {
                what: "a failover still running across New Year counts from midnight to now",
                active: "dc-b",
                moves: vec![moved("dc-a", "dc-b", "2025-12-31T23:59:50Z", None)],
                dc_a: vec![],
                dc_b: vec![],
                now: "2026-01-01T00:00:30Z",
                spent_ms: 30_000,
            },
            Case {
                what: "last year's failovers are not this year's",
                active: "dc-b",
                moves: vec![moved(
                    "dc-a",
                    "dc-b",
                    "2025-12-31T23:00:00Z",
                    Some("2025-12-31T23:10:00Z"),
                )],
                dc_a: vec![],
                dc_b: vec![],
                now: "2026-01-01T00:00:30Z",
                spent_ms: 0,
            },
            Case {
                what: "on New Year's Eve the whole year counts",
                active: "dc-b",
                moves: vec![moved(
                    "dc-a",
                    "dc-b",
                    "2026-01-01T00:00:00Z",
                    Some("2026-01-01T00:00:04Z"),
                )],
                dc_a: vec![],
                dc_b: vec![],
                now: "2026-12-31T23:59:59Z",
                spent_ms: 4_000,
            },
            Case {
                what: "an outage of the standby costs nothing",
                active: "dc-b",
                moves: vec![],
                dc_a: vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T11:00:00Z"))],
                dc_b: vec![],
                now: "2026-05-01T00:00:00Z",
                spent_ms: 0,
            },
            Case {
                what: "an active outage of 10 s, then a 0.4 s failover: 10.4 s",
                active: "dc-b",
                moves: vec![moved(
                    "dc-a",
                    "dc-b",
                    "2026-03-01T10:00:10Z",
                    Some("2026-03-01T10:00:10.4Z"),
                )],
                dc_a: vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:20:00Z"))],
                dc_b: vec![],
                now: "2026-05-01T00:00:00Z",
                spent_ms: 10_400,
            },
            Case {
                what: "an active outage recovered after 3 s without a failover: 3 s",
                active: "dc-a",
                moves: vec![],
                dc_a: vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:00:03Z"))],
                dc_b: vec![],
                now: "2026-05-01T00:00:00Z",
                spent_ms: 3_000,
            },
            Case {
                what: "an active outage still open, its failover running: up to now",
                active: "dc-b",
                moves: vec![moved("dc-a", "dc-b", "2026-03-01T10:00:10Z", None)],
                dc_a: vec![period("2026-03-01T10:00:00Z", None)],
                dc_b: vec![],
                now: "2026-03-01T10:00:10.2Z",
                spent_ms: 10_200,
            },
            Case {
                what: "an active outage still open, nowhere to go yet: up to now",
                active: "dc-a",
                moves: vec![],
                dc_a: vec![period("2026-03-01T10:00:00Z", None)],
                dc_b: vec![],
                now: "2026-03-01T10:00:07Z",
                spent_ms: 7_000,
            },
            Case {
                what: "recovered while its failover ran: the outage, then the failover",
                active: "dc-b",
                moves: vec![moved(
                    "dc-a",
                    "dc-b",
                    "2026-03-01T10:00:10Z",
                    Some("2026-03-01T10:00:10.4Z"),
                )],
                dc_a: vec![period(
                    "2026-03-01T10:00:00Z",
                    Some("2026-03-01T10:00:10.2Z"),
                )],
                dc_b: vec![],
                now: "2026-05-01T00:00:00Z",
                spent_ms: 10_400,
            },
            Case {
                what: "who was active comes from the moves: dc-b after the March failover",
                active: "dc-a",
                moves: vec![
                    moved(
                        "dc-a",
                        "dc-b",
                        "2026-03-01T10:00:10Z",
                        Some("2026-03-01T10:00:10.5Z"),
                    ),
                    moved(
                        "dc-b",
                        "dc-a",
                        "2026-06-01T10:00:10Z",
                        Some("2026-06-01T10:00:10.5Z"),
                    ),
                ],
                // dc-a's June outage is the standby's; dc-b's June outage is the active's.
                dc_a: vec![
                    period("2026-03-01T10:00:00Z", Some("2026-03-01T10:30:00Z")),
                    period("2026-05-01T10:00:00Z", Some("2026-05-01T10:30:00Z")),
                ],
                dc_b: vec![period("2026-06-01T10:00:00Z", Some("2026-06-01T10:30:00Z"))],
                now: "2026-07-01T00:00:00Z",
                spent_ms: 21_000,
            },
            Case {
                what: "without any move, the datacenter active now was active throughout",
                active: "dc-b",
                moves: vec![],
                dc_a: vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:00:05Z"))],
                dc_b: vec![period("2026-04-01T10:00:00Z", Some("2026-04-01T10:00:05Z"))],
                now: "2026-05-01T00:00:00Z",
                spent_ms: 5_000,
            },
            Case {
                what: "both down inside the active's loss: counted once",
                active: "dc-a",
                moves: vec![],
                dc_a: vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:20:00Z"))],
                dc_b: vec![period("2026-03-01T10:10:00Z", Some("2026-03-01T10:30:00Z"))],
                now: "2026-05-01T00:00:00Z",
                spent_ms: 1_200_000,
            },
            Case {
                what: "the standby lost while the active was lost: both-down counts, once",
                active: "dc-a",
                moves: vec![],
                dc_a: vec![period("2026-03-01T10:10:00Z", Some("2026-03-01T10:20:00Z"))],
                dc_b: vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:30:00Z"))],
                now: "2026-05-01T00:00:00Z",
                spent_ms: 600_000,
            },
            Case {
                what: "an active outage overlapping a both-down period counts once",
                active: "dc-b",
                // dc-a lost at 10:00, dc-b too until 10:05; dc-b healthy for the detection
                // period, the failover starts at 10:05:10 and completes half a second later.
                moves: vec![moved(
                    "dc-a",
                    "dc-b",
                    "2026-03-01T10:05:10Z",
                    Some("2026-03-01T10:05:10.5Z"),
                )],
                dc_a: vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:20:00Z"))],
                dc_b: vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:05:00Z"))],
                now: "2026-05-01T00:00:00Z",
                spent_ms: 310_500,
            },
            Case {
                what: "a failover inside a no-serving period counts once",
                active: "dc-a",
                moves: vec![moved(
                    "dc-b",
                    "dc-a",
                    "2026-03-01T10:12:00Z",
                    Some("2026-03-01T10:13:00Z"),
                )],
                dc_a: vec![period("2026-03-01T10:00:00Z", Some("2026-03-01T10:20:00Z"))],
                dc_b: vec![period("2026-03-01T10:10:00Z", Some("2026-03-01T10:30:00Z"))],
                now: "2026-05-01T00:00:00Z",
                // dc-b was active when it was lost at 10:10, and the roles left it at 10:13.
                spent_ms: 600_000,
            },
            Case {
                what: "an active outage across New Year counts from midnight",
                active: "dc-b",
                moves: vec![moved(
                    "dc-a",
                    "dc-b",
                    "2026-01-01T00:00:05Z",
                    Some("2026-01-01T00:00:05.5Z"),
                )],
                dc_a: vec![period("2025-12-31T23:59:55Z", Some("2026-01-01T01:00:00Z"))],
                dc_b: vec![],
                now: "2026-01-02T00:00:00Z",
                spent_ms: 5_500,
            },
            Case {
                what: "an outage of both across New Year counts from midnight",
                active: "dc-a",
                moves: vec![],
                dc_a: vec![period("2025-12-31T23:00:00Z", Some("2026-01-01T00:30:00Z"))],
                dc_b: vec![period("2025-12-31T23:30:00Z", Some("2026-01-01T01:00:00Z"))],
                now: "2026-01-02T00:00:00Z",
                spent_ms: 1_800_000,
            },
            Case {
                what: "part of a second is a second",
                active: "dc-b",
                moves: vec![moved(
                    "dc-a",
                    "dc-b",
                    "2026-03-01T10:00:00Z",
                    Some("2026-03-01T10:00:02.1Z"),
                )],
                dc_a: vec![],
                dc_b: vec![],
                now: "2026-05-01T00:00:00Z",
                spent_ms: 2_100,
            },
            Case {
                what: "a record ending in the future (clock skew) stops at now",
                active: "dc-b",
                moves: vec![moved(
                    "dc-a",
                    "dc-b",
                    "2026-03-01T10:00:00Z",
                    Some("2026-03-01T10:10:00Z"),
                )],
                dc_a: vec![period("2026-03-01T09:59:50Z", Some("2026-03-01T10:30:00Z"))],
                dc_b: vec![],
                now: "2026-03-01T10:00:30Z",
                spent_ms: 40_000,
            },
        ]);
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
            let moves = failovers
                .into_iter()
                .map(|period| Move {
                    from: "dc-a".to_owned(),
                    to: "dc-b".to_owned(),
                    period,
                })
                .collect();
            let b = budget(
                "99.977",
                "dc-b",
                moves,
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
