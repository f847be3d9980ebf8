//! `hostsmith vm-fresh HOST...`

use crate::cli::{Context, host_names};
use crate::error::Result;
use crate::fleet::Fleet;
use crate::provision::{self, Action, KeySource, Options, Report, Request};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hosts to give an identity (RFC 1123 names).
    #[arg(required = true, value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Replace the host keys of hosts that already have one.
    #[arg(long)]
    pub rotate: bool,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// # Errors
/// Invalid names, a fleet that cannot be changed safely, or a failed write.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let hosts = host_names(&args.hosts)?;
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let requests = hosts.into_iter().map(|host| Request { host, source: KeySource::Generate }).collect();
    let report = provision::run(&fleet, requests, Options { rotate: args.rotate, dry_run: args.dry_run })?;
    print_report(&report, ctx);
    Ok(())
}

/// Prints a provisioning report the same way for every command that provisions.
pub fn print_report(report: &Report, ctx: &Context) {
    let out = &ctx.out;
    out.json(report);
    for h in &report.hosts {
        let action = match h.action {
            Action::Created => "created",
            Action::Adopted => "adopted",
            Action::Imported => "imported",
            Action::Recovered => "recovered",
            Action::Rotated => "rotated",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
        };
        out.line(format!("{action:<10} {:<16} {}  {}", h.name, h.fingerprint, h.age_recipient));
        if !h.deploy_keys_added.is_empty() {
            out.line(format!("           deploy keys added: {}", h.deploy_keys_added.join(", ")));
        }
    }
    for c in &report.sops_config_changes {
        out.line(format!(".sops.yaml: {c}"));
    }
    if report.files.is_empty() {
        out.line("nothing to do: every file is already up to date");
    } else if report.dry_run {
        out.line(format!("dry run: would write {}", report.files.join(", ")));
    } else {
        out.line(format!("wrote {}", report.files.join(", ")));
    }
}
