//! Choosing among the routes whose pattern matches a number, the digit manipulation a route
//! applies, and whether a number could still grow into a match (for 484 Address Incomplete).
//!
//! `RoutePattern` answers `matches` and `min_len`; specificity and prefix matching need the
//! elements, which are read back from its canonical text (its syntax is documented in
//! `directory::model::RoutePattern`, and its `Display` is canonical).

use std::cmp::Ordering;
use std::sync::Arc;

use directory::model::{Route, RoutePattern};

/// One element of a pattern, as read from its canonical text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    /// `0-9`, `*`, `#`, a leading `+`.
    Literal(char),
    /// A digit class (`X`, `N`, `Z`, `[…]`), bit `d` set when digit `d` matches.
    Digits(u16),
    /// The final `.`: one or more further characters.
    Rest,
}

fn elements(pattern: &RoutePattern) -> Vec<Element> {
    let text = pattern.to_string();
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let element = match chars[i] {
            'X' => Element::Digits(0b11_1111_1111),
            'N' => Element::Digits(0b11_1111_1100),
            'Z' => Element::Digits(0b11_1111_1110),
            '.' => Element::Rest,
            '[' => {
                let mut set = 0u16;
                let mut previous = None;
                i += 1;
                while i < chars.len() && chars[i] != ']' {
                    match (chars[i], previous) {
                        ('-', Some(low)) => {
                            let high = chars.get(i + 1).and_then(|c| c.to_digit(10)).unwrap_or(low);
                            for d in low..=high {
                                set |= 1 << d;
                            }
                            previous = None;
                            i += 1;
                        }
                        (c, _) => {
                            previous = c.to_digit(10);
                            if let Some(d) = previous {
                                set |= 1 << d;
                            }
                        }
                    }
                    i += 1;
                }
                Element::Digits(set)
            }
            c => Element::Literal(c),
        };
        out.push(element);
        i += 1;
    }
    out
}

/// How specific a pattern is, compared field by field: fixed length (not open-ended), minimum
/// length, literal characters, minus the digits its classes accept. Greater is more specific.
type Specificity = (bool, usize, usize, i64);

/// The [`Specificity`] of a pattern.
fn specificity(pattern: &RoutePattern) -> Specificity {
    let elements = elements(pattern);
    let literals = elements
        .iter()
        .filter(|e| matches!(e, Element::Literal(_)))
        .count();
    // Fewer matching digits in the classes means narrower.
    let breadth: i64 = elements
        .iter()
        .map(|e| match e {
            Element::Digits(set) => i64::from(set.count_ones()),
            _ => 0,
        })
        .sum();
    (
        !pattern.is_open_ended(),
        pattern.min_len(),
        literals,
        -breadth,
    )
}

/// The routes matching `number`, best first: lower priority value, then the most specific
/// pattern (the proto's tie-break), then the route id (so that the order is total and stable).
pub(crate) fn candidates(routes: &[Arc<Route>], number: &str) -> Vec<Arc<Route>> {
    let mut matching: Vec<(Arc<Route>, Specificity)> = routes
        .iter()
        .filter(|r| r.pattern.matches(number))
        .map(|r| (r.clone(), specificity(&r.pattern)))
        .collect();
    matching.sort_by(|(a, sa), (b, sb)| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| sb.cmp(sa))
            .then_with(|| a.id.cmp(&b.id))
    });
    matching.into_iter().map(|(r, _)| r).collect()
}

/// Whether `number` does not match `pattern` but some longer number starting with it does.
pub(crate) fn could_complete(pattern: &RoutePattern, number: &str) -> bool {
    let elements = elements(pattern);
    let mut count = 0;
    for (i, ch) in number.chars().enumerate() {
        count = i + 1;
        let ok = match elements.get(i) {
            None => return false,
            Some(Element::Rest) => return false,
            Some(Element::Literal(expected)) => ch == *expected,
            Some(Element::Digits(set)) => ch.to_digit(10).is_some_and(|d| set & (1 << d) != 0),
        };
        if !ok {
            return false;
        }
    }
    count < elements.len()
}

/// The number sent out after the route's digit manipulation: `strip_digits` removed from the
/// front, then `prepend` added.
pub(crate) fn manipulate(route: &Route, number: &str) -> String {
    let strip = usize::try_from(route.strip_digits).unwrap_or(usize::MAX);
    let rest: String = number.chars().skip(strip).collect();
    match &route.prepend {
        Some(prefix) => format!("{}{rest}", prefix.as_str()),
        None => rest,
    }
}

/// Whether some number of the range `first..=last` starts with `prefix` (the ends have one
/// length, so comparing the leading digits as text compares them as numbers).
pub(crate) fn within(prefix: &str, first: &str, last: &str) -> bool {
    let n = prefix.len().min(first.len());
    prefix[..n].cmp(&first[..n]) != Ordering::Less
        && prefix[..n].cmp(&last[..n]) != Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> RoutePattern {
        RoutePattern::parse(text).expect("pattern")
    }

    #[test]
    fn elements_read_back_every_form_of_the_syntax() {
        assert_eq!(
            elements(&p("+3[13-57]NXZ*#.")),
            vec![
                Element::Literal('+'),
                Element::Literal('3'),
                Element::Digits(0b1011_1010),
                Element::Digits(0b11_1111_1100),
                Element::Digits(0b11_1111_1111),
                Element::Digits(0b11_1111_1110),
                Element::Literal('*'),
                Element::Literal('#'),
                Element::Rest,
            ]
        );
    }

    #[test]
    fn fixed_longer_and_literal_patterns_are_more_specific() {
        assert!(specificity(&p("0XXXXXXXXX")) > specificity(&p("0.")));
        assert!(specificity(&p("01XXXXXXXX")) > specificity(&p("0[1-5]XXXXXXXX")));
        assert!(specificity(&p("0[12]XXXXXXXX")) > specificity(&p("0[1-5]XXXXXXXX")));
    }

    #[test]
    fn prefixes_of_a_pattern_could_complete_it() {
        let local = p("0[1-5]XXXXXXXX");
        assert!(could_complete(&local, "0"));
        assert!(could_complete(&local, "049100"));
        assert!(!could_complete(&local, "0491000000"));
        assert!(!could_complete(&local, "06"));
        assert!(!could_complete(&local, "04910000000"));
        assert!(could_complete(&p("00."), "00"));
        assert!(!could_complete(&p("00."), "001"));
    }

    #[test]
    fn within_compares_a_prefix_against_the_range_ends() {
        assert!(within("21", "21000", "21999"));
        assert!(within("219", "21000", "21999"));
        assert!(!within("22", "21000", "21999"));
        assert!(within("2", "21000", "21999"));
    }
}
