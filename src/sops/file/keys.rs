//! Who a file is encrypted for, and getting its data key in and out of the key groups.
//!
//! One key group: every key holds the whole data key. Several: the data key is split with
//! Shamir's scheme (see [`super::shamir`]) into one part per group, any `threshold` of which
//! give it back, and every key of a group holds that group's part — as sops'
//! `UpdateMasterKeysWithKeyServices` and `GetDataKeyWithKeyServices` do. age keys are opened
//! and sealed here; PGP keys through a [`Pgp`] service (GnuPG, outside this module, so the
//! engine runs no program itself).

use std::collections::{HashMap, HashSet};

use zeroize::Zeroizing;

use super::cipher::DataKey;
use super::metadata::{self, AgeKey, KeyGroup, Metadata, PgpKey};
use super::{SopsFileError, shamir};
use crate::recipient::normalized;

/// The keys of one key group, as a creation rule lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyGroupSpec {
    /// X25519 recipients, `age1…`.
    pub age: Vec<String>,
    /// PGP fingerprints (hex; spaces are ignored, as sops ignores them).
    pub pgp: Vec<String>,
}

/// What a file should be encrypted for: its key groups and, with several, how many of them
/// open it (`0` means all of them, as in sops).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyGroups {
    pub groups: Vec<KeyGroupSpec>,
    pub threshold: u64,
}

impl KeyGroups {
    /// Groups of age recipients only, no threshold.
    #[must_use]
    pub fn age_only(groups: Vec<Vec<String>>) -> Self {
        Self { groups: groups.into_iter().map(|age| KeyGroupSpec { age, pgp: Vec::new() }).collect(), threshold: 0 }
    }

    /// The threshold sops uses: with several groups, `0` means every group.
    #[must_use]
    pub fn effective_threshold(&self) -> u64 {
        if self.groups.len() > 1 && self.threshold == 0 { self.groups.len() as u64 } else { self.threshold }
    }

    /// Whether both ask for the same keys in the same groups (order within a group, case and
    /// spaces in fingerprints, an SSH key's comment do not matter) and, with several groups, the same threshold.
    #[must_use]
    pub fn same_as(&self, other: &KeyGroups) -> bool {
        same_groups(self.norm(), self.compared_threshold(), other)
    }

    /// Each group as sets (sorted, each once): a sorted vector of 10,000 borrowed recipients
    /// is built in a fraction of the time of a tree set.
    fn norm(&self) -> Norm<'_> {
        self.groups.iter().map(|g| norm_group(g.age.iter().map(String::as_str), g.pgp.iter().map(String::as_str))).collect()
    }

    fn compared_threshold(&self) -> u64 {
        compared_threshold(self.groups.len(), self.threshold)
    }

    /// Every age recipient and PGP fingerprint (`pgp:FP`), all groups together, in order,
    /// each once.
    #[must_use]
    pub fn key_names(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.groups
            .iter()
            .flat_map(|g| {
                g.age.iter().map(|r| normalized(r).into_owned()).chain(g.pgp.iter().map(|f| format!("pgp:{}", normalize_fingerprint(f))))
            })
            .filter(|k| seen.insert(k.clone()))
            .collect()
    }
}

/// Key groups as compared by [`KeyGroups::same_as`].
type Norm<'a> = Vec<(Vec<std::borrow::Cow<'a, str>>, Vec<String>)>;

fn norm_group<'a>(age: impl Iterator<Item = &'a str>, pgp: impl Iterator<Item = &'a str>) -> (Vec<std::borrow::Cow<'a, str>>, Vec<String>) {
    fn set<T: Ord>(mut v: Vec<T>) -> Vec<T> {
        v.sort_unstable();
        v.dedup();
        v
    }
    (set(age.map(normalized).collect()), set(pgp.map(normalize_fingerprint).collect()))
}

/// The threshold as compared: none for one group, 0 meaning every group for several.
fn compared_threshold(groups: usize, threshold: u64) -> u64 {
    match (groups, threshold) {
        (0 | 1, _) => 0,
        (n, 0) => n as u64,
        (_, t) => t,
    }
}

fn same_groups(mine: Norm<'_>, threshold: u64, other: &KeyGroups) -> bool {
    mine == other.norm() && threshold == other.compared_threshold()
}

/// Whether a file's key groups are the ones `spec` asks for ([`KeyGroups::same_as`]), read
/// in place: a shared file's 10,000 recipients are not copied only to be compared.
#[must_use]
pub(crate) fn metadata_has(metadata: &Metadata, spec: &KeyGroups) -> bool {
    let mine: Norm<'_> = metadata
        .groups
        .iter()
        .map(|g| norm_group(g.age.iter().map(|k| k.recipient.as_str()), g.pgp.iter().map(|k| k.fp.as_str())))
        .collect();
    let threshold = compared_threshold(metadata.groups.len(), u64::try_from(metadata.shamir_threshold).unwrap_or(0));
    same_groups(mine, threshold, spec)
}

/// A fingerprint as compared: no spaces, upper case.
#[must_use]
pub fn normalize_fingerprint(fp: &str) -> String {
    fp.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase()
}

/// Whether `v` is a PGP key as sops takes it in a `pgp:` list: a long key ID (16 hex
/// digits), a v4 fingerprint (40) or a v5/v6 one (64), spaces allowed. Nothing else reaches
/// GnuPG, where other text would be read as a user ID to search for.
#[must_use]
pub fn is_pgp_fingerprint(v: &str) -> bool {
    let hex = normalize_fingerprint(v);
    matches!(hex.len(), 16 | 40 | 64) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Encrypts and decrypts data keys for PGP keys (GnuPG in hostsmith).
pub trait Pgp: Sync {
    /// The secret encrypted for `fingerprint`, as an armored PGP message.
    ///
    /// # Errors
    /// The key is not available, or encryption failed.
    fn encrypt(&self, fingerprint: &str, secret: &[u8]) -> Result<String, SopsFileError>;

    /// The secret in the armored message `enc`, which was encrypted for `fingerprint`.
    ///
    /// # Errors
    /// No secret key opens it (or no PGP tool is available).
    fn decrypt(&self, fingerprint: &str, enc: &str) -> Result<Zeroizing<Vec<u8>>, SopsFileError>;
}

/// Which identities to try: the quiet ones first (keys in memory), then those that may ask
/// the user something (a plugin, a passphrase), so a file that opens without a prompt never
/// shows one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Quiet,
    Interactive,
}

/// Opens age-encrypted data keys: the admin's identities, however they are held (keys in
/// memory, SSH keys, plugins, passphrase-protected files).
pub trait AgeIdentities: Sync {
    /// The data key (or Shamir part) in `enc`, the armored age file sops stored for
    /// `recipient`; `Ok(None)` when no identity of this pass is for it.
    ///
    /// # Errors
    /// The stanza is damaged, or an identity meant for it failed (a plugin error, a wrong
    /// passphrase), with the reason.
    fn open(&self, recipient: &str, enc: &str, pass: Pass) -> Result<Option<Zeroizing<Vec<u8>>>, String>;

    /// Whether there is no identity at all.
    fn is_empty(&self) -> bool;
}

impl AgeIdentities for [age::x25519::Identity] {
    fn open(&self, _: &str, enc: &str, pass: Pass) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        if pass == Pass::Interactive {
            return Ok(None);
        }
        let ids: Vec<&dyn age::Identity> = self.iter().map(|i| i as &dyn age::Identity).collect();
        metadata::unwrap_with(enc, &ids)
    }

    fn is_empty(&self) -> bool {
        <[_]>::is_empty(self)
    }
}

impl<const N: usize> AgeIdentities for [age::x25519::Identity; N] {
    fn open(&self, recipient: &str, enc: &str, pass: Pass) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        self.as_slice().open(recipient, enc, pass)
    }

    fn is_empty(&self) -> bool {
        N == 0
    }
}

impl AgeIdentities for Vec<age::x25519::Identity> {
    fn open(&self, recipient: &str, enc: &str, pass: Pass) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        self.as_slice().open(recipient, enc, pass)
    }

    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

/// No PGP at all: a file that needs it says so.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPgp;

impl Pgp for NoPgp {
    fn encrypt(&self, _: &str, _: &[u8]) -> Result<String, SopsFileError> {
        Err(SopsFileError::PgpUnavailable("this command does not use GnuPG".into()))
    }

    fn decrypt(&self, _: &str, _: &str) -> Result<Zeroizing<Vec<u8>>, SopsFileError> {
        Err(SopsFileError::PgpUnavailable("this command does not use GnuPG".into()))
    }
}

fn checked_fingerprint(fp: &str) -> Result<String, SopsFileError> {
    if !is_pgp_fingerprint(fp) {
        return Err(SopsFileError::InvalidPgpFingerprint(fp.to_string()));
    }
    Ok(fp.chars().filter(|c| !c.is_whitespace()).collect())
}

/// The metadata groups for `spec` (no `enc` yet), validated; and the threshold to store.
/// Recipients in `valid` (a file's own, validated when it was read) are not parsed again: a
/// shared file holds one per host.
pub(crate) fn groups_for(spec: &KeyGroups, valid: &HashSet<&str>) -> Result<(Vec<KeyGroup>, i64), SopsFileError> {
    if spec.groups.is_empty() {
        return Err(SopsFileError::NoRecipients);
    }
    let n = spec.groups.len();
    let threshold = spec.effective_threshold();
    if n > 1 && !(2..=n as u64).contains(&threshold) {
        return Err(SopsFileError::Threshold { threshold, groups: n });
    }
    if n > 255 {
        return Err(SopsFileError::Threshold { threshold, groups: n });
    }
    let mut out = Vec::new();
    for g in &spec.groups {
        if g.age.is_empty() && g.pgp.is_empty() {
            return Err(SopsFileError::NoRecipients);
        }
        let mut group = KeyGroup::default();
        let mut seen = HashSet::new();
        for r in &g.age {
            let r = r.trim();
            if !valid.contains(r) {
                crate::recipient::kind_of(r).map_err(|reason| SopsFileError::InvalidRecipient { recipient: r.to_string(), reason })?;
            }
            if seen.insert(normalized(r)) {
                group.age.push(AgeKey { recipient: r.to_string(), enc: String::new() });
            }
        }
        let mut seen = HashSet::new();
        for fp in &g.pgp {
            let fp = checked_fingerprint(fp)?;
            if seen.insert(fp.to_ascii_uppercase()) {
                group.pgp.push(PgpKey { fp, created_at: String::new(), enc: String::new() });
            }
        }
        out.push(group);
    }
    Ok((out, i64::try_from(threshold).unwrap_or(i64::MAX)))
}

/// The file's groups as a spec.
pub(crate) fn spec_of(metadata: &Metadata) -> KeyGroups {
    KeyGroups {
        groups: metadata
            .groups
            .iter()
            .map(|g| KeyGroupSpec {
                age: g.age.iter().map(|k| k.recipient.clone()).collect(),
                pgp: g.pgp.iter().map(|k| k.fp.clone()).collect(),
            })
            .collect(),
        threshold: u64::try_from(metadata.shamir_threshold).unwrap_or(0),
    }
}

/// Gives the new single group the `enc` (and `created_at`) of the keys it keeps from `old`,
/// which it replaces (each `enc` is moved, not copied). Keys are looked up by name, not
/// searched: a shared file holds a stanza per host. The keys the new group lists first in
/// the old order (a host added at the end) are matched by position, without the lookup.
pub(crate) fn carry_over(new: &mut KeyGroup, old: &mut KeyGroup) {
    let same = new.age.iter().zip(&old.age).take_while(|(n, o)| n.recipient == o.recipient).count();
    for (k, o) in new.age.iter_mut().zip(old.age.iter_mut()).take(same) {
        k.enc = std::mem::take(&mut o.enc);
    }
    if same < new.age.len() {
        let age: HashMap<std::borrow::Cow<'_, str>, &AgeKey> = old.age.iter().map(|o| (normalized(&o.recipient), o)).collect();
        for k in &mut new.age[same..] {
            if let Some(o) = age.get(&normalized(&k.recipient)) {
                k.enc.clone_from(&o.enc);
            }
        }
    }
    let pgp: HashMap<String, &PgpKey> = old.pgp.iter().map(|o| (o.fp.to_ascii_uppercase(), o)).collect();
    for k in &mut new.pgp {
        if let Some(o) = pgp.get(&k.fp.to_ascii_uppercase()) {
            k.enc.clone_from(&o.enc);
            k.created_at.clone_from(&o.created_at);
            k.fp.clone_from(&o.fp);
        }
    }
}

fn missing_enc(metadata: &Metadata) -> bool {
    metadata.groups.iter().any(|g| g.age.iter().any(|k| k.enc.is_empty()) || g.pgp.iter().any(|k| k.enc.is_empty()))
}

/// Encrypts the data key (or its parts) for the keys that need it: every key when `rewrap`
/// (a new data key) or when several groups gained a key (the key is split again); otherwise
/// only the keys without an `enc`, so a kept key's `enc` stays byte for byte.
pub(crate) fn wrap(metadata: &mut Metadata, data_key: &DataKey, rewrap: bool, pgp: &dyn Pgp) -> Result<(), SopsFileError> {
    let n = metadata.groups.len();
    let missing = missing_enc(metadata);
    let resplit = rewrap || (n > 1 && missing);
    if !resplit && !missing {
        return Ok(());
    }
    if metadata.has_other_keys() {
        return Err(SopsFileError::ExternalKeysRequired(super::other_kinds(metadata)));
    }
    let parts: Vec<Zeroizing<Vec<u8>>> = if n > 1 {
        if metadata.shamir_threshold == 0 {
            metadata.shamir_threshold = i64::try_from(n).unwrap_or(i64::MAX);
        }
        let threshold = usize::try_from(metadata.shamir_threshold).unwrap_or(0);
        shamir::split(data_key.as_ref(), n, threshold).map_err(|_| SopsFileError::Threshold { threshold: threshold as u64, groups: n })?
    } else {
        vec![Zeroizing::new(data_key.to_vec())]
    };
    for (group, part) in metadata.groups.iter_mut().zip(&parts) {
        wrap_group(group, part, resplit, pgp)?;
    }
    Ok(())
}

/// Encrypts `part` for the keys of `group` that need it: all of them when `resplit`, otherwise
/// those without an `enc`.
pub(crate) fn wrap_group(group: &mut KeyGroup, part: &[u8], resplit: bool, pgp: &dyn Pgp) -> Result<(), SopsFileError> {
    // A shared file of a large fleet has a stanza per host: they are wrapped on every core
    // (a host file's two or three are not worth a thread).
    let jobs = if group.age.len() >= 64 { crate::parallel::cores() } else { 1 };
    let wrapped = crate::parallel::map(&group.age, jobs, |k| {
        (resplit || k.enc.is_empty()).then(|| crate::recipient::wrap(part, &k.recipient).map_err(|e| SopsFileError::wrap(&k.recipient, e)))
    });
    for (k, enc) in group.age.iter_mut().zip(wrapped) {
        if let Some(enc) = enc {
            k.enc = enc?;
        }
    }
    for k in &mut group.pgp {
        if resplit || k.enc.is_empty() {
            // The fingerprint may come from the file (untrusted): only hex reaches GnuPG.
            checked_fingerprint(&k.fp)?;
            k.enc = pgp.encrypt(&k.fp, part)?;
            if k.created_at.is_empty() {
                k.created_at = super::now_rfc3339();
            }
        }
    }
    Ok(())
}

/// Why a group did not open.
enum Locked {
    /// No key of ours; the names of its keys.
    NotOurs,
    /// A reason worth telling as it is (a damaged stanza, GnuPG missing).
    Error(SopsFileError),
}

/// The group's part from an age identity of this pass.
fn open_age(group: &KeyGroup, ids: &(impl AgeIdentities + ?Sized), pass: Pass) -> Result<Zeroizing<Vec<u8>>, Locked> {
    let mut failed = None;
    for key in &group.age {
        match ids.open(&key.recipient, &key.enc, pass) {
            Ok(Some(bytes)) => return Ok(bytes),
            Ok(None) => {}
            Err(reason) => {
                failed.get_or_insert(SopsFileError::AgeStanza { recipient: key.recipient.clone(), reason });
            }
        }
    }
    Err(failed.map_or(Locked::NotOurs, Locked::Error))
}

/// The group's part from GnuPG.
fn open_pgp(group: &KeyGroup, pgp: &dyn Pgp) -> Result<Zeroizing<Vec<u8>>, Locked> {
    let mut unavailable = None;
    for key in &group.pgp {
        match pgp.decrypt(&key.fp, &key.enc) {
            Ok(bytes) => return Ok(bytes),
            Err(e @ SopsFileError::PgpUnavailable(_)) => {
                unavailable = Some(e);
                break;
            }
            Err(e) => tracing::debug!("PGP key {} did not open the data key: {e}", key.fp),
        }
    }
    Err(unavailable.map_or(Locked::NotOurs, Locked::Error))
}

fn names(group: &KeyGroup) -> Vec<String> {
    group
        .age
        .iter()
        .map(|k| k.recipient.clone())
        .chain(group.pgp.iter().map(|k| format!("pgp:{}", k.fp)))
        .chain(group.other.iter().map(|(kind, _)| (*kind).to_string()))
        .collect()
}

fn to_data_key(bytes: &[u8]) -> Result<DataKey, SopsFileError> {
    if bytes.len() != 32 {
        return Err(SopsFileError::Metadata(format!("the data key is {} bytes, expected 32", bytes.len())));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(bytes);
    Ok(key)
}

/// How many groups must open: one of one, else the stored threshold (`0`: all of them).
fn needed(metadata: &Metadata) -> Result<usize, SopsFileError> {
    let n = metadata.groups.len();
    if n == 1 {
        return Ok(1);
    }
    match usize::try_from(metadata.shamir_threshold) {
        Ok(0) => Ok(n),
        Ok(t) if (1..=n).contains(&t) => Ok(t),
        _ => Err(SopsFileError::Metadata(format!("`shamir_threshold` {} does not fit {n} key groups", metadata.shamir_threshold))),
    }
}

/// What opening each group gave: its part, or why it stayed locked (when worth saying).
struct Opening {
    parts: Vec<Option<Zeroizing<Vec<u8>>>>,
    errors: Vec<Option<SopsFileError>>,
}

impl Opening {
    fn opened(&self) -> usize {
        self.parts.iter().filter(|p| p.is_some()).count()
    }

    /// Tries `open` on each group still locked, until `needed` are open.
    fn pass(&mut self, groups: &[KeyGroup], needed: usize, open: impl Fn(&KeyGroup) -> Option<Result<Zeroizing<Vec<u8>>, Locked>>) {
        for (i, g) in groups.iter().enumerate() {
            if self.opened() >= needed {
                return;
            }
            if self.parts[i].is_some() {
                continue;
            }
            match open(g) {
                Some(Ok(p)) => self.parts[i] = Some(p),
                Some(Err(Locked::Error(e))) => self.errors[i] = Some(e),
                Some(Err(Locked::NotOurs)) | None => {}
            }
        }
    }

    /// The error when too few groups opened.
    fn locked(mut self, groups: &[KeyGroup], needed: usize) -> SopsFileError {
        if groups.len() == 1 {
            return self.errors.pop().flatten().unwrap_or_else(|| SopsFileError::NoMatchingIdentity { recipients: names(&groups[0]) });
        }
        let locked = groups
            .iter()
            .enumerate()
            .filter(|(i, _)| self.parts[*i].is_none())
            .map(|(i, g)| {
                let why = self.errors[i].as_ref().map_or_else(|| "no identity or GnuPG key of ours".to_string(), ToString::to_string);
                format!("group {} ({}): {why}", i + 1, names(g).join(", "))
            })
            .collect();
        SopsFileError::NotEnoughGroups { needed, opened: self.opened(), groups: groups.len(), locked }
    }
}

/// The data key: from age identities first (those that need no prompt, then the others),
/// then GnuPG for the groups still locked, stopping as soon as enough groups opened.
pub(crate) fn open(metadata: &Metadata, ids: &(impl AgeIdentities + ?Sized), pgp: &dyn Pgp) -> Result<DataKey, SopsFileError> {
    let groups = &metadata.groups;
    let needed = needed(metadata)?;
    if groups.iter().all(|g| g.age.is_empty() && g.pgp.is_empty()) {
        return Err(SopsFileError::ExternalKeysRequired(super::other_kinds(metadata)));
    }
    if ids.is_empty() && groups.iter().all(|g| g.pgp.is_empty()) {
        return Err(SopsFileError::NoIdentities);
    }
    let mut opening = Opening { parts: vec![None; groups.len()], errors: (0..groups.len()).map(|_| None).collect() };
    opening.pass(groups, needed, |g| Some(open_age(g, ids, Pass::Quiet)));
    opening.pass(groups, needed, |g| (!g.age.is_empty()).then(|| open_age(g, ids, Pass::Interactive)));
    opening.pass(groups, needed, |g| (!g.pgp.is_empty()).then(|| open_pgp(g, pgp)));
    if opening.opened() < needed {
        return Err(opening.locked(groups, needed));
    }
    let got: Vec<Zeroizing<Vec<u8>>> = opening.parts.into_iter().flatten().collect();
    if let ([_], [one]) = (groups.as_slice(), got.as_slice()) {
        return to_data_key(one);
    }
    let key = shamir::combine(&got).map_err(|e| SopsFileError::Metadata(format!("the key group parts do not combine: {e}")))?;
    to_data_key(&key)
}
