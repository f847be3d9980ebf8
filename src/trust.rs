//! Trust in the settings of a fleet that run code on this machine.
//!
//! Two settings of `hostsmith.toml` make hostsmith execute something the fleet chose:
//! `sync.key_command` (a program) and `proxmox.ssh_config` (an ssh configuration, whose
//! `ProxyCommand`, `LocalCommand` or `Match exec` run programs). A fleet is untrusted input,
//! so neither runs until the user has said that this fleet, with these exact settings, may run
//! them: `hostsmith trust` records the fleet's path and a hash of each setting (for the ssh
//! configuration, of its contents too) in the state directory, outside any fleet. A change to
//! either setting (a pull request, a new clone) needs trusting again. Without it, a run asks
//! on a terminal and stops with exit 2 otherwise. A dry run never runs them at all.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fleet::Fleet;

/// One setting that executes, as the fleet has it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Executing {
    /// `sync.key_command` or `proxmox.ssh_config`.
    pub setting: &'static str,
    /// What it is set to, for people.
    pub value: String,
    /// SHA-256 of the setting (and the configuration file's contents), hex.
    pub hash: String,
}

/// Everything recorded as trusted: fleet path → setting → hash.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Store {
    fleets: BTreeMap<String, BTreeMap<String, String>>,
}

/// The settings of `fleet` that execute, present or not.
#[must_use]
pub(crate) fn executing(fleet: &Fleet) -> Vec<Executing> {
    let mut out = Vec::new();
    let command = &fleet.config.sync.key_command;
    if !command.is_empty() {
        let value = serde_json::to_string(command).unwrap_or_default();
        out.push(Executing { setting: "sync.key_command", hash: hash(&[value.as_bytes()]), value });
    }
    if let Some(p) = &fleet.config.proxmox.ssh_config {
        let contents = std::fs::read(crate::config::expand_home(p)).unwrap_or_default();
        out.push(Executing { setting: "proxmox.ssh_config", hash: hash(&[p.as_bytes(), &contents]), value: p.clone() });
    }
    out
}

/// Succeeds when `setting` of `fleet` may run: trusted before, or confirmed now on a terminal.
///
/// # Errors
/// [`Error::Usage`] (exit 2) when it is not trusted and nobody can be asked, or the answer
/// is no.
pub(crate) fn require(fleet: &Fleet, setting: &str) -> Result<()> {
    let Some(current) = executing(fleet).into_iter().find(|e| e.setting == setting) else { return Ok(()) };
    let key = fleet_key(&fleet.root)?;
    let store = load()?;
    if store.fleets.get(&key).and_then(|s| s.get(setting)) == Some(&current.hash) {
        return Ok(());
    }
    let refused = || {
        Error::Usage(format!(
            "`{setting}` in `{}` runs code on this machine ({}), and this fleet's setting has not been trusted here: read it, then run `hostsmith trust` in the fleet",
            fleet.root.join(crate::config::FILE_NAME).display(),
            crate::output::terminal_safe(&current.value)
        ))
    };
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(refused());
    }
    eprint!(
        "{} in {} runs code on this machine:\n  {}\nTrust it for this fleet? [y/N] ",
        setting,
        fleet.root.display(),
        crate::output::terminal_safe(&current.value)
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|source| Error::Read { path: "<stdin>".into(), source })?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        return Err(refused());
    }
    record(fleet, &[current])
}

/// Records `settings` of `fleet` as trusted (replacing what was recorded for it).
///
/// # Errors
/// When the state directory cannot be written.
pub(crate) fn record(fleet: &Fleet, settings: &[Executing]) -> Result<()> {
    let key = fleet_key(&fleet.root)?;
    let mut store = load()?;
    let entry = store.fleets.entry(key).or_default();
    for s in settings {
        entry.insert(s.setting.to_string(), s.hash.clone());
    }
    save(&store)
}

/// Forgets everything trusted for `fleet`.
///
/// # Errors
/// When the state directory cannot be written.
pub(crate) fn revoke(fleet: &Fleet) -> Result<bool> {
    let key = fleet_key(&fleet.root)?;
    let mut store = load()?;
    let had = store.fleets.remove(&key).is_some();
    if had {
        save(&store)?;
    }
    Ok(had)
}

/// Whether `setting`'s current value is the trusted one.
///
/// # Errors
/// When the fleet path cannot be resolved or the store is unreadable.
pub(crate) fn is_trusted(fleet: &Fleet, e: &Executing) -> Result<bool> {
    Ok(load()?.fleets.get(&fleet_key(&fleet.root)?).and_then(|s| s.get(e.setting)) == Some(&e.hash))
}

fn hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn fleet_key(root: &Path) -> Result<String> {
    let abs = std::fs::canonicalize(root).map_err(|source| Error::Read { path: root.to_path_buf(), source })?;
    Ok(abs.display().to_string())
}

fn path() -> Result<PathBuf> {
    Ok(crate::state::dir()?.join("trust.json"))
}

fn load() -> Result<Store> {
    let path = path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config { path: path.clone(), message: format!("{e}; remove the file and trust your fleets again") }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::default()),
        Err(source) => Err(Error::Read { path, source }),
    }
}

fn save(store: &Store) -> Result<()> {
    let path = path()?;
    if let Some(dir) = path.parent() {
        crate::atomic::secret_dir(dir)?;
    }
    let json = serde_json::to_vec_pretty(store).map_err(|e| Error::Write { path: path.clone(), source: std::io::Error::other(e) })?;
    crate::atomic::write(&path, &json, 0o600)
}
