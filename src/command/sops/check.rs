//! `hostsmith sops check`: is the fleet's `.sops.yaml` consistent with its hosts? The checks
//! are [`crate::fleet_report::SOPS_CHECKS`], which `hostsmith check` runs too.

use crate::command::Context;
use crate::error::{Error, Result};
use crate::fleet_report::{self, Inputs};

#[derive(Debug, serde::Serialize)]
struct CheckReport {
    hosts: usize,
    problems: Vec<String>,
}

/// # Errors
/// [`Error::Problems`] when the check finds any.
pub(crate) fn run(ctx: &Context) -> Result<()> {
    let inputs = Inputs::open(&ctx.fleet_dir)?;
    let problems = fleet_report::run(fleet_report::SOPS_CHECKS, &inputs).into_iter().map(|f| f.message).collect();
    let report = CheckReport { hosts: inputs.records.len(), problems };
    ctx.out.json(&report);
    for p in &report.problems {
        ctx.out.line(format!("problem: {}", crate::output::terminal_safe(p)));
    }
    if report.problems.is_empty() {
        ctx.out.line(format!("ok: {} host(s), every rule and anchor consistent", report.hosts));
        Ok(())
    } else {
        Err(Error::Problems { count: report.problems.len() })
    }
}
