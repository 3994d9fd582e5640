//! `cladnet set`: what an operator changes on a node after `init` or
//! `join`, and when it takes effect. A running agent applies what it can
//! at once (advertised addresses, labels) and stores the rest for its next
//! start (ports, the metrics listener, relaying), saying which; a stopped
//! node's state directory is changed directly.

use crate::advertise::Advertise;
use crate::statedir::Settings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What `set` changes (`None`: left as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Addresses this node is reached at from outside (empty: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<Vec<Advertise>>,
    /// WireGuard UDP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Control-plane UDP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_listen: Option<SocketAddr>,
    /// The metrics listener (`Some(None)`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<Option<SocketAddr>>,
    /// Whether this node relays for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<bool>,
    /// What the node says about itself (replacing every label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// One setting changed: its words, and whether a running agent needs a
/// restart for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// `listen 0.0.0.0:51900`.
    pub what: String,
    /// True if it takes effect only when the agent starts again.
    pub restart: bool,
}

impl Change {
    /// Writes the settings part into `s`; what changed.
    pub fn apply(&self, s: &mut Settings) -> Vec<Applied> {
        let mut out = Vec::new();
        let mut note = |what: String, restart: bool| out.push(Applied { what, restart });
        if let Some(a) = &self.advertise {
            s.advertise = a.clone();
            let list: Vec<String> = a.iter().map(ToString::to_string).collect();
            note(format!("advertise {}", shown(&list)), false);
        }
        if let Some(l) = self.listen {
            s.listen = l;
            note(format!("listen {l}"), true);
        }
        if let Some(l) = self.control_listen {
            s.control_listen = l;
            note(format!("control-listen {l}"), true);
        }
        if let Some(m) = self.metrics_listen {
            s.metrics_listen = m;
            note(
                format!(
                    "metrics-listen {}",
                    m.map_or("off".into(), |m| m.to_string())
                ),
                true,
            );
        }
        if let Some(r) = self.relay {
            s.no_relay = !r;
            note(format!("relay {}", if r { "on" } else { "off" }), true);
        }
        if let Some(l) = &self.labels {
            let list: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
            note(format!("labels {}", shown(&list)), false);
        }
        out
    }
}

fn shown(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// The sentence `set` prints: what changed and when it takes effect.
pub fn said(applied: &[Applied], running: bool) -> String {
    let list = |restart: bool| -> Vec<&str> {
        applied
            .iter()
            .filter(|a| a.restart == restart)
            .map(|a| a.what.as_str())
            .collect()
    };
    let (now, later) = (list(false), list(true));
    if !running {
        let all: Vec<&str> = applied.iter().map(|a| a.what.as_str()).collect();
        return format!(
            "saved: {}; the agent uses it when it starts (it is not running now)",
            all.join("; ")
        );
    }
    let mut parts = Vec::new();
    if !now.is_empty() {
        parts.push(format!("applied now: {}", now.join("; ")));
    }
    if !later.is_empty() {
        parts.push(format!(
            "saved, takes effect when the agent restarts (systemctl restart cladnet): {}",
            later.join("; ")
        ));
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_wait_for_a_restart_and_addresses_do_not() {
        let mut s = Settings {
            name: "a".into(),
            listen: "0.0.0.0:51820".parse().expect("addr"),
            control_listen: "0.0.0.0:51821".parse().expect("addr"),
            advertise: vec![],
            metrics_listen: None,
            no_relay: false,
        };
        let change = Change {
            listen: Some("0.0.0.0:51900".parse().expect("addr")),
            relay: Some(false),
            advertise: Some(vec![]),
            ..Change::default()
        };
        let applied = change.apply(&mut s);
        assert_eq!(s.listen.port(), 51900);
        assert!(s.no_relay);
        assert_eq!(
            said(&applied, true),
            "applied now: advertise none\nsaved, takes effect when the agent restarts (systemctl restart cladnet): listen 0.0.0.0:51900; relay off"
        );
        assert!(said(&applied, false)
            .starts_with("saved: advertise none; listen 0.0.0.0:51900; relay off;"));
    }
}
