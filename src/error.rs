//! The crate-wide error: every failure a command can report, with the exit status it maps to.
//!
//! Messages are lowercase, name the thing (path, host, key) in backticks and end with what
//! to do. They never carry secret material: variants hold paths, names and public facts only.

use std::path::PathBuf;

use crate::sops::file::SopsFileError;
use crate::sops::rules::SopsConfigError;
use crate::sops::yaml::YamlError;

/// Exit status for invalid input or usage.
pub(crate) const EXIT_USAGE: i32 = 2;
/// Exit status for other failures.
pub(crate) const EXIT_FAILURE: i32 = 1;
/// Exit status when a host presents a key other than the recorded one.
pub(crate) const EXIT_MISMATCH: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("host name `{name}` is invalid: {why}; use letters, digits and '-' (at most 63, not starting or ending with '-')")]
    HostName { name: String, why: &'static str },

    #[error("{0}")]
    Usage(String),

    #[error("cannot read `{path}`: {}", read_reason(source))]
    Read { path: PathBuf, source: std::io::Error },

    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: std::io::Error },

    #[error("`{path}` is not valid YAML ({source}); fix the file and run again")]
    Yaml { path: PathBuf, source: YamlError },

    /// A `.sops.yaml` the rules layer cannot read or refuses to edit.
    #[error("`{path}`: {source}")]
    SopsRules {
        path: PathBuf,
        #[source]
        source: SopsConfigError,
    },

    /// A SOPS file the engine cannot read, decrypt or write.
    #[error("`{path}`: {source}")]
    SopsEngine {
        path: PathBuf,
        #[source]
        source: SopsFileError,
    },

    /// A `.sops.yaml` whose rules, though valid, disagree with what the fleet needs (a host
    /// file no rule matches, a rule that leaves the host out).
    #[error("`{path}`: {message}")]
    SopsConfig { path: PathBuf, message: String },

    /// A SOPS file hostsmith will not change itself (for example key groups it does not
    /// re-key natively); `message` says what to run instead.
    #[error("`{path}`: {message}")]
    SopsFile { path: PathBuf, message: String },

    #[error("configuration `{path}`: {message}")]
    Config { path: PathBuf, message: String },

    #[error("no `.sops.yaml` in `{dir}`: run `hostsmith init` there, or point --fleet (or HOSTSMITH_FLEET) at your fleet")]
    NoSopsConfig { dir: PathBuf },

    #[error(
        "no admin age identity found ({looked}), and GnuPG is only tried for files with PGP keys: run `hostsmith init`, or set SOPS_AGE_KEY_FILE to your age key file"
    )]
    NoIdentity { looked: String },

    #[error("admin age identity in {source_name} is invalid: {why}")]
    BadIdentity { source_name: String, why: String },

    #[error("host `{host}` is not in this fleet (no `hosts/{host}.json`): run `hostsmith vm-fresh {host}` or `hostsmith adopt {host}`")]
    UnknownHost { host: String },

    #[error("{0}")]
    Key(String),

    /// A record in `hosts/` that is not what hostsmith writes: forged, hand-edited or damaged.
    #[error("`{path}` is not a valid host record: {message}; restore it from version control")]
    Record { path: PathBuf, message: String },

    #[error("host `{host}`: {message}")]
    Inconsistent { host: String, message: String },

    #[error("cannot lock `{path}` to serialise runs on this fleet: the file system may not support locks")]
    Locked { path: PathBuf },

    #[error("`{program}` failed: {message}")]
    Program { program: String, message: String },

    #[error("host `{host}` presents {found}, but the record says {expected}")]
    Mismatch { host: String, expected: String, found: String },

    #[error("{count} problem(s) found")]
    Problems { count: usize },

    /// A fleet-wide run in which some hosts failed (each said why; the others were done).
    #[error("{failed} of {total} hosts failed: {hosts}")]
    HostsFailed { failed: usize, total: usize, hosts: String },

    /// A `deploy-image` failure after the Proxmox node was changed: the failure itself, then
    /// what is left on the node and how to remove it. Exits as the failure would.
    #[error("{error}\n{left}")]
    LeftOnNode { error: Box<Error>, left: String },
}

impl Error {
    /// The process exit status for this error.
    #[must_use]
    pub fn code(&self) -> i32 {
        // Every variant is listed: a new one must choose its exit status.
        match self {
            Error::HostName { .. }
            | Error::Usage(_)
            | Error::Yaml { .. }
            | Error::Config { .. }
            | Error::Key(_)
            | Error::UnknownHost { .. }
            | Error::Record { .. }
            | Error::SopsRules { .. }
            | Error::SopsConfig { .. } => EXIT_USAGE,
            Error::Mismatch { .. } => EXIT_MISMATCH,
            Error::LeftOnNode { error, .. } => error.code(),
            // Text that is not UTF-8 is bad input; other read failures are the system's.
            Error::Read { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => EXIT_USAGE,
            Error::SopsEngine { source, .. } if source.is_bad_input() => EXIT_USAGE,
            Error::Read { .. }
            | Error::Write { .. }
            | Error::SopsEngine { .. }
            | Error::SopsFile { .. }
            | Error::NoSopsConfig { .. }
            | Error::NoIdentity { .. }
            | Error::BadIdentity { .. }
            | Error::Inconsistent { .. }
            | Error::Locked { .. }
            | Error::Program { .. }
            | Error::Problems { .. }
            | Error::HostsFailed { .. } => EXIT_FAILURE,
        }
    }
}

fn read_reason(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::InvalidData {
        "it is not UTF-8 text; restore the file from version control".into()
    } else {
        e.to_string()
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
