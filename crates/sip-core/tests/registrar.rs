//! The registrar's binding logic (RFC 3261 §10.3 steps 5–8) on hand-written REGISTERs: no
//! store, no clock, the bindings passed in and the plan checked.

use std::net::SocketAddr;

use sip_core::registrar::{
    Binding, RegisterPlan, RegistrarPolicy, canonical_aor, contact_uri_matches, ok_response,
    process_register,
};
use sip_msg::{HeaderName, Request, Response, SipMessage, StatusCode, Uri, parse_datagram};

const NOW: u64 = 1_800_000_000;
const AOR: &str = "sip:alice@example.com";

fn source() -> SocketAddr {
    "192.0.2.10:40000".parse().expect("a socket address")
}

/// A REGISTER for alice with the given Call-ID, CSeq and extra header lines.
fn register(call_id: &str, cseq: u32, extra: &[&str]) -> Request {
    let mut text = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{call_id}{cseq}\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:alice@EXAMPLE.com:5060;transport=udp>\r\n\
         From: <sip:alice@example.com>;tag=f1\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n"
    );
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    match parse_datagram(text.as_bytes()).expect("a well-formed REGISTER") {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("not a request"),
    }
}

fn run(req: &Request, existing: &[Binding]) -> Result<RegisterPlan, Box<Response>> {
    process_register(req, existing, NOW, source(), &RegistrarPolicy::default())
}

fn plan(req: &Request, existing: &[Binding]) -> RegisterPlan {
    run(req, existing).unwrap_or_else(|r| panic!("refused: {} {}", r.status, r.reason))
}

fn refused(req: &Request, existing: &[Binding]) -> Box<Response> {
    match run(req, existing) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(r) => r,
    }
}

fn contacts_of(bindings: &[Binding]) -> Vec<String> {
    bindings.iter().map(|b| b.contact.to_string()).collect()
}

/// The store after applying a plan to `existing`, as the edge will do.
fn apply(existing: &[Binding], plan: &RegisterPlan) -> Vec<Binding> {
    let mut out: Vec<Binding> = existing
        .iter()
        .filter(|b| {
            !plan
                .removals
                .iter()
                .any(|(aor, c)| *aor == b.aor && *c == b.contact.to_string())
                && !plan
                    .upserts
                    .iter()
                    .any(|u| u.aor == b.aor && contact_uri_matches(&u.contact, &b.contact))
        })
        .cloned()
        .collect();
    out.extend(plan.upserts.iter().cloned());
    out
}

fn contact_lines(resp: &Response) -> Vec<String> {
    resp.headers
        .get_all(&HeaderName::Contact)
        .map(str::to_owned)
        .collect()
}

#[test]
fn first_registration_creates_a_binding() {
    let req = register(
        "c1",
        1,
        &[
            "Contact: <sip:alice@192.0.2.10:5060>;q=0.7",
            "Expires: 1800",
        ],
    );
    let p = plan(&req, &[]);
    assert_eq!(p.aor, AOR);
    assert!(p.removals.is_empty());
    assert_eq!(p.upserts.len(), 1);
    let b = &p.upserts[0];
    assert_eq!(b.aor, AOR);
    assert_eq!(b.contact.to_string(), "sip:alice@192.0.2.10:5060");
    assert_eq!(b.call_id, "c1");
    assert_eq!(b.cseq, 1);
    assert_eq!(b.expires_at, NOW + 1800);
    assert_eq!(b.q, Some(700));
    assert_eq!(b.received, source());
    assert_eq!(p.bindings_after, p.upserts);
}

#[test]
fn canonical_aor_drops_params_and_port_and_unescapes() {
    let aor = |s: &str| canonical_aor(&Uri::parse(s).unwrap());
    assert_eq!(
        aor("sips:al%69ce@Example.COM:5061;user=phone").as_deref(),
        Some(AOR)
    );
    assert_eq!(
        aor("sip:Alice@example.com").as_deref(),
        Some("sip:Alice@example.com")
    );
    assert_eq!(aor("tel:+331234"), None);
}

#[test]
fn tel_to_uri_is_not_an_aor() {
    let text = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKt\r\n\
                To: <tel:+33123456>\r\nFrom: <tel:+33123456>;tag=a\r\nCall-ID: t\r\n\
                CSeq: 1 REGISTER\r\nContact: <sip:a@h>\r\nContent-Length: 0\r\n\r\n";
    let SipMessage::Request(req) = parse_datagram(text.as_bytes()).unwrap() else {
        panic!("not a request")
    };
    assert_eq!(refused(&req, &[]).status, StatusCode::NOT_FOUND);
}

#[test]
fn refresh_with_higher_cseq_updates_the_binding() {
    let first = plan(
        &register(
            "c1",
            1,
            &["Contact: <sip:alice@192.0.2.10>", "Expires: 600"],
        ),
        &[],
    );
    let later = NOW + 300;
    let req = register(
        "c1",
        2,
        &["Contact: <SIP:alice@192.0.2.10>", "Expires: 600"],
    );
    let p = process_register(
        &req,
        &first.bindings_after,
        later,
        source(),
        &RegistrarPolicy::default(),
    )
    .unwrap();
    assert_eq!(p.upserts.len(), 1);
    assert_eq!(p.upserts[0].cseq, 2);
    assert_eq!(p.upserts[0].expires_at, later + 600);
    assert!(p.removals.is_empty());
    assert_eq!(p.bindings_after.len(), 1, "updated, not duplicated");
}

#[test]
fn same_call_id_with_equal_or_lower_cseq_is_refused_and_changes_nothing() {
    let stored = plan(
        &register("c1", 5, &["Contact: <sip:alice@192.0.2.10>"]),
        &[],
    )
    .bindings_after;
    let request = |cseq| {
        register(
            "c1",
            cseq,
            &[
                "Contact: <sip:new@192.0.2.99>",
                "Contact: <sip:alice@192.0.2.10>;expires=0",
            ],
        )
    };
    // Refused as a whole: no plan, so not even the new contact listed first is added.
    for cseq in [5, 4] {
        let resp = refused(&request(cseq), &stored);
        assert_eq!(
            resp.status,
            StatusCode::SERVER_INTERNAL_ERROR,
            "CSeq {cseq}"
        );
        assert!(resp.headers.get(&HeaderName::To).unwrap().contains("tag="));
    }
    // The same request with a higher CSeq goes through.
    let p = plan(&request(6), &stored);
    assert_eq!(contacts_of(&p.upserts), ["sip:new@192.0.2.99"]);
    assert_eq!(
        p.removals,
        [(AOR.to_owned(), "sip:alice@192.0.2.10".to_owned())]
    );
}

#[test]
fn different_call_id_is_accepted_whatever_its_cseq() {
    let stored = plan(
        &register("c1", 100, &["Contact: <sip:alice@192.0.2.10>"]),
        &[],
    )
    .bindings_after;
    // The phone rebooted: new Call-ID, CSeq starting again at 1.
    let p = plan(
        &register("reboot", 1, &["Contact: <sip:alice@192.0.2.10>"]),
        &stored,
    );
    assert_eq!(p.upserts.len(), 1);
    assert_eq!(p.upserts[0].call_id, "reboot");
    assert_eq!(p.upserts[0].cseq, 1);
    assert_eq!(p.bindings_after.len(), 1);
}

#[test]
fn several_contacts_per_aor() {
    let desk = plan(
        &register("desk", 1, &["Contact: <sip:alice@192.0.2.10>"]),
        &[],
    );
    let store = apply(&[], &desk);
    let soft = plan(
        &register(
            "soft",
            1,
            &["Contact: <sip:alice@198.51.100.7:5062;transport=tcp>, <sip:alice@203.0.113.5>"],
        ),
        &store,
    );
    assert_eq!(soft.upserts.len(), 2);
    assert!(soft.removals.is_empty());
    assert_eq!(
        contacts_of(&soft.bindings_after),
        [
            "sip:alice@192.0.2.10",
            "sip:alice@198.51.100.7:5062;transport=tcp",
            "sip:alice@203.0.113.5"
        ]
    );
    // A different transport is a different contact.
    let udp = plan(
        &register(
            "soft",
            2,
            &["Contact: <sip:alice@198.51.100.7:5062;transport=udp>"],
        ),
        &apply(&store, &soft),
    );
    assert_eq!(udp.bindings_after.len(), 4);
}

#[test]
fn bindings_of_other_aors_and_expired_ones_are_ignored() {
    let mut bob = plan(
        &register("c1", 1, &["Contact: <sip:alice@192.0.2.10>"]),
        &[],
    )
    .bindings_after;
    bob[0].aor = "sip:bob@example.com".to_owned();
    let mut old = plan(
        &register("c9", 1, &["Contact: <sip:alice@192.0.2.50>"]),
        &[],
    )
    .bindings_after;
    old[0].expires_at = NOW;
    let existing: Vec<Binding> = bob.into_iter().chain(old).collect();
    let p = plan(&register("c1", 1, &[]), &existing);
    assert!(p.bindings_after.is_empty());
}

#[test]
fn contact_expires_param_overrides_the_expires_header() {
    let p = plan(
        &register(
            "c1",
            1,
            &[
                "Contact: <sip:alice@192.0.2.10>;expires=120, <sip:alice@192.0.2.11>",
                "Expires: 900",
            ],
        ),
        &[],
    );
    assert_eq!(p.upserts[0].expires_at, NOW + 120);
    assert_eq!(p.upserts[1].expires_at, NOW + 900);
    let defaulted = plan(
        &register("c2", 1, &["Contact: <sip:alice@192.0.2.12>"]),
        &[],
    );
    assert_eq!(defaulted.upserts[0].expires_at, NOW + 3600);
}

#[test]
fn too_brief_interval_gets_423_with_min_expires() {
    let stored = plan(
        &register("c1", 1, &["Contact: <sip:alice@192.0.2.10>"]),
        &[],
    )
    .bindings_after;
    // One good contact and one too brief: the whole request is refused.
    let req = register(
        "c1",
        2,
        &[
            "Contact: <sip:alice@192.0.2.11>, <sip:alice@192.0.2.12>;expires=30",
            "Expires: 600",
        ],
    );
    let resp = refused(&req, &stored);
    assert_eq!(resp.status, StatusCode::INTERVAL_TOO_BRIEF);
    assert_eq!(resp.headers.min_expires(), Ok(Some(60)));
    // The minimum itself is accepted.
    let ok = plan(
        &register("c1", 2, &["Contact: <sip:alice@192.0.2.11>;expires=60"]),
        &stored,
    );
    assert_eq!(ok.upserts[0].expires_at, NOW + 60);
}

#[test]
fn long_interval_is_clamped_to_the_maximum() {
    let p = plan(
        &register(
            "c1",
            1,
            &["Contact: <sip:alice@192.0.2.10>", "Expires: 86400"],
        ),
        &[],
    );
    assert_eq!(p.upserts[0].expires_at, NOW + 3600);
    let policy = RegistrarPolicy {
        max_expires: 300,
        ..RegistrarPolicy::default()
    };
    let req = register(
        "c1",
        1,
        &["Contact: <sip:alice@192.0.2.10>;expires=4294967295"],
    );
    let p = process_register(&req, &[], NOW, source(), &policy).unwrap();
    assert_eq!(p.upserts[0].expires_at, NOW + 300);
    let resp = ok_response(&req, &p, NOW, Some("t1"));
    assert_eq!(contact_lines(&resp), ["<sip:alice@192.0.2.10>;expires=300"]);
}

#[test]
fn star_with_expires_zero_removes_every_binding() {
    let a = plan(&register("a", 1, &["Contact: <sip:alice@192.0.2.10>"]), &[]);
    let store = apply(&[], &a);
    let b = plan(
        &register("b", 7, &["Contact: <sip:alice@192.0.2.11>"]),
        &store,
    );
    let store = apply(&store, &b);
    assert_eq!(store.len(), 2);
    let req = register("a", 2, &["Contact: *", "Expires: 0"]);
    let p = plan(&req, &store);
    assert!(p.upserts.is_empty());
    assert!(p.bindings_after.is_empty());
    assert_eq!(
        p.removals,
        [
            (AOR.to_owned(), "sip:alice@192.0.2.10".to_owned()),
            (AOR.to_owned(), "sip:alice@192.0.2.11".to_owned())
        ]
    );
    assert!(apply(&store, &p).is_empty());
    assert!(contact_lines(&ok_response(&req, &p, NOW, Some("t"))).is_empty());
    // `*` from a Call-ID whose binding has a higher CSeq is out of order.
    let stale = register("b", 3, &["Contact: *", "Expires: 0"]);
    assert_eq!(
        refused(&stale, &store).status,
        StatusCode::SERVER_INTERNAL_ERROR
    );
}

/// A REGISTER carrying headers the parser itself would refuse: the registrar must not rely on
/// the parser having screened them (the edge may build requests from other sources).
fn register_raw(extra: &[(HeaderName, &str)]) -> Request {
    let mut req = register("c1", 1, &[]);
    for (name, value) in extra {
        req.headers.push(name.clone(), *value);
    }
    req
}

#[test]
fn star_needs_expires_zero_and_no_other_contact() {
    use HeaderName::{Contact, Expires};
    for extra in [
        &[(Contact, "*")][..],
        &[(Contact, "*"), (Expires, "60")],
        &[
            (Contact, "*"),
            (Contact, "<sip:alice@192.0.2.10>"),
            (Expires, "0"),
        ],
        &[(Contact, "<sip:alice@192.0.2.10>, *"), (Expires, "0")],
    ] {
        let resp = refused(&register_raw(extra), &[]);
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{extra:?}");
    }
}

#[test]
fn malformed_headers_get_400() {
    use HeaderName::{CSeq, CallId, Contact, Expires};
    for extra in [
        &[(Contact, "<sip:alice@192.0.2.10>;expires=soon")][..],
        &[
            (Contact, "<sip:alice@192.0.2.10>"),
            (Expires, "60"),
            (Expires, "70"),
        ],
    ] {
        assert_eq!(
            refused(&register_raw(extra), &[]).status,
            StatusCode::BAD_REQUEST
        );
    }
    let mut no_call_id = register("c1", 1, &[]);
    no_call_id.headers.remove(&CallId);
    assert_eq!(refused(&no_call_id, &[]).status, StatusCode::BAD_REQUEST);
    let mut no_cseq = register("c1", 1, &[]);
    no_cseq.headers.remove(&CSeq);
    assert_eq!(refused(&no_cseq, &[]).status, StatusCode::BAD_REQUEST);
}

#[test]
fn expires_zero_removes_only_that_contact() {
    let first = plan(
        &register(
            "c1",
            1,
            &["Contact: <sip:alice@192.0.2.10>, <sip:alice@192.0.2.11>"],
        ),
        &[],
    );
    let store = apply(&[], &first);
    let p = plan(
        &register("c1", 2, &["Contact: <sip:alice@192.0.2.11>;expires=0"]),
        &store,
    );
    assert!(p.upserts.is_empty());
    assert_eq!(
        p.removals,
        [(AOR.to_owned(), "sip:alice@192.0.2.11".to_owned())]
    );
    assert_eq!(contacts_of(&p.bindings_after), ["sip:alice@192.0.2.10"]);
    // Removing a contact that is not bound changes nothing.
    let none = plan(
        &register("c1", 3, &["Contact: <sip:alice@192.0.2.99>", "Expires: 0"]),
        &store,
    );
    assert!(none.is_unchanged());
    assert_eq!(none.bindings_after.len(), 2);
}

#[test]
fn query_register_lists_bindings_and_changes_nothing() {
    let store = plan(
        &register(
            "c1",
            1,
            &["Contact: <sip:alice@192.0.2.10>;q=0.5", "Expires: 600"],
        ),
        &[],
    )
    .bindings_after;
    let req = register("q", 1, &[]);
    let p = plan(&req, &store);
    assert!(p.is_unchanged());
    assert_eq!(p.bindings_after, store);
    let resp = ok_response(&req, &p, NOW + 100, Some("tt"));
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        contact_lines(&resp),
        ["<sip:alice@192.0.2.10>;expires=500;q=0.5"]
    );
}

#[test]
fn ok_lists_all_bindings_with_remaining_expiry() {
    let a = plan(
        &register(
            "a",
            1,
            &[
                "Contact: <sip:alice@192.0.2.10;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1",
                "Expires: 600",
            ],
        ),
        &[],
    );
    let store = apply(&[], &a);
    let later = NOW + 200;
    let req = register(
        "b",
        1,
        &[
            "Contact: <sip:alice@192.0.2.20>;expires=1200;q=1",
            "Path: <sip:edge1.example.com;lr>",
        ],
    );
    let p = process_register(&req, &store, later, source(), &RegistrarPolicy::default()).unwrap();
    assert_eq!(p.upserts[0].path, ["<sip:edge1.example.com;lr>"]);
    let resp = ok_response(&req, &p, later, Some("tag9"));
    assert_eq!(resp.status, StatusCode::OK);
    // One Contact header listing both bindings.
    assert_eq!(
        contact_lines(&resp),
        [concat!(
            "<sip:alice@192.0.2.10;transport=tcp>;expires=400;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1, ",
            "<sip:alice@192.0.2.20>;expires=1200;q=1",
        )]
    );
    assert!(
        resp.headers
            .get(&HeaderName::To)
            .unwrap()
            .ends_with(";tag=tag9")
    );
    assert_eq!(
        resp.headers.get(&HeaderName::Path),
        Some("<sip:edge1.example.com;lr>")
    );
    assert_eq!(resp.headers.call_id(), Some("b"));
    // The 200 is well-formed on the wire.
    assert!(parse_datagram(&resp.to_bytes()).is_ok());
}

#[test]
fn contact_uri_comparison_follows_19_1_4() {
    let m =
        |a: &str, b: &str| contact_uri_matches(&Uri::parse(a).unwrap(), &Uri::parse(b).unwrap());
    assert!(m("sip:alice@EXAMPLE.com", "SIP:alice@example.COM"));
    assert!(m("sip:%61lice@h", "sip:alice@h"));
    assert!(m("sip:a@h;transport=TCP", "sip:a@h;transport=tcp"));
    assert!(m("sip:a@h;foo=1", "sip:a@h"));
    assert!(!m("sip:Alice@h", "sip:alice@h"));
    assert!(!m("sip:a@h", "sip:a@h:5060"));
    assert!(!m("sip:a@h;transport=tcp", "sip:a@h"));
    assert!(!m("sip:a@h;foo=1", "sip:a@h;foo=2"));
    assert!(!m("sip:a@h", "sips:a@h"));
}

#[test]
fn contact_listed_twice_in_one_request_is_not_out_of_order() {
    let p = plan(
        &register(
            "c1",
            1,
            &["Contact: <sip:alice@192.0.2.10>;expires=60, <sip:alice@192.0.2.10>;expires=120"],
        ),
        &[],
    );
    assert_eq!(p.upserts.len(), 1);
    assert_eq!(p.upserts[0].expires_at, NOW + 120);
}
