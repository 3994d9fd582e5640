//! `cladnet`: the mesh VPN agent and its command-line interface.

mod accept;
mod advertise;
mod api;
mod change;
mod cli;
mod daemon;
mod dataplane;
mod dns;
mod exposition;
mod health;
mod inventory;
mod lookup;
mod mesh;
mod metadata;
mod probe;
mod process;
mod statedir;
mod telemetry;
mod wg;

use anyhow::{Context, Result};
use api::{docs, Request};
use clap::{Parser, Subcommand};
use cli::{client, docgen, federate, render, setup as commands};
use federation::Cidr;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// cladnet: a serverless, WireGuard-compatible mesh VPN.
#[derive(Parser)]
#[command(name = "cladnet", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

use statedir::DEFAULT_STATE;

#[derive(Subcommand)]
enum Command {
    /// Print a new private key (base64, compatible with `wg genkey`).
    Genkey,
    /// Read a private key on stdin and print its public key.
    Pubkey,
    /// Create a new network and its first node in a state directory.
    Init {
        #[command(flatten)]
        node: NodeArgs,
        /// Overlay range (default: a /22 drawn at random among the free
        /// blocks of 10.0.0.0/9 that overlap none of this host's networks,
        /// so independent networks can federate; see `addr-space recommend`).
        #[arg(long, value_name = "CIDR")]
        cidr: Option<Cidr>,
        /// Name of the network (shown by `status`).
        #[arg(long, value_name = "NAME", default_value = "cladnet")]
        network: String,
        /// Accept a --cidr outside the private ranges (address space you
        /// own and do not reach otherwise).
        #[arg(long)]
        allow_public_range: bool,
    },
    /// Print the shell completion script (bash, zsh or fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man pages (cladnet.1 and one per command) into DIR.
    #[command(hide = true)]
    Manpages {
        /// Directory to write them into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print a one-time invite token for a new node (needs the running agent).
    Invite {
        /// State directory of this node.
        #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
        state: PathBuf,
        /// How long the token stays valid: 90s, 30m, 1h, 7d (default 1h).
        #[arg(long, value_name = "DUR", default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// How many nodes may join with it.
        #[arg(long, value_name = "N", default_value_t = 1)]
        uses: u32,
        /// A tag for the nodes admitted with it, written into their
        /// certificates (repeatable; at most 8): what federation exposure
        /// selects members by. A node cannot tag itself.
        #[arg(long = "tag", value_name = "NAME", value_parser = parse_tag)]
        tags: Vec<String>,
    },
    /// Join a network with an invite token; prepares the state directory.
    Join {
        /// The token printed by `cladnet invite`.
        token: String,
        #[command(flatten)]
        node: NodeArgs,
        /// Use this overlay address instead of a free one.
        #[arg(long, value_name = "IP")]
        address: Option<Ipv4Addr>,
    },
    /// Run a node in the foreground: a network member (--state) or a static
    /// WireGuard-style node (--wg-config).
    Agent {
        /// State directory made by `init` or `join` (default:
        /// $CLADNET_STATE, else /var/lib/cladnet).
        #[arg(
            long,
            value_name = "DIR",
            env = "CLADNET_STATE",
            conflicts_with = "wg_config"
        )]
        state: Option<PathBuf>,
        /// Configuration in wg-quick format ([Interface] and [Peer] sections).
        #[arg(long, value_name = "FILE")]
        wg_config: Option<PathBuf>,
        /// Name of the TUN interface to create (default: cladnet0 with
        /// --state, the file name without extension with --wg-config).
        #[arg(long, value_name = "NAME")]
        iface: Option<String>,
        /// Path of the local control socket for --wg-config (default:
        /// /run/cladnet/NAME.sock; with --state it is DIR/agent.sock).
        #[arg(long, value_name = "PATH")]
        api_socket: Option<PathBuf>,
        /// Serve Prometheus metrics (/metrics) and a page drawing the mesh
        /// (/) on this TCP address (--state only).
        #[arg(long, value_name = "IP:PORT", conflicts_with = "wg_config")]
        metrics_listen: Option<SocketAddr>,
        /// Never relay other members' traffic through this node.
        #[arg(long, conflicts_with = "wg_config")]
        no_relay: bool,
    },
    /// This node: a health verdict, then name, id, address, network,
    /// range, MTU.
    Status {
        #[command(flatten)]
        query: QueryArgs,
        /// Print only the verdict; exit 1 when a human is needed (this
        /// node revoked, a member unreachable for over 2 minutes).
        #[arg(long)]
        check: bool,
    },
    /// Every member of the network with its address, endpoints and state.
    Members(QueryArgs),
    /// This node's tunnels: endpoint, path, bytes, handshake, RTT and loss per peer.
    Peers(QueryArgs),
    /// The whole network: every node's CPU/memory and the RTT matrix.
    Metrics(QueryArgs),
    /// Ping a member over the overlay; prints RTT and the path taken.
    Ping {
        /// Name (NAME@ORG for a federated network's member), overlay
        /// address or id of the member.
        node: String,
        /// State directory of this node.
        #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
        state: PathBuf,
        /// Number of echo requests.
        #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        count: u32,
    },
    /// Remove a member (by name, address or id) from the network for good.
    Revoke {
        /// Name, overlay address or id (at least 8 hex digits) of the node.
        node: String,
        /// State directory of this node.
        #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
        state: PathBuf,
    },
    /// Give a member other tags (an admitter re-issues its certificate;
    /// federation exposure follows in seconds on both sides).
    Tag {
        /// Name, overlay address or id of the member.
        node: String,
        /// Its new tags (replacing the old ones; at most 8).
        #[arg(value_name = "TAG", value_parser = parse_tag, required_unless_present = "clear")]
        tags: Vec<String>,
        /// Remove every tag.
        #[arg(long, conflicts_with = "tags")]
        clear: bool,
        /// State directory of this node.
        #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
        state: PathBuf,
    },
    /// Change settings after init, running or not: advertised addresses
    /// and labels at once; ports, the metrics listener and relaying after a
    /// restart (it says which).
    Set {
        /// State directory of this node.
        #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
        state: PathBuf,
        /// Addresses at which this node's ports are reached from outside,
        /// replacing the ones given before (see `init --advertise`).
        /// Applied at once.
        #[arg(long, value_name = "IP[:PORT]|auto")]
        advertise: Vec<advertise::Advertise>,
        /// Advertise nothing any more.
        #[arg(long, conflicts_with = "advertise")]
        no_advertise: bool,
        /// WireGuard UDP address (after a restart).
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<SocketAddr>,
        /// Control-plane UDP address (after a restart).
        #[arg(long, value_name = "IP:PORT")]
        control_listen: Option<SocketAddr>,
        /// Serve /metrics and the mesh page here (after a restart).
        #[arg(long, value_name = "IP:PORT")]
        metrics_listen: Option<SocketAddr>,
        /// No metrics listener (after a restart).
        #[arg(long, conflicts_with = "metrics_listen")]
        no_metrics_listen: bool,
        /// Relay for other members again (after a restart).
        #[arg(long)]
        relay: bool,
        /// Never relay for other members (after a restart).
        #[arg(long, conflicts_with = "relay")]
        no_relay: bool,
        /// What the node says about itself, replacing every label
        /// (repeatable; applied at once).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Remove every label.
        #[arg(long, conflicts_with = "labels")]
        no_labels: bool,
    },
    /// Leave the network: tell the others, then stop this node's agent.
    Leave {
        /// State directory of this node.
        #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
        state: PathBuf,
    },
    /// Overlay address space helpers.
    #[command(subcommand)]
    AddrSpace(AddrSpace),
    /// The network's authority key (the node that ran `init` holds it).
    #[command(subcommand)]
    Authority(Authority),
    /// Agreements with other networks (run by the node holding the
    /// authority key, or with --authority FILE).
    #[command(subcommand)]
    Federate(Federate),
    /// Show a running agent's interface, peers and counters.
    Show {
        /// Interface of the agent to ask (socket /run/cladnet/NAME.sock).
        #[arg(long, value_name = "NAME", required_unless_present = "api_socket")]
        iface: Option<String>,
        /// Control socket of the agent to ask.
        #[arg(long, value_name = "PATH")]
        api_socket: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// The shells `completions` writes for.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Options of the query commands.
#[derive(clap::Args)]
struct QueryArgs {
    /// State directory of this node.
    #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
    state: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Ask another member (name, overlay address, id, or control IP:PORT)
    /// and print its answer.
    #[arg(long, value_name = "NODE|ADDR")]
    via: Option<String>,
}

impl QueryArgs {
    /// Asks `request` (of this node, or `--via` another) and prints the
    /// document: as JSON with `--json`, else as `text` renders it.
    fn print<T: DeserializeOwned + Serialize>(
        &self,
        request: Request,
        text: fn(&T) -> String,
    ) -> Result<()> {
        let doc: T = client::ask(&self.state, request, self.via.as_deref())?;
        if self.json {
            println!("{}", serde_json::to_string(&doc)?);
        } else {
            print!("{}", text(&doc));
        }
        Ok(())
    }
}

/// Options of `init` and `join`.
#[derive(clap::Args)]
struct NodeArgs {
    /// State directory to create (keys, certificates, state).
    #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
    state: PathBuf,
    /// This node's name (a-z, 0-9, -; default: this host's name,
    /// lowercased, other characters made -).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// WireGuard UDP address.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:51820")]
    listen: SocketAddr,
    /// Control plane (QUIC) UDP address.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:51821")]
    control_listen: SocketAddr,
    /// An address at which this node's ports are reached from outside
    /// (repeat for several): the public IP of a cloud VM behind a 1:1 NAT,
    /// with the data-plane port if the NAT maps it to another (the control
    /// plane keeps its listen port). `auto` asks the cloud's metadata
    /// service (AWS, GCE, Azure, OpenStack).
    #[arg(long, value_name = "IP[:PORT]|auto")]
    advertise: Vec<advertise::Advertise>,
    /// Describe this node (repeatable, at most 8): provider=aws,
    /// region=eu-west-1, zone=eu-west-1a. Shown by `members`; never used
    /// for policy (certificate tags from `invite --tag` are).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
}

impl NodeArgs {
    /// The options, with the host's name when `--name` is not given.
    fn options(&mut self) -> Result<commands::NodeOptions<'_>> {
        if self.name.is_none() {
            self.name = Some(commands::host_node_name()?);
        }
        Ok(commands::NodeOptions {
            state: &self.state,
            name: self.name.as_deref().unwrap_or_default(),
            listen: self.listen,
            control_listen: self.control_listen,
            advertise: &self.advertise,
            labels: &self.labels,
        })
    }
}

#[derive(Subcommand)]
enum Federate {
    /// Print a one-time, expiring offer token for another network's
    /// authority to accept.
    Offer {
        /// State directory of this node.
        #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
        state: PathBuf,
        /// What this network lets the other reach: `all`, or members whose
        /// certificates carry one of these tags.
        #[arg(long, value_name = "all|TAG[,TAG]")]
        expose: Option<String>,
        /// How long the offer stays valid: 90s, 30m, 1h, 7d (default 1h).
        #[arg(long, value_name = "DUR", default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// The authority key file (`cladnet authority export`), when this
        /// node does not hold the key.
        #[arg(long, value_name = "FILE")]
        authority: Option<PathBuf>,
    },
    /// Accept another network's offer: signs the agreement, hands it to a
    /// member of the offering network, then carries it in this network.
    Accept {
        /// The offer token printed by `cladnet federate offer`.
        offer: String,
        /// State directory of this node.
        #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
        state: PathBuf,
        /// What this network lets the other reach: `all`, or members whose
        /// certificates carry one of these tags.
        #[arg(long, value_name = "all|TAG[,TAG]")]
        expose: Option<String>,
        /// The authority key file, when this node does not hold the key.
        #[arg(long, value_name = "FILE")]
        authority: Option<PathBuf>,
    },
    /// This network's agreements: the other network, ranges, what each
    /// side exposes, active or ended.
    List(QueryArgs),
    /// End the agreement with another network (by its name or id).
    End {
        /// The other network's name or id.
        org: String,
        /// State directory of this node.
        #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
        state: PathBuf,
        /// The authority key file, when this node does not hold the key.
        #[arg(long, value_name = "FILE")]
        authority: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Authority {
    /// Move the authority key out of the state directory into a new file
    /// (mode 0600) to keep offline; the node goes on admitting with its
    /// own certificate. Run it with the agent stopped.
    Export {
        /// State directory of the node that holds the key.
        #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
        state: PathBuf,
        /// The file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AddrSpace {
    /// List free private ranges that overlap none of the host networks and
    /// recommend one.
    Recommend {
        /// A host network to avoid (repeat); default: this host's networks,
        /// or every member's with --state.
        #[arg(long = "host-cidr", value_name = "CIDR")]
        host_cidr: Vec<Cidr>,
        /// Number of hosts to size for (growth is added).
        #[arg(long, value_name = "N", default_value_t = 250)]
        hosts: u64,
        /// Ask the running agent of this state directory for every
        /// member's host networks.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Parses 90s, 30m, 1h, 7d or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 1h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?} is not a duration like 90s, 30m, 1h or 7d")),
    };
    Ok(Duration::from_secs(secs))
}

/// Parses a `--tag NAME`.
fn parse_tag(s: &str) -> Result<String, String> {
    if federation::cert::valid_name(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a tag: use 1-63 characters of a-z, 0-9 and -, not starting with -"
        ))
    }
}

/// Parses a `--label KEY=VALUE`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if federation::member::valid_label(k, v) => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "{s:?} is not a label like region=eu-west-1: a key of 1-32 characters of a-z, 0-9, -, _ and ., \
             `=`, and a value of at most 63 characters of letters, digits, -, _, ., : and /"
        )),
    }
}

/// Default control socket of the agent for `iface`.
fn default_socket(iface: &str) -> PathBuf {
    PathBuf::from("/run/cladnet").join(format!("{iface}.sock"))
}

fn main() {
    // Logs go to stderr; RUST_LOG overrides the default level (info).
    // quinn-udp's send errors (an unreachable address among several
    // tried) are said by our own messages, in words.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,libp2p_swarm=warn,quinn_udp=error")
    });
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("cladnet: {e:#}");
        std::process::exit(1);
    }
}

fn check_iface(iface: &str) -> Result<()> {
    if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
        anyhow::bail!("interface name {iface:?} is invalid: use 1 to 15 characters without '/' or spaces (--iface NAME)");
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
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
        } => commands::init(&node.options()?, cidr, allow_public_range, &network),
        Command::Join {
            token,
            mut node,
            address,
        } => commands::join(&node.options()?, &token, address),
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
            let invite: docs::Invite = client::ask(&state, request, None)?;
            println!("{}", invite.token);
            Ok(())
        }
        Command::Status { query, check: true } => {
            let s: docs::Status = client::ask(&query.state, Request::Status, query.via.as_deref())?;
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
        Command::Ping { node, state, count } => client::ping(&state, &node, count),
        Command::Revoke { node, state } => {
            let r: docs::Revoked =
                client::ask(&state, Request::Revoke { node: node.clone() }, None)?;
            println!("revoked {node} ({})", r.revoked);
            Ok(())
        }
        Command::Tag {
            node, tags, state, ..
        } => {
            let r: docs::Tagged = client::ask(&state, Request::Tag { node, tags }, None)?;
            println!("{} now has tags [{}]", r.name, r.tags.join(", "));
            Ok(())
        }
        Command::Set {
            state,
            advertise,
            no_advertise,
            listen,
            control_listen,
            metrics_listen,
            no_metrics_listen,
            relay,
            no_relay,
            labels,
            no_labels,
        } => {
            let change = change::Change {
                advertise: (no_advertise || !advertise.is_empty()).then_some(advertise),
                listen,
                control_listen,
                metrics_listen: if no_metrics_listen {
                    Some(None)
                } else {
                    metrics_listen.map(Some)
                },
                relay: (relay || no_relay).then_some(relay),
                labels: if no_labels || !labels.is_empty() {
                    Some(commands::labels(&labels)?)
                } else {
                    None
                },
            };
            if change == change::Change::default() {
                anyhow::bail!("say what to change: --advertise, --listen, --control-listen, --metrics-listen, --relay/--no-relay or --label (see cladnet set --help)");
            }
            println!("{}", client::set(&state, change)?);
            Ok(())
        }
        Command::Leave { state } => {
            let _: docs::Left = client::ask(&state, Request::Leave, None)?;
            println!("left the network; the agent stops");
            Ok(())
        }
        Command::Federate(Federate::Offer {
            state,
            expose,
            ttl,
            authority,
        }) => federate::offer(&state, expose.as_deref(), ttl, authority.as_deref()),
        Command::Federate(Federate::Accept {
            offer,
            state,
            expose,
            authority,
        }) => federate::accept(&state, &offer, expose.as_deref(), authority.as_deref()),
        Command::Federate(Federate::List(q)) => q
            .print(Request::FederateList, |f: &Vec<docs::Federation>| {
                render::federations(f)
            }),
        Command::Federate(Federate::End {
            org,
            state,
            authority,
        }) => federate::end(&state, &org, authority.as_deref()),
        Command::Authority(Authority::Export { state, out }) => {
            let mut dir = statedir::StateDir::load(&state)?;
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
        Command::Agent {
            state,
            wg_config: None,
            iface,
            metrics_listen,
            no_relay,
            ..
        } => {
            let state = state.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE));
            let iface = iface.unwrap_or_else(|| "cladnet0".into());
            check_iface(&iface)?;
            daemon::run(&state, &iface, metrics_listen, !no_relay)
        }
        Command::Agent {
            wg_config: Some(wg_config),
            iface,
            api_socket,
            ..
        } => {
            let config = wg::config::load(&wg_config).with_context(|| {
                format!("{} is not a usable configuration", wg_config.display())
            })?;
            let iface = match iface {
                Some(i) => i,
                None => wg_config
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_string)
                    .context(
                        "cannot derive an interface name from the file name; pass --iface NAME",
                    )?,
            };
            check_iface(&iface)?;
            let socket = api_socket.unwrap_or_else(|| default_socket(&iface));
            wg::run(config, &iface, &socket)
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
                (None, Some(i)) => default_socket(&i),
                (None, None) => anyhow::bail!("pass --iface NAME or --api-socket PATH"),
            };
            let show: docs::Show = api::ask(&socket, &Request::Show)?;
            if json {
                println!("{}", serde_json::to_string(&show)?);
            } else {
                print!("{}", wg::show_text(&show));
            }
            Ok(())
        }
    }
}
