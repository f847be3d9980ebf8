//! Why `.sops.yaml` could not be read or edited. Every message is lowercase, names the line
//! (1-based, as editors show it) when there is one, says what is wrong and what to do.

/// An error reading or editing `.sops.yaml`. Nothing is returned (so nothing is written) when
/// an edit fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SopsConfigError {
    #[error("line {line}, column {col}: .sops.yaml is not valid yaml: {message}; fix the syntax and run again")]
    NotYaml { line: usize, col: usize, message: String },

    #[error("line {line}: .sops.yaml holds {count} yaml documents but sops reads only the first; remove the others")]
    MultipleDocuments { line: usize, count: usize },

    #[error(
        "line {line}: .sops.yaml must be a mapping with `creation_rules:` but it is {found}; write it as `creation_rules:` followed by `- path_regex: ...` rules"
    )]
    NotAMapping { line: usize, found: String },

    #[error("line {line}: key `{key}` appears twice in one mapping (first at line {first}); sops refuses such a file, so remove one")]
    DuplicateKey { key: String, line: usize, first: usize },

    #[error("line {line}: `creation_rules` must be a list of rules but it is {found}; write each rule as a `- path_regex: ...` item")]
    CreationRulesNotAList { line: usize, found: String },

    #[error(
        "line {line}: anchor `&{name}` is defined more than once (lines {lines}); an alias would silently take the last one, so hostsmith will not edit the file: rename or remove the duplicates"
    )]
    DuplicateAnchor { name: String, line: usize, lines: String },

    #[error("line {line}: cannot edit .sops.yaml safely: {what}; {todo}")]
    Unsupported { line: usize, what: String, todo: String },

    #[error("line {line}: anchor `&{name}` already names {what}, not an age recipient; rename that anchor or pick another host name")]
    AnchorTaken { name: String, line: usize, what: String },

    #[error(
        "line {line}: host `{host}` has recipient {existing} in .sops.yaml, not {new}; keep the existing key, or rotate it deliberately (vm-fresh --rotate)"
    )]
    RecipientMismatch { host: String, line: usize, existing: String, new: String },

    #[error(
        "admins {names} are neither anchors in .sops.yaml nor age1 recipients or PGP fingerprints; define them under `keys:` (e.g. `- &alice age1...`) or fix `sops.admins` in hostsmith.toml"
    )]
    UnknownAdmins { names: String },

    #[error(
        "line {line}: admin anchor `&{name}` names {what}, not an age recipient, a PGP fingerprint or a list of them; fix `sops.admins` in hostsmith.toml"
    )]
    AdminNotRecipient { name: String, line: usize, what: String },

    #[error("no admins: `sops.admins` in hostsmith.toml is empty; list at least one anchor name, age1 recipient or PGP fingerprint")]
    NoAdmins,

    #[error(
        "`{value}` cannot be a host's recipient ({reason}): a host's recipient is X25519 (age1…), the one sops-nix derives from the host's ed25519 key to open its secrets at boot; convert an ssh-ed25519 key with ssh-to-age (or let hostsmith derive it)"
    )]
    InvalidRecipient { value: String, reason: String },

    #[error("admin recipient `{value}` is invalid: {reason}")]
    InvalidAdminRecipient { value: String, reason: String },

    #[error("`{name}` cannot be a host in .sops.yaml: {reason}")]
    InvalidHostName { name: String, reason: String },

    #[error("line {line}: path_regex `{regex}` does not compile: {reason}; fix it (sops uses go re2 syntax)")]
    InvalidRegex { line: usize, regex: String, reason: String },

    #[error("`{pattern}` in sops.exclude_from_shared is not a valid glob: {reason}; fix hostsmith.toml")]
    InvalidGlob { pattern: String, reason: String },

    #[error("host `{host}` has no anchor `&{host}` in .sops.yaml; add the host before rotating its key")]
    UnknownHost { host: String },

    #[error("`{path}` is both host `{host}`'s file and a shared file; rename the host or change `sops.shared` in hostsmith.toml")]
    HostFileIsShared { host: String, path: String },

    #[error(
        "the edit of .sops.yaml did not verify ({message}); nothing was written. this is a hostsmith bug: please report it with the .sops.yaml"
    )]
    Verify { message: String },
}

impl SopsConfigError {
    pub(crate) fn unsupported(line: usize, what: impl Into<String>, todo: impl Into<String>) -> Self {
        Self::Unsupported { line, what: what.into(), todo: todo.into() }
    }
}
