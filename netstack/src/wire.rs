//! WireGuard message formats: sizes, type tags and zero-copy views over
//! received datagrams. Every parser checks lengths before touching bytes, so a
//! malformed datagram is an `Err`, never a panic.

use crate::Error;

/// Message type of a handshake initiation.
pub const TYPE_INITIATION: u8 = 1;
/// Message type of a handshake response.
pub const TYPE_RESPONSE: u8 = 2;
/// Message type of a cookie reply.
pub const TYPE_COOKIE_REPLY: u8 = 3;
/// Message type of transport data (and keepalives).
pub const TYPE_DATA: u8 = 4;

/// Length of a handshake initiation.
pub const INITIATION_LEN: usize = 148;
/// Length of a handshake response.
pub const RESPONSE_LEN: usize = 92;
/// Length of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Header of a transport data message: type, receiver index, counter.
pub const DATA_HEADER_LEN: usize = 16;
/// Length of the Poly1305 tag that follows every encrypted payload.
pub const TAG_LEN: usize = 16;
/// Smallest transport data message: an empty (keepalive) payload.
pub const DATA_MIN_LEN: usize = DATA_HEADER_LEN + TAG_LEN;
/// Bytes WireGuard adds to every inner packet, padding excluded.
pub const DATA_OVERHEAD: usize = DATA_MIN_LEN;

/// Offset of mac1 in an initiation (everything before it is covered by mac1).
pub const INITIATION_MAC1_OFFSET: usize = 116;
/// Offset of mac1 in a response.
pub const RESPONSE_MAC1_OFFSET: usize = 60;
/// Length of the Noise part of an initiation (ephemeral, static, timestamp).
pub const INITIATION_NOISE_LEN: usize = 108;
/// Length of the Noise part of a response (ephemeral, empty).
pub const RESPONSE_NOISE_LEN: usize = 48;

/// A parsed view of one datagram received on the WireGuard socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Type 1: a peer starts a handshake.
    Initiation(Initiation<'a>),
    /// Type 2: a peer answers our initiation.
    Response(Response<'a>),
    /// Type 3: a peer under load asks us to retry with a cookie.
    CookieReply(CookieReply<'a>),
    /// Type 4: encrypted transport data.
    Data(Data<'a>),
}

/// View of a handshake initiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initiation<'a> {
    /// The initiator's session index.
    pub sender: u32,
    /// Ephemeral key, encrypted static key and encrypted timestamp.
    pub noise: &'a [u8],
    /// The whole message, for mac verification.
    pub raw: &'a [u8],
}

/// View of a handshake response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The responder's session index.
    pub sender: u32,
    /// Our session index, as sent in the initiation.
    pub receiver: u32,
    /// Ephemeral key and encrypted empty payload.
    pub noise: &'a [u8],
    /// The whole message, for mac verification.
    pub raw: &'a [u8],
}

/// View of a cookie reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieReply<'a> {
    /// Our session index from the message that drew the reply.
    pub receiver: u32,
    /// XChaCha20 nonce.
    pub nonce: &'a [u8],
    /// Encrypted cookie and tag.
    pub cookie: &'a [u8],
}

/// View of a transport data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a> {
    /// Our session index.
    pub receiver: u32,
    /// The sender's message counter (the AEAD nonce).
    pub counter: u64,
    /// Encrypted payload followed by the tag.
    pub sealed: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Parses a datagram into a message view; checks type, reserved bytes and length.
pub fn parse(datagram: &[u8]) -> Result<Message<'_>, Error> {
    if datagram.len() < 4 || datagram[1..4] != [0, 0, 0] {
        return Err(Error::Malformed);
    }
    let d = datagram;
    match (d[0], d.len()) {
        (TYPE_INITIATION, INITIATION_LEN) => Ok(Message::Initiation(Initiation {
            sender: u32_at(d, 4),
            noise: &d[8..8 + INITIATION_NOISE_LEN],
            raw: d,
        })),
        (TYPE_RESPONSE, RESPONSE_LEN) => Ok(Message::Response(Response {
            sender: u32_at(d, 4),
            receiver: u32_at(d, 8),
            noise: &d[12..12 + RESPONSE_NOISE_LEN],
            raw: d,
        })),
        (TYPE_COOKIE_REPLY, COOKIE_REPLY_LEN) => Ok(Message::CookieReply(CookieReply {
            receiver: u32_at(d, 4),
            nonce: &d[8..32],
            cookie: &d[32..64],
        })),
        (TYPE_DATA, n) if n >= DATA_MIN_LEN => Ok(Message::Data(Data {
            receiver: u32_at(d, 4),
            counter: u64_at(d, 8),
            sealed: &d[DATA_HEADER_LEN..],
        })),
        _ => Err(Error::Malformed),
    }
}

/// Writes the 4-byte type tag and a little-endian index at `out[4..8]`.
pub(crate) fn write_header(out: &mut [u8], kind: u8, sender: u32) {
    out[..4].copy_from_slice(&[kind, 0, 0, 0]);
    out[4..8].copy_from_slice(&sender.to_le_bytes());
}

/// Writes a transport data header (type 4, receiver index, counter).
pub(crate) fn write_data_header(out: &mut [u8], receiver: u32, counter: u64) {
    write_header(out, TYPE_DATA, receiver);
    out[8..16].copy_from_slice(&counter.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_lengths_and_reserved_bytes() {
        assert_eq!(parse(&[]), Err(Error::Malformed));
        assert_eq!(parse(&[1, 0, 0]), Err(Error::Malformed));
        assert_eq!(parse(&[1u8; INITIATION_LEN]), Err(Error::Malformed));
        let mut init = [0u8; INITIATION_LEN];
        init[0] = TYPE_INITIATION;
        assert!(matches!(parse(&init), Ok(Message::Initiation(_))));
        assert_eq!(parse(&init[..INITIATION_LEN - 1]), Err(Error::Malformed));
        let mut data = [0u8; DATA_MIN_LEN - 1];
        data[0] = TYPE_DATA;
        assert_eq!(parse(&data), Err(Error::Malformed));
    }

    #[test]
    fn data_fields_round_trip() {
        let mut buf = [0u8; DATA_MIN_LEN + 5];
        write_data_header(&mut buf, 0xdead_beef, 7);
        match parse(&buf) {
            Ok(Message::Data(d)) => {
                assert_eq!(
                    (d.receiver, d.counter, d.sealed.len()),
                    (0xdead_beef, 7, 21)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
