//! `hostsmith verify HOST --address A[:PORT]`: does the machine present the recorded key?

use std::time::Duration;

use crate::address::Address;
use crate::cli::{Context, host_names};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::keyscan;
use crate::ssh_keys;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Where to reach it: HOST, HOST:PORT or [IPv6]:PORT.
    #[arg(long, value_name = "A[:PORT]")]
    pub address: String,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub timeout: u64,
}

/// # Errors
/// [`Error::Mismatch`] (exit 3) when the key differs; other errors when it cannot be asked.
pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let host = host_names(std::slice::from_ref(&args.host))?.remove(0);
    let addr = Address::parse(&args.address)?;
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let record = fleet.record(&host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let found = verify(&record, &addr, Duration::from_secs(args.timeout))?;
    ctx.out.json(&serde_json::json!({ "host": host.as_str(), "address": addr.to_string(), "fingerprint": found, "verified": true }));
    ctx.out.line(format!("verified: {host} at {addr} presents {found}, as recorded"));
    Ok(())
}

/// Scans `addr` and compares with the record; returns the matching fingerprint.
///
/// # Errors
/// [`Error::Mismatch`] naming both fingerprints and the likely cause.
pub fn verify(record: &crate::record::HostRecord, addr: &Address, timeout: Duration) -> Result<String> {
    let keys = keyscan::ed25519_keys(addr, timeout)?;
    let expected = &record.fingerprint;
    if let Some(k) = keys.iter().find(|k| &ssh_keys::fingerprint(k) == expected) {
        return Ok(ssh_keys::fingerprint(k));
    }
    let found: Vec<String> = keys.iter().map(ssh_keys::fingerprint).collect();
    Err(Error::Mismatch {
        host: format!("{} at {addr}", record.name),
        expected: expected.clone(),
        found: format!(
            "{} (likely cause: the machine generated or kept its own key — the seed was not applied, or the template's keys were not removed)",
            found.join(", ")
        ),
    })
}
