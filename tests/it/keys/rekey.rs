//! `sops rekey`: the same outcome as `sops updatekeys -y` file by file, in parallel.

use std::process::Command;
use std::time::Instant;

use hostsmith::sops::file::{EncryptedFile, Map, Value, encrypt_new};

use super::{decrypt, fast_sops};
use crate::common::{TestFleet, ok, run, stderr, stdout, write};

fn recipients(path: &std::path::Path) -> Vec<String> {
    let file = EncryptedFile::parse(&std::fs::read_to_string(path).expect("read")).expect("sops file");
    let mut r: Vec<String> = file.age_recipients().into_iter().flatten().collect();
    r.sort();
    r
}

/// Copies a fleet directory (files only, two levels deep is all these fleets have).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("ls") {
        let p = entry.expect("entry").path();
        let target = to.join(p.file_name().expect("name"));
        if p.is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&p, &target);
        } else {
            std::fs::copy(&p, &target).expect("copy");
        }
    }
}

#[test]
fn sops_rekey_in_parallel_equals_sops_updatekeys_file_by_file() {
    let Some(sops) = fast_sops() else { return };
    let started = Instant::now();
    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    let admin_text = std::fs::read_to_string(f.admin_key_file()).expect("admin");
    let admin = admin_text.lines().find_map(|l| l.strip_prefix("# public key: ")).expect("recipient").to_string();
    let ops_id = age::x25519::Identity::generate();
    let ops = ops_id.to_public().to_string();
    let ops_secret = {
        use age::secrecy::ExposeSecret;
        ops_id.to_string().expose_secret().to_string()
    };
    let rules = "creation_rules:\n  - path_regex: ^secrets/.*\\.yaml$\n    key_groups:\n      - age:\n          - *admin\n";
    write(&f.dir.join(".sops.yaml"), &format!("keys:\n  - &admin {admin}\n{rules}"));
    for i in 0..100 {
        let mut doc = Map::new();
        doc.set_path(&["n"], Value::Int(i)).expect("set");
        doc.set_path(&["secret"], Value::Str(format!("value-{i}"))).expect("set");
        let text = encrypt_new(&doc, &[vec![admin.clone()]], &hostsmith::sops::file::EncryptionOptions::default()).expect("encrypt");
        write(&f.dir.join(format!("secrets/s{i:03}.yaml")), &text);
    }
    // An admin joins: a new anchor, and the rule names it.
    write(&f.dir.join(".sops.yaml"), &format!("keys:\n  - &admin {admin}\n  - &ops {ops}\n{rules}          - *ops\n"));
    let twin = f.tmp.path().join("twin");
    std::fs::create_dir_all(&twin).expect("mkdir");
    copy_tree(&f.dir, &twin);

    let before = f.snapshot();
    let dry = ok(&f.run(&["sops", "rekey", "--dry-run", "-j", "2"]));
    assert!(dry.ends_with("would re-key 100, unchanged 0, failed 0 (100 file(s), 2 at a time)\n"), "{dry}");
    f.assert_unchanged(&before, "rekey --dry-run");

    // A broken file is reported; the other hundred are re-keyed anyway.
    write(&f.dir.join("secrets/broken.yaml"), "a: ENC[AES256_GCM,data:xx]\nsops:\n    mac: nope\n");
    let out = f.run(&["sops", "rekey", "-j", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).ends_with("re-keyed 100, unchanged 0, failed 1 (101 file(s), 2 at a time)\n"), "{}", stdout(&out));
    assert!(stderr(&out).contains("failed      secrets/broken.yaml: "), "{}", stderr(&out));
    std::fs::remove_file(f.dir.join("secrets/broken.yaml")).expect("rm");

    for i in 0..100 {
        let rel = format!("secrets/s{i:03}.yaml");
        let mut c = Command::new(&sops);
        c.args(["updatekeys", "-y", &rel]).current_dir(&twin);
        f.env(&mut c);
        ok(&run(&mut c));
    }
    let mut want = vec![admin.clone(), ops.clone()];
    want.sort();
    for i in 0..100 {
        let rel = format!("secrets/s{i:03}.yaml");
        assert_eq!(recipients(&f.dir.join(&rel)), want, "{rel}");
        assert_eq!(recipients(&twin.join(&rel)), recipients(&f.dir.join(&rel)), "{rel}");
        let doc = decrypt(&sops, &f, &rel, &ops_secret).unwrap_or_else(|| panic!("the new admin opens {rel}"));
        assert_eq!(doc["secret"], format!("value-{i}"));
        assert_eq!(doc["n"], i);
    }
    // A second run has nothing to do.
    let before = f.snapshot();
    let text = ok(&f.run(&["sops", "rekey"]));
    assert!(text.ends_with("re-keyed 0, unchanged 100, failed 0 (100 file(s), 2 at a time)\n"), "{text}");
    f.assert_unchanged(&before, "a second rekey");
    assert!(started.elapsed().as_secs() < 30, "took {:?}", started.elapsed());
}

#[test]
fn rekey_checks_its_arguments_and_rekeys_shamir_files_natively() {
    let Some(sops) = fast_sops() else { return };
    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    let admin_text = std::fs::read_to_string(f.admin_key_file()).expect("admin");
    let admin = admin_text.lines().find_map(|l| l.strip_prefix("# public key: ")).expect("recipient").to_string();
    let other = age::x25519::Identity::generate();
    let late = age::x25519::Identity::generate();
    let rule = |extra: &str| {
        format!(
            "creation_rules:\n  - path_regex: ^split\\.yaml$\n    shamir_threshold: 2\n    key_groups:\n      - age:\n          - {admin}\n      - age:\n          - {}\n{extra}",
            other.to_public()
        )
    };
    write(&f.dir.join(".sops.yaml"), &rule(""));
    super::sops_encrypt(&sops, &f, "split.yaml", "k: v\n");
    write(&f.dir.join(".sops.yaml"), &rule(&format!("          - {}\n", late.to_public())));
    let outside = f.tmp.path().join("outside.yaml");
    write(&outside, "a: b\n");
    let outside = outside.to_str().expect("utf8").to_string();
    let before = f.snapshot();
    for (args, why) in [
        (vec!["sops", "rekey", "missing.yaml"], "cannot read `missing.yaml`"),
        (vec!["sops", "rekey", outside.as_str()], "outside the fleet"),
        (vec!["sops", "rekey", "-j", "0"], "-j must be at least 1"),
    ] {
        let out = f.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        f.assert_unchanged(&before, "refused arguments");
    }
    // Two key groups: re-keyed natively (no sops on PATH), with a share from each group.
    let no_sops = f.tmp.path().join("empty-bin");
    std::fs::create_dir_all(&no_sops).expect("mkdir");
    let path = no_sops.display().to_string();
    let other_secret = {
        use age::secrecy::ExposeSecret;
        other.to_string().expose_secret().to_string()
    };
    let out = crate::common::run(f.cmd(&["sops", "rekey", "split.yaml"]).env("PATH", path).env("SOPS_AGE_KEY", &other_secret));
    let text = ok(&out);
    assert!(text.contains(&format!("rekeyed     split.yaml (+{})\n", late.to_public())), "{text}");
    let late_secret = {
        use age::secrecy::ExposeSecret;
        late.to_string().expose_secret().to_string()
    };
    // Threshold 2: a share from each group; the second group's now comes from the new key.
    let both = format!("{late_secret}\n{admin_text}");
    assert_eq!(decrypt(&sops, &f, "split.yaml", &both).expect("the new recipient holds a share")["k"], "v");
    assert!(decrypt(&sops, &f, "split.yaml", &format!("{other_secret}\n{admin_text}")).is_some(), "the old one too");
}
