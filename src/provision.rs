//! Giving hosts an identity: the work behind `vm-fresh`, `adopt` and `keys import`.
//!
//! A run is planned completely in memory first (keys, the edited `.sops.yaml`, every
//! encrypted file, every record), then written file by file, each write atomic. The
//! order makes a crash at any point recoverable by running again:
//! 1. `sops/<host>.yaml` (the only place the private key lives),
//! 2. the shared files, re-keyed for the new recipients,
//! 3. `.sops.yaml`,
//! 4. `hosts/<host>.json`, the record, last: a host is complete once its record exists.
//!
//! A re-run that finds a host file without a record takes the key from that file instead
//! of generating a new one, so keys are never silently replaced; `--rotate` is the only way
//! to replace one.

use std::collections::BTreeSet;
use std::path::PathBuf;

use age::x25519::Identity;
use zeroize::Zeroizing;

use crate::atomic;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::record::{self, HostRecord, RetiredKey};
use crate::sops;
use crate::sops::file::{EncryptedFile, EncryptionOptions, Map, Value};
use crate::sops::rules::{EditPolicy, HostKey, SopsConfig};
use crate::ssh_keys::{self, Keypair};

/// The key under which the host's private key is stored in its SOPS file.
pub const HOST_KEY_FIELD: &str = "ssh_host_ed25519_key";
/// The map of deploy keys in the host's SOPS file.
pub const DEPLOY_KEYS_FIELD: &str = "deploy-keys";

/// Where a host's key comes from.
pub enum KeySource {
    /// Generate one (or reuse the one already stored for the host).
    Generate,
    /// An existing machine: only its public key is known.
    Public(ssh_key::PublicKey),
    /// An existing private key to adopt.
    Private(Box<Keypair>),
}

pub struct Request {
    pub host: HostName,
    pub source: KeySource,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Replace existing keys.
    pub rotate: bool,
    /// Plan only; write nothing.
    pub dry_run: bool,
}

/// What happened to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
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
pub struct HostOutcome {
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
pub struct Report {
    pub hosts: Vec<HostOutcome>,
    /// `.sops.yaml` changes, in words.
    pub sops_config_changes: Vec<String>,
    /// Files written (or, in a dry run, that would be), relative to the fleet.
    pub files: Vec<String>,
    pub dry_run: bool,
}

/// One host's planned state.
struct Planned {
    outcome: HostOutcome,
    record: HostRecord,
    /// The host file's new text, when it changes.
    host_file_text: Option<String>,
    /// The decrypted document, to be encrypted once the recipients are known.
    document: Option<HostDocument>,
}

enum HostDocument {
    New(Map),
    Existing { decrypted: Box<sops::file::Decrypted>, rotate_data_key: bool },
}

/// Gives each requested host an identity (see the module docs for the order of writes).
///
/// # Errors
/// Anything that stops the run; nothing has been written when planning fails.
pub fn run(fleet: &Fleet, requests: Vec<Request>, opts: Options) -> Result<Report> {
    run_with_progress(fleet, requests, opts, &indicatif::ProgressBar::hidden())
}

/// [`run`], advancing `bar` by one for every host planned and every host file encrypted
/// (its length should be twice the number of requests).
///
/// # Errors
/// See [`run`].
pub fn run_with_progress(fleet: &Fleet, requests: Vec<Request>, opts: Options, bar: &indicatif::ProgressBar) -> Result<Report> {
    let mut lock = fleet.lock()?;
    let config_path = fleet.sops_config_path();
    let config_text = fleet.read_sops_config()?;
    let config = SopsConfig::parse(&config_text).map_err(|e| Error::SopsConfig { path: config_path.clone(), message: e.to_string() })?;
    let admins = fleet.config.admins(&fleet.root)?.to_vec();
    let policy = policy(fleet, admins);
    let mut identities = Identities::for_fleet(fleet);

    let mut planned = Vec::new();
    for req in requests {
        planned.push(plan_host(fleet, &config, req, opts, &mut identities)?);
        bar.inc(1);
    }

    // One edit of `.sops.yaml` for every host of the run.
    let mut edited = config_text.clone();
    let mut changes = Vec::new();
    for p in planned.iter().filter(|p| p.outcome.action == Action::Rotated) {
        let cfg = parse_config(&edited, &config_path)?;
        let edit = cfg
            .replace_host_recipient(&p.outcome.name, &p.outcome.age_recipient)
            .map_err(|e| Error::SopsConfig { path: config_path.clone(), message: e.to_string() })?;
        edited = edit.text;
        changes.extend(edit.changes.iter().map(ToString::to_string));
    }
    let keys: Vec<HostKey> =
        planned.iter().map(|p| HostKey { name: p.outcome.name.clone(), recipient: p.outcome.age_recipient.clone() }).collect();
    let reparsed;
    let base = if edited == config_text {
        &config
    } else {
        reparsed = parse_config(&edited, &config_path)?;
        &reparsed
    };
    let edit = base.add_hosts(&keys, &policy).map_err(|e| Error::SopsConfig { path: config_path.clone(), message: e.to_string() })?;
    edited = edit.text;
    changes.extend(edit.changes.iter().map(ToString::to_string));
    let new_config = parse_config(&edited, &config_path)?;

    // Encrypt host files for the recipients of their (possibly new) rules.
    let host_files: Vec<&str> = planned.iter().map(|p| p.outcome.host_file.as_str()).collect();
    let mut recipients = new_config.recipients_for_each(&host_files).into_iter();
    for p in &mut planned {
        let groups = recipients.next().flatten();
        if let Some(doc) = p.document.take() {
            let rel = p.outcome.host_file.clone();
            let groups = groups.ok_or_else(|| Error::SopsConfig {
                path: config_path.clone(),
                message: format!("no creation rule matches `{rel}` after the edit; check `sops.host_dir` in hostsmith.toml"),
            })?;
            if !groups.iter().flatten().any(|r| r == &p.outcome.age_recipient) {
                return Err(Error::SopsConfig {
                    path: config_path.clone(),
                    message: format!(
                        "the rule sops uses for `{rel}` does not include host `{}`: an earlier rule matches it; run `hostsmith sops check`",
                        p.outcome.name
                    ),
                });
            }
            let abs = fleet.root.join(&rel);
            let err = |e: sops::file::SopsFileError| Error::SopsFile { path: abs.clone(), message: e.to_string() };
            bar.inc(1);
            p.host_file_text = Some(match doc {
                HostDocument::New(map) => sops::file::encrypt_new(&map, &groups, &EncryptionOptions::default()).map_err(err)?,
                HostDocument::Existing { mut decrypted, rotate_data_key } => {
                    decrypted.set_age_recipients(groups).map_err(err)?;
                    if rotate_data_key {
                        decrypted.rotate_data_key();
                    }
                    decrypted.encrypt().map_err(err)?
                }
            });
        }
    }

    let rotated_any = planned.iter().any(|p| p.outcome.action == Action::Rotated);
    let shared = plan_shared(fleet, &new_config, rotated_any, &mut identities)?;

    let mut files = Vec::new();
    for p in &planned {
        if let Some(text) = &p.host_file_text {
            files.push(p.outcome.host_file.clone());
            if !opts.dry_run {
                let path = fleet.root.join(&p.outcome.host_file);
                if let Some(dir) = path.parent() {
                    atomic::create_dir(dir, 0o755)?;
                }
                atomic::write(&path, text.as_bytes(), 0o644)?;
            }
        }
    }
    for (rel, text) in &shared {
        files.push(rel.clone());
        if !opts.dry_run {
            atomic::write(&fleet.root.join(rel), text.as_bytes(), 0o644)?;
        }
    }
    if edited != config_text {
        files.push(crate::fleet::SOPS_CONFIG.to_string());
        if !opts.dry_run {
            lock.replace_sops_config(fleet, edited.as_bytes())?;
        }
    }
    for p in &planned {
        let json = p.record.to_json();
        let path = fleet.record_path(&HostName::parse(&p.record.name)?);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(json.as_str()) {
            files.push(format!("hosts/{}.json", p.record.name));
            if !opts.dry_run {
                atomic::create_dir(&fleet.records_dir(), 0o755)?;
                atomic::write(&path, json.as_bytes(), 0o644)?;
            }
        }
    }
    Ok(Report { hosts: planned.into_iter().map(|p| p.outcome).collect(), sops_config_changes: changes, files, dry_run: opts.dry_run })
}

fn parse_config(text: &str, path: &std::path::Path) -> Result<SopsConfig> {
    SopsConfig::parse(text).map_err(|e| Error::SopsConfig { path: path.to_path_buf(), message: e.to_string() })
}

/// The `.sops.yaml` edit policy from the fleet configuration.
#[must_use]
pub fn policy(fleet: &Fleet, admins: Vec<String>) -> EditPolicy {
    let s = &fleet.config.sops;
    EditPolicy {
        host_dir: s.host_dir.trim_end_matches('/').to_string(),
        admins,
        shared: s.shared.clone(),
        exclude_from_shared: s.exclude_from_shared.clone(),
        hosts_group: s.hosts_group.clone(),
    }
}

/// Admin identities, loaded the first time a file must be decrypted.
#[derive(Default)]
pub struct Identities(Option<Vec<Identity>>);

impl Identities {
    /// # Errors
    /// [`Error::NoIdentity`] when none is configured.
    pub fn get(&mut self) -> Result<&[Identity]> {
        if self.0.is_none() {
            self.0 = Some(crate::identity::require()?);
        }
        Ok(self.0.as_deref().unwrap_or_default())
    }
}

/// Reads and decrypts a SOPS file with the admin identities.
///
/// # Errors
/// Read, parse, or decryption errors naming the file.
pub fn decrypt_file(path: &std::path::Path, identities: &mut Identities) -> Result<sops::file::Decrypted> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let err = |e: sops::file::SopsFileError| Error::SopsFile { path: path.to_path_buf(), message: e.to_string() };
    let file = EncryptedFile::parse(&text).map_err(err)?;
    file.decrypt(identities.get()?).map_err(err)
}

fn plan_host(fleet: &Fleet, config: &SopsConfig, req: Request, opts: Options, ids: &mut Identities) -> Result<Planned> {
    let host = req.host;
    let rel = fleet.host_file_rel(&host);
    let abs = fleet.root.join(&rel);
    let record = fleet.record(&host)?;
    let file_exists = abs.is_file();
    let wanted = &fleet.config.host.deploy_keys;
    let now = record::now();

    let explicit_key = !matches!(req.source, KeySource::Generate);
    if let (Some(rec), false, false) = (&record, opts.rotate, explicit_key) {
        // A complete host: add what is missing (deploy keys, `.sops.yaml` entries), no more.
        if !file_exists {
            return Err(Error::Inconsistent {
                host: host.to_string(),
                message: format!(
                    "the record exists but `{rel}` is missing: restore it from version control, or run `hostsmith vm-fresh --rotate {host}` to give the host a new key"
                ),
            });
        }
        if let Some(anchor) = config.host_recipient(host.as_str())
            && anchor != rec.age_recipient
        {
            return Err(Error::Inconsistent {
                host: host.to_string(),
                message: format!(
                    "`.sops.yaml` has recipient {anchor} for it but the record says {}: restore one of them, or run `hostsmith vm-fresh --rotate {host}`",
                    rec.age_recipient
                ),
            });
        }
        let missing: Vec<&String> = wanted.iter().filter(|r| !rec.deploy_keys.contains_key(*r)).collect();
        let mut record = rec.clone();
        let mut document = None;
        let mut added = Vec::new();
        if !missing.is_empty() {
            let mut decrypted = decrypt_file(&abs, ids)?;
            for repo in missing {
                let key = Keypair::generate(&format!("{host}-{repo}-deploy"))?;
                set_secret(decrypted.document_mut(), &[DEPLOY_KEYS_FIELD, repo], &key.openssh_private()?, &abs)?;
                record.deploy_keys.insert(repo.clone(), key.public_line());
                added.push(repo.clone());
            }
            document = Some(HostDocument::Existing { decrypted: Box::new(decrypted), rotate_data_key: false });
        }
        let action = if added.is_empty() && config.host_recipient(host.as_str()).is_some() { Action::Unchanged } else { Action::Updated };
        return Ok(Planned { outcome: outcome(&host, action, &record, rel, added), record, host_file_text: None, document });
    }

    // A host file without a record (an interrupted run, or a fleet from elsewhere): reuse its
    // key unless a new one was asked for.
    let mut existing = if file_exists { Some(decrypt_file(&abs, ids)?) } else { None };
    let (keypair, public, action) = match req.source {
        KeySource::Private(k) => {
            let k = *k;
            let public = k.public().clone();
            (Some(k), public, if record.is_some() { Action::Rotated } else { Action::Imported })
        }
        KeySource::Public(p) => (None, p, if record.is_some() { Action::Rotated } else { Action::Adopted }),
        KeySource::Generate => {
            let stored = match (&existing, opts.rotate) {
                (Some(d), false) => stored_host_key(d.document(), &abs)?,
                _ => None,
            };
            match stored {
                Some(k) => {
                    let public = k.public().clone();
                    (Some(k), public, Action::Recovered)
                }
                None => {
                    let k = Keypair::generate(&format!("root@{host}"))?;
                    let public = k.public().clone();
                    (Some(k), public, if record.is_some() { Action::Rotated } else { Action::Created })
                }
            }
        }
    };
    let recipient = ssh_keys::recipient_of(&public)?;
    let fingerprint = ssh_keys::fingerprint(&public);

    let mut document = match existing.take() {
        Some(d) => HostDocument::Existing { decrypted: Box::new(d), rotate_data_key: action == Action::Rotated },
        None => HostDocument::New(Map::new()),
    };
    let doc_map = match &mut document {
        HostDocument::New(m) => m,
        HostDocument::Existing { decrypted, .. } => decrypted.document_mut(),
    };
    match &keypair {
        Some(k) => set_secret(doc_map, &[HOST_KEY_FIELD], &k.openssh_private()?, &abs)?,
        None => {
            doc_map.remove_path(&[HOST_KEY_FIELD]);
        }
    }
    let mut deploy_keys = record.as_ref().map(|r| r.deploy_keys.clone()).unwrap_or_default();
    let mut added = Vec::new();
    for repo in wanted {
        let stored = stored_deploy_key(doc_map, repo, &abs)?;
        match stored {
            Some(k) => {
                deploy_keys.insert(repo.clone(), k.public_line());
            }
            None => {
                let k = Keypair::generate(&format!("{host}-{repo}-deploy"))?;
                set_secret(doc_map, &[DEPLOY_KEYS_FIELD, repo], &k.openssh_private()?, &abs)?;
                deploy_keys.insert(repo.clone(), k.public_line());
                added.push(repo.clone());
            }
        }
    }

    let mut history = record.as_ref().map(|r| r.history.clone()).unwrap_or_default();
    if let Some(old) = &record
        && old.fingerprint != fingerprint
    {
        history.push(RetiredKey {
            fingerprint: old.fingerprint.clone(),
            age_recipient: old.age_recipient.clone(),
            retired_at: now.clone(),
        });
    }
    let new_record = HostRecord {
        schema: record::SCHEMA,
        name: host.to_string(),
        ssh_host_ed25519_public: ssh_keys::public_line(&public),
        fingerprint,
        age_recipient: recipient,
        deploy_keys,
        created_at: record.as_ref().map_or_else(|| now.clone(), |r| r.created_at.clone()),
        rotated_at: if action == Action::Rotated { Some(now.clone()) } else { record.as_ref().and_then(|r| r.rotated_at.clone()) },
        // Where the key now in use came from: a rotation changes it, a recovery does not.
        origin: match (action, explicit_key, keypair.is_some()) {
            (Action::Adopted, ..) | (Action::Rotated, true, false) => "adopted".into(),
            (Action::Imported, ..) | (Action::Rotated, true, true) => "imported".into(),
            (Action::Rotated | Action::Created, false, _) => "generated".into(),
            _ => record.as_ref().map_or_else(|| "generated".into(), |r| r.origin.clone()),
        },
        history,
        addresses: record.as_ref().map(|r| r.addresses.clone()).unwrap_or_default(),
        vm_id: record.as_ref().and_then(|r| r.vm_id),
        proxmox_node: record.as_ref().and_then(|r| r.proxmox_node.clone()),
        extra: record.as_ref().map(|r| r.extra.clone()).unwrap_or_default(),
    };
    Ok(Planned {
        outcome: outcome(&host, action, &new_record, rel, added),
        record: new_record,
        host_file_text: None,
        document: Some(document),
    })
}

fn outcome(host: &HostName, action: Action, record: &HostRecord, host_file: String, deploy_keys_added: Vec<String>) -> HostOutcome {
    HostOutcome {
        name: host.to_string(),
        action,
        fingerprint: record.fingerprint.clone(),
        age_recipient: record.age_recipient.clone(),
        host_file,
        deploy_keys_added,
    }
}

fn set_secret(doc: &mut Map, path: &[&str], secret: &Zeroizing<String>, file: &std::path::Path) -> Result<()> {
    doc.set_path(path, Value::Str(secret.to_string())).map_err(|e| Error::SopsFile { path: file.to_path_buf(), message: e.to_string() })
}

/// The host key stored in a decrypted host file, if any.
fn stored_host_key(doc: &Map, file: &std::path::Path) -> Result<Option<Keypair>> {
    stored_key(doc, &[HOST_KEY_FIELD], file)
}

fn stored_deploy_key(doc: &Map, repo: &str, file: &std::path::Path) -> Result<Option<Keypair>> {
    stored_key(doc, &[DEPLOY_KEYS_FIELD, repo], file)
}

fn stored_key(doc: &Map, path: &[&str], file: &std::path::Path) -> Result<Option<Keypair>> {
    match doc.get_path(path) {
        Some(Value::Str(s)) => Keypair::from_openssh(s, None).map(Some).map_err(|e| Error::Inconsistent {
            host: file.display().to_string(),
            message: format!("`{}` holds something that is not a usable key: {e}", path.join(".")),
        }),
        _ => Ok(None),
    }
}

/// Re-keys the shared files that exist and whose recipients the edit changed.
fn plan_shared(fleet: &Fleet, config: &SopsConfig, rotate: bool, ids: &mut Identities) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for rel in &fleet.config.sops.shared {
        let abs: PathBuf = fleet.root.join(rel);
        if !abs.is_file() {
            continue;
        }
        let Some(groups) = config.recipients_for(rel) else { continue };
        let text = std::fs::read_to_string(&abs).map_err(|source| Error::Read { path: abs.clone(), source })?;
        let err = |e: sops::file::SopsFileError| Error::SopsFile { path: abs.clone(), message: e.to_string() };
        let file = EncryptedFile::parse(&text).map_err(err)?;
        if !rotate && same_groups(&file.age_recipients(), &groups) {
            continue;
        }
        if file.needs_external_sops() {
            return Err(Error::SopsFile {
                path: abs.clone(),
                message: "its key groups use PGP, a cloud KMS or several groups, which hostsmith does not re-key natively: run `sops updatekeys -y` on it".into(),
            });
        }
        let mut decrypted = file.decrypt(ids.get()?).map_err(err)?;
        decrypted.set_age_recipients(groups).map_err(err)?;
        if rotate {
            decrypted.rotate_data_key();
        }
        out.push((rel.clone(), decrypted.encrypt().map_err(err)?));
    }
    Ok(out)
}

fn same_groups(a: &[Vec<String>], b: &[Vec<String>]) -> bool {
    let norm = |g: &[Vec<String>]| -> Vec<BTreeSet<String>> { g.iter().map(|v| v.iter().cloned().collect()).collect() };
    norm(a) == norm(b)
}

/// The record of `host` and its private host key, decrypted from its SOPS file with the
/// admin identities and checked against the record.
///
/// # Errors
/// Unknown host, a host without a private key (adopted), or a key that differs from the
/// record.
pub fn host_keypair(fleet: &Fleet, host: &HostName, ids: &mut Identities) -> Result<(HostRecord, Keypair)> {
    let record = fleet.record(host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let path = fleet.host_file(host);
    let decrypted = decrypt_file(&path, ids)?;
    let key = stored_host_key(decrypted.document(), &path)?.ok_or_else(|| Error::Inconsistent {
        host: host.to_string(),
        message: format!(
            "`{}` holds no `{HOST_KEY_FIELD}` (an adopted machine keeps its own key): first-boot material needs a key hostsmith holds; use `hostsmith vm-fresh --rotate {host}` or `hostsmith keys import`",
            fleet.host_file_rel(host)
        ),
    })?;
    if key.fingerprint() != record.fingerprint {
        return Err(Error::Inconsistent {
            host: host.to_string(),
            message: format!(
                "the key in `{}` is {} but the record says {}: restore the matching pair from version control",
                fleet.host_file_rel(host),
                key.fingerprint(),
                record.fingerprint
            ),
        });
    }
    Ok((record, key))
}

impl Identities {
    /// The identities a fleet uses: its override, or sops' usual places on first use.
    #[must_use]
    pub fn for_fleet(fleet: &Fleet) -> Self {
        Self(fleet.admin_identities.clone())
    }
}
