//! The last step of every edit: splice, parse the result again, and prove it means what was
//! planned before returning it.
//!
//! Checks, in order: the new text parses as a `.sops.yaml` (every alias resolves, anchors
//! precede their aliases); no anchor is defined twice; the whole document, aliases expanded,
//! equals the original with the planned [`Op`]s applied (so nothing else moved, and new
//! aliases resolve to the intended recipients); and sops' rule lookup gives each host file and
//! shared file the recipients the plan promised.
//!
//! An edit that only adds items to block lists is read by parsing the added lines alone
//! ([`super::patch`]): then the first three checks are that the added items mean what the
//! plan says, in the new document, and the argument of that module for the rest.

use super::builder::{Builder, Expect};
use super::compare;
use super::model::Model;
use super::patch::{self, Placement};
use super::render;
use super::style::Style;
use super::text::{self, Splice};
use super::value::{NodeMap, Ops};
use super::{Change, Edit, SopsConfig, SopsConfigError};
use crate::sops::file::normalize_fingerprint;
use crate::sops::yaml::{Node, NodeKind};

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
    let mut placements = Vec::new();
    for (target, items) in &b.targets {
        render::render(m, style, target, items, &mut splices, &mut ops, &mut placements)?;
    }
    check(cfg, m, splices, &placements, &ops, b.changes, &b.expect, hosts)
}

fn fail(message: String) -> SopsConfigError {
    SopsConfigError::Verify { message }
}

/// Applies `splices` and verifies the result against `ops` and `expect`. `hosts` (name,
/// recipient) are the hosts the edit adds: a rule the plan did not touch that now includes
/// one of them (it aliases a list the host joined) is reported as [`Change::AlsoGranted`].
/// `placements` say which splices only add items to a block list.
#[allow(clippy::too_many_lines, reason = "the checks of one edit, in the order the module docs list them")]
#[allow(clippy::too_many_arguments, reason = "the edit's parts as the renderer made them, and what it was for")]
pub(crate) fn check(
    cfg: &SopsConfig,
    m: &Model<'_>,
    splices: Vec<Splice>,
    placements: &[Placement<'_>],
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
    // Only a rule that reaches a node the ops change (itself or through an alias) can name
    // other recipients after the edit: the comparison below proves nothing else changed.
    // Rules the plan changed on purpose are not asked about (a shared rule's 10,000
    // recipients are not gathered only to be skipped).
    let touched: Vec<usize> = changes
        .iter()
        .filter_map(|c| match c {
            Change::HostJoinedRule { line, .. } | Change::SharedJoined { line, .. } => Some(*line),
            _ => None,
        })
        .collect();
    let mut reached = Reach { model: m, ops, memo: NodeMap::default() };
    let old_rules: Vec<(usize, usize, Vec<String>)> = m
        .rules
        .iter()
        .filter(|r| !touched.contains(&r.line) && reached.reaches(r.item, 0))
        .map(|r| (shift(r.item.span.start), r.line, m.groups(r).into_iter().flat_map(|g| g.age).collect()))
        .collect();
    let order = text::order(&splices);
    let new_text = text::apply_in(cfg.text(), &splices, &order);
    let new = match patched(cfg, m, &splices, &order, placements, ops, &new_text) {
        Some(new) => {
            #[cfg(test)]
            PATCHED.with(|n| n.set(n.get() + 1));
            new
        }
        None => {
            let new = SopsConfig::parse(&new_text).map_err(|e| fail(format!("the result does not parse: {e}")))?;
            let nm = new.model();
            if let Some(d) = nm.parsed.duplicate_anchors().first() {
                return Err(fail(format!("anchor `&{d}` is defined twice in the result")));
            }
            if let Some(diff) = compare::difference(m, ops, nm).map_err(fail)? {
                #[cfg(test)]
                eprintln!("--- unverified result:\n{new_text}---");
                return Err(fail(diff));
            }
            new
        }
    };
    let nm = new.model();
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
    let new_rules: std::collections::HashMap<usize, &super::model::Rule<'_>> = nm.rules.iter().map(|r| (r.item.span.start, r)).collect();
    for (start, line, before) in &old_rules {
        let Some(rule) = new_rules.get(start) else {
            continue;
        };
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

#[cfg(test)]
thread_local! {
    /// How many edits on this thread were verified by reading only their added lines.
    pub(crate) static PATCHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The result read by [`patch::patch`], when the edit allows it and each added item means
/// what the plan says in the new document; `None` sends the edit to the whole-document checks.
fn patched(
    cfg: &SopsConfig,
    m: &Model<'_>,
    splices: &[Splice],
    order: &[usize],
    placements: &[Placement<'_>],
    ops: &Ops,
    new_text: &str,
) -> Option<SopsConfig> {
    let p = patch::patch(m, cfg.by_block(), splices, order, placements, ops)?;
    // The old text and the inserted lines were both read by the block reader, so the next
    // edit of this result may be patched in turn.
    let new = SopsConfig::from_parsed(new_text.to_string(), p.parsed, true).ok()?;
    let nm = new.model();
    let mut budget = super::value::budget(nm);
    let none = Ops::default();
    for added in &p.added {
        let NodeKind::Sequence { items, .. } = &patch::at_path(nm.root, &added.path)?.kind else { return None };
        let items = items.get(added.first..added.first + added.values.len())?;
        for (item, want) in items.iter().zip(&added.values) {
            if super::value::value_within(nm, item, &none, &mut budget).ok()? != *want {
                return None;
            }
        }
    }
    #[cfg(debug_assertions)]
    {
        let whole = crate::sops::yaml::parse(new_text).expect("a patched result parses");
        assert_eq!(&whole, nm.parsed, "the patched tree differs from the parse of:\n{new_text}");
        assert!(whole.duplicate_anchors().is_empty(), "a patched result defines an anchor twice");
        assert_eq!(compare::difference(m, ops, nm), Ok(None), "the patched result is not the plan:\n{new_text}");
    }
    Some(new)
}

/// The PGP keys of the first key group of the rule sops uses for `path`, as sops reads them.
fn pgp_of_first_group(m: &Model<'_>, path: &str) -> Vec<String> {
    let rule = m.rule_for(path).ok().flatten();
    let first = rule.and_then(|r| m.groups(r).into_iter().next());
    first.map(|g| g.pgp.iter().map(|p| normalize_fingerprint(p)).collect()).unwrap_or_default()
}

/// Whether a node, or anything below it or named by an alias in it, has an op.
struct Reach<'a, 'm> {
    model: &'a Model<'m>,
    ops: &'a Ops,
    /// Answers for anchored nodes, which many rules share (`*admin`).
    memo: NodeMap<bool>,
}

impl<'m> Reach<'_, 'm> {
    fn reaches(&mut self, n: &'m Node, depth: usize) -> bool {
        if !self.ops.get(n).is_empty() || depth > super::model::MAX_DEPTH * 4 {
            // Too deep to follow: assumed reached, so the rule is compared.
            return true;
        }
        match &n.kind {
            NodeKind::Scalar { .. } => false,
            NodeKind::Alias { name } => {
                let Some(target) = self.model.anchor_before(name, n.span.start) else { return true };
                let key = std::ptr::from_ref(target);
                if let Some(&r) = self.memo.get(&key) {
                    return r;
                }
                let r = self.reaches(target, depth + 1);
                self.memo.insert(key, r);
                r
            }
            NodeKind::Sequence { items, .. } => items.iter().any(|i| self.reaches(i, depth + 1)),
            NodeKind::Mapping { entries, .. } => entries.iter().any(|(k, v)| self.reaches(k, depth + 1) || self.reaches(v, depth + 1)),
        }
    }
}
