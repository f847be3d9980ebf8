//! `hostsmith verify HOST --address A[:PORT]`: does the machine present the recorded key?

use std::time::Duration;

use crate::address::Address;
use crate::command::{Context, host_names};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::keyscan;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
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
pub(crate) fn run(args: Args, ctx: &Context) -> Result<()> {
    let host = host_names(std::slice::from_ref(&args.host))?.remove(0);
    let addr = Address::parse(&args.address)?;
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let record = fleet.record(&host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let found = keyscan::verify(&record, &addr, Duration::from_secs(args.timeout))?;
    ctx.out.json(&serde_json::json!({ "host": host.as_str(), "address": addr.to_string(), "fingerprint": found, "verified": true }));
    ctx.out.line(format!("verified: {host} at {addr} presents {found}, as recorded"));
    Ok(())
}
