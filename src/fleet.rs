//! The fleet directory: where its files live, and the lock that serialises runs.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::host_name::HostName;
use crate::record::HostRecord;

pub(crate) const SOPS_CONFIG: &str = ".sops.yaml";

/// The largest `.sops.yaml` read: far beyond any real fleet, small enough that a hostile file
/// cannot make a run take gigabytes.
const MAX_SOPS_CONFIG: u64 = 16 << 20;

/// A fleet: its root directory and configuration.
pub struct Fleet {
    pub root: PathBuf,
    pub config: Config,
    /// Admin identities to use instead of sops' usual places (the demo's throwaway admin).
    pub admin_identities: Option<Vec<age::x25519::Identity>>,
    /// Whether the lock found that the last run was killed ([`Self::lock`]).
    interrupted: std::sync::atomic::AtomicBool,
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
        let mut config = Config::load(root)?;
        if config.sops.shared_is_default {
            // Unset, the shared file is the one a fleet hostsmith made has: kept when the
            // fleet has it or `.sops.yaml` names it, dropped otherwise, so an adopted fleet is
            // not asked about a file it never had.
            let path = root.join(SOPS_CONFIG);
            let named = || {
                std::fs::metadata(&path).is_ok_and(|m| m.len() <= MAX_SOPS_CONFIG)
                    && std::fs::read_to_string(&path).is_ok_and(|t| t.contains("sops/shared"))
            };
            if !root.join(crate::config::DEFAULT_SHARED).is_file() && !named() {
                config.sops.shared.clear();
            }
        }
        Ok(Self { root: root.to_path_buf(), config, admin_identities: None, interrupted: false.into() })
    }

    #[must_use]
    pub fn sops_config_path(&self) -> PathBuf {
        self.root.join(SOPS_CONFIG)
    }

    /// The host file template, `sops.host_file` (or `<host_dir>/{host}.yaml`).
    #[must_use]
    pub fn host_file_template(&self) -> String {
        self.config.sops.host_file_template()
    }

    /// A host's SOPS file, relative to the fleet (the form `.sops.yaml` rules match): its
    /// record's `sops_file` when it has one, else the template's file. Every command finds a
    /// host's file here; `record` is the host's record when there is one.
    #[must_use]
    pub fn host_file_rel(&self, host: &HostName, record: Option<&HostRecord>) -> String {
        match record.and_then(|r| r.sops_file.as_deref()) {
            Some(file) => file.to_string(),
            None => crate::host_template::render(&self.host_file_template(), host.as_str()),
        }
    }

    /// [`Self::host_file_rel`] below the fleet root.
    #[must_use]
    pub fn host_file(&self, host: &HostName, record: Option<&HostRecord>) -> PathBuf {
        self.root.join(self.host_file_rel(host, record))
    }

    /// The hosts whose file is not the template's: host → its record's `sops_file`.
    #[must_use]
    pub fn host_file_overrides(records: &[HostRecord]) -> std::collections::BTreeMap<String, String> {
        records.iter().filter_map(|r| r.sops_file.clone().map(|f| (r.name.clone(), f))).collect()
    }

    /// `host.records_dir`, relative to the fleet.
    #[must_use]
    pub fn records_dir_rel(&self) -> &str {
        self.config.host.records_dir.trim_end_matches('/')
    }

    #[must_use]
    pub fn records_dir(&self) -> PathBuf {
        self.root.join(self.records_dir_rel())
    }

    /// `<records_dir>/<host>.json`, relative to the fleet, as messages name it.
    #[must_use]
    pub fn record_rel(&self, host: &str) -> String {
        format!("{}/{host}.json", self.records_dir_rel())
    }

    #[must_use]
    pub fn record_path(&self, host: &HostName) -> PathBuf {
        self.records_dir().join(format!("{host}.json"))
    }

    /// Creates the missing directories of `rel` (a file's path relative to the fleet), 0755,
    /// without following a symbolic link on the way; a staging file a killed run left in the
    /// file's directory goes (looked for only when the last run was killed: see
    /// [`Self::lock`]).
    ///
    /// # Errors
    /// [`Error::Usage`] when a component is a link or not a directory; [`Error::Write`].
    pub fn create_parent_dirs(&self, rel: &str) -> Result<()> {
        let Some((dir, _)) = rel.rsplit_once('/') else { return Ok(()) };
        crate::atomic::create_dirs_below(&self.root, dir, 0o755)?;
        if self.interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            crate::atomic::remove_abandoned_staging(&self.root.join(dir));
        }
        Ok(())
    }

    /// `rel` below the fleet, for a file hostsmith reads and then replaces (a host file, a
    /// shared file): refused when it is a symbolic link or its directory resolves outside the
    /// fleet. A link there could make a run re-encrypt another project's secrets into this
    /// fleet, or break the link by replacing it.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the path.
    pub fn confined(&self, rel: &str) -> Result<PathBuf> {
        let path = self.root.join(rel);
        if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::Usage(format!(
                "`{}` is a symbolic link: hostsmith replaces fleet files atomically and does not follow links in a fleet (one could point outside it); make it a regular file",
                path.display()
            )));
        }
        let root = std::fs::canonicalize(&self.root).map_err(|source| Error::Read { path: self.root.clone(), source })?;
        if let Some(dir) = path.parent()
            && let Ok(dir) = std::fs::canonicalize(dir)
            && !dir.starts_with(&root)
        {
            return Err(Error::Usage(format!(
                "`{}` leads outside the fleet (its directory is `{}`): keep the fleet's SOPS files inside it",
                path.display(),
                dir.display()
            )));
        }
        Ok(path)
    }

    /// Reads `.sops.yaml`; its absence is a clear error.
    ///
    /// # Errors
    /// [`Error::NoSopsConfig`] or a read error.
    pub fn read_sops_config(&self) -> Result<String> {
        let path = self.sops_config_path();
        if let Ok(m) = std::fs::metadata(&path)
            && m.len() > MAX_SOPS_CONFIG
        {
            return Err(Error::Usage(format!(
                "`{}` is {} MiB; hostsmith reads at most {} MiB (a fleet of 10,000 hosts needs about 2 MiB): remove what does not belong in it",
                path.display(),
                m.len() >> 20,
                MAX_SOPS_CONFIG >> 20
            )));
        }
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NoSopsConfig { dir: self.root.clone() }),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    /// `.sops.yaml` read ([`Self::read_sops_config`]) and parsed, a parse error naming the file.
    ///
    /// # Errors
    /// As [`Self::read_sops_config`]; [`Error::SopsRules`] when it is not valid.
    pub fn sops_config(&self) -> Result<crate::sops::rules::SopsConfig> {
        let text = self.read_sops_config()?;
        crate::sops::rules::SopsConfig::parse(&text).map_err(|e| Error::SopsRules { path: self.sops_config_path(), source: e })
    }

    /// The record of `host`, if there is one.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn record(&self, host: &HostName) -> Result<Option<HostRecord>> {
        let path = self.record_path(host);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let record: HostRecord = serde_json::from_str(&text)
                    .map_err(|e| Error::Record { path: path.clone(), message: crate::output::terminal_safe(&e.to_string()) })?;
                match crate::record::problem(&record, host.as_str()) {
                    None => Ok(Some(record)),
                    Some(message) => Err(Error::Record { path, message }),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    /// Every record in the records' directory, sorted by name: its regular `*.json` files
    /// (the fleet's own `hosts/<host>/` or `hosts/common/` directories beside them are not
    /// records).
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
        let mut hosts = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read { path: dir.clone(), source })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".json") else { continue };
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            // Every record is read, by hostsmith as by the Nix lib: one whose name is not a
            // host name is not skipped silently.
            let host = HostName::parse(stem)
                .map_err(|e| Error::Record { path: entry.path(), message: format!("its file name is not `<host>.json`: {e}") })?;
            hosts.push(host);
        }
        hosts.sort();
        // Read and validated on every core: a record's check derives its X25519 key.
        let mut out = Vec::with_capacity(hosts.len());
        for r in crate::parallel::map(&hosts, crate::parallel::cores(), |h| self.record(h)) {
            out.extend(r?);
        }
        Ok(out)
    }

    /// Takes the fleet lock, waiting for another run to finish. Released on drop.
    ///
    /// A run under the lock leaves a [`crate::atomic::RunMark`] in the fleet root. Finding
    /// an abandoned one (or any other staging file there) means the last run was killed:
    /// then the directories runs write are searched for what it left
    /// ([`Self::remove_abandoned_staging`]); otherwise they are not read at all.
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
        if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::Usage(format!(
                "`{}` is a symbolic link: hostsmith replaces it atomically, which would cut the link and leave its target stale; make `.sops.yaml` a regular file (`cp --remove-destination \"$(readlink -f .sops.yaml)\" .sops.yaml`)",
                path.display()
            )));
        }
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
                    if crate::atomic::remove_abandoned_staging(&self.root) > 0 {
                        self.interrupted.store(true, std::sync::atomic::Ordering::Relaxed);
                        self.remove_abandoned_staging();
                    }
                    // A fleet whose root cannot be written (a dry run in a read-only
                    // checkout) is locked without a mark: a run there can replace nothing in
                    // the root, and fails naming the first file it cannot write.
                    let mark =
                        crate::atomic::mark_run(&self.root).inspect_err(|e| tracing::debug!("no run mark in the fleet root: {e}")).ok();
                    return Ok(FleetLock { _mark: mark, files: vec![file] });
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NoSopsConfig { dir: self.root.clone() }),
                Err(source) => return Err(Error::Read { path, source }),
            }
        }
    }
}

impl Fleet {
    /// Staging files a killed run left where runs write (the fleet root, the records'
    /// directory, the host files' directory when the template has one for all hosts, the
    /// shared files' directories); see [`crate::atomic::remove_abandoned_staging`]. A
    /// template with a directory per host (`hosts/{host}/secrets.yaml`) is not scanned host
    /// by host: [`Self::create_parent_dirs`] cleans the directory of each file a run writes.
    fn remove_abandoned_staging(&self) {
        let mut dirs = vec![self.root.clone(), self.records_dir()];
        let template = self.host_file_template();
        if let Some((dir, name)) = template.rsplit_once('/')
            && !dir.contains(crate::host_template::PLACEHOLDER)
            && name.contains(crate::host_template::PLACEHOLDER)
        {
            dirs.push(self.root.join(dir));
        }
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
    /// Dropped first, while the lock is still held.
    _mark: Option<crate::atomic::RunMark>,
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
