//! The read-only checks of `deploy-image`, made before anything changes on the node (and
//! by `--dry-run`): the node, a cluster-wide free VM id, the template, the storages, linked
//! clone support, the seed directory and its free names, the bridge. Each refusal is bad
//! input (exit 2) that names what to change.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

use super::names::VmId;
use super::node::{self, Node};
use super::plan::{self, Deployment, IdChoice, Plan, Seeding};
use super::vm_config::VmConfig;

/// Timeout of one check.
pub(crate) const QUICK: Duration = Duration::from_secs(60);

/// A storage as `pvesh get /nodes/NODE/storage` lists it (pve-storage
/// `PVE::API2::Storage::Status`).
#[derive(Debug, Deserialize)]
struct Storage {
    storage: String,
    #[serde(default)]
    content: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    active: Option<serde_json::Value>,
    #[serde(default)]
    enabled: Option<serde_json::Value>,
    #[serde(default)]
    shared: Option<serde_json::Value>,
}

/// Proxmox's JSON booleans are 0/1 (sometimes strings or true/false).
fn truthy(v: Option<&serde_json::Value>, absent: bool) -> bool {
    match v {
        None | Some(serde_json::Value::Null) => absent,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_i64() != Some(0),
        Some(serde_json::Value::String(s)) => !matches!(s.as_str(), "0" | "" | "false"),
        Some(_) => true,
    }
}

/// What the checks learnt besides the plan.
#[derive(Debug, Clone)]
pub(crate) struct Checked<'a> {
    pub plan: Plan<'a>,
    /// Whether the seed storage is shared between the cluster's nodes (HA and migration
    /// need that: the VM reads its snippets wherever it starts).
    pub shared_seed_storage: bool,
}

/// Runs every check on `node` (reached, named `node_name`). Changes nothing.
///
/// # Errors
/// [`Error::Usage`] for a wrong node, a used id, an unfit template or storage, a taken
/// seed name, a missing bridge; [`Error::Program`] when a check cannot run.
pub(crate) fn check<'a>(node: &Node, d: &'a Deployment, node_name: &str) -> Result<Checked<'a>> {
    if let Some(expected) = &d.node_name
        && expected != node_name
    {
        return Err(Error::Usage(format!(
            "--node is `{expected}`, but {} is node `{node_name}`: qm acts on the node ssh reaches, so point --pve at `{expected}`",
            node.describe()
        )));
    }
    let mut plan = Plan { d, vm_id: None, node: Some(node_name.to_string()), template: VmConfig::default(), seed_dir: None };
    plan.vm_id = Some(free_id(node, &plan)?);
    plan.template = template(node, &plan, node_name)?;
    plan::check_template(d, &plan.template)?;
    let shared_seed_storage = storages(node, &plan, node_name)?;
    if !d.full {
        linked_clone(node, &plan)?;
    }
    let first = plan.pvesm_path_argv();
    let path = node.pvesm_path(&first[2], QUICK)?;
    plan.seed_dir = Some(path.parent());
    no_files_for_id(node, &plan, node_name)?;
    if let Some(bridge) = plan.bridge() {
        let argv = Plan::bridge_argv(&bridge);
        if node.run_ok(&argv, QUICK).is_err() {
            return Err(Error::Usage(format!(
                "bridge `{bridge}` does not exist on node `{node_name}` (no /sys/class/net/{bridge}), so `qm start` would fail: pass --bridge with a bridge of that node, or create it (System → Network)"
            )));
        }
    }
    Ok(Checked { plan, shared_seed_storage })
}

/// The VM id, free in the whole cluster (VMs and containers, every node).
///
/// # Errors
/// [`Error::Usage`] when the id is used.
pub(crate) fn free_id(node: &Node, plan: &Plan<'_>) -> Result<VmId> {
    let argv = plan.nextid_argv();
    let done = node.exec(&argv, None, QUICK)?;
    if done.status != Some(0) {
        if let IdChoice::Fixed(id) = plan.d.vm_id
            && String::from_utf8_lossy(&done.stderr).contains("already exists")
        {
            return Err(Error::Usage(format!(
                "VM id {id} is already used in the cluster (by a VM or container on some node; pvesh says: {}): choose another id, or --vm-id auto",
                node::reason(&done.stderr)
            )));
        }
        return Err(node::failure(&argv, &node.describe(), &done));
    }
    let text = String::from_utf8_lossy(&done.stdout);
    let id = VmId::parse(text.trim().trim_matches('"')).map_err(|_| Error::Program {
        program: "pvesh".into(),
        message: format!("`{}` printed `{}`, not a VM id", node::remote_command(&argv), text.trim().escape_debug()),
    })?;
    if let IdChoice::Fixed(want) = plan.d.vm_id
        && want != id
    {
        return Err(Error::Program {
            program: "pvesh".into(),
            message: format!("`pvesh get /cluster/nextid --vmid {want}` answered {id}"),
        });
    }
    Ok(id)
}

fn template(node: &Node, plan: &Plan<'_>, node_name: &str) -> Result<VmConfig> {
    let argv = plan.config_argv();
    let done = node.exec(&argv, None, QUICK)?;
    if done.status != Some(0) {
        if String::from_utf8_lossy(&done.stderr).contains("does not exist") {
            return Err(Error::Usage(format!(
                "template VM {} does not exist on node `{node_name}`: pass --template with the id of your cloud-init template (see docs/proxmox.md)",
                plan.d.template
            )));
        }
        return Err(node::failure(&argv, &node.describe(), &done));
    }
    Ok(VmConfig::parse(&String::from_utf8_lossy(&done.stdout)))
}

/// Checks the seed storage (and a full clone's target storage) and returns whether the
/// seed storage is shared.
fn storages(node: &Node, plan: &Plan<'_>, node_name: &str) -> Result<bool> {
    let argv = plan.storage_argv();
    let text = node.output_ok(&argv, QUICK)?;
    let list: Vec<Storage> = serde_json::from_str(&text).map_err(|e| Error::Program {
        program: "pvesh".into(),
        message: format!("`{}` printed no storage list: {e}", node::remote_command(&argv)),
    })?;
    let d = plan.d;
    let find = |id: &str, content: &str, purpose: &str| -> Result<&Storage> {
        let s = list.iter().find(|s| s.storage == id).ok_or_else(|| {
            let known: Vec<&str> = list.iter().map(|s| s.storage.as_str()).collect();
            Error::Usage(format!("storage `{id}` ({purpose}) does not exist on node `{node_name}`; its storages are: {}", known.join(", ")))
        })?;
        if !truthy(s.enabled.as_ref(), true) || !truthy(s.active.as_ref(), true) {
            return Err(Error::Usage(format!(
                "storage `{id}` ({purpose}) is not active on node `{node_name}`: enable it, or choose another"
            )));
        }
        if !s.content.split(',').any(|c| c.trim() == content) {
            return Err(Error::Usage(format!(
                "storage `{id}` ({purpose}) on node `{node_name}` does not hold `{content}` (it holds: {}): enable that content type (Datacenter → Storage → {id} → Content, or `pvesm set {id} --content {},{content}`), or choose another storage",
                s.content, s.content
            )));
        }
        Ok(s)
    };
    let (content, purpose) = if d.seeding == Seeding::Snippet { ("snippets", "for the seed") } else { ("iso", "for the seed image") };
    let seed = find(d.seed_storage.as_str(), content, purpose)?;
    if let Some(target) = &d.storage {
        find(target.as_str(), "images", "for the full clone's disks")?;
    }
    tracing::info!("seed storage `{}` is of type {}", seed.storage, seed.kind);
    Ok(truthy(seed.shared.as_ref(), false))
}

/// A linked clone needs every disk of the template on storage that can clone (LVM-thin,
/// ZFS, Ceph, qcow2 files — not plain LVM or raw files).
fn linked_clone(node: &Node, plan: &Plan<'_>) -> Result<()> {
    let argv = plan.feature_argv();
    let text = node.output_ok(&argv, QUICK)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Program {
        program: "pvesh".into(),
        message: format!("`{}` printed no feature answer: {e}", node::remote_command(&argv)),
    })?;
    if truthy(value.get("hasFeature"), false) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "template {}'s disks (on {}) cannot be cloned linked: that storage has no snapshots or clones; pass --full (with --storage for the new disks)",
        plan.d.template,
        plan.template.disk_storages().join(", ")
    )))
}

/// Refuses when files named for this VM id are in the seed directory already: another
/// deployment (of a VM that had this id) may still need them, and a later `qm start`
/// of that VM would read what this run wrote.
pub(crate) fn no_files_for_id(node: &Node, plan: &Plan<'_>, node_name: &str) -> Result<()> {
    let argv = plan.existing_argv();
    let done = node.exec(&argv, None, QUICK)?;
    let dir = plan.seed_dir.as_ref().map(ToString::to_string).unwrap_or_default();
    if done.status != Some(0) {
        let content = if plan.d.seeding == Seeding::Snippet { "snippets" } else { "iso" };
        let s = &plan.d.seed_storage;
        return Err(Error::Usage(format!(
            "storage `{s}` on node `{node_name}` has no `{dir}`: enable its `{content}` content type (Datacenter → Storage → {s} → Content, or `pvesm set {s} --content …,{content}`)"
        )));
    }
    let stdout = String::from_utf8_lossy(&done.stdout);
    let found: Vec<&str> = stdout.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if found.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = found.iter().map(|p| format!("`{}`", p.escape_debug())).collect();
    let rm: Vec<String> = found.iter().map(|p| node::remote_command(&node::remove_argv_shown(p))).collect();
    Err(Error::Usage(format!(
        "{} already on node `{node_name}`: left by an earlier deployment as VM {}, and not overwritten; if no VM uses them any more, remove them ({}), or choose another id",
        shown.join(", "),
        plan.id(),
        rm.join(" && ")
    )))
}
