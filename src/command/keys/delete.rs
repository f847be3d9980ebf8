//! `keys delete HOST`: revocation.
//!
//! The host's anchor, its own rule and its aliases in other rules leave `.sops.yaml` (edited
//! in place, only those lines); every other SOPS file its recipient can open is re-keyed for
//! its rule's remaining recipients with a fresh data key, so whatever is written there from
//! now on is out of the host's reach; then the host file and the record go (kept with
//! `--keep-files`). Values the host could read before stay known to it, so they are listed
//! for the admin to rotate, with the deploy keys to remove from the forge.
//!
//! Everything is planned under the fleet lock before the question is asked; the writes follow
//! `provision`'s order: re-keyed files, `.sops.yaml`, files only real sops can re-key, then
//! the host file and the record last (a host file without a record would give its revoked key
//! back to the next `vm-fresh`, so the file goes first).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use serde::Serialize;

use super::one_host;
use crate::admin_identity::Identities;
use crate::command::Context;
use crate::deploy_keys;
use crate::enroll;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::rekey::{self, FilePlan, Target};
use crate::sops::file::{EncryptedFile, Map, Value};
use crate::sops::rules::SopsConfig;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Keep sops/<host>.yaml and hosts/<host>.json (the host still leaves .sops.yaml and the
    /// files it could read).
    #[arg(long)]
    pub keep_files: bool,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short)]
    pub yes: bool,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
struct Exposed {
    file: String,
    keys: Vec<String>,
}

#[derive(Debug, Serialize)]
struct DeployKeyToRemove {
    repo: String,
    title: String,
    fingerprint: String,
}

#[derive(Debug, Serialize)]
struct Report {
    host: String,
    age_recipient: String,
    sops_config_changes: Vec<String>,
    /// Re-keyed with a fresh data key for the remaining recipients.
    rekeyed: Vec<String>,
    removed: Vec<String>,
    kept: Vec<String>,
    /// What the host could read: rotate these values.
    secrets_to_rotate: Vec<Exposed>,
    deploy_keys_to_remove: Vec<DeployKeyToRemove>,
    dry_run: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed: Vec<String>,
}

/// # Errors
/// Unknown host, a `.sops.yaml` that cannot be edited safely, a file that cannot be re-keyed,
/// no confirmation, or a failed write; nothing is written when planning fails.
#[allow(clippy::too_many_lines, reason = "the deletion is planned in full before its first write; the order is the point")]
pub(crate) fn run(args: &Args, ctx: &Context) -> Result<()> {
    let host = one_host(&args.host)?;
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let mut lock = fleet.lock()?;
    let record = fleet.record(&host)?;
    // The files the host can read are looked for (10,000 reads in a large fleet) while
    // `.sops.yaml` is read and edited.
    let early = record.as_ref().map(|r| (r.age_recipient.clone(), rekey::readable_later(&fleet, &r.age_recipient, Vec::new())));
    let config_path = fleet.sops_config_path();
    let config_text = fleet.read_sops_config()?;
    let parse = |t: &str| SopsConfig::parse(t).map_err(|e| Error::SopsRules { path: config_path.clone(), source: e });
    let config = parse(&config_text)?;
    let host_rel = fleet.host_file_rel(&host, record.as_ref());
    let recipient = record
        .as_ref()
        .map(|r| r.age_recipient.clone())
        .or_else(|| config.host_recipient(host.as_str()))
        .ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let policy = enroll::policy(&fleet, fleet.config.admins(&fleet.root)?.to_vec(), Fleet::host_file_overrides(record.as_slice()));
    let edit = config.remove_host(host.as_str(), &policy).map_err(|e| Error::SopsRules { path: config_path.clone(), source: e })?;
    // The edit hands over its own parse of the result; the original is freed aside.
    let new_config = edit.config().clone();
    crate::parallel::drop_aside(config);

    let readable = match early {
        Some((r, readable)) if r == recipient => readable.get()?,
        _ => rekey::openable_in(&fleet.root, &rekey::discover(&fleet)?, &recipient),
    };
    let ids = Identities::for_fleet(&fleet);
    let mut native: Vec<(String, String)> = Vec::new();
    let mut external: Vec<String> = Vec::new();
    let mut secrets = Vec::new();
    for rekey::Openable { rel, text, file } in &readable {
        let path = fleet.root.join(rel);
        secrets.push(Exposed { file: rel.clone(), keys: leaf_paths(file.raw_documents()) });
        if *rel == host_rel {
            continue;
        }
        let target = target_without(&new_config, rel, file, &recipient, &config_path)?;
        match rekey::plan_parsed(&path, text, file, &target, &ids, true)? {
            FilePlan::Native { text, .. } => native.push((rel.clone(), text)),
            FilePlan::External { .. } => external.push(rel.clone()),
            FilePlan::Unchanged => {}
        }
    }
    let host_files: Vec<String> =
        [host_rel.clone(), fleet.record_rel(host.as_str())].into_iter().filter(|rel| fleet.root.join(rel).exists()).collect();
    let (removed, kept) = if args.keep_files { (Vec::new(), host_files) } else { (host_files, Vec::new()) };
    let mut deploy: Vec<DeployKeyToRemove> = Vec::new();
    if let Some(r) = &record {
        let pending = deploy_keys::pending(r);
        for (repo, public) in r.deploy_keys.iter().chain(pending.iter()) {
            deploy.push(DeployKeyToRemove {
                repo: repo.clone(),
                title: deploy_keys::title(host.as_str(), repo),
                fingerprint: deploy_keys::fingerprint_of(public),
            });
        }
    }
    let mut report = Report {
        host: host.to_string(),
        age_recipient: recipient,
        sops_config_changes: edit.changes.iter().map(ToString::to_string).collect(),
        rekeyed: native.iter().map(|(rel, _)| rel.clone()).chain(external.iter().cloned()).collect(),
        removed,
        kept,
        secrets_to_rotate: secrets,
        deploy_keys_to_remove: deploy,
        dry_run: args.dry_run,
        failed: Vec::new(),
    };
    print_plan(&report, ctx);
    if args.dry_run {
        ctx.out.json(&report);
        return Ok(());
    }
    confirm(host.as_str(), args.yes)?;

    for (rel, text) in &native {
        rekey::write_keeping_mode(&fleet.root.join(rel), text)?;
    }
    if edit.text != config_text {
        lock.replace_sops_config(&fleet, edit.text.as_bytes())?;
    }
    for rel in &external {
        if let Err(e) = rekey::run_external(&fleet, rel, true) {
            ctx.out.note(format!("error: `{rel}`: {e}"));
            report.failed.push(rel.clone());
        }
    }
    if !args.keep_files {
        // The host file before the record: see the module docs.
        for rel in &report.removed {
            remove_durably(&fleet.root.join(rel))?;
        }
    }
    ctx.out.json(&report);
    ctx.out.line(format!("deleted {host}: it can no longer open any file of the fleet"));
    if report.failed.is_empty() {
        Ok(())
    } else {
        ctx.out.line(format!("re-key these with `hostsmith sops rekey --rotate-data-key`: {}", report.failed.join(", ")));
        Err(Error::Problems { count: report.failed.len() })
    }
}

/// The recipients `rel` keeps: its rule's after the edit, or (no rule) its own minus the host.
fn target_without(config: &SopsConfig, rel: &str, file: &EncryptedFile, recipient: &str, config_path: &Path) -> Result<Target> {
    let target = match Target::from_rule(config, rel) {
        Some(t) => t,
        None if file.needs_external_sops() => {
            return Err(Error::SopsConfig {
                path: config_path.to_path_buf(),
                message: format!(
                    "no creation rule matches `{rel}`, which only real sops can re-key: remove the host from it by hand (`sops rotate -i --rm-age {recipient} {rel}`)"
                ),
            });
        }
        None => {
            let mut keys = file.key_groups();
            for g in &mut keys.groups {
                g.age.retain(|r| r != recipient);
            }
            Target { keys, external: false, post_quantum: false }
        }
    };
    if target.age_groups().iter().flatten().any(|r| r == recipient) {
        return Err(Error::SopsConfig {
            path: config_path.to_path_buf(),
            message: format!(
                "the rule for `{rel}` still includes the host's recipient after the edit (written somewhere hostsmith cannot remove it): remove it by hand"
            ),
        });
    }
    Ok(target)
}

fn print_plan(r: &Report, ctx: &Context) {
    let out = &ctx.out;
    let verb = |now: &str, later: &str| if r.dry_run { later.to_string() } else { now.to_string() };
    out.line(format!("delete {} ({})", r.host, r.age_recipient));
    for c in &r.sops_config_changes {
        out.line(format!(".sops.yaml: {c}"));
    }
    for f in &r.rekeyed {
        out.line(format!("{} {f} with a fresh data key, without {}", verb("re-keys", "would re-key"), r.host));
    }
    for f in &r.removed {
        out.line(format!("{} {f}", verb("removes", "would remove")));
    }
    for f in &r.kept {
        out.line(format!("keeps {f} (--keep-files; `hostsmith vm-fresh {}` would grant the host again)", r.host));
    }
    if !r.secrets_to_rotate.is_empty() {
        out.line(format!("secrets {} could read; rotate them, it may have kept copies:", r.host));
        for e in &r.secrets_to_rotate {
            out.line(format!("  {}: {}", e.file, e.keys.join(", ")));
        }
    }
    if !r.deploy_keys_to_remove.is_empty() {
        out.line("deploy keys to remove from the forge (repository Settings > Deploy keys):");
        for d in &r.deploy_keys_to_remove {
            out.line(format!("  {} ({}, {})", d.title, d.repo, d.fingerprint));
        }
    }
    if r.dry_run {
        out.line("dry run: nothing changed");
    }
}

/// Asks on the terminal unless `--yes`; refuses when there is no terminal to ask on.
fn confirm(host: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!(
            "refusing to delete host `{host}` without confirmation: stdin is not a terminal; pass --yes (see the plan above, or --dry-run)"
        )));
    }
    eprint!("delete host `{host}` and revoke its access? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|source| Error::Read { path: "<stdin>".into(), source })?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(Error::Usage("not confirmed: nothing changed".into()))
    }
}

fn remove_durably(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::Write { path: path.to_path_buf(), source }),
    }
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    }
    Ok(())
}

/// The key paths of every value (`a.b`, `list`), from the stored documents: keys are not
/// encrypted, so this needs no identity.
fn leaf_paths(docs: &[Map]) -> Vec<String> {
    fn walk(map: &Map, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in map.entries() {
            let path = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
            match v {
                Value::Map(m) if !m.is_empty() => walk(m, &path, out),
                _ => out.push(path),
            }
        }
    }
    let mut out = Vec::new();
    for d in docs {
        walk(d, "", &mut out);
    }
    out.dedup();
    out
}
