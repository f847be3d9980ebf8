//! `deploy-keys`: printing, and registration through a stand-in for `gh`.
//!
//! GitHub cannot be reached from the tests, so `gh` is a STAND-IN: `tests/it/gh_standin.py`
//! put first on PATH, which records the argv and stdin of every call and answers like the
//! real one (see its header). The tests assert the exact command line real `gh` would get.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{admin, decrypt, fast_sops, record};
use crate::common::{TestFleet, ok, peer, run, stderr};

/// Installs the stand-in `gh` in `dir` with empty `acme/nix-config` and `acme/nix-secrets`
/// repositories; `auth_exit` is what `gh auth status` exits with. Returns the log, or `None`
/// (test skipped) without python3.
pub(crate) fn stand_in_gh(dir: &Path, auth_exit: i32) -> Option<PathBuf> {
    peer("python3")?;
    std::fs::create_dir_all(dir).expect("mkdir");
    let gh = dir.join("gh");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/gh_standin.py"), &gh).expect("copy");
    std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let state = serde_json::json!({ "auth": auth_exit, "repos": { "acme/nix-config": [], "acme/nix-secrets": [] } });
    std::fs::write(dir.join("gh-state.json"), state.to_string()).expect("state");
    Some(dir.join("gh.log"))
}

pub(crate) fn with_stand_in(f: &TestFleet, dir: &Path, args: &[&str]) -> std::process::Output {
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    run(f.cmd(args).env("PATH", path))
}

#[test]
fn deploy_keys_prints_the_public_keys_and_the_steps() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let r = record(&f, "web01");
    let text = ok(&f.run(&["deploy-keys", "web01"]));
    let fp = |repo: &str| hostsmith::deploy_keys::fingerprint_of(r["deploy_keys"][repo].as_str().expect("key"));
    assert!(
        text.starts_with(&format!(
            "web01-nix-config-deploy  (nix-config, {})\n  {}\nweb01-nix-secrets-deploy  (nix-secrets, {})\n  {}\n\nto add them read-only on GitHub",
            fp("nix-config"),
            r["deploy_keys"]["nix-config"].as_str().expect("key"),
            fp("nix-secrets"),
            r["deploy_keys"]["nix-secrets"].as_str().expect("key"),
        )),
        "{text}"
    );
    assert!(text.contains("leave \"Allow write access\" unchecked"), "{text}");
}

#[test]
fn register_github_drives_gh_read_only_and_activates_a_waiting_key() {
    let Some(sops) = fast_sops() else { return };
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let bin = f.tmp.path().join("bin");
    let Some(log) = stand_in_gh(&bin, 0) else { return };
    let old = record(&f, "web01");

    // First registration of the active key.
    let text = ok(&with_stand_in(&f, &bin, &["deploy-keys", "web01", "--register", "github", "--repo", "acme/nix-secrets"]));
    assert!(text.contains("registered web01-nix-secrets-deploy"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        format!(
            "argv: [auth] [status] [--hostname] [github.com]\n\
             argv: [repo] [deploy-key] [add] [-] [--title] [web01-nix-secrets-deploy] [--repo] [acme/nix-secrets]\n\
             stdin:{}\n",
            old["deploy_keys"]["nix-secrets"].as_str().expect("key")
        )
    );
    std::fs::remove_file(&log).expect("rm");

    // A rotated key: the dry run runs nothing; the registration sends the NEW key, then makes
    // it the active one.
    ok(&f.run(&["keys", "rotate", "web01", "--deploy", "nix-config"]));
    let new_public = record(&f, "web01")["deploy_keys_pending"]["nix-config"].as_str().expect("pending").to_string();
    let before = f.snapshot();
    let args = ["deploy-keys", "web01", "--register", "github", "--repo", "acme/nix-config"];
    let dry = ok(&with_stand_in(&f, &bin, &[&args[..], &["--dry-run"]].concat()));
    assert!(dry.contains("would run `gh repo deploy-key add - --title web01-nix-config-deploy --repo acme/nix-config`"), "{dry}");
    assert!(!log.exists(), "a dry run calls no gh");
    f.assert_unchanged(&before, "register --dry-run");
    let text = ok(&with_stand_in(&f, &bin, &args));
    assert!(text.contains("remove the old one"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        format!(
            "argv: [auth] [status] [--hostname] [github.com]\n\
             argv: [repo] [deploy-key] [add] [-] [--title] [web01-nix-config-deploy] [--repo] [acme/nix-config]\n\
             stdin:{new_public}\n"
        )
    );
    let rec = record(&f, "web01");
    assert_eq!(rec["deploy_keys"]["nix-config"], new_public.as_str());
    assert!(rec.get("deploy_keys_pending").is_none());
    let doc = decrypt(&sops, &f, "sops/web01.yaml", &admin(&f)).expect("admin");
    let stored = hostsmith::ssh_keys::Keypair::from_openssh(doc["deploy-keys"]["nix-config"].as_str().expect("key"), None).expect("key");
    assert_eq!(stored.public_line(), new_public);

    // A repository the host has no key for, or a malformed one, is refused before gh runs.
    std::fs::remove_file(&log).expect("rm");
    for (repo, why) in [("acme/other", "no deploy key `other`"), ("acme", "OWNER/NAME"), ("a/b/c", "OWNER/NAME")] {
        let out = with_stand_in(&f, &bin, &["deploy-keys", "web01", "--register", "github", "--repo", repo]);
        assert_eq!(out.status.code(), Some(2), "{repo}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{repo}: {}", stderr(&out));
    }
    assert!(!log.exists());
}

#[test]
fn an_unauthenticated_gh_changes_nothing() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    ok(&f.run(&["keys", "rotate", "web01", "--deploy", "nix-config"]));
    let bin = f.tmp.path().join("bin");
    let Some(log) = stand_in_gh(&bin, 1) else { return };
    let before = f.snapshot();
    let out = with_stand_in(&f, &bin, &["deploy-keys", "web01", "--register", "github", "--repo", "acme/nix-config"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("gh auth login"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "argv: [auth] [status] [--hostname] [github.com]\n");
    f.assert_unchanged(&before, "a failed registration");
}
