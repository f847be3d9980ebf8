//! `keys import HOST --key-file FILE [--passphrase-file F]`: adopt an existing ed25519
//! private key. For a new host it is everything `vm-fresh` does, with this key; for a known
//! host it is a rotation to this key (`enroll::run` with [`KeySource::Private`]).
//!
//! The key and the passphrase are read from files (or stdin), never from the command line,
//! held in wiped memory, and checked completely before the fleet is touched: an RSA, ECDSA
//! or PEM key, or a wrong passphrase, is refused with exit status 2 and nothing changes.

use std::io::Read;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::one_host;
use super::rotate::{after_host_rotation, print_next};
use crate::command::Context;
use crate::command::report::print_report;
use crate::enroll::{self, Action, KeySource, Options, Request};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::ssh_keys::Keypair;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(value_name = "HOST")]
    pub host: String,
    /// The private key in OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----`), or `-` for stdin.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// A file whose first line is the key's passphrase, when it has one.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// # Errors
/// A key that is not an ed25519 OpenSSH private key (exit 2), or a provisioning failure.
pub(crate) fn run(args: &Args, ctx: &Context) -> Result<()> {
    let host = one_host(&args.host)?;
    if args.passphrase_file.as_deref() == Some(Path::new("-")) && args.key_file.as_os_str() == "-" {
        return Err(Error::Usage("the key and the passphrase cannot both come from stdin".into()));
    }
    let text = read_secret(&args.key_file)?;
    let key = parse_key(&text, args.passphrase_file.as_deref())?;
    drop(text);
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let old = fleet.record(&host)?;
    if let Some(rec) = &old
        && rec.fingerprint == key.fingerprint()
    {
        ctx.out.json(&serde_json::json!({ "host": host.as_str(), "action": "unchanged", "fingerprint": rec.fingerprint }));
        ctx.out.line(format!("unchanged  {host}: it already has this key ({})", rec.fingerprint));
        return Ok(());
    }
    let request = Request { host, source: KeySource::Private(Box::new(key)) };
    let report = enroll::run(&fleet, vec![request], Options { rotate: old.is_some(), dry_run: args.dry_run })?;
    print_report(&report, ctx);
    if let (Some(old), Some(outcome)) = (&old, report.hosts.first())
        && outcome.action == Action::Rotated
    {
        let outcomes = after_host_rotation(&fleet, old, args.dry_run, ctx)?;
        print_next(old, ctx);
        super::rotate::fail_on(&outcomes)?;
    }
    Ok(())
}

/// Reads a file (or stdin for `-`) into wiped memory.
fn read_secret(path: &Path) -> Result<Zeroizing<String>> {
    let mut s = Zeroizing::new(String::new());
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut s).map_err(|source| Error::Read { path: "<stdin>".into(), source })?;
    } else {
        let mut f = std::fs::File::open(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        f.read_to_string(&mut s).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    }
    Ok(s)
}

/// Parses the key, naming the algorithm before asking for a passphrase: an encrypted RSA key
/// is refused as RSA, not as "wrong passphrase".
fn parse_key(text: &str, passphrase_file: Option<&Path>) -> Result<Keypair> {
    if !text.contains("PRIVATE KEY-----") && text.lines().next().is_some_and(|l| ssh_key::PublicKey::from_openssh(l.trim()).is_ok()) {
        return Err(Error::Key(
            "that is a public key: `keys import` needs the private key; for a machine that keeps its private key, use `hostsmith adopt HOST --pubkey FILE`".into(),
        ));
    }
    if let Ok(k) = ssh_key::PrivateKey::from_openssh(text)
        && k.algorithm() != ssh_key::Algorithm::Ed25519
    {
        return Err(Error::Key(format!(
            "the key is {} and not ed25519: sops-nix derives a host's age identity from its ed25519 host key; make one with `ssh-keygen -t ed25519` (or let `hostsmith vm-fresh` make it)",
            k.algorithm()
        )));
    }
    let passphrase = match passphrase_file {
        Some(p) => {
            let all = read_secret(p)?;
            Some(Zeroizing::new(all.lines().next().unwrap_or_default().as_bytes().to_vec()))
        }
        None => None,
    };
    Keypair::from_openssh(text, passphrase.as_ref().map(|p| p.as_slice()))
}
