//! The Nix side, with Debian's Nix 2.8 and no network: every file parses, the builtins-only
//! `lib` evaluates against a fleet hostsmith made, and (when a nixpkgs `lib` is supplied
//! through HOSTSMITH_NIXPKGS_LIB) the NixOS modules evaluate to what closes the race.
//! Also the justfile: `just --list` and `just demo`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestFleet, ok, peer, run, stderr};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("ls") {
        let p = e.expect("entry").path();
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        if p.is_dir() && !name.starts_with('.') && name != "target" {
            nix_files(&p, out);
        } else if name.ends_with(".nix") {
            out.push(p);
        }
    }
}

/// `nix-instantiate --eval --strict --json -E EXPR`, parsed.
fn eval(nix: &Path, expr: &str) -> serde_json::Value {
    let out = run(Command::new(nix).args(["--eval", "--strict", "--json", "-E", expr]).env("NIX_CONFIG", "build-users-group ="));
    serde_json::from_str(&ok(&out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(&out)))
}

#[test]
fn every_nix_file_parses() {
    let Some(nix) = peer("nix-instantiate") else { return };
    let mut files = Vec::new();
    nix_files(&repo(), &mut files);
    assert!(files.len() >= 6, "{files:?}");
    for f in files {
        let out = run(Command::new(&nix).arg("--parse").arg(&f).env("NIX_CONFIG", "build-users-group ="));
        assert!(out.status.success(), "{}: {}", f.display(), stderr(&out));
    }
}

#[test]
fn the_flake_lock_pins_a_real_nixpkgs_revision() {
    let lock: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(repo().join("flake.lock")).expect("lock")).expect("json");
    let locked = &lock["nodes"]["nixpkgs"]["locked"];
    assert_eq!(locked["type"], "github");
    assert_eq!(locked["rev"].as_str().expect("rev").len(), 40);
    assert!(locked["narHash"].as_str().expect("narHash").starts_with("sha256-"));
    assert!(locked["lastModified"].as_u64().expect("lastModified") > 1_600_000_000);
    assert_eq!(lock["nodes"]["root"]["inputs"]["nixpkgs"], "nixpkgs");
}

#[test]
fn the_builtins_only_lib_gives_the_fleets_known_hosts() {
    let Some(nix) = peer("nix-instantiate") else { return };
    let f = TestFleet::new();
    f.init_with(&["web01", "db01"]);
    // An address recorded for one host, as deploy-image records it.
    let path = f.dir.join("hosts/web01.json");
    let mut record: serde_json::Value = serde_json::from_str(&f.read("hosts/web01.json")).expect("record");
    record["addresses"] = serde_json::json!(["192.0.2.10", "[2001:db8::10]:2222"]);
    std::fs::write(&path, serde_json::to_string_pretty(&record).expect("json")).expect("write");

    let got = eval(&nix, &format!("(import {}/nix/lib.nix).knownHosts {}/hosts", repo().display(), f.dir.display()));
    let key = |h: &str| -> String {
        let r: serde_json::Value = serde_json::from_str(&f.read(&format!("hosts/{h}.json"))).expect("record");
        r["ssh_host_ed25519_public"].as_str().expect("key").to_string()
    };
    let want = serde_json::json!({
        "db01": { "hostNames": ["db01"], "publicKey": key("db01") },
        "web01": { "hostNames": ["web01", "192.0.2.10", "[2001:db8::10]:2222"], "publicKey": key("web01") },
    });
    assert_eq!(got, want);
    // The same pins as `hostsmith known-hosts`.
    let lines = ok(&f.run(&["known-hosts"]));
    assert!(lines.contains("web01,192.0.2.10,[2001:db8::10]:2222 ssh-ed25519 "), "{lines}");
}

/// F03/F06 on the Nix side: a forged record fails evaluation, naming the file, instead of
/// putting a wildcard line into `programs.ssh.knownHosts` or a host block into ssh_config.
#[test]
fn f03_the_nix_lib_refuses_a_forged_record() {
    let Some(nix) = peer("nix-instantiate") else { return };
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let path = f.dir.join("hosts/web01.json");
    let good = f.read("hosts/web01.json");
    let forge = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut record: serde_json::Value = serde_json::from_str(&good).expect("record");
        edit(&mut record);
        std::fs::write(&path, serde_json::to_string_pretty(&record).expect("json")).expect("write");
        let expr = format!("(import {}/nix/lib.nix).knownHosts {}/hosts", repo().display(), f.dir.display());
        let out = run(Command::new(&nix).args(["--eval", "--strict", "--json", "-E", &expr]).env("NIX_CONFIG", "build-users-group ="));
        assert!(!out.status.success(), "a forged record evaluated: {}", String::from_utf8_lossy(&out.stdout));
        stderr(&out)
    };
    let err = forge(&|r| r["name"] = "web01\n* ssh-ed25519 ATTACKER\n@cert-authority *".into());
    assert!(err.contains("hostsmith: hosts/web01.json is not a valid host record: field `name` is not the host name `web01`"), "{err}");
    let err = forge(&|r| r["deploy_keys"]["x\n  ProxyCommand touch /tmp/pwned"] = "ssh-ed25519 AAAA".into());
    assert!(err.contains("field `deploy_keys`"), "{err}");
    let err = forge(&|r| {
        let line = r["ssh_host_ed25519_public"].as_str().expect("key").to_string();
        r["ssh_host_ed25519_public"] = format!("{line}\n@cert-authority * ssh-ed25519 AAAA").into();
    });
    assert!(err.contains("field `ssh_host_ed25519_public`"), "{err}");
    let err = forge(&|r| r["addresses"] = serde_json::json!(["10.0.0.1 evil"]));
    assert!(err.contains("field `addresses`"), "{err}");
}

/// Option declarations standing in for nixpkgs' openssh, cloud-init, systemd and ssh options
/// and for sops-nix: just enough for the modules to evaluate with `lib.evalModules`.
const STAND_INS: &str = r#"
  { lib, ... }: with lib; {
    options = {
      networking.hostName = mkOption { type = types.str; default = "web01"; };
      services.openssh.enable = mkOption { type = types.bool; default = false; };
      services.qemuGuest.enable = mkOption { type = types.bool; default = false; };
      services.openssh.hostKeys = mkOption { type = types.listOf (types.attrsOf types.str); default = [ ]; };
      services.cloud-init.enable = mkOption { type = types.bool; default = false; };
      services.cloud-init.network.enable = mkOption { type = types.bool; default = false; };
      services.cloud-init.settings = mkOption { type = types.attrsOf types.anything; default = { }; };
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule {
          options = {
            after = mkOption { type = types.listOf types.str; default = [ ]; };
            wants = mkOption { type = types.listOf types.str; default = [ ]; };
          };
        });
        default = { };
      };
      sops.age.sshKeyPaths = mkOption { type = types.listOf types.str; default = [ ]; };
      sops.defaultSopsFile = mkOption { type = types.path; };
      sops.secrets = mkOption { type = types.attrsOf (types.attrsOf types.str); default = { }; };
      programs.ssh.extraConfig = mkOption { type = types.lines; default = ""; };
      programs.ssh.knownHosts = mkOption { type = types.attrsOf types.anything; default = { }; };
    };
  }
"#;

#[test]
fn the_nixos_modules_evaluate_to_what_closes_the_race() {
    let Some(lib) = std::env::var_os("HOSTSMITH_NIXPKGS_LIB") else {
        eprintln!("skipped: set HOSTSMITH_NIXPKGS_LIB to a nixpkgs `lib` directory to evaluate the NixOS modules");
        return;
    };
    let Some(nix) = peer("nix-instantiate") else { return };
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let expr = format!(
        r#"let
          lib = import {lib};
          standIns = {STAND_INS};
          host = lib.evalModules {{ modules = [ standIns {repo}/nix/modules/host.nix {{
            hostsmith.host = {{ enable = true; fleet = {fleet}; persist = "/persist"; }};
          }} ]; }};
          tpl = lib.evalModules {{ modules = [ standIns {repo}/nix/modules/cloud-init-template.nix ]; }};
        in {{
          hostKeys = host.config.services.openssh.hostKeys;
          sshKeyPaths = host.config.sops.age.sshKeyPaths;
          defaultSopsFile = toString host.config.sops.defaultSopsFile;
          secrets = host.config.sops.secrets;
          extraConfig = host.config.programs.ssh.extraConfig;
          knownHostNames = builtins.attrNames host.config.programs.ssh.knownHosts;
          templateInit = tpl.config.services.cloud-init.settings.cloud_init_modules;
          templateConfig = tpl.config.services.cloud-init.settings.cloud_config_modules;
          templateHostKeys = tpl.config.services.openssh.hostKeys;
          sshdAfter = tpl.config.systemd.services.sshd.after;
          deleteKeys = tpl.config.services.cloud-init.settings.ssh_deletekeys;
        }}"#,
        lib = Path::new(&lib).display(),
        repo = repo().display(),
        fleet = f.dir.display(),
    );
    let got = eval(&nix, &expr);
    assert_eq!(got["hostKeys"], serde_json::json!([{ "path": "/persist/etc/ssh/ssh_host_ed25519_key", "type": "ed25519" }]));
    assert_eq!(got["sshKeyPaths"], serde_json::json!(["/persist/etc/ssh/ssh_host_ed25519_key"]));
    assert!(got["defaultSopsFile"].as_str().expect("path").ends_with("/sops/web01.yaml"), "{got}");
    assert_eq!(
        got["secrets"]["deploy-keys/nix-config"],
        serde_json::json!({ "key": "deploy-keys/nix-config", "path": "/root/.ssh/nix-config-deploy", "mode": "0400", "owner": "root" })
    );
    assert!(got["extraConfig"].as_str().expect("cfg").contains("Host github.com-nix-secrets\n  HostName github.com\n"), "{got}");
    assert_eq!(got["knownHostNames"], serde_json::json!(["web01"]));
    let init = got["templateInit"].as_array().expect("list");
    assert_eq!(init.last(), Some(&serde_json::json!("ssh")), "ssh runs in the init stage, before sshd");
    assert!(!got["templateConfig"].as_array().expect("list").contains(&serde_json::json!("ssh")));
    assert_eq!(got["sshdAfter"], serde_json::json!(["cloud-init.service"]));
    assert_eq!(got["deleteKeys"], true);
    assert_eq!(got["templateHostKeys"], serde_json::json!([{ "path": "/etc/ssh/ssh_host_ed25519_key", "type": "ed25519" }]));
}

#[test]
fn just_lists_every_recipe_and_runs_the_demo() {
    let Some(just) = peer("just") else { return };
    let listed = ok(&run(Command::new(&just).arg("--list").current_dir(repo())));
    for recipe in ["vm-fresh", "deploy-image", "cloud-init", "demo", "test", "e2e", "bench", "lint", "fmt", "rekey", "check"] {
        assert!(listed.lines().any(|l| l.trim_start().starts_with(recipe)), "`{recipe}` missing from:\n{listed}");
    }
    let fmt = run(Command::new(&just).args(["--fmt", "--check", "--unstable"]).current_dir(repo()));
    assert!(fmt.status.success(), "{}", stderr(&fmt));
    let f = TestFleet::new();
    let dir = f.tmp.path().join("demo");
    let mut demo = Command::new(&just);
    demo.args(["demo", dir.to_str().expect("utf8")]).current_dir(repo()).env("HOSTSMITH_BIN", crate::common::bin());
    f.env(&mut demo);
    let text = ok(&run(&mut demo));
    assert!(text.contains("demo fleet: "), "{text}");
    assert!(dir.join("hosts/web01.json").is_file());
}
