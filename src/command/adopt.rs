//! `hostsmith adopt HOST --pubkey FILE|-`: register a machine that already exists from its
//! public host key (what `ssh-keyscan | ssh-to-age` does in the shell scripts, with the key
//! checked and recorded).

use std::io::Read;
use std::path::PathBuf;

use crate::command::{Context, host_names};
use crate::enroll::{self, KeySource, Options, Request};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::ssh_keys;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The host's name in the fleet.
    #[arg(value_name = "HOST")]
    pub host: String,
    /// A file holding the host's `ssh-ed25519` public key, or `-` for stdin.
    #[arg(long, value_name = "FILE")]
    pub pubkey: PathBuf,
    /// Replace the key of a host that already has one.
    #[arg(long)]
    pub rotate: bool,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// # Errors
/// An invalid name or key, or a provisioning failure.
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let host = host_names(std::slice::from_ref(&args.host))?.remove(0);
    let text = if args.pubkey.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|source| Error::Read { path: "<stdin>".into(), source })?;
        s
    } else {
        std::fs::read_to_string(&args.pubkey).map_err(|source| Error::Read { path: args.pubkey.clone(), source })?
    };
    if text.contains("PRIVATE KEY") {
        return Err(Error::Key("that is a private key: give the public key (`.pub`), or use `hostsmith keys import`".into()));
    }
    let public = ssh_keys::parse_public(&text)?;
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    if !args.rotate
        && let Some(rec) = fleet.record(&host)?
    {
        {
            if rec.fingerprint != ssh_keys::fingerprint(&public) {
                return Err(Error::Inconsistent {
                    host: host.to_string(),
                    message: format!(
                        "it is recorded with {} but the given key is {}: pass --rotate to replace the recorded key",
                        rec.fingerprint,
                        ssh_keys::fingerprint(&public)
                    ),
                });
            }
            let report =
                enroll::run(&fleet, vec![Request { host, source: KeySource::Generate }], Options { rotate: false, dry_run: args.dry_run })?;
            super::report::print_report(&report, ctx);
            return Ok(());
        }
    }
    let report = enroll::run(
        &fleet,
        vec![Request { host, source: KeySource::Public(public) }],
        Options { rotate: args.rotate, dry_run: args.dry_run },
    )?;
    super::report::print_report(&report, ctx);
    Ok(())
}
