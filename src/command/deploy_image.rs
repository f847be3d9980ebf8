//! `hostsmith deploy-image --vm-id N --name HOST`: a Proxmox VM cloned from a cloud-init
//! template, with the host's identity injected and verified at first boot (see
//! docs/proxmox.md). Options fall back to the `[proxmox]` table of hostsmith.toml.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::command::args::SeedOptions;
use crate::command::report::print_report;
use crate::command::{Context, host_names};
use crate::enroll::{self, KeySource, Options, Request};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::proxmox::deploy::{self, Deployed};
use crate::proxmox::plan::{Deployment, IpConfig, Seeding};
use crate::proxmox::{Node, Ssh, StorageName, Target, VmId};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The new VM's id (100 to 999999999); it must be free.
    #[arg(long, value_name = "N")]
    pub vm_id: u64,
    /// The host (RFC 1123 name); given an identity first if it has none.
    #[arg(long, value_name = "HOST")]
    pub name: String,
    /// The template VM to clone (default: `proxmox.template`).
    #[arg(long, value_name = "ID")]
    pub template: Option<u64>,
    /// The node to drive over ssh (default: `proxmox.pve`).
    #[arg(long, value_name = "USER@NODE[:PORT]")]
    pub pve: Option<String>,
    /// The Proxmox node name, checked against the node reached (default: `proxmox.node`).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Make a full clone instead of a linked one.
    #[arg(long)]
    pub full: bool,
    /// Target storage of the full clone (default: `proxmox.storage`).
    #[arg(long, value_name = "STORAGE", requires = "full")]
    pub storage: Option<String>,
    /// Storage with the snippets content type for the user-data (default: `proxmox.snippets`).
    #[arg(long, value_name = "STORAGE", conflicts_with = "seed_iso")]
    pub snippets: Option<String>,
    /// Attach a NoCloud seed image as a CD-ROM instead of a snippet.
    #[arg(long)]
    pub seed_iso: bool,
    /// Storage with the iso content type for --seed-iso (default: `proxmox.iso_storage`).
    #[arg(long, value_name = "STORAGE", requires = "seed_iso")]
    pub iso_storage: Option<String>,
    /// Bridge for the VM's first NIC (default: `proxmox.bridge`; none keeps the template's).
    #[arg(long, value_name = "BRIDGE")]
    pub bridge: Option<String>,
    /// Static address with prefix length, e.g. 192.0.2.10/24.
    #[arg(long, value_name = "CIDR", conflicts_with = "dhcp")]
    pub ip: Option<String>,
    /// Default gateway for --ip.
    #[arg(long, value_name = "IP", requires = "ip")]
    pub gateway: Option<String>,
    /// Address by DHCP, found through the guest agent (the default).
    #[arg(long)]
    pub dhcp: bool,
    /// Admin user the seed creates (default: `cloud_init.user`).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Public key file (or key line) for the admin user; repeatable.
    #[arg(long = "authorized-key", value_name = "FILE")]
    pub authorized_keys: Vec<String>,
    /// Clone and configure, but do not start (nor wait, nor verify).
    #[arg(long)]
    pub no_start: bool,
    /// Seconds to wait for the address and host key after start (default: `proxmox.wait`).
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
    /// On a failure after the node changed, remove what this run created there.
    #[arg(long)]
    pub cleanup_on_failure: bool,
    /// Print every command that would run on the node; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// # Errors
/// Invalid input (exit 2) before anything changes; a failure on the node afterwards, with
/// what it left there; a key mismatch (exit 3).
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let host = host_names(std::slice::from_ref(&args.name))?.remove(0);
    let vm_id = VmId::new(args.vm_id)?;
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let (d, target) = resolve(&args, &fleet, host, vm_id)?;
    let seed_opts = SeedOptions { user: args.user.clone(), authorized_keys: args.authorized_keys.clone(), ..SeedOptions::default() };
    let inputs = seed_opts.resolve(&fleet)?;
    let mut ssh = Ssh::new(target);
    let ssh_config = fleet.config.proxmox.ssh_config.as_deref().map(expand_home);
    if args.dry_run {
        // The fleet's ssh configuration can run programs: a dry run does not use it.
        let probe = ssh_config.is_none();
        return dry_run(&fleet, &d, &Node::ssh(ssh), probe, ctx);
    }
    if ssh_config.is_some() {
        crate::trust::require(&fleet, "proxmox.ssh_config")?;
    }
    ssh.config = ssh_config;
    let node = Node::ssh(ssh);
    let done = deploy::deploy(&fleet, &d, &node, &inputs, &ctx.out)?;
    report(&d, &done, ctx);
    Ok(())
}

/// Validates the options against `[proxmox]` defaults.
#[allow(clippy::too_many_lines, reason = "maps every option onto the deployment in one place, so none is forgotten")]
fn resolve(args: &Args, fleet: &Fleet, host: crate::host_name::HostName, vm_id: VmId) -> Result<(Deployment, Target)> {
    let cfg = &fleet.config.proxmox;
    let pve = args.pve.clone().or_else(|| cfg.pve.clone()).ok_or_else(|| {
        Error::Usage("no Proxmox node given: pass --pve USER@NODE, or set `pve` in the [proxmox] table of hostsmith.toml".into())
    })?;
    let target = Target::parse(&pve)?;
    let template = args.template.or(cfg.template).ok_or_else(|| {
        Error::Usage("no template given: pass --template ID, or set `template` in the [proxmox] table of hostsmith.toml".into())
    })?;
    let template = VmId::new(template).map_err(|e| Error::Usage(format!("template: {e}")))?;
    if template == vm_id {
        return Err(Error::Usage(format!("--vm-id {vm_id} is the template's id: choose a new id for the VM")));
    }
    let node_name = args.node.clone().or_else(|| cfg.node.clone());
    if let Some(n) = &node_name
        && (n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || n.starts_with('-'))
    {
        return Err(Error::Usage(format!("node name `{}` is invalid: a Proxmox node name is a host name", n.escape_debug())));
    }
    let storage = if args.full { args.storage.as_deref().or(cfg.storage.as_deref()).map(StorageName::parse).transpose()? } else { None };
    let (seeding, seed_storage) = if args.seed_iso {
        (Seeding::Iso, StorageName::parse(args.iso_storage.as_deref().unwrap_or(&cfg.iso_storage))?)
    } else {
        (Seeding::Snippet, StorageName::parse(args.snippets.as_deref().unwrap_or(&cfg.snippets))?)
    };
    let bridge = args.bridge.as_deref().or(cfg.bridge.as_deref()).map(StorageName::parse).transpose().map_err(|_| {
        Error::Usage(format!(
            "bridge `{}` is invalid: use an interface name like vmbr0",
            args.bridge.as_deref().or(cfg.bridge.as_deref()).unwrap_or_default()
        ))
    })?;
    let ip = match &args.ip {
        None => IpConfig::Dhcp,
        Some(cidr) => {
            let cidr = crate::cloud_init::parse_cidr(cidr)?;
            let address: IpAddr =
                cidr.split('/').next().unwrap_or_default().parse().map_err(|_| Error::Usage(format!("`{cidr}` is not an address")))?;
            let gateway = args
                .gateway
                .as_deref()
                .map(|g| g.parse::<IpAddr>().map_err(|_| Error::Usage(format!("gateway `{}` is not an IP address", g.escape_debug()))))
                .transpose()?;
            if gateway.is_some_and(|g| g.is_ipv4() != address.is_ipv4()) {
                return Err(Error::Usage(format!("gateway and --ip `{cidr}` are of different IP versions")));
            }
            IpConfig::Static { cidr, address, gateway }
        }
    };
    let wait = args.wait.unwrap_or(cfg.wait);
    if wait == 0 {
        return Err(Error::Usage("--wait must be at least 1 second".into()));
    }
    let d = Deployment {
        host,
        vm_id,
        template,
        node_name,
        full: args.full,
        storage,
        seeding,
        seed_storage,
        ip,
        bridge,
        start: !args.no_start,
        wait: Duration::from_secs(wait),
        cleanup_on_failure: args.cleanup_on_failure,
    };
    Ok((d, target))
}

/// Prints the plan. Runs only the read-only checks; when the node cannot be reached, says
/// so and still prints the plan (exit 0). A failed check fails as a real run would.
fn dry_run(fleet: &Fleet, d: &Deployment, node: &Node, probe: bool, ctx: &Context) -> Result<()> {
    let out = &ctx.out;
    let probed = if probe {
        node.probe(Duration::from_secs(30))
    } else {
        Err(Error::Usage("`proxmox.ssh_config` comes from the fleet and can run programs, so a dry run does not reach the node".into()))
    };
    let (reachable, checked) = match probed {
        Ok(name) => (true, Some(deploy::check(node, d, &name)?)),
        Err(e) => {
            out.note(format!("note: {e}\nnote: the plan below was not checked against the node"));
            (false, None)
        }
    };
    let identity =
        enroll::run(fleet, vec![Request { host: d.host.clone(), source: KeySource::Generate }], Options { rotate: false, dry_run: true })?;
    let seed_path = checked.as_ref().map(|c| c.seed_path.clone()).or_else(|| d.known_seed_path());
    let steps = d.steps(seed_path.as_ref());
    let node_name = checked.as_ref().map(|c| c.node_name.clone());
    out.json(&serde_json::json!({
        "dry_run": true,
        "host": d.host.as_str(),
        "vm_id": d.vm_id.get(),
        "pve": node.describe(),
        "node": node_name,
        "reachable": reachable,
        "identity": identity,
        "commands": steps,
    }));
    if !out.json {
        print_report(&identity, ctx);
    }
    out.line(format!(
        "dry run: deploy {} as VM {} from template {} on {}; these commands would run there, in order:",
        d.host,
        d.vm_id,
        d.template,
        node.describe()
    ));
    for (i, s) in steps.iter().enumerate() {
        let tag = match (s.check, reachable) {
            (true, true) => "  (read-only check: passed)",
            (true, false) => "  (read-only check)",
            _ => "",
        };
        out.line(format!("  {:>2}. {}{tag}", i + 1, s.display()));
        if let Some(n) = &s.note {
            out.line(format!("      ({n})"));
        }
    }
    if d.start {
        let addr = match &d.ip {
            IpConfig::Static { address, .. } => address.to_string(),
            IpConfig::Dhcp => "the address the guest agent reports".into(),
        };
        out.line(format!(
            "then, from here: verify the host key served on port 22 of {addr}, and record vm_id, node and address in hosts/{}.json",
            d.host
        ));
    }
    out.line("nothing was changed");
    Ok(())
}

/// `~/…` in the configured ssh config path, as ssh itself would read it.
fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

fn report(d: &Deployment, done: &Deployed, ctx: &Context) {
    let out = &ctx.out;
    out.json(&serde_json::json!({
        "host": d.host.as_str(),
        "vm_id": d.vm_id.get(),
        "node": done.node_name,
        "address": done.address.as_ref().map(ToString::to_string),
        "fingerprint": done.fingerprint,
        "verified": done.address.is_some(),
        "identity": done.identity,
        "commands": done.commands,
    }));
    match &done.address {
        Some(addr) => {
            out.line(format!(
                "deployed: {} is VM {} on node {} at {}, presenting {}, as recorded",
                d.host, d.vm_id, done.node_name, addr.host, done.fingerprint
            ));
            out.line(format!(
                "next: deploy its configuration, e.g. `deploy .#{h}` (deploy-rs) or `nixos-rebuild switch --flake .#{h} --target-host root@{a}`: its secrets already open with the key it presents",
                h = d.host,
                a = addr.host
            ));
        }
        None => {
            out.line(format!("created: {} is VM {} on node {} (not started)", d.host, d.vm_id, done.node_name));
            out.line(format!(
                "next: `qm start {}` on the node, then `hostsmith verify {} --address ADDRESS` before deploying to it",
                d.vm_id, d.host
            ));
        }
    }
}
