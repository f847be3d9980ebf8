//! `hostsmith check`: the fleet's consistency as one exit status, with no key, no network and
//! no write, as the flake's `lib.fleetCheck` runs it on a read-only store copy.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{TestFleet, ok, peer, run, stderr, stdout};

/// A fleet with two hosts, checked clean.
fn fleet() -> TestFleet {
    let f = TestFleet::new();
    f.init_with(&["web01", "db01"]);
    f
}

fn recipient(f: &TestFleet, host: &str) -> String {
    let record: serde_json::Value = serde_json::from_str(&f.read(&format!("hosts/{host}.json"))).expect("json");
    record["age_recipient"].as_str().expect("recipient").to_string()
}

fn edit(f: &TestFleet, rel: &str, from: &str, to: &str) {
    let text = f.read(rel);
    assert!(text.contains(from), "`{from}` not in {rel}:\n{text}");
    std::fs::write(f.dir.join(rel), text.replace(from, to)).expect("write");
}

/// Runs `check`, asserts exit 1 and that stdout has `line`; returns stdout.
#[track_caller]
fn fails_with(f: &TestFleet, line: &str) -> String {
    let out = f.run(&["check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{text}\nstderr:\n{}", stderr(&out));
    assert!(text.lines().any(|l| l == line), "no line `{line}` in:\n{text}");
    let count = text.lines().filter(|l| l.starts_with("problem: ")).count();
    assert_eq!(stderr(&out), format!("error: {count} problem(s) found\n"));
    text
}

#[test]
fn a_clean_fleet_passes_with_a_summary_and_a_json_report() {
    let f = fleet();
    assert_eq!(ok(&f.run(&["check"])), "ok: 2 host(s), 2 file(s): the rules, records and files agree\n");
    let json: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "check"]))).expect("json");
    assert_eq!(json["hosts"], serde_json::json!(["db01", "web01"]));
    assert_eq!(json["files"], serde_json::json!(["sops/db01.yaml", "sops/web01.yaml"]));
    assert_eq!(json["checks"], serde_json::json!(["records", "rules", "host_files", "access"]));
    assert_eq!(json["problems"], serde_json::json!([]));
}

#[test]
fn a_host_missing_from_sops_yaml_fails() {
    let f = fleet();
    edit(&f, ".sops.yaml", "web01", "web09");
    fails_with(&f, "problem: host `web01`: no anchor `&web01` in .sops.yaml; run `hostsmith vm-fresh web01`");
}

#[test]
fn a_record_whose_key_differs_from_the_anchor_fails_and_the_json_names_the_check() {
    let f = fleet();
    let (web, db) = (recipient(&f, "web01"), recipient(&f, "db01"));
    edit(&f, ".sops.yaml", &format!("&web01 {web}"), &format!("&web01 {db}"));
    fails_with(&f, &format!("problem: host `web01`: .sops.yaml holds {db} but the record says {web}"));
    let out = f.run(&["--json", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let problems = json["problems"].as_array().expect("problems");
    let found = problems.iter().find(|p| p["message"].as_str().is_some_and(|m| m.contains("but the record says"))).expect("problem");
    assert_eq!(found["check"], "records");
    assert_eq!(found["host"], "web01");
    assert_eq!(found["file"], "sops/web01.yaml");
    assert!(problems.iter().all(|p| p["check"].is_string() && p["message"].is_string()), "{json}");
}

#[test]
fn a_host_file_encrypted_for_another_host_fails() {
    let f = fleet();
    std::fs::copy(f.dir.join("sops/db01.yaml"), f.dir.join("sops/web01.yaml")).expect("copy");
    let text = fails_with(
        &f,
        "problem: host `web01`: `sops/web01.yaml` is also encrypted for host `db01`, which can then read its private key; run `hostsmith sops rekey sops/web01.yaml` after fixing its rule",
    );
    let db = recipient(&f, "db01");
    assert!(
        text.contains(&format!("problem: `sops/web01.yaml`: `db01` ({db}) can still open it but is not in its creation rule")),
        "{text}"
    );
}

#[test]
fn a_host_files_rule_naming_another_host_fails_before_any_rekey_follows_it() {
    let f = fleet();
    let rules = f.read(".sops.yaml");
    let at = rules.find("^sops/web01\\.yaml$").expect("web01's rule");
    let (head, tail) = rules.split_at(at);
    std::fs::write(f.dir.join(".sops.yaml"), format!("{head}{}", tail.replacen("- *web01", "- *web01\n          - *db01", 1)))
        .expect("write");
    fails_with(
        &f,
        "problem: line 14: the rule for `sops/web01.yaml` also names host `&db01`, which could then read `web01`'s private key: remove `*db01` from it, then `hostsmith sops rekey --rotate-data-key sops/web01.yaml`",
    );
    // sops check says the same.
    let out = f.run(&["sops", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("also names host `&db01`"), "{}", stdout(&out));
}

#[test]
fn a_missing_host_file_fails() {
    let f = fleet();
    std::fs::remove_file(f.dir.join("sops/db01.yaml")).expect("rm");
    fails_with(&f, "problem: host `db01`: its file `sops/db01.yaml` is missing");
}

#[test]
fn an_orphan_host_file_fails() {
    let f = fleet();
    std::fs::copy(f.dir.join("sops/web01.yaml"), f.dir.join("sops/web03.yaml")).expect("copy");
    fails_with(
        &f,
        "problem: `sops/web03.yaml` holds a host key but there is no record `hosts/web03.json`: if an interrupted run on this machine left it, run `hostsmith vm-fresh web03`; if you know where it comes from, `hostsmith vm-fresh --recover web03`; otherwise remove it",
    );
}

/// The admin taken out of web01's rule and the file re-keyed with the real sops: the rule is
/// wrong; with the rule restored, the file is (the admin cannot open it).
#[test]
fn a_host_file_the_admin_cannot_open_fails() {
    let Some(sops) = peer("sops") else { return };
    let f = fleet();
    let rules = f.read(".sops.yaml");
    let web = recipient(&f, "web01");
    let without_admin = rules.replace(
        "^sops/web01\\.yaml$\n    key_groups:\n      - age:\n          - *admin\n",
        "^sops/web01\\.yaml$\n    key_groups:\n      - age:\n",
    );
    assert_ne!(without_admin, rules, "{rules}");
    std::fs::write(f.dir.join(".sops.yaml"), &without_admin).expect("write");
    let mut c = Command::new(&sops);
    c.args(["updatekeys", "-y", "sops/web01.yaml"]).current_dir(&f.dir).env("SOPS_AGE_KEY_FILE", f.admin_key_file());
    f.env(&mut c);
    c.env("SOPS_AGE_KEY_FILE", f.admin_key_file());
    ok(&run(&mut c));
    let admin = std::fs::read_to_string(f.admin_key_file()).expect("admin");
    let admin = admin.lines().find_map(|l| l.strip_prefix("# public key: ")).expect("recipient").to_string();
    assert!(!f.read("sops/web01.yaml").contains(&admin), "sops did not take the admin out");
    assert!(f.read("sops/web01.yaml").contains(&web));
    fails_with(&f, "problem: line 14: admin *admin is missing from the rule for `sops/web01.yaml`");
    std::fs::write(f.dir.join(".sops.yaml"), &rules).expect("restore");
    fails_with(
        &f,
        &format!(
            "problem: `sops/web01.yaml`: `admin` ({admin}) is in its creation rule but cannot open it: run `hostsmith sops rekey sops/web01.yaml`"
        ),
    );
}

#[test]
fn bad_input_exits_2() {
    let f = fleet();
    let toml = f.read("hostsmith.toml");
    std::fs::write(f.dir.join("hostsmith.toml"), format!("{toml}\n[sops\n")).expect("write");
    let out = f.run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("error: configuration `./hostsmith.toml`: "), "{}", stderr(&out));
    std::fs::write(f.dir.join("hostsmith.toml"), toml).expect("restore");
    ok(&f.run(&["check"]));
    edit(&f, ".sops.yaml", "creation_rules:", "creation_rules: [\n");
    let out = f.run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("error: `./.sops.yaml`: "), "{}", stderr(&out));
}

/// Every path below `dir` with its mode, bytes and mtime.
fn listing(dir: &Path) -> Vec<(String, u32, Vec<u8>, std::time::SystemTime)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls") {
            let p = e.expect("entry").path();
            let meta = std::fs::symlink_metadata(&p).expect("meta");
            let bytes = if meta.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).expect("read")
            };
            out.push((p.display().to_string(), meta.permissions().mode(), bytes, meta.modified().expect("mtime")));
        }
    }
    out.sort();
    out
}

fn make_read_only(dir: &Path, write: bool) {
    use std::os::unix::fs::PermissionsExt;
    for (path, mode, ..) in listing(dir).into_iter().rev().chain([(dir.display().to_string(), 0o40755, Vec::new(), std::time::UNIX_EPOCH)])
    {
        let is_dir = mode & 0o40000 != 0;
        let mode = match (is_dir, write) {
            (true, false) => 0o555,
            (false, false) => 0o444,
            (true, true) => 0o755,
            (false, true) => 0o644,
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

fn check_in_sandbox(f: &TestFleet, fleet: &Path, empty: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(crate::common::bin());
    c.arg("--fleet").arg(fleet).args(args).current_dir(empty).env_clear().env("HOME", f.tmp.path().join("no-home")).env("PATH", empty);
    run(&mut c)
}

#[test]
fn a_read_only_copy_without_home_keys_or_peers_is_checked_without_a_write() {
    let f = fleet();
    let copy = f.tmp.path().join("store-copy");
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(&f.dir).arg(&copy);
    ok(&run(&mut cp));
    make_read_only(&copy, false);
    let empty = f.tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let before = (listing(&copy), listing(f.tmp.path()));
    let out = check_in_sandbox(&f, &copy, &empty, &["check"]);
    assert_eq!(stdout(&out), "ok: 2 host(s), 2 file(s): the rules, records and files agree\n", "{}", stderr(&out));
    assert!(out.status.success());
    let json = check_in_sandbox(&f, &copy, &empty, &["--json", "check"]);
    assert!(json.status.success(), "{}", stderr(&json));
    assert_eq!(listing(&copy), before.0, "check changed the fleet");
    assert_eq!(listing(f.tmp.path()), before.1, "check wrote something (state, HOME)");
    assert!(!f.tmp.path().join("no-home").exists());
    // A problem in the read-only copy is still found.
    make_read_only(&copy, true);
    std::fs::remove_file(copy.join("sops/db01.yaml")).expect("rm");
    make_read_only(&copy, false);
    let out = check_in_sandbox(&f, &copy, &empty, &["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("problem: host `db01`: its file `sops/db01.yaml` is missing\n"), "{}", stdout(&out));
    make_read_only(&copy, true);
}

#[test]
fn sops_check_reports_what_check_reports_of_the_rules() {
    let f = fleet();
    std::fs::remove_file(f.dir.join("sops/db01.yaml")).expect("rm");
    let out = f.run(&["sops", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "problem: host `db01`: its file `sops/db01.yaml` is missing\n");
}
