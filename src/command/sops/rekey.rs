//! `hostsmith sops rekey [FILE...] [--rotate-data-key] [-j N]`: re-wrap the data keys of the
//! fleet's SOPS files after `.sops.yaml` changed, in parallel (see [`crate::rekey`]).
//!
//! Every path is checked before any file is touched; then each file is re-keyed on its own
//! under the fleet lock, and a file that fails is reported while the others go on. The exit
//! status is non-zero when any failed.

use std::path::PathBuf;

use serde::Serialize;

use crate::command::Context;
use crate::command::report::outcome_line;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::rekey::{self, FileOutcome, Status};
use crate::sops::rules::SopsConfig;

#[derive(Debug, clap::Args)]
pub(crate) struct RekeyArgs {
    /// SOPS files to re-key (default: every SOPS YAML file of the fleet).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also give each file a fresh data key (every value is encrypted again), so recipients
    /// removed from a rule cannot read what is written from now on.
    #[arg(long)]
    pub rotate_data_key: bool,
    /// Files re-keyed at once (default: the number of cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Print what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-key even a file whose new rule drops a host or an admin, hands a host file to
    /// another host or to a catch-all rule, or whose host's rotation was interrupted.
    #[arg(long)]
    pub force: bool,
}

/// Stops the run, before any file is touched, when a re-key would weaken a file (see
/// [`rekey::refusals`]).
fn refuse_unsafe(fleet: &Fleet, config: &SopsConfig, files: &[String]) -> Result<()> {
    let admins: Vec<String> = fleet
        .config
        .sops
        .admins
        .iter()
        .flatten()
        .filter_map(|a| if a.starts_with("age1") { Some(a.clone()) } else { config.host_recipient(a) })
        .collect();
    let refused = rekey::refusals(fleet, config, files, &fleet.records()?, &admins);
    if refused.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "refusing to re-key; nothing was changed:\n{}\nfix `.sops.yaml` (`hostsmith sops check` shows what is wrong), or pass --force if this is what you want",
        refused.iter().map(|r| format!("  {r}")).collect::<Vec<_>>().join("\n")
    )))
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    files: &'a [FileOutcome],
    rekeyed: usize,
    unchanged: usize,
    failed: usize,
    jobs: usize,
    dry_run: bool,
}

/// # Errors
/// Invalid arguments (before anything runs), or [`Error::Problems`] when any file failed.
pub(crate) fn run(args: &RekeyArgs, ctx: &Context) -> Result<()> {
    if args.jobs == Some(0) {
        return Err(Error::Usage("-j must be at least 1".into()));
    }
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let files = if args.files.is_empty() { rekey::discover(&fleet)? } else { rekey::resolve(&fleet, &args.files)? };
    let _lock = fleet.lock()?;
    let config = fleet.sops_config()?;
    if !args.force {
        refuse_unsafe(&fleet, &config, &files)?;
    }
    let ids = crate::admin_identity::Identities::for_fleet(&fleet);
    let jobs = args.jobs.unwrap_or_else(rekey::default_jobs).min(files.len().max(1));
    let opts =
        rekey::Options { rotate_data_key: args.rotate_data_key, jobs, dry_run: args.dry_run, progress: !ctx.out.quiet && !ctx.out.json };
    let outcomes = rekey::rekey_files(&fleet, &config, &files, &ids, &opts);
    let count = |s: &[Status]| outcomes.iter().filter(|o| s.contains(&o.status)).count();
    let report = Report {
        files: &outcomes,
        rekeyed: count(&[Status::Rekeyed, Status::WouldRekey]),
        unchanged: count(&[Status::Unchanged]),
        failed: count(&[Status::Failed]),
        jobs,
        dry_run: args.dry_run,
    };
    ctx.out.json(&report);
    for o in outcomes.iter().filter(|o| o.status != Status::Unchanged) {
        if o.status == Status::Failed { ctx.out.problem(outcome_line(o)) } else { ctx.out.line(outcome_line(o)) }
    }
    let verb = if args.dry_run { "would re-key" } else { "re-keyed" };
    ctx.out.line(format!(
        "{verb} {}, unchanged {}, failed {} ({} file(s), {jobs} at a time)",
        report.rekeyed,
        report.unchanged,
        report.failed,
        files.len()
    ));
    if report.failed == 0 { Ok(()) } else { Err(Error::Problems { count: report.failed }) }
}
