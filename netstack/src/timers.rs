//! WireGuard's protocol constants (whitepaper §6.1 and §6.4).

use std::time::Duration;

/// Start a new handshake after this many messages on a session.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Never send or accept more messages than this on one session.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// The initiator of a session rekeys once it is this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A session this old is never used again.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Give up retrying a handshake after this long.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Retry an unanswered initiation after this long.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Send a keepalive if we received data and sent nothing for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accept at most one initiation from the same peer within this interval.
pub const INITIATION_MIN_INTERVAL: Duration = Duration::from_millis(20);
/// The timers' resolution: while anything happens, `Device::poll_timeout`
/// asks for `Device::handle_timeout` again within this long.
pub const TICK: Duration = Duration::from_millis(100);
