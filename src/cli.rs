//! The command line: clap arguments, the global options, and the one dispatching `match`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::command::{self, Context};
use crate::error::Result;
use crate::output::Output;

#[derive(Debug, Parser)]
#[command(name = "hostsmith", version, about = "Forge a machine's SSH and age identity before the machine exists", long_about = None)]
pub(crate) struct Cli {
    /// The fleet directory (the one holding .sops.yaml).
    #[arg(long, global = true, env = "HOSTSMITH_FLEET", value_name = "DIR")]
    pub fleet: Option<PathBuf>,

    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// More detail on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Same as -vv.
    #[arg(long, global = true, hide = true)]
    pub debug: bool,

    /// Print nothing but errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Colour: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(long, global = true, value_enum, default_value_t = crate::output::ColorChoice::Auto, value_name = "WHEN")]
    pub color: crate::output::ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create hostsmith.toml, .sops.yaml, an admin age identity and a justfile where missing.
    ///
    /// The justfile's recipes run hostsmith on this fleet from any directory (`just check`,
    /// `just vm-fresh HOST`, `just -f fleet/justfile rekey`). A fleet with its own justfile
    /// (`justfile`, `Justfile`, `.justfile`) gets `hostsmith.just` to import instead; no file is
    /// ever overwritten.
    Init(command::init::Args),
    /// Give hosts an identity: host key, deploy keys, age recipient, .sops.yaml entries,
    /// encrypted sops/<host>.yaml and the record hosts/<host>.json.
    VmFresh(command::vm_fresh::Args),
    /// Register an existing machine from its public host key.
    Adopt(command::adopt::Args),
    /// Write a host's NoCloud seed (user-data, meta-data, network-config, optional ISO).
    CloudInit(command::cloud_init::Args),
    /// Write a host's tree for `nixos-anywhere --extra-files`.
    ExtraFiles(command::extra_files::Args),
    /// Proxmox: clone a VM from a cloud-init template with HOST's identity injected, start
    /// it and verify the host key it presents.
    DeployImage(command::deploy_image::Args),
    /// Print known_hosts lines for every recorded host.
    KnownHosts(command::known_hosts::Args),
    /// Check that a machine presents its recorded host key.
    Verify(command::verify::Args),
    /// Check the whole fleet (rules, records, host files, who can open what) without a key.
    ///
    /// Runs every check of `sops check` and the audit of `keys list` on what the fleet stores
    /// in the clear: no admin identity, no network, no sops or gpg, and nothing written (no
    /// lock, no journal, no state), so it runs on a read-only copy. Prints one `problem:` line
    /// per problem and a summary; exits 0 when the fleet is consistent, 1 when a problem was
    /// found, 2 when a file is not valid input (hostsmith.toml, .sops.yaml, a record). This is
    /// what the Nix flake's `lib.fleetCheck` runs in the build sandbox.
    Check,
    /// Validate or re-key the fleet's SOPS files.
    #[command(subcommand)]
    Sops(command::sops::SopsCommand),
    /// Run the main job on a throwaway fleet and show what it made.
    Demo(command::demo::Args),
    /// Make sure a host's authorized_keys holds the admin keys (append-only, audited).
    Sync(command::sync::Args),
    /// Sync the admin keys, then open ssh pinned to the host's recorded key.
    Connect(command::connect::Args),
    /// Read the sync audit log.
    Audit(command::audit::Args),
    /// Let this fleet's settings that run programs (sync.key_command, proxmox.ssh_config) run here.
    Trust(command::trust::Args),
    /// Read or change a setting of hostsmith.toml.
    #[command(subcommand)]
    Config(command::config::ConfigCommand),
    /// The key lifecycle: list, show, public, export, import, rotate, delete, migrate.
    #[command(subcommand)]
    Keys(command::keys::KeysCommand),
    /// Print a host's deploy keys with the steps to add them read-only, or register them;
    /// `check` compares the fleet's with GitHub's.
    DeployKeys(command::deploy_keys::Args),
    /// Print the `Host github.com-<repo>` blocks for a host's deploy keys.
    SshConfig(command::ssh_config::Args),
    /// Print a shell completion script.
    Completions(command::completions::CompletionsArgs),
    /// Print the man page, or write one per command with --out.
    Man(command::completions::ManArgs),
}

/// The whole command line as clap sees it, for documentation checks.
#[must_use]
pub fn clap_command() -> clap::Command {
    Cli::command()
}

/// Parses the command line, runs the command, prints the error and maps it to an exit code.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let out = Output::new(cli.json, cli.quiet, cli.color);
    let fleet_dir = cli.fleet.clone().unwrap_or_else(|| PathBuf::from("."));
    let ctx = Context { fleet_dir, out };
    match run(cli.command, &ctx) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{} {}", ctx.out.paint_err("error:", crate::output::Tone::Bad), crate::output::terminal_safe(&e.to_string()));
            ExitCode::from(u8::try_from(e.code()).unwrap_or(1))
        }
    }
}

fn run(command: Command, ctx: &Context) -> Result<()> {
    match command {
        Command::Init(args) => command::init::run(args, ctx),
        Command::VmFresh(args) => command::vm_fresh::run(args, ctx),
        Command::Adopt(args) => command::adopt::run(args, ctx),
        Command::CloudInit(args) => command::cloud_init::run(args, ctx),
        Command::ExtraFiles(args) => command::extra_files::run(args, ctx),
        Command::DeployImage(args) => command::deploy_image::run(args, ctx),
        Command::KnownHosts(args) => command::known_hosts::run(args, ctx),
        Command::Verify(args) => command::verify::run(args, ctx),
        Command::Check => command::check::run(ctx),
        Command::Sops(cmd) => command::sops::run(cmd, ctx),
        Command::Demo(args) => command::demo::run(args, ctx),
        Command::Sync(args) => command::sync::run(args, ctx),
        Command::Connect(args) => command::connect::run(args, ctx),
        Command::Audit(args) => command::audit::run(args, ctx),
        Command::Trust(args) => command::trust::run(&args, ctx),
        Command::Config(cmd) => command::config::run(cmd, ctx),
        Command::Keys(cmd) => command::keys::run(cmd, ctx),
        Command::DeployKeys(args) => command::deploy_keys::run(&args, ctx),
        Command::SshConfig(args) => command::ssh_config::run(&args, ctx),
        Command::Completions(args) => command::completions::completions(args, Cli::command(), ctx),
        Command::Man(args) => command::completions::man(args, Cli::command(), ctx),
    }
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose.max(if cli.debug { 2 } else { 0 })) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().try_init();
}
