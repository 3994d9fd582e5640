//! `--advertise auto`: the cloud's metadata service asked in the
//! background (when the agent starts and when `set` names it, as the
//! member asks), so the loop never waits on the network: a VM's public
//! address changes only across a stop and start.

use std::net::IpAddr;

/// A metadata lookup under way.
pub type Lookup = tokio::task::JoinHandle<Result<crate::metadata::Found, String>>;

/// The lookup's answer, as its task ends.
pub type Answer = Result<Result<crate::metadata::Found, String>, tokio::task::JoinError>;

/// Starts a lookup (at most [`crate::metadata::TIMEOUT`] long).
pub fn look_up() -> Lookup {
    tokio::task::spawn_blocking(crate::metadata::public_ipv4)
}

/// The answer of the lookup under way, or never without one.
pub async fn answer(lookup: &mut Option<Lookup>) -> Answer {
    match lookup {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// What the lookup found, said in the log.
pub fn found(answer: Answer) -> Option<IpAddr> {
    match answer {
        Ok(Ok(f)) => {
            tracing::info!(ip = %f.ip, service = f.service, "advertising the public address the cloud's metadata service reports");
            Some(IpAddr::V4(f.ip))
        }
        Ok(Err(why)) => {
            tracing::warn!("--advertise auto: {why}");
            None
        }
        Err(e) => {
            tracing::warn!("--advertise auto: the lookup failed: {e}");
            None
        }
    }
}
