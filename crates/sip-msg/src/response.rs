//! Building a response to a request per RFC 3261 §8.2.6.

use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::message::{Request, Response};
use crate::status::StatusCode;
use crate::typed::NameAddr;

/// Builds a response: Via (all values, in order), From, Call-ID and CSeq copied; To copied and,
/// when `to_tag` is given and the request's To has no tag, a tag added. A 100 Trying also
/// copies Timestamp (§8.2.6.1). The reason phrase is the default one. Of a header that must
/// appear once, only the first is copied, so that the 400 answering a request with duplicate
/// From/To/Call-ID/CSeq (RFC 4475 §3.3.8) is itself well-formed.
pub fn build_response(req: &Request, status: StatusCode, to_tag: Option<&str>) -> Response {
    let mut headers = Headers::with_capacity(8);
    let (mut from, mut to, mut call_id, mut cseq, mut timestamp) =
        (false, false, false, false, false);
    for h in &req.headers {
        let seen = match h.name {
            HeaderName::Via => {
                headers.push(HeaderName::Via, h.value.clone());
                continue;
            }
            HeaderName::From => &mut from,
            HeaderName::CallId => &mut call_id,
            HeaderName::CSeq => &mut cseq,
            HeaderName::Timestamp if status == StatusCode::TRYING => &mut timestamp,
            HeaderName::To => {
                if !to {
                    to = true;
                    let mut value = h.value.clone();
                    if let Some(tag) = to_tag {
                        let has_tag = NameAddr::parse(&h.value).is_some_and(|t| t.tag().is_some());
                        if !has_tag {
                            value.push_str(";tag=");
                            value.push_str(tag);
                        }
                    }
                    headers.push(HeaderName::To, value);
                }
                continue;
            }
            _ => continue,
        };
        if !*seen {
            *seen = true;
            headers.push(h.name.clone(), h.value.clone());
        }
    }
    let mut resp = Response::new(status);
    resp.headers = headers;
    resp
}
