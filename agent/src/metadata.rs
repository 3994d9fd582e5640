//! `--advertise auto`: the public IPv4 address a cloud's instance metadata
//! service (at 169.254.169.254) reports for this VM. AWS (IMDSv2: a session
//! token first), GCE, Azure and OpenStack (the EC2-compatible path) are
//! asked at once; the first valid answer wins, and nothing waits longer
//! than [`TIMEOUT`].

use std::io::Read;
use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the metadata services get, all together.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Where every cloud serves its metadata.
const BASE: &str = "http://169.254.169.254";
/// Longest answer read (an address is at most 15 bytes).
const MAX_ANSWER: u64 = 64;

/// What a metadata service said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The VM's public IPv4 address.
    pub ip: Ipv4Addr,
    /// Which service said so.
    pub service: &'static str,
}

type Ask = fn(&ureq::Agent, &str) -> Option<Ipv4Addr>;

/// The services, each with how to ask it.
const SERVICES: [(&str, Ask); 4] = [
    ("AWS IMDSv2", aws),
    ("GCE", gce),
    ("Azure", azure),
    ("OpenStack", openstack),
];

fn address(response: ureq::Response) -> Option<Ipv4Addr> {
    let mut text = String::new();
    response
        .into_reader()
        .take(MAX_ANSWER)
        .read_to_string(&mut text)
        .ok()?;
    let ip: Ipv4Addr = text.trim().parse().ok()?;
    (!ip.is_unspecified() && !ip.is_loopback() && !ip.is_link_local()).then_some(ip)
}

fn aws(agent: &ureq::Agent, base: &str) -> Option<Ipv4Addr> {
    let token = agent
        .put(&format!("{base}/latest/api/token"))
        .set("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .call()
        .ok()?;
    let mut secret = String::new();
    token
        .into_reader()
        .take(4096)
        .read_to_string(&mut secret)
        .ok()?;
    let r = agent
        .get(&format!("{base}/latest/meta-data/public-ipv4"))
        .set("X-aws-ec2-metadata-token", secret.trim())
        .call()
        .ok()?;
    address(r)
}

fn gce(agent: &ureq::Agent, base: &str) -> Option<Ipv4Addr> {
    let path = "computeMetadata/v1/instance/network-interfaces/0/access-configs/0/external-ip";
    let r = agent
        .get(&format!("{base}/{path}"))
        .set("Metadata-Flavor", "Google")
        .call()
        .ok()?;
    address(r)
}

fn azure(agent: &ureq::Agent, base: &str) -> Option<Ipv4Addr> {
    let path = "metadata/instance/network/interface/0/ipv4/ipAddress/0/publicIpAddress";
    let r = agent
        .get(&format!("{base}/{path}?api-version=2021-02-01&format=text"))
        .set("Metadata", "true")
        .call()
        .ok()?;
    address(r)
}

fn openstack(agent: &ureq::Agent, base: &str) -> Option<Ipv4Addr> {
    let r = agent
        .get(&format!("{base}/latest/meta-data/public-ipv4"))
        .call()
        .ok()?;
    address(r)
}

/// Asks every service at once; the first public address reported, or the
/// sentence to show.
pub fn public_ipv4() -> Result<Found, String> {
    ask_all(BASE)
}

fn ask_all(base: &str) -> Result<Found, String> {
    let deadline = Instant::now() + TIMEOUT;
    let agent = ureq::AgentBuilder::new()
        .timeout(TIMEOUT)
        .redirects(0)
        .build();
    let (tx, rx) = mpsc::channel();
    for (service, ask) in SERVICES {
        let (agent, tx, base) = (agent.clone(), tx.clone(), base.to_string());
        // Detached: each ends by its own timeout; the answer is not waited
        // for past the deadline.
        std::thread::spawn(move || {
            let _ = tx.send(ask(&agent, &base).map(|ip| Found { ip, service }));
        });
    }
    drop(tx);
    let mut answered = 0;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => answered += 1,
            Err(_) => break,
        }
        if answered == SERVICES.len() {
            break;
        }
    }
    let names: Vec<&str> = SERVICES.iter().map(|(n, _)| *n).collect();
    Err(format!(
        "no cloud metadata service at 169.254.169.254 reported a public IPv4 address within {} s (asked {}): give the address with --advertise IP",
        TIMEOUT.as_secs(),
        names.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A metadata service of one flavour on a loopback port: answers
    /// `ip` to the GCE path with its header, 404 to everything else.
    fn gce_like(ip: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(8).flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push(line.to_ascii_lowercase());
                }
                let gce = head[0].contains("external-ip")
                    && head
                        .iter()
                        .any(|h| h.starts_with("metadata-flavor: google"));
                let (status, body) = if gce {
                    ("200 OK", ip)
                } else {
                    ("404 Not Found", "")
                };
                let mut s = stream;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        base
    }

    #[test]
    fn the_service_that_knows_answers_and_silence_is_said_in_one_sentence() {
        let found = ask_all(&gce_like("198.18.0.44")).unwrap();
        assert_eq!(found.ip, Ipv4Addr::new(198, 18, 0, 44));
        assert_eq!(found.service, "GCE");
        let err = ask_all(&gce_like("not an address")).unwrap_err();
        assert!(
            err.contains("--advertise IP") && err.lines().count() == 1,
            "{err}"
        );
    }
}
