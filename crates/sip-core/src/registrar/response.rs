//! §10.3 step 8: the 200 OK to a REGISTER.

use sip_msg::{HeaderName, Request, Response, StatusCode, build_response};

use super::{Binding, RegisterPlan};

/// The 200 OK listing every current binding of the AOR in one comma-separated Contact header
/// (as Kamailio does: test tools and old phones that read only the first Contact line still
/// see every binding), each with the seconds left at `now_unix` in `expires` and the binding's
/// `q`, `+sip.instance` and `reg-id`.
/// The request's Path values are echoed (RFC 3327 §5.3). No Date header: it would need a
/// wall clock here.
pub fn ok_response(
    req: &Request,
    plan: &RegisterPlan,
    now_unix: u64,
    to_tag: Option<&str>,
) -> Response {
    let mut response = build_response(req, StatusCode::OK, to_tag);
    let contacts: Vec<String> = plan
        .bindings_after
        .iter()
        .filter(|b| b.remaining(now_unix) > 0)
        .map(|b| contact_value(b, now_unix))
        .collect();
    if !contacts.is_empty() {
        response
            .headers
            .push(HeaderName::Contact, contacts.join(", "));
    }
    for path in req.headers.get_all(&HeaderName::Path) {
        response.headers.push(HeaderName::Path, path);
    }
    response
}

fn contact_value(binding: &Binding, now_unix: u64) -> String {
    let mut value = format!(
        "<{}>;expires={}",
        binding.contact,
        binding.remaining(now_unix)
    );
    if let Some(q) = binding.q {
        value.push_str(";q=");
        value.push_str(&format_q(q));
    }
    if let Some(instance) = &binding.instance {
        value.push_str(";+sip.instance=");
        value.push_str(instance);
    }
    if let Some(reg_id) = binding.reg_id {
        value.push_str(&format!(";reg-id={reg_id}"));
    }
    value
}

/// A qvalue from thousandths: `1`, `0`, `0.5`, `0.25`, `0.125`.
fn format_q(millis: u16) -> String {
    if millis >= 1000 {
        return "1".to_owned();
    }
    let frac = format!("{millis:03}");
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        "0".to_owned()
    } else {
        format!("0.{frac}")
    }
}
