//! `hostsmith sops check|rekey`: the fleet's SOPS files as a whole.

mod check;
mod rekey;

use crate::command::Context;
use crate::error::Result;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SopsCommand {
    /// Validate the creation rules against the host records and files.
    Check,
    /// Re-wrap data keys after .sops.yaml changed, in parallel (`sops updatekeys` for the fleet).
    Rekey(rekey::RekeyArgs),
}

/// # Errors
/// [`Error::Problems`] when `check` finds any; see each command.
pub(crate) fn run(cmd: SopsCommand, ctx: &Context) -> Result<()> {
    match cmd {
        SopsCommand::Check => check::run(ctx),
        SopsCommand::Rekey(args) => rekey::run(&args, ctx),
    }
}
