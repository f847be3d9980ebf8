//! `hostsmith.toml`: the fleet's configuration. Unknown keys are errors that name the key,
//! so a typo never silently falls back to a default.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host_template::is_inside as is_inside_path;

mod proxmox;
mod sync;

pub(crate) use proxmox::ProxmoxSection;
pub(crate) use sync::{MAX_TIMEOUT, SyncMethod, SyncSection};

pub(crate) const FILE_NAME: &str = "hostsmith.toml";
const DEFAULT_HOST_DIR: &str = "sops";
const DEFAULT_RECORDS_DIR: &str = "hosts";

/// The shared file of a fleet hostsmith made.
pub(crate) const DEFAULT_SHARED: &str = "sops/shared.yaml";

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub sops: SopsSection,
    pub host: HostSection,
    pub cloud_init: CloudInitSection,
    /// How `sync` and `connect` bring the admin keys to a host.
    pub sync: SyncSection,
    /// Defaults for `deploy-image`.
    pub proxmox: ProxmoxSection,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SopsSection {
    /// Per-host files: `<host_dir>/<host>.yaml`, relative to the fleet; the shorthand of
    /// `host_file = "<host_dir>/{host}.yaml"`.
    pub host_dir: String,
    /// Per-host files as a template with `{host}`, e.g. `hosts/{host}/secrets.yaml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_file: Option<String>,
    /// Anchor names in `.sops.yaml`, or `age1…` recipients. No default: who administers the
    /// fleet is not something to guess.
    pub admins: Option<Vec<String>>,
    /// Files whose creation rules every host joins.
    pub shared: Vec<String>,
    /// `shared` was not written in the configuration: the default then only stands for a
    /// file the fleet has (see [`crate::fleet::Fleet::open`]).
    #[serde(skip)]
    pub shared_is_default: bool,
    /// Host name globs kept out of the shared rules.
    pub exclude_from_shared: Vec<String>,
    /// Where new anchors go when `keys:` is a mapping.
    pub hosts_group: String,
}

impl SopsSection {
    /// The host file template: `host_file`, else `<host_dir>/{host}.yaml`.
    #[must_use]
    pub fn host_file_template(&self) -> String {
        self.host_file
            .clone()
            .unwrap_or_else(|| format!("{}/{}.yaml", self.host_dir.trim_end_matches('/'), crate::host_template::PLACEHOLDER))
    }

    fn validate_host_file(&self) -> std::result::Result<(), String> {
        let dir = self.host_dir.trim_end_matches('/');
        if !is_inside_path(dir) {
            return Err(format!("sops.host_dir `{}` must be a relative directory inside the fleet, without `..`", dir.escape_debug()));
        }
        let Some(template) = &self.host_file else { return Ok(()) };
        if dir != DEFAULT_HOST_DIR {
            return Err(format!(
                "sops.host_dir and sops.host_file are both set: keep one, either `host_file = \"{}\"` alone (remove host_dir) or `host_dir = \"{}\"` alone (remove host_file)",
                template.escape_debug(),
                dir.escape_debug()
            ));
        }
        match crate::host_template::template_problem(template) {
            Some(problem) => Err(format!("sops.host_file: {problem}")),
            None => Ok(()),
        }
    }
}

impl Default for SopsSection {
    fn default() -> Self {
        Self {
            host_dir: DEFAULT_HOST_DIR.into(),
            host_file: None,
            admins: None,
            shared: vec![DEFAULT_SHARED.into()],
            shared_is_default: true,
            exclude_from_shared: Vec::new(),
            hosts_group: "hosts".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostSection {
    /// Prefix of persistent state for impermanence layouts (`/persist`), or empty.
    pub persist: String,
    /// One deploy key per repository name.
    pub deploy_keys: Vec<String>,
    /// Where the records are: `<records_dir>/<host>.json`, relative to the fleet.
    pub records_dir: String,
}

impl Default for HostSection {
    fn default() -> Self {
        Self {
            persist: String::new(),
            deploy_keys: vec!["nix-config".into(), "nix-secrets".into()],
            records_dir: DEFAULT_RECORDS_DIR.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudInitSection {
    /// The admin user the seed creates.
    pub user: String,
    /// Key lines or `.pub` files for the admin user.
    pub authorized_keys: Vec<String>,
    /// The admin user's sudoers rule; empty for none.
    pub sudo: String,
}

impl Default for CloudInitSection {
    fn default() -> Self {
        Self { user: "admin".into(), authorized_keys: vec!["~/.ssh/id_ed25519.pub".into()], sudo: "ALL=(ALL) NOPASSWD:ALL".into() }
    }
}

impl Config {
    /// Reads `hostsmith.toml` from `fleet`; a missing file is the default configuration.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key or value that is wrong.
    pub fn load(fleet: &Path) -> Result<Self> {
        let path = fleet.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map_err(|message| Error::Config { path, message }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(Error::Read { path, source }),
        }
    }

    /// Parses and validates configuration text.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut config: Self = toml::from_str(text).map_err(|e| e.message().to_string() + &location(text, e.span()))?;
        config.sops.shared_is_default = text.parse::<toml::Table>().is_ok_and(|t| {
            let sops = t.get("sops").and_then(toml::Value::as_table);
            !sops.is_some_and(|s| s.contains_key("shared"))
        });
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        self.sops.validate_host_file()?;
        let records = self.host.records_dir.trim_end_matches('/');
        if !is_inside_path(records) {
            return Err(format!(
                "host.records_dir `{}` must be a relative directory inside the fleet, without `..`, `.` or empty components (default \"hosts\")",
                records.escape_debug()
            ));
        }
        for file in &self.sops.shared {
            if !is_inside_path(file) {
                return Err(format!(
                    "sops.shared: `{}` must be a relative file path inside the fleet, without `..` (hostsmith re-encrypts shared files, so it only touches the fleet's own)",
                    file.escape_debug()
                ));
            }
        }
        let group = &self.sops.hosts_group;
        if group.is_empty() || !group.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!(
                "sops.hosts_group `{}` is not a valid group name: use letters, digits, '-' and '_' (default \"hosts\")",
                group.escape_debug()
            ));
        }
        for admin in self.sops.admins.iter().flatten() {
            if admin.is_empty() || admin.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(format!("sops.admins: `{}` is not an anchor name or an age recipient", admin.escape_debug()));
            }
        }
        for name in &self.host.deploy_keys {
            if !is_repo_name(name) {
                return Err(format!(
                    "host.deploy_keys: `{}` is not a valid repository name; use letters, digits, '-', '_' and '.', not starting with '.' or '-'",
                    name.escape_debug()
                ));
            }
        }
        for pattern in &self.sops.exclude_from_shared {
            glob::Pattern::new(pattern).map_err(|e| format!("sops.exclude_from_shared: `{pattern}` is not a valid glob: {e}"))?;
        }
        if !self.cloud_init.user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || self.cloud_init.user.is_empty() {
            return Err(format!("cloud_init.user `{}` is not a valid user name", self.cloud_init.user));
        }
        if self.cloud_init.sudo.contains(['\n', '\r']) {
            return Err("cloud_init.sudo must be a single sudoers rule on one line".into());
        }
        if !(1..=MAX_TIMEOUT).contains(&self.sync.timeout) {
            return Err(format!("sync.timeout {} is out of range: use 1 to {} seconds", self.sync.timeout, MAX_TIMEOUT));
        }
        if self.sync.key_command.first().is_some_and(|p| p.trim().is_empty()) {
            return Err("sync.key_command must start with a program name, e.g. [\"vault\", \"read\", \"-field=key\", \"ssh/admin\"]".into());
        }
        Ok(())
    }

    /// The admins, or a clear error when an operation needs them and none are configured.
    ///
    /// # Errors
    /// [`Error::Config`] saying how to set them.
    pub fn admins(&self, fleet: &Path) -> Result<&[String]> {
        match &self.sops.admins {
            Some(a) if !a.is_empty() => Ok(a),
            _ => Err(Error::Config {
                path: fleet.join(FILE_NAME),
                message: "`sops.admins` is not set: list the admin anchor names of .sops.yaml (or age1… recipients), e.g. `admins = [\"admin\"]`, or run `hostsmith init`".into(),
            }),
        }
    }
}

/// `~/rest` with `$HOME` put in, as settings that name the user's own files allow.
#[must_use]
pub(crate) fn expand_home(p: &str) -> std::path::PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::PathBuf::from(home).join(rest),
        _ => std::path::PathBuf::from(p),
    }
}

/// A repository name as deploy keys use it: it becomes part of file names, ssh host aliases
/// and key titles, so only what GitHub itself allows, and never a leading '.' or '-'.
#[must_use]
pub(crate) fn is_repo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['.', '-'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map_or_else(String::new, |s| {
        let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_the_design_example() {
        let c = Config::parse("[sops]\nadmins = [\"alice\"]\n").expect("parse");
        assert_eq!(c.sops.host_dir, "sops");
        assert_eq!(c.sops.shared, vec!["sops/shared.yaml"]);
        assert_eq!(c.host.deploy_keys, vec!["nix-config", "nix-secrets"]);
        assert_eq!(c.cloud_init.user, "admin");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[sops]\nadmin = [\"alice\"]\n").expect_err("typo");
        assert!(err.contains("admin"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = Config::parse("[sopss]\n").expect_err("typo");
        assert!(err.contains("sopss"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Config::parse("[sops]\nhost_dir = \"../x\"\n").is_err());
        assert!(Config::parse("[host]\ndeploy_keys = [\"a b\"]\n").is_err());
        for bad in ["../otherproj/prod.yaml", "/etc/prod.yaml", "sops/../../x.yaml", "sops//x.yaml", ""] {
            let err = Config::parse(&format!("[sops]\nshared = [{bad:?}]\n")).expect_err(bad);
            assert!(err.contains("inside the fleet"), "{bad}: {err}");
        }
        assert!(Config::parse("[sops]\nhosts_group = \"\"\n").expect_err("empty").contains("hosts_group"));
    }

    #[test]
    fn the_host_file_template_and_its_shorthand() {
        assert_eq!(Config::parse("").expect("default").sops.host_file_template(), "sops/{host}.yaml");
        assert_eq!(Config::parse("[sops]\nhost_dir = \"secrets/\"\n").expect("dir").sops.host_file_template(), "secrets/{host}.yaml");
        let c = Config::parse("[sops]\nhost_file = \"hosts/{host}/secrets.yaml\"\n").expect("template");
        assert_eq!(c.sops.host_file_template(), "hosts/{host}/secrets.yaml");
        let both = Config::parse("[sops]\nhost_dir = \"x\"\nhost_file = \"hosts/{host}/secrets.yaml\"\n").expect_err("both");
        assert!(both.contains("host_dir") && both.contains("host_file") && both.contains("keep one"), "{both}");
        for bad in ["hosts/secrets.yaml", "../{host}.yaml", "/abs/{host}.yaml", "a/./{host}.yaml", "{host}.json"] {
            let err = Config::parse(&format!("[sops]\nhost_file = {bad:?}\n")).expect_err(bad);
            assert!(err.starts_with("sops.host_file"), "{bad}: {err}");
        }
        for bad in ["../records", "/records", "a//b", "."] {
            let err = Config::parse(&format!("[host]\nrecords_dir = {bad:?}\n")).expect_err(bad);
            assert!(err.starts_with("host.records_dir"), "{bad}: {err}");
        }
        assert_eq!(Config::parse("[host]\nrecords_dir = \"meta/hosts\"\n").expect("records").host.records_dir, "meta/hosts");
    }
}
