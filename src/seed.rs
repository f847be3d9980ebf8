//! Writing first-boot material to disk: the NoCloud seed directory and image, and the
//! nixos-anywhere `--extra-files` tree. These outputs hold the private host key because the
//! user asked for them; they are created 0600 in 0700 directories, under the rules of
//! [`crate::out_tree`].

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::admin_identity::Identities;
use crate::atomic;
use crate::cloud_init::{self, Seed, SeedInputs, SeedParams};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::out_tree::{self, OutDir};
use crate::process::Program;
use crate::ssh_keys::Keypair;

/// Writes `user-data`, `meta-data` and (when present) `network-config` into `dir`, an
/// output directory (see [`crate::out_tree`]). Returns the files written.
///
/// # Errors
/// [`Error::Usage`] for an output directory hostsmith refuses, [`Error::Write`] otherwise.
pub(crate) fn write_seed_dir(dir: &Path, seed: &Seed) -> Result<Vec<PathBuf>> {
    write_seed_into(&OutDir::root(dir)?, seed)
}

/// [`write_seed_dir`] into an open output directory.
pub(crate) fn write_seed_into(dir: &OutDir, seed: &Seed) -> Result<Vec<PathBuf>> {
    let mut files = vec![("user-data", seed.user_data.as_bytes()), ("meta-data", seed.meta_data.as_bytes())];
    if let Some(n) = &seed.network_config {
        files.push(("network-config", n.as_bytes()));
    }
    files.into_iter().map(|(name, bytes)| dir.write(name, bytes, 0o600)).collect()
}

/// Builds a NoCloud seed image (ISO 9660 with Rock Ridge and Joliet, volume label `cidata`)
/// at `iso` with `xorriso`, from a seed directory written by [`write_seed_dir`]. xorriso
/// writes the image to its stdout, and hostsmith writes it like any secret (0600, staged
/// unnamed, see [`atomic`]): no named partial image is ever on disk. `iso` may replace only
/// a regular file.
///
/// # Errors
/// [`Error::Program`] when xorriso is missing or fails, [`Error::Usage`] when `iso` is not a
/// regular file, [`Error::Write`] otherwise.
pub(crate) fn write_iso(iso: &Path, seed_dir: &Path) -> Result<()> {
    out_tree::check_file_target(iso, "--iso")?;
    let err = |source| Error::Write { path: iso.to_path_buf(), source };
    // Absolute paths: xorriso's genisoimage mode has no `--`, so no argument may start with '-'.
    let seed_dir = seed_dir.canonicalize().map_err(err)?;
    let mut files = Vec::new();
    for name in ["user-data", "meta-data", "network-config"] {
        let p = seed_dir.join(name);
        if p.is_file() {
            files.push(p.to_string_lossy().into_owned());
        }
    }
    let finished = Program::new("xorriso")
        .args(["-as", "genisoimage", "-quiet", "-output", "-", "-volid", "cidata", "-joliet", "-rock"])
        .args(files)
        .run_ok()?;
    let image = Zeroizing::new(finished.stdout);
    out_tree::file_target(iso, "--iso")?;
    atomic::write(iso, &image, 0o600)
}

/// Writes the tree nixos-anywhere copies onto the new machine:
/// `<out>/<persist>/etc/ssh/ssh_host_ed25519_key` (0600) and `.pub` (0644). `out` itself is
/// 0700 so the key is private on this machine; the directories inside are 0755 because
/// nixos-anywhere copies modes, and the target's `/etc/ssh` must stay readable. No link
/// inside `out` is followed (see [`crate::out_tree`]).
///
/// # Errors
/// [`Error::Usage`] for an output directory hostsmith refuses, [`Error::Write`] otherwise.
pub(crate) fn write_extra_files(out: &OutDir, persist: &str, key: &Keypair) -> Result<Vec<PathBuf>> {
    let ssh_dir = out.descend(&format!("{}/etc/ssh", persist.trim_matches('/')), 0o755)?;
    let private = ssh_dir.write("ssh_host_ed25519_key", key.openssh_private()?.as_bytes(), 0o600)?;
    let public = ssh_dir.write("ssh_host_ed25519_key.pub", format!("{}\n", key.public_line()).as_bytes(), 0o644)?;
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
    out: &OutDir,
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
        private_key: true,
    })?;
    let mut written = write_seed_into(out, &seed)?;
    if let Some(iso) = iso {
        write_iso(iso, out.path())?;
        written.push(iso.to_path_buf());
    }
    Ok(written)
}
