//! From command-line options and the fleet to a validated [`Plan`]: the host's record, the
//! address, the user, the keys, the method and the timeout. Every input is checked here,
//! before any connection; a refusal still names what was known, for the audit log.

use std::path::PathBuf;
use std::time::Duration;

use crate::address::Address;
use crate::config::MAX_TIMEOUT;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::record::HostRecord;

use super::Method;
use super::keys::{self, SyncKey, UserName};
use super::remote::Mode;

/// What `sync` and `connect` share on their command lines.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub address: Option<String>,
    pub user: Option<String>,
    /// Key files or key lines; empty for `sync.key_command` or `cloud_init.authorized_keys`.
    pub keys: Vec<String>,
    pub method: Option<Method>,
    pub timeout: Option<u64>,
    pub identity: Option<PathBuf>,
    /// The Proxmox node for guest-agent, `USER@HOST[:PORT]` (default `root@<proxmox_node>`).
    pub pve: Option<String>,
    pub dry_run: bool,
}

/// A sync, fully validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub host: HostName,
    pub record: HostRecord,
    pub address: Address,
    pub user: UserName,
    pub identity: Option<PathBuf>,
    /// The Proxmox node to run guest-agent through, when not `root@<proxmox_node>`.
    pub pve: Option<crate::proxmox::Target>,
    /// `proxmox.ssh_config`: the ssh config file for reaching the node.
    pub pve_ssh_config: Option<PathBuf>,
    pub keys: Vec<SyncKey>,
    /// Where the keys came from, for people.
    pub source: String,
    pub method: Method,
    pub timeout: Duration,
    pub mode: Mode,
    /// A control socket the ssh sync opens as a shared master ([`super::mux`]).
    pub control: Option<PathBuf>,
}

/// What was known when a plan was refused.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub address: Option<String>,
    pub user: Option<String>,
}

/// The address a host is reached at: `--address`, else the first recorded one, else its
/// name.
///
/// # Errors
/// An invalid `--address`.
pub fn address(host: &HostName, record: &HostRecord, given: Option<&str>) -> Result<Address> {
    if let Some(a) = given {
        return Address::parse(a);
    }
    if let Some(a) = record.addresses.iter().find_map(|a| Address::parse(a).ok()) {
        return Ok(a);
    }
    Address::parse(host.as_str())
}

/// The user: `--user`, else `cloud_init.user` (the admin user the seed creates).
///
/// # Errors
/// An invalid name (exit 2).
pub fn user(fleet: &Fleet, given: Option<&str>) -> Result<UserName> {
    UserName::parse(given.unwrap_or(&fleet.config.cloud_init.user))
}

/// The timeout: the option, else `sync.timeout`.
///
/// # Errors
/// Zero or more than [`MAX_TIMEOUT`].
pub fn timeout(fleet: &Fleet, given: Option<u64>) -> Result<Duration> {
    let secs = given.unwrap_or(fleet.config.sync.timeout);
    if secs == 0 || secs > MAX_TIMEOUT {
        return Err(Error::Usage(format!("timeout {secs}s is out of range: use 1 to {MAX_TIMEOUT} seconds")));
    }
    Ok(Duration::from_secs(secs))
}

/// Builds the plan. The record must exist; everything else is validated in the order a
/// user would fix it.
///
/// # Errors
/// The first problem, with what was known so far.
pub fn plan(fleet: &Fleet, host: &HostName, opts: &Options) -> std::result::Result<Plan, (Known, Error)> {
    let mut known = Known { address: opts.address.clone(), user: opts.user.clone() };
    let record = match fleet.record(host) {
        Ok(Some(r)) => r,
        Ok(None) => return Err((known, Error::UnknownHost { host: host.to_string() })),
        Err(e) => return Err((known, e)),
    };
    let address = address(host, &record, opts.address.as_deref()).map_err(|e| (known.clone(), e))?;
    known.address = Some(address.to_string());
    known.user = Some(opts.user.clone().unwrap_or_else(|| fleet.config.cloud_init.user.clone()));
    let user = user(fleet, opts.user.as_deref()).map_err(|e| (known.clone(), e))?;
    let timeout = timeout(fleet, opts.timeout).map_err(|e| (known.clone(), e))?;
    let method = opts.method.unwrap_or(fleet.config.sync.method);
    let pve = if matches!(method, Method::Auto | Method::GuestAgent) {
        node_target(fleet, &record, opts).map_err(|e| (known.clone(), e))?
    } else {
        None
    };
    if method == Method::GuestAgent && (record.vm_id.is_none() || record.proxmox_node.is_none()) {
        let e = Error::Usage(format!(
            "host `{host}` has no recorded Proxmox VM (vm_id and proxmox_node in hosts/{host}.json): guest-agent cannot reach it; use --method ssh"
        ));
        return Err((known, e));
    }
    // The node's ssh configuration comes from the fleet and can run programs
    // (`ProxyCommand`): only once trusted (a dry run does not ask).
    let dry_untrusted = opts.dry_run && !crate::trust::trusted(fleet, "proxmox.ssh_config").map_err(|e| (known.clone(), e))?;
    let pve_ssh_config = match &fleet.config.proxmox.ssh_config {
        Some(_) if dry_untrusted => None,
        Some(p) if matches!(method, Method::Auto | Method::GuestAgent) && (pve.is_some() || record.proxmox_node.is_some()) => {
            crate::trust::require(fleet, "proxmox.ssh_config").map_err(|e| (known.clone(), e))?;
            Some(keys::expand_home(p))
        }
        _ => None,
    };
    let (keys, source) = if method == Method::Skip {
        (Vec::new(), "nothing (skipped)".to_string())
    } else {
        source_keys(fleet, host, opts, timeout).map_err(|e| (known.clone(), e))?
    };
    Ok(Plan {
        host: host.clone(),
        record,
        address,
        user,
        identity: opts.identity.clone(),
        pve,
        pve_ssh_config,
        keys,
        source,
        method,
        timeout,
        mode: if opts.dry_run { Mode::Check } else { Mode::Apply },
        control: None,
    })
}

/// The source of truth: `--key`, else `sync.key_command`, else `cloud_init.authorized_keys`.
fn source_keys(fleet: &Fleet, host: &HostName, opts: &Options, timeout: Duration) -> Result<(Vec<SyncKey>, String)> {
    if !opts.keys.is_empty() {
        return Ok((keys::from_entries(&opts.keys, "--key")?, "--key".into()));
    }
    let command = &fleet.config.sync.key_command;
    if !command.is_empty() {
        // A fleet-supplied program: only once trusted (a dry run does not ask).
        if opts.dry_run && !crate::trust::trusted(fleet, "sync.key_command")? {
            return Ok((Vec::new(), "sync.key_command (not trusted: not run in a dry run)".into()));
        }
        crate::trust::require(fleet, "sync.key_command")?;
        return Ok((keys::from_command(command, host, timeout)?, format!("sync.key_command ({})", command[0])));
    }
    Ok((keys::from_entries(&fleet.config.cloud_init.authorized_keys, "cloud_init.authorized_keys")?, "cloud_init.authorized_keys".into()))
}

/// The node for guest-agent: `--pve`, else `proxmox.pve` when it is the node the VM runs
/// on (`proxmox.node` unset or equal to the recorded `proxmox_node`: in a cluster `qm` only
/// sees the VMs of its own node), else none (then `root@<proxmox_node>`).
fn node_target(fleet: &Fleet, record: &HostRecord, opts: &Options) -> Result<Option<crate::proxmox::Target>> {
    if let Some(p) = &opts.pve {
        return crate::proxmox::Target::parse(p).map(Some);
    }
    let cfg = &fleet.config.proxmox;
    let same_node = cfg.node.is_none() || cfg.node == record.proxmox_node;
    match &cfg.pve {
        Some(p) if same_node && record.proxmox_node.is_some() => crate::proxmox::Target::parse(p).map(Some),
        _ => Ok(None),
    }
}
