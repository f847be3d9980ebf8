//! A positioned view of a YAML text: nodes with byte spans, anchor names and the comments
//! between them.
//!
//! hostsmith never re-serialises a file it only needs to change a little (`.sops.yaml`), and
//! it must carry comments through SOPS files (sops encrypts them). Both need what a plain
//! YAML-to-value parser throws away: where each node sits in the text, which anchor it
//! defines, and where the comments are. `saphyr-parser` gives events with positions; `scan`
//! folds them into a tree and recovers anchor names and comments from the text. `block`
//! builds the same tree directly, several times faster, for the plain block YAML fleets are
//! written in (what sops and hostsmith write), and leaves any other text to `scan`.

pub(crate) mod block;
mod scan;

use std::ops::Range;

pub use saphyr_parser::ScalarStyle;

/// One YAML node and where it is in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    /// Byte range of the node. Scalars: the token, quotes and a leading `&anchor` included;
    /// block scalars: their content lines only (the `|`/`>` indicator sits before it).
    /// Aliases: `*name`. Collections: from their first token (`[`, `{`, or the first key or
    /// `-` of a block collection; a leading `&anchor` or tag included; an indentless
    /// sequence starts at its first item's content, after the `-`) to the end of their last
    /// child (flow: past the closing bracket).
    pub span: Range<usize>,
    /// 0-based line and column (in characters) of `span.start`.
    pub line: usize,
    pub col: usize,
    /// The anchor this node defines (`&name`), without the `&`.
    pub anchor: Option<String>,
    /// The tag, as written (`!!str`, `!foo`), when present.
    pub tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar { value: String, style: ScalarStyle },
    Alias { name: String },
    Mapping { entries: Vec<(Node, Node)>, flow: bool },
    Sequence { items: Vec<Node>, flow: bool },
}

/// A `#` comment and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// Byte range from the `#` to the end of the line (newline excluded).
    pub span: Range<usize>,
    /// The text after the `#`, as written.
    pub text: String,
    /// 0-based line.
    pub line: usize,
    /// Whether something other than white space precedes it on its line.
    pub inline: bool,
}

/// A parsed YAML stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// One root node per document; an empty document has a null scalar root.
    pub documents: Vec<Node>,
    /// Every comment in the text, in order.
    pub comments: Vec<Comment>,
}

/// Why a text is not YAML we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {col}: {message}")]
pub struct YamlError {
    pub message: String,
    /// 1-based, as editors show them.
    pub line: usize,
    pub col: usize,
}

/// Parses a YAML stream into positioned nodes and comments.
///
/// # Errors
/// Returns the parser's message and position when the text is not valid YAML, or when an
/// alias names an anchor not defined before it.
pub fn parse(text: &str) -> Result<Parsed, YamlError> {
    parse_telling(text).map(|(parsed, _)| parsed)
}

/// [`parse`], and whether the block reader read the text: then it holds block collections and
/// one-line or literal scalars only, which a caller may rely on to edit it in place.
pub(crate) fn parse_telling(text: &str) -> Result<(Parsed, bool), YamlError> {
    match block::parse(text) {
        Some(parsed) => {
            #[cfg(debug_assertions)]
            assert_eq!(scan::parse(text).as_ref(), Ok(&parsed), "the block reader differs from the event reader on:\n{text}");
            Ok((parsed, true))
        }
        None => scan::parse(text).map(|parsed| (parsed, false)),
    }
}

impl Node {
    /// The scalar's value, when this node is a scalar.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Whether this is a plain scalar that YAML reads as null (`~`, `null`, or nothing).
    #[must_use]
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, style: ScalarStyle::Plain }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The value of `key` when this node is a mapping that has it (first match).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value node of `key` when this node is a mapping that has it.
    #[must_use]
    pub fn entry(&self, key: &str) -> Option<&(Node, Node)> {
        match &self.kind {
            NodeKind::Mapping { entries, .. } => entries.iter().find(|(k, _)| k.as_str() == Some(key)),
            _ => None,
        }
    }

    /// Visits this node and every node below it, depth first, in text order.
    pub fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Node)) {
        f(self);
        match &self.kind {
            NodeKind::Mapping { entries, .. } => {
                for (k, v) in entries {
                    k.walk(f);
                    v.walk(f);
                }
            }
            NodeKind::Sequence { items, .. } => {
                for item in items {
                    item.walk(f);
                }
            }
            NodeKind::Scalar { .. } | NodeKind::Alias { .. } => {}
        }
    }
}

impl Parsed {
    /// The node that defines anchor `name` and is the last such definition starting before
    /// byte `before` (YAML lets a later anchor of the same name shadow an earlier one).
    #[must_use]
    pub fn anchor_before(&self, name: &str, before: usize) -> Option<&Node> {
        let mut found = None;
        for doc in &self.documents {
            doc.walk(&mut |n| {
                if n.anchor.as_deref() == Some(name) && n.span.start < before {
                    found = Some(n);
                }
            });
        }
        found
    }

    /// Every anchor name defined more than once in the stream.
    #[must_use]
    pub fn duplicate_anchors(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut dup = std::collections::BTreeSet::new();
        for doc in &self.documents {
            doc.walk(&mut |n| {
                if let Some(a) = &n.anchor
                    && !seen.insert(a.as_str())
                {
                    dup.insert(a.clone());
                }
            });
        }
        dup.into_iter().collect()
    }
}

#[cfg(test)]
mod tests;
