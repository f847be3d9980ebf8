//! The plan of one edit as it is built: items per target, the changes in words, and what
//! sops' lookup must give afterwards (checked by [`super::verify`]).

use super::Change;
use super::item::{Item, Target};

/// What sops' lookup must give after the edit.
#[derive(Debug, Clone)]
pub(crate) enum Expect {
    /// Exactly these age key groups (in order), and these PGP keys in the first group.
    Exactly { path: String, groups: Vec<Vec<String>>, pgp: Vec<String> },
    /// Some group holds the recipient.
    Includes { path: String, recipient: String },
    /// No group holds the recipient (or no rule matches).
    Excludes { path: String, recipient: String },
}

/// Collects items per target, in planning order.
pub(crate) struct Builder<'a> {
    pub targets: Vec<(Target<'a>, Vec<Item>)>,
    pub changes: Vec<Change>,
    pub expect: Vec<Expect>,
}

impl<'a> Builder<'a> {
    pub(crate) fn new() -> Self {
        Builder { targets: Vec::new(), changes: Vec::new(), expect: Vec::new() }
    }

    pub(crate) fn add(&mut self, target: Target<'a>, item: Item) {
        match self.targets.iter_mut().find(|(t, _)| t.same(&target)) {
            Some((_, items)) => items.push(item),
            None => self.targets.push((target, vec![item])),
        }
    }
}
