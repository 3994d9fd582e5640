//! WireGuard wire messages for hostile-input tests: a real handshake
//! initiation builder (Noise_IKpsk2, mac1), random/truncated/typed junk,
//! capture of real datagrams (AF_PACKET inside a lab namespace) and a paced
//! UDP sender running inside a lab namespace.

use crate::lab::{Lab, Node, UNDERLAY_IF};
use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::ChaCha20Poly1305;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
const LABEL_MAC1: &[u8] = b"mac1----";

/// Size of a handshake initiation (type 1).
pub const INIT_LEN: usize = 148;
/// Size of a handshake response (type 2).
pub const RESPONSE_LEN: usize = 92;
/// Size of a cookie reply (type 3).
pub const COOKIE_LEN: usize = 64;
/// Minimum size of a transport message (type 4, empty payload = keepalive).
pub const TRANSPORT_MIN: usize = 32;

/// Decodes a base64 WireGuard key.
pub fn decode_key(b64: &str) -> Result<[u8; 32]> {
    let v = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .with_context(|| format!("bad base64 key {b64:?}"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("key is not 32 bytes"))
}

/// Encodes a key as base64.
pub fn encode_key(k: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// Public key of a private key.
pub fn public_key(private: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*private)).to_bytes()
}

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&hash(&[key]));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut inner = vec![ipad.as_slice()];
    inner.extend_from_slice(parts);
    let ih = hash(&inner);
    hash(&[&opad, &ih])
}

fn kdf2(key: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32]) {
    let t0 = hmac(key, &[input]);
    let t1 = hmac(&t0, &[&[1]]);
    let t2 = hmac(&t0, &[&t1, &[2]]);
    (t1, t2)
}

fn kdf1(key: &[u8; 32], input: &[u8]) -> [u8; 32] {
    kdf2(key, input).0
}

fn mac16(key: &[u8], data: &[u8]) -> [u8; 16] {
    // A 32-byte key is always accepted by BLAKE2s.
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("blake2s key ≤ 32 bytes");
    m.update(data);
    m.finalize().into_bytes().into()
}

fn aead_seal(key: &[u8; 32], plain: &[u8], ad: &[u8]) -> Vec<u8> {
    let c = ChaCha20Poly1305::new(key.into());
    let mut buf = plain.to_vec();
    let nonce = [0u8; 12];
    c.encrypt_in_place(&nonce.into(), ad, &mut buf)
        .expect("chacha20poly1305 seal cannot fail for small input");
    buf
}

/// TAI64N of now (what WireGuard puts in an initiation).
pub fn tai64n_now() -> [u8; 12] {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&(0x4000_0000_0000_000a_u64 + d.as_secs()).to_be_bytes());
    t[8..].copy_from_slice(&d.subsec_nanos().to_be_bytes());
    t
}

/// A precomputed initiator: the two DH results are reused, so building many
/// initiations is cheap (each gets its own sender index and timestamp).
pub struct Initiator {
    eph_public: [u8; 32],
    c_after_es: [u8; 32],
    k_es: [u8; 32],
    h_after_e: [u8; 32],
    s_public: [u8; 32],
    ss: [u8; 32],
    responder_public: [u8; 32],
}

impl Initiator {
    /// Initiator with static key `static_private`, ephemeral `eph_private`,
    /// towards `responder_public`.
    pub fn new(
        static_private: [u8; 32],
        eph_private: [u8; 32],
        responder_public: [u8; 32],
    ) -> Initiator {
        let s = x25519_dalek::StaticSecret::from(static_private);
        let e = x25519_dalek::StaticSecret::from(eph_private);
        let rp = x25519_dalek::PublicKey::from(responder_public);
        let eph_public = x25519_dalek::PublicKey::from(&e).to_bytes();
        let c = hash(&[CONSTRUCTION]);
        let h = hash(&[&c, IDENTIFIER]);
        let h = hash(&[&h, &responder_public]);
        let c = kdf1(&c, &eph_public);
        let h = hash(&[&h, &eph_public]);
        let es = e.diffie_hellman(&rp).to_bytes();
        let (c, k_es) = kdf2(&c, &es);
        Initiator {
            eph_public,
            c_after_es: c,
            k_es,
            h_after_e: h,
            s_public: x25519_dalek::PublicKey::from(&s).to_bytes(),
            ss: s.diffie_hellman(&rp).to_bytes(),
            responder_public,
        }
    }

    /// A complete, well-formed handshake initiation (type 1) with a valid
    /// mac1 and zero mac2.
    pub fn initiation(&self, sender_index: u32, timestamp: [u8; 12]) -> [u8; INIT_LEN] {
        let mut m = [0u8; INIT_LEN];
        m[0] = 1;
        m[4..8].copy_from_slice(&sender_index.to_le_bytes());
        m[8..40].copy_from_slice(&self.eph_public);
        let enc_static = aead_seal(&self.k_es, &self.s_public, &self.h_after_e);
        m[40..88].copy_from_slice(&enc_static);
        let h = hash(&[&self.h_after_e, &enc_static]);
        let (_c, k_ss) = kdf2(&self.c_after_es, &self.ss);
        let enc_ts = aead_seal(&k_ss, &timestamp, &h);
        m[88..116].copy_from_slice(&enc_ts);
        let mac1_key = hash(&[LABEL_MAC1, &self.responder_public]);
        let mac1 = mac16(&mac1_key, &m[..116]);
        m[116..132].copy_from_slice(&mac1);
        m
    }
}

/// Categories of hostile datagrams (see [`hostile_set`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hostile {
    /// Random bytes, random length 1..=1400.
    Garbage,
    /// A real (wrong-key) initiation cut short (1..147 bytes).
    TruncatedInit,
    /// Type 1 header, right length (148), random body.
    RandomInit,
    /// Type 2 header, right length (92), random body.
    RandomResponse,
    /// Type 3 header, right length (64), random body.
    RandomCookie,
    /// Type 4 header, valid length (32 + 16k), random index/counter/body.
    RandomTransport,
    /// A captured real datagram sent again (from another address).
    Replay,
    /// A well-formed initiation (valid mac1) from a static key the agent does not know.
    UnknownKeyInit,
}

/// Builds `counts` datagrams per category against an agent whose public key
/// is `agent_public`. `captured` feeds [`Hostile::Replay`] (cycled).
pub fn hostile_set(
    rng: &mut Rng,
    agent_public: [u8; 32],
    captured: &[Vec<u8>],
    counts: &[(Hostile, usize)],
) -> Result<Vec<(Hostile, Vec<u8>)>> {
    // A few unknown identities; each reuses its DH results (cheap to build).
    let initiators: Vec<Initiator> = (0..4)
        .map(|_| Initiator::new(rng.key(), rng.key(), agent_public))
        .collect();
    let mut out = Vec::new();
    for &(kind, n) in counts {
        for i in 0..n {
            let d = match kind {
                Hostile::Garbage => {
                    let len = rng.range(1, 1400);
                    rng.bytes(len)
                }
                Hostile::TruncatedInit => {
                    let full = initiators[i % initiators.len()]
                        .initiation(rng.next_u64() as u32, tai64n_now());
                    full[..rng.range(1, INIT_LEN - 1)].to_vec()
                }
                Hostile::RandomInit => typed(rng, 1, INIT_LEN),
                Hostile::RandomResponse => typed(rng, 2, RESPONSE_LEN),
                Hostile::RandomCookie => typed(rng, 3, COOKIE_LEN),
                Hostile::RandomTransport => {
                    let len = TRANSPORT_MIN + 16 * rng.range(0, 80);
                    typed(rng, 4, len)
                }
                Hostile::Replay => {
                    if captured.is_empty() {
                        bail!("no captured datagrams to replay");
                    }
                    captured[i % captured.len()].clone()
                }
                Hostile::UnknownKeyInit => initiators[i % initiators.len()]
                    .initiation(rng.next_u64() as u32, tai64n_now())
                    .to_vec(),
            };
            out.push((kind, d));
        }
    }
    // Interleave categories so no single kind arrives as one block.
    for i in (1..out.len()).rev() {
        let j = rng.range(0, i);
        out.swap(i, j);
    }
    Ok(out)
}

fn typed(rng: &mut Rng, ty: u8, len: usize) -> Vec<u8> {
    let mut v = rng.bytes(len);
    v[0] = ty;
    v[1] = 0;
    v[2] = 0;
    v[3] = 0;
    v
}

/// Sends every datagram from a fresh UDP socket inside `from`'s namespace to
/// `dst`, `burst` at a time with `pause` between bursts. Returns the number sent.
pub fn send_paced(
    lab: &Lab,
    from: &Node,
    dst: SocketAddrV4,
    datagrams: &[Vec<u8>],
    burst: usize,
    pause: Duration,
) -> Result<usize> {
    lab.in_netns(from, || -> Result<usize> {
        let sock = UdpSocket::bind("0.0.0.0:0").context("bind sender socket")?;
        let mut sent = 0;
        for chunk in datagrams.chunks(burst.max(1)) {
            sent += send_all(&sock, chunk, dst);
            std::thread::sleep(pause);
        }
        Ok(sent)
    })?
}

/// Sends every datagram from a fresh UDP socket inside `from`'s namespace to
/// `dst`, spread evenly over `over` (in bursts of 64, sleeping until each
/// burst is due; faster than the machine allows means as fast as it can).
/// Returns how many the kernel accepted and how long sending took.
pub fn send_spread(
    lab: &Lab,
    from: &Node,
    dst: SocketAddrV4,
    datagrams: &[Vec<u8>],
    over: Duration,
) -> Result<(usize, Duration)> {
    const BURST: usize = 64;
    lab.in_netns(from, || -> Result<(usize, Duration)> {
        let sock = UdpSocket::bind("0.0.0.0:0").context("bind sender socket")?;
        let t0 = Instant::now();
        let per = over.as_secs_f64() / datagrams.len().max(1) as f64;
        let mut sent = 0;
        for (i, chunk) in datagrams.chunks(BURST).enumerate() {
            let due = t0 + Duration::from_secs_f64(per * (i * BURST) as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            sent += send_all(&sock, chunk, dst);
        }
        Ok((sent, t0.elapsed()))
    })?
}

/// Sends each datagram of `chunk` to `dst`; returns how many the kernel
/// accepted. An ICMP error from an earlier datagram can surface as a send
/// error: each is retried once, then counted as not sent.
fn send_all(sock: &UdpSocket, chunk: &[Vec<u8>], dst: SocketAddrV4) -> usize {
    chunk
        .iter()
        .filter(|d| sock.send_to(d, dst).is_ok() || sock.send_to(d, dst).is_ok())
        .count()
}

/// Captures the UDP payloads of up to `max` IPv4 datagrams received on
/// `node`'s underlay interface addressed to `dst_ip:dst_port`, for at most
/// `timeout`. Runs an AF_PACKET socket inside the node's namespace.
pub fn capture_udp(
    lab: &Lab,
    node: &Node,
    dst_ip: Ipv4Addr,
    dst_port: u16,
    max: usize,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>> {
    lab.in_netns(node, || capture_here(dst_ip, dst_port, max, timeout))?
}

fn capture_here(
    dst_ip: Ipv4Addr,
    dst_port: u16,
    max: usize,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let proto = (libc::ETH_P_IP as u16).to_be();
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, owned descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ifname = std::ffi::CString::new(UNDERLAY_IF)?;
    // SAFETY: valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
    if ifindex == 0 {
        bail!("no {UNDERLAY_IF} in this namespace");
    }
    // SAFETY: zeroed sockaddr_ll is a valid bit pattern; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        bail!("bind AF_PACKET: {}", std::io::Error::last_os_error());
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: valid timeval for SO_RCVTIMEO.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while out.len() < max && Instant::now() < deadline {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n <= 0 {
            continue; // timeout (EAGAIN) or EINTR: loop is bounded by the deadline
        }
        let p = &buf[..n as usize];
        if p.len() < 28 || p[0] >> 4 != 4 || p[9] != 17 {
            continue;
        }
        let ihl = usize::from(p[0] & 0xf) * 4;
        let tot = usize::from(u16::from_be_bytes([p[2], p[3]]));
        if tot != p.len()
            || p.len() < ihl + 8
            || Ipv4Addr::new(p[16], p[17], p[18], p[19]) != dst_ip
        {
            continue; // not for us, or a GSO super-packet: skip
        }
        let u = &p[ihl..];
        if u16::from_be_bytes([u[2], u[3]]) != dst_port
            || usize::from(u16::from_be_bytes([u[4], u[5]])) != u.len()
        {
            continue;
        }
        out.push(u[8..].to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_blake2s_matches_rfc_style_vector() {
        // KDF outputs must be deterministic and distinct.
        let (a, b) = kdf2(&[7u8; 32], b"x");
        assert_ne!(a, b);
        assert_eq!(kdf2(&[7u8; 32], b"x"), (a, b));
    }

    #[test]
    fn initiation_layout() {
        let mut rng = Rng::new(1);
        let resp = public_key(&rng.key());
        let i = Initiator::new(rng.key(), rng.key(), resp);
        let m = i.initiation(0x01020304, tai64n_now());
        assert_eq!(m[0], 1);
        assert_eq!(&m[1..4], &[0, 0, 0]);
        assert_eq!(u32::from_le_bytes([m[4], m[5], m[6], m[7]]), 0x01020304);
        assert_eq!(&m[132..], &[0u8; 16]);
        assert_eq!(mac16(&hash(&[LABEL_MAC1, &resp]), &m[..116]), m[116..132]);
    }

    #[test]
    fn hostile_set_counts() -> Result<()> {
        let mut rng = Rng::new(2);
        let set = hostile_set(
            &mut rng,
            public_key(&[9u8; 32]),
            &[vec![4, 0, 0, 0]],
            &[
                (Hostile::Garbage, 10),
                (Hostile::TruncatedInit, 5),
                (Hostile::Replay, 3),
            ],
        )?;
        assert_eq!(set.len(), 18);
        assert!(set
            .iter()
            .all(|(k, d)| *k != Hostile::TruncatedInit || (d.len() < INIT_LEN && d[0] == 1)));
        Ok(())
    }
}
