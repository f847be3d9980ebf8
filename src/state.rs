//! hostsmith's own state on this machine, outside any fleet: the sync audit log, pinned
//! `known_hosts` files and the enrolment journal. Kept per user, never in a repository, so
//! nothing in it can be forged by whoever else writes to a fleet.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// `$XDG_STATE_HOME/hostsmith`, else `~/.local/state/hostsmith`.
///
/// # Errors
/// [`Error::Usage`] when neither variable is usable.
pub fn dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Ok(x.join("hostsmith"));
    }
    match std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        Some(home) => Ok(home.join(".local/state/hostsmith")),
        None => {
            Err(Error::Usage("neither XDG_STATE_HOME nor HOME is set: hostsmith has nowhere to keep its state (audit log, journal)".into()))
        }
    }
}
