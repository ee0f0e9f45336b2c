//! Digest authentication: published vectors (RFC 2069, RFC 2617 §3.5, RFC 7616 §3.9.1),
//! client↔server round trips for every algorithm, and the server's refusals.

use std::time::Duration;

use proptest::prelude::*;
use sip_core::digest::{
    Algorithm, ClientSecret, DigestError, DigestReply, DigestServer, Ha1, HashFunction, answer, ha1,
};
use sip_msg::typed::{AuthScheme, Challenge, Credentials};
use sip_msg::{Method, Uri};

const REALM: &str = "calanque.test";
const NOW: u64 = 1_750_000_000;

/// RFC 7616 §3.9.1: the challenge of the example (method GET, uri /dir/index.html).
fn rfc7616_challenge(algorithm: &str) -> Challenge {
    Challenge::parse(&format!(
        r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
    ))
    .expect("RFC 7616 challenge parses")
}

fn get() -> Method {
    Method::Extension("GET".into())
}

#[test]
fn rfc7616_md5_vector() {
    let creds = answer(
        &[rfc7616_challenge("MD5")],
        "Mufasa",
        ClientSecret::Password("Circle of Life"),
        &get(),
        "/dir/index.html",
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        1,
    )
    .unwrap();
    assert_eq!(
        creds.params.get("response"),
        Some("8ca523f5e9506fed4657c9700eebdbec")
    );
    assert_eq!(creds.params.get("algorithm"), Some("MD5"));
    assert_eq!(creds.params.get("nc"), Some("00000001"));
    assert_eq!(creds.params.get("qop"), Some("auth"));
    assert_eq!(
        creds.params.get("opaque"),
        Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
    );
}

#[test]
fn rfc7616_sha256_vector() {
    let creds = answer(
        &[rfc7616_challenge("SHA-256")],
        "Mufasa",
        ClientSecret::Password("Circle of Life"),
        &get(),
        "/dir/index.html",
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        1,
    )
    .unwrap();
    assert_eq!(
        creds.params.get("response"),
        Some("753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
    );
    // Printed as RFC 7616 §3.9.1 shows it: qop, nc, algorithm bare; the rest quoted.
    let printed = creds.to_string();
    assert!(printed.contains("qop=auth, nc=00000001"), "{printed}");
    assert!(printed.contains(r#"uri="/dir/index.html""#), "{printed}");
}

#[test]
fn rfc7616_offering_both_picks_sha256() {
    let creds = answer(
        &[rfc7616_challenge("MD5"), rfc7616_challenge("SHA-256")],
        "Mufasa",
        ClientSecret::Password("Circle of Life"),
        &get(),
        "/dir/index.html",
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        1,
    )
    .unwrap();
    assert_eq!(creds.params.get("algorithm"), Some("SHA-256"));
}

#[test]
fn rfc2617_md5_vector() {
    let challenge = Challenge::parse(
        r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
    )
    .unwrap();
    let creds = answer(
        &[challenge],
        "Mufasa",
        ClientSecret::Password("Circle Of Life"),
        &get(),
        "/dir/index.html",
        "0a4f113b",
        1,
    )
    .unwrap();
    assert_eq!(
        creds.params.get("response"),
        Some("6629fae49393a05397450978507c4ef1")
    );
    // The server did not name an algorithm: neither does the answer.
    assert_eq!(creds.params.get("algorithm"), None);
}

#[test]
fn rfc2069_no_qop_md5_vector() {
    let challenge = Challenge::parse(
        r#"Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
    )
    .unwrap();
    let creds = answer(
        &[challenge],
        "Mufasa",
        ClientSecret::Password("CircleOfLife"),
        &get(),
        "/dir/index.html",
        "unused",
        1,
    )
    .unwrap();
    assert_eq!(
        creds.params.get("response"),
        Some("1949323746fe6a43ef61f9606e7febea")
    );
    assert_eq!(creds.params.get("qop"), None);
    assert_eq!(creds.params.get("nc"), None);
}

fn server() -> DigestServer {
    DigestServer::new(
        REALM,
        *b"0123456789abcdef0123456789abcdef",
        Duration::from_secs(300),
    )
}

fn register_uri() -> Uri {
    Uri::parse("sip:calanque.test").expect("valid URI")
}

/// The directory: alice's HA1 for every hash function, nobody else.
fn directory(user: &str, algorithm: Algorithm) -> Option<Ha1> {
    (user == "alice").then(|| ha1(algorithm, "alice", REALM, "wonderland"))
}

fn client_answer(challenges: &[Challenge], user: &str, password: &str, uri: &str) -> Credentials {
    answer(
        challenges,
        user,
        ClientSecret::Password(password),
        &Method::Register,
        uri,
        "c1ient",
        1,
    )
    .expect("a usable challenge")
}

#[test]
fn round_trip_for_every_algorithm() {
    let s = server();
    for algorithm in Algorithm::ALL {
        let challenges = s.challenge(NOW, &[algorithm], false);
        assert_eq!(challenges.len(), 1);
        let creds = client_answer(&challenges, "alice", "wonderland", "sip:calanque.test");
        assert_eq!(creds.params.get("algorithm"), Some(algorithm.as_str()));
        let user = s
            .verify(
                NOW + 10,
                &creds,
                &Method::Register,
                &register_uri(),
                directory,
            )
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert_eq!(user.username, "alice");
        assert_eq!(user.algorithm, algorithm);
        assert_eq!(user.nonce_issued_at, NOW);
        assert_eq!(user.nonce_count, Some(1));
    }
}

#[test]
fn round_trip_through_the_wire_form() {
    let s = server();
    let challenges = s.challenge(NOW, &[Algorithm::Md5, Algorithm::Sha256], false);
    let reparsed: Vec<Challenge> = challenges
        .iter()
        .map(|c| Challenge::parse(&c.to_string()).unwrap())
        .collect();
    assert_eq!(reparsed, challenges);
    let creds = client_answer(&reparsed, "alice", "wonderland", "sip:calanque.test");
    let creds = Credentials::parse(&creds.to_string()).unwrap();
    let user = s
        .verify(NOW, &creds, &Method::Register, &register_uri(), directory)
        .unwrap();
    assert_eq!(user.algorithm, Algorithm::Sha256);
}

#[test]
fn client_with_stored_ha1_answers_only_matching_hash() {
    let s = server();
    let stored = [ha1(Algorithm::Md5, "alice", REALM, "wonderland")];
    let challenges = s.challenge(NOW, &[Algorithm::Sha256, Algorithm::Md5], false);
    let creds = answer(
        &challenges,
        "alice",
        ClientSecret::Ha1(&stored),
        &Method::Register,
        "sip:calanque.test",
        "abc",
        7,
    )
    .unwrap();
    assert_eq!(creds.params.get("algorithm"), Some("MD5"));
    assert_eq!(creds.params.get("nc"), Some("00000007"));
    assert!(
        s.verify(NOW, &creds, &Method::Register, &register_uri(), directory)
            .is_ok()
    );
    let sha_only = s.challenge(NOW, &[Algorithm::Sha256], false);
    let none = answer(
        &sha_only,
        "alice",
        ClientSecret::Ha1(&stored),
        &Method::Register,
        "sip:calanque.test",
        "abc",
        1,
    );
    assert_eq!(none, Err(DigestError::NoUsableChallenge));
}

#[test]
fn challenges_come_strongest_first_with_stale_flag() {
    let s = server();
    let c = s.challenge(
        NOW,
        &[Algorithm::Md5, Algorithm::Sha512_256, Algorithm::Sha256],
        true,
    );
    let algs: Vec<_> = c
        .iter()
        .map(|c| c.params.get("algorithm").unwrap())
        .collect();
    assert_eq!(algs, ["SHA-512-256", "SHA-256", "MD5"]);
    assert!(c.iter().all(|c| c.params.get("stale") == Some("true")));
    assert!(c.iter().all(|c| c.params.get("qop") == Some("auth")));
    assert!(
        s.challenge(NOW, &[Algorithm::Md5], false)[0]
            .params
            .get("stale")
            .is_none()
    );
}

#[test]
fn expired_nonce_with_right_password_is_stale() {
    let s = server();
    let challenges = s.challenge(NOW, &[Algorithm::Sha256], false);
    let creds = client_answer(&challenges, "alice", "wonderland", "sip:calanque.test");
    let err = s.verify(
        NOW + 301,
        &creds,
        &Method::Register,
        &register_uri(),
        directory,
    );
    assert_eq!(err, Err(DigestError::StaleNonce));
    assert_eq!(
        DigestError::StaleNonce.reply(),
        DigestReply::Challenge { stale: true }
    );
    // An expired nonce with a wrong password is not "stale": the user must be asked again.
    let wrong = client_answer(&challenges, "alice", "rabbit", "sip:calanque.test");
    let err = s.verify(
        NOW + 301,
        &wrong,
        &Method::Register,
        &register_uri(),
        directory,
    );
    assert_eq!(err, Err(DigestError::WrongResponse));
}

#[test]
fn forged_or_modified_nonce_is_rejected() {
    let s = server();
    let challenges = s.challenge(NOW, &[Algorithm::Sha256], false);
    let nonce = challenges[0].params.get("nonce").unwrap().to_owned();

    // Another key: same shape, wrong MAC.
    let other = DigestServer::new(REALM, [9; 32], Duration::from_secs(300));
    let forged = client_answer(
        &other.challenge(NOW, &[Algorithm::Sha256], false),
        "alice",
        "wonderland",
        "sip:calanque.test",
    );
    let err = s.verify(NOW, &forged, &Method::Register, &register_uri(), directory);
    assert_eq!(err, Err(DigestError::ForgedNonce));

    // Flip one character of the genuine nonce and answer it correctly: still refused.
    let mut chars: Vec<char> = nonce.chars().collect();
    chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
    let mut tampered = challenges[0].clone();
    tampered
        .params
        .set("nonce", chars.into_iter().collect::<String>());
    let creds = client_answer(&[tampered], "alice", "wonderland", "sip:calanque.test");
    let err = s.verify(NOW, &creds, &Method::Register, &register_uri(), directory);
    assert_eq!(err, Err(DigestError::ForgedNonce));
    assert_eq!(
        DigestError::ForgedNonce.reply(),
        DigestReply::Challenge { stale: false }
    );
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let s = server();
    let challenges = s.challenge(NOW, &[Algorithm::Sha256], false);
    let wrong = client_answer(&challenges, "alice", "rabbit", "sip:calanque.test");
    let unknown = client_answer(&challenges, "mallory", "rabbit", "sip:calanque.test");
    let e1 = s
        .verify(NOW, &wrong, &Method::Register, &register_uri(), directory)
        .unwrap_err();
    let e2 = s
        .verify(NOW, &unknown, &Method::Register, &register_uri(), directory)
        .unwrap_err();
    assert_eq!(e1, DigestError::WrongResponse);
    assert_eq!(e2, DigestError::UnknownUser);
    assert_eq!(e1.reply(), e2.reply());
    assert_eq!(e1.reply(), DigestReply::Challenge { stale: false });
}

#[test]
fn realm_uri_method_algorithm_and_qop_are_checked() {
    let s = server();
    let challenges = s.challenge(NOW, &[Algorithm::Sha256], false);
    let good = client_answer(&challenges, "alice", "wonderland", "sip:calanque.test");
    let verify = |c: &Credentials, m: &Method| s.verify(NOW, c, m, &register_uri(), directory);

    // The response binds the method.
    assert_eq!(
        verify(&good, &Method::Invite),
        Err(DigestError::WrongResponse)
    );

    let mut other_realm = good.clone();
    other_realm.params.set("realm", "elsewhere");
    assert_eq!(
        verify(&other_realm, &Method::Register),
        Err(DigestError::RealmMismatch)
    );

    let other_uri = client_answer(&challenges, "alice", "wonderland", "sip:elsewhere.test");
    assert_eq!(
        verify(&other_uri, &Method::Register),
        Err(DigestError::UriMismatch)
    );
    assert_eq!(DigestError::UriMismatch.reply(), DigestReply::BadRequest);

    let mut auth_int = good.clone();
    auth_int.params.set("qop", "auth-int");
    assert_eq!(
        verify(&auth_int, &Method::Register),
        Err(DigestError::UnsupportedQop)
    );

    let mut no_qop_sha = good.clone();
    no_qop_sha.params.remove("qop");
    assert_eq!(
        verify(&no_qop_sha, &Method::Register),
        Err(DigestError::UnsupportedQop)
    );

    let mut unknown_alg = good.clone();
    unknown_alg.params.set("algorithm", "SHA-1");
    assert_eq!(
        verify(&unknown_alg, &Method::Register),
        Err(DigestError::UnsupportedAlgorithm)
    );

    let mut bad_nc = good.clone();
    bad_nc.params.set("nc", "1");
    assert_eq!(
        verify(&bad_nc, &Method::Register),
        Err(DigestError::MalformedParameter("nc"))
    );

    let mut missing = good.clone();
    missing.params.remove("response");
    assert_eq!(
        verify(&missing, &Method::Register),
        Err(DigestError::MissingParameter("response"))
    );

    let strict = server().with_allowed_algorithms(&[Algorithm::Sha256, Algorithm::Sha512_256]);
    let md5 = client_answer(
        &s.challenge(NOW, &[Algorithm::Md5], false),
        "alice",
        "wonderland",
        "sip:calanque.test",
    );
    let err = strict.verify(NOW, &md5, &Method::Register, &register_uri(), directory);
    assert_eq!(err, Err(DigestError::UnsupportedAlgorithm));
}

#[test]
fn md5_without_qop_is_accepted_for_old_handsets() {
    let s = server();
    let mut challenge = s.challenge(NOW, &[Algorithm::Md5], false).remove(0);
    challenge.params.remove("qop");
    challenge.params.remove("algorithm");
    let creds = client_answer(&[challenge], "alice", "wonderland", "sip:calanque.test");
    assert_eq!(creds.params.get("qop"), None);
    let user = s
        .verify(NOW, &creds, &Method::Register, &register_uri(), directory)
        .unwrap();
    assert_eq!(user.algorithm, Algorithm::Md5);
    assert_eq!(user.nonce_count, None);
}

#[test]
fn unknown_scheme_is_not_verifiable() {
    let creds = Credentials::parse("NoOneKnowsThisScheme opaque-data=here").unwrap();
    assert_eq!(
        creds.scheme,
        AuthScheme::Other("NoOneKnowsThisScheme".into())
    );
    let err = server().verify(NOW, &creds, &Method::Register, &register_uri(), directory);
    assert_eq!(err, Err(DigestError::UnsupportedScheme));
    assert_eq!(
        DigestError::UnsupportedScheme.reply(),
        DigestReply::Challenge { stale: false }
    );
}

#[test]
fn find_credentials_picks_our_realm() {
    let list = [
        Credentials::parse(r#"Digest username="a", realm="proxy.example""#).unwrap(),
        Credentials::parse(r#"Digest username="a", realm="calanque.test""#).unwrap(),
    ];
    assert_eq!(server().find_credentials(&list), Some(&list[1]));
    assert_eq!(server().find_credentials(&list[..1]), None);
}

#[test]
fn stored_ha1_of_the_wrong_hash_counts_as_unknown() {
    let s = server();
    let creds = client_answer(
        &s.challenge(NOW, &[Algorithm::Sha256], false),
        "alice",
        "wonderland",
        "sip:calanque.test",
    );
    let md5_only = |_: &str, _: Algorithm| Some(ha1(Algorithm::Md5, "alice", REALM, "wonderland"));
    let err = s.verify(NOW, &creds, &Method::Register, &register_uri(), md5_only);
    assert_eq!(err, Err(DigestError::UnknownUser));
    assert_eq!(
        Ha1::from_hex(HashFunction::Sha256, "00").map(|h| h.hash()),
        None
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Credentials made up by someone who does not know the password never verify, whatever
    /// the algorithm, response, nonce count or cnonce.
    #[test]
    fn random_credentials_never_verify(
        alg in 0usize..6,
        response in "[0-9a-f]{32}|[0-9a-f]{64}",
        password in "[ -~]{0,16}",
        cnonce in "[a-zA-Z0-9]{1,12}",
        nc in 1u32..1000,
    ) {
        prop_assume!(password != "wonderland");
        let s = server();
        let algorithm = Algorithm::ALL[alg];
        let challenges = s.challenge(NOW, &[algorithm], false);
        let mut guessed = answer(
            &challenges, "alice", ClientSecret::Password(&password), &Method::Register,
            "sip:calanque.test", &cnonce, nc,
        ).unwrap();
        prop_assert!(s.verify(NOW, &guessed, &Method::Register, &register_uri(), directory).is_err());
        guessed.params.set("response", response);
        prop_assert!(s.verify(NOW, &guessed, &Method::Register, &register_uri(), directory).is_err());
    }
}
