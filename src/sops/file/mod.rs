//! The native SOPS engine: reads, decrypts, changes, re-keys and writes SOPS-encrypted YAML
//! files whose data key is protected by age, byte-format compatible with sops 3.11.
//!
//! hostsmith must not depend on a `sops` binary for its main job, yet every file it writes
//! must decrypt with `sops --decrypt`, and every file sops writes must survive a read,
//! change and write here without losing a value, a comment or a key. The format (value
//! cipher, additional data, MAC, metadata) follows sops' source; see the submodules.
//!
//! Files whose data key needs pgp or a cloud KMS, or several key groups (Shamir), are
//! recognised ([`EncryptedFile::needs_external_sops`]) and left to the `sops` binary.

mod cipher;
mod emit;
mod error;
mod metadata;
mod scalar;
mod select;
mod tree;
mod value;
mod walk;

#[cfg(test)]
mod tests;

use rand::RngCore as _;
use zeroize::Zeroizing;

pub use error::SopsFileError;
pub use value::{Map, MapItem, SeqItem, Value};

use cipher::{DataKey, Stash};
use metadata::{AgeKey, KeyGroup, Metadata};
use select::Rules;
use tree::BuildOptions;

/// Which values a new file encrypts (a creation rule's options). At most one of the six
/// selectors may be set; with none, sops' default applies: values under a key ending in
/// `_unencrypted` stay in clear.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EncryptionOptions {
    pub unencrypted_suffix: Option<String>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_regex: Option<String>,
    pub encrypted_regex: Option<String>,
    pub unencrypted_comment_regex: Option<String>,
    pub encrypted_comment_regex: Option<String>,
    /// The MAC covers only the encrypted values (so clear values can change freely).
    pub mac_only_encrypted: bool,
}

/// A SOPS file as read from disk (still encrypted).
#[derive(Debug, Clone)]
pub struct EncryptedFile {
    documents: Vec<Map>,
    metadata: Metadata,
}

impl EncryptedFile {
    /// Parses an encrypted YAML file (any text: errors, never panics).
    ///
    /// # Errors
    /// Invalid YAML, no `sops` section, invalid metadata, or a document sops cannot handle.
    pub fn parse(text: &str) -> Result<Self, SopsFileError> {
        let parsed = crate::sops::yaml::parse(text)?;
        // sops refuses a mapping with a key twice (and would not read back a file written
        // with one): so does this reader.
        let mut documents = tree::build(text, &parsed, BuildOptions { reject_duplicates: true })?;
        let sops = documents.first_mut().and_then(|d| d.remove_path(&["sops"])).ok_or(SopsFileError::NotSops)?;
        let metadata = Metadata::parse(&sops)?;
        for doc in &mut documents {
            while doc.remove_path(&["sops"]).is_some() {}
        }
        Ok(Self { documents, metadata })
    }

    /// The age recipients of each key group.
    #[must_use]
    pub fn age_recipients(&self) -> Vec<Vec<String>> {
        self.metadata.groups.iter().map(|g| g.age.iter().map(|k| k.recipient.clone()).collect()).collect()
    }

    /// The file's MAC as stored (encrypted with its data key, under a random nonce): two files
    /// with the same MAC are copies of one another, since sops never writes one twice.
    #[must_use]
    pub fn mac(&self) -> &str {
        &self.metadata.mac
    }

    /// Whether this file needs the `sops` binary: it has pgp, kms, gcp_kms, azure_kv or
    /// hc_vault keys, or several key groups (Shamir secret sharing).
    #[must_use]
    pub fn needs_external_sops(&self) -> bool {
        self.metadata.groups.len() > 1 || self.metadata.has_other_keys()
    }

    /// The documents as stored (values still `ENC[…]`, comments still encrypted).
    #[must_use]
    pub fn raw_documents(&self) -> &[Map] {
        &self.documents
    }

    /// Decrypts the data key with any of `identities`, decrypts every value and comment, and
    /// verifies the MAC.
    ///
    /// # Errors
    /// No identity opens the data key, a value does not decrypt or is malformed, or the MAC
    /// does not match (the file was changed outside sops).
    pub fn decrypt(&self, identities: &[age::x25519::Identity]) -> Result<Decrypted, SopsFileError> {
        let data_key = self.data_key(identities)?;
        let mut stash = Stash::default();
        let mut decryptor = walk::Decryptor { key: &data_key, rules: &self.metadata.rules, stash: &mut stash, opaque_comments: 0 };
        let (documents, computed) = decryptor.run(&self.documents)?;
        let opaque_comments = decryptor.opaque_comments;
        let aad = scalar::lastmodified_aad(&self.metadata.lastmodified)
            .ok_or_else(|| SopsFileError::Metadata("`lastmodified` is not an RFC 3339 time".into()))?;
        let stored = match cipher::decrypt(&data_key, &self.metadata.mac, &aad, &mut stash) {
            Ok(cipher::Decrypted::Str(s)) => s,
            Ok(_) => {
                return Err(SopsFileError::MacMismatch("the stored MAC is not a string".into()));
            }
            Err(_) => {
                return Err(SopsFileError::MacMismatch(
                    "the stored MAC cannot be decrypted (the `mac` or `lastmodified` field was changed)".into(),
                ));
            }
        };
        if stored.as_str() != computed {
            return Err(SopsFileError::MacMismatch("the values do not match the MAC stored in the file".into()));
        }
        Ok(Decrypted { documents, data_key, metadata: self.metadata.clone(), stash, rewrap: false, opaque_comments })
    }

    fn data_key(&self, identities: &[age::x25519::Identity]) -> Result<DataKey, SopsFileError> {
        let groups = &self.metadata.groups;
        if groups.len() > 1 {
            return Err(SopsFileError::ShamirUnsupported(groups.len()));
        }
        let Some(group) = groups.first() else {
            return Err(SopsFileError::Metadata("no keys found in the file".into()));
        };
        if group.age.is_empty() {
            let kinds: Vec<&str> = group.other.iter().map(|(k, _)| *k).collect();
            return Err(SopsFileError::ExternalKeysRequired(dedup(kinds).join("/")));
        }
        if identities.is_empty() {
            return Err(SopsFileError::NoIdentities);
        }
        let mut malformed = None;
        let mut not_for_us = false;
        for key in &group.age {
            match metadata::unwrap_with(&key.enc, identities) {
                Ok(bytes) => {
                    if bytes.len() != 32 {
                        return Err(SopsFileError::Metadata(format!(
                            "the data key for {} is {} bytes, expected 32",
                            key.recipient,
                            bytes.len()
                        )));
                    }
                    // Copied straight into wiped memory (no plain array on the stack).
                    let mut data_key = Zeroizing::new([0u8; 32]);
                    data_key.copy_from_slice(&bytes);
                    return Ok(data_key);
                }
                Err(metadata::UnwrapError::NotForUs) => not_for_us = true,
                Err(metadata::UnwrapError::Malformed(reason)) => {
                    malformed.get_or_insert(SopsFileError::AgeStanza { recipient: key.recipient.clone(), reason });
                }
            }
        }
        match malformed {
            Some(e) if !not_for_us => Err(e),
            _ => Err(SopsFileError::NoMatchingIdentity { recipients: group.age.iter().map(|k| k.recipient.clone()).collect() }),
        }
    }
}

fn dedup(mut v: Vec<&str>) -> Vec<&str> {
    v.dedup();
    v
}

/// The non-age key types of a file, for messages (`pgp/kms`).
fn other_kinds(metadata: &Metadata) -> String {
    let kinds: Vec<&str> = metadata.groups.iter().flat_map(|g| g.other.iter().map(|(k, _)| *k)).collect();
    dedup(kinds).join("/")
}

/// A decrypted file: its plaintext documents, its data key (wiped on drop) and metadata.
pub struct Decrypted {
    documents: Vec<Map>,
    data_key: DataKey,
    metadata: Metadata,
    stash: Stash,
    /// The data key must be encrypted again for every recipient (new key or new recipients).
    rewrap: bool,
    opaque_comments: usize,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted").field("documents", &self.documents.len()).finish_non_exhaustive()
    }
}

impl Decrypted {
    /// The first YAML document.
    #[must_use]
    pub fn document(&self) -> &Map {
        &self.documents[0]
    }

    pub fn document_mut(&mut self) -> &mut Map {
        &mut self.documents[0]
    }

    /// Every YAML document of the file (sops supports several).
    #[must_use]
    pub fn documents(&self) -> &[Map] {
        &self.documents
    }

    pub fn documents_mut(&mut self) -> &mut [Map] {
        &mut self.documents
    }

    /// The age recipients of each key group.
    #[must_use]
    pub fn age_recipients(&self) -> Vec<Vec<String>> {
        self.metadata.groups.iter().map(|g| g.age.iter().map(|k| k.recipient.clone()).collect()).collect()
    }

    /// Encrypted comments that decrypted with no path and are kept as written (sops warns
    /// about these as "possibly unencrypted comments").
    #[must_use]
    pub fn undecryptable_comments(&self) -> usize {
        self.opaque_comments
    }

    /// Replaces the key groups with age recipients (one group: Shamir is left to sops) and
    /// encrypts the same data key for each of them on the next [`Decrypted::encrypt`].
    ///
    /// # Errors
    /// No recipient, an invalid recipient, several groups, or a file whose groups also hold
    /// pgp/KMS keys (replacing them would drop those keys: use sops).
    pub fn set_age_recipients(&mut self, groups: Vec<Vec<String>>) -> Result<(), SopsFileError> {
        if self.metadata.has_other_keys() {
            return Err(SopsFileError::ExternalKeysRequired(other_kinds(&self.metadata)));
        }
        self.metadata.groups = age_groups(&groups)?;
        self.metadata.shamir_threshold = 0;
        self.rewrap = true;
        Ok(())
    }

    /// Uses a fresh random data key from now on: the next [`Decrypted::encrypt`] re-encrypts
    /// every value and comment and the data key for every recipient.
    pub fn rotate_data_key(&mut self) {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        self.data_key = key;
        self.stash.clear();
        self.rewrap = true;
    }

    /// Serialises the file: values encrypted with the data key (an unchanged value keeps its
    /// IV, so its ciphertext is byte-identical, as with sops), a new MAC, `lastmodified` now.
    ///
    /// # Errors
    /// The data key must be re-encrypted for a non-age key, a top-level `sops` key in a
    /// document, several key groups, or a value that cannot be stored.
    pub fn encrypt(&self) -> Result<String, SopsFileError> {
        let mut metadata = self.metadata.clone();
        if metadata.groups.len() > 1 {
            return Err(SopsFileError::ShamirUnsupported(metadata.groups.len()));
        }
        if self.rewrap {
            if metadata.has_other_keys() {
                return Err(SopsFileError::ExternalKeysRequired(other_kinds(&metadata)));
            }
            for group in &mut metadata.groups {
                for key in &mut group.age {
                    key.enc = metadata::wrap_for(&self.data_key, &key.recipient)?;
                }
            }
        }
        let encryptor = walk::Encryptor { key: &self.data_key, rules: &metadata.rules, stash: &self.stash };
        let (mut documents, mac) = encryptor.run(&self.documents)?;
        metadata.lastmodified = now_rfc3339();
        metadata.mac =
            cipher::encrypt(&self.data_key, cipher::Plain { bytes: mac.as_bytes(), kind: "str" }, &metadata.lastmodified, &self.stash);
        metadata.version = Metadata::version_to_write(&metadata.version);
        let sops = metadata.to_map();
        for doc in &mut documents {
            doc.push("sops", Value::Map(sops.clone()));
        }
        Ok(emit::documents(&documents))
    }
}

/// Validates recipient groups for a single-group file.
fn age_groups(groups: &[Vec<String>]) -> Result<Vec<KeyGroup>, SopsFileError> {
    match groups {
        [] => Err(SopsFileError::NoRecipients),
        [group] => {
            if group.is_empty() {
                return Err(SopsFileError::NoRecipients);
            }
            let mut age = Vec::<AgeKey>::new();
            for r in group {
                let r = r.trim();
                r.parse::<age::x25519::Recipient>().map_err(|_| SopsFileError::InvalidRecipient(r.to_string()))?;
                if !age.iter().any(|k| k.recipient == r) {
                    age.push(AgeKey { recipient: r.to_string(), enc: String::new() });
                }
            }
            Ok(vec![KeyGroup { age, other: Vec::new() }])
        }
        many => Err(SopsFileError::ShamirUnsupported(many.len())),
    }
}

/// `lastmodified` as sops writes it: RFC 3339, UTC, whole seconds.
fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Encrypts a new file for the given age key groups (one group; Shamir is left to sops).
///
/// # Errors
/// Invalid options or recipients, a top-level `sops` key, or a value that cannot be stored.
pub fn encrypt_new(doc: &Map, age_groups: &[Vec<String>], options: &EncryptionOptions) -> Result<String, SopsFileError> {
    encrypt_new_documents(std::slice::from_ref(doc), age_groups, options)
}

/// [`encrypt_new`] for several YAML documents in one file.
///
/// # Errors
/// As [`encrypt_new`]; also when `docs` is empty.
pub fn encrypt_new_documents(docs: &[Map], age_groups: &[Vec<String>], options: &EncryptionOptions) -> Result<String, SopsFileError> {
    if docs.is_empty() {
        return Err(SopsFileError::Unsupported("a SOPS file needs at least one document".into()));
    }
    let rules = Rules::from_options(options)?;
    let groups = self::age_groups(age_groups)?;
    let mut data_key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(data_key.as_mut());
    let metadata = Metadata {
        groups,
        shamir_threshold: 0,
        lastmodified: String::new(),
        mac: String::new(),
        rules,
        version: metadata::SOPS_VERSION.to_string(),
    };
    let file = Decrypted { documents: docs.to_vec(), data_key, metadata, stash: Stash::default(), rewrap: true, opaque_comments: 0 };
    file.encrypt()
}

/// Parses plaintext YAML the way sops reads a file to encrypt (one map per document,
/// comments kept; duplicate keys refused).
///
/// # Errors
/// Invalid YAML, a document that is not a mapping, a non-string key, a duplicate key.
pub fn parse_plain(text: &str) -> Result<Vec<Map>, SopsFileError> {
    let parsed = crate::sops::yaml::parse(text)?;
    tree::build(text, &parsed, BuildOptions { reject_duplicates: true })
}

/// Writes documents as plaintext YAML in sops' layout (what `sops --decrypt` shows).
#[must_use]
pub fn emit_plain(docs: &[Map]) -> String {
    emit::documents(docs)
}
