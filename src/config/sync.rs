//! `[sync]` of `hostsmith.toml`: how `sync` and `connect` bring the admin keys to a host.

use serde::{Deserialize, Serialize};

/// The longest timeout accepted, in seconds.
pub(crate) const MAX_TIMEOUT: u64 = 3600;

/// How keys reach the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMethod {
    /// guest-agent when the host has a recorded VM id and node (then ssh if that fails),
    /// else ssh.
    #[default]
    Auto,
    /// OpenSSH, pinned to the recorded host key.
    Ssh,
    /// `qm guest exec` on the Proxmox node.
    GuestAgent,
    /// Do not sync.
    Skip,
}

impl SyncMethod {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMethod::Auto => "auto",
            SyncMethod::Ssh => "ssh",
            SyncMethod::GuestAgent => "guest-agent",
            SyncMethod::Skip => "skip",
        }
    }
}

/// `[sync]`: how `sync` and `connect` bring the admin keys to a host.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSection {
    /// Whether `connect` syncs the keys before connecting.
    pub auto: bool,
    /// `auto`, `ssh`, `guest-agent` or `skip`.
    pub method: SyncMethod,
    /// Seconds each sync attempt may take, 1 to 3600.
    pub timeout: u64,
    /// A command (argument vector, run without a shell) printing the public keys to sync,
    /// e.g. a vault CLI; empty to use `cloud_init.authorized_keys`.
    pub key_command: Vec<String>,
}

impl Default for SyncSection {
    fn default() -> Self {
        Self { auto: true, method: SyncMethod::Auto, timeout: 30, key_command: Vec::new() }
    }
}
