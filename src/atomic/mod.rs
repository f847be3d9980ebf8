//! File writes that are all-or-nothing, and files for secrets.
//!
//! A new file is staged unnamed (`O_TMPFILE`) in the directory it belongs in, written,
//! fsynced, and only then given a name: linked straight to its final name when that name is
//! free, otherwise linked to a staging name and renamed over the old file; then the
//! directory is fsynced. A crash leaves the old file or the new one, never a torn one, and a
//! crash before the link leaves nothing at all: the kernel frees an unnamed file when its
//! last descriptor closes, however the process ends. So a process killed while writing a
//! private key leaves no file holding it. Only where the file system has no `O_TMPFILE` is
//! the staging file named from the start.
//!
//! Files are created with their final mode (set with `fchmod`, whatever the umask), and
//! everything is done relative to an open directory, so no path is resolved twice.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

mod batch;
pub use batch::Batch;

/// The name prefix of staging files.
pub const STAGING_PREFIX: &str = ".hostsmith-tmp-";

/// The environment variable naming a test-only crash point (see docs/testing.md): the
/// process aborts there, as if killed. It can only make a run stop early.
pub const CRASH_ENV: &str = "HOSTSMITH_CRASH_AT";

/// Aborts the process when [`CRASH_ENV`] names `point`, or `point:<file name>` for `name`.
fn crash_point(point: &str, name: &OsStr) {
    let Some(want) = std::env::var_os(CRASH_ENV) else { return };
    let want = want.as_bytes();
    let named = [point.as_bytes(), b":", name.as_bytes()].concat();
    if want == point.as_bytes() || want == named.as_slice() {
        std::process::abort();
    }
}

/// Writes `contents` to `path` atomically with `mode`. Returns false (and touches nothing,
/// not even the mtime) when the file already holds exactly these bytes.
///
/// # Errors
/// [`Error::Write`] with the path.
pub fn write_if_changed(path: &Path, contents: &[u8], mode: u32) -> Result<bool> {
    let (dir, name) = open_parent(path)?;
    if read_regular(dir.as_fd(), name).is_some_and(|existing| existing == contents) {
        return Ok(false);
    }
    place(&At { dir: dir.as_fd(), name, path }, contents, mode, Place::Replace).map(drop)?;
    Ok(true)
}

/// Writes `contents` to `path` atomically with `mode`.
///
/// # Errors
/// [`Error::Write`] with the path.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let (dir, name) = open_parent(path)?;
    place(&At { dir: dir.as_fd(), name, path }, contents, mode, Place::Replace).map(drop)
}

/// Like [`write`], but the new file is locked (`flock`) before it takes its name, and
/// returned: the fleet lock lives on `.sops.yaml`, and replacing that file must not open a
/// moment in which its new inode is unlocked.
///
/// # Errors
/// [`Error::Write`] with the path.
pub fn write_locked(path: &Path, contents: &[u8], mode: u32) -> Result<File> {
    let (dir, name) = open_parent(path)?;
    place(&At { dir: dir.as_fd(), name, path }, contents, mode, Place::ReplaceLocked)
}

/// Creates a new 0600 file holding `contents`; never overwrites. The file appears complete
/// or not at all.
///
/// # Errors
/// [`Error::Write`]; `AlreadyExists` when the file exists.
pub fn create_secret(path: &Path, contents: &[u8]) -> Result<()> {
    let (dir, name) = open_parent(path)?;
    place(&At { dir: dir.as_fd(), name, path }, contents, 0o600, Place::CreateNew).map(drop)
}

/// Creates a new file holding `contents` with `mode`; never overwrites (a file the user
/// made in the meantime is kept). The file appears complete or not at all.
///
/// # Errors
/// [`Error::Write`]; `AlreadyExists` when the file exists.
pub fn create_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let (dir, name) = open_parent(path)?;
    place(&At { dir: dir.as_fd(), name, path }, contents, mode, Place::CreateNew).map(drop)
}

/// A file name in an open directory; `path` names it in messages.
pub(crate) struct At<'a> {
    pub dir: BorrowedFd<'a>,
    pub name: &'a OsStr,
    pub path: &'a Path,
}

/// How a staged file takes its name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Replace whatever has the name (a rename never follows a link).
    Replace,
    /// Like `Replace`, and the returned file keeps its lock.
    ReplaceLocked,
    /// Fail with `AlreadyExists` when the name is taken.
    CreateNew,
}

/// Stages `contents` in `at.dir`, fsyncs it and gives it `at.name` as `how` says; then
/// fsyncs the directory. The staged file is locked (`flock`) from the start, so
/// [`remove_abandoned_staging`] can tell a staging file being renamed from one a killed
/// process left.
pub(crate) fn place(at: &At<'_>, contents: &[u8], mode: u32, how: Place) -> Result<File> {
    let staged = stage_in(at, contents, mode)?;
    commit_one(at, staged, how)
}

/// A file written and fsynced, not yet named (or, without `O_TMPFILE`, under a staging name).
struct Staged {
    file: File,
    name: Option<String>,
}

fn stage_in(at: &At<'_>, contents: &[u8], mode: u32) -> Result<Staged> {
    let err = |source| Error::Write { path: at.path.to_path_buf(), source };
    let (mut file, name) = stage(at.dir, mode).map_err(err)?;
    if let Err(e) = fill(&mut file, contents, mode) {
        if let Some(n) = &name {
            let _ = rustix::fs::unlinkat(at.dir, n.as_str(), AtFlags::empty());
        }
        return Err(err(e));
    }
    crash_point("staged", at.name);
    Ok(Staged { file, name })
}

fn commit_one(at: &At<'_>, staged: Staged, how: Place) -> Result<File> {
    let err = |source| Error::Write { path: at.path.to_path_buf(), source };
    if let Err(e) = name_it(&staged.file, staged.name.as_deref(), at, how) {
        if let Some(n) = &staged.name {
            let _ = rustix::fs::unlinkat(at.dir, n.as_str(), AtFlags::empty());
        }
        return Err(err(e));
    }
    rustix::fs::fsync(at.dir).map_err(|e| err(e.into()))?;
    if how != Place::ReplaceLocked {
        staged.file.unlock().map_err(err)?;
    }
    Ok(staged.file)
}

/// An unnamed file in `dir`, or (where `O_TMPFILE` is unsupported) a named one, locked.
fn stage(dir: BorrowedFd<'_>, mode: u32) -> io::Result<(File, Option<String>)> {
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    let (fd, name) = match rustix::fs::openat(dir, ".", flags, Mode::from_raw_mode(mode)) {
        Ok(fd) => (fd, None),
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {
            let (fd, name) = create_named(dir, mode)?;
            (fd, Some(name))
        }
        Err(e) => return Err(e.into()),
    };
    let file = File::from(fd);
    file.lock()?;
    Ok((file, name))
}

/// Creates a new file with a random staging name in `dir`.
fn create_named(dir: BorrowedFd<'_>, mode: u32) -> io::Result<(OwnedFd, String)> {
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    loop {
        let name = staging_name();
        match rustix::fs::openat(dir, name.as_str(), flags, Mode::from_raw_mode(mode)) {
            Ok(fd) => return Ok((fd, name)),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn staging_name() -> String {
    format!("{STAGING_PREFIX}{:016x}", rand::random::<u64>())
}

fn fill(file: &mut File, contents: &[u8], mode: u32) -> io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Gives a staged file its final name.
fn name_it(file: &File, staged: Option<&str>, at: &At<'_>, how: Place) -> io::Result<()> {
    match (staged, how) {
        (None, Place::CreateNew) => link(file, at.dir, at.name),
        (None, _) => match link(file, at.dir, at.name) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let name = loop {
                    let name = staging_name();
                    match link(file, at.dir, OsStr::new(&name)) {
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        done => break done.map(|()| name)?,
                    }
                };
                crash_point("linked", at.name);
                rename_or_unlink(at.dir, &name, at.name)
            }
            other => other,
        },
        (Some(name), Place::CreateNew) => {
            rustix::fs::linkat(at.dir, name, at.dir, at.name, AtFlags::empty())?;
            rustix::fs::unlinkat(at.dir, name, AtFlags::empty())?;
            Ok(())
        }
        (Some(name), _) => Ok(rustix::fs::renameat(at.dir, name, at.dir, at.name)?),
    }
}

fn rename_or_unlink(dir: BorrowedFd<'_>, from: &str, to: &OsStr) -> io::Result<()> {
    rustix::fs::renameat(dir, from, dir, to).map_err(|e| {
        let _ = rustix::fs::unlinkat(dir, from, AtFlags::empty());
        e.into()
    })
}

/// Links the unnamed `file` as `name` in `dir`. Through `/proc/self/fd` (which needs no
/// privilege); `AT_EMPTY_PATH` (which needs CAP_DAC_READ_SEARCH) where /proc is missing.
fn link(file: &File, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(CWD, proc_path.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW) {
        Err(Errno::NOENT) if !Path::new("/proc/self/fd").exists() => Ok(rustix::fs::linkat(file, "", dir, name, AtFlags::EMPTY_PATH)?),
        done => Ok(done?),
    }
}

/// Opens the directory `path` is in (following links: fleet and user paths are the user's
/// to arrange) and returns it with the file name.
fn open_parent(path: &Path) -> Result<(OwnedFd, &OsStr)> {
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    let name = path.file_name().ok_or_else(|| err(io::Error::new(io::ErrorKind::InvalidInput, "the path names no file")))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok((open_dir(CWD, dir, OFlags::empty()).map_err(err)?, name))
}

/// Opens a directory for `*at` calls and fsync (`extra` adds e.g. `O_NOFOLLOW`).
pub(crate) fn open_dir<P: rustix::path::Arg>(base: BorrowedFd<'_>, path: P, extra: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(base, path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | extra, Mode::empty())?)
}

/// The contents of `name` in `dir` when it is a regular file (no link followed, no FIFO
/// opened for long).
fn read_regular(dir: BorrowedFd<'_>, name: &OsStr) -> Option<Vec<u8>> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mut file = File::from(rustix::fs::openat(dir, name, flags, Mode::empty()).ok()?);
    if FileType::from_raw_mode(rustix::fs::fstat(&file).ok()?.st_mode) != FileType::RegularFile {
        return None;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// A sign, left in a directory while a run writes, that the run is not finished: an empty
/// staging file, locked by the run and durable before the run stages anything. A run that
/// ends removes it; a killed one leaves it, and the lock dies with the run, so the next
/// run finds it abandoned ([`remove_abandoned_staging`] counts it) and knows to look for
/// other leftovers. Without it, every run would read whole directories of thousands of
/// host files to find staging files that are almost never there.
pub struct RunMark {
    dir: OwnedFd,
    name: String,
    _file: File,
}

/// Leaves a [`RunMark`] in `dir` and makes it durable.
///
/// # Errors
/// [`Error::Write`] with the directory.
pub fn mark_run(dir: &Path) -> Result<RunMark> {
    let err = |source: io::Error| Error::Write { path: dir.to_path_buf(), source };
    let fd = open_dir(CWD, dir, OFlags::empty()).map_err(err)?;
    let (file, name) = create_named(fd.as_fd(), 0o600).map_err(err)?;
    let file = File::from(file);
    file.lock().map_err(err)?;
    rustix::fs::fsync(&fd).map_err(|e| err(e.into()))?;
    Ok(RunMark { dir: fd, name, _file: file })
}

/// The run ended: its mark goes (not durably: a mark a crash brings back only costs the
/// next run a look for leftovers).
impl Drop for RunMark {
    fn drop(&mut self) {
        let _ = rustix::fs::unlinkat(&self.dir, self.name.as_str(), AtFlags::empty());
    }
}

/// Removes the staging files and directories in `dir` that no live process is writing: a
/// process killed between linking a staging file and renaming it (or, without `O_TMPFILE`,
/// between creating and renaming it), or in the middle of a [`Batch`], leaves one behind.
/// A staging file or directory in use is locked by its writer; the OS drops the lock when
/// the writer dies, however it dies. Returns how many were removed; errors are ignored
/// (this is cleaning up, and what cannot be removed is left as it is).
pub fn remove_abandoned_staging(dir: &Path) -> usize {
    open_dir(CWD, dir, OFlags::empty()).map_or(0, |fd| remove_abandoned_staging_in(fd.as_fd()))
}

/// [`remove_abandoned_staging`] in an open directory.
pub(crate) fn remove_abandoned_staging_in(dir: BorrowedFd<'_>) -> usize {
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_bytes().starts_with(STAGING_PREFIX.as_bytes()) {
            continue;
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let Ok(fd) = rustix::fs::openat(dir, name, flags, Mode::empty()) else { continue };
        let Ok(kind) = rustix::fs::fstat(&fd).map(|s| FileType::from_raw_mode(s.st_mode)) else { continue };
        if !matches!(kind, FileType::RegularFile | FileType::Directory)
            || rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err()
        {
            continue;
        }
        let gone = if kind == FileType::Directory {
            remove_stage_dir(dir, name, fd.as_fd())
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty()).is_ok()
        };
        if gone {
            tracing::debug!("removed `{}`, left by an interrupted run", name.to_string_lossy());
            removed += 1;
        }
    }
    removed
}

/// Empties the staging directory `name` in `parent` (open as `fd`) and removes it. Only
/// regular files are removed from it (a batch puts nothing else there).
fn remove_stage_dir<P: rustix::path::Arg>(parent: BorrowedFd<'_>, name: P, fd: BorrowedFd<'_>) -> bool {
    if let Ok(entries) = rustix::fs::Dir::read_from(fd) {
        for entry in entries.flatten() {
            if entry.file_type() != FileType::Directory {
                let _ = rustix::fs::unlinkat(fd, entry.file_name(), AtFlags::empty());
            }
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR).is_ok()
}

/// Creates `dir` (and parents) with mode `mode` where missing.
///
/// # Errors
/// [`Error::Write`] with the path.
pub fn create_dir(dir: &Path, mode: u32) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(mode).create(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })
}

/// Creates the missing directories of `rel` below `root`, each with exactly `mode`, opening
/// every component without following a symbolic link: a link planted in a fleet
/// (`hosts/web01 -> /etc`) cannot make a run create or write outside it.
///
/// # Errors
/// [`Error::Usage`] when a component is a link or not a directory; [`Error::Write`].
pub fn create_dirs_below(root: &Path, rel: &str, mode: u32) -> Result<()> {
    let at = |p: &str| root.join(p);
    let mut dir = open_dir(CWD, root, OFlags::empty()).map_err(|source| Error::Write { path: root.to_path_buf(), source })?;
    let mut done = String::new();
    for component in rel.split('/').filter(|c| !c.is_empty()) {
        if !done.is_empty() {
            done.push('/');
        }
        done.push_str(component);
        let next = match open_dir(dir.as_fd(), component, OFlags::NOFOLLOW) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let err = |source| Error::Write { path: at(&done), source };
                match rustix::fs::mkdirat(dir.as_fd(), component, Mode::from_raw_mode(mode)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(err(e.into())),
                }
                let fd = open_dir(dir.as_fd(), component, OFlags::NOFOLLOW).map_err(|e| not_a_dir(&at(&done), e))?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| err(e.into()))?;
                rustix::fs::fsync(&dir).map_err(|e| err(e.into()))?;
                fd
            }
            Err(e) => return Err(not_a_dir(&at(&done), e)),
        };
        dir = next;
    }
    Ok(())
}

fn not_a_dir(path: &Path, e: io::Error) -> Error {
    if matches!(e.raw_os_error(), Some(c) if c == Errno::LOOP.raw_os_error() || c == Errno::NOTDIR.raw_os_error()) {
        Error::Usage(format!(
            "`{}` is a symbolic link or not a directory: hostsmith creates host file directories inside the fleet and follows no link there; make it a directory",
            path.display()
        ))
    } else {
        Error::Write { path: path.to_path_buf(), source: e }
    }
}

/// Creates a directory for secret outputs, 0700, and tightens an existing one to 0700.
/// For this tool's own state directories; output trees the user names go through
/// [`crate::out_tree`], which never changes a directory it did not create.
///
/// # Errors
/// [`Error::Write`] with the path.
pub fn secret_dir(dir: &Path) -> Result<()> {
    create_dir(dir, 0o700)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|source| Error::Write { path: dir.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn unchanged_content_is_not_rewritten() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("f");
        assert!(write_if_changed(&p, b"a", 0o644).expect("write"));
        let before = fs::metadata(&p).expect("meta").modified().expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!write_if_changed(&p, b"a", 0o644).expect("write"));
        assert_eq!(fs::metadata(&p).expect("meta").modified().expect("mtime"), before);
        assert!(write_if_changed(&p, b"b", 0o600).expect("write"));
        assert_eq!(fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(d.path()).expect("ls").count(), 1, "no temp file left");
    }

    #[test]
    fn only_abandoned_staging_files_are_removed() {
        let d = tempfile::tempdir().expect("tmp");
        // One a killed writer left (nobody holds its lock), one being written right now.
        fs::write(d.path().join(format!("{STAGING_PREFIX}dead")), b"x").expect("write");
        let live = d.path().join(format!("{STAGING_PREFIX}live"));
        let held = File::create(&live).expect("create");
        held.lock().expect("lock");
        fs::write(d.path().join("keep.json"), b"{}").expect("write");
        assert_eq!(remove_abandoned_staging(d.path()), 1);
        let mut left: Vec<String> =
            fs::read_dir(d.path()).expect("ls").map(|e| e.expect("e").file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(left, vec![format!("{STAGING_PREFIX}live"), "keep.json".to_string()]);
        drop(held);
        assert_eq!(remove_abandoned_staging(d.path()), 1);
        // A finished write leaves nothing locked behind it, replacing or creating.
        write(&d.path().join("f"), b"a", 0o644).expect("write");
        write(&d.path().join("f"), b"b", 0o644).expect("write");
        assert_eq!(fs::read(d.path().join("f")).expect("read"), b"b");
        assert!(File::open(d.path().join("f")).expect("open").try_lock().is_ok());
        assert_eq!(fs::read_dir(d.path()).expect("ls").count(), 2, "keep.json and f only");
    }

    #[test]
    fn secrets_are_never_overwritten() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("k");
        create_secret(&p, b"x").expect("create");
        assert_eq!(fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o600);
        assert!(create_secret(&p, b"y").is_err());
        assert_eq!(fs::read(&p).expect("read"), b"x");
        assert_eq!(fs::read_dir(d.path()).expect("ls").count(), 1, "no staging file left");
    }

    #[test]
    fn the_mode_is_exact_whatever_the_umask() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("pub");
        write(&p, b"x", 0o644).expect("write");
        write(&p, b"y", 0o640).expect("write");
        assert_eq!(fs::metadata(&p).expect("meta").permissions().mode() & 0o7777, 0o640);
    }
}
