//! `--advertise`: where this node's ports are reached from outside, as
//! the operator says (the public address of a cloud's 1:1 NAT, copied from
//! the console or known to orchestration) or as the cloud's metadata
//! service says (`auto`). `IP` means the listen ports on that address;
//! `IP:PORT` gives the data-plane (WireGuard) port, the control plane
//! keeps its listen port on that address.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// One `--advertise` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Advertise {
    /// This address, with this data-plane port (default: the listen port).
    At(IpAddr, Option<u16>),
    /// The public IPv4 the cloud's metadata service reports.
    Auto,
}

impl FromStr for Advertise {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "auto" {
            return Ok(Advertise::Auto);
        }
        let (ip, port) = match (s.parse::<SocketAddr>(), s.parse::<IpAddr>()) {
            (Ok(a), _) => (a.ip(), Some(a.port())),
            (_, Ok(ip)) => (ip, None),
            _ => {
                return Err(format!(
                    "{s:?} is not an address to advertise: give IP, IP:PORT ([IPv6]:PORT) or auto"
                ))
            }
        };
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || port == Some(0) {
            return Err(format!(
                "{s} cannot be advertised: give the address (and port) other nodes reach this node at"
            ));
        }
        Ok(Advertise::At(ip, port))
    }
}

impl fmt::Display for Advertise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Advertise::Auto => f.write_str("auto"),
            Advertise::At(ip, None) => write!(f, "{ip}"),
            Advertise::At(ip, Some(port)) => write!(f, "{}", SocketAddr::new(*ip, *port)),
        }
    }
}

impl TryFrom<String> for Advertise {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Advertise> for String {
    fn from(a: Advertise) -> String {
        a.to_string()
    }
}

/// The data-plane and control-plane endpoints `list` stands for, with the
/// sockets bound at `listen` and `control`, and `auto` the address the
/// metadata service gave (if any): duplicates removed, order kept.
pub fn endpoints(
    list: &[Advertise],
    auto: Option<IpAddr>,
    listen: SocketAddr,
    control: SocketAddr,
) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let (mut data, mut ctl) = (Vec::new(), Vec::new());
    for a in list {
        let (ip, port) = match *a {
            Advertise::At(ip, port) => (ip, port),
            Advertise::Auto => match auto {
                Some(ip) => (ip, None),
                None => continue,
            },
        };
        let d = SocketAddr::new(ip, port.unwrap_or(listen.port()));
        let c = SocketAddr::new(ip, control.port());
        if !data.contains(&d) {
            data.push(d);
        }
        if !ctl.contains(&c) {
            ctl.push(c);
        }
    }
    (data, ctl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_print_and_give_both_planes_endpoints() {
        let a: Advertise = "198.18.0.7".parse().unwrap();
        let b: Advertise = "198.18.0.8:4500".parse().unwrap();
        assert_eq!("auto".parse::<Advertise>(), Ok(Advertise::Auto));
        assert_eq!(b.to_string(), "198.18.0.8:4500");
        for bad in [
            "",
            "example.com",
            "0.0.0.0",
            "127.0.0.1",
            "198.18.0.1:0",
            "1.2.3.4:99999",
        ] {
            let err = bad.parse::<Advertise>().unwrap_err();
            assert!(
                err.contains(bad) && err.lines().count() == 1,
                "{bad}: {err}"
            );
        }
        let listen = "0.0.0.0:51820".parse().unwrap();
        let control = "0.0.0.0:51821".parse().unwrap();
        let found = Some("198.18.0.9".parse().unwrap());
        let (data, ctl) = endpoints(&[a, b, Advertise::Auto, a], found, listen, control);
        let s = |v: &[SocketAddr]| v.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        assert_eq!(
            s(&data),
            ["198.18.0.7:51820", "198.18.0.8:4500", "198.18.0.9:51820"]
        );
        assert_eq!(
            s(&ctl),
            ["198.18.0.7:51821", "198.18.0.8:51821", "198.18.0.9:51821"]
        );
        let (data, _) = endpoints(&[Advertise::Auto], None, listen, control);
        assert!(
            data.is_empty(),
            "auto with nothing found advertises nothing"
        );
        let json = serde_json::to_string(&vec![a, Advertise::Auto]).unwrap();
        assert_eq!(json, r#"["198.18.0.7","auto"]"#);
        assert!(serde_json::from_str::<Advertise>(r#""nonsense""#).is_err());
    }
}
