//! The last step of every edit: splice, parse the result again, and prove it means what was
//! planned before returning it.
//!
//! Checks, in order: the new text parses as a `.sops.yaml` (every alias resolves, anchors
//! precede their aliases); no anchor is defined twice; the whole document, aliases expanded,
//! equals the original with the planned [`Op`]s applied (so nothing else moved, and new
//! aliases resolve to the intended recipients); and sops' rule lookup gives each host file and
//! shared file the recipients the plan promised.

use super::builder::{Builder, Expect};
use super::model::Model;
use super::render;
use super::style::Style;
use super::text::{self, Splice};
use super::value::{self, Ops, V};
use super::{Change, Edit, SopsConfig, SopsConfigError};
use crate::sops::file::normalize_fingerprint;

/// Renders the planned targets and verifies the result.
pub(crate) fn finish(
    cfg: &SopsConfig,
    m: &Model<'_>,
    style: &Style,
    b: Builder<'_>,
    hosts: &[(String, String)],
) -> Result<Edit, SopsConfigError> {
    let mut splices = Vec::new();
    let mut ops = Ops::default();
    for (target, items) in &b.targets {
        render::render(m, style, target, items, &mut splices, &mut ops)?;
    }
    check(cfg, m, splices, &ops, b.changes, &b.expect, hosts)
}

fn fail(message: String) -> SopsConfigError {
    SopsConfigError::Verify { message }
}

/// Applies `splices` and verifies the result against `ops` and `expect`. `hosts` (name,
/// recipient) are the hosts the edit adds: a rule the plan did not touch that now includes
/// one of them (it aliases a list the host joined) is reported as [`Change::AlsoGranted`].
#[allow(clippy::too_many_lines, reason = "the checks of one edit, in the order the module docs list them")]
pub(crate) fn check(
    cfg: &SopsConfig,
    m: &Model<'_>,
    splices: Vec<Splice>,
    ops: &Ops,
    mut changes: Vec<Change>,
    expect: &[Expect],
    hosts: &[(String, String)],
) -> Result<Edit, SopsConfigError> {
    if splices.is_empty() {
        return Ok(Edit::none(cfg));
    }
    let shift = |pos: usize| -> usize {
        let mut out = pos;
        for s in &splices {
            if s.at.end <= pos {
                out = out + s.text.len() - s.at.len();
            }
        }
        out
    };
    let old_rules: Vec<(usize, usize, Vec<String>)> =
        m.rules.iter().map(|r| (shift(r.item.span.start), r.line, m.groups(r).into_iter().flat_map(|g| g.age).collect())).collect();
    let new_text = text::apply(cfg.text(), splices);
    let new = SopsConfig::parse(&new_text).map_err(|e| fail(format!("the result does not parse: {e}")))?;
    let nm = new.model();
    if let Some(d) = nm.parsed.duplicate_anchors().first() {
        return Err(fail(format!("anchor `&{d}` is defined twice in the result")));
    }
    let expected = value::value(m, m.root, ops).map_err(fail)?;
    let actual = value::value(nm, nm.root, &Ops::default()).map_err(fail)?;
    if let Some(diff) = first_difference(&expected, &actual, String::new()) {
        #[cfg(test)]
        eprintln!("--- unverified result:\n{new_text}---");
        return Err(fail(diff));
    }
    // One lookup per path: a shared file is expected to include every new host.
    let mut lookups: std::collections::HashMap<&str, Option<Vec<Vec<String>>>> = std::collections::HashMap::new();
    for e in expect {
        let (Expect::Exactly { path, .. } | Expect::Includes { path, .. } | Expect::Excludes { path, .. }) = e;
        let got = lookups.entry(path.as_str()).or_insert_with(|| nm.recipients_for(path));
        let ok = match e {
            Expect::Exactly { groups, pgp, .. } => got.as_ref() == Some(groups) && pgp_of_first_group(nm, path) == *pgp,
            Expect::Includes { recipient, .. } => got.as_ref().is_some_and(|g| g.iter().flatten().any(|r| r == recipient)),
            Expect::Excludes { recipient, .. } => !got.as_ref().is_some_and(|g| g.iter().flatten().any(|r| r == recipient)),
        };
        if !ok {
            return Err(fail(format!("the rule sops uses for `{path}` is not what was planned ({e:?})")));
        }
    }
    let touched: Vec<usize> = changes
        .iter()
        .filter_map(|c| match c {
            Change::HostJoinedRule { line, .. } | Change::SharedJoined { line, .. } => Some(*line),
            _ => None,
        })
        .collect();
    let new_rules: std::collections::HashMap<usize, &super::model::Rule<'_>> = nm.rules.iter().map(|r| (r.item.span.start, r)).collect();
    for (start, line, before) in &old_rules {
        let Some(rule) = new_rules.get(start) else {
            continue;
        };
        if touched.contains(line) {
            continue;
        }
        let after: std::collections::HashSet<String> = nm.groups(rule).into_iter().flat_map(|g| g.age).collect();
        let before: std::collections::HashSet<&str> = before.iter().map(String::as_str).collect();
        if after.iter().all(|r| before.contains(r.as_str())) {
            continue;
        }
        for (host, recipient) in hosts {
            if after.contains(recipient) && !before.contains(recipient.as_str()) {
                changes.push(Change::AlsoGranted { host: host.clone(), line: *line });
            }
        }
    }
    Ok(Edit { text: new_text, changes, config: new })
}

/// The PGP keys of the first key group of the rule sops uses for `path`, as sops reads them.
fn pgp_of_first_group(m: &Model<'_>, path: &str) -> Vec<String> {
    let rule = m.rule_for(path).ok().flatten();
    let first = rule.and_then(|r| m.groups(r).into_iter().next());
    first.map(|g| g.pgp.iter().map(|p| normalize_fingerprint(p)).collect()).unwrap_or_default()
}

/// Where two values first differ, as a path (`creation_rules[2].age[1]`).
fn first_difference(expected: &V, actual: &V, path: String) -> Option<String> {
    let at = |p: &str| {
        if p.is_empty() { "the document".to_string() } else { format!("`{p}`") }
    };
    match (expected, actual) {
        (V::Seq(a), V::Seq(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if let Some(d) = first_difference(x, y, format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            (a.len() != b.len()).then(|| format!("{} has {} items instead of {}", at(&path), b.len(), a.len()))
        }
        (V::Map(a), V::Map(b)) => {
            for ((ka, x), (kb, y)) in a.iter().zip(b) {
                if ka != kb {
                    return Some(format!("{} has key `{kb}` where `{ka}` was expected", at(&path)));
                }
                let sub = if path.is_empty() { ka.clone() } else { format!("{path}.{ka}") };
                if let Some(d) = first_difference(x, y, sub) {
                    return Some(d);
                }
            }
            (a.len() != b.len()).then(|| format!("{} has {} keys instead of {}", at(&path), b.len(), a.len()))
        }
        _ if expected == actual => None,
        _ => Some(format!("{} is {actual:?} instead of {expected:?}", at(&path))),
    }
}
