//! Digest authentication of requests from phones against the directory's credentials
//! (RFC 7616 / RFC 8760 through `sip_core::digest`), with the protection module's failure
//! accounting. Synchronous: the directory is an in-memory cache and hashing is cheap, so it
//! runs on the engine's task without waiting on anything.
//!
//! Every failure a client could cause (unknown user, wrong password, locked account, replayed
//! nonce count) gets the same answer: a fresh challenge. Only a stale nonce differs, with
//! `stale=true`, and only for a response that was otherwise right. So the answers never tell
//! which accounts exist (svwar learns nothing).

use std::net::IpAddr;
use std::sync::Arc;

use directory::model::Device;
use directory_client::DirectoryCache;
use sip_core::digest::NonceCountTracker;
use sip_core::digest::{Algorithm, DigestError, DigestReply, DigestServer, Ha1, HashFunction};
use sip_msg::{HeaderName, Request, Response, StatusCode, build_response};

use crate::protection::Protection;

/// Whether the challenge is a registrar's (401, `WWW-Authenticate`) or a proxy's (407,
/// `Proxy-Authenticate`), RFC 3261 §22.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Registrar,
    Proxy,
}

/// The outcome of authenticating one request.
#[derive(Debug)]
pub enum AuthOutcome {
    /// The credentials are right: the request comes from this device.
    Authenticated(Arc<Device>),
    /// Answer with this challenge: the request carried no credentials for our realm, or a
    /// stale nonce. Part of every normal exchange, not a failure.
    Reply(Box<Response>),
    /// Answer with this: the credentials were refused (the answer is still a fresh challenge
    /// for wrong ones, so that it tells nothing; 400 for malformed ones).
    Refused(Box<Response>, Refusal),
}

/// Why credentials were refused (what the registration metrics count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A wrong response, an unknown user, a locked account, a nonce we did not issue or a
    /// replayed nonce count, or credentials we cannot check (scheme, algorithm, qop).
    WrongCredentials,
    /// Malformed credentials (400).
    Malformed,
}

/// Authenticates requests for one realm.
#[derive(Debug)]
pub struct Authenticator {
    digest: DigestServer,
    offered: Vec<Algorithm>,
    directory: DirectoryCache,
    nonce_counts: NonceCountTracker,
}

/// Nonce counts remembered per edge (replay detection for qop=auth).
const NONCE_COUNT_CAPACITY: usize = 100_000;

impl Authenticator {
    /// `offered` is the order algorithms are challenged in (RFC 8760 §2.4: a client uses the
    /// first it supports). Only offered algorithms are accepted.
    pub fn new(digest: DigestServer, offered: Vec<Algorithm>, directory: DirectoryCache) -> Self {
        let digest = digest.with_allowed_algorithms(&offered);
        Authenticator {
            digest,
            offered,
            directory,
            nonce_counts: NonceCountTracker::new(NONCE_COUNT_CAPACITY),
        }
    }

    pub fn directory(&self) -> &DirectoryCache {
        &self.directory
    }

    /// Checks the request's credentials for our realm.
    pub fn authenticate(
        &mut self,
        request: &Request,
        kind: ChallengeKind,
        source: IpAddr,
        now_unix: u64,
        now_ms: u64,
        protection: &mut Protection,
    ) -> AuthOutcome {
        let credentials = match kind {
            ChallengeKind::Registrar => request.headers.authorization(),
            ChallengeKind::Proxy => request.headers.proxy_authorization(),
        };
        let Ok(credentials) = credentials else {
            return malformed(request);
        };
        let Some(credentials) = self.digest.find_credentials(&credentials) else {
            return self.challenge(request, kind, now_unix, false);
        };
        let username = credentials.username().unwrap_or_default().to_owned();
        if protection.account_locked(now_ms, &username) {
            // Same answer as a wrong password: a lockout must not reveal the account exists.
            protection.auth_failed(now_ms, source, &username);
            return self.refuse(request, kind, now_unix);
        }
        let realm = self.digest.realm().to_owned();
        let device = self
            .directory
            .device_by_sip_username(&username)
            .filter(|d| d.realm.as_str() == realm);
        let result = self.digest.verify(
            now_unix,
            credentials,
            &request.method,
            &request.uri,
            |_, algorithm| device.as_deref().and_then(|d| ha1_of(d, algorithm)),
        );
        let result = result.and_then(|verified| match verified.nonce_count {
            Some(nc) => {
                let nonce = credentials.params.get("nonce").unwrap_or_default();
                self.nonce_counts.observe(nonce, nc).map(|()| verified)
            }
            None => Ok(verified),
        });
        match (result, device) {
            (Ok(_), Some(device)) => {
                protection.auth_succeeded(now_ms, source, &username);
                AuthOutcome::Authenticated(device)
            }
            (Ok(_), None) => self.refuse(request, kind, now_unix),
            (Err(e), _) => {
                tracing::debug!(%source, user = %username, reason = %e, "authentication failed");
                match e.reply() {
                    DigestReply::Challenge { stale: true } => {
                        self.challenge(request, kind, now_unix, true)
                    }
                    DigestReply::Challenge { stale: false } => {
                        if counts_as_failure(&e) {
                            protection.auth_failed(now_ms, source, &username);
                        }
                        self.refuse(request, kind, now_unix)
                    }
                    DigestReply::BadRequest => malformed(request),
                }
            }
        }
    }

    /// A 401/407 with one challenge per offered algorithm, sharing one fresh nonce.
    pub fn challenge(
        &self,
        request: &Request,
        kind: ChallengeKind,
        now_unix: u64,
        stale: bool,
    ) -> AuthOutcome {
        AuthOutcome::Reply(self.challenge_response(request, kind, now_unix, stale))
    }

    /// Refuses wrong credentials with a fresh challenge: the same answer as a first one.
    fn refuse(&self, request: &Request, kind: ChallengeKind, now_unix: u64) -> AuthOutcome {
        AuthOutcome::Refused(
            self.challenge_response(request, kind, now_unix, false),
            Refusal::WrongCredentials,
        )
    }

    fn challenge_response(
        &self,
        request: &Request,
        kind: ChallengeKind,
        now_unix: u64,
        stale: bool,
    ) -> Box<Response> {
        let (status, header) = match kind {
            ChallengeKind::Registrar => (StatusCode::UNAUTHORIZED, HeaderName::WwwAuthenticate),
            ChallengeKind::Proxy => (
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                HeaderName::ProxyAuthenticate,
            ),
        };
        let mut response = build_response(request, status, Some(&crate::tags::new_tag()));
        for challenge in self.digest.challenge(now_unix, &self.offered, stale) {
            response.headers.push(header.clone(), challenge.to_string());
        }
        Box::new(response)
    }
}

fn malformed(request: &Request) -> AuthOutcome {
    AuthOutcome::Refused(
        Box::new(bad_request(request, "Malformed credentials")),
        Refusal::Malformed,
    )
}

/// A failure a guessing attacker causes (as opposed to a client merely out of date).
fn counts_as_failure(e: &DigestError) -> bool {
    matches!(
        e,
        DigestError::WrongResponse
            | DigestError::UnknownUser
            | DigestError::ForgedNonce
            | DigestError::NonceCountReplay
    )
}

/// The device's HA1 for an algorithm (the `-sess` variants start from the same HA1).
fn ha1_of(device: &Device, algorithm: Algorithm) -> Option<Ha1> {
    match algorithm.hash() {
        HashFunction::Md5 => Ha1::from_hex(HashFunction::Md5, device.ha1.md5.as_str()),
        HashFunction::Sha256 => device
            .ha1
            .sha256
            .as_ref()
            .and_then(|h| Ha1::from_hex(HashFunction::Sha256, h.as_str())),
        _ => None,
    }
}

fn bad_request(request: &Request, reason: &str) -> Response {
    let mut response = build_response(
        request,
        StatusCode::BAD_REQUEST,
        Some(&crate::tags::new_tag()),
    );
    response.reason = reason.to_owned();
    response
}
