//! The baresip harness against a real registrar (Kamailio, `scripts/kamailio/registrar.cfg`):
//! two softphones register; since that registrar does not route calls, the call goes from a
//! second, direct account of A straight to B's SIP port, and B (the registered account,
//! auto-answer) answers; audio flows both ways and the call hangs up. A call through Kamailio
//! (answered 405) shows that the harness reports a failed call.
//!
//! baresip and Kamailio are installed by `make deps` (scripts/ensure-deps.sh).

use std::time::Duration;

use testkit::baresip::{Account, Baresip, BaresipError, BaresipOptions};
use testkit::kamailio::{self, Kamailio, KamailioOptions};
use testkit::process::installed;

const WAIT: Duration = Duration::from_secs(10);
/// How long the call lasts: 3 s at 50 packets/s (G.711, 20 ms).
const TALK: Duration = Duration::from_secs(3);

fn kamailio() -> Kamailio {
    assert!(
        kamailio::binary().is_some(),
        "kamailio is not installed: run `make deps` (apt-get install kamailio)"
    );
    assert!(
        installed("baresip"),
        "baresip is not installed: run `make deps` (apt-get install baresip)"
    );
    Kamailio::start_with(KamailioOptions {
        users: 4,
        children: 2,
        shm_mb: 32,
        ..KamailioOptions::default()
    })
    .expect("kamailio starts")
}

#[test]
fn two_softphones_register_call_each_other_and_hang_up() {
    let kam = kamailio();
    let user1 = kam.user(1);
    let user2 = kam.user(2);
    let mut a = Baresip::start(
        BaresipOptions::new(Account::registered(&user1, kam.addr()))
            .with_account(Account::direct("direct1")),
    )
    .expect("baresip A starts");
    let mut b = Baresip::start(BaresipOptions::new(Account::registered(&user2, kam.addr())))
        .expect("baresip B starts");
    a.wait_registered(WAIT).expect("A registered");
    b.wait_registered(WAIT).expect("B registered");

    // The registered account sends everything through Kamailio, which answers INVITE 405;
    // the direct account reaches B itself.
    let uri = b.contact_uri(&user2.username);
    a.dial_from(&Account::direct("direct1").aor(), &uri)
        .expect("dial");
    let established_a = a.wait_call_established(WAIT).expect("A: call established");
    let established_b = b.wait_call_established(WAIT).expect("B: auto-answered");
    assert_eq!(established_a.account, "sip:direct1@127.0.0.1");
    assert_eq!(
        established_b.account,
        format!("sip:{}@{}", user2.username, kam.realm())
    );
    assert_eq!(established_a.call_id, established_b.call_id);
    std::thread::sleep(TALK);
    a.hangup().expect("hang up");
    let closed_a = a.wait_call_closed(WAIT).expect("A: call closed");
    let closed_b = b.wait_call_closed(WAIT).expect("B: call closed");
    assert_eq!(closed_b.call_id, established_b.call_id, "{closed_a:?}");

    let sa = a.wait_call_summary(WAIT).expect("A: RTP summary");
    let sb = b.wait_call_summary(WAIT).expect("B: RTP summary");
    eprintln!("A {sa:?}\nB {sb:?}");
    // 3 s at 50 packets/s is 150 packets; a loaded machine may start the audio late.
    for (name, s) in [("A", sa), ("B", sb)] {
        assert!(s.tx_packets >= 100, "{name} sent {s:?}");
        assert!(s.rx_packets >= 100, "{name} received {s:?}");
        assert_eq!(s.rx_errors, 0, "{name}: {s:?}");
    }
    // What one sent, the other received (give or take the packets in flight at the BYE).
    assert!(sa.tx_packets.abs_diff(sb.rx_packets) <= 10, "{sa:?} {sb:?}");
    assert!(sb.tx_packets.abs_diff(sa.rx_packets) <= 10, "{sa:?} {sb:?}");

    // The received audio is the peer's 1 kHz tone, decoded.
    for (name, phone) in [("A", &a), ("B", &b)] {
        let audio = phone.received_audio().expect("received audio recorded");
        eprintln!("{name} received {audio:?}");
        assert!(audio.seconds() >= 2.0, "{name}: {audio:?}");
        assert!(audio.loud_samples >= 8_000, "{name}: {audio:?}");
        assert!(
            (audio.frequency_hz - 1000.0).abs() < 50.0,
            "{name}: {audio:?}"
        );
    }

    a.stop();
    b.stop();
}

#[test]
#[allow(clippy::disallowed_methods)] // how long a real process took: the wall clock
fn a_wrong_password_is_a_registration_failure() {
    let kam = kamailio();
    let mut user = kam.user(3);
    user.password = "wrong".to_owned();
    let started = std::time::Instant::now();
    let mut phone = Baresip::start(BaresipOptions::new(Account::registered(&user, kam.addr())))
        .expect("baresip starts");
    let err = phone
        .wait_registered(WAIT)
        .expect_err("a wrong password does not register");
    let BaresipError::RegisterFailed { reason, .. } = &err else {
        panic!("not a registration failure: {err}");
    };
    assert!(reason.starts_with("401"), "{err}");
    assert!(
        started.elapsed() < WAIT,
        "reported at once, not after the timeout"
    );
}

#[test]
fn a_call_that_cannot_be_established_is_reported() {
    let kam = kamailio();
    let user1 = kam.user(1);
    let mut a = Baresip::start(BaresipOptions::new(Account::registered(&user1, kam.addr())))
        .expect("baresip starts");
    a.wait_registered(WAIT).expect("registered");
    // Through Kamailio, which does not route calls (405).
    a.dial(&format!("sip:user2@{}", kam.realm())).expect("dial");
    let err = a
        .wait_call_established(WAIT)
        .expect_err("Kamailio's registrar does not route calls");
    let BaresipError::CallFailed { reason, .. } = &err else {
        panic!("not a failed call: {err}");
    };
    assert!(reason.starts_with("405"), "{err}");
    assert!(
        a.wait_call_closed(Duration::from_millis(300)).is_err(),
        "the closing was already reported"
    );
}

#[test]
fn a_callee_without_auto_answer_rings_until_it_accepts() {
    assert!(
        installed("baresip"),
        "baresip is not installed: run `make deps`"
    );
    let mut a = Baresip::start(BaresipOptions::new(Account::direct("alice"))).expect("A starts");
    let mut b = Baresip::start(BaresipOptions::new(Account {
        auto_answer: false,
        ..Account::direct("bob")
    }))
    .expect("B starts");
    let uri = b.contact_uri("bob");
    a.dial(&uri).expect("dial");
    let incoming = b.wait_incoming(WAIT).expect("B: incoming call");
    assert_eq!(incoming.peer, "sip:alice@127.0.0.1");
    a.wait_event("CALL_RINGING", WAIT).expect("A: ringing");
    assert!(
        a.wait_call_established(Duration::from_millis(500)).is_err(),
        "established before B accepted"
    );
    b.accept().expect("accept");
    a.wait_call_established(WAIT).expect("A: established");
    b.wait_call_established(WAIT).expect("B: established");
    std::thread::sleep(Duration::from_secs(1));
    // The callee hangs up this time; the tone (120 s) outlasts the call.
    b.hangup().expect("hang up");
    assert_eq!(
        a.wait_call_closed(WAIT).expect("A: closed").param,
        "Connection reset by peer"
    );
    b.wait_call_closed(WAIT).expect("B: closed");
    let (sa, sb) = (
        a.wait_call_summary(WAIT).expect("A: summary"),
        b.wait_call_summary(WAIT).expect("B: summary"),
    );
    assert!(sa.rx_packets >= 25 && sb.rx_packets >= 25, "{sa:?} {sb:?}");
}
