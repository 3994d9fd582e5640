//! Endpoint echo messages (`netstack::echo`) from arbitrary bytes: parsing
//! never panics, nothing random authenticates, and whatever parses is
//! re-encoded to a message that parses to the same thing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::echo::{self, Message};

const KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let Some(m) = echo::parse(data) else {
        return;
    };
    assert!(!echo::authentic(data, &KEY), "random bytes authenticated");
    let again = match m {
        Message::Request { asker, nonce, len } => echo::request(&asker, nonce, &KEY, len),
        Message::Reply {
            answerer,
            nonce,
            seen,
            len,
        } => echo::reply(&answerer, nonce, seen, len, &KEY).to_vec(),
    };
    assert!(echo::authentic(&again, &KEY));
    assert_eq!(echo::parse(&again), Some(m));
});
