//! The audit log: one JSON line per sync operation, whatever its outcome, at
//! `$XDG_STATE_HOME/hostsmith/audit.jsonl` (default `~/.local/state/hostsmith/`).
//!
//! The seed logged successes only, so a dry run or a skipped sync left no trace. Here every
//! outcome is written, with key fingerprints and never key material. The directory is 0700
//! and the file 0600; each entry is appended through `O_APPEND` with a single `write`, so
//! concurrent runs never interleave their lines.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const FILE_NAME: &str = "audit.jsonl";

/// How a sync ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// At least one key was appended.
    Synced,
    /// Every key was there already; nothing was written.
    Present,
    /// Checked only (`--dry-run`); nothing was written.
    DryRun,
    /// Not attempted (`--method skip`, `--no-sync`, `sync.auto = false`).
    Skipped,
    Failed,
}

impl Outcome {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Synced => "synced",
            Outcome::Present => "present",
            Outcome::DryRun => "dry-run",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }
}

/// One operation. Fields may be added, never change meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339, UTC.
    pub timestamp: String,
    /// `sync` or `connect`.
    pub command: String,
    pub host: String,
    /// `ADDR:PORT` reached (or meant to be), when known.
    pub address: Option<String>,
    pub user: Option<String>,
    /// `ssh`, `guest-agent`, `skip`, or `none` when refused before choosing.
    pub method: String,
    pub outcome: Outcome,
    /// Fingerprints of the keys the sync carried.
    pub keys: Vec<String>,
    /// Fingerprints appended (or, in a dry run, that would be).
    pub added: Vec<String>,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// What the host's `authorized_keys` holds that the admin should know: a key on a line
    /// sshd rejects, or present only with restricting options. Absent when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// hostsmith's state directory (see [`crate::state::dir`]).
pub use crate::state::dir as state_dir;

/// The audit log's path.
///
/// # Errors
/// See [`state_dir`].
pub fn path() -> Result<PathBuf> {
    Ok(state_dir()?.join(FILE_NAME))
}

/// Appends `entry` as one line.
///
/// # Errors
/// [`Error::Write`] with the path.
pub fn append(entry: &Entry) -> Result<()> {
    let dir = state_dir()?;
    crate::atomic::secret_dir(&dir)?;
    let path = dir.join(FILE_NAME);
    let mut line = serde_json::to_string(entry).map_err(|e| Error::Write { path: path.clone(), source: std::io::Error::other(e) })?;
    line.push('\n');
    let err = |source| Error::Write { path: path.clone(), source };
    let mut file = OpenOptions::new().append(true).create(true).mode(0o600).open(&path).map_err(err)?;
    // One write of the whole line: with O_APPEND the kernel places it at the end atomically.
    let written = file.write(line.as_bytes()).map_err(err)?;
    if written != line.len() {
        return Err(err(std::io::Error::other("short write to the audit log")));
    }
    Ok(())
}

/// Every entry in the log, oldest first, and how many lines could not be read.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn read_all() -> Result<(Vec<Entry>, usize)> {
    let path = path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(source) => return Err(Error::Read { path, source }),
    };
    let mut bad = 0;
    let entries = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let e = serde_json::from_str::<Entry>(l).ok();
            bad += usize::from(e.is_none());
            e
        })
        .collect();
    Ok((entries, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_serialise_as_the_issue_names_them() {
        for (o, s) in [
            (Outcome::Synced, "synced"),
            (Outcome::Present, "present"),
            (Outcome::DryRun, "dry-run"),
            (Outcome::Skipped, "skipped"),
            (Outcome::Failed, "failed"),
        ] {
            assert_eq!(serde_json::to_string(&o).expect("json"), format!("\"{s}\""));
            assert_eq!(o.as_str(), s);
        }
    }
}
