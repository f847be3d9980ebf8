//! `hostsmith known-hosts [--out FILE]`: known_hosts lines for every recorded host.

use std::path::PathBuf;

use crate::atomic;
use crate::command::Context;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::known_hosts;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// # Errors
/// When a record cannot be read or the file cannot be written.
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let records = fleet.records()?;
    let text = known_hosts::lines(&records);
    match &args.out {
        Some(path) => {
            crate::out_tree::file_target(path, "--out")?;
            atomic::write_if_changed(path, text.as_bytes(), 0o644)?;
            ctx.out.json(&serde_json::json!({ "file": path, "hosts": records.len() }));
            ctx.out.line(format!("wrote {} ({} host(s))", path.display(), records.len()));
        }
        None if ctx.out.json => {
            let hosts: Vec<_> = text.lines().collect();
            ctx.out.json(&serde_json::json!({ "lines": hosts }));
        }
        None => print!("{text}"),
    }
    Ok(())
}
