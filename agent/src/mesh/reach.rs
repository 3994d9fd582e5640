//! How others reach this node, as the control loop keeps it: what the
//! operator advertises (`init`/`join --advertise`, changed at runtime by
//! `cladnet set --advertise`), what the cloud's metadata service says for
//! `auto` (asked in the background when the agent starts and when `set`
//! names it, so the loop never waits on the network: a VM's
//! public address changes only across a stop and start), and where
//! members see our control plane.

use super::Mesh;
use crate::advertise::Advertise;
use crate::api;
use federation::NodeId;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// The metadata lookup's answer, as its task ends.
pub(super) type AutoAnswer = Result<Result<crate::metadata::Found, String>, tokio::task::JoinError>;

/// The answer of the lookup under way, or never without one.
pub(super) async fn auto_answer(
    lookup: &mut Option<tokio::task::JoinHandle<Result<crate::metadata::Found, String>>>,
) -> AutoAnswer {
    match lookup {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

impl Mesh {
    /// Member `from` sees our control plane at `addr` (strangers' reports
    /// are not believed).
    pub(super) fn on_observed(&mut self, from: NodeId, addr: SocketAddr) {
        if self.replica.is_member(&from, crate::statedir::now_ms())
            && self.observed.handle_report(from, addr, Instant::now())
        {
            tracing::debug!(%addr, by = %from.short(), "a member sees our control plane at a new endpoint");
            self.due.rescan.get_or_insert(Instant::now());
        }
    }

    /// Asks the metadata service in the background if `auto` is
    /// advertised: the loop goes on, and [`Mesh::on_auto`] takes the answer
    /// (at most [`crate::metadata::TIMEOUT`] later). A lookup still under
    /// way is forgotten.
    pub(super) fn ask_auto(&mut self) {
        self.auto_lookup = None;
        if !self.state.settings.advertise.contains(&Advertise::Auto) {
            self.auto = None;
            return;
        }
        self.auto_lookup = Some(tokio::task::spawn_blocking(crate::metadata::public_ipv4));
    }

    /// What the metadata service answered: said, and published.
    pub(super) async fn on_auto(&mut self, found: AutoAnswer) {
        self.auto_lookup = None;
        self.auto = match found {
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
        };
        self.refresh_host().await;
    }

    /// `cladnet set`: stores the new settings, applies the advertised
    /// addresses (published with what they stand for) and the labels at
    /// once, and says what waits for a restart.
    pub(super) async fn set(&mut self, change: crate::change::Change) -> String {
        let mut settings = self.state.settings.clone();
        let applied = change.apply(&mut settings);
        if let Err(e) = self.state.save_settings(settings) {
            return api::error(&format!("cannot store the setting: {e:#}"));
        }
        if let Some(labels) = change.labels {
            self.own.set_labels(labels);
        }
        if change.advertise.is_some() {
            self.ask_auto();
            self.refresh_host().await;
        }
        api::answer(&crate::api::docs::Text {
            text: crate::change::said(&applied, true),
        })
    }
}
