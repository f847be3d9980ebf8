//! Deploy keys after their creation: the title a forge shows, the pending key of a rotation,
//! its activation once the forge knows it, and the history of retired keys.
//!
//! Rotating a deploy key must not cut the host off its repository: the forge has to accept
//! the new key before the host uses it. So a rotation stores the new key *next to* the active
//! one (`deploy-keys-pending.<repo>` in the host file, `deploy_keys_pending` in the record);
//! the host keeps deploying `deploy-keys.<repo>` until the new key is registered
//! (`hostsmith deploy-keys --register`, or by hand and then `--activate`). Activation makes
//! it the active key and moves the old public key to `deploy_keys_retired`, to be removed from
//! the forge once the host runs with the new one. Both record fields live in the record's open
//! part ([`HostRecord::extra`]): records may gain fields, and every reader keeps them.
//!
//! How old a deploy key is (for `keys rotate --deploy --older-than`) is read from a third
//! field of that open part, `deploy_keys_activated` (repository → the fingerprint made active
//! and when), written by every activation. Records older than the field fall back to the
//! time the previous key of the repository was retired (the moment this one became active),
//! then to the record's `created_at`; a key added to an existing host by `vm-fresh` is then
//! counted from the host's creation, so it is rotated early rather than late.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::admin_identity::Identities;
use crate::atomic;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_file::DEPLOY_KEYS_FIELD;
use crate::host_name::HostName;
use crate::record::{self, ACTIVATED_RECORD, HostRecord, PENDING_RECORD, RETIRED_RECORD};
use crate::sops::file::Value;
use crate::ssh_keys::{self, Keypair};

/// The map of new, not yet registered deploy keys in the host's SOPS file.
pub const PENDING_FIELD: &str = "deploy-keys-pending";

/// When a deploy key became the active one, as `deploy_keys_activated` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Activated {
    fingerprint: String,
    activated_at: String,
}

/// Where the age of an active deploy key was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Since {
    /// Its activation, recorded in `deploy_keys_activated`.
    Activated,
    /// The retirement of the key it replaced.
    Retired,
    /// The host's `created_at` (a key made with the host, or one whose start is unknown).
    Created,
}

/// When the active key of `repo` started to be used, and where that was read from; `None`
/// when the host has no such key.
#[must_use]
pub fn active_since(record: &HostRecord, repo: &str) -> Option<(String, Since)> {
    let active = record.deploy_keys.get(repo)?;
    let activated: BTreeMap<String, Activated> =
        record.extra.get(ACTIVATED_RECORD).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    if let Some(a) = activated.get(repo)
        && a.fingerprint == fingerprint_of(active)
    {
        return Some((a.activated_at.clone(), Since::Activated));
    }
    if let Some(r) = retired(record).into_iter().rev().find(|r| r.repo == repo) {
        return Some((r.retired_at, Since::Retired));
    }
    Some((record.created_at.clone(), Since::Created))
}

fn set_activated(record: &mut HostRecord, repo: &str, fingerprint: &str, at: &str) {
    let mut all: BTreeMap<String, Activated> =
        record.extra.get(ACTIVATED_RECORD).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    all.insert(repo.to_string(), Activated { fingerprint: fingerprint.to_string(), activated_at: at.to_string() });
    record.extra.insert(ACTIVATED_RECORD.into(), serde_json::json!(all));
}

/// The title of a host's deploy key on the forge (also the key's comment).
#[must_use]
pub fn title(host: &str, repo: &str) -> String {
    format!("{host}-{repo}-deploy")
}

pub use crate::record::RetiredDeployKey;

/// Pending deploy keys of a record: repository → public key line.
#[must_use]
pub fn pending(record: &HostRecord) -> BTreeMap<String, String> {
    record.extra.get(PENDING_RECORD).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
}

fn set_pending(record: &mut HostRecord, pending: &BTreeMap<String, String>) {
    if pending.is_empty() {
        record.extra.remove(PENDING_RECORD);
    } else {
        record.extra.insert(PENDING_RECORD.into(), serde_json::json!(pending));
    }
}

/// The retired deploy keys of a record, oldest first.
#[must_use]
pub fn retired(record: &HostRecord) -> Vec<RetiredDeployKey> {
    record.extra.get(RETIRED_RECORD).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
}

/// The fingerprint of a public key line, or `?` when it does not parse.
#[must_use]
pub fn fingerprint_of(line: &str) -> String {
    ssh_keys::parse_public(line).map_or_else(|_| "?".into(), |k| ssh_keys::fingerprint(&k))
}

/// Checks that `repo` is a deploy key of the host, with an error listing the ones it has.
///
/// # Errors
/// [`Error::Usage`].
pub fn require_repo(record: &HostRecord, repo: &str) -> Result<()> {
    if record.deploy_keys.contains_key(repo) {
        return Ok(());
    }
    let known: Vec<&str> = record.deploy_keys.keys().map(String::as_str).collect();
    Err(Error::Usage(format!(
        "host `{}` has no deploy key `{repo}` (it has: {}); add the repository to `host.deploy_keys` in hostsmith.toml and run `hostsmith vm-fresh {}`",
        record.name,
        if known.is_empty() { "none".to_string() } else { known.join(", ") },
        record.name
    )))
}

/// One new deploy key, pending registration.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    pub repo: String,
    pub title: String,
    pub public: String,
    pub fingerprint: String,
    /// An earlier pending key (never registered) was replaced.
    pub replaced_pending: bool,
}

/// Generates a new key for each of `repos` and stores it as pending: the host file (re-encrypted
/// for its own recipients) first, the record last, under the fleet lock.
///
/// # Errors
/// Unknown host or repository, an unreadable host file, or a failed write.
pub fn rotate(fleet: &Fleet, host: &HostName, repos: &[String], dry_run: bool) -> Result<Vec<Rotation>> {
    let _lock = fleet.lock()?;
    let mut record = fleet.record(host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    for repo in repos {
        require_repo(&record, repo)?;
    }
    let path = fleet.host_file(host, Some(&record));
    let mut decrypted = Identities::for_fleet(fleet).decrypt_file(&path)?;
    let mut pend = pending(&record);
    let mut out = Vec::new();
    for repo in repos {
        let key = Keypair::generate(&title(host.as_str(), repo))?;
        decrypted
            .document_mut()
            .set_path(&[PENDING_FIELD, repo], Value::Str(key.openssh_private()?.to_string()))
            .map_err(|e| Error::SopsEngine { path: path.clone(), source: e })?;
        let replaced_pending = pend.insert(repo.clone(), key.public_line()).is_some();
        out.push(Rotation {
            repo: repo.clone(),
            title: title(host.as_str(), repo),
            public: key.public_line(),
            fingerprint: key.fingerprint(),
            replaced_pending,
        });
    }
    set_pending(&mut record, &pend);
    let text = decrypted.encrypt_with(&crate::gnupg::GnuPg::default()).map_err(|e| Error::SopsEngine { path: path.clone(), source: e })?;
    if !dry_run {
        crate::rekey::write_keeping_mode(&path, &text)?;
        atomic::write(&fleet.record_path(host), record.to_json().as_bytes(), 0o644)?;
    }
    Ok(out)
}

/// A pending key made active.
#[derive(Debug, Clone, Serialize)]
pub struct Activation {
    pub repo: String,
    pub title: String,
    pub fingerprint: String,
    /// The key it replaced, to remove from the forge once the host has the new one.
    pub retired: Option<RetiredDeployKey>,
}

/// Makes the pending key of `repo` the active one (host file, then record, under the lock).
/// `expected`, when given, is the public key that was registered: a key rotated again in the
/// meantime is not activated in its place.
///
/// # Errors
/// No pending key, a host file that disagrees with the record, or a failed write.
#[allow(clippy::too_many_lines, reason = "the activation reads the pending key, re-encrypts and records in one locked pass")]
pub fn activate(fleet: &Fleet, host: &HostName, repo: &str, expected: Option<&str>, dry_run: bool) -> Result<Activation> {
    let _lock = fleet.lock()?;
    let mut record = fleet.record(host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let mut pend = pending(&record);
    if let (Some(want), Some(have)) = (expected, pend.get(repo))
        && want != have
    {
        return Err(Error::Inconsistent {
            host: host.to_string(),
            message: format!(
                "its waiting `{repo}` key changed while it was being registered (another `keys rotate`?): register the new one with `hostsmith deploy-keys {host} --register github --repo OWNER/{repo}`"
            ),
        });
    }
    let new_public = pend.remove(repo).ok_or_else(|| {
        Error::Usage(format!(
            "host `{host}` has no new `{repo}` deploy key waiting: `hostsmith keys rotate {host} --deploy {repo}` makes one"
        ))
    })?;
    let path = fleet.host_file(host, Some(&record));
    let mut decrypted = Identities::for_fleet(fleet).decrypt_file(&path)?;
    let doc = decrypted.document_mut();
    let private = match doc.remove_path(&[PENDING_FIELD, repo]) {
        Some(Value::Str(s)) => zeroize::Zeroizing::new(s),
        _ => {
            return Err(Error::Inconsistent {
                host: host.to_string(),
                message: format!(
                    "its record has a pending `{repo}` key but `{}` does not: run `hostsmith keys rotate {host} --deploy {repo}` again",
                    fleet.host_file_rel(host, Some(&record))
                ),
            });
        }
    };
    let key = Keypair::from_openssh(&private, None)?;
    if key.fingerprint() != fingerprint_of(&new_public) {
        return Err(Error::Inconsistent {
            host: host.to_string(),
            message: format!("the pending `{repo}` key in its file is not the one its record names: restore both from version control"),
        });
    }
    if doc.get(PENDING_FIELD).and_then(Value::as_map).is_some_and(crate::sops::file::Map::is_empty) {
        doc.remove_path(&[PENDING_FIELD]);
    }
    doc.set_path(&[DEPLOY_KEYS_FIELD, repo], Value::Str(private.to_string()))
        .map_err(|e| Error::SopsEngine { path: path.clone(), source: e })?;
    let text = decrypted.encrypt_with(&crate::gnupg::GnuPg::default()).map_err(|e| Error::SopsEngine { path: path.clone(), source: e })?;
    let now = record::now();
    let retired = record.deploy_keys.insert(repo.to_string(), new_public).map(|old| RetiredDeployKey {
        repo: repo.to_string(),
        fingerprint: fingerprint_of(&old),
        public: old,
        retired_at: now.clone(),
    });
    set_pending(&mut record, &pend);
    set_activated(&mut record, repo, &key.fingerprint(), &now);
    if let Some(r) = &retired {
        let mut all = self::retired(&record);
        all.push(r.clone());
        record.extra.insert(RETIRED_RECORD.into(), serde_json::json!(all));
    }
    if !dry_run {
        crate::rekey::write_keeping_mode(&path, &text)?;
        atomic::write(&fleet.record_path(host), record.to_json().as_bytes(), 0o644)?;
    }
    Ok(Activation { repo: repo.to_string(), title: title(host.as_str(), repo), fingerprint: key.fingerprint(), retired })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(extra: &serde_json::Value) -> HostRecord {
        let key = Keypair::generate("k").expect("key").public_line();
        let mut v = serde_json::json!({
            "schema": 1, "name": "web01", "ssh_host_ed25519_public": key, "fingerprint": "f", "age_recipient": "a",
            "deploy_keys": { "nix-config": key }, "created_at": "2026-01-01T00:00:00Z", "rotated_at": null,
        });
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        serde_json::from_value(v).expect("record")
    }

    #[test]
    fn a_key_is_as_old_as_its_activation_then_the_retirement_before_it_then_the_host() {
        let r = record(&serde_json::json!({}));
        assert_eq!(active_since(&r, "nix-config"), Some(("2026-01-01T00:00:00Z".into(), Since::Created)));
        assert_eq!(active_since(&r, "other"), None);
        let retired =
            serde_json::json!([{ "repo": "nix-config", "public": "x", "fingerprint": "y", "retired_at": "2026-03-01T00:00:00Z" }]);
        let r = record(&serde_json::json!({ RETIRED_RECORD: retired }));
        assert_eq!(active_since(&r, "nix-config"), Some(("2026-03-01T00:00:00Z".into(), Since::Retired)));
        let mut r = r;
        let fp = fingerprint_of(&r.deploy_keys["nix-config"]);
        set_activated(&mut r, "nix-config", &fp, "2026-04-01T00:00:00Z");
        assert_eq!(active_since(&r, "nix-config"), Some(("2026-04-01T00:00:00Z".into(), Since::Activated)));
        // An activation recorded for another key (the record was edited since) does not count.
        set_activated(&mut r, "nix-config", "SHA256:other", "2026-05-01T00:00:00Z");
        assert_eq!(active_since(&r, "nix-config").map(|s| s.1), Some(Since::Retired));
    }
}
