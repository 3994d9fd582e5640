//! `cladnet tag`: an admitter re-issues a member's certificate with other
//! tags and hands it to the member, which checks it and adopts it into its
//! record (only a node signs its own record). The tags then travel with
//! the record: exposure to federated networks follows in seconds on both
//! sides. The rules live in `federation::admission`.

use super::Mesh;
use crate::api::{self, docs};
use crate::statedir::now_ms;
use federation::admission::{check_reissue, Admitter};
use federation::cert::Cert;
use federation::protocol::{Request as Ask, Response};
use std::time::Instant;
use tokio::sync::oneshot;

impl Mesh {
    /// Re-issues member `who`'s certificate with `tags` and hands it to
    /// it (adopted at once if it is this node); `reply` gets the answer.
    pub(super) fn start_tag(
        &mut self,
        who: &str,
        tags: Vec<String>,
        reply: oneshot::Sender<String>,
    ) {
        let now_ms = now_ms();
        let admits = self.state.authority.is_some();
        let me = self.me();
        let chain = self
            .own
            .may_admit(self.standing, admits)
            .and_then(|()| self.with_view(|v| v.find(who)))
            .and_then(|target| {
                let admitter = Admitter {
                    key: &self.state.key,
                    chain: &self.own.record.chain,
                    authority: self.state.authority.as_ref(),
                };
                admitter
                    .reissue(self.replica.ledger(), &target, tags, now_ms)
                    .map(|chain| (target, chain))
                    .map_err(|e| e.to_string())
            });
        match chain {
            Err(why) => {
                let _ = reply.send(api::error(&why));
            }
            Ok((target, chain)) if target == me => {
                let answer = self.adopt_reissued(chain);
                let _ = reply.send(answer.map_or_else(|why| api::error(&why), |t| api::answer(&t)));
            }
            Ok(_) if !self.via.has_room() => {
                let _ = reply.send(api::error(
                    "too many requests to other members in flight; try again",
                ));
            }
            Ok((target, chain)) => {
                let addrs = self.control_addrs(&target);
                match self.ask(&target, &addrs, Ask::Reissue(chain)) {
                    Some(rid) => self.via.sent(rid, reply, Instant::now()),
                    None => {
                        let _ = reply.send(api::error("that member has an invalid id"));
                    }
                }
            }
        }
    }

    /// A re-issued chain for this node, handed over by an admitter: the
    /// answer to send back.
    pub(super) fn reissued(&mut self, chain: Vec<Cert>) -> Response {
        match self.adopt_reissued(chain) {
            Ok(tagged) => Response::Answer(api::answer(&tagged)),
            Err(why) => Response::Refused(why),
        }
    }

    /// A re-issued chain for this node: adopted if it checks out (its new
    /// tags), or why not.
    fn adopt_reissued(&mut self, chain: Vec<Cert>) -> Result<docs::Tagged, String> {
        let me = self.me();
        let current = self
            .own
            .record
            .chain
            .last()
            .ok_or("this node has no certificate yet")?;
        check_reissue(self.replica.ledger(), &me, current, &chain, now_ms())
            .map_err(|e| e.to_string())?;
        let tags = chain.last().map(|c| c.tags.clone()).unwrap_or_default();
        tracing::info!(?tags, "adopted a re-issued certificate");
        self.own.adopt_chain(chain);
        Ok(docs::Tagged {
            name: self.own.record.name.clone(),
            tags,
        })
    }
}
