//! `cladnet`: the mesh VPN agent and its command-line interface. The
//! command line is parsed and dispatched by [`cli`]; `cladnet agent` runs
//! the daemon ([`daemon`], or [`wg`] for a wg-quick configuration).

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
mod member;
mod metadata;
mod probe;
mod process;
mod statedir;
mod telemetry;
mod wg;

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;

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
    if let Err(e) = cli::run(cli::args::Cli::parse(), agent) {
        eprintln!("cladnet: {e:#}");
        std::process::exit(1);
    }
}

/// `cladnet agent`: a network member from its state directory, or a
/// static node from a wg-quick configuration.
fn agent(args: cli::args::AgentArgs) -> Result<()> {
    let Some(wg_config) = args.wg_config else {
        let state = args
            .state
            .unwrap_or_else(|| PathBuf::from(statedir::DEFAULT_STATE));
        let iface = args.iface.unwrap_or_else(|| "cladnet0".into());
        check_iface(&iface)?;
        return daemon::run(&state, &iface, args.metrics_listen, !args.no_relay);
    };
    let config = wg::config::load(&wg_config)
        .with_context(|| format!("{} is not a usable configuration", wg_config.display()))?;
    let iface = match args.iface {
        Some(i) => i,
        None => wg_config
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
            .context("cannot derive an interface name from the file name; pass --iface NAME")?,
    };
    check_iface(&iface)?;
    let socket = args
        .api_socket
        .unwrap_or_else(|| cli::args::default_socket(&iface));
    wg::run(config, &iface, &socket)
}

/// Refuses a name the kernel would not take for an interface.
fn check_iface(iface: &str) -> Result<()> {
    if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
        anyhow::bail!("interface name {iface:?} is invalid: use 1 to 15 characters without '/' or spaces (--iface NAME)");
    }
    Ok(())
}
