//! Revocation (`remove_host`) and rotation (`replace_host_recipient`): in-place removal of
//! exactly the host's lines or list items, and in-place replacement of one scalar.

use super::builder::Expect;
use super::model::{Model, describe};
use super::refs::{editable, host_file, validate_host, validate_recipient};
use super::text::Splice;
use super::value::{Op, Ops, V};
use super::verify;
use super::{Change, Edit, EditPolicy, SopsConfig, SopsConfigError};
use crate::sops::yaml::{Node, NodeKind, ScalarStyle};

/// The sequence holding `target` as an item, and its index.
fn parent<'a>(m: &Model<'a>, target: &Node) -> Option<(&'a Node, usize)> {
    let mut found = None;
    m.root.walk(&mut |n| {
        if let NodeKind::Sequence { items, .. } = &n.kind
            && let Some(i) = items.iter().position(|it| std::ptr::eq(it, target))
        {
            found = Some((n, i));
        }
    });
    found
}

/// The removal of item `index` of `seq`: whole lines for a block list (refused when the item
/// shares a line with something else), the item and one separator for a flow list. For a
/// rule (`rule`), a blank line above it goes too when a blank line or the end of the list
/// follows, undoing the separation `add_hosts` keeps between rules.
fn remove_item(m: &Model<'_>, seq: &Node, index: usize, rule: bool) -> Result<Splice, SopsConfigError> {
    let l = &m.lines;
    let NodeKind::Sequence { items, flow } = &seq.kind else { unreachable!("parent is a sequence") };
    let item = &items[index];
    if *flow {
        let at = if index + 1 < items.len() {
            item.span.start..items[index + 1].span.start
        } else if index > 0 {
            l.content_end(&items[index - 1])..l.content_end(item)
        } else {
            item.span.start..l.content_end(item)
        };
        return Ok(Splice { at, text: String::new() });
    }
    let refuse = || {
        SopsConfigError::unsupported(
            l.line_no(item.span.start),
            "this list item shares its line with other content",
            "put it on its own `- ` line, or remove it by hand",
        )
    };
    let dash = l.dash_before(item.span.start).ok_or_else(refuse)?;
    let start = l.line_start(dash);
    let end = l.content_end(item);
    let rest = l.line(l.line_start(end))[end - l.line_start(end)..].trim();
    if !l.s[start..dash].trim().is_empty() || !(rest.is_empty() || rest.starts_with('#')) {
        return Err(refuse());
    }
    let stop = l.next_line(end).unwrap_or(l.s.len());
    let start = match l.prev_line(start) {
        Some(prev) if rule && l.is_blank(prev) && (index + 1 == items.len() || stop == l.s.len() || l.is_blank(stop)) => prev,
        _ => start,
    };
    Ok(Splice { at: start..stop, text: String::new() })
}

fn op_remove(ops: &mut Ops, seq: &Node, index: usize, removed_all: bool) {
    match &seq.kind {
        NodeKind::Sequence { flow: false, .. } if removed_all => ops.push(seq, Op::Replace(V::Null)),
        _ => ops.push(seq, Op::Remove(index)),
    }
}

#[allow(clippy::too_many_lines, reason = "removal plans every place a host appears on one parse, as adding does")]
pub(crate) fn remove_host(cfg: &SopsConfig, host: &str, policy: &EditPolicy) -> Result<Edit, SopsConfigError> {
    let m = cfg.model();
    editable(m)?;
    validate_host(host)?;
    let anchor = m.anchor(host);
    let recipient = match anchor {
        Some(n) if !n.is_null() && n.as_str().is_some() => n.as_str().map(str::to_string),
        Some(n) => {
            return Err(SopsConfigError::AnchorTaken { name: host.into(), line: n.line + 1, what: describe(n).into() });
        }
        None => None,
    };
    let file = host_file(policy, host);
    let rules_seq = m.rules_entry.map(|(_, v)| v).filter(|v| matches!(v.kind, NodeKind::Sequence { .. }));
    let mut changes = Vec::new();
    let mut removals: Vec<(&Node, usize)> = Vec::new();
    let mut gone: Vec<std::ops::Range<usize>> = Vec::new();
    // Every rule written for the host's file goes (a later duplicate would take over).
    if let Some(seq) = rules_seq {
        for r in m.rules.iter().filter(|r| r.is_specific_to(&file)) {
            removals.push((seq, r.index));
            gone.push(r.item.span.clone());
            changes.push(Change::RuleRemoved { host: host.into(), line: r.line });
        }
    }
    // The anchor and its aliases are list items; literal copies live in rule strings.
    let mut strings: Vec<&Node> = Vec::new();
    if let (Some(node), Some(rec)) = (anchor, recipient.as_deref()) {
        let mut uses: Vec<&Node> = vec![node];
        m.root.walk(&mut |n| match &n.kind {
            NodeKind::Alias { name } if name == host && std::ptr::eq(m.resolve(n), node) => uses.push(n),
            NodeKind::Scalar { value, .. }
                if !std::ptr::eq(n, node)
                    && value.split(',').any(|p| p.trim() == rec)
                    && rules_seq.is_some_and(|r| r.span.contains(&n.span.start)) =>
            {
                strings.push(n);
            }
            _ => {}
        });
        changes.insert(0, Change::AnchorRemoved { host: host.into() });
        for u in uses.into_iter().filter(|u| !inside(&gone, u)) {
            let (seq, i) = parent(m, u).ok_or_else(|| {
                SopsConfigError::unsupported(u.line + 1, format!("`{host}` is used here outside a list"), "remove it by hand")
            })?;
            removals.push((seq, i));
            if let Some(rule) = m.rules.iter().find(|r| r.item.span.contains(&u.span.start)) {
                changes.push(Change::HostLeftRule { host: host.into(), line: rule.line });
            }
        }
    }
    let mut splices = Vec::new();
    let mut ops = Ops::default();
    let mut seqs: Vec<&Node> = Vec::new();
    for (seq, _) in &removals {
        if !seqs.iter().any(|s| std::ptr::eq(*s, *seq)) {
            seqs.push(seq);
        }
    }
    for seq in seqs {
        let NodeKind::Sequence { items, .. } = &seq.kind else {
            continue;
        };
        let rule = rules_seq.is_some_and(|r| std::ptr::eq(r, seq));
        let mut idx: Vec<usize> = removals.iter().filter(|(s, _)| std::ptr::eq(*s, seq)).map(|(_, i)| *i).collect();
        idx.sort_unstable();
        idx.dedup();
        let all = idx.len() == items.len();
        for i in idx {
            splices.push(remove_item(m, seq, i, rule)?);
            op_remove(&mut ops, seq, i, all);
        }
    }
    let rec = recipient.clone().unwrap_or_default();
    for n in strings.into_iter().filter(|n| !inside(&gone, n)) {
        splices.push(remove_from_string(m, n, &rec)?);
        let kept: Vec<&str> = n.as_str().unwrap_or_default().split(',').filter(|p| p.trim() != rec).collect();
        ops.push(n, Op::Replace(V::Str(kept.join(","))));
        if let Some(rule) = m.rules.iter().find(|r| r.item.span.contains(&n.span.start)) {
            changes.push(Change::HostLeftRule { host: host.into(), line: rule.line });
        }
    }
    let expect: Vec<Expect> = match &recipient {
        Some(r) => {
            std::iter::once(file).chain(policy.shared.iter().cloned()).map(|path| Expect::Excludes { path, recipient: r.clone() }).collect()
        }
        None => Vec::new(),
    };
    verify::check(cfg, m, splices, &[], &ops, changes, &expect, &[])
}

fn inside(ranges: &[std::ops::Range<usize>], n: &Node) -> bool {
    ranges.iter().any(|r| r.contains(&n.span.start))
}

/// Removes `rec` and one adjacent comma from a comma-separated string scalar.
fn remove_from_string(m: &Model<'_>, n: &Node, rec: &str) -> Result<Splice, SopsConfigError> {
    let token = &m.lines.s[n.span.clone()];
    let at = token
        .find(rec)
        .ok_or_else(|| SopsConfigError::unsupported(n.line + 1, "the recipient is escaped in this string", "remove it by hand"))?;
    let (mut from, mut to) = (n.span.start + at, n.span.start + at + rec.len());
    let s = m.lines.s;
    let after = s[to..n.span.end].find(|c: char| !c.is_whitespace());
    if after.is_some_and(|i| s[to + i..].starts_with(',')) {
        to = to + after.unwrap_or(0) + 1;
    } else if let Some(i) = s[n.span.start..from].rfind(',') {
        from = n.span.start + i;
    }
    Ok(Splice { at: from..to, text: String::new() })
}

pub(crate) fn replace_host_recipient(cfg: &SopsConfig, host: &str, recipient: &str) -> Result<Edit, SopsConfigError> {
    let m = cfg.model();
    editable(m)?;
    validate_host(host)?;
    validate_recipient(recipient)?;
    let node = m.anchor(host).ok_or_else(|| SopsConfigError::UnknownHost { host: host.into() })?;
    let (NodeKind::Scalar { value: old, style }, false) = (&node.kind, node.is_null()) else {
        return Err(SopsConfigError::AnchorTaken { name: host.into(), line: node.line + 1, what: describe(node).into() });
    };
    if old == recipient {
        return Ok(Edit::none(cfg));
    }
    if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) || old.contains(',') {
        return Err(SopsConfigError::unsupported(
            node.line + 1,
            format!("anchor `&{host}` is a block or multi-value string"),
            "write it as `&name age1...` on one line",
        ));
    }
    let mut splices = Vec::new();
    let mut ops = Ops::default();
    let mut targets = vec![node];
    if let Some((_, rules)) = m.rules_entry {
        rules.walk(&mut |n| {
            if !std::ptr::eq(n, node) && n.as_str().is_some_and(|v| v.split(',').any(|p| p.trim() == old)) {
                targets.push(n);
            }
        });
    }
    for n in &targets {
        let token = &m.lines.s[n.span.clone()];
        let at = token
            .find(old.as_str())
            .ok_or_else(|| SopsConfigError::unsupported(n.line + 1, "the recipient is escaped in this string", "edit it by hand"))?;
        let start = n.span.start + at;
        splices.push(Splice { at: start..start + old.len(), text: recipient.into() });
        let value = n.as_str().unwrap_or_default().replace(old.as_str(), recipient);
        ops.push(n, Op::Replace(V::Str(value)));
    }
    let changes = vec![Change::RecipientReplaced { host: host.into(), places: targets.len() }];
    verify::check(cfg, m, splices, &[], &ops, changes, &[], &[])
}
