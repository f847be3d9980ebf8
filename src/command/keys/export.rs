//! `keys export HOST [--deploy REPO] --output FILE [--force]`: a private key, decrypted on
//! purpose, into a file only its owner can read.
//!
//! This is one of the few places a private key leaves its SOPS file in clear, and only
//! because the user asked: the file is created 0600 (`create_new`, so an existing file is
//! never clobbered or followed through a symlink) inside a directory created 0700 when it
//! is missing; `--force` replaces an existing regular file atomically, again 0600 (never a
//! FIFO, device, socket or link: those are refused). An existing
//! directory is left as it is (tightening `/tmp` or `$HOME` would be worse).

use std::path::PathBuf;

use serde::Serialize;

use super::one_host;
use crate::admin_identity::Identities;
use crate::atomic;
use crate::command::Context;
use crate::deploy_keys;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_file::DEPLOY_KEYS_FIELD;
use crate::out_tree;
use crate::sops::file::Value;
use crate::ssh_keys::Keypair;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Export the deploy key for REPO instead of the host key.
    #[arg(long, value_name = "REPO")]
    pub deploy: Option<String>,
    /// The file to create (0600).
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Replace FILE when it exists.
    #[arg(long)]
    pub force: bool,
    /// Check everything (the key decrypts and matches the record) but write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize)]
struct Exported {
    host: String,
    key: String,
    fingerprint: String,
    output: PathBuf,
}

/// # Errors
/// Unknown host or deploy key, an existing output without `--force`, a key that does not
/// match the record, or a failed write.
pub(crate) fn run(args: &Args, ctx: &Context) -> Result<()> {
    let host = one_host(&args.host)?;
    if args.output.is_dir() {
        return Err(Error::Usage(format!("`{}` is a directory: give the path of the key file to create", args.output.display())));
    }
    match args.output.symlink_metadata() {
        Ok(_) if !args.force => {
            return Err(Error::Usage(format!(
                "`{}` already exists: pass --force to replace it, or choose another path",
                args.output.display()
            )));
        }
        _ => out_tree::check_file_target(&args.output, "--output")?,
    }
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let mut ids = Identities::for_fleet(&fleet);
    let (what, key) = match &args.deploy {
        None => ("host key".to_string(), crate::host_file::host_keypair(&fleet, &host, &mut ids)?.1),
        Some(repo) => (format!("deploy key `{repo}`"), deploy_keypair(&fleet, &host, repo, &mut ids)?),
    };
    let report = Exported { host: host.to_string(), key: what, fingerprint: key.fingerprint(), output: args.output.clone() };
    if args.dry_run {
        ctx.out.json(&report);
        ctx.out.line(format!(
            "dry run: would export the {} of {host} ({}) to {} (mode 0600)",
            report.key,
            report.fingerprint,
            args.output.display()
        ));
        return Ok(());
    }
    let text = key.openssh_private()?;
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        atomic::secret_dir(dir)?;
    }
    // Checked again just before the write: only a regular file is ever replaced (never a
    // FIFO or a device such as /dev/null).
    out_tree::file_target(&args.output, "--output")?;
    if args.force {
        atomic::write(&args.output, text.as_bytes(), 0o600)?;
    } else {
        atomic::create_secret(&args.output, text.as_bytes())?;
    }
    ctx.out.json(&report);
    ctx.out.line(format!("exported the {} of {host} ({}) to {} (mode 0600)", report.key, report.fingerprint, args.output.display()));
    ctx.out.note(format!(
        "warning: `{}` grants what the key grants ({}); keep it private and delete it when done",
        args.output.display(),
        if args.deploy.is_some() { "read access to the repository" } else { "the host's identity and every secret the host can read" }
    ));
    Ok(())
}

/// The deploy key for `repo`, decrypted from the host file and checked against the record.
fn deploy_keypair(fleet: &Fleet, host: &crate::host_name::HostName, repo: &str, ids: &mut Identities) -> Result<Keypair> {
    let record = fleet.record(host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    deploy_keys::require_repo(&record, repo)?;
    let path = fleet.host_file(host, Some(&record));
    let decrypted = ids.decrypt_file(&path)?;
    let Some(Value::Str(private)) = decrypted.document().get_path(&[DEPLOY_KEYS_FIELD, repo]) else {
        return Err(Error::Inconsistent {
            host: host.to_string(),
            message: format!(
                "`{}` holds no `{DEPLOY_KEYS_FIELD}.{repo}`: run `hostsmith vm-fresh {host}` to create it",
                fleet.host_file_rel(host, Some(&record))
            ),
        });
    };
    let key = Keypair::from_openssh(private, None)?;
    let recorded = record.deploy_keys.get(repo).map(|l| deploy_keys::fingerprint_of(l)).unwrap_or_default();
    if key.fingerprint() != recorded {
        return Err(Error::Inconsistent {
            host: host.to_string(),
            message: format!(
                "its `{repo}` deploy key is {} but the record says {recorded}: restore the matching pair from version control",
                key.fingerprint()
            ),
        });
    }
    Ok(key)
}
