//! Fetching the host key a machine presents, with OpenSSH's own `ssh-keyscan`.

use std::time::Duration;

use ssh_key::PublicKey;

use crate::address::Address;
use crate::error::{Error, Result};
use crate::process::Program;

/// The ed25519 host keys `addr` presents. Empty when it answers without one.
///
/// # Errors
/// [`Error::Program`] when `ssh-keyscan` is missing or gets no answer in time.
pub fn ed25519_keys(addr: &Address, timeout: Duration) -> Result<Vec<PublicKey>> {
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
