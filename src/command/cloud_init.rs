//! `hostsmith cloud-init HOST --out DIR [--iso FILE]`: the NoCloud seed for a host.

use std::path::PathBuf;

use super::args::SeedOptions;
use crate::admin_identity::Identities;
use crate::command::{Context, host_names};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::out_tree::OutDir;
use crate::seed;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Directory for user-data, meta-data and network-config (created 0700; an existing one must be yours and closed to others).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Also write a NoCloud seed image (volume label `cidata`) here.
    #[arg(long, value_name = "FILE")]
    pub iso: Option<PathBuf>,
    #[command(flatten)]
    pub seed: SeedOptions,
}

/// # Errors
/// Invalid input, an unknown host, or a failed write.
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let host = host_names(std::slice::from_ref(&args.host))?.remove(0);
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let mut ids = Identities::for_fleet(&fleet);
    fleet.record(&host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let inputs = args.seed.resolve(&fleet)?;
    OutDir::check_root(&args.out, &[])?;
    let written = seed::emit(&fleet, &host, &OutDir::root(&args.out)?, args.iso.as_deref(), &inputs, &mut ids)?;
    ctx.out.json(&serde_json::json!({ "host": host.as_str(), "files": written }));
    for p in &written {
        ctx.out.line(format!("wrote {}", p.display()));
    }
    ctx.out.note(format!("note: these files hold {host}'s private host key; remove them (and detach the seed) after first boot"));
    Ok(())
}
