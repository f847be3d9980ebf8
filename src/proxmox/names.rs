//! The values that go into `qm` command lines, each validated where it enters: a VM id,
//! a storage name, a path on the node. A value that passed here is safe in a `qm` argv and,
//! quoted, in the node's shell.

use std::fmt;

use crate::error::{Error, Result};

/// A Proxmox VM id: 100..=999999999 (ids below 100 are reserved by Proxmox).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmId(u32);

impl VmId {
    pub const MIN: u32 = 100;
    pub const MAX: u32 = 999_999_999;

    /// # Errors
    /// [`Error::Usage`] outside Proxmox's range.
    pub fn new(id: u64) -> Result<Self> {
        match u32::try_from(id) {
            Ok(n) if (Self::MIN..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(Error::Usage(format!("VM id {id} is out of Proxmox's range: use a number from {} to {}", Self::MIN, Self::MAX))),
        }
    }

    /// # Errors
    /// [`Error::Usage`] when `s` is not a number in range.
    pub fn parse(s: &str) -> Result<Self> {
        let n: u64 = s.parse().map_err(|_| {
            Error::Usage(format!("VM id `{}` is not a number: use a number from {} to {}", s.escape_debug(), Self::MIN, Self::MAX))
        })?;
        Self::new(n)
    }

    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Proxmox storage id (`local`, `local-lvm`, `ceph.pool`), by Proxmox's own rule
/// (pve-common `parse_id`): a letter, then letters, digits, '-', '_' or '.', ending in a
/// letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageName(String);

impl StorageName {
    /// # Errors
    /// [`Error::Usage`] naming the value.
    pub(crate) fn parse(s: &str) -> Result<Self> {
        let valid = s.len() >= 2
            && s.len() <= 64
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(Error::Usage(format!(
                "storage `{}` is invalid: a Proxmox storage id starts with a letter, ends with a letter or digit, and holds only letters, digits, '-', '_' and '.'",
                s.escape_debug()
            )))
        }
    }

    #[must_use]
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StorageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bridge for a VM's NIC (`vmbr0`): a Linux interface name (at most 15 bytes) of the
/// characters Proxmox's `pve-bridge-id` allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BridgeName(String);

impl BridgeName {
    /// # Errors
    /// [`Error::Usage`] naming the value.
    pub(crate) fn parse(s: &str) -> Result<Self> {
        let valid =
            !s.is_empty() && s.len() <= 15 && !s.starts_with('-') && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(Error::Usage(format!(
                "bridge `{}` is invalid: use a Linux interface name like vmbr0 (at most 15 letters, digits, '-', '_', '.')",
                s.escape_debug()
            )))
        }
    }

    #[must_use]
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BridgeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A resource pool id (`prod`, `team/web`): Proxmox's `pve-poolid`, letters, digits, '-',
/// '_' and '.', with up to three levels separated by '/'.
///
/// # Errors
/// [`Error::Usage`] naming the value.
pub(crate) fn pool_id(s: &str) -> Result<String> {
    let level = |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if s.len() <= 64 && s.split('/').count() <= 3 && s.split('/').all(level) {
        Ok(s.to_string())
    } else {
        Err(Error::Usage(format!(
            "pool `{}` is invalid: a Proxmox pool id holds letters, digits, '-', '_' and '.' (nested pools separated by '/')",
            s.escape_debug()
        )))
    }
}

/// VM tags as `qm set --tags` takes them, joined with ';'. Each tag follows Proxmox's
/// `pve-tag`: a letter, digit or '_' first, then letters, digits and `_-+.`.
///
/// # Errors
/// [`Error::Usage`] naming the first bad tag.
pub(crate) fn tags(list: &[String]) -> Result<Option<String>> {
    let mut all: Vec<&str> = list.iter().flat_map(|t| t.split([';', ',', ' '])).filter(|t| !t.is_empty()).collect();
    if let Some(bad) = all.iter().find(|t| {
        !t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            || !t.chars().all(|c| c.is_ascii_alphanumeric() || "_-+.".contains(c))
    }) {
        return Err(Error::Usage(format!(
            "tag `{}` is invalid: a Proxmox tag starts with a letter, digit or '_' and holds letters, digits and '_', '-', '+', '.'",
            bad.escape_debug()
        )));
    }
    all.dedup();
    Ok((!all.is_empty()).then(|| all.join(";")))
}

/// An absolute path on the node: no `..`, no control characters, nothing a shell word or
/// `install` could misread (it never starts with '-').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePath(String);

impl RemotePath {
    /// # Errors
    /// [`Error::Usage`] naming the value.
    pub fn parse(s: &str) -> Result<Self> {
        let valid = s.starts_with('/')
            && s.len() > 1
            && !s.ends_with('/')
            && !s.split('/').any(|c| c == ".." || c == ".")
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "/_.-+@".contains(c));
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(Error::Usage(format!("path `{}` on the node is not a plain absolute file path", s.escape_debug())))
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The directory holding the file (`/` for a file at the root).
    #[must_use]
    pub fn parent(&self) -> Self {
        match self.0.rsplit_once('/') {
            Some((dir, _)) if !dir.is_empty() => Self(dir.to_string()),
            _ => Self("/".into()),
        }
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_ids_are_in_proxmox_range() {
        assert_eq!(VmId::parse("283").expect("ok").get(), 283);
        assert!(VmId::parse("100").is_ok() && VmId::parse("999999999").is_ok());
        for bad in ["42", "99", "1000000000", "-1", "1e3", "", "283;id"] {
            assert!(VmId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn storages_and_paths_are_plain() {
        for ok in ["local", "local-lvm", "ceph.pool_1"] {
            assert!(StorageName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "1local", "-x", "local-", "local.", "a b", "a;b", "a:b", "a/b"] {
            assert!(StorageName::parse(bad).is_err(), "{bad}");
        }
        assert!(BridgeName::parse("vmbr0").is_ok() && BridgeName::parse("vmbr0.20").is_ok());
        for bad in ["", "-vmbr", "vmbr 0", "averyveryverylongbridge", "vmbr;0"] {
            assert!(BridgeName::parse(bad).is_err(), "{bad}");
        }
        assert!(pool_id("prod").is_ok() && pool_id("team/web").is_ok());
        assert!(pool_id("a/b/c/d").is_err() && pool_id("a b").is_err() && pool_id("").is_err());
        assert_eq!(tags(&["web,prod".into(), "nixos".into()]).expect("tags").as_deref(), Some("web;prod;nixos"));
        assert_eq!(tags(&[]).expect("none"), None);
        assert!(tags(&["-web".into()]).is_err() && tags(&["a/b".into()]).is_err());
        assert!(RemotePath::parse("/var/lib/vz/snippets/hostsmith-web01-user.yaml").is_ok());
        for bad in ["relative", "/a/../b", "/a b", "/a;b", "/", "/dir/", "/a\nb"] {
            assert!(RemotePath::parse(bad).is_err(), "{bad}");
        }
    }
}
