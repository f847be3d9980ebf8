//! `hostsmith sync HOST`: make sure the host's `authorized_keys` holds the admin keys from
//! the source of truth, appending only what is missing. See [`crate::sync`].

use std::path::PathBuf;
use std::time::Instant;

use crate::command::{Context, host_names};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::sync::plan::{self, Known, Options};
use crate::sync::progress::{Progress, Stream};
use crate::sync::{self, Method, audit};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Where to reach it (default: its first recorded address, else its name).
    #[arg(long, value_name = "A[:PORT]")]
    pub address: Option<String>,
    /// The account whose authorized_keys to fill (default: `cloud_init.user`).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Public key file (or key line) to sync instead of the configured source; repeatable.
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<String>,
    /// How to reach the host (default: `sync.method`).
    #[arg(long, value_enum, value_name = "METHOD")]
    pub method: Option<Method>,
    /// Seconds each attempt may take (default: `sync.timeout`, 30).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Private key for ssh to log in with (`ssh -i`, `IdentitiesOnly=yes`).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The Proxmox node for guest-agent (default: `proxmox.pve`, else `root@<the recorded
    /// proxmox_node>`).
    #[arg(long, value_name = "USER@HOST[:PORT]")]
    pub pve: Option<String>,
    /// Check only: report what would be appended, write nothing on the host.
    #[arg(long)]
    pub dry_run: bool,
}

/// # Errors
/// Bad input (exit 2) before any connection; [`Error::Mismatch`] (exit 3) when the host
/// serves another key; other failures (exit 1). Every outcome is in the audit log.
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let started = Instant::now();
    let host = host_names(std::slice::from_ref(&args.host))?.remove(0);
    let opts = Options {
        address: args.address,
        user: args.user,
        keys: args.keys,
        method: args.method,
        timeout: args.timeout,
        identity: args.identity,
        pve: args.pve,
        dry_run: args.dry_run,
    };
    let fleet = match Fleet::open(&ctx.fleet_dir) {
        Ok(f) => f,
        Err(e) => return Err(refuse(ctx, host.as_str(), &Known::default(), e, started)),
    };
    let plan = match plan::plan(&fleet, &host, &opts) {
        Ok(p) => p,
        Err((known, e)) => return Err(refuse(ctx, host.as_str(), &known, e, started)),
    };
    let progress = Progress { out: ctx.out, stream: Stream::Stdout };
    if plan.method != Method::Skip {
        progress.line(&format!("Reading keys from {}... ✓ {}", plan.source, sync::count_keys(plan.keys.len())));
    }
    let done = sync::perform(&plan, "sync", &progress, started);
    audit::append(&done.entry)?;
    ctx.out.json(&done.entry);
    match done.result {
        Err(f) if f.method != Method::Skip => Err(f.error),
        _ => Ok(()),
    }
}

fn refuse(ctx: &Context, host: &str, known: &Known, error: Error, started: Instant) -> Error {
    let entry = log_refusal(ctx, "sync", host, known, &error, started);
    ctx.out.json(&entry);
    error
}

/// Logs a run refused before connecting as a `failed` operation (a log that cannot be
/// written is a warning here: the refusal is the error to report).
pub(crate) fn log_refusal(ctx: &Context, command: &str, host: &str, known: &Known, error: &Error, started: Instant) -> audit::Entry {
    let entry = sync::refused(command, host, known, error, started);
    if let Err(e) = audit::append(&entry) {
        ctx.out.note(format!("warning: {e}"));
    }
    entry
}
