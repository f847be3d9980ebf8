//! Fetching the host key a machine presents, with OpenSSH's own `ssh-keyscan`, and checking
//! it against the host's record (what `verify`, `sync`, `connect` and `deploy-image` rely on).

use std::time::Duration;

use ssh_key::PublicKey;

use crate::address::Address;
use crate::error::{Error, Result};
use crate::process::Program;
use crate::record::HostRecord;
use crate::ssh_keys;

/// The ed25519 host keys `addr` presents. Empty when it answers without one.
///
/// # Errors
/// [`Error::Program`] when `ssh-keyscan` is missing or gets no answer in time.
pub(crate) fn ed25519_keys(addr: &Address, timeout: Duration) -> Result<Vec<PublicKey>> {
    let secs = timeout.as_secs().max(1);
    let done = Program::new("ssh-keyscan")
        .args(["-T", &secs.to_string(), "-t", "ed25519", "-p", &addr.port.to_string(), "--", &addr.host])
        .timeout(timeout + Duration::from_secs(2))
        .run()?;
    let text = String::from_utf8_lossy(&done.stdout);
    let keys: Vec<PublicKey> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' ').map(|(_, key)| key))
        .filter_map(|k| PublicKey::from_openssh(k.trim()).ok())
        .collect();
    if keys.is_empty() {
        return Err(Error::Program {
            program: "ssh-keyscan".into(),
            message: format!(
                "no ed25519 host key from {addr} within {secs}s: the host is unreachable, not running sshd yet, or has no ed25519 key"
            ),
        });
    }
    Ok(keys)
}

/// Scans `addr` and compares with the record; returns the matching fingerprint.
///
/// # Errors
/// [`Error::Mismatch`] naming both fingerprints and the likely cause.
pub(crate) fn verify(record: &HostRecord, addr: &Address, timeout: Duration) -> Result<String> {
    let keys = ed25519_keys(addr, timeout)?;
    let expected = &record.fingerprint;
    if let Some(k) = keys.iter().find(|k| &ssh_keys::fingerprint(k) == expected) {
        return Ok(ssh_keys::fingerprint(k));
    }
    let found: Vec<String> = keys.iter().map(ssh_keys::fingerprint).collect();
    Err(Error::Mismatch {
        host: format!("{} at {addr}", record.name),
        expected: expected.clone(),
        found: format!(
            "{} (likely cause: the machine generated or kept its own key — the seed was not applied, or the template's keys were not removed)",
            found.join(", ")
        ),
    })
}
