//! `hostsmith check`: the fleet's consistency as one list of findings, for a fleet's own CI
//! (`lib.fleetCheck` runs it in the Nix sandbox).
//!
//! The checks are a list of named functions over what [`Inputs::open`] read, so a new check
//! is one more entry in [`CHECKS`]. `sops check` runs the first of them ([`SOPS_CHECKS`]),
//! `keys list` shows what [`ACCESS`] finds: one implementation for every command.
//!
//! Everything here reads only what is stored in the clear (`hostsmith.toml`, `.sops.yaml`,
//! the records, the `sops:` metadata and key names of SOPS files): no identity, no network,
//! no program run, and nothing written (no lock, no journal, no state directory), so it
//! works on a read-only copy of the fleet such as a Nix store path.

use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::record::HostRecord;
use crate::sops::rules::SopsConfig;

/// What the checks look at, read once.
pub(crate) struct Inputs {
    pub fleet: Fleet,
    pub config: SopsConfig,
    pub records: Vec<HostRecord>,
    /// `sops.admins`, which every host file must be encrypted for.
    pub admins: Vec<String>,
    /// The fleet's SOPS files, relative to it ([`crate::rekey::discover`]); empty until
    /// [`Self::with_files`].
    pub files: Vec<String>,
}

impl Inputs {
    /// Reads the fleet at `dir`: its configuration, `.sops.yaml` and every record.
    ///
    /// # Errors
    /// Bad input (an invalid `hostsmith.toml`, `.sops.yaml` or record, no `sops.admins`)
    /// exits 2; a missing `.sops.yaml` or an unreadable file 1.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let fleet = Fleet::open(dir)?;
        // `.sops.yaml` is parsed while the records are read (two large inputs, one core each).
        let (config, records) = std::thread::scope(|s| {
            let records = s.spawn(|| fleet.records());
            let config = fleet.sops_config();
            (config, records.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        });
        let (config, records) = (config?, records?);
        let admins = fleet.config.admins(&fleet.root)?.to_vec();
        Ok(Self { fleet, config, records, admins, files: Vec::new() })
    }

    /// Also lists the fleet's SOPS files, which [`ACCESS`] audits.
    ///
    /// # Errors
    /// A directory of the fleet that cannot be read.
    pub(crate) fn with_files(mut self) -> Result<Self> {
        self.files = crate::rekey::discover(&self.fleet)?;
        Ok(self)
    }
}

/// One problem: which check found it, what it concerns, and in words what is wrong and
/// what to do.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finding {
    pub check: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based line of `.sops.yaml`, when the problem has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
}

/// A named check.
pub(crate) struct Check {
    /// The name in `--json` reports.
    pub name: &'static str,
    run: fn(&Inputs) -> Vec<Finding>,
}

impl Check {
    #[must_use]
    pub(crate) fn run(&self, inputs: &Inputs) -> Vec<Finding> {
        (self.run)(inputs)
    }
}

/// Each record has its host file and its anchor in `.sops.yaml`, holding the recorded key.
pub(crate) const RECORDS: Check = Check { name: "records", run: records };
/// The creation rules against the host files, the admins and the shared files.
pub(crate) const RULES: Check = Check { name: "rules", run: rules };
/// Each host file is encrypted for its host and no other; no copies; no orphan host files.
pub(crate) const HOST_FILES: Check = Check { name: "host_files", run: host_files };
/// Who can open what: each SOPS file's recipients against its rule (`keys list`).
pub(crate) const ACCESS: Check = Check { name: "access", run: access };

/// What `sops check` reports, in its order.
pub(crate) const SOPS_CHECKS: &[Check] = &[RECORDS, RULES, HOST_FILES];
/// Everything `hostsmith check` runs.
pub(crate) const CHECKS: &[Check] = &[RECORDS, RULES, HOST_FILES, ACCESS];

/// The findings of `checks`, in their order. The checks only read, so they run side by side.
#[must_use]
pub(crate) fn run(checks: &[Check], inputs: &Inputs) -> Vec<Finding> {
    crate::parallel::map(checks, checks.len(), |c| c.run(inputs)).into_iter().flatten().collect()
}

/// What `hostsmith check` reports.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub hosts: Vec<String>,
    pub files: Vec<String>,
    pub checks: Vec<&'static str>,
    pub problems: Vec<Finding>,
}

/// Runs every check of [`CHECKS`] on the fleet at `dir`, writing nothing.
///
/// # Errors
/// See [`Inputs::open`] and [`Inputs::with_files`].
pub(crate) fn check_fleet(dir: &Path) -> Result<Report> {
    let inputs = Inputs::open(dir)?.with_files()?;
    let problems = run(CHECKS, &inputs);
    Ok(Report {
        hosts: inputs.records.iter().map(|r| r.name.clone()).collect(),
        checks: CHECKS.iter().map(|c| c.name).collect(),
        files: inputs.files,
        problems,
    })
}

fn finding(check: &Check, host: Option<&str>, file: Option<&str>, message: String) -> Finding {
    Finding { check: check.name, host: host.map(str::to_string), file: file.map(str::to_string), line: None, message }
}

fn records(i: &Inputs) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in &i.records {
        let Ok(host) = HostName::parse(&r.name) else { continue };
        let rel = i.fleet.host_file_rel(&host, Some(r));
        let found = |message| finding(&RECORDS, Some(&r.name), Some(&rel), message);
        if !i.fleet.root.join(&rel).is_file() {
            out.push(found(format!("host `{}`: its file `{rel}` is missing", r.name)));
        }
        match i.config.host_recipient(&r.name) {
            None => {
                out.push(found(format!("host `{}`: no anchor `&{}` in .sops.yaml; run `hostsmith vm-fresh {}`", r.name, r.name, r.name)));
            }
            Some(v) if v != r.age_recipient => {
                out.push(found(format!("host `{}`: .sops.yaml holds {v} but the record says {}", r.name, r.age_recipient)));
            }
            Some(_) => {}
        }
    }
    out
}

fn rules(i: &Inputs) -> Vec<Finding> {
    let host_files: Vec<String> =
        i.records.iter().filter_map(|r| HostName::parse(&r.name).ok().map(|h| i.fleet.host_file_rel(&h, Some(r)))).collect();
    let policy = crate::enroll::policy(&i.fleet, i.admins.clone(), Fleet::host_file_overrides(&i.records));
    i.config
        .check(&host_files, &policy)
        .into_iter()
        .map(|p| Finding { line: p.line, ..finding(&RULES, None, Some(crate::fleet::SOPS_CONFIG), p.to_string()) })
        .collect()
}

fn host_files(i: &Inputs) -> Vec<Finding> {
    crate::fleet_check::problems(&i.fleet, &i.records).into_iter().map(|message| finding(&HOST_FILES, None, None, message)).collect()
}

fn access(i: &Inputs) -> Vec<Finding> {
    crate::key_audit::problems(&i.fleet, &i.config, &i.records, &i.files)
        .into_iter()
        .map(|p| finding(&ACCESS, p.host.as_deref(), p.file.as_deref(), p.message))
        .collect()
}
