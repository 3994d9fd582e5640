//! `OfferToken::decode` on text a user pastes (a federation offer): the
//! input as (lossy UTF-8) text, base64url-encoded after the `cladfed1.`
//! prefix, and with its correct checksum appended, so the JSON parser and
//! the signature checks see arbitrary payloads. Nothing may panic; an
//! offer that decodes verifies, and re-encodes to a token that decodes to
//! the same offer (unless the re-encoding is over `MAX_TOKEN`, which must
//! then be refused: serde also reads structs from JSON arrays, which
//! `encode` never writes).

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use federation::agreement::{AgreementError, OfferToken, OFFER_PREFIX};
use federation::contact::MAX_TOKEN;
use libfuzzer_sys::fuzz_target;

fn check(text: &str) {
    if let Ok(token) = OfferToken::decode(text) {
        assert_eq!(token.offer.check(), Ok(()));
        let again = token.encode();
        if again.len() > MAX_TOKEN {
            assert_eq!(OfferToken::decode(&again), Err(AgreementError::Malformed));
            return;
        }
        assert_eq!(OfferToken::decode(&again).as_ref(), Ok(&token));
    }
}

fuzz_target!(|data: &[u8]| {
    check(&String::from_utf8_lossy(data));
    check(&format!("{OFFER_PREFIX}{}", URL_SAFE_NO_PAD.encode(data)));
    let mut payload = data.to_vec();
    payload.extend_from_slice(&federation::contact::checksum(federation::agreement::CHECKSUM_DOMAIN, data));
    check(&format!("{OFFER_PREFIX}{}", URL_SAFE_NO_PAD.encode(&payload)));
});
