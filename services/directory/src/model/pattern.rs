//! Route dial patterns, in the style common to PBX dial plans (Asterisk, FreeSWITCH, Cisco):
//!
//! | element | matches |
//! |---|---|
//! | `0`–`9`, `*`, `#` | that character |
//! | `+` | a literal `+`, only as the first element (E.164 numbers) |
//! | `X` | any digit `0-9` |
//! | `N` | any digit `2-9` |
//! | `Z` | any digit `1-9` |
//! | `[1-5]`, `[135]`, `[13-57]` | one digit from the set (digits and `a-b` ranges) |
//! | `.` | one or more further characters; only as the last element |
//!
//! `X`, `N`, `Z` may be written in lower case (stored upper case). Without a final `.`, a
//! pattern matches numbers of exactly its length: `0[1-5]XXXXXXXX` matches French geographic
//! numbers dialled with a leading 0, `00.` any international number, `.` every number.
//! At most 32 elements.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a dial pattern is not valid (positions count characters from 0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is empty.
    #[error("the pattern is empty")]
    Empty,
    /// A character that is not part of the syntax.
    #[error(
        "{ch:?} at position {position} is not a digit, X, N, Z, [set], '.', '*', '#' or a leading '+'"
    )]
    InvalidCharacter {
        /// Where.
        position: usize,
        /// What.
        ch: char,
    },
    /// A `[` without its `]`.
    #[error("the set opened at position {position} is not closed")]
    UnclosedSet {
        /// Where the `[` is.
        position: usize,
    },
    /// A set that matches no digit (`[]`).
    #[error("the set at position {position} is empty")]
    EmptySet {
        /// Where the `[` is.
        position: usize,
    },
    /// A set holding something other than digits and `a-b` ranges, or a range that runs backwards.
    #[error("the set at position {position} must hold digits and ascending a-b ranges")]
    InvalidSet {
        /// Where the `[` is.
        position: usize,
    },
    /// A `.` that is not the last element.
    #[error("'.' at position {position} must be the last element")]
    DotNotLast {
        /// Where the `.` is.
        position: usize,
    },
    /// More than 32 elements.
    #[error("more than 32 elements")]
    TooLong,
}

/// One element of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Element {
    /// A literal character (`0-9`, `*`, `#`, `+`).
    Literal(char),
    /// A set of digits, bit `d` set when digit `d` matches.
    Digits(u16),
    /// `.`: one or more further characters.
    Rest,
}

const X: u16 = 0b11_1111_1111;
const N: u16 = 0b11_1111_1100;
const Z: u16 = 0b11_1111_1110;
const MAX_ELEMENTS: usize = 32;

/// A validated dial pattern (see the module documentation for the syntax).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoutePattern {
    elements: Vec<Element>,
}

impl RoutePattern {
    /// Parses a pattern.
    pub fn parse(text: &str) -> Result<RoutePattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let chars: Vec<char> = text.chars().collect();
        let mut elements = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            let element = match ch {
                '0'..='9' | '*' | '#' => Element::Literal(ch),
                '+' if i == 0 => Element::Literal('+'),
                'X' | 'x' => Element::Digits(X),
                'N' | 'n' => Element::Digits(N),
                'Z' | 'z' => Element::Digits(Z),
                '.' if i + 1 == chars.len() => Element::Rest,
                '.' => return Err(PatternError::DotNotLast { position: i }),
                '[' => {
                    let close = chars[i..]
                        .iter()
                        .position(|c| *c == ']')
                        .ok_or(PatternError::UnclosedSet { position: i })?;
                    let set = parse_set(&chars[i + 1..i + close], i)?;
                    i += close;
                    Element::Digits(set)
                }
                _ => return Err(PatternError::InvalidCharacter { position: i, ch }),
            };
            elements.push(element);
            if elements.len() > MAX_ELEMENTS {
                return Err(PatternError::TooLong);
            }
            i += 1;
        }
        Ok(RoutePattern { elements })
    }

    /// Whether the dialled `number` matches the whole pattern.
    pub fn matches(&self, number: &str) -> bool {
        let mut chars = number.chars();
        for element in &self.elements {
            match element {
                Element::Rest => return chars.next().is_some(),
                Element::Literal(expected) => {
                    if chars.next() != Some(*expected) {
                        return false;
                    }
                }
                Element::Digits(set) => match chars.next().and_then(|c| c.to_digit(10)) {
                    Some(d) if set & (1 << d) != 0 => {}
                    _ => return false,
                },
            }
        }
        chars.next().is_none()
    }

    /// Shortest number the pattern matches.
    pub fn min_len(&self) -> usize {
        self.elements.len()
    }

    /// Whether the pattern ends with `.` (matches numbers of any greater length).
    pub fn is_open_ended(&self) -> bool {
        self.elements.last() == Some(&Element::Rest)
    }
}

/// Parses the inside of `[...]` (which starts at `position`) into a digit bit set.
fn parse_set(inside: &[char], position: usize) -> Result<u16, PatternError> {
    if inside.is_empty() {
        return Err(PatternError::EmptySet { position });
    }
    let invalid = PatternError::InvalidSet { position };
    let digit = |c: char| c.to_digit(10).ok_or(invalid.clone());
    let mut set = 0u16;
    let mut i = 0;
    while i < inside.len() {
        let low = digit(inside[i])?;
        if inside.get(i + 1) == Some(&'-') {
            let high = digit(*inside.get(i + 2).ok_or(invalid.clone())?)?;
            if high < low {
                return Err(invalid);
            }
            for d in low..=high {
                set |= 1 << d;
            }
            i += 3;
        } else {
            set |= 1 << low;
            i += 1;
        }
    }
    Ok(set)
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for element in &self.elements {
            match *element {
                Element::Literal(c) => write!(f, "{c}")?,
                Element::Rest => f.write_str(".")?,
                Element::Digits(X) => f.write_str("X")?,
                Element::Digits(N) => f.write_str("N")?,
                Element::Digits(Z) => f.write_str("Z")?,
                Element::Digits(set) => {
                    // Canonical form: ascending runs, `a-b` for three or more digits.
                    f.write_str("[")?;
                    let mut d = 0;
                    while d < 10 {
                        if set & (1 << d) == 0 {
                            d += 1;
                            continue;
                        }
                        let start = d;
                        while d + 1 < 10 && set & (1 << (d + 1)) != 0 {
                            d += 1;
                        }
                        match d - start {
                            0 => write!(f, "{start}")?,
                            1 => write!(f, "{start}{d}")?,
                            _ => write!(f, "{start}-{d}")?,
                        }
                        d += 1;
                    }
                    f.write_str("]")?;
                }
            }
        }
        Ok(())
    }
}

impl TryFrom<String> for RoutePattern {
    type Error = PatternError;
    fn try_from(text: String) -> Result<RoutePattern, PatternError> {
        RoutePattern::parse(&text)
    }
}

impl From<RoutePattern> for String {
    fn from(pattern: RoutePattern) -> String {
        pattern.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> RoutePattern {
        RoutePattern::parse(text).unwrap()
    }

    #[test]
    fn fixed_length_patterns_match_numbers_of_their_length_only() {
        let french = p("0[1-5]XXXXXXXX");
        assert!(french.matches("0140000000"));
        assert!(french.matches("0599999999"));
        assert!(!french.matches("0640000000"));
        assert!(!french.matches("014000000"));
        assert!(!french.matches("01400000000"));
        assert_eq!(french.min_len(), 10);
        assert!(!french.is_open_ended());
    }

    #[test]
    fn x_n_z_are_digit_classes() {
        assert!(p("N").matches("2") && !p("N").matches("1") && !p("N").matches("0"));
        assert!(p("Z").matches("1") && !p("Z").matches("0"));
        assert!(p("X").matches("0") && p("X").matches("9") && !p("X").matches("*"));
        assert_eq!(p("nxz").to_string(), "NXZ");
    }

    #[test]
    fn a_final_dot_matches_one_or_more_characters() {
        let intl = p("00.");
        assert!(intl.matches("001555") && intl.matches("001"));
        assert!(!intl.matches("00"));
        assert!(intl.is_open_ended());
        assert!(p(".").matches("4512") && !p(".").matches(""));
    }

    #[test]
    fn literals_include_star_hash_and_a_leading_plus() {
        assert!(p("*8").matches("*8"));
        assert!(p("#X").matches("#1"));
        assert!(p("+33.").matches("+33140000000"));
        assert_eq!(
            RoutePattern::parse("3+3"),
            Err(PatternError::InvalidCharacter {
                position: 1,
                ch: '+'
            })
        );
    }

    #[test]
    fn sets_hold_digits_and_ranges() {
        let s = p("[13-57]");
        for d in ["1", "3", "4", "5", "7"] {
            assert!(s.matches(d), "{d}");
        }
        for d in ["0", "2", "6", "8", "9"] {
            assert!(!s.matches(d), "{d}");
        }
        assert_eq!(s.to_string(), "[13-57]");
        assert_eq!(p("[0-9]").to_string(), "X");
    }

    #[test]
    fn malformed_patterns_are_rejected_with_their_position() {
        assert_eq!(RoutePattern::parse(""), Err(PatternError::Empty));
        assert_eq!(
            RoutePattern::parse("0.1"),
            Err(PatternError::DotNotLast { position: 1 })
        );
        assert_eq!(
            RoutePattern::parse("0[12"),
            Err(PatternError::UnclosedSet { position: 1 })
        );
        assert_eq!(
            RoutePattern::parse("0[]"),
            Err(PatternError::EmptySet { position: 1 })
        );
        assert_eq!(
            RoutePattern::parse("[5-1]"),
            Err(PatternError::InvalidSet { position: 0 })
        );
        assert_eq!(
            RoutePattern::parse("[1-]"),
            Err(PatternError::InvalidSet { position: 0 })
        );
        assert_eq!(
            RoutePattern::parse("[a]"),
            Err(PatternError::InvalidSet { position: 0 })
        );
        assert_eq!(
            RoutePattern::parse("0Y"),
            Err(PatternError::InvalidCharacter {
                position: 1,
                ch: 'Y'
            })
        );
        assert_eq!(
            RoutePattern::parse(&"X".repeat(33)),
            Err(PatternError::TooLong)
        );
        assert!(RoutePattern::parse(&"X".repeat(32)).is_ok());
    }

    #[test]
    fn the_canonical_text_parses_back_to_the_same_pattern() {
        for text in ["0[1-5]XXXXXXXX", "00.", "[13-57]N", "+33Z.", "*8", "[09]"] {
            let pattern = p(text);
            assert_eq!(p(&pattern.to_string()), pattern, "{text}");
        }
    }
}
