//! `hosts/<host>.json`: the public record of a host. Checked in, read by Nix with
//! `builtins.fromJSON`, so its fields are stable: fields may be added, never change meaning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod validate;

pub(crate) use validate::problem;

pub(crate) const SCHEMA: u32 = 1;

/// The open-part fields [`crate::deploy_keys`] keeps: new keys not yet registered, and keys
/// replaced but maybe still on the forge.
pub(crate) const PENDING_RECORD: &str = "deploy_keys_pending";
pub(crate) const RETIRED_RECORD: &str = "deploy_keys_retired";
/// When each active deploy key became active: repository → fingerprint and time.
pub(crate) const ACTIVATED_RECORD: &str = "deploy_keys_activated";

/// A deploy key that was replaced; remove it from the forge once the host uses the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredDeployKey {
    pub repo: String,
    pub public: String,
    pub fingerprint: String,
    pub retired_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    pub schema: u32,
    pub name: String,
    pub ssh_host_ed25519_public: String,
    pub fingerprint: String,
    pub age_recipient: String,
    #[serde(default)]
    pub deploy_keys: BTreeMap<String, String>,
    pub created_at: String,
    pub rotated_at: Option<String>,
    /// Where the key in use came from.
    #[serde(default)]
    pub origin: Origin,
    /// Earlier host keys, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RetiredKey>,
    /// Addresses the host is known at (`A` or `A:PORT`), for known_hosts and connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// The Proxmox VM id, when the host is a VM hostsmith deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<u64>,
    /// The Proxmox node (`pvesh` name) the VM runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox_node: Option<String>,
    /// The host's SOPS file, relative to the fleet, when it is not the one `sops.host_file`
    /// gives (layouts such as `hosts/<kind>/<host>/secrets.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sops_file: Option<String>,
    /// Fields written by newer versions, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Where a host's key came from; written as `generated`, `adopted` or `imported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// hostsmith generated it (the default for records older than the field).
    #[default]
    Generated,
    /// An existing machine's key: only its public half is known.
    Adopted,
    /// A private key the admin brought.
    Imported,
}

impl Origin {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Generated => "generated",
            Origin::Adopted => "adopted",
            Origin::Imported => "imported",
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredKey {
    pub fingerprint: String,
    pub age_recipient: String,
    pub retired_at: String,
}

impl HostRecord {
    /// The record as written to disk: pretty JSON with a final newline.
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// The current time as the records and sops write it: RFC 3339, UTC, seconds.
#[must_use]
pub(crate) fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
