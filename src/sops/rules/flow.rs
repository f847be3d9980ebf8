//! Appending to flow collections (`[a, b]`, `{k: v}`) in their own layout.

use super::SopsConfigError;
use super::item::Item;
use super::model::Model;
use super::style::sp;
use super::text::Splice;
use crate::sops::yaml::Node;

fn unsupported(m: &Model<'_>, at: usize, what: String, todo: &str) -> SopsConfigError {
    SopsConfigError::unsupported(m.lines.line_no(at), what, todo)
}

/// Appends flow items before the closing bracket of `node`, following its layout: one line
/// (`[a, b]` → `[a, b, c]`, same separator) or one item per line (keeping a trailing comma
/// style, and an inline comment on the last item in place).
pub(crate) fn flow_append(
    m: &Model<'_>,
    node: &Node,
    children: Vec<(usize, usize)>,
    close: char,
    items: &[Item],
    splices: &mut Vec<Splice>,
) -> Result<(), SopsConfigError> {
    let l = &m.lines;
    let texts: Option<Vec<String>> = items.iter().map(|i| i.flow.clone()).collect();
    let texts = texts
        .ok_or_else(|| unsupported(m, node.span.start, "a flow list would need a multi-line item".into(), "rewrite it in block style"))?;
    let end = l.content_end(node);
    if !l.s[..end].ends_with(close) {
        return Err(unsupported(m, node.span.start, format!("cannot find the closing `{close}`"), ""));
    }
    let close_at = end - 1;
    let Some(&(_, last_end)) = children.last() else {
        let inner = &l.s[node.span.start..close_at];
        let at = node.span.start + inner.rfind(['[', '{']).map_or(inner.len(), |i| i + 1);
        splices.push(Splice { at: at..at, text: texts.join(", ") });
        return Ok(());
    };
    // Spans of odd children (`[a, ? b]` holds a one-pair mapping) can end past the bracket.
    let Some(between) = l.s.get(last_end..close_at) else {
        return Err(unsupported(
            m,
            node.span.start,
            "cannot tell where the last item of this flow collection ends".into(),
            "rewrite it in block style",
        ));
    };
    if !between.contains('\n') {
        let sep = match children.as_slice() {
            [(_, a_end), (b, _), ..] => l.s.get(*a_end..*b).unwrap_or(", ").to_string(),
            _ => ", ".to_string(),
        };
        let sep = if sep.trim() == "," && !sep.contains('\n') { sep } else { ", ".into() };
        splices.push(Splice { at: last_end..last_end, text: texts.iter().map(|t| format!("{sep}{t}")).collect() });
        return Ok(());
    }
    let (first_start, _) = children[0];
    let indent = if l.s[l.line_start(first_start)..first_start].trim().is_empty() { l.col(first_start) } else { l.col(close_at) + 2 };
    let line_end = |pos: usize| {
        let e = l.s[pos..].find('\n').map_or(l.s.len(), |i| pos + i);
        if l.s[..e].ends_with('\r') { e - 1 } else { e }
    };
    if between.trim_start().starts_with(',') {
        let comma = last_end + between.find(',').unwrap_or(0);
        let at = line_end(comma);
        let text = texts.iter().map(|t| format!("{}{}{t},", l.nl, sp(indent))).collect();
        splices.push(Splice { at: at..at, text });
    } else {
        splices.push(Splice { at: last_end..last_end, text: ",".into() });
        let at = line_end(last_end);
        let text = texts.iter().map(|t| format!("{}{}{t}", l.nl, sp(indent))).collect::<Vec<_>>().join(",");
        splices.push(Splice { at: at..at, text });
    }
    Ok(())
}
