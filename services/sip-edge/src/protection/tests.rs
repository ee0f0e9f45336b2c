//! The sans-IO core on a virtual clock: no runtime, no sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const PHONE: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20));
const CITY_NAT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 20, 0, 1));

fn options(user_agent: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bK-1\r\n\
         From: \"sipvicious\" <sip:100@192.0.2.1>;tag=1\r\n\
         To: <sip:100@192.0.2.1>\r\n\
         Call-ID: 1@192.0.2.9\r\n\
         CSeq: 1 OPTIONS\r\n\
         User-Agent: {user_agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn phone_message() -> Vec<u8> {
    options("Yealink SIP-T46S 66.86.0.15")
}

fn config() -> ProtectionConfig {
    ProtectionConfig {
        trusted_networks: vec!["10.20.0.0/16".parse().unwrap()],
        ..ProtectionConfig::default()
    }
}

#[test]
fn a_500_per_second_flood_is_banned_within_a_second_while_a_phone_keeps_going() {
    let mut protection = Protection::new(config());
    let message = phone_message();
    let mut banned_at = None;
    // Two seconds of virtual time in 1 ms steps: the flooder sends every 2 ms (500/s), the
    // phone every 200 ms (5/s).
    for now_ms in 0..2_000u64 {
        if now_ms % 2 == 0 {
            let admission = protection.admit(now_ms, FLOODER, &message);
            if admission != Admission::Admit && banned_at.is_none() {
                assert_eq!(admission, Admission::Drop(DropReason::RateLimited));
                banned_at = Some(now_ms);
            }
            if let Some(at) = banned_at
                && now_ms > at
            {
                assert_eq!(
                    admission,
                    Admission::Drop(DropReason::Banned),
                    "at {now_ms}"
                );
            }
        }
        if now_ms % 200 == 0 {
            assert_eq!(
                protection.admit(now_ms, PHONE, &message),
                Admission::Admit,
                "phone at {now_ms}"
            );
        }
    }
    let banned_at = banned_at.expect("the flooder was never banned");
    assert!(banned_at < 1_000, "banned only at {banned_at} ms");
    assert!(protection.is_banned(1_999, FLOODER));
    assert!(!protection.is_banned(1_999, PHONE));

    let ban = protection.poll_new_ban().expect("the ban was not queued");
    assert_eq!(ban.address, "203.0.113.7");
    assert_eq!(ban.reason, "rate");
    assert_eq!(ban.until_unix_ms, banned_at + 60_000);
    assert!(ban.edge_id.is_empty());
    assert_eq!(protection.poll_new_ban(), None, "one flood, one ban");

    let stats = protection.stats();
    assert_eq!(stats.bans_issued, 1);
    assert_eq!(stats.dropped_rate, 1);
    assert_eq!(stats.dropped_banned, 1_000 - banned_at / 2 - 1);
}

#[test]
fn a_source_at_its_rate_is_never_banned() {
    let mut protection = Protection::new(config());
    let message = phone_message();
    // 100/s for a minute, plus the full burst at once at the start.
    for _ in 0..199 {
        assert_eq!(protection.admit(0, PHONE, &message), Admission::Admit);
    }
    for now_ms in (10..60_000u64).step_by(10) {
        assert_eq!(
            protection.admit(now_ms, PHONE, &message),
            Admission::Admit,
            "at {now_ms}"
        );
    }
    assert_eq!(protection.stats().bans_issued, 0);
}

#[test]
fn a_ban_ends_after_its_duration() {
    let mut protection = Protection::new(ProtectionConfig {
        burst: 1,
        ban_duration: Duration::from_secs(10),
        ..config()
    });
    let message = phone_message();
    assert_eq!(protection.admit(0, FLOODER, &message), Admission::Admit);
    assert_eq!(
        protection.admit(0, FLOODER, &message),
        Admission::Drop(DropReason::RateLimited)
    );
    assert_eq!(
        protection.admit(9_999, FLOODER, &message),
        Admission::Drop(DropReason::Banned)
    );
    assert!(protection.is_banned(9_999, FLOODER));
    assert!(!protection.is_banned(10_000, FLOODER));
    assert_eq!(
        protection.admit(10_000, FLOODER, &message),
        Admission::Admit
    );
    protection.purge(10_000);
    assert_eq!(protection.stats().bans_held, 0);
}

#[test]
fn a_trusted_network_is_never_banned_by_rate_or_auth_failures() {
    let mut protection = Protection::new(config());
    let message = phone_message();
    for now_ms in 0..5_000u64 {
        assert_eq!(
            protection.admit(now_ms, CITY_NAT, &message),
            Admission::Admit
        );
        protection.auth_failed(now_ms, CITY_NAT, &format!("user{now_ms}"));
    }
    assert!(!protection.is_banned(5_000, CITY_NAT));
    assert_eq!(protection.poll_new_ban(), None);
    assert_eq!(
        protection.stats().tracked_sources,
        0,
        "trusted sources were tracked"
    );

    let remote = proto::v1::Ban {
        address: CITY_NAT.to_string(),
        until_unix_ms: 60_000,
        reason: "rate".to_owned(),
        edge_id: "edge-2".to_owned(),
    };
    assert_eq!(protection.apply_ban(5_000, &remote), BanOutcome::Trusted);
    assert_eq!(
        protection.admit(5_000, CITY_NAT, &message),
        Admission::Admit
    );
    // An IPv4-mapped IPv6 form of the same address is trusted too (dual-stack sockets).
    let mapped = IpAddr::V6(Ipv4Addr::new(10, 20, 0, 1).to_ipv6_mapped());
    assert_eq!(protection.admit(5_000, mapped, &message), Admission::Admit);
    assert!(!protection.is_banned(5_000, mapped));
}

#[test]
fn scanners_are_dropped_in_any_case_even_from_trusted_networks() {
    let mut protection = Protection::new(config());
    for agent in [
        "friendly-scanner",
        "SIPVicious/0.3.4",
        "sipcli/v1.8",
        "VaxSIPUserAgent/3.1",
        "Nmap NSE",
    ] {
        assert_eq!(
            protection.admit(0, PHONE, &options(agent)),
            Admission::Drop(DropReason::Scanner),
            "{agent}"
        );
        assert_eq!(
            protection.admit(0, CITY_NAT, &options(agent)),
            Admission::Drop(DropReason::Scanner)
        );
    }
    // The From display name in these messages says "sipvicious": only the User-Agent counts.
    for agent in ["Linphone/5.2.0", "sipsak 0.9.8", "Grandstream GXP2170"] {
        assert_eq!(
            protection.admit(0, PHONE, &options(agent)),
            Admission::Admit,
            "{agent}"
        );
    }
    assert_eq!(protection.stats().dropped_scanner, 10);
    assert_eq!(
        protection.stats().bans_issued,
        0,
        "a scanner UA alone must not ban"
    );
}

#[test]
fn repeated_auth_failures_ban_the_source_and_success_resets_them() {
    let mut protection = Protection::new(config());
    for n in 0..9u64 {
        protection.auth_failed(n, FLOODER, "100");
    }
    protection.auth_succeeded(9, FLOODER, "100");
    for n in 10..19u64 {
        protection.auth_failed(n, FLOODER, "100");
    }
    assert!(
        !protection.is_banned(19, FLOODER),
        "a success did not reset the count"
    );
    protection.auth_failed(19, FLOODER, "100");
    assert!(protection.is_banned(20, FLOODER));
    let ban = protection.poll_new_ban().unwrap();
    assert_eq!(ban.reason, "auth-failures");
    assert_eq!(
        protection.admit(20, FLOODER, &phone_message()),
        Admission::Drop(DropReason::Banned)
    );
}

#[test]
fn auth_failures_spread_over_windows_do_not_ban() {
    let mut protection = Protection::new(config());
    for n in 0..30u64 {
        // One failure every 7 s: at most 9 in any fixed 60 s window.
        protection.auth_failed(n * 7_000, FLOODER, "100");
    }
    assert!(!protection.is_banned(30 * 7_000, FLOODER));
}

#[test]
fn known_and_unknown_usernames_lock_out_alike() {
    // The core never knows which names exist; "100" stands for a real account, "nobody-here"
    // for a name the directory does not have. Failures come from many sources so that no
    // source ban interferes.
    let mut protection = Protection::new(config());
    for name in ["100", "nobody-here"] {
        for n in 0..19u32 {
            let source = IpAddr::V4(Ipv4Addr::from(0xC633_6400 + n));
            protection.auth_failed(u64::from(n), source, name);
            assert!(
                !protection.account_locked(u64::from(n), name),
                "{name} locked after {} failures",
                n + 1
            );
        }
        protection.auth_failed(19, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)), name);
        assert!(protection.account_locked(19, name), "{name} not locked");
        assert!(protection.account_locked(300_018, name));
        assert!(
            !protection.account_locked(300_019, name),
            "{name} locked too long"
        );
    }
    assert_eq!(protection.stats().lockouts, 2);
    // A lockout is per name: others are unaffected.
    assert!(!protection.account_locked(20, "101"));
    // A trusted source counts against the account too (the lockout is per name).
    let mut protection = Protection::new(config());
    for n in 0..20u64 {
        protection.auth_failed(n, CITY_NAT, "100");
    }
    assert!(protection.account_locked(20, "100"));
}

#[test]
fn a_successful_login_does_not_lift_a_lockout() {
    let mut protection = Protection::new(config());
    for n in 0..20u32 {
        protection.auth_failed(0, IpAddr::V4(Ipv4Addr::from(0xC633_6400 + n)), "100");
    }
    protection.auth_succeeded(1, PHONE, "100");
    assert!(protection.account_locked(1, "100"));
}

#[test]
fn remote_bans_apply_until_their_end_and_only_lengthen() {
    let mut protection = Protection::new(config());
    let ban = |until_unix_ms| proto::v1::Ban {
        address: "203.0.113.7".to_owned(),
        until_unix_ms,
        reason: "rate".to_owned(),
        edge_id: "edge-2".to_owned(),
    };
    assert_eq!(
        protection.apply_ban(1_000, &ban(1_000)),
        BanOutcome::Expired
    );
    assert_eq!(
        protection.apply_ban(1_000, &ban(5_000)),
        BanOutcome::Applied
    );
    assert_eq!(
        protection.apply_ban(1_000, &ban(4_000)),
        BanOutcome::AlreadyBanned
    );
    assert_eq!(
        protection.admit(4_999, FLOODER, &phone_message()),
        Admission::Drop(DropReason::Banned)
    );
    assert_eq!(
        protection.admit(5_000, FLOODER, &phone_message()),
        Admission::Admit
    );
    let junk = proto::v1::Ban {
        address: "not-an-address".to_owned(),
        ..ban(9_000)
    };
    assert_eq!(
        protection.apply_ban(1_000, &junk),
        BanOutcome::InvalidAddress
    );
    assert_eq!(
        protection.poll_new_ban(),
        None,
        "a remote ban was queued for publishing"
    );
    assert_eq!(protection.stats().bans_applied, 1);
}

#[test]
fn ipv6_sources_are_limited_and_banned_per_64() {
    let mut protection = Protection::new(ProtectionConfig {
        burst: 1,
        ..config()
    });
    let message = phone_message();
    let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let sibling: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(protection.admit(0, first, &message), Admission::Admit);
    assert_eq!(
        protection.admit(0, sibling, &message),
        Admission::Drop(DropReason::RateLimited)
    );
    assert!(protection.is_banned(1, first));
    assert_eq!(protection.admit(1, elsewhere, &message), Admission::Admit);
    assert_eq!(protection.poll_new_ban().unwrap().address, "2001:db8:1:2::");

    let mut other = Protection::new(config());
    let remote = proto::v1::Ban {
        address: "2001:db8:1:2::".to_owned(),
        until_unix_ms: 60_000,
        reason: "rate".to_owned(),
        edge_id: "edge-1".to_owned(),
    };
    assert_eq!(other.apply_ban(0, &remote), BanOutcome::Applied);
    assert!(other.is_banned(1, sibling));
    assert!(!other.is_banned(1, IpAddr::V6(Ipv6Addr::LOCALHOST)));
}

#[test]
fn memory_stays_bounded_under_a_spoofed_source_flood() {
    let max = 1_000;
    let mut protection = Protection::new(ProtectionConfig {
        max_tracked_sources: max,
        burst: 2,
        ..config()
    });
    let message = phone_message();
    // 50 000 distinct sources, each sending three requests in the same millisecond: each is
    // banned, and fails authentication under a made-up name.
    for n in 0..50_000u32 {
        let now_ms = u64::from(n / 100);
        let source = IpAddr::V4(Ipv4Addr::from(0x0B00_0000 + n));
        for _ in 0..3 {
            protection.admit(now_ms, source, &message);
        }
        protection.auth_failed(now_ms, source, &format!("guess-{n}"));
        let stats = protection.stats();
        assert!(stats.tracked_sources <= max, "{stats:?}");
        assert!(stats.bans_held <= max, "{stats:?}");
        assert!(stats.tracked_accounts <= max, "{stats:?}");
    }
    assert_eq!(protection.stats().bans_issued, 50_000);
    // The newest bans are the ones kept, and the unpublished queue is bounded too.
    assert!(protection.is_banned(500, IpAddr::V4(Ipv4Addr::from(0x0B00_0000 + 49_999))));
    assert_eq!(
        protection.stats().bans_not_published,
        50_000 - MAX_PENDING_BANS as u64
    );
    // A legitimate phone still gets in.
    assert_eq!(protection.admit(500, PHONE, &message), Admission::Admit);
    // Once everything has ended, purge empties every table.
    protection.purge(10_000_000);
    let stats = protection.stats();
    assert_eq!(
        (
            stats.tracked_sources,
            stats.bans_held,
            stats.tracked_accounts
        ),
        (0, 0, 0)
    );
}
