//! Checking a record read from the fleet before anything uses it.
//!
//! A record is untrusted input: it comes from a repository others can change. Its fields end
//! up in `known_hosts` lines, `ssh_config` blocks, file paths, the argv of ssh and on the
//! terminal, and `sync`/`connect` pin its public key. So a record is accepted only when every
//! field is what hostsmith itself would have written: the name is the file's stem and a host
//! name, every key parses as a single printable `ssh-ed25519` line, the fingerprint and the age
//! recipient are the ones derived from the key, and names, addresses and times are well formed.
//! A record that fails is refused as a whole; nothing is repaired silently.

use std::str::FromStr;

use super::HostRecord;
use crate::address::Address;
use crate::host_name::{HostName, printable};
use crate::ssh_keys;

/// Why `record`, read from `<stem>.json`, is not a record hostsmith wrote; `None` when it is.
#[must_use]
pub(crate) fn problem(record: &HostRecord, stem: &str) -> Option<String> {
    check(record, stem).err()
}

fn check(r: &HostRecord, stem: &str) -> Result<(), String> {
    if r.schema != super::SCHEMA {
        return Err(format!("schema {} is not one this hostsmith reads (it reads {}); upgrade hostsmith", r.schema, super::SCHEMA));
    }
    if r.name != stem {
        return Err(format!("field `name` is `{}`, but the file is `{stem}.json`", printable(&r.name)));
    }
    HostName::parse(&r.name).map_err(|e| format!("field `name`: {e}"))?;
    let key = public_key("ssh_host_ed25519_public", &r.ssh_host_ed25519_public)?;
    let fingerprint = ssh_keys::fingerprint(&key);
    if r.fingerprint != fingerprint {
        return Err(format!("field `fingerprint` is `{}`, but the recorded key's fingerprint is {fingerprint}", printable(&r.fingerprint)));
    }
    let recipient = ssh_keys::recipient_of(&key).map_err(|e| format!("field `ssh_host_ed25519_public`: {e}"))?;
    if r.age_recipient != recipient {
        return Err(format!("field `age_recipient` is `{}`, but the recorded key's recipient is {recipient}", printable(&r.age_recipient)));
    }
    for (repo, line) in &r.deploy_keys {
        repo_name("deploy_keys", repo)?;
        public_key(&format!("deploy_keys.{repo}"), line)?;
    }
    timestamp("created_at", &r.created_at)?;
    if let Some(t) = &r.rotated_at {
        timestamp("rotated_at", t)?;
    }
    for (i, old) in r.history.iter().enumerate() {
        fingerprint_form(&format!("history[{i}].fingerprint"), &old.fingerprint)?;
        age::x25519::Recipient::from_str(&old.age_recipient)
            .map_err(|_| format!("field `history[{i}].age_recipient` is not an age recipient: `{}`", printable(&old.age_recipient)))?;
        timestamp(&format!("history[{i}].retired_at"), &old.retired_at)?;
    }
    for (i, a) in r.addresses.iter().enumerate() {
        if a.chars().any(char::is_control) || Address::parse(a).is_err() {
            return Err(format!("field `addresses[{i}]` is not an address (HOST, HOST:PORT or [IPv6]:PORT): `{}`", printable(a)));
        }
    }
    if let Some(file) = &r.sops_file
        && let Some(problem) = crate::host_template::file_problem(file)
    {
        return Err(format!("field `sops_file` `{}` {problem}", printable(file)));
    }
    if let Some(node) = &r.proxmox_node {
        HostName::parse(node).map_err(|_| format!("field `proxmox_node` is not a Proxmox node name: `{}`", printable(node)))?;
    }
    // Proxmox's range (`proxmox::VmId`).
    if r.vm_id.is_some_and(|id| !(100..=999_999_999).contains(&id)) {
        return Err("field `vm_id` is not a Proxmox VM id (100 to 999999999)".into());
    }
    deploy_key_lifecycle(r)
}

/// The pending and retired deploy keys `deploy_keys` keeps in the record's open part.
fn deploy_key_lifecycle(r: &HostRecord) -> Result<(), String> {
    if r.extra.contains_key(super::PENDING_RECORD) {
        let pending: std::collections::BTreeMap<String, String> = serde_json::from_value(r.extra[super::PENDING_RECORD].clone())
            .map_err(|_| format!("field `{}` is not a map of repository to key", super::PENDING_RECORD))?;
        for (repo, line) in &pending {
            repo_name(super::PENDING_RECORD, repo)?;
            public_key(&format!("{}.{repo}", super::PENDING_RECORD), line)?;
        }
    }
    if let Some(v) = r.extra.get(super::ACTIVATED_RECORD) {
        #[derive(serde::Deserialize)]
        struct Activated {
            fingerprint: String,
            activated_at: String,
        }
        let activated: std::collections::BTreeMap<String, Activated> = serde_json::from_value(v.clone())
            .map_err(|_| format!("field `{}` is not a map of repository to activation", super::ACTIVATED_RECORD))?;
        for (repo, a) in &activated {
            let field = format!("{}.{repo}", super::ACTIVATED_RECORD);
            repo_name(super::ACTIVATED_RECORD, repo)?;
            fingerprint_form(&format!("{field}.fingerprint"), &a.fingerprint)?;
            timestamp(&format!("{field}.activated_at"), &a.activated_at)?;
        }
    }
    if r.extra.contains_key(super::RETIRED_RECORD) {
        let retired: Vec<super::RetiredDeployKey> = serde_json::from_value(r.extra[super::RETIRED_RECORD].clone())
            .map_err(|_| format!("field `{}` is not a list of retired keys", super::RETIRED_RECORD))?;
        for (i, k) in retired.iter().enumerate() {
            let field = format!("{}[{i}]", super::RETIRED_RECORD);
            repo_name(&field, &k.repo)?;
            let key = public_key(&format!("{field}.public"), &k.public)?;
            if k.fingerprint != ssh_keys::fingerprint(&key) {
                return Err(format!("field `{field}.fingerprint` does not match its key"));
            }
            timestamp(&format!("{field}.retired_at"), &k.retired_at)?;
        }
    }
    Ok(())
}

/// One printable `ssh-ed25519` public key line.
fn public_key(field: &str, line: &str) -> Result<ssh_key::PublicKey, String> {
    if line.chars().any(char::is_control) {
        return Err(format!("field `{field}` holds control characters: `{}`", printable(line)));
    }
    ssh_keys::parse_public(line).map_err(|e| format!("field `{field}`: {e}"))
}

/// A repository name as `host.deploy_keys` accepts it.
fn repo_name(field: &str, name: &str) -> Result<(), String> {
    if crate::config::is_repo_name(name) {
        Ok(())
    } else {
        Err(format!("field `{field}` names `{}`, which is not a repository name", printable(name)))
    }
}

fn timestamp(field: &str, value: &str) -> Result<(), String> {
    jiff::Timestamp::from_str(value)
        .map(drop)
        .map_err(|_| format!("field `{field}` is not an RFC 3339 time like 2026-01-31T12:00:00Z: `{}`", printable(value)))
}

/// `SHA256:` and 43 characters of unpadded base64, as OpenSSH prints fingerprints.
fn fingerprint_form(field: &str, value: &str) -> Result<(), String> {
    let ok = value
        .strip_prefix("SHA256:")
        .is_some_and(|b| b.len() == 43 && b.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'));
    if ok { Ok(()) } else { Err(format!("field `{field}` is not a SHA256 fingerprint: `{}`", printable(value))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh_keys::Keypair;

    fn record() -> HostRecord {
        let k = Keypair::generate("root@web01").expect("key");
        let d = Keypair::generate("web01-nix-config-deploy").expect("key");
        serde_json::from_value(serde_json::json!({
            "schema": 1, "name": "web01", "ssh_host_ed25519_public": k.public_line(), "fingerprint": k.fingerprint(),
            "age_recipient": k.age_recipient().expect("recipient"), "deploy_keys": {"nix-config": d.public_line()},
            "created_at": "2026-01-01T00:00:00Z", "rotated_at": null, "addresses": ["192.0.2.7", "[2001:db8::5]:2222"],
        }))
        .expect("record")
    }

    #[test]
    fn a_record_hostsmith_writes_passes() {
        assert_eq!(problem(&record(), "web01"), None);
    }

    #[test]
    fn each_forged_field_is_named() {
        let other = Keypair::generate("x").expect("key");
        type Forge = Box<dyn Fn(&mut HostRecord)>;
        let cases: Vec<(&str, Forge)> = vec![
            ("but the file is `web01.json`", Box::new(|r| r.name = "web01\n* ssh-ed25519 AAAA\n@cert-authority *".into())),
            ("field `fingerprint`", Box::new(move |r| r.fingerprint = other.fingerprint())),
            ("field `age_recipient`", Box::new(|r| r.age_recipient = "age1qqqq".into())),
            ("control characters", Box::new(|r| r.ssh_host_ed25519_public.push_str(" \u{1b}]0;x\u{7}"))),
            ("not an OpenSSH public key", Box::new(|r| r.ssh_host_ed25519_public = "ssh-ed25519 AAAA!".into())),
            ("not a repository name", Box::new(|r| drop(r.deploy_keys.insert("a\nProxyCommand x".into(), String::new())))),
            ("`addresses[0]`", Box::new(|r| r.addresses[0] = "-oProxyCommand=x".into())),
            ("`created_at`", Box::new(|r| r.created_at = "\u{1b}[2J".into())),
            ("`proxmox_node`", Box::new(|r| r.proxmox_node = Some("../x".into()))),
            ("schema 2", Box::new(|r| r.schema = 2)),
            ("field `sops_file`", Box::new(|r| r.sops_file = Some("../x.yaml".into()))),
            ("field `sops_file`", Box::new(|r| r.sops_file = Some("/etc/x.yaml".into()))),
            ("field `sops_file`", Box::new(|r| r.sops_file = Some("hosts/web01/secrets.json".into()))),
        ];
        for (want, forge) in cases {
            let mut r = record();
            forge(&mut r);
            let got = problem(&r, "web01").unwrap_or_default();
            assert!(got.contains(want), "{want}: {got}");
            assert!(!got.contains('\u{1b}') && !got.contains('\n'), "printable: {got:?}");
        }
    }
}
