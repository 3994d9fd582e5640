//! Joins, as the control loop handles them: invites issued here (naming
//! other members that forward joins), joins presented here (admitted by
//! [`super::invites`]), and joins for another member's invite, passed on
//! to that member over the control plane with its answer relayed back (at
//! most [`super::via::MAX_WAITING`] at once, each within
//! [`super::via::TIMEOUT`]).

use super::{invites, Mesh};
use crate::api;
use crate::statedir::now_ms;
use federation::admission::Admitter;
use federation::net::{Reply, RequestId};
use federation::protocol::{JoinRequest, Request as Ask, Response};
use federation::NodeId;
use rand_core::OsRng;
use std::collections::BTreeSet;
use std::time::Instant;

impl Mesh {
    /// `subject` presents an invite issued here: admitted or refused.
    pub(super) fn admit(&mut self, subject: NodeId, join: &JoinRequest, reply: Reply) {
        let admitter = Admitter {
            key: &self.state.key,
            chain: &self.own.record.chain,
            authority: self.state.authority.as_ref(),
        };
        let r = invites::admit(
            &self.state.store,
            &admitter,
            self.replica.ledger(),
            join,
            subject,
            now_ms(),
        );
        self.reply(reply, r);
    }

    /// `subject` presents an invite of `inviter`: passed on to it.
    pub(super) fn forward_join(
        &mut self,
        inviter: NodeId,
        subject: NodeId,
        join: JoinRequest,
        reply: Reply,
    ) {
        if !self.joins.has_room() {
            let busy = Response::Refused(
                "this member is passing on too many joins; try again in a few seconds".into(),
            );
            return self.reply(reply, busy);
        }
        tracing::info!(subject = %subject.short(), inviter = %inviter.short(), "passing a join on to its inviter");
        let addrs = self.control_addrs(&inviter);
        match self.ask(&inviter, &addrs, Ask::ForwardedJoin { subject, join }) {
            Some(id) => self.joins.sent(id, reply, Instant::now()),
            None => self.reply(
                reply,
                Response::Refused("the invite names an invalid member".into()),
            ),
        }
    }

    /// The inviter's answer to the join we passed on as `id` (or why
    /// there is none): relayed to the newcomer.
    pub(super) fn join_answered(&mut self, id: &RequestId, answer: Result<Response, String>) {
        let Some(reply) = self.joins.answered(id) else {
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
    pub(super) fn invite(&mut self, terms: &invites::Terms) -> String {
        let admits = self.state.authority.is_some();
        let (me, now_ms) = (self.me(), now_ms());
        let connected: BTreeSet<NodeId> = self.replica.connected().copied().collect();
        let members = federation::token::contacts(
            self.replica.ledger(),
            &me,
            |id| connected.contains(id),
            now_ms,
        );
        match self.own.may_admit(self.standing, admits).and_then(|()| {
            self.own
                .invite(&self.state, terms, members, now_ms, &mut OsRng)
        }) {
            Ok(doc) => api::answer(&doc),
            Err(why) => api::error(&why),
        }
    }
}
