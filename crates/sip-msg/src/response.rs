//! Building a response to a request per RFC 3261 §8.2.6.

use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::message::{Request, Response};
use crate::status::StatusCode;

/// Builds a response: Via (all values, in order), From, Call-ID and CSeq copied; To copied and,
/// when `to_tag` is given and the request's To has no tag, a tag added. A 100 Trying also
/// copies Timestamp (§8.2.6.1). The reason phrase is the default one.
pub fn build_response(req: &Request, status: StatusCode, to_tag: Option<&str>) -> Response {
    let mut headers = Headers::with_capacity(8);
    for h in &req.headers {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                headers.push(h.name.clone(), h.value.clone());
            }
            HeaderName::To => {
                let mut value = h.value.clone();
                if let Some(tag) = to_tag {
                    let has_tag = req.headers.to_header().ok().flatten().is_some_and(|t| t.tag().is_some());
                    if !has_tag {
                        value.push_str(";tag=");
                        value.push_str(tag);
                    }
                }
                headers.push(HeaderName::To, value);
            }
            HeaderName::Timestamp if status == StatusCode::TRYING => {
                headers.push(HeaderName::Timestamp, h.value.clone());
            }
            _ => {}
        }
    }
    let mut resp = Response::new(status);
    resp.headers = headers;
    resp
}
