//! `keys list`, `keys show HOST`, `keys public HOST`: read-only views of the key store.

use serde::Serialize;

use super::one_host;
use crate::command::Context;
use crate::deploy_keys;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::key_audit::{self as audit, Problem};
use crate::record::{HostRecord, Origin};
use crate::rekey;

#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    #[arg(value_name = "HOST")]
    pub host: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PublicArgs {
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Print the host's age recipient (what .sops.yaml holds) instead of its SSH key.
    #[arg(long, conflicts_with = "deploy")]
    pub age: bool,
    /// Print the public half of the host's deploy key for REPO.
    #[arg(long, value_name = "REPO")]
    pub deploy: Option<String>,
}

#[derive(Debug, Serialize)]
struct Row<'a> {
    name: &'a str,
    fingerprint: &'a str,
    age_recipient: &'a str,
    deploy_keys: Vec<&'a str>,
    pending_deploy_keys: Vec<String>,
    origin: Origin,
    created_at: &'a str,
    rotated_at: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct ListReport<'a> {
    hosts: Vec<Row<'a>>,
    admins: Vec<audit::AdminView>,
    problems: Vec<Problem>,
}

/// A recipient cut to fit a table (post-quantum ones are 1,952 characters, an ssh-rsa key
/// several hundred).
fn short(r: &str) -> String {
    let n = r.chars().count();
    if n <= 120 {
        r.to_string()
    } else {
        format!("{}…{}", r.chars().take(60).collect::<String>(), r.chars().skip(n - 8).collect::<String>())
    }
}

/// # Errors
/// No fleet, an unreadable `.sops.yaml` or record.
pub(crate) fn list(ctx: &Context) -> Result<()> {
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let config = fleet.sops_config()?;
    let records = fleet.records()?;
    let files = rekey::discover(&fleet)?;
    let problems = audit::problems(&fleet, &config, &records, &files);
    let hosts: Vec<Row<'_>> = records
        .iter()
        .map(|r| Row {
            name: &r.name,
            fingerprint: &r.fingerprint,
            age_recipient: &r.age_recipient,
            deploy_keys: r.deploy_keys.keys().map(String::as_str).collect(),
            pending_deploy_keys: deploy_keys::pending(r).into_keys().collect(),
            origin: r.origin,
            created_at: &r.created_at,
            rotated_at: r.rotated_at.as_deref(),
        })
        .collect();
    let report = ListReport { hosts, admins: audit::admin_views(&fleet, &config), problems };
    ctx.out.json(&report);
    if report.hosts.is_empty() {
        ctx.out.line("no hosts yet: `hostsmith vm-fresh HOST` makes one, `hostsmith keys migrate` adopts an existing fleet");
    } else {
        for line in table(&report.hosts) {
            ctx.out.line(line);
        }
        if report.hosts.iter().any(|h| !h.pending_deploy_keys.is_empty()) {
            ctx.out.line("* a new deploy key waits for registration: `hostsmith deploy-keys HOST`");
        }
    }
    if !report.admins.is_empty() {
        ctx.out.line("");
        ctx.out.line("admins:");
        let (nw, kw) =
            (report.admins.iter().map(|a| a.name.len()).max().unwrap_or(0), report.admins.iter().map(|a| a.kind.len()).max().unwrap_or(0));
        for a in &report.admins {
            let missing = a.missing.as_ref().map(|m| format!("  ({m})")).unwrap_or_default();
            ctx.out.line(format!("  {:<nw$}  {:<kw$}  {}{missing}", a.name, a.kind, short(&a.recipient)));
        }
    }
    if !report.problems.is_empty() {
        ctx.out.line("");
        ctx.out.line(format!("problems ({}):", report.problems.len()));
        for p in &report.problems {
            ctx.out.line(format!("  - {}", p.message));
        }
    }
    Ok(())
}

/// The table: columns as wide as their widest cell, two spaces apart, the last unpadded.
fn table(rows: &[Row<'_>]) -> Vec<String> {
    let header = ["HOST", "FINGERPRINT", "AGE RECIPIENT", "DEPLOY KEYS", "CREATED", "ROTATED"];
    let mut cells: Vec<[String; 6]> = vec![header.map(String::from)];
    for r in rows {
        let mut deploy: Vec<String> = r
            .deploy_keys
            .iter()
            .map(|d| if r.pending_deploy_keys.iter().any(|p| p == d) { format!("{d}*") } else { (*d).to_string() })
            .collect();
        if deploy.is_empty() {
            deploy.push("-".into());
        }
        cells.push([
            r.name.to_string(),
            r.fingerprint.to_string(),
            r.age_recipient.to_string(),
            deploy.join(","),
            r.created_at.to_string(),
            r.rotated_at.unwrap_or("-").to_string(),
        ]);
    }
    crate::output::table(&cells)
}

#[derive(Debug, Serialize)]
struct DeployKeyView {
    repo: String,
    title: String,
    public: String,
    fingerprint: String,
    pending: bool,
}

#[derive(Debug, Serialize)]
struct ShowReport<'a> {
    #[serde(flatten)]
    record: &'a HostRecord,
    host_file: String,
    deploy: Vec<DeployKeyView>,
    /// The fleet's SOPS files this host's recipient can open.
    opens: Vec<String>,
}

/// # Errors
/// Unknown host, unreadable record.
pub(crate) fn show(args: &ShowArgs, ctx: &Context) -> Result<()> {
    let host = one_host(&args.host)?;
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let record = fleet.record(&host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let mut deploy: Vec<DeployKeyView> = Vec::new();
    let view = |repo: &str, public: &str, pending: bool| DeployKeyView {
        repo: repo.to_string(),
        title: deploy_keys::title(host.as_str(), repo),
        public: public.to_string(),
        fingerprint: deploy_keys::fingerprint_of(public),
        pending,
    };
    deploy.extend(record.deploy_keys.iter().map(|(repo, public)| view(repo, public, false)));
    deploy.extend(deploy_keys::pending(&record).iter().map(|(repo, public)| view(repo, public, true)));
    let opens = rekey::openable_by(&fleet, &rekey::discover(&fleet)?, &record.age_recipient);
    let report = ShowReport { record: &record, host_file: fleet.host_file_rel(&host, Some(&record)), deploy, opens };
    ctx.out.json(&report);
    let out = &ctx.out;
    let field = |name: &str, value: &str| out.line(format!("{name:<15}{value}"));
    field("host", &record.name);
    field("public key", &record.ssh_host_ed25519_public);
    field("fingerprint", &record.fingerprint);
    field("age recipient", &record.age_recipient);
    field("origin", record.origin.as_str());
    field("created", &record.created_at);
    field("rotated", record.rotated_at.as_deref().unwrap_or("never"));
    field("host file", &report.host_file);
    for (i, d) in report.deploy.iter().enumerate() {
        let state = if d.pending { "  (new, waiting for registration)" } else { "" };
        field(if i == 0 { "deploy keys" } else { "" }, &format!("{:<14}{}  {}{state}", d.repo, d.fingerprint, d.title));
    }
    for (i, k) in record.history.iter().enumerate() {
        field(if i == 0 { "previous keys" } else { "" }, &format!("{}  {}  retired {}", k.fingerprint, k.age_recipient, k.retired_at));
    }
    field("opens", &if report.opens.is_empty() { "-".to_string() } else { report.opens.join(", ") });
    Ok(())
}

/// # Errors
/// Unknown host or deploy key.
pub(crate) fn public(args: &PublicArgs, ctx: &Context) -> Result<()> {
    let host = one_host(&args.host)?;
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let record = fleet.record(&host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let (kind, value) = match (&args.deploy, args.age) {
        (Some(repo), _) => {
            deploy_keys::require_repo(&record, repo)?;
            ("deploy", record.deploy_keys.get(repo).cloned().unwrap_or_default())
        }
        (None, true) => ("age", record.age_recipient.clone()),
        (None, false) => ("ssh", record.ssh_host_ed25519_public.clone()),
    };
    ctx.out.json(&serde_json::json!({ "host": host.as_str(), "kind": kind, "repo": args.deploy, "value": value }));
    ctx.out.line(value);
    Ok(())
}
