//! `cladnet tag`: an admitter re-issues a member's certificate with other
//! tags and hands it to the member, which checks it and adopts it into its
//! record (only a node signs its own record). The tags then travel with
//! the record: exposure to federated networks follows in seconds on both
//! sides. The rules live in `federation::admission`.

use super::{find, LocalId, Member};
use crate::api::{self, docs};
use federation::admission::{check_reissue, Admitter};
use federation::cert::Cert;
use federation::protocol::{Request as Ask, Response};
use std::time::Instant;

impl<R> Member<R> {
    /// Re-issues member `who`'s certificate with `tags` and hands it to
    /// it (adopted at once if it is this node); local request `id` gets
    /// the answer.
    pub(super) fn start_tag(
        &mut self,
        id: LocalId,
        who: &str,
        tags: Vec<String>,
        now: Instant,
        now_ms: u64,
    ) {
        let admits = self.identity.authority.is_some();
        let chain = self
            .own
            .may_admit(self.standing, admits)
            .and_then(|()| find(&self.replica, who, now_ms))
            .and_then(|target| {
                let admitter = Admitter {
                    key: &self.identity.key,
                    chain: &self.own.record.chain,
                    authority: self.identity.authority.as_ref(),
                };
                admitter
                    .reissue(self.replica.ledger(), &target, tags, now_ms)
                    .map(|chain| (target, chain))
                    .map_err(|e| e.to_string())
            });
        match chain {
            Err(why) => self.answer(id, api::error(&why)),
            Ok((target, chain)) if target == self.me => {
                let answer = self.adopt_reissued(chain, now_ms);
                self.answer(
                    id,
                    answer.map_or_else(|why| api::error(&why), |t| api::answer(&t)),
                );
                self.flush(now, now_ms);
            }
            Ok(_) if !self.via.has_room() => self.answer(
                id,
                api::error("too many requests to other members in flight; try again"),
            ),
            Ok((target, chain)) => {
                let tag = self.ask(&target, now_ms, Ask::Reissue(chain));
                self.via.sent(tag, id, now);
            }
        }
    }

    /// A re-issued chain for this node, handed over by an admitter: the
    /// answer to send back.
    pub(super) fn reissued(&mut self, chain: Vec<Cert>, now_ms: u64) -> Response {
        match self.adopt_reissued(chain, now_ms) {
            Ok(tagged) => Response::Answer(api::answer(&tagged)),
            Err(why) => Response::Refused(why),
        }
    }

    /// A re-issued chain for this node: adopted if it checks out (its new
    /// tags), or why not.
    fn adopt_reissued(&mut self, chain: Vec<Cert>, now_ms: u64) -> Result<docs::Tagged, String> {
        let current = self
            .own
            .record
            .chain
            .last()
            .ok_or("this node has no certificate yet")?;
        check_reissue(self.replica.ledger(), &self.me, current, &chain, now_ms)
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
