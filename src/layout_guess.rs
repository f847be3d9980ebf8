//! Guessing an existing fleet's layout from its `.sops.yaml` and the SOPS files it holds, so
//! `hostsmith init` can write a `hostsmith.toml` that fits the fleet as it is.
//!
//! Every guess carries the evidence for it, which `init` writes as a comment next to the
//! setting: a wrong guess is then easy to see and fix. The rules of thumb:
//! - a **host** is an anchor that a rule names and whose `path_regex` names it too
//!   (`hosts/electra/secrets.ya?ml$` with `*electra` in its keys);
//! - the **per-host template** comes from the host files that exist (the host's name in the
//!   path becomes `{host}`), or from the rule itself when it is a plain path; the most common
//!   one wins, and hosts whose file does not fit it are named;
//! - **admins** are the anchors every rule names that are not hosts;
//! - **shared files** are the existing SOPS files, not a host's, whose rule names every host;
//! - the **hosts group** is where most host anchors sit under `keys:`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sops::rules::{RuleSummary, SopsConfig};

/// One guess and why it was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Guess<T> {
    pub value: T,
    pub why: String,
}

/// What `init` could tell about a fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Layout {
    /// Host anchors, in text order.
    pub hosts: Vec<String>,
    pub admins: Option<Guess<Vec<String>>>,
    /// Admins that are PGP keys.
    pub pgp_admins: Vec<String>,
    pub host_file: Option<Guess<String>>,
    /// Hosts whose file is not where the template puts it: `(host, path)`.
    pub misfits: Vec<(String, String)>,
    pub shared: Guess<Vec<String>>,
    pub hosts_group: Option<Guess<String>>,
}

/// Guesses the layout of a fleet whose `.sops.yaml` is `config` and whose SOPS files are
/// `files` (relative paths).
pub(crate) fn guess(config: &SopsConfig, files: &[String]) -> Layout {
    let rules = config.rule_summaries();
    let anchors = config.key_anchors();
    // Each host with the first rule that names it (in its keys and in its path).
    let host_rules: Vec<(String, &RuleSummary)> = anchors
        .iter()
        .filter(|a| a.kind == "age")
        .filter_map(|a| rules.iter().find(|r| r.anchors.contains(&a.name) && names_host(r, &a.name)).map(|r| (a.name.clone(), r)))
        .collect();
    let hosts: Vec<String> = host_rules.iter().map(|(h, _)| h.clone()).collect();
    // The line of the rule sops uses for each file, the rules read once for all files.
    let files: Vec<(&str, Option<usize>)> = {
        let paths: Vec<&str> = files.iter().map(String::as_str).collect();
        paths.iter().copied().zip(config.rules_for_each(&paths).into_iter().map(|r| r.map(|r| r.line))).collect()
    };
    let (host_file, misfits, host_paths) = template(&host_rules, &files);
    let admins = admins(&rules, &hosts);
    let pgp_admins =
        admins.iter().flat_map(|g| g.value.iter()).filter(|a| anchors.iter().any(|k| &k.name == *a && k.kind == "pgp")).cloned().collect();
    let shared = shared(&rules, &hosts, &files, &host_paths);
    let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
    for a in anchors.iter().filter(|a| hosts.contains(&a.name)) {
        if let Some(g) = &a.group {
            *groups.entry(g.as_str()).or_default() += 1;
        }
    }
    let hosts_group = groups.into_iter().max_by_key(|(_, n)| *n).map(|(g, n)| Guess {
        value: g.to_string(),
        why: format!("{n} of the {} host anchors are listed under `{g}` in `keys:`", hosts.len()),
    });
    Layout { hosts, admins, pgp_admins, host_file, misfits, shared, hosts_group }
}

/// Whether the rule's `path_regex` has `host` in it as a whole name (not inside a longer
/// word: `web1` is not named by `web10`).
fn names_host(rule: &RuleSummary, host: &str) -> bool {
    let Some(re) = &rule.path_regex else { return false };
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    re.match_indices(host).any(|(i, _)| {
        let before = re[..i].chars().next_back();
        let after = re[i + host.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

type Template = (Option<Guess<String>>, Vec<(String, String)>, BTreeMap<String, String>);

/// The per-host template, the hosts that do not fit it, and each host's file. `files` are
/// the fleet's SOPS files with the line of the rule sops uses for each.
fn template(host_rules: &[(String, &RuleSummary)], files: &[(&str, Option<usize>)]) -> Template {
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    for (host, rule) in host_rules {
        let existing = files.iter().find(|(f, line)| *line == Some(rule.line) && has_component(f, host)).map(|(f, _)| (*f).to_string());
        let path = existing.or_else(|| rule.path_regex.as_deref().and_then(plain_path).filter(|p| has_component(p, host)));
        if let Some(p) = path {
            paths.insert(host.clone(), p);
        }
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (host, path) in &paths {
        *counts.entry(templated(path, host)).or_default() += 1;
    }
    let Some((best, n)) = counts.into_iter().max_by_key(|(t, n)| (*n, std::cmp::Reverse(t.clone()))) else {
        return (None, Vec::new(), paths);
    };
    let misfits = paths.iter().filter(|(h, p)| best.replace("{host}", h) != **p).map(|(h, p)| (h.clone(), p.clone())).collect();
    let example = paths.iter().find(|(h, p)| best.replace("{host}", h) == **p).map_or_else(String::new, |(_, p)| p.clone());
    let why = format!("the files of {n} of the {} hosts follow it (e.g. `{example}`)", paths.len());
    (Some(Guess { value: best, why }), misfits, paths)
}

/// Whether `path` has `host` as a directory or as a file's stem.
fn has_component(path: &str, host: &str) -> bool {
    path.split('/').any(|c| c == host || c.split_once('.').is_some_and(|(stem, _)| stem == host))
}

/// `path` with the components that are `host` (or `host.ext`) written as `{host}`.
fn templated(path: &str, host: &str) -> String {
    path.split('/')
        .map(|c| match c.split_once('.') {
            _ if c == host => "{host}".to_string(),
            Some((stem, ext)) if stem == host => format!("{{host}}.{ext}"),
            _ => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The one path a `path_regex` stands for when it is written as a path: `^`/`$` dropped,
/// `\.` read as `.`, `ya?ml` read as `yaml`; `None` when anything else is a regex.
fn plain_path(re: &str) -> Option<String> {
    let body = re.trim_start_matches('^').trim_end_matches('$').replace("ya?ml", "yaml").replace("\\.", ".");
    let body = body.strip_prefix(".*/").unwrap_or(&body);
    (!body.is_empty() && !body.contains(['\\', '[', ']', '(', ')', '*', '+', '?', '|', '{', '}', '^', '$'])).then(|| body.to_string())
}

/// Anchors every rule that names anchors names, hosts aside; failing that, those every host
/// rule names.
fn admins(rules: &[RuleSummary], hosts: &[String]) -> Option<Guess<Vec<String>>> {
    let in_all = |rs: &[&RuleSummary]| -> Vec<String> {
        let Some(first) = rs.first() else { return Vec::new() };
        first.anchors.iter().filter(|a| !hosts.contains(a) && rs.iter().all(|r| r.anchors.contains(a))).cloned().collect()
    };
    let named: Vec<&RuleSummary> = rules.iter().filter(|r| !r.anchors.is_empty()).collect();
    let every = in_all(&named);
    if !every.is_empty() {
        let why = format!("named by every creation rule ({} rules) and not a host", named.len());
        return Some(Guess { value: every, why });
    }
    let host_rules: Vec<&RuleSummary> = named.iter().copied().filter(|r| hosts.iter().any(|h| names_host(r, h))).collect();
    let every = in_all(&host_rules);
    (!every.is_empty())
        .then(|| Guess { why: format!("named by every host's rule ({} rules) and not a host", host_rules.len()), value: every })
}

/// The existing SOPS files that are no host's and whose rule names every host.
fn shared(
    rules: &[RuleSummary],
    hosts: &[String],
    files: &[(&str, Option<usize>)],
    host_paths: &BTreeMap<String, String>,
) -> Guess<Vec<String>> {
    let mut out = Vec::new();
    let host_files: std::collections::BTreeSet<&str> = host_paths.values().map(String::as_str).collect();
    if !hosts.is_empty() {
        for (f, line) in files.iter().filter(|(f, _)| !host_files.contains(f)) {
            let Some(rule) = rules.iter().find(|r| Some(r.line) == *line) else { continue };
            if hosts.iter().all(|h| rule.anchors.contains(h)) && !hosts.iter().any(|h| names_host(rule, h)) {
                out.push((*f).to_string());
            }
        }
    }
    let why = if out.is_empty() {
        "no existing SOPS file is encrypted for every host".to_string()
    } else {
        format!("encrypted for all {} hosts by their rules", hosts.len())
    };
    Guess { value: out, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> String {
        age::x25519::Identity::generate().to_public().to_string()
    }

    #[test]
    fn a_hosts_dir_fleet_with_a_pgp_admin() {
        let (a, b, c) = (rec(), rec(), rec());
        let text = format!(
            "keys:\n  - &users:\n    - &misterio 7088C7421873E0DB97FF17C2245CAB70B4C225E9\n  - &hosts:\n    - &electra {a}\n    - &merope {b}\n    - &atlas {c}\ncreation_rules:\n  - path_regex: hosts/electra/secrets.ya?ml$\n    key_groups:\n    - age:\n      - *electra\n      pgp:\n      - *misterio\n  - path_regex: hosts/merope/secrets.ya?ml$\n    key_groups:\n    - age:\n      - *merope\n      pgp:\n      - *misterio\n  - path_regex: hosts/atlas/secrets.ya?ml$\n    key_groups:\n    - age:\n      - *atlas\n      pgp:\n      - *misterio\n  - path_regex: hosts/common/secrets.ya?ml$\n    key_groups:\n    - age:\n      - *electra\n      - *merope\n      - *atlas\n      pgp:\n      - *misterio\n"
        );
        let config = SopsConfig::parse(&text).expect("parses");
        let files = ["hosts/common/secrets.yaml", "hosts/electra/secrets.yaml", "hosts/merope/secrets.yml"].map(String::from);
        let l = guess(&config, &files);
        assert_eq!(l.hosts, ["electra", "merope", "atlas"]);
        assert_eq!(l.admins.as_ref().map(|g| g.value.clone()), Some(vec!["misterio".to_string()]));
        assert_eq!(l.pgp_admins, ["misterio"]);
        assert_eq!(l.host_file.as_ref().map(|g| g.value.as_str()), Some("hosts/{host}/secrets.yaml"));
        assert_eq!(l.misfits, [("merope".to_string(), "hosts/merope/secrets.yml".to_string())]);
        assert_eq!(l.shared.value, ["hosts/common/secrets.yaml"]);
        assert_eq!(l.hosts_group.map(|g| g.value), Some("hosts".into()));
    }

    #[test]
    fn plain_paths_and_host_names() {
        assert_eq!(plain_path("^sops/web01\\.yaml$").as_deref(), Some("sops/web01.yaml"));
        assert_eq!(plain_path("hosts/web01/secrets.ya?ml$").as_deref(), Some("hosts/web01/secrets.yaml"));
        assert_eq!(plain_path("web01/[^/]+\\.yaml$"), None);
        let r = RuleSummary { line: 1, path_regex: Some("hosts/web10/secrets.yaml".into()), anchors: Vec::new() };
        assert!(names_host(&r, "web10") && !names_host(&r, "web1"));
        assert_eq!(templated("hosts/web01.yml", "web01"), "hosts/{host}.yml");
    }
}
