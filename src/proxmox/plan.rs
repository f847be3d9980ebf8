//! A validated `deploy-image` and the exact command lines it runs on the node. The real run
//! and `--dry-run` build their argv vectors with the same functions here, so the plan a dry
//! run prints is the list of commands a real run sends.

use std::net::IpAddr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::host_name::HostName;

use super::names::{RemotePath, StorageName, VmId};
use super::node;

/// How the seed reaches the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seeding {
    /// The user-data as a snippet, named with `--cicustom user=…`: Proxmox's own cloud-init
    /// drive carries it, with Proxmox's meta-data and the network from `--ipconfig0`.
    Snippet,
    /// A complete NoCloud ISO (user-data, meta-data, network-config) attached as a CD-ROM
    /// on `ide2`, for templates without a Proxmox cloud-init drive.
    Iso,
}

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
    /// The `--ipconfig0` value: `ip=dhcp`, `ip=CIDR,gw=IP` or `ip6=CIDR,gw6=IP`.
    #[must_use]
    pub(crate) fn ipconfig0(&self) -> String {
        match self {
            Self::Dhcp => "ip=dhcp".into(),
            Self::Static { cidr, address, gateway } => {
                let (ip, gw) = if address.is_ipv4() { ("ip", "gw") } else { ("ip6", "gw6") };
                match gateway {
                    Some(g) => format!("{ip}={cidr},{gw}={g}"),
                    None => format!("{ip}={cidr}"),
                }
            }
        }
    }
}

/// Everything `deploy-image` will do, validated before anything runs.
#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub host: HostName,
    pub vm_id: VmId,
    pub template: VmId,
    /// The node name the user expects (`--node`), checked against the node reached.
    pub node_name: Option<String>,
    pub full: bool,
    /// Target storage of a full clone.
    pub storage: Option<StorageName>,
    pub seeding: Seeding,
    /// The snippets storage, or the ISO storage with [`Seeding::Iso`].
    pub seed_storage: StorageName,
    pub ip: IpConfig,
    /// A bridge for `net0`; `None` keeps the template's NIC.
    pub bridge: Option<StorageName>,
    pub start: bool,
    pub wait: Duration,
    pub cleanup_on_failure: bool,
}

/// One command of the plan, as the dry run shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Step {
    pub argv: Vec<String>,
    /// A read-only check made before any change; a dry run makes it too.
    pub check: bool,
    /// What travels on stdin, in words (never the content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Step {
    fn new(argv: Vec<String>, check: bool) -> Self {
        Self { argv, check, stdin: None, note: None }
    }

    /// The command as typed on the node.
    #[must_use]
    pub(crate) fn display(&self) -> String {
        let mut s = node::remote_command(&self.argv);
        if let Some(stdin) = &self.stdin {
            s.push_str(&format!("  < {stdin}"));
        }
        s
    }
}

fn qm(args: &[&str]) -> Vec<String> {
    std::iter::once("qm").chain(args.iter().copied()).map(str::to_string).collect()
}

impl Deployment {
    /// The seed's file name on the node: `hostsmith-<host>-user.yaml` or `-seed.iso`.
    #[must_use]
    pub(crate) fn seed_file(&self) -> String {
        match self.seeding {
            Seeding::Snippet => format!("hostsmith-{}-user.yaml", self.host),
            Seeding::Iso => format!("hostsmith-{}-seed.iso", self.host),
        }
    }

    /// The seed as a Proxmox volume: `local:snippets/hostsmith-web01-user.yaml`.
    #[must_use]
    pub(crate) fn seed_volume(&self) -> String {
        let content = match self.seeding {
            Seeding::Snippet => "snippets",
            Seeding::Iso => "iso",
        };
        format!("{}:{content}/{}", self.seed_storage, self.seed_file())
    }

    /// Where the seed lives on the node's disk when that is known without asking: the
    /// `local` storage's fixed directories. Other storages are asked with `pvesm path`.
    #[must_use]
    pub(crate) fn known_seed_path(&self) -> Option<RemotePath> {
        if self.seed_storage.as_str() != "local" {
            return None;
        }
        let dir = match self.seeding {
            Seeding::Snippet => "/var/lib/vz/snippets",
            Seeding::Iso => "/var/lib/vz/template/iso",
        };
        RemotePath::parse(&format!("{dir}/{}", self.seed_file())).ok()
    }

    #[must_use]
    pub(crate) fn status_argv(&self) -> Vec<String> {
        qm(&["status", &self.vm_id.to_string()])
    }

    #[must_use]
    pub(crate) fn config_argv(&self) -> Vec<String> {
        qm(&["config", &self.template.to_string()])
    }

    #[must_use]
    pub(crate) fn pvesm_path_argv(&self) -> Vec<String> {
        vec!["pvesm".into(), "path".into(), self.seed_volume()]
    }

    /// `qm clone TEMPLATE N --name HOST [--full] [--storage S]`.
    #[must_use]
    pub(crate) fn clone_argv(&self) -> Vec<String> {
        let (t, n) = (self.template.to_string(), self.vm_id.to_string());
        let mut argv = qm(&["clone", &t, &n, "--name", self.host.as_str()]);
        if self.full {
            argv.push("--full".into());
            if let Some(s) = &self.storage {
                argv.extend(["--storage".into(), s.to_string()]);
            }
        }
        argv
    }

    /// `qm set N --cicustom user=… --ipconfig0 … --agent enabled=1 [--net0 …]`, or with an
    /// ISO `qm set N --ide2 STORAGE:iso/FILE,media=cdrom --agent enabled=1 [--net0 …]`.
    #[must_use]
    pub(crate) fn set_argv(&self) -> Vec<String> {
        let mut argv = qm(&["set", &self.vm_id.to_string()]);
        match self.seeding {
            Seeding::Snippet => {
                argv.extend(["--cicustom".into(), format!("user={}", self.seed_volume())]);
                argv.extend(["--ipconfig0".into(), self.ip.ipconfig0()]);
            }
            Seeding::Iso => argv.extend(["--ide2".into(), format!("{},media=cdrom", self.seed_volume())]),
        }
        argv.extend(["--agent".into(), "enabled=1".into()]);
        if let Some(b) = &self.bridge {
            argv.extend(["--net0".into(), format!("virtio,bridge={b}")]);
        }
        argv
    }

    #[must_use]
    pub(crate) fn start_argv(&self) -> Vec<String> {
        qm(&["start", &self.vm_id.to_string()])
    }

    #[must_use]
    pub(crate) fn guest_argv(&self) -> Vec<String> {
        qm(&["guest", "cmd", &self.vm_id.to_string(), "network-get-interfaces"])
    }

    #[must_use]
    pub(crate) fn stop_argv(&self) -> Vec<String> {
        qm(&["stop", &self.vm_id.to_string()])
    }

    #[must_use]
    pub(crate) fn destroy_argv(&self) -> Vec<String> {
        qm(&["destroy", &self.vm_id.to_string()])
    }

    /// Every command a run sends to the node, in order. `seed_path` is the seed's path on
    /// the node when known (from [`Self::known_seed_path`] or `pvesm path`).
    #[must_use]
    pub(crate) fn steps(&self, seed_path: Option<&RemotePath>) -> Vec<Step> {
        let mut steps = vec![Step::new(node::probe_argv(), true), Step::new(self.status_argv(), true), Step::new(self.config_argv(), true)];
        if self.known_seed_path().is_none() {
            steps.push(Step::new(self.pvesm_path_argv(), true));
        }
        let shown = |p: Option<&RemotePath>| {
            p.map_or_else(|| format!("<path printed by `pvesm path {}`>", self.seed_volume()), ToString::to_string)
        };
        let dir = seed_path.map_or_else(|| "<its directory>".into(), |p| p.parent().to_string());
        steps.push(Step::new(vec!["test".into(), "-d".into(), dir], true));
        let mut install = Step::new(vec!["install".into(), "-m".into(), "0600".into(), "/dev/stdin".into(), shown(seed_path)], false);
        install.stdin = Some(match self.seeding {
            Seeding::Snippet => format!("the user-data of `hostsmith cloud-init {}` (holds its private host key)", self.host),
            Seeding::Iso => format!("a NoCloud seed image of {} (holds its private host key)", self.host),
        });
        steps.push(install);
        steps.extend([Step::new(self.clone_argv(), false), Step::new(self.set_argv(), false)]);
        if self.start {
            steps.push(Step::new(self.start_argv(), false));
            if self.ip == IpConfig::Dhcp {
                let mut guest = Step::new(self.guest_argv(), false);
                guest.note =
                    Some(format!("read-only; repeated until the guest agent reports an IPv4 address, up to {}s", self.wait.as_secs()));
                steps.push(guest);
            }
        }
        steps
    }
}

/// What `qm config TEMPLATE` says, checked against the deployment before anything changes.
///
/// # Errors
/// [`Error::Usage`] when the template cannot carry the seed the way the deployment needs.
pub(crate) fn check_template(d: &Deployment, config: &str) -> Result<()> {
    let entries: Vec<(&str, &str)> =
        config.lines().take_while(|l| !l.starts_with('[')).filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect();
    let is_template = entries.iter().any(|(k, v)| *k == "template" && *v == "1");
    if !is_template && !d.full {
        return Err(Error::Usage(format!(
            "VM {} is not a template: a linked clone needs one; convert it with `qm template {}` or pass --full",
            d.template, d.template
        )));
    }
    let drive = |k: &str| {
        ["ide", "sata", "scsi", "virtio"]
            .iter()
            .any(|b| k.strip_prefix(b).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())))
    };
    let cloudinit: Vec<&str> = entries
        .iter()
        .filter(|(k, v)| drive(k) && v.split(',').next().is_some_and(|vol| vol.contains("cloudinit")))
        .map(|(k, _)| *k)
        .collect();
    match d.seeding {
        Seeding::Snippet if cloudinit.is_empty() => Err(Error::Usage(format!(
            "template {} has no cloud-init drive, so `--cicustom` would reach nothing: add one with `qm set {} --ide2 STORAGE:cloudinit`, or use --seed-iso",
            d.template, d.template
        ))),
        Seeding::Iso if cloudinit.iter().any(|k| *k != "ide2") => Err(Error::Usage(format!(
            "template {} has a cloud-init drive on {}: a second NoCloud source would compete with the seed image on ide2; remove it from the template or deploy without --seed-iso",
            d.template,
            cloudinit.join(", ")
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Deployment {
        Deployment {
            host: HostName::parse("mqtt-01").expect("name"),
            vm_id: VmId::new(283).expect("id"),
            template: VmId::new(9000).expect("id"),
            node_name: None,
            full: false,
            storage: Some(StorageName::parse("fast").expect("storage")),
            seeding: Seeding::Snippet,
            seed_storage: StorageName::parse("local").expect("storage"),
            ip: IpConfig::Dhcp,
            bridge: None,
            start: true,
            wait: Duration::from_secs(300),
            cleanup_on_failure: false,
        }
    }

    fn words(argv: &[String]) -> String {
        argv.join(" ")
    }

    #[test]
    fn the_command_lines_of_the_seed_issue() {
        let d = deployment();
        assert_eq!(words(&d.clone_argv()), "qm clone 9000 283 --name mqtt-01", "--storage only with --full");
        assert_eq!(
            words(&d.set_argv()),
            "qm set 283 --cicustom user=local:snippets/hostsmith-mqtt-01-user.yaml --ipconfig0 ip=dhcp --agent enabled=1"
        );
        assert_eq!(d.known_seed_path().expect("local").as_str(), "/var/lib/vz/snippets/hostsmith-mqtt-01-user.yaml");
        let full = Deployment { full: true, ..deployment() };
        assert_eq!(words(&full.clone_argv()), "qm clone 9000 283 --name mqtt-01 --full --storage fast");
    }

    #[test]
    fn static_addresses_isos_and_bridges() {
        let ip = |cidr: &str, gw: Option<&str>| IpConfig::Static {
            cidr: cidr.into(),
            address: cidr.split('/').next().expect("addr").parse().expect("ip"),
            gateway: gw.map(|g| g.parse().expect("gw")),
        };
        assert_eq!(ip("192.0.2.10/24", Some("192.0.2.1")).ipconfig0(), "ip=192.0.2.10/24,gw=192.0.2.1");
        assert_eq!(ip("2001:db8::10/64", Some("2001:db8::1")).ipconfig0(), "ip6=2001:db8::10/64,gw6=2001:db8::1");
        let d = Deployment {
            seeding: Seeding::Iso,
            bridge: Some(StorageName::parse("vmbr1").expect("bridge")),
            ip: ip("192.0.2.10/24", None),
            ..deployment()
        };
        assert_eq!(
            words(&d.set_argv()),
            "qm set 283 --ide2 local:iso/hostsmith-mqtt-01-seed.iso,media=cdrom --agent enabled=1 --net0 virtio,bridge=vmbr1"
        );
        assert_eq!(d.known_seed_path().expect("local").as_str(), "/var/lib/vz/template/iso/hostsmith-mqtt-01-seed.iso");
        let other = Deployment { seed_storage: StorageName::parse("cephfs").expect("storage"), ..deployment() };
        assert_eq!(other.known_seed_path(), None);
        assert_eq!(words(&other.pvesm_path_argv()), "pvesm path cephfs:snippets/hostsmith-mqtt-01-user.yaml");
    }

    #[test]
    fn the_plan_lists_checks_then_changes() {
        let d = deployment();
        let steps = d.steps(d.known_seed_path().as_ref());
        let shown: Vec<String> = steps.iter().map(|s| words(&s.argv)).collect();
        assert_eq!(
            shown[..5],
            [
                "hostname",
                "qm status 283",
                "qm config 9000",
                "test -d /var/lib/vz/snippets",
                "install -m 0600 /dev/stdin /var/lib/vz/snippets/hostsmith-mqtt-01-user.yaml"
            ]
        );
        assert!(steps[..4].iter().all(|s| s.check) && !steps[4..].iter().any(|s| s.check));
        assert_eq!(shown.last().map(String::as_str), Some("qm guest cmd 283 network-get-interfaces"));
        let no_start = Deployment { start: false, ..deployment() };
        assert_eq!(no_start.steps(None).last().map(|s| words(&s.argv)), Some(words(&d.set_argv())));
    }

    #[test]
    fn templates_are_checked_for_what_the_seed_needs() {
        let d = deployment();
        let template = "ide2: local-lvm:vm-9000-cloudinit,media=cdrom\nname: tpl\ntemplate: 1\n";
        assert!(check_template(&d, template).is_ok());
        let err = check_template(&d, "name: tpl\ntemplate: 1\n").expect_err("no drive").to_string();
        assert!(err.contains("no cloud-init drive"), "{err}");
        let err = check_template(&d, "ide2: local-lvm:vm-9000-cloudinit,media=cdrom\n").expect_err("not a template").to_string();
        assert!(err.contains("is not a template") && err.contains("--full"), "{err}");
        assert!(check_template(&Deployment { full: true, ..deployment() }, "ide2: local-lvm:vm-9000-cloudinit\n").is_ok());
        let iso = Deployment { seeding: Seeding::Iso, ..deployment() };
        assert!(check_template(&iso, template).is_ok(), "the seed image takes ide2's place");
        let err = check_template(&iso, "scsi1: local-lvm:vm-9000-cloudinit\ntemplate: 1\n").expect_err("two sources").to_string();
        assert!(err.contains("scsi1"), "{err}");
    }
}
