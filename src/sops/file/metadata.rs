//! The `sops:` section: key groups, rules, `lastmodified`, `mac`, `version`.
//!
//! Field names, order and omission follow sops' `stores/stores.go` (3.11): a single key group
//! is written flattened (`age:`, `pgp:` … at the top), several as `key_groups:` whose entries
//! always carry `hc_vault:` and `age:`. age and PGP keys are understood; key types hostsmith
//! does not handle (kms, gcp_kms, azure_kv, hc_vault) are kept as read and written back
//! unchanged, so a file is never stripped of a key it had.

use std::io::Read as _;

use zeroize::Zeroizing;

use super::select::{Pattern, Rules};
use super::{Map, SeqItem, SopsFileError, Value};

/// The version written, that of the sops release whose format this engine follows.
pub(crate) const SOPS_VERSION: &str = "3.11.0";

/// Key types other than age and PGP, in the order sops writes them.
const OTHER_KINDS: [&str; 4] = ["kms", "gcp_kms", "azure_kv", "hc_vault"];

/// An age recipient and the data key encrypted for it (ASCII-armored age file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgeKey {
    pub recipient: String,
    pub enc: String,
}

/// A PGP key and the data key (or Shamir part) encrypted for it (an armored PGP message),
/// with the time the key was added (RFC 3339), as sops' `pgpkey` holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgpKey {
    pub fp: String,
    pub created_at: String,
    pub enc: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct KeyGroup {
    pub age: Vec<AgeKey>,
    pub pgp: Vec<PgpKey>,
    /// Keys of other types, by type, as read (each a mapping of its fields).
    pub other: Vec<(&'static str, Map)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Metadata {
    pub groups: Vec<KeyGroup>,
    pub shamir_threshold: i64,
    pub lastmodified: String,
    pub mac: String,
    pub rules: Rules,
    pub version: String,
}

fn text_of(v: &Value) -> Option<String> {
    Some(match v {
        Value::Str(s) | Value::Time(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => super::cipher::format_float(*f),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        Value::Map(_) | Value::Seq(_) => return None,
    })
}

fn bad(what: &str) -> SopsFileError {
    SopsFileError::Metadata(what.to_string())
}

fn string_field(m: &Map, field: &str) -> Result<Option<String>, SopsFileError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => text_of(v).map(Some).ok_or_else(|| bad(&format!("`{field}` must be a single value"))),
    }
}

fn list_field<'a>(m: &'a Map, field: &str) -> Result<Vec<&'a Value>, SopsFileError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v @ Value::Seq(_)) => Ok(v.seq_values().collect()),
        Some(_) => Err(bad(&format!("`{field}` must be a list"))),
    }
}

/// At most 80 characters of `s`, for messages (a recipient field may hold anything).
fn truncate(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn group_from(m: &Map, at: &str) -> Result<KeyGroup, SopsFileError> {
    let mut group = KeyGroup::default();
    for entry in list_field(m, "age")? {
        let Value::Map(k) = entry else {
            return Err(bad(&format!("an entry of `{at}age` is not a mapping")));
        };
        let recipient = string_field(k, "recipient")?.unwrap_or_default();
        // A recipient that is not one (a line moved into it, a truncated key) would only fail
        // later, when the file is written for it: refused where it is read.
        if let Err(why) = crate::recipient::kind_of(&recipient) {
            return Err(bad(&format!(
                "an entry of `{at}age` has recipient `{}`, which is not an age recipient: {why}",
                truncate(&recipient)
            )));
        }
        let enc = string_field(k, "enc")?.unwrap_or_default();
        group.age.push(AgeKey { recipient, enc });
    }
    for entry in list_field(m, "pgp")? {
        let Value::Map(k) = entry else {
            return Err(bad(&format!("an entry of `{at}pgp` is not a mapping")));
        };
        let fp = string_field(k, "fp")?.unwrap_or_default();
        let created_at = string_field(k, "created_at")?.unwrap_or_default();
        let enc = string_field(k, "enc")?.unwrap_or_default();
        group.pgp.push(PgpKey { fp, created_at, enc });
    }
    for kind in OTHER_KINDS {
        for entry in list_field(m, kind)? {
            let Value::Map(k) = entry else {
                return Err(bad(&format!("an entry of `{at}{kind}` is not a mapping")));
            };
            group.other.push((kind, k.clone()));
        }
    }
    Ok(group)
}

impl KeyGroup {
    fn is_empty(&self) -> bool {
        self.age.is_empty() && self.pgp.is_empty() && self.other.is_empty()
    }
}

impl Metadata {
    /// Reads the `sops:` mapping as sops' `ToInternal` does.
    pub(crate) fn parse(v: &Value) -> Result<Self, SopsFileError> {
        let Value::Map(m) = v else {
            return Err(bad("`sops` must be a mapping"));
        };
        let flat = group_from(m, "")?;
        let groups = if flat.is_empty() {
            let mut groups = Vec::new();
            for (i, g) in list_field(m, "key_groups")?.into_iter().enumerate() {
                let Value::Map(g) = g else {
                    return Err(bad("an entry of `key_groups` is not a mapping"));
                };
                groups.push(group_from(g, &format!("key_groups[{i}]."))?);
            }
            groups
        } else {
            vec![flat]
        };
        if groups.is_empty() {
            return Err(bad("no keys found in the file"));
        }
        let lastmodified = string_field(m, "lastmodified")?.unwrap_or_default();
        if super::scalar::lastmodified_aad(&lastmodified).is_none() {
            return Err(bad("`lastmodified` is not an RFC 3339 time"));
        }
        let shamir_threshold = match m.get("shamir_threshold") {
            None | Some(Value::Null) => 0,
            Some(Value::Int(i)) => *i,
            Some(_) => return Err(bad("`shamir_threshold` must be an integer")),
        };
        let mac_only_encrypted = match m.get("mac_only_encrypted") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("`mac_only_encrypted` must be true or false")),
        };
        let nonempty = |f: &str| string_field(m, f).map(|o| o.filter(|s| !s.is_empty()));
        let pattern = |f: &str| nonempty(f).map(|o| o.map(|t| Pattern::lenient(&t)));
        let rules = Rules {
            unencrypted_suffix: nonempty("unencrypted_suffix")?,
            encrypted_suffix: nonempty("encrypted_suffix")?,
            unencrypted_regex: pattern("unencrypted_regex")?,
            encrypted_regex: pattern("encrypted_regex")?,
            unencrypted_comment_regex: pattern("unencrypted_comment_regex")?,
            encrypted_comment_regex: pattern("encrypted_comment_regex")?,
            mac_only_encrypted,
        }
        .with_default()
        .map_err(|_| bad("more than one of the encrypted/unencrypted suffix and regex rules is set"))?;
        Ok(Self {
            groups,
            shamir_threshold,
            lastmodified,
            mac: string_field(m, "mac")?.unwrap_or_default(),
            rules,
            version: string_field(m, "version")?.unwrap_or_default(),
        })
    }

    /// The `sops:` mapping to write.
    pub(crate) fn to_map(&self) -> Map {
        let mut m = Map::new();
        if self.shamir_threshold != 0 {
            m.push("shamir_threshold", Value::Int(self.shamir_threshold));
        }
        let single = self.groups.len() == 1;
        if !single {
            let groups = self.groups.iter().map(|g| SeqItem::Value(Value::Map(group_map(g)))).collect();
            m.push("key_groups", Value::Seq(groups));
        }
        if let (true, Some(g)) = (single, self.groups.first()) {
            for kind in ["kms", "gcp_kms", "azure_kv", "hc_vault"] {
                push_others(&mut m, g, kind);
            }
            if !g.age.is_empty() {
                m.push("age", age_list(&g.age));
            }
        }
        m.push("lastmodified", Value::Str(self.lastmodified.clone()));
        m.push("mac", Value::Str(self.mac.clone()));
        if let (true, Some(g)) = (single, self.groups.first())
            && !g.pgp.is_empty()
        {
            m.push("pgp", pgp_list(&g.pgp));
        }
        let r = &self.rules;
        let texts = [
            ("unencrypted_suffix", r.unencrypted_suffix.clone()),
            ("encrypted_suffix", r.encrypted_suffix.clone()),
            ("unencrypted_regex", r.unencrypted_regex.as_ref().map(|p| p.text.clone())),
            ("encrypted_regex", r.encrypted_regex.as_ref().map(|p| p.text.clone())),
            ("unencrypted_comment_regex", r.unencrypted_comment_regex.as_ref().map(|p| p.text.clone())),
            ("encrypted_comment_regex", r.encrypted_comment_regex.as_ref().map(|p| p.text.clone())),
        ];
        for (field, text) in texts {
            if let Some(t) = text {
                m.push(field, Value::Str(t));
            }
        }
        if r.mac_only_encrypted {
            m.push("mac_only_encrypted", Value::Bool(true));
        }
        m.push("version", Value::Str(self.version.clone()));
        m
    }

    /// Whether any key needs something other than age or PGP.
    pub(crate) fn has_other_keys(&self) -> bool {
        self.groups.iter().any(|g| !g.other.is_empty())
    }

    /// The version to write: sops' own when the file's is older (as `sops edit` does).
    pub(crate) fn version_to_write(current: &str) -> String {
        let parse = |s: &str| -> Option<Vec<u64>> { s.trim_start_matches('v').split('.').map(|p| p.parse().ok()).collect() };
        match (parse(current), parse(SOPS_VERSION)) {
            (Some(cur), Some(ours)) if cur >= ours => current.to_string(),
            _ => SOPS_VERSION.to_string(),
        }
    }
}

fn others_of<'a>(g: &'a KeyGroup, kind: &str) -> Vec<&'a Map> {
    g.other.iter().filter(|(k, _)| *k == kind).map(|(_, m)| m).collect()
}

fn push_others(m: &mut Map, g: &KeyGroup, kind: &'static str) {
    let keys = others_of(g, kind);
    if !keys.is_empty() {
        m.push(kind, Value::Seq(keys.into_iter().map(|k| SeqItem::Value(Value::Map(k.clone()))).collect()));
    }
}

/// The `age` list of a group, as sops writes it.
pub(crate) fn age_list(keys: &[AgeKey]) -> Value {
    Value::Seq(
        keys.iter()
            .map(|k| {
                let mut e = Map::new();
                e.push("recipient", Value::Str(k.recipient.clone()));
                e.push("enc", Value::Str(k.enc.clone()));
                SeqItem::Value(Value::Map(e))
            })
            .collect(),
    )
}

/// PGP entries with sops' field order (`created_at`, `enc`, `fp`).
fn pgp_list(keys: &[PgpKey]) -> Value {
    Value::Seq(
        keys.iter()
            .map(|k| {
                let mut e = Map::new();
                e.push("created_at", Value::Str(k.created_at.clone()));
                e.push("enc", Value::Str(k.enc.clone()));
                e.push("fp", Value::Str(k.fp.clone()));
                SeqItem::Value(Value::Map(e))
            })
            .collect(),
    )
}

/// A `key_groups` entry: `hc_vault` and `age` are always written (no `omitempty` in sops).
fn group_map(g: &KeyGroup) -> Map {
    let mut m = Map::new();
    if !g.pgp.is_empty() {
        m.push("pgp", pgp_list(&g.pgp));
    }
    for kind in ["kms", "gcp_kms", "azure_kv"] {
        push_others(&mut m, g, kind);
    }
    let vault = others_of(g, "hc_vault");
    m.push("hc_vault", Value::Seq(vault.into_iter().map(|k| SeqItem::Value(Value::Map(k.clone()))).collect()));
    m.push("age", age_list(&g.age));
    m
}

/// Decrypts an armored age file holding the data key.
/// `Ok(None)` when none of `identities` is for it.
///
/// # Errors
/// The armored file is damaged, or an identity meant for it failed, with the reason.
pub fn unwrap_with(enc: &str, identities: &[&dyn age::Identity]) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    let reader = age::armor::ArmoredReader::new(enc.as_bytes());
    let decryptor = age::Decryptor::new(reader).map_err(|e| e.to_string())?;
    let mut r = match decryptor.decrypt(identities.iter().copied()) {
        Ok(r) => r,
        Err(age::DecryptError::NoMatchingKeys) => return Ok(None),
        Err(other) => return Err(other.to_string()),
    };
    let mut out = Zeroizing::new(Vec::new());
    r.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(Some(out))
}
