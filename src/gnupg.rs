//! PGP keys of SOPS files, through the `gpg` binary, the way sops' GnuPG fallback runs it:
//! the data key (or Shamir part) on stdin, the armored message on stdout, so no secret is
//! ever in an argument. `SOPS_GPG_EXEC` names another binary, and `GNUPGHOME` the keyring,
//! as for sops (gpg reads it from the environment it inherits).

use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::process::Program;
use crate::sops::file::{Pgp, SopsFileError};

/// Encrypting to a public key is quick; decrypting may wait for a passphrase in pinentry.
const ENCRYPT_TIMEOUT: Duration = Duration::from_secs(60);
const DECRYPT_TIMEOUT: Duration = Duration::from_secs(300);

/// The GnuPG binary sops would use, with the keyring of `GNUPGHOME` (or another home).
#[derive(Debug, Clone, Default)]
pub struct GnuPg {
    home: Option<PathBuf>,
}

/// `SOPS_GPG_EXEC`, or `gpg` looked up on PATH.
fn binary() -> Result<String, SopsFileError> {
    if let Some(exec) = std::env::var_os("SOPS_GPG_EXEC").filter(|v| !v.is_empty()) {
        return exec.into_string().map_err(|_| SopsFileError::PgpUnavailable("SOPS_GPG_EXEC is not valid UTF-8".into()));
    }
    which::which("gpg").ok().map(|p| p.to_string_lossy().into_owned()).ok_or_else(|| {
        SopsFileError::PgpUnavailable(
            "`gpg` is not installed or not on PATH: install GnuPG (Debian/Ubuntu: `apt install gnupg`) or set SOPS_GPG_EXEC".into(),
        )
    })
}

/// The last 16 hex digits (the long key ID), which `--trusted-key` wants.
fn key_id(fp: &str) -> &str {
    &fp[fp.len().saturating_sub(16)..]
}

/// The last lines of gpg's stderr, for an error (gpg prints no secret there).
fn reason(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<String> =
        text.lines().map(|l| l.chars().filter(|c| !c.is_control()).collect::<String>()).filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() { "no error output".into() } else { tail.join(" / ") }
}

impl GnuPg {
    /// GnuPG with the keyring in `home` instead of the inherited `GNUPGHOME`.
    #[must_use]
    pub fn with_home(home: impl Into<PathBuf>) -> Self {
        Self { home: Some(home.into()) }
    }

    fn program(&self, gpg: &str) -> Program {
        let p = Program::new(gpg);
        match &self.home {
            Some(h) => p.env("GNUPGHOME", h.to_string_lossy()),
            None => p,
        }
    }

    /// Whether the keyring holds the public key `fp`.
    fn has_public_key(&self, gpg: &str, fp: &str) -> bool {
        self.program(gpg)
            .args(["--batch", "--with-colons", "--list-keys", "--", fp])
            .timeout(ENCRYPT_TIMEOUT)
            .run()
            .is_ok_and(|done| done.status == Some(0))
    }
}

impl Pgp for GnuPg {
    fn encrypt(&self, fingerprint: &str, secret: &[u8]) -> Result<String, SopsFileError> {
        if fingerprint.is_empty() || !fingerprint.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SopsFileError::InvalidPgpFingerprint(fingerprint.to_string()));
        }
        let gpg = binary()?;
        let fail = |reason: String| SopsFileError::PgpEncrypt { fingerprint: fingerprint.to_string(), reason };
        let done = self
            .program(&gpg)
            .args(["--batch", "--no-default-recipient", "--yes", "--encrypt", "-a", "-r", fingerprint])
            .args(["--trusted-key", key_id(fingerprint), "--no-encrypt-to"])
            .stdin(secret.to_vec())
            .timeout(ENCRYPT_TIMEOUT)
            .run()
            .map_err(|e| fail(e.to_string()))?;
        if done.status != Some(0) {
            if !self.has_public_key(&gpg, fingerprint) {
                return Err(SopsFileError::PgpKeyMissing(fingerprint.to_string()));
            }
            return Err(fail(reason(&done.stderr)));
        }
        let text = String::from_utf8(done.stdout).map_err(|_| fail("its output is not text".into()))?;
        let text = text.trim();
        if !text.starts_with("-----BEGIN PGP MESSAGE-----") {
            return Err(fail("its output is not an armored PGP message".into()));
        }
        Ok(text.to_string())
    }

    fn decrypt(&self, fingerprint: &str, enc: &str) -> Result<Zeroizing<Vec<u8>>, SopsFileError> {
        let gpg = binary()?;
        let fail = |reason: String| SopsFileError::PgpDecrypt { fingerprint: fingerprint.to_string(), reason };
        let mut done = self
            .program(&gpg)
            .args(["--use-agent", "-d"])
            .stdin(enc.as_bytes().to_vec())
            .timeout(DECRYPT_TIMEOUT)
            .run()
            .map_err(|e| fail(e.to_string()))?;
        // Moved, not copied: the only copy of the secret is the one wiped on drop.
        let out = Zeroizing::new(std::mem::take(&mut done.stdout));
        if done.status != Some(0) {
            return Err(fail(reason(&done.stderr)));
        }
        Ok(out)
    }
}
