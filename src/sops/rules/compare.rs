//! Comparing an edited document with the planned one: the original with its [`Ops`] applied.
//!
//! The meaning that must match is the expanded one ([`value::value`]: aliases replaced by what
//! they name). Expanding a whole 10,000-host `.sops.yaml` twice per edit costs more than
//! parsing it, so the two trees are walked side by side instead, and only what an op adds or
//! replaces (its planned value against the new subtree's), an alias on either side (the
//! value of what it names, computed once per anchored node) and scalars are expanded. Lists
//! and mappings, also those an op adds to or removes from, are compared child by child,
//! in the order the expansion would build them. Both sides share one expansion budget, as the whole-document expansion
//! did, so a file of aliases of aliases fails the same way. Debug builds check every answer
//! against the whole-document comparison.

use std::borrow::Cow;

use super::model::{MAX_DEPTH, Model};
use super::value::{self, NodeMap, Op, Ops, V};
use crate::sops::yaml::{Node, NodeKind};

/// Where `new` (the edited document) first differs from `old` with `ops` applied, as a
/// message naming the path; `None` when they mean the same.
///
/// # Errors
/// An alias resolves to nothing or aliases expand to too large a value.
pub(crate) fn difference(old: &Model<'_>, ops: &Ops, new: &Model<'_>) -> Result<Option<String>, String> {
    let mut walk = Walk {
        old,
        new,
        ops,
        none: Ops::default(),
        old_budget: value::budget(old),
        new_budget: value::budget(new),
        old_memo: NodeMap::default(),
        new_memo: NodeMap::default(),
    };
    let found = walk.node(old.root, new.root, &Path::Root)?;
    #[cfg(debug_assertions)]
    if let (Ok(expected), Ok(actual)) = (value::value(old, old.root, ops), value::value(new, new.root, &Ops::default())) {
        assert_eq!(found.is_none(), first_difference(&expected, &actual, String::new()).is_none(), "the comparisons disagree");
    }
    Ok(found)
}

/// One child of the planned document: an original one (compared node by node) or one an op
/// adds (compared with the expansion of what stands in its place).
enum Planned<K, N> {
    Kept(K),
    New(N),
}

/// The children of an original list or mapping with the ops applied, in the order the
/// expansion builds them: `before` gives what an op inserts before an original child,
/// `append` what it adds at the end; an `Op::Remove` drops an original child.
fn planned<'n, 'o, K, N>(
    xs: &'n [K],
    ops: &'o [Op],
    before: impl Fn(&'o Op) -> Option<(usize, &'o [N])>,
    append: impl Fn(&'o Op) -> Option<&'o [N]>,
) -> Vec<Planned<&'n K, &'o N>> {
    let mut out = Vec::with_capacity(xs.len());
    for (i, x) in xs.iter().enumerate() {
        for new in ops.iter().filter_map(&before).filter(|(at, _)| *at == i).map(|(_, new)| new) {
            out.extend(new.iter().map(Planned::New));
        }
        if !ops.iter().any(|o| matches!(o, Op::Remove(r) if *r == i)) {
            out.push(Planned::Kept(x));
        }
    }
    for new in ops.iter().filter_map(append) {
        out.extend(new.iter().map(Planned::New));
    }
    out
}

struct Walk<'a, 'm> {
    old: &'a Model<'m>,
    new: &'a Model<'m>,
    ops: &'a Ops,
    none: Ops,
    old_budget: usize,
    new_budget: usize,
    /// Values of anchored nodes an alias named, by node.
    old_memo: NodeMap<V>,
    new_memo: NodeMap<V>,
}

/// Where a node is, rendered only for a message (`creation_rules[2].age[1]`).
enum Path<'p> {
    Root,
    Index(&'p Path<'p>, usize),
    Key(&'p Path<'p>, &'p str),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
            Path::Key(Path::Root, k) => (*k).to_string(),
            Path::Key(parent, k) => format!("{}.{k}", parent.render()),
        }
    }
}

/// A scalar as the expansion reads it, borrowed.
#[derive(PartialEq)]
enum Leaf<'n> {
    Null,
    Str(&'n str),
}

impl<'m> Walk<'_, 'm> {
    fn node(&mut self, a: &'m Node, b: &'m Node, path: &Path<'_>) -> Result<Option<String>, String> {
        let ops = self.ops.get(a);
        if ops.iter().any(|o| matches!(o, Op::Replace(_) | Op::AppendStr(_))) {
            return self.expanded(a, b, path);
        }
        if let (Some(x), Some(y)) = (self.leaf(a, true), self.leaf(b, false)) {
            return if x == y { Ok(None) } else { self.expanded(a, b, path) };
        }
        match (&a.kind, &b.kind) {
            (NodeKind::Sequence { items: xs, .. }, NodeKind::Sequence { items: ys, .. }) => self.sequence(xs, ops, ys, path),
            (NodeKind::Mapping { entries: xs, .. }, NodeKind::Mapping { entries: ys, .. }) => self.mapping(xs, ops, ys, path),
            _ => self.expanded(a, b, path),
        }
    }

    /// The items of an original list with `ops` applied against those of the new one.
    fn sequence(&mut self, xs: &'m [Node], ops: &[Op], ys: &'m [Node], path: &Path<'_>) -> Result<Option<String>, String> {
        if ops.is_empty() {
            // Nearly every list: nothing planned for it, item against item.
            for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
                if let Some(d) = self.node(x, y, &Path::Index(path, i))? {
                    return Ok(Some(d));
                }
            }
            return Ok((xs.len() != ys.len()).then(|| format!("{} has {} items instead of {}", at(&path.render()), ys.len(), xs.len())));
        }
        let planned = planned(
            xs,
            ops,
            |op| match op {
                Op::InsertBefore(at, new) => Some((*at, new.as_slice())),
                _ => None,
            },
            |op| match op {
                Op::Append(new) => Some(new.as_slice()),
                _ => None,
            },
        );
        for (i, (x, y)) in planned.iter().zip(ys).enumerate() {
            let sub = Path::Index(path, i);
            let d = match x {
                Planned::Kept(x) => self.node(x, y, &sub)?,
                Planned::New(v) => first_difference(v, &self.value(y, false)?, sub.render()),
            };
            if d.is_some() {
                return Ok(d);
            }
        }
        Ok((planned.len() != ys.len()).then(|| format!("{} has {} items instead of {}", at(&path.render()), ys.len(), planned.len())))
    }

    /// The entries of an original mapping with `ops` applied against those of the new one.
    fn mapping(&mut self, xs: &'m [(Node, Node)], ops: &[Op], ys: &'m [(Node, Node)], path: &Path<'_>) -> Result<Option<String>, String> {
        if ops.is_empty() {
            for ((ka, x), (kb, y)) in xs.iter().zip(ys) {
                let (ka, kb) = (self.key(ka, true)?, self.key(kb, false)?);
                if ka != kb {
                    return Ok(Some(format!("{} has key `{kb}` where `{ka}` was expected", at(&path.render()))));
                }
                if let Some(d) = self.node(x, y, &Path::Key(path, &ka))? {
                    return Ok(Some(d));
                }
            }
            return Ok((xs.len() != ys.len()).then(|| format!("{} has {} keys instead of {}", at(&path.render()), ys.len(), xs.len())));
        }
        let planned = planned(
            xs,
            ops,
            |op| match op {
                Op::InsertEntriesBefore(at, new) => Some((*at, new.as_slice())),
                _ => None,
            },
            |op| match op {
                Op::AppendEntries(new) => Some(new.as_slice()),
                _ => None,
            },
        );
        for (x, (kb, y)) in planned.iter().zip(ys) {
            let kb = self.key(kb, false)?;
            let ka = match x {
                Planned::Kept((ka, _)) => self.key(ka, true)?,
                Planned::New((ka, _)) => Cow::Borrowed(ka.as_str()),
            };
            if ka != kb {
                return Ok(Some(format!("{} has key `{kb}` where `{ka}` was expected", at(&path.render()))));
            }
            let sub = Path::Key(path, &ka);
            let d = match x {
                Planned::Kept((_, x)) => self.node(x, y, &sub)?,
                Planned::New((_, v)) => first_difference(v, &self.value(y, false)?, sub.render()),
            };
            if d.is_some() {
                return Ok(d);
            }
        }
        Ok((planned.len() != ys.len()).then(|| format!("{} has {} keys instead of {}", at(&path.render()), ys.len(), planned.len())))
    }

    /// Compares the expanded values of two nodes.
    fn expanded(&mut self, a: &Node, b: &Node, path: &Path<'_>) -> Result<Option<String>, String> {
        let x = self.value(a, true)?;
        let y = self.value(b, false)?;
        Ok(first_difference(&x, &y, path.render()))
    }

    /// A scalar that no op changes, through any aliases, as the expansion reads it; `None`
    /// for anything else.
    fn leaf(&self, n: &'m Node, old: bool) -> Option<Leaf<'m>> {
        let model = if old { self.old } else { self.new };
        let mut n = n;
        for _ in 0..MAX_DEPTH {
            if old && !self.ops.get(n).is_empty() {
                return None;
            }
            match &n.kind {
                NodeKind::Scalar { value, .. } => return Some(if n.is_null() { Leaf::Null } else { Leaf::Str(value) }),
                NodeKind::Alias { name } => n = model.anchor_before(name, n.span.start)?,
                _ => return None,
            }
        }
        None
    }

    /// A mapping key as the expansion names it.
    fn key(&mut self, k: &'m Node, old: bool) -> Result<Cow<'m, str>, String> {
        match self.leaf(k, old) {
            Some(Leaf::Str(s)) => Ok(Cow::Borrowed(s)),
            Some(Leaf::Null) => Ok(Cow::Borrowed("")),
            None => Ok(Cow::Owned(match self.value(k, old)? {
                V::Str(s) => s,
                V::Null => String::new(),
                other => format!("{other:?}"),
            })),
        }
    }

    /// The expanded value of `n` on the old side (ops applied) or the new one; an alias's
    /// target is expanded once.
    fn value(&mut self, n: &Node, old: bool) -> Result<V, String> {
        let (model, ops, budget, memo) = if old {
            (self.old, self.ops, &mut self.old_budget, &mut self.old_memo)
        } else {
            (self.new, &self.none, &mut self.new_budget, &mut self.new_memo)
        };
        let NodeKind::Alias { name } = &n.kind else {
            return value::value_within(model, n, ops, budget);
        };
        let target =
            model.anchor_before(name, n.span.start).ok_or_else(|| format!("line {}: alias `*{name}` resolves to nothing", n.line + 1))?;
        let key = std::ptr::from_ref(target);
        if let Some(v) = memo.get(&key) {
            // What a repeated expansion would have cost, so the budget bounds the same work.
            *budget = budget.checked_sub(1).ok_or("aliases expand to too large a value")?;
            return Ok(v.clone());
        }
        let v = value::value_within(model, target, ops, budget)?;
        memo.insert(key, v.clone());
        Ok(v)
    }
}

fn at(path: &str) -> String {
    if path.is_empty() { "the document".to_string() } else { format!("`{path}`") }
}

/// Where two values first differ, as a path (`creation_rules[2].age[1]`).
pub(crate) fn first_difference(expected: &V, actual: &V, path: String) -> Option<String> {
    match (expected, actual) {
        (V::Seq(a), V::Seq(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if let Some(d) = first_difference(x, y, format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            (a.len() != b.len()).then(|| format!("{} has {} items instead of {}", at(&path), b.len(), a.len()))
        }
        (V::Map(a), V::Map(b)) => {
            for ((ka, x), (kb, y)) in a.iter().zip(b) {
                if ka != kb {
                    return Some(format!("{} has key `{kb}` where `{ka}` was expected", at(&path)));
                }
                let sub = if path.is_empty() { ka.clone() } else { format!("{path}.{ka}") };
                if let Some(d) = first_difference(x, y, sub) {
                    return Some(d);
                }
            }
            (a.len() != b.len()).then(|| format!("{} has {} keys instead of {}", at(&path), b.len(), a.len()))
        }
        _ if expected == actual => None,
        _ => Some(format!("{} is {actual:?} instead of {expected:?}", at(&path))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sops::yaml::parse;

    fn seq<'a>(m: &Model<'a>, key: &str) -> &'a Node {
        m.root.get(key).expect("key")
    }

    /// Compares `new` with `old` plus `plan` (ops made on old's parse).
    fn differ(old: &str, new: &str, plan: impl Fn(&Model<'_>, &mut Ops)) -> Option<String> {
        let (po, pn) = (parse(old).expect("old parses"), parse(new).expect("new parses"));
        let (mo, mn) = (Model::new(old, &po).expect("old model"), Model::new(new, &pn).expect("new model"));
        let mut ops = Ops::default();
        plan(&mo, &mut ops);
        difference(&mo, &ops, &mn).expect("expands")
    }

    #[test]
    fn an_appended_item_and_the_aliases_of_its_list_match_the_plan() {
        let old = "keys:\n  - &a age1a\nall: &all\n  - *a\nrule: *all\n";
        let new = "keys:\n  - &a age1a\n  - &b age1b\nall: &all\n  - *a\n  - *b\nrule: *all\n";
        let plan = |m: &Model<'_>, ops: &mut Ops| {
            ops.push(seq(m, "keys"), Op::Append(vec![V::Str("age1b".into())]));
            ops.push(seq(m, "all"), Op::Append(vec![V::Str("age1b".into())]));
        };
        assert_eq!(differ(old, new, plan), None);
        // The same text without the plan: the lists grew unplanned.
        assert_eq!(differ(old, new, |_, _| {}), Some("`keys` has 2 items instead of 1".into()));
    }

    #[test]
    fn an_anchor_moved_into_an_added_item_is_caught_where_it_is_used() {
        // The added item carries `&a` away from the original one: the lists read the same, but
        // `*a` elsewhere now names the new value. Only the expansion of the alias shows it.
        let old = "keys:\n  - &a age1a\nuse: *a\n";
        let new = "keys:\n  - age1a\n  - &a age1b\nuse: *a\n";
        let plan = |m: &Model<'_>, ops: &mut Ops| ops.push(seq(m, "keys"), Op::Append(vec![V::Str("age1b".into())]));
        assert_eq!(differ(old, new, plan), Some("`use` is Str(\"age1b\") instead of Str(\"age1a\")".into()));
    }

    #[test]
    fn a_replaced_anchor_changes_every_alias_of_it() {
        let old = "keys:\n  - &h age1old\nrules:\n  - age: [*h]\n";
        let new = "keys:\n  - &h age1new\nrules:\n  - age: [*h]\n";
        let plan = |m: &Model<'_>, ops: &mut Ops| {
            let NodeKind::Sequence { items, .. } = &seq(m, "keys").kind else { panic!("a list") };
            ops.push(&items[0], Op::Replace(V::Str("age1new".into())));
        };
        assert_eq!(differ(old, new, plan), None);
        assert_eq!(differ(old, old, plan), Some("`keys[0]` is Str(\"age1old\") instead of Str(\"age1new\")".into()));
    }
}
