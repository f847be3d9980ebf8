//! A STAND-IN Proxmox node for the `deploy-image` tests (Proxmox cannot run here): a real
//! sshd whose PATH starts with `pve_standin.py` as `qm`, `pvesm` and `pvesh` (see that
//! script's header for what it emulates, how strictly, and what it records).
//!
//! Everything runs inside the namespaces of a first-boot [`Machine`]: the node's sshd, the
//! VM the stand-in "boots" (the Machine's debootstrap root, real cloud-init, real sshd on
//! port 22 of the VM's address, which the harness puts on `lo`), and `hostsmith` itself,
//! run through `nsenter` so it reaches both on loopback. In that mount namespace `/var/lib`
//! is a tmpfs holding `vz/snippets` and `vz/template/iso`, so hostsmith uploads to the very
//! paths it would use on Proxmox and nothing lands on this machine. `/sys` is the
//! namespace's own, with real bridges `vmbr0` and `vmbr1`, which `qm start` and hostsmith
//! both look for as `/sys/class/net/BRIDGE`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

use hostsmith::ssh_keys::Keypair;

use crate::common::{self, TestFleet, peer, run};
use crate::first_boot::{self, Machine};
use crate::sshd::Sshd;

/// The address the stand-in's "DHCP" gives the VM.
pub(crate) const LEASE: &str = "10.0.2.15";
/// A static IPv6 address a test may give the VM (on the namespace's `lo`, like LEASE).
pub(crate) const STATIC6: &str = "fd00:2::15";
/// The node name the stand-in answers to (its namespace's host name).
pub(crate) const NODE: &str = "pve-standin";
/// The ssh alias of the node in the test's ssh config.
pub(crate) const PVE: &str = "root@pve-standin";

/// How the stand-in boots a started VM.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boot {
    /// Apply the seed with real cloud-init.
    Seed,
    /// Ignore the seed and serve a key of the VM's own (a template that makes one).
    OwnKey,
    /// Nothing boots in this test: no copy of the root is made.
    Never,
}

/// How the node differs from a plain single node.
#[derive(Default)]
pub(crate) struct Setup<'a> {
    /// qm subcommands that fail as if QEMU could not run them.
    pub fail: &'a [&'a str],
    /// Guests the cluster has besides this node's VMs: id → {"type": "qemu"|"lxc", "node": N}.
    pub cluster: Option<serde_json::Value>,
    /// Another client takes the id `pvesh get /cluster/nextid` answers, right after it does.
    pub race: bool,
}

pub(crate) struct StandIn {
    pub state: PathBuf,
    pub ssh_config: PathBuf,
    _sshd: Sshd,
    pub machine: Machine,
    _dir: tempfile::TempDir,
}

impl StandIn {
    /// The node, or `None` (test skipped) when a peer is missing.
    pub(crate) fn start(f: &TestFleet, boot: Boot, setup: &Setup<'_>) -> Option<Self> {
        if !first_boot::peers() || peer("python3").is_none() {
            return None;
        }
        let machine = if boot == Boot::Never { Machine::bare() } else { Machine::new(first_boot::Release::Bookworm) };
        assert!(!machine.root.starts_with("/var/lib"), "the e2e cache must not be under /var/lib, which the stand-in hides");
        machine.sh(&format!(
            "hostname {NODE} && ip addr add {LEASE}/32 dev lo && ip addr add {STATIC6}/128 dev lo nodad \
             && mount -t sysfs sysfs /sys && ip link add vmbr0 type bridge && ip link add vmbr1 type bridge \
             && mount -t tmpfs -o mode=0755 tmpfs /var/lib && mkdir -p /var/lib/vz/snippets /var/lib/vz/template/iso"
        ));
        let dir = tempfile::tempdir_in(f.tmp.path()).expect("tmp");
        let state = dir.path().join("node");
        std::fs::create_dir_all(state.join("bin")).expect("bin");
        std::fs::create_dir_all(state.join("vms")).expect("vms");
        std::fs::create_dir_all(state.join("shared/snippets")).expect("shared");
        let qm = state.join("bin/qm");
        std::fs::write(&qm, include_str!("pve_standin.py")).expect("qm");
        std::fs::set_permissions(&qm, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::symlink("qm", state.join("bin/pvesm")).expect("pvesm");
        std::os::unix::fs::symlink("qm", state.join("bin/pvesh")).expect("pvesh");
        let config = standin_config(&state, &machine, boot, setup);
        std::fs::write(state.join("standin.json"), config.to_string()).expect("config");

        // The node's sshd, inside the machine's namespaces; root logs in with a test key.
        let client = Keypair::generate("hostsmith-test@workstation").expect("key");
        let client_key = dir.path().join("client_key");
        hostsmith::atomic::create_secret(&client_key, client.openssh_private().expect("openssh").as_bytes()).expect("key");
        std::fs::write(dir.path().join("authorized_keys"), client.public_line() + "\n").expect("authorized_keys");
        let host_key = Keypair::generate("root@pve-standin").expect("key");
        let extra = format!(
            "AuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nSetEnv PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
            dir.path().join("authorized_keys").display(),
            state.join("bin").display()
        );
        let sshd_path = peer("sshd").unwrap_or_else(|| PathBuf::from("/usr/sbin/sshd"));
        let probe = |port: u16| machine.sh(&format!("ssh-keyscan -T 1 -p {port} 127.0.0.1 2>/dev/null || true")).contains("ssh-");
        let sshd = Sshd::start_via(machine.inside(sshd_path.to_str().expect("utf8")), dir.path(), &host_key, &extra, probe);

        // The user's side: an ssh config naming the node, its host key pinned.
        let known = dir.path().join("known_hosts");
        std::fs::write(&known, format!("[127.0.0.1]:{} {}\n", sshd.port, host_key.public_line())).expect("known_hosts");
        let ssh_config = dir.path().join("ssh_config");
        std::fs::write(
            &ssh_config,
            format!(
                "Host pve-standin\n  HostName 127.0.0.1\n  Port {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
                sshd.port,
                client_key.display(),
                known.display()
            ),
        )
        .expect("ssh_config");
        Some(Self { state, ssh_config, _sshd: sshd, machine, _dir: dir })
    }

    /// A VM config on the node, as `qm config` prints it.
    pub(crate) fn add_vm(&self, id: u32, config: &str) {
        std::fs::write(self.state.join(format!("vms/{id}.conf")), config).expect("vm");
    }

    /// A cloud-init template like the one docs/proxmox.md describes.
    pub(crate) fn add_template(&self, id: u32) {
        self.add_vm(id, &template_config(id, "local-lvm"));
    }

    /// Every argv `qm` and `pvesm` received, in order.
    pub(crate) fn log(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.state.join("qm.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    /// Every VM config file on the node, for "nothing changed" checks.
    pub(crate) fn vms(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = std::fs::read_dir(self.state.join("vms"))
            .expect("vms")
            .map(|e| e.expect("entry").path())
            .map(|p| (p.file_name().expect("name").to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap_or_default()))
            .collect();
        out.sort();
        out
    }

    /// The files in the node's snippets and ISO directories.
    pub(crate) fn uploads(&self) -> String {
        self.machine.sh("ls -A /var/lib/vz/snippets /var/lib/vz/template/iso")
    }

    /// Every file on the node (its `/var/lib` and the stand-in's state: VM configs,
    /// cloud-init drives, logs) that contains `needle`.
    pub(crate) fn files_containing(&self, needle: &str) -> Vec<String> {
        let out = self.machine.inside("grep").args(["-r", "-l", "-F", "-e", needle, "/var/lib"]).arg(&self.state).output().expect("grep");
        assert!(out.status.code().is_some_and(|c| c < 2), "grep: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    /// Runs the stand-in's `qm ARGS` on the node, as an operator at its shell would.
    pub(crate) fn qm(&self, args: &[&str]) -> String {
        let words: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        self.machine.sh(&format!("{}/qm {}", self.state.join("bin").display(), words.join(" ")))
    }

    /// `hostsmith --fleet F ARGS` inside the node's namespaces, the fleet configured for it.
    pub(crate) fn hostsmith(&self, f: &TestFleet, args: &[&str]) -> Output {
        let mut c = self.machine.inside(common::bin().to_str().expect("utf8"));
        c.arg("--fleet").arg(&f.dir).args(args);
        f.env(&mut c);
        run(&mut c)
    }

    /// A `[proxmox]` table for this node, appended to the fleet's hostsmith.toml.
    pub(crate) fn configure(&self, f: &TestFleet, template: u32) {
        let path = f.dir.join("hostsmith.toml");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&format!(
            "\n[proxmox]\npve = \"{PVE}\"\nnode = \"{NODE}\"\ntemplate = {template}\nssh_config = \"{}\"\nwait = 90\n",
            self.ssh_config.display()
        ));
        std::fs::write(path, text).expect("config");
        // The node's ssh configuration is a setting that runs code: trusted like a user would.
        common::ok(&f.run(&["trust"]));
    }

    /// The fingerprint of the ed25519 key the booted root holds.
    pub(crate) fn served_fingerprint(&self) -> String {
        let text = std::fs::read_to_string(self.machine.path("etc/ssh/ssh_host_ed25519_key.pub")).expect("pub");
        hostsmith::ssh_keys::fingerprint(&hostsmith::ssh_keys::parse_public(&text).expect("key"))
    }
}

impl Drop for StandIn {
    /// Stops the VM sshds the stand-in started (by the pids it recorded).
    fn drop(&mut self) {
        for e in std::fs::read_dir(self.state.join("vms")).into_iter().flatten().flatten() {
            let p = e.path();
            if p.to_string_lossy().ends_with(".sshd.pid")
                && let Ok(pid) = std::fs::read_to_string(&p)
            {
                let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

/// `standin.json`: the node's name, the root it boots, its storages, pools and cluster.
fn standin_config(state: &std::path::Path, machine: &Machine, boot: Boot, setup: &Setup<'_>) -> serde_json::Value {
    serde_json::json!({
        "node": NODE,
        "root": machine.root,
        "lease": LEASE,
        "boot": if boot == Boot::Seed { "seed" } else { "own-key" },
        "fail": setup.fail,
        "cluster": setup.cluster.clone().unwrap_or_else(|| serde_json::json!({})),
        "race": setup.race,
        "pools": ["pool1"],
        "storages": {
            "local": { "type": "dir", "path": "/var/lib/vz", "content": ["iso", "vztmpl", "backup", "snippets"], "shared": false },
            "local-lvm": { "type": "lvmthin", "content": ["images", "rootdir"], "shared": false },
            "thick": { "type": "lvm", "content": ["images"], "shared": false },
            "shared": { "type": "dir", "path": state.join("shared"), "content": ["snippets", "iso"], "shared": true },
        },
    })
}

/// The configuration of a cloud-init template whose disk is on `storage`, as `qm config`
/// prints it.
pub(crate) fn template_config(id: u32, storage: &str) -> String {
    format!(
        "agent: enabled=1\nboot: order=scsi0\ncores: 2\nide2: local-lvm:vm-{id}-cloudinit,media=cdrom\nmemory: 2048\nname: nixos-cloud-init\n\
         net0: virtio=BC:24:11:00:00:01,bridge=vmbr0\nscsi0: {storage}:base-{id}-disk-0,size=8G\nscsihw: virtio-scsi-single\ntemplate: 1\n"
    )
}

/// The admin's public key file the seeds authorize.
pub(crate) fn admin_public(f: &TestFleet) -> PathBuf {
    first_boot::admin_key(f.tmp.path()).1
}
