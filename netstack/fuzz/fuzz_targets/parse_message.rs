//! `wire::parse` on arbitrary bytes: never panics, accepts exactly the
//! datagrams a reference classifier accepts, and every view it returns is a
//! consistent window onto the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::wire::{self, Message};

fn le32(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// Independent statement of the format: which type tag a datagram must parse as.
fn expected(d: &[u8]) -> Option<u8> {
    if d.len() < 4 || d[1] != 0 || d[2] != 0 || d[3] != 0 {
        return None;
    }
    match d[0] {
        1 if d.len() == 148 => Some(1),
        2 if d.len() == 92 => Some(2),
        3 if d.len() == 64 => Some(3),
        4 if d.len() >= 32 => Some(4),
        _ => None,
    }
}

/// True if `inner` is exactly `outer[at..at + inner.len()]` (same memory).
fn window(outer: &[u8], inner: &[u8], at: usize, len: usize) -> bool {
    inner.len() == len && std::ptr::eq(inner.as_ptr(), outer[at..].as_ptr())
}

fuzz_target!(|data: &[u8]| {
    let parsed = wire::parse(data);
    let want = expected(data);
    match parsed {
        Err(e) => {
            assert_eq!(want, None, "rejected a well-formed datagram: {e:?}");
            assert_eq!(e, netstack::Error::Malformed);
        }
        Ok(Message::Initiation(m)) => {
            assert_eq!(want, Some(wire::TYPE_INITIATION));
            assert_eq!(m.raw.len(), wire::INITIATION_LEN);
            assert!(window(data, m.raw, 0, data.len()));
            assert_eq!(m.sender, le32(data, 4));
            assert!(window(data, m.noise, 8, wire::INITIATION_NOISE_LEN));
            // The Noise part ends where mac1 starts; mac1 and mac2 fill the rest.
            assert_eq!(8 + m.noise.len(), wire::INITIATION_MAC1_OFFSET);
            assert_eq!(wire::INITIATION_MAC1_OFFSET + 32, m.raw.len());
        }
        Ok(Message::Response(m)) => {
            assert_eq!(want, Some(wire::TYPE_RESPONSE));
            assert_eq!(m.raw.len(), wire::RESPONSE_LEN);
            assert!(window(data, m.raw, 0, data.len()));
            assert_eq!(m.sender, le32(data, 4));
            assert_eq!(m.receiver, le32(data, 8));
            assert!(window(data, m.noise, 12, wire::RESPONSE_NOISE_LEN));
            assert_eq!(12 + m.noise.len(), wire::RESPONSE_MAC1_OFFSET);
            assert_eq!(wire::RESPONSE_MAC1_OFFSET + 32, m.raw.len());
        }
        Ok(Message::CookieReply(m)) => {
            assert_eq!(want, Some(wire::TYPE_COOKIE_REPLY));
            assert_eq!(data.len(), wire::COOKIE_REPLY_LEN);
            assert_eq!(m.receiver, le32(data, 4));
            assert!(window(data, m.nonce, 8, 24));
            assert!(window(data, m.cookie, 32, 32));
        }
        Ok(Message::Data(m)) => {
            assert_eq!(want, Some(wire::TYPE_DATA));
            assert!(data.len() >= wire::DATA_MIN_LEN);
            assert_eq!(m.receiver, le32(data, 4));
            let mut c = [0u8; 8];
            c.copy_from_slice(&data[8..16]);
            assert_eq!(m.counter, u64::from_le_bytes(c));
            assert!(window(
                data,
                m.sealed,
                wire::DATA_HEADER_LEN,
                data.len() - wire::DATA_HEADER_LEN
            ));
            assert!(m.sealed.len() >= wire::TAG_LEN);
        }
    }
});
