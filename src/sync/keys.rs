//! The keys a sync installs and the user it installs them for. Everything is parsed and
//! validated here, locally, before a single byte leaves the machine: a key that would need
//! quoting anywhere, or a user name that is not a plain login name, stops the run with
//! exit status 2 before any connection is made.
//!
//! The checks are deliberately stricter than OpenSSH needs. The keys travel on stdin and the
//! remote script never evaluates them, so a hostile comment could not run anything; but a
//! comment holding quotes, `;` or `$` in a file that is supposed to hold public keys means
//! somebody tampered with that file, and a sync should stop there rather than carry on.

use std::fmt;
use std::time::Duration;

use ssh_key::{Algorithm, EcdsaCurve, PublicKey, public::KeyData};

use crate::error::{Error, Result};
use crate::host_name::HostName;
use crate::process::Program;

/// At most this many keys per sync (the remote script has the same bound).
pub const MAX_KEYS: usize = 100;
/// Comments longer than this are cut.
const MAX_COMMENT: usize = 200;
/// Characters whose presence in a comment means the key file was tampered with.
const HOSTILE: &[char] = &['\'', '"', '`', '\\', '$', ';', '&', '|', '<', '>'];

/// One public key, validated: an allowed type, a blob that decodes to that type, and a
/// comment made only of `[A-Za-z0-9 @._+:,=/-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncKey {
    /// The type name as written on the line: `ssh-ed25519`, `ecdsa-sha2-nistp256`, …
    pub kind: String,
    /// The base64 key blob, as OpenSSH encodes it.
    pub blob: String,
    pub comment: String,
    /// `SHA256:…`: what logs and messages show instead of the key.
    pub fingerprint: String,
}

impl SyncKey {
    /// Parses one `TYPE BLOB [COMMENT]` line. `origin` names where it came from (a file and
    /// line number), for the error; the error never quotes the line itself.
    ///
    /// # Errors
    /// [`Error::Key`] (exit 2) naming the origin and the problem.
    pub fn parse(line: &str, origin: &str) -> Result<Self> {
        let bad = |why: String| Error::Key(format!("{origin}: {why}; expected a public key line `TYPE BASE64 [COMMENT]`"));
        if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(bad(format!("the line holds the control character {c:?} (a line break inside a key?)")));
        }
        let mut words = line.split_whitespace();
        let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
            return Err(bad("the line has no key".into()));
        };
        let comment_words: Vec<&str> = words.collect();
        let key = PublicKey::from_openssh(&format!("{kind} {blob}")).map_err(|e| bad(format!("not an OpenSSH public key ({e})")))?;
        allowed(&key).map_err(bad)?;
        let raw_comment = comment_words.join(" ");
        if let Some(c) = raw_comment.chars().find(|c| HOSTILE.contains(c)) {
            return Err(bad(format!(
                "the key's comment holds `{c}`, which no honest public key file contains (was the file tampered with?)"
            )));
        }
        let fingerprint = crate::ssh_keys::fingerprint(&key);
        let canonical = PublicKey::new(key.key_data().clone(), "").to_openssh().map_err(|e| bad(e.to_string()))?;
        let (kind, blob) = canonical.split_once(' ').ok_or_else(|| bad("the key cannot be encoded".into()))?;
        Ok(Self { kind: kind.to_string(), blob: blob.trim().to_string(), comment: sanitise_comment(&raw_comment), fingerprint })
    }

    /// The request line for the remote script: `key TYPE BLOB [COMMENT]`.
    #[must_use]
    pub fn wire(&self) -> String {
        if self.comment.is_empty() {
            format!("key {} {}", self.kind, self.blob)
        } else {
            format!("key {} {} {}", self.kind, self.blob, self.comment)
        }
    }
}

/// Only the key types OpenSSH accepts for user authentication today; DSA and certificates
/// are refused (a certificate in authorized_keys needs `cert-authority`, which a sync must
/// never grant).
fn allowed(key: &PublicKey) -> std::result::Result<(), String> {
    match (key.algorithm(), key.key_data()) {
        (Algorithm::Ed25519 | Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256, _) => Ok(()),
        (Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 | EcdsaCurve::NistP384 | EcdsaCurve::NistP521 }, _) => Ok(()),
        (Algorithm::Rsa { .. }, KeyData::Rsa(rsa)) => {
            let bits = rsa.n.as_positive_bytes().map_or(0, |b| b.len() * 8);
            if bits >= 2048 { Ok(()) } else { Err(format!("the RSA key has {bits} bits; use at least 2048 (or ed25519)")) }
        }
        (other, _) => Err(format!("key type `{other}` is not allowed; use ssh-ed25519, ecdsa-sha2-nistp*, sk-* or ssh-rsa")),
    }
}

/// Collapses whitespace, replaces characters outside `[A-Za-z0-9 @._+:,=/-]` with `_` and
/// bounds the length: the comment is for people, and this form is safe everywhere.
fn sanitise_comment(raw: &str) -> String {
    let mapped: String = raw
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || " @._+:,=/-".contains(c) { c } else { '_' })
        .take(MAX_COMMENT)
        .collect();
    mapped.trim().to_string()
}

/// Every key in `text` (blank lines and `#` comments skipped), deduplicated by type and blob.
///
/// # Errors
/// The first line that is not an acceptable key, by line number.
pub fn parse_text(text: &str, origin: &str) -> Result<Vec<SyncKey>> {
    let mut out: Vec<SyncKey> = Vec::new();
    let lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    for (i, line) in lines.enumerate() {
        let trimmed = line.trim_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let key = SyncKey::parse(trimmed, &format!("{origin} line {}", i + 1))?;
        if !out.iter().any(|k| k.kind == key.kind && k.blob == key.blob) {
            out.push(key);
        }
    }
    Ok(out)
}

/// Keys from entries that are key lines (`ssh-ed25519 AAAA…`) or `.pub` files (`~`
/// expanded), as in `cloud_init.authorized_keys` and `--key`.
///
/// # Errors
/// An unreadable file or a bad key, named; no keys at all.
pub fn from_entries(entries: &[String], what: &str) -> Result<Vec<SyncKey>> {
    let mut out: Vec<SyncKey> = Vec::new();
    for entry in entries {
        let keys = if looks_like_key(entry) {
            parse_text(entry, &format!("{what} entry"))?
        } else {
            let path = expand_home(entry);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Usage(format!("key file `{}` ({what}) cannot be read: {e}", path.display())))?;
            parse_text(&text, &format!("`{}`", path.display()))?
        };
        for k in keys {
            if !out.iter().any(|o| o.kind == k.kind && o.blob == k.blob) {
                out.push(k);
            }
        }
    }
    check_count(out, what)
}

/// Keys printed by the user's `sync.key_command` (run without a shell, `HOSTSMITH_HOST`
/// set to the host), bounded by `timeout`.
///
/// # Errors
/// When the command fails or prints anything that is not a key.
pub fn from_command(argv: &[String], host: &HostName, timeout: Duration) -> Result<Vec<SyncKey>> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::Usage("sync.key_command is empty".into()));
    };
    let done = Program::new(program.clone()).args(args.iter().cloned()).env("HOSTSMITH_HOST", host.as_str()).timeout(timeout).run_ok()?;
    let text =
        String::from_utf8(done.stdout).map_err(|_| Error::Key("sync.key_command printed something that is not UTF-8 text".into()))?;
    check_count(parse_text(&text, "sync.key_command output")?, "sync.key_command")
}

fn check_count(keys: Vec<SyncKey>, what: &str) -> Result<Vec<SyncKey>> {
    if keys.is_empty() {
        return Err(Error::Usage(format!("{what} gave no public key: nothing to sync")));
    }
    if keys.len() > MAX_KEYS {
        return Err(Error::Usage(format!("{what} gave {} keys; a sync carries at most {MAX_KEYS}", keys.len())));
    }
    Ok(keys)
}

fn looks_like_key(entry: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-"].iter().any(|p| entry.starts_with(p))
}

pub(crate) use crate::config::expand_home;

/// A POSIX portable login name: `[A-Za-z_][A-Za-z0-9._-]*`, at most 32 characters. It goes
/// to `ssh -l` and to the remote script (on stdin), so nothing else is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    /// # Errors
    /// [`Error::Usage`] (exit 2) naming the value.
    pub fn parse(s: &str) -> Result<Self> {
        let valid = s.len() <= 32
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(Error::Usage(format!(
                "user name `{}` is invalid: use a login name of letters, digits, '.', '_' and '-' (starting with a letter or '_', at most 32)",
                s.escape_debug()
            )))
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed25519() -> String {
        crate::ssh_keys::Keypair::generate("alice@laptop").expect("key").public_line()
    }

    #[test]
    fn a_key_line_is_normalised_and_keeps_a_safe_comment() {
        let line = ed25519();
        let k = SyncKey::parse(&format!("{}   Alice  (work) é", line.rsplit_once(' ').expect("comment").0), "test").expect("ok");
        assert_eq!(k.kind, "ssh-ed25519");
        assert_eq!(k.comment, "Alice _work_ _");
        assert!(k.fingerprint.starts_with("SHA256:"));
        assert_eq!(k.wire(), format!("key ssh-ed25519 {} Alice _work_ _", k.blob));
    }

    #[test]
    fn hostile_lines_are_refused_without_quoting_them() {
        let line = ed25519();
        let (key, _) = line.rsplit_once(' ').expect("comment");
        for bad in [
            format!("{key} x'; touch /tmp/pwned; '"),
            format!("{key} $(reboot)"),
            format!("{key} a\rb"),
            format!("{key}\u{1b}[2J"),
            "ssh-ed25519 AAAA-not-base64".to_string(),
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP".to_string(),
            "from=\"10.0.0.1\" ssh-ed25519 AAAA".to_string(),
        ] {
            let err = SyncKey::parse(&bad, "f line 1").expect_err(&bad).to_string();
            assert!(err.starts_with("f line 1: "), "{err}");
            assert!(!err.contains("touch") && !err.contains("reboot"), "{err}");
            assert_eq!(Error::Key(String::new()).code(), 2);
        }
        let err = parse_text(&format!("{key}\n'; touch /tmp/pwned\n"), "file").expect_err("second line").to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn duplicates_collapse_and_comments_are_skipped() {
        let line = ed25519();
        let keys = parse_text(&format!("# admins\n\n{line}\r\n{line} other\n"), "f").expect("ok");
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn user_names_are_plain_login_names() {
        for good in ["admin", "_svc", "a.b-c_d", "root"] {
            assert!(UserName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-oProxyCommand=x", "a b", "a;b", "a'b", "$(id)", "1abc", "é", &"a".repeat(33)] {
            assert!(UserName::parse(bad).is_err(), "{bad}");
        }
    }
}
