//! Invites this node issued, kept in its [`Storage`] (the secret's hash, expiry
//! and uses left), and admission: a join presenting one is checked by the
//! federation core ([`Admitter`]) and its use is spent only when
//! everything else about the join was fine. A store that cannot be read is
//! said as such, never mistaken for an unknown invite.

use super::Storage;
use federation::admission::Admitter;
use federation::protocol::{JoinRequest, Response};
use federation::token::{secret_hash, Issued};
use federation::{Ledger, NodeId};
use rand_core::RngCore;
use std::time::Duration;

/// Longest invite life.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most uses one invite may have.
pub const MAX_USES: u32 = 1000;

/// What an invite allows: how long, how many joins, and the tags the
/// nodes it admits get in their certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// How long the token stays valid.
    pub ttl: Duration,
    /// How many nodes may join with it.
    pub uses: u32,
    /// Tags for the admitted nodes' certificates.
    pub tags: Vec<String>,
}

/// A new invite: its id, secret and expiry.
pub struct Issue {
    /// Which invite.
    pub id: [u8; 16],
    /// Its secret (only in the token).
    pub secret: [u8; 32],
    /// When it expires (ms since the epoch).
    pub expires_ms: u64,
}

/// Stores a new invite on `terms`; refuses counts, lives and tags out of
/// range with the sentence to show.
pub fn issue(
    store: &mut dyn Storage,
    terms: &Terms,
    now_ms: u64,
    rng: &mut impl RngCore,
) -> Result<Issue, String> {
    let Terms { ttl, uses, .. } = *terms;
    if ttl.is_zero() || ttl > MAX_TTL || uses == 0 || uses > MAX_USES {
        return Err("--ttl must be between 1s and 30d and --uses between 1 and 1000".into());
    }
    if !federation::cert::valid_tags(&terms.tags) {
        return Err(format!(
            "--tag takes at most {} different names of 1-63 characters of a-z, 0-9 and -, not starting with -",
            federation::cert::MAX_TAGS
        ));
    }
    let mut id = [0u8; 16];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let expires_ms = now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    let issued = Issued {
        secret_hash: secret_hash(&secret),
        expires_ms,
        uses_left: uses,
        tags: terms.tags.clone(),
    };
    serde_json::to_vec(&issued)
        .map_err(|e| e.to_string())
        .and_then(|b| store.put_invite(&id, &b))
        .map_err(|e| format!("cannot store the invite: {e}"))?;
    Ok(Issue {
        id,
        secret,
        expires_ms,
    })
}

/// The invite `id` as stored, if any.
fn stored(store: &dyn Storage, id: &[u8; 16]) -> Result<Option<Issued>, String> {
    store
        .invite(id)?
        .map(|b| serde_json::from_slice(&b).map_err(|_| "the stored invite is damaged".to_string()))
        .transpose()
}

/// Answers a join: admitted (the use spent durably first) or refused with
/// one sentence for the joiner.
pub fn admit(
    store: &mut dyn Storage,
    admitter: &Admitter,
    ledger: &Ledger,
    req: &JoinRequest,
    from: NodeId,
    now_ms: u64,
) -> Response {
    let issued = match stored(&*store, &req.invite) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("cannot read the invites: {e}");
            return Response::Refused(
                "the member you reached could not read its invites: try again, or ask another member".into(),
            );
        }
    };
    match admitter.admit(ledger, req, from, issued.as_ref(), now_ms) {
        Ok((spent, chain)) => {
            let saved = serde_json::to_vec(&spent)
                .map_err(|e| e.to_string())
                .and_then(|b| store.put_invite(&req.invite, &b));
            if let Err(e) = saved {
                tracing::error!("cannot record the invite's use: {e}");
                return Response::Refused(
                    "the member could not record the invite's use; try again".into(),
                );
            }
            tracing::info!(name = %req.name, id = %from.short(), "admitted a new member");
            let first = [ledger.network().authority, admitter.key.id()];
            Response::Admitted {
                chain,
                records: federation::sync::first_records(ledger.state(), &first),
                taken: ledger.address_owners(now_ms).into_keys().collect(),
            }
        }
        Err(e) => {
            tracing::warn!(id = %from.short(), "refused a join: {e}");
            Response::Refused(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use federation::fixture::TestNetwork;
    use federation::NodeKey;

    use crate::member::tests::Memory;

    #[test]
    fn a_damaged_invite_is_said_as_such_and_refusals_spend_nothing() {
        let mut store = Memory::default();
        let net = TestNetwork::new(4);
        let a = net.member(1);
        let mut ledger = net.ledger();
        ledger.ingest(&a.signed(1), 0).unwrap();
        let admitter = Admitter {
            key: &a.key,
            chain: &a.record.chain,
            authority: None,
        };
        let issue = issue(&mut store, &terms(1, &["shared"]), 0, &mut rand_core::OsRng).unwrap();
        let newcomer = NodeKey::generate().id();
        let mut req = JoinRequest {
            network: net.network.id,
            invite: issue.id,
            secret: issue.secret,
            wg_key: [7; 32],
            name: "n".into(),
            address: Some("100.64.0.1".parse().unwrap()),
            inviter: None,
        };
        // Taken address: refused, the use is not spent.
        assert!(
            matches!(admit(&mut store, &admitter, &ledger, &req, newcomer, 0), Response::Refused(w) if w.contains("already used"))
        );
        req.address = None;
        // Admitted: the invite's tags are in the newcomer's certificate.
        let Response::Admitted {
            chain,
            records,
            taken,
        } = admit(&mut store, &admitter, &ledger, &req, newcomer, 0)
        else {
            panic!("refused a good join");
        };
        // The welcome: the authority's and the admitter's records, and the
        // addresses held.
        assert_eq!(records.len(), 2);
        assert_eq!(
            taken,
            vec!["100.64.0.1".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        assert_eq!(
            chain.last().map(|c| c.tags.clone()),
            Some(vec!["shared".to_string()])
        );
        assert!(
            matches!(admit(&mut store, &admitter, &ledger, &req, newcomer, 0), Response::Refused(w) if w.contains("already used"))
        );
        // A damaged entry is not "unknown".
        store.put_invite(&issue.id, b"\xff not json").unwrap();
        let Response::Refused(why) = admit(&mut store, &admitter, &ledger, &req, newcomer, 0)
        else {
            panic!("admitted with a damaged invite");
        };
        assert!(why.contains("could not read its invites"), "{why}");
        assert!(issue_err(&mut store, terms(0, &[])).contains("--uses"));
        assert!(issue_err(&mut store, terms(MAX_USES + 1, &[])).contains("--uses"));
        assert!(issue_err(&mut store, terms(1, &["Bad"])).contains("--tag"));
        assert!(issue_err(&mut store, terms(1, &["a", "a"])).contains("--tag"));
    }

    fn terms(uses: u32, tags: &[&str]) -> Terms {
        Terms {
            ttl: Duration::from_secs(60),
            uses,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn issue_err(store: &mut Memory, terms: Terms) -> String {
        issue(store, &terms, 0, &mut rand_core::OsRng)
            .err()
            .unwrap_or_default()
    }
}
