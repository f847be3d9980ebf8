//! `hostsmith deploy-keys check (--owner OWNER | --repo OWNER/NAME…) [HOST…]`: are the
//! deploy keys on GitHub the ones the fleet records?
//!
//! For each repository it lists the keys through `gh api repos/OWNER/NAME/keys` (every page)
//! and reports keys GitHub holds that no host of the fleet has, active keys GitHub lacks (the
//! host cannot fetch), new keys not registered or not activated, retired keys still
//! registered, and fleet keys registered with write access; with `last_used` where GitHub
//! gives it. A deploy key NAME lives in the repository `OWNER/NAME`, as `deploy-keys
//! --register` registers it; `--repo OWNER/OTHER --deploy NAME` checks one that does not.
//! Every repository is listed before anything is compared, so a failing `gh` prints no half
//! report. Findings exit 1, like `sops check`.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::command::{Context, host_names};
use crate::deploy_key_check::{self, RepoReport};
use crate::deploy_keys;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::github_keys::{self, Repo};
use crate::record::HostRecord;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Hosts whose keys to check (default: every host).
    #[arg(value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Check every deploy key NAME of the hosts in the repository OWNER/NAME.
    #[arg(long, value_name = "OWNER", required_unless_present = "repo", conflicts_with = "repo")]
    pub owner: Option<String>,
    /// Check this repository (repeatable); its deploy key is the one named like the repository.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Vec<String>,
    /// The deploy key to compare with the `--repo` repository, when it is named otherwise.
    #[arg(long = "deploy", value_name = "NAME", requires = "repo")]
    pub deploy: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    repositories: Vec<RepoReport>,
    problems: usize,
}

/// # Errors
/// Bad arguments or an unknown host (exit 2), `gh` failing or replying with something that
/// is not a key listing, or [`Error::Problems`] when the keys disagree.
pub(crate) fn run(args: &Args, ctx: &Context) -> Result<()> {
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let records = fleet.records()?;
    let hosts = selected(&fleet, &records, &args.hosts)?;
    let targets = targets(args, &records, &hosts)?;
    let mut listings = Vec::new();
    for (repo, _) in &targets {
        listings.push(github_keys::list(repo)?);
    }
    let repositories: Vec<RepoReport> = targets
        .iter()
        .zip(&listings)
        .map(|((repo, name), remote)| deploy_key_check::reconcile(&records, &hosts, repo, name, remote))
        .collect();
    let report = Report { problems: repositories.iter().map(|r| r.problems.len()).sum(), repositories };
    ctx.out.json(&report);
    for r in &report.repositories {
        for m in &r.matched {
            ctx.out.line(deploy_key_check::matched_line(&r.repo, m));
        }
        for p in &r.problems {
            ctx.out.line(format!("problem: {}", p.message));
        }
    }
    if report.problems > 0 {
        return Err(Error::Problems { count: report.problems });
    }
    let keys: usize = report.repositories.iter().map(|r| r.matched.len()).sum();
    ctx.out.line(format!(
        "ok: {} repositor{}, {keys} key(s) registered read-only as the fleet records them, none unknown",
        report.repositories.len(),
        if report.repositories.len() == 1 { "y" } else { "ies" }
    ));
    Ok(())
}

/// The hosts asked about (every host by default), each one known.
fn selected(fleet: &Fleet, records: &[HostRecord], names: &[String]) -> Result<BTreeSet<String>> {
    if names.is_empty() {
        return Ok(records.iter().map(|r| r.name.clone()).collect());
    }
    let mut out = BTreeSet::new();
    for h in host_names(names)? {
        if fleet.record(&h)?.is_none() {
            return Err(Error::UnknownHost { host: h.to_string() });
        }
        out.insert(h.to_string());
    }
    Ok(out)
}

/// Every deploy key name the hosts have: active, pending or retired.
fn names_of(records: &[HostRecord], hosts: &BTreeSet<String>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for r in records.iter().filter(|r| hosts.contains(&r.name)) {
        names.extend(r.deploy_keys.keys().cloned());
        names.extend(deploy_keys::pending(r).into_keys());
        names.extend(deploy_keys::retired(r).into_iter().map(|o| o.repo));
    }
    names
}

/// The repositories to list, each with the deploy key it is compared with.
fn targets(args: &Args, records: &[HostRecord], hosts: &BTreeSet<String>) -> Result<Vec<(Repo, String)>> {
    let names = names_of(records, hosts);
    if let Some(owner) = &args.owner {
        if names.is_empty() {
            return Err(Error::Usage(
                "the hosts have no deploy keys (`host.deploy_keys` in hostsmith.toml, then `hostsmith vm-fresh HOST`)".into(),
            ));
        }
        return names.into_iter().map(|n| Ok((Repo::parse(&format!("{owner}/{n}"))?, n))).collect();
    }
    if args.deploy.is_some() && args.repo.len() > 1 {
        return Err(Error::Usage("`--deploy NAME` goes with one `--repo`: check repositories named otherwise one at a time".into()));
    }
    let mut out: Vec<(Repo, String)> = Vec::new();
    for r in &args.repo {
        let repo = Repo::parse(r)?;
        let name = args.deploy.clone().unwrap_or_else(|| repo.name().to_string());
        if !names.contains(&name) {
            let known: Vec<&str> = names.iter().map(String::as_str).collect();
            return Err(Error::Usage(format!(
                "no host checked has a deploy key `{name}` for `{repo}` (they have: {}); name the key with `--deploy NAME`",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        }
        if !out.iter().any(|(o, _)| *o == repo) {
            out.push((repo, name));
        }
    }
    Ok(out)
}
