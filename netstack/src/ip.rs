//! Just enough of IPv4/IPv6 headers to route a packet: addresses and length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn v4(b: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
}

fn v6(b: &[u8], at: usize) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    IpAddr::V6(Ipv6Addr::from(a))
}

/// Destination address of an IP packet, if it has a complete header.
pub fn destination(p: &[u8]) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => Some(v4(p, 16)),
        6 if p.len() >= 40 => Some(v6(p, 24)),
        _ => None,
    }
}

/// Source address and total length of an IP packet whose header is complete
/// and whose length fits in `p` (padding after it is allowed).
pub fn source_and_len(p: &[u8]) -> Option<(IpAddr, usize)> {
    let (src, len) = match p.first()? >> 4 {
        4 if p.len() >= 20 => (v4(p, 12), usize::from(u16::from_be_bytes([p[2], p[3]]))),
        6 if p.len() >= 40 => (v6(p, 8), 40 + usize::from(u16::from_be_bytes([p[4], p[5]]))),
        _ => return None,
    };
    (len <= p.len() && len >= 20).then_some((src, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v4_and_v6_headers() {
        let mut p = [0u8; 28];
        p[0] = 0x45;
        p[3] = 28;
        p[12..16].copy_from_slice(&[100, 64, 0, 1]);
        p[16..20].copy_from_slice(&[100, 64, 0, 2]);
        assert_eq!(destination(&p), Some(IpAddr::from([100, 64, 0, 2])));
        assert_eq!(
            source_and_len(&p),
            Some((IpAddr::from([100, 64, 0, 1]), 28))
        );
        assert_eq!(source_and_len(&p[..27]), None, "length beyond the buffer");
        let mut q = [0u8; 48];
        q[0] = 0x60;
        q[5] = 8;
        q[8] = 0xfd;
        assert_eq!(source_and_len(&q).map(|(_, l)| l), Some(48));
        assert_eq!(destination(&[0x45; 10]), None);
    }
}
