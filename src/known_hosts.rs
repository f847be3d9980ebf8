//! known_hosts lines from the host records, so the first connection to a host can use
//! `StrictHostKeyChecking=yes`: its key is known before it ever answers.

use crate::address::Address;
use crate::record::HostRecord;

/// One line per record: `name[,address…] ssh-ed25519 AAAA…`.
#[must_use]
pub(crate) fn lines(records: &[HostRecord]) -> String {
    let mut out = String::new();
    for r in records {
        let mut names = vec![r.name.clone()];
        for a in &r.addresses {
            if let Ok(addr) = Address::parse(a) {
                let form = addr.known_hosts_form();
                if !names.contains(&form) {
                    names.push(form);
                }
            }
        }
        // The key without its comment: known_hosts has no use for it.
        let mut parts = r.ssh_host_ed25519_public.split_whitespace();
        let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else { continue };
        out.push_str(&format!("{} {kind} {blob}\n", names.join(",")));
    }
    out
}
