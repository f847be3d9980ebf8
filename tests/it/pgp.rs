//! PGP admin keys (through GnuPG) and several key groups (Shamir) in the native engine,
//! against the real sops and gpg: files either writes, the other opens; a re-key keeps what
//! it can; a missing gpg or public key stops the run before anything is written.

use std::path::Path;
use std::process::{Command, Output};

use age::secrecy::ExposeSecret as _;
use hostsmith::gnupg::GnuPg;
use hostsmith::sops::file::{EncryptedFile, EncryptionOptions, KeyGroupSpec, KeyGroups, Map, Value, encrypt_new_for};

use crate::common::{GnuPgHome, TestFleet, fast_sops, ok, run, stderr, stdout, write};

struct Age {
    secret: String,
    recipient: String,
}

fn age_key() -> Age {
    let id = age::x25519::Identity::generate();
    Age { secret: id.to_string().expose_secret().to_string(), recipient: id.to_public().to_string() }
}

fn secrets(of: &[&Age]) -> String {
    of.iter().map(|a| format!("{}\n", a.secret)).collect()
}

fn doc() -> Map {
    let mut d = Map::new();
    d.set_path(&["password"], Value::Str("hunter2".into())).expect("set");
    d
}

/// `sops ARGS` in `dir` with exactly these age identities and this GnuPG home.
fn sops(sops: &Path, dir: &Path, args: &[&str], age: &[&Age], gnupg: &Path) -> Output {
    let mut c = Command::new(sops);
    c.args(args).current_dir(dir).env("HOME", dir).env("GNUPGHOME", gnupg).env_remove("SOPS_AGE_KEY_FILE").env_remove("XDG_CONFIG_HOME");
    if age.is_empty() {
        c.env_remove("SOPS_AGE_KEY");
    } else {
        c.env("SOPS_AGE_KEY", secrets(age));
    }
    run(&mut c)
}

fn opens(sops_bin: &Path, dir: &Path, file: &str, age: &[&Age], gnupg: &Path) -> bool {
    let out = sops(sops_bin, dir, &["--decrypt", file], age, gnupg);
    if out.status.success() {
        assert!(stdout(&out).contains("password: hunter2"), "{}", stdout(&out));
    }
    out.status.success()
}

/// The armored PGP messages of a file, in order.
fn pgp_messages(text: &str) -> Vec<String> {
    text.split("-----BEGIN PGP MESSAGE-----")
        .skip(1)
        .map(|s| s.split("-----END PGP MESSAGE-----").next().unwrap_or("").to_string())
        .collect()
}

fn group(age: &[&Age], pgp: &[&str]) -> KeyGroupSpec {
    KeyGroupSpec { age: age.iter().map(|a| a.recipient.clone()).collect(), pgp: pgp.iter().map(|s| (*s).to_string()).collect() }
}

#[test]
fn a_new_file_for_a_pgp_admin_and_an_age_host_opens_with_sops_either_way() {
    let Some(sops_bin) = fast_sops() else { return };
    let Some(gpg) = GnuPgHome::new() else { return };
    let nobody = GnuPgHome::empty();
    let dir = tempfile::tempdir().expect("tmp");
    let host = age_key();
    let keys = KeyGroups { groups: vec![group(&[&host], &[&gpg.fingerprint])], threshold: 0 };
    let text = encrypt_new_for(&doc(), &keys, &EncryptionOptions::default(), &GnuPg::with_home(gpg.path())).expect("encrypts");
    assert_eq!(pgp_messages(&text).len(), 1, "{text}");
    write(&dir.path().join("new.yaml"), &text);
    assert!(opens(&sops_bin, dir.path(), "new.yaml", &[], gpg.path()), "sops opens it with only the GnuPG home");
    assert!(opens(&sops_bin, dir.path(), "new.yaml", &[&host], nobody.path()), "sops opens it with only the host's age key");
    assert!(!opens(&sops_bin, dir.path(), "new.yaml", &[&age_key()], nobody.path()), "and not with another key");

    // And the other way: a file sops wrote for the same keys opens here with either.
    let plain = dir.path().join("plain.yaml");
    write(&plain, "password: hunter2\n");
    let args = ["--encrypt", "--pgp", gpg.fingerprint.as_str(), "--age", host.recipient.as_str(), "plain.yaml"];
    let theirs = ok(&sops(&sops_bin, dir.path(), &args, &[], gpg.path()));
    let file = EncryptedFile::parse(&theirs).expect("parses");
    assert_eq!(file.key_groups(), keys);
    let by_pgp = file.decrypt_with(&[], &GnuPg::with_home(gpg.path())).expect("opens with GnuPG");
    assert_eq!(by_pgp.document(), &doc());
    let host_id: age::x25519::Identity = host.secret.parse().expect("identity");
    file.decrypt_with(&[host_id], &GnuPg::with_home(nobody.path())).expect("opens with the age key");
}

/// A fleet whose rule for `secrets/app.yaml` is `rule` (after the admin anchor).
fn fleet_with_rule(rule: &str) -> (TestFleet, Age) {
    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    let text = std::fs::read_to_string(f.admin_key_file()).expect("admin");
    let recipient = text.lines().find_map(|l| l.strip_prefix("# public key: ")).expect("recipient").to_string();
    let secret = text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).expect("secret").to_string();
    write(&f.dir.join(".sops.yaml"), &format!("creation_rules:\n  - path_regex: ^secrets/app\\.yaml$\n{rule}"));
    (f, Age { secret, recipient })
}

fn rekey(f: &TestFleet, gnupg: &Path, age: &[&Age], path: Option<&str>) -> Output {
    let mut c = f.cmd(&["sops", "rekey", "secrets/app.yaml"]);
    c.env("GNUPGHOME", gnupg);
    if !age.is_empty() {
        c.env("SOPS_AGE_KEY", secrets(age));
    }
    if let Some(p) = path {
        c.env("PATH", p);
    }
    run(&mut c)
}

#[test]
fn a_sops_file_with_pgp_and_age_is_rekeyed_keeping_the_pgp_enc() {
    let Some(sops_bin) = fast_sops() else { return };
    let Some(gpg) = GnuPgHome::new() else { return };
    let nobody = GnuPgHome::empty();
    let host = age_key();
    let ops = age_key();
    let fp = gpg.fingerprint.clone();
    let (f, _) =
        fleet_with_rule(&format!("    key_groups:\n      - pgp:\n          - {fp}\n        age:\n          - {}\n", host.recipient));
    write(&f.dir.join("secrets/app.yaml"), "password: hunter2\n");
    let args = ["--encrypt", "--in-place", "--pgp", fp.as_str(), "--age", host.recipient.as_str(), "secrets/app.yaml"];
    ok(&sops(&sops_bin, &f.dir, &args, &[], gpg.path()));
    let before = f.read("secrets/app.yaml");
    assert_eq!(pgp_messages(&before).len(), 1, "{before}");

    // The rule gains a recipient; the admin opens the file with GnuPG only.
    let rule = format!(
        "    key_groups:\n      - pgp:\n          - {fp}\n        age:\n          - {}\n          - {}\n",
        host.recipient, ops.recipient
    );
    write(&f.dir.join(".sops.yaml"), &format!("creation_rules:\n  - path_regex: ^secrets/app\\.yaml$\n{rule}"));
    std::fs::remove_file(f.admin_key_file()).expect("no age identity for the admin");
    let out = rekey(&f, gpg.path(), &[], None);
    assert!(stdout(&out).contains("re-keyed 1"), "{}\n{}", stdout(&out), stderr(&out));
    let after = f.read("secrets/app.yaml");
    assert_ne!(before, after);
    assert_eq!(pgp_messages(&before), pgp_messages(&after), "the admin's PGP enc is kept byte for byte");
    for (who, age, home) in [("GnuPG", vec![], gpg.path()), ("host", vec![&host], nobody.path()), ("ops", vec![&ops], nobody.path())] {
        assert!(opens(&sops_bin, &f.dir, "secrets/app.yaml", &age, home), "sops opens the result with {who}");
    }
    let again = rekey(&f, gpg.path(), &[], None);
    assert!(stdout(&again).contains("unchanged 1"), "{}", stdout(&again));
    assert_eq!(after, f.read("secrets/app.yaml"));
}

fn shamir_rule(groups: &[String]) -> String {
    let mut r = "    shamir_threshold: 2\n    key_groups:\n".to_string();
    for g in groups {
        r.push_str(g);
    }
    r
}

fn age_group(keys: &[&Age]) -> String {
    let mut g = "      - age:\n".to_string();
    for k in keys {
        g.push_str(&format!("          - {}\n", k.recipient));
    }
    g
}

/// Who opens which group: an age key, or (`None`) the GnuPG key.
type Opener<'a> = Option<&'a Age>;

fn opens_with(sops_bin: &Path, dir: &Path, rel: &str, who: &[Opener<'_>], gpg: &GnuPgHome, nobody: &Path) -> bool {
    let age: Vec<&Age> = who.iter().flatten().copied().collect();
    let home = if who.iter().any(Option::is_none) { gpg.path() } else { nobody };
    opens(sops_bin, dir, rel, &age, home)
}

#[test]
fn shamir_files_from_sops_are_read_and_rekeyed_and_ours_open_with_any_two_groups() {
    let Some(sops_bin) = fast_sops() else { return };
    let Some(gpg) = GnuPgHome::new() else { return };
    let nobody = GnuPgHome::empty();
    let (a, b, c, d) = (age_key(), age_key(), age_key(), age_key());
    let fp = gpg.fingerprint.clone();
    let pgp_group = format!("      - pgp:\n          - {fp}\n");
    // Three age groups, then one whose third group is the PGP key.
    for (third, opener3) in [(age_group(&[&c]), Some(&c)), (pgp_group.clone(), None)] {
        let (f, _) = fleet_with_rule(&shamir_rule(&[age_group(&[&a]), age_group(&[&b]), third.clone()]));
        write(&f.dir.join("secrets/app.yaml"), "password: hunter2\n");
        ok(&sops(&sops_bin, &f.dir, &["--encrypt", "--in-place", "secrets/app.yaml"], &[], gpg.path()));
        let file = EncryptedFile::parse(&f.read("secrets/app.yaml")).expect("parses");
        let ids = |keys: &[&Age]| keys.iter().map(|k| k.secret.parse::<age::x25519::Identity>().expect("id")).collect::<Vec<_>>();
        file.decrypt_with(&ids(&[&a, &b]), &GnuPg::with_home(nobody.path())).expect("two groups open it");
        let one = file.decrypt_with(&ids(&[&a]), &GnuPg::with_home(nobody.path())).expect_err("one group does not");
        assert!(one.to_string().contains("needs 2 of the file's 3 key groups, but only 1 opened"), "{one}");

        // Group 1 gains `d`; the admin holds groups 2 and 3.
        write(
            &f.dir.join(".sops.yaml"),
            &format!(
                "creation_rules:\n  - path_regex: ^secrets/app\\.yaml$\n{}",
                shamir_rule(&[age_group(&[&a, &d]), age_group(&[&b]), third.clone()])
            ),
        );
        std::fs::remove_file(f.admin_key_file()).expect("rm admin");
        let holder: Vec<&Age> = [Some(&b), opener3].into_iter().flatten().collect();
        let out = rekey(&f, gpg.path(), &holder, None);
        assert!(stdout(&out).contains("re-keyed 1"), "{}\n{}", stdout(&out), stderr(&out));
        let pairs: [[Opener<'_>; 2]; 4] = [[Some(&a), Some(&b)], [Some(&a), opener3], [Some(&b), opener3], [Some(&d), Some(&b)]];
        for pair in pairs {
            assert!(opens_with(&sops_bin, &f.dir, "secrets/app.yaml", &pair, &gpg, nobody.path()), "a pair opens the re-keyed file");
        }
        for single in [[Some(&a)], [Some(&d)], [opener3]] {
            assert!(!opens_with(&sops_bin, &f.dir, "secrets/app.yaml", &single, &gpg, nobody.path()), "one group does not");
        }

        // A Shamir file made here opens with sops likewise.
        let spec = |third: Opener<'_>| KeyGroups {
            groups: vec![group(&[&a], &[]), group(&[&b], &[]), third.map_or_else(|| group(&[], &[&fp]), |k| group(&[k], &[]))],
            threshold: 2,
        };
        let ours = encrypt_new_for(&doc(), &spec(opener3), &EncryptionOptions::default(), &GnuPg::with_home(gpg.path())).expect("encrypts");
        write(&f.dir.join("ours.yaml"), &ours);
        for pair in [[Some(&a), Some(&b)], [Some(&a), opener3], [Some(&b), opener3]] {
            assert!(opens_with(&sops_bin, &f.dir, "ours.yaml", &pair, &gpg, nobody.path()), "sops opens ours with a pair");
        }
        for single in [[Some(&a)], [Some(&b)], [opener3]] {
            assert!(!opens_with(&sops_bin, &f.dir, "ours.yaml", &single, &gpg, nobody.path()), "sops refuses ours with one group");
        }
    }
}

#[test]
fn a_missing_gpg_or_public_key_stops_the_rekey_with_nothing_written() {
    let Some(gpg) = GnuPgHome::new() else { return };
    let other = GnuPgHome::new().expect("second key");
    let host = age_key();
    let (f, admin) = fleet_with_rule(&format!("    key_groups:\n      - age:\n          - {}\n", host.recipient));
    let keys = KeyGroups::age_only(vec![vec![admin.recipient.clone(), host.recipient.clone()]]);
    let text = encrypt_new_for(&doc(), &keys, &EncryptionOptions::default(), &GnuPg::with_home(gpg.path())).expect("encrypts");
    write(&f.dir.join("secrets/app.yaml"), &text);
    // The rule gains a PGP key that is not in the admin's keyring.
    let missing = other.fingerprint.clone();
    write(
        &f.dir.join(".sops.yaml"),
        &format!(
            "creation_rules:\n  - path_regex: ^secrets/app\\.yaml$\n    key_groups:\n      - pgp:\n          - {missing}\n        age:\n          - {}\n          - {}\n",
            admin.recipient, host.recipient
        ),
    );
    let before = f.snapshot();
    let out = rekey(&f, gpg.path(), &[], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the PGP public key {missing} is not in the GnuPG keyring")) && err.contains("gpg --import KEY.asc"),
        "{err}"
    );
    f.assert_unchanged(&before, "a rekey with a missing public key");

    // No gpg on PATH at all.
    let empty_path = tempfile::tempdir().expect("tmp");
    let out = rekey(&f, gpg.path(), &[], Some(empty_path.path().to_str().expect("utf-8")));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("`gpg` is not installed or not on PATH") && err.contains("apt install gnupg"), "{err}");
    f.assert_unchanged(&before, "a rekey without gpg");

    // Once the key is imported, the same run succeeds.
    let mut import = gpg.gpg();
    import.arg("--import");
    let imported = crate::common::run_with_stdin(&mut import, &other.public_key());
    assert!(imported.status.success(), "{}", stderr(&imported));
    let out = rekey(&f, gpg.path(), &[], None);
    assert!(stdout(&out).contains("re-keyed 1"), "{}\n{}", stdout(&out), stderr(&out));
    let file = EncryptedFile::parse(&f.read("secrets/app.yaml")).expect("parses");
    file.decrypt_with(&[], &GnuPg::with_home(other.path())).expect("the new PGP key opens it");
}

#[test]
fn enrolling_a_host_rekeys_a_shared_file_that_has_a_pgp_admin() {
    let Some(sops_bin) = fast_sops() else { return };
    let Some(gpg) = GnuPgHome::new() else { return };
    let nobody = GnuPgHome::empty();
    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    let admin_text = std::fs::read_to_string(f.admin_key_file()).expect("admin");
    let admin = Age {
        recipient: admin_text.lines().find_map(|l| l.strip_prefix("# public key: ")).expect("recipient").to_string(),
        secret: admin_text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).expect("secret").to_string(),
    };
    let fp = &gpg.fingerprint;
    write(
        &f.dir.join(".sops.yaml"),
        &format!(
            "keys:\n  - &admin {}\ncreation_rules:\n  - path_regex: ^sops/shared\\.yaml$\n    key_groups:\n      - pgp:\n          - {fp}\n        age:\n          - *admin\n",
            admin.recipient
        ),
    );
    write(&f.dir.join("sops/shared.yaml"), "password: hunter2\n");
    ok(&sops(&sops_bin, &f.dir, &["--encrypt", "--in-place", "sops/shared.yaml"], &[], gpg.path()));
    let before = f.read("sops/shared.yaml");

    let mut c = f.cmd(&["vm-fresh", "web01"]);
    c.env("GNUPGHOME", gpg.path());
    ok(&run(&mut c));
    let after = f.read("sops/shared.yaml");
    let record: serde_json::Value = serde_json::from_str(&f.read("hosts/web01.json")).expect("record");
    let host = record["age_recipient"].as_str().expect("recipient");
    let file = EncryptedFile::parse(&after).expect("parses");
    assert!(file.age_recipients()[0].iter().any(|r| r == host), "the host joined the shared file:\n{after}");
    assert_eq!(file.key_groups().groups[0].pgp, vec![fp.clone()], "the PGP admin stays");
    assert_eq!(pgp_messages(&before), pgp_messages(&after), "its enc is kept byte for byte");
    assert!(opens(&sops_bin, &f.dir, "sops/shared.yaml", &[], gpg.path()), "sops opens it with GnuPG");
    assert!(opens(&sops_bin, &f.dir, "sops/shared.yaml", &[&admin], nobody.path()), "and with the admin's age key");
}

#[test]
fn vm_fresh_writes_a_new_host_file_for_a_rule_with_a_pgp_admin() {
    let Some(sops_bin) = fast_sops() else { return };
    let Some(gpg) = GnuPgHome::new() else { return };
    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    let admin_text = std::fs::read_to_string(f.admin_key_file()).expect("admin");
    let admin = admin_text.lines().find_map(|l| l.strip_prefix("# public key: ")).expect("recipient").to_string();
    let fp = &gpg.fingerprint;
    write(
        &f.dir.join(".sops.yaml"),
        &format!(
            "keys:\n  - &admin {admin}\ncreation_rules:\n  - path_regex: ^sops/web01\\.yaml$\n    key_groups:\n      - pgp:\n          - {fp}\n        age:\n          - *admin\n"
        ),
    );
    let mut c = f.cmd(&["vm-fresh", "web01"]);
    c.env("GNUPGHOME", gpg.path());
    ok(&run(&mut c));
    let text = f.read("sops/web01.yaml");
    assert_eq!(pgp_messages(&text).len(), 1, "{text}");
    let out = sops(&sops_bin, &f.dir, &["--decrypt", "sops/web01.yaml"], &[], gpg.path());
    assert!(ok(&out).contains("ssh_host_ed25519_key: |\n    -----BEGIN OPENSSH PRIVATE KEY-----"), "sops opens it with GnuPG alone");

    // Without gpg the run stops before writing anything.
    let g = TestFleet::new();
    ok(&g.run(&["init"]));
    let admin_text = std::fs::read_to_string(g.admin_key_file()).expect("admin");
    let admin = admin_text.lines().find_map(|l| l.strip_prefix("# public key: ")).expect("recipient").to_string();
    write(
        &g.dir.join(".sops.yaml"),
        &format!(
            "keys:\n  - &admin {admin}\ncreation_rules:\n  - path_regex: ^sops/web01\\.yaml$\n    key_groups:\n      - pgp:\n          - {fp}\n        age:\n          - *admin\n"
        ),
    );
    let before = g.snapshot();
    let empty_path = tempfile::tempdir().expect("tmp");
    let mut c = g.cmd(&["vm-fresh", "web01"]);
    c.env("GNUPGHOME", gpg.path()).env("PATH", empty_path.path());
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("`gpg` is not installed or not on PATH"), "{}", stderr(&out));
    g.assert_unchanged(&before, "vm-fresh without gpg");
}
