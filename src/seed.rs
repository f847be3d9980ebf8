//! Writing first-boot material to disk: the NoCloud seed directory and image, and the
//! nixos-anywhere `--extra-files` tree. These outputs hold the private host key because the
//! user asked for them; they are created 0600 in 0700 directories.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::admin_identity::Identities;
use crate::atomic;
use crate::cloud_init::{self, Seed, SeedInputs, SeedParams};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::process::Program;
use crate::ssh_keys::Keypair;

/// Writes `user-data`, `meta-data` and (when present) `network-config` into `dir`.
/// Returns the files written.
///
/// # Errors
/// [`Error::Write`] with the path.
pub(crate) fn write_seed_dir(dir: &Path, seed: &Seed) -> Result<Vec<PathBuf>> {
    atomic::secret_dir(dir)?;
    let mut files = vec![(dir.join("user-data"), seed.user_data.as_bytes()), (dir.join("meta-data"), seed.meta_data.as_bytes())];
    if let Some(n) = &seed.network_config {
        files.push((dir.join("network-config"), n.as_bytes()));
    }
    let mut written = Vec::new();
    for (path, bytes) in files {
        atomic::write(&path, bytes, 0o600)?;
        written.push(path);
    }
    Ok(written)
}

/// Builds a NoCloud seed image (ISO 9660 with Rock Ridge and Joliet, volume label `cidata`)
/// at `iso` with `xorriso`, from a seed directory written by [`write_seed_dir`]. The image
/// is created 0600 next to its final place and renamed there.
///
/// # Errors
/// [`Error::Program`] when xorriso is missing or fails, [`Error::Write`] otherwise.
pub(crate) fn write_iso(iso: &Path, seed_dir: &Path) -> Result<()> {
    let parent = iso.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let err = |source| Error::Write { path: iso.to_path_buf(), source };
    // Absolute paths: xorriso's genisoimage mode has no `--`, so no argument may start with '-'.
    let parent = parent.canonicalize().map_err(err)?;
    let seed_dir = seed_dir.canonicalize().map_err(err)?;
    let staging = tempfile::Builder::new().prefix(".hostsmith-iso-").tempdir_in(&parent).map_err(err)?;
    let tmp = staging.path().join("seed.iso");
    let mut files = Vec::new();
    for name in ["user-data", "meta-data", "network-config"] {
        let p = seed_dir.join(name);
        if p.is_file() {
            files.push(p.to_string_lossy().into_owned());
        }
    }
    Program::new("xorriso")
        .args(["-as", "genisoimage", "-quiet", "-output", &tmp.to_string_lossy(), "-volid", "cidata", "-joliet", "-rock"])
        .args(files)
        .run_ok()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    std::fs::rename(&tmp, iso).map_err(err)?;
    Ok(())
}

/// Writes the tree nixos-anywhere copies onto the new machine:
/// `<out>/<persist>/etc/ssh/ssh_host_ed25519_key` (0600) and `.pub` (0644). `out` itself is
/// 0700 so the key is private on this machine; the directories inside are 0755 because
/// nixos-anywhere copies modes, and the target's `/etc/ssh` must stay readable.
///
/// # Errors
/// [`Error::Write`] with the path.
pub(crate) fn write_extra_files(out: &Path, persist: &str, key: &Keypair) -> Result<Vec<PathBuf>> {
    atomic::secret_dir(out)?;
    let prefix = persist.trim_matches('/');
    let ssh_dir = if prefix.is_empty() { out.join("etc/ssh") } else { out.join(prefix).join("etc/ssh") };
    atomic::create_dir(&ssh_dir, 0o755)?;
    let private = ssh_dir.join("ssh_host_ed25519_key");
    let public = ssh_dir.join("ssh_host_ed25519_key.pub");
    atomic::write(&private, key.openssh_private()?.as_bytes(), 0o600)?;
    atomic::write(&public, format!("{}\n", key.public_line()).as_bytes(), 0o644)?;
    Ok(vec![private, public])
}

/// Validates an impermanence prefix: absolute or empty, no `..`.
///
/// # Errors
/// [`Error::Usage`].
pub(crate) fn check_persist(persist: &str) -> Result<()> {
    if persist.is_empty() || (persist.starts_with('/') && !persist.split('/').any(|c| c == "..")) {
        Ok(())
    } else {
        Err(Error::Usage(format!("persist prefix `{persist}` must be an absolute path like /persist, without `..`")))
    }
}

/// Renders and writes a host's seed into `out` (and `iso`).
///
/// # Errors
/// An unknown host or one without a private key, a bad seed, or a failed write.
pub(crate) fn emit(
    fleet: &Fleet,
    host: &HostName,
    out: &Path,
    iso: Option<&Path>,
    inputs: &SeedInputs,
    ids: &mut Identities,
) -> Result<Vec<PathBuf>> {
    let (_, key) = crate::host_file::host_keypair(fleet, host, ids)?;
    let seed = cloud_init::render(&SeedParams {
        host,
        key: &key,
        user: &inputs.user,
        authorized_keys: &inputs.authorized_keys,
        sudo: inputs.sudo.as_deref(),
        network: inputs.network.clone(),
    })?;
    let mut written = write_seed_dir(out, &seed)?;
    if let Some(iso) = iso {
        write_iso(iso, out)?;
        written.push(iso.to_path_buf());
    }
    Ok(written)
}
