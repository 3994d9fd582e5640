//! Which member a name on the command line means, among this network's
//! members and the federated networks' members this node holds
//! ([`crate::lookup`] matches).

use crate::lookup::{self, Names};
use federation::replica::Replica;
use federation::NodeId;
use std::net::SocketAddr;

/// One member as it can be called: id, name, org, address, control.
struct Called {
    id: NodeId,
    hex: String,
    name: String,
    org: String,
    address: String,
    control: Vec<SocketAddr>,
}

/// The one member `who` names, or the sentence to show.
pub fn find(replica: &Replica, who: &str, now_ms: u64) -> Result<NodeId, String> {
    let ledger = replica.ledger();
    let org = ledger
        .authority()
        .map(|a| a.name.clone())
        .unwrap_or_default();
    let called = |m: &federation::Member<'_>, org: &str| Called {
        id: m.id,
        hex: m.id.to_hex(),
        name: m.record.name.clone(),
        org: org.to_string(),
        address: m.record.address.to_string(),
        control: m.record.control.clone(),
    };
    let mut all: Vec<Called> = ledger
        .members(now_ms)
        .iter()
        .map(|m| called(m, &org))
        .collect();
    // Federated networks' members as far as this node reaches them as
    // hosts (not their lent relays).
    let roster = replica.roster(now_ms);
    let reached: std::collections::BTreeSet<NodeId> =
        roster.hosts(now_ms).iter().map(|m| m.id).collect();
    all.extend(
        replica
            .partners()
            .members(now_ms)
            .iter()
            .filter(|p| reached.contains(&p.member.id))
            .map(|p| called(&p.member, p.org)),
    );
    lookup::find(
        who,
        all.iter().map(|c| {
            (
                c.id,
                Names {
                    name: &c.name,
                    org: &c.org,
                    address: &c.address,
                    id: &c.hex,
                    control: &c.control,
                },
            )
        }),
    )
}
