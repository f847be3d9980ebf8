//! `hostsmith demo [DIR]`: the main job on a throwaway fleet, so a newcomer sees in one
//! command what hostsmith makes. Nothing outside DIR is touched: the demo has its own admin
//! identity and never reads or writes the user's sops keys.

use std::path::PathBuf;

use age::secrecy::ExposeSecret;

use crate::admin_identity::Identities;
use crate::atomic;
use crate::command::Context;
use crate::command::args::SeedOptions;
use crate::enroll::{self, KeySource, Options, Request};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::seed::emit;
use crate::sops;
use crate::sops::file::{EncryptionOptions, Map, Value};

/// The hosts the demo provisions.
pub(crate) const DEMO_HOSTS: [&str; 3] = ["web01", "db01", "mqtt-01"];

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to build the demo fleet (must not exist or be empty); default: a new
    /// directory under the system's temp directory.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
struct DemoReport {
    fleet: PathBuf,
    admin_key_file: PathBuf,
    hosts: Vec<enroll::HostOutcome>,
    files: Vec<String>,
}

/// # Errors
/// When DIR is not empty or a step fails.
#[allow(clippy::too_many_lines, reason = "a walkthrough that prints as it goes; splitting it would scatter the story it tells")]
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let dir = match args.dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(&d).map_err(|source| Error::Read { path: d.clone(), source })?.next().is_some() {
                return Err(Error::Usage(format!("`{}` is not empty: give a new or empty directory for the demo fleet", d.display())));
            }
            d
        }
        None => tempfile::Builder::new()
            .prefix("hostsmith-demo-")
            .tempdir()
            .map_err(|source| Error::Write { path: std::env::temp_dir(), source })?
            .keep(),
    };
    atomic::create_dir(&dir, 0o755)?;
    let dir = dir.canonicalize().map_err(|source| Error::Read { path: dir.clone(), source })?;

    // A throwaway admin, kept inside the demo fleet so `sops` can be pointed at it.
    let admin = age::x25519::Identity::generate();
    let key_file = dir.join("admin-age-key.txt");
    let body = zeroize::Zeroizing::new(format!(
        "# demo admin identity (throwaway)\n# public key: {}\n{}\n",
        admin.to_public(),
        admin.to_string().expose_secret()
    ));
    atomic::create_secret(&key_file, body.as_bytes())?;
    super::init::init_fleet(&dir, &admin.to_public().to_string(), false)?;

    // A shared secret made before the hosts exist, to show it being re-keyed for them.
    let mut shared = Map::new();
    shared
        .set_path(&["wifi_psk"], Value::Str("demo-only-not-a-secret".into()))
        .map_err(|e| Error::SopsEngine { path: dir.join("sops/shared.yaml"), source: e })?;
    let shared_text = sops::file::encrypt_new(&shared, &[vec![admin.to_public().to_string()]], &EncryptionOptions::default())
        .map_err(|e| Error::SopsEngine { path: dir.join("sops/shared.yaml"), source: e })?;
    atomic::create_dir(&dir.join("sops"), 0o755)?;
    atomic::write(&dir.join("sops/shared.yaml"), shared_text.as_bytes(), 0o644)?;

    let mut fleet = Fleet::open(&dir)?;
    fleet.admin_identities = Some(vec![admin]);
    let requests =
        DEMO_HOSTS.iter().map(|h| Ok(Request { host: HostName::parse(h)?, source: KeySource::Generate })).collect::<Result<Vec<_>>>()?;
    let report = enroll::run(&fleet, requests, Options::default())?;

    // Each host's NoCloud seed, with a throwaway admin SSH key authorized in it.
    let ssh_admin = crate::ssh_keys::Keypair::generate("demo-admin")?;
    atomic::create_secret(&dir.join("admin-ssh-key"), ssh_admin.openssh_private()?.as_bytes())?;
    atomic::write(&dir.join("admin-ssh-key.pub"), format!("{}\n", ssh_admin.public_line()).as_bytes(), 0o644)?;
    let inputs = SeedOptions { authorized_keys: vec![ssh_admin.public_line()], ..SeedOptions::default() }.resolve(&fleet)?;
    let mut ids = Identities::for_fleet(&fleet);
    let seeds = crate::out_tree::OutDir::root(&dir.join("seeds"))?;
    for h in &report.hosts {
        let host = HostName::parse(&h.name)?;
        emit(&fleet, &host, &seeds.descend(host.as_str(), 0o700)?, None, &inputs, &mut ids)?;
    }

    let out = &ctx.out;
    out.json(&DemoReport {
        fleet: dir.clone(),
        admin_key_file: key_file.clone(),
        hosts: report.hosts.clone(),
        files: report.files.clone(),
    });
    out.line(format!("demo fleet: {}", dir.display()));
    out.line("");
    for h in &report.hosts {
        out.line(format!("  {:<8} {}  {}", h.name, h.fingerprint, h.age_recipient));
    }
    out.line("");
    out.line("made:");
    out.line("  .sops.yaml            an anchor and a creation rule per host; the shared rule joined by each");
    out.line("  sops/<host>.yaml      the host's SSH host key and deploy keys, encrypted for the admin and the host");
    out.line("  sops/shared.yaml      a shared secret, re-keyed so every host can read it");
    out.line("  hosts/<host>.json     the public record: key, fingerprint, age recipient, deploy keys");
    out.line("  seeds/<host>/         the host's NoCloud seed (user-data, meta-data): its key, before first boot");
    out.line("  admin-age-key.txt     the demo's throwaway admin identity (admin-ssh-key: its SSH login)");
    out.line("");
    out.line("look at it:");
    out.line(format!("  cd {}", dir.display()));
    let web01 = fleet.host_file_rel(&HostName::parse(DEMO_HOSTS[0])?, None);
    out.line(format!("  cat .sops.yaml {} seeds/web01/meta-data", fleet.record_rel(DEMO_HOSTS[0])));
    out.line(format!("  SOPS_AGE_KEY_FILE=admin-age-key.txt sops --decrypt {web01}"));
    Ok(())
}
