//! Joins, as a member handles them: invites issued here (naming other
//! members that forward joins), joins presented here (admitted by
//! [`super::invites`]), and joins for another member's invite, passed on
//! to that member over the control plane with its answer relayed back (at
//! most [`super::via::MAX_WAITING`] at once, each within
//! [`super::via::TIMEOUT`]).

use super::{invites, Member, Tag};
use crate::api;
use federation::admission::Admitter;
use federation::protocol::{JoinRequest, Request as Ask, Response};
use federation::NodeId;
use rand_core::RngCore;
use std::time::Instant;

impl<R> Member<R> {
    /// `subject` presents an invite issued here: admitted or refused.
    pub(super) fn admit(&mut self, subject: NodeId, join: &JoinRequest, now_ms: u64) -> Response {
        let admitter = Admitter {
            key: &self.identity.key,
            chain: &self.own.record.chain,
            authority: self.identity.authority.as_ref(),
        };
        invites::admit(
            self.storage.as_mut(),
            &admitter,
            self.replica.ledger(),
            join,
            subject,
            now_ms,
        )
    }

    /// `subject` presents an invite of `inviter`: passed on to it.
    pub(super) fn forward_join(
        &mut self,
        inviter: NodeId,
        subject: NodeId,
        join: JoinRequest,
        reply: R,
        now: Instant,
        now_ms: u64,
    ) {
        if !self.joins.has_room() {
            let busy = Response::Refused(
                "this member is passing on too many joins; try again in a few seconds".into(),
            );
            return self.reply(reply, busy);
        }
        tracing::info!(subject = %subject.short(), inviter = %inviter.short(), "passing a join on to its inviter");
        let tag = self.ask(&inviter, now_ms, Ask::ForwardedJoin { subject, join });
        self.joins.sent(tag, reply, now);
    }

    /// The inviter's answer to the join we passed on as `tag` (or why
    /// there is none): relayed to the newcomer.
    pub(super) fn join_answered(&mut self, tag: &Tag, answer: Result<Response, String>) {
        let Some(reply) = self.joins.answered(tag) else {
            return;
        };
        let response = match answer {
            Ok(r @ (Response::Admitted { .. } | Response::Refused(_))) => r,
            Ok(_) => Response::Refused("the member that issued this invite did not take the join: ask it for a new invite".into()),
            Err(e) => Response::Refused(format!("the member that issued this invite cannot be reached from the member you reached ({e}): try again, or ask for a new invite")),
        };
        self.reply(reply, response);
    }

    /// Refuses the joins passed on that got no answer in time.
    pub(super) fn expire_joins(&mut self, now: Instant) {
        for (reply, why) in self.joins.expire(now) {
            let refused = Response::Refused(format!(
                "the member that issued this invite did not answer: {why}"
            ));
            self.reply(reply, refused);
        }
    }

    /// A new token (the answer line).
    pub(super) fn invite(
        &mut self,
        terms: &invites::Terms,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> String {
        let admits = self.identity.authority.is_some();
        let connected = self.connected();
        let members = federation::token::contacts(
            self.replica.ledger(),
            &self.me,
            |id| connected.contains(id),
            now_ms,
        );
        let issued = self.own.may_admit(self.standing, admits).and_then(|()| {
            let issue = invites::issue(self.storage.as_mut(), terms, now_ms, rng)?;
            Ok(self.own.invite(&self.identity, terms, &issue, members))
        });
        match issued {
            Ok(doc) => api::answer(&doc),
            Err(why) => api::error(&why),
        }
    }
}
