//! The decrypted document: an ordered tree in which comments are items, as in sops' own tree.
//!
//! Comments are items (not decorations of nodes) because that is how sops encrypts them: each
//! comment is a value encrypted with the path of the mapping that holds it, and a file read,
//! changed and written again must keep every comment where it was.

use zeroize::Zeroize;

use super::SopsFileError;

/// A value in a SOPS document. Its `Debug` shows the shape, never the content (a decrypted
/// value is a secret, and `{:?}` ends up in logs and panic messages).
#[derive(Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A timestamp, as Go's `time.Time.MarshalText` writes it (`2001-12-14T21:59:43.1-05:00`).
    /// sops gives unquoted YAML dates this type.
    Time(String),
    Map(Map),
    Seq(Vec<SeqItem>),
}

/// An item of a sequence: a value or a comment line (the text after `#`).
#[derive(Clone, PartialEq)]
pub enum SeqItem {
    Value(Value),
    Comment(String),
}

/// An item of a mapping: an entry or a comment line (the text after `#`). Keys are shown by
/// `Debug` (sops leaves them in clear); values and comments are not.
#[derive(Clone, PartialEq)]
pub enum MapItem {
    Entry { key: String, value: Value },
    Comment(String),
}

/// An ordered mapping whose items are entries and comments.
///
/// Dropping a `Map` overwrites the strings it holds (values and comments, at any depth below
/// it except inside nested maps, which wipe themselves), so decrypted secrets do not linger in
/// freed memory. A `Value` taken out of a map (`remove_path`, `clone`) is the caller's to wipe.
#[derive(Clone, Default, PartialEq)]
pub struct Map {
    items: Vec<MapItem>,
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |kind: &str, f: &mut std::fmt::Formatter<'_>| write!(f, "{kind}(<redacted>)");
        match self {
            Value::Null => f.write_str("Null"),
            Value::Bool(_) => redacted("Bool", f),
            Value::Int(_) => redacted("Int", f),
            Value::Float(_) => redacted("Float", f),
            Value::Str(s) => write!(f, "Str(<redacted, {} bytes>)", s.len()),
            Value::Time(_) => redacted("Time", f),
            Value::Map(m) => m.fmt(f),
            Value::Seq(items) => f.debug_list().entries(items).finish(),
        }
    }
}

impl std::fmt::Debug for SeqItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeqItem::Value(v) => v.fmt(f),
            SeqItem::Comment(_) => f.write_str("Comment(<redacted>)"),
        }
    }
}

impl std::fmt::Debug for MapItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapItem::Entry { key, value } => write!(f, "{key:?}: {value:?}"),
            MapItem::Comment(_) => f.write_str("Comment(<redacted>)"),
        }
    }
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(&self.items).finish()
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        for item in &mut self.items {
            match item {
                MapItem::Entry { value, .. } => wipe(value),
                MapItem::Comment(c) => c.zeroize(),
            }
        }
    }
}

/// Overwrites the strings of a value; nested maps are left to their own `Drop`.
fn wipe(value: &mut Value) {
    match value {
        Value::Str(s) | Value::Time(s) => s.zeroize(),
        Value::Seq(items) => {
            for item in items {
                match item {
                    SeqItem::Value(v) => wipe(v),
                    SeqItem::Comment(c) => c.zeroize(),
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Map(_) => {}
    }
}

impl Map {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of the first entry named `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Mutable access to the value of the first entry named `key`.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.items.iter_mut().find_map(|item| match item {
            MapItem::Entry { key: k, value } if k == key => Some(value),
            _ => None,
        })
    }

    /// The value at a path of mapping keys (`["deploy-keys", "nix-config"]`).
    #[must_use]
    pub fn get_path(&self, path: &[&str]) -> Option<&Value> {
        let (last, parents) = path.split_last()?;
        let mut map = self;
        for key in parents {
            map = map.get(key)?.as_map()?;
        }
        map.get(last)
    }

    /// Sets the value at a path: an existing entry is replaced in place (keeping its position
    /// and the comments around it), a new one is appended; missing intermediate mappings are
    /// created.
    ///
    /// # Errors
    /// [`SopsFileError::PathConflict`] when the path is empty or an intermediate key holds
    /// something other than a mapping (it is never overwritten).
    pub fn set_path(&mut self, path: &[&str], value: Value) -> Result<(), SopsFileError> {
        let Some((last, parents)) = path.split_last() else {
            return Err(SopsFileError::PathConflict { path: String::new(), reason: "the path is empty".into() });
        };
        let mut map = self;
        for (depth, key) in parents.iter().enumerate() {
            if map.get(key).is_none() {
                map.items.push(MapItem::Entry { key: (*key).to_string(), value: Value::Map(Map::new()) });
            }
            map = match map.get_mut(key) {
                Some(Value::Map(m)) => m,
                _ => {
                    return Err(SopsFileError::PathConflict {
                        path: path.join(":"),
                        reason: format!("`{}` holds a value that is not a mapping", path[..=depth].join(":")),
                    });
                }
            };
        }
        match map.get_mut(last) {
            Some(slot) => *slot = value,
            None => map.items.push(MapItem::Entry { key: (*last).to_string(), value }),
        }
        Ok(())
    }

    /// Removes the first entry at a path and returns its value.
    pub fn remove_path(&mut self, path: &[&str]) -> Option<Value> {
        let (last, parents) = path.split_last()?;
        let mut map = self;
        for key in parents {
            map = match map.get_mut(key)? {
                Value::Map(m) => m,
                _ => return None,
            };
        }
        let pos = map.items.iter().position(|item| matches!(item, MapItem::Entry { key, .. } if key == last))?;
        match map.items.remove(pos) {
            MapItem::Entry { value, .. } => Some(value),
            MapItem::Comment(_) => None,
        }
    }

    /// The keys of the entries, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries().map(|(k, _)| k)
    }

    /// The entries, in order, without the comments.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.items.iter().filter_map(|item| match item {
            MapItem::Entry { key, value } => Some((key.as_str(), value)),
            MapItem::Comment(_) => None,
        })
    }

    /// Every item, comments included, in order.
    #[must_use]
    pub fn items(&self) -> &[MapItem] {
        &self.items
    }

    /// Appends an entry without looking for an existing one (YAML readers differ on duplicate
    /// keys; prefer [`Map::set_path`]).
    pub fn push(&mut self, key: impl Into<String>, value: Value) {
        self.items.push(MapItem::Entry { key: key.into(), value });
    }

    /// Appends a comment line (the text after `#`).
    pub fn push_comment(&mut self, text: impl Into<String>) {
        self.items.push(MapItem::Comment(text.into()));
    }

    /// Number of entries (comments not counted).
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries().count()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn from_items(items: Vec<MapItem>) -> Self {
        Self { items }
    }

    pub(crate) fn items_mut(&mut self) -> &mut Vec<MapItem> {
        &mut self.items
    }
}

impl Value {
    #[must_use]
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The string, for `Str` values.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The values of a sequence, comments skipped.
    pub fn seq_values(&self) -> impl Iterator<Item = &Value> {
        let items: &[SeqItem] = match self {
            Value::Seq(items) => items,
            _ => &[],
        };
        items.iter().filter_map(|i| match i {
            SeqItem::Value(v) => Some(v),
            SeqItem::Comment(_) => None,
        })
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Value::Map(m)
    }
}
