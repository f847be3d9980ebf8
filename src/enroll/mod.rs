//! Enrolment: giving hosts an identity, the work behind `vm-fresh`, `adopt`, `keys import`
//! and `keys rotate`.
//!
//! A run is planned completely in memory first ([`plan`]: keys, the edited `.sops.yaml`,
//! every encrypted file, every record), then written file by file, each write atomic
//! ([`write`]). The order makes a crash at any point recoverable by running again:
//! 1. `sops/<host>.yaml` (the only place the private key lives),
//! 2. the shared files, re-keyed for the new recipients,
//! 3. `.sops.yaml`,
//! 4. `hosts/<host>.json`, the record, last: a host is complete once its record exists.
//!
//! A re-run that finds a host file without a record takes the key from that file instead
//! of generating a new one, so keys are never silently replaced; `--rotate` is the only way
//! to replace one. It does so only when this machine's [`crate::journal`] says it wrote that
//! key there (or the user asks with `--recover`): a record-less host file is also what a
//! forger would leave.

mod plan;
mod write;

use crate::admin_identity::Identities;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::journal::Journal;
use crate::sops::rules::{EditPolicy, SopsConfig};
use crate::ssh_keys::Keypair;

/// Where a host's key comes from.
pub(crate) enum KeySource {
    /// Generate one (or reuse the one this machine stored for the host in an interrupted run).
    Generate,
    /// Reuse the key in the host's existing file, whoever wrote it (`--recover`).
    Recover,
    /// An existing machine: only its public key is known.
    Public(ssh_key::PublicKey),
    /// An existing private key to adopt.
    Private(Box<Keypair>),
}

pub(crate) struct Request {
    pub host: HostName,
    pub source: KeySource,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// Replace existing keys.
    pub rotate: bool,
    /// Plan only; write nothing.
    pub dry_run: bool,
}

/// What happened to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Action {
    Created,
    Adopted,
    Imported,
    /// A host file without a record was found and its key reused.
    Recovered,
    Rotated,
    /// The host was complete; new deploy keys or `.sops.yaml` entries were added.
    Updated,
    Unchanged,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct HostOutcome {
    pub name: String,
    pub action: Action,
    pub fingerprint: String,
    pub age_recipient: String,
    pub host_file: String,
    /// Deploy keys added in this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deploy_keys_added: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Report {
    pub hosts: Vec<HostOutcome>,
    /// `.sops.yaml` changes, in words.
    pub sops_config_changes: Vec<String>,
    /// Files written (or, in a dry run, that would be), relative to the fleet.
    pub files: Vec<String>,
    pub dry_run: bool,
}

/// Gives each requested host an identity (see the module docs for the order of writes).
///
/// # Errors
/// Anything that stops the run; nothing has been written when planning fails.
pub(crate) fn run(fleet: &Fleet, requests: Vec<Request>, opts: Options) -> Result<Report> {
    run_with_progress(fleet, requests, opts, &indicatif::ProgressBar::hidden())
}

/// [`run`], advancing `bar` by one for every host planned and every host file encrypted
/// (its length should be twice the number of requests).
///
/// # Errors
/// See [`run`].
pub(crate) fn run_with_progress(fleet: &Fleet, requests: Vec<Request>, opts: Options, bar: &indicatif::ProgressBar) -> Result<Report> {
    let mut lock = fleet.lock()?;
    let shared_reads = plan::read_shared(fleet)?;
    let config_text = fleet.read_sops_config()?;
    let config = parse_config(fleet, &config_text)?;
    let admins = fleet.config.admins(&fleet.root)?.to_vec();
    let identities = Identities::for_fleet(fleet);
    let mut journal = Journal::open(&fleet.root)?;

    // Hosts are planned on every core (three keys each when new); the first failure in the
    // order asked is the one reported.
    let planned = crate::parallel::map_into(requests, crate::parallel::cores(), |req| {
        let p = plan::host(fleet, &config, req, opts, &identities, &journal);
        bar.inc(1);
        p
    });
    let mut planned = planned.into_iter().collect::<Result<Vec<_>>>()?;
    plan::refuse_shared_keys(fleet, &planned)?;
    let records: Vec<_> = planned.iter().map(|p| p.record.clone()).collect();
    let policy = policy(fleet, admins, Fleet::host_file_overrides(&records));
    let (new_config, changes) = plan::edit_sops_config(fleet, &config, &planned, &policy)?;
    crate::parallel::drop_aside(config);
    plan::encrypt_host_files(fleet, &new_config, &mut planned, bar)?;
    let rotated_any = planned.iter().any(|p| p.outcome.action == Action::Rotated);
    let shared = plan::shared_files(fleet, &new_config, shared_reads, rotated_any, &identities)?;

    let config_change = (new_config.text() != config_text).then_some(new_config.text());
    let noted: Vec<(String, String)> = planned
        .iter()
        .filter(|p| p.host_file_text.is_some() && !matches!(p.outcome.action, Action::Unchanged | Action::Updated))
        .map(|p| (p.outcome.name.clone(), p.outcome.fingerprint.clone()))
        .collect();
    if !opts.dry_run {
        journal.note(noted.iter().cloned())?;
    }
    let files = write::all(fleet, &mut lock, &planned, &shared, config_change, opts.dry_run)?;
    if !opts.dry_run {
        journal.forget(noted.iter().map(|(h, _)| h.as_str()))?;
    }
    let hosts = planned.iter().map(|p| p.outcome.clone()).collect();
    // Megabytes of parse at fleet scale, freed while the report is printed.
    crate::parallel::drop_aside((new_config, planned, shared));
    Ok(Report { hosts, sops_config_changes: changes, files, dry_run: opts.dry_run })
}

/// Parses `.sops.yaml` text, errors naming the fleet's file.
fn parse_config(fleet: &Fleet, text: &str) -> Result<SopsConfig> {
    SopsConfig::parse(text).map_err(|e| Error::SopsRules { path: fleet.sops_config_path(), source: e })
}

/// The `.sops.yaml` edit policy from the fleet configuration;
/// `host_files` are the hosts whose records name their own file ([`Fleet::host_file_overrides`]).
#[must_use]
pub(crate) fn policy(fleet: &Fleet, admins: Vec<String>, host_files: std::collections::BTreeMap<String, String>) -> EditPolicy {
    let s = &fleet.config.sops;
    EditPolicy {
        host_file: fleet.host_file_template(),
        host_files,
        admins,
        shared: s.shared.clone(),
        exclude_from_shared: s.exclude_from_shared.clone(),
        hosts_group: s.hosts_group.clone(),
    }
}

/// What a report says about one host, from its planned record.
fn outcome(host: &HostName, action: Action, record: &crate::record::HostRecord, host_file: String, added: Vec<String>) -> HostOutcome {
    HostOutcome {
        name: host.to_string(),
        action,
        fingerprint: record.fingerprint.clone(),
        age_recipient: record.age_recipient.clone(),
        host_file,
        deploy_keys_added: added,
    }
}
