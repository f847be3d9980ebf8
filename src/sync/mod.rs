//! `sync`: make sure a host's `authorized_keys` holds the admin keys from the source of
//! truth before anyone connects (the azlin pattern), without its faults: keys compared by
//! type and blob rather than a prefix, nothing pasted into a shell, a lock on the host, every
//! outcome audited, the timeout enforced, and success reported only when the host said so.
//!
//! - [`keys`]: parsing and validating the keys and the user name, locally, first.
//! - [`remote`]: the fixed remote script and its stdin protocol.
//! - [`ssh`], [`guest`]: the two ways to run it (OpenSSH pinned to the record; the Proxmox
//!   guest agent).
//! - [`plan`]: options to a validated plan; [`audit`]: the log; [`progress`]: step lines.

pub mod audit;
pub mod guest;
pub mod keys;
pub mod mux;
pub mod plan;
pub mod progress;
pub mod remote;
pub mod ssh;

use std::time::{Duration, Instant};

use crate::error::Error;

use audit::{Entry, Outcome};
use plan::{Known, Plan};
use progress::Progress;
use remote::{KeyState, Mode, Note, Reply};
use ssh::{SshTarget, Trouble};

pub(crate) use crate::config::SyncMethod as Method;

/// A sync that reached the host.
#[derive(Debug, Clone)]
pub struct Reached {
    pub method: Method,
    pub reply: Reply,
}

/// A sync that did not.
#[derive(Debug)]
pub struct Failure {
    pub method: Method,
    pub trouble: Trouble,
    pub error: Error,
}

/// Runs the plan's method(s) and returns the host's reply. With `auto`, a failed
/// guest-agent attempt falls back to ssh; each attempt is bounded by the plan's timeout.
///
/// # Errors
/// The last attempt's failure; a host key mismatch is turned into [`Error::Mismatch`]
/// naming both fingerprints.
pub fn execute(plan: &Plan) -> Result<Reached, Failure> {
    let via_guest = plan.record.vm_id.is_some() && plan.record.proxmox_node.is_some();
    let mut earlier: Option<String> = None;
    if plan.method == Method::GuestAgent || (plan.method == Method::Auto && via_guest) {
        match try_guest(plan) {
            Ok(r) => return Ok(r),
            Err(f) if plan.method == Method::GuestAgent => return Err(f),
            Err(f) => {
                tracing::info!("guest-agent failed ({}); trying ssh", f.error);
                earlier = Some(f.error.to_string());
            }
        }
    }
    try_ssh(plan).map_err(|mut f| {
        if let Some(e) = earlier {
            f.error = match f.error {
                Error::Program { program, message } => {
                    Error::Program { program, message: format!("{message} (guest-agent before it: {e})") }
                }
                other => other,
            };
        }
        f
    })
}

fn wait_for_lock(timeout: Duration) -> u64 {
    timeout.as_secs().saturating_sub(1).max(1)
}

fn try_guest(plan: &Plan) -> Result<Reached, Failure> {
    let fail = |error| Failure { method: Method::GuestAgent, trouble: Trouble::Other, error };
    let node = guest::node_for(&plan.record, plan.pve.as_ref(), plan.pve_ssh_config.as_deref()).map_err(fail)?;
    let vm = plan.record.vm_id.ok_or_else(|| fail(Error::Usage("no recorded vm_id".into())))?;
    let stdin = remote::stdin(plan.mode, wait_for_lock(plan.timeout), &plan.user, &plan.keys);
    let out = guest::attempt(&node, vm, plan.timeout, &stdin).map_err(fail)?;
    let reply = remote::parse_reply(&out, plan.keys.len(), "qm guest exec").map_err(fail)?;
    Ok(Reached { method: Method::GuestAgent, reply })
}

fn try_ssh(plan: &Plan) -> Result<Reached, Failure> {
    let fail = |trouble, error| Failure { method: Method::Ssh, trouble, error };
    let known_hosts = ssh::known_hosts_file(&plan.record).map_err(|e| fail(Trouble::Other, e))?;
    let target = SshTarget {
        alias: plan.host.clone(),
        address: plan.address.clone(),
        user: plan.user.clone(),
        identity: plan.identity.clone(),
        known_hosts,
        control: plan.control.clone(),
    };
    let stdin = remote::stdin(plan.mode, wait_for_lock(plan.timeout), &plan.user, &plan.keys);
    match ssh::attempt(&target, plan.timeout, stdin) {
        Ok((out, stderr)) => match remote::parse_reply(&out, plan.keys.len(), "ssh") {
            Ok(reply) => Ok(Reached { method: Method::Ssh, reply }),
            // Say what the remote side said when the script never started (e.g. nologin).
            Err(Error::Program { program, message }) if !out.windows(16).any(|w| w == b"hostsmith-sync 1") => {
                Err(fail(Trouble::Other, Error::Program { program, message: format!("{message}; the host said: {stderr}") }))
            }
            Err(e) => Err(fail(Trouble::Other, e)),
        },
        Err((Trouble::HostKey, e)) => {
            // Ask the host for its key to say precisely which one it serves.
            let error = match crate::keyscan::verify(&plan.record, &plan.address, plan.timeout) {
                Err(mismatch @ Error::Mismatch { .. }) => mismatch,
                _ => e,
            };
            Err(fail(Trouble::HostKey, error))
        }
        Err((trouble, e)) => Err(fail(trouble, e)),
    }
}

/// The result of [`perform`]: the audit entry written, and the sync's own result.
pub struct Performed {
    pub entry: Entry,
    pub result: Result<Reached, Failure>,
}

/// Executes the plan as a step line, decides the outcome, writes the audit entry.
pub fn perform(plan: &Plan, command: &str, progress: &Progress, started: Instant) -> Performed {
    let label = if plan.keys.len() == 1 {
        format!("Checking key on {}", plan.host)
    } else {
        format!("Checking {} keys on {}", plan.keys.len(), plan.host)
    };
    let result = if plan.method == Method::Skip {
        progress.line(&format!("Skipping key sync for {} (method skip)", plan.host));
        Err(Failure { method: Method::Skip, trouble: Trouble::Other, error: Error::Usage("skipped".into()) })
    } else {
        progress.step(&label, || execute(plan), |r| summary(plan, r))
    };
    let (outcome, method, error) = match &result {
        Ok(r) if plan.mode == Mode::Check => (Outcome::DryRun, r.method, None),
        Ok(r) if r.reply.states.contains(&KeyState::Added) => (Outcome::Synced, r.method, None),
        Ok(r) => (Outcome::Present, r.method, None),
        Err(f) if f.method == Method::Skip => (Outcome::Skipped, Method::Skip, None),
        Err(f) => (Outcome::Failed, f.method, Some(f.error.to_string())),
    };
    let warnings = match &result {
        Ok(r) => warnings(plan, &r.reply),
        Err(_) => Vec::new(),
    };
    for w in &warnings {
        progress.out.note(format!("warning: {w}"));
    }
    let added = match &result {
        Ok(r) => {
            plan.keys.iter().zip(&r.reply.states).filter(|(_, s)| **s != KeyState::Present).map(|(k, _)| k.fingerprint.clone()).collect()
        }
        Err(_) => Vec::new(),
    };
    let entry = Entry {
        timestamp: crate::record::now(),
        command: command.into(),
        host: plan.host.to_string(),
        address: Some(plan.address.to_string()),
        user: Some(plan.user.to_string()),
        method: method.as_str().into(),
        outcome,
        keys: plan.keys.iter().map(|k| k.fingerprint.clone()).collect(),
        added,
        duration_ms: elapsed_ms(started),
        error,
        warnings,
    };
    Performed { entry, result }
}

/// One warning per note of the host's reply, naming the file, the line and the key by its
/// fingerprint (never the line's text, which is the host's).
#[must_use]
pub fn warnings(plan: &Plan, reply: &Reply) -> Vec<String> {
    let place = format!("{}@{}:~/.ssh/authorized_keys line", plan.user, plan.host);
    let fingerprint = |n: &Note| plan.keys.get(n.key() - 1).map_or("?", |k| k.fingerprint.as_str());
    reply
        .notes
        .iter()
        .map(|n| match n {
            Note::Restricted { line, options, .. } => format!(
                "{place} {line}: key {} is there with {} ({}), which may keep it from a shell; \
                 sync counts it present and leaves the line alone (edit the line to lift them)",
                fingerprint(n),
                if options.len() == 1 { "a restricting option" } else { "restricting options" },
                options.join(", ")
            ),
            Note::Invalid { line, why, .. } => {
                format!("{place} {line}: sshd ignores this line with key {} ({why}); it does not count as present", fingerprint(n))
            }
        })
        .collect()
}

/// The audit entry for a run refused before anything was sent.
#[must_use]
pub fn refused(command: &str, host: &str, known: &Known, error: &Error, started: Instant) -> Entry {
    Entry {
        timestamp: crate::record::now(),
        command: command.into(),
        host: host.into(),
        address: known.address.clone(),
        user: known.user.clone(),
        method: "none".into(),
        outcome: Outcome::Failed,
        keys: Vec::new(),
        added: Vec::new(),
        duration_ms: elapsed_ms(started),
        error: Some(format!("refused before connecting: {error}")),
        warnings: Vec::new(),
    }
}

/// An audit entry for a sync not attempted (`connect --no-sync`, `sync.auto = false`).
#[must_use]
pub fn skipped(command: &str, plan_host: &str, address: &str, user: &str, started: Instant) -> Entry {
    Entry {
        timestamp: crate::record::now(),
        command: command.into(),
        host: plan_host.into(),
        address: Some(address.into()),
        user: Some(user.into()),
        method: Method::Skip.as_str().into(),
        outcome: Outcome::Skipped,
        keys: Vec::new(),
        added: Vec::new(),
        duration_ms: elapsed_ms(started),
        error: None,
        warnings: Vec::new(),
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn summary(plan: &Plan, r: &Result<Reached, Failure>) -> String {
    let r = match r {
        Ok(r) => r,
        Err(f) => return format!("✗ failed: {}", f.error),
    };
    let pick = |state| -> Vec<&str> {
        plan.keys.iter().zip(&r.reply.states).filter(|(_, s)| **s == state).map(|(k, _)| k.fingerprint.as_str()).collect()
    };
    let (added, missing) = (pick(KeyState::Added), pick(KeyState::Missing));
    let via = format!(" (via {}, {}@{})", r.method.as_str(), plan.user, plan.address);
    if !added.is_empty() {
        format!("✓ added {} ({}){via}", count_keys(added.len()), added.join(", "))
    } else if !missing.is_empty() {
        format!("✓ would add {} ({}); dry run, nothing written{via}", count_keys(missing.len()), missing.join(", "))
    } else {
        format!("✓ already present{via}")
    }
}

/// `1 key`, `2 keys`.
#[must_use]
pub fn count_keys(n: usize) -> String {
    if n == 1 { "1 key".into() } else { format!("{n} keys") }
}
