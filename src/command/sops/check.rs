//! `hostsmith sops check`: is the fleet's `.sops.yaml` consistent with its hosts? The checks
//! are [`crate::fleet_report::SOPS_CHECKS`], which `hostsmith check` runs too.

use crate::command::Context;
use crate::error::{Error, Result};
use crate::fleet_report::{self, Inputs};

#[derive(Debug, serde::Serialize)]
struct CheckReport {
    hosts: usize,
    /// The admins' keys by kind (X25519, a plugin's, SSH, post-quantum, PGP).
    admins: Vec<crate::key_audit::AdminView>,
    problems: Vec<String>,
}

/// # Errors
/// [`Error::Problems`] when the check finds any.
pub(crate) fn run(ctx: &Context) -> Result<()> {
    let inputs = Inputs::open(&ctx.fleet_dir)?;
    let problems = fleet_report::run(fleet_report::SOPS_CHECKS, &inputs).into_iter().map(|f| f.message).collect();
    let admins = crate::key_audit::admin_views(&inputs.fleet, &inputs.config);
    let report = CheckReport { hosts: inputs.records.len(), admins, problems };
    ctx.out.json(&report);
    for p in &report.problems {
        ctx.out.line(format!("problem: {}", crate::output::terminal_safe(p)));
    }
    if !report.problems.is_empty() {
        return Err(Error::Problems { count: report.problems.len() });
    }
    ctx.out.line(format!("ok: {} host(s), every rule and anchor consistent", report.hosts));
    if !report.admins.is_empty() {
        let kinds: Vec<String> = report.admins.iter().map(|a| format!("{} ({})", a.name, a.kind)).collect();
        ctx.out.line(format!("admins: {}", kinds.join(", ")));
    }
    for a in report.admins.iter().filter(|a| a.missing.is_some()) {
        ctx.out.line(format!("note: admin `{}`: {}", a.name, a.missing.as_deref().unwrap_or_default()));
    }
    Ok(())
}
