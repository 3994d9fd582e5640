//! How others reach this node, as the control loop keeps it: what the
//! operator advertises (`init`/`join --advertise`, changed at runtime by
//! `cladnet set --advertise`), what the cloud's metadata service says for
//! `auto` (asked when the agent starts and when `set` names it: a VM's
//! public address changes only across a stop and start), and where
//! members see our control plane.

use super::Mesh;
use crate::advertise::Advertise;
use crate::api;
use federation::NodeId;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

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

    /// Asks the metadata service if `auto` is advertised (at most
    /// [`crate::metadata::TIMEOUT`]), and says what it found.
    pub(super) async fn resolve_auto(&mut self) {
        if !self.state.settings.advertise.contains(&Advertise::Auto) {
            self.auto = None;
            return;
        }
        let found = tokio::task::spawn_blocking(crate::metadata::public_ipv4).await;
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
            self.resolve_auto().await;
            self.refresh_host().await;
        }
        api::answer(&crate::api::docs::Text {
            text: crate::change::said(&applied, true),
        })
    }
}
