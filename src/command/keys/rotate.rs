//! `keys rotate HOST [--deploy REPO]...`: a new host key, or new deploy keys.
//!
//! A host key rotation is `enroll::run` with `rotate: true`: a new key in the host file,
//! the `.sops.yaml` anchor value replaced in place, the host file and the configured shared
//! files re-keyed with a fresh data key, the record updated with the old key in its history.
//! Files outside `sops.shared` that the old key could open (hand-written rules that alias the
//! host) are re-keyed right after, with a fresh data key too, so the old key opens nothing new.
//!
//! A deploy key rotation keeps the old key active until the new one is registered on the
//! forge (see [`crate::deploy_keys`]), so the host never loses access to its repository.
//! `--deploy --older-than AGE` does that for every deploy key past an age ([`super::rotate_aged`]).

use serde::Serialize;

use super::one_host;
use crate::admin_identity::Identities;
use crate::command::Context;
use crate::command::report::outcome_line;
use crate::command::report::print_report;
use crate::deploy_keys;
use crate::enroll::{self, KeySource, Options, Request};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::record::HostRecord;
use crate::rekey::{self, FileOutcome, Status};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The host (several, or none for every host, with --older-than).
    #[arg(value_name = "HOST", required_unless_present = "older_than")]
    pub hosts: Vec<String>,
    /// Rotate the deploy key for REPO instead of the host key (repeatable; without REPO,
    /// every deploy key). The new key waits next to the old one until it is registered
    /// (`hostsmith deploy-keys`).
    #[arg(long = "deploy", value_name = "REPO", num_args = 0..=1, default_missing_value = "")]
    pub deploy: Vec<String>,
    /// Rotate only deploy keys in use longer than AGE (`90d`, `12h`, `2w`, `30m`), on every
    /// host unless hosts are named.
    #[arg(long, value_name = "AGE", requires = "deploy")]
    pub older_than: Option<String>,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
struct HostRotation<'a> {
    #[serde(flatten)]
    report: &'a enroll::Report,
    /// Other files the old key could open, re-keyed after the run.
    also_rekeyed: &'a [FileOutcome],
    next: Vec<String>,
}

/// # Errors
/// Unknown host or deploy key, or a failure while planning or writing.
pub(crate) fn run(args: &Args, ctx: &Context) -> Result<()> {
    if let Some(older_than) = &args.older_than {
        let repos: Vec<&str> = args.deploy.iter().map(String::as_str).filter(|r| !r.is_empty()).collect();
        if repos.len() > 1 {
            return Err(Error::Usage(
                "with `--older-than`, give `--deploy` once: `--deploy` for every deploy key, `--deploy REPO` for one".into(),
            ));
        }
        let req = super::rotate_aged::Request { hosts: &args.hosts, repo: repos.first().copied(), older_than, dry_run: args.dry_run };
        return super::rotate_aged::run(&req, ctx);
    }
    let [name] = args.hosts.as_slice() else {
        return Err(Error::Usage("name one host: `hostsmith keys rotate HOST`; several hosts go with `--deploy --older-than AGE`".into()));
    };
    let host = one_host(name)?;
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let old = fleet.record(&host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    if !args.deploy.is_empty() {
        return rotate_deploy(&fleet, &host, args, ctx);
    }
    let request = Request { host: host.clone(), source: KeySource::Generate };
    // The other files the old key opens are looked for (10,000 reads in a large fleet) while
    // the rotation runs: they are none of the files it writes.
    let candidates = rotation_candidates(&fleet, &old)?;
    let report = enroll::run(&fleet, vec![request], Options { rotate: true, dry_run: args.dry_run })?;
    let candidates: Vec<String> = candidates.get()?.into_iter().map(|o| o.rel).collect();
    let quiet = crate::command::Context { fleet_dir: ctx.fleet_dir.clone(), out: crate::output::Output { json: false, ..ctx.out } };
    let human = if ctx.out.json { None } else { Some(&quiet) };
    if let Some(c) = human {
        print_report(&report, c);
    }
    let also = rekey_candidates(&fleet, &candidates, args.dry_run, ctx)?;
    let next = if args.dry_run { Vec::new() } else { next_steps(&old) };
    ctx.out.json(&HostRotation { report: &report, also_rekeyed: &also, next: next.clone() });
    for n in &next {
        ctx.out.line(format!("next: {n}"));
    }
    fail_on(&also)
}

/// Re-keys, with a fresh data key, the fleet files other than the host file and the shared
/// files that the host's old recipient can still open (their rules alias the host, so they
/// now name the new key). Prints one line per file.
///
/// # Errors
/// No fleet lock, an unreadable `.sops.yaml`, no admin identity.
pub(super) fn after_host_rotation(fleet: &Fleet, old: &HostRecord, dry_run: bool, ctx: &Context) -> Result<Vec<FileOutcome>> {
    let candidates: Vec<String> = rotation_candidates(fleet, old)?.get()?.into_iter().map(|o| o.rel).collect();
    rekey_candidates(fleet, &candidates, dry_run, ctx)
}

/// The fleet files other than the host file and the shared files that `old`'s recipient
/// opens, looked for on another thread.
fn rotation_candidates(fleet: &Fleet, old: &HostRecord) -> Result<rekey::Readable> {
    let host = HostName::parse(&old.name)?;
    let mut handled = fleet.config.sops.shared.clone();
    handled.push(fleet.host_file_rel(&host, Some(old)));
    Ok(rekey::readable_later(fleet, &old.age_recipient, handled))
}

/// [`after_host_rotation`] for the files [`rotation_candidates`] found.
fn rekey_candidates(fleet: &Fleet, candidates: &[String], dry_run: bool, ctx: &Context) -> Result<Vec<FileOutcome>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let _lock = fleet.lock()?;
    let config = fleet.sops_config()?;
    let ids = Identities::for_fleet(fleet);
    ids.get()?;
    let opts = rekey::Options { rotate_data_key: true, jobs: rekey::default_jobs(), dry_run, progress: false };
    let outcomes = rekey::rekey_files(fleet, &config, candidates, &ids, &opts);
    for o in &outcomes {
        ctx.out.line(outcome_line(o));
    }
    Ok(outcomes)
}

/// What the admin must do after a host key rotation.
fn next_steps(old: &HostRecord) -> Vec<String> {
    let h = &old.name;
    vec![
        format!("{h} still presents its old key and cannot decrypt its secrets until it has the new one"),
        format!(
            "give it the new key: `hostsmith extra-files {h} --out DIR` (nixos-anywhere --extra-files) or a new seed `hostsmith cloud-init {h} --out DIR`"
        ),
        format!("then check it: `hostsmith verify {h} --address ADDR`"),
        format!("its deploy keys were kept; to replace them too: `hostsmith keys rotate {h} --deploy REPO`"),
    ]
}

/// Prints the follow-up of a host key rotation (for `keys import` onto a known host).
pub(super) fn print_next(old: &HostRecord, ctx: &Context) {
    for n in next_steps(old) {
        ctx.out.line(format!("next: {n}"));
    }
}

/// An error when any file could not be re-keyed (they were reported already).
///
/// # Errors
/// [`Error::Problems`].
pub(super) fn fail_on(outcomes: &[FileOutcome]) -> Result<()> {
    let failed = outcomes.iter().filter(|o| o.status == Status::Failed).count();
    if failed == 0 { Ok(()) } else { Err(Error::Problems { count: failed }) }
}

fn rotate_deploy(fleet: &Fleet, host: &HostName, args: &Args, ctx: &Context) -> Result<()> {
    let old = fleet.record(host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let mut repos: Vec<String> = if args.deploy.iter().any(String::is_empty) {
        old.deploy_keys.keys().cloned().chain(args.deploy.iter().filter(|r| !r.is_empty()).cloned()).collect()
    } else {
        args.deploy.clone()
    };
    if repos.is_empty() {
        return Err(Error::Usage(format!("host `{host}` has no deploy keys to rotate")));
    }
    repos.sort();
    repos.dedup();
    let rotations = deploy_keys::rotate(fleet, host, &repos, args.dry_run)?;
    let next: Vec<String> = rotations
        .iter()
        .map(|r| {
            format!(
                "register the new `{}` key: `hostsmith deploy-keys {host} --register github --repo OWNER/{}`, or add it by hand (read-only) and run `hostsmith deploy-keys {host} --activate {}`; {host} keeps the old key until then",
                r.repo, r.repo, r.repo
            )
        })
        .collect();
    ctx.out.json(&serde_json::json!({ "host": host.as_str(), "dry_run": args.dry_run, "deploy_keys": rotations, "next": next }));
    let verb = if args.dry_run { "would make" } else { "made" };
    for r in &rotations {
        let replaced = if r.replaced_pending { " (replacing an unregistered one)" } else { "" };
        ctx.out.line(format!("{verb} a new `{}` deploy key for {host}: {}{replaced}", r.repo, r.fingerprint));
        ctx.out.line(format!("  {}", r.public));
    }
    if args.dry_run {
        ctx.out.line(format!("dry run: would write {}, {}", fleet.host_file_rel(host, Some(&old)), fleet.record_rel(host.as_str())));
    } else {
        for n in &next {
            ctx.out.line(format!("next: {n}"));
        }
    }
    Ok(())
}
