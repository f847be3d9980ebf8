//! Comparing the deploy keys the fleet records with the ones a repository on GitHub holds.
//!
//! Keys are compared by key material (`TYPE BASE64`), never by title: a title is free text
//! anyone with access to the repository can set, and GitHub keeps no comment. The fleet's
//! side is every record's active, pending and retired key of the repository's deploy key,
//! of all hosts (a key is "unknown" only when no host of the fleet has it); what is reported
//! about the fleet's own keys is limited to the hosts asked about.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::deploy_keys;
use crate::github_keys::{self, LastUsed, RemoteKey, Repo};
use crate::record::HostRecord;

/// Where a key stands in the fleet's rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum State {
    Active,
    Pending,
    Retired,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Pending => "new",
            State::Retired => "retired",
        }
    }
}

/// What disagrees between the fleet and GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// On GitHub, but no host of the fleet has it.
    Unknown,
    /// A host's active key is not on GitHub: the host cannot fetch.
    Missing,
    /// A new key of a rotation is not registered yet.
    Unregistered,
    /// A new key is registered but not made active.
    NotActivated,
    /// A retired key is still registered.
    Retired,
    /// A fleet key is registered with write access.
    Writable,
}

/// One finding, with what to do about it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finding {
    pub(crate) kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    pub(crate) fingerprint: String,
    /// The key as GitHub lists it, when it is there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) github: Option<RemoteKey>,
    pub(crate) message: String,
}

/// A fleet key GitHub holds as the fleet expects.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Matched {
    pub(crate) host: String,
    pub(crate) state: State,
    pub(crate) github: RemoteKey,
}

/// The comparison for one repository.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RepoReport {
    pub(crate) repo: Repo,
    pub(crate) deploy_key: String,
    pub(crate) on_github: usize,
    pub(crate) matched: Vec<Matched>,
    pub(crate) problems: Vec<Finding>,
}

struct FleetKey {
    host: String,
    state: State,
    material: Option<String>,
    fingerprint: String,
}

/// Every key the fleet has for the deploy key `name`, active first.
fn fleet_keys(records: &[HostRecord], name: &str) -> Vec<FleetKey> {
    let key = |host: &str, state, line: &str| {
        let m = github_keys::key_material(line);
        FleetKey {
            host: host.to_string(),
            state,
            fingerprint: m.as_ref().map_or_else(|| "?".to_string(), |(_, fp)| fp.clone()),
            material: m.map(|(k, _)| k),
        }
    };
    let mut out = Vec::new();
    for r in records {
        if let Some(line) = r.deploy_keys.get(name) {
            out.push(key(&r.name, State::Active, line));
        }
        if let Some(line) = deploy_keys::pending(r).get(name) {
            out.push(key(&r.name, State::Pending, line));
        }
        for old in deploy_keys::retired(r).iter().filter(|o| o.repo == name) {
            out.push(key(&r.name, State::Retired, &old.public));
        }
    }
    out
}

/// `, last used T`, `, never used`, or nothing when GitHub does not say.
fn used(k: &RemoteKey) -> String {
    match &k.last_used {
        LastUsed::At(t) => format!(", last used {t}"),
        LastUsed::Never => ", never used".to_string(),
        LastUsed::Unknown => String::new(),
    }
}

/// Compares `remote` (the keys of `repo`) with the fleet's keys for the deploy key `name`;
/// findings about fleet keys only for hosts in `hosts`.
#[must_use]
pub(crate) fn reconcile(records: &[HostRecord], hosts: &BTreeSet<String>, repo: &Repo, name: &str, remote: &[RemoteKey]) -> RepoReport {
    let fleet = fleet_keys(records, name);
    let says = Says { repo, name };
    let mut report =
        RepoReport { repo: repo.clone(), deploy_key: name.to_string(), on_github: remote.len(), matched: Vec::new(), problems: Vec::new() };
    let mut sorted: Vec<&RemoteKey> = remote.iter().collect();
    sorted.sort_by_key(|k| k.id);
    // Material → the first fleet key holding it (records by name; in a record, active first).
    let mut by_material = std::collections::HashMap::new();
    for (i, f) in fleet.iter().enumerate() {
        if let Some(m) = &f.material {
            by_material.entry(m.as_str()).or_insert(i);
        }
    }
    let mut found = BTreeSet::new();
    for k in sorted {
        match by_material.get(k.key.as_str()).copied() {
            None => report.problems.push(Finding {
                kind: Kind::Unknown,
                host: None,
                fingerprint: k.fingerprint.clone(),
                github: Some(k.clone()),
                message: says.unknown(k),
            }),
            Some(i) => {
                found.insert(i);
                if hosts.contains(&fleet[i].host) {
                    registered(&fleet[i], k, &says, &mut report);
                }
            }
        }
    }
    for (_, f) in fleet.iter().enumerate().filter(|(i, f)| !found.contains(i) && hosts.contains(&f.host)) {
        let kind = match f.state {
            State::Active => Kind::Missing,
            State::Pending => Kind::Unregistered,
            // A retired key GitHub no longer has is the end of a rotation.
            State::Retired => continue,
        };
        let message = says.absent(f);
        report.problems.push(Finding { kind, host: Some(f.host.clone()), fingerprint: f.fingerprint.clone(), github: None, message });
    }
    report
}

/// A fleet key GitHub has: a match, or what is wrong with how it is registered.
fn registered(f: &FleetKey, k: &RemoteKey, says: &Says<'_>, report: &mut RepoReport) {
    let kind = match (k.read_only, f.state) {
        (false, _) => Kind::Writable,
        (true, State::Active) => {
            report.matched.push(Matched { host: f.host.clone(), state: f.state, github: k.clone() });
            return;
        }
        (true, State::Pending) => Kind::NotActivated,
        (true, State::Retired) => Kind::Retired,
    };
    let message = says.registered(kind, f, k);
    report.problems.push(Finding {
        kind,
        host: Some(f.host.clone()),
        fingerprint: f.fingerprint.clone(),
        github: Some(k.clone()),
        message,
    });
}

/// The messages of findings in one repository, each with the command that fixes it.
struct Says<'a> {
    repo: &'a Repo,
    name: &'a str,
}

impl Says<'_> {
    fn register(&self, host: &str) -> String {
        let deploy = if self.repo.name() == self.name { String::new() } else { format!(" --deploy {}", self.name) };
        format!("`hostsmith deploy-keys {host} --register github --repo {}{deploy}`", self.repo)
    }

    fn delete(&self, id: u64) -> String {
        format!("`gh repo deploy-key delete {id} --repo {}`", self.repo)
    }

    fn unknown(&self, k: &RemoteKey) -> String {
        let added = k.created_at.as_ref().map(|t| format!(", added {t}")).unwrap_or_default();
        format!(
            "{}: key {} \"{}\" ({}{added}{}) is no key of this fleet: if nobody needs it, {}",
            self.repo,
            k.id,
            k.title,
            k.fingerprint,
            used(k),
            self.delete(k.id)
        )
    }

    fn registered(&self, kind: Kind, f: &FleetKey, k: &RemoteKey) -> String {
        let (repo, h, fp, id) = (self.repo, &f.host, &f.fingerprint, k.id);
        match kind {
            Kind::Writable => format!(
                "{repo}: {h}'s {} key {fp} is registered with write access (key {id}): deploy keys of this fleet are read-only; {}, then {}",
                f.state.as_str(),
                self.delete(id),
                self.register(h)
            ),
            Kind::NotActivated => format!(
                "{repo}: {h}'s new key {fp} is registered (key {id}) but {h} does not use it yet: `hostsmith deploy-keys {h} --activate {}`",
                self.name
            ),
            _ => format!(
                "{repo}: {h}'s retired key {fp} is still registered (key {id}{}): once {h} runs with its new key, {}",
                used(k),
                self.delete(id)
            ),
        }
    }

    fn absent(&self, f: &FleetKey) -> String {
        let (repo, h, fp) = (self.repo, &f.host, &f.fingerprint);
        if f.state == State::Active {
            format!("{repo}: {h}'s active key {fp} is not registered, so {h} cannot fetch the repository: {}", self.register(h))
        } else {
            format!("{repo}: {h}'s new key {fp} is not registered yet ({h} keeps its old key until then): {}", self.register(h))
        }
    }
}

/// The line for a key that matches.
#[must_use]
pub(crate) fn matched_line(repo: &Repo, m: &Matched) -> String {
    format!(
        "{repo}: {} {} key {} registered read-only (key {}{})",
        m.host,
        m.state.as_str(),
        m.github.fingerprint,
        m.github.id,
        used(&m.github)
    )
}
