//! Spotting scanners by their User-Agent without parsing the message.
//!
//! Only the `User-Agent` header counts (RFC 3261 §20.41; it has no compact form): scanners
//! also put their name in From display names, but a legitimate caller can write anything
//! there, and dropping on it would let anyone choose what gets dropped. The scan stops at the
//! blank line that ends the headers, so a body never matches either.

/// Case-insensitive substrings of scanner User-Agents, stored lowercased.
#[derive(Debug, Clone)]
pub(crate) struct ScannerMatcher {
    patterns: Vec<Vec<u8>>,
}

impl ScannerMatcher {
    pub(crate) fn new(patterns: &[String]) -> ScannerMatcher {
        ScannerMatcher {
            patterns: patterns
                .iter()
                .map(|p| p.trim().to_ascii_lowercase().into_bytes())
                // An empty pattern would match every message.
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    /// True when a User-Agent header of `message` contains one of the patterns.
    pub(crate) fn matches(&self, message: &[u8]) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        user_agent_values(message).any(|value| {
            self.patterns
                .iter()
                .any(|pattern| contains_ignore_ascii_case(value, pattern))
        })
    }
}

const USER_AGENT: &[u8] = b"user-agent";

/// The values of every User-Agent header line and of its continuation lines (obsolete line
/// folding, which a scanner could use to hide its name on a second line).
fn user_agent_values(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut lines = message
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    // The start line is not a header.
    lines.next();
    let mut in_user_agent = false;
    lines
        .take_while(|line| !line.is_empty())
        .filter_map(move |line| {
            if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                return in_user_agent.then_some(line);
            }
            in_user_agent = false;
            let name = line.get(..USER_AGENT.len())?;
            if !name.eq_ignore_ascii_case(USER_AGENT) {
                return None;
            }
            let rest = trim_start(&line[USER_AGENT.len()..]);
            let value = rest.strip_prefix(b":")?;
            in_user_agent = true;
            Some(value)
        })
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// `pattern` must already be lowercase.
fn contains_ignore_ascii_case(haystack: &[u8], pattern: &[u8]) -> bool {
    haystack.len() >= pattern.len()
        && haystack
            .windows(pattern.len())
            .any(|window| window.eq_ignore_ascii_case(pattern))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> ScannerMatcher {
        ScannerMatcher::new(&["friendly-scanner".to_owned(), "sipvicious".to_owned()])
    }

    fn request(headers: &str) -> Vec<u8> {
        format!("OPTIONS sip:100@192.0.2.1 SIP/2.0\r\n{headers}\r\n").into_bytes()
    }

    #[test]
    fn the_user_agent_header_matches_in_any_case() {
        let m = matcher();
        assert!(m.matches(&request(
            "Via: SIP/2.0/UDP 192.0.2.9\r\nUser-Agent: friendly-scanner\r\n"
        )));
        assert!(m.matches(&request("user-agent:SIPVicious/0.3.4\r\n")));
        assert!(m.matches(&request("USER-AGENT \t: pro (SipVicious)\r\n")));
        assert!(m.matches(b"OPTIONS sip:x SIP/2.0\nUser-Agent: friendly-scanner\n\n"));
    }

    #[test]
    fn only_the_user_agent_header_counts() {
        let m = matcher();
        assert!(!m.matches(&request(
            "From: \"sipvicious\" <sip:100@192.0.2.1>;tag=1\r\nUser-Agent: Linphone/5.2\r\n"
        )));
        assert!(!m.matches(&request("X-User-Agent: friendly-scanner\r\n")));
        assert!(!m.matches(&request("User-Agents: friendly-scanner\r\n")));
        assert!(!m.matches(b"friendly-scanner sip:x SIP/2.0\r\n\r\n"));
        assert!(!m.matches(&request(
            "Content-Type: text/plain\r\n\r\nUser-Agent: friendly-scanner"
        )));
    }

    #[test]
    fn a_folded_user_agent_still_matches() {
        assert!(matcher().matches(&request(
            "User-Agent: innocent\r\n  friendly-scanner\r\nCSeq: 1 OPTIONS\r\n"
        )));
        assert!(!matcher().matches(&request("Subject: innocent\r\n  friendly-scanner\r\n")));
    }

    #[test]
    fn empty_patterns_match_nothing() {
        let m = ScannerMatcher::new(&[String::new(), "  ".to_owned()]);
        assert!(!m.matches(&request("User-Agent: anything\r\n")));
    }
}
