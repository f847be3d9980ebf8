//! `hostsmith vm-fresh HOST...`

use std::path::PathBuf;

use crate::admin_identity::Identities;
use crate::cloud_init::SeedInputs;
use crate::command::args::SeedOptions;
use crate::command::{Context, host_names};
use crate::enroll::{self, Action, KeySource, Options, Report, Request};
use crate::error::Result;
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::output::Tone;
use crate::seed;
use crate::seed::emit;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Hosts to give an identity (RFC 1123 names).
    #[arg(required = true, value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Replace the host keys of hosts that already have one.
    #[arg(long)]
    pub rotate: bool,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write each host's NoCloud seed to DIR/<host>/.
    #[arg(long, value_name = "DIR")]
    pub cloud_init: Option<PathBuf>,
    /// Also write each host's nixos-anywhere tree to DIR/<host>/.
    #[arg(long, value_name = "DIR")]
    pub extra_files: Option<PathBuf>,
    #[command(flatten)]
    pub seed: SeedOptions,
}

/// # Errors
/// Invalid names, a fleet that cannot be changed safely, or a failed write.
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let hosts = host_names(&args.hosts)?;
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    seed::check_persist(&fleet.config.host.persist)?;
    // First-boot options are checked before any key is made.
    let seed_inputs = args.cloud_init.as_ref().map(|_| args.seed.resolve(&fleet)).transpose()?;
    let requests = hosts.iter().map(|host| Request { host: host.clone(), source: KeySource::Generate }).collect();
    let bar = ctx.out.progress_bar(2 * hosts.len() as u64, "keys and files");
    let report = enroll::run_with_progress(&fleet, requests, Options { rotate: args.rotate, dry_run: args.dry_run }, &bar)?;
    bar.finish();
    print_report(&report, ctx);
    if args.dry_run {
        return Ok(());
    }
    let mut ids = Identities::for_fleet(&fleet);
    for host in &hosts {
        emit_first_boot(&fleet, host, &args, seed_inputs.as_ref(), &mut ids, ctx)?;
    }
    Ok(())
}

fn emit_first_boot(
    fleet: &Fleet,
    host: &HostName,
    args: &Args,
    inputs: Option<&SeedInputs>,
    ids: &mut Identities,
    ctx: &Context,
) -> Result<()> {
    if let (Some(dir), Some(inputs)) = (&args.cloud_init, inputs) {
        let out = dir.join(host.as_str());
        for p in emit(fleet, host, &out, None, inputs, ids)? {
            ctx.out.line(format!("wrote {}", p.display()));
        }
    }
    if let Some(dir) = &args.extra_files {
        let (_, key) = crate::host_file::host_keypair(fleet, host, ids)?;
        for p in seed::write_extra_files(&dir.join(host.as_str()), &fleet.config.host.persist, &key)? {
            ctx.out.line(format!("wrote {}", p.display()));
        }
    }
    Ok(())
}

/// Prints a provisioning report the same way for every command that provisions.
pub(crate) fn print_report(report: &Report, ctx: &Context) {
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
        let tone = match h.action {
            Action::Unchanged => Tone::Dim,
            Action::Rotated | Action::Recovered => Tone::Warn,
            _ => Tone::Good,
        };
        // Pad before painting, so colour codes do not upset the columns.
        out.line(format!("{} {:<16} {}  {}", out.paint(&format!("{action:<10}"), tone), h.name, h.fingerprint, h.age_recipient));
        if !h.deploy_keys_added.is_empty() {
            out.line(format!("           deploy keys added: {}", h.deploy_keys_added.join(", ")));
        }
    }
    // A line per change reads well for a few hosts; for many, a count (the JSON has the list).
    if report.sops_config_changes.len() <= 8 {
        for c in &report.sops_config_changes {
            out.line(format!(".sops.yaml: {c}"));
        }
    } else {
        out.line(format!(".sops.yaml: {} changes (anchors, rules, shared rules; `--json` lists them)", report.sops_config_changes.len()));
    }
    if report.files.is_empty() {
        out.line("nothing to do: every file is already up to date");
    } else if report.dry_run {
        out.line(format!("dry run: would write {}", report.files.join(", ")));
    } else {
        out.line(format!("wrote {}", report.files.join(", ")));
    }
}
