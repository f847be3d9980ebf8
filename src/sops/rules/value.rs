//! The meaning of a document, for verifying edits: aliases expanded into plain values.
//!
//! An edit is planned twice: as text splices, and as [`Op`]s on the nodes of the original
//! parse ("append these items to this list"). After splicing, the new text is parsed again
//! and its meaning must equal the original's meaning with the ops applied. Ops are attached
//! to nodes, not to places in the expanded value, so appending to an anchored list shows up
//! at every alias of it, exactly as the text edit does.

use super::model::{MAX_DEPTH, Model};
use crate::sops::yaml::{Node, NodeKind};

/// A YAML value with aliases expanded. Scalars are compared as written (sops reads every
/// recipient and regex as a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum V {
    Null,
    Str(String),
    Seq(Vec<V>),
    Map(Vec<(String, V)>),
}

impl V {
    pub(crate) fn strs(items: impl IntoIterator<Item = impl Into<String>>) -> V {
        V::Seq(items.into_iter().map(|s| V::Str(s.into())).collect())
    }
}

/// A change to one node of the original parse.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Items added at the end of a sequence.
    Append(Vec<V>),
    /// Items added before the item at this index of the original sequence.
    InsertBefore(usize, Vec<V>),
    /// Entries added at the end of a mapping.
    AppendEntries(Vec<(String, V)>),
    /// Entries added before the entry at this index of the original mapping.
    InsertEntriesBefore(usize, Vec<(String, V)>),
    /// Text added to a string scalar (before its trailing line breaks).
    AppendStr(String),
    /// The node becomes this value.
    Replace(V),
    /// The item or entry at this index of the original sequence or mapping goes away.
    Remove(usize),
}

/// Ops keyed by node identity (nodes of one parse never move while it is borrowed).
#[derive(Default)]
pub(crate) struct Ops(NodeMap<Vec<Op>>);

/// A map keyed by node identity. Its keys are addresses, never text a fleet wrote, so the
/// fast unkeyed hash cannot be steered into collisions; the comparison of a 10,000-host file
/// looks a node up several times each.
pub(crate) type NodeMap<T> = rustc_hash::FxHashMap<*const Node, T>;

impl Ops {
    pub(crate) fn push(&mut self, node: &Node, op: Op) {
        self.0.entry(std::ptr::from_ref(node)).or_default().push(op);
    }

    pub(crate) fn get(&self, node: &Node) -> &[Op] {
        self.0.get(&std::ptr::from_ref(node)).map_or(&[], Vec::as_slice)
    }

    /// How many ops there are, on all nodes.
    pub(crate) fn len(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }
}

/// Expansion stops (with an error) past this many nodes more than the text holds: a few
/// aliases of aliases can otherwise describe an exponentially large value, while a large
/// file without aliases is merely large.
const BUDGET: usize = 200_000;

/// The nodes an expansion of `model`'s document may build.
pub(crate) fn budget(model: &Model<'_>) -> usize {
    BUDGET + model.nodes
}

/// The meaning of `node` with `ops` applied (the whole-document comparison debug builds
/// check [`super::compare`] against).
#[cfg(debug_assertions)]
pub(crate) fn value(model: &Model<'_>, node: &Node, ops: &Ops) -> Result<V, String> {
    let mut budget = budget(model);
    build(model, node, ops, 0, &mut budget)
}

/// [`value`] drawing on a budget shared with other expansions.
pub(crate) fn value_within(model: &Model<'_>, node: &Node, ops: &Ops, budget: &mut usize) -> Result<V, String> {
    build(model, node, ops, 0, budget)
}

#[allow(clippy::too_many_lines, reason = "one arm per kind of edit operation")]
fn build(model: &Model<'_>, node: &Node, ops: &Ops, depth: usize, budget: &mut usize) -> Result<V, String> {
    if depth > MAX_DEPTH * 4 {
        return Err(format!("line {}: aliases nest too deep (a recursive alias?)", node.line + 1));
    }
    *budget = budget.checked_sub(1).ok_or("aliases expand to too large a value")?;
    let ops_here = ops.get(node);
    if let Some(Op::Replace(v)) = ops_here.iter().rev().find(|o| matches!(o, Op::Replace(_))) {
        return Ok(v.clone());
    }
    Ok(match &node.kind {
        NodeKind::Alias { name } => {
            let target = model
                .anchor_before(name, node.span.start)
                .ok_or_else(|| format!("line {}: alias `*{name}` resolves to nothing", node.line + 1))?;
            build(model, target, ops, depth + 1, budget)?
        }
        NodeKind::Scalar { .. } if node.is_null() => {
            // An empty document (or value) that entries are added to becomes a mapping.
            let entries: Vec<(String, V)> = ops_here
                .iter()
                .filter_map(|o| match o {
                    Op::AppendEntries(e) => Some(e.iter().cloned()),
                    _ => None,
                })
                .flatten()
                .collect();
            if entries.is_empty() { V::Null } else { V::Map(entries) }
        }
        NodeKind::Scalar { value, .. } => {
            let mut s = value.clone();
            for op in ops_here {
                if let Op::AppendStr(extra) = op {
                    let body = s.trim_end_matches('\n').len();
                    s.insert_str(body, extra);
                }
            }
            V::Str(s)
        }
        NodeKind::Sequence { items, .. } => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                for op in ops_here {
                    if let Op::InsertBefore(at, new) = op
                        && *at == i
                    {
                        out.extend(new.iter().cloned());
                    }
                }
                if !ops_here.iter().any(|o| matches!(o, Op::Remove(r) if *r == i)) {
                    out.push(build(model, item, ops, depth + 1, budget)?);
                }
            }
            for op in ops_here {
                if let Op::Append(new) = op {
                    out.extend(new.iter().cloned());
                }
            }
            V::Seq(out)
        }
        NodeKind::Mapping { entries, .. } => {
            let mut out = Vec::new();
            for (i, (k, v)) in entries.iter().enumerate() {
                for op in ops_here {
                    if let Op::InsertEntriesBefore(at, new) = op
                        && *at == i
                    {
                        out.extend(new.iter().cloned());
                    }
                }
                if !ops_here.iter().any(|o| matches!(o, Op::Remove(r) if *r == i)) {
                    let key = match build(model, k, ops, depth + 1, budget)? {
                        V::Str(s) => s,
                        V::Null => String::new(),
                        other => format!("{other:?}"),
                    };
                    out.push((key, build(model, v, ops, depth + 1, budget)?));
                }
            }
            for op in ops_here {
                if let Op::AppendEntries(new) = op {
                    out.extend(new.iter().cloned());
                }
            }
            V::Map(out)
        }
    })
}
