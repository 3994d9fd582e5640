//! Accept loops that back off on errors: a lasting one (the process out
//! of file descriptors) must not spin a core while it lasts.

use std::future::Future;
use std::time::Duration;

/// The first wait after a failed accept; it doubles up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(10);
/// The longest wait between two accepts that fail.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// How long the next failed accept waits; said once per run of failures.
#[derive(Debug)]
pub struct Backoff {
    /// What the listener serves, for the log.
    what: &'static str,
    wait: Duration,
}

impl Backoff {
    /// No failure yet; `what` names the listener in the log.
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            wait: FIRST_WAIT,
        }
    }

    /// Awaits `accept`: its connection, or `None` after a failure and the
    /// wait it earned (a success ends the run of failures).
    pub async fn accept<S>(
        &mut self,
        accept: impl Future<Output = std::io::Result<S>>,
    ) -> Option<S> {
        match accept.await {
            Ok(s) => {
                if self.wait > FIRST_WAIT {
                    tracing::info!("the {} accepts connections again", self.what);
                }
                self.wait = FIRST_WAIT;
                Some(s)
            }
            Err(e) => {
                if self.wait == FIRST_WAIT {
                    tracing::warn!(
                        "the {} cannot accept a connection: {e}; retrying with a growing pause",
                        self.what
                    );
                }
                tokio::time::sleep(self.wait).await;
                self.wait = (self.wait * 2).min(MAX_WAIT);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out_of_descriptors() -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EMFILE))
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_lasting_accept_error_is_retried_at_most_once_a_second() {
        let mut backoff = Backoff::new("test socket");
        let start = tokio::time::Instant::now();
        for _ in 0..100 {
            assert!(backoff
                .accept(async { out_of_descriptors() })
                .await
                .is_none());
        }
        // 10 ms doubling to 1 s: 100 failures take over 90 s, not a spin.
        assert!(
            start.elapsed() > Duration::from_secs(90),
            "{:?}",
            start.elapsed()
        );
        // A success resets the pause.
        assert_eq!(backoff.accept(async { Ok(5) }).await, Some(5));
        let before = tokio::time::Instant::now();
        backoff.accept(async { out_of_descriptors() }).await;
        assert_eq!(before.elapsed(), FIRST_WAIT);
    }
}
