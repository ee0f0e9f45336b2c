//! Session timers (RFC 4028) and the UPDATE/INFO relay in the B2BUA core, on a virtual clock:
//! 422 below our Min-SE, 400 for unreadable headers, the timer headers passed between the legs
//! both ways, the caller made refresher when the callee does not do timers, refreshes by
//! re-INVITE and UPDATE restarting the timer, a call nobody refreshes ended with BYEs and a
//! record saying why, glare, INFO, takeover and a replica reconciling a stale copy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use call_control::b2bua::{
    Action, B2buaConfig, CAUSE_SESSION_TIMER_EXPIRED, CallRecord, EstablishedCall, Input,
};
use prost::Message;
use sip_msg::{HeaderName, Method, StatusCode, build_response};
use support::answered::*;
use support::{responses, sends};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn record(actions: &[Action]) -> Option<CallRecord> {
    actions.iter().find_map(|a| match a {
        Action::Ended(r) => Some(r.clone()),
        _ => None,
    })
}

fn persisted(actions: &[Action]) -> Option<EstablishedCall> {
    actions.iter().find_map(|a| match a {
        Action::Persist { call, .. } => Some((**call).clone()),
        _ => None,
    })
}

fn header<'a>(headers: &'a sip_msg::Headers, name: &str) -> Option<&'a str> {
    headers.get(&HeaderName::from_wire(name))
}

#[test]
fn an_interval_below_our_min_se_gets_422_with_ours_and_leaves_no_call() {
    let config = B2buaConfig {
        min_session_expires: secs(120),
        ..B2buaConfig::default()
    };
    let (mut b2bua, t0) = core_with(config);
    let out = invite(
        &mut b2bua,
        t0,
        caller_invite("Session-Expires: 100\r\nSupported: timer\r\n"),
    );
    let refusal = responses(&out).remove(0);
    assert_eq!(refusal.status.as_u16(), 422);
    assert_eq!(header(&refusal.headers, "Min-SE"), Some("120"));
    assert!(sends(&out).is_empty(), "nothing rings");
    let ended = record(&out).unwrap();
    assert_eq!((ended.outcome, ended.status), ("refused", 422));
    assert_eq!(b2bua.live_calls(), 0);
    assert_eq!(b2bua.poll_timeout(), None);

    // The caller retries with our Min-SE: the call goes out.
    let out = invite(
        &mut b2bua,
        t0,
        caller_invite("Session-Expires: 120\r\nSupported: timer\r\n"),
    );
    let (_, b_invite) = sends(&out).remove(0);
    assert_eq!(header(&b_invite.headers, "Session-Expires"), Some("120"));
    assert_eq!(header(&b_invite.headers, "Min-SE"), Some("120"));
}

#[test]
fn a_too_short_interval_from_a_caller_without_timer_support_is_raised_not_refused() {
    // RFC 4028 §8.1: it could not read a 422; refusing would only fail the call.
    let (mut b2bua, t0) = core_with(B2buaConfig::default());
    let out = invite(&mut b2bua, t0, caller_invite("x: 30;refresher=uas\r\n"));
    let (_, b_invite) = sends(&out).remove(0);
    assert_eq!(
        header(&b_invite.headers, "Session-Expires"),
        Some("90;refresher=uas")
    );
    assert_eq!(header(&b_invite.headers, "Min-SE"), Some("90"));
    assert!(header(&b_invite.headers, "Supported").is_none());
}

#[test]
fn a_malformed_session_expires_gets_400_naming_it() {
    let (mut b2bua, t0) = core_with(B2buaConfig::default());
    for bad in [
        "Session-Expires: soon\r\n",
        "x: 1800;refresher=both\r\n",
        "Session-Expires: 1800\r\nSession-Expires: 900\r\n",
    ] {
        let out = invite(&mut b2bua, t0, caller_invite(bad));
        let refusal = responses(&out).remove(0);
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(refusal.reason.contains("Session-Expires"), "{bad:?}");
        assert!(sends(&out).is_empty());
    }
    let out = invite(&mut b2bua, t0, caller_invite("Min-SE: -1\r\n"));
    let refusal = responses(&out).remove(0);
    assert_eq!(
        (refusal.status, refusal.reason.as_str()),
        (StatusCode::BAD_REQUEST, "Malformed Min-SE")
    );
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn the_timer_headers_reach_the_callee_and_come_back_in_the_callers_200() {
    let call = answered(
        B2buaConfig::default(),
        "x: 1800;refresher=uac\r\nMin-SE: 120\r\nSupported: 100rel, TIMER\r\n",
        &[
            ("x", "1700;refresher=uac"),
            ("Require", "timer"),
            ("Allow", "INVITE, ACK, BYE, UPDATE"),
        ],
    );
    let b = &call.b_invite.headers;
    assert_eq!(header(b, "Session-Expires"), Some("1800;refresher=uac"));
    assert_eq!(header(b, "Min-SE"), Some("120"));
    assert_eq!(
        header(b, "Supported"),
        Some("timer"),
        "timer only: 100rel is not relayed"
    );
    let a = &call.a_ok.headers;
    assert_eq!(header(a, "Session-Expires"), Some("1700;refresher=uac"));
    assert_eq!(header(a, "Require"), Some("timer"));
    assert_eq!(
        header(a, "Allow"),
        Some("INVITE, ACK, BYE, UPDATE"),
        "the caller learns it may refresh with UPDATE"
    );
    // The callee's interval is the one watched, and stored.
    assert_eq!(call.b2bua.poll_timeout(), Some(call.t0 + secs(1700)));
    assert_eq!(persisted(&call.actions).unwrap().session_interval, 1700);
}

#[test]
fn ours_is_inserted_when_the_caller_supports_timers_but_asked_for_none() {
    let config = B2buaConfig {
        session_expires: secs(600),
        ..B2buaConfig::default()
    };
    let (mut b2bua, t0) = core_with(config);
    let out = invite(&mut b2bua, t0, caller_invite("Supported: timer\r\n"));
    let (_, b_invite) = sends(&out).remove(0);
    assert_eq!(header(&b_invite.headers, "Session-Expires"), Some("600"));
    assert_eq!(header(&b_invite.headers, "Min-SE"), Some("90"));
    assert_eq!(header(&b_invite.headers, "Supported"), Some("timer"));
}

#[test]
fn a_callee_without_timers_makes_the_caller_the_refresher() {
    let call = answered(
        B2buaConfig::default(),
        "Session-Expires: 900\r\nSupported: timer\r\n",
        &[],
    );
    let a = &call.a_ok.headers;
    assert_eq!(header(a, "Session-Expires"), Some("900;refresher=uac"));
    assert_eq!(header(a, "Require"), Some("timer"));
    assert_eq!(call.b2bua.poll_timeout(), Some(call.t0 + secs(900)));
}

#[test]
fn a_call_without_session_timers_never_expires() {
    let Answered {
        mut b2bua,
        t0,
        a_ok,
        ..
    } = answered(B2buaConfig::default(), "", &[]);
    assert!(header(&a_ok.headers, "Session-Expires").is_none());
    assert!(header(&a_ok.headers, "Require").is_none());
    assert_eq!(b2bua.poll_timeout(), None);
    assert!(
        b2bua
            .handle(t0 + secs(10 * 3600), Input::Timeout)
            .is_empty()
    );
    assert_eq!(b2bua.live_calls(), 1);
}

#[test]
fn no_refresh_ends_the_call_with_a_bye_to_each_leg_and_a_record_saying_why() {
    let Answered {
        mut b2bua,
        t0,
        b_invite,
        ..
    } = answered_with_timers();
    assert_eq!(b2bua.poll_timeout(), Some(t0 + secs(1800)));
    assert!(b2bua.handle(t0 + secs(1799), Input::Timeout).is_empty());
    assert_eq!(
        b2bua.session_timers_due(t0 + secs(1799)),
        Vec::<String>::new()
    );
    assert_eq!(b2bua.session_timers_due(t0 + secs(1800)), [CALLER_CALL_ID]);

    let out = b2bua.handle(t0 + secs(1800), Input::Timeout);
    let byes = sends(&out);
    assert_eq!(byes.len(), 2, "{byes:?}");
    assert!(byes.iter().all(|(_, r)| r.method == Method::Bye));
    let call_ids: Vec<&str> = byes
        .iter()
        .map(|(_, r)| r.headers.call_id().unwrap())
        .collect();
    assert!(call_ids.contains(&CALLER_CALL_ID), "{call_ids:?}");
    assert!(call_ids.contains(&b_invite.headers.call_id().unwrap()));
    assert!(byes.iter().all(|(_, r)| {
        header(&r.headers, "Reason")
            .unwrap()
            .contains("Session timer")
    }));
    let forgotten = out
        .iter()
        .find_map(|a| match a {
            Action::Forget { call_ids } => Some(call_ids.clone()),
            _ => None,
        })
        .expect("the snapshot is forgotten");
    assert_eq!(forgotten.len(), 2);
    let ended = record(&out).unwrap();
    assert_eq!((ended.outcome, ended.status), ("answered", 200));
    assert_eq!(ended.cause, Some(CAUSE_SESSION_TIMER_EXPIRED));
    assert_eq!(ended.answered, Some(Duration::ZERO));
    assert_eq!(b2bua.live_calls(), 0);
    assert_eq!(b2bua.poll_timeout(), None);
}

#[test]
fn a_refresh_by_reinvite_restarts_the_timer() {
    let Answered {
        mut b2bua,
        t0,
        a_ok,
        ..
    } = answered_with_timers();
    let refresh = from_caller(
        &a_ok,
        "INVITE",
        2,
        "Session-Expires: 1800;refresher=uac\r\nMin-SE: 90\r\nSupported: timer\r\n",
        SDP,
    );
    let t1 = t0 + secs(900);
    let out = b2bua.handle(t1, in_dialog("edge-a", "h-r1", refresh));
    let (relay_ref, copy) = sends(&out).remove(0);
    assert_eq!(copy.method, Method::Invite);
    assert_eq!(
        header(&copy.headers, "Session-Expires"),
        Some("1800;refresher=uac")
    );
    assert_eq!(header(&copy.headers, "Min-SE"), Some("90"));
    assert_eq!(header(&copy.headers, "Supported"), Some("timer"));

    let out = result(
        &mut b2bua,
        t1,
        &relay_ref,
        ok_to(
            &copy,
            None,
            &[
                ("Session-Expires", "1800;refresher=uac"),
                ("Require", "timer"),
            ],
        ),
    );
    let answer = responses(&out).remove(0);
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        header(&answer.headers, "Session-Expires"),
        Some("1800;refresher=uac")
    );
    assert_eq!(header(&answer.headers, "Require"), Some("timer"));
    assert_eq!(sends(&out).remove(0).1.method, Method::Ack);
    assert_eq!(
        persisted(&out).unwrap().session_interval,
        1800,
        "the refresh rewrites the snapshot"
    );

    // Past the original deadline the call is still up.
    assert_eq!(b2bua.poll_timeout(), Some(t1 + secs(1800)));
    assert!(b2bua.handle(t0 + secs(1801), Input::Timeout).is_empty());
    assert_eq!(b2bua.live_calls(), 1);
    // And it expires one interval after the refresh.
    let out = b2bua.handle(t1 + secs(1800), Input::Timeout);
    assert_eq!(
        record(&out).unwrap().cause,
        Some(CAUSE_SESSION_TIMER_EXPIRED)
    );
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn a_refresh_by_update_from_the_callee_restarts_the_timer_with_its_interval() {
    let Answered {
        mut b2bua,
        t0,
        b_invite,
        ..
    } = answered_with_timers();
    let update = from_callee(
        &b_invite,
        "UPDATE",
        7,
        "Session-Expires: 1200;refresher=uac\r\nSupported: timer\r\n",
        "",
    );
    let t1 = t0 + secs(1000);
    let out = b2bua.handle(t1, in_dialog("edge-b", "h-u1", update));
    let (relay_ref, copy) = sends(&out).remove(0);
    assert_eq!(copy.method, Method::Update);
    assert_eq!(
        copy.headers.call_id(),
        Some(CALLER_CALL_ID),
        "the caller's dialog"
    );
    assert!(header(&copy.headers, "To").unwrap().contains("tag=alice"));
    assert!(copy.headers.get(&HeaderName::Contact).is_some());
    assert_eq!(
        header(&copy.headers, "Session-Expires"),
        Some("1200;refresher=uac")
    );

    // The caller answers without timers of its own: the callee (this UPDATE's sender) is
    // told to keep refreshing.
    let out = result(&mut b2bua, t1, &relay_ref, ok_to(&copy, None, &[]));
    let answer = responses(&out).remove(0);
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers.cseq().unwrap().unwrap().method,
        Method::Update
    );
    assert_eq!(
        header(&answer.headers, "Session-Expires"),
        Some("1200;refresher=uac")
    );
    assert_eq!(header(&answer.headers, "Require"), Some("timer"));
    assert!(
        sends(&out).iter().all(|(_, r)| r.method != Method::Ack),
        "no ACK for UPDATE"
    );

    assert_eq!(b2bua.poll_timeout(), Some(t1 + secs(1200)));
    assert!(b2bua.handle(t0 + secs(1801), Input::Timeout).is_empty());
    assert_eq!(b2bua.live_calls(), 1);
}

#[test]
fn a_refresh_answered_without_session_expires_stops_the_timer() {
    let Answered {
        mut b2bua,
        t0,
        a_ok,
        ..
    } = answered_with_timers();
    // A re-INVITE from a caller that no longer asks for timers (no Supported: timer).
    let reinvite = from_caller(&a_ok, "INVITE", 2, "", SDP);
    let out = b2bua.handle(t0 + secs(60), in_dialog("edge-a", "h-r1", reinvite));
    let (relay_ref, copy) = sends(&out).remove(0);
    assert!(header(&copy.headers, "Session-Expires").is_none());
    let out = result(
        &mut b2bua,
        t0 + secs(60),
        &relay_ref,
        ok_to(&copy, None, &[]),
    );
    assert!(header(&responses(&out)[0].headers, "Session-Expires").is_none());
    assert_eq!(persisted(&out).unwrap().session_interval, 0);
    assert_eq!(b2bua.poll_timeout(), None);
    assert!(b2bua.handle(t0 + secs(7200), Input::Timeout).is_empty());
    assert_eq!(b2bua.live_calls(), 1);
}

#[test]
fn a_refresh_still_on_its_way_at_the_deadline_gets_a_grace_period() {
    let Answered {
        mut b2bua,
        t0,
        a_ok,
        ..
    } = answered_with_timers();
    let refresh = from_caller(
        &a_ok,
        "UPDATE",
        2,
        "Session-Expires: 1800\r\nSupported: timer\r\n",
        "",
    );
    let out = b2bua.handle(t0 + secs(1795), in_dialog("edge-a", "h-u", refresh));
    let (relay_ref, copy) = sends(&out).remove(0);
    assert!(b2bua.handle(t0 + secs(1800), Input::Timeout).is_empty());
    assert_eq!(b2bua.poll_timeout(), Some(t0 + secs(1832)));
    let t1 = t0 + secs(1810);
    let out = result(
        &mut b2bua,
        t1,
        &relay_ref,
        ok_to(&copy, None, &[("Session-Expires", "1800;refresher=uac")]),
    );
    assert_eq!(responses(&out)[0].status, StatusCode::OK);
    assert_eq!(b2bua.poll_timeout(), Some(t1 + secs(1800)));
}

#[test]
fn update_glare_gets_491_and_info_is_relayed_meanwhile() {
    let Answered {
        mut b2bua,
        t0,
        b_invite,
        a_ok,
        ..
    } = answered_with_timers();
    let update = from_caller(&a_ok, "UPDATE", 2, "Supported: timer\r\n", SDP);
    let out = b2bua.handle(t0, in_dialog("edge-a", "h-u1", update));
    let (relay_ref, copy) = sends(&out).remove(0);
    assert_eq!(copy.method, Method::Update);
    assert_eq!(copy.body.as_ref(), SDP.as_bytes(), "the offer is relayed");

    // While it is pending, an UPDATE from the other side and a re-INVITE get 491.
    let crossing = from_callee(&b_invite, "UPDATE", 5, "", SDP);
    let out = b2bua.handle(t0, in_dialog("edge-b", "h-u2", crossing));
    assert_eq!(responses(&out)[0].status.as_u16(), 491);
    assert!(sends(&out).is_empty());
    let reinvite = from_caller(&a_ok, "INVITE", 3, "", SDP);
    let out = b2bua.handle(t0, in_dialog("edge-a", "h-r", reinvite));
    assert_eq!(responses(&out)[0].status.as_u16(), 491);

    // An INFO (DTMF) carries no offer: it goes through, body and type intact.
    let dtmf = "Signal=5\r\nDuration=160\r\n";
    let info = from_caller(&a_ok, "INFO", 4, "", dtmf);
    let out = b2bua.handle(t0, in_dialog("edge-a", "h-i", info));
    let (info_ref, info_copy) = sends(&out).remove(0);
    assert_eq!(info_copy.method, Method::Info);
    assert_eq!(info_copy.body.as_ref(), dtmf.as_bytes());
    assert_eq!(
        header(&info_copy.headers, "Content-Type"),
        Some("application/dtmf-relay")
    );
    assert_eq!(
        info_copy.headers.call_id(),
        b_invite.headers.call_id(),
        "in the callee's dialog"
    );
    let out = result(&mut b2bua, t0, &info_ref, ok_to(&info_copy, None, &[]));
    let info_ok = responses(&out).remove(0);
    assert_eq!(info_ok.status, StatusCode::OK);
    assert_eq!(info_ok.headers.cseq().unwrap().unwrap().seq, 4);
    assert!(sends(&out).is_empty(), "no ACK for INFO");
    assert!(persisted(&out).is_none(), "an INFO is no refresh");

    // The UPDATE completes; the next one goes through.
    result(&mut b2bua, t0, &relay_ref, ok_to(&copy, None, &[]));
    let again = from_callee(&b_invite, "UPDATE", 6, "", SDP);
    let out = b2bua.handle(t0, in_dialog("edge-b", "h-u3", again));
    assert_eq!(sends(&out).remove(0).1.method, Method::Update);
}

#[test]
fn a_refresh_below_our_min_se_gets_422_and_changes_nothing() {
    let Answered {
        mut b2bua,
        t0,
        a_ok,
        ..
    } = answered_with_timers();
    let refresh = from_caller(
        &a_ok,
        "UPDATE",
        2,
        "Session-Expires: 60\r\nSupported: timer\r\n",
        "",
    );
    let out = b2bua.handle(t0 + secs(10), in_dialog("edge-a", "h-u", refresh));
    let refusal = responses(&out).remove(0);
    assert_eq!(refusal.status.as_u16(), 422);
    assert_eq!(header(&refusal.headers, "Min-SE"), Some("90"));
    assert!(sends(&out).is_empty());
    assert_eq!(b2bua.poll_timeout(), Some(t0 + secs(1800)));
}

#[test]
fn a_422_from_the_callee_reaches_the_caller_with_its_min_se() {
    let (mut b2bua, t0) = core_with(B2buaConfig::default());
    let out = invite(
        &mut b2bua,
        t0,
        caller_invite("Session-Expires: 300\r\nSupported: timer\r\n"),
    );
    let (call_ref, b_invite) = sends(&out).remove(0);
    let mut too_small = build_response(&b_invite, StatusCode::new(422).unwrap(), Some("bob"));
    too_small.headers.push(HeaderName::MinSe, "3600");
    let out = result(&mut b2bua, t0, &call_ref, too_small);
    let to_caller = responses(&out).remove(0);
    assert_eq!(to_caller.status.as_u16(), 422);
    assert_eq!(header(&to_caller.headers, "Min-SE"), Some("3600"));
    assert_eq!(b2bua.live_calls(), 0);
}

#[test]
fn a_taken_over_call_keeps_its_interval_and_restarts_the_deadline() {
    let call = answered(
        B2buaConfig::default(),
        "Session-Expires: 1200\r\nSupported: timer\r\n",
        &[("Session-Expires", "1200;refresher=uas")],
    );
    let stored = persisted(&call.actions).unwrap();
    assert_eq!(stored.session_interval, 1200);
    // Through the store's bytes, into another replica, long after the answer.
    let stored = EstablishedCall::decode(stored.encode_to_vec().as_slice()).unwrap();
    let (mut other, _) = core_with(B2buaConfig::default());
    let t1 = call.t0 + secs(1000);
    assert!(other.restore(t1, &stored));
    assert_eq!(other.poll_timeout(), Some(t1 + secs(1200)));
    assert!(
        other
            .handle(call.t0 + secs(1200), Input::Timeout)
            .is_empty()
    );
    let out = other.handle(t1 + secs(1200), Input::Timeout);
    assert_eq!(sends(&out).len(), 2);
    assert_eq!(
        record(&out).unwrap().cause,
        Some(CAUSE_SESSION_TIMER_EXPIRED)
    );
    assert_eq!(other.live_calls(), 0);
}

#[test]
fn a_replica_whose_copy_is_stale_learns_of_a_refresh_relayed_elsewhere() {
    // Replica A answered the call; the queue group gave the refresh to replica B.
    let Answered {
        b2bua: mut a,
        t0,
        a_ok,
        actions,
        ..
    } = answered_with_timers();
    let stored = persisted(&actions).unwrap();
    let (mut b, _) = core_with(B2buaConfig::default());
    let t1 = t0 + secs(900);
    assert!(b.restore(t1, &stored));
    let refresh = from_caller(
        &a_ok,
        "UPDATE",
        2,
        "Session-Expires: 1800\r\nSupported: timer\r\n",
        "",
    );
    let out = b.handle(t1, in_dialog("edge-a", "h-u", refresh));
    let (relay_ref, copy) = sends(&out).remove(0);
    let out = result(
        &mut b,
        t1,
        &relay_ref,
        ok_to(&copy, None, &[("Session-Expires", "1800;refresher=uac")]),
    );
    let refreshed = persisted(&out).unwrap();
    assert_ne!(refreshed.session_stamp, stored.session_stamp);

    // A's timer runs out; the store shows B's refresh: the call lives on.
    let t2 = t0 + secs(1800);
    assert_eq!(a.session_timers_due(t2), [CALLER_CALL_ID]);
    a.reconcile_session(t2, CALLER_CALL_ID, Some(&refreshed));
    assert!(a.handle(t2, Input::Timeout).is_empty());
    assert_eq!(a.poll_timeout(), Some(t2 + secs(1800)));

    // Its own snapshot changes nothing: the call ends at the deadline.
    let t3 = t2 + secs(1800);
    a.reconcile_session(t3, CALLER_CALL_ID, Some(&refreshed));
    let out = a.handle(t3, Input::Timeout);
    assert_eq!(
        record(&out).unwrap().cause,
        Some(CAUSE_SESSION_TIMER_EXPIRED)
    );

    // No snapshot: another replica ended the call; the stale copy goes quietly.
    let t4 = t1 + secs(1800);
    b.reconcile_session(t4, CALLER_CALL_ID, None);
    assert_eq!(b.live_calls(), 0);
    assert!(b.handle(t4, Input::Timeout).is_empty());
}
