//! `keys import` (new and known hosts, passphrases, refused key types) and `keys export`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use hostsmith::ssh_keys::Keypair;

use super::{decrypt, fast_sops, keygen_fingerprint, record, ssh_keygen};
use crate::common::{TestFleet, ok, peer, run, stderr};

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("utf8")
}

#[test]
fn import_of_a_passphrase_protected_key_made_by_ssh_keygen() {
    let Some(sops) = fast_sops() else { return };
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let key = f.tmp.path().join("imp01");
    if !ssh_keygen(&key, "ed25519", "correct horse", &[]) {
        return;
    }
    let pass = f.tmp.path().join("pass");
    std::fs::write(&pass, "correct horse\n").expect("write");
    let wrong = f.tmp.path().join("wrong");
    std::fs::write(&wrong, "battery staple\n").expect("write");
    let before = f.snapshot();
    for (args, why) in [
        (vec!["keys", "import", "imp01", "--key-file", path_str(&key)], "passphrase"),
        (vec!["keys", "import", "imp01", "--key-file", path_str(&key), "--passphrase-file", path_str(&wrong)], "passphrase does not"),
    ] {
        let out = f.run(&args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
        assert!(!stderr(&out).contains("correct horse") && !stderr(&out).contains("battery"), "{}", stderr(&out));
        f.assert_unchanged(&before, "a refused import");
    }
    let dry = ok(&f.run(&["keys", "import", "imp01", "--key-file", path_str(&key), "--passphrase-file", path_str(&pass), "--dry-run"]));
    assert!(dry.contains("dry run: would write sops/imp01.yaml"), "{dry}");
    f.assert_unchanged(&before, "import --dry-run");

    let text = ok(&f.run(&["keys", "import", "imp01", "--key-file", path_str(&key), "--passphrase-file", path_str(&pass)]));
    assert!(text.contains("imported   imp01"), "{text}");
    let rec = record(&f, "imp01");
    assert_eq!(rec["fingerprint"], keygen_fingerprint(&key.with_extension("pub")));
    assert_eq!(rec["origin"], "imported");
    let pair = Keypair::from_openssh(&std::fs::read_to_string(&key).expect("key"), Some(b"correct horse")).expect("key");
    assert_eq!(rec["age_recipient"], pair.age_recipient().expect("r"));
    // The host decrypts its file with the identity derived from the imported key; it holds
    // the key unencrypted (sops-nix has no passphrase to give) and new deploy keys.
    let doc = decrypt(&sops, &f, "sops/imp01.yaml", &pair.age_identity().expect("id")).expect("host decrypts");
    let stored = Keypair::from_openssh(doc["ssh_host_ed25519_key"].as_str().expect("key"), None).expect("unencrypted key");
    assert_eq!(stored.fingerprint(), pair.fingerprint());
    assert!(doc["deploy-keys"]["nix-config"].is_string());
    assert!(f.read(".sops.yaml").contains(&format!("&imp01 {}", pair.age_recipient().expect("r"))));

    // A key belongs to one host: imp01's key is refused for web01.
    let out = f.run(&["keys", "import", "web01", "--key-file", path_str(&key), "--passphrase-file", path_str(&pass)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is already host `imp01`'s"), "{}", stderr(&out));

    // Importing onto a known host is a rotation to that key; the old key goes to the history.
    let key = f.tmp.path().join("web01-new");
    assert!(ssh_keygen(&key, "ed25519", "correct horse", &[]));
    let pair = Keypair::from_openssh(&std::fs::read_to_string(&key).expect("key"), Some(b"correct horse")).expect("parse");
    let old = record(&f, "web01");
    let text = ok(&f.run(&["keys", "import", "web01", "--key-file", path_str(&key), "--passphrase-file", path_str(&pass)]));
    assert!(text.contains("rotated    web01"), "{text}");
    let new = record(&f, "web01");
    assert_eq!(new["fingerprint"], pair.fingerprint());
    assert_eq!(new["history"][0]["fingerprint"], old["fingerprint"]);
    assert!(new["rotated_at"].is_string());
    // The same key again changes nothing.
    let before = f.snapshot();
    let text = ok(&f.run(&["keys", "import", "web01", "--key-file", path_str(&key), "--passphrase-file", path_str(&pass)]));
    assert!(text.starts_with("unchanged  web01"), "{text}");
    f.assert_unchanged(&before, "a second import");
}

#[test]
fn import_of_rsa_ecdsa_and_pem_keys_fails_with_exit_2_and_changes_nothing() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let dir = f.tmp.path();
    let cases: [(&str, &str, &[&str], &str); 4] = [
        ("rsa", "rsa", &["-b", "2048"], "ssh-rsa and not ed25519"),
        ("rsa-pass", "rsa", &["-b", "2048"], "ssh-rsa and not ed25519"),
        ("ecdsa", "ecdsa", &[], "not ed25519"),
        ("pem", "rsa", &["-b", "2048", "-m", "PEM"], "PEM format"),
    ];
    for (name, kind, extra, _) in &cases {
        let pass = if *name == "rsa-pass" { "secret" } else { "" };
        if !ssh_keygen(&dir.join(name), kind, pass, extra) {
            return;
        }
    }
    let before = f.snapshot();
    for (name, _, _, why) in cases {
        for host in ["new01", "web01"] {
            let out = f.run(&["keys", "import", host, "--key-file", path_str(&dir.join(name))]);
            assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
            assert!(stderr(&out).contains(why), "{name}: {}", stderr(&out));
            assert!(stderr(&out).contains("ssh-keygen -t ed25519"), "{name}: says what to do: {}", stderr(&out));
            f.assert_unchanged(&before, name);
        }
    }
    // A public key is not a private one.
    let out = f.run(&["keys", "import", "new01", "--key-file", path_str(&dir.join("ecdsa.pub"))]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("hostsmith adopt"), "{}", stderr(&out));
    f.assert_unchanged(&before, "a public key");
}

#[test]
fn export_makes_a_0600_file_ssh_keygen_accepts_and_never_overwrites_by_accident() {
    let Some(keygen) = peer("ssh-keygen") else { return };
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let rec = record(&f, "web01");
    let out_dir = f.tmp.path().join("backup/keys");
    let file = out_dir.join("web01");
    let dry = ok(&f.run(&["keys", "export", "web01", "--output", path_str(&file), "--dry-run"]));
    assert!(dry.starts_with("dry run: would export the host key of web01"), "{dry}");
    assert!(!out_dir.exists(), "a dry run writes nothing");
    let out = f.run(&["keys", "export", "web01", "--output", path_str(&file)]);
    let text = ok(&out);
    assert!(text.contains(&format!("exported the host key of web01 ({})", rec["fingerprint"].as_str().expect("fp"))), "{text}");
    assert!(stderr(&out).contains("grants"), "warns that the file grants access: {}", stderr(&out));
    assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&out_dir).expect("meta").permissions().mode() & 0o777, 0o700);
    let public = ok(&run(Command::new(&keygen).arg("-y").arg("-f").arg(&file)));
    let key_of = |line: &str| line.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(key_of(&public), key_of(rec["ssh_host_ed25519_public"].as_str().expect("pub")));

    // No overwrite without --force; nothing is touched.
    std::fs::write(&file, "precious").expect("write");
    let out = f.run(&["keys", "export", "web01", "--output", path_str(&file)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "precious");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    ok(&f.run(&["keys", "export", "web01", "--output", path_str(&file), "--force"]));
    assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
    assert_eq!(key_of(&ok(&run(Command::new(&keygen).arg("-y").arg("-f").arg(&file)))), key_of(&public));

    // A deploy key exports the same way and matches its record entry.
    let deploy = f.tmp.path().join("deploy");
    ok(&f.run(&["keys", "export", "web01", "--deploy", "nix-secrets", "--output", path_str(&deploy)]));
    let public = ok(&run(Command::new(&keygen).arg("-y").arg("-f").arg(&deploy)));
    assert_eq!(key_of(&public), key_of(rec["deploy_keys"]["nix-secrets"].as_str().expect("deploy")));
    // An adopted host has no private key to export.
    let machine = Keypair::generate("root@old").expect("key");
    std::fs::write(f.tmp.path().join("old.pub"), machine.public_line()).expect("write");
    ok(&f.run(&["adopt", "old01", "--pubkey", path_str(&f.tmp.path().join("old.pub"))]));
    let out = f.run(&["keys", "export", "old01", "--output", path_str(&f.tmp.path().join("old"))]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!f.tmp.path().join("old").exists());
}
