//! Between the registrar core's [`Binding`] and the stored `calanque.v1.LocationBinding`.

use std::net::SocketAddr;

use bytes::Bytes;
use prost::Message;
use proto::v1::{Flow, LocationBinding};
use sip_core::registrar::Binding;
use sip_msg::uri::Uri;

use super::RegistrationContext;

/// Why a stored value is not a binding this version can use.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Not a `LocationBinding` protobuf.
    #[error("not a LocationBinding: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The Contact does not parse as a URI.
    #[error("contact {contact:?} does not parse: {source}")]
    Contact {
        contact: String,
        #[source]
        source: sip_msg::uri::UriError,
    },
    /// The flow's remote address is not `ip:port`.
    #[error("flow remote {0:?} is not an ip:port")]
    Remote(String),
    /// `q` above 1000 thousandths.
    #[error("q {0} out of range")]
    Q(u32),
}

/// The protobuf of one upsert. The flow's `remote` is the binding's `received` address (the
/// same thing seen by the same edge), so the two cannot disagree once stored.
pub(crate) fn encode(binding: &Binding, ctx: &RegistrationContext) -> Bytes {
    let mut flow = ctx.flow.clone();
    flow.remote = binding.received.to_string();
    let record = LocationBinding {
        aor: binding.aor.clone(),
        contact: binding.contact.to_string(),
        call_id: binding.call_id.clone(),
        cseq: binding.cseq,
        expires_at: binding.expires_at,
        q: binding.q.map(u32::from),
        instance: binding.instance.clone().unwrap_or_default(),
        reg_id: binding.reg_id,
        flow: Some(flow),
        path: binding.path.clone(),
        device_id: ctx.device_id.clone(),
        user_agent: ctx.user_agent.clone(),
    };
    Bytes::from(record.encode_to_vec())
}

/// A decoded stored binding, without its key and revision.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) binding: Binding,
    pub(crate) flow: Flow,
    pub(crate) device_id: String,
    pub(crate) user_agent: String,
}

/// Decodes and validates a stored value.
pub(crate) fn decode(value: &[u8]) -> Result<Decoded, CodecError> {
    let record = LocationBinding::decode(value)?;
    let contact = Uri::parse(&record.contact).map_err(|source| CodecError::Contact {
        contact: record.contact.clone(),
        source,
    })?;
    let flow = record.flow.unwrap_or_default();
    let received: SocketAddr = flow
        .remote
        .parse()
        .map_err(|_| CodecError::Remote(flow.remote.clone()))?;
    let q = match record.q {
        Some(q) if q <= 1000 => Some(u16::try_from(q).map_err(|_| CodecError::Q(q))?),
        Some(q) => return Err(CodecError::Q(q)),
        None => None,
    };
    let binding = Binding {
        aor: record.aor,
        contact,
        call_id: record.call_id,
        cseq: record.cseq,
        expires_at: record.expires_at,
        q,
        instance: (!record.instance.is_empty()).then_some(record.instance),
        reg_id: record.reg_id,
        received,
        path: record.path,
    };
    Ok(Decoded {
        binding,
        flow,
        device_id: record.device_id,
        user_agent: record.user_agent,
    })
}

/// Just the expiry of a stored value, checked to be a whole valid binding (what the cache
/// needs on every watch event).
pub(crate) fn validated_expiry(value: &[u8]) -> Result<u64, CodecError> {
    decode(value).map(|d| d.binding.expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            aor: "sip:alice@example.com".to_owned(),
            contact: Uri::parse("sip:alice@192.0.2.10:40000;transport=tcp;ob").unwrap(),
            call_id: "abc@host".to_owned(),
            cseq: 7,
            expires_at: 1_800_000_600,
            q: Some(500),
            instance: Some("\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"".to_owned()),
            reg_id: Some(1),
            received: "192.0.2.10:40000".parse().unwrap(),
            path: vec!["<sip:edge.example.com;lr>".to_owned()],
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let ctx = RegistrationContext {
            flow: Flow {
                transport: proto::v1::SipTransport::Tcp as i32,
                remote: "ignored:1".to_owned(),
                local: "198.51.100.1:5070".to_owned(),
                edge_id: "edge-a".to_owned(),
                datacenter: "dc-a".to_owned(),
            },
            device_id: "dev-1".to_owned(),
            user_agent: "Phone/2".to_owned(),
        };
        let decoded = decode(&encode(&binding(), &ctx)).unwrap();
        assert_eq!(decoded.binding, binding());
        assert_eq!(
            decoded.flow.remote, "192.0.2.10:40000",
            "remote is the received address"
        );
        assert_eq!(decoded.flow.edge_id, "edge-a");
        assert_eq!(
            decoded.flow.datacenter, "dc-a",
            "call-control moves legs by it"
        );
        assert_eq!(decoded.device_id, "dev-1");
        assert_eq!(decoded.user_agent, "Phone/2");
    }

    #[test]
    fn absent_options_stay_absent() {
        let mut plain = binding();
        plain.q = None;
        plain.instance = None;
        plain.reg_id = None;
        plain.path.clear();
        let decoded = decode(&encode(&plain, &RegistrationContext::default())).unwrap();
        assert_eq!(decoded.binding, plain);
    }

    #[test]
    fn invalid_values_are_errors_not_panics() {
        assert!(matches!(
            decode(b"\xff\xff\xff"),
            Err(CodecError::Protobuf(_))
        ));
        let no_flow = LocationBinding {
            contact: "sip:a@b".to_owned(),
            ..LocationBinding::default()
        };
        assert!(matches!(
            decode(&no_flow.encode_to_vec()),
            Err(CodecError::Remote(_))
        ));
        let bad_q = LocationBinding {
            contact: "sip:a@b".to_owned(),
            q: Some(5000),
            flow: Some(Flow {
                remote: "192.0.2.1:1".to_owned(),
                ..Flow::default()
            }),
            ..LocationBinding::default()
        };
        assert!(matches!(
            decode(&bad_q.encode_to_vec()),
            Err(CodecError::Q(5000))
        ));
        let bad_contact = LocationBinding {
            contact: "no scheme".to_owned(),
            ..LocationBinding::default()
        };
        assert!(matches!(
            decode(&bad_contact.encode_to_vec()),
            Err(CodecError::Contact { .. })
        ));
    }
}
