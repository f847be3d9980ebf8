//! The fleet directory: where its files live, and the lock that serialises runs.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::host_name::HostName;
use crate::record::HostRecord;

pub(crate) const SOPS_CONFIG: &str = ".sops.yaml";

/// A fleet: its root directory and configuration.
pub struct Fleet {
    pub root: PathBuf,
    pub config: Config,
    /// Admin identities to use instead of sops' usual places (the demo's throwaway admin).
    pub admin_identities: Option<Vec<age::x25519::Identity>>,
}

impl Fleet {
    /// Opens the fleet at `root`, reading `hostsmith.toml` when present.
    ///
    /// # Errors
    /// When the directory does not exist or the configuration is invalid.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::Usage(format!(
                "fleet directory `{}` does not exist: create it and run `hostsmith init` there",
                root.display()
            )));
        }
        Ok(Self { root: root.to_path_buf(), config: Config::load(root)?, admin_identities: None })
    }

    #[must_use]
    pub fn sops_config_path(&self) -> PathBuf {
        self.root.join(SOPS_CONFIG)
    }

    /// `<host_dir>/<host>.yaml`, relative to the fleet (the form `.sops.yaml` rules match).
    #[must_use]
    pub fn host_file_rel(&self, host: &HostName) -> String {
        format!("{}/{}.yaml", self.config.sops.host_dir.trim_end_matches('/'), host)
    }

    #[must_use]
    pub fn host_file(&self, host: &HostName) -> PathBuf {
        self.root.join(self.host_file_rel(host))
    }

    #[must_use]
    pub fn records_dir(&self) -> PathBuf {
        self.root.join("hosts")
    }

    #[must_use]
    pub fn record_path(&self, host: &HostName) -> PathBuf {
        self.records_dir().join(format!("{host}.json"))
    }

    /// Reads `.sops.yaml`; its absence is a clear error.
    ///
    /// # Errors
    /// [`Error::NoSopsConfig`] or a read error.
    pub fn read_sops_config(&self) -> Result<String> {
        let path = self.sops_config_path();
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NoSopsConfig { dir: self.root.clone() }),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    /// The record of `host`, if there is one.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn record(&self, host: &HostName) -> Result<Option<HostRecord>> {
        let path = self.record_path(host);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| Error::Inconsistent {
                host: host.to_string(),
                message: format!("`{}` is not a valid host record ({e}); restore it from version control", path.display()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    /// Every record in `hosts/`, sorted by name.
    ///
    /// # Errors
    /// When a record cannot be read or parsed.
    pub fn records(&self) -> Result<Vec<HostRecord>> {
        let dir = self.records_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Read { path: dir, source }),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read { path: dir.clone(), source })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".json")
                && let Ok(host) = HostName::parse(stem)
                && let Some(r) = self.record(&host)?
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Takes the fleet lock, waiting for another run to finish. Released on drop.
    ///
    /// The lock is an advisory `flock` on `.sops.yaml` itself, so a fleet needs no lock file
    /// of its own. Because every write replaces `.sops.yaml` by a rename, a waiter may end up
    /// holding the lock on the file's previous inode; it then locks the current one instead.
    ///
    /// # Errors
    /// [`Error::NoSopsConfig`] when there is no `.sops.yaml`, or when it cannot be locked.
    pub fn lock(&self) -> Result<FleetLock> {
        use std::os::unix::fs::MetadataExt;
        let path = self.sops_config_path();
        loop {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NoSopsConfig { dir: self.root.clone() }),
                Err(source) => return Err(Error::Read { path, source }),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    tracing::info!("waiting for another hostsmith run on this fleet to finish");
                    file.lock().map_err(|_| Error::Locked { path: path.clone() })?;
                }
                Err(std::fs::TryLockError::Error(_)) => return Err(Error::Locked { path }),
            }
            let held = file.metadata().map_err(|source| Error::Read { path: path.clone(), source })?;
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    self.remove_abandoned_staging();
                    return Ok(FleetLock { files: vec![file] });
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NoSopsConfig { dir: self.root.clone() }),
                Err(source) => return Err(Error::Read { path, source }),
            }
        }
    }
}

impl Fleet {
    /// Staging files a killed run left where runs write (the fleet root, the host files' and
    /// the records' directories, the shared files' directories); see
    /// [`crate::atomic::remove_abandoned_staging`].
    fn remove_abandoned_staging(&self) {
        let mut dirs = vec![self.root.clone(), self.records_dir(), self.root.join(self.config.sops.host_dir.trim_end_matches('/'))];
        dirs.extend(self.config.sops.shared.iter().filter_map(|s| self.root.join(s).parent().map(Path::to_path_buf)));
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            crate::atomic::remove_abandoned_staging(&dir);
        }
    }
}

/// Held while a run changes the fleet; the OS releases it when the process ends, however
/// it ends.
pub struct FleetLock {
    files: Vec<File>,
}

impl FleetLock {
    /// Replaces `.sops.yaml` while keeping the lock: the new file is locked before it takes
    /// the old one's place.
    ///
    /// # Errors
    /// [`Error::Write`].
    pub fn replace_sops_config(&mut self, fleet: &Fleet, contents: &[u8]) -> Result<()> {
        let file = crate::atomic::write_locked(&fleet.sops_config_path(), contents, 0o644)?;
        self.files.push(file);
        Ok(())
    }

    /// Keeps the lock on a new `.sops.yaml` that was locked before it took its name
    /// ([`crate::atomic::Batch::stage_locked`]).
    pub fn hold(&mut self, file: File) {
        self.files.push(file);
    }
}
