//! Ed25519 SSH keys: generation from the OS RNG, OpenSSH encoding, fingerprints exactly as
//! `ssh-keygen -lf` prints them, and the age identity/recipient derived from them.

use rand::rngs::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, private::KeypairData, public::KeyData};
use zeroize::Zeroizing;

use crate::age_convert;
use crate::error::{Error, Result};

/// An Ed25519 key pair. The private half zeroizes itself on drop (ssh-key does it).
pub struct Keypair {
    key: PrivateKey,
}

impl Keypair {
    /// A new key pair with `comment`, from the operating system's RNG.
    ///
    /// # Errors
    /// When the RNG fails.
    pub fn generate(comment: &str) -> Result<Self> {
        let mut key =
            PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| Error::Key(format!("cannot generate an ed25519 key: {e}")))?;
        key.set_comment(comment);
        Ok(Self { key })
    }

    /// Reads an OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`), decrypting it
    /// with `passphrase` when it is protected.
    ///
    /// # Errors
    /// A clear [`Error::Key`] for other formats (PEM, PKCS#8), other algorithms, a missing
    /// or wrong passphrase. The message never quotes the key.
    pub fn from_openssh(text: &str, passphrase: Option<&[u8]>) -> Result<Self> {
        let trimmed = text.trim_start();
        if trimmed.starts_with("-----BEGIN RSA PRIVATE KEY-----")
            || trimmed.starts_with("-----BEGIN EC PRIVATE KEY-----")
            || trimmed.starts_with("-----BEGIN PRIVATE KEY-----")
        {
            return Err(Error::Key(
                "the key is in PEM format and not an ed25519 OpenSSH key: hostsmith needs an ed25519 key (`ssh-keygen -t ed25519`)".into(),
            ));
        }
        let key = PrivateKey::from_openssh(text)
            .map_err(|e| Error::Key(format!("not an OpenSSH private key ({e}); expected `-----BEGIN OPENSSH PRIVATE KEY-----`")))?;
        let key = if key.is_encrypted() {
            let pass = passphrase
                .ok_or_else(|| Error::Key("the private key is protected by a passphrase: give it with --passphrase-file".into()))?;
            key.decrypt(pass).map_err(|_| Error::Key("the passphrase does not decrypt the private key".into()))?
        } else {
            key
        };
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(Error::Key(format!(
                "the key is {} and not ed25519: sops-nix derives the host's age identity from an ed25519 host key; generate one with `ssh-keygen -t ed25519`",
                key.algorithm()
            )));
        }
        Ok(Self { key })
    }

    /// The private key in OpenSSH format (unencrypted, LF line endings).
    ///
    /// # Errors
    /// When encoding fails.
    pub fn openssh_private(&self) -> Result<Zeroizing<String>> {
        self.key.to_openssh(LineEnding::LF).map_err(|e| Error::Key(format!("cannot encode the private key: {e}")))
    }

    /// The public key line: `ssh-ed25519 AAAA… comment`.
    #[must_use]
    pub fn public_line(&self) -> String {
        public_line(self.key.public_key())
    }

    #[must_use]
    pub fn public(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// `SHA256:…` as `ssh-keygen -lf` prints it.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The age recipient sops-nix will decrypt with on the host.
    ///
    /// # Errors
    /// See [`age_convert::recipient_from_ed25519`].
    pub fn age_recipient(&self) -> Result<String> {
        recipient_of(self.key.public_key())
    }

    /// The age identity derived from this key, as sops-nix derives it.
    ///
    /// # Errors
    /// When the key is not ed25519 (cannot happen for a [`Keypair`]).
    pub fn age_identity(&self) -> Result<Zeroizing<String>> {
        match self.key.key_data() {
            KeypairData::Ed25519(pair) => age_convert::identity_from_ed25519_seed(&pair.private.to_bytes()),
            _ => Err(Error::Key("not an ed25519 key".into())),
        }
    }
}

/// Formats a public key as an authorized_keys/known_hosts line.
#[must_use]
pub fn public_line(key: &PublicKey) -> String {
    key.to_openssh().unwrap_or_default()
}

/// Parses one `ssh-ed25519 AAAA… [comment]` line (or the first such line of a file,
/// skipping blank lines and comments).
///
/// # Errors
/// A clear [`Error::Key`] when there is no key or it is not ed25519.
pub fn parse_public(text: &str) -> Result<PublicKey> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| Error::Key("no public key found: expected a line `ssh-ed25519 AAAA… comment`".into()))?;
    let key = PublicKey::from_openssh(line)
        .map_err(|e| Error::Key(format!("not an OpenSSH public key ({e}): expected `ssh-ed25519 AAAA… comment`")))?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(Error::Key(format!(
            "the public key is {} and not ed25519: only ed25519 host keys have an age recipient (sops-nix derives it from the ed25519 key)",
            key.algorithm()
        )));
    }
    Ok(key)
}

/// The age recipient of an ed25519 public key.
///
/// # Errors
/// When the key is not ed25519 or not a curve point.
pub fn recipient_of(key: &PublicKey) -> Result<String> {
    match key.key_data() {
        KeyData::Ed25519(pk) => age_convert::recipient_from_ed25519(&pk.0),
        other => Err(Error::Key(format!("the key is {} and not ed25519", other.algorithm()))),
    }
}

/// `SHA256:…` fingerprint of a public key.
#[must_use]
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}
