//! Authorization, Proxy-Authorization, WWW-Authenticate and Proxy-Authenticate values
//! (RFC 3261 §20.7, §20.27, §20.28, §20.44, §25.1; RFC 7616 auth-params).
//!
//! Parsing keeps every auth-param as name → value (quoted strings unescaped, tokens as
//! written) so that unknown schemes (RFC 4475 §3.3.7) and unknown parameters survive; the
//! digest computation itself lives in `sip-core::digest`. Printing re-quotes the parameters
//! whose grammar is a quoted-string, which differs between challenges and credentials
//! (`qop` is a quoted list in a challenge but a bare token in credentials).

use std::fmt;

use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::typed::HeaderError;

/// An authentication scheme. Only Digest is understood by calanque; any other scheme is kept
/// with its spelling so that a registrar can answer it with a fresh Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Digest` (matched case-insensitively).
    Digest,
    /// Any other scheme token, as received.
    Other(String),
}

impl AuthScheme {
    fn from_token(s: &str) -> AuthScheme {
        if s.eq_ignore_ascii_case("Digest") {
            AuthScheme::Digest
        } else {
            AuthScheme::Other(s.to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            AuthScheme::Digest => "Digest",
            AuthScheme::Other(s) => s,
        }
    }
}

impl fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// auth-params in received order. Names compare case-insensitively; values are unquoted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthParams(Vec<(String, String)>);

impl AuthParams {
    pub fn new() -> AuthParams {
        AuthParams(Vec::new())
    }

    /// The (unquoted) value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name`, replacing an existing value in place or appending.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Prints `name=value, …`, quoting per `quoted(name)` or when the value is not a token.
    fn write(&self, f: &mut fmt::Formatter<'_>, quoted: fn(&str) -> bool) -> fmt::Result {
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if quoted(&name.to_ascii_lowercase()) || !crate::grammar::is_token(value) {
                write!(f, "{name}=\"")?;
                for c in value.chars() {
                    if matches!(c, '"' | '\\') {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")?;
            } else {
                write!(f, "{name}={value}")?;
            }
        }
        Ok(())
    }
}

/// A WWW-Authenticate or Proxy-Authenticate value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: AuthScheme,
    pub params: AuthParams,
}

/// An Authorization or Proxy-Authorization value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub scheme: AuthScheme,
    pub params: AuthParams,
}

impl Challenge {
    /// Parses a header value holding one challenge (or several, comma-separated, as HTTP
    /// allows; SIP sends one per header line).
    pub fn parse_list(s: &str) -> Option<Vec<Challenge>> {
        Some(
            parse_auth_list(s)?
                .into_iter()
                .map(|(scheme, params)| Challenge { scheme, params })
                .collect(),
        )
    }

    /// Parses a header value that must hold exactly one challenge.
    pub fn parse(s: &str) -> Option<Challenge> {
        let mut list = Challenge::parse_list(s)?;
        if list.len() == 1 { list.pop() } else { None }
    }

    /// The `realm` parameter.
    pub fn realm(&self) -> Option<&str> {
        self.params.get("realm")
    }
}

impl Credentials {
    /// Parses a header value holding one set of credentials (or several, comma-separated).
    pub fn parse_list(s: &str) -> Option<Vec<Credentials>> {
        Some(
            parse_auth_list(s)?
                .into_iter()
                .map(|(scheme, params)| Credentials { scheme, params })
                .collect(),
        )
    }

    /// Parses a header value that must hold exactly one set of credentials.
    pub fn parse(s: &str) -> Option<Credentials> {
        let mut list = Credentials::parse_list(s)?;
        if list.len() == 1 { list.pop() } else { None }
    }

    /// The `realm` parameter.
    pub fn realm(&self) -> Option<&str> {
        self.params.get("realm")
    }

    /// The `username` parameter.
    pub fn username(&self) -> Option<&str> {
        self.params.get("username")
    }
}

/// `digest-cln` parameters that are quoted-strings in a challenge (RFC 3261 §25.1, RFC 7616 §3.3).
fn challenge_param_is_quoted(name: &str) -> bool {
    matches!(name, "realm" | "domain" | "nonce" | "opaque" | "qop")
}

/// `dig-resp` parameters that are quoted-strings in credentials (RFC 3261 §25.1, RFC 7616 §3.4).
fn credentials_param_is_quoted(name: &str) -> bool {
    matches!(
        name,
        "username" | "realm" | "nonce" | "uri" | "response" | "cnonce" | "opaque"
    )
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.scheme)?;
        self.params.write(f, challenge_param_is_quoted)
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.scheme)?;
        self.params.write(f, credentials_param_is_quoted)
    }
}

/// A cursor over an auth header value.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) -> usize {
        let rest = self.rest();
        let n = rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
        self.pos += n;
        n
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn token(&mut self) -> Option<&'a str> {
        let rest = self.rest();
        let n = rest
            .bytes()
            .take_while(|&b| crate::grammar::is_token_byte(b))
            .count();
        if n == 0 {
            return None;
        }
        self.pos += n;
        Some(&rest[..n])
    }

    /// A quoted-string body after the opening quote, unescaped.
    fn quoted(&mut self) -> Option<String> {
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Some(out);
                }
                '\\' => out.push(chars.next()?.1),
                c => out.push(c),
            }
        }
        None
    }

    /// An unquoted value. The grammar says token, but phones send base64 nonces and
    /// `/`-paths bare; anything up to a comma or whitespace is accepted.
    fn bare_value(&mut self) -> Option<&'a str> {
        let rest = self.rest();
        let n = rest.find([',', ' ', '\t', '"']).unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        self.pos += n;
        Some(&rest[..n])
    }
}

/// `scheme LWS auth-param *(COMMA auth-param)`, possibly several schemes in a row. A new
/// challenge starts after a comma when a token is followed by whitespace and another token
/// rather than by `=`.
fn parse_auth_list(s: &str) -> Option<Vec<(AuthScheme, AuthParams)>> {
    let mut c = Cursor { s, pos: 0 };
    let mut out = Vec::new();
    c.skip_ws();
    while c.peek().is_some() {
        let scheme = AuthScheme::from_token(c.token()?);
        if c.skip_ws() == 0 {
            return None;
        }
        let mut params = AuthParams::new();
        loop {
            let name = c.token()?;
            c.skip_ws();
            if c.peek() != Some(b'=') {
                return None;
            }
            c.pos += 1;
            c.skip_ws();
            let value = if c.peek() == Some(b'"') {
                c.pos += 1;
                c.quoted()?
            } else {
                c.bare_value()?.to_owned()
            };
            params.0.push((name.to_owned(), value));
            c.skip_ws();
            match c.peek() {
                None => break,
                Some(b',') => {
                    while c.peek() == Some(b',') {
                        c.pos += 1;
                        c.skip_ws();
                    }
                    // Look ahead: `name =` continues this scheme; `Scheme name=` starts another.
                    let save = c.pos;
                    c.token()?;
                    c.skip_ws();
                    let continues = c.peek() == Some(b'=');
                    c.pos = save;
                    if !continues {
                        break;
                    }
                }
                Some(_) => return None,
            }
        }
        out.push((scheme, params));
    }
    (!out.is_empty()).then_some(out)
}

impl Headers {
    /// Every WWW-Authenticate challenge, across all header lines, in order. A server may
    /// offer one challenge per algorithm (RFC 8760 §2.4).
    pub fn www_authenticate(&self) -> Result<Vec<Challenge>, HeaderError> {
        self.auth_list(HeaderName::WwwAuthenticate, Challenge::parse_list)
    }

    /// Every Proxy-Authenticate challenge, in order.
    pub fn proxy_authenticate(&self) -> Result<Vec<Challenge>, HeaderError> {
        self.auth_list(HeaderName::ProxyAuthenticate, Challenge::parse_list)
    }

    /// Every Authorization value (one per realm the client answers), in order.
    pub fn authorization(&self) -> Result<Vec<Credentials>, HeaderError> {
        self.auth_list(HeaderName::Authorization, Credentials::parse_list)
    }

    /// Every Proxy-Authorization value, in order.
    pub fn proxy_authorization(&self) -> Result<Vec<Credentials>, HeaderError> {
        self.auth_list(HeaderName::ProxyAuthorization, Credentials::parse_list)
    }

    fn auth_list<T>(
        &self,
        name: HeaderName,
        parse: fn(&str) -> Option<Vec<T>>,
    ) -> Result<Vec<T>, HeaderError> {
        let mut out = Vec::new();
        for line in self.get_all(&name) {
            out.extend(parse(line).ok_or_else(|| HeaderError::new(name.clone()))?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_digest_challenge_with_quoted_commas() {
        let c = Challenge::parse(
            r#"Digest realm="atlanta, \"south\" example.com", qop="auth,auth-int", nonce="84a4cc6f3082121f32b42a2187831a9e", algorithm=MD5, stale=FALSE"#,
        )
        .unwrap();
        assert_eq!(c.scheme, AuthScheme::Digest);
        assert_eq!(c.realm(), Some(r#"atlanta, "south" example.com"#));
        assert_eq!(c.params.get("QOP"), Some("auth,auth-int"));
        assert_eq!(c.params.get("algorithm"), Some("MD5"));
        assert_eq!(c.params.get("stale"), Some("FALSE"));
        assert_eq!(c.params.len(), 5);
    }

    #[test]
    fn challenge_prints_back_with_the_right_quoting() {
        let s = r#"Digest realm="r\"q", nonce="abc/+=", algorithm=SHA-256, qop="auth", stale=true"#;
        let c = Challenge::parse(s).unwrap();
        assert_eq!(c.to_string(), s);
        assert_eq!(Challenge::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn credentials_print_qop_nc_and_algorithm_bare() {
        let s = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="sip:bob@biloxi.com", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41", algorithm=MD5"#;
        let c = Credentials::parse(s).unwrap();
        assert_eq!(c.username(), Some("Mufasa"));
        assert_eq!(c.params.get("nc"), Some("00000001"));
        assert_eq!(c.params.get("uri"), Some("sip:bob@biloxi.com"));
        assert_eq!(c.to_string(), s);
    }

    #[test]
    fn unknown_scheme_parses_as_opaque_credentials_rfc4475_regaut01() {
        let c = Credentials::parse("NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(c.scheme, AuthScheme::Other("NoOneKnowsThisScheme".into()));
        assert_eq!(c.params.get("opaque-data"), Some("here"));
        assert_eq!(c.to_string(), "NoOneKnowsThisScheme opaque-data=here");
    }

    #[test]
    fn several_challenges_in_one_line_split_on_scheme() {
        let list = Challenge::parse_list(
            r#"Digest realm="a", nonce="1", algorithm=SHA-256, Digest realm="a", nonce="2""#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].params.get("nonce"), Some("2"));
        assert!(Challenge::parse(r#"Digest realm="a", Digest realm="b""#).is_none());
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "Digest",
            "Digest realm",
            r#"Digest realm="unterminated"#,
            "Digest realm=a b=c",
            "Digest =x",
            r#"Digest realm="a" nonce="b""#,
        ] {
            assert!(Credentials::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn header_accessors_collect_every_line() {
        let mut h = Headers::new();
        assert!(h.www_authenticate().unwrap().is_empty());
        h.push(
            HeaderName::WwwAuthenticate,
            r#"Digest realm="r", nonce="n1", algorithm=SHA-256"#,
        );
        h.push(
            HeaderName::WwwAuthenticate,
            r#"Digest realm="r", nonce="n2", algorithm=MD5"#,
        );
        h.push(
            HeaderName::ProxyAuthorization,
            r#"Digest username="u", realm="p""#,
        );
        let w = h.www_authenticate().unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].params.get("algorithm"), Some("MD5"));
        assert_eq!(h.proxy_authorization().unwrap()[0].realm(), Some("p"));
        assert!(h.authorization().unwrap().is_empty());
        assert!(h.proxy_authenticate().unwrap().is_empty());
        h.push(HeaderName::Authorization, "Digest");
        assert_eq!(
            h.authorization().unwrap_err().name,
            HeaderName::Authorization
        );
    }
}
