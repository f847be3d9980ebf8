//! A repository's deploy keys as GitHub lists them, through `gh api`.
//!
//! What `gh` prints is untrusted: it comes from a service, through a program on PATH. Every
//! field hostsmith uses is checked before it is used: the id is a number, the key is an
//! OpenSSH public key line, the times are RFC 3339 times, `read_only` is a boolean. The title
//! is free text anyone with access to the repository typed, so it is kept only in a printable
//! form (control and bidirectional characters escaped, length capped): it never reaches the
//! terminal raw.
//!
//! `gh api --paginate` prints each page as its own JSON array, one after the other (newer
//! versions can wrap them with `--slurp`, older ones cannot); the reply is read as a stream
//! of arrays, so one page and many pages read alike.

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::process::Program;

/// At most this many keys per repository: a reply beyond that is not a deploy-key listing.
const MAX_KEYS: usize = 10_000;
/// Titles are shown up to this many characters.
const MAX_TITLE: usize = 100;

/// A repository on GitHub, `OWNER/NAME`, each part as GitHub allows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub(crate) struct Repo(String);

impl Repo {
    /// # Errors
    /// [`Error::Usage`] with the expected form.
    pub(crate) fn parse(repo: &str) -> Result<Self> {
        let ok = |s: &str| {
            !s.is_empty() && s.len() <= 100 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && s != "." && s != ".."
        };
        match repo.split_once('/') {
            Some((owner, name)) if ok(owner) && ok(name) => Ok(Self(repo.to_string())),
            _ => Err(Error::Usage(format!("`{}` is not a repository: give it as OWNER/NAME, e.g. `acme/nix-config`", repo.escape_debug()))),
        }
    }

    /// The repository's NAME, which is also the name of its deploy key unless told otherwise.
    #[must_use]
    pub(crate) fn name(&self) -> &str {
        self.0.split_once('/').map_or(self.0.as_str(), |(_, n)| n)
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A deploy key registered on GitHub, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RemoteKey {
    pub(crate) id: u64,
    /// `TYPE BASE64`, without a comment (GitHub keeps none).
    pub(crate) key: String,
    pub(crate) fingerprint: String,
    /// The title, printable (see the module docs).
    pub(crate) title: String,
    pub(crate) read_only: bool,
    pub(crate) created_at: Option<String>,
    /// When GitHub last saw the key used.
    #[serde(skip_serializing_if = "LastUsed::is_unknown")]
    pub(crate) last_used: LastUsed,
}

/// GitHub's `last_used`: a time, `null` (never used), or absent (older servers lack it);
/// written to JSON the same three ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(crate) enum LastUsed {
    Unknown,
    Never,
    At(String),
}

impl LastUsed {
    fn is_unknown(&self) -> bool {
        *self == LastUsed::Unknown
    }
}

/// The `gh` command line that lists `repo`'s deploy keys, every page.
#[must_use]
pub(crate) fn list_command(repo: &Repo) -> Program {
    Program::new("gh").args(["api", "--paginate", "-H", "X-GitHub-Api-Version: 2022-11-28", &format!("repos/{repo}/keys?per_page=100")])
}

/// Lists `repo`'s deploy keys through `gh api`.
///
/// # Errors
/// [`Error::Program`] when `gh` fails (with its stderr, control characters removed, and what
/// to check) or prints something that is not a deploy-key listing.
pub(crate) fn list(repo: &Repo) -> Result<Vec<RemoteKey>> {
    let cmd = list_command(repo);
    let done = cmd.run()?;
    if done.status != Some(0) {
        return Err(match crate::process::exit_error(cmd.display(), None, done.status, &done.stderr) {
            Error::Program { program, message } => Error::Program {
                program,
                message: format!(
                    "{message}\n  check that `{repo}` exists and that your gh login may read its deploy keys (`gh auth status`; a token needs admin rights on the repository)"
                ),
            },
            other => other,
        });
    }
    parse_listing(&done.stdout).map_err(|why| Error::Program {
        program: cmd.display(),
        message: format!("its reply is not a list of deploy keys ({why}); nothing was compared"),
    })
}

/// Reads the pages `gh api --paginate` printed.
///
/// # Errors
/// What is wrong with the reply, without echoing it.
pub(crate) fn parse_listing(bytes: &[u8]) -> std::result::Result<Vec<RemoteKey>, String> {
    let mut keys = Vec::new();
    for page in serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>() {
        let page = page.map_err(|e| format!("not JSON at line {}", e.line()))?;
        let serde_json::Value::Array(items) = page else { return Err("a page is not a JSON array".into()) };
        for item in &items {
            let n = keys.len() + 1;
            keys.push(parse_key(item).map_err(|why| format!("entry {n}: {why}"))?);
            if keys.len() > MAX_KEYS {
                return Err(format!("more than {MAX_KEYS} keys"));
            }
        }
    }
    Ok(keys)
}

fn parse_key(item: &serde_json::Value) -> std::result::Result<RemoteKey, String> {
    let obj = item.as_object().ok_or("not an object")?;
    let id = obj.get("id").and_then(serde_json::Value::as_u64).ok_or("`id` is not a number")?;
    let line = obj.get("key").and_then(serde_json::Value::as_str).ok_or("`key` is not a string")?;
    let (key, fingerprint) = key_material(line).ok_or("`key` is not an OpenSSH public key")?;
    let title = obj.get("title").and_then(serde_json::Value::as_str).ok_or("`title` is not a string")?;
    let read_only = obj.get("read_only").and_then(serde_json::Value::as_bool).ok_or("`read_only` is not true or false")?;
    Ok(RemoteKey {
        id,
        key,
        fingerprint,
        title: printable(title),
        read_only,
        created_at: time(obj.get("created_at"), "created_at")?,
        last_used: match obj.get("last_used") {
            None => LastUsed::Unknown,
            v => time(v, "last_used")?.map_or(LastUsed::Never, LastUsed::At),
        },
    })
}

/// An optional time: absent or null is `None`; anything else must be an RFC 3339 time.
fn time(value: Option<&serde_json::Value>, field: &str) -> std::result::Result<Option<String>, String> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.len() <= 40 && s.parse::<jiff::Timestamp>().is_ok() => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{field}` is not a time")),
    }
}

/// The key of a public key line (`TYPE BASE64`, comment dropped) and its SHA256 fingerprint,
/// or `None` when it is not one. Works for every key type GitHub accepts, so keys the fleet
/// did not make (RSA, ECDSA, security keys) are compared and shown too.
#[must_use]
pub(crate) fn key_material(line: &str) -> Option<(String, String)> {
    let mut words = line.split_ascii_whitespace();
    let kind = words.next()?;
    let data = words.next()?;
    let kind_ok = kind.len() <= 64 && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b"@.-".contains(&b));
    if !kind_ok || line.chars().any(char::is_control) {
        return None;
    }
    let blob = base64::engine::general_purpose::STANDARD.decode(data).ok()?;
    // The blob starts with the key type as an SSH string.
    let len = usize::try_from(u32::from_be_bytes(blob.get(..4)?.try_into().ok()?)).ok()?;
    if blob.get(4..4 + len)? != kind.as_bytes() {
        return None;
    }
    let digest = Sha256::digest(&blob);
    let fingerprint = format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest));
    Some((format!("{kind} {data}"), fingerprint))
}

/// `text` safe to print: control, zero-width and bidirectional characters written as
/// `\u{…}`, and at most [`MAX_TITLE`] characters (then `…`).
#[must_use]
pub(crate) fn printable(text: &str) -> String {
    let hidden =
        |c: char| c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}');
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_TITLE {
            out.push('…');
            break;
        }
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed25519() -> String {
        crate::ssh_keys::Keypair::generate("x").expect("key").public_line()
    }

    #[test]
    fn pages_are_read_as_one_list_and_fingerprints_match_ssh_keygen() {
        let line = ed25519();
        let page = |id: u64| {
            format!(
                r#"[{{"id":{id},"key":"{}","title":"t","read_only":true,"created_at":"2026-01-02T03:04:05Z","last_used":null}}]"#,
                line.rsplit_once(' ').expect("comment").0
            )
        };
        let keys = parse_listing(format!("{}\n{}", page(1), page(2)).as_bytes()).expect("listing");
        assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(keys[0].fingerprint, crate::deploy_keys::fingerprint_of(&line));
        assert_eq!(keys[0].last_used, LastUsed::Never);
        assert_eq!(parse_listing(b"[]").expect("empty"), []);
    }

    #[test]
    fn a_malformed_reply_is_refused_and_titles_are_made_printable() {
        let key = ed25519();
        let k = key.rsplit_once(' ').expect("comment").0;
        for (reply, why) in [
            ("{}".to_string(), "a page is not a JSON array"),
            ("[1]".to_string(), "entry 1: not an object"),
            (format!(r#"[{{"id":"1","key":"{k}","title":"t","read_only":true}}]"#), "`id` is not a number"),
            (r#"[{"id":1,"key":"ssh-ed25519 AAAA\u001b[2J","title":"t","read_only":true}]"#.to_string(), "`key` is not an OpenSSH"),
            (format!(r#"[{{"id":1,"key":"{k}","title":"t","read_only":"yes"}}]"#), "`read_only`"),
            (format!(r#"[{{"id":1,"key":"{k}","title":"t","read_only":true,"last_used":"yesterday"}}]"#), "`last_used` is not a time"),
            ("[".to_string(), "not JSON"),
        ] {
            let err = parse_listing(reply.as_bytes()).expect_err(&reply);
            assert!(err.contains(why), "{reply}: {err}");
        }
        assert_eq!(printable("a\u{1b}]0;x\u{7}b\u{202e}c\nd"), "a\\u{1b}]0;x\\u{7}b\\u{202e}c\\u{a}d");
        assert_eq!(printable(&"x".repeat(150)).chars().count(), MAX_TITLE + 1);
    }

    #[test]
    fn repositories_are_owner_slash_name() {
        assert_eq!(Repo::parse("acme/nix-config").expect("repo").name(), "nix-config");
        for bad in ["acme", "a/b/c", "../x", "a/..", "a b/c", "/x", "a/\u{1b}"] {
            assert!(Repo::parse(bad).is_err(), "{bad}");
        }
    }
}
