//! The command layer: one module per subcommand, with its clap `Args` and its `run`. Only
//! `cli` reaches this layer; the domain below never does.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::output::Output;

pub(crate) mod adopt;
pub(crate) mod args;
pub(crate) mod audit;
pub(crate) mod check;
pub(crate) mod cloud_init;
pub(crate) mod completions;
pub(crate) mod config;
pub(crate) mod connect;
pub(crate) mod demo;
pub(crate) mod deploy_image;
pub(crate) mod deploy_keys;
pub(crate) mod extra_files;
pub(crate) mod init;
pub(crate) mod keys;
pub(crate) mod known_hosts;
pub(crate) mod report;
pub(crate) mod sops;
pub(crate) mod ssh_config;
pub(crate) mod sync;
pub(crate) mod trust;
pub(crate) mod verify;
pub(crate) mod vm_fresh;

/// Shared state every command gets.
pub(crate) struct Context {
    pub fleet_dir: PathBuf,
    pub out: Output,
}

/// Turns a list of host name arguments into validated names, all before anything runs.
///
/// # Errors
/// The first invalid name.
pub(crate) fn host_names(names: &[String]) -> Result<Vec<crate::host_name::HostName>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for n in names {
        let h = crate::host_name::HostName::parse(n)?;
        if !seen.insert(h.clone()) {
            return Err(Error::Usage(format!("host `{h}` is named twice; name each host once")));
        }
        out.push(h);
    }
    Ok(out)
}
