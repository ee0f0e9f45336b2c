//! Helpers the B2BUA core tests share: flows, parsing, picking actions apart, a core on a
//! virtual clock.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub(crate) mod answered;

use std::time::{Duration, Instant};

use call_control::b2bua::{Action, B2bua, B2buaConfig, CallRecord};
use proto::v1::{Flow, SipTransport};
use sip_msg::{Request, Response, SipMessage};

pub(crate) fn flow(edge: &str, remote: &str) -> Flow {
    Flow {
        transport: SipTransport::Udp as i32,
        remote: remote.into(),
        local: "127.0.0.1:5070".into(),
        edge_id: edge.into(),
        datacenter: String::new(),
    }
}

pub(crate) fn parse_request(text: &str) -> Request {
    match sip_msg::parse_datagram(text.as_bytes()).unwrap() {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("not a request"),
    }
}

/// The callee legs' INVITEs among the actions: (call_ref, request).
pub(crate) fn sends(actions: &[Action]) -> Vec<(String, Request)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                call_ref, request, ..
            } => Some((call_ref.clone(), (**request).clone())),
            _ => None,
        })
        .collect()
}

pub(crate) fn responses(actions: &[Action]) -> Vec<Response> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Respond { response, .. } => Some((**response).clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn ended_record(actions: &[Action]) -> Option<&CallRecord> {
    actions.iter().find_map(|a| match a {
        Action::Ended(r) => Some(r),
        _ => None,
    })
}

pub(crate) fn ended(actions: &[Action]) -> Option<(&'static str, u16)> {
    actions.iter().find_map(|a| match a {
        Action::Ended(r) => Some((r.outcome, r.status)),
        _ => None,
    })
}

#[allow(clippy::disallowed_methods)] // the origin of the virtual clock the core is driven on
pub(crate) fn core() -> (B2bua, Instant) {
    let start = Instant::now();
    let config = B2buaConfig {
        instance: "cc-1".into(),
        ring_timeout: Duration::from_secs(30),
        ..B2buaConfig::default()
    };
    (B2bua::new(config, start, 7), start)
}
