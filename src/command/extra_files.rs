//! `hostsmith extra-files HOST --out DIR`: the tree for `nixos-anywhere --extra-files`.

use std::path::PathBuf;

use crate::admin_identity::Identities;
use crate::command::{Context, host_names};
use crate::error::Result;
use crate::fleet::Fleet;
use crate::out_tree::OutDir;
use crate::seed;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Where to build the tree (created 0700; an existing one must be yours and closed to others).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Prefix for impermanence layouts, e.g. /persist (default: `host.persist`).
    #[arg(long, value_name = "PREFIX")]
    pub persist: Option<String>,
}

/// # Errors
/// Invalid input, an unknown host, or a failed write.
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let host = host_names(std::slice::from_ref(&args.host))?.remove(0);
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let persist = args.persist.unwrap_or_else(|| fleet.config.host.persist.clone());
    seed::check_persist(&persist)?;
    OutDir::check_root(&args.out, &[&format!("{persist}/etc/ssh")])?;
    let (_, key) = crate::host_file::host_keypair(&fleet, &host, &mut Identities::for_fleet(&fleet))?;
    let written = seed::write_extra_files(&OutDir::root(&args.out)?, &persist, &key)?;
    ctx.out.json(&serde_json::json!({ "host": host.as_str(), "files": written }));
    for p in &written {
        ctx.out.line(format!("wrote {}", p.display()));
    }
    ctx.out.note(format!("next: nixos-anywhere --extra-files {} --flake .#{host} root@<address>", args.out.display()));
    Ok(())
}
