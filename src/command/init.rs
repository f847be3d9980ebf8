//! `hostsmith init`: the files a fleet needs, created where missing, never overwritten.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::admin_identity;
use crate::atomic;
use crate::command::Context;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::sops::rules::SopsConfig;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct InitReport {
    pub fleet: PathBuf,
    pub admin_recipient: String,
    /// The identity file created, when one was.
    pub identity_created: Option<PathBuf>,
    pub created: Vec<String>,
    pub dry_run: bool,
}

/// # Errors
/// When a file cannot be written or an existing one is invalid.
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let ids = admin_identity::load_all()?;
    let (recipient, identity_created) = match ids.first() {
        Some(id) => (id.to_public().to_string(), None),
        None => {
            let path = std::env::var_os("SOPS_AGE_KEY_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(admin_identity::default_key_file)
                .ok_or_else(|| Error::Usage("cannot tell where to create the admin identity: set HOME or SOPS_AGE_KEY_FILE".into()))?;
            if args.dry_run { (String::from("(new identity)"), Some(path)) } else { (admin_identity::create(&path)?, Some(path)) }
        }
    };
    let mut report = init_fleet(&ctx.fleet_dir, &recipient, args.dry_run)?;
    report.identity_created = identity_created;
    let out = &ctx.out;
    out.json(&report);
    if let Some(p) = &report.identity_created {
        out.line(format!("admin identity: created `{}` (0600; back it up: it opens every secret of the fleet)", p.display()));
    }
    out.line(format!("admin recipient: {}", report.admin_recipient));
    if report.created.is_empty() {
        out.line(format!("nothing to do: `{}` is already a fleet", report.fleet.display()));
    } else {
        let verb = if args.dry_run { "would create" } else { "created" };
        out.line(format!("{verb} {} in `{}`", report.created.join(", "), report.fleet.display()));
        out.line("next: `hostsmith vm-fresh <host>`");
    }
    Ok(())
}

/// Creates `hostsmith.toml` and `.sops.yaml` in `dir` where missing, with `recipient` as the
/// admin. An existing `.sops.yaml` is left alone; the admin is then the anchor that already
/// holds `recipient`, or the recipient itself.
///
/// # Errors
/// When a file cannot be written or an existing one is invalid.
pub(crate) fn init_fleet(dir: &Path, recipient: &str, dry_run: bool) -> Result<InitReport> {
    let mut report = InitReport { fleet: dir.to_path_buf(), admin_recipient: recipient.to_string(), dry_run, ..Default::default() };
    if !dry_run {
        atomic::create_dir(dir, 0o755)?;
    }
    let config_path = dir.join(config::FILE_NAME);
    let config = if config_path.exists() { Config::load(dir)? } else { Config::default() };
    let sops_path = dir.join(crate::fleet::SOPS_CONFIG);
    let admin = if sops_path.exists() {
        let text = std::fs::read_to_string(&sops_path).map_err(|source| Error::Read { path: sops_path.clone(), source })?;
        let cfg = SopsConfig::parse(&text).map_err(|e| Error::SopsRules { path: sops_path.clone(), source: e })?;
        cfg.anchors().into_iter().find(|a| a.value.as_deref() == Some(recipient)).map_or_else(|| recipient.to_string(), |a| a.name)
    } else {
        report.created.push(crate::fleet::SOPS_CONFIG.into());
        if !dry_run {
            atomic::write(&sops_path, sops_yaml_template(recipient, &config).as_bytes(), 0o644)?;
        }
        "admin".to_string()
    };
    if !config_path.exists() {
        report.created.push(config::FILE_NAME.into());
        if !dry_run {
            atomic::write(&config_path, config_template(&admin).as_bytes(), 0o644)?;
        }
    }
    Ok(report)
}

fn sops_yaml_template(recipient: &str, config: &Config) -> String {
    let mut s = String::from(
        "# sops creation rules. hostsmith adds each host's anchor under `keys` and a rule for its\n\
         # file, and edits nothing else: your comments and layout are kept as they are.\n\
         keys:\n",
    );
    s.push_str(&format!("  - &admin {recipient}\n"));
    s.push_str(if config.sops.shared.is_empty() { "creation_rules: []\n" } else { "creation_rules:\n" });
    for shared in &config.sops.shared {
        s.push_str(&format!("  - path_regex: ^{}$\n    key_groups:\n      - age:\n          - *admin\n", regex::escape(shared)));
    }
    s
}

fn config_template(admin: &str) -> String {
    let admin = toml_string(admin);
    format!(
        r#"# hostsmith fleet configuration. Unknown keys are errors.

[sops]
# Anchor names in .sops.yaml (or age1... recipients) that can open every host file.
admins = [{admin}]
# Per-host SOPS files: <host_dir>/<host>.yaml
host_dir = "sops"
# Files whose creation rules every host joins.
shared = ["sops/shared.yaml"]
# Host name globs kept out of the shared rules.
exclude_from_shared = []
# Where new host anchors go when `keys:` in .sops.yaml is a mapping.
hosts_group = "hosts"

[host]
# "/persist" for impermanence layouts.
persist = ""
# One read-only deploy key per repository.
deploy_keys = ["nix-config", "nix-secrets"]

[cloud_init]
# The admin user the first-boot seed creates, its keys (files or key lines) and sudo rule.
user = "admin"
authorized_keys = ["~/.ssh/id_ed25519.pub"]
sudo = "ALL=(ALL) NOPASSWD:ALL"
"#
    )
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
