//! One regression test per finding of the security review of a fleet as untrusted input
//! (`F01`…): each forges what someone who can write to the fleet could, and asserts the exact
//! exit status and message, and that nothing changed.

use std::path::Path;

use hostsmith::sops::file::{EncryptionOptions, Map, Value, encrypt_new};
use hostsmith::ssh_keys::Keypair;

use crate::common::{TestFleet, ok, stderr, stdout};
use crate::exact::Test;

fn admin_recipient(f: &TestFleet) -> String {
    let text = std::fs::read_to_string(f.admin_key_file()).expect("admin key");
    let id: age::x25519::Identity = text.lines().find(|l| l.starts_with("AGE-")).expect("identity").parse().expect("identity");
    id.to_public().to_string()
}

/// Edits the JSON record of `host` with `edit`.
fn forge_record(f: &TestFleet, host: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = f.dir.join(format!("hosts/{host}.json"));
    let mut record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    edit(&mut record);
    std::fs::write(&path, serde_json::to_string_pretty(&record).expect("json")).expect("write");
}

/// A SOPS host file holding `key`, encrypted for the admin's public recipient only: what
/// anyone can make without any secret.
fn forged_host_file(f: &TestFleet, key: &Keypair) -> String {
    let mut doc = Map::new();
    doc.set_path(&["ssh_host_ed25519_key"], Value::Str(key.openssh_private().expect("pem").to_string())).expect("set");
    encrypt_new(&doc, &[vec![admin_recipient(f)]], &EncryptionOptions::default()).expect("encrypt")
}

/// Replaces the line of `hostsmith.toml` that starts with `key =` by `line`.
fn set_toml(f: &TestFleet, key: &str, line: &str) {
    let path = f.dir.join("hostsmith.toml");
    let text = std::fs::read_to_string(&path).expect("read");
    let edited: Vec<&str> = text.lines().map(|l| if l.starts_with(&format!("{key} =")) { line } else { l }).collect();
    assert_ne!(edited.join("\n") + "\n", text, "no `{key}` line");
    std::fs::write(path, edited.join("\n") + "\n").expect("write");
}

#[test]
fn f01_a_shared_file_outside_the_fleet_is_refused() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let other = f.tmp.path().join("otherproj");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("prod.yaml"), "secret: ENC[...]\n").expect("write");
    set_toml(&f, "shared", "shared = [\"../otherproj/prod.yaml\"]");
    let before = f.snapshot();
    Test::new(&f)
        .args(&["vm-fresh", "web02"])
        .stderr("error: configuration `./hostsmith.toml`: sops.shared: `../otherproj/prod.yaml` must be a relative file path inside the fleet, without `..` (hostsmith re-encrypts shared files, so it only touches the fleet's own)\n")
        .status(2)
        .run();
    f.assert_unchanged(&before, "a shared file outside the fleet");
    assert_eq!(std::fs::read_to_string(other.join("prod.yaml")).expect("read"), "secret: ENC[...]\n");
}

#[test]
fn f01_a_shared_file_linked_out_of_the_fleet_is_refused() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    // Another project's SOPS file that the admin can open, linked in as the shared file.
    let outside = f.tmp.path().join("prod.yaml");
    std::fs::copy(f.dir.join("sops/web01.yaml"), &outside).expect("copy");
    std::os::unix::fs::symlink(&outside, f.dir.join("sops/shared.yaml")).expect("link");
    let before = std::fs::read(&outside).expect("read");
    let out = f.run(&["vm-fresh", "web02"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "error: `./sops/shared.yaml` is a symbolic link: hostsmith replaces fleet files atomically and does not follow links in a fleet (one could point outside it); make it a regular file\n"
    );
    assert_eq!(std::fs::read(&outside).expect("read"), before);
    assert!(!f.dir.join("hosts/web02.json").exists());
}

#[test]
fn f03_a_forged_record_name_cannot_inject_known_hosts_lines() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    forge_record(&f, "web01", |r| r["name"] = "web01\n* ssh-ed25519 ATTACKER\n@cert-authority *".into());
    let before = f.snapshot();
    Test::new(&f)
        .arg("known-hosts")
        .stderr("error: `./hosts/web01.json` is not a valid host record: field `name` is `web01\\n* ssh-ed25519 ATTACKER\\n@cert-authority *`, but the file is `web01.json`; restore it from version control\n")
        .status(2)
        .run();
    f.assert_unchanged(&before, "known-hosts");
}

#[test]
fn f03_fingerprint_and_recipient_must_be_derived_from_the_key() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let other = Keypair::generate("x").expect("key");
    forge_record(&f, "web01", |r| r["age_recipient"] = other.age_recipient().expect("age").into());
    Test::new(&f)
        .args(&["keys", "list"])
        .stderr("error: `./hosts/web01.json` is not a valid host record: field `age_recipient` is `<AGE>`, but the recorded key's recipient is <AGE>; restore it from version control\n")
        .status(2)
        .run();
}

#[test]
fn f04_a_forged_host_file_without_a_record_is_not_recovered() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let attacker = Keypair::generate("attacker").expect("key");
    std::fs::write(f.dir.join("sops/web09.yaml"), forged_host_file(&f, &attacker)).expect("write");
    let before = f.snapshot();
    Test::new(&f)
        .args(&["vm-fresh", "web09"])
        .stderr("error: `sops/web09.yaml` exists, but host `web09` has no record and this machine did not write that file (an interrupted run here would have noted it); anyone who can write to the fleet can make such a file, so its key is not used: if you know where the file comes from, run `hostsmith vm-fresh --recover web09`; otherwise remove it, or run `hostsmith vm-fresh --rotate web09` to give `web09` a new key\n")
        .status(2)
        .run();
    f.assert_unchanged(&before, "a refused recovery");
    let out = f.run(&["sops", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("problem: `sops/web09.yaml` holds a host key but there is no record `hosts/web09.json`"),
        "{}",
        stdout(&out)
    );

    // Said explicitly, the key is reused, and the record does not claim hostsmith made it.
    ok(&f.run(&["vm-fresh", "--recover", "web09"]));
    let record: serde_json::Value = serde_json::from_str(&f.read("hosts/web09.json")).expect("json");
    assert_eq!(record["fingerprint"], attacker.fingerprint());
    assert_eq!(record["origin"], "imported");
}

#[test]
fn f04_an_interrupted_run_on_this_machine_is_still_recovered() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    // The run stops after the host file, before the record (the journal says it wrote it).
    ok(&f.run(&["vm-fresh", "web02"]));
    let fingerprint = serde_json::from_str::<serde_json::Value>(&f.read("hosts/web02.json")).expect("json")["fingerprint"].clone();
    let journal = f.home.join(".local/state/hostsmith/journal");
    std::fs::remove_file(f.dir.join("hosts/web02.json")).expect("rm");
    let entries: Vec<_> = std::fs::read_dir(&journal).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(entries.is_empty(), "a finished run leaves no journal entry");
    // Without a journal entry a record-less host file is an orphan ...
    assert_eq!(f.run(&["vm-fresh", "web02"]).status.code(), Some(2));
    // ... with one (as a killed run leaves it) it is recovered.
    let id = std::fs::canonicalize(&f.dir).expect("abs");
    let name = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(id.as_os_str().as_encoded_bytes());
        d[..12].iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    std::fs::create_dir_all(&journal).expect("mkdir");
    std::fs::write(
        journal.join(format!("{name}.json")),
        serde_json::json!({"fleet": id.display().to_string(), "pending": {"web02": fingerprint}}).to_string(),
    )
    .expect("write");
    let out = ok(&f.run(&["vm-fresh", "web02"]));
    assert!(out.contains("recovered"), "{out}");
    let record: serde_json::Value = serde_json::from_str(&f.read("hosts/web02.json")).expect("json");
    assert_eq!(record["fingerprint"], fingerprint);
    assert_eq!(record["origin"], "generated");
}

#[test]
fn f04b_a_copied_host_file_is_refused_and_reported() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    std::fs::copy(f.dir.join("sops/web01.yaml"), f.dir.join("sops/web02.yaml")).expect("copy");
    let before = f.snapshot();
    Test::new(&f)
        .args(&["vm-fresh", "--recover", "web02"])
        .stderr("error: host `web02`: `sops/web02.yaml` holds host `web01`'s key (<FP>): it is a copy of that host's file; a host key belongs to one host, so give `web02` its own key (`hostsmith vm-fresh --rotate web02`)\n")
        .status(2)
        .run();
    f.assert_unchanged(&before, "a copied host file");
    Test::new(&f)
        .args(&["sops", "check"])
        .stdout(
            "problem: `sops/web02.yaml` is a copy of `sops/web01.yaml` (the same data key and MAC): a host file belongs to one host; remove the copy\n\
             problem: `sops/web02.yaml` holds a host key but there is no record `hosts/web02.json`: if an interrupted run on this machine left it, run `hostsmith vm-fresh web02`; if you know where it comes from, `hostsmith vm-fresh --recover web02`; otherwise remove it\n",
        )
        .stderr("error: 2 problem(s) found\n")
        .status(1)
        .run();
}

#[test]
fn f05_a_record_whose_key_was_swapped_is_not_pinned() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let impostor = Keypair::generate("root@web01").expect("key");
    forge_record(&f, "web01", |r| r["ssh_host_ed25519_public"] = impostor.public_line().into());
    Test::new(&f)
        .args(&["sync", "web01", "--address", "127.0.0.1:9", "--method", "ssh"])
        .stderr("error: `./hosts/web01.json` is not a valid host record: field `fingerprint` is `<FP>`, but the recorded key's fingerprint is <FP>; restore it from version control\n")
        .status(2)
        .run();
    let out = f.run(&["connect", "web01", "--address", "127.0.0.1:9", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn f06_a_deploy_key_name_cannot_inject_ssh_config() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    forge_record(&f, "web01", |r| {
        let line = r["deploy_keys"]["nix-config"].clone();
        r["deploy_keys"]["x\n  ProxyCommand touch /tmp/pwned"] = line;
    });
    Test::new(&f)
        .args(&["ssh-config", "web01"])
        .stderr("error: `./hosts/web01.json` is not a valid host record: field `deploy_keys` names `x\\n  ProxyCommand touch /tmp/pwned`, which is not a repository name; restore it from version control\n")
        .status(2)
        .run();
}

/// The fleet as a rotation of web01 leaves it when it stops right after writing the host file.
fn interrupted_rotation(f: &TestFleet) {
    f.init_with(&["web01"]);
    let record = f.read("hosts/web01.json");
    let rules = f.read(".sops.yaml");
    ok(&f.run(&["keys", "rotate", "web01"]));
    std::fs::write(f.dir.join("hosts/web01.json"), record).expect("write");
    std::fs::write(f.dir.join(".sops.yaml"), rules).expect("write");
}

#[test]
fn f07_an_interrupted_rotation_is_seen_and_finished() {
    let f = TestFleet::new();
    interrupted_rotation(&f);
    let before = f.snapshot();
    Test::new(&f)
        .args(&["vm-fresh", "web01"])
        .stderr("error: host `web01`: `sops/web01.yaml` is not encrypted for the host's recorded key (<AGE>): a rotation was interrupted after the host file was written, or the file was replaced; run `hostsmith keys rotate web01` to give the host a fresh key\n")
        .status(1)
        .run();
    Test::new(&f)
        .args(&["sops", "check"])
        .stdout("problem: host `web01`: `sops/web01.yaml` is not encrypted for the host's recorded key (<AGE>): a rotation was interrupted or the file was replaced; run `hostsmith keys rotate web01` to give the host a fresh key\n")
        .stderr("error: 1 problem(s) found\n")
        .status(1)
        .run();
    let out = f.run(&["sops", "rekey"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`sops/web01.yaml`: it is not encrypted for host `web01`'s recorded key: a rotation was interrupted"),
        "{}",
        stderr(&out)
    );
    f.assert_unchanged(&before, "vm-fresh, check and rekey after an interrupted rotation");
    ok(&f.run(&["keys", "rotate", "web01"]));
    ok(&f.run(&["sops", "check"]));
}

#[test]
fn f08_rekey_refuses_a_catch_all_rule_that_hands_host_keys_to_someone_else() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let attacker = Keypair::generate("attacker").expect("key").age_recipient().expect("age");
    let rules = f.read(".sops.yaml");
    let hostile =
        rules.replacen("creation_rules:\n", &format!("creation_rules:\n  - key_groups:\n      - age:\n          - {attacker}\n"), 1);
    std::fs::write(f.dir.join(".sops.yaml"), hostile).expect("write");
    let before = f.snapshot();
    Test::new(&f)
        .args(&["sops", "rekey"])
        .stderr(
            "error: refusing to re-key; nothing was changed:\n  \
             `sops/web01.yaml`: the rule sops would use (line 7) is not written for it alone; it would drop host(s) `web01`; it would drop admin(s) <AGE>\n\
             fix `.sops.yaml` (`hostsmith sops check` shows what is wrong), or pass --force if this is what you want\n",
        )
        .status(2)
        .run();
    f.assert_unchanged(&before, "a refused re-key");
    // Said deliberately, it is done.
    let out = ok(&f.run(&["sops", "rekey", "--force"]));
    assert!(out.contains("re-keyed 1,"), "{out}");
    let rekeyed = f.read("sops/web01.yaml");
    assert!(rekeyed.contains(&attacker) && !rekeyed.contains(&admin_recipient(&f)), "the rule was obeyed");
}

#[test]
fn f12_a_duplicate_creation_rules_key_is_refused() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let rules = f.read(".sops.yaml");
    std::fs::write(f.dir.join(".sops.yaml"), format!("{rules}creation_rules: []\n")).expect("write");
    let before = f.snapshot();
    let out = f.run(&["sops", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("key `creation_rules` appears twice in one mapping (first at line 6); sops refuses such a file, so remove one"),
        "{}",
        stderr(&out)
    );
    assert_eq!(f.run(&["vm-fresh", "web02"]).status.code(), Some(2));
    f.assert_unchanged(&before, "a duplicate key");
}

#[test]
fn f13_an_empty_hosts_group_is_refused() {
    let f = TestFleet::new();
    f.init_with(&[]);
    set_toml(&f, "hosts_group", "hosts_group = \"\"");
    let before = f.snapshot();
    Test::new(&f)
        .args(&["vm-fresh", "web01"])
        .stderr("error: configuration `./hostsmith.toml`: sops.hosts_group `` is not a valid group name: use letters, digits, '-' and '_' (default \"hosts\")\n")
        .status(2)
        .run();
    f.assert_unchanged(&before, "an empty hosts group");
}

#[test]
fn f14_many_unused_anchors_are_not_a_hostsmith_bug() {
    let f = TestFleet::new();
    f.init_with(&[]);
    let rules = f.read(".sops.yaml");
    let junk: String = (0..210_000).map(|i| format!("  - &u{i} x\n")).collect();
    std::fs::write(f.dir.join(".sops.yaml"), format!("junk:\n{junk}{rules}")).expect("write");
    let out = ok(&f.run(&["vm-fresh", "web01", "--dry-run"]));
    assert!(out.contains("would write sops/web01.yaml"), "{out}");
}

#[test]
fn f14_a_huge_sops_config_is_refused_before_it_is_read() {
    let f = TestFleet::new();
    f.init_with(&[]);
    let rules = f.read(".sops.yaml");
    std::fs::write(f.dir.join(".sops.yaml"), format!("{rules}#{}\n", "x".repeat(17 << 20))).expect("write");
    Test::new(&f)
        .args(&["vm-fresh", "web01"])
        .stderr("error: `./.sops.yaml` is 17 MiB; hostsmith reads at most 16 MiB (a fleet of 10,000 hosts needs about 2 MiB): remove what does not belong in it\n")
        .status(2)
        .run();
}

#[test]
fn f17_escape_sequences_from_a_record_never_reach_the_terminal() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    forge_record(&f, "web01", |r| {
        let line = r["ssh_host_ed25519_public"].as_str().expect("str").to_string();
        r["ssh_host_ed25519_public"] = format!("{line}\u{1b}]0;owned\u{7}").into();
    });
    for args in [&["keys", "list"][..], &["known-hosts"], &["ssh-config", "web01"], &["keys", "show", "web01"]] {
        let out = f.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b), "{args:?}: raw ESC printed");
        assert!(stderr(&out).contains("holds control characters"), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn f18_a_record_name_that_is_a_path_writes_nothing_outside_the_state_dir() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let target = f.tmp.path().join("x");
    forge_record(&f, "web01", |r| r["name"] = target.display().to_string().into());
    let out = f.run(&["connect", "web01", "--address", "127.0.0.1:9", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("field `name` is"), "{}", stderr(&out));
    assert!(!target.exists());
}

#[test]
fn f19_bad_input_exits_2() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let before = f.snapshot();
    std::fs::write(f.dir.join("hosts/web01.json"), b"{\"schema\": 1,").expect("write");
    let out = f.run(&["keys", "list"]);
    assert_eq!(out.status.code(), Some(2), "malformed record: {}", stderr(&out));
    std::fs::write(f.dir.join("hosts/web01.json"), before[Path::new("hosts/web01.json")].0.clone()).expect("restore");
    let rules = f.read(".sops.yaml");
    std::fs::write(f.dir.join(".sops.yaml"), [rules.as_bytes(), b"# \xff\xfe\n"].concat()).expect("write");
    Test::new(&f)
        .args(&["vm-fresh", "web02"])
        .stderr("error: cannot read `./.sops.yaml`: it is not UTF-8 text; restore the file from version control\n")
        .status(2)
        .run();
}

#[test]
fn f20_a_linked_sops_config_is_not_replaced_by_a_copy() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let real = f.dir.join("rules.yaml");
    std::fs::rename(f.dir.join(".sops.yaml"), &real).expect("move");
    std::os::unix::fs::symlink("rules.yaml", f.dir.join(".sops.yaml")).expect("link");
    let before = f.snapshot();
    Test::new(&f)
        .args(&["vm-fresh", "web02"])
        .stderr("error: `./.sops.yaml` is a symbolic link: hostsmith replaces it atomically, which would cut the link and leave its target stale; make `.sops.yaml` a regular file (`cp --remove-destination \"$(readlink -f .sops.yaml)\" .sops.yaml`)\n")
        .status(2)
        .run();
    f.assert_unchanged(&before, "a linked .sops.yaml");
    assert!(f.dir.join(".sops.yaml").symlink_metadata().expect("meta").file_type().is_symlink());
}

#[test]
fn f21_fleet_commands_never_run_in_a_dry_run_nor_untrusted() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let marker = f.tmp.path().join("ran");
    let marker_s = marker.to_str().expect("utf8");
    ok(&f.run(&["config", "set", "sync.key_command", "touch", marker_s]));
    let out = f.run(&["sync", "web01", "--address", "127.0.0.1:9", "--dry-run", "--timeout", "2"]);
    assert!(!marker.exists(), "a dry run ran sync.key_command: {}", stderr(&out));
    assert!(stdout(&out).contains("sync.key_command (not trusted: not run in a dry run)"), "{}", stdout(&out));
    Test::new(&f)
        .args(&["sync", "web01", "--address", "127.0.0.1:9"])
        .stderr(&format!(
            "error: `sync.key_command` in `./hostsmith.toml` runs code on this machine ([\"touch\",\"{marker_s}\"]), and this fleet's setting has not been trusted here: read it, then run `hostsmith trust` in the fleet\n"
        ))
        .status(2)
        .run();
    assert!(!marker.exists());
    Test::new(&f).args(&["trust", "--show"]).stdout(&format!("not trusted: sync.key_command = [\"touch\",\"{marker_s}\"]\n")).run();
    Test::new(&f).arg("trust").stdout(&format!("trusted now: sync.key_command = [\"touch\",\"{marker_s}\"]\n")).run();
    let _ = f.run(&["sync", "web01", "--address", "127.0.0.1:9", "--timeout", "2"]);
    assert!(marker.exists(), "a trusted key_command runs");
    Test::new(&f)
        .args(&["trust", "--revoke"])
        .stdout(
            "revoked: this fleet's settings no longer run without asking
",
        )
        .run();
    assert_eq!(f.run(&["sync", "web01", "--address", "127.0.0.1:9"]).status.code(), Some(2), "revoked trust asks again");
}

#[test]
fn f22_importing_another_hosts_key_is_refused() {
    let f = TestFleet::new();
    f.init_with(&["web01", "web02"]);
    let exported = f.tmp.path().join("web01.key");
    ok(&f.run(&["keys", "export", "web01", "--output", exported.to_str().expect("utf8")]));
    let before = f.snapshot();
    Test::new(&f)
        .args(&["keys", "import", "web02", "--key-file", exported.to_str().expect("utf8")])
        .stderr("error: host `web02`: the key <FP> is already host `web01`'s; a host key belongs to one host, so give `web02` its own key (`hostsmith vm-fresh --rotate web02`)\n")
        .status(2)
        .run();
    f.assert_unchanged(&before, "a refused import");
}
