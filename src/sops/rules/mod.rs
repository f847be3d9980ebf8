//! The `.sops.yaml` reader and in-place editor.
//!
//! Users write `.sops.yaml` by hand and care about every byte of it, so hostsmith never
//! re-serialises it. An edit parses the text with the positioned YAML layer
//! ([`crate::sops::yaml`]), decides where lines go and writes them in the file's own indentation
//! and style, splices them in, then parses the result again and verifies it: the new
//! document must mean exactly the old one plus the planned additions (aliases expanded),
//! and sops' rule lookup must give each host file admins + host. Anything it cannot edit
//! safely is refused with an error naming the line; then nothing is returned.
//!
//! Decisions (see the design's "Rules that hold everywhere"):
//! - **Host anchors** go under `keys:` (a list; a `hosts_group` list when `keys:` is a
//!   mapping, or a list of anchored lists as in `- &hosts:`), created before
//!   `creation_rules:` when missing, since anchors must precede their aliases.
//! - **Host rules** (`path_regex: ^<host file>$`, the host's file from the template
//!   `host_file` or its own entry in `host_files`, RE2-escaped; one age key group of admins +
//!   host; admins as `*alias` when they are anchors, literally when they are `age1…`) go
//!   right before the first existing rule that matches the host's file (a catch-all, `.*`,
//!   `\.yaml$`…), above the comments that introduce it; otherwise at the end. An existing
//!   rule written for that file alone is kept, and the host joins it if missing.
//! - **Shared files** join the rule sops uses for them (paths are matched as sops does:
//!   relative to the directory of `.sops.yaml`). One key group: that one. Several groups
//!   with `shamir_threshold: 1`: the first group with an age list. Several groups otherwise:
//!   refused, since a host in one group cannot decrypt and a host in all of them defeats the
//!   split. An age list that is an alias (`age: *admins`), comes from a merge key, or is an
//!   anchored list used elsewhere is refused: growing it would grant every user of the
//!   anchor, and replacing it would silently detach the rule from it. A string `age:` (also
//!   `>-`) gets `,age1…` appended on its last line (an alias cannot live in a string). When the
//!   rule sops uses is not specific to the file (a catch-all), hostsmith does not widen it:
//!   it adds a rule for that file before it with the same age recipients plus the hosts, or
//!   refuses when that copy would lose something (PGP/KMS keys, several groups, settings).
//! - A `keys:` list that rules alias as a whole (`age: *hosts`) grows for them too; the edit
//!   reports each such rule as [`Change::AlsoGranted`].
//! - **Line endings**: inserted lines use the file's own (CRLF files stay CRLF).

mod builder;
mod check;
mod compare;
mod error;
mod flow;
mod item;
mod model;
mod patch;
mod plan;
mod refs;
mod remove;
mod render;
mod style;
mod summary;
mod targets;
mod text;
mod value;
mod verify;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use check::{Problem, ProblemKind};
pub use error::SopsConfigError;
pub use summary::{AdminKey, KeyAnchor, RuleSummary};

use crate::sops::yaml::{NodeKind, Parsed};
use model::Model;

/// A parsed `.sops.yaml`: the text, its positioned parse, and the model read from them
/// (rules, anchors, their indexes), built once. Cloning shares all three.
#[derive(Clone)]
pub struct SopsConfig {
    inner: Arc<Inner>,
}

/// The text and its parse, which the model borrows.
struct Source {
    text: String,
    parsed: Parsed,
    /// Read by the block reader (see [`crate::sops::yaml::parse_telling`]).
    by_block: bool,
}

self_cell::self_cell!(
    /// The model lives beside what it borrows: every lookup (one per host in a fleet-wide
    /// command) reads the same model instead of rebuilding it, which made those commands
    /// quadratic in the fleet's size.
    struct Inner {
        owner: Source,
        #[covariant]
        dependent: Model,
    }
);

impl fmt::Debug for SopsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SopsConfig").field("bytes", &self.text().len()).finish_non_exhaustive()
    }
}

/// How hostsmith places hosts (from `hostsmith.toml` `[sops]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditPolicy {
    /// Per-host files, relative to `.sops.yaml`, as a template with `{host}`:
    /// `sops/{host}.yaml`, `hosts/{host}/secrets.yaml`.
    pub host_file: String,
    /// Hosts whose file is not the template's (their records' `sops_file`): host → file.
    pub host_files: BTreeMap<String, String>,
    /// Anchor names in `.sops.yaml`, or `age1…` recipients.
    pub admins: Vec<String>,
    /// Files (relative to `.sops.yaml`) whose rules every host joins.
    pub shared: Vec<String>,
    /// Host name globs kept out of shared rules.
    pub exclude_from_shared: Vec<String>,
    /// Where new anchors go when `keys:` is a mapping (or a list of anchored lists).
    pub hosts_group: String,
}

impl Default for EditPolicy {
    fn default() -> Self {
        Self {
            host_file: "sops/{host}.yaml".into(),
            host_files: BTreeMap::new(),
            admins: Vec::new(),
            shared: Vec::new(),
            exclude_from_shared: Vec::new(),
            hosts_group: String::new(),
        }
    }
}

impl EditPolicy {
    /// The file of `host`: its own entry in `host_files`, else the template's.
    #[must_use]
    pub fn file_of(&self, host: &str) -> String {
        self.host_files.get(host).cloned().unwrap_or_else(|| crate::host_template::render(&self.host_file, host))
    }

    /// The host whose file `path` is (its own entry, or the template's file of a host
    /// without one), if any.
    #[must_use]
    pub fn host_of(&self, path: &str) -> Option<String> {
        let path = model::normalize(path);
        if let Some((host, _)) = self.host_files.iter().find(|(_, f)| model::normalize(f) == path) {
            return Some(host.clone());
        }
        crate::host_template::host_of(&self.host_file, path).filter(|h| !self.host_files.contains_key(h))
    }
}

/// A host and its `age1…` recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    pub name: String,
    pub recipient: String,
}

/// The result of an edit: the whole new text and what changed. No changes means nothing
/// to do, and then `text` is the original text, byte for byte.
#[derive(Debug, Clone)]
pub struct Edit {
    pub text: String,
    pub changes: Vec<Change>,
    /// The new text parsed, as the edit's verification parsed it (so a caller need not
    /// parse two megabytes again).
    config: SopsConfig,
}

impl PartialEq for Edit {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.changes == other.changes
    }
}

impl Eq for Edit {}

impl Edit {
    /// An edit that changes nothing.
    pub(crate) fn none(cfg: &SopsConfig) -> Self {
        Self { text: cfg.text().to_string(), changes: Vec::new(), config: cfg.clone() }
    }

    /// The new `.sops.yaml`, parsed.
    #[must_use]
    pub fn config(&self) -> &SopsConfig {
        &self.config
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// One change an edit made. Lines are 1-based, in the original text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    AnchorAdded {
        host: String,
    },
    RuleAdded {
        host: String,
        path_regex: String,
    },
    /// An existing rule written for the host's file lacked the host.
    HostJoinedRule {
        host: String,
        line: usize,
    },
    SharedJoined {
        host: String,
        file: String,
        line: usize,
    },
    SharedRuleAdded {
        file: String,
        hosts: Vec<String>,
    },
    SectionCreated {
        key: String,
    },
    /// A rule that aliases a list the host was added to now includes the host as well.
    AlsoGranted {
        host: String,
        line: usize,
    },
    RecipientReplaced {
        host: String,
        places: usize,
    },
    AnchorRemoved {
        host: String,
    },
    RuleRemoved {
        host: String,
        line: usize,
    },
    HostLeftRule {
        host: String,
        line: usize,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AnchorAdded { host } => write!(f, "added anchor &{host} under keys"),
            Change::RuleAdded { host, path_regex } => {
                write!(f, "added creation rule {path_regex} for {host}")
            }
            Change::HostJoinedRule { host, line } => {
                write!(f, "added {host} to its rule at line {line}")
            }
            Change::SharedJoined { host, file, line } => {
                write!(f, "added {host} to the rule for {file} at line {line}")
            }
            Change::SharedRuleAdded { file, hosts } => {
                write!(f, "added a creation rule for {file} (with {})", hosts.join(", "))
            }
            Change::SectionCreated { key } => write!(f, "created `{key}:`"),
            Change::AlsoGranted { host, line } => {
                write!(f, "the rule at line {line} aliases a list {host} joined, so it now includes {host}")
            }
            Change::RecipientReplaced { host, places } => {
                write!(f, "replaced the recipient of {host} ({places} place(s))")
            }
            Change::AnchorRemoved { host } => write!(f, "removed anchor &{host}"),
            Change::RuleRemoved { host, line } => {
                write!(f, "removed the rule for {host} at line {line}")
            }
            Change::HostLeftRule { host, line } => {
                write!(f, "removed {host} from the rule at line {line}")
            }
        }
    }
}

/// A named anchor of the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Anchor {
    pub name: String,
    /// 1-based.
    pub line: usize,
    /// The value when the anchor names a string.
    pub value: Option<String>,
    /// `string`, `list`, `mapping` or `empty`.
    pub kind: &'static str,
}

/// The creation rule sops uses for a path, as sops reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CreationRule {
    /// 1-based.
    pub line: usize,
    pub path_regex: Option<String>,
    /// The rule is written for the path alone (an anchored literal), not a catch-all that
    /// happens to match it.
    pub written_for_path: bool,
    pub key_groups: Vec<KeyGroup>,
    pub shamir_threshold: Option<u64>,
    /// `unencrypted_suffix`, `encrypted_regex`, … as written, when present.
    pub settings: Vec<(String, String)>,
}

/// One key group of a rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyGroup {
    pub age: Vec<String>,
    pub pgp: Vec<String>,
    /// Other key types present (`kms`, `gcp_kms`, …): files using them need real sops.
    pub other: Vec<String>,
}

const SETTINGS: [&str; 7] = [
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
    "mac_only_encrypted",
];

impl SopsConfig {
    /// Parses `.sops.yaml`.
    ///
    /// # Errors
    /// Not YAML (or an alias without anchor), more than one document, a document that is not
    /// a mapping, or `creation_rules` that is not a list. Duplicate anchors are accepted here
    /// (they are reported by [`SopsConfig::check`]) but refused by every edit.
    pub fn parse(text: &str) -> Result<Self, SopsConfigError> {
        let (parsed, by_block) = crate::sops::yaml::parse_telling(text).map_err(|e| SopsConfigError::NotYaml {
            line: e.line,
            col: e.col,
            message: e.message,
        })?;
        Self::from_parsed(text.to_string(), parsed, by_block)
    }

    /// A config from a parse of `text` made elsewhere (an edit's patched tree).
    pub(crate) fn from_parsed(text: String, parsed: Parsed, by_block: bool) -> Result<Self, SopsConfigError> {
        let inner = Inner::try_new(Source { text, parsed, by_block }, |s| Model::new(&s.text, &s.parsed))?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Whether the block reader read the text.
    pub(crate) fn by_block(&self) -> bool {
        self.inner.borrow_owner().by_block
    }

    #[must_use]
    pub fn text(&self) -> &str {
        &self.inner.borrow_owner().text
    }

    pub(crate) fn model(&self) -> &Model<'_> {
        self.inner.borrow_dependent()
    }

    /// Adds hosts in one pass: anchors, rules, shared rules. Hosts already fully present are
    /// left alone; when every host is, the edit is empty and the text unchanged.
    ///
    /// # Errors
    /// See [`SopsConfigError`]; nothing is returned on error.
    pub fn add_hosts(&self, hosts: &[HostKey], policy: &EditPolicy) -> Result<Edit, SopsConfigError> {
        plan::add_hosts(self, hosts, policy)
    }

    /// Rotation: replaces the value of anchor `&host` in place, and every literal copy of
    /// the old recipient in creation rules (string `age:` lists cannot hold an alias).
    ///
    /// # Errors
    /// The host has no anchor, the anchor is not a recipient, or the recipient is invalid.
    pub fn replace_host_recipient(&self, host: &str, recipient: &str) -> Result<Edit, SopsConfigError> {
        remove::replace_host_recipient(self, host, recipient)
    }

    /// Revocation: removes the anchor line, the host's own rule and the host from every other
    /// rule (aliases and literal copies), touching only those lines or items.
    ///
    /// # Errors
    /// A layout that cannot be edited safely; nothing is returned.
    pub fn remove_host(&self, host: &str, policy: &EditPolicy) -> Result<Edit, SopsConfigError> {
        remove::remove_host(self, host, policy)
    }

    /// The age recipients of each key group of the rule sops uses for `path` (relative to
    /// the directory of `.sops.yaml`), aliases resolved, strings split on commas. A group
    /// without age keys is an empty list (see [`SopsConfig::rule_for`] for PGP and KMS).
    /// `None` when no rule matches (or a regex tried on the way does not compile).
    #[must_use]
    pub fn recipients_for(&self, path: &str) -> Option<Vec<Vec<String>>> {
        self.model().recipients_for(path)
    }

    /// [`SopsConfig::recipients_for`] for many paths, reading the file's rules once: a run
    /// that adds a thousand hosts looks up a thousand files.
    #[must_use]
    pub fn recipients_for_each(&self, paths: &[&str]) -> Vec<Option<Vec<Vec<String>>>> {
        let m = self.model();
        paths.iter().map(|p| m.recipients_for(p)).collect()
    }

    /// The rule sops uses for `path`, as sops reads it.
    #[must_use]
    pub fn rule_for(&self, path: &str) -> Option<CreationRule> {
        creation_rule(self.model(), path)
    }

    /// [`SopsConfig::rule_for`] for many paths, reading the file's rules once.
    #[must_use]
    pub fn rules_for_each(&self, paths: &[&str]) -> Vec<Option<CreationRule>> {
        let m = self.model();
        paths.iter().map(|p| creation_rule(m, p)).collect()
    }
    /// The value of anchor `&host` when it names a string (normally the host's `age1…`).
    #[must_use]
    pub fn host_recipient(&self, host: &str) -> Option<String> {
        self.model().anchor(host).filter(|n| !n.is_null()).and_then(|n| n.as_str().map(str::to_string))
    }

    /// Every anchor, in text order.
    #[must_use]
    pub fn anchors(&self) -> Vec<Anchor> {
        self.model()
            .anchors
            .iter()
            .map(|(name, n)| Anchor {
                name: (*name).to_string(),
                line: n.line + 1,
                value: n.as_str().map(str::to_string),
                kind: match &n.kind {
                    NodeKind::Sequence { .. } => "list",
                    NodeKind::Mapping { .. } => "mapping",
                    _ if n.is_null() => "empty",
                    _ => "string",
                },
            })
            .collect()
    }

    /// Everything `hostsmith sops check` reports; empty when all is well. `host_files` are
    /// paths relative to `.sops.yaml` (`sops/web01.yaml`).
    #[must_use]
    pub fn check(&self, host_files: &[String], policy: &EditPolicy) -> Vec<Problem> {
        check::check(self, host_files, policy)
    }
}

/// The rule sops uses for `path` in the model `m`, as sops reads it.
fn creation_rule(m: &Model<'_>, path: &str) -> Option<CreationRule> {
    let rule = m.rule_for(path).ok()??;
    let map = rule.map;
    let setting = |k: &str| map.and_then(|mp| m.lookup(mp, k)).and_then(|f| f.value.as_str().map(str::to_string));
    Some(CreationRule {
        line: rule.line,
        path_regex: rule.path_regex.clone(),
        written_for_path: rule.is_specific_to(path),
        key_groups: m.groups(rule).into_iter().map(|g| KeyGroup { age: g.age, pgp: g.pgp, other: g.other }).collect(),
        shamir_threshold: setting("shamir_threshold").and_then(|s| s.parse().ok()),
        settings: SETTINGS.iter().filter_map(|k| setting(k).map(|v| ((*k).to_string(), v))).collect(),
    })
}

#[cfg(test)]
mod tests;
