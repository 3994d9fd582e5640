//! `cladnet`: the mesh VPN agent and its command-line interface.

mod api;
mod daemon;
mod dataplane;
mod uapi;
mod wgconfig;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;

/// cladnet: a serverless, WireGuard-compatible mesh VPN.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a new private key (base64, compatible with `wg genkey`).
    Genkey,
    /// Read a private key on stdin and print its public key.
    Pubkey,
    /// Run a node in the foreground from a wg-quick style configuration file.
    Agent {
        /// Configuration in wg-quick format ([Interface] and [Peer] sections).
        #[arg(long, value_name = "FILE")]
        wg_config: PathBuf,
        /// Name of the TUN interface to create (default: the file name without extension).
        #[arg(long, value_name = "NAME")]
        iface: Option<String>,
        /// Path of the local control socket (default: /run/cladnet/NAME.sock).
        #[arg(long, value_name = "PATH")]
        api_socket: Option<PathBuf>,
    },
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

/// Default control socket of the agent for `iface`.
fn default_socket(iface: &str) -> PathBuf {
    PathBuf::from("/run/cladnet").join(format!("{iface}.sock"))
}

fn main() {
    // Logs go to stderr; RUST_LOG overrides the default level (info).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
        Command::Agent {
            wg_config,
            iface,
            api_socket,
        } => {
            let config = wgconfig::load(&wg_config).with_context(|| {
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
            if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
                anyhow::bail!("interface name {iface:?} is invalid: use 1 to 15 characters without '/' or spaces (--iface NAME)");
            }
            let socket = api_socket.unwrap_or_else(|| default_socket(&iface));
            daemon::run(config, &iface, &socket)
        }
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
            let status = api::request(&socket, "show")?;
            if json {
                println!("{status}");
            } else {
                print!("{}", api::render_table(&status));
            }
            Ok(())
        }
    }
}
