//! sops' tree walk: encrypting and decrypting every leaf and comment, and the MAC.
//!
//! This mirrors `walkBranch`/`walkSlice` and `Tree.Encrypt`/`Decrypt` in sops' `sops.go` (3.11):
//! - the additional data of a value is its path of mapping keys joined by `:` plus a
//!   trailing `:` (sequence indices are not part of it); a comment uses the path of the
//!   collection holding it;
//! - the MAC is SHA-512, upper-case hex, over the `ToBytes` of every non-null, non-comment leaf
//!   in walk order (only the encrypted ones with `mac_only_encrypted`, after a fixed prefix);
//! - a comment inside a sequence, once encrypted, becomes a string item of the sequence (sops
//!   writes `- ENC[…,type:comment]`), while a comment in a mapping stays a `#ENC[…]` line.

use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use super::cipher::{self, CipherError, DataKey, Plain, Stash};
use super::select::{Rules, aad};
use super::{Map, MapItem, SeqItem, SopsFileError, Value};

/// sops' `MACOnlyEncryptedInitialization` (sha256 of "sops").
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f,
    0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// The bytes of a leaf, as sops' `ToBytes` makes them (and as they are encrypted).
/// A leaf's plaintext bytes and its sops type name.
type LeafBytes = (Zeroizing<Vec<u8>>, &'static str);

fn leaf_bytes(v: &Value, path: &[String]) -> Result<Option<LeafBytes>, SopsFileError> {
    Ok(Some(match v {
        Value::Null | Value::Map(_) | Value::Seq(_) => return Ok(None),
        Value::Bool(b) => (Zeroizing::new(if *b { b"True".to_vec() } else { b"False".to_vec() }), "bool"),
        Value::Int(i) => (Zeroizing::new(i.to_string().into_bytes()), "int"),
        Value::Float(f) => (Zeroizing::new(cipher::format_float(*f).into_bytes()), "float"),
        Value::Str(s) => (Zeroizing::new(s.as_bytes().to_vec()), "str"),
        Value::Time(t) => {
            let canonical = super::scalar::canonical_rfc3339(t).ok_or_else(|| SopsFileError::InvalidValue {
                path: path.join(":"),
                reason: "a Time value that is not an RFC 3339 timestamp".into(),
            })?;
            (Zeroizing::new(canonical.into_bytes()), "time")
        }
    }))
}

/// The MAC being computed.
struct Mac(Sha512);

impl Mac {
    fn new(mac_only_encrypted: bool) -> Self {
        let mut h = Sha512::new();
        if mac_only_encrypted {
            h.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        Self(h)
    }

    fn hex(self) -> String {
        self.0.finalize().iter().map(|b| format!("{b:02X}")).collect()
    }
}

/// Encrypts plaintext documents into the form written to disk and computes the MAC.
pub(crate) struct Encryptor<'a> {
    pub key: &'a DataKey,
    pub rules: &'a Rules,
    pub stash: &'a Stash,
}

impl Encryptor<'_> {
    /// Returns the encrypted documents and the MAC.
    pub(crate) fn run(&self, docs: &[Map]) -> Result<(Vec<Map>, String), SopsFileError> {
        let mut mac = Mac::new(self.rules.mac_only_encrypted);
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            if doc.get("sops").is_some() {
                return Err(SopsFileError::Unsupported(
                    "the document has a top-level `sops` key, which sops reserves for its metadata".into(),
                ));
            }
            let mut doc = doc.clone();
            hoist_orphan_comments(&mut doc);
            out.push(self.map(&doc, &mut Vec::new(), &mut Vec::new(), &mut mac)?);
        }
        Ok((out, mac.hex()))
    }

    fn comment(&self, text: &str, path: &[String], stack: &[Vec<String>]) -> Option<String> {
        if !self.rules.should_encrypt(path, stack, true) {
            return None;
        }
        // A comment that could not be decrypted when the file was read stays as it was.
        if cipher::looks_encrypted(text) {
            return Some(text.to_string());
        }
        Some(cipher::encrypt(self.key, Plain { bytes: text.as_bytes(), kind: "comment" }, &aad(path), self.stash))
    }

    fn map(&self, map: &Map, path: &mut Vec<String>, stack: &mut Vec<Vec<String>>, mac: &mut Mac) -> Result<Map, SopsFileError> {
        stack.push(Vec::new());
        let mut items = Vec::with_capacity(map.items().len());
        for item in map.items() {
            match item {
                MapItem::Comment(text) => {
                    push_comment(stack, text);
                    let out = self.comment(text, path, stack).unwrap_or_else(|| text.clone());
                    items.push(MapItem::Comment(out));
                }
                MapItem::Entry { key, value } => {
                    path.push(key.clone());
                    let v = self.value(value, path, stack, mac);
                    path.pop();
                    items.push(MapItem::Entry { key: key.clone(), value: v? });
                    clear_level(stack);
                }
            }
        }
        stack.pop();
        Ok(Map::from_items(items))
    }

    fn seq(
        &self,
        seq: &[SeqItem],
        path: &mut Vec<String>,
        stack: &mut Vec<Vec<String>>,
        mac: &mut Mac,
    ) -> Result<Vec<SeqItem>, SopsFileError> {
        stack.push(Vec::new());
        let mut items = Vec::with_capacity(seq.len());
        for item in seq {
            match item {
                SeqItem::Comment(text) => {
                    push_comment(stack, text);
                    match self.comment(text, path, stack) {
                        // sops would turn an empty encrypted comment into an empty string item.
                        Some(enc) if enc.is_empty() => {}
                        Some(enc) => items.push(SeqItem::Value(Value::Str(enc))),
                        None => items.push(SeqItem::Comment(text.clone())),
                    }
                }
                SeqItem::Value(v) => {
                    items.push(SeqItem::Value(self.value(v, path, stack, mac)?));
                    clear_level(stack);
                }
            }
        }
        stack.pop();
        Ok(items)
    }

    fn value(&self, v: &Value, path: &mut Vec<String>, stack: &mut Vec<Vec<String>>, mac: &mut Mac) -> Result<Value, SopsFileError> {
        match v {
            Value::Map(m) => return Ok(Value::Map(self.map(m, path, stack, mac)?)),
            Value::Seq(s) => return Ok(Value::Seq(self.seq(s, path, stack, mac)?)),
            _ => {}
        }
        let Some((bytes, kind)) = leaf_bytes(v, path)? else {
            return Ok(v.clone());
        };
        let encrypted = self.rules.should_encrypt(path, stack, false);
        if !self.rules.mac_only_encrypted || encrypted {
            mac.0.update(&bytes[..]);
        }
        if !encrypted {
            return Ok(v.clone());
        }
        Ok(Value::Str(cipher::encrypt(self.key, Plain { bytes: &bytes, kind }, &aad(path), self.stash)))
    }
}

fn push_comment(stack: &mut [Vec<String>], text: &str) {
    if let Some(level) = stack.last_mut() {
        level.push(text.to_string());
    }
}

fn clear_level(stack: &mut [Vec<String>]) {
    if let Some(level) = stack.last_mut() {
        level.clear();
    }
}

/// Comments of a collection with no entries cannot be written inside it (`{}` / `[]` hold
/// none), so they move to the enclosing collection, before the entry.
fn hoist_orphan_comments(map: &mut Map) {
    let items = std::mem::take(map.items_mut());
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            MapItem::Entry { key, mut value } => {
                out.extend(hoist_value(&mut value).into_iter().map(MapItem::Comment));
                out.push(MapItem::Entry { key, value });
            }
            comment @ MapItem::Comment(_) => out.push(comment),
        }
    }
    *map.items_mut() = out;
}

/// Normalises a value and returns the comments it cannot hold.
fn hoist_value(value: &mut Value) -> Vec<String> {
    match value {
        Value::Map(m) => {
            hoist_orphan_comments(m);
            if m.is_empty() {
                let comments = std::mem::take(m.items_mut());
                return comments
                    .into_iter()
                    .filter_map(|i| match i {
                        MapItem::Comment(c) => Some(c),
                        MapItem::Entry { .. } => None,
                    })
                    .collect();
            }
            Vec::new()
        }
        Value::Seq(items) => {
            let taken = std::mem::take(items);
            let mut out = Vec::with_capacity(taken.len());
            for item in taken {
                match item {
                    SeqItem::Value(mut v) => {
                        out.extend(hoist_value(&mut v).into_iter().map(SeqItem::Comment));
                        out.push(SeqItem::Value(v));
                    }
                    comment @ SeqItem::Comment(_) => out.push(comment),
                }
            }
            if out.iter().all(|i| matches!(i, SeqItem::Comment(_))) {
                return out
                    .into_iter()
                    .filter_map(|i| match i {
                        SeqItem::Comment(c) => Some(c),
                        SeqItem::Value(_) => None,
                    })
                    .collect();
            }
            *items = out;
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// Decrypts documents read from disk, checks nothing yet, and computes the MAC.
pub(crate) struct Decryptor<'a> {
    pub key: &'a DataKey,
    pub rules: &'a Rules,
    pub stash: &'a mut Stash,
    /// Comments that looked encrypted but decrypt with no path (kept as they are).
    pub opaque_comments: usize,
}

impl Decryptor<'_> {
    pub(crate) fn run(&mut self, docs: &[Map]) -> Result<(Vec<Map>, String), SopsFileError> {
        let mut mac = Mac::new(self.rules.mac_only_encrypted);
        let mut out = Vec::with_capacity(docs.len());
        for doc in docs {
            out.push(self.map(doc, &mut Vec::new(), &mut Vec::new(), &mut mac)?);
        }
        Ok((out, mac.hex()))
    }

    /// Decrypts a comment, trying the paths go-yaml might have attached it to when its
    /// position is ambiguous; one that decrypts with none stays as written (sops does too).
    fn comment(&mut self, text: &str, candidates: &[Vec<String>]) -> String {
        if text.is_empty() {
            return String::new();
        }
        for path in candidates {
            match cipher::decrypt(self.key, text, &aad(path), self.stash) {
                Ok(cipher::Decrypted::Comment(c) | cipher::Decrypted::Str(c)) => {
                    return c.to_string();
                }
                Ok(_) => break,
                Err(CipherError::Malformed(_)) => break,
                Err(CipherError::Authentication) => {}
            }
        }
        if cipher::looks_encrypted(text) {
            self.opaque_comments += 1;
        }
        text.to_string()
    }

    fn map(&mut self, map: &Map, path: &mut Vec<String>, stack: &mut Vec<Vec<String>>, mac: &mut Mac) -> Result<Map, SopsFileError> {
        stack.push(Vec::new());
        let mut items = Vec::with_capacity(map.items().len());
        for (i, item) in map.items().iter().enumerate() {
            match item {
                MapItem::Comment(text) => {
                    push_comment(stack, text);
                    let out = if self.rules.should_encrypt(path, stack, true) {
                        let candidates = comment_paths(map, i, path);
                        self.comment(text, &candidates)
                    } else {
                        text.clone()
                    };
                    items.push(MapItem::Comment(out));
                }
                MapItem::Entry { key, value } => {
                    path.push(key.clone());
                    let v = self.value(value, path, stack, mac);
                    path.pop();
                    match v? {
                        Leaf::Value(v) => items.push(MapItem::Entry { key: key.clone(), value: v }),
                        Leaf::Comment(_) => {
                            return Err(SopsFileError::MalformedValue {
                                path: join(path, key),
                                reason: "a comment stored where a value belongs".into(),
                            });
                        }
                    }
                    clear_level(stack);
                }
            }
        }
        stack.pop();
        Ok(Map::from_items(items))
    }

    fn seq(
        &mut self,
        seq: &[SeqItem],
        path: &mut Vec<String>,
        stack: &mut Vec<Vec<String>>,
        mac: &mut Mac,
    ) -> Result<Vec<SeqItem>, SopsFileError> {
        stack.push(Vec::new());
        let mut items = Vec::with_capacity(seq.len());
        for item in seq {
            match item {
                SeqItem::Comment(text) => {
                    push_comment(stack, text);
                    let out =
                        if self.rules.should_encrypt(path, stack, true) { self.comment(text, &ancestors(path)) } else { text.clone() };
                    items.push(SeqItem::Comment(out));
                }
                SeqItem::Value(v) => {
                    // An encrypted comment of a sequence is a string item until decrypted.
                    match self.value(v, path, stack, mac)? {
                        Leaf::Value(v) => items.push(SeqItem::Value(v)),
                        Leaf::Comment(c) => items.push(SeqItem::Comment(c)),
                    }
                    clear_level(stack);
                }
            }
        }
        stack.pop();
        Ok(items)
    }

    /// The decrypted value, or the comment it turned out to be (only valid in sequences).
    fn value(&mut self, v: &Value, path: &mut Vec<String>, stack: &mut Vec<Vec<String>>, mac: &mut Mac) -> Result<Leaf, SopsFileError> {
        match v {
            Value::Map(m) => return Ok(Leaf::Value(Value::Map(self.map(m, path, stack, mac)?))),
            Value::Seq(s) => return Ok(Leaf::Value(Value::Seq(self.seq(s, path, stack, mac)?))),
            Value::Null => return Ok(Leaf::Value(Value::Null)),
            _ => {}
        }
        let encrypted = self.rules.should_encrypt(path, stack, false);
        let plain = if encrypted {
            let Value::Str(s) = v else {
                return Err(SopsFileError::MalformedValue {
                    path: path.join(":"),
                    reason: "a value left in clear where the file's rules require encryption".into(),
                });
            };
            match cipher::decrypt(self.key, s, &aad(path), self.stash) {
                Ok(cipher::Decrypted::Comment(c)) => return Ok(Leaf::Comment(c.to_string())),
                Ok(d) => from_decrypted(d),
                Err(CipherError::Authentication) => {
                    return Err(SopsFileError::ValueAuthentication { path: path.join(":") });
                }
                Err(CipherError::Malformed(reason)) => {
                    return Err(SopsFileError::MalformedValue { path: path.join(":"), reason });
                }
            }
        } else {
            v.clone()
        };
        if (!self.rules.mac_only_encrypted || encrypted)
            && let Some((bytes, _)) = leaf_bytes(&plain, path)?
        {
            mac.0.update(&bytes[..]);
        }
        Ok(Leaf::Value(plain))
    }
}

/// What a leaf of a file read from disk decrypts to.
enum Leaf {
    Value(Value),
    Comment(String),
}

fn from_decrypted(d: cipher::Decrypted) -> Value {
    match d {
        cipher::Decrypted::Str(s) | cipher::Decrypted::Comment(s) => Value::Str(s.to_string()),
        cipher::Decrypted::Int(i) => Value::Int(i),
        cipher::Decrypted::Float(f) => Value::Float(f),
        cipher::Decrypted::Bool(b) => Value::Bool(b),
        cipher::Decrypted::Time(t) => Value::Time(t),
    }
}

fn join(path: &[String], last: &str) -> String {
    let mut p = path.to_vec();
    p.push(last.to_string());
    p.join(":")
}

/// `path` and each of its prefixes, longest first.
fn ancestors(path: &[String]) -> Vec<Vec<String>> {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).collect()
}

/// Paths a comment at item `i` of `map` may have been encrypted with: its own mapping, the
/// enclosing ones, and the mappings nested at the end of the previous entry or the start of
/// the next one (where go-yaml may attach a comment that sits between them).
fn comment_paths(map: &Map, i: usize, path: &[String]) -> Vec<Vec<String>> {
    let mut out = ancestors(path);
    let items = map.items();
    let prev = items[..i].iter().rev().find_map(|it| match it {
        MapItem::Entry { key, value } => Some((key, value)),
        MapItem::Comment(_) => None,
    });
    if let Some((key, value)) = prev {
        let mut p = path.to_vec();
        p.push(key.clone());
        let mut v = value;
        while let Value::Map(m) = v {
            out.push(p.clone());
            match m.entries().last() {
                Some((k, next)) => {
                    p.push(k.to_string());
                    v = next;
                }
                None => break,
            }
        }
    }
    let next = items[i..].iter().find_map(|it| match it {
        MapItem::Entry { key, value } => Some((key, value)),
        MapItem::Comment(_) => None,
    });
    if let Some((key, Value::Map(_))) = next {
        let mut p = path.to_vec();
        p.push(key.clone());
        out.push(p);
    }
    out
}
