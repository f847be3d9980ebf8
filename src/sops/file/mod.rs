//! The native SOPS engine: reads, decrypts, changes, re-keys and writes SOPS-encrypted YAML
//! files whose data key is protected by age and PGP keys, in one key group or several
//! (Shamir), byte-format compatible with sops 3.11.
//!
//! hostsmith must not depend on a `sops` binary for its main job, yet every file it writes
//! must decrypt with `sops --decrypt`, and every file sops writes must survive a read,
//! change and write here without losing a value, a comment or a key. The format (value
//! cipher, additional data, MAC, metadata) follows sops' source; see the submodules.
//!
//! age keys of every kind sops takes ([`crate::recipient`]: X25519 and SSH natively, plugin
//! recipients through `age-plugin-<name>` as the age crate runs it) are wrapped here; they are
//! opened by an [`AgeIdentities`] the caller holds (the admin's keys), PGP keys through a
//! [`Pgp`] service (GnuPG, run by the caller). Files whose data key needs a cloud KMS or Vault
//! are recognised ([`EncryptedFile::needs_external_sops`]) and left to the `sops` binary.

mod cipher;
mod emit;
mod error;
mod keys;
mod metadata;
mod scalar;
mod select;
mod shamir;
mod splice;
mod tree;
mod value;
mod walk;

#[cfg(test)]
mod tests;

use rand::RngCore as _;
use zeroize::Zeroizing;

pub use error::SopsFileError;
pub use keys::{AgeIdentities, KeyGroupSpec, KeyGroups, NoPgp, Pass, Pgp, is_pgp_fingerprint, normalize_fingerprint};
pub use metadata::unwrap_with as open_armored;
pub use value::{Map, MapItem, SeqItem, Value};

use cipher::{DataKey, Stash};
use metadata::{KeyGroup, Metadata};
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
    /// Where a new recipient would be spliced into the text as read, when that is safe.
    layout: Option<splice::Layout>,
}

impl EncryptedFile {
    /// Parses an encrypted YAML file (any text: errors, never panics).
    ///
    /// # Errors
    /// Invalid YAML, no `sops` section, invalid metadata, or a document sops cannot handle.
    pub fn parse(text: &str) -> Result<Self, SopsFileError> {
        let (parsed, block) = crate::sops::yaml::parse_telling(text)?;
        // sops refuses a mapping with a key twice (and would not read back a file written
        // with one): so does this reader.
        let mut documents = tree::build(text, &parsed, BuildOptions { reject_duplicates: true })?;
        let layout = splice::layout(text, &parsed, block);
        if text.len() > 1 << 20 {
            // (A shared file of a large fleet: its positioned tree is freed on the other core.)
            crate::parallel::drop_aside(parsed);
        }
        let sops = documents.first_mut().and_then(|d| d.remove_path(&["sops"])).ok_or(SopsFileError::NotSops)?;
        let metadata = Metadata::parse(&sops)?;
        for doc in &mut documents {
            while doc.remove_path(&["sops"]).is_some() {}
        }
        Ok(Self { documents, metadata, layout })
    }

    /// The age recipients of each key group.
    #[must_use]
    pub fn age_recipients(&self) -> Vec<Vec<String>> {
        self.metadata.groups.iter().map(|g| g.age.iter().map(|k| k.recipient.clone()).collect()).collect()
    }

    /// The age and PGP keys of each key group, and the Shamir threshold as stored.
    #[must_use]
    pub fn key_groups(&self) -> KeyGroups {
        keys::spec_of(&self.metadata)
    }

    /// Whether the file's key groups are those `spec` asks for ([`KeyGroups::same_as`]).
    #[must_use]
    pub fn has_key_groups(&self, spec: &KeyGroups) -> bool {
        keys::metadata_has(&self.metadata, spec)
    }

    /// The file's MAC as stored (encrypted with its data key, under a random nonce): two files
    /// with the same MAC are copies of one another, since sops never writes one twice.
    #[must_use]
    pub fn mac(&self) -> &str {
        &self.metadata.mac
    }

    /// Whether this file needs the `sops` binary: it has kms, gcp_kms, azure_kv or hc_vault
    /// keys.
    #[must_use]
    pub fn needs_external_sops(&self) -> bool {
        self.metadata.has_other_keys()
    }

    /// The documents as stored (values still `ENC[…]`, comments still encrypted).
    #[must_use]
    pub fn raw_documents(&self) -> &[Map] {
        &self.documents
    }

    /// [`EncryptedFile::decrypt_with`] without PGP (age identities only).
    ///
    /// # Errors
    /// As [`EncryptedFile::decrypt_with`].
    pub fn decrypt(&self, identities: &[age::x25519::Identity]) -> Result<Decrypted, SopsFileError> {
        self.decrypt_with(identities, &NoPgp)
    }

    /// Opens the data key (age `identities` first, then `pgp` for the groups they did not
    /// open; with several groups, enough of them for the threshold), decrypts every value and
    /// comment, and verifies the MAC.
    ///
    /// # Errors
    /// Too few groups open, a value does not decrypt or is malformed, or the MAC does not
    /// match (the file was changed outside sops).
    pub fn decrypt_with(&self, identities: &(impl AgeIdentities + ?Sized), pgp: &dyn Pgp) -> Result<Decrypted, SopsFileError> {
        let data_key = keys::open(&self.metadata, identities, pgp)?;
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
        Ok(Decrypted { documents, data_key, metadata: self.metadata.clone(), stash, rewrap: false, touched: false, opaque_comments })
    }
}

fn dedup(mut v: Vec<&str>) -> Vec<&str> {
    v.dedup();
    v
}

/// The key types hostsmith does not handle of a file, for messages (`kms/gcp_kms`).
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
    /// The data key must be wrapped again for every key (a new data key, or groups split again).
    rewrap: bool,
    /// The documents were handed out to be changed.
    touched: bool,
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
        self.touched = true;
        &mut self.documents[0]
    }

    /// Every YAML document of the file (sops supports several).
    #[must_use]
    pub fn documents(&self) -> &[Map] {
        &self.documents
    }

    pub fn documents_mut(&mut self) -> &mut [Map] {
        self.touched = true;
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

    /// The age and PGP keys of each key group, and the Shamir threshold.
    #[must_use]
    pub fn key_groups(&self) -> KeyGroups {
        keys::spec_of(&self.metadata)
    }

    /// Replaces the key groups. With one group before and after and the data key unchanged,
    /// the keys that stay keep their `enc` as it is (no GnuPG call, no X25519 for them) and
    /// only new keys are wrapped on the next encrypt; any other change of groups splits the
    /// data key again and wraps it for every key. The same groups again change nothing.
    ///
    /// # Errors
    /// No key, an invalid recipient or fingerprint, a threshold that does not fit, or a file
    /// whose groups also hold KMS/Vault keys (replacing them would drop those keys: use sops).
    pub fn set_key_groups(&mut self, spec: &KeyGroups) -> Result<(), SopsFileError> {
        if self.metadata.has_other_keys() {
            return Err(SopsFileError::ExternalKeysRequired(other_kinds(&self.metadata)));
        }
        let valid = self.metadata.groups.iter().flat_map(|g| g.age.iter().map(|k| k.recipient.as_str())).collect();
        let (mut groups, threshold) = keys::groups_for(spec, &valid)?;
        if keys::metadata_has(&self.metadata, spec) {
            return Ok(());
        }
        if let ([new], [old]) = (groups.as_mut_slice(), self.metadata.groups.as_mut_slice()) {
            keys::carry_over(new, old);
        } else {
            self.rewrap = true;
        }
        self.metadata.groups = groups;
        self.metadata.shamir_threshold = threshold;
        Ok(())
    }

    /// [`Decrypted::set_key_groups`] with age recipients only.
    ///
    /// # Errors
    /// As [`Decrypted::set_key_groups`]; also a file with PGP keys (they would be dropped).
    pub fn set_age_recipients(&mut self, groups: Vec<Vec<String>>) -> Result<(), SopsFileError> {
        if self.metadata.groups.iter().any(|g| !g.pgp.is_empty()) {
            return Err(SopsFileError::Unsupported("the file has PGP keys; give its key groups with their PGP keys".into()));
        }
        self.set_key_groups(&KeyGroups::age_only(groups))
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

    /// [`Decrypted::encrypt_with`] without PGP: fine while no PGP key needs wrapping.
    ///
    /// # Errors
    /// As [`Decrypted::encrypt_with`].
    pub fn encrypt(&self) -> Result<String, SopsFileError> {
        self.encrypt_with(&NoPgp)
    }

    /// Serialises the file: values encrypted with the data key (an unchanged value keeps its
    /// IV, so its ciphertext is byte-identical, as with sops), the data key (or its Shamir
    /// parts) wrapped for the keys that need it (PGP keys through `pgp`), a new MAC,
    /// `lastmodified` now.
    ///
    /// # Errors
    /// The data key must be re-encrypted for a KMS/Vault key, a PGP key cannot be used, a
    /// top-level `sops` key in a document, or a value that cannot be stored.
    pub fn encrypt_with(&self, pgp: &dyn Pgp) -> Result<String, SopsFileError> {
        let mut metadata = self.metadata.clone();
        keys::wrap(&mut metadata, &self.data_key, self.rewrap, pgp)?;
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

impl Decrypted {
    /// [`Decrypted::encrypt_with`] for this file as read from `text` into `file`: when it only
    /// gained age recipients (its values, data key and other keys as read), the new stanzas,
    /// `lastmodified` and MAC are spliced into `text` ([`splice`]); otherwise, or when the text
    /// is not laid out for that, the whole file is written anew.
    ///
    /// # Errors
    /// As [`Decrypted::encrypt_with`].
    pub fn encrypt_in_place(&self, file: &EncryptedFile, text: &str, pgp: &dyn Pgp) -> Result<String, SopsFileError> {
        match self.spliced(file, text)? {
            Some(out) => Ok(out),
            None => self.encrypt_with(pgp),
        }
    }

    fn spliced(&self, file: &EncryptedFile, text: &str) -> Result<Option<String>, SopsFileError> {
        let (old, new) = (&file.metadata, &self.metadata);
        let Some(layout) = &file.layout else { return Ok(None) };
        // (A MAC is never written twice: the same one means `file` is what this was opened from.)
        let same_file = old.mac == new.mac && old.lastmodified == new.lastmodified;
        let ([was], [now]) = (old.groups.as_slice(), new.groups.as_slice()) else { return Ok(None) };
        let n = was.age.len();
        let only_added = now.age.len() > n && now.age[..n] == was.age[..] && now.pgp == was.pgp;
        let unchanged =
            !self.rewrap && !self.touched && was.other.is_empty() && now.other.is_empty() && old.shamir_threshold == new.shamir_threshold;
        if !(same_file && only_added && unchanged && Metadata::version_to_write(&new.version) == new.version) {
            return Ok(None);
        }
        let mut added = KeyGroup { age: now.age[n..].to_vec(), ..KeyGroup::default() };
        keys::wrap_group(&mut added, self.data_key.as_ref(), false, &NoPgp)?;
        let encryptor = walk::Encryptor { key: &self.data_key, rules: &new.rules, stash: &self.stash };
        let (_, mac) = encryptor.run(&self.documents)?;
        let lastmodified = now_rfc3339();
        let mac = cipher::encrypt(&self.data_key, cipher::Plain { bytes: mac.as_bytes(), kind: "str" }, &lastmodified, &self.stash);
        let Value::Seq(items) = metadata::age_list(&added.age) else { return Ok(None) };
        let out = splice::apply(
            text,
            layout,
            &emit::seq_items(&items, layout.dash()),
            &emit::inline_scalar(&Value::Str(lastmodified.clone())),
            &emit::inline_scalar(&Value::Str(mac.clone())),
        );
        #[cfg(debug_assertions)]
        {
            let back = EncryptedFile::parse(&out).expect("a spliced file parses");
            assert!(back.documents == file.documents, "a splice changed the values");
            let mut age = was.age.clone();
            age.extend(added.age);
            let m = &back.metadata;
            assert!(m.groups.len() == 1 && m.groups[0].age == age && m.groups[0].pgp == was.pgp, "a splice changed the keys");
            assert!(m.lastmodified == lastmodified && m.mac == mac && m.version == new.version, "a splice misplaced a field");
            assert!(back.layout.is_some(), "a spliced file can be spliced again");
        }
        Ok(Some(out))
    }
}

/// `lastmodified` (and a PGP key's `created_at`) as sops writes it: RFC 3339, UTC, whole
/// seconds.
fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Encrypts a new file for groups of age recipients ([`encrypt_new_for`] without PGP).
///
/// # Errors
/// As [`encrypt_new_for`].
pub fn encrypt_new(doc: &Map, age_groups: &[Vec<String>], options: &EncryptionOptions) -> Result<String, SopsFileError> {
    encrypt_new_for(doc, &KeyGroups::age_only(age_groups.to_vec()), options, &NoPgp)
}

/// [`encrypt_new`] for several YAML documents in one file.
///
/// # Errors
/// As [`encrypt_new`]; also when `docs` is empty.
pub fn encrypt_new_documents(docs: &[Map], age_groups: &[Vec<String>], options: &EncryptionOptions) -> Result<String, SopsFileError> {
    encrypt_documents_for(docs, &KeyGroups::age_only(age_groups.to_vec()), options, &NoPgp)
}

/// Encrypts a new file for the given key groups (several: the data key is split with
/// Shamir's scheme); PGP keys are wrapped through `pgp`.
///
/// # Errors
/// Invalid options, recipients, fingerprints or threshold, a PGP key that cannot be used, a
/// top-level `sops` key, or a value that cannot be stored.
pub fn encrypt_new_for(doc: &Map, keys: &KeyGroups, options: &EncryptionOptions, pgp: &dyn Pgp) -> Result<String, SopsFileError> {
    encrypt_documents_for(std::slice::from_ref(doc), keys, options, pgp)
}

/// [`encrypt_new_for`] for several YAML documents in one file.
///
/// # Errors
/// As [`encrypt_new_for`]; also when `docs` is empty.
pub fn encrypt_documents_for(docs: &[Map], keys: &KeyGroups, options: &EncryptionOptions, pgp: &dyn Pgp) -> Result<String, SopsFileError> {
    if docs.is_empty() {
        return Err(SopsFileError::Unsupported("a SOPS file needs at least one document".into()));
    }
    let rules = Rules::from_options(options)?;
    let (groups, shamir_threshold) = keys::groups_for(keys, &std::collections::HashSet::new())?;
    let mut data_key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(data_key.as_mut());
    let metadata = Metadata {
        groups,
        shamir_threshold,
        lastmodified: String::new(),
        mac: String::new(),
        rules,
        version: metadata::SOPS_VERSION.to_string(),
    };
    let file = Decrypted {
        documents: docs.to_vec(),
        data_key,
        metadata,
        stash: Stash::default(),
        rewrap: true,
        touched: false,
        opaque_comments: 0,
    };
    file.encrypt_with(pgp)
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
