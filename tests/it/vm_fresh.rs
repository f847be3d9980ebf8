//! `init`, `vm-fresh`, `adopt`, `sops check` and `demo` end to end, checked with real sops.

use std::process::Command;

use hostsmith::ssh_keys::Keypair;

use crate::common::{self, TestFleet, ok, peer, run, sops_decrypt, stderr, stdout};
use crate::exact::Test;

fn admin_identity(f: &TestFleet) -> String {
    std::fs::read_to_string(f.admin_key_file()).expect("admin key")
}

/// The host's age identity, derived from the private key found in its decrypted file.
fn host_identity_from(decrypted_yaml: &str) -> String {
    let doc: serde_json::Value = yaml_to_json(decrypted_yaml);
    let key = doc["ssh_host_ed25519_key"].as_str().expect("host key in file");
    Keypair::from_openssh(key, None).expect("openssh key").age_identity().expect("identity").to_string()
}

/// Parses YAML with PyYAML (an independent parser) into JSON.
fn yaml_to_json(yaml: &str) -> serde_json::Value {
    let out = common::run_with_stdin(
        Command::new("python3").args(["-c", "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read()), default=str))"]),
        yaml.as_bytes(),
    );
    serde_json::from_str(&ok(&out)).expect("json")
}

#[test]
fn hosts_decrypt_their_files_and_the_shared_file_with_real_sops() {
    let Some(sops) = peer("sops") else { return };
    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    let admin = admin_identity(&f);
    // A shared file made by real sops before any host exists.
    std::fs::create_dir_all(f.dir.join("sops")).expect("mkdir");
    std::fs::write(f.dir.join("plain.yaml"), "wifi: hunter2\nnested:\n    n: 1\n").expect("write");
    let mut enc = Command::new(&sops);
    enc.args(["--encrypt", "--filename-override", "sops/shared.yaml", "plain.yaml"]).current_dir(&f.dir);
    f.env(&mut enc);
    let shared = ok(&run(&mut enc));
    std::fs::write(f.dir.join("sops/shared.yaml"), shared).expect("write");
    std::fs::remove_file(f.dir.join("plain.yaml")).expect("rm");

    let out = f.run(&["vm-fresh", "web01", "db01"]);
    let text = ok(&out);
    assert!(text.contains("created    web01"), "{text}");

    for host in ["web01", "db01"] {
        let file = format!("sops/{host}.yaml");
        let by_admin = ok(&sops_decrypt(&sops, &f.dir, &file, &admin));
        let host_id = host_identity_from(&by_admin);
        let by_host = ok(&sops_decrypt(&sops, &f.dir, &file, &host_id));
        assert_eq!(by_admin, by_host);
        let doc = yaml_to_json(&by_host);
        for repo in ["nix-config", "nix-secrets"] {
            let k = doc["deploy-keys"][repo].as_str().expect("deploy key");
            assert!(k.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"), "{host} {repo}");
        }
        // The record agrees with the key in the file.
        let record: serde_json::Value = serde_json::from_str(&f.read(&format!("hosts/{host}.json"))).expect("record");
        let pair = Keypair::from_openssh(doc["ssh_host_ed25519_key"].as_str().expect("key"), None).expect("key");
        assert_eq!(record["fingerprint"], pair.fingerprint());
        assert_eq!(record["age_recipient"], pair.age_recipient().expect("recipient"));
        assert_eq!(record["ssh_host_ed25519_public"], pair.public_line());
        assert!(pair.public_line().ends_with(&format!(" root@{host}")));
        assert_eq!(record["schema"], 1);
        let shared = ok(&sops_decrypt(&sops, &f.dir, "sops/shared.yaml", &host_id));
        assert_eq!(yaml_to_json(&shared)["wifi"], "hunter2");
    }
}

#[test]
fn real_sops_picks_exactly_the_admins_and_the_host_for_a_new_host_file() {
    let Some(sops) = peer("sops") else { return };
    let f = TestFleet::new();
    f.init_with(&["web01", "row", "sorrow"]);
    let record = |h: &str| -> String {
        let r: serde_json::Value = serde_json::from_str(&f.read(&format!("hosts/{h}.json"))).expect("record");
        r["age_recipient"].as_str().expect("recipient").to_string()
    };
    let admin_recipient = {
        let a = admin_identity(&f);
        a.lines().find_map(|l| l.strip_prefix("# public key: ")).expect("public key line").to_string()
    };
    for host in ["web01", "row"] {
        std::fs::write(f.dir.join("new.yaml"), "a: b\n").expect("write");
        let mut enc = Command::new(&sops);
        enc.args(["--encrypt", "--filename-override", &format!("sops/{host}.yaml"), "new.yaml"]).current_dir(&f.dir);
        f.env(&mut enc);
        let doc = yaml_to_json(&ok(&run(&mut enc)));
        let mut got: Vec<String> =
            doc["sops"]["age"].as_array().expect("age list").iter().map(|s| s["recipient"].as_str().expect("r").to_string()).collect();
        got.sort();
        let mut want = vec![admin_recipient.clone(), record(host)];
        want.sort();
        assert_eq!(got, want, "recipients sops picks for sops/{host}.yaml");
    }
}

#[test]
fn a_second_run_changes_no_byte_and_no_mtime() {
    let f = TestFleet::new();
    f.init_with(&["web01", "db01"]);
    let before = f.snapshot();
    std::thread::sleep(std::time::Duration::from_millis(30));
    Test::new(&f)
        .args(&["vm-fresh", "web01", "db01"])
        .stdout(
            "unchanged  web01            <FP>  <AGE>\n\
             unchanged  db01             <FP>  <AGE>\n\
             nothing to do: every file is already up to date\n",
        )
        .run();
    f.assert_unchanged(&before, "the run");
}

#[test]
fn dry_run_plans_and_changes_nothing() {
    let f = TestFleet::new();
    f.init_with(&[]);
    let before = f.snapshot();
    Test::new(&f)
        .args(&["vm-fresh", "--dry-run", "web01"])
        .stdout(
            "created    web01            <FP>  <AGE>\n\
             \x20          deploy keys added: nix-config, nix-secrets\n\
             .sops.yaml: added anchor &web01 under keys\n\
             .sops.yaml: added creation rule ^sops/web01\\.yaml$ for web01\n\
             .sops.yaml: added web01 to the rule for sops/shared.yaml at line 6\n\
             dry run: would write sops/web01.yaml, .sops.yaml, hosts/web01.json\n",
        )
        .run();
    f.assert_unchanged(&before, "the run");
    let json: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "vm-fresh", "--dry-run", "web01"]))).expect("json");
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["hosts"][0]["name"], "web01");
    f.assert_unchanged(&before, "the run");
}

#[test]
fn hostile_host_names_are_refused_before_anything_changes() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let before = f.snapshot();
    let long = "a".repeat(300);
    for bad in ["../x", "a b", "web_01", long.as_str(), "hôte", "a;b"] {
        let out = f.run(&["vm-fresh", "ok01", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("error: host name"), "{bad}: {}", stderr(&out));
        f.assert_unchanged(&before, bad);
    }
    // `-rf` looks like an option to clap; after `--` it is a name and is refused as one.
    Test::new(&f)
        .args(&["vm-fresh", "--", "-rf"])
        .stderr("error: host name `-rf` is invalid: it starts or ends with '-'; use letters, digits and '-' (at most 63, not starting or ending with '-')\n")
        .status(2)
        .run();
    f.assert_unchanged(&before, "the run");
}

#[test]
fn a_sops_yaml_that_is_not_yaml_is_refused_and_left_alone() {
    let f = TestFleet::new();
    f.init_with(&[]);
    std::fs::write(f.dir.join(".sops.yaml"), "keys: [unclosed\ncreation_rules: {\n").expect("write");
    let before = f.snapshot();
    let out = f.run(&["vm-fresh", "web01"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("error: `"), "{}", stderr(&out));
    assert!(stderr(&out).contains(".sops.yaml"), "{}", stderr(&out));
    f.assert_unchanged(&before, "the run");
}

#[test]
fn a_corrupted_shared_file_stops_the_run_and_changes_nothing() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    // A shared file whose MAC no longer matches: written by hostsmith's engine, then tampered.
    let admin: age::x25519::Identity = admin_identity(&f).lines().find(|l| l.starts_with("AGE-")).expect("id").parse().expect("identity");
    let mut doc = hostsmith::sops::file::Map::new();
    doc.set_path(&["a"], hostsmith::sops::file::Value::Str("one".into())).expect("set");
    doc.set_path(&["b"], hostsmith::sops::file::Value::Str("two".into())).expect("set");
    let text = hostsmith::sops::file::encrypt_new(
        &doc,
        &[vec![admin.to_public().to_string()]],
        &hostsmith::sops::file::EncryptionOptions::default(),
    )
    .expect("encrypt");
    // Swap the two ciphertexts: each still decrypts only under its own path, so tamper the MAC instead.
    let tampered = text.replacen("mac: ENC[AES256_GCM,data:", "mac: ENC[AES256_GCM,data:A", 1);
    std::fs::write(f.dir.join("sops/shared.yaml"), tampered).expect("write");
    let before = f.snapshot();
    let out = f.run(&["vm-fresh", "db01"]);
    // A tampered file is bad input (F19).
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("sops/shared.yaml"), "{}", stderr(&out));
    f.assert_unchanged(&before, "the run");
}

#[test]
fn vm_fresh_without_init_says_what_to_do() {
    let f = TestFleet::new();
    let out = f.run(&["vm-fresh", "web01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("run `hostsmith init`"), "{}", stderr(&out));
}

#[test]
fn adopt_registers_an_existing_machine_from_its_public_key() {
    let f = TestFleet::new();
    f.init_with(&[]);
    let machine = Keypair::generate("root@old").expect("key");
    let out = Test::new(&f)
        .args(&["adopt", "old01", "--pubkey", "-"])
        .stdin(&machine.public_line())
        .stdout(
            "adopted    old01            <FP>  <AGE>\n\
             \x20          deploy keys added: nix-config, nix-secrets\n\
             .sops.yaml: added anchor &old01 under keys\n\
             .sops.yaml: added creation rule ^sops/old01\\.yaml$ for old01\n\
             .sops.yaml: added old01 to the rule for sops/shared.yaml at line 6\n\
             wrote sops/old01.yaml, .sops.yaml, hosts/old01.json\n",
        )
        .run();
    let text = ok(&out);
    assert!(text.contains(&machine.fingerprint()), "{text}");
    let record: serde_json::Value = serde_json::from_str(&f.read("hosts/old01.json")).expect("record");
    assert_eq!(record["fingerprint"], machine.fingerprint());
    assert_eq!(record["age_recipient"], machine.age_recipient().expect("recipient"));
    assert_eq!(record["origin"], "adopted");
    assert!(f.read(".sops.yaml").contains(&format!("&old01 {}", machine.age_recipient().expect("r"))));
    // Rotating gives it a key hostsmith made: the record says so, and keeps the old one.
    ok(&f.run(&["vm-fresh", "--rotate", "old01"]));
    let record: serde_json::Value = serde_json::from_str(&f.read("hosts/old01.json")).expect("record");
    assert_eq!(record["origin"], "generated");
    assert_eq!(record["history"][0]["fingerprint"], machine.fingerprint());
    // An ECDSA key (from the real ssh-keygen) is refused with exit 2.
    let Some(ssh_keygen) = peer("ssh-keygen") else { return };
    let ecdsa = f.tmp.path().join("ecdsa");
    ok(&run(Command::new(ssh_keygen).args(["-q", "-t", "ecdsa", "-N", "", "-f"]).arg(&ecdsa)));
    let out = f.run(&["adopt", "rsa01", "--pubkey", ecdsa.with_extension("pub").to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not ed25519"), "{}", stderr(&out));
    assert!(!f.dir.join("hosts/rsa01.json").exists());
}

#[test]
fn sops_check_passes_on_a_fresh_fleet_and_names_a_broken_anchor() {
    let f = TestFleet::new();
    f.init_with(&["web01", "db01"]);
    let text = ok(&f.run(&["sops", "check"]));
    assert!(text.starts_with("ok: 2 host(s)"), "{text}");
    let record: serde_json::Value = serde_json::from_str(&f.read("hosts/web01.json")).expect("record");
    let recipient = record["age_recipient"].as_str().expect("r");
    let other = age::x25519::Identity::generate().to_public().to_string();
    std::fs::write(f.dir.join(".sops.yaml"), f.read(".sops.yaml").replace(recipient, &other)).expect("write");
    let out = f.run(&["sops", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("host `web01`: .sops.yaml holds"), "{}", stdout(&out));
}

#[test]
fn demo_builds_a_fleet_and_says_where() {
    let f = TestFleet::new();
    let dir = f.tmp.path().join("demo");
    let text = ok(&f.run(&["demo", dir.to_str().expect("utf8")]));
    let canonical = dir.canonicalize().expect("canonical");
    assert!(text.starts_with(&format!("demo fleet: {}\n", canonical.display())), "{text}");
    for h in ["web01", "db01", "mqtt-01"] {
        assert!(dir.join(format!("hosts/{h}.json")).is_file(), "{h}");
        assert!(dir.join(format!("sops/{h}.yaml")).is_file(), "{h}");
        assert!(std::fs::read_to_string(dir.join(format!("seeds/{h}/user-data"))).expect("seed").starts_with("#cloud-config\n"), "{h}");
    }
    // The user's own sops keys were neither read nor created.
    assert!(!f.admin_key_file().exists());
    // A second demo into the same, now non-empty, directory is refused.
    let out = f.run(&["demo", dir.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
}
