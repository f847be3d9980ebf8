//! The `[proxmox]` table of `hostsmith.toml`: defaults for `deploy-image`, so a fleet names
//! its node, template and storages once. Values are validated where they are used (by
//! `deploy-image`), with the same rules as the command-line options they stand in for.

use serde::{Deserialize, Serialize};

/// `[proxmox]`; every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxmoxSection {
    /// The node to drive over ssh: `USER@HOST[:PORT]` (`--pve`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pve: Option<String>,
    /// The Proxmox node name, checked against the node ssh reaches (`--node`); asked from
    /// the node when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The template VM to clone (`--template`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<u64>,
    /// Target storage of full clones (`--storage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// The storage with the `snippets` content type that holds the user-data (`--snippets`).
    pub snippets: String,
    /// The storage with the `iso` content type for `--seed-iso` (`--iso-storage`).
    pub iso_storage: String,
    /// A bridge for the VM's first NIC (`--bridge`); unset keeps the template's NIC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// An ssh config file to reach the node with, instead of `~/.ssh/config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<String>,
    /// Seconds to wait after start for the VM's address and host key (`--wait`).
    pub wait: u64,
    /// A resource pool for new VMs (`--pool`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Tags for new VMs (`--tags`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Start new VMs when the node boots (`--onboot`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onboot: Option<bool>,
    /// CPU cores of new VMs (`--cores`); unset keeps the template's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// Memory of new VMs in MiB (`--memory`); unset keeps the template's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    /// The boot disk's size, `20G` or `+10G` (`--disk-size`); unset keeps the template's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<String>,
    /// A VLAN tag for the first NIC (`--vlan`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// DNS servers for the seed (`--nameserver`); unset, Proxmox uses the node's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameserver: Vec<String>,
    /// DNS search domains for the seed (`--searchdomain`); unset, Proxmox uses the node's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub searchdomain: Option<String>,
}

impl Default for ProxmoxSection {
    fn default() -> Self {
        Self {
            pve: None,
            node: None,
            template: None,
            storage: None,
            snippets: "local".into(),
            iso_storage: "local".into(),
            bridge: None,
            ssh_config: None,
            wait: 300,
            pool: None,
            tags: Vec::new(),
            onboot: None,
            cores: None,
            memory: None,
            disk_size: None,
            vlan: None,
            nameserver: Vec::new(),
            searchdomain: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_table_parses_and_unknown_keys_are_named() {
        let c = Config::parse("[proxmox]\npve = \"root@pve1\"\ntemplate = 9000\nbridge = \"vmbr0\"\n").expect("parse");
        assert_eq!(c.proxmox.pve.as_deref(), Some("root@pve1"));
        assert_eq!(c.proxmox.template, Some(9000));
        assert_eq!(c.proxmox.snippets, "local");
        assert_eq!(c.proxmox.wait, 300);
        let err = Config::parse("[proxmox]\nsnippet = \"local\"\n").expect_err("typo");
        assert!(err.contains("snippet"), "{err}");
    }
}
