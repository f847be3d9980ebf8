//! What `sops check` verifies beyond `.sops.yaml` itself: that the records and the host files
//! on disk belong together. All of it reads only what is stored in the clear (records, the
//! `sops:` metadata, the key names of SOPS files), so it needs no admin identity.
//!
//! - each host file is encrypted for its host's recorded recipient, and for no other host's:
//!   a rotation interrupted after the host file was written leaves the file encrypted for the
//!   new key while the record still names the old one;
//! - no two records hold one key, and no two SOPS files are copies (the same MAC: sops draws a
//!   fresh nonce for every MAC it writes, so equal MACs mean one file was copied from the
//!   other, data key and all);
//! - no host file holds a host key without a record: such a file is either left by an
//!   interrupted run or planted, and `vm-fresh` will not use it without `--recover`.

use std::collections::BTreeMap;

use crate::fleet::Fleet;
use crate::host_file::HOST_KEY_FIELD;
use crate::host_name::HostName;
use crate::record::HostRecord;
use crate::sops::file::EncryptedFile;

/// Every problem found, in words, each naming the file and what to do.
#[must_use]
pub(crate) fn problems(fleet: &Fleet, records: &[HostRecord]) -> Vec<String> {
    let mut out = Vec::new();
    let by_recipient: BTreeMap<&str, &str> = records.iter().map(|r| (r.age_recipient.as_str(), r.name.as_str())).collect();
    let mut by_fingerprint: BTreeMap<&str, &str> = BTreeMap::new();
    let mut by_mac: BTreeMap<String, String> = BTreeMap::new();
    let rels: Vec<Option<String>> =
        records.iter().map(|r| HostName::parse(&r.name).ok().map(|h| fleet.host_file_rel(&h, Some(r)))).collect();
    // Read and parsed on every core; only what the checks need is kept.
    let seen = crate::parallel::map(&rels, crate::parallel::cores(), |rel| rel.as_deref().and_then(|rel| Seen::read(fleet, rel)));
    for ((r, rel), file) in records.iter().zip(&rels).zip(seen) {
        if let Some(first) = by_fingerprint.insert(&r.fingerprint, &r.name) {
            out.push(format!(
                "hosts `{first}` and `{}` hold the same host key {}: give one of them its own key (`hostsmith keys rotate {}`)",
                r.name, r.fingerprint, r.name
            ));
        }
        let (Some(rel), Some(file)) = (rel, file) else { continue };
        note_copy(&mut by_mac, &file.mac, rel, &mut out);
        let recipients = &file.recipients;
        if !recipients.contains(&r.age_recipient) {
            out.push(format!(
                "host `{}`: `{rel}` is not encrypted for the host's recorded key ({}): a rotation was interrupted or the file was replaced; run `hostsmith keys rotate {}` to give the host a fresh key",
                r.name, r.age_recipient, r.name
            ));
        }
        for other in recipients.iter().filter_map(|x| by_recipient.get(x.as_str())).filter(|o| **o != r.name) {
            out.push(format!(
                "host `{}`: `{rel}` is also encrypted for host `{other}`, which can then read its private key; run `hostsmith sops rekey {rel}` after fixing its rule",
                r.name
            ));
        }
    }
    out.extend(orphans(fleet, records, &mut by_mac));
    out
}

/// Template files (`sops/<host>.yaml`, `hosts/<host>/secrets.yaml`) of hosts without a
/// record that hold a host key. Only the directory where the template puts the host name is
/// listed, once.
fn orphans(fleet: &Fleet, records: &[HostRecord], by_mac: &mut BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let template = fleet.host_file_template();
    let (dir, entry) = crate::host_template::scan_dir(&template);
    let Ok(entries) = std::fs::read_dir(fleet.root.join(&dir)) else { return out };
    // Each entry of `dir` is the host's file or the directory that holds it.
    let mut hosts: Vec<HostName> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| crate::host_template::host_of(&entry, &name).and_then(|h| HostName::parse(&h).ok()))
        .collect();
    hosts.sort();
    hosts.dedup();
    let recorded: std::collections::HashSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
    for host in hosts {
        let rel = fleet.host_file_rel(&host, None);
        if recorded.contains(host.as_str()) || fleet.config.sops.shared.contains(&rel) {
            continue;
        }
        let Some(file) = Seen::read(fleet, &rel) else { continue };
        note_copy(by_mac, &file.mac, &rel, &mut out);
        if file.holds_host_key {
            let record = fleet.record_rel(host.as_str());
            out.push(format!(
                "`{rel}` holds a host key but there is no record `{record}`: if an interrupted run on this machine left it, run `hostsmith vm-fresh {host}`; if you know where it comes from, `hostsmith vm-fresh --recover {host}`; otherwise remove it"
            ));
        }
    }
    out
}

fn note_copy(by_mac: &mut BTreeMap<String, String>, mac: &str, rel: &str, out: &mut Vec<String>) {
    if mac.is_empty() {
        return;
    }
    if let Some(original) = by_mac.get(mac) {
        out.push(format!(
            "`{rel}` is a copy of `{original}` (the same data key and MAC): a host file belongs to one host; remove the copy"
        ));
    } else {
        by_mac.insert(mac.to_string(), rel.to_string());
    }
}

/// What the checks read from a host file.
struct Seen {
    recipients: Vec<String>,
    mac: String,
    holds_host_key: bool,
}

impl Seen {
    /// The file read and parsed, or `None` when it is missing or unreadable (reported
    /// elsewhere).
    fn read(fleet: &Fleet, rel: &str) -> Option<Self> {
        let text = std::fs::read_to_string(fleet.root.join(rel)).ok()?;
        let file = EncryptedFile::parse(&text).ok()?;
        Some(Self {
            recipients: file.age_recipients().into_iter().flatten().collect(),
            mac: file.mac().to_string(),
            holds_host_key: file.raw_documents().first().is_some_and(|d| d.get(HOST_KEY_FIELD).is_some()),
        })
    }
}
