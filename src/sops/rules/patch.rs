//! The edit's result read without reading all of it again.
//!
//! Most edits only add items to block lists (a host's anchor under `keys:`, its rule in
//! `creation_rules`, its alias in a shared rule's `age:` list), each as whole lines between
//! two items or after the last one. Such lines cannot change how the rest of the text reads:
//! the line before them ends an item of the list, their first line is a `-` at the list's
//! own column (which closes everything deeper and continues that list), and the line after
//! them is what followed that item before. So the new document is the old one with the
//! inserted lines' nodes added to their lists and every later position moved along, and only
//! the inserted lines need parsing. At 10,000 hosts that is a few hundred bytes instead of a
//! 2 MB file parsed again and walked beside the old one.
//!
//! [`patch`] builds that tree when every splice of the edit is such an insertion and every
//! condition of the argument holds (the old text read by the block reader, no block scalars,
//! anchors unique, each inserted alias naming an anchor defined before it); otherwise it
//! returns `None` and the edit is verified by parsing the whole result, as for every other
//! kind of edit. What the inserted nodes mean is still checked against the plan, in the new
//! tree (see [`super::verify`]). Debug builds parse every patched result whole and require the
//! same tree, node for node, and the whole-document comparison to agree.

use super::model::Model;
use super::text::Splice;
use super::value::{NodeMap, Op, Ops, V};
use crate::sops::yaml::{Comment, Node, NodeKind, Parsed, ScalarStyle, block};

/// A splice that adds items to a block list: before the item at `index` of `seq`, or after
/// its last when `index` is its length.
pub(crate) struct Placement<'a> {
    pub seq: &'a Node,
    pub index: usize,
    /// Its index among the edit's splices.
    pub splice: usize,
}

/// The new document's tree, and where the added items are in it.
pub(crate) struct Patched {
    pub parsed: Parsed,
    /// Per placement: the path from the root to its list (child indexes; a mapping's entry
    /// `i` is `2 i` for the key and `2 i + 1` for the value), where the new items start in
    /// it, and what they must mean.
    pub added: Vec<Added>,
}

pub(crate) struct Added {
    pub path: Vec<usize>,
    pub first: usize,
    pub values: Vec<V>,
}

/// Where the inserted text goes, in the old text and the new.
struct Point {
    /// In the old text.
    at: usize,
    len: usize,
    lines: usize,
}

/// Positions of the old text in the new one.
struct Shift {
    /// Sorted by `at`; `len` and `lines` summed up to and including each point.
    points: Vec<(usize, usize, usize)>,
}

impl Shift {
    fn new(points: &[Point]) -> Self {
        let (mut len, mut lines) = (0, 0);
        let points = points
            .iter()
            .map(|p| {
                len += p.len;
                lines += p.lines;
                (p.at, len, lines)
            })
            .collect();
        Self { points }
    }

    /// What was inserted at or before `pos` (text inserted at `pos` goes before what starts
    /// there), or only before it.
    fn before(&self, pos: usize, inclusive: bool) -> (usize, usize) {
        let n = self.points.partition_point(|p| if inclusive { p.0 <= pos } else { p.0 < pos });
        n.checked_sub(1).map_or((0, 0), |i| (self.points[i].1, self.points[i].2))
    }

    fn span(&self, span: &std::ops::Range<usize>) -> std::ops::Range<usize> {
        let start = span.start + self.before(span.start, true).0;
        // Text inserted where a node ends comes after it; an empty node moves with its start.
        let end = if span.is_empty() { start } else { span.end + self.before(span.end, false).0 };
        start..end
    }

    fn line(&self, pos: usize, line: usize) -> usize {
        line + self.before(pos, true).1
    }
}

/// The new document's tree, when the edit only inserts items into block lists as the
/// module docs describe; `None` when any splice or condition falls outside that.
pub(crate) fn patch(
    m: &Model<'_>,
    by_block: bool,
    splices: &[Splice],
    order: &[usize],
    placements: &[Placement<'_>],
    ops: &Ops,
) -> Option<Patched> {
    if !by_block || splices.is_empty() || placements.len() != splices.len() || ops.len() != placements.len() || !m.anchors_unique() {
        return None;
    }
    let text = m.lines.s;
    let Landing { new_at, line_at, shift } = landing(text, splices, order)?;
    let mut by_seq: NodeMap<(usize, &Placement<'_>)> = NodeMap::default();
    let mut fragments: Vec<Option<Fragment>> = (0..splices.len()).map(|_| None).collect();
    for (k, p) in placements.iter().enumerate() {
        if by_seq.insert(std::ptr::from_ref(p.seq), (k, p)).is_some() || fragments.get(p.splice)?.is_some() {
            return None;
        }
        let values = match ops.get(p.seq) {
            [Op::Append(v)] if p.index == items_of(p.seq)?.len() => v.clone(),
            [Op::InsertBefore(i, v)] if *i == p.index => v.clone(),
            _ => return None,
        };
        let s = &splices[p.splice];
        let frag = fragment(m, p, s, values)?;
        fragments[p.splice] = Some(frag);
    }
    follows(text, splices, order, &fragments)?;
    aliases_resolve(m, splices, order, &fragments)?;

    // The old tree, moved along, with each fragment's items in its list.
    let mut comments: Vec<Comment> = m
        .parsed
        .comments
        .iter()
        .map(|c| Comment { span: shift.span(&c.span), line: shift.line(c.span.start, c.line), ..c.clone() })
        .collect();
    let mut inserts: NodeMap<(usize, Vec<Node>)> = NodeMap::default();
    let mut added = Vec::with_capacity(placements.len());
    for (k, p) in placements.iter().enumerate() {
        let f = fragments[p.splice].take()?;
        let base = new_at[p.splice] + f.offset;
        let line = line_at[p.splice] + f.offset;
        let items = f.items.into_iter().map(|n| moved(n, base, line)).collect();
        comments.extend(f.comments.into_iter().map(|c| Comment { span: c.span.start + base..c.span.end + base, line: c.line + line, ..c }));
        inserts.insert(std::ptr::from_ref(p.seq), (k, items));
        added.push(Added { path: Vec::new(), first: p.index, values: f.values });
    }
    comments.sort_by_key(|c| c.span.start);
    let mut path = Vec::new();
    let mut documents = Vec::with_capacity(m.parsed.documents.len());
    for doc in &m.parsed.documents {
        documents.push(copy(doc, &shift, &mut inserts, &mut added, &mut path)?.0);
    }
    if !inserts.is_empty() {
        return None;
    }
    Some(Patched { parsed: Parsed { documents, comments }, added })
}

/// Where each splice lands in the new text (its byte and its 0-based line), in the order
/// they are applied, and how old positions move.
struct Landing {
    new_at: Vec<usize>,
    line_at: Vec<usize>,
    shift: Shift,
}

/// [`Landing`] of pure insertions; `None` when a splice replaces text.
fn landing(text: &str, splices: &[Splice], order: &[usize]) -> Option<Landing> {
    let mut new_at = vec![0; splices.len()];
    let mut line_at = vec![0; splices.len()];
    let mut points = Vec::with_capacity(splices.len());
    let (mut delta, mut pos, mut line, mut added) = (0, 0, 0, 0);
    for &i in order {
        let s = &splices[i];
        if !s.at.is_empty() {
            return None;
        }
        let lines = s.text.bytes().filter(|&b| b == b'\n').count();
        new_at[i] = s.at.start + delta;
        delta += s.text.len();
        line += text.as_bytes()[pos..s.at.start].iter().filter(|&&b| b == b'\n').count();
        pos = s.at.start;
        line_at[i] = line + added;
        added += lines;
        points.push(Point { at: s.at.start, len: s.text.len(), lines });
    }
    Some(Landing { new_at, line_at, shift: Shift::new(&points) })
}

/// What follows each fragment: the next fragment inserted at the same place (a deeper
/// list's items go first, so the next must be shallower), or the old text from there on. A
/// fragment placed before an item was checked against that item's `-` already, and nothing
/// may come between them.
fn follows(text: &str, splices: &[Splice], order: &[usize], fragments: &[Option<Fragment>]) -> Option<()> {
    for (k, &i) in order.iter().enumerate() {
        let f = fragments[i].as_ref()?;
        let next_here = order.get(k + 1).filter(|&&j| splices[j].at.start == splices[i].at.start);
        let ok = match (next_here, f.inside) {
            (Some(&j), false) => fragments[j].as_ref().is_some_and(|g| g.col < f.col),
            (Some(_), true) => false,
            (None, true) => true,
            (None, false) => follows_list(text, splices[i].at.start, f.col),
        };
        if !ok {
            return None;
        }
    }
    Some(())
}

/// A placement's lines, read.
struct Fragment {
    /// Where its lines start in the splice's text: 0, or 1 after the newline that ends a
    /// file which had none.
    offset: usize,
    /// The column of its `-`s (the list's).
    col: usize,
    /// An old item of the list follows it.
    inside: bool,
    items: Vec<Node>,
    comments: Vec<Comment>,
    values: Vec<V>,
}

fn items_of(n: &Node) -> Option<&[Node]> {
    match &n.kind {
        NodeKind::Sequence { items, flow: false } if !items.is_empty() => Some(items),
        _ => None,
    }
}

/// Reads a placement's lines and checks the text on both sides of where they go.
fn fragment(m: &Model<'_>, p: &Placement<'_>, s: &Splice, values: Vec<V>) -> Option<Fragment> {
    let text = m.lines.s;
    let at = s.at.start;
    let items = items_of(p.seq)?;
    // Between two items: never before the first, whose place the list's key line decides.
    if p.index == 0 || p.index > items.len() || s.text.contains('\t') {
        return None;
    }
    let offset = if (at == 0 || text.as_bytes()[at - 1] == b'\n') && s.text.ends_with('\n') {
        0
    } else if at == text.len() && !text.is_empty() && s.text.starts_with('\n') && !s.text.ends_with('\n') {
        1
    } else {
        return None;
    };
    let col = m.lines.col(m.lines.dash_before(items[0].span.start)?);
    let lines = &s.text[offset..];
    // No document markers or directives: the lines must be items of this document's list.
    if lines.split('\n').any(|l| l.starts_with("---") || l.starts_with("...") || l.starts_with('%')) {
        return None;
    }
    let first = lines.split('\n').find(|l| !is_blank_or_comment(l))?;
    if first.len() - first.trim_start_matches(' ').len() != col || !first.trim_start().starts_with('-') {
        return None;
    }
    let parsed = block::parse_fragment(lines)?;
    let [root] = parsed.documents.as_slice() else { return None };
    let NodeKind::Sequence { items: new, flow: false } = &root.kind else { return None };
    if new.len() != values.len() || has_block_scalar(root) {
        return None;
    }
    // The item before ends the old text's content before the lines go in.
    let prev_end = m.lines.content_end(&items[p.index - 1]);
    if prev_end > at || !text[prev_end..at].split('\n').all(is_blank_or_comment) {
        return None;
    }
    // Before an item: only comments and blank lines up to its `-`, which is at the same column.
    if let Some(next) = items.get(p.index) {
        let dash = m.lines.dash_before(next.span.start)?;
        let dash_line = m.lines.line_start(dash);
        if dash_line < at || m.lines.col(dash) != col || !text[at..dash_line].split('\n').all(is_blank_or_comment) {
            return None;
        }
        if !text[dash_line..dash].bytes().all(|b| b == b' ') {
            return None;
        }
    }
    let Parsed { documents, comments } = parsed;
    let NodeKind::Sequence { items: new, .. } = documents.into_iter().next()?.kind else { return None };
    Some(Fragment { offset, col, inside: p.index < items.len(), items: new, comments, values })
}

/// Whether the old text from `at` on continues after a list whose `-`s are at `col` the way
/// it continued after the list's item before `at`: its next line with content is less
/// indented, or a key at the list's own column (a list written without indentation under
/// its key), or there is none.
fn follows_list(text: &str, at: usize, col: usize) -> bool {
    match text[at..].split('\n').find(|l| !is_blank_or_comment(l)) {
        None => true,
        Some(line) => {
            let indent = line.len() - line.trim_start_matches(' ').len();
            indent < col || (indent == col && !line.trim_start().starts_with('-'))
        }
    }
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start_matches(' ');
    t.is_empty() || t.starts_with('#')
}

fn has_block_scalar(n: &Node) -> bool {
    let mut found = false;
    n.walk(&mut |n| {
        found |= matches!(&n.kind, NodeKind::Scalar { style: ScalarStyle::Literal | ScalarStyle::Folded, .. });
    });
    found
}

/// Every anchor a fragment defines is new, and every alias in it names an anchor defined
/// before it: earlier in the fragment, in a fragment placed before it, or in the old text
/// before the place it goes. (New anchors being new, no old alias changes what it names.)
fn aliases_resolve(m: &Model<'_>, splices: &[Splice], order: &[usize], fragments: &[Option<Fragment>]) -> Option<()> {
    let mut defined: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for &i in order {
        let f = fragments[i].as_ref()?;
        let at = splices[i].at.start;
        let mut ok = true;
        for item in &f.items {
            item.walk(&mut |n| {
                if let Some(a) = &n.anchor {
                    ok &= m.anchor(a).is_none() && defined.insert(a.as_str());
                }
                if let NodeKind::Alias { name } = &n.kind {
                    ok &= defined.contains(name.as_str()) || m.anchor_before(name, at).is_some();
                }
            });
        }
        if !ok {
            return None;
        }
    }
    Some(())
}

/// A fragment's node placed at `base` (bytes) and `line` of the new text.
fn moved(mut n: Node, base: usize, line: usize) -> Node {
    n.span = n.span.start + base..n.span.end + base;
    n.line += line;
    n.kind = match n.kind {
        NodeKind::Sequence { items, flow } => NodeKind::Sequence { items: items.into_iter().map(|i| moved(i, base, line)).collect(), flow },
        NodeKind::Mapping { entries, flow } => {
            NodeKind::Mapping { entries: entries.into_iter().map(|(k, v)| (moved(k, base, line), moved(v, base, line))).collect(), flow }
        }
        other => other,
    };
    n
}

/// The old node as it stands in the new text, with the fragments' items in their lists, and
/// whether anything was added below it; `None` on a block scalar (the lines that follow it
/// decide its trailing line breaks).
fn copy(
    n: &Node,
    shift: &Shift,
    inserts: &mut NodeMap<(usize, Vec<Node>)>,
    added: &mut [Added],
    path: &mut Vec<usize>,
) -> Option<(Node, bool)> {
    let mut grew = false;
    let kind = match &n.kind {
        NodeKind::Scalar { style: ScalarStyle::Literal | ScalarStyle::Folded, .. } => return None,
        NodeKind::Scalar { value, style } => NodeKind::Scalar { value: value.clone(), style: *style },
        NodeKind::Alias { name } => NodeKind::Alias { name: name.clone() },
        NodeKind::Sequence { items, flow } => {
            let mut new = inserts.remove(&std::ptr::from_ref(n)).map(|(k, new)| {
                added[k].path.clone_from(path);
                (added[k].first, new)
            });
            grew = new.is_some();
            let mut out = Vec::with_capacity(items.len() + new.as_ref().map_or(0, |(_, v)| v.len()));
            for (i, item) in items.iter().enumerate() {
                if new.as_ref().is_some_and(|(at, _)| *at == i) {
                    out.extend(new.take().map(|(_, v)| v).unwrap_or_default());
                }
                path.push(out.len());
                let c = copy(item, shift, inserts, added, path);
                path.pop();
                let (c, g) = c?;
                grew |= g;
                out.push(c);
            }
            if let Some((_, rest)) = new {
                out.extend(rest);
            }
            NodeKind::Sequence { items: out, flow: *flow }
        }
        NodeKind::Mapping { entries, flow } => {
            let mut out = Vec::with_capacity(entries.len());
            for (i, (k, v)) in entries.iter().enumerate() {
                path.push(2 * i);
                let key = copy(k, shift, inserts, added, path);
                path.pop();
                path.push(2 * i + 1);
                let value = copy(v, shift, inserts, added, path);
                path.pop();
                let ((key, gk), (value, gv)) = (key?, value?);
                grew |= gk || gv;
                out.push((key, value));
            }
            NodeKind::Mapping { entries: out, flow: *flow }
        }
    };
    let mut span = shift.span(&n.span);
    if grew {
        // A collection ends where its last child does, which may now be an added item.
        let last_end = match &kind {
            NodeKind::Sequence { items, .. } => items.last().map(|i| i.span.end),
            NodeKind::Mapping { entries, .. } => entries.last().map(|(_, v)| v.span.end),
            _ => None,
        };
        span.end = span.end.max(last_end.unwrap_or(0));
    }
    let node = Node { kind, span, line: shift.line(n.span.start, n.line), col: n.col, anchor: n.anchor.clone(), tag: n.tag.clone() };
    Some((node, grew))
}

/// The node at `path` below `root`.
pub(crate) fn at_path<'a>(root: &'a Node, path: &[usize]) -> Option<&'a Node> {
    let mut n = root;
    for &i in path {
        n = match &n.kind {
            NodeKind::Sequence { items, .. } => items.get(i)?,
            NodeKind::Mapping { entries, .. } => {
                let (k, v) = entries.get(i / 2)?;
                if i % 2 == 0 { k } else { v }
            }
            _ => return None,
        };
    }
    Some(n)
}
