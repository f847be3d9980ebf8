//! Where a host's SOPS file lives: a template such as `sops/{host}.yaml` or
//! `hosts/{host}/secrets.yaml` (`sops.host_file`), and the per-host paths records carry
//! (`sops_file`) for layouts the template cannot say (`hosts/<kind>/<host>/secrets.yaml`).
//!
//! Both come from a repository others can change, so both are refused unless they stay
//! inside the fleet: a host file is re-encrypted and replaced by every rotation, and a path
//! leading out of the fleet would make a run rewrite someone else's file.

/// What a template puts the host name in place of.
pub(crate) const PLACEHOLDER: &str = "{host}";

/// A relative path that stays inside the fleet: not absolute, no `..`, `.` or empty
/// components, no control characters.
#[must_use]
pub(crate) fn is_inside(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.chars().any(char::is_control)
        && path.split('/').all(|c| !c.is_empty() && c != ".." && c != ".")
}

fn is_sops_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// Why `template` is not a host file template; `None` when it is one.
#[must_use]
pub(crate) fn template_problem(template: &str) -> Option<String> {
    let shown = template.escape_debug();
    if !template.contains(PLACEHOLDER) {
        Some(format!("`{shown}` does not contain `{{host}}`: write where each host's file goes, e.g. \"hosts/{{host}}/secrets.yaml\""))
    } else if template.replace(PLACEHOLDER, "").contains(['{', '}']) {
        Some(format!("`{shown}` holds a `{{` or `}}` that is not part of `{{host}}`: `{{host}}` is the only placeholder"))
    } else if !is_inside(template) {
        Some(format!("`{shown}` must be a relative path inside the fleet, without `..`, `.` or empty components"))
    } else if !is_sops_yaml(template) {
        Some(format!("`{shown}` must end in `.yaml` or `.yml` (hostsmith writes host files as SOPS YAML)"))
    } else {
        None
    }
}

/// Why `path`, a record's `sops_file`, is not a host file path; `None` when it is one.
#[must_use]
pub(crate) fn file_problem(path: &str) -> Option<String> {
    if !is_inside(path) {
        Some("must be a relative path inside the fleet, without `..`, `.` or empty components".into())
    } else if !is_sops_yaml(path) {
        Some("must end in `.yaml` or `.yml`".into())
    } else {
        None
    }
}

/// The template's file for `host`.
#[must_use]
pub(crate) fn render(template: &str, host: &str) -> String {
    template.replace(PLACEHOLDER, host)
}

/// The host whose template file `path` is, if any: a name of letters, digits and `-` (the
/// characters of host names; callers parse it as one before use).
#[must_use]
pub(crate) fn host_of(template: &str, path: &str) -> Option<String> {
    let (prefix, _) = template.split_once(PLACEHOLDER)?;
    let tail = path.strip_prefix(prefix)?;
    // Host names hold no `/`, so the host ends within the path's component; the template's
    // text after the placeholder decides where.
    let component = tail.split('/').next().unwrap_or_default();
    (1..=component.len())
        .map(|n| &component[..n])
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .find(|h| render(template, h) == path)
        .map(str::to_string)
}

/// The directory to list to find every template file, and the template of the entries in
/// it (its first component holding `{host}`): `("hosts", "{host}")` for
/// `hosts/{host}/secrets.yaml`, `("", "{host}.yaml")` for `{host}.yaml`.
#[must_use]
pub(crate) fn scan_dir(template: &str) -> (String, String) {
    let mut dir = Vec::new();
    for component in template.split('/') {
        if component.contains(PLACEHOLDER) {
            return (dir.join("/"), component.to_string());
        }
        dir.push(component);
    }
    (dir.join("/"), String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_confined() {
        assert_eq!(template_problem("sops/{host}.yaml"), None);
        assert_eq!(template_problem("hosts/{host}/secrets.yml"), None);
        for (bad, why) in [
            ("sops/web.yaml", "does not contain"),
            ("../{host}.yaml", "inside the fleet"),
            ("/etc/{host}.yaml", "inside the fleet"),
            ("a/./{host}.yaml", "inside the fleet"),
            ("a//{host}.yaml", "inside the fleet"),
            ("a/{host}\n.yaml", "inside the fleet"),
            ("a/{host}.json", "`.yaml` or `.yml`"),
            ("a/{host}-{kind}.yaml", "only placeholder"),
        ] {
            assert!(template_problem(bad).is_some_and(|p| p.contains(why)), "{bad}: {:?}", template_problem(bad));
        }
    }

    #[test]
    fn the_host_is_read_back_from_its_file() {
        assert_eq!(host_of("sops/{host}.yaml", "sops/web-01.yaml").as_deref(), Some("web-01"));
        assert_eq!(host_of("hosts/{host}/secrets.yaml", "hosts/web01/secrets.yaml").as_deref(), Some("web01"));
        assert_eq!(host_of("hosts/{host}/secrets.yaml", "hosts/web01/other.yaml"), None);
        assert_eq!(host_of("hosts/{host}/secrets.yaml", "hosts/a/b/secrets.yaml"), None);
        assert_eq!(host_of("{host}/{host}.yaml", "db/db.yaml").as_deref(), Some("db"));
        assert_eq!(host_of("sops/{host}.yaml", "sops/shared.yml"), None);
        assert_eq!(scan_dir("hosts/{host}/secrets.yaml"), ("hosts".into(), "{host}".into()));
        assert_eq!(scan_dir("{host}.yaml"), (String::new(), "{host}.yaml".into()));
    }
}
