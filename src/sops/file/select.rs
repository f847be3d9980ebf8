//! Which values and comments sops encrypts: `shouldBeEncrypted` in sops' `sops.go` (3.11),
//! and the additional data each encrypted item is bound to.
//!
//! The choice depends on the key path and on the comments seen so far at each level (for the
//! comment regexes), and it must be the same on both sides: a value sops leaves in clear but
//! hostsmith encrypts (or the reverse) breaks the MAC.

use super::{EncryptionOptions, SopsFileError};

/// A regex rule as written in the file and compiled. sops ignores a pattern that does not
/// compile (it never matches), and so does this when reading a file.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub text: String,
    re: Option<regex::Regex>,
}

impl Pattern {
    pub(crate) fn lenient(text: &str) -> Self {
        Self { text: text.to_string(), re: regex::Regex::new(text).ok() }
    }

    pub(crate) fn strict(text: &str, field: &str) -> Result<Self, SopsFileError> {
        regex::Regex::new(text)
            .map(|re| Self { text: text.to_string(), re: Some(re) })
            .map_err(|_| SopsFileError::Options(format!("`{field}` is not a valid regular expression")))
    }

    fn is_match(&self, s: &str) -> bool {
        self.re.as_ref().is_some_and(|re| re.is_match(s))
    }
}

/// The encryption rules of a file: at most one of the six selectors, plus the MAC mode.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    pub unencrypted_suffix: Option<String>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_regex: Option<Pattern>,
    pub encrypted_regex: Option<Pattern>,
    pub unencrypted_comment_regex: Option<Pattern>,
    pub encrypted_comment_regex: Option<Pattern>,
    pub mac_only_encrypted: bool,
}

impl Rules {
    /// Rules from options the caller chose; invalid patterns are refused.
    pub(crate) fn from_options(o: &EncryptionOptions) -> Result<Self, SopsFileError> {
        let strict = |v: &Option<String>, f: &str| v.as_deref().map(|t| Pattern::strict(t, f)).transpose();
        let rules = Self {
            unencrypted_suffix: o.unencrypted_suffix.clone().filter(|s| !s.is_empty()),
            encrypted_suffix: o.encrypted_suffix.clone().filter(|s| !s.is_empty()),
            unencrypted_regex: strict(&o.unencrypted_regex, "unencrypted_regex")?,
            encrypted_regex: strict(&o.encrypted_regex, "encrypted_regex")?,
            unencrypted_comment_regex: strict(&o.unencrypted_comment_regex, "unencrypted_comment_regex")?,
            encrypted_comment_regex: strict(&o.encrypted_comment_regex, "encrypted_comment_regex")?,
            mac_only_encrypted: o.mac_only_encrypted,
        };
        rules.with_default()
    }

    /// sops' `ToInternal`: more than one selector is an error, none means `_unencrypted`.
    pub(crate) fn with_default(mut self) -> Result<Self, SopsFileError> {
        let count = [
            self.unencrypted_suffix.is_some(),
            self.encrypted_suffix.is_some(),
            self.unencrypted_regex.is_some(),
            self.encrypted_regex.is_some(),
            self.unencrypted_comment_regex.is_some(),
            self.encrypted_comment_regex.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if count > 1 {
            return Err(SopsFileError::Options(
                "use at most one of unencrypted_suffix, encrypted_suffix, unencrypted_regex, encrypted_regex, unencrypted_comment_regex and encrypted_comment_regex".into(),
            ));
        }
        if count == 0 {
            self.unencrypted_suffix = Some("_unencrypted".into());
        }
        Ok(self)
    }

    /// sops' `shouldBeEncrypted`.
    pub(crate) fn should_encrypt(&self, path: &[String], stack: &[Vec<String>], is_comment: bool) -> bool {
        let mut encrypted = true;
        if let Some(suffix) = &self.unencrypted_suffix
            && path.iter().any(|p| p.ends_with(suffix.as_str()))
        {
            encrypted = false;
        }
        if let Some(suffix) = &self.encrypted_suffix {
            encrypted = path.iter().any(|p| p.ends_with(suffix.as_str()));
        }
        if let Some(re) = &self.unencrypted_regex
            && path.iter().any(|p| re.is_match(p))
        {
            encrypted = false;
        }
        if let Some(re) = &self.encrypted_regex {
            encrypted = path.iter().any(|p| re.is_match(p));
        }
        if let Some(re) = &self.unencrypted_comment_regex
            && stack.iter().flatten().any(|c| re.is_match(c))
        {
            encrypted = false;
        }
        if let Some(re) = &self.encrypted_comment_regex {
            let last_level = stack.len().saturating_sub(1);
            let last_len = stack.last().map_or(0, Vec::len);
            encrypted = stack.iter().enumerate().any(|(i, level)| {
                level.iter().enumerate().any(|(j, c)| {
                    // The comment being decided does not select itself.
                    let itself = is_comment && i == last_level && j + 1 == last_len;
                    !itself && re.is_match(c)
                })
            });
        }
        encrypted
    }
}

/// sops' additional data for a path.
pub(crate) fn aad(path: &[String]) -> String {
    let mut s = path.join(":");
    s.push(':');
    s
}
