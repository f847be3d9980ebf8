//! Output trees: the directories the user names for first-boot material (`cloud-init
//! --out`, `extra-files --out`, `vm-fresh --cloud-init DIR --extra-files DIR`), which hold
//! private keys.
//!
//! The rules, and why:
//! - The root may be a link (the user named it), but an existing root must belong to the
//!   user and be closed to everyone else (no group or other bits): hostsmith will not put a
//!   private key where another user can read it or swap entries, and will not `chmod` a
//!   directory it did not create (a shared `/tmp` turned 0700 breaks every other user). A
//!   root it creates is 0700.
//! - Below the root nothing is followed: every directory is created or opened relative to
//!   its parent with `O_NOFOLLOW`, so a link planted at `OUT/etc` cannot send a key outside
//!   the tree. A link, or anything but a directory where a directory belongs, is refused.
//! - Only regular files are replaced: a FIFO, device, socket, link or directory where a file
//!   belongs is refused, never written through or over.
//! - Directories created inside get the mode the caller asks for, exactly (umask aside);
//!   existing ones are left as they are.
//! - Staging files a killed run left are removed from every directory opened here.
//!
//! Refusals are usage errors (exit 2) that name the path and the fix.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::atomic::{self, At, Place};
use crate::error::{Error, Result};

/// An open directory of an output tree.
pub(crate) struct OutDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl OutDir {
    /// Opens the root of an output tree, creating it (and missing parents) 0700.
    ///
    /// # Errors
    /// [`Error::Usage`] for a root that is not a directory or that other users can reach,
    /// [`Error::Write`] when it cannot be created.
    pub(crate) fn root(path: &Path) -> Result<Self> {
        let err = |source| Error::Write { path: path.to_path_buf(), source };
        match atomic::open_dir(CWD, path, OFlags::empty()) {
            Ok(fd) => {
                check_private(path, fd.as_fd())?;
                let dir = Self { fd, path: path.to_path_buf() };
                atomic::remove_abandoned_staging_in(dir.fd.as_fd());
                Ok(dir)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    atomic::create_dir(parent, 0o700)?;
                }
                let created = match rustix::fs::mkdirat(CWD, path, Mode::from_raw_mode(0o700)) {
                    Ok(()) => true,
                    Err(Errno::EXIST) => false,
                    Err(e) => return Err(err(e.into())),
                };
                let fd = atomic::open_dir(CWD, path, OFlags::empty()).map_err(err)?;
                if created {
                    // Exactly 0700, whatever the umask.
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700)).map_err(|e| err(e.into()))?;
                }
                check_private(path, fd.as_fd())?;
                Ok(Self { fd, path: path.to_path_buf() })
            }
            Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => Err(not_a_dir(path)),
            Err(e) => Err(err(e)),
        }
    }

    /// Checks, without creating anything, that [`OutDir::root`] would accept `path`: run
    /// before a command changes the fleet, so a bad output directory changes nothing.
    ///
    /// # Errors
    /// As [`OutDir::root`].
    pub(crate) fn check_root(path: &Path, below: &[&str]) -> Result<()> {
        match atomic::open_dir(CWD, path, OFlags::empty()) {
            Ok(fd) => {
                check_private(path, fd.as_fd())?;
                below.iter().try_for_each(|rel| check_below(fd.as_fd(), path, rel))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => Err(not_a_dir(path)),
            Err(source) => Err(Error::Write { path: path.to_path_buf(), source }),
        }
    }

    /// The path of this directory, for messages and reports.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens (or creates with `mode`) each directory of `rel` below this one, following no
    /// link. Empty and `.` components are skipped; `..` is refused.
    ///
    /// # Errors
    /// [`Error::Usage`] for a link or non-directory on the way, [`Error::Write`] otherwise.
    pub(crate) fn descend(&self, rel: &str, mode: u32) -> Result<Self> {
        let mut dir =
            Self { fd: self.fd.try_clone().map_err(|source| Error::Write { path: self.path.clone(), source })?, path: self.path.clone() };
        for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if part == ".." {
                return Err(Error::Usage(format!("`{rel}` leaves the output directory `{}`", self.path.display())));
            }
            dir = dir.child(part, mode)?;
        }
        Ok(dir)
    }

    /// Opens the directory `name` below this one, creating it with `mode` when missing.
    fn child(&self, name: &str, mode: u32) -> Result<Self> {
        let path = self.path.join(name);
        let err = |source| Error::Write { path: path.clone(), source };
        let created = match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(Errno::EXIST) => false,
            Err(e) => return Err(err(e.into())),
        };
        let fd = match atomic::open_dir(self.fd.as_fd(), name, OFlags::NOFOLLOW) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(c) if c == Errno::LOOP.raw_os_error() || c == Errno::NOTDIR.raw_os_error()) => {
                return Err(refused(&path, kind_of(self.fd.as_fd(), OsStr::new(name))));
            }
            Err(e) => return Err(err(e)),
        };
        if created {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| err(e.into()))?;
        } else {
            atomic::remove_abandoned_staging_in(fd.as_fd());
        }
        Ok(Self { fd, path })
    }

    /// Writes the file `name` here atomically with `mode`, replacing only a regular file.
    /// Returns its path.
    ///
    /// # Errors
    /// [`Error::Usage`] when `name` is something other than a regular file,
    /// [`Error::Write`] when the write fails.
    pub(crate) fn write(&self, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf> {
        let path = self.path.join(name);
        replaceable(self.fd.as_fd(), OsStr::new(name), &path, "choose a new output directory")?;
        atomic::place(&At { dir: self.fd.as_fd(), name: OsStr::new(name), path: &path }, contents, mode, Place::Replace)?;
        Ok(path)
    }
}

/// Refuses (exit 2) when `name` in `dir` exists as anything but a regular file; `other`
/// is the second fix offered (after removing it).
fn replaceable(dir: BorrowedFd<'_>, name: &OsStr, path: &Path, other: &str) -> Result<()> {
    match kind_of(dir, name) {
        None | Some(FileType::RegularFile) => Ok(()),
        kind => Err(Error::Usage(format!(
            "`{}` is {}: hostsmith replaces only regular files; remove it, or {other}",
            path.display(),
            describe(kind)
        ))),
    }
}

/// Checks the directories of `rel` that exist below `root` as [`OutDir::descend`] would.
fn check_below(root: BorrowedFd<'_>, root_path: &Path, rel: &str) -> Result<()> {
    let mut dir = root.try_clone_to_owned().map_err(|source| Error::Write { path: root_path.to_path_buf(), source })?;
    let mut path = root_path.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
        path.push(part);
        match kind_of(dir.as_fd(), OsStr::new(part)) {
            None => return Ok(()),
            Some(FileType::Directory) => {}
            kind => return Err(refused(&path, kind)),
        }
        dir = atomic::open_dir(dir.as_fd(), part, OFlags::NOFOLLOW).map_err(|source| Error::Write { path: path.clone(), source })?;
    }
    Ok(())
}

/// Refuses (exit 2) a file path the user gave when it exists as anything but a regular
/// file. Its directory is the user's: links on the way are followed, the file itself is not.
///
/// # Errors
/// [`Error::Usage`] naming the path and what it is; [`Error::Write`] when its directory
/// cannot be opened.
pub(crate) fn check_file_target(path: &Path, option: &str) -> Result<()> {
    open_file_target(path, option).map(drop)
}

/// [`check_file_target`], just before writing: also removes the staging files a killed run
/// left in that directory.
///
/// # Errors
/// As [`check_file_target`].
pub(crate) fn file_target(path: &Path, option: &str) -> Result<()> {
    if let Some(dir) = open_file_target(path, option)? {
        atomic::remove_abandoned_staging_in(dir.as_fd());
    }
    Ok(())
}

fn open_file_target(path: &Path, option: &str) -> Result<Option<OwnedFd>> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::Usage(format!("{option} `{}` names no file", path.display())))?;
    match atomic::open_dir(CWD, parent, OFlags::empty()) {
        Ok(dir) => {
            replaceable(dir.as_fd(), name, path, &format!("give {option} another path"))?;
            Ok(Some(dir))
        }
        // A missing directory holds nothing to refuse; the write reports it if it stays missing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Write { path: path.to_path_buf(), source }),
    }
}

/// What `name` in `dir` is, without following a link; `None` when it does not exist.
fn kind_of(dir: BorrowedFd<'_>, name: &OsStr) -> Option<FileType> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok().map(|s| FileType::from_raw_mode(s.st_mode))
}

fn describe(kind: Option<FileType>) -> &'static str {
    match kind {
        None => "missing",
        Some(FileType::RegularFile) => "a regular file",
        Some(FileType::Directory) => "a directory",
        Some(FileType::Symlink) => "a symbolic link",
        Some(FileType::Fifo) => "a FIFO",
        Some(FileType::CharacterDevice) => "a character device",
        Some(FileType::BlockDevice) => "a block device",
        Some(FileType::Socket) => "a socket",
        Some(FileType::Unknown) => "not a regular file",
    }
}

fn refused(path: &Path, kind: Option<FileType>) -> Error {
    if kind == Some(FileType::Symlink) {
        Error::Usage(format!(
            "`{}` is a symbolic link: hostsmith follows no link inside an output directory (one could send a private key elsewhere); remove it, or choose a new output directory",
            path.display()
        ))
    } else {
        Error::Usage(format!(
            "`{}` is {} where a directory belongs; remove it, or choose a new output directory",
            path.display(),
            describe(kind)
        ))
    }
}

fn not_a_dir(path: &Path) -> Error {
    Error::Usage(format!("`{}` is not a directory: give an output directory (created 0700 when missing)", path.display()))
}

/// Refuses a root that belongs to someone else or that others may read or write.
fn check_private(path: &Path, fd: BorrowedFd<'_>) -> Result<()> {
    let st = rustix::fs::fstat(fd).map_err(|e| Error::Write { path: path.to_path_buf(), source: e.into() })?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        return Err(Error::Usage(format!(
            "`{}` belongs to another user (uid {}): private keys go only into a directory of your own; choose another output directory",
            path.display(),
            st.st_uid
        )));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::Usage(format!(
            "`{}` can be read or written by other users (mode {mode:04o}) and would hold private keys: run `chmod 700 {}`, or name a new directory (it is created 0700)",
            path.display(),
            crate::process::shell_quote(&path.to_string_lossy())
        )));
    }
    Ok(())
}
