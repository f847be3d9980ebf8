//! A direct reader for the plain block YAML that sops and hostsmith write, several times
//! faster than folding saphyr's events: a 10,000-host fleet's `.sops.yaml` (2 MB) and shared
//! SOPS file (7 MB, 10,000 age stanzas) are read on every command that touches them.
//!
//! It reads only a strict subset: block mappings and sequences indented with spaces, plain,
//! single-quoted and escape-free double-quoted scalars on one line, `|` literal block scalars
//! without an indentation indicator, `&anchor`s on values and `*alias`es, and comments. For
//! anything else (flow collections, tags, multi-line flow scalars, tabs, `\r`, several
//! documents, invalid text, …) it gives up and returns `None`, and [`super::scan`] reads the
//! text: what it returns is exactly what that reader returns (debug builds check every
//! parse against it, which runs every test and fuzz case through both).

use std::collections::HashSet;
use std::ops::Range;

use saphyr_parser::ScalarStyle;

use super::{Comment, Node, NodeKind, Parsed};

/// Parses `text` when it lies in the subset; `None` otherwise.
pub(crate) fn parse(text: &str) -> Option<Parsed> {
    read(text, false)
}

/// [`parse`] for lines that will be spliced into a larger document: an alias may name an
/// anchor the text does not define (it is defined earlier in that document, which the
/// caller checks).
pub(crate) fn parse_fragment(text: &str) -> Option<Parsed> {
    read(text, true)
}

fn read(text: &str, fragment: bool) -> Option<Parsed> {
    if text.bytes().any(|b| (b < b' ' && b != b'\n') || b == 0x7f)
        || (!text.is_ascii()
            && text.chars().any(|c| matches!(c, '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')))
    {
        // Tabs (indentation rules), CRLF, control characters, a byte-order mark and
        // Unicode line breaks are left to the full reader.
        return None;
    }
    let mut r = Reader {
        text,
        b: text.as_bytes(),
        pos: 0,
        line: 0,
        line_start: 0,
        comments: Vec::new(),
        ascii: text.is_ascii(),
        defined: HashSet::new(),
        fragment,
        items: Vec::new(),
        entries: Vec::new(),
    };
    let indent = r.next_content_line()?;
    let root = r.block_node(indent)?;
    if r.next_content_line().is_some() {
        return None;
    }
    Some(Parsed { documents: vec![root], comments: r.comments })
}

struct Reader<'a> {
    text: &'a str,
    b: &'a [u8],
    /// At the start of a line between nodes; inside a line while a node is read.
    pos: usize,
    line: usize,
    line_start: usize,
    comments: Vec<Comment>,
    ascii: bool,
    /// The anchors defined so far: every alias must name one of them (a read that fails
    /// fails whole, so text order is the order of reading).
    defined: HashSet<&'a str>,
    /// Aliases are not checked against `defined` (see [`parse_fragment`]).
    fragment: bool,
    /// The children of the collections being read, innermost last: each collection takes
    /// its own off the end when it is complete, into a vector of exactly their number. (A
    /// vector per collection grown item by item allocated several times what the tree
    /// holds, most of a parse's time at fleet scale.)
    items: Vec<Node>,
    entries: Vec<(Node, Node)>,
}

/// What a line holds after its indentation.
enum Lead {
    /// `- ` (or `-` at the end of the line): a sequence item.
    Dash,
    Other,
}

impl Reader<'_> {
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(b'\n')
    }

    fn col(&self, pos: usize) -> usize {
        if self.ascii { pos - self.line_start } else { self.text[self.line_start..pos].chars().count() }
    }

    /// A node on the current line, without anchor or tag (callers add an anchor).
    fn node(&self, kind: NodeKind, span: Range<usize>) -> Node {
        Node { line: self.line, col: self.col(span.start), kind, span, anchor: None, tag: None }
    }

    fn line_end(&self, from: usize) -> usize {
        newline_from(self.b, from)
    }

    /// Moves to the start of the next line.
    fn next_line(&mut self) {
        let end = self.line_end(self.pos);
        self.pos = (end + 1).min(self.b.len());
        if end < self.b.len() {
            self.line += 1;
            self.line_start = self.pos;
        }
    }

    /// From a line start, skips blank and comment-only lines (recording the comments) and
    /// returns the indentation of the next line with content, positioned at its start;
    /// `None` at the end of the text.
    fn next_content_line(&mut self) -> Option<usize> {
        loop {
            if self.pos >= self.b.len() {
                return None;
            }
            let mut i = self.pos;
            while self.at(i) == b' ' {
                i += 1;
            }
            match self.at(i) {
                b'\n' => self.next_line(),
                b'#' => {
                    self.comment(i, false);
                    self.next_line();
                }
                _ => return Some(i - self.pos),
            }
        }
    }

    fn comment(&mut self, at: usize, inline: bool) {
        let end = self.line_end(at);
        self.comments.push(Comment { span: at..end, text: self.text[at + 1..end].to_string(), line: self.line, inline });
    }

    /// After a token ending at `i` on the current line: spaces, then an optional comment,
    /// then the end of the line. Moves to the next line.
    fn end_of_line(&mut self, mut i: usize) -> Option<()> {
        let had_space = self.at(i) == b' ';
        while self.at(i) == b' ' {
            i += 1;
        }
        match self.at(i) {
            b'\n' => {}
            b'#' if had_space => self.comment(i, true),
            _ => return None,
        }
        self.pos = i;
        self.next_line();
        Some(())
    }

    fn lead(&self, at: usize) -> Lead {
        if self.at(at) == b'-' && matches!(self.at(at + 1), b' ' | b'\n') { Lead::Dash } else { Lead::Other }
    }

    /// A block collection whose first line starts (after `indent` spaces) at the current
    /// position: a sequence when it starts with `- `, else a mapping.
    fn block_node(&mut self, indent: usize) -> Option<Node> {
        let start = self.pos + indent;
        match self.lead(start) {
            Lead::Dash => self.sequence(indent, start),
            Lead::Other => self.mapping(indent, start),
        }
    }

    /// A block sequence at `indent`; `first` is where its first `-` is (on the current line).
    fn sequence(&mut self, indent: usize, first: usize) -> Option<Node> {
        let (line, col) = (self.line, self.col(first));
        let base = self.items.len();
        let mut at = first;
        loop {
            // `at` is a `-` on the current line.
            let i = self.skip_spaces(at + 1);
            let item = self.inline_value(i, indent, true)?;
            self.items.push(item);
            match self.next_content_line() {
                Some(n) if n == indent && matches!(self.lead(self.pos + n), Lead::Dash) => at = self.pos + n,
                Some(n) if n > indent => return None,
                _ => break,
            }
        }
        let items: Vec<Node> = self.items.drain(base..).collect();
        let end = items.last().map_or(first, |n: &Node| n.span.end);
        Some(Node { kind: NodeKind::Sequence { items, flow: false }, span: first..end, line, col, anchor: None, tag: None })
    }

    /// A block mapping at `indent`; `first` is where its first key is (on the current line).
    fn mapping(&mut self, indent: usize, first: usize) -> Option<Node> {
        let (line, col) = (self.line, self.col(first));
        let base = self.entries.len();
        let mut at = first;
        loop {
            let (key, colon) = self.key(at)?;
            let i = self.skip_spaces(colon + 1);
            let value = if self.at(i) == b'\n' || (self.at(i) == b'#' && i > colon + 1) {
                // An empty value sits at the `:`, on the key's line.
                let empty = self.node(NodeKind::Scalar { value: String::new(), style: ScalarStyle::Plain }, colon..colon);
                self.end_of_line(colon + 1)?;
                self.nested_or_empty(indent, empty)?
            } else {
                if i == colon + 1 {
                    return None;
                }
                self.inline_value(i, indent, false)?
            };
            self.entries.push((key, value));
            match self.next_content_line() {
                Some(n) if n == indent && matches!(self.lead(self.pos + n), Lead::Other) => at = self.pos + n,
                Some(n) if n >= indent => return None,
                _ => break,
            }
        }
        let entries: Vec<(Node, Node)> = self.entries.drain(base..).collect();
        let end = entries.last().map_or(first, |(_, v): &(Node, Node)| v.span.end);
        Some(Node { kind: NodeKind::Mapping { entries, flow: false }, span: first..end, line, col, anchor: None, tag: None })
    }

    /// The value of a key whose line ends after the `:` at `colon` (the reader is on the
    /// next line): a collection on the following lines, or `empty`, the empty scalar.
    fn nested_or_empty(&mut self, indent: usize, empty: Node) -> Option<Node> {
        match self.next_content_line() {
            Some(n) if n > indent => self.block_node(n),
            Some(n) if n == indent && matches!(self.lead(self.pos + n), Lead::Dash) => self.indentless(n),
            _ => Some(empty),
        }
    }

    /// A sequence at the same indentation as the mapping key it is the value of. Its span
    /// starts at its first item's content, as the event reader reports it.
    fn indentless(&mut self, indent: usize) -> Option<Node> {
        let dash = self.pos + indent;
        let mut seq = self.sequence(indent, dash)?;
        let first = match &seq.kind {
            NodeKind::Sequence { items, .. } => items.first()?,
            _ => return None,
        };
        if !matches!(first.kind, NodeKind::Scalar { .. } | NodeKind::Alias { .. } | NodeKind::Mapping { .. }) || first.line != seq.line {
            return None;
        }
        seq.span.start = first.span.start;
        seq.col = first.col;
        Some(seq)
    }

    /// A mapping key (a plain or quoted scalar on one line) at `at`, and where its `:` is.
    fn key(&mut self, at: usize) -> Option<(Node, usize)> {
        let (value, style, end) = self.scalar_token(at, true)?;
        if !self.key_ends_at(end) {
            return None;
        }
        Some((self.node(NodeKind::Scalar { value, style }, at..end), end))
    }

    /// A value starting at `i` on the current line (after `- ` or `key: `), read to the end
    /// of its line or, for a collection or block scalar, of its lines. `indent` is the
    /// collection holding it.
    fn inline_value(&mut self, i: usize, indent: usize, in_sequence: bool) -> Option<Node> {
        match self.at(i) {
            b'&' => {
                let name_end = self.name_end(i + 1)?;
                let text = self.text;
                self.defined.insert(&text[i + 1..name_end]);
                let anchor = text[i + 1..name_end].to_string();
                let j = self.skip_spaces(name_end);
                if matches!(self.at(j), b'\n' | b'#') {
                    // An anchored collection on the following lines.
                    let (line, col) = (self.line, self.col(i));
                    self.end_of_line(name_end)?;
                    let n = self.next_content_line()?;
                    if n <= indent {
                        return None;
                    }
                    let mut node = self.block_node(n)?;
                    node.span.start = i;
                    node.line = line;
                    node.col = col;
                    node.anchor = Some(anchor);
                    return Some(node);
                }
                if j == name_end || matches!(self.at(j), b'&' | b'*' | b'|' | b'>' | b'-' | b'!' | b'[' | b'{' | b'?' | b':') {
                    return None;
                }
                let mut node = self.scalar_value(j)?;
                node.span.start = i;
                node.col = self.col(i);
                node.anchor = Some(anchor);
                self.after_scalar(node, indent)
            }
            b'*' => {
                let end = self.name_end(i + 1)?;
                if !self.fragment && !self.defined.contains(&self.text[i + 1..end]) {
                    return None;
                }
                let node = self.node(NodeKind::Alias { name: self.text[i + 1..end].to_string() }, i..end);
                if self.at(end) == b' ' && self.at(self.skip_spaces(end)) == b':' {
                    return None;
                }
                self.end_of_line(end)?;
                Some(node)
            }
            b'|' => self.literal(i, indent),
            b'-' if in_sequence && matches!(self.at(i + 1), b' ' | b'\n') => {
                // `- - a`: a sequence in a sequence item, indented to its own dash.
                let n = self.col_bytes(i);
                self.sequence(n, i)
            }
            _ => {
                if in_sequence && self.looks_like_key(i) {
                    let n = self.col_bytes(i);
                    return self.mapping(n, i);
                }
                let node = self.scalar_value(i)?;
                self.after_scalar(node, indent)
            }
        }
    }

    /// Offset of `i` from its line start: the indentation of a compact collection (`- - a`,
    /// `- key: v`), which only spaces and `- ` precede on its line.
    fn col_bytes(&self, i: usize) -> usize {
        i - self.line_start
    }

    fn skip_spaces(&self, mut i: usize) -> usize {
        while self.at(i) == b' ' {
            i += 1;
        }
        i
    }

    /// Whether a mapping key starts at `i` (`key: …` on this line).
    fn looks_like_key(&self, i: usize) -> bool {
        self.scalar_token(i, true).is_some_and(|(_, _, end)| self.key_ends_at(end))
    }

    /// Whether a key's `:` (followed by a space or the end of the line) is at `end`.
    fn key_ends_at(&self, end: usize) -> bool {
        self.at(end) == b':' && matches!(self.at(end + 1), b' ' | b'\n')
    }

    /// A one-line plain or quoted scalar at `i` (the caller checks what follows it).
    fn scalar_value(&mut self, i: usize) -> Option<Node> {
        let (value, style, end) = self.scalar_token(i, false)?;
        Some(self.node(NodeKind::Scalar { value, style }, i..end))
    }

    /// The value, style and end of a one-line plain or quoted scalar at `i` (a key's plain
    /// text ends at its `: `).
    fn scalar_token(&self, i: usize, key: bool) -> Option<(String, ScalarStyle, usize)> {
        match self.at(i) {
            q @ (b'\'' | b'"') => {
                let (value, end) = self.quoted(i)?;
                Some((value, if q == b'"' { ScalarStyle::DoubleQuoted } else { ScalarStyle::SingleQuoted }, end))
            }
            _ => {
                let end = self.plain_end(i, key)?;
                Some((self.text[i..end].to_string(), ScalarStyle::Plain, end))
            }
        }
    }

    /// Ends the line of a one-line scalar and makes sure the next content line does not
    /// continue it (a multi-line plain scalar is left to the full reader).
    fn after_scalar(&mut self, node: Node, indent: usize) -> Option<Node> {
        self.end_of_line(node.span.end)?;
        let save = (self.pos, self.line, self.line_start, self.comments.len());
        let next = self.next_content_line();
        (self.pos, self.line, self.line_start) = (save.0, save.1, save.2);
        self.comments.truncate(save.3);
        match next {
            Some(n) if n > indent => None,
            _ => Some(node),
        }
    }

    /// The end of a plain scalar starting at `i`: before ` #`, before `: `/`:` at the end of
    /// the line (the end of a key; an error in a value), trailing spaces excluded.
    fn plain_end(&self, i: usize, key: bool) -> Option<usize> {
        if !starts_plain(self.at(i), self.at(i + 1)) {
            return None;
        }
        let mut j = i;
        let mut end = i;
        loop {
            match self.at(j) {
                b'\n' => break,
                b':' if matches!(self.at(j + 1), b' ' | b'\n') => {
                    if !key {
                        return None;
                    }
                    break;
                }
                b'#' if self.at(j - 1) == b' ' => break,
                b' ' => {}
                _ => end = j + 1,
            }
            j += 1;
        }
        // `- ` and `? ` inside a key's text are fine; a value may hold `: `-free text only.
        Some(end)
    }

    /// A one-line quoted scalar at `i`: its value and the offset past the closing quote.
    fn quoted(&self, i: usize) -> Option<(String, usize)> {
        let q = self.at(i);
        let mut j = i + 1;
        let mut value = String::new();
        let mut from = j;
        loop {
            match self.at(j) {
                b'\n' => return None,
                b'\\' if q == b'"' => return None,
                b'\'' if q == b'\'' && self.at(j + 1) == b'\'' => {
                    value.push_str(&self.text[from..=j]);
                    j += 2;
                    from = j;
                }
                c if c == q => {
                    value.push_str(&self.text[from..j]);
                    return Some((value, j + 1));
                }
                _ => j += 1,
            }
        }
    }

    /// Where an anchor or alias name starting at `i` ends; names are kept to the characters
    /// fleets use.
    fn name_end(&self, i: usize) -> Option<usize> {
        let mut j = i;
        while self.at(j).is_ascii_alphanumeric() || matches!(self.at(j), b'_' | b'-' | b'.') {
            j += 1;
        }
        (j > i && matches!(self.at(j), b' ' | b'\n')).then_some(j)
    }

    /// A `|`, `|-` or `|+` literal block scalar whose indicator is at `i`, inside the
    /// collection at `indent`.
    #[allow(clippy::too_many_lines, reason = "one pass over the scalar's lines, each case commented")]
    fn literal(&mut self, i: usize, indent: usize) -> Option<Node> {
        let (chomp, after) = match self.at(i + 1) {
            b'-' => (Chomp::Strip, i + 2),
            b'+' => (Chomp::Keep, i + 2),
            _ => (Chomp::Clip, i + 1),
        };
        if !matches!(self.at(after), b' ' | b'\n') {
            return None;
        }
        self.end_of_line(after)?;
        // Content: the first non-empty line sets the indentation; empty lines are `\n`.
        let mut p = self.pos;
        let mut leading_empty = 0usize;
        let n = loop {
            if p >= self.b.len() {
                return None;
            }
            let mut k = p;
            while self.at(k) == b' ' {
                k += 1;
            }
            if k == p && self.at(k) == b'\n' {
                leading_empty += 1;
                p = k + 1;
                continue;
            }
            if self.at(k) == b'\n' {
                return None;
            }
            break k - p;
        };
        if n <= indent || leading_empty > 0 {
            return None;
        }
        let start_line = self.line + leading_empty;
        let content_start = p + n;
        let mut value = String::new();
        let mut line = start_line;
        let mut pending_newlines = 0usize;
        let end;
        loop {
            if p >= self.b.len() {
                end = self.b.len();
                break;
            }
            let eol = self.line_end(p);
            if eol >= self.b.len() {
                // The last line has no newline: left to the full reader.
                return None;
            }
            let spaces = self.b[p..eol].iter().take_while(|&&c| c == b' ').count();
            if p == eol {
                pending_newlines += 1;
            } else if spaces == eol - p {
                return None;
            } else if spaces < n {
                // The event reader ends the scalar where the next token starts.
                end = p + spaces;
                break;
            } else {
                for _ in 0..pending_newlines {
                    value.push('\n');
                }
                pending_newlines = 0;
                value.push_str(&self.text[p + n..eol]);
                value.push('\n');
            }
            p = eol + 1;
            line += 1;
        }
        if value.is_empty() {
            return None;
        }
        match chomp {
            Chomp::Strip => {
                value.pop();
            }
            Chomp::Clip => {}
            Chomp::Keep => value.extend(std::iter::repeat_n('\n', pending_newlines)),
        }
        let node = Node {
            kind: NodeKind::Scalar { value, style: ScalarStyle::Literal },
            span: content_start..end,
            line: start_line,
            col: n,
            anchor: None,
            tag: None,
        };
        self.pos = p.min(self.b.len());
        self.line_start = self.pos;
        self.line = line;
        Some(node)
    }
}

/// Whether a plain scalar can start with `first` (followed by `next`): not with white
/// space or an indicator, except `-`, `?` and `:` followed by a non-space (`-1`, `:x`).
fn starts_plain(first: u8, next: u8) -> bool {
    match first {
        b'\n' | b' ' => false,
        b'-' | b'?' | b':' => !matches!(next, b' ' | b'\n'),
        b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\'' | b'"' | b'%' | b'@' | b'`' => false,
        _ => true,
    }
}

#[derive(Clone, Copy)]
enum Chomp {
    Strip,
    Clip,
    Keep,
}

/// The offset of the next `\n` at or after `from`, or the text's length.
fn newline_from(b: &[u8], from: usize) -> usize {
    b.get(from..).and_then(|s| s.iter().position(|&c| c == b'\n')).map_or(b.len(), |p| from + p)
}
