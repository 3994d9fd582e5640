//! Endpoint echo in the agent (`netstack::echo`): answering members'
//! questions in the rx thread (with the pair keys of `crate::members`), and
//! handing authenticated answers to the control loop, which asks
//! (`mesh::paths`).

use crate::members::MemberKeys;
use netstack::echo::{self, Message, PairKey, REPLY_LEN};
use netstack::relay::{key_id, KeyId};
use netstack::PublicKey;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Answers waiting for the control loop; more are dropped (and counted).
const QUEUE: usize = 64;

/// An authenticated answer: `from` sees our datagrams arrive from `seen`.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// The answering member.
    pub from: PublicKey,
    /// The nonce of our question.
    pub nonce: u64,
    /// Our endpoint as the answerer sees it.
    pub seen: SocketAddr,
    /// The length our question arrived with (padded: a path MTU probe).
    pub len: u16,
}

/// The endpoint echo's state, shared by the control loop and the rx
/// thread.
pub struct Echo {
    members: Arc<MemberKeys>,
    answers: mpsc::Sender<Answer>,
    /// Questions answered.
    pub answered: AtomicU64,
    /// Echo messages dropped: unknown asker, bad MAC, queue full.
    pub dropped: AtomicU64,
}

impl Echo {
    /// State answering and asking the members of `members`, and the
    /// receiving end of its answers.
    pub fn new(members: Arc<MemberKeys>) -> (Self, mpsc::Receiver<Answer>) {
        let (answers, rx) = mpsc::channel(QUEUE);
        let echo = Self {
            members,
            answers,
            answered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        (echo, rx)
    }

    fn pair(&self, id: &KeyId) -> Option<(PublicKey, PairKey)> {
        self.members.get(id).map(|m| (m.key, m.pair))
    }

    /// A question to `peer` padded to `len` bytes, or `None` if `peer` is
    /// not a member.
    pub fn question(&self, peer: &PublicKey, nonce: u64, len: u16) -> Option<Vec<u8>> {
        let (_, pair) = self.pair(&key_id(peer))?;
        Some(echo::request(&self.members.own_id(), nonce, &pair, len))
    }

    /// Handles echo message `message` (the whole `datagram`) that came from
    /// `from`: returns the reply to a member's question, and passes a
    /// member's answer to the control loop. Everything else is dropped.
    pub fn handle(
        &self,
        from: SocketAddr,
        message: Message,
        datagram: &[u8],
    ) -> Option<[u8; REPLY_LEN]> {
        let id = match message {
            Message::Request { asker, .. } => asker,
            Message::Reply { answerer, .. } => answerer,
        };
        let Some((member, pair)) = self
            .pair(&id)
            .filter(|(_, pair)| echo::authentic(datagram, pair))
        else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        match message {
            Message::Request { nonce, len, .. } => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                Some(echo::reply(&self.members.own_id(), nonce, from, len, &pair))
            }
            Message::Reply {
                nonce, seen, len, ..
            } => {
                let answer = Answer {
                    from: member,
                    nonce,
                    seen,
                    len,
                };
                if self.answers.try_send(answer).is_err() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstack::PrivateKey;

    #[test]
    fn members_answer_each_other_and_strangers_are_dropped() {
        let (a_key, b_key, c_key) = (
            PrivateKey::generate(),
            PrivateKey::generate(),
            PrivateKey::generate(),
        );
        let echo = |own: &PrivateKey, member: &PrivateKey| {
            let members = Arc::new(MemberKeys::new(own.clone()));
            members.set([member.public_key()].into_iter());
            Echo::new(members)
        };
        let (a, mut a_rx) = echo(&a_key, &b_key);
        let (b, _) = echo(&b_key, &a_key);
        let (c, _) = echo(&c_key, &b_key);
        let a_at: SocketAddr = "198.18.1.1:51820".parse().unwrap();

        let q = a.question(&b_key.public_key(), 42, 1300).unwrap();
        let r = b
            .handle(a_at, echo::parse(&q).unwrap(), &q)
            .expect("b answers a member");
        assert_eq!(a.handle(b_at(), echo::parse(&r).unwrap(), &r), None);
        let got = a_rx.try_recv().unwrap();
        assert_eq!(
            (got.from, got.nonce, got.seen, got.len),
            (b_key.public_key(), 42, a_at, 1300)
        );

        // c is no member of b's: its question is dropped and counted.
        let q = c.question(&b_key.public_key(), 1, 0).unwrap();
        assert_eq!(b.handle(a_at, echo::parse(&q).unwrap(), &q), None);
        assert_eq!(b.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(b.answered.load(Ordering::Relaxed), 1);
        assert!(c.question(&a_key.public_key(), 1, 0).is_none());
    }

    fn b_at() -> SocketAddr {
        "198.18.1.2:51820".parse().unwrap()
    }
}
