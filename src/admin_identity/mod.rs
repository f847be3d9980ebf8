//! The admin's keys (not the hosts': those live in each host's SOPS file), found exactly where
//! sops finds them ([`sources`]), and GnuPG (the PGP keys of the keyring sops would use), so
//! hostsmith and `sops` on the same machine always agree on who the admin is.
//!
//! A [`Keyring`] holds every kind sops takes: X25519 identities, SSH keys, plugin identities
//! (YubiKey, TPM, … through `age-plugin-<name>`), passphrase-protected identity files, and
//! notes post-quantum identities (usable by sops ≥ 3.12 only). Nothing is loaded until a file
//! must be decrypted, and keys that need no prompt are tried before any that does, so a run
//! that needs no decryption asks nothing and one that does asks at most once ([`AgeUi`]).

mod sources;
mod ssh;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use age::secrecy::ExposeSecret as _;
use age::x25519::Identity;
use zeroize::Zeroizing;

pub(crate) use sources::default_key_file;

use crate::age_ui::AgeUi;
use crate::atomic;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::gnupg::GnuPg;
use crate::sops::file::{AgeIdentities, Decrypted, EncryptedFile, Pass, SopsFileError};

/// One identity from one source.
enum Entry {
    X25519(Identity),
    Ssh(Box<ssh::SshKey>),
    Plugin(age::plugin::Identity),
    /// An age-encrypted identity file, unlocked with a passphrase on first use.
    Protected(Protected),
    /// `AGE-SECRET-KEY-PQ-1…`: only sops ≥ 3.12 can use it.
    PostQuantum,
}

/// A passphrase-protected identity file (`age -p keys.txt`).
struct Protected {
    source: String,
    text: Zeroizing<Vec<u8>>,
    unlocked: OnceLock<std::result::Result<Vec<Entry>, String>>,
}

impl Protected {
    fn new(text: Zeroizing<Vec<u8>>, source: &str) -> Self {
        Self { source: source.to_string(), text, unlocked: OnceLock::new() }
    }

    fn entries(&self, interactive: bool) -> std::result::Result<&[Entry], String> {
        if !interactive {
            return Ok(self.unlocked.get().and_then(|r| r.as_deref().ok()).unwrap_or_default());
        }
        let _turn = AgeUi::turn();
        self.unlocked.get_or_init(|| self.unlock()).as_deref().map_err(Clone::clone)
    }

    fn unlock(&self) -> std::result::Result<Vec<Entry>, String> {
        let ui = AgeUi::new(&self.source);
        let Some(pass) = ui.secret(&format!("Enter passphrase for identity {}:", self.source)) else {
            return Err(ui.explain(&format!("the identity file {} is passphrase-protected", self.source)));
        };
        let scrypt = age::scrypt::Identity::new(age::secrecy::SecretString::from(pass.as_str().to_owned()));
        let armored = age::armor::ArmoredReader::new(self.text.as_slice());
        let decryptor = age::Decryptor::new(armored).map_err(|e| format!("{} cannot be read: {e}", self.source))?;
        if !decryptor.is_scrypt() {
            return Err(format!("{} is age-encrypted, but not with a passphrase", self.source));
        }
        let mut reader = decryptor
            .decrypt(std::iter::once(&scrypt as &dyn age::Identity))
            .map_err(|_| format!("the passphrase does not unlock {}", self.source))?;
        let mut plain = Zeroizing::new(Vec::new());
        std::io::Read::read_to_end(&mut reader, &mut plain).map_err(|e| format!("{}: {e}", self.source))?;
        let text = std::str::from_utf8(&plain).map_err(|_| format!("{}: the unlocked identities are not text", self.source))?;
        let entries = sources::parse_lines(text, &self.source, false)?;
        ui.succeeded();
        Ok(entries)
    }
}

/// Every admin identity available, with what went wrong loading the others.
#[derive(Default)]
pub(crate) struct Keyring {
    entries: Vec<Entry>,
    /// Sources that exist but could not be used, each with its reason.
    problems: Vec<String>,
    /// Places looked at that held nothing.
    unused: Vec<String>,
}

impl Keyring {
    /// The identities of sops' usual places.
    #[must_use]
    pub(crate) fn load() -> Self {
        sources::load()
    }

    /// Exactly these X25519 identities (the demo's, a test's).
    #[must_use]
    pub(crate) fn of(ids: Vec<Identity>) -> Self {
        Self { entries: ids.into_iter().map(Entry::X25519).collect(), ..Self::default() }
    }

    /// The X25519 identities in memory (not those of a locked file).
    pub(crate) fn x25519(&self) -> impl Iterator<Item = &Identity> {
        self.entries.iter().filter_map(|e| match e {
            Entry::X25519(id) => Some(id),
            _ => None,
        })
    }

    /// The recipients these identities are known to open without asking a plugin: X25519
    /// and SSH public keys.
    #[must_use]
    pub(crate) fn known_recipients(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::X25519(id) => Some(id.to_public().to_string()),
                Entry::Ssh(k) => k.public.clone(),
                _ => None,
            })
            .collect()
    }

    /// What was looked at and what failed, for an error message.
    #[must_use]
    pub(crate) fn looked(&self) -> String {
        // The age places first, as sops' documentation lists them, then the SSH keys.
        let ssh = |u: &&String| u.contains("SSH") || u.contains("/.ssh/");
        let places: Vec<&str> = self.unused.iter().filter(|u| !ssh(u)).chain(self.unused.iter().filter(ssh)).map(String::as_str).collect();
        let mut text = format!("looked in {}", places.join(", "));
        if !self.problems.is_empty() {
            text.push_str(&format!("; could not use {}", self.problems.join("; ")));
        }
        text
    }

    fn open_plugin(&self, recipient: &str, enc: &str) -> std::result::Result<Option<Zeroizing<Vec<u8>>>, String> {
        let Some(name) = plugin_name(recipient) else { return Ok(None) };
        // Plugin identities of the key files, and of protected ones already unlocked.
        let unlocked = self.entries.iter().filter_map(|e| match e {
            Entry::Protected(p) => p.entries(false).ok(),
            _ => None,
        });
        let ids: Vec<age::plugin::Identity> = std::iter::once(self.entries.as_slice())
            .chain(unlocked)
            .flatten()
            .filter_map(|e| match e {
                Entry::Plugin(id) if id.plugin() == name => Some(id.clone()),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return Ok(None);
        }
        let _turn = AgeUi::turn();
        let ui = AgeUi::new(&format!("age-plugin-{name}"));
        let plugin = age::plugin::IdentityPluginV1::new(&name, &ids, ui.clone()).map_err(|e| match e {
            age::DecryptError::MissingPlugin { binary_name } => {
                format!("your identity for it needs the age plugin `{binary_name}`, which is not on PATH: install it and run again")
            }
            other => other.to_string(),
        })?;
        match crate::sops::file::open_armored(enc, &[&plugin as &dyn age::Identity]) {
            Ok(Some(key)) => {
                ui.succeeded();
                Ok(Some(key))
            }
            Ok(None) if ui.lacked_terminal() => Err(ui.explain(&format!("age-plugin-{name} did not open it"))),
            Ok(None) => Ok(None),
            Err(e) => Err(ui.explain(&format!("age-plugin-{name}: {e}"))),
        }
    }

    fn open_entries(entries: &[Entry], enc: &str, pass: Pass) -> std::result::Result<Option<Zeroizing<Vec<u8>>>, String> {
        let quiet: Vec<&dyn age::Identity> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::X25519(id) => Some(id as &dyn age::Identity),
                _ => None,
            })
            .collect();
        if pass == Pass::Quiet
            && !quiet.is_empty()
            && let Some(key) = crate::sops::file::open_armored(enc, &quiet)?
        {
            return Ok(Some(key));
        }
        for e in entries {
            if let Entry::Ssh(k) = e
                && (pass == Pass::Interactive || !k.is_locked())
                && let Some(key) = k.open(enc, pass == Pass::Interactive)?
            {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }
}

/// The plugin a recipient belongs to: `yubikey` for `age1yubikey1…`, `pq` for `age1pq1…`.
fn plugin_name(recipient: &str) -> Option<String> {
    recipient.trim().parse::<age::plugin::Recipient>().ok().map(|r| r.plugin().to_string())
}

impl AgeIdentities for Keyring {
    fn open(&self, recipient: &str, enc: &str, pass: Pass) -> std::result::Result<Option<Zeroizing<Vec<u8>>>, String> {
        if let Some(key) = Self::open_entries(&self.entries, enc, pass)? {
            return Ok(Some(key));
        }
        for e in &self.entries {
            if let Entry::Protected(p) = e {
                let inner = p.entries(pass == Pass::Interactive)?;
                if let Some(key) = Self::open_entries(inner, enc, Pass::Quiet)? {
                    return Ok(Some(key));
                }
            }
        }
        if pass == Pass::Quiet {
            return Ok(None);
        }
        if let Some(key) = self.open_plugin(recipient, enc)? {
            return Ok(Some(key));
        }
        if crate::recipient::is_post_quantum(recipient) && self.entries.iter().any(|e| matches!(e, Entry::PostQuantum)) {
            return Err(
                "it is for a post-quantum recipient, and your post-quantum identity (AGE-SECRET-KEY-PQ-1…) is only usable by sops ≥ 3.12: hostsmith leaves files with post-quantum keys to sops ≥ 3.12 when one is on PATH"
                    .to_string(),
            );
        }
        Ok(None)
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Creates a new identity file at `path` (0600 in a 0700 directory), never overwriting one,
/// laid out like `age-keygen` output. Returns the public recipient.
///
/// # Errors
/// [`Error::Write`]; the file must not exist.
pub(crate) fn create(path: &Path) -> Result<String> {
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

/// The admin identities of one run, loaded the first time a file must be decrypted; GnuPG
/// after them.
#[derive(Default, Clone)]
pub(crate) struct Identities(Arc<OnceLock<Keyring>>);

impl Identities {
    /// The keyring, loaded on first use.
    pub(crate) fn keyring(&self) -> &Keyring {
        self.0.get_or_init(Keyring::load)
    }

    /// The keyring, which must hold at least one identity.
    ///
    /// # Errors
    /// [`Error::NoIdentity`] when none is configured.
    pub(crate) fn get(&self) -> Result<&Keyring> {
        let k = self.keyring();
        if k.entries.is_empty() {
            return Err(Error::NoIdentity { looked: k.looked() });
        }
        Ok(k)
    }

    /// Decrypts a parsed SOPS file read from `path`: age identities first, then GnuPG.
    ///
    /// # Errors
    /// [`Error::NoIdentity`] when the file has no PGP key and no age identity is configured;
    /// otherwise the engine's error naming the file (and the sources that could not be used).
    pub(crate) fn decrypt(&self, file: &EncryptedFile, path: &Path) -> Result<Decrypted> {
        decrypt(self.keyring(), file, path)
    }

    /// The identities a fleet uses: its override, or sops' usual places on first use.
    #[must_use]
    pub(crate) fn for_fleet(fleet: &Fleet) -> Self {
        let cell = OnceLock::new();
        if let Some(ids) = &fleet.admin_identities {
            let _ = cell.set(Keyring::of(ids.clone()));
        }
        Self(Arc::new(cell))
    }

    /// Reads and decrypts a SOPS file with the admin identities.
    ///
    /// # Errors
    /// Read, parse, or decryption errors naming the file.
    pub(crate) fn decrypt_file(&self, path: &Path) -> Result<Decrypted> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        let err = |e: SopsFileError| Error::SopsEngine { path: path.to_path_buf(), source: e };
        let file = EncryptedFile::parse(&text).map_err(err)?;
        self.decrypt(&file, path)
    }
}

/// Decrypts `file` (read from `path`) with `keyring`, then GnuPG; a failure names the
/// sources that could not be used, as sops does.
///
/// # Errors
/// As [`Identities::decrypt`].
pub(crate) fn decrypt(keyring: &Keyring, file: &EncryptedFile, path: &Path) -> Result<Decrypted> {
    match file.decrypt_with(keyring, &GnuPg::default()) {
        Err(SopsFileError::NoIdentities) => Err(Error::NoIdentity { looked: keyring.looked() }),
        Err(e @ (SopsFileError::NoMatchingIdentity { .. } | SopsFileError::NotEnoughGroups { .. })) if !keyring.problems.is_empty() => {
            Err(Error::SopsFile { path: path.to_path_buf(), message: format!("{e}; could not use {}", keyring.problems.join("; ")) })
        }
        other => other.map_err(|e| Error::SopsEngine { path: path.to_path_buf(), source: e }),
    }
}

/// Where a new admin identity goes: `SOPS_AGE_KEY_FILE`, else sops' default file.
#[must_use]
pub(crate) fn new_identity_path() -> Option<PathBuf> {
    std::env::var_os("SOPS_AGE_KEY_FILE").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(default_key_file)
}
