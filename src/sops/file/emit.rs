//! A small YAML emitter laid out like sops' (go-yaml, indent 4).
//!
//! The layout matters beyond looks: sops decides which mapping a comment belongs to from where
//! it sits, and a comment must be read back into the mapping whose path it was encrypted with.
//! So comments are written on their own lines at the indentation of the items of their
//! collection, as sops writes them. Strings are written plain only when every YAML reader
//! (go-yaml's YAML 1.2-ish rules and PyYAML's YAML 1.1 ones) reads them back as the same
//! string; otherwise double-quoted with escapes, or as a literal block when multi-line and
//! safe (the age armor).

use std::fmt::Write as _;
use std::sync::LazyLock;

use super::{Map, MapItem, SeqItem, Value, scalar};

/// `ENC[…]` values are written plain, as sops writes them.
static ENC_PLAIN: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^ENC\[AES256_GCM,data:[A-Za-z0-9+/=]+,iv:[A-Za-z0-9+/=]+,tag:[A-Za-z0-9+/=]+,type:[a-z]+\]$")
        .expect("static pattern is valid")
});

/// Writes documents, separated by `---`.
pub(crate) fn documents(docs: &[Map]) -> String {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        if doc.is_empty() {
            for item in doc.items() {
                if let MapItem::Comment(c) = item {
                    comment(&mut out, "", c);
                }
            }
            out.push_str("{}\n");
        } else {
            map_block(&mut out, doc, 0, 4, "");
        }
    }
    out
}

/// Sequence items on lines of their own, their `-` at column `dash` (the text that continues a
/// block sequence whose items sit there).
pub(crate) fn seq_items(items: &[SeqItem], dash: usize) -> String {
    let mut out = String::new();
    seq_block(&mut out, items, dash, &spaces(dash));
    out
}

fn spaces(n: usize) -> String {
    " ".repeat(n)
}

fn comment(out: &mut String, lead: &str, text: &str) {
    for line in text.split(['\n', '\r']) {
        let clean: String = line.chars().map(|c| if c.is_control() && c != '\t' { '\u{FFFD}' } else { c }).collect();
        let _ = writeln!(out, "{lead}#{clean}");
    }
}

/// A mapping whose keys sit at `key_col`; its first line starts with `lead` (the indentation,
/// or `- ` for a mapping that is a sequence item). Nested blocks go at `child`: `key_col + 4`,
/// or `dash + 4` for a mapping in a sequence item, as go-yaml does.
fn map_block(out: &mut String, map: &Map, key_col: usize, child: usize, lead: &str) {
    let indent = spaces(key_col);
    let mut first = true;
    for item in map.items() {
        let prefix = if first { lead } else { indent.as_str() };
        first = false;
        match item {
            MapItem::Comment(c) => comment(out, prefix, c),
            MapItem::Entry { key, value } => {
                out.push_str(prefix);
                out.push_str(&key_text(key));
                out.push(':');
                after_key(out, value, child);
            }
        }
    }
}

fn has_values(items: &[SeqItem]) -> bool {
    items.iter().any(|i| matches!(i, SeqItem::Value(_)))
}

fn starts_with_comment_map(m: &Map) -> bool {
    matches!(m.items().first(), Some(MapItem::Comment(_)))
}

fn starts_with_comment_seq(s: &[SeqItem]) -> bool {
    matches!(s.first(), Some(SeqItem::Comment(_)))
}

/// The value of a mapping entry, after `key:`.
fn after_key(out: &mut String, value: &Value, child: usize) {
    match value {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            map_block(out, m, child, child + 4, &spaces(child));
        }
        Value::Map(_) => out.push_str(" {}\n"),
        Value::Seq(s) if has_values(s) => {
            out.push('\n');
            seq_block(out, s, child, &spaces(child));
        }
        Value::Seq(_) => out.push_str(" []\n"),
        scalar => scalar_value(out, scalar, child),
    }
}

/// A sequence whose dashes sit at `dash`; its first line starts with `lead`.
fn seq_block(out: &mut String, items: &[SeqItem], dash: usize, lead: &str) {
    let indent = spaces(dash);
    let mut first = true;
    for item in items {
        let prefix = if first { lead } else { indent.as_str() };
        first = false;
        match item {
            SeqItem::Comment(c) => comment(out, prefix, c),
            SeqItem::Value(v) => seq_item(out, v, prefix, dash),
        }
    }
}

fn seq_item(out: &mut String, v: &Value, prefix: &str, dash: usize) {
    match v {
        Value::Map(m) if !m.is_empty() => {
            if starts_with_comment_map(m) {
                let _ = writeln!(out, "{prefix}-");
                map_block(out, m, dash + 2, dash + 4, &spaces(dash + 2));
            } else {
                map_block(out, m, dash + 2, dash + 4, &format!("{prefix}- "));
            }
        }
        Value::Map(_) => {
            let _ = writeln!(out, "{prefix}- {{}}");
        }
        Value::Seq(s) if has_values(s) => {
            if starts_with_comment_seq(s) {
                let _ = writeln!(out, "{prefix}-");
                seq_block(out, s, dash + 2, &spaces(dash + 2));
            } else {
                seq_block(out, s, dash + 2, &format!("{prefix}- "));
            }
        }
        Value::Seq(_) => {
            let _ = writeln!(out, "{prefix}- []");
        }
        scalar => {
            out.push_str(prefix);
            out.push('-');
            scalar_value(out, scalar, dash + 2);
        }
    }
}

/// ` value\n`, or ` |` and the block's lines at `block_col`.
fn scalar_value(out: &mut String, v: &Value, block_col: usize) {
    if let Value::Str(s) = v
        && !ENC_PLAIN.is_match(s)
        && !plain_ok(s)
        && let Some((header, body)) = literal(s)
    {
        let _ = writeln!(out, " {header}");
        let indent = spaces(block_col);
        for line in body.split('\n') {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "{indent}{line}");
            }
        }
        return;
    }
    out.push(' ');
    out.push_str(&inline_scalar(v));
    out.push('\n');
}

/// A scalar as written after `key: ` (never a block).
pub(crate) fn inline_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_text(*f),
        Value::Time(t) if scalar::parse_yaml_timestamp(t).is_some() => t.clone(),
        Value::Str(s) | Value::Time(s) => {
            if ENC_PLAIN.is_match(s) || plain_ok(s) {
                s.clone()
            } else {
                double_quoted(s)
            }
        }
        // Collections are never inline scalars; callers handle them.
        Value::Map(_) => "{}".into(),
        Value::Seq(_) => "[]".into(),
    }
}

fn key_text(key: &str) -> String {
    if plain_ok(key) { key.to_string() } else { double_quoted(key) }
}

/// A float both go-yaml and PyYAML read back as the same number (PyYAML wants a `.` and a
/// signed exponent).
fn float_text(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf".into() } else { "-.inf".into() };
    }
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let mantissa = if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
            let exp = if exp.starts_with('-') { exp.to_string() } else { format!("+{exp}") };
            format!("{mantissa}e{exp}")
        }
        None if s.contains('.') => s,
        None => format!("{s}.0"),
    }
}

/// Whether a string can be written plain and read back as itself by go-yaml and PyYAML.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let version_like = {
        let parts: Vec<&str> = s.split('.').collect();
        parts.len() >= 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    if version_like {
        return true;
    }
    if !(first.is_alphabetic() || first == '_' || first == '/') || s.ends_with(' ') {
        return false;
    }
    if !s.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@' | '+' | '=' | '~' | ' ')) {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(lower.as_str(), "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null") {
        return false;
    }
    matches!(scalar::resolve_plain(s, true), Ok(Value::Str(_)))
}

/// A literal block (`|`, `|-`) for multi-line text that needs no escapes and round-trips:
/// no control characters but newlines, no whitespace at either end of a line, the first
/// line not indented, at most one final newline. Returns the header and the body.
fn literal(s: &str) -> Option<(&'static str, &str)> {
    if !s.contains('\n') || s.ends_with("\n\n") {
        return None;
    }
    let (header, body) = match s.strip_suffix('\n') {
        Some(body) => ("|", body),
        None => ("|-", s),
    };
    let needs_escape =
        |c: char| (c.is_control() && c != '\n') || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}');
    if body.chars().any(needs_escape) {
        return None;
    }
    let first_nonempty = body.split('\n').find(|l| !l.is_empty())?;
    if first_nonempty.starts_with(' ') || body.split('\n').any(|l| l.ends_with(' ')) {
        return None;
    }
    Some((header, body))
}

/// A double-quoted scalar with JSON-style escapes (valid YAML escapes all).
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}') => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_decisions() {
        for plain in ["hello", "age1qqq", "hello world", "a-b_c.d/e@f+g=h", "é ü", "3.11.0", "_unencrypted", "/etc/x"] {
            assert!(plain_ok(plain), "{plain}");
        }
        for quoted in [
            "",
            "yes",
            "No",
            "on",
            "y",
            "true",
            "null",
            "1",
            "1.5",
            "0x1F",
            "2001-12-14",
            " lead",
            "trail ",
            "a: b",
            "a #b",
            "-dash",
            "@at",
            "%pct",
            "*star",
            "&amp",
            "!bang",
            "[x",
            "{x",
            "'q",
            "\"q",
            "|",
            ">",
            "?",
            "#",
            "~",
            ".inf",
            "=",
        ] {
            assert!(!plain_ok(quoted), "{quoted:?}");
        }
    }

    #[test]
    fn escapes_and_blocks() {
        assert_eq!(double_quoted("a\"b\\c\nd\u{1}\u{2028}é"), "\"a\\\"b\\\\c\\nd\\u0001\\u2028é\"");
        assert_eq!(literal("a\nb\n"), Some(("|", "a\nb")));
        assert_eq!(literal("a\n\nb"), Some(("|-", "a\n\nb")));
        assert_eq!(literal(" a\nb"), None);
        assert_eq!(literal("a \nb"), None);
        assert_eq!(literal("a\tb\nc"), None);
        assert_eq!(literal("a\n\n"), None);
        assert_eq!(float_text(1.0), "1.0");
        assert_eq!(float_text(1e21), "1.0e+21");
        assert_eq!(float_text(1.5e-7), "1.5e-7");
        assert_eq!(float_text(f64::NEG_INFINITY), "-.inf");
    }
}
