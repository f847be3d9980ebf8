//! The enrolment journal: which host keys this machine wrote into a fleet's host files
//! before their records existed.
//!
//! A run writes a new host's SOPS file before its record (see [`crate::enroll`]), so a run
//! killed in between leaves a host file without a record, and the next run should reuse that
//! key rather than make another. But a host file without a record is also exactly what
//! anyone who can write to the fleet can forge: the admin recipient is public, so they can
//! encrypt a key *they* know for it. Nothing inside the fleet can tell the two apart. So the
//! proof lives outside it: before writing host files, a run notes each new host's fingerprint
//! here, under the user's state directory; a later run recovers a record-less host file only
//! when its key is the one noted for that fleet and host (or when the user names the host
//! with `--recover`). Entries go once the records are written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic;
use crate::error::{Error, Result};

/// One fleet's journal file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entries {
    /// The fleet's absolute path, for people reading the file.
    fleet: String,
    /// Host → fingerprint of the key written to its host file, record still to come.
    pending: BTreeMap<String, String>,
}

/// The journal of one fleet.
pub(crate) struct Journal {
    path: PathBuf,
    entries: Entries,
}

impl Journal {
    /// Reads the journal of the fleet at `root` (empty when there is none, or when it cannot
    /// be read: the journal only ever adds a way to recover, it never blocks a run).
    ///
    /// # Errors
    /// When there is no state directory or the fleet path cannot be made absolute.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let fleet = std::fs::canonicalize(root).map_err(|source| Error::Read { path: root.to_path_buf(), source })?;
        let id: String = Sha256::digest(fleet.as_os_str().as_encoded_bytes())[..12].iter().map(|b| format!("{b:02x}")).collect();
        let path = crate::state::dir()?.join("journal").join(format!("{id}.json"));
        let entries = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring the unreadable journal `{}`: {e}", path.display());
                Entries::default()
            }),
            Err(_) => Entries::default(),
        };
        let entries = Entries { fleet: fleet.display().to_string(), ..entries };
        Ok(Self { path, entries })
    }

    /// Whether this machine wrote `host`'s host file with the key `fingerprint`.
    #[must_use]
    pub(crate) fn wrote(&self, host: &str, fingerprint: &str) -> bool {
        self.entries.pending.get(host).is_some_and(|f| f == fingerprint)
    }

    /// Notes the keys about to be written, before any host file is.
    ///
    /// # Errors
    /// [`Error::Write`]: then no host file is written either.
    pub(crate) fn note(&mut self, keys: impl IntoIterator<Item = (String, String)>) -> Result<()> {
        let mut changed = false;
        for (host, fingerprint) in keys {
            changed |= self.entries.pending.insert(host, fingerprint.clone()).is_none_or(|old| old != fingerprint);
        }
        if changed { self.save() } else { Ok(()) }
    }

    /// Forgets `hosts`, whose records are now written.
    ///
    /// # Errors
    /// [`Error::Write`].
    pub(crate) fn forget<'a>(&mut self, hosts: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let before = self.entries.pending.len();
        for host in hosts {
            self.entries.pending.remove(host);
        }
        if self.entries.pending.len() == before {
            return Ok(());
        }
        if self.entries.pending.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(Error::Write { path: self.path.clone(), source }),
            };
        }
        self.save()
    }

    fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            atomic::secret_dir(dir)?;
        }
        let json = serde_json::to_vec_pretty(&self.entries)
            .map_err(|e| Error::Write { path: self.path.clone(), source: std::io::Error::other(e) })?;
        atomic::write(&self.path, &json, 0o600)
    }
}
