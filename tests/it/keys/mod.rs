//! The key lifecycle end to end: `keys list|show|public|export|import|rotate|delete|migrate`,
//! `deploy-keys`, `ssh-config` and `sops rekey`, checked with real sops, age and ssh-keygen.

mod delete;
mod deploy;
mod deploy_check;
mod import_export;
mod list;
mod migrate;
mod rekey;
mod rotate;
mod rotate_aged;

use std::path::Path;
use std::process::Command;

use hostsmith::ssh_keys::Keypair;

pub(crate) use crate::common::fast_sops;
use crate::common::{TestFleet, ok, peer, run};

/// The admin's identity file as text (what SOPS_AGE_KEY takes).
pub(crate) fn admin(f: &TestFleet) -> String {
    std::fs::read_to_string(f.admin_key_file()).expect("admin key")
}

pub(crate) fn admin_recipient(f: &TestFleet) -> String {
    admin(f).lines().find_map(|l| l.strip_prefix("# public key: ")).expect("public key line").to_string()
}

pub(crate) fn record(f: &TestFleet, host: &str) -> serde_json::Value {
    serde_json::from_str(&f.read(&format!("hosts/{host}.json"))).expect("record")
}

/// `sops --decrypt --output-type json FILE` with `identity` only; None when sops refuses.
pub(crate) fn decrypt(sops: &Path, f: &TestFleet, file: &str, identity: &str) -> Option<serde_json::Value> {
    let mut c = Command::new(sops);
    c.args(["--decrypt", "--output-type", "json", file])
        .current_dir(&f.dir)
        .env("SOPS_AGE_KEY", identity)
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", f.tmp.path().join("nobody"));
    let out = run(&mut c);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("json"))
}

/// The age identity sops-nix derives from the host key stored in `sops/<host>.yaml`.
pub(crate) fn host_identity(sops: &Path, f: &TestFleet, host: &str) -> String {
    let doc = decrypt(sops, f, &format!("sops/{host}.yaml"), &admin(f)).expect("admin decrypts the host file");
    let key = doc["ssh_host_ed25519_key"].as_str().expect("host key");
    Keypair::from_openssh(key, None).expect("key").age_identity().expect("identity").to_string()
}

/// Encrypts `plain` (YAML) into `rel` with the real sops and the fleet's rules.
pub(crate) fn sops_encrypt(sops: &Path, f: &TestFleet, rel: &str, plain: &str) {
    let tmp = f.dir.join("plain.yaml");
    std::fs::write(&tmp, plain).expect("write");
    let mut c = Command::new(sops);
    c.args(["--encrypt", "--filename-override", rel, "plain.yaml"]).current_dir(&f.dir);
    f.env(&mut c);
    let text = ok(&run(&mut c));
    std::fs::remove_file(&tmp).expect("rm");
    crate::common::write(&f.dir.join(rel), &text);
}

/// The stored ciphertext of a top-level value (`key: ENC[...]`).
pub(crate) fn ciphertext(f: &TestFleet, rel: &str, key: &str) -> String {
    let prefix = format!("{key}: ENC[");
    f.read(rel).lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{key} in {rel}")).to_string()
}

/// Appends a creation rule for `rel` with the given aliases (`.sops.yaml` ends with the rules).
pub(crate) fn append_rule(f: &TestFleet, rel: &str, aliases: &[&str]) {
    let mut text = f.read(".sops.yaml");
    text.push_str(&format!("  - path_regex: ^{}$\n    key_groups:\n      - age:\n", regex_escape(rel)));
    for a in aliases {
        text.push_str(&format!("          - *{a}\n"));
    }
    std::fs::write(f.dir.join(".sops.yaml"), text).expect("write");
}

fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}

/// `ssh-keygen -q -t TYPE -N PASS -C COMMENT -f PATH` (extra args before -f).
pub(crate) fn ssh_keygen(path: &Path, kind: &str, pass: &str, extra: &[&str]) -> bool {
    let Some(keygen) = peer("ssh-keygen") else { return false };
    ok(&run(Command::new(keygen).args(["-q", "-t", kind, "-N", pass, "-C", "imported"]).args(extra).arg("-f").arg(path)));
    true
}

/// `SHA256:…` of a public key file, as `ssh-keygen -lf` prints it.
pub(crate) fn keygen_fingerprint(pubfile: &Path) -> String {
    let out = ok(&run(Command::new("ssh-keygen").arg("-lf").arg(pubfile)));
    out.split_whitespace().nth(1).expect("fingerprint").to_string()
}
