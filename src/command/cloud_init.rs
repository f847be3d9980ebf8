//! `hostsmith cloud-init HOST --out DIR [--iso FILE]`: the NoCloud seed for a host.

use std::path::{Path, PathBuf};

use crate::cli::{Context, host_names};
use crate::cloud_init::{self, Network, SeedParams};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::provision::{self, Identities};
use crate::seed;

/// The options that shape a seed, shared by `cloud-init` and `vm-fresh --cloud-init`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SeedOptions {
    /// Admin user to create (default: `cloud_init.user`).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Public key file (or key line) for the admin user; repeatable (default:
    /// `cloud_init.authorized_keys`).
    #[arg(long = "authorized-key", value_name = "FILE")]
    pub authorized_keys: Vec<String>,
    /// A network-config file to include as it is.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ip", "gateway", "dns"])]
    pub network_config: Option<PathBuf>,
    /// Static address with prefix length, e.g. 192.0.2.10/24; repeatable.
    #[arg(long, value_name = "CIDR")]
    pub ip: Vec<String>,
    /// Default gateway for --ip.
    #[arg(long, value_name = "IP", requires = "ip")]
    pub gateway: Option<String>,
    /// DNS server for --ip; repeatable.
    #[arg(long, value_name = "IP", requires = "ip")]
    pub dns: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Directory for user-data, meta-data and network-config (created 0700).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Also write a NoCloud seed image (volume label `cidata`) here.
    #[arg(long, value_name = "FILE")]
    pub iso: Option<PathBuf>,
    #[command(flatten)]
    pub seed: SeedOptions,
}

/// # Errors
/// Invalid input, an unknown host, or a failed write.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let host = host_names(std::slice::from_ref(&args.host))?.remove(0);
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let mut ids = Identities::for_fleet(&fleet);
    fleet.record(&host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let inputs = args.seed.resolve(&fleet)?;
    let written = emit(&fleet, &host, &args.out, args.iso.as_deref(), &inputs, &mut ids)?;
    ctx.out.json(&serde_json::json!({ "host": host.as_str(), "files": written }));
    for p in &written {
        ctx.out.line(format!("wrote {}", p.display()));
    }
    ctx.out.note(format!("note: these files hold {host}'s private host key; remove them (and detach the seed) after first boot"));
    Ok(())
}

/// What a seed needs besides the host's key, read and validated from the options and the
/// configuration before anything is written.
pub struct SeedInputs {
    pub user: String,
    pub authorized_keys: Vec<String>,
    pub sudo: Option<String>,
    pub network: Option<Network>,
}

impl SeedOptions {
    /// Validates the options against the fleet configuration.
    ///
    /// # Errors
    /// A bad user name, an unreadable or malformed key, a bad address or network file.
    pub fn resolve(&self, fleet: &Fleet) -> Result<SeedInputs> {
        let cfg = &fleet.config.cloud_init;
        let user = self.user.clone().unwrap_or_else(|| cfg.user.clone());
        if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || user.starts_with('-') {
            return Err(Error::Usage(format!("user name `{user}` is invalid: use letters, digits, '-' and '_'")));
        }
        let entries = if self.authorized_keys.is_empty() { cfg.authorized_keys.clone() } else { self.authorized_keys.clone() };
        let authorized_keys = cloud_init::authorized_keys(&entries)?;
        let sudo = Some(cfg.sudo.clone()).filter(|s| !s.is_empty());
        Ok(SeedInputs { user, authorized_keys, sudo, network: network(self)? })
    }
}

/// Renders and writes a host's seed into `out` (and `iso`).
///
/// # Errors
/// See [`run`].
pub fn emit(
    fleet: &Fleet,
    host: &HostName,
    out: &Path,
    iso: Option<&Path>,
    inputs: &SeedInputs,
    ids: &mut Identities,
) -> Result<Vec<PathBuf>> {
    let (_, key) = provision::host_keypair(fleet, host, ids)?;
    let seed = cloud_init::render(&SeedParams {
        host,
        key: &key,
        user: &inputs.user,
        authorized_keys: &inputs.authorized_keys,
        sudo: inputs.sudo.as_deref(),
        network: inputs.network.clone(),
    })?;
    let mut written = seed::write_seed_dir(out, &seed)?;
    if let Some(iso) = iso {
        seed::write_iso(iso, out)?;
        written.push(iso.to_path_buf());
    }
    Ok(written)
}

fn network(opts: &SeedOptions) -> Result<Option<Network>> {
    if let Some(path) = &opts.network_config {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.clone(), source })?;
        crate::yaml::parse(&text).map_err(|source| Error::Yaml { path: path.clone(), source })?;
        return Ok(Some(Network::File(text)));
    }
    if opts.ip.is_empty() {
        return Ok(None);
    }
    let addresses = opts.ip.iter().map(|a| cloud_init::parse_cidr(a)).collect::<Result<Vec<_>>>()?;
    let ip = |s: &String| s.parse().map_err(|_| Error::Usage(format!("`{s}` is not an IP address")));
    let gateway = opts.gateway.as_ref().map(ip).transpose()?;
    let dns = opts.dns.iter().map(ip).collect::<Result<Vec<_>>>()?;
    Ok(Some(Network::Static { addresses, gateway, dns }))
}
