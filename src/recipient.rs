//! The kinds of age recipient a SOPS file can be encrypted for, told apart as sops tells
//! them apart (`parseRecipient` in sops' `age/keysource.go`, 3.12 and later), and the data
//! key wrapped for each.
//!
//! - `age1pq1…`: post-quantum hybrid (ML-KEM-768 + X25519), native to age 1.3 and sops
//!   3.12. The age crate has no such recipient, so hostsmith wraps for it through
//!   `age-plugin-pq` when that plugin is on PATH (sops 3.11 does the same: to it `pq` is a
//!   plugin name), and otherwise leaves the file to a `sops` ≥ 3.12 ([`pq_route`]).
//! - `age1<name>1…`: a plugin recipient (YubiKey, TPM, …), wrapped by `age-plugin-<name>`.
//! - `age1…`: X25519, natively.
//! - `ssh-ed25519 …`, `ssh-rsa …`: an SSH public key, natively (the age `ssh` stanzas).
//!
//! Hosts are always X25519: sops-nix opens a host's secrets with the X25519 identity it
//! derives from the host's ed25519 key, so an SSH or plugin recipient for a host would lock
//! the host out of its own file.

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::age_ui::AgeUi;

/// The name sops 3.12 gives the post-quantum recipients (`age1pq1…`).
const PQ_PREFIX: &str = "age1pq1";

/// What kind of key a recipient is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecipientKind {
    X25519,
    /// `age1<name>1…`, handled by `age-plugin-<name>`.
    Plugin(String),
    /// `ssh-ed25519` or `ssh-rsa`.
    Ssh(&'static str),
    /// `age1pq1…`.
    PostQuantum,
}

impl RecipientKind {
    /// Whether this kind can be a host's recipient (what sops-nix decrypts on the host).
    #[must_use]
    pub fn fits_a_host(&self) -> bool {
        *self == RecipientKind::X25519
    }

    /// A short label for tables: `x25519`, `plugin:yubikey`, `ssh-ed25519`, `pq`.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            RecipientKind::X25519 => "x25519".into(),
            RecipientKind::Plugin(name) => format!("plugin:{name}"),
            RecipientKind::Ssh(t) => (*t).to_string(),
            RecipientKind::PostQuantum => "pq".into(),
        }
    }
}

impl fmt::Display for RecipientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecipientKind::X25519 => f.write_str("X25519"),
            RecipientKind::Plugin(name) => write!(f, "age plugin `{name}` (age-plugin-{name})"),
            RecipientKind::Ssh(t) => write!(f, "SSH key ({t})"),
            RecipientKind::PostQuantum => f.write_str("post-quantum (ML-KEM-768 + X25519, sops ≥ 3.12)"),
        }
    }
}

/// A recipient that sops would accept, parsed.
#[derive(Clone)]
pub enum Recipient {
    X25519(age::x25519::Recipient),
    Plugin(age::plugin::Recipient),
    Ssh(age::ssh::Recipient),
    /// Kept as text: only `age-plugin-pq` or sops ≥ 3.12 can use it.
    PostQuantum(age::plugin::Recipient),
}

impl Recipient {
    #[must_use]
    pub fn kind(&self) -> RecipientKind {
        match self {
            Recipient::X25519(_) => RecipientKind::X25519,
            Recipient::Plugin(p) => RecipientKind::Plugin(p.plugin().to_string()),
            Recipient::Ssh(age::ssh::Recipient::SshEd25519(..)) => RecipientKind::Ssh("ssh-ed25519"),
            Recipient::Ssh(age::ssh::Recipient::SshRsa(..)) => RecipientKind::Ssh("ssh-rsa"),
            Recipient::PostQuantum(_) => RecipientKind::PostQuantum,
        }
    }
}

impl FromStr for Recipient {
    type Err = String;

    /// Parses a recipient as sops does (surrounding spaces ignored), saying why one is not.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if is_post_quantum(s) {
            return s
                .parse::<age::plugin::Recipient>()
                .map(Recipient::PostQuantum)
                .map_err(|e| format!("not a post-quantum recipient ({e})"));
        }
        if let Some(rest) = s.strip_prefix("age1") {
            if rest.contains('1') {
                return s
                    .parse::<age::plugin::Recipient>()
                    .map(Recipient::Plugin)
                    .map_err(|e| format!("not an age plugin recipient ({e})"));
            }
            return s.parse::<age::x25519::Recipient>().map(Recipient::X25519).map_err(|e| format!("not an X25519 recipient ({e})"));
        }
        if s.starts_with("ssh-") {
            return s.parse::<age::ssh::Recipient>().map(Recipient::Ssh).map_err(|e| match e {
                age::ssh::ParseRecipientKeyError::RsaModulusTooSmall => "an ssh-rsa key must have at least 2048 bits".to_string(),
                age::ssh::ParseRecipientKeyError::RsaModulusTooLarge => "the ssh-rsa key is larger than age supports".to_string(),
                _ => "not an ssh-ed25519 or ssh-rsa public key (sops takes no other SSH key type)".to_string(),
            });
        }
        Err("expected age1… (X25519, plugin or post-quantum) or an ssh-ed25519/ssh-rsa public key".into())
    }
}

/// Whether `r` is a post-quantum recipient (`age1pq1…`), told by its prefix as sops tells it.
#[must_use]
pub fn is_post_quantum(r: &str) -> bool {
    r.trim().starts_with(PQ_PREFIX)
}

/// The kind of `s`, or why sops would not take it.
///
/// # Errors
/// `s` is no recipient sops accepts.
pub fn kind_of(s: &str) -> Result<RecipientKind, String> {
    s.parse::<Recipient>().map(|r| r.kind())
}

/// A recipient as compared: trimmed, and an SSH key without its comment (sops keeps the
/// comment in each file, so editing it in `.sops.yaml` must not look like a new key).
#[must_use]
pub fn normalized(r: &str) -> std::borrow::Cow<'_, str> {
    let r = r.trim();
    if r.starts_with("ssh-") { r.split_whitespace().take(2).collect::<Vec<_>>().join(" ").into() } else { r.into() }
}

/// How a post-quantum recipient is served on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PqRoute {
    /// `age-plugin-pq` is on PATH: wrapped here like any plugin recipient.
    Plugin,
    /// A `sops` of this version (≥ 3.12) is on PATH: the file is left to it.
    Sops(String),
    /// Neither; the `sops` version found, if any.
    Unavailable(Option<String>),
}

/// Where post-quantum recipients go, looked up once per run.
#[must_use]
pub fn pq_route() -> PqRoute {
    static ROUTE: OnceLock<PqRoute> = OnceLock::new();
    ROUTE
        .get_or_init(|| {
            if which::which("age-plugin-pq").is_ok() {
                return PqRoute::Plugin;
            }
            match sops_version() {
                Some(v) if version_at_least(&v, (3, 12)) => PqRoute::Sops(v),
                other => PqRoute::Unavailable(other),
            }
        })
        .clone()
}

/// `sops --version`'s number, when a sops is on PATH.
fn sops_version() -> Option<String> {
    // Not through `process::Program`, whose errors name the fleet's types: this only asks.
    let out = std::process::Command::new("sops")
        .args(["--version", "--disable-version-check"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.')).map(str::to_string)
}

fn version_at_least(v: &str, (major, minor): (u64, u64)) -> bool {
    let mut parts = v.split('.').map(|p| p.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<u64>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// The error for a post-quantum recipient this machine cannot wrap for.
#[must_use]
pub fn pq_unavailable(recipient: &str, found: Option<&str>) -> String {
    let found = found.map_or_else(|| "no sops is on PATH".to_string(), |v| format!("the sops on PATH is {v}"));
    format!(
        "recipient {recipient} is post-quantum (ML-KEM-768 + X25519), which only sops ≥ 3.12 or the age plugin `age-plugin-pq` (age ≥ 1.3) can encrypt for, and {found}: install sops ≥ 3.12 or put age-plugin-pq on PATH"
    )
}

/// Why a data key could not be wrapped.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "recipient {recipient} needs the age plugin `{binary}`, which is not on PATH: install it (nixpkgs `{binary}`, or `cargo install {binary}`) and run again"
    )]
    MissingPlugin { recipient: String, binary: String },
    #[error("{0}")]
    PostQuantum(String),
    #[error("{0}")]
    Failed(String),
}

/// The plugin that wraps for `r`, if any (for prompts).
fn plugin_name(r: &Recipient) -> &str {
    match r {
        Recipient::Plugin(p) | Recipient::PostQuantum(p) => p.plugin(),
        Recipient::X25519(_) | Recipient::Ssh(_) => "none",
    }
}

/// The data key encrypted for `recipient` as one armored age file, as sops' age master key
/// stores it (`enc:`).
///
/// # Errors
/// The recipient is invalid, its plugin is missing or fails, or it is post-quantum with no
/// way to wrap for it here.
pub fn wrap(data_key: &[u8], recipient: &str) -> Result<String, WrapError> {
    let parsed: Recipient = recipient.parse().map_err(|why| WrapError::Invalid(format!("invalid age recipient `{recipient}`: {why}")))?;
    let ui = AgeUi::new(&format!("age-plugin-{}", plugin_name(&parsed)));
    let plugin = |p: &age::plugin::Recipient| {
        age::plugin::RecipientPluginV1::new(p.plugin(), std::slice::from_ref(p), &[], ui.clone()).map_err(|e| match e {
            age::EncryptError::MissingPlugin { binary_name } => {
                WrapError::MissingPlugin { recipient: recipient.to_string(), binary: binary_name }
            }
            other => WrapError::Failed(other.to_string()),
        })
    };
    let boxed: Box<dyn age::Recipient> = match &parsed {
        Recipient::X25519(r) => Box::new(r.clone()),
        Recipient::Ssh(r) => Box::new(r.clone()),
        Recipient::Plugin(p) => Box::new(plugin(p)?),
        Recipient::PostQuantum(p) => match pq_route() {
            PqRoute::Plugin => Box::new(plugin(p)?),
            PqRoute::Sops(_) => {
                return Err(WrapError::PostQuantum(format!(
                    "recipient {recipient} is post-quantum: this file is encrypted by sops, not natively"
                )));
            }
            PqRoute::Unavailable(found) => return Err(WrapError::PostQuantum(pq_unavailable(recipient, found.as_deref()))),
        },
    };
    let failed = |e: &dyn fmt::Display| WrapError::Failed(ui.explain(&format!("age could not encrypt for {recipient}: {e}")));
    let enc = age::Encryptor::with_recipients(std::iter::once(boxed.as_ref())).map_err(|e| failed(&e))?;
    let mut out = Vec::new();
    let armored = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).map_err(|e| failed(&e))?;
    let mut w = enc.wrap_output(armored).map_err(|e| failed(&e))?;
    w.write_all(data_key).map_err(|e| failed(&e))?;
    w.finish().and_then(age::armor::ArmoredWriter::finish).map_err(|e| failed(&e))?;
    ui.succeeded();
    String::from_utf8(out).map_err(|_| WrapError::Failed("age armor is not text".into()))
}

/// What this machine lacks to encrypt for `recipient`, if anything: its plugin binary, or a
/// way to wrap for a post-quantum key (for `keys list` and `sops check`; a run that lacks it
/// fails before it writes anything).
#[must_use]
pub fn missing_here(recipient: &str) -> Option<String> {
    let plugin = match recipient.parse::<Recipient>() {
        Err(why) => return Some(format!("invalid: {why}")),
        Ok(Recipient::X25519(_) | Recipient::Ssh(_)) => return None,
        Ok(Recipient::Plugin(p)) => p.plugin().to_string(),
        Ok(Recipient::PostQuantum(_)) => match pq_route() {
            PqRoute::Unavailable(_) => return Some("needs sops ≥ 3.12 or age-plugin-pq on PATH".into()),
            PqRoute::Sops(_) => return None,
            PqRoute::Plugin => "pq".into(),
        },
    };
    let binary = format!("age-plugin-{plugin}");
    which::which(&binary).is_err().then(|| format!("{binary} is not on PATH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@example";

    #[test]
    fn tells_the_kinds_apart_as_sops_does() {
        let x = age::x25519::Identity::generate().to_public().to_string();
        assert_eq!(kind_of(&x), Ok(RecipientKind::X25519));
        assert_eq!(kind_of(&format!("  {x} ")), Ok(RecipientKind::X25519));
        assert_eq!(kind_of(ED), Ok(RecipientKind::Ssh("ssh-ed25519")));
        // A plugin recipient is any valid bech32 string with an `age1<name>` prefix.
        let yk = bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("age1yubikey").expect("hrp"), &[2u8; 33]).expect("encode");
        assert_eq!(kind_of(&yk), Ok(RecipientKind::Plugin("yubikey".into())));
        // age's own test vector (cmd/age/testdata/hybrid.txt): 1,952 characters, past bech32's usual limit.
        let pq = include_str!("../tests/fixtures/age1pq-recipient.txt").trim();
        assert_eq!(kind_of(pq), Ok(RecipientKind::PostQuantum));
        for bad in ["age1qqqq", "ecdsa-sha2-nistp256 AAAA", "AGE-SECRET-KEY-1X", "", "ssh-ed25519 !!"] {
            assert!(kind_of(bad).is_err(), "{bad} accepted");
        }
        assert!(RecipientKind::X25519.fits_a_host() && !RecipientKind::Ssh("ssh-ed25519").fits_a_host());
    }

    #[test]
    fn versions_compare_by_number() {
        assert!(version_at_least("3.12.0", (3, 12)) && version_at_least("3.13.2", (3, 12)) && version_at_least("4.0", (3, 12)));
        assert!(!version_at_least("3.11.0", (3, 12)) && !version_at_least("3.9.4", (3, 12)));
    }

    #[test]
    fn ssh_and_x25519_wraps_are_native_and_open_again() {
        let id = age::x25519::Identity::generate();
        let enc = wrap(&[7u8; 32], &id.to_public().to_string()).expect("wrap");
        assert!(enc.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        let enc = wrap(&[7u8; 32], ED).expect("wrap for ssh");
        let body = age::armor::ArmoredReader::new(enc.as_bytes());
        assert!(age::Decryptor::new(body).is_ok());
        let missing = bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("age1nosuchplugin").expect("hrp"), &[2u8; 33]).expect("encode");
        let err = wrap(&[7u8; 32], &missing).expect_err("no plugin");
        assert!(err.to_string().contains("`age-plugin-nosuchplugin`, which is not on PATH"), "{err}");
    }
}
