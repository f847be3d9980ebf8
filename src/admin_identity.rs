//! The admin's keys (not the hosts': those live in each host's SOPS file): age identities,
//! found exactly where sops finds them, and GnuPG (the admin's PGP keys, in the keyring sops
//! would use), so that hostsmith and `sops` on the same machine always agree on who the
//! admin is.
//!
//! Sources, all read when present: `SOPS_AGE_KEY` (the identities themselves),
//! `SOPS_AGE_KEY_FILE`, and the default file `$XDG_CONFIG_HOME/sops/age/keys.txt`
//! (`~/.config/sops/age/keys.txt` when XDG_CONFIG_HOME is unset).

use std::path::PathBuf;

use age::secrecy::ExposeSecret;
use age::x25519::Identity;
use zeroize::Zeroizing;

use crate::atomic;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::gnupg::GnuPg;
use crate::sops::file::{Decrypted, EncryptedFile, SopsFileError};

/// Where sops looks for the default key file.
#[must_use]
pub(crate) fn default_key_file() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("sops/age/keys.txt"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/sops/age/keys.txt"))
}

/// Every admin identity available, in sops' order. Empty when none is configured.
///
/// # Errors
/// When a source exists but holds something that is not an age identity.
pub(crate) fn load_all() -> Result<Vec<Identity>> {
    let mut out = Vec::new();
    if let Ok(text) = std::env::var("SOPS_AGE_KEY") {
        let text = Zeroizing::new(text);
        out.extend(parse(&text, "SOPS_AGE_KEY")?);
    }
    if let Some(path) = std::env::var_os("SOPS_AGE_KEY_FILE").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|source| Error::Read { path: path.clone(), source })?);
        out.extend(parse(&text, &format!("SOPS_AGE_KEY_FILE `{}`", path.display()))?);
    }
    if let Some(path) = default_key_file() {
        match std::fs::read_to_string(&path) {
            Ok(text) => out.extend(parse(&Zeroizing::new(text), &format!("`{}`", path.display()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Read { path, source }),
        }
    }
    Ok(out)
}

fn looked() -> String {
    let default = default_key_file().map_or_else(|| "~/.config/sops/age/keys.txt".into(), |p| p.display().to_string());
    format!("SOPS_AGE_KEY, SOPS_AGE_KEY_FILE and `{default}`")
}

/// Parses an age identity file: one `AGE-SECRET-KEY-1…` per line, `#` comments.
fn parse(text: &str, source_name: &str) -> Result<Vec<Identity>> {
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = line.parse::<Identity>().map_err(|_| Error::BadIdentity {
            source_name: source_name.to_string(),
            why: format!("line {} is not an `AGE-SECRET-KEY-1…` X25519 identity (plugin and SSH identities are not supported here)", n + 1),
        })?;
        ids.push(id);
    }
    Ok(ids)
}

/// Creates a new identity file at `path` (0600 in a 0700 directory), never overwriting one,
/// laid out like `age-keygen` output. Returns the public recipient.
///
/// # Errors
/// [`Error::Write`]; the file must not exist.
pub(crate) fn create(path: &std::path::Path) -> Result<String> {
    let id = Identity::generate();
    let recipient = id.to_public().to_string();
    if let Some(dir) = path.parent() {
        atomic::secret_dir(dir)?;
    }
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let body = Zeroizing::new(format!("# created: {now}\n# public key: {recipient}\n{}\n", id.to_string().expose_secret()));
    atomic::create_secret(path, body.as_bytes())?;
    Ok(recipient)
}

/// Admin identities, loaded the first time a file must be decrypted; GnuPG after them.
#[derive(Default)]
pub(crate) struct Identities(Option<Vec<Identity>>);

impl Identities {
    /// # Errors
    /// [`Error::NoIdentity`] when none is configured.
    pub(crate) fn get(&mut self) -> Result<&[Identity]> {
        if self.age()?.is_empty() {
            return Err(Error::NoIdentity { looked: looked() });
        }
        self.age()
    }

    /// The age identities configured, perhaps none (GnuPG may still open a file).
    ///
    /// # Errors
    /// A source that holds something that is not an age identity.
    pub(crate) fn age(&mut self) -> Result<&[Identity]> {
        if self.0.is_none() {
            self.0 = Some(load_all()?);
        }
        Ok(self.0.as_deref().unwrap_or_default())
    }

    /// Decrypts a parsed SOPS file read from `path`: age identities first, then GnuPG.
    ///
    /// # Errors
    /// [`Error::NoIdentity`] when the file has no PGP key and no age identity is configured;
    /// otherwise the engine's error naming the file.
    pub(crate) fn decrypt(&mut self, file: &EncryptedFile, path: &std::path::Path) -> Result<Decrypted> {
        let ids = self.age()?;
        match file.decrypt_with(ids, &GnuPg::default()) {
            Err(SopsFileError::NoIdentities) => Err(Error::NoIdentity { looked: looked() }),
            other => other.map_err(|e| Error::SopsEngine { path: path.to_path_buf(), source: e }),
        }
    }

    /// The identities a fleet uses: its override, or sops' usual places on first use.
    #[must_use]
    pub(crate) fn for_fleet(fleet: &Fleet) -> Self {
        Self(fleet.admin_identities.clone())
    }

    /// Reads and decrypts a SOPS file with the admin identities.
    ///
    /// # Errors
    /// Read, parse, or decryption errors naming the file.
    pub(crate) fn decrypt_file(&mut self, path: &std::path::Path) -> Result<Decrypted> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        let err = |e: SopsFileError| Error::SopsEngine { path: path.to_path_buf(), source: e };
        let file = EncryptedFile::parse(&text).map_err(err)?;
        self.decrypt(&file, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_age_keygen_files_and_refuses_others_without_echoing_them() {
        let id = Identity::generate();
        let text = format!("# created: x\n# public key: {}\n{}\n", id.to_public(), id.to_string().expose_secret());
        let ids = parse(&text, "test").expect("parse");
        assert_eq!(ids[0].to_public().to_string(), id.to_public().to_string());
        let Err(err) = parse("AGE-SECRET-KEY-1NOTAKEY\n", "test") else { panic!("accepted a bad identity") };
        let err = err.to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains("NOTAKEY"), "the error must not quote the line: {err}");
    }
}
