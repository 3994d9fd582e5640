//! The lab: several members in fake time joined by an in-memory shell
//! (every request, answer, gossip and connection goes through the same
//! `handle_*` and `poll_command` calls the daemon makes), and a
//! [`Storage`] in memory.

use super::super::*;
use crate::api::{self, docs, Request};
use crate::statedir::Settings;
use federation::fixture::TestNetwork;
use federation::protocol::JoinRequest;
use std::collections::BTreeMap;

/// A [`Storage`] in memory.
#[derive(Default)]
pub struct Memory {
    own: Vec<u8>,
    records: BTreeMap<NodeId, Vec<u8>>,
    invites: BTreeMap<[u8; 16], Vec<u8>>,
}

impl Storage for Memory {
    fn own(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.own = bytes.to_vec();
        Ok(())
    }
    fn records(&mut self, records: &[(NodeId, Vec<u8>)]) -> Result<(), String> {
        self.records.extend(records.iter().cloned());
        Ok(())
    }
    fn invite(&self, id: &[u8; 16]) -> Result<Option<Vec<u8>>, String> {
        Ok(self.invites.get(id).cloned())
    }
    fn put_invite(&mut self, id: &[u8; 16], bytes: &[u8]) -> Result<(), String> {
        self.invites.insert(*id, bytes.to_vec());
        Ok(())
    }
    fn settings(&mut self, _: &Settings) -> Result<(), String> {
        Ok(())
    }
}

/// Where an answer goes in the lab: the asking node (or [`OUTSIDER`])
/// and its tag.
pub(super) type Reply = (usize, Tag);

/// Stands for a node that is no member (a newcomer joining).
pub(super) const OUTSIDER: usize = usize::MAX;

pub(super) struct Node {
    pub(super) member: Member<Reply>,
    /// False once it stopped (or was stopped).
    pub(super) up: bool,
    /// Requests to it are swallowed: it never answers.
    pub(super) silent: bool,
    pub(super) answers: BTreeMap<LocalId, String>,
    /// Messages its shell carried out (requests, answers, gossip).
    pub(super) sent: u64,
    /// The route changes it asked for.
    pub(super) routes: Vec<federation::routes::Command>,
}

/// Members of one network in fake time.
pub(super) struct Lab {
    pub(super) net: TestNetwork,
    pub(super) nodes: Vec<Node>,
    pub(super) now: Instant,
    pub(super) now_ms: u64,
    pub(super) rng: testbed::rng::Rng,
    /// What outsiders were answered, by tag.
    pub(super) outside: BTreeMap<Tag, Response>,
    next_local: LocalId,
}

/// Settings of a node in the lab.
pub(in crate::member) fn settings() -> Settings {
    Settings {
        name: "m".into(),
        listen: "0.0.0.0:51820".parse().unwrap(),
        control_listen: "0.0.0.0:51821".parse().unwrap(),
        advertise: vec![],
        metrics_listen: None,
        no_relay: false,
    }
}

impl Lab {
    /// `n` members (m1..mn, 100.64.0.1..), each knowing every record, all
    /// connected to each other.
    pub(super) fn new(n: u8) -> Self {
        Self::of(TestNetwork::new(7), n)
    }

    /// `n` members of `net`; the first holds its authority key.
    pub(super) fn of(net: TestNetwork, n: u8) -> Self {
        let members: Vec<_> = (1..=n)
            .map(|i| {
                let mut m = net.member(i);
                m.record.endpoints = vec![SocketAddr::from(([198, 18, 0, i], 51820))];
                m
            })
            .collect();
        let now = testbed::fake_time::origin();
        let now_ms = 1_000_000;
        let nodes = members
            .iter()
            .map(|m| {
                let mut ledger = net.ledger();
                for other in &members {
                    ledger.ingest(&other.signed(1), now_ms).unwrap();
                }
                let first = m.key.id() == net.member(1).key.id();
                let identity = Identity {
                    key: federation::NodeKey::from_seed(&m.key.seed()),
                    authority: first.then(|| federation::NodeKey::from_seed(&net.authority.seed())),
                    network: net.network,
                    settings: settings(),
                };
                let mut member = Member::new(
                    identity,
                    Box::<Memory>::default(),
                    ledger,
                    (m.record.clone(), 1),
                    now,
                );
                let mut rng = testbed::rng::Rng::new(u64::from(m.record.address.octets()[3]));
                member.start(None, now, now_ms, &mut rng);
                Node {
                    member,
                    up: true,
                    silent: false,
                    answers: BTreeMap::new(),
                    sent: 0,
                    routes: Vec::new(),
                }
            })
            .collect();
        let mut lab = Lab {
            net,
            nodes,
            now,
            now_ms,
            rng: testbed::rng::Rng::new(1),
            outside: BTreeMap::new(),
            next_local: 0,
        };
        lab.pump();
        lab
    }

    fn index(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.member.me() == *id)
    }

    /// Carries out every command until nobody has anything to say.
    pub(super) fn pump(&mut self) {
        for _ in 0..200 {
            let mut any = false;
            for i in 0..self.nodes.len() {
                while let Some(c) = self.nodes[i].member.poll_command() {
                    any = true;
                    self.carry_out(i, c);
                }
            }
            if !any {
                return;
            }
        }
        panic!("the members never went quiet");
    }

    fn carry_out(&mut self, i: usize, c: Command<Reply>) {
        let (now, now_ms) = (self.now, self.now_ms);
        let me = self.nodes[i].member.me();
        if matches!(
            c,
            Command::Request { .. } | Command::Respond { .. } | Command::Publish(_)
        ) {
            self.nodes[i].sent += 1;
        }
        match c {
            Command::Dial { id, .. } => {
                if let Some(j) = self.index(&id).filter(|j| self.nodes[*j].up) {
                    self.nodes[j].member.handle_connected(me, None, now, now_ms);
                    self.nodes[i].member.handle_connected(id, None, now, now_ms);
                }
            }
            Command::DialAddress(_) => {}
            Command::Disconnect(id) => {
                if let Some(j) = self.index(&id) {
                    self.nodes[j].member.handle_disconnected(me, now, now_ms);
                }
                self.nodes[i].member.handle_disconnected(id, now, now_ms);
            }
            Command::Request {
                tag, to, request, ..
            } => match self.index(&to) {
                Some(j) if self.nodes[j].up && self.nodes[j].silent => {}
                Some(j) if self.nodes[j].up => {
                    let rng = &mut self.rng;
                    self.nodes[j]
                        .member
                        .handle_request(me, request, (i, tag), now, now_ms, rng);
                }
                _ => self.nodes[i]
                    .member
                    .handle_failed(tag, to, "unreachable", now, now_ms),
            },
            Command::Respond {
                reply: (j, tag),
                answer,
            } => {
                if j == OUTSIDER {
                    self.outside.insert(tag, answer.0);
                } else if self.nodes[j].up {
                    self.nodes[j]
                        .member
                        .handle_response(tag, me, answer.0, now, now_ms);
                }
            }
            Command::Publish(bytes) => {
                for j in 0..self.nodes.len() {
                    if j != i && self.nodes[j].up {
                        self.nodes[j].member.handle_gossip(&me, &bytes, now, now_ms);
                    }
                }
            }
            Command::Route(c) => self.nodes[i].routes.push(c),
            Command::Answer { id, line } => {
                self.nodes[i].answers.insert(id, line);
            }
            Command::Read { asker, request } => {
                let line = api::answer(&docs::Text {
                    text: format!(
                        "{} read by {}",
                        request.name(),
                        self.nodes[i].member.own().record.name
                    ),
                });
                self.nodes[i].member.answered(asker, line);
            }
            Command::Exit => self.nodes[i].up = false,
            Command::SetMembers(_) | Command::Apply | Command::Rescan | Command::LookUpAuto => {}
        }
    }

    /// Node `i`'s local request: its answer line, once it came.
    pub(super) fn local(&mut self, i: usize, request: Request) -> LocalId {
        self.next_local += 1;
        let id = self.next_local;
        let (now, now_ms) = (self.now, self.now_ms);
        self.nodes[i]
            .member
            .handle_local(Asker::Local(id), request, now, now_ms, &mut self.rng);
        self.pump();
        id
    }

    pub(super) fn answer(&self, i: usize, id: LocalId) -> Option<&str> {
        self.nodes[i].answers.get(&id).map(String::as_str)
    }

    /// Moves fake time by `by`, running every member's timers on the way.
    pub(super) fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            let next = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .map(|n| n.member.poll_timeout())
                .min()
                .unwrap_or(end)
                .clamp(self.now + Duration::from_millis(1), end);
            let step = next - self.now;
            self.now = next;
            self.now_ms += u64::try_from(step.as_millis()).unwrap();
            for i in 0..self.nodes.len() {
                if self.nodes[i].up {
                    let (now, now_ms) = (self.now, self.now_ms);
                    self.nodes[i]
                        .member
                        .handle_timeout(now, now_ms, &mut self.rng);
                }
            }
            self.pump();
        }
    }

    /// Every node counted exactly the messages its shell sent.
    pub(super) fn assert_counted(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            let counted = n.member.replica().traffic().out_messages;
            assert_eq!(
                counted, n.sent,
                "node {i} counted {counted}, sent {}",
                n.sent
            );
        }
    }

    /// How node `i` sees member `of`.
    pub(super) fn status(&self, i: usize, of: usize) -> Option<Status> {
        let id = self.nodes[of].member.me();
        self.nodes[i]
            .member
            .replica()
            .ledger()
            .member(&id, self.now_ms)
            .map(|m| m.status)
    }

    /// Why the outsider's request `tag` was refused (it must have been).
    pub(super) fn refusal(&self, tag: Tag) -> String {
        match self.outside.get(&tag) {
            Some(Response::Refused(why)) => why.clone(),
            other => panic!("not refused: {other:?}"),
        }
    }

    /// An invite issued by node `i`, as a join request for a newcomer.
    pub(super) fn join_request(&mut self, i: usize) -> JoinRequest {
        let id = self.local(
            i,
            Request::Invite {
                ttl_s: 600,
                uses: 1,
                tags: vec![],
            },
        );
        let doc: docs::Invite = api::read_answer(self.answer(i, id).unwrap()).unwrap();
        let token = federation::token::Invite::decode(&doc.token).unwrap();
        JoinRequest {
            network: self.net.network.id,
            invite: token.id,
            secret: token.secret,
            wg_key: [42; 32],
            name: "newcomer".into(),
            address: None,
            inviter: Some(token.inviter),
        }
    }

    /// A newcomer presents `join` to node `at`; its answer comes under `tag`.
    pub(super) fn present(&mut self, at: usize, join: JoinRequest, tag: Tag) {
        let newcomer = federation::NodeKey::from_seed(&[9; 32]).id();
        let (now, now_ms) = (self.now, self.now_ms);
        self.nodes[at].member.handle_request(
            newcomer,
            Ask::Join(join),
            (OUTSIDER, tag),
            now,
            now_ms,
            &mut self.rng,
        );
        self.pump();
    }
}
