//! `hostsmith audit [--host H] [--failed] [--json]`: read the sync audit log.

use crate::command::{Context, host_names};
use crate::error::Result;
use crate::sync::audit::{self, Outcome};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only operations on this host.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Only failed operations.
    #[arg(long)]
    pub failed: bool,
    /// Only the last N matching operations.
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
}

/// # Errors
/// An invalid host name, or a log that exists but cannot be read.
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let host = match &args.host {
        Some(h) => Some(host_names(std::slice::from_ref(h))?.remove(0)),
        None => None,
    };
    let (entries, unreadable) = audit::read_all()?;
    let mut matching: Vec<_> = entries
        .into_iter()
        .filter(|e| host.as_ref().is_none_or(|h| e.host == h.as_str()))
        .filter(|e| !args.failed || e.outcome == Outcome::Failed)
        .collect();
    if let Some(n) = args.last {
        matching = matching.split_off(matching.len().saturating_sub(n));
    }
    if unreadable > 0 {
        ctx.out.note(format!("warning: {unreadable} line(s) of {} are not audit entries and were skipped", audit::path()?.display()));
    }
    ctx.out.json(&matching);
    if matching.is_empty() {
        ctx.out.line(format!("no matching operations in {}", audit::path()?.display()));
    }
    for e in &matching {
        let whom = match (&e.user, &e.address) {
            (Some(u), Some(a)) => format!("{u}@{a}"),
            (None, Some(a)) => a.clone(),
            _ => "-".into(),
        };
        let mut line = format!(
            "{}  {:<8} {:<8} {:<12} {:<11} {}  {} ms",
            e.timestamp,
            e.command,
            e.host,
            e.method,
            e.outcome.as_str(),
            whom,
            e.duration_ms
        );
        if !e.added.is_empty() {
            line.push_str(&format!("  {} {}", if e.outcome == Outcome::DryRun { "would add" } else { "added" }, e.added.join(", ")));
        }
        if let Some(err) = &e.error {
            line.push_str(&format!("  error: {err}"));
        }
        ctx.out.line(line);
    }
    Ok(())
}
