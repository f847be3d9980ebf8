//! The measured style of the file, and new rules and list items written in it.
//!
//! Measured, not assumed: the column of a list's `-` and the spaces after it, whether lists
//! under a key are indented or indentless, whether rules use `key_groups` or a top-level
//! `age`, flow or block age lists, the quoting of `path_regex`, blank lines between rules.
//! Defaults (2 spaces) apply only when the file has no example to follow.

use super::item::Item;
use super::model::Model;
use super::text;
use super::value::V;
use crate::sops::yaml::{Node, NodeKind, ScalarStyle};

#[derive(Clone, Copy)]
enum AgeStyle {
    Block { off: usize, gap: usize },
    Flow,
}

#[derive(Clone, Copy)]
enum Shape {
    KeyGroups { off: usize, gap: usize, age: AgeStyle },
    TopLevel(AgeStyle),
}

/// The measured style of the file.
pub(crate) struct Style {
    pub seq_indent: usize,
    pub rule_gap: usize,
    shape: Shape,
    regex_style: ScalarStyle,
    blank_between_rules: bool,
}

pub(crate) const fn sp(n: usize) -> Spaces {
    Spaces(n)
}

pub(crate) struct Spaces(usize);

impl std::fmt::Display for Spaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:1$}", "", self.0)
    }
}

/// Block-list geometry of an item: the `-` column and the spaces after it.
pub(crate) fn geometry(m: &Model<'_>, item: &Node) -> Option<(usize, usize)> {
    let dash = m.lines.dash_before(item.span.start)?;
    let same_line = m.lines.line_start(dash) == m.lines.line_start(item.span.start);
    Some((m.lines.col(dash), if same_line { item.span.start - dash - 1 } else { 1 }))
}

pub(crate) fn block_items(n: &Node) -> Option<&[Node]> {
    match &n.kind {
        NodeKind::Sequence { items, flow: false } if !items.is_empty() => Some(items),
        _ => None,
    }
}

impl Style {
    #[allow(clippy::too_many_lines, reason = "measures the file's style in one scan of its lines")]
    pub(crate) fn detect(m: &Model<'_>) -> Style {
        let mut seq_indent = None;
        m.root.walk(&mut |n| {
            if let NodeKind::Mapping { entries, flow: false } = &n.kind {
                for (k, v) in entries {
                    if let (None, Some(items)) = (seq_indent, block_items(v)) {
                        seq_indent = geometry(m, &items[0]).map(|(c, _)| c.saturating_sub(m.lines.col(k.span.start)));
                    }
                }
            }
        });
        let seq_indent = seq_indent.unwrap_or(2);
        let default_age = AgeStyle::Block { off: seq_indent, gap: 1 };
        let age_style = |map: &Node| -> Option<AgeStyle> {
            let f = m.lookup(map, "age").filter(|f| f.direct)?;
            match &f.raw.kind {
                NodeKind::Sequence { flow: true, .. } => Some(AgeStyle::Flow),
                NodeKind::Sequence { items, .. } if !items.is_empty() => {
                    geometry(m, &items[0]).map(|(c, gap)| AgeStyle::Block { off: c.saturating_sub(m.lines.col(f.key.span.start)), gap })
                }
                _ => None,
            }
        };
        let mut shape = None;
        let mut rule_gap = 1;
        for rule in m.rules.iter().rev() {
            let Some(map) = rule.map.filter(|_| !matches!(rule.item.kind, NodeKind::Alias { .. })) else {
                continue;
            };
            if let Some((_, gap)) = geometry(m, rule.item) {
                rule_gap = gap;
            }
            if let Some(kg) = m.lookup(map, "key_groups").filter(|f| f.direct) {
                if let Some(groups) = block_items(kg.raw)
                    && let Some((c, gap)) = geometry(m, &groups[0])
                {
                    let off = c.saturating_sub(m.lines.col(kg.key.span.start));
                    shape = Some(Shape::KeyGroups { off, gap, age: age_style(&groups[0]).unwrap_or(default_age) });
                    break;
                }
            } else if let Some(age) = age_style(map) {
                shape = Some(Shape::TopLevel(age));
                break;
            }
        }
        let regex_style = m
            .rules
            .iter()
            .rev()
            .find_map(|r| r.map.and_then(|mp| m.lookup(mp, "path_regex")))
            .and_then(|f| match &f.value.kind {
                NodeKind::Scalar { style, .. } => Some(*style),
                _ => None,
            })
            .unwrap_or(ScalarStyle::Plain);
        let blank_between_rules = match m.rules.as_slice() {
            [.., a, b] => m.lines.dash_before(b.item.span.start).is_some_and(|dash| {
                let mut line = m.lines.line_start(dash);
                let end = m.lines.line_start(m.lines.content_end(a.item));
                let mut blank = false;
                while let Some(prev) = m.lines.prev_line(line).filter(|p| *p > end) {
                    blank |= m.lines.is_blank(prev);
                    line = prev;
                }
                blank
            }),
            _ => false,
        };
        Style {
            seq_indent,
            rule_gap,
            shape: shape.unwrap_or(Shape::KeyGroups { off: seq_indent, gap: 1, age: default_age }),
            regex_style,
            blank_between_rules,
        }
    }

    /// A creation rule with one key group, in the file's style: `age:` (texts as written,
    /// values as read), then `pgp:` when there are PGP keys. Each item is `(text, value)`.
    pub(crate) fn rule(&self, path_regex: &str, ages: &[(String, String)], pgps: &[(String, String)]) -> Item {
        let re = text::scalar(path_regex, self.regex_style);
        let mut lines = vec![(0, format!("path_regex: {re}"))];
        let list_lines = |lines: &mut Vec<(usize, String)>,
                          indent: usize,
                          first: Option<String>,
                          style: AgeStyle,
                          key: &str,
                          items: &[(String, String)]| {
            let head = first.unwrap_or_default();
            let texts: Vec<&str> = items.iter().map(|(t, _)| t.as_str()).collect();
            match style {
                AgeStyle::Flow => lines.push((indent, format!("{head}{key}: [{}]", texts.join(", ")))),
                AgeStyle::Block { off, gap } => {
                    lines.push((indent, format!("{head}{key}:")));
                    let base = indent + head.len() + off;
                    lines.extend(texts.iter().map(|a| (base, format!("-{}{a}", sp(gap)))));
                }
            }
        };
        let values = |items: &[(String, String)]| V::strs(items.iter().map(|(_, v)| v.clone()));
        let mut group = vec![("age".to_string(), values(ages))];
        if !pgps.is_empty() {
            group.push(("pgp".to_string(), values(pgps)));
        }
        let regex = ("path_regex".to_string(), V::Str(path_regex.into()));
        let value = match self.shape {
            Shape::KeyGroups { off, gap, age: style } => {
                lines.push((0, "key_groups:".into()));
                let dash = format!("-{}", sp(gap));
                let inner = off + dash.len();
                list_lines(&mut lines, off, Some(dash), style, "age", ages);
                if !pgps.is_empty() {
                    list_lines(&mut lines, inner, None, style, "pgp", pgps);
                }
                V::Map(vec![regex, ("key_groups".into(), V::Seq(vec![V::Map(group)]))])
            }
            Shape::TopLevel(style) => {
                list_lines(&mut lines, 0, None, style, "age", ages);
                if !pgps.is_empty() {
                    list_lines(&mut lines, 0, None, style, "pgp", pgps);
                }
                let mut entries = vec![regex];
                entries.extend(group);
                V::Map(entries)
            }
        };
        Item { lines, flow: None, value, literal: String::new(), rule: true }
    }

    pub(crate) fn block_lines(&self, dash_col: usize, gap: usize, items: &[Item], blank: Blank) -> Vec<String> {
        let mut out = Vec::new();
        for item in items {
            let sep = item.rule && self.blank_between_rules;
            if sep && blank == Blank::Before {
                out.push(String::new());
            }
            for (i, (rel, t)) in item.lines.iter().enumerate() {
                out.push(if i == 0 { format!("{}-{}{t}", sp(dash_col), sp(gap)) } else { format!("{}{t}", sp(dash_col + 1 + gap + rel)) });
            }
            if sep && blank == Blank::After {
                out.push(String::new());
            }
        }
        out
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
pub(crate) enum Blank {
    Before,
    After,
}
