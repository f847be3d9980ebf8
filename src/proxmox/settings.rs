//! The VM settings `deploy-image` changes, merged into the template's instead of replacing
//! them: `qm set --cicustom user=…` alone would drop the template's `vendor=`/`network=`,
//! `--agent enabled=1` its other agent options, `--net0 virtio,bridge=B` its firewall, VLAN
//! tag and MTU. Each function takes what the template has and returns the value to set, or
//! `None` when the template already has it.

use std::net::IpAddr;

use crate::error::{Error, Result};

use super::names::BridgeName;
use super::vm_config::{PropertyString, VmConfig};

/// The VM's network as `--ipconfig0` (snippets) or the seed's network-config (ISO) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IpConfig {
    Dhcp,
    /// `cidr` is validated `ADDR/PREFIX`.
    Static {
        cidr: String,
        address: IpAddr,
        gateway: Option<IpAddr>,
    },
}

impl IpConfig {
    /// A static address as Proxmox accepts it: an IPv4 prefix of 8 to 32, an IPv6 prefix
    /// of 8 to 128 (pve-common `CIDRv4`/`CIDRv6`), a gateway of the same family.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the value and the range.
    pub(crate) fn parse_static(cidr: &str, gateway: Option<&str>) -> Result<Self> {
        let cidr = crate::cloud_init::parse_cidr(cidr)?;
        let (addr, prefix) = cidr.split_once('/').unwrap_or_default();
        let address: IpAddr = addr.parse().map_err(|_| Error::Usage(format!("`{cidr}` is not an address")))?;
        let prefix: u8 = prefix.parse().unwrap_or_default();
        let max = if address.is_ipv4() { 32 } else { 128 };
        if !(8..=max).contains(&prefix) {
            return Err(Error::Usage(format!(
                "--ip `{cidr}`: Proxmox accepts an {} prefix length from 8 to {max}",
                if address.is_ipv4() { "IPv4" } else { "IPv6" }
            )));
        }
        let gateway = gateway
            .map(|g| g.parse::<IpAddr>().map_err(|_| Error::Usage(format!("gateway `{}` is not an IP address", g.escape_debug()))))
            .transpose()?;
        if gateway.is_some_and(|g| g.is_ipv4() != address.is_ipv4()) {
            return Err(Error::Usage(format!("gateway and --ip `{cidr}` are of different IP versions")));
        }
        Ok(Self::Static { cidr, address, gateway })
    }

    /// The `ip=`/`ip6=` value: `dhcp` or the CIDR.
    #[must_use]
    pub(crate) fn address_value(&self) -> String {
        match self {
            Self::Dhcp => "dhcp".into(),
            Self::Static { cidr, .. } => cidr.clone(),
        }
    }

    #[must_use]
    pub(crate) fn gateway_value(&self) -> Option<String> {
        match self {
            Self::Dhcp => None,
            Self::Static { gateway, .. } => gateway.map(|g| g.to_string()),
        }
    }
}

/// The keys of Proxmox's `netN` format other than the model: a first item with another
/// key is the `MODEL=MAC` shorthand (qemu-server `PVE::QemuServer::Network`).
const NET_KEYS: [&str; 10] = ["model", "macaddr", "bridge", "tag", "trunks", "firewall", "link_down", "mtu", "queues", "rate"];

/// `cicustom`: the template's parts with `user=` and `meta=` ours. The template's
/// `network=` is kept unless the deployment sets the address (`--ip`), which needs
/// Proxmox's network-config from `ipconfig0`.
#[must_use]
pub(crate) fn cicustom(template: &VmConfig, user: &str, meta: &str, own_network: bool) -> String {
    let mut p = PropertyString::parse(template.get("cicustom").unwrap_or_default());
    p.retain(|k, _| k != "user" && k != "meta" && !(own_network && k == "network"));
    p.set_first("meta", meta);
    p.set_first("user", user);
    p.to_string()
}

/// Whether the template's `cicustom` names a `network=` file the deployment keeps.
#[must_use]
pub(crate) fn template_network(template: &VmConfig) -> Option<String> {
    PropertyString::parse(template.get("cicustom").unwrap_or_default()).get("network").map(str::to_string)
}

/// `ipconfig0`: the deployment's address family set, the template's other family kept
/// (an `ip6=auto` stays beside `ip=dhcp`).
#[must_use]
pub(crate) fn ipconfig0(template: &VmConfig, ip: &IpConfig) -> String {
    let mut p = PropertyString::parse(template.get("ipconfig0").unwrap_or_default());
    let (addr, gw, other) = match ip {
        IpConfig::Static { address, .. } if address.is_ipv6() => (("ip6", "gw6"), ip.gateway_value(), ("ip", "gw")),
        _ => (("ip", "gw"), ip.gateway_value(), ("ip6", "gw6")),
    };
    p.retain(|k, _| k == other.0 || k == other.1);
    let mut out = PropertyString::default();
    out.set(addr.0, &ip.address_value());
    if let Some(g) = gw {
        out.set(addr.1, &g);
    }
    for (k, v) in p.items() {
        out.set(k, v);
    }
    out.to_string()
}

/// `agent`: enabled, the template's other agent options kept; `None` when it is enabled
/// already.
#[must_use]
pub(crate) fn agent(template: &VmConfig) -> Option<String> {
    let mut p = PropertyString::parse(template.get("agent").unwrap_or_default());
    if let Some(v) = p.get("").map(str::to_string) {
        p.remove("");
        p.set_first("enabled", &v);
    }
    if matches!(p.get("enabled"), Some("1" | "yes" | "on" | "true")) {
        return None;
    }
    p.set_first("enabled", "1");
    Some(p.to_string())
}

/// `net0` with the deployment's bridge and VLAN tag, the template's model and other
/// options kept. The MAC address is left out so Proxmox makes a new one, as `qm clone`
/// does. `None` when neither is asked for.
#[must_use]
pub(crate) fn net0(template: &VmConfig, bridge: Option<&BridgeName>, vlan: Option<u16>) -> Option<String> {
    if bridge.is_none() && vlan.is_none() {
        return None;
    }
    let old = PropertyString::parse(template.get("net0").unwrap_or_default());
    let mut model = "virtio".to_string();
    let mut out = PropertyString::default();
    for (k, v) in old.items() {
        match k {
            "model" | "" => model = v.to_string(),
            "macaddr" => {}
            k if NET_KEYS.contains(&k) => out.set(k, v),
            shorthand => model = shorthand.to_string(),
        }
    }
    out.set_first("", &model);
    if let Some(b) = bridge {
        out.set("bridge", b.as_str());
    }
    if let Some(tag) = vlan {
        out.set("tag", &tag.to_string());
    }
    Some(out.to_string())
}

/// The bridge `net0` will use: the new value's, else the template's.
#[must_use]
pub(crate) fn bridge_of(template: &VmConfig, net0: Option<&str>) -> Option<String> {
    PropertyString::parse(net0.or_else(|| template.get("net0")).unwrap_or_default()).get("bridge").map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> VmConfig {
        VmConfig::parse(text)
    }

    #[test]
    fn cicustom_keeps_the_templates_vendor_and_network() {
        let t = config("cicustom: vendor=local:snippets/v.yaml,network=local:snippets/n.yaml,meta=local:snippets/old.yaml\n");
        assert_eq!(
            cicustom(&t, "local:snippets/u.yaml", "local:snippets/m.yaml", false),
            "user=local:snippets/u.yaml,meta=local:snippets/m.yaml,vendor=local:snippets/v.yaml,network=local:snippets/n.yaml"
        );
        assert_eq!(cicustom(&t, "s:snippets/u", "s:snippets/m", true), "user=s:snippets/u,meta=s:snippets/m,vendor=local:snippets/v.yaml");
        assert_eq!(cicustom(&config(""), "s:snippets/u", "s:snippets/m", false), "user=s:snippets/u,meta=s:snippets/m");
    }

    #[test]
    fn agent_options_are_kept() {
        assert_eq!(agent(&config("agent: enabled=0,fstrim_cloned_disks=1\n")).as_deref(), Some("enabled=1,fstrim_cloned_disks=1"));
        assert_eq!(agent(&config("agent: 0,type=isa\n")).as_deref(), Some("enabled=1,type=isa"));
        assert_eq!(agent(&config("")).as_deref(), Some("enabled=1"));
        assert_eq!(agent(&config("agent: 1,fstrim_cloned_disks=1\n")), None);
        assert_eq!(agent(&config("agent: enabled=1\n")), None);
    }

    #[test]
    fn net0_keeps_firewall_tag_and_mtu() {
        let t = config("net0: virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1,tag=20,mtu=9000\n");
        let b = BridgeName::parse("vmbr1").expect("bridge");
        assert_eq!(net0(&t, Some(&b), None).as_deref(), Some("virtio,bridge=vmbr1,firewall=1,tag=20,mtu=9000"));
        assert_eq!(net0(&t, None, Some(30)).as_deref(), Some("virtio,bridge=vmbr0,firewall=1,tag=30,mtu=9000"));
        assert_eq!(net0(&t, None, None), None);
        let e1000 = config("net0: model=e1000,macaddr=BC:24:11:00:00:02,bridge=vmbr0\n");
        assert_eq!(net0(&e1000, Some(&b), None).as_deref(), Some("e1000,bridge=vmbr1"));
        assert_eq!(net0(&config(""), Some(&b), None).as_deref(), Some("virtio,bridge=vmbr1"));
        assert_eq!(bridge_of(&t, None).as_deref(), Some("vmbr0"));
        assert_eq!(bridge_of(&t, Some("virtio,bridge=vmbr1")).as_deref(), Some("vmbr1"));
    }

    #[test]
    fn ipconfig_keeps_the_other_family() {
        let t = config("ipconfig0: ip=dhcp,ip6=auto\n");
        assert_eq!(ipconfig0(&t, &IpConfig::Dhcp), "ip=dhcp,ip6=auto");
        let v6 = IpConfig::Static { cidr: "2001:db8::10/64".into(), address: "2001:db8::10".parse().expect("ip"), gateway: None };
        assert_eq!(ipconfig0(&config("ipconfig0: ip=dhcp,ip6=auto\n"), &v6), "ip6=2001:db8::10/64,ip=dhcp");
        let v4 = IpConfig::Static {
            cidr: "192.0.2.10/24".into(),
            address: "192.0.2.10".parse().expect("ip"),
            gateway: Some("192.0.2.1".parse().expect("gw")),
        };
        assert_eq!(ipconfig0(&config(""), &v4), "ip=192.0.2.10/24,gw=192.0.2.1");
    }
}
