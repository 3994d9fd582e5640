//! Hex text for keys and ids in JSON bodies and CLI output, and a serde
//! adapter for fixed-size byte arrays.

/// Lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses exactly `N` bytes of hex; `None` on any other input.
pub fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// `#[serde(with = "crate::hex::array")]` for `[u8; N]` fields.
pub mod array {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Writes the bytes as hex text.
    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(v))
    }

    /// Reads hex text of exactly N bytes.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        super::decode(&s).ok_or_else(|| D::Error::custom(format!("expected {} hex digits", 2 * N)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn roundtrip_and_rejects() {
        assert_eq!(
            super::decode::<2>(&super::encode(&[0xab, 0x01])),
            Some([0xab, 0x01])
        );
        assert_eq!(super::decode::<2>("abc"), None);
        assert_eq!(super::decode::<1>("zz"), None);
        assert_eq!(super::decode::<1>("é"), None);
    }
}
