//! Adding age recipients to a file in place.
//!
//! When a host joins a shared file, the file's values, their IVs, the data key and every
//! other stanza stay as they are: only a stanza is added and `lastmodified` and the MAC are
//! written anew. Re-emitting the whole file for that costs time in proportion to its
//! recipients (a fleet of 10,000 hosts has a 7 MB shared file), so the new stanza, time and MAC
//! are spliced into the text as read instead.
//!
//! That is done only where the splice cannot change what the rest of the text means: the text
//! was read by the block reader (block collections, one-line or literal scalars, nothing
//! else), the `age` list is a block sequence of block mappings, and the new items go on lines
//! of their own after its last item at its `-` column. A file laid out otherwise is emitted
//! whole, as before. Debug builds read every spliced result back and compare it with what was
//! meant.

use std::ops::Range;

use crate::sops::yaml::{Node, NodeKind, Parsed};

/// Where the parts an added recipient changes sit in the text as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Where new `age` items go: the start of the line after the list's last item.
    insert_at: usize,
    /// The column of the `age` items' `-`.
    dash: usize,
    /// The tokens of the `lastmodified` and `mac` values.
    lastmodified: Range<usize>,
    mac: Range<usize>,
}

/// The layout of a file the block reader read (`block`), when it allows a splice.
pub(crate) fn layout(text: &str, parsed: &Parsed, block: bool) -> Option<Layout> {
    let [root] = parsed.documents.as_slice() else { return None };
    if !block || root.anchor.is_some() {
        return None;
    }
    let sops = entry(root, "sops")?;
    let age = entry(sops, "age")?;
    let NodeKind::Sequence { items, flow: false } = &age.kind else { return None };
    if !items.iter().all(|i| matches!(i.kind, NodeKind::Mapping { flow: false, .. })) {
        return None;
    }
    let last = items.last()?;
    let lead = &text[line_start(text, last.span.start)..last.span.start];
    let dash = lead.len() - lead.trim_start_matches(' ').len();
    let after_dash = lead[dash..].strip_prefix('-')?;
    if after_dash.is_empty() || after_dash.bytes().any(|b| b != b' ') {
        return None;
    }
    let end = age.span.end;
    let insert_at =
        if text[line_start(text, end)..end].bytes().all(|b| b == b' ') { line_start(text, end) } else { end + text[end..].find('\n')? + 1 };
    let token = |name: &str| {
        let n = entry(sops, name)?;
        matches!(n.kind, NodeKind::Scalar { .. }).then(|| n.span.clone())
    };
    Some(Layout { insert_at, dash, lastmodified: token("lastmodified")?, mac: token("mac")? })
}

/// The value of `key` in a block mapping, when it is neither anchored nor tagged (an alias
/// elsewhere could name an anchored node, and a splice must change nothing but it).
fn entry<'a>(map: &'a Node, key: &str) -> Option<&'a Node> {
    let NodeKind::Mapping { entries, flow: false } = &map.kind else { return None };
    let (_, v) = entries.iter().find(|(k, _)| k.as_str() == Some(key))?;
    (v.anchor.is_none() && v.tag.is_none()).then_some(v)
}

fn line_start(text: &str, pos: usize) -> usize {
    text[..pos].rfind('\n').map_or(0, |i| i + 1)
}

/// The text with `items` (the new `age` items, rendered by the caller with their `-` at
/// [`Layout::dash`]) added and `lastmodified` and `mac` replaced by the given tokens.
pub(crate) fn apply(text: &str, layout: &Layout, items: &str, lastmodified: &str, mac: &str) -> String {
    let mut splices = [(layout.insert_at..layout.insert_at, items), (layout.lastmodified.clone(), lastmodified), (layout.mac.clone(), mac)];
    splices.sort_by_key(|(at, _)| at.start);
    let mut out = String::with_capacity(text.len() + items.len() + 64);
    let mut at = 0;
    for (range, new) in splices {
        out.push_str(&text[at..range.start]);
        out.push_str(new);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

impl Layout {
    pub(crate) fn dash(&self) -> usize {
        self.dash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_of(text: &str) -> Option<Layout> {
        let parsed = crate::sops::yaml::block::parse(text)?;
        layout(text, &parsed, true)
    }

    const FILE: &str = "a: ENC[x]\nsops:\n    age:\n        - recipient: r1\n          enc: |\n            l1\n            l2\n    lastmodified: \"t\"\n    mac: ENC[m]\n    version: 3.11.0\n";

    #[test]
    fn new_items_go_after_the_last_one_and_the_tokens_are_replaced() {
        let l = layout_of(FILE).expect("a layout");
        assert_eq!(l.dash, 8);
        let out = apply(FILE, &l, "        - recipient: r2\n          enc: e\n", "\"u\"", "ENC[n]");
        assert_eq!(
            out,
            "a: ENC[x]\nsops:\n    age:\n        - recipient: r1\n          enc: |\n            l1\n            l2\n        - recipient: r2\n          enc: e\n    lastmodified: \"u\"\n    mac: ENC[n]\n    version: 3.11.0\n"
        );
    }

    #[test]
    fn a_list_laid_out_otherwise_and_ending_on_a_plain_value_is_spliced() {
        let text = "sops:\n  mac: ENC[m]\n  age:\n    -   recipient: r1\n        enc: e1\n  lastmodified: t\n";
        let l = layout_of(text).expect("a layout");
        assert_eq!(l.dash, 4);
        let out = apply(text, &l, "    - recipient: r2\n      enc: e2\n", "u", "ENC[n]");
        assert_eq!(
            out,
            "sops:\n  mac: ENC[n]\n  age:\n    -   recipient: r1\n        enc: e1\n    - recipient: r2\n      enc: e2\n  lastmodified: u\n"
        );
    }

    #[test]
    fn layouts_a_splice_could_misread_are_refused() {
        let age = "        - recipient: r\n          enc: e\n";
        for text in [
            // a flow list, an anchored list, an aliased value, a compact nested item
            "sops:\n    age: [{recipient: r, enc: e}]\n    lastmodified: t\n    mac: m\n".to_string(),
            format!("sops:\n    age: &a\n{age}    lastmodified: t\n    mac: m\n"),
            format!("x: &t t\nsops:\n    age:\n{age}    lastmodified: *t\n    mac: m\n"),
            "sops:\n    age:\n        - - r\n    lastmodified: t\n    mac: m\n".to_string(),
            // an item whose mapping starts on the line after its `-`
            "sops:\n    age:\n        -\n          recipient: r\n          enc: e\n    lastmodified: t\n    mac: m\n".to_string(),
            // no mac, and a list ending the text without a newline
            format!("sops:\n    age:\n{age}    lastmodified: t\n"),
            format!("sops:\n    lastmodified: t\n    mac: m\n    age:\n{}", age.trim_end()),
        ] {
            // (Read by either reader and taken as block-read, so only the layout can refuse it.)
            let parsed = crate::sops::yaml::parse(&text).expect("valid YAML");
            assert_eq!(layout(&text, &parsed, true), None, "{text}");
        }
        // A layout that would do, read by the event reader: refused too.
        let parsed = crate::sops::yaml::parse(FILE).expect("valid YAML");
        assert!(layout(FILE, &parsed, true).is_some());
        assert_eq!(layout(FILE, &parsed, false), None);
    }
}
