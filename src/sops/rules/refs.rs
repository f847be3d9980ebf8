//! How recipients are written into new list items, and the checks every edit makes on its
//! inputs (host names, recipients, admins, duplicate anchors).

use super::model::{Model, describe};
use super::{EditPolicy, SopsConfigError};
use crate::recipient::RecipientKind;
use crate::sops::file::{is_pgp_fingerprint, normalize_fingerprint};
use crate::sops::yaml::{Node, NodeKind};

/// A recipient as it will be written in a list: an alias or the literal.
#[derive(Clone)]
pub(crate) struct AgeRef {
    pub text: String,
    /// The `age1…` recipient, or the PGP fingerprint (spaces removed, as sops reads it).
    pub recipient: String,
    /// Where the anchor of an alias is defined (it must precede the alias).
    pub def: Option<(String, usize)>,
    /// A PGP key (it goes in a `pgp:` list), not an age recipient.
    pub pgp: bool,
}

/// Refusals common to every edit: duplicate anchors, a flow-style document.
pub(crate) fn editable(m: &Model<'_>) -> Result<(), SopsConfigError> {
    if let Some(name) = m.parsed.duplicate_anchors().into_iter().next() {
        let lines: Vec<usize> = m.anchors.iter().filter(|(a, _)| *a == name).map(|(_, n)| n.line + 1).collect();
        let line = lines.get(1).copied().unwrap_or(1);
        let lines = lines.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        return Err(SopsConfigError::DuplicateAnchor { name, line, lines });
    }
    if matches!(m.root.kind, NodeKind::Mapping { flow: true, .. }) {
        return Err(SopsConfigError::unsupported(
            m.root.line + 1,
            "the document is one flow mapping (`{...}`, json style)",
            "rewrite it in block style (`creation_rules:` on its own line)",
        ));
    }
    Ok(())
}

pub(crate) fn validate_host(name: &str) -> Result<(), SopsConfigError> {
    let bad = |reason: &str| Err(SopsConfigError::InvalidHostName { name: name.into(), reason: reason.into() });
    if name.is_empty() || name.len() > 63 {
        return bad("a host name is 1 to 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || name.starts_with('-') || name.ends_with('-') {
        return bad("use letters, digits and inner hyphens only (an rfc 1123 label)");
    }
    Ok(())
}

/// A host's recipient: X25519 only (what sops-nix decrypts with on the host).
pub(crate) fn validate_recipient(r: &str) -> Result<(), SopsConfigError> {
    match crate::recipient::kind_of(r) {
        Ok(RecipientKind::X25519) => Ok(()),
        Ok(other) => Err(SopsConfigError::InvalidRecipient { value: r.into(), reason: format!("it is an {other} recipient") }),
        Err(reason) => Err(SopsConfigError::InvalidRecipient { value: r.into(), reason }),
    }
}

/// An admin's recipient: any kind sops takes.
fn validate_admin_recipient(r: &str) -> Result<(), SopsConfigError> {
    crate::recipient::kind_of(r).map(|_| ()).map_err(|reason| SopsConfigError::InvalidAdminRecipient { value: r.into(), reason })
}

/// The admins as list entries: `*name` for an anchor (a list anchor expands to its items),
/// the literal for an `age1…` recipient.
pub(crate) fn admin_refs(m: &Model<'_>, admins: &[String]) -> Result<Vec<AgeRef>, SopsConfigError> {
    if admins.is_empty() {
        return Err(SopsConfigError::NoAdmins);
    }
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for admin in admins {
        if looks_like_recipient(admin) {
            validate_admin_recipient(admin)?;
            out.push(AgeRef { text: admin.clone(), recipient: admin.clone(), def: None, pgp: false });
            continue;
        }
        let Some(node) = m.anchor(admin) else {
            if is_pgp_fingerprint(admin) {
                let fp = normalize_fingerprint(admin);
                out.push(AgeRef {
                    text: super::text::scalar(&fp, crate::sops::yaml::ScalarStyle::Plain),
                    recipient: fp,
                    def: None,
                    pgp: true,
                });
            } else {
                unknown.push(format!("`{admin}`"));
            }
            continue;
        };
        let not_recipient = |what: &str| SopsConfigError::AdminNotRecipient { name: admin.clone(), line: node.line + 1, what: what.into() };
        match &node.kind {
            NodeKind::Scalar { value, .. } if looks_like_recipient(value) || is_pgp_fingerprint(value) => {
                let pgp = !looks_like_recipient(value);
                let recipient = if pgp { normalize_fingerprint(value) } else { value.clone() };
                out.push(AgeRef { text: format!("*{admin}"), recipient, def: Some((admin.clone(), node.span.start)), pgp });
            }
            NodeKind::Sequence { items, .. } => {
                for item in items {
                    out.push(list_ref(m, item).ok_or_else(|| not_recipient("a list with something other than recipients"))?);
                }
            }
            _ => return Err(not_recipient(describe(node))),
        }
    }
    if !unknown.is_empty() {
        return Err(SopsConfigError::UnknownAdmins { names: unknown.join(", ") });
    }
    Ok(out)
}

pub(crate) fn looks_like_recipient(v: &str) -> bool {
    v.starts_with("age1") || v.starts_with("ssh-")
}

/// How an item of an existing recipient list is written again elsewhere.
pub(crate) fn list_ref(m: &Model<'_>, item: &Node) -> Option<AgeRef> {
    let resolved = m.resolve(item);
    let value = resolved.as_str().filter(|v| (looks_like_recipient(v) || is_pgp_fingerprint(v)) && !v.contains(','))?;
    let pgp = !looks_like_recipient(value);
    let value = if pgp { normalize_fingerprint(value) } else { value.to_string() };
    let name = match &item.kind {
        NodeKind::Alias { name } => Some(name.clone()),
        _ => item.anchor.clone(),
    };
    Some(match name {
        Some(name) => AgeRef { text: format!("*{name}"), recipient: value, def: Some((name, resolved.span.start)), pgp },
        None => AgeRef { text: super::text::scalar(&value, crate::sops::yaml::ScalarStyle::Plain), recipient: value, def: None, pgp },
    })
}

/// Refuses aliases whose anchor would come after the place they are written.
pub(crate) fn defined_before(m: &Model<'_>, refs: &[AgeRef], at: usize) -> Result<(), SopsConfigError> {
    for r in refs {
        if let Some((name, def)) = &r.def
            && *def >= at
        {
            return Err(SopsConfigError::unsupported(
                m.lines.line_no(*def),
                format!("anchor `&{name}` is defined after line {}, where a new rule must use it", m.lines.line_no(at)),
                "move the anchor into `keys:` above `creation_rules:`",
            ));
        }
    }
    Ok(())
}

pub(crate) fn host_file(policy: &EditPolicy, host: &str) -> String {
    policy.file_of(host)
}
