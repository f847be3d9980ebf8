//! What `sops rekey` refuses to do without `--force`: re-key a file to a rule that takes
//! a reader away from it or hands a host's private key to someone else.
//!
//! `.sops.yaml` is untrusted input: a rule placed first that matches everything (and names
//! an attacker's recipient) is something `sops check` flags, but a re-key would obey it,
//! re-encrypting every host's private key for the attacker and dropping the hosts. So before
//! any file is touched, each file's new recipients are compared with what the fleet knows:
//! - a host file must go to the rule written for it alone, keep its host, and gain no other
//!   host;
//! - a host file must already be encrypted for its recorded key: otherwise a rotation was
//!   interrupted after the file got the new key, and re-keying it to the old rule would let
//!   the retired key read the new private key;
//! - no file may lose an admin or a recorded host it is encrypted for today.

use std::collections::{BTreeMap, BTreeSet};

use super::Target;
use crate::fleet::Fleet;
use crate::host_name::HostName;
use crate::record::HostRecord;
use crate::sops::file::EncryptedFile;
use crate::sops::rules::SopsConfig;

/// Why each refused file is refused, in file order; empty when all may be re-keyed.
#[must_use]
pub(crate) fn refusals(fleet: &Fleet, config: &SopsConfig, files: &[String], records: &[HostRecord], admins: &[String]) -> Vec<String> {
    let host_files: BTreeMap<String, &HostRecord> =
        records.iter().filter_map(|r| HostName::parse(&r.name).ok().map(|h| (fleet.host_file_rel(&h, Some(r)), r))).collect();
    let hosts: BTreeMap<&str, &str> = records.iter().map(|r| (r.age_recipient.as_str(), r.name.as_str())).collect();
    let mut out = Vec::new();
    for rel in files {
        let (Some(rule), Some(target)) = (config.rule_for(rel), Target::from_rule(config, rel)) else { continue };
        let Some(file) = std::fs::read_to_string(fleet.root.join(rel)).ok().and_then(|t| EncryptedFile::parse(&t).ok()) else {
            continue;
        };
        let now: BTreeSet<String> = file.age_recipients().into_iter().flatten().collect();
        let age = target.age_groups();
        let next: BTreeSet<&String> = age.iter().flatten().collect();
        let mut why = Vec::new();
        if let Some(r) = host_files.get(rel) {
            if !rule.written_for_path {
                why.push(format!("the rule sops would use (line {}) is not written for it alone", rule.line));
            }
            if !now.contains(&r.age_recipient) {
                why.push(format!(
                    "it is not encrypted for host `{}`'s recorded key: a rotation was interrupted; run `hostsmith keys rotate {}`",
                    r.name, r.name
                ));
            }
            for other in next.iter().filter_map(|x| hosts.get(x.as_str())).filter(|o| **o != r.name) {
                why.push(format!("it would let host `{other}` read host `{}`'s private key", r.name));
            }
        }
        let lost: Vec<&str> = now.iter().filter(|x| !next.contains(x)).filter_map(|x| hosts.get(x.as_str()).copied()).collect();
        if !lost.is_empty() {
            why.push(format!("it would drop host(s) {}", lost.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ")));
        }
        let dropped_admins: Vec<&String> = admins.iter().filter(|a| now.contains(*a) && !next.contains(a)).collect();
        if !dropped_admins.is_empty() {
            why.push(format!("it would drop admin(s) {}", dropped_admins.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")));
        }
        if !why.is_empty() {
            out.push(format!("`{rel}`: {}", why.join("; ")));
        }
    }
    out
}
