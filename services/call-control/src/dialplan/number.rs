//! Normalization of what a phone dialled into the form the dial plan matches.
//!
//! Accepted inputs: a bare Request-URI user part (`4512`, `*8`, `0491000000`), a `sip:`/`sips:`
//! URI (`sip:4512@pbx;user=phone`: the user part is kept), a `tel:` URI
//! (`tel:+33-4-91-00-00-00;phone-context=…`: parameters dropped), percent-escapes (`%23` is the
//! `#` a SIP URI must escape), and RFC 3966 visual separators (`-`, `.`, `(`, `)`) and spaces,
//! which are removed.
//!
//! The result is digits, `*` and `#`, with an optional leading `+`. The `+` (E.164) form is
//! kept as dialled and matched as such against route patterns (a route may start with `+`): the
//! directory has no country code or national prefix, so `+33491…` and `0491…` are not mapped
//! onto each other here; routes say what each form means.

/// Longest dialled string accepted (after normalization): E.164's 15 digits with room for
/// prefixes (`00`, an outside-line digit) and feature codes.
const MAX_LEN: usize = 32;

/// Why a dialled string cannot be a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotANumber {
    /// Nothing left once separators and URI decoration are removed.
    Empty,
    /// A character that is neither a digit, `*`, `#`, a leading `+` nor a separator (a SIP
    /// user name such as `alice`).
    Invalid,
    /// Longer than any number the plan knows.
    TooLong,
}

/// The dialled number in canonical form (see the module documentation).
pub(crate) fn normalize(dialed: &str) -> Result<String, NotANumber> {
    let user = user_part(dialed.trim());
    let decoded = percent_decode(user).ok_or(NotANumber::Invalid)?;
    let mut number = String::with_capacity(decoded.len());
    for ch in decoded.chars() {
        match ch {
            '0'..='9' | '*' | '#' => number.push(ch),
            '+' if number.is_empty() => number.push(ch),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(NotANumber::Invalid),
        }
    }
    if number.is_empty() || number == "+" {
        return Err(NotANumber::Empty);
    }
    if number.len() > MAX_LEN {
        return Err(NotANumber::TooLong);
    }
    Ok(number)
}

/// The user part of a `sip:`/`sips:` URI, the number of a `tel:` URI, or the text itself.
fn user_part(text: &str) -> &str {
    let lower_starts = |prefix: &str| {
        text.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    let rest = if lower_starts("sips:") {
        &text[5..]
    } else if lower_starts("sip:") || lower_starts("tel:") {
        &text[4..]
    } else {
        text
    };
    // `@host` ends a SIP user part; `;params` end a tel number (and user-part parameters).
    let end = rest.find(['@', ';', '?']).unwrap_or(rest.len());
    &rest[..end]
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a non-ASCII result.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out.is_ascii()
        .then(|| String::from_utf8(out).ok())
        .flatten()
}

/// Whether the number is made of decimal digits only (the form of extension, group and
/// emergency numbers).
pub(crate) fn is_digits(number: &str) -> bool {
    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_lose_their_visual_separators() {
        assert_eq!(normalize("4512"), Ok("4512".into()));
        assert_eq!(normalize(" 04 91-00.00(00) "), Ok("0491000000".into()));
        assert_eq!(normalize("*8"), Ok("*8".into()));
        assert_eq!(normalize("+33 4 91 00 00 00"), Ok("+33491000000".into()));
    }

    #[test]
    fn uris_give_their_user_part_or_number() {
        assert_eq!(normalize("sip:4512@pbx.example"), Ok("4512".into()));
        assert_eq!(
            normalize("SIPS:+33491000000@pbx;user=phone"),
            Ok("+33491000000".into())
        );
        assert_eq!(
            normalize("tel:+33-4-91-00-00-00;phone-context=example.com"),
            Ok("+33491000000".into())
        );
        assert_eq!(normalize("tel:112"), Ok("112".into()));
        assert_eq!(normalize("4512;user=phone"), Ok("4512".into()));
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(normalize("*21%23"), Ok("*21#".into()));
        assert_eq!(normalize("%2B33491000000"), Ok("+33491000000".into()));
        assert_eq!(normalize("12%2"), Err(NotANumber::Invalid));
        assert_eq!(normalize("%C3%A9"), Err(NotANumber::Invalid));
    }

    #[test]
    fn names_plus_signs_inside_and_empty_strings_are_not_numbers() {
        assert_eq!(normalize("alice"), Err(NotANumber::Invalid));
        assert_eq!(normalize("33+1"), Err(NotANumber::Invalid));
        assert_eq!(normalize(""), Err(NotANumber::Empty));
        assert_eq!(normalize("sip:@pbx"), Err(NotANumber::Empty));
        assert_eq!(normalize("+"), Err(NotANumber::Empty));
        assert_eq!(normalize(&"1".repeat(33)), Err(NotANumber::TooLong));
    }
}
