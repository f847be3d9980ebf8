//! The command layer: one module per subcommand, with its clap `Args` and its `run`. Only
//! `cli` reaches this layer; the domain below never does.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::output::Output;

pub mod adopt;
pub mod args;
pub mod audit;
pub mod cloud_init;
pub mod completions;
pub mod config;
pub mod connect;
pub mod demo;
pub mod deploy_image;
pub mod deploy_keys;
pub mod extra_files;
pub mod init;
pub mod keys;
pub mod known_hosts;
pub mod sops;
pub mod sops_rekey;
pub mod ssh_config;
pub mod sync;
pub mod verify;
pub mod vm_fresh;

/// Shared state every command gets.
pub struct Context {
    pub fleet_dir: PathBuf,
    pub out: Output,
}

/// Turns a list of host name arguments into validated names, all before anything runs.
///
/// # Errors
/// The first invalid name.
pub fn host_names(names: &[String]) -> Result<Vec<crate::host_name::HostName>> {
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
