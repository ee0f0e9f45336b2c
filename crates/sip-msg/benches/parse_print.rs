//! Parse + print cycles of the three messages a PBX handles most: an INVITE with SDP, the
//! 200 OK answering it, and a REGISTER; sip-msg first, then rsip 0.4 on the same bytes for
//! the ratio (ADR 0002). One iteration = one parse and one print.
//!
//! `cargo bench -p sip-msg --bench parse_print` (or `make bench` for the summary table).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const INVITE: &str = "INVITE sip:2001@pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.34:5060;branch=z9hG4bK-524287-1---b7c1a2e5f0d3c6a9;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:1001@192.0.2.34:5060;transport=udp>\r\n\
To: <sip:2001@pbx.example.com>\r\n\
From: \"Alice Martin\" <sip:1001@pbx.example.com>;tag=8f4b2c1d\r\n\
Call-ID: 5d8e2a1f-3c4b-4e6d-9a7b-0c1d2e3f4a5b\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, norefersub, timer\r\n\
User-Agent: Softphone 5.1.2 rv2.10.20\r\n\
Allow-Events: talk, hold, conference, refer\r\n\
Content-Length: 360\r\n\
\r\n\
v=0\r\n\
o=- 3912437411 3912437411 IN IP4 192.0.2.34\r\n\
s=softphone\r\n\
c=IN IP4 192.0.2.34\r\n\
t=0 0\r\n\
m=audio 50000 RTP/AVP 9 8 0 101\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=ssrc:1404281711 cname:a8f3b2c1d0e9f8a7\r\n\
a=label:audio-main\r\n\
a=x-note:benchmark\r\n";

const OK_200: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.34:5060;branch=z9hG4bK-524287-1---b7c1a2e5f0d3c6a9;rport=5060;received=192.0.2.34\r\n\
Record-Route: <sip:198.51.100.10;lr;ftag=8f4b2c1d>\r\n\
Contact: <sip:2001@192.0.2.77:5060>\r\n\
To: <sip:2001@pbx.example.com>;tag=as6f1c2d3e\r\n\
From: \"Alice Martin\" <sip:1001@pbx.example.com>;tag=8f4b2c1d\r\n\
Call-ID: 5d8e2a1f-3c4b-4e6d-9a7b-0c1d2e3f4a5b\r\n\
CSeq: 1 INVITE\r\n\
Server: calanque/0.1\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 189\r\n\
\r\n\
v=0\r\n\
o=calanque 1234 1235 IN IP4 198.51.100.20\r\n\
s=calanque\r\n\
c=IN IP4 198.51.100.20\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n";

const REGISTER: &str = "REGISTER sip:pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.34:5060;branch=z9hG4bK-524287-1---0a1b2c3d4e5f6a7b;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:1001@192.0.2.34:5060;transport=udp>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\"\r\n\
To: <sip:1001@pbx.example.com>\r\n\
From: <sip:1001@pbx.example.com>;tag=2a7c9e1b\r\n\
Call-ID: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\r\n\
CSeq: 2 REGISTER\r\n\
Expires: 3600\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Supported: replaces, outbound, path, gruu\r\n\
User-Agent: Softphone 5.1.2 rv2.10.20\r\n\
Authorization: Digest username=\"1001\",realm=\"pbx.example.com\",nonce=\"a1b2c3d4e5f60718\",uri=\"sip:pbx.example.com\",response=\"0123456789abcdef0123456789abcdef\",algorithm=MD5\r\n\
Content-Length: 0\r\n\
\r\n";

fn parse_print(c: &mut Criterion) {
    let mut group = c.benchmark_group("sip_msg_parse_print");
    group.throughput(Throughput::Elements(1));
    for (name, text) in [
        ("invite_sdp", INVITE),
        ("ok_200", OK_200),
        ("register", REGISTER),
    ] {
        let bytes = text.as_bytes();
        // Both parsers must accept the input, or the ratio compares different work.
        let parsed = sip_msg::parse_datagram(bytes).expect("the benchmark inputs parse");
        let body_start = text.find("\r\n\r\n").map_or(0, |i| i + 4);
        assert_eq!(
            parsed.body().len(),
            bytes.len() - body_start,
            "{name}: Content-Length"
        );
        assert!(
            rsip::SipMessage::try_from(bytes).is_ok(),
            "rsip must parse {name}"
        );
        group.bench_with_input(BenchmarkId::new("calanque", name), bytes, |b, bytes| {
            b.iter(|| {
                let msg = sip_msg::parse_datagram(black_box(bytes)).expect("parses");
                black_box(msg.to_bytes())
            })
        });
        group.bench_with_input(BenchmarkId::new("rsip", name), bytes, |b, bytes| {
            b.iter(|| {
                let msg = rsip::SipMessage::try_from(black_box(bytes)).expect("parses");
                black_box(msg.to_string())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse_print);
criterion_main!(benches);
