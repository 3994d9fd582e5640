//! The command line talking to members of a network over the control
//! plane: `join` presents an invite (then hands over the new node's first
//! record), `federate accept` and `federate end` hand the other network an
//! agreement or its end. The members are those a token names (an invite,
//! or an offer the agent read); whom to dial and ask, and when to give up,
//! follows [`Joining`]: the first named alone for a moment, then the
//! others, one asked at a time, the next when a request dies unanswered.
//! Nobody reached is said in one sentence, with the ports to open.

use anyhow::Result;
use federation::contact::Contact;
use federation::joining::{Action, Joining, CONNECT_TIMEOUT};
use federation::net::{Event, RequestId, Shell};
use federation::protocol::{Request, Response};
use federation::token::TokenError;
use federation::{NetworkId, NodeId, NodeKey};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// The sentence for an answer the command has no use for.
pub const UNEXPECTED: &str =
    "the member answered something unexpected; is it a cladnet agent of the same version?";

/// A conversation with members of one network.
pub struct Conversation {
    shell: Shell,
    contacts: Vec<Contact>,
    order: Joining,
    /// The member talked to: the one asked last, while it answers.
    member: Option<NodeId>,
    /// How many members said they are members no more.
    passed: usize,
    /// Why the last request died unanswered.
    last_error: Option<String>,
}

/// A request out: its id, to whom, and until when its answer is awaited.
type Asked = (RequestId, NodeId, Instant);

impl Conversation {
    /// Opens a conversation, as `key`, with the members of `network` that
    /// `contacts` name, the first tried first. Call it within the tokio
    /// runtime the conversation runs on.
    pub fn open(key: &NodeKey, network: &NetworkId, contacts: Vec<Contact>) -> Result<Self> {
        let Some(first) = contacts.first() else {
            anyhow::bail!(unreachable(&contacts, None));
        };
        let order = Joining::among(first.id, contacts.iter().map(|c| c.id).collect(), now());
        Ok(Self {
            shell: Shell::client(key.seed(), network)?,
            contacts,
            order,
            member: None,
            passed: 0,
            last_error: None,
        })
    }

    /// Asks `request` of the member that answered before, else of the next
    /// one reached (another when a request dies unanswered), and waits
    /// `timeout` for the answer. Fails when nobody can be reached, or the
    /// member asked does not answer in time.
    pub async fn ask(&mut self, request: &Request, timeout: Duration) -> Result<Response> {
        let mut asked = match self.member {
            Some(member) => Some(self.send(member, request, timeout)?),
            None => None,
        };
        loop {
            while let Some(action) = self.order.poll_action() {
                match action {
                    Action::Dial(member) => {
                        if let Some(c) = self.contacts.iter().find(|c| c.id == member) {
                            self.shell.dial(&c.id, &c.addrs);
                        }
                    }
                    Action::Ask(member) => asked = Some(self.send(member, request, timeout)?),
                    Action::GiveUp => {
                        anyhow::bail!(unreachable(&self.contacts, self.last_error.take()))
                    }
                }
            }
            let wake = match (asked, self.order.poll_timeout()) {
                (Some((.., until)), _) => until,
                (None, Some(t)) => Instant::from_std(t),
                (None, None) => Instant::now() + timeout,
            };
            tokio::select! {
                event = self.shell.next() => match event {
                    Event::Connected(id, _) => self.order.handle_connected(id, now()),
                    Event::Response { id, response, .. } if asked.is_some_and(|a| a.0 == id) => return Ok(response),
                    Event::Failed { id, peer, error } if asked.is_some_and(|a| a.0 == id) => {
                        tracing::debug!(peer = %peer.short(), "the request failed: {error}");
                        self.last_error = Some(error);
                        self.member = None;
                        asked = None;
                        self.order.handle_failed(peer, now());
                    }
                    _ => {}
                },
                _ = tokio::time::sleep_until(wake) => match asked {
                    Some((_, member, _)) => anyhow::bail!(
                        "the member at {} did not answer the {} within {}s: try again",
                        endpoints_of(&self.contacts, &member),
                        what(request),
                        timeout.as_secs()
                    ),
                    None => self.order.handle_timeout(now()),
                },
            }
        }
    }

    /// Passes over the member that answered last, which is a member no
    /// more: the next [`Conversation::ask`] goes to another. Fails when
    /// every member named was passed over.
    pub fn pass_over(&mut self) -> Result<()> {
        if let Some(member) = self.member.take() {
            self.passed += 1;
            self.order.handle_failed(member, now());
        }
        if self.passed >= self.contacts.len() {
            anyhow::bail!("none of the members it gave is a member any more");
        }
        Ok(())
    }

    /// Ends the conversation, leaving the connections `within` to close.
    pub async fn close(self, within: Duration) {
        self.shell.close(within).await;
    }

    /// Sends `request` to `member`, who is then the member talked to.
    fn send(&mut self, member: NodeId, request: &Request, timeout: Duration) -> Result<Asked> {
        let id = self
            .shell
            .request(&member, &[], request.clone())
            .ok_or(TokenError::Malformed)?;
        self.member = Some(member);
        Ok((id, member, Instant::now() + timeout))
    }
}

/// Now on tokio's clock, as [`Joining`] takes it.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// What `request` hands over, in the sentence of a member that does not
/// answer it.
fn what(request: &Request) -> &'static str {
    match request {
        Request::Join(_) => "join",
        Request::Push(_) => "record",
        Request::Federate { .. } => "agreement",
        Request::EndFederation(_) => "end of the agreement",
        _ => "request",
    }
}

/// The control endpoints the token gives for `member`.
fn endpoints_of(contacts: &[Contact], member: &NodeId) -> String {
    contacts
        .iter()
        .filter(|c| c.id == *member)
        .flat_map(|c| &c.addrs)
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sentence for a token none of whose members answered: the
/// addresses tried and the ports to open, as the token gives them.
fn unreachable(contacts: &[Contact], last_error: Option<String>) -> String {
    let mut tried: Vec<String> = Vec::new();
    let mut ports: Vec<u16> = Vec::new();
    for a in contacts.iter().flat_map(|c| &c.addrs) {
        if !tried.contains(&a.to_string()) {
            tried.push(a.to_string());
        }
        if !ports.contains(&a.port()) {
            ports.push(a.port());
        }
    }
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let ports = match ports.split_last() {
        None => "the control plane's UDP port".to_string(),
        Some((one, [])) => format!("UDP port {one} (the control plane)"),
        Some((last, rest)) => format!(
            "UDP ports {} and {last} (the control plane)",
            rest.join(", ")
        ),
    };
    let why = last_error.map_or(String::new(), |e| format!(" (last error: {e})"));
    format!(
        "cannot reach any member named in the token within {}s (tried {}){why}: check that their agents run and that {ports} and their WireGuard port (UDP 51820 unless set otherwise with --listen) are open to them (the cloud's firewall or security group)",
        CONNECT_TIMEOUT.as_secs(),
        if tried.is_empty() { "no address".into() } else { tried.join(", ") },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use federation::fixture::TestNetwork;

    #[test]
    fn an_unreachable_token_names_the_ports_it_tried() {
        let contacts = [Contact {
            id: TestNetwork::new(6).member(1).key.id(),
            addrs: vec![
                "198.18.0.1:4001".parse().unwrap(),
                "198.18.0.2:4002".parse().unwrap(),
            ],
        }];
        let said = unreachable(&contacts, None);
        assert!(said.contains("UDP ports 4001 and 4002"), "{said}");
        assert!(!said.contains("51821"), "{said}");
    }
}
