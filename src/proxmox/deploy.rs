//! The `deploy-image` flow against a node: check everything (read-only), ensure the host's
//! identity, clone, upload the seed, configure, start, wait, verify, record — and then take
//! the private key off the node: the VM is pointed at a key-less copy of its user-data
//! (same meta-data, so the same instance id: cloud-init never sees a new instance, and
//! `ssh_deletekeys` never runs again), its cloud-init drive is rebuilt, and the keyed
//! file is removed.
//!
//! Every change to the node is tracked, so a failure after the first one says exactly what
//! exists and how to remove it (or removes it, with `--cleanup-on-failure`). Only what this
//! run created is ever removed: a failed `qm clone` leaves the VM id alone, because it may
//! be another's.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::address::Address;
use crate::admin_identity::Identities;
use crate::cloud_init::{self, Network, SeedInputs, SeedParams};
use crate::enroll::{self, KeySource, Options, Report, Request};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::output::Output;
use crate::process::Finished;
use crate::record::HostRecord;
use crate::ssh_keys::Keypair;
use crate::{atomic, seed};

use super::check::{self, Checked, QUICK};
use super::names::{RemotePath, VmId};
use super::node::{self, Node, remote_command};
use super::plan::{IdChoice, IpConfig, Plan, SeedFile, Seeding};
use super::wait::{self, Spinner};

/// Timeout of a clone (a full clone copies whole disks) and of start, stop and destroy.
const CLONE: Duration = Duration::from_secs(3600);
const POWER: Duration = Duration::from_secs(300);

/// The result of a deployment.
#[derive(Debug)]
pub(crate) struct Deployed {
    pub node_name: String,
    pub vm_id: VmId,
    pub identity: Report,
    /// `None` with `--no-start`.
    pub address: Option<Address>,
    pub fingerprint: String,
    /// Every command that changed the node, in order.
    pub commands: Vec<Vec<String>>,
    /// The file on the node that still holds the private key (`--keep-seed`,
    /// `--no-start`), and the commands that remove it once the VM has booted.
    pub keyed_left: Option<(RemotePath, Vec<Vec<String>>)>,
    pub shared_seed_storage: bool,
}

/// What goes to the node: each seed file of [`Plan::uploads`] with its bytes, in order.
type Seeds = Vec<(SeedFile, Zeroizing<Vec<u8>>)>;

/// Runs the deployment. `inputs` shape the seed exactly as for `hostsmith cloud-init`.
///
/// # Errors
/// Any failed check (nothing changed), or a failure after a change, as
/// [`Error::LeftOnNode`].
pub(crate) fn deploy(fleet: &Fleet, d: &super::plan::Deployment, node: &Node, inputs: &SeedInputs, out: &Output) -> Result<Deployed> {
    let node_name = node.probe(QUICK)?;
    let Checked { plan, shared_seed_storage } = check::check(node, d, &node_name)?;
    let identity = enroll::run(
        fleet,
        vec![Request { host: d.host.clone(), source: KeySource::Generate }],
        Options { rotate: d.rotate, dry_run: false },
    )?;
    for h in &identity.hosts {
        let action = serde_json::to_value(h.action).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        out.line(format!("identity: {} {action}, {}", h.name, h.fingerprint));
    }
    let (record, key) = crate::host_file::host_keypair(fleet, &d.host, &mut Identities::for_fleet(fleet))?;
    let seeds = render_seeds(&plan, &key, inputs)?;
    drop(key);

    let mut run = Run { node, plan, node_name, out, left: Left::default(), commands: Vec::new() };
    let (address, fingerprint) = match run.changes(&seeds, &record) {
        Ok(done) => done,
        Err(e) => return Err(run.failure(e)),
    };
    let vm_id = run.plan.vm_id.ok_or_else(|| Error::Program { program: "qm".into(), message: "no VM id".into() })?;
    record_deployment(fleet, &d.host, vm_id, &run.node_name, address.as_ref())?;
    let keyed = run.plan.path(run.plan.keyed_and_keyless().0);
    let finish = run.seal_argvs();
    let keyed_left = if d.keep_seed || !d.start {
        keyed.map(|p| (p, finish))
    } else {
        run.seal(&finish)?;
        None
    };
    Ok(Deployed {
        node_name: run.node_name,
        vm_id,
        identity,
        address,
        fingerprint,
        commands: run.commands,
        keyed_left,
        shared_seed_storage,
    })
}

/// The seed files' bytes: the user-data exactly as `hostsmith cloud-init` writes it (and
/// without the private key), the meta-data with hostsmith's instance id; or NoCloud
/// images of both, built in a private temporary directory (removed afterwards).
fn render_seeds(plan: &Plan<'_>, key: &Keypair, inputs: &SeedInputs) -> Result<Seeds> {
    let d = plan.d;
    let network = match (&d.seeding, &d.ip) {
        (Seeding::Iso, IpConfig::Static { cidr, gateway, .. }) => {
            Some(Network::Static { addresses: vec![cidr.clone()], gateway: *gateway, dns: d.vm.nameservers.clone() })
        }
        _ => None,
    };
    let params = |private_key: bool| SeedParams {
        host: &d.host,
        key,
        user: &inputs.user,
        authorized_keys: &inputs.authorized_keys,
        sudo: inputs.sudo.as_deref(),
        network: network.clone(),
        private_key,
    };
    let (with_key, without) = (cloud_init::render(&params(true))?, cloud_init::render(&params(false))?);
    let text = |t: &str| Zeroizing::new(t.as_bytes().to_vec());
    plan.uploads()
        .into_iter()
        .map(|f| {
            let bytes = match f {
                SeedFile::Meta => text(&with_key.meta_data),
                SeedFile::User => text(&without.user_data),
                SeedFile::UserWithKey => text(&with_key.user_data),
                SeedFile::Iso => iso(&without)?,
                SeedFile::IsoWithKey => iso(&with_key)?,
            };
            Ok((f, bytes))
        })
        .collect()
}

fn iso(rendered: &cloud_init::Seed) -> Result<Zeroizing<Vec<u8>>> {
    let tmp = tempfile::Builder::new()
        .prefix("hostsmith-seed-")
        .tempdir()
        .map_err(|source| Error::Write { path: std::env::temp_dir(), source })?;
    let dir = tmp.path().join("seed");
    seed::write_seed_dir(&dir, rendered)?;
    let iso = tmp.path().join("seed.iso");
    seed::write_iso(&iso, &dir)?;
    let bytes = std::fs::read(&iso).map_err(|source| Error::Read { path: iso.clone(), source })?;
    Ok(Zeroizing::new(bytes))
}

/// What this run has created on the node so far.
#[derive(Default)]
struct Left {
    files: Vec<(SeedFile, RemotePath)>,
    vm: bool,
    started: bool,
}

struct Run<'a> {
    node: &'a Node,
    plan: Plan<'a>,
    node_name: String,
    out: &'a Output,
    left: Left,
    commands: Vec<Vec<String>>,
}

impl Run<'_> {
    fn changes(&mut self, seeds: &Seeds, record: &HostRecord) -> Result<(Option<Address>, String)> {
        self.clone_vm()?;
        for (f, bytes) in seeds {
            let path = self.plan.path(*f).ok_or_else(|| Error::Program { program: "pvesm".into(), message: "no seed path".into() })?;
            self.announce(&node::install_argv(&path), Some(bytes.len()));
            // Marked before the upload: a failed `install` may leave a partial file.
            self.left.files.push((*f, path.clone()));
            self.node.install_secret_file(&path, bytes, QUICK)?;
        }
        self.qm_ok(&self.plan.set_argv(), QUICK)?;
        if let Some(resize) = self.plan.resize_argv() {
            self.qm_ok(&resize, POWER)?;
        }
        if !self.plan.d.start {
            return Ok((None, record.fingerprint.clone()));
        }
        self.left.started = true;
        self.qm_ok(&self.plan.start_argv(), POWER)?;
        let spinner = Spinner::new(self.out.quiet);
        let (addr, fingerprint) = wait::address_and_key(self.node, &self.plan, record, &spinner)?;
        Ok((Some(addr), fingerprint))
    }

    /// `qm clone`; with `--vm-id auto`, once more with a new id when another client took
    /// the one `nextid` gave between that answer and the clone.
    fn clone_vm(&mut self) -> Result<()> {
        let argv = self.plan.clone_argv();
        self.announce(&argv, None);
        let done = self.node.exec(&argv, None, CLONE)?;
        if done.status == Some(0) {
            self.left.vm = true;
            return Ok(());
        }
        // Taken here: "config file already exists"; on another node, only pmxcfs notices,
        // when the clone writes the new config: "… File exists" (qemu-server `clone_vm`).
        let stderr = String::from_utf8_lossy(&done.stderr);
        let taken = stderr.contains("already exists") || stderr.contains("File exists");
        if !(taken && self.plan.d.vm_id == IdChoice::Auto) {
            return Err(node::failure(&argv, &self.node.describe(), &done));
        }
        let was = self.plan.id();
        self.plan.vm_id = Some(check::free_id(self.node, &self.plan)?);
        check::no_files_for_id(self.node, &self.plan, &self.node_name)?;
        self.out.note(format!("note: VM id {was} was taken meanwhile; using {}", self.plan.id()));
        let argv = self.plan.clone_argv();
        self.announce(&argv, None);
        let done = self.node.exec(&argv, None, CLONE)?;
        if done.status != Some(0) {
            return Err(node::failure(&argv, &self.node.describe(), &done));
        }
        self.left.vm = true;
        Ok(())
    }

    /// The commands that point the VM at the key-less seed and remove the keyed one.
    fn seal_argvs(&self) -> Vec<Vec<String>> {
        let mut argvs = vec![self.plan.reseed_argv()];
        argvs.extend(self.plan.cloudinit_update_argv());
        if let Some(p) = self.plan.path(self.plan.keyed_and_keyless().0) {
            argvs.push(node::remove_argv(&p));
        }
        argvs
    }

    /// Runs `argvs` (from [`Self::seal_argvs`]). The VM is deployed and recorded by now,
    /// so a failure here names the file still holding the key and how to finish.
    fn seal(&mut self, argvs: &[Vec<String>]) -> Result<()> {
        for (i, argv) in argvs.iter().enumerate() {
            self.announce(argv, None);
            let res = if argv[0] == "qm" { self.node_qm(argv, QUICK).map(drop) } else { self.node.run_ok(argv, QUICK) };
            if let Err(e) = res {
                let keyed = self.plan.path(self.plan.keyed_and_keyless().0).map(|p| p.to_string()).unwrap_or_default();
                let rest: Vec<String> = argvs[i..].iter().map(|a| remote_command(a)).collect();
                return Err(Error::LeftOnNode {
                    error: Box::new(e),
                    left: format!(
                        "VM {} is deployed, verified and recorded, but `{keyed}` on node `{}` still holds {}'s private host key.\nfinish there with: {}",
                        self.plan.id(),
                        self.node_name,
                        self.plan.d.host,
                        rest.join(" && ")
                    ),
                });
            }
        }
        Ok(())
    }

    fn announce(&mut self, argv: &[String], stdin: Option<usize>) {
        let suffix = stdin.map_or_else(String::new, |n| format!("  < {n} bytes on stdin"));
        self.out.line(format!("{}: {}{suffix}", self.node.describe(), remote_command(argv)));
        self.commands.push(argv.to_vec());
    }

    fn node_qm(&self, argv: &[String], timeout: Duration) -> Result<Finished> {
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        self.node.qm_ok(&args, None, timeout)
    }

    fn qm_ok(&mut self, argv: &[String], timeout: Duration) -> Result<Finished> {
        self.announce(argv, None);
        self.node_qm(argv, timeout)
    }

    /// What exists on the node, and the commands that remove it, newest first.
    fn leftovers(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let (plan, d) = (&self.plan, self.plan.d);
        let mut what = Vec::new();
        let mut removal = Vec::new();
        if self.left.vm {
            let started = if self.left.started { ", started" } else { "" };
            what.push(format!("VM {} `{}` (cloned from {}{started})", plan.id(), d.host, d.template));
            if self.left.started {
                removal.push(plan.stop_argv());
            }
            removal.push(plan.destroy_argv());
        }
        for (f, p) in &self.left.files {
            let holds = if f.holds_key() { format!(" (0600; holds {}'s private host key)", d.host) } else { String::new() };
            what.push(format!("`{p}`{holds}"));
            removal.push(node::remove_argv(p));
        }
        (what, removal)
    }

    /// The error, followed by what exists on the node and how it is (or was) removed.
    fn failure(&mut self, error: Error) -> Error {
        let (what, removal) = self.leftovers();
        if what.is_empty() {
            return error;
        }
        let on = format!("node `{}` ({})", self.node_name, self.node.describe());
        let left = if self.plan.d.cleanup_on_failure {
            let stop = self.plan.stop_argv();
            let mut failed = Vec::new();
            for argv in &removal {
                self.announce(argv, None);
                let res = if argv[0] == "qm" { self.node_qm(argv, POWER).map(drop) } else { self.node.run_ok(argv, QUICK) };
                // `qm stop` fails for a VM that never came up; destroy decides.
                if let Err(e) = res
                    && argv != &stop
                {
                    failed.push(format!("`{}`: {e}", remote_command(argv)));
                }
            }
            if failed.is_empty() {
                format!("cleaned up on {on}: removed {}", what.join(", "))
            } else {
                format!("cleanup on {on} was incomplete; these failed:\n  {}\nof: {}", failed.join("\n  "), what.join(", "))
            }
        } else {
            let cmds: Vec<String> = removal.iter().map(|a| remote_command(a)).collect();
            format!(
                "left on {on}: {}.\nremove it there with: {}\n(or run deploy-image with --cleanup-on-failure)",
                what.join(", "),
                cmds.join(" && ")
            )
        };
        Error::LeftOnNode { error: Box::new(error), left }
    }
}

/// Adds the VM id, node and address to the host's record, under the fleet lock.
fn record_deployment(fleet: &Fleet, host: &HostName, vm_id: VmId, node_name: &str, address: Option<&Address>) -> Result<()> {
    let _lock = fleet.lock()?;
    let mut record = fleet.record(host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    record.vm_id = Some(u64::from(vm_id.get()));
    record.proxmox_node = Some(node_name.to_string());
    if let Some(a) = address {
        let shown = if a.port == 22 { a.host.clone() } else { a.to_string() };
        record.addresses.retain(|x| x != &shown);
        record.addresses.insert(0, shown);
    }
    atomic::write(&fleet.record_path(host), record.to_json().as_bytes(), 0o644)
}
