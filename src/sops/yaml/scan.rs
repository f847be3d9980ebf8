//! Folds saphyr's positioned events into [`Node`]s and finds anchor names and comments.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use saphyr_parser::{Event, Parser, Span};

use super::{Comment, Node, NodeKind, Parsed, YamlError};

/// Maps saphyr's character indices to byte offsets (it counts in characters). In ASCII
/// text, the common case, they are the same and no table is built (a table costs eight
/// bytes per character: 16 MB for a 2 MB `.sops.yaml`).
struct Offsets {
    /// `None` for ASCII text.
    bytes: Option<Vec<usize>>,
    len: usize,
}

impl Offsets {
    fn new(text: &str) -> Self {
        let bytes = (!text.is_ascii()).then(|| {
            let mut bytes: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
            bytes.push(text.len());
            bytes
        });
        Self { bytes, len: text.len() }
    }

    fn byte(&self, char_index: usize) -> usize {
        match &self.bytes {
            None => char_index.min(self.len),
            Some(bytes) => bytes.get(char_index).copied().unwrap_or_else(|| bytes.last().copied().unwrap_or(0)),
        }
    }

    fn range(&self, span: &Span) -> Range<usize> {
        let start = self.byte(span.start.index());
        start..self.byte(span.end.index()).max(start)
    }
}

/// A collection being built.
enum Open {
    Mapping { node: Node, entries: Vec<(Node, Node)>, pending_key: Option<Node>, flow: bool },
    Sequence { node: Node, items: Vec<Node>, flow: bool },
}

#[allow(clippy::too_many_lines, reason = "a single-pass scanner: one arm per token kind")]
pub(super) fn parse(text: &str) -> Result<Parsed, YamlError> {
    let offsets = Offsets::new(text);
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    // Spans of scalar and alias tokens: the text no comment can start in.
    let mut covered: Vec<Range<usize>> = Vec::new();
    // (where to look for the `&name`, the node, its depth in the tree)
    let mut pending_anchors: Vec<(usize, Node, usize)> = Vec::new();
    let mut doc_root: Option<Node> = None;
    let mut prev_end = 0usize;

    for item in parser.by_ref() {
        let (event, span) = item.map_err(|e| {
            let at = offsets.byte(e.marker().index());
            let message = match text.get(at..).filter(|_| e.info().contains("unknown anchor")) {
                Some(rest) => {
                    let alias: String = rest.chars().take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}')).collect();
                    format!("alias `{alias}` refers to no anchor defined before it")
                }
                None => e.info().to_string(),
            };
            YamlError { message, line: e.marker().line(), col: e.marker().col() + 1 }
        })?;
        let range = offsets.range(&span);
        let (line, col) = (span.start.line().saturating_sub(1), span.start.col());
        let is_mapping = matches!(event, Event::MappingStart(..));
        let finished: Option<Node> = match event {
            Event::Scalar(value, style, anchor_id, tag) => {
                // saphyr ends a quoted scalar's span at the next token; end it at the
                // closing quote, so a comment after it on the same line is seen.
                let range = quoted_end(text, range.clone(), style);
                covered.push(range.clone());
                let node = Node {
                    kind: NodeKind::Scalar { value: value.into_owned(), style },
                    span: range.clone(),
                    line,
                    col,
                    anchor: None,
                    tag: tag.map(|t| format!("{}{}", t.handle, t.suffix)),
                };
                if anchor_id > 0 {
                    pending_anchors.push((prev_end, node.clone(), stack.len()));
                }
                Some(node)
            }
            Event::Alias(_) => {
                covered.push(range.clone());
                let name = text[range.clone()].trim_start_matches('*').to_string();
                Some(Node { kind: NodeKind::Alias { name }, span: range.clone(), line, col, anchor: None, tag: None })
            }
            Event::MappingStart(anchor_id, tag) | Event::SequenceStart(anchor_id, tag) => {
                let node = Node {
                    kind: NodeKind::Scalar { value: String::new(), style: saphyr_parser::ScalarStyle::Plain },
                    span: range.clone(),
                    line,
                    col,
                    anchor: None,
                    tag: tag.map(|t| format!("{}{}", t.handle, t.suffix)),
                };
                if anchor_id > 0 {
                    pending_anchors.push((prev_end, node.clone(), stack.len()));
                }
                // The start event of a flow collection spans its properties and the opening
                // bracket; a block one's never holds a bracket (an indentless sequence's is
                // empty and sits on its first item, which may itself be a flow collection).
                let opening = text[range.clone()].trim_end();
                stack.push(if is_mapping {
                    Open::Mapping { node, entries: Vec::new(), pending_key: None, flow: opening.ends_with('{') }
                } else {
                    Open::Sequence { node, items: Vec::new(), flow: opening.ends_with('[') }
                });
                None
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(open) = stack.pop() else {
                    return Err(YamlError { message: "unbalanced collection end".into(), line: line + 1, col: col + 1 });
                };
                Some(close(open, &range))
            }
            Event::DocumentStart(_) => {
                doc_root = None;
                None
            }
            Event::DocumentEnd => {
                documents.push(doc_root.take().unwrap_or_else(|| Node {
                    kind: NodeKind::Scalar { value: String::new(), style: saphyr_parser::ScalarStyle::Plain },
                    span: range.clone(),
                    line,
                    col,
                    anchor: None,
                    tag: None,
                }));
                None
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
        };
        prev_end = prev_end.max(range.end);
        if let Some(node) = finished {
            attach(&mut stack, &mut doc_root, node);
        }
    }

    let comments = find_comments(text, &covered);
    let names = AnchorNames { text, comments: &comments };
    // Anchors were recorded by position; resolve their names from the text now that the
    // comments (which may contain `&`) are known.
    let mut named: HashMap<(usize, usize), String> = HashMap::new();
    for (search_from, node, depth) in &pending_anchors {
        // A scalar's span holds its properties, then its content, which may itself contain
        // `&word` (`- &hosts\n  a &b c` is the string `a &b c` anchored `hosts`): only the
        // properties are searched.
        let until = if matches!(node.kind, NodeKind::Scalar { .. }) && !node.span.is_empty() {
            properties_end(text, node.span.clone())
        } else {
            node.span.start.max(*search_from)
        };
        if let Some(name) = names.last_anchor(*search_from, until) {
            named.insert((node.span.start, *depth), name);
        }
    }
    for doc in &mut documents {
        assign_anchors(doc, 0, &mut named);
    }
    check_aliases(&documents)?;
    Ok(Parsed { documents, comments })
}

/// Where a scalar's content starts in `span`: past the leading `&anchor` and `!tag` tokens and
/// the white space around them.
fn properties_end(text: &str, span: Range<usize>) -> usize {
    let bytes = text.as_bytes();
    let mut i = span.start;
    loop {
        while i < span.end && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if i < span.end && matches!(bytes[i], b'&' | b'!') {
            while i < span.end && !matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
            }
        } else {
            return i;
        }
    }
}

/// The span of a quoted scalar cut just after its closing quote. `range` starts at the
/// scalar's properties (`&anchor`, `!tag`) or its opening quote.
fn quoted_end(text: &str, range: Range<usize>, style: saphyr_parser::ScalarStyle) -> Range<usize> {
    use saphyr_parser::ScalarStyle;
    let quote = match style {
        ScalarStyle::SingleQuoted => b'\'',
        ScalarStyle::DoubleQuoted => b'"',
        _ => return range,
    };
    let bytes = text.as_bytes();
    let Some(open) = bytes[range.clone()].iter().position(|&b| b == quote).map(|p| range.start + p) else { return range };
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b if b == quote => return range.start..(i + 1).max(range.start),
            _ => i += 1,
        }
    }
    range
}

fn close(open: Open, end: &Range<usize>) -> Node {
    match open {
        Open::Mapping { mut node, entries, flow, .. } => {
            node.span.end = if flow { end.end } else { entries.last().map_or(node.span.start, |(_, v)| v.span.end) };
            node.kind = NodeKind::Mapping { entries, flow };
            node
        }
        Open::Sequence { mut node, items, flow } => {
            node.span.end = if flow { end.end } else { items.last().map_or(node.span.start, |v| v.span.end) };
            node.kind = NodeKind::Sequence { items, flow };
            node
        }
    }
}

fn attach(stack: &mut [Open], doc_root: &mut Option<Node>, node: Node) {
    match stack.last_mut() {
        None => *doc_root = Some(node),
        Some(Open::Sequence { items, .. }) => items.push(node),
        Some(Open::Mapping { entries, pending_key, .. }) => match pending_key.take() {
            None => *pending_key = Some(node),
            Some(key) => entries.push((key, node)),
        },
    }
}

/// Finds `#` comments in the text outside scalar and alias tokens.
fn find_comments(text: &str, covered: &[Range<usize>]) -> Vec<Comment> {
    let mut covered: Vec<&Range<usize>> = covered.iter().filter(|r| !r.is_empty()).collect();
    covered.sort_by_key(|r| r.start);
    let bytes = text.as_bytes();
    let mut comments = Vec::new();
    let mut cover_idx = 0;
    let mut line = 0usize;
    let mut line_start = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        while cover_idx < covered.len() && covered[cover_idx].end <= i {
            cover_idx += 1;
        }
        if let Some(r) = covered.get(cover_idx)
            && r.start <= i
        {
            // Skip the token, counting the lines it spans.
            line += bytes[i..r.end].iter().filter(|&&b| b == b'\n').count();
            if let Some(p) = text[..r.end].rfind('\n')
                && p >= i
            {
                line_start = p + 1;
            }
            i = r.end;
            continue;
        }
        match bytes[i] {
            b'\n' => {
                line += 1;
                line_start = i + 1;
                i += 1;
            }
            b'#' if i == line_start || matches!(bytes[i - 1], b' ' | b'\t') => {
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                let end_trim = if text[i..end].ends_with('\r') { end - 1 } else { end };
                let inline = !text[line_start..i].trim().is_empty();
                comments.push(Comment { span: i..end_trim, text: text[i + 1..end_trim].to_string(), line, inline });
                i = end;
            }
            _ => i += 1,
        }
    }
    comments
}

struct AnchorNames<'a> {
    text: &'a str,
    comments: &'a [Comment],
}

impl AnchorNames<'_> {
    /// The last `&name` token in `from..until` that is not inside a comment.
    fn last_anchor(&self, from: usize, until: usize) -> Option<String> {
        let until = until.min(self.text.len());
        if from >= until {
            return None;
        }
        let region = &self.text[from..until];
        let mut found = None;
        for (off, _) in region.match_indices('&') {
            let at = from + off;
            // Comments are in text order: the only one that can hold `at` is the first that
            // ends after it.
            let i = self.comments.partition_point(|c| c.span.end <= at);
            if self.comments.get(i).is_some_and(|c| c.span.contains(&at)) {
                continue;
            }
            let before = self.text[..at].chars().next_back();
            if !matches!(before, None | Some(' ' | '\t' | '\n' | '\r' | '[' | '{' | ',' | '-' | ':' | '?')) {
                continue;
            }
            let name: String =
                self.text[at + 1..].chars().take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '[' | ']' | '{' | '}')).collect();
            if !name.is_empty() {
                found = Some(name);
            }
        }
        found
    }
}

fn assign_anchors(node: &mut Node, depth: usize, named: &mut HashMap<(usize, usize), String>) {
    // A collection and its first child can share a start (an indentless sequence starts on
    // its first item), so the depth tells them apart.
    if let Some(name) = named.remove(&(node.span.start, depth)) {
        node.anchor = Some(name);
    }
    match &mut node.kind {
        NodeKind::Mapping { entries, .. } => {
            for (k, v) in entries {
                assign_anchors(k, depth + 1, named);
                assign_anchors(v, depth + 1, named);
            }
        }
        NodeKind::Sequence { items, .. } => {
            for item in items {
                assign_anchors(item, depth + 1, named);
            }
        }
        NodeKind::Scalar { .. } | NodeKind::Alias { .. } => {}
    }
}

fn check_aliases(documents: &[Node]) -> Result<(), YamlError> {
    let mut defined: HashSet<&str> = HashSet::new();
    let mut bad: Option<&Node> = None;
    for doc in documents {
        doc.walk(&mut |n| {
            if let Some(a) = &n.anchor {
                defined.insert(a);
            }
            if let NodeKind::Alias { name } = &n.kind
                && bad.is_none()
                && !defined.contains(&name.as_str())
            {
                bad = Some(n);
            }
        });
    }
    match bad {
        Some(n) => Err(YamlError {
            message: format!("alias `*{}` refers to no anchor defined before it", alias_name(n)),
            line: n.line + 1,
            col: n.col + 1,
        }),
        None => Ok(()),
    }
}

fn alias_name(n: &Node) -> &str {
    match &n.kind {
        NodeKind::Alias { name } => name,
        _ => "",
    }
}
