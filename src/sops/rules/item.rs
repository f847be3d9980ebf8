//! What an edit adds and where: the targets in the parsed file and the list items to put
//! there. Planning fills these in; rendering turns them into splices.

use super::value::V;
use crate::sops::yaml::Node;

/// Where items go.
#[derive(Clone)]
pub(crate) enum Target<'a> {
    /// At the end of a list (block or flow). `key` is the mapping key it is the value of.
    Seq { seq: &'a Node, key: Option<&'a Node> },
    /// Before item `index` of a block list.
    Before { seq: &'a Node, index: usize },
    /// `key:` with no value becomes a block list.
    Null { key: &'a Node, value: &'a Node },
    /// A new `key:` list in a mapping, at the end or before entry `before`.
    Entry { map: &'a Node, key: String, before: Option<usize> },
    /// A new anchored list `- &anchor` at the end of a list of anchored lists.
    Group { seq: &'a Node, anchor: String },
    /// Recipients appended to a comma-separated string.
    Str(&'a Node),
}

impl Target<'_> {
    pub(crate) fn same(&self, other: &Self) -> bool {
        use std::ptr::eq;
        match (self, other) {
            (Target::Seq { seq: a, .. }, Target::Seq { seq: b, .. }) => eq(*a, *b),
            (Target::Before { seq: a, index: i }, Target::Before { seq: b, index: j }) => eq(*a, *b) && i == j,
            (Target::Null { value: a, .. }, Target::Null { value: b, .. }) => eq(*a, *b),
            (Target::Entry { map: a, key: k, .. }, Target::Entry { map: b, key: l, .. }) => eq(*a, *b) && k == l,
            (Target::Group { seq: a, .. }, Target::Group { seq: b, .. }) => eq(*a, *b),
            (Target::Str(a), Target::Str(b)) => eq(*a, *b),
            _ => false,
        }
    }
}

/// One list item to add.
#[derive(Clone)]
pub(crate) struct Item {
    /// Block form: lines with their indentation relative to the item's content column; the
    /// first line follows the `- `.
    pub lines: Vec<(usize, String)>,
    /// Flow form, when the item has one.
    pub flow: Option<String>,
    pub value: V,
    /// For string targets: the recipient itself.
    pub literal: String,
    /// A rule: keep the blank-line separation the file's rules have.
    pub rule: bool,
}

impl Item {
    pub(crate) fn scalar(text: String, value: &str) -> Self {
        Item { lines: vec![(0, text.clone())], flow: Some(text), value: V::Str(value.into()), literal: value.into(), rule: false }
    }
}
