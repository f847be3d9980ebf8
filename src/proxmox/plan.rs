//! A validated `deploy-image` and the exact command lines it runs on the node. The real run
//! and `--dry-run` build their argv vectors with the same functions here, so the plan a dry
//! run prints is the list of commands a real run sends.

use std::net::IpAddr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::host_name::HostName;

use super::names::{BridgeName, RemotePath, StorageName, VmId};
use super::node;
use super::settings;
pub(crate) use super::settings::IpConfig;
use super::vm_config::{self, VmConfig};

/// How the seed reaches the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seeding {
    /// The user-data and meta-data as snippets, named with `--cicustom`: Proxmox's own
    /// cloud-init drive carries them, with Proxmox's network-config from `--ipconfig0`.
    Snippet,
    /// A complete NoCloud ISO (user-data, meta-data, network-config) attached as a CD-ROM
    /// on `ide2`, for templates without a Proxmox cloud-init drive.
    Iso,
}

/// The VM id asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdChoice {
    Fixed(VmId),
    /// The cluster's next free id (`pvesh get /cluster/nextid`).
    Auto,
}

/// A new size for the boot disk: `20G` (absolute) or `+10G` (grown by), as `qm resize`
/// takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiskSize {
    pub text: String,
    pub grow: bool,
    pub bytes: u64,
}

impl DiskSize {
    /// # Errors
    /// [`Error::Usage`] for anything but `[+]NUMBER[K|M|G|T]` above zero.
    pub(crate) fn parse(s: &str) -> Result<Self> {
        let (grow, number) = s.strip_prefix('+').map_or((false, s), |n| (true, n));
        match vm_config::parse_size(number) {
            Some(bytes) if bytes > 0 => Ok(Self { text: s.to_string(), grow, bytes }),
            _ => Err(Error::Usage(format!(
                "disk size `{}` is invalid: use a size like 20G (the new size) or +10G (grown by), with K, M, G or T",
                s.escape_debug()
            ))),
        }
    }
}

/// Settings of the new VM besides its seed; `None` keeps the template's.
#[derive(Debug, Clone, Default)]
pub(crate) struct VmSettings {
    pub bridge: Option<BridgeName>,
    pub vlan: Option<u16>,
    pub pool: Option<String>,
    pub tags: Option<String>,
    pub description: Option<String>,
    pub onboot: Option<bool>,
    pub cores: Option<u32>,
    /// MiB.
    pub memory: Option<u32>,
    pub disk_size: Option<DiskSize>,
    pub nameservers: Vec<IpAddr>,
    pub searchdomain: Option<String>,
}

/// Everything `deploy-image` will do, validated before anything runs.
#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub host: HostName,
    pub vm_id: IdChoice,
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
    pub vm: VmSettings,
    pub start: bool,
    pub wait: Duration,
    pub cleanup_on_failure: bool,
    /// Leave the first-boot seed, private key included, on the node.
    pub keep_seed: bool,
    /// Give the host a new key before deploying.
    pub rotate: bool,
}

/// A file hostsmith puts on the node for one VM. Named by VM id, so a host redeployed as
/// a new VM never touches the files the old VM still boots from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeedFile {
    /// The meta-data snippet: the instance id hostsmith owns.
    Meta,
    /// The first-boot user-data snippet, which holds the private host key.
    UserWithKey,
    /// The user-data snippet after the first boot: the same, without the private key.
    User,
    /// The first-boot seed image, which holds the private host key.
    IsoWithKey,
    /// The seed image after the first boot, without the private key.
    Iso,
}

impl SeedFile {
    #[must_use]
    pub(crate) fn name(self, id: &str) -> String {
        match self {
            Self::Meta => format!("hostsmith-{id}-meta.yaml"),
            Self::UserWithKey => format!("hostsmith-{id}-user-key.yaml"),
            Self::User => format!("hostsmith-{id}-user.yaml"),
            Self::IsoWithKey => format!("hostsmith-{id}-seed-key.iso"),
            Self::Iso => format!("hostsmith-{id}-seed.iso"),
        }
    }

    #[must_use]
    pub(crate) fn holds_key(self) -> bool {
        matches!(self, Self::UserWithKey | Self::IsoWithKey)
    }
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

    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
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

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_string()).collect()
}

/// A deployment with what the node said: the VM id, the node's name, the template's
/// configuration and the seed directory. In a dry run that could not reach the node, the
/// unknown parts are `None` (the template empty) and shown as placeholders.
#[derive(Debug, Clone)]
pub(crate) struct Plan<'a> {
    pub d: &'a Deployment,
    pub vm_id: Option<VmId>,
    pub node: Option<String>,
    pub template: VmConfig,
    pub seed_dir: Option<RemotePath>,
}

impl Plan<'_> {
    /// The VM id as it appears in commands.
    #[must_use]
    pub(crate) fn id(&self) -> String {
        self.vm_id.map_or_else(|| "<next free id>".into(), |i| i.to_string())
    }

    fn node_name(&self) -> String {
        self.node.clone().or_else(|| self.d.node_name.clone()).unwrap_or_else(|| "<node>".into())
    }

    /// The files this deployment puts on the node, in upload order. The key-less copy
    /// goes up with the rest, so removing the key later (`--keep-seed`, `--no-start`)
    /// takes only `qm` commands.
    #[must_use]
    pub(crate) fn uploads(&self) -> Vec<SeedFile> {
        match self.d.seeding {
            Seeding::Snippet => vec![SeedFile::Meta, SeedFile::User, SeedFile::UserWithKey],
            Seeding::Iso => vec![SeedFile::Iso, SeedFile::IsoWithKey],
        }
    }

    /// The file that holds the private key, and its key-less successor.
    #[must_use]
    pub(crate) fn keyed_and_keyless(&self) -> (SeedFile, SeedFile) {
        match self.d.seeding {
            Seeding::Snippet => (SeedFile::UserWithKey, SeedFile::User),
            Seeding::Iso => (SeedFile::IsoWithKey, SeedFile::Iso),
        }
    }

    /// The file as a Proxmox volume: `local:snippets/hostsmith-283-meta.yaml`.
    #[must_use]
    pub(crate) fn volume(&self, f: SeedFile) -> String {
        let content = if self.d.seeding == Seeding::Snippet { "snippets" } else { "iso" };
        format!("{}:{content}/{}", self.d.seed_storage, f.name(&self.id()))
    }

    /// Where the file is on the node's disk, once `pvesm path` has said where the
    /// storage keeps its snippets (or ISOs).
    #[must_use]
    pub(crate) fn path(&self, f: SeedFile) -> Option<RemotePath> {
        let dir = self.seed_dir.as_ref()?;
        RemotePath::parse(&format!("{dir}/{}", f.name(&self.id()))).ok()
    }

    fn shown_path(&self, f: SeedFile) -> String {
        self.path(f).map_or_else(|| format!("<path of {}>", self.volume(f)), |p| p.to_string())
    }

    /// `pvesh get /cluster/nextid [--vmid N]`: free cluster-wide (VMs and containers on
    /// every node), read-only.
    #[must_use]
    pub(crate) fn nextid_argv(&self) -> Vec<String> {
        let mut argv = words(&["pvesh", "get", "/cluster/nextid"]);
        if let IdChoice::Fixed(id) = self.d.vm_id {
            argv.extend(["--vmid".into(), id.to_string()]);
        }
        argv.extend(["--output-format".into(), "json".into()]);
        argv
    }

    #[must_use]
    pub(crate) fn config_argv(&self) -> Vec<String> {
        words(&["qm", "config", &self.d.template.to_string()])
    }

    /// The node's storages: which exist, are active, and hold which content.
    #[must_use]
    pub(crate) fn storage_argv(&self) -> Vec<String> {
        words(&["pvesh", "get", &format!("/nodes/{}/storage", self.node_name()), "--output-format", "json"])
    }

    /// Whether the template's disks can be cloned linked (the check Proxmox's own clone
    /// dialog makes).
    #[must_use]
    pub(crate) fn feature_argv(&self) -> Vec<String> {
        let path = format!("/nodes/{}/qemu/{}/feature", self.node_name(), self.d.template);
        words(&["pvesh", "get", &path, "--feature", "clone", "--output-format", "json"])
    }

    #[must_use]
    pub(crate) fn pvesm_path_argv(&self) -> Vec<String> {
        words(&["pvesm", "path", &self.volume(self.uploads()[0])])
    }

    /// Lists the files of this VM id already in the seed directory (and fails when the
    /// directory does not exist).
    #[must_use]
    pub(crate) fn existing_argv(&self) -> Vec<String> {
        let dir = self.seed_dir.as_ref().map_or_else(|| format!("<directory of {}>", self.volume(SeedFile::Meta)), ToString::to_string);
        words(&["find", &dir, "-maxdepth", "1", "-name", &format!("hostsmith-{}-*", self.id())])
    }

    /// The bridge `net0` will use, when it is known.
    #[must_use]
    pub(crate) fn bridge(&self) -> Option<String> {
        settings::bridge_of(&self.template, self.net0().as_deref())
    }

    /// `test -d /sys/class/net/BRIDGE`, the check `qm start` itself makes.
    #[must_use]
    pub(crate) fn bridge_argv(bridge: &str) -> Vec<String> {
        words(&["test", "-d", &format!("/sys/class/net/{bridge}")])
    }

    /// `qm clone TEMPLATE N --name HOST [--full [--storage S]] [--pool P]`.
    #[must_use]
    pub(crate) fn clone_argv(&self) -> Vec<String> {
        let d = self.d;
        let mut argv = words(&["qm", "clone", &d.template.to_string(), &self.id(), "--name", d.host.as_str()]);
        if d.full {
            argv.push("--full".into());
            if let Some(s) = &d.storage {
                argv.extend(["--storage".into(), s.to_string()]);
            }
        }
        if let Some(p) = &d.vm.pool {
            argv.extend(["--pool".into(), p.clone()]);
        }
        argv
    }

    fn net0(&self) -> Option<String> {
        settings::net0(&self.template, self.d.vm.bridge.as_ref(), self.d.vm.vlan)
    }

    /// How the VM finds its seed: `--cicustom user=…,meta=…` and `--ipconfig0`, or
    /// `--ide2 ISO,media=cdrom`.
    fn seed_options(&self, user: SeedFile) -> Vec<String> {
        match self.d.seeding {
            Seeding::Snippet => {
                let own_network = matches!(self.d.ip, IpConfig::Static { .. });
                let cicustom = settings::cicustom(&self.template, &self.volume(user), &self.volume(SeedFile::Meta), own_network);
                vec!["--cicustom".into(), cicustom]
            }
            Seeding::Iso => vec!["--ide2".into(), format!("{},media=cdrom", self.volume(user))],
        }
    }

    /// `qm set N` with the seed, the network and the VM settings, each merged into the
    /// template's.
    #[must_use]
    pub(crate) fn set_argv(&self) -> Vec<String> {
        let (d, vm) = (self.d, &self.d.vm);
        let mut argv = words(&["qm", "set", &self.id()]);
        argv.extend(self.seed_options(self.keyed_and_keyless().0));
        let mut opt = |k: &str, v: String| argv.extend([format!("--{k}"), v]);
        if d.seeding == Seeding::Snippet {
            opt("ipconfig0", settings::ipconfig0(&self.template, &d.ip));
            if !vm.nameservers.is_empty() {
                opt("nameserver", vm.nameservers.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "));
            }
            if let Some(s) = &vm.searchdomain {
                opt("searchdomain", s.clone());
            }
        }
        if d.ip == IpConfig::Dhcp
            && let Some(agent) = settings::agent(&self.template)
        {
            opt("agent", agent);
        }
        if let Some(net) = self.net0() {
            opt("net0", net);
        }
        if let Some(c) = vm.cores {
            opt("cores", c.to_string());
        }
        if let Some(m) = vm.memory {
            opt("memory", m.to_string());
        }
        if let Some(b) = vm.onboot {
            opt("onboot", u8::from(b).to_string());
        }
        if let Some(t) = &vm.tags {
            opt("tags", t.clone());
        }
        if let Some(t) = &vm.description {
            opt("description", t.clone());
        }
        argv
    }

    /// `qm resize N DISK SIZE` for `--disk-size`.
    #[must_use]
    pub(crate) fn resize_argv(&self) -> Option<Vec<String>> {
        let size = self.d.vm.disk_size.as_ref()?;
        let disk = self.template.boot_disk().map_or_else(|| "<boot disk>".into(), |d| d.key);
        Some(words(&["qm", "resize", &self.id(), &disk, &size.text]))
    }

    #[must_use]
    pub(crate) fn start_argv(&self) -> Vec<String> {
        words(&["qm", "start", &self.id()])
    }

    #[must_use]
    pub(crate) fn guest_argv(&self) -> Vec<String> {
        words(&["qm", "guest", "cmd", &self.id(), "network-get-interfaces"])
    }

    #[must_use]
    pub(crate) fn stop_argv(&self) -> Vec<String> {
        words(&["qm", "stop", &self.id()])
    }

    #[must_use]
    pub(crate) fn destroy_argv(&self) -> Vec<String> {
        words(&["qm", "destroy", &self.id()])
    }

    /// `qm set N` pointing the VM at the key-less seed (same meta-data, so the same
    /// instance id).
    #[must_use]
    pub(crate) fn reseed_argv(&self) -> Vec<String> {
        let mut argv = words(&["qm", "set", &self.id()]);
        argv.extend(self.seed_options(self.keyed_and_keyless().1));
        argv
    }

    /// `qm cloudinit update N`: Proxmox rebuilds the cloud-init drive from the key-less
    /// snippet now rather than at the next start. Only the snippet method has that drive.
    #[must_use]
    pub(crate) fn cloudinit_update_argv(&self) -> Option<Vec<String>> {
        (self.d.seeding == Seeding::Snippet).then(|| words(&["qm", "cloudinit", "update", &self.id()]))
    }

    /// The read-only checks, in order.
    #[must_use]
    pub(crate) fn check_steps(&self) -> Vec<Step> {
        let mut steps = vec![
            Step::new(node::probe_argv(), true),
            Step::new(self.nextid_argv(), true),
            Step::new(self.config_argv(), true),
            Step::new(self.storage_argv(), true),
        ];
        if !self.d.full {
            steps.push(Step::new(self.feature_argv(), true));
        }
        steps.push(Step::new(self.pvesm_path_argv(), true));
        steps.push(Step::new(self.existing_argv(), true).note("must list nothing: these names belong to this VM id"));
        if let Some(b) = self.bridge() {
            steps.push(Step::new(Self::bridge_argv(&b), true));
        }
        steps
    }

    fn upload(&self, f: SeedFile) -> Step {
        let mut s = Step::new(node::install_argv_shown(&self.shown_path(f)), false);
        let host = &self.d.host;
        s.stdin = Some(match f {
            SeedFile::Meta => "the meta-data: hostsmith's instance id for this VM".into(),
            SeedFile::UserWithKey => format!("the user-data of `hostsmith cloud-init {host}` (holds its private host key)"),
            SeedFile::User => format!("the same user-data without the private host key ({host} keeps the key it has)"),
            SeedFile::IsoWithKey => format!("a NoCloud seed image of {host} (holds its private host key)"),
            SeedFile::Iso => format!("the same seed image without the private host key ({host} keeps the key it has)"),
        });
        s
    }

    /// Every command a run sends to the node, in order.
    #[must_use]
    pub(crate) fn steps(&self) -> Vec<Step> {
        let mut steps = self.check_steps();
        steps.push(Step::new(self.clone_argv(), false));
        steps.extend(self.uploads().into_iter().map(|f| self.upload(f)));
        steps.push(Step::new(self.set_argv(), false));
        if let Some(r) = self.resize_argv() {
            steps.push(Step::new(r, false));
        }
        if !self.d.start {
            return steps;
        }
        steps.push(Step::new(self.start_argv(), false));
        if self.d.ip == IpConfig::Dhcp {
            let wait = self.d.wait.as_secs();
            steps.push(Step::new(self.guest_argv(), false).note(format!(
                "read-only; repeated until the guest agent reports an IPv4 address, up to {wait}s; then the served host key is verified from here"
            )));
        }
        if !self.d.keep_seed {
            steps.extend(self.seal_steps());
        }
        steps
    }

    /// After the key is verified: the key-less seed in, the keyed one out.
    fn seal_steps(&self) -> Vec<Step> {
        let keyed = self.keyed_and_keyless().0;
        let mut steps = vec![Step::new(self.reseed_argv(), false).note("after the served key is verified")];
        if let Some(u) = self.cloudinit_update_argv() {
            steps.push(Step::new(u, false).note("rebuilds the cloud-init drive without the private key"));
        }
        steps.push(Step::new(node::remove_argv_shown(&self.shown_path(keyed)), false));
        steps
    }
}

/// What `qm config TEMPLATE` says, checked against the deployment before anything changes.
///
/// # Errors
/// [`Error::Usage`] when the template cannot carry the seed the way the deployment needs,
/// or the boot disk would have to shrink.
pub(crate) fn check_template(d: &Deployment, config: &VmConfig) -> Result<()> {
    if !config.is_template() && !d.full {
        return Err(Error::Usage(format!(
            "VM {} is not a template: a linked clone needs one; convert it with `qm template {}` or pass --full",
            d.template, d.template
        )));
    }
    let cloudinit = config.cloudinit_drives();
    match d.seeding {
        Seeding::Snippet if cloudinit.is_empty() => {
            return Err(Error::Usage(format!(
                "template {} has no cloud-init drive, so `--cicustom` would reach nothing: add one with `qm set {} --ide2 STORAGE:cloudinit`, or use --seed-iso",
                d.template, d.template
            )));
        }
        Seeding::Iso if cloudinit.iter().any(|k| *k != "ide2") => {
            return Err(Error::Usage(format!(
                "template {} has a cloud-init drive on {}: a second NoCloud source would compete with the seed image on ide2; remove it from the template or deploy without --seed-iso",
                d.template,
                cloudinit.join(", ")
            )));
        }
        _ => {}
    }
    if let Some(size) = &d.vm.disk_size {
        check_disk_size(d, config, size)?;
    }
    if d.seeding == Seeding::Snippet
        && matches!(d.ip, IpConfig::Dhcp)
        && settings::template_network(config).is_some()
        && (!d.vm.nameservers.is_empty() || d.vm.searchdomain.is_some())
    {
        return Err(Error::Usage(format!(
            "template {}'s cicustom names its own network-config, which Proxmox uses instead of --nameserver/--searchdomain: put them in that file, or pass --ip (which replaces it)",
            d.template
        )));
    }
    Ok(())
}

fn check_disk_size(d: &Deployment, config: &VmConfig, size: &DiskSize) -> Result<()> {
    let Some(disk) = config.boot_disk() else {
        return Err(Error::Usage(format!("template {} has no disk to grow with --disk-size", d.template)));
    };
    if let Some(current) = disk.size
        && !size.grow
        && size.bytes <= current
    {
        return Err(Error::Usage(format!(
            "--disk-size {} is not larger than template {}'s {} ({} bytes): Proxmox cannot shrink a disk; give a larger size or +SIZE",
            size.text, d.template, disk.key, current
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
