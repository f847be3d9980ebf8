//! `hostsmith sync HOST…` / `sync --all`: make sure each host's `authorized_keys` holds the
//! admin keys from the source of truth, appending only what is missing. See [`crate::sync`].
//!
//! One host prints its steps as they happen. Several hosts are synced side by side (`-j`,
//! [`DEFAULT_JOBS`] at once), each with its own audit line, and summed up in one table;
//! a host that fails does not stop the others.

use std::path::PathBuf;
use std::time::Instant;

use crate::command::{Context, host_names};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::sync::audit::{Entry, Outcome};
use crate::sync::plan::{self, Known, Options};
use crate::sync::progress::{Progress, Stream};
use crate::sync::{self, Method, audit};

/// Hosts synced at once by default. An ssh sync mostly waits on the network, but each
/// handshake costs this machine some 150 ms of CPU: ten keep a few cores and the network
/// busy without flooding a bastion or tripping sshd's `MaxStartups` (10) on a shared jump
/// host. Not the core count, which says nothing about either.
pub(crate) const DEFAULT_JOBS: u16 = 10;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The hosts to sync.
    #[arg(value_name = "HOST", required_unless_present = "all", conflicts_with = "all")]
    pub hosts: Vec<String>,
    /// Every host of the fleet (every record).
    #[arg(long)]
    pub all: bool,
    /// How many hosts to sync at once (several hosts only).
    #[arg(short = 'j', long, value_name = "N", default_value_t = DEFAULT_JOBS, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Where to reach it (one host only; default: its first recorded address, else its name).
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
    if !args.all && args.hosts.len() == 1 { one(args, ctx) } else { many(args, ctx) }
}

fn options(args: &Args) -> Options {
    Options {
        address: args.address.clone(),
        user: args.user.clone(),
        keys: args.keys.clone(),
        method: args.method,
        timeout: args.timeout,
        identity: args.identity.clone(),
        pve: args.pve.clone(),
        dry_run: args.dry_run,
    }
}

fn one(args: Args, ctx: &Context) -> Result<()> {
    let started = Instant::now();
    let host = host_names(&args.hosts)?.remove(0);
    let opts = options(&args);
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

/// Several hosts: every plan first (a bad input stops the run before any host is reached),
/// then the syncs side by side, then the table.
fn many(args: Args, ctx: &Context) -> Result<()> {
    let started = Instant::now();
    if args.address.is_some() {
        return Err(Error::Usage(
            "--address is one host's address: with several hosts each is reached at its recorded address; leave --address out".into(),
        ));
    }
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let hosts: Vec<HostName> =
        if args.all { fleet.records()?.iter().map(|r| HostName::parse(&r.name)).collect::<Result<_>>()? } else { host_names(&args.hosts)? };
    if hosts.is_empty() {
        ctx.out.line("The fleet has no hosts: nothing to sync");
        ctx.out.json(&Summary { hosts: &[], synced: 0, present: 0, dry_run: 0, skipped: 0, failed: 0 });
        return Ok(());
    }
    let opts = options(&args);
    let jobs = usize::from(args.jobs);
    let planned = crate::parallel::map(&hosts, jobs, |h| plan::plan(&fleet, h, &opts));
    let mut plans = Vec::with_capacity(planned.len());
    for (h, p) in hosts.iter().zip(planned) {
        match p {
            Ok(p) => plans.push(p),
            Err((known, e)) => return Err(refuse(ctx, h.as_str(), &known, e, started)),
        }
    }
    // Each host's own lines would interleave: the table below says what came of each.
    let quiet = Progress { out: crate::output::Output { quiet: true, json: false, ..ctx.out }, stream: Stream::Stderr };
    let done = crate::parallel::map(&plans, jobs, |p| {
        let d = sync::perform(p, "sync", &quiet, Instant::now());
        if let Err(e) = audit::append(&d.entry) {
            ctx.out.note(format!("warning: the audit log was not written for {}: {e}", p.host));
        }
        tracing::info!("{}: {}", p.host, d.entry.outcome.as_str());
        d
    });
    let entries: Vec<Entry> = done.iter().map(|d| d.entry.clone()).collect();
    print_table(ctx, &entries, started);
    let count = |o: Outcome| entries.iter().filter(|e| e.outcome == o).count();
    ctx.out.json(&Summary {
        hosts: &entries,
        synced: count(Outcome::Synced),
        present: count(Outcome::Present),
        dry_run: count(Outcome::DryRun),
        skipped: count(Outcome::Skipped),
        failed: count(Outcome::Failed),
    });
    let mut failures = done.into_iter().filter_map(|d| d.result.err()).filter(|f| f.method != Method::Skip).map(|f| f.error).peekable();
    if failures.peek().is_none() {
        return Ok(());
    }
    // A host that serves another key than its record outranks every other failure (exit 3).
    let mut failures: Vec<Error> = failures.collect();
    if let Some(i) = failures.iter().position(|e| matches!(e, Error::Mismatch { .. })) {
        return Err(failures.swap_remove(i));
    }
    let failed: Vec<&str> = entries.iter().filter(|e| e.outcome == Outcome::Failed).map(|e| e.host.as_str()).collect();
    Err(Error::HostsFailed { failed: failed.len(), total: entries.len(), hosts: failed.join(", ") })
}

/// What `--json` prints for several hosts: each host's audit entry, then the counts.
#[derive(serde::Serialize)]
struct Summary<'a> {
    hosts: &'a [Entry],
    synced: usize,
    present: usize,
    dry_run: usize,
    skipped: usize,
    failed: usize,
}

/// One row per host (in the order named), then the counts and the time, then the warnings.
fn print_table(ctx: &Context, entries: &[Entry], started: Instant) {
    let mut rows = vec![["HOST", "ADDRESS", "OUTCOME", "METHOD", "ADDED", "TIME", "ERROR"].map(String::from).to_vec()];
    for e in entries {
        rows.push(vec![
            e.host.clone(),
            e.address.clone().unwrap_or_else(|| "-".into()),
            e.outcome.as_str().to_string(),
            e.method.clone(),
            e.added.len().to_string(),
            format!("{:.2}s", std::time::Duration::from_millis(e.duration_ms).as_secs_f64()),
            e.error.clone().unwrap_or_default(),
        ]);
    }
    for line in crate::output::table(&rows) {
        ctx.out.line(line.trim_end());
    }
    let count = |o: Outcome| entries.iter().filter(|e| e.outcome == o).count();
    let parts: Vec<String> = [Outcome::Synced, Outcome::Present, Outcome::DryRun, Outcome::Skipped, Outcome::Failed]
        .iter()
        .map(|o| (o, count(*o)))
        .filter(|(_, n)| *n > 0)
        .map(|(o, n)| format!("{n} {}", o.as_str()))
        .collect();
    ctx.out.line(format!("{} hosts in {:.1}s: {}", entries.len(), started.elapsed().as_secs_f64(), parts.join(", ")));
    for e in entries {
        for w in &e.warnings {
            ctx.out.note(format!("warning: {}: {w}", e.host));
        }
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
