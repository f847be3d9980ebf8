//! The justfile `init` offers a fleet, run by the real `just`.

use std::path::Path;
use std::process::Command;

use crate::common::{TestFleet, ok, peer, run, stderr, stdout};

/// `just ARGS` from `cwd` with the fleet's environment and HOSTSMITH at the binary under test.
fn just(f: &TestFleet, just: &Path, cwd: &Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(just);
    c.args(args).current_dir(cwd);
    f.env(&mut c);
    c.env("HOSTSMITH", crate::common::bin());
    run(&mut c)
}

const RECIPES: [&str; 7] = ["check", "cloud-init", "default", "deploy-image", "known-hosts", "rekey", "vm-fresh"];

#[test]
fn a_new_fleet_gets_a_justfile_whose_recipes_run_on_it_from_anywhere() {
    let Some(j) = peer("just") else { return };
    let f = TestFleet::new();
    let text = ok(&f.run(&["init"]));
    assert!(text.contains("created .sops.yaml, hostsmith.toml, justfile in `.`\n"), "{text}");
    let listed = ok(&just(&f, &j, &f.dir, &["--list"]));
    for recipe in RECIPES {
        assert!(listed.lines().any(|l| l.trim_start().starts_with(&format!("{recipe} "))), "`{recipe}` missing from:\n{listed}");
    }
    let fmt = just(&f, &j, &f.dir, &["--fmt", "--check", "--unstable"]);
    assert!(fmt.status.success(), "{}{}", stdout(&fmt), stderr(&fmt));
    let elsewhere = f.tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    let justfile = f.dir.join("justfile");
    let justfile = justfile.to_str().expect("utf8");
    ok(&just(&f, &j, &elsewhere, &["-f", justfile, "vm-fresh", "web01"]));
    assert!(f.dir.join("hosts/web01.json").is_file());
    assert!(!elsewhere.join("hosts").exists() && !elsewhere.join(".sops.yaml").exists());
    // An argument is one argv entry: a shell word in it is a (refused) host name, not run.
    let marker = f.tmp.path().join("ran");
    let evil = format!("x;touch {}", marker.display());
    let out = just(&f, &j, &elsewhere, &["-f", justfile, "vm-fresh", &evil]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("host name `x;touch"), "{}", stderr(&out));
    assert!(!marker.exists());
    ok(&just(&f, &j, &elsewhere, &["-f", justfile, "check"]));
    let known = ok(&just(&f, &j, &elsewhere, &["-f", justfile, "known-hosts"]));
    assert!(known.starts_with("web01 ssh-ed25519 "), "{known}");
    let rules = f.read(".sops.yaml");
    std::fs::write(f.dir.join(".sops.yaml"), rules.replace("web01", "web09")).expect("write");
    let out = just(&f, &j, &elsewhere, &["-f", justfile, "check"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("problem: host `web01`: no anchor `&web01` in .sops.yaml"), "{}", stdout(&out));
    std::fs::write(f.dir.join(".sops.yaml"), rules).expect("restore");
    let before = f.snapshot();
    let again = ok(&f.run(&["init"]));
    assert!(again.contains("nothing to do"), "{again}");
    f.assert_unchanged(&before, "a second init");
}

#[test]
fn a_fleet_with_its_own_justfile_gets_hostsmith_just_to_import() {
    let Some(j) = peer("just") else { return };
    let f = TestFleet::new();
    let own = "# mine\nbuild:\n    echo build\n";
    std::fs::write(f.dir.join("Justfile"), own).expect("write");
    let dry = ok(&f.run(&["init", "--dry-run"]));
    assert!(dry.contains("would create .sops.yaml, hostsmith.toml, hostsmith.just in `.`"), "{dry}");
    assert!(!f.dir.join("hostsmith.just").exists() && !f.dir.join(".sops.yaml").exists());
    let text = ok(&f.run(&["init"]));
    assert!(
        text.contains(
            "justfile: add `import 'hostsmith.just'` to `Justfile` for the fleet's recipes (`just check`, `just vm-fresh HOST`)\n"
        ),
        "{text}"
    );
    assert_eq!(f.read("Justfile"), own);
    let json: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "init", "--dry-run"]))).expect("json");
    assert_eq!(json["justfile"]["write"], serde_json::Value::Null, "{json}");
    assert_eq!(json["justfile"]["existing"], "Justfile");
    assert!(json["justfile"]["note"].as_str().is_some_and(|n| n.contains("left as it is")), "{json}");
    // The user imports it: the recipes work beside the user's own.
    std::fs::write(f.dir.join("Justfile"), format!("{own}\nimport 'hostsmith.just'\n")).expect("write");
    let listed = ok(&just(&f, &j, &f.dir, &["--list"]));
    for recipe in ["build", "check", "vm-fresh", "deploy-image", "cloud-init", "rekey", "known-hosts"] {
        assert!(listed.lines().any(|l| l.trim_start().starts_with(&format!("{recipe} "))), "`{recipe}` missing from:\n{listed}");
    }
    let elsewhere = f.tmp.path();
    let justfile = f.dir.join("Justfile");
    ok(&just(&f, &j, elsewhere, &["-f", justfile.to_str().expect("utf8"), "vm-fresh", "db01"]));
    assert!(f.dir.join("hosts/db01.json").is_file());
    ok(&just(&f, &j, elsewhere, &["-f", justfile.to_str().expect("utf8"), "check"]));
    let before = f.snapshot();
    let again = ok(&f.run(&["init"]));
    assert!(again.contains("nothing to do"), "{again}");
    f.assert_unchanged(&before, "a second init");
}

#[test]
fn no_justfile_opts_out() {
    let f = TestFleet::new();
    let text = ok(&f.run(&["init", "--no-justfile"]));
    assert!(text.contains("created .sops.yaml, hostsmith.toml in `.`"), "{text}");
    assert!(!f.dir.join("justfile").exists() && !f.dir.join("hostsmith.just").exists());
}

/// The seed holds the host's private key: the recipe writes it to a private directory under
/// $XDG_RUNTIME_DIR, never into the fleet, and refuses to guess without one.
#[test]
fn the_cloud_init_recipe_keeps_the_seed_out_of_the_fleet() {
    use std::os::unix::fs::PermissionsExt;
    let Some(j) = peer("just") else { return };
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let admin = hostsmith::ssh_keys::Keypair::generate("admin@ws").expect("key");
    let pubfile = f.tmp.path().join("admin.pub");
    std::fs::write(&pubfile, admin.public_line() + "\n").expect("write");
    let runtime = f.tmp.path().join("run");
    std::fs::create_dir(&runtime).expect("mkdir");
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let before = f.snapshot();
    let args = ["cloud-init", "web01", "--authorized-key", pubfile.to_str().expect("utf8")];
    let mut c = Command::new(&j);
    c.args(args).current_dir(&f.dir);
    f.env(&mut c);
    c.env("HOSTSMITH", crate::common::bin()).env("XDG_RUNTIME_DIR", &runtime);
    ok(&run(&mut c));
    let seed = runtime.join("hostsmith/seeds/web01");
    assert!(seed.join("user-data").is_file());
    assert_eq!(std::fs::metadata(&seed).expect("meta").permissions().mode() & 0o777, 0o700);
    f.assert_unchanged(&before, "the cloud-init recipe");
    let mut c = Command::new(&j);
    c.args(args).current_dir(&f.dir);
    f.env(&mut c);
    c.env("HOSTSMITH", crate::common::bin()).env_remove("XDG_RUNTIME_DIR");
    let out = run(&mut c);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("XDG_RUNTIME_DIR: is not set: run hostsmith cloud-init HOST --out DIR instead"), "{}", stderr(&out));
    f.assert_unchanged(&before, "the cloud-init recipe without XDG_RUNTIME_DIR");
}
