//! Planning an enrolment in memory: each host's key, document and record; the one edit of
//! `.sops.yaml` for the whole run; the encrypted host files and re-keyed shared files.
//! Nothing here writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Action, HostOutcome, KeySource, Options, Request, outcome};
use crate::admin_identity::Identities;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::gnupg::GnuPg;
use crate::host_file::{DEPLOY_KEYS_FIELD, HOST_KEY_FIELD, set_secret, stored_deploy_key, stored_host_key};
use crate::host_name::HostName;
use crate::journal::Journal;
use crate::record::{self, HostRecord, Origin, RetiredKey};
use crate::rekey::{self, Target};
use crate::sops::file::{Decrypted, EncryptedFile, EncryptionOptions, KeyGroups, Map, SopsFileError};
use crate::sops::rules::{EditPolicy, HostKey, SopsConfig, SopsConfigError};
use crate::ssh_keys::{self, Keypair};

/// One host's planned state.
pub(super) struct Planned {
    pub outcome: HostOutcome,
    pub record: HostRecord,
    /// The host file's new text, when it changes.
    pub host_file_text: Option<String>,
    /// The decrypted document, to be encrypted once the recipients are known.
    document: Option<HostDocument>,
    /// The key was not generated in this run (given, adopted or recovered), so another host
    /// may already hold it.
    key_given: bool,
}

enum HostDocument {
    New(Map),
    Existing { decrypted: Box<Decrypted>, rotate_data_key: bool },
}

impl HostDocument {
    fn documents(&self) -> &[Map] {
        match self {
            HostDocument::New(m) => std::slice::from_ref(m),
            HostDocument::Existing { decrypted, .. } => decrypted.documents(),
        }
    }

    fn map_mut(&mut self) -> &mut Map {
        match self {
            HostDocument::New(m) => m,
            HostDocument::Existing { decrypted, .. } => decrypted.document_mut(),
        }
    }
}

/// The key a host ends up with, and why.
struct Chosen {
    /// The private key, unless only the public half is known (an adopted machine).
    keypair: Option<Keypair>,
    public: ssh_key::PublicKey,
    action: Action,
}

/// Plans one host: a complete host only gets what is missing; any other gets its key
/// (generated, recovered from its host file, or the one given), its deploy keys and a new
/// record.
pub(super) fn host(
    fleet: &Fleet,
    config: &SopsConfig,
    req: Request,
    opts: Options,
    ids: &Identities,
    journal: &Journal,
) -> Result<Planned> {
    let host = req.host;
    let record = fleet.record(&host)?;
    let rel = fleet.host_file_rel(&host, record.as_ref());
    let abs = fleet.confined(&rel)?;
    let explicit_key = matches!(req.source, KeySource::Private(_) | KeySource::Public(_));
    let recover = matches!(req.source, KeySource::Recover);
    if recover && record.is_some() {
        return Err(Error::Usage(format!(
            "host `{host}` has a record: --recover is for a host file without one; run `hostsmith vm-fresh {host}` to complete the host"
        )));
    }
    if let (Some(rec), false, false) = (&record, opts.rotate, explicit_key) {
        return complete_host(fleet, config, &host, rec, rel, &abs, ids);
    }
    // A host file without a record (an interrupted run, or a fleet from elsewhere): reuse its
    // key unless a new one was asked for, and only when its origin is known.
    let existing = if abs.is_file() { Some(ids.decrypt_file(&abs)?) } else { None };
    let found = Found { existing: existing.as_ref(), has_record: record.is_some(), rotate: opts.rotate, rel: &rel, abs: &abs };
    let chosen = choose_key(req.source, &found, &host, journal)?;
    let mut document = match existing {
        Some(d) => HostDocument::Existing { decrypted: Box::new(d), rotate_data_key: chosen.action == Action::Rotated },
        None => HostDocument::New(Map::new()),
    };
    let doc = document.map_mut();
    match &chosen.keypair {
        Some(k) => set_secret(doc, &[HOST_KEY_FIELD], &k.openssh_private()?, &abs)?,
        None => {
            doc.remove_path(&[HOST_KEY_FIELD]);
        }
    }
    let (deploy_keys, added) = fill_deploy_keys(doc, &host, record.as_ref(), &fleet.config.host.deploy_keys, &abs)?;
    let mut new_record = new_record(&host, record.as_ref(), &chosen, explicit_key, deploy_keys)?;
    if recover {
        // Its maker is unknown: hostsmith did not generate it on this machine.
        new_record.origin = Origin::Imported;
    }
    let key_given = explicit_key || chosen.action == Action::Recovered;
    Ok(Planned {
        outcome: outcome(&host, chosen.action, &new_record, rel, added),
        record: new_record,
        host_file_text: None,
        document: Some(document),
        key_given,
    })
}

/// A host with a record and its host file: add what is missing (deploy keys, `.sops.yaml`
/// entries), no more.
fn complete_host(
    fleet: &Fleet,
    config: &SopsConfig,
    host: &HostName,
    rec: &HostRecord,
    rel: String,
    abs: &Path,
    ids: &Identities,
) -> Result<Planned> {
    if !abs.is_file() {
        return Err(Error::Inconsistent {
            host: host.to_string(),
            message: format!(
                "the record exists but `{rel}` is missing: restore it from version control, or run `hostsmith vm-fresh --rotate {host}` to give the host a new key"
            ),
        });
    }
    let text = std::fs::read_to_string(abs).map_err(|source| Error::Read { path: abs.to_path_buf(), source })?;
    let stored = EncryptedFile::parse(&text).map_err(|e| Error::SopsEngine { path: abs.to_path_buf(), source: e })?;
    if !stored.age_recipients().iter().flatten().any(|r| r == &rec.age_recipient) {
        return Err(Error::Inconsistent {
            host: host.to_string(),
            message: format!(
                "`{rel}` is not encrypted for the host's recorded key ({}): a rotation was interrupted after the host file was written, or the file was replaced; run `hostsmith keys rotate {host}` to give the host a fresh key",
                rec.age_recipient
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
    let missing: Vec<&String> = fleet.config.host.deploy_keys.iter().filter(|r| !rec.deploy_keys.contains_key(*r)).collect();
    let mut record = rec.clone();
    let mut document = None;
    let mut added = Vec::new();
    if !missing.is_empty() {
        let mut decrypted = ids.decrypt_file(abs)?;
        for repo in missing {
            let key = new_deploy_key(decrypted.document_mut(), host, repo, abs)?;
            record.deploy_keys.insert(repo.clone(), key.public_line());
            added.push(repo.clone());
        }
        document = Some(HostDocument::Existing { decrypted: Box::new(decrypted), rotate_data_key: false });
    }
    let action = if added.is_empty() && config.host_recipient(host.as_str()).is_some() { Action::Unchanged } else { Action::Updated };
    Ok(Planned { outcome: outcome(host, action, &record, rel, added), record, host_file_text: None, document, key_given: false })
}

/// What is already on disk for a host that is not simply complete.
struct Found<'a> {
    existing: Option<&'a Decrypted>,
    has_record: bool,
    rotate: bool,
    rel: &'a str,
    abs: &'a Path,
}

/// The key for a host that is not simply complete: the one given, the one its host file
/// holds (a recovery, when the journal or the user vouches for it), or a new one.
fn choose_key(source: KeySource, found: &Found<'_>, host: &HostName, journal: &Journal) -> Result<Chosen> {
    // With a record, any new key is a rotation.
    let replacing = |fresh: Action| if found.has_record { Action::Rotated } else { fresh };
    let recover = matches!(source, KeySource::Recover);
    Ok(match source {
        KeySource::Private(k) => Chosen { public: k.public().clone(), keypair: Some(*k), action: replacing(Action::Imported) },
        KeySource::Public(public) => Chosen { keypair: None, public, action: replacing(Action::Adopted) },
        KeySource::Generate | KeySource::Recover => {
            let stored = match (found.existing, found.rotate) {
                (Some(d), false) => stored_host_key(d.document(), found.abs)?,
                _ => None,
            };
            match stored {
                Some(k) if recover || journal.wrote(host.as_str(), &k.fingerprint()) => {
                    Chosen { public: k.public().clone(), keypair: Some(k), action: Action::Recovered }
                }
                Some(_) => return Err(orphan(host, found.rel)),
                None if recover => {
                    return Err(Error::Usage(format!(
                        "host `{host}`: there is no key to recover: `{}` {}",
                        found.rel,
                        if found.existing.is_some() { "holds no host key" } else { "does not exist" }
                    )));
                }
                None => {
                    let k = Keypair::generate(&format!("root@{host}"))?;
                    Chosen { public: k.public().clone(), keypair: Some(k), action: replacing(Action::Created) }
                }
            }
        }
    })
}

/// A host file without a record that this machine did not write.
fn orphan(host: &HostName, rel: &str) -> Error {
    Error::Usage(format!(
        "`{rel}` exists, but host `{host}` has no record and this machine did not write that file (an interrupted run here would have noted it); \
         anyone who can write to the fleet can make such a file, so its key is not used: if you know where the file comes from, run \
         `hostsmith vm-fresh --recover {host}`; otherwise remove it, or run `hostsmith vm-fresh --rotate {host}` to give `{host}` a new key"
    ))
}

/// Refuses a run that would give a host a key another host already holds (a copied host
/// file, or another host's key imported or adopted): the two would share one identity, and
/// either could read the other's secrets.
pub(super) fn refuse_shared_keys(fleet: &Fleet, planned: &[Planned]) -> Result<()> {
    if !planned.iter().any(|p| p.key_given) {
        return Ok(());
    }
    let mut holders: BTreeMap<String, String> = fleet.records()?.into_iter().map(|r| (r.fingerprint, r.name)).collect();
    for p in planned {
        let o = &p.outcome;
        if let Some(other) = holders.get(&o.fingerprint).filter(|other| **other != o.name) {
            let why = if o.action == Action::Recovered {
                format!("`{}` holds host `{other}`'s key ({}): it is a copy of that host's file", o.host_file, o.fingerprint)
            } else {
                format!("the key {} is already host `{other}`'s", o.fingerprint)
            };
            return Err(Error::Usage(format!(
                "host `{}`: {why}; a host key belongs to one host, so give `{}` its own key (`hostsmith vm-fresh --rotate {}`)",
                o.name, o.name, o.name
            )));
        }
        holders.insert(o.fingerprint.clone(), o.name.clone());
    }
    Ok(())
}

/// Every wanted deploy key: the stored one, or a new one written into `doc`. Returns the
/// public lines by repository and the repositories that got a new key.
fn fill_deploy_keys(
    doc: &mut Map,
    host: &HostName,
    record: Option<&HostRecord>,
    wanted: &[String],
    abs: &Path,
) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    let mut keys = record.map(|r| r.deploy_keys.clone()).unwrap_or_default();
    let mut added = Vec::new();
    for repo in wanted {
        let key = match stored_deploy_key(doc, repo, abs)? {
            Some(k) => k,
            None => {
                added.push(repo.clone());
                new_deploy_key(doc, host, repo, abs)?
            }
        };
        keys.insert(repo.clone(), key.public_line());
    }
    Ok((keys, added))
}

fn new_deploy_key(doc: &mut Map, host: &HostName, repo: &str, abs: &Path) -> Result<Keypair> {
    let key = Keypair::generate(&format!("{host}-{repo}-deploy"))?;
    set_secret(doc, &[DEPLOY_KEYS_FIELD, repo], &key.openssh_private()?, abs)?;
    Ok(key)
}

/// The host's new record: the chosen key, the old record's history and placement kept.
fn new_record(
    host: &HostName,
    old: Option<&HostRecord>,
    chosen: &Chosen,
    explicit_key: bool,
    deploy_keys: BTreeMap<String, String>,
) -> Result<HostRecord> {
    let now = record::now();
    let fingerprint = ssh_keys::fingerprint(&chosen.public);
    let mut history = old.map(|r| r.history.clone()).unwrap_or_default();
    if let Some(old) = old
        && old.fingerprint != fingerprint
    {
        history.push(RetiredKey {
            fingerprint: old.fingerprint.clone(),
            age_recipient: old.age_recipient.clone(),
            retired_at: now.clone(),
        });
    }
    let rotated = chosen.action == Action::Rotated;
    Ok(HostRecord {
        schema: record::SCHEMA,
        name: host.to_string(),
        ssh_host_ed25519_public: ssh_keys::public_line(&chosen.public),
        fingerprint,
        age_recipient: ssh_keys::recipient_of(&chosen.public)?,
        deploy_keys,
        created_at: old.map_or_else(|| now.clone(), |r| r.created_at.clone()),
        rotated_at: if rotated { Some(now.clone()) } else { old.and_then(|r| r.rotated_at.clone()) },
        origin: origin(chosen.action, explicit_key, chosen.keypair.is_some(), old),
        history,
        addresses: old.map(|r| r.addresses.clone()).unwrap_or_default(),
        vm_id: old.and_then(|r| r.vm_id),
        proxmox_node: old.and_then(|r| r.proxmox_node.clone()),
        sops_file: old.and_then(|r| r.sops_file.clone()),
        extra: old.map(|r| r.extra.clone()).unwrap_or_default(),
    })
}

/// Where the key now in use came from: a rotation changes it, a recovery does not.
fn origin(action: Action, explicit_key: bool, has_private: bool, old: Option<&HostRecord>) -> Origin {
    match (action, explicit_key, has_private) {
        (Action::Adopted, ..) | (Action::Rotated, true, false) => Origin::Adopted,
        (Action::Imported, ..) | (Action::Rotated, true, true) => Origin::Imported,
        (Action::Rotated | Action::Created, false, _) => Origin::Generated,
        _ => old.map_or(Origin::Generated, |r| r.origin),
    }
}

/// One edit of `.sops.yaml` for every host of the run: rotated hosts' anchors replaced,
/// then every host added. Returns the new `.sops.yaml`, parsed, and the changes in words.
pub(super) fn edit_sops_config(
    fleet: &Fleet,
    config: &SopsConfig,
    planned: &[Planned],
    policy: &EditPolicy,
) -> Result<(SopsConfig, Vec<String>)> {
    let err = |e: SopsConfigError| Error::SopsRules { path: fleet.sops_config_path(), source: e };
    let mut base = config.clone();
    let mut changes = Vec::new();
    for p in planned.iter().filter(|p| p.outcome.action == Action::Rotated) {
        let edit = base.replace_host_recipient(&p.outcome.name, &p.outcome.age_recipient).map_err(err)?;
        changes.extend(edit.changes.iter().map(ToString::to_string));
        base = edit.config().clone();
    }
    let keys: Vec<HostKey> =
        planned.iter().map(|p| HostKey { name: p.outcome.name.clone(), recipient: p.outcome.age_recipient.clone() }).collect();
    let edit = base.add_hosts(&keys, policy).map_err(err)?;
    changes.extend(edit.changes.iter().map(ToString::to_string));
    Ok((edit.config().clone(), changes))
}

/// Encrypts each planned host document for the recipients of its rule in the edited
/// `config`, advancing `bar` once per file.
/// The files are encrypted on every core (each is a few X25519 wraps); the first failure in
/// the order of `planned` is the one reported.
pub(super) fn encrypt_host_files(fleet: &Fleet, config: &SopsConfig, planned: &mut [Planned], bar: &indicatif::ProgressBar) -> Result<()> {
    let targets = host_file_targets(config, planned);
    let jobs: Vec<_> = planned.iter_mut().zip(targets).filter_map(|(p, target)| Some((p.document.take()?, target, p))).collect();
    let results = crate::parallel::map_into(jobs, crate::parallel::cores(), |(doc, target, p)| {
        let by_sops = target.as_ref().is_some_and(|t| t.post_quantum);
        let text = checked_groups(fleet, &p.outcome, target).and_then(|keys| {
            bar.inc(1);
            if by_sops {
                rekey::encrypt_by_sops(fleet, config.text(), &p.outcome.host_file, doc.documents())
            } else {
                encrypt(fleet, &p.outcome.host_file, doc, &keys)
            }
        });
        (p, text)
    });
    for (p, text) in results {
        p.host_file_text = Some(text?);
    }
    Ok(())
}

/// The rule's keys for each planned host file, the rules read once for all of them: a run
/// that adds a thousand hosts looks up a thousand files.
fn host_file_targets(config: &SopsConfig, planned: &[Planned]) -> Vec<Option<Target>> {
    let files: Vec<&str> = planned.iter().map(|p| p.outcome.host_file.as_str()).collect();
    config.rules_for_each(&files).into_iter().map(|r| r.map(Target::of)).collect()
}

/// The key groups sops will use for a host's file, which must include the host itself and
/// nothing but age and PGP keys.
fn checked_groups(fleet: &Fleet, outcome: &HostOutcome, target: Option<Target>) -> Result<KeyGroups> {
    let rel = &outcome.host_file;
    let bad = |message: String| Error::SopsConfig { path: fleet.sops_config_path(), message };
    let target =
        target.ok_or_else(|| bad(format!("no creation rule matches `{rel}` after the edit; check `sops.host_file` in hostsmith.toml")))?;
    if target.external && !target.post_quantum {
        return Err(bad(format!(
            "the rule sops uses for `{rel}` has KMS or Vault keys, which hostsmith cannot encrypt for: give host files a rule with age and PGP keys only"
        )));
    }
    let groups = target.keys;
    if !groups.groups.iter().flat_map(|g| &g.age).any(|r| r == &outcome.age_recipient) {
        return Err(bad(format!(
            "the rule sops uses for `{rel}` does not include host `{}`: an earlier rule matches it; run `hostsmith sops check`",
            outcome.name
        )));
    }
    Ok(groups)
}

fn encrypt(fleet: &Fleet, rel: &str, doc: HostDocument, keys: &KeyGroups) -> Result<String> {
    let err = |e: SopsFileError| Error::SopsEngine { path: fleet.root.join(rel), source: e };
    match doc {
        HostDocument::New(map) => {
            crate::sops::file::encrypt_new_for(&map, keys, &EncryptionOptions::default(), &GnuPg::default()).map_err(err)
        }
        HostDocument::Existing { mut decrypted, rotate_data_key } => {
            decrypted.set_key_groups(keys).map_err(err)?;
            if rotate_data_key {
                decrypted.rotate_data_key();
            }
            decrypted.encrypt_with(&GnuPg::default()).map_err(err)
        }
    }
}

/// The fleet's shared files as read and parsed (at 10,000 hosts each is 7 MB): started before
/// `.sops.yaml` is read and edited, on another thread, and used by [`shared_files`].
pub(super) type SharedReads = crate::parallel::Later<Vec<PathBuf>, Vec<SharedRead>>;

/// A shared file: `None` when it does not exist (yet).
pub(super) type SharedRead = Result<Option<(String, EncryptedFile)>>;

/// Starts reading the shared files of `fleet`.
pub(super) fn read_shared(fleet: &Fleet) -> Result<SharedReads> {
    let paths = fleet.config.sops.shared.iter().map(|rel| fleet.confined(rel)).collect::<Result<Vec<_>>>()?;
    Ok(crate::parallel::Later::spawn(paths, |paths| {
        let read = |abs: &PathBuf| -> SharedRead {
            if !abs.is_file() {
                return Ok(None);
            }
            let text = std::fs::read_to_string(abs).map_err(|source| Error::Read { path: abs.clone(), source })?;
            let file = EncryptedFile::parse(&text).map_err(|source| Error::SopsEngine { path: abs.clone(), source })?;
            Ok(Some((text, file)))
        };
        paths.iter().map(read).collect()
    }))
}

/// Re-keys the shared files that exist and whose recipients the edit changed (all of them,
/// with a fresh data key, when a host was rotated). Returns `(relative path, new text)`.
pub(super) fn shared_files(
    fleet: &Fleet,
    config: &SopsConfig,
    reads: SharedReads,
    rotate: bool,
    ids: &Identities,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (rel, read) in fleet.config.sops.shared.iter().zip(reads.get()) {
        let abs = fleet.confined(rel)?;
        let Some(target) = Target::from_rule(config, rel) else { continue };
        let Some((text, file)) = read? else { continue };
        let err = |e: SopsFileError| Error::SopsEngine { path: abs.clone(), source: e };
        if !rotate && file.has_key_groups(&target.keys) {
            continue;
        }
        if target.post_quantum && !file.needs_external_sops() {
            let decrypted = ids.decrypt(&file, &abs)?;
            out.push((rel.clone(), rekey::encrypt_by_sops(fleet, config.text(), rel, decrypted.documents())?));
            continue;
        }
        if target.external || file.needs_external_sops() {
            return Err(Error::SopsFile {
                path: abs.clone(),
                message:
                    "its key groups use a cloud KMS or Vault, which hostsmith does not re-key natively: run `sops updatekeys -y` on it"
                        .into(),
            });
        }
        let mut decrypted = ids.decrypt(&file, &abs)?;
        decrypted.set_key_groups(&target.keys).map_err(err)?;
        if rotate {
            decrypted.rotate_data_key();
        }
        out.push((rel.clone(), decrypted.encrypt_in_place(&file, &text, &GnuPg::default()).map_err(err)?));
        // Ciphertext only (the decrypted values and the data key are zeroized here).
        crate::parallel::drop_aside((text, file));
    }
    Ok(out)
}
