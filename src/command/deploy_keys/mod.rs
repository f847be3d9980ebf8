//! `hostsmith deploy-keys HOST [--register github --repo OWNER/NAME] [--activate REPO]`:
//! getting a host's deploy keys onto the forge, read-only.
//!
//! Without options it prints the public keys and the steps to add them by hand. With
//! `--register github` it drives the GitHub CLI: `gh repo deploy-key add - --title
//! <host>-<repo>-deploy --repo OWNER/NAME`, the public key on stdin; `gh` adds deploy keys
//! read-only unless `--allow-write` is given, which hostsmith never passes. A key waiting
//! from `keys rotate --deploy` is the one registered, and becomes the active key once `gh`
//! succeeded; `--activate` does the same after a registration by hand. `deploy-keys check`
//! ([`check`]) compares the fleet's keys with what the repositories on GitHub hold.

mod check;

use serde::Serialize;

use crate::command::{Context, host_names};
use crate::deploy_keys::{self, Activation};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::github_keys::Repo;
use crate::host_name::HostName;
use crate::process::Program;
use crate::record::HostRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Forge {
    Github,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub command: Option<DeployKeysCommand>,
    /// The host (a host named `check` is given after `--`).
    #[arg(value_name = "HOST", required = true)]
    pub host: Option<String>,
    /// Register the key on this forge through its CLI (`gh` for GitHub), read-only.
    #[arg(long, value_enum, requires = "repo", value_name = "FORGE")]
    pub register: Option<Forge>,
    /// The repository on the forge.
    #[arg(long, value_name = "OWNER/NAME", requires = "register")]
    pub repo: Option<String>,
    /// Which deploy key to register (default: the repository's NAME).
    #[arg(long = "deploy", value_name = "REPO", requires = "register")]
    pub deploy: Option<String>,
    /// Make the waiting key of REPO the active one, after adding it to the forge by hand.
    #[arg(long, value_name = "REPO", conflicts_with = "register")]
    pub activate: Option<String>,
    /// Print the plan; change nothing and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DeployKeysCommand {
    /// Compare the fleet's deploy keys with the ones registered on GitHub (through `gh api`).
    Check(check::Args),
}

#[derive(Debug, Serialize)]
struct KeyView {
    repo: String,
    title: String,
    public: String,
    fingerprint: String,
    /// A new key waiting for registration; `public` is still the active one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
}

/// # Errors
/// Unknown host or deploy key, an invalid repository, `gh` missing, unauthenticated or
/// failing, or a failed write.
pub(crate) fn run(args: &Args, ctx: &Context) -> Result<()> {
    if let Some(DeployKeysCommand::Check(check)) = &args.command {
        return check::run(check, ctx);
    }
    let name = args.host.clone().ok_or_else(|| Error::Usage("name a host: `hostsmith deploy-keys HOST`".into()))?;
    let host = host_names(&[name])?.remove(0);
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let record = fleet.record(&host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    if let Some(repo) = &args.activate {
        let a = deploy_keys::activate(&fleet, &host, repo, None, args.dry_run)?;
        ctx.out.json(&serde_json::json!({ "host": host.as_str(), "activated": a, "dry_run": args.dry_run }));
        print_activation(&host, &a, args.dry_run, ctx);
        return Ok(());
    }
    match (args.register, &args.repo) {
        (Some(Forge::Github), Some(repo)) => register_github(&fleet, &host, &record, repo, args, ctx),
        _ => {
            show(&host, &record, ctx);
            Ok(())
        }
    }
}

fn show(host: &HostName, record: &HostRecord, ctx: &Context) {
    let pending = deploy_keys::pending(record);
    let keys: Vec<KeyView> = record
        .deploy_keys
        .iter()
        .map(|(repo, public)| KeyView {
            repo: repo.clone(),
            title: deploy_keys::title(host.as_str(), repo),
            public: public.clone(),
            fingerprint: deploy_keys::fingerprint_of(public),
            pending: pending.get(repo).cloned(),
        })
        .collect();
    ctx.out.json(&serde_json::json!({ "host": host.as_str(), "deploy_keys": keys }));
    if keys.is_empty() {
        ctx.out.line(format!("{host} has no deploy keys (`host.deploy_keys` in hostsmith.toml, then `hostsmith vm-fresh {host}`)"));
        return;
    }
    for k in &keys {
        ctx.out.line(format!("{}  ({}, {})", k.title, k.repo, k.fingerprint));
        match &k.pending {
            Some(new) => {
                ctx.out.line(format!("  to register (new): {new}"));
                ctx.out.line(format!("  in use until then: {}", k.public));
            }
            None => ctx.out.line(format!("  {}", k.public)),
        }
    }
    ctx.out.line("");
    ctx.out.line("to add them read-only on GitHub, for each repository:");
    ctx.out.line("  1. open https://github.com/OWNER/REPO/settings/keys/new");
    ctx.out.line("  2. title: the name above; key: the `ssh-ed25519` line; leave \"Allow write access\" unchecked");
    ctx.out.line(format!("  or let gh do it: hostsmith deploy-keys {host} --register github --repo OWNER/REPO"));
    if !pending.is_empty() {
        ctx.out.line(format!("  after adding a new key by hand: hostsmith deploy-keys {host} --activate REPO"));
    }
}

fn register_github(fleet: &Fleet, host: &HostName, record: &HostRecord, repo: &str, args: &Args, ctx: &Context) -> Result<()> {
    let parsed = Repo::parse(repo)?;
    let key_name = args.deploy.as_deref().unwrap_or(parsed.name());
    deploy_keys::require_repo(record, key_name)?;
    let pending = deploy_keys::pending(record).get(key_name).cloned();
    let public = pending.clone().or_else(|| record.deploy_keys.get(key_name).cloned()).unwrap_or_default();
    let title = deploy_keys::title(host.as_str(), key_name);
    // Read-only is gh's default; `--allow-write` is never passed.
    let add =
        Program::new("gh").args(["repo", "deploy-key", "add", "-", "--title", title.as_str(), "--repo", repo]).stdin(format!("{public}\n"));
    let fingerprint = deploy_keys::fingerprint_of(&public);
    if args.dry_run {
        ctx.out.json(&serde_json::json!({ "host": host.as_str(), "repo": repo, "title": title, "fingerprint": fingerprint, "command": add.argv(), "activates": pending.is_some(), "dry_run": true }));
        ctx.out.line(format!("dry run: would run `{}` with {fingerprint} on stdin", add.display()));
        if pending.is_some() {
            ctx.out.line(format!("dry run: then make it the active `{key_name}` key of {host}"));
        }
        return Ok(());
    }
    let auth = Program::new("gh").args(["auth", "status", "--hostname", "github.com"]).run()?;
    if auth.status != Some(0) {
        return Err(Error::Program {
            program: "gh".into(),
            message: format!(
                "not logged in to GitHub: run `gh auth login` (or set GH_TOKEN), or add the key by hand (`hostsmith deploy-keys {host}`)"
            ),
        });
    }
    add.run_ok()?;
    let activation = match pending {
        Some(registered) => Some(deploy_keys::activate(fleet, host, key_name, Some(registered.as_str()), false)?),
        None => None,
    };
    ctx.out.json(&serde_json::json!({ "host": host.as_str(), "repo": repo, "title": title, "fingerprint": fingerprint, "read_only": true, "activated": activation }));
    ctx.out.line(format!("registered {title} ({fingerprint}) on {repo}, read-only"));
    if let Some(a) = &activation {
        print_activation(host, a, false, ctx);
    }
    Ok(())
}

fn print_activation(host: &HostName, a: &Activation, dry_run: bool, ctx: &Context) {
    let verb = if dry_run { "would make" } else { "made" };
    ctx.out.line(format!("{verb} {} the active `{}` key of {host}; it reaches the host with its next deployment", a.fingerprint, a.repo));
    if let Some(old) = &a.retired {
        ctx.out.line(format!(
            "next: once {host} runs with the new key, remove the old one ({}) from the repository's deploy keys (`gh repo deploy-key list --repo OWNER/REPO`, then `gh repo deploy-key delete ID`)",
            old.fingerprint
        ));
    }
}
