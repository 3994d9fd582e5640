//! Fake time for sans-IO tests: one origin read from the clock, after
//! which a test moves time itself (the code under test never reads it).

use std::time::Instant;

/// The instant a fake-time test starts from.
pub fn origin() -> Instant {
    Instant::now()
}
