//! Where the admin's identities are found: every place sops 3.11–3.13 reads
//! (`loadIdentities` and `loadAgeSSHIdentities` in sops' `age/keysource.go`), all of them,
//! not the first that exists:
//!
//! - SSH keys: the output of `SOPS_AGE_SSH_PRIVATE_KEY_CMD` (3.13), the file
//!   `SOPS_AGE_SSH_PRIVATE_KEY_FILE`, and `~/.ssh/id_ed25519` and `~/.ssh/id_rsa` when they
//!   exist;
//! - age identities: `SOPS_AGE_KEY` (one or more, by line or, as 3.13 allows, by space),
//!   the file `SOPS_AGE_KEY_FILE`, the output of `SOPS_AGE_KEY_CMD`, and
//!   `$XDG_CONFIG_HOME/sops/age/keys.txt` (`~/.config/…`).
//!
//! An identity file holds `AGE-SECRET-KEY-1…` (X25519), `AGE-PLUGIN-…` (a plugin's) and
//! `AGE-SECRET-KEY-PQ-1…` (post-quantum, sops ≥ 3.12) lines; empty lines and lines starting
//! with `#` are skipped, and a line sops would refuse is refused. A file that is itself age
//! encrypted with a passphrase (`age -p`, armored or not) is unlocked on first use.
//!
//! As in sops, a source that cannot be read or parsed does not stop the others: its problem
//! is kept and told only if no identity opens the file at hand. A key command runs once per
//! run (sops runs it per key); `SOPS_AGE_RECIPIENT` is not set for it.

use std::io::Read as _;
use std::path::PathBuf;

use zeroize::Zeroizing;

use super::ssh::SshKey;
use super::{Entry, Keyring, Protected};

/// Identity files larger than this are refused, as sops refuses them (16 MiB).
const MAX_IDENTITY_FILE: u64 = 1 << 24;

/// Where sops looks for the default key file: `$XDG_CONFIG_HOME` (which must be absolute,
/// as Go's `os.UserConfigDir` wants it) or `$HOME/.config`.
#[must_use]
pub(crate) fn default_key_file() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) if PathBuf::from(&x).is_absolute() => Some(PathBuf::from(x).join("sops/age/keys.txt")),
        Some(_) => None,
        None => home().map(|h| h.join(".config/sops/age/keys.txt")),
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Every identity sops would find, with the problems of the sources that failed and the
/// places that held nothing.
#[must_use]
pub(crate) fn load() -> Keyring {
    let mut k = Keyring::default();
    ssh_sources(&mut k);
    if let Ok(text) = std::env::var("SOPS_AGE_KEY") {
        k.add_text(Zeroizing::new(text.into_bytes()), "SOPS_AGE_KEY", true);
    } else {
        k.unused.push("SOPS_AGE_KEY".into());
    }
    match std::env::var_os("SOPS_AGE_KEY_FILE") {
        Some(path) => match read_limited(&PathBuf::from(&path)) {
            Ok(text) => k.add_text(text, &format!("SOPS_AGE_KEY_FILE `{}`", PathBuf::from(&path).display()), false),
            Err(e) => k.problems.push(format!("SOPS_AGE_KEY_FILE `{}`: {e}", PathBuf::from(path).display())),
        },
        None => k.unused.push("SOPS_AGE_KEY_FILE".into()),
    }
    match std::env::var("SOPS_AGE_KEY_CMD") {
        Ok(cmd) => match run_key_command(&cmd) {
            Ok(out) => k.add_text(out, "SOPS_AGE_KEY_CMD", false),
            Err(e) => k.problems.push(format!("SOPS_AGE_KEY_CMD: {e}")),
        },
        Err(_) => k.unused.push("SOPS_AGE_KEY_CMD".into()),
    }
    if let Some(path) = default_key_file() {
        match read_limited(&path) {
            Ok(text) => k.add_text(text, &format!("`{}`", path.display()), false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => k.unused.push(format!("`{}`", path.display())),
            Err(e) => k.problems.push(format!("`{}`: {e}", path.display())),
        }
    }
    k
}

fn ssh_sources(k: &mut Keyring) {
    match std::env::var("SOPS_AGE_SSH_PRIVATE_KEY_CMD") {
        Ok(cmd) => match run_key_command(&cmd) {
            Ok(out) => k.add_ssh(&out, "the output of SOPS_AGE_SSH_PRIVATE_KEY_CMD", false),
            Err(e) => k.problems.push(format!("SOPS_AGE_SSH_PRIVATE_KEY_CMD: {e}")),
        },
        Err(_) => k.unused.push("SOPS_AGE_SSH_PRIVATE_KEY_CMD".into()),
    }
    match std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE") {
        Some(path) => {
            let path = PathBuf::from(path);
            match read_limited(&path) {
                Ok(text) => k.add_ssh(&text, &format!("SOPS_AGE_SSH_PRIVATE_KEY_FILE `{}`", path.display()), true),
                Err(e) => k.problems.push(format!("SOPS_AGE_SSH_PRIVATE_KEY_FILE `{}`: {e}", path.display())),
            }
        }
        None => k.unused.push("SOPS_AGE_SSH_PRIVATE_KEY_FILE".into()),
    }
    let Some(home) = home() else { return };
    for name in ["id_ed25519", "id_rsa"] {
        let path = home.join(".ssh").join(name);
        match read_limited(&path) {
            Ok(text) => k.add_ssh(&text, &format!("`{}`", path.display()), true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => k.unused.push(format!("`{}`", path.display())),
            Err(e) => k.problems.push(format!("`{}`: {e}", path.display())),
        }
    }
}

fn read_limited(path: &std::path::Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let f = std::fs::File::open(path)?;
    let mut out = Zeroizing::new(Vec::with_capacity(4096));
    f.take(MAX_IDENTITY_FILE + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_IDENTITY_FILE {
        return Err(std::io::Error::other("larger than 16 MiB"));
    }
    Ok(out)
}

/// Runs a key command as sops does (split like a shell would, no shell), its output kept
/// out of logs and zeroized.
fn run_key_command(cmd: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let argv = shlex::split(cmd).filter(|a| !a.is_empty()).ok_or_else(|| "the command cannot be split into words".to_string())?;
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", argv[0]))?;
    let mut out = Zeroizing::new(Vec::with_capacity(64 * 1024));
    if let Some(stdout) = child.stdout.take() {
        stdout.take(MAX_IDENTITY_FILE + 1).read_to_end(&mut out).map_err(|e| format!("reading its output: {e}"))?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("`{}` failed ({status})", argv[0]));
    }
    Ok(out)
}

impl Keyring {
    /// Adds what an identity text holds (or, for an age-encrypted one, the promise of it).
    fn add_text(&mut self, text: Zeroizing<Vec<u8>>, source: &str, words: bool) {
        if text.starts_with(b"age-encryption") || text.starts_with(b"-----BEGIN AGE") {
            self.entries.push(Entry::Protected(Protected::new(text, source)));
            return;
        }
        let Ok(s) = std::str::from_utf8(&text) else {
            self.problems.push(format!("{source}: not UTF-8 text"));
            return;
        };
        match parse_lines(s, source, words) {
            Ok(entries) if entries.is_empty() => self.unused.push(source.to_string()),
            Ok(entries) => self.entries.extend(entries),
            Err(e) => self.problems.push(e),
        }
    }

    fn add_ssh(&mut self, text: &[u8], source: &str, allow_passphrase: bool) {
        match SshKey::parse(text, source, allow_passphrase) {
            Ok(key) => self.entries.push(Entry::Ssh(Box::new(key))),
            Err(e) => self.problems.push(e),
        }
    }
}

/// The identities of an identity file's text, each line as sops reads it: `words` splits a
/// line at spaces (sops 3.13 does so for `SOPS_AGE_KEY` only).
///
/// # Errors
/// A line that is no identity, by number (never its text).
pub(super) fn parse_lines(text: &str, source: &str, words: bool) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let items: Vec<&str> = if words { line.split_whitespace().collect() } else { vec![line] };
        for item in items {
            out.push(parse_identity(item).map_err(|why| format!("{source}: line {} {why}", n + 1))?);
        }
    }
    Ok(out)
}

fn parse_identity(s: &str) -> Result<Entry, &'static str> {
    if s.starts_with("AGE-PLUGIN-") {
        return s.parse::<age::plugin::Identity>().map(Entry::Plugin).map_err(|_| "is not a valid age plugin identity");
    }
    if s.starts_with("AGE-SECRET-KEY-PQ-1") {
        return Ok(Entry::PostQuantum);
    }
    if s.starts_with("AGE-SECRET-KEY-1") {
        return s.parse::<age::x25519::Identity>().map(Entry::X25519).map_err(|_| "is not a valid X25519 identity");
    }
    Err("is not an age identity (AGE-SECRET-KEY-1…, AGE-PLUGIN-… or AGE-SECRET-KEY-PQ-1…)")
}

#[cfg(test)]
mod tests {
    use age::secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn lines_are_read_as_sops_reads_them() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let (a_s, b_s) = (a.to_string().expose_secret().to_string(), b.to_string().expose_secret().to_string());
        let file = format!("# created: x\n{a_s}\r\n\n{b_s}\n");
        assert_eq!(parse_lines(&file, "t", false).expect("parses").len(), 2);
        // Two keys on one line: SOPS_AGE_KEY (3.13) only.
        let line = format!("{a_s} {b_s}");
        assert_eq!(parse_lines(&line, "SOPS_AGE_KEY", true).expect("words").len(), 2);
        let err = parse_lines(&line, "t", false).err().expect("one line, one key");
        assert!(err.contains("line 1") && !err.contains(&a_s), "{err}");
        // sops does not trim: an indented key is refused.
        assert!(parse_lines(&format!("  {a_s}"), "t", false).is_err());
        assert!(matches!(parse_lines("AGE-SECRET-KEY-PQ-1XYZ", "t", false).expect("pq").as_slice(), [Entry::PostQuantum]));
    }
}
