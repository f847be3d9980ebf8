//! A VM's configuration as `qm config N` prints it (`key: value` lines, then `[snapshot]`
//! sections), and the property strings inside values (`virtio=BC:24:…,bridge=vmbr0,tag=20`).
//! hostsmith reads the template's configuration to check it and to merge its own settings
//! into the template's instead of replacing them.

use std::fmt;

/// A property string: comma-separated `key=value` items, in their order. An item without
/// `=` is the value of the format's default key and is kept with an empty key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PropertyString(Vec<(String, String)>);

impl PropertyString {
    #[must_use]
    pub(crate) fn parse(s: &str) -> Self {
        let items = s
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(|i| match i.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (String::new(), i.to_string()),
            })
            .collect();
        Self(items)
    }

    #[must_use]
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Sets `key`, in place when present (so the order Proxmox printed is kept), else last.
    pub(crate) fn set(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(item) => item.1 = value.to_string(),
            None => self.0.push((key.to_string(), value.to_string())),
        }
    }

    /// Puts `key=value` first (or moves it there).
    pub(crate) fn set_first(&mut self, key: &str, value: &str) {
        self.remove(key);
        self.0.insert(0, (key.to_string(), value.to_string()));
    }

    pub(crate) fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    pub(crate) fn items(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Keeps the items `keep` accepts.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
    }
}

impl fmt::Display for PropertyString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(|(k, v)| if k.is_empty() { v.clone() } else { format!("{k}={v}") }).collect();
        f.write_str(&items.join(","))
    }
}

/// The current configuration of a VM (snapshot and pending sections are not part of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VmConfig(Vec<(String, String)>);

/// The buses a disk or CD-ROM can sit on, as config keys (`scsi0`, `virtio1`, …).
const BUSES: [&str; 4] = ["ide", "sata", "scsi", "virtio"];

impl VmConfig {
    #[must_use]
    pub(crate) fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .take_while(|l| !l.starts_with('['))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Self(entries)
    }

    #[must_use]
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[must_use]
    pub(crate) fn is_template(&self) -> bool {
        self.get("template") == Some("1")
    }

    /// The drive keys (`ide2`, `scsi0`) and their values.
    fn drives(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).filter(|(k, _)| is_drive_key(k))
    }

    /// The keys of cloud-init drives (a volume named `…cloudinit`).
    #[must_use]
    pub(crate) fn cloudinit_drives(&self) -> Vec<&str> {
        self.drives().filter(|(_, v)| v.split(',').next().is_some_and(|vol| vol.contains("cloudinit"))).map(|(k, _)| k).collect()
    }

    /// The disk the VM boots from: the first disk of `boot: order=…`, else `bootdisk`, else
    /// the first disk that is neither a CD-ROM nor a cloud-init drive.
    #[must_use]
    pub(crate) fn boot_disk(&self) -> Option<Disk> {
        let is_disk = |k: &str| {
            self.get(k).is_some_and(|v| {
                let p = PropertyString::parse(v);
                p.get("media") != Some("cdrom") && !v.split(',').next().unwrap_or_default().contains("cloudinit")
            })
        };
        let order = self.get("boot").map(PropertyString::parse).and_then(|p| p.get("order").map(str::to_string));
        let from_order = order.and_then(|o| o.split(';').find(|k| is_drive_key(k) && is_disk(k)).map(str::to_string));
        let key = from_order
            .or_else(|| self.get("bootdisk").filter(|k| is_disk(k)).map(str::to_string))
            .or_else(|| self.drives().map(|(k, _)| k).find(|k| is_disk(k)).map(str::to_string))?;
        let size = self.get(&key).map(PropertyString::parse).and_then(|p| p.get("size").and_then(parse_size));
        Some(Disk { key, size })
    }

    /// The storages of the VM's disks (CD-ROMs and cloud-init drives left out).
    #[must_use]
    pub(crate) fn disk_storages(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .drives()
            .filter(|(_, v)| PropertyString::parse(v).get("media") != Some("cdrom"))
            .filter_map(|(_, v)| v.split(',').next()?.split_once(':').map(|(s, _)| s.to_string()))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A disk of a VM: its key and size in bytes, when the config gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Disk {
    pub key: String,
    pub size: Option<u64>,
}

fn is_drive_key(k: &str) -> bool {
    BUSES.iter().any(|b| k.strip_prefix(b).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())))
}

/// A Proxmox size (`8G`, `512M`, `1.5T`, `1073741824`) in bytes; `None` when malformed.
#[must_use]
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let (number, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return None,
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') || number.matches('.').count() > 1 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss, reason = "sizes are far below 2^52")]
    let bytes = (value * (1u64 << shift) as f64) as u64;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "agent: enabled=1,fstrim_cloned_disks=1\nboot: order=scsi0;ide2;net0\ncicustom: vendor=local:snippets/vendor.yaml\n\
        ide2: local-lvm:vm-9000-cloudinit,media=cdrom\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1,tag=20\n\
        scsi0: local-lvm:base-9000-disk-0,size=8G\nsata1: nas:iso/tools.iso,media=cdrom\ntemplate: 1\n\n[snap1]\nscsi0: other:disk\n";

    #[test]
    fn a_template_config_reads_as_proxmox_prints_it() {
        let c = VmConfig::parse(TEMPLATE);
        assert!(c.is_template());
        assert_eq!(c.cloudinit_drives(), ["ide2"]);
        assert_eq!(c.boot_disk(), Some(Disk { key: "scsi0".into(), size: Some(8 << 30) }));
        assert_eq!(c.disk_storages(), ["local-lvm"], "cdroms and snapshots left out");
        assert_eq!(c.get("scsi0"), Some("local-lvm:base-9000-disk-0,size=8G"), "the snapshot's value is not the current one");
        let plain = VmConfig::parse("virtio0: tank:vm-1-disk-0,size=512M\nide2: none,media=cdrom\n");
        assert_eq!(plain.boot_disk(), Some(Disk { key: "virtio0".into(), size: Some(512 << 20) }));
    }

    #[test]
    fn property_strings_keep_order_and_unknown_items() {
        let mut p = PropertyString::parse("virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1,tag=20");
        assert_eq!(p.get("bridge"), Some("vmbr0"));
        p.set("bridge", "vmbr1");
        p.set("mtu", "9000");
        assert_eq!(p.to_string(), "virtio=BC:24:11:00:00:01,bridge=vmbr1,firewall=1,tag=20,mtu=9000");
        let mut a = PropertyString::parse("1");
        assert_eq!(a.get(""), Some("1"));
        a.set_first("enabled", "1");
        a.remove("");
        assert_eq!(a.to_string(), "enabled=1");
    }

    #[test]
    fn sizes_are_read_like_proxmox_writes_them() {
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("1.5T"), Some(3 << 39));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["", "G", "8X", "1.2.3G", "-1G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
