//! Planning `add_hosts`: what goes where, decided on the original parse, rendered in one
//! pass (one splice per place, however many hosts), then verified.

use super::builder::{Builder, Expect};
use super::item::{Item, Target};
use super::model::{Model, describe};
use super::refs::{AgeRef, admin_refs, defined_before, editable, host_file, looks_like_recipient, validate_host, validate_recipient};
use super::style::Style;
use super::targets::{age_target, copy_refs, keys_target, rules_append, rules_seq};
use super::verify;
use super::{Change, Edit, EditPolicy, HostKey, SopsConfig, SopsConfigError};

/// Plans and verifies [`SopsConfig::add_hosts`]: per host, its anchor (unless present with
/// the same value), its rule (a new one before the first rule that already matches its
/// file, or the host joins an existing rule written for that file alone), then per shared
/// file the joins (or a new rule for that file). Every place is rendered once for all hosts.
#[allow(clippy::too_many_lines, reason = "the planner decides every placement on one parse; each case is a commented block")]
pub(crate) fn add_hosts(cfg: &SopsConfig, hosts: &[HostKey], policy: &EditPolicy) -> Result<Edit, SopsConfigError> {
    let m = cfg.model();
    editable(m)?;
    let mut hs: Vec<&HostKey> = Vec::new();
    for h in hosts {
        validate_host(&h.name)?;
        validate_recipient(&h.recipient)?;
        match hs.iter().find(|o| o.name == h.name) {
            Some(o) if o.recipient != h.recipient => {
                return Err(SopsConfigError::InvalidHostName {
                    name: h.name.clone(),
                    reason: "it is listed twice with different recipients".into(),
                });
            }
            Some(_) => {}
            None => hs.push(h),
        }
    }
    let excluded = exclusions(policy)?;
    let style = Style::detect(m);
    let admins = admin_refs(m, &policy.admins);
    let mut b = Builder::new();

    for h in &hs {
        let file = host_file(policy, &h.name);
        if let Some(shared) = policy.shared.iter().find(|s| super::model::normalize(s) == file) {
            return Err(SopsConfigError::HostFileIsShared { host: h.name.clone(), path: shared.clone() });
        }
        match m.anchor(&h.name) {
            None => {
                let (target, created) = keys_target(m, policy)?;
                if let Some(c) = created.filter(|c| !b.changes.contains(c)) {
                    b.changes.push(c);
                }
                b.add(target, Item::scalar(format!("&{} {}", h.name, h.recipient), &h.recipient));
                b.changes.push(Change::AnchorAdded { host: h.name.clone() });
            }
            Some(n) => match n.as_str() {
                Some(v) if v == h.recipient => {}
                Some(v) if !n.is_null() && looks_like_recipient(v) => {
                    return Err(SopsConfigError::RecipientMismatch {
                        host: h.name.clone(),
                        line: n.line + 1,
                        existing: v.into(),
                        new: h.recipient.clone(),
                    });
                }
                _ => {
                    return Err(SopsConfigError::AnchorTaken {
                        name: h.name.clone(),
                        line: n.line + 1,
                        what: format!("{} ({})", describe(n), m.lines.s[n.span.clone()].lines().next().unwrap_or("")),
                    });
                }
            },
        }
        let host_ref = host_ref(m, h);
        match m.rule_for(&file)? {
            Some(r) if r.is_specific_to(&file) => {
                if !m.groups(r).iter().any(|g| g.age.contains(&h.recipient)) {
                    let target = age_target(m, r, &file)?;
                    defined_before(m, std::slice::from_ref(&host_ref), r.item.span.start.max(1))?;
                    b.add(target, Item::scalar(host_ref.text.clone(), &h.recipient));
                    b.changes.push(Change::HostJoinedRule { host: h.name.clone(), line: r.line });
                }
                b.expect.push(Expect::Includes { path: file.clone(), recipient: h.recipient.clone() });
            }
            first => {
                let admins = admins.clone()?;
                let mut refs = admins.clone();
                refs.push(host_ref);
                let (target, at) = match first {
                    Some(r) => (Target::Before { seq: rules_seq(m)?, index: r.index }, r.item.span.start),
                    None => rules_append(m, &mut b)?,
                };
                defined_before(m, &refs, at)?;
                let re = format!("^{}$", super::text::escape_re2(&file));
                b.add(target, rule_item(&style, &re, &refs));
                b.changes.push(Change::RuleAdded { host: h.name.clone(), path_regex: re });
                let recipients = refs.iter().filter(|r| !r.pgp).map(|r| r.recipient.clone()).collect();
                let pgp = refs.iter().filter(|r| r.pgp).map(|r| r.recipient.clone()).collect();
                b.expect.push(Expect::Exactly { path: file.clone(), groups: vec![recipients], pgp });
            }
        }
    }

    for shared in &policy.shared {
        let joining: Vec<&&HostKey> = hs.iter().filter(|h| !excluded.iter().any(|p| p.matches(&h.name))).collect();
        if joining.is_empty() {
            continue;
        }
        match m.rule_for(shared)? {
            Some(r) if r.is_specific_to(shared) => {
                let have: Vec<String> = m.groups(r).into_iter().flat_map(|g| g.age).collect();
                for h in joining.iter().filter(|h| !have.contains(&h.recipient)) {
                    // A string `age:` takes the recipient itself (see `Item::literal`).
                    let target = age_target(m, r, shared)?;
                    b.add(target, Item::scalar(host_ref(m, h).text, &h.recipient));
                    b.changes.push(Change::SharedJoined { host: h.name.clone(), file: shared.clone(), line: r.line });
                }
            }
            Some(g)
                if {
                    let have: Vec<String> = m.groups(g).into_iter().flat_map(|g| g.age).collect();
                    joining.iter().all(|h| have.contains(&h.recipient))
                } => {}
            first => {
                let (mut refs, target, at) = match first {
                    Some(g) => (copy_refs(m, g, shared)?, Target::Before { seq: rules_seq(m)?, index: g.index }, g.item.span.start),
                    None => {
                        let (t, at) = rules_append(m, &mut b)?;
                        (admins.clone()?, t, at)
                    }
                };
                for h in &joining {
                    if !refs.iter().any(|r| r.recipient == h.recipient) {
                        refs.push(host_ref(m, h));
                    }
                }
                defined_before(m, &refs, at)?;
                let re = format!("^{}$", super::text::escape_re2(super::model::normalize(shared)));
                b.add(target, rule_item(&style, &re, &refs));
                b.changes.push(Change::SharedRuleAdded { file: shared.clone(), hosts: joining.iter().map(|h| h.name.clone()).collect() });
            }
        }
        for h in &joining {
            b.expect.push(Expect::Includes { path: shared.clone(), recipient: h.recipient.clone() });
        }
    }
    let hosts: Vec<(String, String)> = hs.iter().map(|h| (h.name.clone(), h.recipient.clone())).collect();
    verify::finish(cfg, m, &style, b, &hosts)
}

fn exclusions(policy: &EditPolicy) -> Result<Vec<glob::Pattern>, SopsConfigError> {
    policy
        .exclude_from_shared
        .iter()
        .map(|p| glob::Pattern::new(p).map_err(|e| SopsConfigError::InvalidGlob { pattern: p.clone(), reason: e.to_string() }))
        .collect()
}

fn host_ref(m: &Model<'_>, h: &HostKey) -> AgeRef {
    // A new anchor goes under `keys:`, which precedes every rule.
    let def = m.anchor(&h.name).map(|n| (h.name.clone(), n.span.start));
    AgeRef { text: format!("*{}", h.name), recipient: h.recipient.clone(), def, pgp: false }
}

fn rule_item(style: &Style, re: &str, refs: &[AgeRef]) -> Item {
    let pick = |pgp: bool| -> Vec<(String, String)> {
        refs.iter().filter(|r| r.pgp == pgp).map(|r| (r.text.clone(), r.recipient.clone())).collect()
    };
    style.rule(re, &pick(false), &pick(true))
}
