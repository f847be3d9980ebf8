//! The remote side of a sync: a fixed POSIX sh script (`remote.sh`), the constant command
//! that runs it, and the stdin protocol that carries it and the keys.
//!
//! Why this shape. The seed pasted the key into a command string (`echo '<key>' >>
//! ~/.ssh/authorized_keys`): one quote in a comment and the host runs it. Here nothing
//! variable ever reaches a command line or a shell parser:
//! - the remote command is the constant [`BOOTSTRAP`], the same bytes for every host, user
//!   and key. It reads a length line, then exactly that many bytes with `dd` (one block
//!   with `iflag=fullblock`, which asks only for what is still missing; byte by byte where
//!   dd lacks that flag), so it never reads past them; it checks the script's end marker
//!   and `eval`s it;
//! - stdin carries `LEN\n`, the script [`SCRIPT`] (a `const`, compiled in), then the request:
//!   mode, user and one `key TYPE BLOB COMMENT` line per key, already validated locally and
//!   checked again by the script, which only ever compares and `printf '%s\n'`s them;
//! - the bootstrap is one short line without control characters, so it survives any login
//!   shell (ssh hands the command to the user's shell) and `qm guest exec` argument checks.
//!
//! The script is not sent with `sh -s` because a shell reading its program from a pipe may
//! read ahead in blocks (dash does) and swallow the request lines; `dd` as above does not.

use std::fmt;

use crate::error::{Error, Result};

use super::keys::{SyncKey, UserName};

/// The script, exactly as compiled in; never formatted or substituted into.
pub const SCRIPT: &str = include_str!("remote.sh");

/// The last line of [`SCRIPT`]: the bootstrap refuses to run a truncated script.
#[cfg(test)]
const END_MARKER: &str = "# end of hostsmith-sync";

/// The bootstrap, written once for both constants below.
macro_rules! bootstrap {
    () => {
        r##"IFS= read -r n && { s=$(dd bs="$n" count=1 iflag=fullblock 2>/dev/null) || s=$(dd bs=1 count="$n" 2>/dev/null); } && case $s in *"# end of hostsmith-sync") eval "$s" ;; *) echo "hostsmith-sync 1"; echo "error protocol the script arrived truncated"; exit 1 ;; esac"##
    };
}

/// The script run as the remote shell command's argument (`sh -c BOOTSTRAP`).
pub const BOOTSTRAP: &str = bootstrap!();

/// The remote command ssh sends: the same text for every host, user and key.
pub const REMOTE_COMMAND: &str = concat!("sh -c '", bootstrap!(), "'");

/// Check only (a dry run) or append what is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    Apply,
}

/// What stdin carries: the script behind its length, then the request.
#[must_use]
pub fn stdin(mode: Mode, lock_wait_secs: u64, user: &UserName, keys: &[SyncKey]) -> Vec<u8> {
    let mode = match mode {
        Mode::Check => "check",
        Mode::Apply => "apply",
    };
    let mut s = format!("{}\n{SCRIPT}hostsmith-sync 1 {mode} {lock_wait_secs}\nuser {user}\n", SCRIPT.len());
    for k in keys {
        s.push_str(&k.wire());
        s.push('\n');
    }
    s.push_str("end\n");
    s.into_bytes()
}

/// The state of one key on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyState {
    Present,
    Added,
    /// Not there, and a dry run did not add it.
    Missing,
}

/// The options sshd honours that limit what a key may do (`restrict`, `command=`, …): a
/// key whose line carries one is present, but may not get a shell.
pub const LIMITING_OPTIONS: &[&str] = &[
    "restrict",
    "no-port-forwarding",
    "no-agent-forwarding",
    "no-x11-forwarding",
    "verify-required",
    "no-pty",
    "no-user-rc",
    "command",
    "from",
    "expiry-time",
    "permitopen",
    "permitlisten",
    "tunnel",
];

/// Why sshd rejects a line that holds a wanted key: the script's reason codes, checked
/// here so that nothing from the host's file reaches a terminal unvetted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// An option sshd does not know, by name when the name is plain.
    UnknownOption(Option<String>),
    /// An unterminated double quote in the options.
    Quotes,
    /// `NAME=` not followed by a double-quoted value.
    MissingQuote(String),
    /// `command=`, `from=` or `principals=` twice.
    Duplicate(String),
    /// A value sshd cannot parse (`expiry-time=`, `environment=`, `permitopen=`, …).
    BadValue(String),
    /// `principals=` on a line without `cert-authority`.
    PrincipalsWithoutCa,
    /// The key's text is on the line, but not where sshd reads a key.
    Unreadable,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::UnknownOption(Some(name)) => write!(f, "unknown option `{name}`"),
            Rejected::UnknownOption(None) => f.write_str("an unknown option"),
            Rejected::Quotes => f.write_str("an unterminated quote in its options"),
            Rejected::MissingQuote(name) => write!(f, "`{name}=` without a double-quoted value"),
            Rejected::Duplicate(name) => write!(f, "`{name}=` given twice"),
            Rejected::BadValue(name) => write!(f, "an invalid `{name}=` value"),
            Rejected::PrincipalsWithoutCa => f.write_str("`principals=` without `cert-authority`"),
            Rejected::Unreadable => f.write_str("no key where sshd reads one (stray characters before the key type?)"),
        }
    }
}

/// What the script noticed about a key's lines in `authorized_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The first line sshd accepts for the key limits it with these options.
    Restricted { key: usize, line: u64, options: Vec<String> },
    /// A line holding the key that sshd rejects as a whole.
    Invalid { key: usize, line: u64, why: Rejected },
}

impl Note {
    /// The 1-based index of the key in the request.
    #[must_use]
    pub fn key(&self) -> usize {
        match self {
            Note::Restricted { key, .. } | Note::Invalid { key, .. } => *key,
        }
    }
}

/// What the script reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub states: Vec<KeyState>,
    /// `flock`, `mkdir` (no flock on the host) or `none` (check only).
    pub lock: Option<String>,
    /// `.ssh` or `.ssh/authorized_keys`, when the script created them.
    pub created: Vec<String>,
    pub notes: Vec<Note>,
}

/// Reads the script's output. Lines before its first line (a chatty login script) are
/// ignored; a reply without `ok` is a failure even when every key was reported.
///
/// # Errors
/// [`Error::Program`] with the script's own error, or saying the script did not finish.
pub fn parse_reply(stdout: &[u8], keys: usize, via: &str) -> Result<Reply> {
    let text = String::from_utf8_lossy(stdout);
    let fail = |message: String| Error::Program { program: via.to_string(), message };
    let mut lines = text.lines().skip_while(|l| *l != "hostsmith-sync 1");
    if lines.next().is_none() {
        return Err(fail("the sync script did not start on the host (is `sh` there?)".into()));
    }
    let mut reply = Reply::default();
    for line in lines {
        let unexpected = || fail(format!("unexpected reply line `{}`", line.escape_debug()));
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("ok"), None, None) => {
                if reply.states.len() != keys {
                    return Err(fail(format!("the host reported {} of {keys} key(s)", reply.states.len())));
                }
                return Ok(reply);
            }
            (Some("error"), Some(code), why) => {
                return Err(fail(format!("the sync script on the host stopped ({code}): {}", why.unwrap_or("no detail"))));
            }
            (Some("lock"), Some(kind), None) => reply.lock = Some(kind.to_string()),
            (Some("created"), Some(what), None) => reply.created.push(what.to_string()),
            (Some("note"), Some(_), Some(_)) => reply.notes.push(parse_note(line, keys).ok_or_else(unexpected)?),
            (Some("key"), Some(index), Some(state)) => {
                let state = match state {
                    "present" => KeyState::Present,
                    "added" => KeyState::Added,
                    "missing" => KeyState::Missing,
                    _ => return Err(unexpected()),
                };
                if index != (reply.states.len() + 1).to_string() {
                    return Err(fail("the host reported keys out of order".into()));
                }
                reply.states.push(state);
            }
            _ => return Err(unexpected()),
        }
    }
    Err(fail("the sync script on the host did not finish (killed, or the connection dropped)".into()))
}

/// `note INDEX restricted LINE OPT[,OPT…]` or `note INDEX invalid LINE REASON [NAME]`, with
/// every word checked against what the script can print.
fn parse_note(line: &str, keys: usize) -> Option<Note> {
    let words: Vec<&str> = line.split(' ').collect();
    let key: usize = words.get(1)?.parse().ok().filter(|k| (1..=keys).contains(k))?;
    let number: u64 = words.get(3)?.parse().ok()?;
    let known = |name: &str| -> Option<String> { LIMITING_OPTIONS.contains(&name).then(|| name.to_string()) };
    let option_name = |name: &str| -> Option<String> {
        let plain = !name.is_empty() && name.len() <= 40 && name.chars().all(|c| c.is_ascii_lowercase() || c == '-');
        plain.then(|| name.to_string())
    };
    match (words.get(2)?, &words[4..]) {
        (&"restricted", [list]) => {
            let options = list.split(',').map(known).collect::<Option<Vec<_>>>()?;
            Some(Note::Restricted { key, line: number, options })
        }
        (&"invalid", [reason, rest @ ..]) => {
            let why = match (*reason, rest) {
                ("unknown-option", []) => Rejected::UnknownOption(None),
                ("unknown-option", [name]) => {
                    let plain = name.len() <= 40 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                    Rejected::UnknownOption(Some(plain.then(|| (*name).to_string())?))
                }
                ("bad-quotes", []) => Rejected::Quotes,
                ("missing-quote", [name]) => Rejected::MissingQuote(option_name(name)?),
                ("duplicate", [name]) => Rejected::Duplicate(option_name(name)?),
                ("bad-value", [name]) => Rejected::BadValue(option_name(name)?),
                ("principals-without-cert-authority", []) => Rejected::PrincipalsWithoutCa,
                ("unreadable", []) => Rejected::Unreadable,
                _ => return None,
            };
            Some(Note::Invalid { key, line: number, why })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constants_agree() {
        assert_eq!(REMOTE_COMMAND, format!("sh -c '{BOOTSTRAP}'"));
        assert!(SCRIPT.trim_end().ends_with(END_MARKER));
        assert!(BOOTSTRAP.contains(END_MARKER));
        // Run as root for another user, the script runs its own text again as that user: it
        // finds it in the bootstrap's `s`.
        assert!(BOOTSTRAP.contains(r#"eval "$s""#) && SCRIPT.contains("script=${s-}"));
        // One quote-free line: any login shell passes it to sh unchanged, and qm accepts it.
        assert!(!BOOTSTRAP.contains('\'') && !BOOTSTRAP.contains('\\') && !BOOTSTRAP.chars().any(char::is_control));
    }

    #[test]
    fn replies_are_parsed_strictly() {
        let ok = parse_reply(b"motd\nhostsmith-sync 1\ncreated .ssh\nlock flock\nkey 1 present\nkey 2 added\nok\n", 2, "ssh").expect("ok");
        assert_eq!(ok.states, [KeyState::Present, KeyState::Added]);
        assert_eq!(ok.lock.as_deref(), Some("flock"));
        assert_eq!(ok.created, [".ssh"]);
        for (bad, keys) in [
            (&b"key 1 added\nok\n"[..], 1),
            (b"hostsmith-sync 1\nkey 1 added\n", 1),
            (b"hostsmith-sync 1\nkey 2 added\nok\n", 1),
            (b"hostsmith-sync 1\nkey 1 added\nok\n", 2),
            (b"hostsmith-sync 1\nkey 1 maybe\nok\n", 1),
            (b"hostsmith-sync 1\nerror lock held\n", 1),
        ] {
            assert!(parse_reply(bad, keys, "ssh").is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let noted = parse_reply(
            b"hostsmith-sync 1\nnote 1 invalid 2 unknown-option badopt\nnote 1 restricted 5 command,no-pty\nkey 1 present\nok\n",
            1,
            "ssh",
        )
        .expect("notes");
        assert_eq!(
            noted.notes,
            [
                Note::Invalid { key: 1, line: 2, why: Rejected::UnknownOption(Some("badopt".into())) },
                Note::Restricted { key: 1, line: 5, options: vec!["command".into(), "no-pty".into()] },
            ]
        );
        // Notes carry only what the script can say: anything else from the host is refused.
        for bad in [
            "note 2 invalid 1 bad-quotes",
            "note 1 invalid x bad-quotes",
            "note 1 invalid 1 unknown-option a\u{1b}[2J",
            "note 1 invalid 1 duplicate Command",
            "note 1 invalid 1 made-up",
            "note 1 restricted 1 command,shell",
            "note 1 restricted 1",
        ] {
            let text = format!("hostsmith-sync 1\n{bad}\nkey 1 present\nok\n");
            assert!(parse_reply(text.as_bytes(), 1, "ssh").is_err(), "{bad}");
        }
        let err = parse_reply(b"hostsmith-sync 1\nerror user no such user on the host\n", 1, "ssh").expect_err("error").to_string();
        assert!(err.contains("(user): no such user on the host"), "{err}");
    }
}
