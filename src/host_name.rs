//! Host names: RFC 1123 labels, because a host name ends up in file paths, regexes, YAML
//! anchors, SSH configuration and cloud-init; one strict rule keeps all of them safe.

use std::fmt;

use crate::error::{Error, Result};

/// A validated host name: 1 to 63 ASCII letters, digits and '-', not starting or ending
/// with '-'. Safe as a file name, a YAML anchor, a regex literal and an SSH host alias.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

impl HostName {
    /// Validates `name`.
    ///
    /// # Errors
    /// [`Error::HostName`] naming what is wrong.
    pub fn parse(name: &str) -> Result<Self> {
        let why = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > 63 {
            Some("it is longer than 63 characters")
        } else if name.contains('/') || name.contains('\\') || name.contains("..") {
            Some("it contains a path separator or `..`")
        } else if !name.is_ascii() {
            Some("it contains non-ASCII characters")
        } else if name.contains(char::is_whitespace) {
            Some("it contains white space")
        } else if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            Some(match c {
                '_' => "'_' is not allowed in host names",
                '.' => "it contains '.'; give the short name, not a domain",
                _ => "it contains a character other than letters, digits and '-'",
            })
        } else if name.starts_with('-') || name.ends_with('-') {
            Some("it starts or ends with '-'")
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::HostName { name: printable(name), why }),
            None => Ok(Self(name.to_string())),
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name as it may be shown in an error: control characters escaped, long names cut.
pub(crate) fn printable(name: &str) -> String {
    let shown: String = name.chars().take(70).flat_map(char::escape_debug).collect();
    if name.chars().count() > 70 { format!("{shown}…") } else { shown }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for HostName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc1123_labels() {
        for ok in ["web01", "a", "mqtt-01", "A1", &"x".repeat(63)] {
            assert_eq!(HostName::parse(ok).expect("valid").as_str(), ok);
        }
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("../x", "path separator"),
            ("a b", "white space"),
            ("-rf", "starts or ends"),
            ("web_01", "'_'"),
            ("web01.example.com", "'.'"),
            ("héllo", "non-ASCII"),
            ("a;b", "other than"),
        ] {
            let err = HostName::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(HostName::parse(&"x".repeat(300)).expect_err("long").to_string().contains("longer than 63"));
    }
}
