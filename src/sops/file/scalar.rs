//! How sops reads a YAML scalar: go-yaml v3's resolution, which decides the `type:` an
//! encrypted value gets and the bytes the MAC covers.
//!
//! A value's type is part of the file format (`type:int` decrypts to an integer) and of the
//! MAC (`True` for a bool, `1.5` for a float), so reading `port: 0x1F` as a string where sops
//! reads the integer 31 would make every file hostsmith writes fail sops' MAC check. The rules
//! below follow go-yaml v3's `resolve.go` and Go's `strconv`, including their oddities
//! (`08` is the float 8, `yes` is a string, unquoted dates are timestamps).

use super::Value;

/// Why a scalar cannot be represented the way sops would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScalarError {
    /// go-yaml reads it as an unsigned 64-bit integer, a type sops cannot walk.
    Uint64,
    /// An explicit tag the text does not satisfy (`!!int abc`).
    TagMismatch(String),
    /// `!!binary` with invalid base64 or non-UTF-8 content.
    Binary,
}

/// Resolves a scalar as go-yaml v3 decodes it into an `interface{}`.
///
/// `quoted` covers every non-plain style (single, double, literal, folded). `tag` is the tag
/// as `crate::sops::yaml` reports it (`tag:yaml.org,2002:str`, `!foo`, `!`).
pub(crate) fn resolve(value: &str, quoted: bool, tag: Option<&str>) -> Result<Value, ScalarError> {
    let short = tag.map(short_tag);
    match short.as_deref() {
        None | Some("!") if quoted => Ok(Value::Str(value.to_string())),
        None => Ok(resolve_plain(value, true)?),
        Some("!!str") => Ok(Value::Str(value.to_string())),
        Some("!!binary") => binary(value),
        Some(t @ ("!!null" | "!!bool" | "!!int" | "!!float" | "!!timestamp")) => {
            let resolved = resolve_plain(value, t == "!!timestamp")?;
            let ok = matches!(
                (t, &resolved),
                ("!!null", Value::Null)
                    | ("!!bool", Value::Bool(_))
                    | ("!!int", Value::Int(_))
                    | ("!!float", Value::Float(_) | Value::Int(_))
                    | ("!!timestamp", Value::Time(_))
            );
            match (ok, resolved) {
                (true, Value::Int(i)) if t == "!!float" => Ok(Value::Float(i as f64)),
                (true, v) => Ok(v),
                (false, _) => Err(ScalarError::TagMismatch(t.to_string())),
            }
        }
        // Any other tag (`!foo`, `!`, `!!set`): go-yaml keeps the text as a string.
        Some(_) => Ok(Value::Str(value.to_string())),
    }
}

fn short_tag(tag: &str) -> String {
    match tag.strip_prefix("tag:yaml.org,2002:") {
        Some(rest) => format!("!!{rest}"),
        None => tag.to_string(),
    }
}

fn binary(value: &str) -> Result<Value, ScalarError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.as_bytes()).map_err(|_| ScalarError::Binary)?;
    String::from_utf8(bytes).map(Value::Str).map_err(|_| ScalarError::Binary)
}

/// go-yaml's `resolve("", s)` for a plain scalar. `timestamps` is false only when an explicit
/// non-timestamp tag forbids the timestamp reading.
pub(crate) fn resolve_plain(s: &str, timestamps: bool) -> Result<Value, ScalarError> {
    let Some(&first) = s.as_bytes().first() else {
        return Ok(Value::Null);
    };
    let hint = match first {
        b'+' | b'-' => 'S',
        b'0'..=b'9' => 'D',
        b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~' => 'M',
        b'.' => '.',
        _ => return Ok(Value::Str(s.to_string())),
    };
    match s {
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        ".nan" | ".NaN" | ".NAN" => return Ok(Value::Float(f64::NAN)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Ok(Value::Float(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Ok(Value::Float(f64::NEG_INFINITY)),
        _ => {}
    }
    match hint {
        '.' => {
            if let Some(f) = go_parse_decimal_float(s) {
                return Ok(Value::Float(f));
            }
        }
        'D' | 'S' => {
            if timestamps && let Some(t) = parse_yaml_timestamp(s) {
                return Ok(Value::Time(t));
            }
            let plain: String = s.chars().filter(|&c| c != '_').collect();
            if let Some(i) = go_parse_int_base0(&plain) {
                return Ok(Value::Int(i));
            }
            if go_parse_uint_base0(&plain) {
                return Err(ScalarError::Uint64);
            }
            if is_yaml_style_float(&plain)
                && let Some(f) = finite_float(&plain)
            {
                return Ok(Value::Float(f));
            }
        }
        _ => {}
    }
    Ok(Value::Str(s.to_string()))
}

/// Go's `strconv.ParseFloat` returns an error (and go-yaml then a string) on overflow.
fn finite_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `strconv.ParseFloat` for a text starting with `.`: decimal only, Go's underscore rule.
fn go_parse_decimal_float(s: &str) -> Option<f64> {
    if s.contains('_') {
        if !go_underscore_ok(s) {
            return None;
        }
        let stripped: String = s.chars().filter(|&c| c != '_').collect();
        return decimal_float_syntax(&stripped).then(|| finite_float(&stripped)).flatten();
    }
    decimal_float_syntax(s).then(|| finite_float(s)).flatten()
}

/// A decimal float Rust and Go agree on: `[+-]? digits? (. digits?)? ([eE] [+-]? digits)?`
/// with at least one mantissa digit.
fn decimal_float_syntax(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        i += 1;
        if i < b.len() && matches!(b[i], b'+' | b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

/// Go's `underscoreOK`: underscores only between digits (or after a base prefix).
fn go_underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let mut saw = b'^';
    let mut hex = false;
    if b.len() >= i + 2 && b[i] == b'0' && matches!(b[i + 1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        hex = b[i + 1].eq_ignore_ascii_case(&b'x');
        i += 2;
        saw = b'0';
    }
    for &c in &b[i..] {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// go-yaml's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        i += 1;
        if i < b.len() && matches!(b[i], b'+' | b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Splits Go's base-0 integer syntax into (negative, radix, digits).
fn go_int_parts(s: &str) -> Option<(bool, u32, &str)> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = rest.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &rest[2..]),
        Some("0o") => (8, &rest[2..]),
        Some("0b") => (2, &rest[2..]),
        _ if rest.len() > 1 && rest.starts_with('0') => (8, &rest[1..]),
        _ => (10, rest),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some((neg, radix, digits))
}

/// `strconv.ParseInt(s, 0, 64)`.
fn go_parse_int_base0(s: &str) -> Option<i64> {
    let (neg, radix, digits) = go_int_parts(s)?;
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if magnitude <= i64::MAX as u64 + 1 { Some((magnitude as i64).wrapping_neg()) } else { None }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Whether `strconv.ParseUint(s, 0, 64)` succeeds (no sign allowed).
fn go_parse_uint_base0(s: &str) -> bool {
    if s.starts_with(['+', '-']) {
        return false;
    }
    go_int_parts(s).is_some_and(|(_, radix, digits)| u64::from_str_radix(digits, radix).is_ok())
}

/// A parsed point in time, kept as its fields so it can be written back exactly as Go's
/// `time.Time.MarshalText` writes it (RFC 3339 with nanoseconds, trailing zeros trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    /// Offset from UTC in minutes.
    offset: i32,
}

impl Stamp {
    fn valid(&self) -> bool {
        (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
    }

    /// `time.Time.MarshalText` (RFC 3339 with nanoseconds).
    fn marshal(&self) -> String {
        let mut out = format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", self.year, self.month, self.day, self.hour, self.minute, self.second);
        if self.nanos > 0 {
            let frac = format!("{:09}", self.nanos);
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
        out.push_str(&offset_text(self.offset));
        out
    }
}

fn offset_text(offset: i32) -> String {
    if offset == 0 {
        "Z".to_string()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let abs = offset.unsigned_abs();
        format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A cursor over ASCII digits, for the small fixed grammars below.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Between `min` and `max` digits.
    fn num(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        while self.i < self.b.len() && self.i - start < max && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if self.i - start < min {
            return None;
        }
        std::str::from_utf8(&self.b[start..self.i]).ok()?.parse().ok()
    }

    /// `.digits` or `,digits` (Go accepts both); more than nine digits are truncated.
    fn fraction(&mut self) -> Option<u32> {
        if !matches!(self.b.get(self.i), Some(b'.' | b',')) || !self.b.get(self.i + 1).is_some_and(u8::is_ascii_digit) {
            return Some(0);
        }
        self.i += 1;
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        let mut nanos = 0u32;
        for k in 0..9 {
            nanos = nanos * 10 + digits.get(k).map_or(0, |d| u32::from(d - b'0'));
        }
        Some(nanos)
    }

    /// `Z` or `±hh:mm`.
    fn zone(&mut self) -> Option<i32> {
        if self.eat(b'Z') {
            return Some(0);
        }
        let sign = match self.b.get(self.i)? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.i += 1;
        let h = self.num(2, 2)?;
        if !self.eat(b':') {
            return None;
        }
        let m = self.num(2, 2)?;
        if h > 24 || m > 60 {
            return None;
        }
        Some(sign * (h as i32 * 60 + m as i32))
    }

    fn done(&self) -> bool {
        self.i == self.b.len()
    }
}

/// go-yaml's `parseTimestamp`: the four layouts it accepts for a plain scalar, as Go's
/// `time.Parse` reads them. Returns the `MarshalText` form.
pub(crate) fn parse_yaml_timestamp(s: &str) -> Option<String> {
    let mut c = Cursor { b: s.as_bytes(), i: 0 };
    let year = c.num(4, 4)?;
    if !c.eat(b'-') {
        return None;
    }
    let month = c.num(1, 2)?;
    if !c.eat(b'-') {
        return None;
    }
    let day = c.num(1, 2)?;
    let mut st = Stamp { year, month, day, hour: 0, minute: 0, second: 0, nanos: 0, offset: 0 };
    if !c.done() {
        let sep = *c.b.get(c.i)?;
        if !matches!(sep, b'T' | b't' | b' ') {
            return None;
        }
        c.i += 1;
        st.hour = c.num(1, 2)?;
        if !c.eat(b':') {
            return None;
        }
        st.minute = c.num(1, 2)?;
        if !c.eat(b':') {
            return None;
        }
        st.second = c.num(1, 2)?;
        st.nanos = c.fraction()?;
        if sep != b' ' {
            st.offset = c.zone()?;
        }
        if !c.done() {
            return None;
        }
    }
    st.valid().then(|| st.marshal())
}

/// `time.Time.UnmarshalText` (strict RFC 3339) followed by `MarshalText`: the text sops
/// hashes for a `type:time` value.
pub(crate) fn canonical_rfc3339(s: &str) -> Option<String> {
    let st = parse_rfc3339(s)?;
    Some(st.marshal())
}

fn parse_rfc3339(s: &str) -> Option<Stamp> {
    let mut c = Cursor { b: s.as_bytes(), i: 0 };
    let year = c.num(4, 4)?;
    c.eat(b'-').then_some(())?;
    let month = c.num(2, 2)?;
    c.eat(b'-').then_some(())?;
    let day = c.num(2, 2)?;
    c.eat(b'T').then_some(())?;
    let hour = c.num(2, 2)?;
    c.eat(b':').then_some(())?;
    let minute = c.num(2, 2)?;
    c.eat(b':').then_some(())?;
    let second = c.num(2, 2)?;
    let nanos = c.fraction()?;
    let offset = c.zone()?;
    let st = Stamp { year, month, day, hour, minute, second, nanos, offset };
    (c.done() && st.valid()).then_some(st)
}

/// Go's `time.Parse(time.RFC3339, s).Format(time.RFC3339)`: the additional data the MAC is
/// encrypted with. Fractional seconds are dropped, a zero offset becomes `Z`.
pub(crate) fn lastmodified_aad(s: &str) -> Option<String> {
    let mut st = parse_rfc3339(s)?;
    st.nanos = 0;
    Some(st.marshal())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> Value {
        resolve_plain(s, true).expect("resolvable")
    }

    #[test]
    fn go_yaml_v3_resolution() {
        assert_eq!(plain("0x1F"), Value::Int(31));
        assert_eq!(plain("0o17"), Value::Int(15));
        assert_eq!(plain("017"), Value::Int(15));
        assert_eq!(plain("-0b101"), Value::Int(-5));
        assert_eq!(plain("1_000"), Value::Int(1000));
        assert_eq!(plain("+7"), Value::Int(7));
        assert_eq!(plain("08"), Value::Float(8.0));
        assert_eq!(plain("1e3"), Value::Float(1000.0));
        assert_eq!(plain(".5"), Value::Float(0.5));
        assert_eq!(plain("1e400"), Value::Str("1e400".into()));
        assert_eq!(plain("123456789012345678901234"), Value::Float(1.234_567_890_123_456_8e23));
        assert_eq!(resolve_plain("12345678901234567890", true), Err(ScalarError::Uint64));
        assert_eq!(plain("yes"), Value::Str("yes".into()));
        assert_eq!(plain("on"), Value::Str("on".into()));
        assert_eq!(plain("True"), Value::Bool(true));
        assert_eq!(plain("~"), Value::Null);
        assert_eq!(plain(""), Value::Null);
        assert!(matches!(plain(".NaN"), Value::Float(f) if f.is_nan()));
        assert_eq!(plain("-.inf"), Value::Float(f64::NEG_INFINITY));
        assert_eq!(plain("<<"), Value::Str("<<".into()));
        assert_eq!(plain("1.2.3"), Value::Str("1.2.3".into()));
        assert_eq!(plain("-"), Value::Str("-".into()));
    }

    #[test]
    fn timestamps_marshal_like_go() {
        assert_eq!(plain("2001-12-14"), Value::Time("2001-12-14T00:00:00Z".into()));
        assert_eq!(plain("2001-12-14t21:59:43.10-05:00"), Value::Time("2001-12-14T21:59:43.1-05:00".into()));
        assert_eq!(plain("2001-12-14 21:59:43.10"), Value::Time("2001-12-14T21:59:43.1Z".into()));
        assert_eq!(plain("2001-2-3T4:5:6+00:00"), Value::Time("2001-02-03T04:05:06Z".into()));
        assert_eq!(plain("2001-02-30"), Value::Str("2001-02-30".into()));
        assert_eq!(plain("2001-12-14 21:59:43.10 -5"), Value::Str("2001-12-14 21:59:43.10 -5".into()));
        assert_eq!(lastmodified_aad("2024-01-02T03:04:05.123+00:00").as_deref(), Some("2024-01-02T03:04:05Z"));
        assert_eq!(canonical_rfc3339("2024-01-02T03:04:05.120+01:30").as_deref(), Some("2024-01-02T03:04:05.12+01:30"));
        assert_eq!(canonical_rfc3339("2024-1-02T03:04:05Z"), None);
    }

    #[test]
    fn tags_and_quotes() {
        assert_eq!(resolve("1", true, None), Ok(Value::Str("1".into())));
        assert_eq!(resolve("1", false, Some("tag:yaml.org,2002:str")), Ok(Value::Str("1".into())));
        assert_eq!(resolve("7", true, Some("tag:yaml.org,2002:int")), Ok(Value::Int(7)));
        assert_eq!(resolve("7", false, Some("tag:yaml.org,2002:float")), Ok(Value::Float(7.0)));
        assert!(resolve("x", false, Some("tag:yaml.org,2002:int")).is_err());
        assert_eq!(resolve("aGVsbG8=", false, Some("tag:yaml.org,2002:binary")), Ok(Value::Str("hello".into())));
        assert_eq!(resolve("5", false, Some("!")), Ok(Value::Str("5".into())));
        assert_eq!(resolve("5", false, Some("!foo")), Ok(Value::Str("5".into())));
    }
}
