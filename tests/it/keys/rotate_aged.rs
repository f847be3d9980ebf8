//! `keys rotate --deploy [REPO] --older-than AGE [HOST…]`: every deploy key past an age gets
//! a new pending key, the existing rotation; keys already waiting are not rotated again.

use super::record;
use crate::common::{TestFleet, ok, stderr};
use crate::exact::Test;

/// Sets `hosts/<host>.json`'s `created_at` to `days` days ago.
fn created_days_ago(f: &TestFleet, host: &str, days: i64) {
    let mut r = record(f, host);
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days);
    r["created_at"] = serde_json::json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    std::fs::write(f.dir.join(format!("hosts/{host}.json")), serde_json::to_string_pretty(&r).expect("json") + "\n").expect("write");
}

/// web01 made 100 days ago; web02 10 days ago, its nix-config key rotated and activated today.
fn aged_fleet() -> TestFleet {
    let f = TestFleet::new();
    f.init_with(&["web01", "web02"]);
    created_days_ago(&f, "web01", 100);
    created_days_ago(&f, "web02", 10);
    ok(&f.run(&["keys", "rotate", "web02", "--deploy", "nix-config"]));
    ok(&f.run(&["deploy-keys", "web02", "--activate", "nix-config"]));
    f
}

#[test]
fn older_than_rotates_only_keys_past_the_age_and_a_rerun_rotates_nothing_twice() {
    let f = aged_fleet();
    let before = f.snapshot();
    Test::new(&f)
        .args(&["keys", "rotate", "--deploy", "--older-than", "90d", "--dry-run"])
        .stdout(
            "would rotate web01 `nix-config`: active since <TIME> (100 days); new key <FP>\n\
             would rotate web01 `nix-secrets`: active since <TIME> (100 days); new key <FP>\n\
             dry run: would rotate 2 deploy key(s) older than 90d; 0 waiting; 2 younger kept\n",
        )
        .run();
    f.assert_unchanged(&before, "--older-than --dry-run");

    let old = record(&f, "web01");
    Test::new(&f)
        .args(&["keys", "rotate", "--deploy", "--older-than", "90d"])
        .stdout(
            "rotated web01 `nix-config`: active since <TIME> (100 days); new key <FP>\n\
             rotated web01 `nix-secrets`: active since <TIME> (100 days); new key <FP>\n\
             rotated 2 deploy key(s) older than 90d; 0 waiting; 2 younger kept\n\
             next: register each new key (`hostsmith deploy-keys HOST --register github --repo OWNER/REPO`), then `hostsmith deploy-keys check --owner OWNER`\n",
        )
        .run();
    let new = record(&f, "web01");
    assert_eq!(new["deploy_keys"], old["deploy_keys"], "the old keys stay active until registered");
    let pending = new["deploy_keys_pending"].as_object().expect("pending");
    assert_eq!(pending.keys().collect::<Vec<_>>(), ["nix-config", "nix-secrets"]);
    assert_ne!(pending["nix-config"], old["deploy_keys"]["nix-config"]);

    // Run again: the waiting keys are not replaced, and nothing changes.
    let before = f.snapshot();
    Test::new(&f)
        .args(&["keys", "rotate", "--deploy", "--older-than", "90d"])
        .stdout(
            "web01 `nix-config`: a new key already waits; register it (`hostsmith deploy-keys web01 --register github --repo OWNER/nix-config`) instead of rotating again\n\
             web01 `nix-secrets`: a new key already waits; register it (`hostsmith deploy-keys web01 --register github --repo OWNER/nix-secrets`) instead of rotating again\n\
             rotated 0 deploy key(s) older than 90d; 2 waiting; 2 younger kept\n",
        )
        .run();
    f.assert_unchanged(&before, "a re-run");

    // Once activated, a key's age starts at its activation, not at the host's creation.
    ok(&f.run(&["deploy-keys", "web01", "--activate", "nix-config"]));
    let r = record(&f, "web01");
    assert_eq!(
        r["deploy_keys_activated"]["nix-config"]["fingerprint"],
        hostsmith::deploy_keys::fingerprint_of(r["deploy_keys"]["nix-config"].as_str().expect("key")).as_str()
    );
    Test::new(&f)
        .args(&["keys", "rotate", "--deploy", "nix-config", "--older-than", "90d", "web01"])
        .stdout("rotated 0 deploy key(s) older than 90d; 0 waiting; 1 younger kept\n")
        .run();
}

#[test]
fn older_than_json_lists_what_rotated_and_why() {
    let f = aged_fleet();
    let out = f.run(&["--json", "keys", "rotate", "--deploy", "nix-secrets", "--older-than", "12w", "web01", "web02"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("json: {}", stderr(&out)));
    assert_eq!(v["older_than_seconds"], 12 * 7 * 86_400);
    assert_eq!(v["rotated"].as_array().expect("rotated").len(), 1);
    assert_eq!(v["rotated"][0]["host"], "web01");
    assert_eq!(v["rotated"][0]["since_source"], "created");
    assert_eq!(v["rotated"][0]["age_seconds"].as_i64().expect("age") / 86_400, 100);
    assert_eq!(v["rotated"][0]["new"]["public"], record(&f, "web01")["deploy_keys_pending"]["nix-secrets"]);
    assert_eq!(v["kept"], 1);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("PRIVATE"));
}

#[test]
fn invalid_ages_and_arguments_exit_2_and_change_nothing() {
    let f = aged_fleet();
    let before = f.snapshot();
    for (args, message) in [
        (
            &["keys", "rotate", "--deploy", "--older-than", "90x"][..],
            "error: `--older-than 90x` is not an age: give a whole number and a unit, e.g. `90d`, `12h` or `2w` (units: m, h, d, w)\n",
        ),
        (
            &["keys", "rotate", "--deploy", "--older-than", "0d"],
            "error: `--older-than 0d` is not an age (it must be more than zero): give a whole number and a unit, e.g. `90d`, `12h` or `2w` (units: m, h, d, w)\n",
        ),
        (
            &["keys", "rotate", "--deploy", "--older-than", "90"],
            "error: `--older-than 90` is not an age: give a whole number and a unit, e.g. `90d`, `12h` or `2w` (units: m, h, d, w)\n",
        ),
        (
            &["keys", "rotate", "--deploy", "nope", "--older-than", "90d"],
            "error: no host has a deploy key `nope`; `hostsmith keys list` shows them\n",
        ),
        (
            &["keys", "rotate", "--deploy", "--older-than", "90d", "web09"],
            "error: host `web09` is not in this fleet (no `hosts/web09.json`): run `hostsmith vm-fresh web09` or `hostsmith adopt web09`\n",
        ),
        (
            &["keys", "rotate", "web01", "web02"],
            "error: name one host: `hostsmith keys rotate HOST`; several hosts go with `--deploy --older-than AGE`\n",
        ),
    ] {
        Test::new(&f).args(args).stderr(message).status(2).run();
    }
    let out = f.run(&["keys", "rotate", "--older-than", "90d"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--deploy"), "{}", stderr(&out));
    f.assert_unchanged(&before, "refused runs");
}

#[test]
fn a_record_whose_time_is_not_a_time_changes_nothing() {
    let f = aged_fleet();
    let mut r = record(&f, "web02");
    r["created_at"] = serde_json::json!("yesterday\u{1b}[2J");
    std::fs::write(f.dir.join("hosts/web02.json"), serde_json::to_string_pretty(&r).expect("json") + "\n").expect("write");
    let before = f.snapshot();
    Test::new(&f)
        .args(&["keys", "rotate", "--deploy", "--older-than", "90d"])
        .stderr("error: `./hosts/web02.json` is not a valid host record: field `created_at` is not an RFC 3339 time like <TIME>: `yesterday\\u{1b}[2J`; restore it from version control\n")
        .status(2)
        .run();
    f.assert_unchanged(&before, "a hostile record");
}

#[test]
fn an_activation_recorded_in_the_future_is_refused_rather_than_keeping_the_key_forever() {
    let f = aged_fleet();
    let mut r = record(&f, "web02");
    r["deploy_keys_activated"]["nix-config"]["activated_at"] = serde_json::json!("2099-01-01T00:00:00Z");
    std::fs::write(f.dir.join("hosts/web02.json"), serde_json::to_string_pretty(&r).expect("json") + "\n").expect("write");
    let before = f.snapshot();
    Test::new(&f)
        .args(&["keys", "rotate", "--deploy", "--older-than", "90d"])
        .stderr(
            "error: host `web02`: its `nix-config` deploy key is recorded as in use since <TIME>, in the future: fix `hosts/web02.json`\n",
        )
        .status(2)
        .run();
    f.assert_unchanged(&before, "a start in the future");
}

#[test]
fn deploy_without_a_name_rotates_every_deploy_key_of_one_host() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    ok(&f.run(&["keys", "rotate", "web01", "--deploy"]));
    let pending = record(&f, "web01")["deploy_keys_pending"].as_object().expect("pending").keys().cloned().collect::<Vec<_>>();
    assert_eq!(pending, ["nix-config", "nix-secrets"]);
}

#[test]
fn a_deploy_key_name_with_a_newline_in_a_record_is_refused_before_anything_runs() {
    let f = aged_fleet();
    let mut r = record(&f, "web01");
    let key = r["deploy_keys"]["nix-config"].clone();
    r["deploy_keys"]["x\nProxyCommand evil"] = key;
    std::fs::write(f.dir.join("hosts/web01.json"), serde_json::to_string_pretty(&r).expect("json") + "\n").expect("write");
    let before = f.snapshot();
    for args in [&["keys", "rotate", "--deploy", "--older-than", "1m"][..], &["deploy-keys", "check", "--owner", "acme"]] {
        Test::new(&f)
            .args(args)
            .stderr("error: `./hosts/web01.json` is not a valid host record: field `deploy_keys` names `x\\nProxyCommand evil`, which is not a repository name; restore it from version control\n")
            .status(2)
            .run();
    }
    f.assert_unchanged(&before, "a hostile deploy key name");
}
