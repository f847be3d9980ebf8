//! Turning "add these items here" into text splices in the file's style (see
//! [`super::style`]), and into the matching [`Op`]s for verification.

use super::SopsConfigError;
use super::flow::flow_append;
use super::item::{Item, Target};
use super::model::Model;
use super::patch::Placement;
use super::style::{Blank, Style, block_items, geometry, sp};
use super::text::Splice;
use super::value::{Op, Ops, V};
use crate::sops::yaml::{Node, NodeKind, ScalarStyle};

fn unsupported(m: &Model<'_>, at: usize, what: String, todo: &str) -> SopsConfigError {
    SopsConfigError::unsupported(m.lines.line_no(at), what, todo)
}

/// Renders `items` into `target`: splices for the text, ops for verification, and for the
/// lines that only add items to a block list, where they go (see [`super::patch`]).
#[allow(clippy::too_many_lines, reason = "one arm per target kind; each arm is short")]
pub(crate) fn render<'a>(
    m: &Model<'a>,
    style: &Style,
    target: &Target<'a>,
    items: &[Item],
    splices: &mut Vec<Splice>,
    ops: &mut Ops,
    placements: &mut Vec<Placement<'a>>,
) -> Result<(), SopsConfigError> {
    let values = || items.iter().map(|i| i.value.clone()).collect::<Vec<_>>();
    let l = &m.lines;
    match target {
        Target::Seq { seq, key } => match &seq.kind {
            NodeKind::Sequence { items: old, flow: false } => {
                let last = old.last().ok_or_else(|| unsupported(m, seq.span.start, "an empty block list".into(), ""))?;
                let (dash_col, gap) = geometry(m, last).ok_or_else(|| {
                    unsupported(m, last.span.start, "cannot find the `-` of this list item".into(), "put each item on its own `- ` line")
                })?;
                let lines = style.block_lines(dash_col, gap, items, Blank::Before);
                splices.push(l.lines_after(l.content_end(last), &lines));
                placements.push(Placement { seq, index: old.len(), splice: splices.len() - 1 });
                ops.push(seq, Op::Append(values()));
            }
            NodeKind::Sequence { items: old, flow: true } => {
                if old.is_empty() && items.iter().any(|i| i.flow.is_none()) {
                    // `creation_rules: []` becomes a block list: ` []` goes, rules follow. The
                    // span starts at an anchor or tag of the list (`&rules []`), which stay.
                    let key = key.filter(|k| l.line_start(k.span.start) == l.line_start(seq.span.start));
                    let key = key.ok_or_else(|| {
                        unsupported(m, seq.span.start, "an empty flow list not on its key's line".into(), "write `key:` instead")
                    })?;
                    let bracket = l.s[seq.span.clone()].rfind('[').map_or(seq.span.start, |i| seq.span.start + i);
                    let from = l.s[..bracket].trim_end_matches(' ').len();
                    splices.push(Splice { at: from..l.content_end(seq), text: String::new() });
                    let lines = style.block_lines(l.col(key.span.start) + style.seq_indent, style.rule_gap, items, Blank::After);
                    splices.push(l.lines_after(seq.span.end, &lines));
                } else {
                    flow_append(m, seq, old.iter().map(|n| (n.span.start, l.content_end(n))).collect(), ']', items, splices)?;
                }
                ops.push(seq, Op::Append(values()));
            }
            _ => return Err(unsupported(m, seq.span.start, "not a list".into(), "")),
        },
        Target::Before { seq, index } => {
            let NodeKind::Sequence { items: old, flow: false } = &seq.kind else {
                return Err(unsupported(
                    m,
                    seq.span.start,
                    "creation_rules is a flow list and a rule must go before another".into(),
                    "rewrite creation_rules in block style (`- path_regex: ...` lines)",
                ));
            };
            let item = &old[*index];
            let (dash_col, gap) = geometry(m, item)
                .ok_or_else(|| unsupported(m, item.span.start, "cannot find the `-` of this rule".into(), "start the rule with `- `"))?;
            let at = l.comments_above(l.line_start(l.dash_before(item.span.start).unwrap_or(item.span.start)));
            splices.push(l.lines_before(at, &style.block_lines(dash_col, gap, items, Blank::After)));
            placements.push(Placement { seq, index: *index, splice: splices.len() - 1 });
            ops.push(seq, Op::InsertBefore(*index, values()));
        }
        Target::Null { key, value } => {
            if !value.span.is_empty() {
                return Err(unsupported(
                    m,
                    value.span.start,
                    format!("`{}` is an explicit null", l.s[value.span.clone()].trim()),
                    "leave the value empty (`key:`) or write `[]`",
                ));
            }
            let lines = style.block_lines(l.col(key.span.start) + style.seq_indent, gap_for(style, items), items, Blank::After);
            splices.push(l.lines_after(key.span.end, &lines));
            ops.push(value, Op::Replace(V::Seq(values())));
        }
        Target::Entry { map, key, before } => render_entry(m, style, map, key, *before, items, splices, ops)?,
        Target::Group { seq, anchor } => {
            let old = block_items(seq).ok_or_else(|| unsupported(m, seq.span.start, "keys is not a block list".into(), ""))?;
            let last = &old[old.len() - 1];
            let (dash_col, gap) =
                geometry(m, last).ok_or_else(|| unsupported(m, last.span.start, "cannot find the `-` of this list item".into(), ""))?;
            let inner = block_items(last).and_then(|i| geometry(m, &i[0])).map_or(dash_col + 2, |(c, _)| c);
            let mut lines = vec![format!("{}-{}&{anchor}", sp(dash_col), sp(gap))];
            lines.extend(style.block_lines(inner, 1, items, Blank::After));
            splices.push(l.lines_after(l.content_end(last), &lines));
            placements.push(Placement { seq, index: old.len(), splice: splices.len() - 1 });
            ops.push(seq, Op::Append(vec![V::Seq(values())]));
        }
        Target::Str(node) => {
            let NodeKind::Scalar { value, style: s } = &node.kind else { unreachable!("string target") };
            let end = l.content_end(node);
            let at = match s {
                ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => end - 1,
                _ => end,
            };
            let mut add = items.iter().map(|i| i.literal.clone()).collect::<Vec<_>>().join(",");
            if !(value.trim().is_empty() || value.trim_end().ends_with(',')) {
                add.insert(0, ',');
            }
            splices.push(Splice { at: at..at, text: add.clone() });
            ops.push(node, Op::AppendStr(add));
        }
    }
    Ok(())
}

fn gap_for(style: &Style, items: &[Item]) -> usize {
    if items.iter().any(|i| i.rule) { style.rule_gap } else { 1 }
}

#[allow(clippy::too_many_arguments, reason = "the renderer's shared state (model, style, splices, ops) plus the entry's own three")]
fn render_entry<'a>(
    m: &Model<'a>,
    style: &Style,
    map: &'a Node,
    key: &str,
    before: Option<usize>,
    items: &[Item],
    splices: &mut Vec<Splice>,
    ops: &mut Ops,
) -> Result<(), SopsConfigError> {
    let l = &m.lines;
    let values: Vec<V> = items.iter().map(|i| i.value.clone()).collect();
    let entry = (key.to_string(), V::Seq(values));
    let NodeKind::Mapping { entries, flow } = &map.kind else {
        // An empty document: the new keys start the text.
        let kc = 0;
        let mut lines = vec![format!("{key}:")];
        lines.extend(style.block_lines(kc + style.seq_indent, gap_for(style, items), items, Blank::After));
        let at = l.s.len();
        let text: String = if l.s.is_empty() || l.s.ends_with('\n') {
            lines.iter().map(|x| format!("{x}{}", l.nl)).collect()
        } else {
            lines.iter().map(|x| format!("{}{x}", l.nl)).collect()
        };
        splices.push(Splice { at: at..at, text });
        ops.push(map, Op::AppendEntries(vec![entry]));
        return Ok(());
    };
    if *flow {
        let texts: Option<Vec<String>> = items.iter().map(|i| i.flow.clone()).collect();
        let texts = texts
            .ok_or_else(|| unsupported(m, map.span.start, "a flow mapping would need a rule".into(), "write the mapping in block style"))?;
        if before.is_some() {
            return Err(unsupported(m, map.span.start, "the document is a flow mapping".into(), "write it in block style"));
        }
        let one = Item::scalar(format!("{key}: [{}]", texts.join(", ")), "");
        let children = entries.iter().map(|(k, v)| (k.span.start, l.content_end(v))).collect();
        flow_append(m, map, children, '}', &[one], splices)?;
        ops.push(map, Op::AppendEntries(vec![entry]));
        return Ok(());
    }
    let kc = entries.first().map_or(0, |(k, _)| l.col(k.span.start));
    let mut lines = vec![format!("{}{key}:", sp(kc))];
    lines.extend(style.block_lines(kc + style.seq_indent, gap_for(style, items), items, Blank::After));
    match before {
        Some(i) => {
            let at = l.comments_above(l.line_start(entries[i].0.span.start));
            splices.push(l.lines_before(at, &lines));
            ops.push(map, Op::InsertEntriesBefore(i, vec![entry]));
        }
        None => {
            let last = entries.last().map(|(k, v)| if v.span.is_empty() { k } else { v });
            let end = last.map_or(map.span.end, |n| l.content_end(n));
            splices.push(l.lines_after(end, &lines));
            ops.push(map, Op::AppendEntries(vec![entry]));
        }
    }
    Ok(())
}
