//! The PROTOS c07-sip test material (University of Oulu, GPL-2): 4,527 INVITE cases, each a
//! file of two records `<decimal length> <bytes>` (the INVITE, then its teardown request),
//! with placeholders that the original Java sender filled in before sending.

use std::io::Read;

use crate::{TestdataError, root};

/// Number of cases in c07-sip-r2 (0000000 is the valid one).
pub const PROTOS_CASE_COUNT: usize = 4527;

/// Values substituted for the placeholders (README.TXT / PROVENANCE.txt of the corpus).
/// `<Content-Length>` is always computed from the filled body and `<Call-ID>` from the case
/// number, so that every case is a distinct call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtosFill {
    /// `<To>`: user@host of the target (appears as `sip:<To>`).
    pub to: String,
    /// `<From>`: user@host of the sender.
    pub from: String,
    /// `<From-Address>`: the sender's host in Via, Call-ID and SDP `o=`.
    pub from_address: String,
    /// `<From-IP>`: the sender's IP in SDP `c=`.
    pub from_ip: String,
    /// `<Local-Port>`: the sender's port in Via.
    pub local_port: u16,
    /// `<CSeq>`: the sequence number of both requests.
    pub cseq: u32,
    /// `<Branch-ID>`: appended to the per-case branch prefix.
    pub branch_id: String,
    /// `<Teardown-Method>`: the method of the second record (CANCEL ends the INVITE).
    pub teardown_method: String,
}

impl Default for ProtosFill {
    fn default() -> ProtosFill {
        ProtosFill {
            to: "bob@pbx.example.com".to_owned(),
            from: "protos@192.0.2.10".to_owned(),
            from_address: "192.0.2.10".to_owned(),
            from_ip: "192.0.2.10".to_owned(),
            local_port: 5060,
            cseq: 1,
            branch_id: "a1".to_owned(),
            teardown_method: "CANCEL".to_owned(),
        }
    }
}

/// One PROTOS case with placeholders filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtosCase {
    /// The case number (0 is the valid INVITE).
    pub index: u32,
    /// The (mutated) INVITE.
    pub invite: Vec<u8>,
    /// The teardown request that followed it.
    pub teardown: Vec<u8>,
}

/// All 4,527 cases in case order, with [`ProtosFill::default`] values.
pub fn protos_cases() -> Result<Vec<ProtosCase>, TestdataError> {
    protos_cases_with(&ProtosFill::default())
}

/// All cases in case order, filled with `fill`.
pub fn protos_cases_with(fill: &ProtosFill) -> Result<Vec<ProtosCase>, TestdataError> {
    let path = root().join("protos-c07-sip-r2").join("testcases.tar.gz");
    let io_err = |source| TestdataError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(io_err)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut cases = Vec::with_capacity(PROTOS_CASE_COUNT);
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(io_err)?.to_string_lossy().into_owned();
        let Some(index) = name.rsplit('/').next().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let mut raw = Vec::new();
        entry.read_to_end(&mut raw).map_err(io_err)?;
        let (invite, rest) = split_record(&raw, &name)?;
        let (teardown, _) = split_record(rest, &name)?;
        let call_id = format!("protos-c07-{index:07}");
        cases.push(ProtosCase {
            index,
            invite: fill_placeholders(invite, fill, &call_id),
            teardown: fill_placeholders(teardown, fill, &call_id),
        });
    }
    cases.sort_by_key(|c| c.index);
    if cases.len() != PROTOS_CASE_COUNT {
        return Err(TestdataError::Incomplete {
            what: "protos-c07-sip-r2",
            found: cases.len(),
            expected: PROTOS_CASE_COUNT,
        });
    }
    Ok(cases)
}

/// Cuts one `<decimal length> <bytes>` record off the front of `data`.
fn split_record<'a>(data: &'a [u8], name: &str) -> Result<(&'a [u8], &'a [u8]), TestdataError> {
    let bad = |reason| TestdataError::ProtosFormat {
        name: name.to_owned(),
        reason,
    };
    let space = data
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| bad("no length prefix"))?;
    let len: usize = std::str::from_utf8(&data[..space])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("length prefix is not a decimal number"))?;
    let start = space + 1;
    let end = start
        .checked_add(len)
        .filter(|&e| e <= data.len())
        .ok_or_else(|| bad("record shorter than its length"))?;
    Ok((&data[start..end], &data[end..]))
}

/// Replaces every placeholder. `<Content-Length>` becomes the length of the filled body
/// (the bytes after the first blank line, 0 when a mutation removed the blank line), as the
/// PROTOS sender did, so that framing errors are only the ones the case meant to test.
fn fill_placeholders(template: &[u8], fill: &ProtosFill, call_id: &str) -> Vec<u8> {
    let port = fill.local_port.to_string();
    let cseq = fill.cseq.to_string();
    let pairs: [(&[u8], &[u8]); 9] = [
        (b"<To>", fill.to.as_bytes()),
        (b"<From>", fill.from.as_bytes()),
        (b"<From-Address>", fill.from_address.as_bytes()),
        (b"<From-IP>", fill.from_ip.as_bytes()),
        (b"<Local-Port>", port.as_bytes()),
        (b"<CSeq>", cseq.as_bytes()),
        (b"<Branch-ID>", fill.branch_id.as_bytes()),
        (b"<Call-ID>", call_id.as_bytes()),
        (b"<Teardown-Method>", fill.teardown_method.as_bytes()),
    ];
    let mut filled = replace_all(template, &pairs);
    const CL: &[u8] = b"<Content-Length>";
    if find(&filled, CL).is_some() {
        // Measure the body with the placeholder removed (it sits in the head), then substitute.
        let without = replace_all(&filled, &[(CL, b"")]);
        let body_len = find(&without, b"\r\n\r\n").map_or(0, |i| without.len() - (i + 4));
        let body_len = body_len.to_string();
        filled = replace_all(&filled, &[(CL, body_len.as_bytes())]);
    }
    filled
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Single left-to-right pass replacing any of the `pairs` patterns (first match wins).
fn replace_all(input: &[u8], pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 64);
    let mut i = 0;
    'outer: while i < input.len() {
        if input[i] == b'<' {
            for (pat, rep) in pairs {
                if input[i..].starts_with(pat) {
                    out.extend_from_slice(rep);
                    i += pat.len();
                    continue 'outer;
                }
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_on_their_length_prefix() {
        let data = b"3 abc4 defgX";
        let (a, rest) = split_record(data, "t").unwrap();
        let (b, rest) = split_record(rest, "t").unwrap();
        assert_eq!((a, b, rest), (&b"abc"[..], &b"defg"[..], &b"X"[..]));
        assert!(split_record(b"9 abc", "t").is_err());
        assert!(split_record(b"x abc", "t").is_err());
    }

    #[test]
    fn content_length_counts_the_filled_body() {
        let t = b"INVITE sip:<To> SIP/2.0\r\nl: <Content-Length>\r\n\r\nc=IN IP4 <From-IP>\r\n";
        let filled = fill_placeholders(t, &ProtosFill::default(), "c1");
        let text = String::from_utf8(filled).unwrap();
        let body = "c=IN IP4 192.0.2.10\r\n";
        assert!(text.contains(&format!("l: {}\r\n", body.len())), "{text}");
        assert!(text.starts_with("INVITE sip:bob@pbx.example.com SIP/2.0"));
        assert!(text.ends_with(body));
    }
}
