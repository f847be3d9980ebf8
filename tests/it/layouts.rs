//! Fleets whose host files are not `sops/<host>.yaml`: a template (`sops.host_file =
//! "hosts/{host}/secrets.yaml"`), and hosts whose records name their own file
//! (`hosts/<kind>/<host>/secrets.yaml`), through every command, checked with real sops and Nix.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use hostsmith::ssh_keys::Keypair;

use crate::common::{TestFleet, ok, peer, run, stderr};
use crate::keys::{admin, admin_recipient, decrypt, sops_encrypt};

const TEMPLATE: &str = "hosts/{host}/secrets.yaml";

fn record(f: &TestFleet, host: &str) -> serde_json::Value {
    serde_json::from_str(&f.read(&format!("hosts/{host}.json"))).expect("record")
}

/// The age identity sops-nix derives from the host key stored in `rel`.
fn host_identity(sops: &Path, f: &TestFleet, rel: &str) -> String {
    let doc = decrypt(sops, f, rel, &admin(f)).unwrap_or_else(|| panic!("the admin decrypts {rel}"));
    let key = doc["ssh_host_ed25519_key"].as_str().expect("host key");
    Keypair::from_openssh(key, None).expect("key").age_identity().expect("identity").to_string()
}

/// A fleet from `init` whose host files follow [`TEMPLATE`].
fn template_fleet() -> TestFleet {
    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    ok(&f.run(&["config", "set", "sops.host_file", TEMPLATE]));
    f
}

fn exit_code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn vm_fresh_writes_each_host_file_where_the_template_says_and_real_sops_opens_it() {
    let Some(sops) = peer("sops") else { return };
    let f = template_fleet();
    // The fleet's own per-host directories and a shared one sit beside the records.
    crate::common::write(&f.dir.join("hosts/common/default.nix"), "{ }\n");
    let text = ok(&f.run(&["vm-fresh", "web01", "db01"]));
    assert!(text.contains("hosts/web01/secrets.yaml") && text.contains("hosts/db01/secrets.yaml"), "{text}");
    let rules = f.read(".sops.yaml");
    for host in ["web01", "db01"] {
        let rel = format!("hosts/{host}/secrets.yaml");
        assert!(rules.contains(&format!("- path_regex: ^hosts/{host}/secrets\\.yaml$\n")), "{rules}");
        let mode = std::fs::metadata(f.dir.join(format!("hosts/{host}"))).expect("dir").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "hosts/{host}/");
        let id = host_identity(&sops, &f, &rel);
        let by_host = decrypt(&sops, &f, &rel, &id).unwrap_or_else(|| panic!("{host} opens {rel} with its derived identity"));
        assert!(by_host["deploy-keys"]["nix-config"].as_str().is_some_and(|k| k.starts_with("-----BEGIN OPENSSH")), "{by_host}");
        assert_eq!(
            record(&f, host)["age_recipient"],
            Keypair::from_openssh(by_host["ssh_host_ed25519_key"].as_str().expect("key"), None)
                .expect("key")
                .age_recipient()
                .expect("recipient")
        );
        assert!(record(&f, host).get("sops_file").is_none(), "a template host's record names no file");
    }
    assert!(!f.dir.join("sops/web01.yaml").exists(), "nothing at the old place");
    ok(&f.run(&["sops", "check"]));
    let list: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "keys", "list"]))).expect("json");
    assert!(list.to_string().contains("web01") && list.to_string().contains("db01"), "{list}");
    assert_eq!(list["problems"], serde_json::json!([]), "{list}");
    let show: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "keys", "show", "web01"]))).expect("json");
    assert_eq!(show["host_file"], "hosts/web01/secrets.yaml", "{show}");
    // A second run changes nothing.
    let before = f.snapshot();
    ok(&f.run(&["vm-fresh", "web01", "db01"]));
    f.assert_unchanged(&before, "the second run");
}

#[test]
fn rotate_rekey_and_delete_work_on_template_files() {
    let Some(sops) = peer("sops") else { return };
    let f = template_fleet();
    ok(&f.run(&["vm-fresh", "web01", "db01"]));
    let rel = "hosts/web01/secrets.yaml";
    let old_id = host_identity(&sops, &f, rel);
    let old_fp = record(&f, "web01")["fingerprint"].clone();
    ok(&f.run(&["keys", "rotate", "web01"]));
    assert_ne!(record(&f, "web01")["fingerprint"], old_fp);
    let new_id = host_identity(&sops, &f, rel);
    assert!(decrypt(&sops, &f, rel, &new_id).is_some(), "the new key opens the host file");
    assert!(decrypt(&sops, &f, rel, &old_id).is_none(), "the old key no longer does");
    ok(&f.run(&["sops", "check"]));
    ok(&f.run(&["sops", "rekey"]));
    assert!(decrypt(&sops, &f, rel, &new_id).is_some(), "still open after a re-key");

    let db_id = host_identity(&sops, &f, "hosts/db01/secrets.yaml");
    ok(&f.run(&["keys", "delete", "db01", "--yes"]));
    assert!(!f.dir.join("hosts/db01/secrets.yaml").exists() && !f.dir.join("hosts/db01.json").exists());
    assert!(!f.read(".sops.yaml").contains("db01"), "{}", f.read(".sops.yaml"));
    assert!(decrypt(&sops, &f, rel, &db_id).is_none());
    ok(&f.run(&["sops", "check"]));
}

#[test]
fn sops_check_finds_a_template_file_without_a_record() {
    let f = template_fleet();
    ok(&f.run(&["vm-fresh", "web01", "db01"]));
    std::fs::remove_file(f.dir.join("hosts/db01.json")).expect("rm");
    let out = f.run(&["sops", "check"]);
    assert_eq!(exit_code(&out), Some(1), "{}", stderr(&out));
    let text = crate::common::stdout(&out);
    assert!(text.contains("`hosts/db01/secrets.yaml` holds a host key but there is no record `hosts/db01.json`"), "{text}");
}

#[test]
fn a_link_where_a_host_directory_goes_is_refused_and_nothing_is_written_through_it() {
    let f = template_fleet();
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::create_dir_all(f.dir.join("hosts")).expect("mkdir");
    std::os::unix::fs::symlink(&outside, f.dir.join("hosts/web01")).expect("symlink");
    let out = f.run(&["vm-fresh", "web01"]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("hosts/web01"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0, "nothing written outside the fleet");
    assert!(!f.dir.join("hosts/web01.json").exists());
}

#[test]
fn bad_layout_settings_exit_2_naming_the_key() {
    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    for (value, want) in [("hosts/secrets.yaml", "{host}"), ("../{host}.yaml", "inside the fleet"), ("{host}.json", ".yaml")] {
        let out = f.run(&["config", "set", "sops.host_file", value]);
        assert_eq!(exit_code(&out), Some(2), "{value}: {}", stderr(&out));
        assert!(stderr(&out).contains("sops.host_file") && stderr(&out).contains(want), "{value}: {}", stderr(&out));
    }
    ok(&f.run(&["config", "set", "sops.host_dir", "secrets"]));
    let out = f.run(&["config", "set", "sops.host_file", TEMPLATE]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("keep one"), "{}", stderr(&out));
    let out = f.run(&["config", "set", "host.records_dir", "/etc"]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("host.records_dir"), "{}", stderr(&out));
}

/// A fleet laid out `hosts/<kind>/<host>/secrets.yaml` by hand: anchors, rules and host files
/// written with real sops, no records yet.
fn kinds_fleet(sops: &Path) -> (TestFleet, Vec<(&'static str, String)>) {
    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    ok(&f.run(&["config", "set", "sops.host_file", TEMPLATE]));
    let admin = admin_recipient(&f);
    let hosts = [("web01", "prod"), ("db01", "lab")];
    let keys: Vec<Keypair> = hosts.iter().map(|(h, _)| Keypair::generate(&format!("root@{h}")).expect("key")).collect();
    let mut config = format!("keys:\n  - &admin {admin}\n");
    for ((h, _), k) in hosts.iter().zip(&keys) {
        config.push_str(&format!("  - &{h} {}\n", k.age_recipient().expect("recipient")));
    }
    config.push_str("creation_rules:\n");
    let mut files = Vec::new();
    for (h, kind) in hosts {
        config.push_str(&format!(
            "  - path_regex: ^hosts/{kind}/{h}/secrets\\.yaml$\n    key_groups:\n      - age:\n          - *admin\n          - *{h}\n"
        ));
        files.push((h, format!("hosts/{kind}/{h}/secrets.yaml")));
    }
    config.push_str(
        "  - path_regex: ^sops/shared\\.yaml$\n    key_groups:\n      - age:\n          - *admin\n          - *web01\n          - *db01\n",
    );
    std::fs::write(f.dir.join(".sops.yaml"), config).expect("write");
    for ((_, rel), k) in files.iter().zip(&keys) {
        let indented: String = k.openssh_private().expect("private").lines().map(|l| format!("  {l}\n")).collect();
        sops_encrypt(sops, &f, rel, &format!("ssh_host_ed25519_key: |\n{indented}"));
    }
    (f, files)
}

#[test]
fn migrate_records_each_hosts_own_file_and_rotate_re_encrypts_that_file() {
    let Some(sops) = peer("sops") else { return };
    let (f, files) = kinds_fleet(&sops);
    let text = ok(&f.run(&["keys", "migrate"]));
    assert!(text.contains("wrote hosts/web01.json, hosts/db01.json"), "{text}");
    for (h, rel) in &files {
        assert_eq!(record(&f, h)["sops_file"], rel.as_str(), "{h}");
    }
    ok(&f.run(&["sops", "check"]));
    let list: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "keys", "list"]))).expect("json");
    assert_eq!(list["problems"], serde_json::json!([]), "{list}");

    let rel = "hosts/prod/web01/secrets.yaml";
    let old_id = host_identity(&sops, &f, rel);
    let untouched = f.read("hosts/lab/db01/secrets.yaml");
    ok(&f.run(&["keys", "rotate", "web01"]));
    let new_id = host_identity(&sops, &f, rel);
    assert_ne!(old_id, new_id);
    assert!(decrypt(&sops, &f, rel, &new_id).is_some(), "the new key opens hosts/prod/web01/secrets.yaml");
    assert!(decrypt(&sops, &f, rel, &old_id).is_none());
    assert!(!f.dir.join("hosts/web01").exists(), "nothing written at the template's place");
    assert_eq!(f.read("hosts/lab/db01/secrets.yaml"), untouched);
    assert_eq!(record(&f, "web01")["sops_file"], rel, "the record keeps its file");
    ok(&f.run(&["sops", "check"]));
    ok(&f.run(&["sops", "rekey"]));
    // vm-fresh completes a host with its own file where that file is.
    ok(&f.run(&["vm-fresh", "db01"]));
    assert!(!f.dir.join("hosts/db01").exists());
    ok(&f.run(&["keys", "delete", "db01", "--yes"]));
    assert!(!f.dir.join("hosts/lab/db01/secrets.yaml").exists());
    ok(&f.run(&["sops", "check"]));
}

#[test]
fn a_forged_sops_file_is_refused_with_exit_2() {
    let f = template_fleet();
    ok(&f.run(&["vm-fresh", "web01"]));
    let good = f.read("hosts/web01.json");
    let outside = f.tmp.path().join("x.yaml");
    std::fs::write(&outside, "planted: yes\n").expect("write");
    for forged in ["../x.yaml", outside.to_str().expect("utf8"), "hosts/web01/secrets.json", "hosts/./web01.yaml"] {
        let mut r: serde_json::Value = serde_json::from_str(&good).expect("record");
        r["sops_file"] = forged.into();
        std::fs::write(f.dir.join("hosts/web01.json"), serde_json::to_string_pretty(&r).expect("json")).expect("write");
        for args in [&["keys", "rotate", "web01"][..], &["sops", "check"], &["keys", "list"]] {
            let out = f.run(args);
            assert_eq!(exit_code(&out), Some(2), "{forged} {args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains("sops_file"), "{forged} {args:?}: {}", stderr(&out));
        }
    }
    assert_eq!(std::fs::read_to_string(&outside).expect("read"), "planted: yes\n");
}

/// `nix-instantiate --eval --strict --json -E EXPR`.
fn nix_eval(nix: &Path, expr: &str) -> std::process::Output {
    run(Command::new(nix).args(["--eval", "--strict", "--json", "-E", expr]).env("NIX_CONFIG", "build-users-group ="))
}

fn repo() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

/// The NixOS module, called with a `lib` of just what it uses and its own options already
/// set: `sops.defaultSopsFile` as the module computes it.
fn module_sops_file(nix: &Path, fleet: &Path, name: &str, options: &str) -> String {
    // A builtins-only stand-in for the few lib functions the module calls: enough to read
    // the file it gives sops-nix (the real module system is in `nixos_modules`).
    let expr = format!(
        r#"let
          lib = {{
            mkOption = o: o; mkEnableOption = d: d; mkIf = c: v: v; mkMerge = l: l; mkDefault = v: v;
            literalExpression = e: e; optional = c: v: if c then [ v ] else [ ];
            optionalAttrs = c: v: if c then v else {{ }};
            filterAttrs = f: s: builtins.removeAttrs s (builtins.filter (n: !(f n s.${{n}})) (builtins.attrNames s));
            escapeShellArg = s: "'${{s}}'"; makeBinPath = l: ""; concatStringsSep = builtins.concatStringsSep;
            types = {{ str = null; bool = null; path = null; nullOr = t: null; listOf = t: null; strMatching = r: null; }};
            attrNames = builtins.attrNames; listToAttrs = builtins.listToAttrs;
            concatMapStrings = f: l: builtins.concatStringsSep "" (map f l);
          }};
          module = import {repo}/nix/modules/host.nix {{
            inherit lib;
            options = {{ sops = {{ }}; }};
            pkgs = {{ runtimeShell = "/bin/sh"; coreutils = "/c"; diffutils = "/d"; }};
            config = {{
              networking.hostName = "{name}";
              services.cloud-init.enable = false;
              sops.secrets = {{ }};
              fileSystems = {{ }};
              hostsmith.host = {{
                enable = true; name = "{name}"; fleet = {fleet}; hostDir = "sops"; hostFile = null;
                recordsDir = "hosts"; persist = ""; deployKeys = null; knownHosts = false;
              }} // {options};
            }};
          }};
          withSops = builtins.filter (part: part ? sops && part.sops ? defaultSopsFile) module.config;
        in toString (builtins.head withSops).sops.defaultSopsFile"#,
        repo = repo(),
        fleet = fleet.display(),
    );
    let out = nix_eval(nix, &expr);
    serde_json::from_str::<String>(&ok(&out)).expect("string")
}

#[test]
fn the_nix_module_and_lib_pick_each_hosts_file() {
    let Some(nix) = peer("nix-instantiate") else { return };
    let Some(sops) = peer("sops") else { return };
    let (f, _) = kinds_fleet(&sops);
    ok(&f.run(&["keys", "migrate"]));
    ok(&f.run(&["vm-fresh", "app01"]));
    let fleet = f.dir.display().to_string();
    assert_eq!(module_sops_file(&nix, &f.dir, "web01", "{ }"), format!("{fleet}/hosts/prod/web01/secrets.yaml"));
    assert_eq!(
        module_sops_file(&nix, &f.dir, "app01", &format!("{{ hostFile = \"{TEMPLATE}\"; }}")),
        format!("{fleet}/hosts/app01/secrets.yaml")
    );
    assert_eq!(module_sops_file(&nix, &f.dir, "app01", "{ }"), format!("{fleet}/sops/app01.yaml"), "hostDir stays the shorthand");
    // The lib reads only the records, not the hosts' own directories beside them.
    crate::common::write(&f.dir.join("hosts/common/default.nix"), "{ }\n");
    let names = nix_eval(&nix, &format!("builtins.attrNames ((import {}/nix/lib.nix).readHosts {fleet}/hosts)", repo()));
    assert_eq!(ok(&names).trim(), r#"["app01","db01","web01"]"#);
    // A forged sops_file fails evaluation.
    let path = f.dir.join("hosts/web01.json");
    let mut r = record(&f, "web01");
    r["sops_file"] = "../../etc/x.yaml".into();
    std::fs::write(&path, serde_json::to_string_pretty(&r).expect("json")).expect("write");
    let out = nix_eval(&nix, &format!("(import {}/nix/lib.nix).readHosts {fleet}/hosts", repo()));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("field `sops_file`"), "{}", stderr(&out));
}

#[test]
fn records_live_in_records_dir() {
    let f = template_fleet();
    ok(&f.run(&["config", "set", "host.records_dir", "meta/hosts"]));
    let text = ok(&f.run(&["vm-fresh", "web01"]));
    assert!(text.contains("meta/hosts/web01.json"), "{text}");
    assert!(f.dir.join("meta/hosts/web01.json").is_file() && !f.dir.join("hosts/web01.json").exists());
    assert!(f.dir.join("hosts/web01/secrets.yaml").is_file());
    ok(&f.run(&["sops", "check"]));
    let list = ok(&f.run(&["keys", "list"]));
    assert!(list.contains("web01"), "{list}");
    std::fs::remove_file(f.dir.join("meta/hosts/web01.json")).expect("rm");
    let out = f.run(&["sops", "check"]);
    assert!(crate::common::stdout(&out).contains("no record `meta/hosts/web01.json`"), "{}", crate::common::stdout(&out));
}

#[test]
fn a_run_removes_staging_files_a_killed_run_left_in_the_host_directory_it_writes() {
    use std::os::unix::process::ExitStatusExt;
    let staging = |dir: &Path| -> Vec<String> {
        let names = std::fs::read_dir(dir).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned());
        names.filter(|n| n.starts_with(hostsmith::atomic::STAGING_PREFIX)).collect()
    };
    let f = template_fleet();
    ok(&f.run(&["vm-fresh", "web01"]));
    assert_eq!(staging(&f.dir), Vec::<String>::new(), "a run that ends leaves no mark in the fleet");
    // Killed once the new host file is staged in its own directory.
    let killed = run(f.cmd(&["keys", "rotate", "web01"]).env(hostsmith::atomic::CRASH_ENV, "staged:secrets.yaml"));
    assert_eq!(killed.status.signal(), Some(6), "the run stopped at the crash point: {}", stderr(&killed));
    assert_eq!(staging(&f.dir.join("hosts/web01")).len(), 1, "the killed run left its staging directory");
    assert_eq!(staging(&f.dir).len(), 1, "and its mark in the fleet root");
    ok(&f.run(&["keys", "rotate", "web01"]));
    assert_eq!(staging(&f.dir.join("hosts/web01")), Vec::<String>::new(), "the staging directory in hosts/web01/ is gone");
    assert_eq!(staging(&f.dir), Vec::<String>::new(), "and the mark");
}
