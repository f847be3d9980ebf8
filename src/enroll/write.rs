//! Writing a planned enrolment, in the order that makes a crash recoverable (see the
//! module docs of [`super`]): host files, shared files, `.sops.yaml`, records last. Every
//! file is staged before the first is named ([`atomic::Batch`]), so a full disk or a
//! read-only file fails the run before anything changed.

use std::collections::HashSet;

use super::plan::Planned;
use crate::atomic;
use crate::error::Result;
use crate::fleet::{Fleet, FleetLock, SOPS_CONFIG};
use crate::host_name::HostName;

/// Writes every changed file (or, with `dry_run`, only lists them). Returns the files,
/// relative to the fleet, in the order written.
pub(super) fn all(
    fleet: &Fleet,
    lock: &mut FleetLock,
    planned: &[Planned],
    shared: &[(String, String)],
    sops_config: Option<&str>,
    dry_run: bool,
) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let mut batch = atomic::Batch::new();
    let mut dirs_made = HashSet::new();
    for p in planned {
        if let Some(text) = &p.host_file_text {
            files.push(p.outcome.host_file.clone());
            if !dry_run {
                let rel = &p.outcome.host_file;
                if let Some((dir, _)) = rel.rsplit_once('/')
                    && dirs_made.insert(dir)
                {
                    fleet.create_parent_dirs(rel)?;
                }
                batch.stage(&fleet.confined(rel)?, text.as_bytes(), 0o644);
            }
        }
    }
    for (rel, text) in shared {
        files.push(rel.clone());
        if !dry_run {
            batch.stage(&fleet.root.join(rel), text.as_bytes(), 0o644);
        }
    }
    if let Some(text) = sops_config {
        files.push(SOPS_CONFIG.to_string());
        if !dry_run {
            batch.stage_locked(&fleet.sops_config_path(), text.as_bytes(), 0o644);
        }
    }
    if !dry_run && !planned.is_empty() {
        atomic::create_dir(&fleet.records_dir(), 0o755)?;
    }
    for p in planned {
        if let Some(rel) = record(fleet, p, dry_run, &mut batch)? {
            files.push(rel);
        }
    }
    // The new `.sops.yaml` was locked before it took its name; the fleet lock keeps it.
    for file in batch.commit()? {
        lock.hold(file);
    }
    Ok(files)
}

/// Stages the host's record when it changed; returns its relative path then.
fn record(fleet: &Fleet, p: &Planned, dry_run: bool, batch: &mut atomic::Batch<'_>) -> Result<Option<String>> {
    let json = p.record.to_json();
    let path = fleet.record_path(&HostName::parse(&p.record.name)?);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(json.as_str()) {
        return Ok(None);
    }
    if !dry_run {
        batch.stage(&path, json.into_bytes(), 0o644);
    }
    Ok(Some(fleet.record_rel(&p.record.name)))
}
