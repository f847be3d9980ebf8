//! `hostsmith trust [--show | --revoke]`: allow this fleet's settings that run programs
//! (`sync.key_command`, `proxmox.ssh_config`) to run on this machine (see [`crate::trust`]).

use crate::command::Context;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::output::terminal_safe;
use crate::trust;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only show the settings that run programs, and whether they are trusted.
    #[arg(long, conflicts_with = "revoke")]
    pub show: bool,
    /// Forget what was trusted for this fleet.
    #[arg(long)]
    pub revoke: bool,
}

#[derive(serde::Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    setting: &'a trust::Executing,
    trusted: bool,
}

/// # Errors
/// No fleet, or a state directory that cannot be written.
pub(crate) fn run(args: &Args, ctx: &Context) -> Result<()> {
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    if args.revoke {
        let had = trust::revoke(&fleet)?;
        ctx.out.line(if had {
            "revoked: this fleet's settings no longer run without asking"
        } else {
            "nothing was trusted for this fleet"
        });
        return Ok(());
    }
    let settings = trust::executing(&fleet);
    let mut shown = Vec::new();
    for s in &settings {
        let trusted = trust::is_trusted(&fleet, s)?;
        shown.push(Shown { setting: s, trusted });
    }
    if !args.show && !settings.is_empty() {
        trust::record(&fleet, &settings)?;
    }
    ctx.out.json(&shown);
    if settings.is_empty() {
        ctx.out.line("nothing to trust: this fleet's hostsmith.toml runs no programs");
    }
    for s in &shown {
        let state = match (args.show, s.trusted) {
            (true, true) => "trusted",
            (true, false) => "not trusted",
            (false, true) => "already trusted",
            (false, false) => "trusted now",
        };
        ctx.out.line(format!("{}: {} = {}", state, s.setting.setting, terminal_safe(&s.setting.value)));
    }
    Ok(())
}
