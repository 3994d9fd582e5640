//! Requests that only read ([`crate::member::Command::Read`]): answered
//! from one consistent view of the node with the data plane locked.

use super::event_loop::EventLoop;
use crate::api::{self, docs, Request};

impl EventLoop {
    /// The answer line to `request`.
    pub(super) fn read(&self, request: Request) -> String {
        match request {
            Request::Status => self.with_view(|v| api::answer(&v.status())),
            Request::Members => self.with_view(|v| api::answer(&v.members())),
            Request::Peers => self.with_view(|v| api::answer(&v.peers())),
            Request::Metrics => self.with_view(|v| api::answer(&v.metrics())),
            Request::HostNetworks => self.with_view(|v| api::answer(&v.host_networks())),
            Request::Prometheus => self.with_view(|v| {
                let text = crate::exposition::prometheus(
                    &v.status(),
                    &v.peers(),
                    &v.members(),
                    &v.dropped(),
                );
                api::answer(&docs::Text { text })
            }),
            Request::Html => self.with_view(|v| {
                let name = v
                    .ledger
                    .authority()
                    .map(|a| a.name.clone())
                    .unwrap_or_default();
                let members = v.members();
                let alive = members
                    .iter()
                    .filter(|m| m.state != "left" && m.state != "revoked")
                    .count();
                api::answer(&docs::Text {
                    text: crate::exposition::html_page(&crate::exposition::Page {
                        network: &name,
                        metrics: &v.metrics(),
                        members: &members,
                        interval: federation::member::metrics_interval(alive),
                        now_ms: v.now_ms,
                    }),
                })
            }),
            other => api::error(&format!(
                "`{}` is not a request that only reads",
                other.name()
            )),
        }
    }
}
