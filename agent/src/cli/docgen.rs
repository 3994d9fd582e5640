//! What the package ships besides the binary, generated from the CLI
//! definition itself so it never drifts: shell completions
//! (`clap_complete`) and man pages (`clap_mangen`).

use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::Path;

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) -> Result<()> {
    let mut cmd = super::args::Cli::command();
    clap_complete::generate(shell, &mut cmd, "cladnet", out);
    Ok(())
}

/// Writes `cladnet.1` and `cladnet-COMMAND.1` for every visible command
/// into `dir`.
pub fn manpages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = super::args::Cli::command();
    write_page(dir, "cladnet", cmd.clone())?;
    for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = format!("cladnet-{}", sub.get_name());
        write_page(dir, &name, sub.clone().name(name.clone()))?;
    }
    Ok(())
}

fn write_page(dir: &Path, name: &str, cmd: clap::Command) -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))
}
