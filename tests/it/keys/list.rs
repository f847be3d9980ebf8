//! `keys list`, `keys show`, `keys public`, `ssh-config`.

use super::{admin_recipient, append_rule, record};
use crate::common::{TestFleet, ok, stderr};
use crate::exact::Test;

/// The table `keys list` must print, built here independently from the records.
fn expected_table(f: &TestFleet, hosts: &[&str]) -> String {
    let mut rows = vec![["HOST", "FINGERPRINT", "AGE RECIPIENT", "DEPLOY KEYS", "CREATED", "ROTATED"].map(String::from)];
    for h in hosts {
        let r = record(f, h);
        let deploy: Vec<&str> = r["deploy_keys"].as_object().expect("map").keys().map(String::as_str).collect();
        rows.push([
            (*h).to_string(),
            r["fingerprint"].as_str().expect("fp").to_string(),
            r["age_recipient"].as_str().expect("r").to_string(),
            deploy.join(","),
            r["created_at"].as_str().expect("created").to_string(),
            r["rotated_at"].as_str().unwrap_or("-").to_string(),
        ]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().expect("rows");
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = (0..5).map(|i| format!("{:<w$}", r[i], w = width(i))).collect();
        out.push_str(&format!("{}  {}\n", cells.join("  "), r[5]));
    }
    out
}

/// The admins section after the table: the fleet's one X25519 admin.
fn admins_section(f: &TestFleet) -> String {
    format!("admins:\n  admin  x25519  {}\n", admin_recipient(f))
}

#[test]
fn keys_list_prints_the_exact_table_and_json() {
    let f = TestFleet::new();
    f.init_with(&["web01", "db01"]);
    let text = ok(&f.run(&["keys", "list"]));
    assert_eq!(text, format!("{}\n{}", expected_table(&f, &["db01", "web01"]), admins_section(&f)));
    let json: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "keys", "list"]))).expect("json");
    let r = record(&f, "db01");
    assert_eq!(
        json["hosts"][0],
        serde_json::json!({
            "name": "db01",
            "fingerprint": r["fingerprint"],
            "age_recipient": r["age_recipient"],
            "deploy_keys": ["nix-config", "nix-secrets"],
            "pending_deploy_keys": [],
            "origin": "generated",
            "created_at": r["created_at"],
            "rotated_at": null,
        })
    );
    assert_eq!(json["hosts"][1]["name"], "web01");
    assert_eq!(json["admins"], serde_json::json!([{"name": "admin", "kind": "x25519", "recipient": admin_recipient(&f)}]));
    assert_eq!(json["problems"], serde_json::json!([]));
}

#[test]
fn keys_list_reports_what_records_rules_and_files_disagree_on() {
    let f = TestFleet::new();
    f.init_with(&["web01", "db01"]);
    // A record without a rule: a host whose .sops.yaml entries were lost.
    let lost = hostsmith::ssh_keys::Keypair::generate("root@lost01").expect("key");
    let mut rec = record(&f, "web01");
    rec["name"] = "lost01".into();
    rec["fingerprint"] = lost.fingerprint().into();
    rec["age_recipient"] = lost.age_recipient().expect("r").into();
    rec["ssh_host_ed25519_public"] = lost.public_line().into();
    std::fs::write(f.dir.join("hosts/lost01.json"), serde_json::to_string_pretty(&rec).expect("json")).expect("write");
    // A rule without a record: an anchor and a rule for a host file, no record.
    let orphan = hostsmith::ssh_keys::Keypair::generate("x").expect("key").age_recipient().expect("r");
    let config = f.read(".sops.yaml");
    let admin_line = config.lines().find(|l| l.starts_with("  - &admin ")).expect("admin anchor").to_string();
    std::fs::write(f.dir.join(".sops.yaml"), config.replace(&admin_line, &format!("{admin_line}\n  - &orphan {orphan}"))).expect("write");
    append_rule(&f, "sops/orphan.yaml", &["admin", "orphan"]);
    // A shared file only the admin can open, although its rule names both hosts.
    let admin = admin_recipient(&f);
    let mut doc = hostsmith::sops::file::Map::new();
    doc.set_path(&["wifi"], hostsmith::sops::file::Value::Str("hunter2".into())).expect("set");
    let text =
        hostsmith::sops::file::encrypt_new(&doc, &[vec![admin]], &hostsmith::sops::file::EncryptionOptions::default()).expect("encrypt");
    std::fs::write(f.dir.join("sops/shared.yaml"), text).expect("write");

    let before = f.snapshot();
    let out = f.run(&["keys", "list"]);
    let text = ok(&out);
    let (table, rest) = text.split_once("\n\n").expect("an admins section");
    assert_eq!(format!("{table}\n"), expected_table(&f, &["db01", "lost01", "web01"]));
    let (admins, problems) = rest.split_once("\n\n").expect("a problems section");
    assert_eq!(format!("{admins}\n"), admins_section(&f));
    let line = |h: &str| {
        let r = record(&f, h);
        format!("`{h}` ({})", r["age_recipient"].as_str().expect("r"))
    };
    let orphan_line = f.read(".sops.yaml").lines().position(|l| l.contains(r"orphan\.yaml")).expect("rule") + 1;
    assert_eq!(
        problems,
        format!(
            "problems (4):\n\
             \x20 - host `lost01` has a record but no creation rule in .sops.yaml matches `sops/lost01.yaml`: run `hostsmith vm-fresh lost01` to add it, or `hostsmith keys delete lost01` to drop the host\n\
             \x20 - line {orphan_line} of .sops.yaml is the creation rule of host `orphan`, which has no record `hosts/orphan.json`: run `hostsmith keys migrate` or `hostsmith adopt orphan`, or remove the rule\n\
             \x20 - `sops/shared.yaml`: {} is in its creation rule but cannot open it: run `hostsmith sops rekey sops/shared.yaml`\n\
             \x20 - `sops/shared.yaml`: {} is in its creation rule but cannot open it: run `hostsmith sops rekey sops/shared.yaml`\n",
            line("web01"),
            line("db01"),
        )
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "keys", "list"]))).expect("json");
    let kinds: Vec<&str> = json["problems"].as_array().expect("list").iter().map(|p| p["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["record_without_rule", "rule_without_record", "recipient_cannot_open", "recipient_cannot_open"]);
    assert_eq!(json["problems"][2]["file"], "sops/shared.yaml");
    f.assert_unchanged(&before, "keys list");
}

#[test]
fn keys_show_and_public_print_the_record() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let r = record(&f, "web01");
    assert_eq!(ok(&f.run(&["keys", "public", "web01"])), format!("{}\n", r["ssh_host_ed25519_public"].as_str().expect("pub")));
    assert_eq!(ok(&f.run(&["keys", "public", "web01", "--age"])), format!("{}\n", r["age_recipient"].as_str().expect("r")));
    assert_eq!(
        ok(&f.run(&["keys", "public", "web01", "--deploy", "nix-config"])),
        format!("{}\n", r["deploy_keys"]["nix-config"].as_str().expect("deploy"))
    );
    Test::new(&f)
        .args(&["keys", "public", "web01", "--deploy", "nope"])
        .stderr(
            "error: host `web01` has no deploy key `nope` (it has: nix-config, nix-secrets); add the repository to \
             `host.deploy_keys` in hostsmith.toml and run `hostsmith vm-fresh web01`\n",
        )
        .status(2)
        .run();
    Test::new(&f)
        .arg("keys")
        .arg("show")
        .arg("ghost")
        .env("HOSTSMITH_FLEET", ".")
        .stderr(
            "error: host `ghost` is not in this fleet (no `hosts/ghost.json`): run `hostsmith vm-fresh ghost` or `hostsmith adopt ghost`\n",
        )
        .status(2)
        .run();

    let out = Test::new(&f)
        .args(&["keys", "show", "web01"])
        .stdout(
            "host           web01\n\
             public key     ssh-ed25519 <KEY> root@web01\n\
             fingerprint    <FP>\n\
             age recipient  <AGE>\n\
             origin         generated\n\
             created        <TIME>\n\
             rotated        never\n\
             host file      sops/web01.yaml\n\
             deploy keys    nix-config    <FP>  web01-nix-config-deploy\n\
             \x20              nix-secrets   <FP>  web01-nix-secrets-deploy\n\
             opens          sops/web01.yaml\n",
        )
        .run();
    let text = ok(&out);
    assert!(text.contains(&format!("fingerprint    {}\n", r["fingerprint"].as_str().expect("fp"))), "{text}");
    let json: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "keys", "show", "web01"]))).expect("json");
    assert_eq!(json["fingerprint"], r["fingerprint"]);
    assert_eq!(json["deploy"][0]["title"], "web01-nix-config-deploy");
    assert_eq!(json["opens"], serde_json::json!(["sops/web01.yaml"]));
}

#[test]
fn ssh_config_prints_one_alias_per_deploy_key() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    assert_eq!(
        ok(&f.run(&["ssh-config", "web01"])),
        "# deploy-key aliases of web01: git clone git@github.com-<repo>:OWNER/<repo>.git\n\
         Host github.com-nix-config\n    HostName github.com\n    User git\n    IdentityFile /root/.ssh/nix-config-deploy\n    IdentitiesOnly yes\n\
         \n\
         Host github.com-nix-secrets\n    HostName github.com\n    User git\n    IdentityFile /root/.ssh/nix-secrets-deploy\n    IdentitiesOnly yes\n"
    );
    let out = f.run(&["ssh-config", "web01", "--key-dir", "/tmp/x\nHost evil"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
