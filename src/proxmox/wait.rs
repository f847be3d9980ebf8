//! After `qm start`: wait for the VM's address and for its sshd, then verify the host key,
//! all within one deadline (`--wait`). A spinner shows progress, but only on a terminal.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::address::Address;
use crate::error::{Error, Result};
use crate::keyscan::verify;
use crate::record::HostRecord;

use super::guest;
use super::node::Node;
use super::plan::{IpConfig, Plan};

/// How long one `qm guest cmd` may take.
const AGENT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one keyscan may wait for an answer.
const SCAN_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_secs(2);

/// A spinner on stderr when stderr is a terminal and output is not quieted; silent otherwise.
pub(crate) struct Spinner(Option<ProgressBar>);

impl Spinner {
    #[must_use]
    pub(crate) fn new(quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(Some(bar))
    }

    pub(crate) fn message(&self, text: String) {
        if let Some(b) = &self.0 {
            b.set_message(text);
        } else {
            tracing::info!("{text}");
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// Waits for the address (static, or from the guest agent), then for a key at port 22, and
/// verifies it against the record. Returns the address and the verified fingerprint.
///
/// # Errors
/// [`Error::Mismatch`] at once when the VM presents another key; [`Error::Program`] when
/// the deadline passes, saying what was last seen.
pub(crate) fn address_and_key(node: &Node, plan: &Plan<'_>, record: &HostRecord, spinner: &Spinner) -> Result<(Address, String)> {
    let d = plan.d;
    let deadline = Instant::now() + d.wait;
    let ip = match &d.ip {
        IpConfig::Static { address, .. } => *address,
        IpConfig::Dhcp => IpAddr::V4(agent_address(node, plan, deadline, spinner)?),
    };
    let addr = Address { host: ip.to_string(), port: 22 };
    spinner.message(format!("waiting for {} to answer ssh at {addr}", d.host));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match verify(record, &addr, SCAN_TIMEOUT.min(left).max(Duration::from_secs(1))) {
            Ok(fingerprint) => return Ok((addr, fingerprint)),
            Err(e @ Error::Mismatch { .. }) => return Err(e),
            Err(e) if Instant::now() + POLL >= deadline => {
                return Err(Error::Program {
                    program: "ssh-keyscan".into(),
                    message: format!("{} did not present a host key at {addr} within {}s (last: {e})", d.host, d.wait.as_secs()),
                });
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn agent_address(node: &Node, plan: &Plan<'_>, deadline: Instant, spinner: &Spinner) -> Result<std::net::Ipv4Addr> {
    let d = plan.d;
    let argv = plan.guest_argv();
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    loop {
        spinner.message(format!("waiting for VM {}'s address from the guest agent", plan.id()));
        let done = node.qm(&args, None, AGENT_TIMEOUT)?;
        if done.status == Some(0) {
            let text = String::from_utf8_lossy(&done.stdout);
            if let Some(ip) = guest::first_ipv4(&text) {
                return Ok(ip);
            }
        }
        let last = if done.status == Some(0) {
            "the guest agent reports no IPv4 address yet".to_string()
        } else {
            super::node::reason(&done.stderr)
        };
        if Instant::now() + POLL >= deadline {
            return Err(Error::Program {
                program: "qm".into(),
                message: format!(
                    "VM {} reported no address within {}s (last: {last}); is qemu-guest-agent installed in the template? Pass --ip to skip the agent, or a longer --wait",
                    plan.id(),
                    d.wait.as_secs()
                ),
            });
        }
        std::thread::sleep(POLL);
    }
}
