//! What can go wrong reading or writing a SOPS file.
//!
//! Messages name the place (a key path, a metadata field, a recipient) and never a value, a
//! comment, a data key or an identity: they end up in terminals and logs.

/// Why a SOPS file cannot be read, decrypted or written.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SopsFileError {
    #[error("the file is not valid YAML: {0}")]
    Yaml(#[from] crate::sops::yaml::YamlError),

    #[error("the file has no `sops` metadata section, so it is not a SOPS-encrypted file; encrypt it first")]
    NotSops,

    #[error("invalid sops metadata: {0}")]
    Metadata(String),

    #[error("unsupported document: {0}")]
    Unsupported(String),

    #[error("the encrypted value at `{path}` is malformed ({reason}); the file is damaged")]
    MalformedValue { path: String, reason: String },

    #[error("the value at `{path}` does not decrypt with the file's data key: the file was modified outside sops or is damaged")]
    ValueAuthentication { path: String },

    #[error("MAC mismatch: {0}; the file was modified outside sops/hostsmith or is damaged, so it is not trusted")]
    MacMismatch(String),

    #[error("none of the age identities given, nor a GnuPG secret key, can decrypt the data key; the file's keys are: {}", .recipients.join(", "))]
    NoMatchingIdentity { recipients: Vec<String> },

    #[error(
        "no age identity was given and the file has no PGP key; provide one (SOPS_AGE_KEY, SOPS_AGE_KEY_FILE or ~/.config/sops/age/keys.txt)"
    )]
    NoIdentities,

    #[error(
        "the data key needs {needed} of the file's {groups} key groups, but only {opened} opened; locked: {}",
        .locked.join("; ")
    )]
    NotEnoughGroups { needed: usize, opened: usize, groups: usize, locked: Vec<String> },

    #[error(
        "`shamir_threshold` {threshold} does not fit {groups} key groups: with several groups it must be between 2 and their number (at most 255 groups)"
    )]
    Threshold { threshold: u64, groups: usize },

    #[error("invalid PGP fingerprint `{0}`: expected 16 to 64 hex digits")]
    InvalidPgpFingerprint(String),

    #[error("GnuPG is needed for the file's PGP keys: {0}")]
    PgpUnavailable(String),

    #[error(
        "the PGP public key {0} is not in the GnuPG keyring: import it with `gpg --import KEY.asc` or `gpg --recv-keys {0}`, then run again"
    )]
    PgpKeyMissing(String),

    #[error("GnuPG could not encrypt the data key for PGP key {fingerprint}: {reason}")]
    PgpEncrypt { fingerprint: String, reason: String },

    #[error("GnuPG could not decrypt the data key for PGP key {fingerprint}: {reason}")]
    PgpDecrypt { fingerprint: String, reason: String },

    #[error("the file's data key is protected by {0} keys, which hostsmith does not handle natively; use the sops binary for this file")]
    ExternalKeysRequired(String),

    #[error("the age-encrypted data key for recipient {recipient} cannot be read: {reason}")]
    AgeStanza { recipient: String, reason: String },

    #[error("invalid age recipient `{recipient}`: {reason}")]
    InvalidRecipient { recipient: String, reason: String },

    #[error("{0}")]
    MissingPlugin(String),

    #[error("{0}")]
    PostQuantum(String),

    #[error("no age recipient given; a SOPS file needs at least one key")]
    NoRecipients,

    #[error("age encryption failed: {0}")]
    Age(String),

    #[error("invalid encryption options: {0}")]
    Options(String),

    #[error("cannot set `{path}`: {reason}")]
    PathConflict { path: String, reason: String },

    #[error("the value at `{path}` cannot be stored: {reason}")]
    InvalidValue { path: String, reason: String },
}

impl SopsFileError {
    /// Whether the file itself is at fault (malformed, tampered, not SOPS), as opposed to the
    /// environment (no identity that opens it, a feature only real sops has).
    #[must_use]
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            SopsFileError::Yaml(_)
                | SopsFileError::NotSops
                | SopsFileError::Metadata(_)
                | SopsFileError::Unsupported(_)
                | SopsFileError::MalformedValue { .. }
                | SopsFileError::ValueAuthentication { .. }
                | SopsFileError::MacMismatch(_)
                | SopsFileError::AgeStanza { .. }
                | SopsFileError::InvalidRecipient { .. }
                | SopsFileError::Threshold { .. }
                | SopsFileError::InvalidPgpFingerprint(_)
        )
    }

    /// A failure to wrap the data key for `recipient`.
    pub(crate) fn wrap(recipient: &str, e: crate::recipient::WrapError) -> Self {
        use crate::recipient::WrapError;
        match e {
            WrapError::Invalid(reason) => SopsFileError::InvalidRecipient { recipient: recipient.to_string(), reason },
            e @ WrapError::MissingPlugin { .. } => SopsFileError::MissingPlugin(e.to_string()),
            WrapError::PostQuantum(m) => SopsFileError::PostQuantum(m),
            WrapError::Failed(m) => SopsFileError::Age(m),
        }
    }
}
