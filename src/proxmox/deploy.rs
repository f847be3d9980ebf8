//! The `deploy-image` flow against a node: check everything (read-only), ensure the host's
//! identity, upload the seed, clone, configure, start, wait, verify, record. Every change to
//! the node is tracked, so a failure after the first one says exactly what exists and how
//! to remove it (or removes it, with `--cleanup-on-failure`). Only what this run created is
//! ever removed: a failed `qm clone` leaves the VM id alone, because it may be another's.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::address::Address;
use crate::admin_identity::Identities;
use crate::cloud_init::SeedInputs;
use crate::cloud_init::{self, Network, SeedParams};
use crate::enroll::{self, KeySource, Options, Report, Request};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::output::Output;
use crate::process::Finished;
use crate::ssh_keys::Keypair;
use crate::{atomic, seed};

use super::names::{RemotePath, VmId};
use super::node::{self, Node, remote_command};
use super::plan::{self, Deployment, IpConfig, Seeding};
use super::wait::{self, Spinner};

/// Timeouts for node commands: checks and small changes, and a clone (a full clone copies
/// whole disks).
const QUICK: Duration = Duration::from_secs(60);
const CLONE: Duration = Duration::from_secs(3600);

/// What the read-only checks found.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub node_name: String,
    pub seed_path: RemotePath,
}

/// The result of a deployment.
#[derive(Debug)]
pub(crate) struct Deployed {
    pub node_name: String,
    pub identity: Report,
    /// `None` with `--no-start`.
    pub address: Option<Address>,
    pub fingerprint: String,
    /// Every command that changed the node, in order.
    pub commands: Vec<Vec<String>>,
}

/// Checks the node name, that the VM id is free, that the template can carry the seed, and
/// where the seed goes, after [`Node::probe`] returned `node_name`. Changes nothing.
///
/// # Errors
/// [`Error::Usage`] for a wrong node, a taken id, a missing or unfit template, a storage
/// without the directory for the seed; [`Error::Program`] when a check cannot run.
pub(crate) fn check(node: &Node, d: &Deployment, node_name: &str) -> Result<Checked> {
    if let Some(expected) = &d.node_name
        && expected != node_name
    {
        return Err(Error::Usage(format!(
            "--node is `{expected}`, but {} is node `{node_name}`: qm acts on the node ssh reaches, so point --pve at `{expected}`",
            node.describe()
        )));
    }
    let status = qm(node, &d.status_argv(), QUICK)?;
    if status.status == Some(0) {
        let state = String::from_utf8_lossy(&status.stdout).trim().to_string();
        return Err(Error::Usage(format!(
            "VM {} already exists on node `{node_name}` ({state}): choose a free id (`pvesh get /cluster/nextid` prints one)",
            d.vm_id
        )));
    }
    if !last_line(&status.stderr).contains("does not exist") {
        return Err(failed(node, &d.status_argv(), &status));
    }
    let config = qm(node, &d.config_argv(), QUICK)?;
    if config.status != Some(0) {
        if last_line(&config.stderr).contains("does not exist") {
            return Err(Error::Usage(format!(
                "template VM {} does not exist on node `{node_name}`: pass --template with the id of your cloud-init template (see docs/proxmox.md)",
                d.template
            )));
        }
        return Err(failed(node, &d.config_argv(), &config));
    }
    plan::check_template(d, &String::from_utf8_lossy(&config.stdout))?;
    let seed_path = match d.known_seed_path() {
        Some(p) => p,
        None => node.pvesm_path(&d.seed_volume(), QUICK)?,
    };
    let dir = seed_path.parent();
    if node.run_ok(&node::test_dir_argv(&dir), QUICK).is_err() {
        let content = if d.seeding == Seeding::Snippet { "snippets" } else { "iso" };
        return Err(Error::Usage(format!(
            "storage `{}` on node `{node_name}` has no `{dir}`: enable its `{content}` content type (Datacenter → Storage → {} → Content, or `pvesm set {} --content …,{content}`)",
            d.seed_storage, d.seed_storage, d.seed_storage
        )));
    }
    Ok(Checked { node_name: node_name.to_string(), seed_path })
}

/// Runs the deployment. `inputs` shape the seed exactly as for `hostsmith cloud-init`.
///
/// # Errors
/// Any failed check (nothing changed), or a failure after a change, as
/// [`Error::LeftOnNode`].
pub(crate) fn deploy(fleet: &Fleet, d: &Deployment, node: &Node, inputs: &SeedInputs, out: &Output) -> Result<Deployed> {
    let node_name = node.probe(QUICK)?;
    let checked = check(node, d, &node_name)?;
    let identity = enroll::run(fleet, vec![Request { host: d.host.clone(), source: KeySource::Generate }], Options::default())?;
    for h in &identity.hosts {
        let action = serde_json::to_value(h.action).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        out.line(format!("identity: {} {action}, {}", h.name, h.fingerprint));
    }
    let (record, key) = crate::host_file::host_keypair(fleet, &d.host, &mut Identities::for_fleet(fleet))?;
    let seed = seed_bytes(d, &key, inputs)?;
    drop(key);

    let mut run = Run { node, d, out, left: Left::default(), commands: Vec::new() };
    let result = run.changes(&checked, &seed, &record);
    match result {
        Ok((address, fingerprint)) => {
            record_deployment(fleet, &d.host, d.vm_id, &checked.node_name, address.as_ref())?;
            Ok(Deployed { node_name: checked.node_name, identity, address, fingerprint, commands: run.commands })
        }
        Err(e) => Err(run.failure(e, &checked)),
    }
}

/// What this run has created on the node so far.
#[derive(Default)]
struct Left {
    seed: Option<RemotePath>,
    vm: bool,
    started: bool,
}

struct Run<'a> {
    node: &'a Node,
    d: &'a Deployment,
    out: &'a Output,
    left: Left,
    commands: Vec<Vec<String>>,
}

impl Run<'_> {
    fn changes(&mut self, checked: &Checked, seed: &[u8], record: &crate::record::HostRecord) -> Result<(Option<Address>, String)> {
        let d = self.d;
        let install = node::install_argv(&checked.seed_path);
        self.announce(&install, Some(seed.len()));
        // Marked before the upload: a failed `install` may leave a partial file.
        self.left.seed = Some(checked.seed_path.clone());
        self.node.install_secret_file(&checked.seed_path, seed, QUICK)?;
        self.qm_ok(&d.clone_argv(), CLONE)?;
        self.left.vm = true;
        self.qm_ok(&d.set_argv(), QUICK)?;
        if !d.start {
            return Ok((None, record.fingerprint.clone()));
        }
        self.left.started = true;
        self.qm_ok(&d.start_argv(), Duration::from_secs(300))?;
        let spinner = Spinner::new(self.out.quiet);
        let (addr, fingerprint) = wait::address_and_key(self.node, d, record, &spinner)?;
        Ok((Some(addr), fingerprint))
    }

    fn announce(&mut self, argv: &[String], stdin: Option<usize>) {
        let suffix = stdin.map_or_else(String::new, |n| format!("  < {n} bytes on stdin"));
        self.out.line(format!("{}: {}{suffix}", self.node.describe(), remote_command(argv)));
        self.commands.push(argv.to_vec());
    }

    fn qm_ok(&mut self, argv: &[String], timeout: Duration) -> Result<Finished> {
        self.announce(argv, None);
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        self.node.qm_ok(&args, None, timeout)
    }

    /// The error, followed by what exists on the node and how it is (or was) removed.
    fn failure(&mut self, error: Error, checked: &Checked) -> Error {
        let d = self.d;
        let mut what = Vec::new();
        let mut removal: Vec<Vec<String>> = Vec::new();
        if self.left.vm {
            what.push(format!(
                "VM {} `{}` (cloned from {}{})",
                d.vm_id,
                d.host,
                d.template,
                if self.left.started { ", started" } else { "" }
            ));
            if self.left.started {
                removal.push(d.stop_argv());
            }
            removal.push(d.destroy_argv());
        }
        if let Some(p) = &self.left.seed {
            what.push(format!("`{p}` (0600; holds {}'s private host key)", d.host));
            removal.push(node::remove_argv(p));
        }
        let on = format!("node `{}` ({})", checked.node_name, self.node.describe());
        let left = if d.cleanup_on_failure {
            let mut failed = Vec::new();
            for argv in &removal {
                self.announce(argv, None);
                let res = if argv[0] == "qm" {
                    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
                    self.node.qm_ok(&args, None, Duration::from_secs(300)).map(drop)
                } else {
                    self.node.run_ok(argv, QUICK)
                };
                // `qm stop` fails for a VM that never came up; destroy decides.
                if let Err(e) = res
                    && argv != &d.stop_argv()
                {
                    failed.push(format!("`{}`: {e}", remote_command(argv)));
                }
            }
            if failed.is_empty() {
                format!("cleaned up on {on}: removed {}", what.join(" and "))
            } else {
                format!("cleanup on {on} was incomplete; these failed:\n  {}\nof: {}", failed.join("\n  "), what.join(" and "))
            }
        } else {
            let cmds: Vec<String> = removal.iter().map(|a| remote_command(a)).collect();
            format!(
                "left on {on}: {}.\nremove it there with: {}\n(or run deploy-image with --cleanup-on-failure)",
                what.join(" and "),
                cmds.join(" && ")
            )
        };
        Error::LeftOnNode { error: Box::new(error), left }
    }
}

/// The bytes that go to the node: the user-data exactly as `hostsmith cloud-init` writes
/// it, or a NoCloud image built in a private temporary directory (removed afterwards).
fn seed_bytes(d: &Deployment, key: &Keypair, inputs: &SeedInputs) -> Result<Zeroizing<Vec<u8>>> {
    let network = match (&d.seeding, &d.ip) {
        (Seeding::Iso, IpConfig::Static { cidr, gateway, .. }) => {
            Some(Network::Static { addresses: vec![cidr.clone()], gateway: *gateway, dns: Vec::new() })
        }
        _ => None,
    };
    let rendered = cloud_init::render(&SeedParams {
        host: &d.host,
        key,
        user: &inputs.user,
        authorized_keys: &inputs.authorized_keys,
        sudo: inputs.sudo.as_deref(),
        network,
    })?;
    if d.seeding == Seeding::Snippet {
        return Ok(Zeroizing::new(rendered.user_data.as_bytes().to_vec()));
    }
    let tmp = tempfile::Builder::new()
        .prefix("hostsmith-seed-")
        .tempdir()
        .map_err(|source| Error::Write { path: std::env::temp_dir(), source })?;
    let dir = tmp.path().join("seed");
    seed::write_seed_dir(&dir, &rendered)?;
    let iso = tmp.path().join("seed.iso");
    seed::write_iso(&iso, &dir)?;
    let bytes = std::fs::read(&iso).map_err(|source| Error::Read { path: iso.clone(), source })?;
    Ok(Zeroizing::new(bytes))
}

/// Adds the VM id, node and address to `hosts/<host>.json`, under the fleet lock.
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

fn qm(node: &Node, argv: &[String], timeout: Duration) -> Result<Finished> {
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    node.qm(&args, None, timeout)
}

fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no error output").trim().to_string()
}

fn failed(node: &Node, argv: &[String], done: &Finished) -> Error {
    node::failure(argv, &node.describe(), done)
}
