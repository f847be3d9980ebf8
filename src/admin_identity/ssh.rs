//! An SSH private key as an age identity (`ssh-ed25519` and `ssh-rsa` stanzas), the way sops
//! ≥ 3.10 uses `SOPS_AGE_SSH_PRIVATE_KEY_FILE` and `~/.ssh/id_ed25519`.
//!
//! A passphrase-protected key is only unlocked when a stanza is for it: the stanza's tag (the
//! first four bytes of SHA-256 of the public key) is compared before anything is asked, so an
//! unrelated encrypted key in `~/.ssh` never prompts. Once unlocked it stays unlocked for the
//! run (one passphrase, however many files).

use std::sync::OnceLock;

use age::secrecy::SecretString;
use base64::Engine as _;
use sha2::Digest as _;

use crate::age_ui::AgeUi;

pub(super) struct SshKey {
    /// Where it came from, for messages.
    pub source: String,
    /// `ssh-ed25519` or `ssh-rsa`.
    pub algorithm: &'static str,
    /// The stanza tag, base64 as in the stanza; unknown for an old PEM RSA key.
    tag: Option<String>,
    /// `ssh-… AAAA…`, no comment: the recipient this key opens, when readable.
    pub public: Option<String>,
    state: State,
}

enum State {
    Open(age::ssh::Identity),
    Locked { key: age::ssh::EncryptedKey, unlocked: OnceLock<Result<age::ssh::Identity, String>> },
}

impl SshKey {
    /// Parses a private key file's text; `source` names it in messages.
    ///
    /// # Errors
    /// Not an ed25519 or RSA OpenSSH key (the reason, never the key).
    pub(super) fn parse(text: &[u8], source: &str, allow_passphrase: bool) -> Result<Self, String> {
        let parsed =
            age::ssh::Identity::from_buffer(text, Some(source.to_string())).map_err(|_| format!("{source} is not an SSH private key"))?;
        // The public half, from the OpenSSH format (readable even when encrypted). An old PEM
        // RSA key has none to read here: age checks its stanzas itself.
        let public = ssh_key::PrivateKey::from_openssh(text).ok().map(|k| k.public_key().clone());
        let algorithm = match (&parsed, public.as_ref().map(ssh_key::PublicKey::algorithm)) {
            (_, Some(ssh_key::Algorithm::Ed25519)) => "ssh-ed25519",
            (_, Some(ssh_key::Algorithm::Rsa { .. })) | (age::ssh::Identity::Unencrypted(_), None) => "ssh-rsa",
            (_, Some(other)) => {
                return Err(format!("{source} is an {} key; sops and age take ssh-ed25519 and ssh-rsa keys only", other.as_str()));
            }
            (_, None) => return Err(format!("{source} is a kind of SSH key age cannot use")),
        };
        let tag = public
            .as_ref()
            .and_then(|p| p.to_bytes().ok())
            .map(|wire| base64::engine::general_purpose::STANDARD_NO_PAD.encode(&sha2::Sha256::digest(&wire)[..4]));
        let public = public.and_then(|p| p.to_openssh().ok()).map(|line| line.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
        let state = match (parsed, &tag) {
            (id @ age::ssh::Identity::Unencrypted(_), _) => State::Open(id),
            (age::ssh::Identity::Encrypted(key), Some(_)) if allow_passphrase => State::Locked { key, unlocked: OnceLock::new() },
            (age::ssh::Identity::Encrypted(_), _) => {
                return Err(format!("{source} is passphrase-protected, which sops does not support here"));
            }
            (age::ssh::Identity::Unsupported(_), _) => return Err(format!("{source} is a kind of SSH key age cannot use")),
        };
        Ok(Self { source: source.to_string(), algorithm, tag, public, state })
    }

    /// Whether opening needs a passphrase not yet given.
    pub(super) fn is_locked(&self) -> bool {
        matches!(&self.state, State::Locked { unlocked, .. } if unlocked.get().is_none())
    }

    /// Whether `enc`'s stanzas name this key (type and tag).
    fn is_for(&self, enc: &str) -> bool {
        stanza_heads(enc).iter().any(|(kind, tag)| kind == self.algorithm && self.tag.as_ref().is_none_or(|t| t == tag))
    }

    /// The key as an identity, unlocking it (one prompt) when `interactive` allows.
    fn identity(&self, interactive: bool) -> Result<Option<&age::ssh::Identity>, String> {
        match &self.state {
            State::Open(id) => Ok(Some(id)),
            State::Locked { unlocked, .. } if !interactive => Ok(unlocked.get().and_then(|r| r.as_ref().ok())),
            State::Locked { key, unlocked } => {
                let _turn = AgeUi::turn();
                unlocked.get_or_init(|| self.unlock(key)).as_ref().map(Some).map_err(Clone::clone)
            }
        }
    }

    fn unlock(&self, key: &age::ssh::EncryptedKey) -> Result<age::ssh::Identity, String> {
        let ui = AgeUi::new(&self.source);
        let question = format!("Enter passphrase for SSH key {}:", self.source);
        let Some(pass) = ui.secret(&question) else {
            return Err(ui.explain(&format!("{} is passphrase-protected", self.source)));
        };
        let id = key
            .decrypt(SecretString::from(pass.as_str().to_owned()))
            .map_err(|_| format!("the passphrase does not unlock {}", self.source))?;
        ui.succeeded();
        Ok(age::ssh::Identity::from(id))
    }

    /// The data key in `enc` if it is for this key.
    pub(super) fn open(&self, enc: &str, interactive: bool) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, String> {
        if !self.is_for(enc) {
            return Ok(None);
        }
        match self.identity(interactive)? {
            Some(id) => crate::sops::file::open_armored(enc, &[id as &dyn age::Identity]),
            None => Ok(None),
        }
    }
}

/// `(type, first argument)` of each stanza of an armored age file, read from its header.
fn stanza_heads(armored: &str) -> Vec<(String, String)> {
    let body: String = armored.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(body.as_bytes()) else { return Vec::new() };
    let header_end = bytes.windows(4).position(|w| w == b"\n---").unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..header_end])
        .lines()
        .filter_map(|l| l.strip_prefix("-> "))
        .map(|l| {
            let mut words = l.split(' ');
            (words.next().unwrap_or_default().to_string(), words.next().unwrap_or_default().to_string())
        })
        .collect()
}
