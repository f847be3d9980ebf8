//! `hostsmith completions SHELL` and `hostsmith man [--out DIR]`: generated from the clap
//! definitions, so they cannot drift from the commands.

use std::path::PathBuf;

use crate::command::Context;
use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// Write one page per command into DIR (hostsmith.1, hostsmith-vm-fresh.1, …) instead of
    /// printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Prints the completion script for `cmd`, the whole command line (`cli` passes its own, so
/// this layer never reaches up to it).
///
/// # Errors
/// Never, in practice: writing to stdout.
pub(crate) fn completions(args: CompletionsArgs, mut cmd: clap::Command, _ctx: &Context) -> Result<()> {
    clap_complete::generate(args.shell, &mut cmd, "hostsmith", &mut std::io::stdout());
    Ok(())
}

/// # Errors
/// When a page cannot be written.
pub(crate) fn man(args: ManArgs, cmd: clap::Command, ctx: &Context) -> Result<()> {
    match args.out {
        None => {
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).map_err(|source| Error::Write { path: "<stdout>".into(), source })
        }
        Some(dir) => {
            crate::atomic::create_dir(&dir, 0o755)?;
            clap_mangen::generate_to(cmd, &dir).map_err(|source| Error::Write { path: dir.clone(), source })?;
            ctx.out.line(format!("wrote man pages to {}", dir.display()));
            Ok(())
        }
    }
}
