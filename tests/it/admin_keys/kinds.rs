//! Every kind of admin key shown and judged for what it is: `keys list` names each admin's
//! kind and what this machine lacks to encrypt for it, `sops check` takes every kind sops
//! takes, and an SSH key's comment is not part of who it is.

use super::{anchor_value, plugin_key, ssh_key};
use crate::common::{TestFleet, ok, peer};

const PQ: &str = include_str!("../../fixtures/age1pq-recipient.txt");

/// Adds `&name value` anchors after `&admin` and makes them all admins in hostsmith.toml.
fn add_admins(f: &TestFleet, anchors: &[(&str, &str)]) {
    let config = f.read(".sops.yaml");
    let line = config.lines().find(|l| l.starts_with("  - &admin ")).expect("admin").to_string();
    let extra: String = anchors.iter().map(|(n, v)| format!("\n  - &{n} {v}")).collect();
    std::fs::write(f.dir.join(".sops.yaml"), config.replace(&line, &format!("{line}{extra}"))).expect("write");
    let names: Vec<String> = std::iter::once("admin").chain(anchors.iter().map(|(n, _)| *n)).map(|n| format!("{n:?}")).collect();
    let toml = f.read("hostsmith.toml").replace("admins = [\"admin\"]", &format!("admins = [{}]", names.join(", ")));
    std::fs::write(f.dir.join("hostsmith.toml"), toml).expect("write");
}

#[test]
fn keys_list_and_sops_check_know_every_kind_of_admin() {
    let (Some(plugin), Some(keygen)) = (peer("age-plugin-hstest"), peer("ssh-keygen")) else { return };
    let f = TestFleet::new();
    f.init_with(&["web09"]);
    let yk = plugin_key(&plugin, &["--generate"], f.tmp.path(), "plugin-id.txt");
    let key = f.tmp.path().join("laptop");
    let laptop = ssh_key(&keygen, &["-t", "ed25519"], &key);
    add_admins(&f, &[("yk", &yk.recipient), ("laptop", &laptop), ("pq", PQ.trim())]);
    // Every kind is a valid recipient; what is left is that web09's rule predates the new admins.
    let problems = |f: &TestFleet| -> Vec<String> {
        let out = f.run(&["--json", "sops", "check"]);
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("json: {}", String::from_utf8_lossy(&out.stdout)));
        json["problems"].as_array().expect("problems").iter().map(|p| p.as_str().expect("text").to_string()).collect()
    };
    let found = problems(&f);
    assert!(found.len() == 3 && found.iter().all(|p| p.contains("is missing from the rule for `sops/web09.yaml`")), "{found:?}");

    let list = ok(&f.run(&["keys", "list"]));
    let admin = anchor_value(&f, "admin");
    let section = list.split("admins:\n").nth(1).expect("an admins section");
    let lines: Vec<&str> = section.lines().take_while(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], format!("  admin   x25519         {admin}"));
    assert_eq!(lines[1], format!("  yk      plugin:hstest  {}", yk.recipient));
    assert_eq!(lines[2], format!("  laptop  ssh-ed25519    {laptop}"));
    assert!(
        lines[3].starts_with("  pq      pq             age1pq1044e3h")
            && lines[3].ends_with("(needs sops ≥ 3.12 or age-plugin-pq on PATH)"),
        "{}",
        lines[3]
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "keys", "list"]))).expect("json");
    let kinds: Vec<&str> = json["admins"].as_array().expect("admins").iter().map(|a| a["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["x25519", "plugin:hstest", "ssh-ed25519", "pq"]);
    assert_eq!(json["admins"][3]["recipient"], PQ.trim(), "JSON holds the whole recipient");

    // A host given a plugin recipient would be locked out of its own file at boot.
    let web09 = anchor_value(&f, "web09");
    let other = plugin_key(&plugin, &["--generate"], f.tmp.path(), "other-id.txt");
    std::fs::write(
        f.dir.join(".sops.yaml"),
        f.read(".sops.yaml").replace(&format!("&web09 {web09}"), &format!("&web09 {}", other.recipient)),
    )
    .expect("write");
    let check = f.run(&["sops", "check"]);
    let text = String::from_utf8_lossy(&check.stdout).into_owned() + &String::from_utf8_lossy(&check.stderr);
    assert!(
        !check.status.success()
            && text.contains(
                "host `web09` has an age plugin `hstest` (age-plugin-hstest) recipient; a host's recipient must be the X25519 key"
            ),
        "{text}"
    );
}

#[test]
fn an_ssh_admins_comment_is_not_part_of_the_key() {
    let Some(keygen) = peer("ssh-keygen") else { return };
    let f = TestFleet::new();
    f.init_with(&[]);
    let key = f.tmp.path().join("laptop");
    let laptop = ssh_key(&keygen, &["-t", "ed25519"], &key);
    add_admins(&f, &[("laptop", &laptop)]);
    ok(&f.run(&["vm-fresh", "web01"]));
    assert!(f.read("sops/web01.yaml").contains(&format!("recipient: {laptop}")), "sops keeps the comment in the file");
    // The comment changes in .sops.yaml: the same key, so nothing to re-key, nothing to report.
    let renamed = laptop.replace("admin@laptop", "admin@new-laptop");
    std::fs::write(f.dir.join(".sops.yaml"), f.read(".sops.yaml").replace(&laptop, &renamed)).expect("write");
    let json: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "keys", "list"]))).expect("json");
    assert_eq!(json["problems"], serde_json::json!([]), "{json}");
    let before = f.snapshot();
    let out = ok(&f.run(&["sops", "rekey"]));
    assert!(out.contains("re-keyed 0, unchanged 1, failed 0"), "{out}");
    f.assert_unchanged(&before, "a comment change");
    // The SSH key alone (no X25519 identity) opens the file and re-keys it.
    std::fs::remove_file(f.admin_key_file()).expect("rm");
    let out = f.cmd(&["sops", "rekey", "--rotate-data-key"]).env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", &key).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
