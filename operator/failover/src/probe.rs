//! Health probing, the I/O that feeds the planner: SIP OPTIONS over UDP to each datacenter's
//! edge addresses, HTTP GET of each service's `/readyz`, and an HTTP GET of the witness. One
//! round probes everything concurrently, each probe bounded by the round's timeout, and
//! returns one [`HealthObservation`] per datacenter stamped with the time the round ended.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sip_msg::{HeaderName, SipMessage, parse_datagram};
use tokio::net::UdpSocket;

use crate::planner::{HealthObservation, Witness};

/// What to probe in one serving datacenter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatacenterTargets {
    pub name: String,
    /// Addresses phones use for its edges (answering OPTIONS).
    pub sip: Vec<SocketAddr>,
    /// One `/readyz` URL per service (behind its load balancer).
    pub readyz: Vec<String>,
}

/// Why a `--datacenter` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetsError {
    /// No `NAME=` before the targets.
    #[error("{0:?} is not NAME=sip:IP:PORT[,readyz:URL…]")]
    NoName(String),
    /// A target is neither `sip:` nor `readyz:`.
    #[error("{0:?} is neither sip:IP:PORT nor readyz:URL")]
    UnknownTarget(String),
    /// A `sip:` address is not IP:PORT.
    #[error("{0:?} is not IP:PORT")]
    BadAddress(String),
    /// A `readyz:` URL is not http(s).
    #[error("{0:?} is not an http:// or https:// URL")]
    BadUrl(String),
    /// No `sip:` target: the datacenter could never be healthy.
    #[error("datacenter {0:?} has no sip: address")]
    NoSipAddress(String),
}

impl FromStr for DatacenterTargets {
    type Err = TargetsError;

    /// `NAME=sip:IP:PORT[,sip:IP:PORT…][,readyz:URL…]`.
    fn from_str(s: &str) -> Result<DatacenterTargets, TargetsError> {
        let (name, targets) = s
            .split_once('=')
            .filter(|(name, _)| !name.trim().is_empty())
            .ok_or_else(|| TargetsError::NoName(s.to_owned()))?;
        let mut parsed = DatacenterTargets {
            name: name.trim().to_owned(),
            sip: Vec::new(),
            readyz: Vec::new(),
        };
        for target in targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some(address) = target.strip_prefix("sip:") {
                let address = address
                    .parse()
                    .map_err(|_| TargetsError::BadAddress(address.to_owned()))?;
                parsed.sip.push(address);
            } else if let Some(url) = target.strip_prefix("readyz:") {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(TargetsError::BadUrl(url.to_owned()));
                }
                parsed.readyz.push(url.to_owned());
            } else {
                return Err(TargetsError::UnknownTarget(target.to_owned()));
            }
        }
        if parsed.sip.is_empty() {
            return Err(TargetsError::NoSipAddress(parsed.name));
        }
        Ok(parsed)
    }
}

/// One probe round's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observations {
    pub datacenters: Vec<HealthObservation>,
    pub witness: Witness,
}

/// Where observations come from: the [`Prober`], or a script in tests.
#[async_trait]
pub trait HealthSource: Send + Sync + std::fmt::Debug {
    /// One round; returns within the source's own bound.
    async fn observe(&self) -> Observations;
}

/// The network prober.
#[derive(Debug, Clone)]
pub struct Prober {
    datacenters: Vec<DatacenterTargets>,
    witness: Option<String>,
    timeout: Duration,
    http: reqwest::Client,
}

impl Prober {
    /// Probes `datacenters` (and the witness URL, if any), each probe bounded by `timeout`.
    pub fn new(
        datacenters: Vec<DatacenterTargets>,
        witness: Option<String>,
        timeout: Duration,
    ) -> Prober {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        Prober {
            datacenters,
            witness,
            timeout,
            http,
        }
    }

    async fn observe_datacenter(&self, targets: &DatacenterTargets) -> HealthObservation {
        let edges = futures::future::join_all(
            targets
                .sip
                .iter()
                .map(|address| sip_options(*address, self.timeout)),
        );
        let services = futures::future::join_all(
            targets
                .readyz
                .iter()
                .map(|url| http_ok(&self.http, url, self.timeout)),
        );
        let (edges, services) = tokio::join!(edges, services);
        HealthObservation {
            datacenter: targets.name.clone(),
            observed_at: tokio::time::Instant::now().into_std(),
            edges_answering: count(&edges),
            edges: count_all(&edges),
            services_ready: count(&services),
            services: count_all(&services),
        }
    }
}

fn count(results: &[bool]) -> u32 {
    u32::try_from(results.iter().filter(|ok| **ok).count()).unwrap_or(u32::MAX)
}

fn count_all(results: &[bool]) -> u32 {
    u32::try_from(results.len()).unwrap_or(u32::MAX)
}

#[async_trait]
impl HealthSource for Prober {
    async fn observe(&self) -> Observations {
        let datacenters = futures::future::join_all(
            self.datacenters
                .iter()
                .map(|targets| self.observe_datacenter(targets)),
        );
        let witness = async {
            match &self.witness {
                None => Witness::NotConfigured,
                Some(url) if http_ok(&self.http, url, self.timeout).await => Witness::Reachable,
                Some(_) => Witness::Unreachable,
            }
        };
        let (datacenters, witness) = tokio::join!(datacenters, witness);
        Observations {
            datacenters,
            witness,
        }
    }
}

/// True when `url` answers 2xx within `timeout`.
pub async fn http_ok(client: &reqwest::Client, url: &str, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, client.get(url).send()).await,
        Ok(Ok(response)) if response.status().is_success()
    )
}

/// True when the SIP server at `target` answers an OPTIONS with 2xx within `timeout` (the
/// request is retransmitted every 200 ms meanwhile, as UDP may lose one).
pub async fn sip_options(target: SocketAddr, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, options_exchange(target))
        .await
        .unwrap_or(false)
}

async fn options_exchange(target: SocketAddr) -> bool {
    let bind: SocketAddr = if target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let Ok(socket) = UdpSocket::bind(bind).await else {
        return false;
    };
    if socket.connect(target).await.is_err() {
        return false;
    }
    let Ok(local) = socket.local_addr() else {
        return false;
    };
    let id: u64 = rand::random();
    let call_id = format!("failover-probe-{id:016x}");
    let host = match target {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    };
    let request = format!(
        "OPTIONS sip:{host}:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-fo{id:016x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:failover@{host}>;tag=fo{id:08x}\r\n\
         To: <sip:{host}:{port}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         User-Agent: calanque-failover\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n",
        port = target.port(),
    );
    let mut buffer = vec![0u8; 65_535];
    loop {
        // A refused port (ICMP) shows up as an error on the connected socket: not healthy.
        if socket.send(request.as_bytes()).await.is_err() {
            return false;
        }
        let wait = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                received = socket.recv(&mut buffer) => {
                    let Ok(length) = received else { return false };
                    if let Ok(SipMessage::Response(response)) = parse_datagram(&buffer[..length])
                        && response.headers.get(&HeaderName::CallId) == Some(call_id.as_str())
                        && response.status.is_final()
                    {
                        return response.status.is_success();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datacenter_targets_parse_from_the_flag() {
        let parsed: DatacenterTargets =
            "dc-a=sip:127.0.0.1:5070,sip:[::1]:5071,readyz:http://127.0.0.1:9000/readyz"
                .parse()
                .unwrap();
        assert_eq!(parsed.name, "dc-a");
        assert_eq!(
            parsed.sip,
            vec![
                "127.0.0.1:5070".parse::<SocketAddr>().unwrap(),
                "[::1]:5071".parse().unwrap()
            ]
        );
        assert_eq!(parsed.readyz, vec!["http://127.0.0.1:9000/readyz"]);
        for (bad, error) in [
            (
                "sip:127.0.0.1:5070",
                TargetsError::NoName("sip:127.0.0.1:5070".into()),
            ),
            (
                "dc-a=readyz:http://x/readyz",
                TargetsError::NoSipAddress("dc-a".into()),
            ),
            ("dc-a=sip:nope", TargetsError::BadAddress("nope".into())),
            (
                "dc-a=sip:1.2.3.4:5,readyz:ftp://x",
                TargetsError::BadUrl("ftp://x".into()),
            ),
            (
                "dc-a=tcp:1.2.3.4:5",
                TargetsError::UnknownTarget("tcp:1.2.3.4:5".into()),
            ),
        ] {
            assert_eq!(bad.parse::<DatacenterTargets>(), Err(error), "{bad}");
        }
    }

    #[tokio::test]
    async fn options_to_a_closed_port_or_a_silent_socket_is_unhealthy_within_the_timeout() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(!sip_options(silent.local_addr().unwrap(), Duration::from_millis(300)).await);
        assert!(started.elapsed() < Duration::from_secs(1));
        let closed = silent.local_addr().unwrap();
        drop(silent);
        assert!(!sip_options(closed, Duration::from_millis(300)).await);
    }

    #[tokio::test]
    async fn options_answered_with_200_is_healthy_and_503_is_not() {
        for (status, healthy) in [("200 OK", true), ("503 Service Unavailable", false)] {
            let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let address = server.local_addr().unwrap();
            let answer = tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let (length, from) = server.recv_from(&mut buffer).await.unwrap();
                let request = String::from_utf8_lossy(&buffer[..length]).to_string();
                let call_id = request
                    .lines()
                    .find_map(|l| l.strip_prefix("Call-ID: "))
                    .unwrap()
                    .to_owned();
                let response = format!(
                    "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-x\r\n\
                     From: <sip:failover@127.0.0.1>;tag=a\r\nTo: <sip:127.0.0.1>;tag=b\r\n\
                     Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                );
                server.send_to(response.as_bytes(), from).await.unwrap();
            });
            assert_eq!(sip_options(address, Duration::from_secs(2)).await, healthy);
            answer.await.unwrap();
        }
    }
}
