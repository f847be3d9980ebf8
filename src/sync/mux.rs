//! One SSH connection for `connect`: the key sync's ssh becomes an OpenSSH control master,
//! and the session that follows runs over it, so `connect` costs one handshake (the sync's)
//! instead of two.
//!
//! The master is opened with the sync's own pinning options (`HostKeyAlias`, the record's
//! known_hosts file, `StrictHostKeyChecking=yes`), so the session is as verified as a
//! connection of its own. Its socket lives in a private directory (0700, owned by the user:
//! `$XDG_RUNTIME_DIR/hostsmith`, else the state directory's `run/`), so no other user can
//! reach it, even when a crash leaves it behind; the master keeps itself
//! [`LINGER_SECS`] after its last client leaves and then exits, removing its socket. When ssh
//! did not open a master (an old ssh, a path too long for a socket), the session connects on
//! its own, as before.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How long the master outlives its last client: the gap between the sync and the session
/// is milliseconds; after the session it is how long a master stays for nobody.
pub const LINGER_SECS: u64 = 2;

/// Longest control path ssh can use: a socket address holds 108 bytes, and ssh binds a
/// temporary name (the path and 17 more characters) before renaming it.
const MAX_PATH: usize = 90;

/// A control socket path for one `connect`.
#[derive(Debug, Clone)]
pub struct Mux {
    path: PathBuf,
}

impl Mux {
    /// A fresh control path for this process, in the private directory; stale sockets of
    /// processes that are gone are removed first.
    ///
    /// # Errors
    /// Why no control path can be used (said under `-v`; the caller connects twice then).
    pub fn new() -> Result<Self, String> {
        let dir = private_dir()?;
        remove_stale(&dir);
        let path = dir.join(format!("m-{}", std::process::id()));
        if path.as_os_str().len() > MAX_PATH {
            return Err(format!("the control socket path `{}` is too long for a socket", path.display()));
        }
        let _ = std::fs::remove_file(&path);
        Ok(Self { path })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a master listens there (the sync's ssh became one).
    #[must_use]
    pub fn is_open(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_socket())
    }
}

/// `$XDG_RUNTIME_DIR/hostsmith` when the runtime directory is ours and private, else the
/// state directory's `run/`; created 0700.
fn private_dir() -> Result<PathBuf, String> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| {
        p.is_absolute()
            && std::fs::metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == rustix::process::geteuid().as_raw() && m.mode() & 0o777 == 0o700)
    });
    let dir = match runtime {
        Some(r) => r.join("hostsmith"),
        None => crate::state::dir().map_err(|e| e.to_string())?.join("run"),
    };
    crate::atomic::secret_dir(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// Removes sockets named for processes that no longer run (a `connect` killed before its
/// master exited).
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("m-")).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() && e.file_type().is_ok_and(|t| t.is_socket()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_path_is_in_a_private_directory_and_stale_sockets_go() {
        let home = tempfile::tempdir().expect("tmp");
        let runtime = home.path().join("run");
        std::fs::create_dir(&runtime).expect("mkdir");
        std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
        let dir = runtime.join("hostsmith");
        std::fs::create_dir(&dir).expect("mkdir");
        let stale = dir.join("m-4000000000");
        let _l = std::os::unix::net::UnixListener::bind(&stale).expect("bind");
        remove_stale(&dir);
        assert!(!stale.exists(), "a socket of a process that is gone is removed");
        let mine = dir.join(format!("m-{}", std::process::id()));
        let _m = std::os::unix::net::UnixListener::bind(&mine).expect("bind");
        remove_stale(&dir);
        assert!(mine.exists(), "a live process's socket stays");
        assert!(Mux { path: mine }.is_open());
        assert!(!Mux { path: dir.join("none") }.is_open());
    }
}
