//! `keys rotate --deploy [REPO] --older-than AGE [HOST…]`: a new deploy key for every active
//! one that has been in use longer than AGE (every host by default).
//!
//! Each rotation is the one `keys rotate HOST --deploy REPO` makes: the new key waits beside
//! the old one until it is registered, so no host loses access to its repository. A key with
//! a new one already waiting is not rotated again (that would orphan a key that may already
//! be registered): it is reported, and the run says how to finish it. So a re-run after an
//! interrupted one rotates only what is left. Every record is read and every age computed
//! before the first host changes; a record whose time cannot be read changes nothing.

use serde::Serialize;

use crate::command::{Context, host_names};
use crate::deploy_keys::{self, Rotation, Since};
use crate::duration;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::record::HostRecord;

/// What `--older-than` asks for.
pub(super) struct Request<'a> {
    pub hosts: &'a [String],
    /// Only this deploy key; `None` for all.
    pub repo: Option<&'a str>,
    pub older_than: &'a str,
    pub dry_run: bool,
}

/// A deploy key past the age.
#[derive(Debug, Serialize)]
struct Due {
    host: String,
    repo: String,
    since: String,
    since_source: Since,
    age_seconds: i64,
    /// The new key (made, or that a run would make).
    #[serde(skip_serializing_if = "Option::is_none")]
    new: Option<Rotation>,
}

#[derive(Debug, Serialize)]
struct Waiting {
    host: String,
    repo: String,
}

#[derive(Debug, Serialize)]
struct Report {
    dry_run: bool,
    older_than: String,
    older_than_seconds: u64,
    rotated: Vec<Due>,
    waiting: Vec<Waiting>,
    kept: usize,
}

/// # Errors
/// An invalid age, host or deploy key name, or a record whose time is not one (exit 2, nothing
/// changed); a failed rotation (the hosts before it are rotated, a re-run does the rest).
pub(super) fn run(req: &Request<'_>, ctx: &Context) -> Result<()> {
    let limit = duration::parse_seconds("--older-than", req.older_than)?;
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let records = records(&fleet, req.hosts)?;
    if let Some(repo) = req.repo
        && !records.iter().any(|r| r.deploy_keys.contains_key(repo))
    {
        return Err(Error::Usage(format!("no host has a deploy key `{}`; `hostsmith keys list` shows them", repo.escape_debug())));
    }
    let now = jiff::Timestamp::now();
    let mut report = Report {
        dry_run: req.dry_run,
        older_than: req.older_than.to_string(),
        older_than_seconds: limit,
        rotated: Vec::new(),
        waiting: Vec::new(),
        kept: 0,
    };
    for r in &records {
        plan_host(r, req.repo, limit, now, &mut report)?;
    }
    let mut i = 0;
    while i < report.rotated.len() {
        let host = HostName::parse(&report.rotated[i].host)?;
        let n = report.rotated[i..].iter().take_while(|d| d.host == host.as_str()).count();
        let repos: Vec<String> = report.rotated[i..i + n].iter().map(|d| d.repo.clone()).collect();
        for (d, new) in report.rotated[i..i + n].iter_mut().zip(deploy_keys::rotate(&fleet, &host, &repos, req.dry_run)?) {
            d.new = Some(new);
        }
        i += n;
    }
    ctx.out.json(&report);
    print(&report, ctx);
    Ok(())
}

/// The records of the hosts asked about (every host by default).
fn records(fleet: &Fleet, names: &[String]) -> Result<Vec<HostRecord>> {
    if names.is_empty() {
        return fleet.records();
    }
    host_names(names)?.iter().map(|h| fleet.record(h)?.ok_or_else(|| Error::UnknownHost { host: h.to_string() })).collect()
}

/// Sorts the host's deploy keys into due, waiting and kept.
fn plan_host(r: &HostRecord, only: Option<&str>, limit: u64, now: jiff::Timestamp, report: &mut Report) -> Result<()> {
    let pending = deploy_keys::pending(r);
    for repo in r.deploy_keys.keys().filter(|k| only.is_none_or(|o| o == k.as_str())) {
        let Some((since, source)) = deploy_keys::active_since(r, repo) else { continue };
        let start: jiff::Timestamp = since.parse().map_err(|_| {
            Error::Usage(format!(
                "host `{}`: the start of its `{repo}` deploy key, `{}`, is not a time: fix `hosts/{}.json` (RFC 3339, e.g. 2026-01-31T12:00:00Z)",
                r.name,
                since.escape_debug(),
                r.name
            ))
        })?;
        let age = now.duration_since(start).as_secs();
        // A start in the future would keep a key forever; a day covers clock skew.
        if age < -86_400 {
            return Err(Error::Usage(format!(
                "host `{}`: its `{repo}` deploy key is recorded as in use since {since}, in the future: fix `hosts/{}.json`",
                r.name, r.name
            )));
        }
        if u64::try_from(age).is_ok_and(|a| a < limit) {
            report.kept += 1;
        } else if pending.contains_key(repo) {
            report.waiting.push(Waiting { host: r.name.clone(), repo: repo.clone() });
        } else {
            report.rotated.push(Due { host: r.name.clone(), repo: repo.clone(), since, since_source: source, age_seconds: age, new: None });
        }
    }
    Ok(())
}

fn print(report: &Report, ctx: &Context) {
    let verb = if report.dry_run { "would rotate" } else { "rotated" };
    for d in &report.rotated {
        let fp = d.new.as_ref().map_or("?", |n| n.fingerprint.as_str());
        ctx.out.line(format!("{verb} {} `{}`: active since {} ({} days); new key {fp}", d.host, d.repo, d.since, d.age_seconds / 86_400));
    }
    for w in &report.waiting {
        ctx.out.line(format!(
            "{} `{}`: a new key already waits; register it (`hostsmith deploy-keys {} --register github --repo OWNER/{}`) instead of rotating again",
            w.host, w.repo, w.host, w.repo
        ));
    }
    ctx.out.line(format!(
        "{} {} deploy key(s) older than {}; {} waiting; {} younger kept",
        if report.dry_run { "dry run: would rotate" } else { "rotated" },
        report.rotated.len(),
        report.older_than,
        report.waiting.len(),
        report.kept
    ));
    if !report.dry_run && !report.rotated.is_empty() {
        ctx.out.line(
            "next: register each new key (`hostsmith deploy-keys HOST --register github --repo OWNER/REPO`), then `hostsmith deploy-keys check --owner OWNER`",
        );
    }
}
