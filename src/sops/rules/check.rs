//! `hostsmith sops check`: what is wrong with the creation rules, as a list of problems
//! rather than a first error, so one run shows everything to fix.

use std::fmt;

use super::model::{Model, Rule, describe};
use super::refs::admin_refs;
use super::{EditPolicy, SopsConfig, SopsConfigError};
use crate::sops::file::{is_pgp_fingerprint, normalize_fingerprint};
use crate::sops::yaml::{Node, NodeKind};

/// One thing `sops check` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// 1-based, when the problem has a place.
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    DuplicateAnchor,
    InvalidRegex,
    /// A rule sops would reject (not a mapping, a string where a list is needed, …).
    InvalidRule,
    InvalidRecipient,
    /// A host's recipient in `ssh-ed25519` form, which sops-nix cannot decrypt with.
    SshRecipient,
    /// A host's recipient of another kind than X25519 (a plugin's, post-quantum).
    HostNotX25519,
    UnknownAdmin,
    /// No rule matches a host or shared file.
    NoRule,
    /// The rule sops uses for a host file is not written for it alone.
    NotSpecific,
    /// More than one rule is written for a host file; only the first is ever used.
    DuplicateRule,
    HostMissing,
    /// A host file's rule names another host, which could then read this host's private key.
    OtherHost,
    AdminMissing,
    SharedMissing,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

struct Report(Vec<Problem>);

impl Report {
    fn push(&mut self, kind: ProblemKind, line: Option<usize>, message: String) {
        self.0.push(Problem { kind, line, message });
    }
}

#[allow(clippy::too_many_lines, reason = "one pass over the rules in sops' own order, collecting every problem")]
pub(crate) fn check(cfg: &SopsConfig, host_files: &[String], policy: &EditPolicy) -> Vec<Problem> {
    let m = cfg.model();
    let mut out = Report(Vec::new());
    for name in m.parsed.duplicate_anchors() {
        let line = m.anchors.iter().filter(|(a, _)| *a == name).nth(1).map(|(_, n)| n.line + 1);
        out.push(ProblemKind::DuplicateAnchor, line, format!("anchor `&{name}` is defined more than once; rename one"));
    }
    for rule in &m.rules {
        rule_problems(m, rule, &mut out);
    }
    recipient_problems(m, host_files, policy, &mut out);
    let admins = match admin_refs(m, &policy.admins) {
        Ok(a) => a,
        Err(e) => {
            out.push(ProblemKind::UnknownAdmin, None, e.to_string());
            Vec::new()
        }
    };
    // Every host's recipient, to spot a host file whose rule names another host.
    let host_recipients: std::collections::HashMap<&str, String> =
        host_files.iter().filter_map(|p| policy.host_of(p)).filter_map(|h| m.anchor(&h).and_then(Node::as_str).map(|r| (r, h))).collect();
    for path in host_files {
        let host = policy.host_of(path);
        let Some((rule, recipients)) = used_rule(m, path, &mut out) else {
            continue;
        };
        let others: std::collections::BTreeSet<&str> = recipients
            .iter()
            .filter_map(|r| host_recipients.get(r.as_str()))
            .filter(|o| host.as_deref() != Some(o.as_str()))
            .map(String::as_str)
            .collect();
        for other in others {
            out.push(
                ProblemKind::OtherHost,
                Some(rule.line),
                format!(
                    "the rule for `{path}` also names host `&{other}`, which could then read `{}`'s private key: remove `*{other}` from it, then `hostsmith sops rekey --rotate-data-key {path}`",
                    host.as_deref().unwrap_or("?")
                ),
            );
        }
        if !rule.is_specific_to(path) {
            let later = m.next_written_for(rule.index, path);
            let hint = later.map_or(String::from("add `path_regex: ^...$` for it before this rule"), |r| {
                format!("the rule written for it at line {} comes after this one: move it up", r.line)
            });
            out.push(
                ProblemKind::NotSpecific,
                Some(rule.line),
                format!("`{path}` falls to a rule that is not written for it alone; {hint}"),
            );
        } else if let Some(dup) = m.next_written_for(rule.index, path) {
            out.push(
                ProblemKind::DuplicateRule,
                Some(dup.line),
                format!("this rule for `{path}` is never used: the rule at line {} comes first; remove one", rule.line),
            );
        }
        match host.as_deref().and_then(|h| m.anchor(h)).and_then(Node::as_str) {
            Some(r) if !recipients.iter().any(|x| x == r) => out.push(
                ProblemKind::HostMissing,
                Some(rule.line),
                format!("the rule for `{path}` does not include its host's recipient (`&{}`)", host.as_deref().unwrap_or("")),
            ),
            None => out.push(
                ProblemKind::HostMissing,
                None,
                format!("`{path}` has no host anchor `&{}` under `keys:`", host.as_deref().unwrap_or("?")),
            ),
            _ => {}
        }
        let pgp = pgp_keys(m, rule);
        for a in admins.iter().filter(|a| !if a.pgp { pgp.contains(&a.recipient) } else { recipients.contains(&a.recipient) }) {
            out.push(ProblemKind::AdminMissing, Some(rule.line), format!("admin {} is missing from the rule for `{path}`", a.text));
        }
    }
    let excluded: Vec<glob::Pattern> = policy.exclude_from_shared.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
    for shared in &policy.shared {
        let Some((rule, recipients)) = used_rule(m, shared, &mut out) else {
            continue;
        };
        let recipients: std::collections::HashSet<&str> = recipients.iter().map(String::as_str).collect();
        for host in host_files.iter().filter_map(|p| policy.host_of(p)) {
            if excluded.iter().any(|p| p.matches(&host)) {
                continue;
            }
            if let Some(r) = m.anchor(&host).and_then(Node::as_str)
                && !recipients.contains(r)
            {
                out.push(
                    ProblemKind::SharedMissing,
                    Some(rule.line),
                    format!("host `{host}` is missing from the rule for shared file `{shared}`"),
                );
            }
        }
    }
    out.0
}

/// Every PGP key of `rule`'s groups, as sops reads them (spaces removed).
fn pgp_keys(m: &Model<'_>, rule: &Rule<'_>) -> Vec<String> {
    m.groups(rule).into_iter().flat_map(|g| g.pgp).map(|p| normalize_fingerprint(&p)).collect()
}

/// The rule sops uses for `path` and all its age recipients, or a problem.
fn used_rule<'m, 'a>(m: &'m Model<'a>, path: &str, out: &mut Report) -> Option<(&'m Rule<'a>, Vec<String>)> {
    match m.rule_for(path) {
        Ok(Some(rule)) => Some((rule, m.groups(rule).into_iter().flat_map(|g| g.age).collect())),
        Ok(None) => {
            out.push(ProblemKind::NoRule, None, format!("no creation rule matches `{path}`"));
            None
        }
        Err(e) => {
            out.push(ProblemKind::InvalidRegex, None, format!("`{path}`: {e}"));
            None
        }
    }
}

fn rule_problems(m: &Model<'_>, rule: &Rule<'_>, out: &mut Report) {
    if let (Some(re), Some(e)) = (&rule.path_regex, rule.regex_error()) {
        let msg = SopsConfigError::InvalidRegex { line: rule.line, regex: re.clone(), reason: e.to_string() };
        out.push(ProblemKind::InvalidRegex, Some(rule.line), msg.to_string());
    }
    let Some(map) = rule.map else {
        out.push(ProblemKind::InvalidRule, Some(rule.line), format!("the rule is {}, not a mapping", describe(m.resolve(rule.item))));
        return;
    };
    let groups: Vec<&Node> = match m.lookup(map, "key_groups").map(|f| &f.value.kind) {
        Some(NodeKind::Sequence { items, .. }) if !items.is_empty() => items.iter().map(|g| m.resolve(g)).collect(),
        _ => vec![map],
    };
    let in_groups = !std::ptr::eq(groups[0], map);
    for g in groups {
        let Some(age) = m.lookup(g, "age") else {
            continue;
        };
        match &age.value.kind {
            NodeKind::Scalar { .. } if in_groups && !age.value.is_null() => out.push(
                ProblemKind::InvalidRule,
                Some(age.key.line + 1),
                "a key group's `age` must be a list (sops rejects a string here)".into(),
            ),
            NodeKind::Sequence { items, .. } => {
                for i in items.iter().filter(|i| m.resolve(i).as_str().is_none()) {
                    out.push(
                        ProblemKind::InvalidRule,
                        Some(i.line + 1),
                        format!("an age list item is {}, not a recipient", describe(m.resolve(i))),
                    );
                }
            }
            _ => {}
        }
    }
}

/// Every recipient used by a rule or defined under `keys:` must parse; hosts must use the
/// age1 form.
fn recipient_problems(m: &Model<'_>, host_files: &[String], policy: &EditPolicy, out: &mut Report) {
    let hosts: std::collections::HashSet<String> = host_files.iter().filter_map(|p| policy.host_of(p)).collect();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut consider = |line: usize, value: &str, anchor: Option<&str>, out: &mut Report| {
        if !seen.insert(value.to_string()) || is_pgp_fingerprint(value) {
            // A PGP key: where it is used decides whether it is right (see below).
            return;
        }
        let host = anchor.filter(|a| hosts.contains(*a));
        let kind = crate::recipient::kind_of(value);
        match (kind, host) {
            (_, Some(host)) if value.starts_with("ssh-") => out.push(
                ProblemKind::SshRecipient,
                Some(line),
                format!("host `{host}` has an SSH recipient; .sops.yaml must hold its age1 form (sops-nix opens a host's secrets with the X25519 key derived from its ed25519 host key, not with ssh stanzas)"),
            ),
            (Ok(kind), Some(host)) if !kind.fits_a_host() => out.push(
                ProblemKind::HostNotX25519,
                Some(line),
                format!("host `{host}` has an {kind} recipient; a host's recipient must be the X25519 key derived from its ed25519 host key, which sops-nix decrypts with at boot"),
            ),
            (Ok(_), _) => {}
            (Err(e), _) => out.push(ProblemKind::InvalidRecipient, Some(line), format!("`{value}` is not a valid recipient: {e}")),
        }
    };
    if let Some((_, keys)) = m.keys {
        keys.walk(&mut |n| {
            if let (Some(a), Some(v)) = (&n.anchor, n.as_str()) {
                consider(n.line + 1, v, Some(a), out);
            }
        });
    }
    for rule in &m.rules {
        let Some(map) = rule.map else { continue };
        map.walk(&mut |n| {
            if let NodeKind::Alias { name } = &n.kind
                && let Some(v) = m.resolve(n).as_str()
            {
                for piece in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    consider(n.line + 1, piece, Some(name), out);
                }
            }
        });
        for r in misplaced_keys(m, rule, out) {
            consider(rule.line, &r, None, out);
        }
    }
}

/// Reports PGP fingerprints in age lists and anything else in pgp lists; returns the age
/// recipients left to check.
fn misplaced_keys(m: &Model<'_>, rule: &Rule<'_>, out: &mut Report) -> Vec<String> {
    let mut ages = Vec::new();
    for g in m.groups(rule) {
        for r in g.age {
            if is_pgp_fingerprint(&r) {
                let message = format!("`{r}` is a PGP fingerprint in an age list; move it to the group's `pgp:` list");
                out.push(ProblemKind::InvalidRecipient, Some(rule.line), message);
            } else {
                ages.push(r);
            }
        }
        for p in g.pgp.iter().filter(|p| !is_pgp_fingerprint(p)) {
            let message = format!("`{p}` in a pgp list is not a PGP fingerprint (40 hex digits, or a 16-digit key id)");
            out.push(ProblemKind::InvalidRecipient, Some(rule.line), message);
        }
    }
    ages
}
