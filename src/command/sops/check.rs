//! `hostsmith sops check`: is the fleet's `.sops.yaml` consistent with its hosts?

use crate::command::Context;
use crate::enroll;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::sops::rules::SopsConfig;

#[derive(Debug, serde::Serialize)]
struct CheckReport {
    hosts: usize,
    problems: Vec<String>,
}

/// # Errors
/// [`Error::Problems`] when the check finds any.
pub(crate) fn run(ctx: &Context) -> Result<()> {
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let path = fleet.sops_config_path();
    let text = fleet.read_sops_config()?;
    let config = SopsConfig::parse(&text).map_err(|e| Error::SopsRules { path: path.clone(), source: e })?;
    let admins = fleet.config.admins(&fleet.root)?.to_vec();
    let records = fleet.records()?;
    let policy = enroll::policy(&fleet, admins, Fleet::host_file_overrides(&records));
    let mut host_files = Vec::new();
    let mut problems = Vec::new();
    for r in &records {
        let host = HostName::parse(&r.name)?;
        let rel = fleet.host_file_rel(&host, Some(r));
        if !fleet.root.join(&rel).is_file() {
            problems.push(format!("host `{}`: its file `{rel}` is missing", r.name));
        }
        match config.host_recipient(&r.name) {
            None => problems.push(format!("host `{}`: no anchor `&{}` in .sops.yaml; run `hostsmith vm-fresh {}`", r.name, r.name, r.name)),
            Some(v) if v != r.age_recipient => {
                problems.push(format!("host `{}`: .sops.yaml holds {v} but the record says {}", r.name, r.age_recipient));
            }
            Some(_) => {}
        }
        host_files.push(rel);
    }
    problems.extend(config.check(&host_files, &policy).into_iter().map(|p| p.to_string()));
    problems.extend(crate::fleet_check::problems(&fleet, &records));
    let report = CheckReport { hosts: records.len(), problems };
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
