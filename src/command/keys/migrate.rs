//! `keys migrate [--pubkeys DIR]...`: adopt a fleet made by the shell-script workflows.
//!
//! Those fleets (EmergentMind-style nix-secrets) already have what hostsmith needs except the
//! records: host anchors under `keys:` (often `- &hosts:` lists next to `- &users:`), per-host
//! files `sops/<host>.yaml` holding the host key (`ssh_host_ed25519_key`, at the top or under
//! `keys:`) or only a user's age key (`keys.age`), and directories of
//! `ssh_host_ed25519_key.pub` files. Migration writes the missing `hosts/<host>.json` from
//! those, and only those: no secret, rule or key is changed.
//!
//! A key is only recorded for a host when its age recipient is exactly the host's anchor
//! value, so public keys are matched by what they are, not by where they were found; keys
//! that match no anchor and anchors with no key are reported instead of guessed at.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::admin_identity::Identities;
use crate::atomic;
use crate::command::Context;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_file::{DEPLOY_KEYS_FIELD, HOST_KEY_FIELD};
use crate::host_name::HostName;
use crate::record::{self, HostRecord, Origin};
use crate::sops::file::{Map, Value};
use crate::sops::rules::SopsConfig;
use crate::sops::yaml::{Node, NodeKind};
use crate::ssh_keys::{self, Keypair};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A directory of hosts' `ssh_host_ed25519_key.pub` files (searched recursively; each key
    /// is matched to the host whose anchor holds its age recipient). Repeatable.
    #[arg(long = "pubkeys", value_name = "DIR")]
    pub pubkeys: Vec<PathBuf>,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Recorded {
    host: String,
    fingerprint: String,
    age_recipient: String,
    origin: Origin,
    source: String,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    recorded: Vec<Recorded>,
    already_recorded: Vec<String>,
    unmatched: Vec<String>,
    /// Sources that could not be used although the host was matched from another.
    notes: Vec<String>,
    files: Vec<String>,
    dry_run: bool,
}

/// An anchor under `keys:` that names a recipient, and the group it sits in.
struct KeyAnchor {
    name: String,
    recipient: String,
    group: Option<String>,
}

/// A public key found for a host, and where.
struct Found {
    public: ssh_key::PublicKey,
    source: String,
    origin: Origin,
    deploy_keys: BTreeMap<String, String>,
}

/// # Errors
/// No fleet or `.sops.yaml`, an unreadable directory, or a failed write.
#[allow(clippy::too_many_lines, reason = "matches every host anchor to a key source in one pass that reports as it goes")]
pub(crate) fn run(args: &Args, ctx: &Context) -> Result<()> {
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let _lock = fleet.lock()?;
    let config = fleet.sops_config()?;
    let mut pubkeys = BTreeMap::new();
    for dir in &args.pubkeys {
        if !dir.is_dir() {
            return Err(Error::Usage(format!("`{}` is not a directory of .pub files", dir.display())));
        }
        index_pubkeys(dir, &mut pubkeys)?;
    }
    let anchors = key_anchors(config.text());
    let admins = fleet.config.sops.admins.clone().unwrap_or_default();
    let group = fleet.config.sops.hosts_group.as_str();
    let grouped = anchors.iter().any(|a| a.group.as_deref() == Some(group));
    let rule_files = rule_files(&fleet, &config);
    let mut ids = Identities::for_fleet(&fleet);
    let mut report = Report { dry_run: args.dry_run, ..Report::default() };
    let mut records = Vec::new();
    let mut claimed = Vec::new();
    for a in &anchors {
        if admins.iter().any(|x| *x == a.name || *x == a.recipient) {
            continue;
        }
        let host_file =
            rule_files.get(&a.name).cloned().unwrap_or_else(|| crate::host_template::render(&fleet.host_file_template(), &a.name));
        let evidence = fleet.root.join(&host_file).is_file() || rule_files.contains_key(&a.name) || pubkeys.contains_key(&a.recipient);
        if if grouped { a.group.as_deref() != Some(group) } else { !evidence } {
            continue;
        }
        let Ok(host) = HostName::parse(&a.name) else {
            report.unmatched.push(format!("anchor `&{}` is not a valid host name; rename it to record the host", a.name));
            continue;
        };
        if a.recipient.starts_with("ssh-") {
            report.unmatched.push(ssh_host_anchor(&host, &a.recipient));
            continue;
        }
        claimed.push(a.recipient.clone());
        if let Some(rec) = fleet.record(&host)? {
            if rec.age_recipient == a.recipient {
                report.already_recorded.push(host.to_string());
            } else {
                report.unmatched.push(format!("host `{host}`: its record says {} but .sops.yaml has {}", rec.age_recipient, a.recipient));
            }
            continue;
        }
        let mut why = None;
        let from_file = from_host_file(&fleet, &host_file, &a.recipient, &mut ids).unwrap_or_else(|e| {
            why = Some(e);
            None
        });
        let found = from_file.or_else(|| {
            pubkeys.get(&a.recipient).map(|(path, public): &(PathBuf, ssh_key::PublicKey)| Found {
                public: public.clone(),
                source: path.display().to_string(),
                origin: Origin::Adopted,
                deploy_keys: BTreeMap::new(),
            })
        });
        let Some(found) = found else {
            let why = why.unwrap_or_else(|| "no SSH host key found".into());
            report.unmatched.push(format!(
                "host `{host}` ({}): {why}; give the directory of its ssh_host_ed25519_key.pub with --pubkeys DIR, or run `hostsmith adopt {host} --pubkey FILE`",
                a.recipient
            ));
            continue;
        };
        if let Some(why) = why {
            report.notes.push(format!("host `{host}`: {why}"));
        }
        let mut rec = new_record(&host, &a.recipient, found.public.clone(), found.origin, found.deploy_keys, &found.source);
        // A file the template does not give is the host's own: the record keeps it.
        rec.sops_file = (host_file != fleet.host_file_rel(&host, None)).then_some(host_file);
        report.recorded.push(Recorded {
            host: host.to_string(),
            fingerprint: rec.fingerprint.clone(),
            age_recipient: rec.age_recipient.clone(),
            origin: rec.origin,
            source: found.source,
        });
        records.push((host, rec));
    }
    for (recipient, (path, _)) in &pubkeys {
        if !claimed.contains(recipient) {
            report.unmatched.push(format!("`{}`: its key ({recipient}) is not a host anchor in .sops.yaml", path.display()));
        }
    }
    for (host, rec) in &records {
        report.files.push(fleet.record_rel(host.as_str()));
        if !args.dry_run {
            atomic::create_dir(&fleet.records_dir(), 0o755)?;
            atomic::write(&fleet.record_path(host), rec.to_json().as_bytes(), 0o644)?;
        }
    }
    print(&report, &fleet, ctx);
    Ok(())
}

fn print(report: &Report, fleet: &Fleet, ctx: &Context) {
    let out = &ctx.out;
    out.json(report);
    for r in &report.recorded {
        out.line(format!("recorded   {:<16} {}  {} (from {})", r.host, r.fingerprint, r.origin, r.source));
    }
    for h in &report.already_recorded {
        out.line(format!("known      {h}"));
    }
    if !report.unmatched.is_empty() {
        out.line(format!("could not match ({}):", report.unmatched.len()));
        for u in &report.unmatched {
            out.line(format!("  - {u}"));
        }
    }
    for n in &report.notes {
        out.note(format!("note: {n}"));
    }
    match (report.files.is_empty(), report.dry_run) {
        (true, _) => out.line("nothing to write"),
        (false, true) => out.line(format!("dry run: would write {}", report.files.join(", "))),
        (false, false) => out.line(format!("wrote {}", report.files.join(", "))),
    }
    if fleet.config.sops.admins.is_none() {
        out.note("note: this fleet has no hostsmith.toml; `hostsmith init` creates one and keeps .sops.yaml as it is");
    }
}

/// The host's key from its SOPS file: a private `ssh_host_ed25519_key` (top level, as
/// hostsmith writes it, or under `keys:`) or a `ssh_host_ed25519_key_pub`. `Ok(None)` when
/// the file is missing or holds neither; `Err` names what stops the match.
fn from_host_file(fleet: &Fleet, rel: &str, anchor: &str, ids: &mut Identities) -> std::result::Result<Option<Found>, String> {
    let path = fleet.confined(rel).map_err(|e| e.to_string())?;
    if !path.is_file() {
        return Ok(None);
    }
    let decrypted = ids.decrypt_file(&path).map_err(|e| format!("cannot read `{rel}` ({e})"))?;
    let doc = decrypted.document();
    let text_at = |p: &[&str]| match doc.get_path(p) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let mut found = None;
    for (field, origin) in [(&[HOST_KEY_FIELD][..], Origin::Imported), (&["keys", HOST_KEY_FIELD][..], Origin::Adopted)] {
        if let Some(private) = text_at(field).map(zeroize::Zeroizing::new) {
            let key =
                Keypair::from_openssh(&private, None).map_err(|e| format!("`{rel}`: `{}` is not a usable key: {e}", field.join(".")))?;
            found = Some((key.public().clone(), format!("{rel} ({})", field.join(".")), origin));
            break;
        }
    }
    if found.is_none() {
        for field in [&["ssh_host_ed25519_key_pub"][..], &["keys", "ssh_host_ed25519_key_pub"][..]] {
            if let Some(line) = text_at(field) {
                let key = ssh_keys::parse_public(&line).map_err(|e| format!("`{rel}`: `{}`: {e}", field.join(".")))?;
                found = Some((key, format!("{rel} ({})", field.join(".")), Origin::Adopted));
                break;
            }
        }
    }
    if found.is_none()
        && let Some(age) = text_at(&["keys", "age"])
        && age.trim().parse::<age::x25519::Identity>().is_ok_and(|id| id.to_public().to_string() == anchor)
    {
        return Err(format!(
            "`{rel}` opens with a plain age key (`keys.age`), not one derived from an SSH host key; hostsmith records need the SSH key: run `hostsmith keys rotate` after adopting it"
        ));
    }
    let Some((public, source, origin)) = found else { return Ok(None) };
    let recipient = ssh_keys::recipient_of(&public).map_err(|e| e.to_string())?;
    if recipient != anchor {
        return Err(format!("the key in {source} converts to {recipient}, but its anchor holds {anchor}; fix one of them"));
    }
    Ok(Some(Found { public, source, origin, deploy_keys: deploy_keys_of(doc) }))
}

/// The file each host's creation rule is written for (the template's file when a rule is
/// written for it, else the first other one).
fn rule_files(fleet: &Fleet, config: &SopsConfig) -> BTreeMap<String, String> {
    let template = fleet.host_file_template();
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for r in crate::key_audit::rule_hosts(fleet, config) {
        let is_template = r.file == crate::host_template::render(&template, &r.host);
        match out.get(&r.host) {
            Some(_) if !is_template => {}
            _ => {
                out.insert(r.host, r.file);
            }
        }
    }
    out
}

/// Public halves of the deploy keys a host file holds.
fn deploy_keys_of(doc: &Map) -> BTreeMap<String, String> {
    let Some(Value::Map(m)) = doc.get(DEPLOY_KEYS_FIELD) else { return BTreeMap::new() };
    m.entries()
        .filter_map(|(repo, v)| match v {
            Value::Str(s) => {
                Keypair::from_openssh(&zeroize::Zeroizing::new(s.clone()), None).ok().map(|k| (repo.to_string(), k.public_line()))
            }
            _ => None,
        })
        .collect()
}

fn new_record(
    host: &HostName,
    recipient: &str,
    public: ssh_key::PublicKey,
    origin: Origin,
    deploy_keys: BTreeMap<String, String>,
    source: &str,
) -> HostRecord {
    let mut extra = serde_json::Map::new();
    extra.insert("migrated_from".into(), serde_json::Value::String(source.to_string()));
    HostRecord {
        schema: record::SCHEMA,
        name: host.to_string(),
        ssh_host_ed25519_public: ssh_keys::public_line(&public),
        fingerprint: ssh_keys::fingerprint(&public),
        age_recipient: recipient.to_string(),
        deploy_keys,
        created_at: record::now(),
        rotated_at: None,
        origin,
        history: Vec::new(),
        addresses: Vec::new(),
        vm_id: None,
        proxmox_node: None,
        sops_file: None,
        extra,
    }
}

/// Every ed25519 public key in `.pub` files below `dir` (hidden entries and symlinks skipped),
/// by age recipient.
fn index_pubkeys(dir: &Path, out: &mut BTreeMap<String, (PathBuf, ssh_key::PublicKey)>) -> Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| Error::Read { path: d.clone(), source })?;
        let mut paths: Vec<(PathBuf, std::fs::FileType)> =
            entries.filter_map(std::result::Result::ok).filter_map(|e| Some((e.path(), e.file_type().ok()?))).collect();
        paths.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, kind) in paths {
            if path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.')) {
                continue;
            }
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "pub") {
                let Ok(text) = std::fs::read_to_string(&path) else { continue };
                if let Ok(key) = ssh_keys::parse_public(&text)
                    && let Ok(recipient) = ssh_keys::recipient_of(&key)
                {
                    out.entry(recipient).or_insert((path, key));
                }
            }
        }
    }
    Ok(())
}

/// Why a host anchor holding an SSH key is not recorded, with the recipient it needs.
fn ssh_host_anchor(host: &HostName, value: &str) -> String {
    let converted = ssh_key::PublicKey::from_openssh(value).ok().and_then(|k| crate::ssh_keys::recipient_of(&k).ok());
    let fix = converted.map_or_else(
        || "replace it with the host's age1… recipient (ssh-to-age of its ed25519 host key)".to_string(),
        |r| format!("replace it with {r}, its X25519 form"),
    );
    format!(
        "host `{host}`: its anchor holds an SSH key, but a host's recipient must be X25519 (sops-nix opens the host's secrets with the X25519 key derived from its ed25519 host key, never with ssh stanzas): {fix}, then run `hostsmith keys migrate` again"
    )
}

/// The recipient anchors under `keys:`, with the group each sits in: the mapping key
/// (`keys: {hosts: [...]}`) or the anchor of the enclosing list (`- &hosts:` lists).
fn key_anchors(text: &str) -> Vec<KeyAnchor> {
    fn walk(n: &Node, group: Option<&str>, out: &mut Vec<KeyAnchor>) {
        match &n.kind {
            NodeKind::Scalar { value, .. } => {
                if let Some(a) = &n.anchor
                    && (value.starts_with("age1") || value.starts_with("ssh-"))
                {
                    out.push(KeyAnchor {
                        name: a.trim_end_matches(':').to_string(),
                        recipient: value.trim().to_string(),
                        group: group.map(str::to_string),
                    });
                }
            }
            NodeKind::Sequence { items, .. } => {
                let g = n.anchor.as_deref().map(|a| a.trim_end_matches(':')).or(group);
                for i in items {
                    walk(i, g, out);
                }
            }
            NodeKind::Mapping { entries, .. } => {
                for (k, v) in entries {
                    walk(v, k.as_str().or(group), out);
                }
            }
            NodeKind::Alias { .. } => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(parsed) = crate::sops::yaml::parse(text)
        && let Some(keys) = parsed.documents.first().and_then(|d| d.get("keys"))
    {
        walk(keys, None, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::key_anchors;

    #[test]
    fn anchors_keep_their_groups_in_each_layout() {
        let a = "age1xzzyhxcnfg7rpu0paxdrwrkjag29kf55s6eud25h5knepjm76uus0t6pfv";
        for (text, want) in [
            (
                format!("keys:\n  - &users:\n    - &ta {a}\n  - &hosts:\n    - &ghost {a}\n"),
                [("ta", Some("users")), ("ghost", Some("hosts"))],
            ),
            (format!("keys:\n  users:\n    - &ta {a}\n  hosts:\n    - &ghost {a}\n"), [("ta", Some("users")), ("ghost", Some("hosts"))]),
            (format!("keys:\n  - &ta {a}\n  - &ghost {a}\n"), [("ta", None), ("ghost", None)]),
        ] {
            let got: Vec<(String, Option<String>)> = key_anchors(&text).into_iter().map(|k| (k.name, k.group)).collect();
            let want: Vec<(String, Option<String>)> = want.iter().map(|(n, g)| ((*n).to_string(), g.map(str::to_string))).collect();
            assert_eq!(got, want, "{text}");
        }
    }
}
