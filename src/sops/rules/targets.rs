//! Where things go: the list under `keys:` that takes a new anchor, where rules are
//! appended, and the age list of an existing rule a host joins (with the refusals that keep
//! an edit from granting more than it says).

use super::SopsConfigError;
use super::builder::Builder;
use super::item::Target;
use super::model::{Found, Model, Rule, describe};
use super::refs::{AgeRef, list_ref};
use super::{Change, EditPolicy};
use crate::sops::yaml::{Node, NodeKind};

pub(crate) fn rules_seq<'a>(m: &Model<'a>) -> Result<&'a Node, SopsConfigError> {
    match m.rules_entry {
        Some((_, raw)) if matches!(raw.kind, NodeKind::Sequence { .. }) => Ok(raw),
        Some((k, _)) => {
            Err(SopsConfigError::unsupported(k.line + 1, "`creation_rules` is an alias", "write the rules out under `creation_rules:`"))
        }
        None => Err(SopsConfigError::unsupported(1, "no `creation_rules`", "")),
    }
}

/// Where rules are appended, and the position their aliases must follow.
pub(crate) fn rules_append<'a>(m: &Model<'a>, b: &mut Builder<'a>) -> Result<(Target<'a>, usize), SopsConfigError> {
    let end = m.lines.s.len();
    match m.rules_entry {
        None => {
            let created = Change::SectionCreated { key: "creation_rules".into() };
            if !b.changes.contains(&created) {
                b.changes.push(created);
            }
            Ok((Target::Entry { map: m.root, key: "creation_rules".into(), before: None }, end))
        }
        // Where the new rule goes, for the check that the anchors it uses come before it.
        Some((k, raw)) => match &raw.kind {
            NodeKind::Sequence { .. } => Ok((Target::Seq { seq: raw, key: Some(k) }, raw.span.end)),
            _ if raw.is_null() => Ok((Target::Null { key: k, value: raw }, k.span.end)),
            _ => rules_seq(m).map(|s| (Target::Seq { seq: s, key: Some(k) }, s.span.end)),
        },
    }
}

/// Where a new host anchor goes.
pub(crate) fn keys_target<'a>(m: &Model<'a>, policy: &EditPolicy) -> Result<(Target<'a>, Option<Change>), SopsConfigError> {
    let group = policy.hosts_group.as_str();
    let created = |key: String| Some(Change::SectionCreated { key });
    let Some((k, raw)) = m.keys else {
        let before = match (&m.root.kind, m.rules_entry) {
            (NodeKind::Mapping { entries, .. }, Some(re)) => entries.iter().position(|e| std::ptr::eq(e, re)),
            _ => None,
        };
        return Ok((Target::Entry { map: m.root, key: "keys".into(), before }, created("keys".into())));
    };
    if let Some((rk, _)) = m.rules_entry
        && rk.span.start < k.span.start
    {
        return Err(SopsConfigError::unsupported(
            k.line + 1,
            "`keys:` comes after `creation_rules:`, so a new anchor would follow the aliases that use it",
            "move `keys:` above `creation_rules:`",
        ));
    }
    let refuse = |what: String| SopsConfigError::unsupported(raw.line + 1, what, "write `keys:` as a list of `- &name age1...` items");
    match &raw.kind {
        NodeKind::Sequence { items, flow } => {
            let name = |i: &Node| i.anchor.as_deref().map(|a| a.trim_end_matches(':').to_string());
            let is_list = |i: &Node| matches!(i.kind, NodeKind::Sequence { .. });
            if let Some(g) = items.iter().find(|i| is_list(i) && name(i).as_deref() == Some(group)) {
                return Ok((Target::Seq { seq: g, key: None }, None));
            }
            if !items.is_empty() && items.iter().all(is_list) {
                if *flow {
                    return Err(refuse("`keys:` is a flow list of lists".into()));
                }
                let colon = items.iter().any(|i| i.anchor.as_deref().is_some_and(|a| a.ends_with(':')));
                let anchor = format!("{group}{}", if colon { ":" } else { "" });
                return Ok((Target::Group { seq: raw, anchor }, created(format!("keys: &{group}"))));
            }
            Ok((Target::Seq { seq: raw, key: Some(k) }, None))
        }
        NodeKind::Mapping { .. } => match raw.entry(group) {
            Some((gk, gv)) => match &gv.kind {
                NodeKind::Sequence { .. } => Ok((Target::Seq { seq: gv, key: Some(gk) }, None)),
                _ if gv.is_null() => Ok((Target::Null { key: gk, value: gv }, None)),
                _ => Err(SopsConfigError::unsupported(
                    gv.line + 1,
                    format!("`keys.{group}` is {}, not a list", describe(gv)),
                    "make it a list of `- &name age1...` items, or change `sops.hosts_group` in hostsmith.toml",
                )),
            },
            None => Ok((Target::Entry { map: raw, key: group.into(), before: None }, created(format!("keys.{group}")))),
        },
        _ if raw.is_null() => Ok((Target::Null { key: k, value: raw }, None)),
        _ => Err(refuse(format!("`keys:` is {}", describe(raw)))),
    }
}

/// The age list of `rule` a host joins (see the module docs for the refusals).
pub(crate) fn age_target<'a>(m: &Model<'a>, rule: &Rule<'a>, file: &str) -> Result<Target<'a>, SopsConfigError> {
    let line = rule.line;
    let refuse = |line: usize, what: String, todo: &str| Err(SopsConfigError::unsupported(line, what, todo));
    let write_out = "write the list out in the rule (e.g. `age: [*alice, *bob]`), or keep the host out with `sops.exclude_from_shared`";
    let Some(map) = rule.map.filter(|_| !matches!(rule.item.kind, NodeKind::Alias { .. })) else {
        return refuse(line, format!("the rule for `{file}` is an alias or not a mapping"), write_out);
    };
    let (map, in_group) = match m.lookup(map, "key_groups") {
        Some(f) if matches!(&f.value.kind, NodeKind::Sequence { items, .. } if !items.is_empty()) => {
            let NodeKind::Sequence { items, .. } = &f.raw.kind else {
                return refuse(f.raw.line + 1, format!("the key groups of the rule for `{file}` are an alias"), write_out);
            };
            if !f.direct {
                return refuse(f.key.line + 1, format!("the key groups of the rule for `{file}` come from a merge key"), write_out);
            }
            let threshold = m.lookup(map, "shamir_threshold").and_then(|t| t.value.as_str().map(str::trim).map(str::to_string));
            if items.len() > 1 && threshold.as_deref() != Some("1") {
                return refuse(
                    line,
                    format!("the rule for `{file}` splits its data key across {} key groups (shamir)", items.len()),
                    "a host in one group cannot decrypt and a host in all of them defeats the split: add it by hand, or exclude it with `sops.exclude_from_shared`",
                );
            }
            let with_age = items.iter().find(|g| m.lookup(m.resolve(g), "age").is_some()).unwrap_or(&items[0]);
            if !matches!(with_age.kind, NodeKind::Mapping { .. }) {
                return refuse(with_age.line + 1, format!("the key group of the rule for `{file}` is an alias"), write_out);
            }
            (with_age, true)
        }
        _ => (map, false),
    };
    match m.lookup(map, "age") {
        None => Ok(Target::Entry { map, key: "age".into(), before: None }),
        Some(Found { direct: false, key, .. }) => {
            refuse(key.line + 1, format!("the age list of the rule for `{file}` comes from a merge key (`<<`)"), write_out)
        }
        Some(Found { raw, key, .. }) => match &raw.kind {
            NodeKind::Alias { name } => refuse(
                raw.line + 1,
                format!(
                    "the age list of the rule for `{file}` is the alias `*{name}`: adding to it would grant every user of `&{name}`, and replacing it would detach the rule from `&{name}`"
                ),
                write_out,
            ),
            _ if m.is_aliased(raw) => refuse(
                raw.line + 1,
                format!("the age list of the rule for `{file}` is anchored and used elsewhere: adding to it would grant those places too"),
                write_out,
            ),
            NodeKind::Sequence { .. } => Ok(Target::Seq { seq: raw, key: Some(key) }),
            _ if raw.is_null() => Ok(Target::Null { key, value: raw }),
            NodeKind::Scalar { .. } if !in_group => Ok(Target::Str(raw)),
            _ => refuse(raw.line + 1, format!("the age keys of the rule for `{file}` are {}, not a list", describe(raw)), write_out),
        },
    }
}

/// The age recipients of a general rule, to start a rule for one file it covers: only when
/// copying keeps exactly who can read the file (one group, age only, no other settings).
pub(crate) fn copy_refs(m: &Model<'_>, rule: &Rule<'_>, file: &str) -> Result<Vec<AgeRef>, SopsConfigError> {
    let refuse = || {
        SopsConfigError::unsupported(
            rule.line,
            format!(
                "the rule sops uses for `{file}` also covers other files, and hostsmith cannot copy it into a rule for `{file}` alone (it has several key groups, non-age keys or other settings)"
            ),
            format!(
                "add a rule for `{file}` before it yourself (e.g. `path_regex: ^{}$`), or remove the file from `sops.shared`",
                super::text::escape_re2(file)
            ),
        )
    };
    let map = rule.map.ok_or_else(refuse)?;
    let NodeKind::Mapping { entries, .. } = &map.kind else {
        return Err(refuse());
    };
    if entries.iter().any(|(k, _)| !matches!(k.as_str(), Some("path_regex" | "age" | "key_groups"))) {
        return Err(refuse());
    }
    let groups = m.groups(rule);
    let [g] = groups.as_slice() else {
        return Err(refuse());
    };
    if !g.pgp.is_empty() || !g.other.is_empty() {
        return Err(refuse());
    }
    let Some(age) = g.map.and_then(|gm| m.lookup(gm, "age")) else {
        return Ok(Vec::new());
    };
    match &age.value.kind {
        NodeKind::Sequence { items, .. } => items.iter().map(|i| list_ref(m, i).ok_or_else(refuse)).collect(),
        _ => Ok(m
            .recipients(age.raw)
            .into_iter()
            .map(|r| AgeRef { text: super::text::scalar(&r, crate::sops::yaml::ScalarStyle::Plain), recipient: r, def: None, pgp: false })
            .collect()),
    }
}
