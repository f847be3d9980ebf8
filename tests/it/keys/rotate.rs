//! `keys rotate HOST` (host key) and `keys rotate HOST --deploy REPO`.

use super::{admin, append_rule, ciphertext, decrypt, fast_sops, host_identity, record, sops_encrypt};
use crate::common::{TestFleet, ok, stderr};

#[test]
fn rotate_rekeys_everything_the_host_reads_for_the_new_key_only() {
    let Some(sops) = fast_sops() else { return };
    let f = TestFleet::new();
    f.init_with(&["web01", "db01"]);
    sops_encrypt(&sops, &f, "sops/shared.yaml", "wifi: hunter2\n");
    // A file outside `sops.shared` whose hand-written rule names the host.
    append_rule(&f, "sops/team.yaml", &["admin", "web01"]);
    sops_encrypt(&sops, &f, "sops/team.yaml", "token: abc\n");
    let admin = admin(&f);
    let old_id = host_identity(&sops, &f, "web01");
    let db_id = host_identity(&sops, &f, "db01");
    let old = record(&f, "web01");
    let before_text = (ciphertext(&f, "sops/shared.yaml", "wifi"), ciphertext(&f, "sops/team.yaml", "token"));
    let config_before = f.read(".sops.yaml");

    let before = f.snapshot();
    let dry = ok(&f.run(&["keys", "rotate", "web01", "--dry-run"]));
    assert!(dry.contains("rotated    web01"), "{dry}");
    assert!(dry.contains("would rekey sops/team.yaml"), "{dry}");
    f.assert_unchanged(&before, "rotate --dry-run");

    let out = f.run(&["keys", "rotate", "web01"]);
    let text = ok(&out);
    assert!(text.contains("rotated    web01"), "{text}");
    assert!(text.contains("rekeyed     sops/team.yaml"), "{text}");
    assert!(text.contains("next: give it the new key: `hostsmith extra-files web01 --out DIR`"), "{text}");
    let new_id = host_identity(&sops, &f, "web01");
    assert_ne!(new_id, old_id);
    for file in ["sops/web01.yaml", "sops/shared.yaml", "sops/team.yaml"] {
        assert!(decrypt(&sops, &f, file, &new_id).is_some(), "the new key opens {file}");
        assert!(decrypt(&sops, &f, file, &old_id).is_none(), "the old key no longer opens {file}");
        assert!(decrypt(&sops, &f, file, &admin).is_some(), "the admin still opens {file}");
    }
    assert_eq!(decrypt(&sops, &f, "sops/shared.yaml", &new_id).expect("shared")["wifi"], "hunter2");
    assert_eq!(decrypt(&sops, &f, "sops/team.yaml", &new_id).expect("team")["token"], "abc");
    assert!(decrypt(&sops, &f, "sops/shared.yaml", &db_id).is_some(), "other hosts keep their access");
    assert!(decrypt(&sops, &f, "sops/db01.yaml", &admin).is_some());
    // Fresh data keys: the same plaintext is stored under new ciphertexts.
    assert_ne!(ciphertext(&f, "sops/shared.yaml", "wifi"), before_text.0);
    assert_ne!(ciphertext(&f, "sops/team.yaml", "token"), before_text.1);
    // The record keeps the old key in its history; the anchor value is replaced in place.
    let new = record(&f, "web01");
    assert_ne!(new["fingerprint"], old["fingerprint"]);
    assert_eq!(new["history"][0]["fingerprint"], old["fingerprint"]);
    assert_eq!(new["history"][0]["age_recipient"], old["age_recipient"]);
    assert!(new["rotated_at"].is_string());
    assert_eq!(new["deploy_keys"], old["deploy_keys"], "deploy keys are kept");
    let old_r = old["age_recipient"].as_str().expect("r");
    let new_r = new["age_recipient"].as_str().expect("r");
    assert_eq!(f.read(".sops.yaml"), config_before.replace(old_r, new_r));
    // Nothing is left for `keys list` to complain about.
    let json: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "keys", "list"]))).expect("json");
    assert_eq!(json["problems"], serde_json::json!([]));
    let out = f.run(&["keys", "rotate", "nohost"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_rotated_deploy_key_waits_next_to_the_old_one_until_it_is_activated() {
    let Some(sops) = fast_sops() else { return };
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let admin = admin(&f);
    let old = record(&f, "web01");
    let before = f.snapshot();
    ok(&f.run(&["keys", "rotate", "web01", "--deploy", "nix-config", "--dry-run"]));
    f.assert_unchanged(&before, "rotate --deploy --dry-run");
    let out = f.run(&["keys", "rotate", "web01", "--deploy", "nix-config", "--deploy", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    f.assert_unchanged(&before, "an unknown repository");

    let text = ok(&f.run(&["keys", "rotate", "web01", "--deploy", "nix-config"]));
    assert!(text.contains("made a new `nix-config` deploy key for web01"), "{text}");
    assert!(text.contains("web01 keeps the old key until then"), "{text}");
    let rec = record(&f, "web01");
    assert_eq!(rec["deploy_keys"], old["deploy_keys"], "the old key stays active");
    assert_eq!(rec["fingerprint"], old["fingerprint"], "the host key is untouched");
    let new_public = rec["deploy_keys_pending"]["nix-config"].as_str().expect("pending").to_string();
    let doc = decrypt(&sops, &f, "sops/web01.yaml", &admin).expect("admin");
    let public_of =
        |k: &serde_json::Value| hostsmith::ssh_keys::Keypair::from_openssh(k.as_str().expect("key"), None).expect("key").public_line();
    assert_eq!(public_of(&doc["deploy-keys"]["nix-config"]), old["deploy_keys"]["nix-config"].as_str().expect("old"));
    assert_eq!(public_of(&doc["deploy-keys-pending"]["nix-config"]), new_public);
    let list = ok(&f.run(&["keys", "list"]));
    assert!(list.contains("nix-config*,nix-secrets"), "{list}");

    let before = f.snapshot();
    ok(&f.run(&["deploy-keys", "web01", "--activate", "nix-config", "--dry-run"]));
    f.assert_unchanged(&before, "activate --dry-run");
    let text = ok(&f.run(&["deploy-keys", "web01", "--activate", "nix-config"]));
    assert!(text.contains("remove the old one"), "{text}");
    let rec = record(&f, "web01");
    assert_eq!(rec["deploy_keys"]["nix-config"], new_public.as_str());
    assert!(rec.get("deploy_keys_pending").is_none());
    assert_eq!(rec["deploy_keys_retired"][0]["public"], old["deploy_keys"]["nix-config"]);
    let doc = decrypt(&sops, &f, "sops/web01.yaml", &admin).expect("admin");
    assert_eq!(public_of(&doc["deploy-keys"]["nix-config"]), new_public);
    assert!(doc.get("deploy-keys-pending").is_none());
    let out = f.run(&["deploy-keys", "web01", "--activate", "nix-config"]);
    assert_eq!(out.status.code(), Some(2), "nothing waits any more: {}", stderr(&out));
}
