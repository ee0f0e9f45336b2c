//! The evidence behind ADR 0002 (sip-msg's own grammar instead of rsip 0.4), rerunnable:
//! `cargo test -p sip-msg --test rsip_comparison -- --nocapture` prints, per RFC 4475
//! message, what RFC 4475 asks, what sip-msg does and whether rsip's parser agrees.
//!
//! It asserts that sip-msg meets the RFC on every message, and records rsip's misses: a
//! message the RFC calls valid that rsip rejects, or one the RFC rejects (400, 505, drop)
//! that rsip accepts. Where the RFC allows both, neither outcome is a miss.

mod common;

use common::*;

/// rsip's outcome on a whole message: does its parser accept it?
fn rsip_accepts(bytes: &[u8]) -> bool {
    rsip::SipMessage::try_from(bytes).is_ok()
}

/// Whether an outcome ("accepts" or not) is a miss against the RFC's expectation.
fn is_miss(expect: Expect, accepts: bool) -> bool {
    match expect {
        Parse => !accepts,
        Reject400(_) | Reject400Or501(_) | Reject505 | Drop => accepts,
        ParseOr400(_) => false,
    }
}

fn expectation(expect: Expect) -> &'static str {
    match expect {
        Parse => "parse",
        Reject400(_) => "400",
        Reject400Or501(_) => "400 or 501",
        Reject505 => "505",
        ParseOr400(_) => "parse or 400",
        Drop => "drop",
    }
}

#[test]
fn sip_msg_meets_rfc_4475_and_rsip_misses_are_recorded() {
    let mut ours_failures = Vec::new();
    let mut rsip_rejects_valid = Vec::new();
    let mut rsip_accepts_invalid = Vec::new();
    println!(
        "{:9} {:15} {:13} {:58} rsip 0.4",
        "section", "file", "RFC 4475", "sip-msg"
    );
    for &(section, _, file, expect) in TABLE {
        let bytes = load(file);
        let ours = check(expect, &bytes);
        let accepts = rsip_accepts(&bytes);
        let rsip = match (accepts, is_miss(expect, accepts)) {
            (true, false) => "accepts",
            (false, false) => "rejects",
            (true, true) => "accepts  <- MISS",
            (false, true) => "rejects  <- MISS",
        };
        let shown = match &ours {
            Ok(o) => o.clone(),
            Err(e) => format!("WRONG: {e}"),
        };
        println!(
            "{section:9} {file:15} {:13} {shown:58} {rsip}",
            expectation(expect)
        );
        if let Err(e) = ours {
            ours_failures.push(format!("{section} {file}: {e}"));
        }
        if is_miss(expect, accepts) {
            let name = file.trim_end_matches(".dat");
            if accepts {
                rsip_accepts_invalid.push(name)
            } else {
                rsip_rejects_valid.push(name)
            }
        }
    }

    // §3.1.2.11's Request-URI is invalid only as a Request-URI: as a URI (in a Contact or a
    // Refer-To) it is valid RFC 3261 grammar, escaped headers and all.
    let uri = "sip:user@example.com?Route=%3Csip:example.com%3E";
    let ours_uri = sip_msg::Uri::parse(uri);
    let rsip_uri = rsip::Uri::try_from(uri);
    println!(
        "{:9} {:15} {:13} {:58} {}",
        "3.1.2.11",
        "escruri-as-uri",
        "parse",
        if ours_uri.is_ok() {
            "parsed"
        } else {
            "WRONG: rejected"
        },
        if rsip_uri.is_ok() {
            "accepts"
        } else {
            "rejects  <- MISS"
        }
    );
    if ours_uri.is_err() {
        ours_failures.push(format!("escruri-as-uri: {ours_uri:?}"));
    }
    if rsip_uri.is_err() {
        rsip_rejects_valid.push("escruri-as-uri");
    }

    println!(
        "\nrsip 0.4 rejects valid messages: {}",
        rsip_rejects_valid.join(", ")
    );
    println!(
        "rsip 0.4 accepts invalid messages: {}",
        rsip_accepts_invalid.join(", ")
    );
    assert!(
        ours_failures.is_empty(),
        "sip-msg misses RFC 4475:\n{}",
        ours_failures.join("\n")
    );
}
