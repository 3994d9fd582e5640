//! `Invite::decode` on text a user pastes: the input as (lossy UTF-8) text,
//! the input base64url-encoded after the `cladnet1.` prefix, and the input
//! with its correct checksum appended and encoded the same way, so the JSON
//! parser sees arbitrary payloads. Nothing may panic, and any invite that
//! decodes must re-encode to a token that decodes to the same invite.
//!
//! One exception, by design: serde also reads a struct from a JSON array
//! (`["<network>", "<authority>", ...]`), which `encode` never writes. A
//! token of that form just under `MAX_TOKEN` re-encodes (with field names)
//! to more than `MAX_TOKEN`, which `decode` refuses
//! (regressions/token_decode/array-form-over-max-token.bin). Real invites
//! stay far below the limit (the agent fills `addrs` with its record's
//! control endpoints: at most `MAX_CONTROL` UDP endpoints), so an
//! over-long re-encoding must be refused as `Malformed` and is otherwise
//! skipped.

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use federation::contact::MAX_TOKEN;
use federation::token::{Invite, TokenError, PREFIX};
use libfuzzer_sys::fuzz_target;

fn check(text: &str) {
    if let Ok(invite) = Invite::decode(text) {
        let again = invite.encode();
        if again.len() > MAX_TOKEN {
            assert_eq!(Invite::decode(&again), Err(TokenError::Malformed));
            return;
        }
        assert_eq!(
            Invite::decode(&again).as_ref(),
            Ok(&invite),
            "re-encoded invite does not decode to itself: {again}"
        );
        // Surrounding whitespace is ignored.
        assert_eq!(Invite::decode(&format!("\n {again} \r\n")).as_ref(), Ok(&invite));
    }
}

fuzz_target!(|data: &[u8]| {
    check(&String::from_utf8_lossy(data));
    check(&format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(data)));
    let mut payload = data.to_vec();
    payload.extend_from_slice(&federation::contact::checksum(federation::token::CHECKSUM_DOMAIN, data));
    check(&format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&payload)));
});
