//! Who can open what: what `keys list` and `hostsmith check` find inconsistent between the
//! records, `.sops.yaml` and the SOPS files.
//!
//! Only public facts are compared (records, rules, the recipients stored in each file's
//! metadata), so the audit needs no identity and decrypts nothing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::record::HostRecord;
use crate::rekey::Target;
use crate::sops::file::EncryptedFile;
use crate::sops::rules::SopsConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// A host has a record but no creation rule that gives it its file.
    RecordWithoutRule,
    /// A creation rule is written for a host file, but the host has no record.
    RuleWithoutRecord,
    /// A recipient the rule lists is missing from the file's keys: it cannot open the file.
    RecipientCannotOpen,
    /// A recipient the rule no longer lists can still open the file.
    RecipientNotInRule,
    /// No creation rule matches a SOPS file.
    FileWithoutRule,
    /// A file that looks like SOPS but cannot be read as such.
    UnreadableFile,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Problem {
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub message: String,
}

/// An admin key: what kind it is, and whether this machine can encrypt for it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AdminView {
    pub name: String,
    /// `x25519`, `plugin:NAME`, `ssh-ed25519`, `ssh-rsa`, `pq`, `pgp`, or `invalid`.
    pub kind: String,
    pub recipient: String,
    /// What this machine lacks to encrypt for it (a plugin, a sops that takes post-quantum keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

/// The fleet's admin keys, by kind; none when `sops.admins` is not set or does not resolve
/// (`sops check` says why).
#[must_use]
pub(crate) fn admin_views(fleet: &Fleet, config: &SopsConfig) -> Vec<AdminView> {
    let Ok(admins) = fleet.config.admins(&fleet.root) else { return Vec::new() };
    let Ok(keys) = config.admin_keys(admins) else { return Vec::new() };
    keys.into_iter()
        .map(|k| {
            let (kind, missing) = if k.pgp {
                ("pgp".to_string(), None)
            } else {
                let kind = crate::recipient::kind_of(&k.recipient).map_or_else(|_| "invalid".into(), |kind| kind.label());
                (kind, crate::recipient::missing_here(&k.recipient))
            };
            AdminView { name: k.name, kind, recipient: k.recipient, missing }
        })
        .collect()
}

/// Every problem, records first, then rules, then files (each in name order).
#[must_use]
pub(crate) fn problems(fleet: &Fleet, config: &SopsConfig, records: &[HostRecord], files: &[String]) -> Vec<Problem> {
    let mut out = Vec::new();
    let names = recipient_names(config, records);
    for r in records {
        let Ok(host) = HostName::parse(&r.name) else { continue };
        let rel = fleet.host_file_rel(&host, Some(r));
        let why = match config.rule_for(&rel) {
            None => format!("no creation rule in .sops.yaml matches `{rel}`"),
            Some(rule) if !rule.key_groups.iter().any(|g| g.age.contains(&r.age_recipient)) => {
                format!("the creation rule sops uses for `{rel}` (line {}) does not include its recipient", rule.line)
            }
            Some(_) => continue,
        };
        out.push(Problem {
            kind: Kind::RecordWithoutRule,
            host: Some(r.name.clone()),
            file: Some(rel),
            message: format!(
                "host `{}` has a record but {why}: run `hostsmith vm-fresh {}` to add it, or `hostsmith keys delete {}` to drop the host",
                r.name, r.name, r.name
            ),
        });
    }
    let recorded: std::collections::HashSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
    for RuleHost { line, host, file } in rule_hosts(fleet, config) {
        if recorded.contains(host.as_str()) {
            continue;
        }
        let record = fleet.record_rel(&host);
        out.push(Problem {
            kind: Kind::RuleWithoutRecord,
            host: Some(host.clone()),
            file: Some(file),
            message: format!(
                "line {line} of .sops.yaml is the creation rule of host `{host}`, which has no record `{record}`: run `hostsmith keys migrate` or `hostsmith adopt {host}`, or remove the rule"
            ),
        });
    }
    // Each file read and parsed on every core, its problems kept in the files' order.
    out.extend(
        crate::parallel::map(files, crate::parallel::cores(), |rel| {
            let mut found = Vec::new();
            file_problems(fleet, config, rel, &names, &mut found);
            found
        })
        .into_iter()
        .flatten(),
    );
    out
}

fn file_problems(fleet: &Fleet, config: &SopsConfig, rel: &str, names: &BTreeMap<String, String>, out: &mut Vec<Problem>) {
    let push = |out: &mut Vec<Problem>, kind, message: String| out.push(Problem { kind, host: None, file: Some(rel.to_string()), message });
    let parsed = std::fs::read_to_string(fleet.root.join(rel))
        .map_err(|e| e.to_string())
        .and_then(|t| EncryptedFile::parse(&t).map_err(|e| e.to_string()));
    let file = match parsed {
        Ok(f) => f,
        Err(e) => return push(out, Kind::UnreadableFile, format!("`{rel}` cannot be read as a SOPS file: {e}")),
    };
    let Some(target) = Target::from_rule(config, rel) else {
        return push(
            out,
            Kind::FileWithoutRule,
            format!("no creation rule in .sops.yaml matches `{rel}`: add one, or `sops rekey` cannot maintain it"),
        );
    };
    // Age recipients and PGP keys (`pgp:FINGERPRINT`) alike, in the rule's order.
    let has = file.key_groups().key_names();
    let wants = target.keys.key_names();
    let (has_set, wants_set): (std::collections::HashSet<&String>, std::collections::HashSet<&String>) =
        (has.iter().collect(), wants.iter().collect());
    let name = |r: &str| {
        let key = r.strip_prefix("pgp:").unwrap_or(r);
        let shown = if r.starts_with("pgp:") { format!("PGP key {key}") } else { key.to_string() };
        names.get(key).map_or(shown.clone(), |n| format!("`{n}` ({shown})"))
    };
    for r in wants.iter().filter(|r| !has_set.contains(r)) {
        push(
            out,
            Kind::RecipientCannotOpen,
            format!("`{rel}`: {} is in its creation rule but cannot open it: run `hostsmith sops rekey {rel}`", name(r)),
        );
    }
    for r in has.iter().filter(|r| !wants_set.contains(r)) {
        push(
            out,
            Kind::RecipientNotInRule,
            format!(
                "`{rel}`: {} can still open it but is not in its creation rule: run `hostsmith sops rekey --rotate-data-key {rel}`",
                name(r)
            ),
        );
    }
}

/// Recipient → a name for messages: the host whose record holds it, else the anchor.
fn recipient_names(config: &SopsConfig, records: &[HostRecord]) -> BTreeMap<String, String> {
    let mut names: BTreeMap<String, String> = config
        .anchors()
        .into_iter()
        .filter_map(|a| {
            let value = a.value?;
            // A fingerprint is compared as sops reads it: no spaces, upper case.
            let value = if value.starts_with("age1") { value } else { crate::sops::file::normalize_fingerprint(&value) };
            Some((value, a.name.trim_end_matches(':').to_string()))
        })
        .collect();
    for r in records {
        names.insert(r.age_recipient.clone(), r.name.clone());
    }
    names
}

/// A creation rule written for one host's file.
pub(crate) struct RuleHost {
    /// 1-based line of the rule in `.sops.yaml`.
    pub line: usize,
    pub host: String,
    /// The file the rule is written for, relative to the fleet.
    pub file: String,
}

/// The creation rules written for one host file (`^sops/web01\.yaml$`, also unanchored or
/// unescaped as shell scripts write them) of a host that has an anchor (`&web01`). The file is
/// the host's when it is the template's file for the host, or when the host's name is one of
/// its directories or its file name (`hosts/prod/web01/secrets.yaml`,
/// `nixosConfigurations/web01/secrets.yaml`); the anchor tells a host's file from another
/// file in the same directory. Admins' anchors and shared files are not hosts'.
#[must_use]
pub(crate) fn rule_hosts(fleet: &Fleet, config: &SopsConfig) -> Vec<RuleHost> {
    let shared = &fleet.config.sops.shared;
    let admins = fleet.config.sops.admins.clone().unwrap_or_default();
    let template = fleet.host_file_template();
    let is_host = |h: &str| HostName::parse(h).is_ok() && config.host_recipient(h).is_some() && !admins.iter().any(|a| a == h);
    config
        .model()
        .rules
        .iter()
        .filter_map(|rule| {
            let item = rule.item;
            let file = literal_of_regex(item.get("path_regex")?.as_str()?)?;
            if shared.iter().any(|s| s.trim_start_matches("./") == file) || crate::host_template::file_problem(&file).is_some() {
                return None;
            }
            let host = crate::host_template::host_of(&template, &file).filter(|h| is_host(h)).or_else(|| host_in_path(&file, &is_host))?;
            Some(RuleHost { line: item.line + 1, host, file })
        })
        .collect()
}

/// The host a path names: its last directory or file stem that is a host with an anchor.
fn host_in_path(file: &str, is_host: &dyn Fn(&str) -> bool) -> Option<String> {
    let mut parts: Vec<&str> = file.split('/').collect();
    let name = parts.pop()?;
    parts.push(name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".yml"))?);
    parts.into_iter().rev().find(|p| HostName::parse(p).is_ok() && is_host(p)).map(str::to_string)
}

/// `sops/web01.yaml` for a regex that matches exactly that path (`^sops/web01\.yaml$`, also
/// without the anchors or the escapes).
fn literal_of_regex(regex: &str) -> Option<String> {
    let body = regex.strip_prefix('^').unwrap_or(regex);
    let body = body.strip_suffix('$').unwrap_or(body);
    let mut literal = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => literal.push(chars.next()?),
            c if c.is_ascii_alphanumeric() || "-_/.".contains(c) => literal.push(c),
            _ => return None,
        }
    }
    Some(literal)
}

#[cfg(test)]
mod tests {
    use super::{host_in_path, literal_of_regex};

    #[test]
    fn host_rules_are_recognised_in_every_spelling() {
        for r in [r"^sops/web01\.yaml$", "sops/web01.yaml$", r"sops/web01\.yaml", r"^sops/web01\.yml$"] {
            assert!(literal_of_regex(r).is_some_and(|l| l.starts_with("sops/web01.y")), "{r}");
        }
        for r in [r"^sops/.*\.yaml$", r"\.yaml$x", r"^sops/(a|b)\.yaml$"] {
            assert!(literal_of_regex(r).is_none_or(|l| !l.ends_with(".yaml")), "{r}");
        }
        let hosts = |h: &str| ["web01", "db01"].contains(&h);
        assert_eq!(host_in_path("hosts/prod/web01/secrets.yaml", &hosts).as_deref(), Some("web01"));
        assert_eq!(host_in_path("nixosConfigurations/db01/secrets.yml", &hosts).as_deref(), Some("db01"));
        assert_eq!(host_in_path("sops/db01.yaml", &hosts).as_deref(), Some("db01"));
        assert_eq!(host_in_path("sops/shared.yaml", &hosts), None);
        assert_eq!(host_in_path("web01/notes.txt", &hosts), None);
    }
}
