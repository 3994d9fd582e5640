//! The command-line side of cladnet: the commands as parsed ([`args`]) and
//! what each does. They reach the running agent only through its local
//! API ([`crate::api`]); `join` and `federate` also talk to members of a
//! network over the control plane ([`conversation`]). The `agent` command
//! itself is handed back to the caller, which runs the daemon.

pub mod args;
pub mod client;
pub mod conversation;
pub mod docgen;
pub mod federate;
pub mod join;
pub mod render;
pub mod setup;

use crate::api::{self, docs, Request};
use crate::change::Change;
use anyhow::{Context, Result};
use args::{AddrSpace, AgentArgs, Authority, Cli, Command, Federate, QueryArgs, SetArgs, Shell};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Read;

/// Runs the command `cli` names; `agent` goes to `run_agent`, which runs
/// the daemon (the CLI side does not know it).
pub fn run(cli: Cli, run_agent: impl FnOnce(AgentArgs) -> Result<()>) -> Result<()> {
    match cli.command {
        Command::Agent(agent) => run_agent(agent),
        Command::Genkey => {
            println!("{}", netstack::PrivateKey::generate().to_base64());
            Ok(())
        }
        Command::Pubkey => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the private key from stdin")?;
            let key = netstack::PrivateKey::from_base64(&s)
                .context("stdin does not hold a private key")?;
            println!("{}", key.public_key().to_base64());
            Ok(())
        }
        Command::Init {
            mut node,
            cidr,
            network,
            allow_public_range,
        } => setup::init(&node.options()?, cidr, allow_public_range, &network),
        Command::Join {
            token,
            mut node,
            address,
        } => join::join(&node.options()?, &token, address),
        Command::Invite {
            state,
            ttl,
            uses,
            tags,
        } => {
            let request = Request::Invite {
                ttl_s: ttl.as_secs(),
                uses,
                tags,
            };
            let invite: docs::Invite = client::ask(&state.state, request, None)?;
            println!("{}", invite.token);
            Ok(())
        }
        Command::Status { query, check: true } => {
            let s: docs::Status =
                client::ask(&query.state.state, Request::Status, query.via.as_deref())?;
            if s.healthy {
                println!("{}", s.verdict);
                Ok(())
            } else {
                anyhow::bail!("{}", s.verdict)
            }
        }
        Command::Status { query, .. } => query.print(Request::Status, render::status),
        Command::Members(q) => {
            q.print(Request::Members, |m: &Vec<docs::Member>| render::members(m))
        }
        Command::Peers(q) => q.print(Request::Peers, |p: &Vec<docs::Peer>| render::peers(p)),
        Command::Metrics(q) => q.print(Request::Metrics, render::metrics),
        Command::Ping { node, state, count } => client::ping(&state.state, &node, count),
        Command::Revoke { node, state } => {
            let r: docs::Revoked =
                client::ask(&state.state, Request::Revoke { node: node.clone() }, None)?;
            println!("revoked {node} ({})", r.revoked);
            Ok(())
        }
        Command::Tag {
            node, tags, state, ..
        } => {
            let r: docs::Tagged = client::ask(&state.state, Request::Tag { node, tags }, None)?;
            println!("{} now has tags [{}]", r.name, r.tags.join(", "));
            Ok(())
        }
        Command::Set(set) => {
            println!("{}", client::set(&set.state.state, set.change()?)?);
            Ok(())
        }
        Command::Leave { state } => {
            let _: docs::Left = client::ask(&state.state, Request::Leave, None)?;
            println!("left the network; the agent stops");
            Ok(())
        }
        Command::Federate(Federate::Offer {
            state,
            expose,
            relays,
            ttl,
            authority,
        }) => federate::offer(
            &state.state,
            (expose.as_deref(), relays.as_deref()),
            ttl,
            authority.as_deref(),
        ),
        Command::Federate(Federate::Accept {
            offer,
            state,
            expose,
            relays,
            authority,
        }) => federate::accept(
            &state.state,
            &offer,
            (expose.as_deref(), relays.as_deref()),
            authority.as_deref(),
        ),
        Command::Federate(Federate::List(q)) => q
            .print(Request::FederateList, |f: &Vec<docs::Federation>| {
                render::federations(f)
            }),
        Command::Federate(Federate::End {
            org,
            state,
            authority,
        }) => federate::end(&state.state, &org, authority.as_deref()),
        Command::Authority(Authority::Export { state, out }) => {
            let mut dir = crate::statedir::StateDir::load(&state.state)?;
            dir.export_authority(&out)?;
            println!(
                "the authority key of network {} is now only in {} (mode 0600): keep it offline; this node goes on admitting with its own certificate",
                dir.network.id,
                out.display()
            );
            Ok(())
        }
        Command::AddrSpace(AddrSpace::Recommend {
            host_cidr,
            hosts,
            state,
            json,
        }) => {
            let r = client::recommend(host_cidr, hosts, state.as_deref())?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                let rec = &r.recommendation;
                println!("recommended: {}", rec.recommended);
                println!("free blocks of /{} or larger:", rec.prefix);
                for b in &rec.free {
                    println!("  {}", b.block);
                }
            }
            Ok(())
        }
        Command::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            docgen::completions(shell, &mut std::io::stdout())
        }
        Command::Manpages { out } => docgen::manpages(&out),
        Command::Show {
            iface,
            api_socket,
            json,
        } => {
            let socket = match (api_socket, iface) {
                (Some(s), _) => s,
                (None, Some(i)) => args::default_socket(&i),
                (None, None) => anyhow::bail!("pass --iface NAME or --api-socket PATH"),
            };
            let show: docs::Show = api::ask(&socket, &Request::Show)?;
            if json {
                println!("{}", serde_json::to_string(&show)?);
            } else {
                print!("{}", render::show(&show));
            }
            Ok(())
        }
    }
}

impl QueryArgs {
    /// Asks `request` (of this node, or `--via` another) and prints the
    /// document: as JSON with `--json`, else as `text` renders it.
    fn print<T: DeserializeOwned + Serialize>(
        &self,
        request: Request,
        text: fn(&T) -> String,
    ) -> Result<()> {
        let doc: T = client::ask(&self.state.state, request, self.via.as_deref())?;
        if self.json {
            println!("{}", serde_json::to_string(&doc)?);
        } else {
            print!("{}", text(&doc));
        }
        Ok(())
    }
}

impl SetArgs {
    /// What the flags change; an error if they change nothing.
    fn change(&self) -> Result<Change> {
        let change = Change {
            advertise: (self.no_advertise || !self.advertise.is_empty())
                .then(|| self.advertise.clone()),
            listen: self.listen,
            control_listen: self.control_listen,
            metrics_listen: if self.no_metrics_listen {
                Some(None)
            } else {
                self.metrics_listen.map(Some)
            },
            relay: (self.relay || self.no_relay).then_some(self.relay),
            labels: if self.no_labels || !self.labels.is_empty() {
                Some(setup::labels(&self.labels)?)
            } else {
                None
            },
        };
        if change == Change::default() {
            anyhow::bail!("say what to change: --advertise, --listen, --control-listen, --metrics-listen, --relay/--no-relay or --label (see cladnet set --help)");
        }
        Ok(change)
    }
}
