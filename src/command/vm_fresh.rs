//! `hostsmith vm-fresh HOST...`

use std::path::PathBuf;

use crate::admin_identity::Identities;
use crate::cloud_init::SeedInputs;
use crate::command::args::SeedOptions;
use crate::command::report::print_report;
use crate::command::{Context, host_names};
use crate::enroll::{self, KeySource, Options, Request};
use crate::error::Result;
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::seed;
use crate::seed::emit;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Hosts to give an identity (RFC 1123 names).
    #[arg(required_unless_present = "recover", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Reuse the key in HOST's existing host file although it has no record and this machine
    /// did not write it (a fleet from elsewhere): only for files whose origin you know.
    #[arg(long, value_name = "HOST")]
    pub recover: Vec<String>,
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
    let recover = host_names(&args.recover)?;
    let mut hosts = host_names(&args.hosts)?;
    for h in &recover {
        if !hosts.contains(h) {
            hosts.push(h.clone());
        }
    }
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    seed::check_persist(&fleet.config.host.persist)?;
    // First-boot options are checked before any key is made.
    let seed_inputs = args.cloud_init.as_ref().map(|_| args.seed.resolve(&fleet)).transpose()?;
    let requests = hosts
        .iter()
        .map(|host| Request { host: host.clone(), source: if recover.contains(host) { KeySource::Recover } else { KeySource::Generate } })
        .collect();
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
