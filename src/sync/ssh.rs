//! OpenSSH pinned to a host's recorded key: the `ssh` sync method and `connect` share it.
//!
//! The options themselves come from [`crate::openssh::SshCommand`]; this module knows the
//! targets, the known_hosts file made from the record, and what ssh's failures mean.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::address::Address;
use crate::error::{Error, Result};
use crate::host_name::HostName;
use crate::openssh::SshCommand;
use crate::process::Program;
use crate::record::HostRecord;

use super::keys::UserName;
use super::remote::REMOTE_COMMAND;

/// Where and as whom to reach a host over ssh.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The host's name: the alias its recorded key is filed under.
    pub alias: HostName,
    pub address: Address,
    pub user: UserName,
    /// A private key file for `ssh -i` (with `IdentitiesOnly=yes`).
    pub identity: Option<PathBuf>,
    /// The known_hosts file from [`known_hosts_file`].
    pub known_hosts: PathBuf,
    /// Open the connection as a shared master on this control socket ([`super::mux`]);
    /// otherwise it is a connection of its own.
    pub control: Option<PathBuf>,
}

/// Writes the host's record as a known_hosts file under the state directory and returns its
/// path. The name is derived from the content, so concurrent runs write identical bytes and
/// `connect`, which replaces itself with ssh, leaves no temporary file behind.
///
/// # Errors
/// [`Error::Write`], or a record without a usable key.
pub fn known_hosts_file(record: &HostRecord) -> Result<PathBuf> {
    let text = crate::known_hosts::lines(std::slice::from_ref(record));
    if text.is_empty() {
        return Err(Error::Inconsistent { host: record.name.clone(), message: "the record holds no usable host key".into() });
    }
    let dir = super::audit::state_dir()?.join("known_hosts");
    crate::atomic::secret_dir(&dir)?;
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("{}-{hex}", record.name));
    crate::atomic::write_if_changed(&path, text.as_bytes(), 0o600)?;
    Ok(path)
}

/// The ssh options for an interactive session with a target: pinned to its record, then who
/// logs in (`-i`, `-p`, `-l`).
#[must_use]
pub fn pinned_login(t: &SshTarget) -> SshCommand {
    login(t, SshCommand::new().pinned(&t.alias, &t.known_hosts))
}

fn login(t: &SshTarget, cmd: SshCommand) -> SshCommand {
    let cmd = match &t.identity {
        Some(id) => cmd.identity(id),
        None => cmd,
    };
    cmd.port(t.address.port).user(t.user.as_str())
}

/// The invocation that runs the sync script: batch mode, no tty, a connection of its own
/// that forwards nothing, bounded by `timeout`.
#[must_use]
pub fn sync_program(t: &SshTarget, timeout: Duration, stdin: Vec<u8>) -> Program {
    let cmd = SshCommand::new().flag("-T").batch().pinned(&t.alias, &t.known_hosts).connect_timeout(timeout);
    let cmd = match &t.control {
        Some(path) => cmd.shared_master(path, Duration::from_secs(super::mux::LINGER_SECS)),
        None => cmd.isolated(),
    };
    login(t, cmd).program(&t.address.host, [REMOTE_COMMAND.to_string()]).stdin(stdin).timeout(timeout)
}

/// Why an ssh attempt failed, as far as ssh's exit and stderr tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// No answer, refused, timed out: the host was not reached.
    Unreachable,
    /// The host did not present the recorded key.
    HostKey,
    /// Reached, but our key was not accepted for the user.
    Denied,
    Other,
}

/// Runs the sync over ssh. `Ok` holds what the remote command printed (its stdout, and the
/// last line of its stderr for messages); `Err` the cause, classified.
pub fn attempt(t: &SshTarget, timeout: Duration, stdin: Vec<u8>) -> std::result::Result<(Vec<u8>, String), (Trouble, Error)> {
    let program = sync_program(t, timeout, stdin);
    let dest = format!("{}@{}", t.user, t.address);
    let done = match program.run() {
        Ok(d) => d,
        Err(Error::Program { message, .. }) if message.starts_with("timed out") => {
            let m = format!("no answer from {dest} within {}s (sync timeout)", timeout.as_secs());
            return Err((Trouble::Unreachable, Error::Program { program: "ssh".into(), message: m }));
        }
        Err(e) => return Err((Trouble::Other, e)),
    };
    let stderr = String::from_utf8_lossy(&done.stderr);
    let last = stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no error output").to_string();
    if done.status != Some(255) {
        return Ok((done.stdout, last));
    }
    let lower = stderr.to_lowercase();
    let has = |s: &str| lower.contains(s);
    let (trouble, message) = if has("host key verification failed") || has("host identification has changed") || has("host key is known") {
        (Trouble::HostKey, format!("{dest} does not present the key recorded for {}: {last}", t.alias))
    } else if has("permission denied") {
        (
            Trouble::Denied,
            format!("{dest} does not accept your ssh key for `{}` ({last}); a Proxmox VM can be reached with --method guest-agent", t.user),
        )
    } else if [
        "timed out",
        "connection refused",
        "no route to host",
        "could not resolve",
        "network is unreachable",
        "connection closed",
        "connection reset",
    ]
    .iter()
    .any(|s| has(s))
    {
        (Trouble::Unreachable, format!("cannot reach {dest}: {last}"))
    } else {
        (Trouble::Other, format!("ssh to {dest} failed: {last}"))
    };
    Err((trouble, Error::Program { program: "ssh".into(), message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            alias: HostName::parse("web01").expect("name"),
            address: Address::parse("192.0.2.10:2222").expect("addr"),
            user: UserName::parse("admin").expect("user"),
            identity: None,
            known_hosts: PathBuf::from("/state/known_hosts/web01-00"),
            control: None,
        }
    }

    #[test]
    fn the_sync_invocation_pins_the_key_and_sends_only_the_constant_command() {
        let p = sync_program(&target(), Duration::from_secs(7), b"keys".to_vec());
        let argv = p.argv();
        let joined = argv.join(" ");
        for must in [
            "-o StrictHostKeyChecking=yes",
            "-o UserKnownHostsFile=/state/known_hosts/web01-00",
            "-o GlobalKnownHostsFile=/dev/null",
            "-o HostKeyAlias=web01",
            "-o BatchMode=yes",
            "-o ConnectTimeout=7",
            "-p 2222 -l admin -- 192.0.2.10",
        ] {
            assert!(joined.contains(must), "{must} missing from {joined}");
        }
        assert_eq!(argv.last().map(String::as_str), Some(REMOTE_COMMAND));
        assert!(!joined.contains("keys"));
    }
}
