//! Byte-level helpers for editing the text in place: lines, columns, the `-` of a block
//! sequence item, splices, and rendering the few scalars hostsmith writes.
//!
//! Columns are byte offsets from the start of the line: YAML indentation is spaces only, and
//! the text before a key or a `-` that we measure is indentation (or `- ` markers).

use std::ops::Range;

use crate::sops::yaml::{Comment, Node, ScalarStyle};

/// One replacement of the original text: `at` (empty for a pure insertion) becomes `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Splice {
    pub at: Range<usize>,
    pub text: String,
}

/// Applies splices to `text`. Splices must not overlap. Insertions at the same offset go
/// deepest first (the end of an inner list and the end of the rule holding it are the same
/// offset, and the inner list's new items belong before the next rule), then in the order
/// in which they were planned.
#[cfg(test)]
pub(crate) fn apply(text: &str, splices: &[Splice]) -> String {
    apply_in(text, splices, &order(splices))
}

/// The order in which [`apply`] applies `splices` (indexes into them).
pub(crate) fn order(splices: &[Splice]) -> Vec<usize> {
    let indent = |s: &Splice| {
        let first = s.text.split('\n').find(|l| !l.trim().is_empty()).unwrap_or("");
        first.len() - first.trim_start_matches(' ').len()
    };
    let mut order: Vec<usize> = (0..splices.len()).collect();
    order.sort_by_key(|&i| (splices[i].at.start, splices[i].at.end, std::cmp::Reverse(indent(&splices[i]))));
    order
}

/// [`apply`] in the given order (from [`order`]).
pub(crate) fn apply_in(text: &str, splices: &[Splice], order: &[usize]) -> String {
    let mut out = String::with_capacity(text.len() + splices.iter().map(|s| s.text.len()).sum::<usize>());
    let mut at = 0;
    for s in order.iter().map(|&i| &splices[i]) {
        out.push_str(&text[at..s.at.start.max(at)]);
        out.push_str(&s.text);
        at = at.max(s.at.end);
    }
    out.push_str(&text[at..]);
    out
}

/// The text with its line-ending convention (inserted lines use the file's own).
pub(crate) struct Lines<'a> {
    pub s: &'a str,
    pub nl: &'static str,
    comments: &'a [Comment],
}

impl<'a> Lines<'a> {
    pub(crate) fn new(s: &'a str, comments: &'a [Comment]) -> Self {
        let nl = match s.find('\n') {
            Some(i) if i > 0 && s.as_bytes()[i - 1] == b'\r' => "\r\n",
            _ => "\n",
        };
        Self { s, nl, comments }
    }

    pub(crate) fn line_start(&self, pos: usize) -> usize {
        self.s[..pos].rfind('\n').map_or(0, |i| i + 1)
    }

    /// The start of the line after the one holding `pos`, or `None` on a last line that has
    /// no newline.
    pub(crate) fn next_line(&self, pos: usize) -> Option<usize> {
        self.s[pos..].find('\n').map(|i| pos + i + 1)
    }

    /// The start of the line before the one starting at `line_start`.
    pub(crate) fn prev_line(&self, line_start: usize) -> Option<usize> {
        (line_start > 0).then(|| self.line_start(line_start - 1))
    }

    /// The line starting at `line_start`, without its line ending.
    pub(crate) fn line(&self, line_start: usize) -> &'a str {
        let end = self.s[line_start..].find('\n').map_or(self.s.len(), |i| line_start + i);
        self.s[line_start..end].trim_end_matches('\r')
    }

    pub(crate) fn col(&self, pos: usize) -> usize {
        pos - self.line_start(pos)
    }

    /// 1-based line number of `pos`.
    pub(crate) fn line_no(&self, pos: usize) -> usize {
        self.s[..pos].bytes().filter(|&b| b == b'\n').count() + 1
    }

    pub(crate) fn is_blank(&self, line_start: usize) -> bool {
        self.line(line_start).trim().is_empty()
    }

    pub(crate) fn is_comment_line(&self, line_start: usize) -> bool {
        self.line(line_start).trim_start().starts_with('#')
    }

    /// Where a node's content ends: its span with trailing white space (block scalars keep
    /// their trailing line breaks in the span) left out.
    pub(crate) fn content_end(&self, node: &Node) -> usize {
        let t = &self.s[node.span.clone()];
        node.span.start + t.trim_end().len()
    }

    /// Lines inserted after the line holding `pos` (each gets the file's line ending; at the
    /// end of a file without a final newline the newline goes first instead).
    pub(crate) fn lines_after(&self, pos: usize, lines: &[String]) -> Splice {
        match self.next_line(pos) {
            Some(at) => Splice { at: at..at, text: lines.iter().map(|l| format!("{l}{}", self.nl)).collect() },
            None => {
                let at = self.s.len();
                Splice { at: at..at, text: lines.iter().map(|l| format!("{}{l}", self.nl)).collect() }
            }
        }
    }

    /// Lines inserted before the line starting at `line_start`.
    pub(crate) fn lines_before(&self, line_start: usize, lines: &[String]) -> Splice {
        Splice { at: line_start..line_start, text: lines.iter().map(|l| format!("{l}{}", self.nl)).collect() }
    }

    /// The start of the block of full-line comments directly above the line at `line_start`
    /// and indented no deeper than it (they describe what follows, so insertions go above
    /// them; a deeper one ends the previous item). A block that starts the file is its
    /// header and stays first.
    pub(crate) fn comments_above(&self, line_start: usize) -> usize {
        let indent = |ls: usize| self.line(ls).len() - self.line(ls).trim_start().len();
        let mut at = line_start;
        while let Some(prev) = self.prev_line(at) {
            if !self.is_comment_line(prev) || indent(prev) > indent(line_start) {
                return at;
            }
            at = prev;
        }
        line_start
    }

    fn in_comment(&self, pos: usize) -> Option<&Comment> {
        self.comments.iter().find(|c| c.span.start <= pos && pos < c.span.end)
    }

    /// The `-` that introduces the block sequence item starting at `pos`: skips white space,
    /// comments and the item's own `&anchor`/`!tag` backwards.
    pub(crate) fn dash_before(&self, mut pos: usize) -> Option<usize> {
        let b = self.s.as_bytes();
        loop {
            while pos > 0 && b[pos - 1].is_ascii_whitespace() {
                pos -= 1;
            }
            let c = pos.checked_sub(1)?;
            if let Some(comment) = self.in_comment(c) {
                pos = comment.span.start;
                continue;
            }
            if b[c] == b'-' && (c == 0 || b[c - 1].is_ascii_whitespace()) {
                return Some(c);
            }
            let token = self.s[..pos].rfind(|ch: char| ch.is_ascii_whitespace()).map_or(0, |i| i + 1);
            if matches!(b[token], b'&' | b'!') {
                pos = token;
                continue;
            }
            return None;
        }
    }
}

/// Escapes the characters that are special in an RE2 (and Rust `regex`) pattern outside a
/// character class. Unlike `regex::escape` it leaves `-`, `#`, `&` and `~` alone: they are
/// literal in Go's RE2, and `^sops/web-01\.yaml$` is what a person would write.
pub(crate) fn escape_re2(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Renders a string scalar in the requested style, or single-quoted when plain would not
/// read back as the same string (the edit is re-parsed and verified either way).
pub(crate) fn scalar(value: &str, style: ScalarStyle) -> String {
    match style {
        ScalarStyle::DoubleQuoted => {
            format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
        }
        ScalarStyle::SingleQuoted => format!("'{}'", value.replace('\'', "''")),
        _ if plain_safe(value) => value.to_string(),
        _ => format!("'{}'", value.replace('\'', "''")),
    }
}

fn plain_safe(v: &str) -> bool {
    let Some(first) = v.chars().next() else {
        return false;
    };
    !"-?:,[]{}#&*!|>'\"%@`".contains(first)
        && v.trim() == v
        && !v.contains(": ")
        && !v.contains(" #")
        && !v.ends_with(':')
        && !v.chars().any(char::is_control)
        && !matches!(v, "~" | "null" | "Null" | "NULL" | "true" | "false" | "True" | "False" | "TRUE" | "FALSE")
        && v.parse::<f64>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_re2_needs() {
        assert_eq!(escape_re2("sops/web-01.yaml"), "sops/web-01\\.yaml");
        assert_eq!(escape_re2("a+b(c)[d]{e}|f^$?*\\"), "a\\+b\\(c\\)\\[d\\]\\{e\\}\\|f\\^\\$\\?\\*\\\\");
    }

    #[test]
    fn scalars_quote_when_needed() {
        assert_eq!(scalar("^sops/web01\\.yaml$", ScalarStyle::Plain), "^sops/web01\\.yaml$");
        assert_eq!(scalar("^a\\.b$", ScalarStyle::DoubleQuoted), "\"^a\\\\.b$\"");
        assert_eq!(scalar("it's", ScalarStyle::SingleQuoted), "'it''s'");
        assert_eq!(scalar("a #b", ScalarStyle::Plain), "'a #b'");
        assert_eq!(scalar("1.5", ScalarStyle::Plain), "'1.5'");
    }

    #[test]
    fn finds_dashes_and_lines() {
        let s = "k:\n  - &a x\n  -   # c\n    m: 1\n- &r\n  b: 2\n";
        let l = Lines::new(s, &[]);
        assert_eq!(l.dash_before(s.find("&a").expect("a")), Some(5));
        assert_eq!(l.dash_before(s.find("&r").expect("r")), Some(s.find("- &r").expect("-")));
        assert_eq!(l.nl, "\n");
        assert_eq!(Lines::new("a: 1\r\nb: 2\r\n", &[]).nl, "\r\n");
        let spl = l.lines_after(0, &["x".into()]);
        assert_eq!(apply(s, &[spl]), format!("k:\nx\n{}", &s[3..]));
        assert_eq!(apply("a", &[Lines::new("a", &[]).lines_after(0, &["b".into()])]), "a\nb");
    }
}
