//! `hostsmith init`: the files a fleet needs, created where missing, never overwritten.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::admin_identity;
use crate::atomic;
use crate::command::Context;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::fleet_justfile;
use crate::layout_guess;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not offer the fleet a justfile (`justfile`, or `hostsmith.just` beside its own).
    #[arg(long)]
    pub no_justfile: bool,
    /// The admin's recipient, of any kind sops takes: X25519 (`age1…`), an age plugin's
    /// (`age1yubikey1…`), post-quantum (`age1pq1…`), or an SSH key (`ssh-ed25519 …`,
    /// `ssh-rsa …`). No identity is created then. Default: your first age identity, or a new
    /// one.
    #[arg(long, value_name = "RECIPIENT")]
    pub admin_recipient: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct InitReport {
    pub fleet: PathBuf,
    pub admin_recipient: String,
    /// The identity file created, when one was.
    pub identity_created: Option<PathBuf>,
    pub created: Vec<String>,
    pub dry_run: bool,
    /// What was guessed of an existing fleet.
    pub layout: Option<layout_guess::Layout>,
    /// What was done about the fleet's justfile; `None` with `--no-justfile`.
    pub justfile: Option<fleet_justfile::Outcome>,
}

/// # Errors
/// When a file cannot be written or an existing one is invalid.
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    if ctx.fleet_dir.join(crate::fleet::SOPS_CONFIG).exists() {
        if args.admin_recipient.is_some() {
            return Err(Error::Usage(
                "--admin-recipient is for a new fleet: this one has a `.sops.yaml`, which init never changes; add the key under `keys:` there and run `hostsmith sops rekey`".into(),
            ));
        }
        return adopt(&args, ctx);
    }
    let (recipient, identity_created) = match &args.admin_recipient {
        Some(r) => (given_recipient(r)?, None),
        None => own_recipient(args.dry_run)?,
    };
    let mut report = init_fleet(&ctx.fleet_dir, &recipient, args.dry_run)?;
    report.identity_created = identity_created;
    offer_justfile(&args, &mut report)?;
    let out = &ctx.out;
    out.json(&report);
    if let Some(p) = &report.identity_created {
        out.line(format!("admin identity: created `{}` (0600; back it up: it opens every secret of the fleet)", p.display()));
    }
    out.line(format!("admin recipient: {}", report.admin_recipient));
    print_created(&report, ctx);
    Ok(())
}

/// `--admin-recipient`, checked; an SSH key without its comment (sops stores the recipient as
/// written, in every file).
fn given_recipient(r: &str) -> Result<String> {
    let kind = crate::recipient::kind_of(r).map_err(|why| Error::Usage(format!("--admin-recipient `{}` is invalid: {why}", r.trim())))?;
    Ok(match kind {
        crate::recipient::RecipientKind::Ssh(_) => r.split_whitespace().take(2).collect::<Vec<_>>().join(" "),
        _ => r.trim().to_string(),
    })
}

/// The recipient of the first X25519 identity sops would find, or of a new one.
fn own_recipient(dry_run: bool) -> Result<(String, Option<PathBuf>)> {
    let keyring = admin_identity::Keyring::load();
    if let Some(id) = keyring.x25519().next() {
        return Ok((id.to_public().to_string(), None));
    }
    let path = admin_identity::new_identity_path()
        .ok_or_else(|| Error::Usage("cannot tell where to create the admin identity: set HOME or SOPS_AGE_KEY_FILE".into()))?;
    Ok(if dry_run { (String::from("(new identity)"), Some(path)) } else { (admin_identity::create(&path)?, Some(path)) })
}

/// Plans the fleet's justfile ([`fleet_justfile::plan`]) and writes it unless `--dry-run`.
fn offer_justfile(args: &Args, report: &mut InitReport) -> Result<()> {
    if args.no_justfile {
        return Ok(());
    }
    let mut outcome = fleet_justfile::plan(&report.fleet)?;
    if args.dry_run || fleet_justfile::write(&report.fleet, &outcome)? {
        report.created.extend(outcome.write.clone());
    } else if let Some(file) = outcome.write.take() {
        outcome.note = Some(format!("`{file}` appeared meanwhile and was left as it is"));
    }
    report.justfile = Some(outcome);
    Ok(())
}

fn print_created(report: &InitReport, ctx: &Context) {
    let out = &ctx.out;
    if let Some(note) = report.justfile.as_ref().and_then(|j| j.note.as_deref()) {
        out.line(format!("justfile: {}", crate::output::terminal_safe(note)));
    }
    if report.created.is_empty() {
        out.line(format!("nothing to do: `{}` is already a fleet", report.fleet.display()));
    } else {
        let verb = if report.dry_run { "would create" } else { "created" };
        out.line(format!("{verb} {} in `{}`", report.created.join(", "), report.fleet.display()));
        out.line(if report.layout.is_some() { "next: `hostsmith sops check`" } else { "next: `hostsmith vm-fresh <host>`" });
    }
}

/// `init` in a fleet that already has a `.sops.yaml`: it is read, never changed; the
/// `hostsmith.toml` written (when missing) says what was guessed and why. No admin identity
/// is created: the fleet already has its admins.
fn adopt(args: &Args, ctx: &Context) -> Result<()> {
    let dir = &ctx.fleet_dir;
    let fleet = crate::fleet::Fleet::open(dir)?;
    let sops = fleet.sops_config()?;
    let files = crate::rekey::discover(&fleet)?;
    let mut layout = layout_guess::guess(&sops, &files);
    if layout.admins.is_none() {
        // Fall back to the anchor that holds this user's own age recipient.
        let mine = admin_identity::Keyring::load().known_recipients();
        let key_of = |v: &str| v.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        if let Some(a) = sops.anchors().into_iter().find(|a| a.value.as_ref().is_some_and(|v| mine.contains(&key_of(v)))) {
            layout.admins = Some(layout_guess::Guess { value: vec![a.name], why: "holds your own age recipient".into() });
        }
    }
    let config_path = dir.join(config::FILE_NAME);
    let mut report = InitReport { fleet: dir.clone(), dry_run: args.dry_run, ..Default::default() };
    if !config_path.exists() {
        report.created.push(config::FILE_NAME.into());
        if !args.dry_run {
            atomic::write(&config_path, adopted_config(&layout).as_bytes(), 0o644)?;
        }
    }
    report.layout = Some(layout);
    offer_justfile(args, &mut report)?;
    ctx.out.json(&report);
    if let Some(layout) = &report.layout {
        for line in describe(layout) {
            ctx.out.line(line);
        }
    }
    print_created(&report, ctx);
    Ok(())
}

/// The guesses as lines for the terminal.
fn describe(l: &layout_guess::Layout) -> Vec<String> {
    let mut out = vec![format!("hosts: {}", if l.hosts.is_empty() { "none found".into() } else { l.hosts.join(", ") })];
    out.push(match &l.admins {
        Some(g) => format!("admins: {} ({})", admin_names(&g.value, &l.pgp_admins), g.why),
        None => "admins: not found; set `sops.admins` in hostsmith.toml".into(),
    });
    out.push(match &l.host_file {
        Some(g) => format!("host files: {} ({})", g.value, g.why),
        None => "host files: no rule names a host's file; set `sops.host_file`".into(),
    });
    for (host, path) in &l.misfits {
        out.push(format!("  {host}: its file `{path}` does not follow the template; `hostsmith keys migrate` records it"));
    }
    out.push(format!(
        "shared files: {} ({})",
        if l.shared.value.is_empty() { "none".into() } else { l.shared.value.join(", ") },
        l.shared.why
    ));
    if let Some(g) = &l.hosts_group {
        out.push(format!("hosts group: {} ({})", g.value, g.why));
    }
    out
}

fn admin_names(admins: &[String], pgp: &[String]) -> String {
    admins.iter().map(|a| if pgp.contains(a) { format!("{a} (PGP)") } else { a.clone() }).collect::<Vec<_>>().join(", ")
}

/// Creates `hostsmith.toml` (where missing) and `.sops.yaml` in `dir`, a directory without a
/// `.sops.yaml` (one that has it is adopted instead), with `recipient` as the admin `&admin`.
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
    report.created.push(crate::fleet::SOPS_CONFIG.into());
    if !dry_run {
        atomic::write(&dir.join(crate::fleet::SOPS_CONFIG), sops_yaml_template(recipient, &config).as_bytes(), 0o644)?;
    }
    if !config_path.exists() {
        report.created.push(config::FILE_NAME.into());
        if !dry_run {
            atomic::write(&config_path, config_template().as_bytes(), 0o644)?;
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

/// The configuration of a new fleet, whose `.sops.yaml` names its admin `&admin`.
fn config_template() -> String {
    format!(
        r#"# hostsmith fleet configuration. Unknown keys are errors.

[sops]
# Anchor names in .sops.yaml (or age1... recipients, PGP fingerprints) that can open every
# host file.
admins = ["admin"]
# Per-host SOPS files: <host_dir>/<host>.yaml (or a template: host_file = "hosts/{{host}}/secrets.yaml")
host_dir = "sops"
# Files whose creation rules every host joins.
shared = ["sops/shared.yaml"]
# Host name globs kept out of the shared rules.
exclude_from_shared = []
# Where new host anchors go when `keys:` in .sops.yaml is a mapping.
hosts_group = "hosts"
{HOST_AND_CLOUD_INIT}"#
    )
}

/// The `[host]` and `[cloud_init]` sections, as every new configuration has them.
const HOST_AND_CLOUD_INIT: &str = r#"
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
"#;

/// What an adopted configuration says when no admin could be guessed.
const NO_ADMINS: &str = "# Not guessed: no anchor is named by every rule. List the admin anchors of .sops.yaml.\n# admins = [\"alice\"]\n";

/// A configuration for an existing fleet: each guessed setting with a comment saying why.
fn adopted_config(l: &layout_guess::Layout) -> String {
    let list = |v: &[String]| v.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", ");
    let mut s = String::from(
        "# hostsmith fleet configuration, written by `hostsmith init` from this fleet's .sops.yaml\n\
         # and SOPS files (.sops.yaml itself was not changed). Each guessed setting says why:\n\
         # check them, then run `hostsmith sops check`. Unknown keys are errors.\n\n[sops]\n",
    );
    match &l.admins {
        Some(g) => {
            s.push_str(&format!("# Guessed: {}.\n", g.why));
            for a in g.value.iter().filter(|a| l.pgp_admins.contains(a)) {
                s.push_str(&format!("# `{a}` is a PGP key: GnuPG wraps each file's data key for it.\n"));
            }
            s.push_str(&format!("admins = [{}]\n", list(&g.value)));
        }
        None => s.push_str(NO_ADMINS),
    }
    match &l.host_file {
        Some(g) => {
            s.push_str(&format!("# Guessed: {}.\n", g.why));
            for (host, path) in &l.misfits {
                s.push_str(&format!("# Not following it: {host} (`{path}`); `hostsmith keys migrate` records its own file.\n"));
            }
            s.push_str(&format!("host_file = {}\n", toml_string(&g.value)));
        }
        None => s.push_str("# Not guessed: no rule names a host's file. Where new hosts' secrets go:\nhost_dir = \"sops\"\n"),
    }
    s.push_str(&format!("# Guessed: {}.\nshared = [{}]\n", l.shared.why, list(&l.shared.value)));
    s.push_str("# Host name globs kept out of the shared rules.\nexclude_from_shared = []\n");
    match &l.hosts_group {
        Some(g) => s.push_str(&format!("# Guessed: {}.\nhosts_group = {}\n", g.why, toml_string(&g.value))),
        None => s.push_str("# Where new host anchors go when `keys:` in .sops.yaml is a mapping.\nhosts_group = \"hosts\"\n"),
    }
    s.push_str(HOST_AND_CLOUD_INIT);
    s
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
