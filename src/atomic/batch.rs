//! Many files written together, all-or-nothing per file and with durability paid once per
//! batch rather than once per file in a row.
//!
//! Every file is written into a private staging directory (0700, named with
//! [`STAGING_PREFIX`], locked with `flock` while the batch lives) and fsynced, several at a
//! time: an fsync mostly waits for the disk, and a disk serves many at once. Only when all
//! of them are on disk does the first take its name, by a rename out of the staging
//! directory, in the order staged; then every directory that received a file is fsynced,
//! again several at a time. A run that cannot write everything (a full disk, a quota, a
//! read-only directory) fails before any name changed; a kill during the naming leaves
//! each file as it was or as it will be; a kill at any moment leaves at most a staging
//! directory, which the next run that takes the fleet lock removes (its lock died with its
//! writer). No descriptor is held per file, so a batch may hold any number of files.
//!
//! A rename cannot leave a mount, so there is one staging directory per mount the files go
//! to, inside the first of their directories on it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FlockOperation, Mode, OFlags, RenameFlags, StatxFlags};
use rustix::io::Errno;

use super::{Place, crash_point, open_dir, remove_stage_dir, staging_name};
use crate::error::{Error, Result};

/// How many files are written and fsynced at once: enough to keep a disk's queue busy,
/// few enough to bound threads and descriptors (and the kernel time that many concurrent
/// fsyncs spend contending on one file system).
const WRITERS: usize = 8;

/// Files written together (see the module docs). Contents may be borrowed from the caller
/// for as long as the batch lives.
#[derive(Default)]
pub struct Batch<'a> {
    files: Vec<Pending<'a>>,
}

struct Pending<'a> {
    path: PathBuf,
    contents: Cow<'a, [u8]>,
    mode: u32,
    how: Place,
}

impl<'a> Batch<'a> {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `contents` for `path` with `mode`; nothing is written before [`Batch::commit`].
    pub fn stage(&mut self, path: &Path, contents: impl Into<Cow<'a, [u8]>>, mode: u32) {
        self.push(path, contents.into(), mode, Place::Replace);
    }

    /// Like [`Batch::stage`]; the commit returns this file still locked (see
    /// [`super::write_locked`]).
    pub fn stage_locked(&mut self, path: &Path, contents: impl Into<Cow<'a, [u8]>>, mode: u32) {
        self.push(path, contents.into(), mode, Place::ReplaceLocked);
    }

    fn push(&mut self, path: &Path, contents: Cow<'a, [u8]>, mode: u32, how: Place) {
        self.files.push(Pending { path: path.to_path_buf(), contents, mode, how });
    }

    /// Writes every file, then names them in order, then makes the names durable. Returns
    /// the files staged with [`Batch::stage_locked`], locked.
    ///
    /// # Errors
    /// [`Error::Write`] with the path: while writing, nothing has been named; while naming,
    /// the files before it have been.
    pub fn commit(self) -> Result<Vec<File>> {
        if self.files.is_empty() {
            return Ok(Vec::new());
        }
        let mut stages = Stages::default();
        let mut slots = Vec::with_capacity(self.files.len());
        for f in &self.files {
            slots.push(stages.stage_for(&f.path)?);
        }
        let staged = |i: usize| format!("{}{i}", super::STAGING_PREFIX);
        parallel(self.files.len(), |i| {
            let f = &self.files[i];
            write_staged(stages.fd(slots[i]), &staged(i), &f.contents, f.mode)?;
            if let Some(name) = f.path.file_name() {
                crash_point("staged", name);
            }
            Ok(())
        })
        .map_err(|(i, source)| Error::Write { path: self.files[i].path.clone(), source })?;
        let mut locked = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            let named =
                name(stages.fd(slots[i]), &staged(i), &f.path, f.how).map_err(|source| Error::Write { path: f.path.clone(), source })?;
            locked.extend(named);
        }
        let dirs: Vec<&Path> = stages.dirs.keys().map(PathBuf::as_path).collect();
        parallel(dirs.len(), |i| rustix::fs::fsync(open_dir(CWD, dirs[i], OFlags::empty())?).map_err(io::Error::from))
            .map_err(|(i, source)| Error::Write { path: dirs[i].to_path_buf(), source })?;
        Ok(locked)
    }
}

/// The staging directories of a commit, and which one serves each target directory.
#[derive(Default)]
struct Stages {
    stages: Vec<Stage>,
    by_mount: HashMap<(u32, u32, u64), usize>,
    /// Every directory a file goes to, with the index of its staging directory.
    dirs: HashMap<PathBuf, usize>,
}

struct Stage {
    parent: PathBuf,
    name: String,
    fd: OwnedFd,
}

impl Stages {
    /// The staging directory for `path`, created when its mount has none yet.
    fn stage_for(&mut self, path: &Path) -> Result<usize> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Some(&i) = self.dirs.get(dir) {
            return Ok(i);
        }
        let err = |source| Error::Write { path: path.to_path_buf(), source };
        // A directory the file cannot be renamed into fails now, before anything is named
        // (a read-only mount fails below, when its staging directory cannot be made).
        rustix::fs::access(dir, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK).map_err(|e| err(e.into()))?;
        let mount = mount_of(dir).map_err(err)?;
        let i = match self.by_mount.get(&mount) {
            Some(&i) => i,
            None => {
                let (name, fd) = create_stage(dir).map_err(err)?;
                self.stages.push(Stage { parent: dir.to_path_buf(), name, fd });
                self.by_mount.insert(mount, self.stages.len() - 1);
                self.stages.len() - 1
            }
        };
        self.dirs.insert(dir.to_path_buf(), i);
        Ok(i)
    }

    fn fd(&self, i: usize) -> BorrowedFd<'_> {
        self.stages[i].fd.as_fd()
    }
}

/// Staging directories go when the commit ends, however it ends (what was not renamed is
/// deleted with them).
impl Drop for Stages {
    fn drop(&mut self) {
        for s in &self.stages {
            if let Ok(parent) = open_dir(CWD, &s.parent, OFlags::empty()) {
                remove_stage_dir(parent.as_fd(), &s.name, s.fd.as_fd());
            }
        }
    }
}

/// Which mount `dir` is on: device and, where the kernel tells (Linux 5.8), the mount id
/// (two bind mounts of one file system share the device, and a rename cannot cross them).
fn mount_of(dir: &Path) -> io::Result<(u32, u32, u64)> {
    let st = rustix::fs::statx(CWD, dir, AtFlags::empty(), StatxFlags::MNT_ID)?;
    let mnt = if StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::MNT_ID) { st.stx_mnt_id } else { 0 };
    Ok((st.stx_dev_major, st.stx_dev_minor, mnt))
}

/// A new private staging directory in `dir`, locked. A cleanup by another process between
/// its creation and the lock would remove it: then another is made.
fn create_stage(dir: &Path) -> io::Result<(String, OwnedFd)> {
    let parent = open_dir(CWD, dir, OFlags::empty())?;
    loop {
        let name = staging_name();
        match rustix::fs::mkdirat(&parent, name.as_str(), Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
        let fd = open_dir(parent.as_fd(), name.as_str(), OFlags::NOFOLLOW)?;
        rustix::fs::flock(&fd, FlockOperation::LockExclusive)?;
        let mine = rustix::fs::fstat(&fd)?;
        if rustix::fs::statat(&parent, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|s| s.st_ino == mine.st_ino && s.st_dev == mine.st_dev)
        {
            // Exactly 0700, whatever the umask.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
            return Ok((name, fd));
        }
    }
}

/// Writes and fsyncs a new file `name` in the staging directory.
fn write_staged(stage: BorrowedFd<'_>, name: &str, contents: &[u8], mode: u32) -> io::Result<()> {
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut file = File::from(rustix::fs::openat(stage, name, flags, Mode::from_raw_mode(mode))?);
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Moves the staged file `staged` to `path` as `how` says.
fn name(stage: BorrowedFd<'_>, staged: &str, path: &Path, how: Place) -> io::Result<Option<File>> {
    match how {
        Place::Replace => rustix::fs::renameat(stage, staged, CWD, path)?,
        Place::ReplaceLocked => {
            let file = File::from(rustix::fs::openat(stage, staged, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?);
            file.lock()?;
            rustix::fs::renameat(stage, staged, CWD, path)?;
            return Ok(Some(file));
        }
        Place::CreateNew => match rustix::fs::renameat_with(stage, staged, CWD, path, RenameFlags::NOREPLACE) {
            // A file system without RENAME_NOREPLACE: a link fails as well on a taken name.
            Err(Errno::INVAL) => {
                rustix::fs::linkat(stage, staged, CWD, path, AtFlags::empty())?;
                rustix::fs::unlinkat(stage, staged, AtFlags::empty())?;
            }
            done => done?,
        },
    }
    Ok(None)
}

/// Runs `job(0..n)` on up to [`WRITERS`] threads; the first failure (by index) is returned
/// with its index.
fn parallel(n: usize, job: impl Fn(usize) -> io::Result<()> + Sync) -> std::result::Result<(), (usize, io::Error)> {
    let indexes: Vec<usize> = (0..n).collect();
    let results = crate::parallel::map(&indexes, WRITERS, |&i| job(i));
    results.into_iter().enumerate().find_map(|(i, r)| r.err().map(|e| (i, e))).map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir).expect("ls").map(|e| e.expect("e").file_name().to_string_lossy().into()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_batch_names_every_file_and_leaves_no_staging_directory() {
        let d = tempfile::tempdir().expect("tmp");
        fs::create_dir(d.path().join("sub")).expect("mkdir");
        fs::write(d.path().join("old"), b"old").expect("write");
        let mut batch = Batch::new();
        for i in 0..100 {
            batch.stage(&d.path().join(format!("sub/f{i}")), format!("{i}").into_bytes(), 0o640);
        }
        batch.stage(&d.path().join("old"), &b"new"[..], 0o644);
        batch.stage_locked(&d.path().join("lock"), &b"l"[..], 0o644);
        let locked = batch.commit().expect("commit");
        assert_eq!(locked.len(), 1);
        assert!(File::open(d.path().join("lock")).expect("open").try_lock().is_err(), "still locked");
        assert_eq!(fs::read(d.path().join("old")).expect("read"), b"new");
        assert_eq!(fs::read(d.path().join("sub/f42")).expect("read"), b"42");
        assert_eq!(fs::metadata(d.path().join("sub/f7")).expect("meta").permissions().mode() & 0o777, 0o640);
        assert_eq!(names(d.path()), ["lock", "old", "sub"]);
        assert_eq!(names(&d.path().join("sub")).len(), 100);
    }

    #[test]
    fn a_failed_write_names_nothing() {
        let d = tempfile::tempdir().expect("tmp");
        fs::write(d.path().join("a"), b"old").expect("write");
        let mut batch = Batch::new();
        batch.stage(&d.path().join("a"), &b"new"[..], 0o644);
        batch.stage(&d.path().join("missing/b"), &b"b"[..], 0o644);
        let err = batch.commit().expect_err("no such directory");
        assert!(err.to_string().contains("missing/b"), "{err}");
        assert_eq!(fs::read(d.path().join("a")).expect("read"), b"old");
        assert_eq!(names(d.path()), ["a"], "no staging directory left");
    }

    #[test]
    fn an_abandoned_staging_directory_is_removed_and_a_live_one_kept() {
        let d = tempfile::tempdir().expect("tmp");
        let (live, fd) = create_stage(d.path()).expect("stage");
        fs::write(d.path().join(&live).join(format!("{}0", super::super::STAGING_PREFIX)), b"x").expect("write");
        let dead = d.path().join(format!("{}dead", super::super::STAGING_PREFIX));
        fs::create_dir(&dead).expect("mkdir");
        fs::write(dead.join("x"), b"x").expect("write");
        assert_eq!(super::super::remove_abandoned_staging(d.path()), 1);
        assert_eq!(names(d.path()), std::slice::from_ref(&live));
        drop(fd);
        assert_eq!(super::super::remove_abandoned_staging(d.path()), 1);
        assert!(names(d.path()).is_empty());
    }
}
