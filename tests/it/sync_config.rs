//! `config get|set` (comments kept, unknown keys and bad values refused), the `[sync]`
//! settings as `sync` and `connect` use them, and `audit` reading the log back.

use std::process::Output;

use hostsmith::ssh_keys::Keypair;

use crate::common::{TestFleet, ok, run, stderr, stdout};

fn hs(f: &TestFleet, args: &[&str]) -> Output {
    let mut c = f.cmd(args);
    c.env_remove("XDG_STATE_HOME");
    run(&mut c)
}

/// A port nothing listens on: connecting is refused at once.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("127.0.0.1:{port}")
}

const COMMENTED: &str =
    "# fleet settings\n[sops]\nadmins = [\"admin\"]  # who may decrypt\n\n[sync]\n# how long to wait\ntimeout = 30  # seconds\n";

#[test]
fn set_keeps_comments_and_get_reads_back() {
    let f = TestFleet::new();
    std::fs::write(f.dir.join("hostsmith.toml"), COMMENTED).expect("write");
    ok(&hs(&f, &["config", "set", "sync.timeout", "60"]));
    assert_eq!(f.read("hostsmith.toml"), COMMENTED.replace("timeout = 30", "timeout = 60"));
    assert_eq!(ok(&hs(&f, &["config", "get", "sync.timeout"])), "60\n");
    ok(&hs(&f, &["config", "set", "sync.method", "guest-agent"]));
    ok(&hs(&f, &["config", "set", "sync.auto", "false"]));
    ok(&hs(&f, &["config", "set", "sync.key_command", "vault", "read", "-field=key", "ssh/admin"]));
    let text = f.read("hostsmith.toml");
    assert!(text.starts_with("# fleet settings\n[sops]\nadmins = [\"admin\"]  # who may decrypt\n"), "{text}");
    assert!(text.contains("# how long to wait\ntimeout = 60  # seconds\n"), "{text}");
    assert!(
        text.contains("method = \"guest-agent\"\nauto = false\nkey_command = [\"vault\", \"read\", \"-field=key\", \"ssh/admin\"]\n"),
        "{text}"
    );
    assert_eq!(ok(&hs(&f, &["config", "get", "sync.method"])), "guest-agent\n");
    assert_eq!(ok(&hs(&f, &["config", "get", "sync.key_command"])), "[\"vault\", \"read\", \"-field=key\", \"ssh/admin\"]\n");
    let json: serde_json::Value = serde_json::from_str(&ok(&hs(&f, &["--json", "config", "get", "sync.auto"]))).expect("json");
    assert_eq!(json["value"], false);
    // Unchanged value: the file is not rewritten.
    assert!(ok(&hs(&f, &["config", "set", "sync.timeout", "60"])).contains("already has that value"));
}

#[test]
fn defaults_without_a_file_and_set_creates_one() {
    let f = TestFleet::new();
    assert_eq!(ok(&hs(&f, &["config", "get", "sync.auto"])), "true\n");
    assert_eq!(ok(&hs(&f, &["config", "get", "sync.method"])), "auto\n");
    assert_eq!(ok(&hs(&f, &["config", "get", "sync.timeout"])), "30\n");
    assert_eq!(ok(&hs(&f, &["config", "get", "sync.key_command"])), "[]\n");
    assert_eq!(ok(&hs(&f, &["config", "get", "sops.admins"])), "(not set)\n");
    ok(&hs(&f, &["config", "set", "sync.timeout", "5"]));
    assert_eq!(f.read("hostsmith.toml"), "[sync]\ntimeout = 5\n");
}

#[test]
fn unknown_keys_and_bad_values_are_refused_and_change_nothing() {
    let f = TestFleet::new();
    std::fs::write(f.dir.join("hostsmith.toml"), COMMENTED).expect("write");
    let before = f.snapshot();
    let cases: [&[&str]; 9] = [
        &["set", "sync.autoo", "true"],
        &["set", "sync", "true"],
        &["get", "sync.nope"],
        &["set", "sync.timeout", "0"],
        &["set", "sync.timeout", "ten"],
        &["set", "sync.timeout", "99999"],
        &["set", "sync.method", "run-command"],
        &["set", "sync.auto", "yes"],
        &["set", "sync.key_command", "", "x"],
    ];
    for case in cases {
        let mut args = vec!["config"];
        args.extend_from_slice(case);
        let out = hs(&f, &args);
        assert_eq!(out.status.code(), Some(2), "{case:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(case[1]) || stderr(&out).contains("sync."), "{case:?}: {}", stderr(&out));
    }
    assert!(stderr(&hs(&f, &["config", "set", "sync.autoo", "true"])).contains("known settings: sync.auto, sync.method"));
    f.assert_unchanged(&before, "a refused config set");
}

#[test]
fn a_key_command_is_the_source_of_truth_and_is_validated_like_a_file() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let admin = Keypair::generate("vault-admin").expect("key");
    let good = f.tmp.path().join("vault.pub");
    std::fs::write(&good, admin.public_line() + "\n").expect("write");
    ok(&hs(&f, &["config", "set", "sync.key_command", "cat", good.to_str().expect("utf8")]));
    ok(&hs(&f, &["trust"]));
    let addr = closed_port();
    let out = hs(&f, &["sync", "web01", "--address", &addr, "--timeout", "5"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Reading keys from sync.key_command (cat)... ✓ 1 key"), "{text}");
    assert!(text.contains("✗ failed: ") && text.contains("Connection refused"), "{text}");

    let marker = f.tmp.path().join("pwned");
    let hostile = f.tmp.path().join("hostile.pub");
    let (kind_blob, _) = admin.public_line().rsplit_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).expect("comment");
    std::fs::write(&hostile, format!("{kind_blob} x'; touch {}; '\n", marker.display())).expect("write");
    ok(&hs(&f, &["config", "set", "sync.key_command", "cat", hostile.to_str().expect("utf8")]));
    // A changed command is a new one: it needs trusting again.
    let out = hs(&f, &["sync", "web01", "--address", &addr]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("has not been trusted here"), "{}", stderr(&out));
    ok(&hs(&f, &["trust"]));
    let out = hs(&f, &["sync", "web01", "--address", &addr]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("sync.key_command output line 1"), "{}", stderr(&out));
    assert!(!marker.exists());
}

#[test]
fn audit_lists_filters_and_prints_json() {
    let f = TestFleet::new();
    f.init_with(&["web01", "web02"]);
    let admin = f.tmp.path().join("admin.pub");
    std::fs::write(&admin, Keypair::generate("a").expect("key").public_line()).expect("write");
    let a = admin.to_str().expect("utf8");
    let addr = closed_port();
    ok(&hs(&f, &["sync", "web01", "--method", "skip"]));
    assert_eq!(hs(&f, &["sync", "web02", "--address", &addr, "--key", a, "--timeout", "3"]).status.code(), Some(1));
    assert_eq!(hs(&f, &["sync", "web02", "--user", "bad user", "--key", a]).status.code(), Some(2));

    let all: Vec<serde_json::Value> = serde_json::from_str(&ok(&hs(&f, &["--json", "audit"]))).expect("json");
    assert_eq!(all.iter().map(|e| e["outcome"].as_str().expect("o")).collect::<Vec<_>>(), ["skipped", "failed", "failed"]);
    let failed: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&hs(&f, &["--json", "audit", "--failed", "--host", "web02"]))).expect("json");
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|e| e["host"] == "web02"));
    let last: Vec<serde_json::Value> = serde_json::from_str(&ok(&hs(&f, &["--json", "audit", "--last", "1"]))).expect("json");
    assert_eq!(last[0]["user"], "bad user");
    let text = ok(&hs(&f, &["audit", "--host", "web01"]));
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("web01") && text.contains("skipped"), "{text}");
    assert_eq!(hs(&f, &["audit", "--host", "../x"]).status.code(), Some(2));
    let path = f.home.join(".local/state/hostsmith/audit.jsonl");
    assert_eq!(crate::sync::mode(&path), 0o600);
    assert_eq!(crate::sync::mode(path.parent().expect("dir")), 0o700);
}

#[test]
fn connect_without_sync_prints_the_pinned_command_on_a_dry_run() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    ok(&hs(&f, &["config", "set", "sync.auto", "false"]));
    let addr = closed_port();
    let out = hs(&f, &["connect", "web01", "--address", &addr, "--dry-run", "--", "uptime"]);
    let text = ok(&out);
    assert!(stderr(&out).contains("Skipping key sync (sync.auto = false)"), "{}", stderr(&out));
    assert!(stderr(&out).contains("could not check the host key beforehand"), "{}", stderr(&out));
    assert!(text.starts_with("Would run: ssh -o StrictHostKeyChecking=yes"), "{text}");
    assert!(text.trim_end().ends_with("-l admin 127.0.0.1 uptime"), "{text}");
    let entries = std::fs::read_to_string(f.home.join(".local/state/hostsmith/audit.jsonl")).expect("audit");
    assert!(entries.contains("\"outcome\":\"skipped\"") && entries.contains("\"command\":\"connect\""), "{entries}");
}

#[test]
fn connect_goes_on_when_the_key_source_cannot_be_read_but_not_when_it_is_tampered_with() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let addr = closed_port();
    // The default source, ~/.ssh/id_ed25519.pub, does not exist in this HOME.
    let out = hs(&f, &["connect", "web01", "--address", &addr, "--dry-run"]);
    let text = ok(&out);
    assert!(stderr(&out).contains("Warning: key sync failed (key file"), "{}", stderr(&out));
    assert!(text.starts_with("Would run: ssh "), "{text}");
    let hostile = f.tmp.path().join("hostile.pub");
    let line = Keypair::generate("a").expect("key").public_line();
    std::fs::write(&hostile, format!("{} $(reboot)\n", line.rsplit_once(' ').expect("comment").0)).expect("write");
    let out = hs(&f, &["connect", "web01", "--address", &addr, "--dry-run", "--key", hostile.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!stdout(&out).contains("Would run"));
}
