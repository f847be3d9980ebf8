//! `hostsmith deploy-image --vm-id N --name HOST`: a Proxmox VM cloned from a cloud-init
//! template, with the host's identity injected and verified at first boot (see
//! docs/proxmox.md). Options fall back to the `[proxmox]` table of hostsmith.toml.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::command::args::SeedOptions;
use crate::command::report::print_report;
use crate::command::{Context, host_names};
use crate::config::ProxmoxSection;
use crate::enroll::{self, KeySource, Options, Request};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::proxmox::check;
use crate::proxmox::deploy::{self, Deployed};
use crate::proxmox::names::{self, BridgeName};
use crate::proxmox::node::remote_command;
use crate::proxmox::plan::{Deployment, DiskSize, IdChoice, IpConfig, Plan, Seeding, VmSettings};
use crate::proxmox::vm_config::VmConfig;
use crate::proxmox::{Node, Ssh, StorageName, Target, VmId};

#[derive(Debug, clap::Args)]
#[allow(clippy::struct_excessive_bools, reason = "each flag is one command-line switch")]
pub(crate) struct Args {
    /// The new VM's id (100 to 999999999), free in the whole cluster; `auto` takes the
    /// cluster's next free id.
    #[arg(long, value_name = "N|auto")]
    pub vm_id: String,
    /// The host (RFC 1123 name); given an identity first if it has none.
    #[arg(long, value_name = "HOST")]
    pub name: String,
    /// Give the host a new key first (its secrets are re-keyed, the VM gets a new instance id).
    #[arg(long)]
    pub rotate: bool,
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
    /// Resource pool of the new VM (default: `proxmox.pool`).
    #[arg(long, value_name = "POOL")]
    pub pool: Option<String>,
    /// Storage with the snippets content type for the seed (default: `proxmox.snippets`).
    #[arg(long, value_name = "STORAGE", conflicts_with = "seed_iso")]
    pub snippets: Option<String>,
    /// Attach a NoCloud seed image as a CD-ROM instead of snippets.
    #[arg(long)]
    pub seed_iso: bool,
    /// Storage with the iso content type for --seed-iso (default: `proxmox.iso_storage`).
    #[arg(long, value_name = "STORAGE", requires = "seed_iso")]
    pub iso_storage: Option<String>,
    /// Leave the first-boot seed, private host key included, on the node (not advised).
    #[arg(long)]
    pub keep_seed: bool,
    /// Bridge for the VM's first NIC, its other options kept (default: `proxmox.bridge`).
    #[arg(long, value_name = "BRIDGE")]
    pub bridge: Option<String>,
    /// VLAN tag for the VM's first NIC, 1 to 4094 (default: `proxmox.vlan`).
    #[arg(long, value_name = "TAG")]
    pub vlan: Option<u16>,
    /// Static address with prefix length, e.g. 192.0.2.10/24 or 2001:db8::10/64.
    #[arg(long, value_name = "CIDR", conflicts_with = "dhcp")]
    pub ip: Option<String>,
    /// Default gateway for --ip.
    #[arg(long, value_name = "IP", requires = "ip")]
    pub gateway: Option<String>,
    /// Address by DHCP, found through the guest agent (the default).
    #[arg(long)]
    pub dhcp: bool,
    /// DNS server for the VM; repeatable (default: `proxmox.nameserver`, else the node's).
    #[arg(long, value_name = "IP")]
    pub nameserver: Vec<String>,
    /// DNS search domains, space-separated (default: `proxmox.searchdomain`, else the node's).
    #[arg(long, value_name = "DOMAINS")]
    pub searchdomain: Option<String>,
    /// CPU cores (default: `proxmox.cores`, else the template's).
    #[arg(long, value_name = "N")]
    pub cores: Option<u32>,
    /// Memory in MiB (default: `proxmox.memory`, else the template's).
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u32>,
    /// Grow the boot disk: a new size (20G) or an increase (+10G) (default: `proxmox.disk_size`).
    #[arg(long, value_name = "SIZE")]
    pub disk_size: Option<String>,
    /// Start the VM when the node boots (default: `proxmox.onboot`).
    #[arg(long)]
    pub onboot: bool,
    /// Tags for the VM; repeatable or comma-separated (default: `proxmox.tags`).
    #[arg(long, value_name = "TAG")]
    pub tags: Vec<String>,
    /// A one-line description for the VM (Proxmox's Notes).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
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
    let vm_id = if args.vm_id == "auto" { IdChoice::Auto } else { IdChoice::Fixed(VmId::parse(&args.vm_id)?) };
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let (d, target) = resolve(&args, &fleet, host, vm_id)?;
    let seed_opts = SeedOptions { user: args.user.clone(), authorized_keys: args.authorized_keys.clone(), ..SeedOptions::default() };
    let inputs = seed_opts.resolve(&fleet)?;
    let mut ssh = Ssh::new(target);
    let ssh_config = fleet.config.proxmox.ssh_config.as_deref().map(expand_home);
    if args.dry_run {
        // The fleet's ssh configuration can run programs: a dry run uses it only when it is
        // trusted already, and never asks.
        let probe = ssh_config.is_none() || crate::trust::trusted(&fleet, "proxmox.ssh_config")?;
        if probe {
            ssh.config = ssh_config;
        }
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
fn resolve(args: &Args, fleet: &Fleet, host: crate::host_name::HostName, vm_id: IdChoice) -> Result<(Deployment, Target)> {
    let cfg = &fleet.config.proxmox;
    let pve = args.pve.clone().or_else(|| cfg.pve.clone()).ok_or_else(|| {
        Error::Usage("no Proxmox node given: pass --pve USER@NODE, or set `pve` in the [proxmox] table of hostsmith.toml".into())
    })?;
    let target = Target::parse(&pve)?;
    let template = args.template.or(cfg.template).ok_or_else(|| {
        Error::Usage("no template given: pass --template ID, or set `template` in the [proxmox] table of hostsmith.toml".into())
    })?;
    let template = VmId::new(template).map_err(|e| Error::Usage(format!("template: {e}")))?;
    if vm_id == IdChoice::Fixed(template) {
        return Err(Error::Usage(format!("--vm-id {template} is the template's id: choose a new id for the VM")));
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
    let ip = match &args.ip {
        None => IpConfig::Dhcp,
        Some(cidr) => IpConfig::parse_static(cidr, args.gateway.as_deref())?,
    };
    let wait = args.wait.unwrap_or(cfg.wait);
    if wait == 0 {
        return Err(Error::Usage("--wait must be at least 1 second".into()));
    }
    let vm = vm_settings(args, &fleet.config.proxmox, seeding, &ip)?;
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
        vm,
        start: !args.no_start,
        wait: Duration::from_secs(wait),
        cleanup_on_failure: args.cleanup_on_failure,
        keep_seed: args.keep_seed,
        rotate: args.rotate,
    };
    Ok((d, target))
}

/// The VM's settings besides its seed: options, else `[proxmox]`, else the template's.
fn vm_settings(args: &Args, cfg: &ProxmoxSection, seeding: Seeding, ip: &IpConfig) -> Result<VmSettings> {
    let bridge = args.bridge.as_deref().or(cfg.bridge.as_deref()).map(BridgeName::parse).transpose()?;
    let vlan = args.vlan.or(cfg.vlan);
    if let Some(v) = vlan
        && !(1..=4094).contains(&v)
    {
        return Err(Error::Usage(format!("--vlan {v} is out of range: a VLAN tag is 1 to 4094")));
    }
    let pool = args.pool.as_deref().or(cfg.pool.as_deref()).map(names::pool_id).transpose()?;
    let tags = names::tags(if args.tags.is_empty() { &cfg.tags } else { &args.tags })?;
    let cores = args.cores.or(cfg.cores);
    if cores == Some(0) {
        return Err(Error::Usage("--cores must be at least 1".into()));
    }
    let memory = args.memory.or(cfg.memory);
    if memory.is_some_and(|m| m < 16) {
        return Err(Error::Usage("--memory is in MiB and must be at least 16 (Proxmox's minimum)".into()));
    }
    let disk_size = args.disk_size.as_deref().or(cfg.disk_size.as_deref()).map(DiskSize::parse).transpose()?;
    if let Some(text) = &args.description
        && (text.len() > 8192 || text.chars().any(char::is_control))
    {
        return Err(Error::Usage("--description must be one line of at most 8192 bytes".into()));
    }
    let servers = if args.nameserver.is_empty() { &cfg.nameserver } else { &args.nameserver };
    let nameservers = servers
        .iter()
        .map(|s| s.parse::<IpAddr>().map_err(|_| Error::Usage(format!("nameserver `{}` is not an IP address", s.escape_debug()))))
        .collect::<Result<Vec<_>>>()?;
    let searchdomain = args.searchdomain.clone().or_else(|| cfg.searchdomain.clone()).map(|s| search_domains(&s)).transpose()?;
    if seeding == Seeding::Iso && (searchdomain.is_some() || (!nameservers.is_empty() && *ip == IpConfig::Dhcp)) {
        return Err(Error::Usage(
            "with --seed-iso the seed's network-config carries DNS only for a static address: use --nameserver with --ip, and set search domains in the host's configuration".into(),
        ));
    }
    Ok(VmSettings {
        bridge,
        vlan,
        pool,
        tags,
        description: args.description.clone(),
        onboot: (args.onboot || cfg.onboot == Some(true)).then_some(true),
        cores,
        memory,
        disk_size,
        nameservers,
        searchdomain,
    })
}

/// Space-separated DNS domains, each a plain DNS name (a root dot allowed).
fn search_domains(s: &str) -> Result<String> {
    let domains: Vec<&str> = s.split_whitespace().collect();
    if domains.is_empty() {
        return Err(Error::Usage("--searchdomain is empty: give one or more DNS domains".into()));
    }
    if let Some(bad) = domains.iter().find(|d| !crate::address::is_dns_name(d.strip_suffix('.').unwrap_or(d))) {
        return Err(Error::Usage(format!("search domain `{}` is not a DNS name", bad.escape_debug())));
    }
    Ok(domains.join(" "))
}

/// The node's name, when a dry run may and can reach it.
fn probe_node(node: &Node, allowed: bool) -> Result<String> {
    if allowed {
        node.probe(Duration::from_secs(30))
    } else {
        Err(Error::Usage(
            "`proxmox.ssh_config` comes from the fleet, can run programs and is not trusted (`hostsmith trust`), so a dry run does not reach the node".into(),
        ))
    }
}

/// Prints the plan. Runs only the read-only checks; when the node cannot be reached, says
/// so and still prints the plan (exit 0), with placeholders for what only the node knows.
/// A failed check fails as a real run would.
fn dry_run(fleet: &Fleet, d: &Deployment, node: &Node, probe: bool, ctx: &Context) -> Result<()> {
    let out = &ctx.out;
    let (reachable, plan) = match probe_node(node, probe) {
        Ok(name) => (true, check::check(node, d, &name)?.plan),
        Err(e) => {
            out.note(format!("note: {e}\nnote: the plan below was not checked against the node"));
            let vm_id = match d.vm_id {
                IdChoice::Fixed(id) => Some(id),
                IdChoice::Auto => None,
            };
            (false, Plan { d, vm_id, node: None, template: VmConfig::default(), seed_dir: None })
        }
    };
    let identity = enroll::run(
        fleet,
        vec![Request { host: d.host.clone(), source: KeySource::Generate }],
        Options { rotate: d.rotate, dry_run: true },
    )?;
    let steps = plan.steps();
    out.json(&serde_json::json!({
        "dry_run": true,
        "host": d.host.as_str(),
        "vm_id": plan.vm_id.map(VmId::get),
        "pve": node.describe(),
        "node": plan.node,
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
        plan.id(),
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
            "the host key is verified on port 22 of {addr} before the private key leaves the node; vm_id, node and address go into the host's record"
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
    let keyed = done.keyed_left.as_ref().map(|(p, _)| p.to_string());
    out.json(&serde_json::json!({
        "host": d.host.as_str(),
        "vm_id": done.vm_id.get(),
        "node": done.node_name,
        "address": done.address.as_ref().map(ToString::to_string),
        "fingerprint": done.fingerprint,
        "verified": done.address.is_some(),
        "private_key_on_node": keyed,
        "identity": done.identity,
        "commands": done.commands,
    }));
    let finish = done.keyed_left.as_ref().map(|(_, argvs)| argvs.iter().map(|a| remote_command(a)).collect::<Vec<_>>().join(" && "));
    match &done.address {
        Some(addr) => {
            out.line(format!(
                "deployed: {} is VM {} on node {} at {}, presenting {}, as recorded",
                d.host, done.vm_id, done.node_name, addr.host, done.fingerprint
            ));
            if let (Some(path), Some(finish)) = (&keyed, &finish) {
                out.note(format!(
                    "warning: --keep-seed: {}'s private host key stays on node {} in `{path}` and in VM {}'s cloud-init drive, readable by root there; remove it with: {finish}",
                    d.host, done.node_name, done.vm_id
                ));
            } else {
                out.line(format!(
                    "the private host key is off node {}: VM {} now boots from a seed without it",
                    done.node_name, done.vm_id
                ));
            }
            out.line(format!(
                "next: deploy its configuration, e.g. `deploy .#{h}` (deploy-rs) or `nixos-rebuild switch --flake .#{h} --target-host root@{a}`: its secrets already open with the key it presents",
                h = d.host,
                a = addr.host
            ));
        }
        None => {
            out.line(format!("created: {} is VM {} on node {} (not started)", d.host, done.vm_id, done.node_name));
            out.line(format!(
                "next: `qm start {}` on the node, then `hostsmith verify {} --address ADDRESS`, then remove the private key from the node: {}",
                done.vm_id,
                d.host,
                finish.unwrap_or_default()
            ));
        }
    }
    if !done.shared_seed_storage {
        tracing::info!("the seed storage is local to node {}: the VM starts only there", done.node_name);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_domains_are_dns_names() {
        assert_eq!(super::search_domains(" example.org  lan.example. ").expect("ok"), "example.org lan.example.");
        for bad in ["", "a..b", "-x.org", "a b;c", "x_y.org"] {
            assert!(super::search_domains(bad).is_err(), "{bad}");
        }
    }
}
