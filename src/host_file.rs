//! The schema of a host's SOPS file (`sops/<host>.yaml`): where its private host key and
//! its deploy keys sit, and reading them back checked against the host's record.

use zeroize::Zeroizing;

use crate::admin_identity::Identities;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::record::HostRecord;
use crate::sops::file::{Map, Value};
use crate::ssh_keys::Keypair;

/// The key under which the host's private key is stored in its SOPS file.
pub(crate) const HOST_KEY_FIELD: &str = "ssh_host_ed25519_key";
/// The map of deploy keys in the host's SOPS file.
pub(crate) const DEPLOY_KEYS_FIELD: &str = "deploy-keys";

/// Stores `secret` at `path` in a decrypted host document.
///
/// # Errors
/// A path that crosses a value that is not a map.
pub(crate) fn set_secret(doc: &mut Map, path: &[&str], secret: &Zeroizing<String>, file: &std::path::Path) -> Result<()> {
    doc.set_path(path, Value::Str(secret.to_string())).map_err(|e| Error::SopsEngine { path: file.to_path_buf(), source: e })
}

/// The host key stored in a decrypted host file, if any.
///
/// # Errors
/// A value there that is not a usable key.
pub(crate) fn stored_host_key(doc: &Map, file: &std::path::Path) -> Result<Option<Keypair>> {
    stored_key(doc, &[HOST_KEY_FIELD], file)
}

/// The deploy key for `repo` stored in a decrypted host file, if any.
///
/// # Errors
/// A value there that is not a usable key.
pub(crate) fn stored_deploy_key(doc: &Map, repo: &str, file: &std::path::Path) -> Result<Option<Keypair>> {
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

/// The record of `host` and its private host key, decrypted from its SOPS file with the
/// admin identities and checked against the record.
///
/// # Errors
/// Unknown host, a host without a private key (adopted), or a key that differs from the
/// record.
pub(crate) fn host_keypair(fleet: &Fleet, host: &HostName, ids: &mut Identities) -> Result<(HostRecord, Keypair)> {
    let record = fleet.record(host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let path = fleet.host_file(host, Some(&record));
    let decrypted = ids.decrypt_file(&path)?;
    let key = stored_host_key(decrypted.document(), &path)?.ok_or_else(|| Error::Inconsistent {
        host: host.to_string(),
        message: format!(
            "`{}` holds no `{HOST_KEY_FIELD}` (an adopted machine keeps its own key): first-boot material needs a key hostsmith holds; use `hostsmith vm-fresh --rotate {host}` or `hostsmith keys import`",
            fleet.host_file_rel(host, Some(&record))
        ),
    })?;
    if key.fingerprint() != record.fingerprint {
        return Err(Error::Inconsistent {
            host: host.to_string(),
            message: format!(
                "the key in `{}` is {} but the record says {}: restore the matching pair from version control",
                fleet.host_file_rel(host, Some(&record)),
                key.fingerprint(),
                record.fingerprint
            ),
        });
    }
    Ok((record, key))
}
