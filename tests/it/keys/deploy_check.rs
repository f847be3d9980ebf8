//! `deploy-keys check`: the fleet's deploy keys against the ones on GitHub, through the
//! STAND-IN `gh` (`tests/it/gh_standin.py`, see its header: it emulates `gh api` for
//! `repos/O/R/keys` with pagination and keeps GitHub's side in a JSON file).

use std::path::PathBuf;

use super::deploy::{stand_in_gh, with_stand_in};
use super::record;
use crate::common::{TestFleet, ok, stderr, stdout};
use crate::exact::Test;

/// A fleet with a stand-in GitHub: the `bin` dir holding `gh`, its log and state.
struct Forge {
    bin: PathBuf,
    log: PathBuf,
}

impl Forge {
    fn new(f: &TestFleet) -> Option<Self> {
        let bin = f.tmp.path().join("bin");
        let log = stand_in_gh(&bin, 0)?;
        Some(Self { bin, log })
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.bin.join("gh-state.json")).expect("state")).expect("json")
    }

    fn set_state(&self, v: &serde_json::Value) {
        std::fs::write(self.bin.join("gh-state.json"), v.to_string()).expect("state");
    }

    /// Puts `line`'s key on `repo` as GitHub lists it (no comment).
    fn add(&self, repo: &str, id: u64, title: &str, line: &str, read_only: bool, last_used: Option<&str>) {
        let mut s = self.state();
        let key = line.split(' ').take(2).collect::<Vec<_>>().join(" ");
        let keys = s["repos"][repo].as_array_mut().expect("repo");
        keys.push(serde_json::json!({
            "id": id, "key": key, "url": format!("https://api.github.com/repos/{repo}/keys/{id}"), "title": title,
            "verified": true, "created_at": "2026-06-01T00:00:00Z", "read_only": read_only, "added_by": "alice", "last_used": last_used,
        }));
        self.set_state(&s);
    }

    fn path(&self) -> String {
        format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default())
    }

    fn take_log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text
    }
}

fn key(rec: &serde_json::Value, repo: &str) -> String {
    rec["deploy_keys"][repo].as_str().expect("deploy key").to_string()
}

fn fp(line: &str) -> String {
    hostsmith::deploy_keys::fingerprint_of(line)
}

const LIST: &str = "argv: [api] [--paginate] [-H] [X-GitHub-Api-Version: 2022-11-28]";

/// Three hosts in every state a key can be in, on two repositories listed two keys a page.
fn drifted(f: &TestFleet) -> Option<Forge> {
    f.init_with(&["web01", "web02", "web03"]);
    let gh = Forge::new(f)?;
    let mut s = gh.state();
    s["max_per_page"] = serde_json::json!(2);
    gh.set_state(&s);
    // web01 rotated its nix-config key by hand: the old one is retired, the new one active.
    let old01 = key(&record(f, "web01"), "nix-config");
    ok(&f.run(&["keys", "rotate", "web01", "--deploy", "nix-config"]));
    ok(&f.run(&["deploy-keys", "web01", "--activate", "nix-config"]));
    // web03 has a new key waiting, registered but not activated.
    ok(&f.run(&["keys", "rotate", "web03", "--deploy", "nix-config"]));
    let (r1, r2, r3) = (record(f, "web01"), record(f, "web02"), record(f, "web03"));
    let pending03 = r3["deploy_keys_pending"]["nix-config"].as_str().expect("pending").to_string();
    let stranger = hostsmith::ssh_keys::Keypair::generate("x").expect("key").public_line();
    gh.add("acme/nix-config", 11, "web01-nix-config-deploy", &old01, true, Some("2026-11-02T10:00:00Z"));
    gh.add("acme/nix-config", 12, "web01-nix-config-deploy", &key(&r1, "nix-config"), true, Some("2026-11-30T08:00:00Z"));
    gh.add("acme/nix-config", 13, "\u{1b}]0;pwned\u{7}laptop\u{202e}", &stranger, false, None);
    gh.add("acme/nix-config", 14, "web03-nix-config-deploy", &key(&r3, "nix-config"), true, None);
    gh.add("acme/nix-config", 15, "web03-nix-config-deploy", &pending03, true, None);
    gh.add("acme/nix-secrets", 21, "web01-nix-secrets-deploy", &key(&r1, "nix-secrets"), false, None);
    gh.add("acme/nix-secrets", 22, "web02-nix-secrets-deploy", &key(&r2, "nix-secrets"), true, None);
    gh.add("acme/nix-secrets", 23, "web03-nix-secrets-deploy", &key(&r3, "nix-secrets"), true, Some("2026-11-29T00:00:00Z"));
    Some(gh)
}

#[test]
fn check_reports_every_disagreement_with_github_and_exits_1() {
    let f = TestFleet::new();
    let Some(gh) = drifted(&f) else { return };
    let before = f.snapshot();
    Test::new(&f)
        .args(&["deploy-keys", "check", "--owner", "acme"])
        .env("PATH", &gh.path())
        .stdout(
            "acme/nix-config: web01 active key <FP> registered read-only (key 12, last used <TIME>)\n\
             acme/nix-config: web03 active key <FP> registered read-only (key 14, never used)\n\
             problem: acme/nix-config: web01's retired key <FP> is still registered (key 11, last used <TIME>): once web01 runs with its new key, `gh repo deploy-key delete 11 --repo acme/nix-config`\n\
             problem: acme/nix-config: key 13 \"\\u{1b}]0;pwned\\u{7}laptop\\u{202e}\" (<FP>, added <TIME>, never used) is no key of this fleet: if nobody needs it, `gh repo deploy-key delete 13 --repo acme/nix-config`\n\
             problem: acme/nix-config: web03's new key <FP> is registered (key 15) but web03 does not use it yet: `hostsmith deploy-keys web03 --activate nix-config`\n\
             problem: acme/nix-config: web02's active key <FP> is not registered, so web02 cannot fetch the repository: `hostsmith deploy-keys web02 --register github --repo acme/nix-config`\n\
             acme/nix-secrets: web02 active key <FP> registered read-only (key 22, never used)\n\
             acme/nix-secrets: web03 active key <FP> registered read-only (key 23, last used <TIME>)\n\
             problem: acme/nix-secrets: web01's active key <FP> is registered with write access (key 21): deploy keys of this fleet are read-only; `gh repo deploy-key delete 21 --repo acme/nix-secrets`, then `hostsmith deploy-keys web01 --register github --repo acme/nix-secrets`\n",
        )
        .stderr("error: 5 problem(s) found\n")
        .status(1)
        .run();
    // One paginated listing per repository, and nothing else asked of GitHub.
    assert_eq!(
        gh.take_log(),
        format!("{LIST} [repos/acme/nix-config/keys?per_page=100]\n{LIST} [repos/acme/nix-secrets/keys?per_page=100]\n")
    );
    f.assert_unchanged(&before, "deploy-keys check");
}

#[test]
fn check_json_names_kinds_hosts_and_last_use_and_a_host_filter_keeps_unknown_keys() {
    let f = TestFleet::new();
    let Some(gh) = drifted(&f) else { return };
    let out = with_stand_in(&f, &gh.bin, &["--json", "deploy-keys", "check", "--owner", "acme", "web02"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let kinds: Vec<(String, String)> = v["repositories"]
        .as_array()
        .expect("repos")
        .iter()
        .flat_map(|r| r["problems"].as_array().expect("problems").iter().map(move |p| (r["repo"].to_string(), p["kind"].to_string())))
        .collect();
    assert_eq!(
        kinds,
        [(r#""acme/nix-config""#.to_string(), r#""unknown""#.to_string()), (r#""acme/nix-config""#.into(), r#""missing""#.into())]
    );
    let cfg = &v["repositories"][0];
    assert_eq!(cfg["on_github"], 5);
    assert_eq!(cfg["problems"][0]["github"]["title"], "\\u{1b}]0;pwned\\u{7}laptop\\u{202e}");
    assert_eq!(cfg["problems"][0]["github"]["last_used"], serde_json::Value::Null);
    assert_eq!(cfg["problems"][0]["github"]["read_only"], false);
    assert_eq!(cfg["problems"][1]["host"], "web02");
    assert_eq!(cfg["problems"][1]["fingerprint"], fp(&key(&record(&f, "web02"), "nix-config")).as_str());
    assert_eq!(v["repositories"][1]["matched"][0]["github"]["id"], 22);
    assert_eq!(v["problems"], 2);
    assert!(!stdout(&out).contains("PRIVATE"), "no private key in the report");
}

#[test]
fn check_after_registering_through_gh_is_clean() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let Some(gh) = Forge::new(&f) else { return };
    for repo in ["acme/nix-config", "acme/nix-secrets"] {
        ok(&with_stand_in(&f, &gh.bin, &["deploy-keys", "web01", "--register", "github", "--repo", repo]));
    }
    gh.take_log();
    Test::new(&f)
        .args(&["deploy-keys", "check", "--repo", "acme/nix-config", "--repo", "acme/nix-secrets"])
        .env("PATH", &gh.path())
        .stdout(
            "acme/nix-config: web01 active key <FP> registered read-only (key 1, never used)\n\
             acme/nix-secrets: web01 active key <FP> registered read-only (key 2, never used)\n\
             ok: 2 repositories, 2 key(s) registered read-only as the fleet records them, none unknown\n",
        )
        .run();
    assert_eq!(
        gh.take_log(),
        format!("{LIST} [repos/acme/nix-config/keys?per_page=100]\n{LIST} [repos/acme/nix-secrets/keys?per_page=100]\n")
    );
}

#[test]
fn check_fails_like_gh_for_an_unknown_repository_and_refuses_a_hostile_reply() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let Some(gh) = Forge::new(&f) else { return };
    Test::new(&f)
        .args(&["deploy-keys", "check", "--repo", "acme/nix-config", "--repo", "elsewhere/nix-config"])
        .env("PATH", &gh.path())
        .stderr(
            "error: `gh api --paginate -H 'X-GitHub-Api-Version: 2022-11-28' 'repos/elsewhere/nix-config/keys?per_page=100'` failed: exit status 1:\n  gh: Not Found (HTTP 404)\n  check that `elsewhere/nix-config` exists and that your gh login may read its deploy keys (`gh auth status`; a token needs admin rights on the repository)\n",
        )
        .status(1)
        .run();
    // A key with a terminal escape in it is not a key: nothing of the reply is printed.
    let mut s = gh.state();
    s["repos"]["acme/nix-config"] = serde_json::json!([{ "id": 1, "key": "ssh-ed25519 AAAA\u{1b}[2J", "title": "t", "read_only": true }]);
    gh.set_state(&s);
    Test::new(&f)
        .args(&["deploy-keys", "check", "--repo", "acme/nix-config"])
        .env("PATH", &gh.path())
        .stderr("error: `gh api --paginate -H 'X-GitHub-Api-Version: 2022-11-28' 'repos/acme/nix-config/keys?per_page=100'` failed: its reply is not a list of deploy keys (entry 1: `key` is not an OpenSSH public key); nothing was compared\n")
        .status(1)
        .run();
}

#[test]
fn check_refuses_bad_arguments_before_gh_runs() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let Some(gh) = Forge::new(&f) else { return };
    for (args, message) in [
        (&["deploy-keys", "check"][..], "the following required arguments were not provided"),
        (
            &["deploy-keys", "check", "--repo", "acme/other"],
            "error: no host checked has a deploy key `other` for `acme/other` (they have: nix-config, nix-secrets); name the key with `--deploy NAME`\n",
        ),
        (&["deploy-keys", "check", "--repo", "acme"], "error: `acme` is not a repository: give it as OWNER/NAME, e.g. `acme/nix-config`\n"),
        (
            &["deploy-keys", "check", "--owner", "ac me"],
            "error: `ac me/nix-config` is not a repository: give it as OWNER/NAME, e.g. `acme/nix-config`\n",
        ),
        (&["deploy-keys", "check", "--owner", "acme", "web09"], "error: host `web09` is not in this fleet"),
    ] {
        let out = with_stand_in(&f, &gh.bin, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with(message) || stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    assert_eq!(gh.take_log(), "");
}

#[test]
fn a_host_named_check_is_still_reachable_after_double_dash() {
    let f = TestFleet::new();
    f.init_with(&["check"]);
    let text = ok(&f.run(&["deploy-keys", "--", "check"]));
    assert!(text.starts_with("check-nix-config-deploy  (nix-config, "), "{text}");
}

/// The commands a message says to run (the backticked `gh …` and `hostsmith …`).
fn fixes(message: &str) -> Vec<String> {
    message.split('`').skip(1).step_by(2).filter(|c| c.starts_with("gh ") || c.starts_with("hostsmith ")).map(String::from).collect()
}

#[test]
fn running_the_commands_check_prints_makes_github_and_the_fleet_agree() {
    let f = TestFleet::new();
    let Some(gh) = drifted(&f) else { return };
    std::os::unix::fs::symlink(crate::common::bin(), gh.bin.join("hostsmith")).expect("symlink");
    let mut counts = Vec::new();
    for _ in 0..4 {
        let out = with_stand_in(&f, &gh.bin, &["--json", "deploy-keys", "check", "--owner", "acme"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
        let problems: Vec<String> = v["repositories"]
            .as_array()
            .expect("repos")
            .iter()
            .flat_map(|r| r["problems"].as_array().expect("problems").iter().map(|p| p["message"].as_str().expect("message").to_string()))
            .collect();
        counts.push(problems.len());
        if problems.is_empty() {
            assert_eq!(out.status.code(), Some(0));
            break;
        }
        for cmd in problems.iter().flat_map(|m| fixes(m)) {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", &cmd]).current_dir(&f.dir);
            f.env(&mut c);
            ok(&crate::common::run(c.env("PATH", gh.path())));
        }
    }
    // Activating web03's new key retires its old one, still registered: one more round.
    assert_eq!(counts, [5, 1, 0]);
    let state = gh.state();
    let read_only = |repo: &str| {
        state["repos"][repo].as_array().expect("keys").iter().map(|k| k["read_only"].as_bool().expect("bool")).collect::<Vec<_>>()
    };
    assert_eq!(read_only("acme/nix-config"), [true; 3], "web01, web02, web03: one read-only key each");
    assert_eq!(read_only("acme/nix-secrets"), [true; 3]);
}

#[test]
fn keys_added_and_removed_through_gh_api_are_what_check_sees() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let Some(gh) = Forge::new(&f) else { return };
    let public = key(&record(&f, "web01"), "nix-config");
    let gh_api = |args: &[&str]| {
        let mut c = std::process::Command::new(gh.bin.join("gh"));
        c.arg("api").args(args);
        crate::common::run(&mut c)
    };
    let added = gh_api(&[
        "-X",
        "POST",
        "repos/acme/nix-config/keys",
        "-f",
        "title=by hand",
        "-f",
        &format!("key={public}"),
        "-F",
        "read_only=true",
    ]);
    let id = serde_json::from_slice::<serde_json::Value>(&added.stdout).expect("json")["id"].as_u64().expect("id");
    let check = ["deploy-keys", "check", "--repo", "acme/nix-config"];
    Test::new(&f)
        .args(&check)
        .env("PATH", &gh.path())
        .stdout(&format!(
            "acme/nix-config: web01 active key <FP> registered read-only (key {id}, never used)\nok: 1 repository, 1 key(s) registered read-only as the fleet records them, none unknown\n"
        ))
        .run();
    assert!(gh_api(&["-X", "DELETE", &format!("repos/acme/nix-config/keys/{id}")]).status.success());
    assert_eq!(gh_api(&["-X", "DELETE", &format!("repos/acme/nix-config/keys/{id}")]).status.code(), Some(1), "gone, as on GitHub");
    Test::new(&f)
        .args(&check)
        .env("PATH", &gh.path())
        .stdout("problem: acme/nix-config: web01's active key <FP> is not registered, so web01 cannot fetch the repository: `hostsmith deploy-keys web01 --register github --repo acme/nix-config`\n")
        .stderr("error: 1 problem(s) found\n")
        .status(1)
        .run();
}
