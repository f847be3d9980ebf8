//! The NoCloud seed: `user-data`, `meta-data` and `network-config` that make a fresh
//! machine present the pre-generated host key at its very first SSH connection.
//!
//! `ssh_keys` installs the key, `ssh_deletekeys: true` removes whatever a template baked
//! in, and no `ssh_genkeytypes` is given (an empty list is invalid, and cloud-init does not
//! generate keys of a type `ssh_keys` supplies). Every value a user controls is written as a
//! JSON-style double-quoted scalar, which YAML reads back verbatim whatever it contains.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::host_name::HostName;
use crate::ssh_keys::Keypair;

/// The files of a NoCloud seed. `user_data` holds the private host key.
pub(crate) struct Seed {
    pub user_data: Zeroizing<String>,
    pub meta_data: String,
    pub network_config: Option<String>,
}

/// How the machine's network is configured, when the seed says so.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Network {
    /// A user-written network-config, passed through after a YAML check.
    File(String),
    /// One interface with static addresses.
    Static { addresses: Vec<String>, gateway: Option<IpAddr>, dns: Vec<IpAddr> },
}

pub(crate) struct SeedParams<'a> {
    pub host: &'a HostName,
    pub key: &'a Keypair,
    /// The admin user to create.
    pub user: &'a str,
    /// `authorized_keys` lines for the admin user, already validated.
    pub authorized_keys: &'a [String],
    /// A sudoers rule for the admin user, or none.
    pub sudo: Option<&'a str>,
    pub network: Option<Network>,
    /// Whether the user-data carries the private host key. Without it, the user-data is
    /// what a machine that already holds its key may keep reading at every boot:
    /// `ssh_deletekeys: false`, so even a boot cloud-init takes for a new instance keeps
    /// the key.
    pub private_key: bool,
}

/// Renders the seed.
///
/// # Errors
/// When the key cannot be encoded.
pub(crate) fn render(p: &SeedParams<'_>) -> Result<Seed> {
    let mut u = String::with_capacity(2048);
    u.push_str("#cloud-config\n");
    u.push_str(&format!("hostname: {}\n", q(p.host.as_str())));
    u.push_str(&format!("fqdn: {}\n", q(p.host.as_str())));
    u.push_str("preserve_hostname: false\n");
    if p.private_key {
        let private = p.key.openssh_private()?;
        u.push_str("ssh_deletekeys: true\n");
        u.push_str("ssh_keys:\n  ed25519_private: |\n");
        for line in private.lines() {
            u.push_str("    ");
            u.push_str(line);
            u.push('\n');
        }
        u.push_str(&format!("  ed25519_public: {}\n", q(&p.key.public_line())));
    } else {
        u.push_str("ssh_deletekeys: false\n");
    }
    u.push_str("users:\n");
    u.push_str(&format!("  - name: {}\n", q(p.user)));
    if let Some(rule) = p.sudo {
        u.push_str(&format!("    sudo: {}\n", q(rule)));
    }
    u.push_str("    lock_passwd: true\n");
    if p.authorized_keys.is_empty() {
        u.push_str("    ssh_authorized_keys: []\n");
    } else {
        u.push_str("    ssh_authorized_keys:\n");
        for k in p.authorized_keys {
            u.push_str(&format!("      - {}\n", q(k)));
        }
    }
    let meta = format!("instance-id: {}\nlocal-hostname: {}\n", instance_id(p.host, &p.key.fingerprint()), q(p.host.as_str()));
    let network_config = match &p.network {
        None => None,
        Some(Network::File(text)) => Some(text.clone()),
        Some(Network::Static { addresses, gateway, dns }) => Some(static_network(addresses, *gateway, dns)),
    };
    Ok(Seed { user_data: Zeroizing::new(u), meta_data: meta, network_config })
}

/// `hostsmith-<host>-<16 hex>` from the host name and key fingerprint: stable for a key,
/// new after a rotation, so cloud-init runs its per-instance modules again exactly when the
/// key changes.
#[must_use]
pub(crate) fn instance_id(host: &HostName, fingerprint: &str) -> String {
    let digest = Sha256::digest(format!("{host}\n{fingerprint}"));
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("hostsmith-{host}-{hex}")
}

fn static_network(addresses: &[String], gateway: Option<IpAddr>, dns: &[IpAddr]) -> String {
    let mut s = String::from("version: 2\nethernets:\n  primary:\n    match:\n      name: \"e*\"\n    dhcp4: false\n    addresses:\n");
    for a in addresses {
        s.push_str(&format!("      - {}\n", q(a)));
    }
    if let Some(gw) = gateway {
        s.push_str(&format!(
            "    routes:\n      - to: {}\n        via: {}\n",
            q(if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" }),
            q(&gw.to_string())
        ));
    }
    if !dns.is_empty() {
        s.push_str("    nameservers:\n      addresses:\n");
        for d in dns {
            s.push_str(&format!("        - {}\n", q(&d.to_string())));
        }
    }
    s
}

/// A YAML double-quoted scalar (JSON string syntax, which YAML 1.1 and 1.2 both read).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Validates `ADDR/PREFIX`.
///
/// # Errors
/// [`Error::Usage`] naming the value.
pub(crate) fn parse_cidr(s: &str) -> Result<String> {
    let bad = || Error::Usage(format!("`{s}` is not an address with a prefix length, e.g. 192.0.2.10/24 or 2001:db8::10/64"));
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if prefix > if addr.is_ipv4() { 32 } else { 128 } {
        return Err(bad());
    }
    Ok(format!("{addr}/{prefix}"))
}

/// Reads the admin's authorized keys: each entry is a key line (`ssh-ed25519 AAAA…`) or a
/// path to a `.pub` file (`~` expanded). Every key is parsed, so nothing malformed reaches
/// the seed.
///
/// # Errors
/// A missing file or a line that is not a public key, named.
pub(crate) fn authorized_keys(entries: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in entries {
        let looks_like_key = entry.starts_with("ssh-") || entry.starts_with("ecdsa-") || entry.starts_with("sk-");
        let text = if looks_like_key {
            entry.clone()
        } else {
            let path = expand_home(entry);
            std::fs::read_to_string(&path).map_err(|e| {
                Error::Usage(format!(
                    "authorized key file `{}` cannot be read ({e}): set `cloud_init.authorized_keys` in hostsmith.toml or pass --authorized-key FILE",
                    path.display()
                ))
            })?
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let key = ssh_key::PublicKey::from_openssh(line)
                .map_err(|e| Error::Key(format!("`{entry}` holds a line that is not an OpenSSH public key ({e})")))?;
            out.push(key.to_openssh().map_err(|e| Error::Key(e.to_string()))?);
        }
    }
    Ok(out)
}

fn expand_home(p: &str) -> std::path::PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::PathBuf::from(home).join(rest),
        _ => std::path::PathBuf::from(p),
    }
}

/// What a seed needs besides the host's key, read and validated from the options and the
/// configuration before anything is written.
pub(crate) struct SeedInputs {
    pub user: String,
    pub authorized_keys: Vec<String>,
    pub sudo: Option<String>,
    pub network: Option<Network>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_follows_the_key() {
        let h = HostName::parse("web01").expect("name");
        assert_eq!(instance_id(&h, "SHA256:a"), instance_id(&h, "SHA256:a"));
        assert_ne!(instance_id(&h, "SHA256:a"), instance_id(&h, "SHA256:b"));
        assert!(instance_id(&h, "SHA256:a").starts_with("hostsmith-web01-"));
    }

    #[test]
    fn cidrs_are_checked() {
        assert_eq!(parse_cidr("10.0.0.5/24").expect("ok"), "10.0.0.5/24");
        assert!(parse_cidr("10.0.0.5").is_err());
        assert!(parse_cidr("10.0.0.5/33").is_err());
        assert!(parse_cidr("x/24").is_err());
    }

    #[test]
    fn the_key_less_user_data_differs_only_in_the_key() {
        let host = HostName::parse("web01").expect("name");
        let key = Keypair::generate("root@web01").expect("key");
        let keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC0 admin".to_string()];
        let params = |private_key| SeedParams {
            host: &host,
            key: &key,
            user: "admin",
            authorized_keys: &keys,
            sudo: None,
            network: None,
            private_key,
        };
        let (with, without) = (render(&params(true)).expect("render"), render(&params(false)).expect("render"));
        assert!(with.user_data.contains("PRIVATE KEY") && with.user_data.contains("ssh_deletekeys: true"));
        assert!(!without.user_data.contains("PRIVATE KEY") && !without.user_data.contains("ssh_keys:"));
        assert!(without.user_data.contains("ssh_deletekeys: false"), "a boot taken for a new instance keeps the key");
        assert_eq!(with.meta_data, without.meta_data, "the same instance id");
        let rest = |u: &str| {
            u.lines()
                .filter(|l| !l.starts_with("ssh_") && !l.starts_with("  ") || l.starts_with("  - "))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(rest(&with.user_data), rest(&without.user_data));
    }

    #[test]
    fn hostile_strings_stay_inside_their_scalar() {
        assert_eq!(q("a\"b\nc: d #e"), r#""a\"b\nc: d #e""#);
    }
}
