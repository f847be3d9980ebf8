//! An age plugin as the admin: hostsmith and real sops 3.11 read each other's files through
//! the same plugin binary, and a missing plugin stops a run before anything is written.

use super::{hostsmith, path_without, plugin_key, sops_decrypt, sops_encrypt, stanza_types};
use crate::common::{TestFleet, fast_sops, ok, peer, stderr};

#[test]
fn a_plugin_admin_round_trips_with_real_sops_in_both_directions() {
    let (Some(sops), Some(plugin)) = (fast_sops(), peer("age-plugin-hstest")) else { return };
    let f = TestFleet::new();
    let admin = plugin_key(&plugin, &["--generate"], f.tmp.path(), "plugin-id.txt");
    let out = ok(&f.run(&["init", "--admin-recipient", &admin.recipient]));
    assert!(out.contains(&format!("admin recipient: {}", admin.recipient)), "{out}");
    assert!(!f.admin_key_file().exists(), "no X25519 identity is made for a plugin admin");
    let id = [("SOPS_AGE_KEY_FILE", admin.file.as_path())];

    // hostsmith writes (wrapping needs the plugin, no identity) → sops opens with the plugin.
    ok(&f.run(&["vm-fresh", "web01"]));
    let host_file = f.read("sops/web01.yaml");
    assert_eq!(stanza_types(&host_file, &admin.recipient), ["hstest"], "the plugin's own stanza");
    let opened = sops_decrypt(&sops, &f, "sops/web01.yaml", &id);
    assert!(ok(&opened).contains("ssh_host_ed25519_key: |"), "sops opens hostsmith's file with the plugin");

    // sops writes → hostsmith re-keys it (a new host joins the shared file) → sops opens it.
    std::fs::write(f.dir.join("sops/shared.yaml"), "wifi: hunter2\n").expect("write");
    sops_encrypt(&sops, &f, "sops/shared.yaml", &id);
    assert_eq!(stanza_types(&f.read("sops/shared.yaml"), &admin.recipient), ["hstest"], "sops writes the same stanza type");
    ok(&hostsmith(&f, &["vm-fresh", "web02"], &id));
    let shared = f.read("sops/shared.yaml");
    let web02: serde_json::Value = serde_json::from_str(&f.read("hosts/web02.json")).expect("record");
    assert!(shared.contains(&format!("recipient: {}", web02["age_recipient"].as_str().expect("r"))), "web02 joined:\n{shared}");
    assert_eq!(ok(&sops_decrypt(&sops, &f, "sops/shared.yaml", &id)), "wifi: hunter2\n");

    // Without the plugin identity, sops cannot open it either: the stanza is the plugin's.
    let x25519 = f.tmp.path().join("other.txt");
    std::fs::write(&x25519, crate::common::age_identity_text()).expect("write");
    assert!(!sops_decrypt(&sops, &f, "sops/shared.yaml", &[("SOPS_AGE_KEY_FILE", x25519.as_path())]).status.success());
}

#[test]
fn a_missing_plugin_is_named_with_the_fix_before_anything_is_written() {
    let Some(plugin) = peer("age-plugin-hstest") else { return };
    let f = TestFleet::new();
    let admin = plugin_key(&plugin, &["--generate"], f.tmp.path(), "plugin-id.txt");
    ok(&f.run(&["init", "--admin-recipient", &admin.recipient]));
    let before = f.snapshot();
    let out = f.cmd(&["vm-fresh", "web01"]).env("PATH", path_without("age-plugin-hstest")).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("needs the age plugin `age-plugin-hstest`, which is not on PATH: install it"), "{err}");
    assert!(err.contains(&admin.recipient), "names the recipient: {err}");
    f.assert_unchanged(&before, "a run that cannot wrap for its admin");
}
