//! Arguments more than one command takes, defined once so that they read and validate the
//! same everywhere.

use std::path::PathBuf;

use crate::cloud_init::{self, Network, SeedInputs};
use crate::error::{Error, Result};
use crate::fleet::Fleet;

/// The options that shape a seed, shared by `cloud-init` and `vm-fresh --cloud-init`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct SeedOptions {
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

impl SeedOptions {
    /// Validates the options against the fleet configuration.
    ///
    /// # Errors
    /// A bad user name, an unreadable or malformed key, a bad address or network file.
    pub(crate) fn resolve(&self, fleet: &Fleet) -> Result<SeedInputs> {
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

fn network(opts: &SeedOptions) -> Result<Option<Network>> {
    if let Some(path) = &opts.network_config {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.clone(), source })?;
        crate::sops::yaml::parse(&text).map_err(|source| Error::Yaml { path: path.clone(), source })?;
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
