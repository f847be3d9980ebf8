//! `keys migrate` on a fleet laid out like EmergentMind's nix-secrets.

use std::process::Command;

use hostsmith::ssh_keys::Keypair;

use super::{fast_sops, keygen_fingerprint, record, sops_encrypt, ssh_keygen};
use crate::common::{TestFleet, ok, peer, run, write};

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

#[test]
#[allow(clippy::too_many_lines, reason = "builds a realistic fleet in the layout the test is named for")]
fn migrate_writes_records_for_an_emergentmind_style_fleet_and_changes_no_secret() {
    let Some(sops) = fast_sops() else { return };
    let Some(age_keygen) = peer("age-keygen") else { return };
    let f = TestFleet::new();
    let admin_file = f.admin_key_file();
    std::fs::create_dir_all(admin_file.parent().expect("dir")).expect("mkdir");
    ok(&run(Command::new(&age_keygen).arg("-o").arg(&admin_file)));
    let recipient_of_id = |file: &std::path::Path| ok(&run(Command::new(&age_keygen).arg("-y").arg(file))).trim().to_string();
    let admin = recipient_of_id(&admin_file);
    let user_file = f.tmp.path().join("ta_grief.txt");
    ok(&run(Command::new(&age_keygen).arg("-o").arg(&user_file)));
    let misty = hostsmith::ssh_keys::Keypair::generate("x").expect("key").age_recipient().expect("r");

    // Host keys as ssh-keygen makes them.
    let keys = f.tmp.path().join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    let mut recipient = std::collections::BTreeMap::new();
    for h in ["ghost", "grief", "sorrow", "wraith", "stray"] {
        if !ssh_keygen(&keys.join(h), "ed25519", "", &[]) {
            return;
        }
        let pair = Keypair::from_openssh(&std::fs::read_to_string(keys.join(h)).expect("key"), None).expect("key");
        recipient.insert(h, pair.age_recipient().expect("r"));
    }
    for h in ["grief", "sorrow", "stray"] {
        let to = f.dir.join(format!("pubkeys/{h}/ssh_host_ed25519_key.pub"));
        write(&to, &std::fs::read_to_string(keys.join(format!("{h}.pub"))).expect("pub"));
    }
    let config = format!(
        "# pub keys\nkeys:\n  - &users:\n    - &ta {admin}\n    - &ta_grief {}\n  - &hosts: # nix-config hosts\n    - &ghost {}\n    - &grief {}\n    - &sorrow {}\n    - &wraith {}\n    - &misty {misty}\n\n\
         creation_rules:\n  #path should be relative to location of this file (.sops.yaml)\n\
         \x20 - path_regex: sops/ghost.yaml$\n    key_groups:\n      - age:\n          - *ta\n          - *ghost\n\
         \x20 - path_regex: sops/grief.yaml$\n    key_groups:\n      - age:\n          - *ta\n          - *ta_grief\n          - *grief\n\
         \x20 - path_regex: sops/wraith.yaml$\n    key_groups:\n    - age:\n      - *ta\n      - *wraith\n\
         \x20 - path_regex: sops/shared.yaml$\n    key_groups:\n      - age:\n          - *ta\n          - *ghost\n          - *grief\n          - *sorrow\n          - *wraith\n          - *misty\n",
        recipient_of_id(&user_file),
        recipient["ghost"],
        recipient["grief"],
        recipient["sorrow"],
        recipient["wraith"],
    );
    write(&f.dir.join(".sops.yaml"), &config);
    let private = |h: &str| std::fs::read_to_string(keys.join(h)).expect("key");
    // The host key at the top (as hostsmith and the nix-config justfile write it), under
    // `keys:` (as a later helper script does), or only the user's age key (`keys.age`).
    sops_encrypt(&sops, &f, "sops/ghost.yaml", &format!("ssh_host_ed25519_key: |\n{}", indent(&private("ghost"), "  ")));
    sops_encrypt(&sops, &f, "sops/wraith.yaml", &format!("keys:\n  ssh_host_ed25519_key: |\n{}", indent(&private("wraith"), "    ")));
    let user_key = std::fs::read_to_string(&user_file).expect("id");
    let user_key = user_key.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).expect("id");
    sops_encrypt(&sops, &f, "sops/grief.yaml", &format!("keys:\n  age: {user_key}\n"));
    sops_encrypt(&sops, &f, "sops/shared.yaml", "wifi: hunter2\n");

    let before = f.snapshot();
    let dry = ok(&f.run(&["keys", "migrate", "--pubkeys", "pubkeys", "--dry-run"]));
    assert!(dry.contains("dry run: would write hosts/ghost.json, hosts/grief.json, hosts/sorrow.json, hosts/wraith.json"), "{dry}");
    f.assert_unchanged(&before, "migrate --dry-run");

    let text = ok(&f.run(&["keys", "migrate", "--pubkeys", "pubkeys"]));
    assert!(text.contains("wrote hosts/ghost.json, hosts/grief.json, hosts/sorrow.json, hosts/wraith.json"), "{text}");
    assert!(text.contains(&format!("host `misty` ({misty}): no SSH host key found")), "{text}");
    assert!(text.contains("`pubkeys/stray/ssh_host_ed25519_key.pub`: its key"), "{text}");
    assert!(!text.contains("ta_grief") && !text.contains("`ta`"), "users are not hosts: {text}");
    for (h, origin, source) in [
        ("ghost", "imported", "sops/ghost.yaml (ssh_host_ed25519_key)"),
        ("wraith", "adopted", "sops/wraith.yaml (keys.ssh_host_ed25519_key)"),
        ("grief", "adopted", "pubkeys/grief/ssh_host_ed25519_key.pub"),
        ("sorrow", "adopted", "pubkeys/sorrow/ssh_host_ed25519_key.pub"),
    ] {
        let r = record(&f, h);
        assert_eq!(r["fingerprint"], keygen_fingerprint(&keys.join(format!("{h}.pub"))), "{h}");
        assert_eq!(r["age_recipient"], recipient[h].as_str(), "{h}");
        let public = std::fs::read_to_string(keys.join(format!("{h}.pub"))).expect("pub");
        assert_eq!(r["ssh_host_ed25519_public"], public.trim(), "{h}");
        assert_eq!(r["origin"], origin, "{h}");
        assert_eq!(r["migrated_from"], source, "{h}");
        assert_eq!(r["schema"], 1);
    }
    // Only records were written: every other byte and mtime is as before.
    let after = f.snapshot();
    let changed: Vec<_> = after.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    assert!(changed.iter().all(|k| k.starts_with("hosts")), "{changed:?}");
    assert!(before.keys().all(|k| after.get(k) == before.get(k)), "a file changed");
    // A second run finds everything recorded.
    let text = ok(&f.run(&["keys", "migrate", "--pubkeys", "pubkeys"]));
    assert!(text.contains("known      ghost") && text.contains("nothing to write"), "{text}");
    // The migrated fleet works with the rest of hostsmith: the imported key exports.
    let out = f.tmp.path().join("ghost.key");
    ok(&f.run(&["keys", "export", "ghost", "--output", out.to_str().expect("utf8")]));
}
