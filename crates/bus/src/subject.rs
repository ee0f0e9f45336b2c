//! Subject rules shared by both buses: validation (NATS' rules, applied before anything reaches
//! the server so both buses reject the same subjects) and wildcard matching (used by the
//! in-process bus; NATS matches on the server).
//!
//! A subject is non-empty tokens separated by `.`, with no whitespace or control characters.
//! In a subscription, a token may be `*` (exactly one token) or, as the last token, `>` (one
//! or more tokens). Wildcard characters inside a token (`a*`, `b>`) are rejected rather than
//! treated as literals, so that a typo cannot silently subscribe to nothing. Concrete subjects
//! (publish, request, reply) contain no wildcard at all.

use crate::BusError;

/// Checks a subject to publish or request on: tokens only, no wildcards.
pub fn validate_publish(subject: &str) -> Result<(), BusError> {
    let pattern = parse(subject)?;
    if pattern
        .tokens
        .iter()
        .all(|t| matches!(t, Token::Literal(_)))
    {
        Ok(())
    } else {
        Err(BusError::InvalidSubject(subject.to_owned()))
    }
}

/// Checks a subject to subscribe to (wildcards allowed).
pub fn validate_subscribe(subject: &str) -> Result<(), BusError> {
    parse(subject).map(|_| ())
}

/// Checks a queue group name: non-empty, printable, no whitespace (NATS' rule).
pub fn validate_queue_group(group: &str) -> Result<(), BusError> {
    if group.is_empty() || group.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(BusError::InvalidQueueGroup(group.to_owned()))
    } else {
        Ok(())
    }
}

/// True when `subject` (concrete) matches `pattern` (possibly with wildcards). Either being
/// invalid means no match.
pub fn matches(pattern: &str, subject: &str) -> bool {
    match (Pattern::parse(pattern), validate_publish(subject)) {
        (Ok(p), Ok(())) => p.matches(&subject.split('.').collect::<Vec<_>>()),
        _ => false,
    }
}

/// A validated subscription subject, tokenised once for repeated matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more tokens (last position only).
    Rest,
}

impl Pattern {
    /// Parses and validates a subscription subject.
    pub fn parse(subject: &str) -> Result<Pattern, BusError> {
        parse(subject)
    }

    /// True when the concrete subject, split on `.`, matches.
    pub fn matches(&self, subject_tokens: &[&str]) -> bool {
        let mut rest = subject_tokens;
        for token in &self.tokens {
            match token {
                Token::Rest => return !rest.is_empty(),
                Token::One => match rest.split_first() {
                    Some((_, tail)) => rest = tail,
                    None => return false,
                },
                Token::Literal(lit) => match rest.split_first() {
                    Some((head, tail)) if head == lit => rest = tail,
                    _ => return false,
                },
            }
        }
        rest.is_empty()
    }
}

fn parse(subject: &str) -> Result<Pattern, BusError> {
    let invalid = || BusError::InvalidSubject(subject.to_owned());
    if subject.is_empty() {
        return Err(invalid());
    }
    let parts: Vec<&str> = subject.split('.').collect();
    let last = parts.len() - 1;
    let mut tokens = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || part.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let token = match *part {
            "*" => Token::One,
            ">" if i == last => Token::Rest,
            ">" => return Err(invalid()),
            p if p.contains(['*', '>']) => return Err(invalid()),
            p => Token::Literal(p.to_owned()),
        };
        tokens.push(token);
    }
    Ok(Pattern { tokens })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concrete_subjects_are_valid_for_publish_and_subscribe() {
        for s in [
            "a",
            "calanque.v1.directory.get",
            "_INBOX.abc123",
            "a-b_c.$SYS.x",
        ] {
            assert!(validate_publish(s).is_ok(), "{s}");
            assert!(validate_subscribe(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn malformed_subjects_are_rejected_everywhere() {
        for s in [
            "", ".", "a.", ".a", "a..b", "a b", "a\tb", "a\r\nb", "a.\u{0}", "a.b c.d",
        ] {
            assert!(
                matches!(validate_publish(s), Err(BusError::InvalidSubject(_))),
                "{s:?}"
            );
            assert!(
                matches!(validate_subscribe(s), Err(BusError::InvalidSubject(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn wildcards_only_as_whole_tokens_and_gt_only_last() {
        for s in ["*", ">", "a.*", "a.>", "*.b.>", "*.*"] {
            assert!(validate_subscribe(s).is_ok(), "{s}");
            assert!(validate_publish(s).is_err(), "publishing to {s} must fail");
        }
        for s in ["a.>.b", ">.a", "a*", "a.b*", "a.>b", "a.*b.c", ">>"] {
            assert!(validate_subscribe(s).is_err(), "{s}");
            assert!(validate_publish(s).is_err(), "{s}");
        }
    }

    #[test]
    fn queue_group_names() {
        assert!(validate_queue_group("directory").is_ok());
        assert!(validate_queue_group("sip-edge.v1").is_ok());
        for g in ["", "a b", "a\tb", "a\n"] {
            assert!(
                matches!(validate_queue_group(g), Err(BusError::InvalidQueueGroup(_))),
                "{g:?}"
            );
        }
    }

    #[test]
    fn literal_matching_is_exact() {
        assert!(matches("a.b.c", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b.d"));
        assert!(!matches("A.b", "a.b"));
    }

    #[test]
    fn star_matches_exactly_one_token() {
        assert!(matches("a.*.c", "a.b.c"));
        assert!(matches("*", "x"));
        assert!(!matches("*", "x.y"));
        assert!(!matches("a.*", "a"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(matches("*.*", "a.b"));
    }

    #[test]
    fn gt_matches_one_or_more_trailing_tokens() {
        assert!(matches("a.>", "a.b"));
        assert!(matches("a.>", "a.b.c.d"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "a"));
        assert!(matches(">", "a.b.c"));
        assert!(matches("*.b.>", "a.b.c"));
        assert!(!matches("*.b.>", "a.c.d"));
    }

    #[test]
    fn invalid_inputs_never_match() {
        assert!(!matches("a..b", "a..b"));
        assert!(!matches("a.>", "a.*"));
        assert!(!matches("", ""));
    }
}
