//! `hostsmith keys …`: the key lifecycle of the fleet's hosts.
//!
//! The fleet is the key store: the private keys live encrypted in `sops/<host>.yaml`, the
//! public facts in `hosts/<host>.json`, and who may read what in `.sops.yaml`. Every
//! subcommand keeps those three and the shared files consistent with each other: read-only
//! ones report where they disagree, changing ones plan everything in memory and write under
//! the fleet lock in the order `provision` documents (host files, shared files, `.sops.yaml`,
//! records last).

mod delete;
mod export;
mod import;
mod list;
mod migrate;
mod rotate;
mod rotate_aged;

use crate::command::{Context, host_names};
use crate::error::Result;
use crate::host_name::HostName;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// Every host's keys, and what records, .sops.yaml and the SOPS files disagree on.
    List,
    /// One host's keys in detail.
    Show(list::ShowArgs),
    /// Print a host's public key, its age recipient, or a deploy key.
    Public(list::PublicArgs),
    /// Decrypt a host's private key (or a deploy key) into a new 0600 file.
    Export(export::Args),
    /// Adopt an existing ed25519 private key as a host's key.
    Import(import::Args),
    /// Give a host a new host key (or new deploy keys) and re-key what it can read.
    Rotate(rotate::Args),
    /// Revoke a host: remove it from .sops.yaml and re-key what it could read.
    Delete(delete::Args),
    /// Write records for a fleet made by shell scripts (EmergentMind-style nix-secrets).
    Migrate(migrate::Args),
}

/// # Errors
/// Whatever the subcommand reports.
pub(crate) fn run(cmd: KeysCommand, ctx: &Context) -> Result<()> {
    match cmd {
        KeysCommand::List => list::list(ctx),
        KeysCommand::Show(args) => list::show(&args, ctx),
        KeysCommand::Public(args) => list::public(&args, ctx),
        KeysCommand::Export(args) => export::run(&args, ctx),
        KeysCommand::Import(args) => import::run(&args, ctx),
        KeysCommand::Rotate(args) => rotate::run(&args, ctx),
        KeysCommand::Delete(args) => delete::run(&args, ctx),
        KeysCommand::Migrate(args) => migrate::run(&args, ctx),
    }
}

/// One validated host name from a positional argument.
fn one_host(name: &str) -> Result<HostName> {
    Ok(host_names(&[name.to_string()])?.remove(0))
}
