//! The command line as clap parses it: every command with its flags and
//! their help (the man pages and shell completions are generated from
//! it), and the parsers of the values flags take.

use crate::advertise::Advertise;
use crate::statedir::DEFAULT_STATE;
use anyhow::Result;
use clap::{Parser, Subcommand};
use federation::Cidr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// cladnet: a serverless, WireGuard-compatible mesh VPN.
#[derive(Parser)]
#[command(name = "cladnet", version, about)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Subcommand)]
pub enum Command {
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
        #[command(flatten)]
        state: StateArg,
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
    Agent(AgentArgs),
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
        #[command(flatten)]
        state: StateArg,
        /// Number of echo requests.
        #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        count: u32,
    },
    /// Remove a member (by name, address or id) from the network for good.
    Revoke {
        /// Name, overlay address or id (at least 8 hex digits) of the node.
        node: String,
        #[command(flatten)]
        state: StateArg,
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
        #[command(flatten)]
        state: StateArg,
    },
    /// Change settings after init, running or not: advertised addresses
    /// and labels at once; ports, the metrics listener and relaying after a
    /// restart (it says which).
    Set(SetArgs),
    /// Leave the network: tell the others, then stop this node's agent.
    Leave {
        #[command(flatten)]
        state: StateArg,
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

/// The state directory a command works on (`--state`).
#[derive(clap::Args)]
pub struct StateArg {
    /// State directory of this node.
    #[arg(long, value_name = "DIR", env = "CLADNET_STATE", default_value = DEFAULT_STATE)]
    pub state: PathBuf,
}

/// Options of `agent`.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// State directory made by `init` or `join` (default:
    /// $CLADNET_STATE, else /var/lib/cladnet).
    #[arg(
        long,
        value_name = "DIR",
        env = "CLADNET_STATE",
        conflicts_with = "wg_config"
    )]
    pub state: Option<PathBuf>,
    /// Configuration in wg-quick format ([Interface] and [Peer] sections).
    #[arg(long, value_name = "FILE")]
    pub wg_config: Option<PathBuf>,
    /// Name of the TUN interface to create (default: cladnet0 with
    /// --state, the file name without extension with --wg-config).
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,
    /// Path of the local control socket for --wg-config (default:
    /// /run/cladnet/NAME.sock; with --state it is DIR/agent.sock).
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,
    /// Serve Prometheus metrics (/metrics) and a page drawing the mesh
    /// (/) on this TCP address (--state only).
    #[arg(long, value_name = "IP:PORT", conflicts_with = "wg_config")]
    pub metrics_listen: Option<SocketAddr>,
    /// Never relay other members' traffic through this node.
    #[arg(long, conflicts_with = "wg_config")]
    pub no_relay: bool,
}

/// The shells `completions` writes for (no doc comments on the variants:
/// clap would show them as help of each value).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Options of the query commands.
#[derive(clap::Args)]
pub struct QueryArgs {
    /// `--state`.
    #[command(flatten)]
    pub state: StateArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Ask another member (name, overlay address, id, or control IP:PORT)
    /// and print its answer.
    #[arg(long, value_name = "NODE|ADDR")]
    pub via: Option<String>,
}

/// Options of `init` and `join`.
#[derive(clap::Args)]
#[command(mut_arg("state", |a| a.help("State directory to create (keys, certificates, state)")))]
pub struct NodeArgs {
    /// `--state`.
    #[command(flatten)]
    pub state: StateArg,
    /// This node's name (a-z, 0-9, -; default: this host's name,
    /// lowercased, other characters made -).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// WireGuard UDP address.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:51820")]
    pub listen: SocketAddr,
    /// Control plane (QUIC) UDP address.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:51821")]
    pub control_listen: SocketAddr,
    /// An address at which this node's ports are reached from outside
    /// (repeat for several): the public IP of a cloud VM behind a 1:1 NAT,
    /// with the data-plane port if the NAT maps it to another (the control
    /// plane keeps its listen port). `auto` asks the cloud's metadata
    /// service (AWS, GCE, Azure, OpenStack).
    #[arg(long, value_name = "IP[:PORT]|auto")]
    pub advertise: Vec<Advertise>,
    /// Describe this node (repeatable, at most 8): provider=aws,
    /// region=eu-west-1, zone=eu-west-1a. Shown by `members`; never used
    /// for policy (certificate tags from `invite --tag` are).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

/// Options of `set`.
#[derive(clap::Args)]
pub struct SetArgs {
    /// `--state`.
    #[command(flatten)]
    pub state: StateArg,
    /// Addresses at which this node's ports are reached from outside,
    /// replacing the ones given before (see `init --advertise`).
    /// Applied at once.
    #[arg(long, value_name = "IP[:PORT]|auto")]
    pub advertise: Vec<Advertise>,
    /// Advertise nothing any more.
    #[arg(long, conflicts_with = "advertise")]
    pub no_advertise: bool,
    /// WireGuard UDP address (after a restart).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<SocketAddr>,
    /// Control-plane UDP address (after a restart).
    #[arg(long, value_name = "IP:PORT")]
    pub control_listen: Option<SocketAddr>,
    /// Serve /metrics and the mesh page here (after a restart).
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// No metrics listener (after a restart).
    #[arg(long, conflicts_with = "metrics_listen")]
    pub no_metrics_listen: bool,
    /// Relay for other members again (after a restart).
    #[arg(long)]
    pub relay: bool,
    /// Never relay for other members (after a restart).
    #[arg(long, conflicts_with = "relay")]
    pub no_relay: bool,
    /// What the node says about itself, replacing every label
    /// (repeatable; applied at once).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Remove every label.
    #[arg(long, conflicts_with = "labels")]
    pub no_labels: bool,
}

/// `federate`'s commands.
#[derive(Subcommand)]
pub enum Federate {
    /// Print a one-time, expiring offer token for another network's
    /// authority to accept.
    Offer {
        #[command(flatten)]
        state: StateArg,
        /// What this network lets the other reach: `all`, or members whose
        /// certificates carry one of these tags.
        #[arg(long, value_name = "all|TAG[,TAG]")]
        expose: Option<String>,
        /// Lend the members whose certificates carry one of these tags to
        /// the other network as relays: they forward its sealed datagrams
        /// between the pairs the agreement connects, and are no hosts there.
        #[arg(long, value_name = "TAG[,TAG]")]
        relays: Option<String>,
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
        #[command(flatten)]
        state: StateArg,
        /// What this network lets the other reach: `all`, or members whose
        /// certificates carry one of these tags.
        #[arg(long, value_name = "all|TAG[,TAG]")]
        expose: Option<String>,
        /// Lend the members whose certificates carry one of these tags to
        /// the other network as relays: they forward its sealed datagrams
        /// between the pairs the agreement connects, and are no hosts there.
        #[arg(long, value_name = "TAG[,TAG]")]
        relays: Option<String>,
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
        #[command(flatten)]
        state: StateArg,
        /// The authority key file, when this node does not hold the key.
        #[arg(long, value_name = "FILE")]
        authority: Option<PathBuf>,
    },
}

/// `authority`'s commands.
#[derive(Subcommand)]
pub enum Authority {
    /// Move the authority key out of the state directory into a new file
    /// (mode 0600) to keep offline; the node goes on admitting with its
    /// own certificate. Run it with the agent stopped.
    #[command(mut_arg("state", |a| a.help("State directory of the node that holds the key")))]
    Export {
        #[command(flatten)]
        state: StateArg,
        /// The file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `addr-space`'s commands.
#[derive(Subcommand)]
pub enum AddrSpace {
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

/// Default control socket of the agent for `iface` (`agent --wg-config`
/// listens there, `show --iface` asks there).
pub fn default_socket(iface: &str) -> PathBuf {
    PathBuf::from("/run/cladnet").join(format!("{iface}.sock"))
}
