//! What a `.sops.yaml` written by someone else says about its fleet, for `hostsmith init` in
//! an existing fleet: which anchors each rule uses, and where each anchor is defined.

use super::SopsConfig;
use super::model::Model;
use crate::sops::file::is_pgp_fingerprint;
use crate::sops::yaml::{Node, NodeKind};

/// One creation rule: its regex and the anchors its key groups name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSummary {
    /// 1-based.
    pub line: usize,
    pub path_regex: Option<String>,
    /// Anchors the rule names, directly or through an aliased list of aliases, in order,
    /// each once.
    pub anchors: Vec<String>,
}

/// One anchor defined under `keys:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAnchor {
    pub name: String,
    /// The key it is listed under when `keys:` is a mapping, or the anchor of the list it is
    /// in when `keys:` is a list of anchored lists; `None` in a flat list.
    pub group: Option<String>,
    /// `age`, `pgp` or `other`, by the shape of its value.
    pub kind: &'static str,
}

/// One admin key, as `hostsmith.toml`'s `admins` names it and `.sops.yaml` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKey {
    /// The anchor it is defined under, or the literal from `admins`.
    pub name: String,
    /// The recipient, or the PGP fingerprint.
    pub recipient: String,
    pub pgp: bool,
}

impl SopsConfig {
    /// The keys the fleet's admins stand for: each anchor of `admins` (a list anchor by its
    /// items), or the literal recipient or fingerprint.
    ///
    /// # Errors
    /// An admin is neither an anchor of a recipient or list nor a recipient or fingerprint.
    pub fn admin_keys(&self, admins: &[String]) -> Result<Vec<AdminKey>, super::SopsConfigError> {
        let m = self.model();
        let mut out = Vec::new();
        for admin in admins {
            for r in super::refs::admin_refs(m, std::slice::from_ref(admin))? {
                let name = r.text.strip_prefix('*').map_or_else(|| admin.clone(), str::to_string);
                out.push(AdminKey { name, recipient: r.recipient, pgp: r.pgp });
            }
        }
        Ok(out)
    }

    /// Every creation rule with the anchors it names.
    #[must_use]
    pub fn rule_summaries(&self) -> Vec<RuleSummary> {
        let m = self.model();
        m.rules
            .iter()
            .map(|r| {
                let mut anchors = Vec::new();
                if let Some(map) = r.map {
                    named(m, map, &mut anchors, 0);
                }
                RuleSummary { line: r.line, path_regex: r.path_regex.clone(), anchors }
            })
            .collect()
    }

    /// The string anchors defined under `keys:`, in text order.
    #[must_use]
    pub fn key_anchors(&self) -> Vec<KeyAnchor> {
        let m = self.model();
        let mut out = Vec::new();
        let Some((_, keys)) = m.keys else { return out };
        let mut visit = |n: &Node, group: Option<String>| {
            if let (Some(name), Some(value)) = (&n.anchor, n.as_str()) {
                let kind = if value.starts_with("age1") || value.starts_with("ssh-") {
                    "age"
                } else if is_pgp_fingerprint(value) {
                    "pgp"
                } else {
                    "other"
                };
                out.push(KeyAnchor { name: name.clone(), group, kind });
            }
        };
        match &keys.kind {
            NodeKind::Mapping { entries, .. } => {
                for (k, v) in entries {
                    v.walk(&mut |n| visit(n, k.as_str().map(str::to_string)));
                }
            }
            NodeKind::Sequence { items, .. } => {
                for item in items {
                    let group = matches!(item.kind, NodeKind::Sequence { .. })
                        .then(|| item.anchor.as_deref().map(|a| a.trim_end_matches(':').to_string()))
                        .flatten();
                    item.walk(&mut |n| visit(n, group.clone()));
                }
            }
            _ => {}
        }
        out
    }
}

/// The anchors `node` names through aliases; an alias of a list counts as its items too.
fn named(m: &Model<'_>, node: &Node, out: &mut Vec<String>, depth: usize) {
    if depth > super::model::MAX_DEPTH {
        return;
    }
    node.walk(&mut |n| {
        if let NodeKind::Alias { name } = &n.kind {
            if !out.contains(name) {
                out.push(name.clone());
            }
            let target = m.resolve(n);
            if matches!(target.kind, NodeKind::Sequence { .. } | NodeKind::Mapping { .. }) {
                named(m, target, out, depth + 1);
            }
        }
    });
}
