//! File writes that are all-or-nothing, and files for secrets.
//!
//! Every write goes to a temporary file in the same directory, is fsynced and renamed over
//! the target, then the directory is fsynced: a crash leaves the old file or the new one,
//! never a torn one. Secret outputs are created 0600 inside 0700 directories from the start,
//! so there is no moment where they are readable by others.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `contents` to `path` atomically with `mode`. Returns false (and touches nothing,
/// not even the mtime) when the file already holds exactly these bytes.
///
/// # Errors
/// [`Error::Write`] with the path.
pub fn write_if_changed(path: &Path, contents: &[u8], mode: u32) -> Result<bool> {
    if let Ok(existing) = fs::read(path)
        && existing == contents
    {
        return Ok(false);
    }
    write(path, contents, mode)?;
    Ok(true)
}

/// Writes `contents` to `path` atomically with `mode`.
///
/// # Errors
/// [`Error::Write`] with the path.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    replace(path, contents, mode, false).map(drop)
}

/// Like [`write`], but the new file is locked (`flock`) before it is renamed into place, and
/// returned: the fleet lock lives on `.sops.yaml`, and replacing that file must not open a
/// moment in which its new inode is unlocked.
///
/// # Errors
/// [`Error::Write`] with the path.
pub fn write_locked(path: &Path, contents: &[u8], mode: u32) -> Result<File> {
    replace(path, contents, mode, true)
}

/// The name prefix of staging files.
pub const STAGING_PREFIX: &str = ".hostsmith-tmp-";

/// Stages `contents` in a temporary file beside `path`, fsyncs it and renames it over
/// `path`; then fsyncs the directory. The staging file is locked (`flock`) from the start, so
/// [`remove_abandoned_staging`] can tell it from one a killed process left; with `lock` the
/// lock is kept on the renamed file, which is returned (otherwise it goes when the caller
/// drops the file).
fn replace(path: &Path, contents: &[u8], mode: u32, lock: bool) -> Result<File> {
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp =
        tempfile::Builder::new().prefix(STAGING_PREFIX).permissions(Permissions::from_mode(mode)).tempfile_in(dir).map_err(err)?;
    tmp.as_file().lock().map_err(err)?;
    tmp.write_all(contents).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    let file = tmp.persist(path).map_err(|e| err(e.error))?;
    sync_dir(dir).map_err(err)?;
    if !lock {
        file.unlock().map_err(err)?;
    }
    Ok(file)
}

/// Removes the staging files in `dir` that no live process is writing: a process killed
/// between staging and renaming leaves one behind (harmless, as the target is untouched, but
/// litter a user may commit). A staging file in use is locked by its writer; the OS drops the
/// lock when the writer dies, however it dies. Returns how many were removed; errors are
/// ignored (this is cleaning up, and a file that cannot be removed is left as it is).
pub fn remove_abandoned_staging(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else { continue };
        if file.try_lock().is_ok() && fs::remove_file(&path).is_ok() {
            tracing::debug!("removed `{}`, left by an interrupted run", path.display());
            removed += 1;
        }
    }
    removed
}

/// Creates `dir` (and parents) with mode `mode` where missing.
///
/// # Errors
/// [`Error::Write`] with the path.
pub fn create_dir(dir: &Path, mode: u32) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })
}

/// Creates a directory for secret outputs, 0700, and tightens an existing one to 0700.
///
/// # Errors
/// [`Error::Write`] with the path.
pub fn secret_dir(dir: &Path) -> Result<()> {
    create_dir(dir, 0o700)?;
    fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(|source| Error::Write { path: dir.to_path_buf(), source })
}

/// Creates a new 0600 file holding `contents`; never overwrites (`create_new`).
///
/// # Errors
/// [`Error::Write`]; `AlreadyExists` when the file exists.
pub fn create_secret(path: &Path, contents: &[u8]) -> Result<()> {
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    let mut file: File = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
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
        // A finished write leaves nothing locked behind it.
        write(&d.path().join("f"), b"a", 0o644).expect("write");
        assert!(File::open(d.path().join("f")).expect("open").try_lock().is_ok());
    }

    #[test]
    fn secrets_are_never_overwritten() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("k");
        create_secret(&p, b"x").expect("create");
        assert_eq!(fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o600);
        assert!(create_secret(&p, b"y").is_err());
        assert_eq!(fs::read(&p).expect("read"), b"x");
    }
}
