//! `hostsmith check`: every consistency check of the fleet, one exit status
//! ([`crate::fleet_report`]).

use crate::command::Context;
use crate::error::{Error, Result};
use crate::fleet_report;
use crate::output::terminal_safe;

/// # Errors
/// [`Error::Problems`] when a check finds any; bad input as [`fleet_report::Inputs::open`].
pub(crate) fn run(ctx: &Context) -> Result<()> {
    let report = fleet_report::check_fleet(&ctx.fleet_dir)?;
    ctx.out.json(&report);
    for p in &report.problems {
        ctx.out.line(format!("problem: {}", terminal_safe(&p.message)));
    }
    if report.problems.is_empty() {
        ctx.out.line(format!("ok: {} host(s), {} file(s): the rules, records and files agree", report.hosts.len(), report.files.len()));
        Ok(())
    } else {
        Err(Error::Problems { count: report.problems.len() })
    }
}
