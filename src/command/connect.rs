//! `hostsmith connect HOST [-- SSH ARGS]`: sync the admin keys (fail-safe), then replace
//! this process with OpenSSH pinned to the host's recorded key, so even the very first
//! connection is verified rather than trusted.
//!
//! A sync that fails for any reason but a wrong host key is a warning, and the session is
//! attempted anyway (the seed's fail-safe). A host serving another key than its record is
//! never connected to: `connect` names both fingerprints and exits 3. Messages go to stderr,
//! because stdout belongs to the session.

use std::path::PathBuf;
use std::time::Instant;

use crate::command::{Context, host_names};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::sync::plan::{self, Options};
use crate::sync::progress::{Progress, Stream};
use crate::sync::ssh::{self, SshTarget, Trouble};
use crate::sync::{self, Method, audit};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Where to reach it (default: its first recorded address, else its name).
    #[arg(long, value_name = "A[:PORT]")]
    pub address: Option<String>,
    /// The account to log in as (default: `cloud_init.user`).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Do not sync keys first.
    #[arg(long)]
    pub no_sync: bool,
    /// How to sync (default: `sync.method`).
    #[arg(long, value_enum, value_name = "METHOD")]
    pub sync_method: Option<Method>,
    /// Seconds the sync (and the host key check) may take (default: `sync.timeout`).
    #[arg(long, value_name = "SECS")]
    pub sync_timeout: Option<u64>,
    /// Public key file (or key line) to sync instead of the configured source; repeatable.
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<String>,
    /// Private key to log in with (`ssh -i`, `IdentitiesOnly=yes`).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The Proxmox node for a guest-agent sync.
    #[arg(long, value_name = "USER@HOST[:PORT]")]
    pub pve: Option<String>,
    /// Check the keys without writing, and print the ssh command instead of running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Passed to ssh after the destination: options and/or a remote command.
    #[arg(last = true, value_name = "SSH ARGS")]
    pub ssh_args: Vec<String>,
}

/// # Errors
/// Bad input (exit 2); a host serving another key (exit 3); ssh that cannot be started.
/// On success this function does not return: ssh replaces the process.
#[allow(clippy::too_many_lines, reason = "one sequence (sync, check the key, exec) told in order; the steps are shared helpers already")]
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let started = Instant::now();
    let host = host_names(std::slice::from_ref(&args.host))?.remove(0);
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let record = fleet.record(&host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let address = plan::address(&host, &record, args.address.as_deref())?;
    let user = plan::user(&fleet, args.user.as_deref())?;
    let timeout = plan::timeout(&fleet, args.sync_timeout)?;
    let progress = Progress { out: ctx.out, stream: Stream::Stderr };
    let method = args.sync_method.unwrap_or(fleet.config.sync.method);

    // Whether the host key is already known good (an ssh sync verified it), and whether it
    // is worth asking the host for it (not when it just failed to answer).
    let mut verified = false;
    let mut ask = true;
    let why_not = if args.no_sync {
        Some("--no-sync")
    } else if !fleet.config.sync.auto {
        Some("sync.auto = false")
    } else if method == Method::Skip {
        Some("sync method skip")
    } else {
        None
    };
    // The sync's connection is kept for the session (one handshake instead of two).
    let mux = if args.dry_run || why_not.is_some() {
        None
    } else {
        match sync::mux::Mux::new() {
            Ok(m) => Some(m),
            Err(why) => {
                tracing::info!("no shared connection ({why}): the sync and the session connect separately");
                None
            }
        }
    };
    if let Some(why) = why_not {
        progress.line(&format!("Skipping key sync ({why})"));
        let entry = sync::skipped("connect", host.as_str(), &address.to_string(), user.as_str(), started);
        warn_unlogged(ctx, audit::append(&entry));
    } else {
        let opts = Options {
            address: Some(address.to_string()),
            user: Some(user.to_string()),
            keys: args.keys.clone(),
            method: Some(method),
            timeout: Some(timeout.as_secs()),
            identity: args.identity.clone(),
            pve: args.pve.clone(),
            dry_run: args.dry_run,
        };
        match plan::plan(&fleet, &host, &opts) {
            // A key that fails validation means a tampered source: stop, as `sync` does.
            Err((known, e @ Error::Key(_))) => {
                crate::command::sync::log_refusal(ctx, "connect", host.as_str(), &known, &e, started);
                return Err(e);
            }
            // No keys to sync (a source that cannot be read, a failing key_command): the
            // seed's fail-safe, warn and go on.
            Err((known, e)) => {
                crate::command::sync::log_refusal(ctx, "connect", host.as_str(), &known, &e, started);
                progress.line(&format!(
                    "Warning: key sync failed ({e}); connecting anyway: the connection may fail if {host} does not hold your key"
                ));
            }
            Ok(mut plan) => {
                plan.control = mux.as_ref().map(|m| m.path().to_path_buf());
                progress.line(&format!("Reading keys from {}... ✓ {}", plan.source, sync::count_keys(plan.keys.len())));
                let done = sync::perform(&plan, "connect", &progress, started);
                warn_unlogged(ctx, audit::append(&done.entry));
                match done.result {
                    Ok(r) => verified = r.method == Method::Ssh,
                    Err(f) if matches!(f.error, Error::Mismatch { .. }) => return Err(f.error),
                    Err(f) => {
                        ask = f.trouble != Trouble::Unreachable;
                        progress.line(&format!(
                            "Warning: key sync failed ({}); connecting anyway: the connection may fail if {host} does not hold your key",
                            f.error
                        ));
                    }
                }
            }
        }
    }

    if !verified && ask {
        match crate::keyscan::verify(&record, &address, timeout) {
            Ok(_) => {}
            Err(e @ Error::Mismatch { .. }) => return Err(e),
            Err(e) => progress.line(&format!("Note: could not check the host key beforehand ({e}); ssh checks it against the record")),
        }
    }

    let known_hosts = ssh::known_hosts_file(&record)?;
    let target = SshTarget {
        alias: host.clone(),
        address: address.clone(),
        user: user.clone(),
        identity: args.identity.clone(),
        known_hosts,
        control: None,
    };
    let login = ssh::pinned_login(&target);
    let login = match &mux {
        Some(m) if m.is_open() => {
            tracing::info!("the session reuses the sync's connection ({})", m.path().display());
            login.via_master(m.path())
        }
        // The sync went over ssh, but ssh kept no master (an ssh without multiplexing).
        Some(m) if verified => {
            tracing::info!("ssh opened no shared connection at {}: the session connects on its own", m.path().display());
            login
        }
        _ => login,
    };
    let session = login.session(&address.host, args.ssh_args.iter().cloned());
    if args.dry_run {
        ctx.out.json(&serde_json::json!({ "host": host.as_str(), "argv": session.argv() }));
        ctx.out.line(format!("Would run: {}", session.display()));
        return Ok(());
    }
    progress.line(&format!("Connecting to {host} as {user}@{address} (host key pinned to {})...", record.fingerprint));
    Err(session.exec())
}

fn warn_unlogged(ctx: &Context, r: Result<()>) {
    if let Err(e) = r {
        ctx.out.note(format!("warning: the audit log was not written: {e}"));
    }
}
