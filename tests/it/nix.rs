//! The Nix side, with Debian's Nix 2.8 and no network: every file parses, the builtins-only
//! `lib` evaluates against a fleet hostsmith made and agrees with `hostsmith known-hosts`,
//! the flake and its checks evaluate without reading any derivation's output, and the
//! committed fleet the checks use is one hostsmith accepts. (The NixOS modules themselves
//! need a nixpkgs `lib`: see `nixos_modules`.) Also the justfile: `just --list` and
//! `just demo`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestFleet, ok, peer, run, stderr, stdout};

pub(crate) fn repo() -> PathBuf {
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
pub(crate) fn eval(nix: &Path, expr: &str) -> serde_json::Value {
    let out = run(Command::new(nix).args(["--eval", "--strict", "--json", "-E", expr]).env("NIX_CONFIG", "build-users-group ="));
    serde_json::from_str(&ok(&out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(&out)))
}

/// Evaluates `expr` as a flake user's CI would with import-from-derivation off: derivations
/// are instantiated (read-write mode), and reading one's output fails the evaluation.
fn eval_without_ifd(nix: &Path, expr: &str) -> std::process::Output {
    run(Command::new(nix)
        .args(["--eval", "--strict", "--json", "--read-write-mode", "--option", "allow-import-from-derivation", "false", "-E", expr])
        .env("NIX_CONFIG", "build-users-group ="))
}

fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
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

/// Replaces the `addresses` of `host`'s record, as deploy-image records them.
fn set_addresses(f: &TestFleet, host: &str, addresses: &[&str]) {
    let rel = format!("hosts/{host}.json");
    let mut record: serde_json::Value = serde_json::from_str(&f.read(&rel)).expect("record");
    record["addresses"] = serde_json::json!(addresses);
    std::fs::write(f.dir.join(rel), serde_json::to_string_pretty(&record).expect("json")).expect("write");
}

/// The known_hosts lines `lib.knownHosts` gives (names, then the key without its comment).
fn nix_known_hosts(nix: &Path, hosts: &Path) -> Vec<String> {
    let got = eval(nix, &format!("(import {}/nix/lib.nix).knownHosts {}", repo().display(), hosts.display()));
    let mut lines: Vec<String> = got
        .as_object()
        .expect("attrs")
        .values()
        .map(|h| {
            let names: Vec<&str> = h["hostNames"].as_array().expect("names").iter().map(|n| n.as_str().expect("name")).collect();
            let key: Vec<&str> = h["publicKey"].as_str().expect("key").split_whitespace().take(2).collect();
            format!("{} {}", names.join(","), key.join(" "))
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn lib_host_names_agree_with_hostsmith_known_hosts_on_every_address_form() {
    let Some(nix) = peer("nix-instantiate") else { return };
    let Some(keygen) = peer("ssh-keygen") else { return };
    let f = TestFleet::new();
    f.init_with(&["web01", "db01", "edge"]);
    let web01 = [
        "web01",
        "192.0.2.10",
        "192.0.2.10:22",
        "192.0.2.11:2222",
        "2001:db8::5",
        "[2001:db8::6]",
        "[2001:db8::7]:22",
        "[2001:db8::8]:2222",
        "web01.example.org:022",
    ];
    set_addresses(&f, "web01", &web01);
    set_addresses(&f, "db01", &["[::1]:2200", "db01.example.org", "10.0.0.9:65535"]);
    let nix_lines = nix_known_hosts(&nix, &f.dir.join("hosts"));
    let mut ours: Vec<String> = ok(&f.run(&["known-hosts"])).lines().map(str::to_string).collect();
    ours.sort();
    assert_eq!(nix_lines, ours);
    let web = nix_lines.iter().find(|l| l.starts_with("web01,")).expect("web01");
    assert!(
        web.starts_with(
            "web01,192.0.2.10,[192.0.2.11]:2222,2001:db8::5,2001:db8::6,2001:db8::7,[2001:db8::8]:2222,web01.example.org ssh-ed25519 "
        ),
        "{web}"
    );
    // OpenSSH finds each host under each of its names in what the Nix lib wrote.
    let known = f.tmp.path().join("known_hosts");
    std::fs::write(&known, nix_lines.join("\n") + "\n").expect("write");
    for name in ["web01", "192.0.2.10", "[192.0.2.11]:2222", "2001:db8::5", "[2001:db8::8]:2222", "[::1]:2200", "[10.0.0.9]:65535", "edge"]
    {
        let found = run(Command::new(&keygen).arg("-F").arg(name).arg("-f").arg(&known));
        assert!(found.status.success() && !found.stdout.is_empty(), "ssh-keygen -F {name}: {}", stderr(&found));
    }
}

/// The start of an expression over the flake's outputs on a stand-in nixpkgs
/// (tests/fixtures/stub-nixpkgs.nix): `stub` is the stand-in, `self` the flake's outputs.
/// `lib` is a nixpkgs lib directory, or none.
fn flake_prelude(lib: Option<&Path>) -> String {
    let lib_arg = lib.map_or_else(String::new, |l| format!("lib = import {};", l.display()));
    format!(
        "let
          stub = import {stub} {{ {lib_arg} }};
          flake = import {repo}/flake.nix;
          self = flake.outputs {{ inherit self; nixpkgs = stub; }} // {{ outPath = {repo}; }};
        in ",
        stub = fixture("stub-nixpkgs.nix").display(),
        repo = repo().display(),
    )
}

/// The flake's apps, formatter and checks, to evaluate with `--option
/// allow-import-from-derivation false`. Without a nixpkgs `lib` the `modules` check, which
/// evaluates NixOS modules, is left out.
fn flake_expr(lib: Option<&Path>) -> String {
    let skip = if lib.is_some() { "" } else { r#""modules""# };
    format!(
        r#"{prelude}let s = "x86_64-linux"; in {{
          apps = builtins.mapAttrs (n: a: {{ inherit (a) type program; description = a.meta.description; }}) self.apps.${{s}};
          formatter = self.formatter.${{s}}.name;
          checks = builtins.mapAttrs (n: c: c.drvPath) (builtins.removeAttrs self.checks.${{s}} [ {skip} ]);
          modules = builtins.attrNames self.nixosModules;
        }}"#,
        prelude = flake_prelude(lib),
    )
}

#[test]
fn the_flake_and_its_checks_evaluate_without_import_from_derivation() {
    let Some(nix) = peer("nix-instantiate") else { return };
    // The option is in force: reading a derivation's output fails the evaluation.
    let canary = eval_without_ifd(&nix, r#"builtins.readFile (derivation { name = "x"; system = "x86_64-linux"; builder = "/bin/sh"; })"#);
    assert!(!canary.status.success() && stderr(&canary).contains("allow-import-from-derivation"), "{}", stderr(&canary));

    let lib = std::env::var_os("HOSTSMITH_NIXPKGS_LIB").map(PathBuf::from);
    let out = eval_without_ifd(&nix, &flake_expr(lib.as_deref()));
    let got: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    let apps = got["apps"].as_object().expect("apps");
    assert_eq!(apps.keys().collect::<Vec<_>>(), ["check", "default", "deploy-image", "vm-fresh"]);
    for (name, app) in apps {
        assert_eq!(app["type"], "app", "{name}");
        assert!(app["description"].as_str().is_some_and(|d| d.len() > 10), "{name} has no meta.description: {app}");
        assert!(app["program"].as_str().expect("program").starts_with("/nix/store/"), "{name}: {app}");
    }
    // The stand-in's deprecated spellings (`pkgs.system`, `nixfmt-rfc-style`) throw: none is used.
    assert_eq!(got["formatter"], "nixfmt");
    let checks = got["checks"].as_object().expect("checks");
    let mut want = vec!["clippy", "first-boot", "fleet", "fmt", "package"];
    if lib.is_some() {
        want.push("modules");
        want.sort_unstable();
    } else {
        eprintln!("the `modules` check evaluates NixOS modules: set HOSTSMITH_NIXPKGS_LIB to include it (developer machines)");
    }
    assert_eq!(checks.keys().collect::<Vec<_>>(), want);
    for (name, drv) in checks {
        assert!(drv.as_str().is_some_and(|d| d.ends_with(".drv")), "{name}: {drv}");
    }
    assert_eq!(got["modules"], serde_json::json!(["cloud-init-template", "default", "host"]));
}

/// `lib.fleetCheck`'s build script, run as the Nix builder would run it (bash, `$out`, the
/// fleet copied into the store), with the hostsmith under test.
fn run_fleet_check(nix: &Path, fleet: &Path, out: &Path) -> std::process::Output {
    let expr = format!(
        "{prelude}(self.lib.fleetCheck {{ pkgs = stub.legacyPackages.x86_64-linux; fleet = {fleet}; }}).script",
        prelude = flake_prelude(None),
        fleet = fleet.display(),
    );
    let script = eval_without_ifd(nix, &expr);
    let script: String = serde_json::from_str(&ok(&script)).expect("a string");
    let tmp = tempfile::tempdir().expect("tmp");
    let bin = crate::common::bin();
    let path = format!("{}:{}", bin.parent().expect("dir").display(), std::env::var("PATH").unwrap_or_default());
    run(Command::new("bash").args(["-euc", &script]).env_clear().env("PATH", path).env("out", out).env("TMPDIR", tmp.path()))
}

#[test]
fn lib_fleet_check_passes_the_committed_fleet_and_fails_a_broken_one() {
    let Some(nix) = peer("nix-instantiate") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let good = run_fleet_check(&nix, &fixture("nix-fleet"), &tmp.path().join("good"));
    assert!(good.status.success(), "{}\n{}", stdout(&good), stderr(&good));
    let log = std::fs::read_to_string(tmp.path().join("good")).expect("$out");
    assert!(log.starts_with("ok: 2 host(s)"), "{log}");

    // A fleet whose .sops.yaml lost a host's anchor: the build fails, saying which and why.
    let broken = tmp.path().join("fleet");
    let cp = run(Command::new("cp").arg("-a").arg(fixture("nix-fleet")).arg(&broken));
    assert!(cp.status.success(), "{}", stderr(&cp));
    let rules = std::fs::read_to_string(broken.join(".sops.yaml")).expect("rules");
    let cut: String = rules.lines().filter(|l| !l.contains("&db01")).map(|l| format!("{l}\n")).collect();
    std::fs::write(broken.join(".sops.yaml"), cut.replace("*db01", "*admin")).expect("write");
    let bad = run_fleet_check(&nix, &broken, &tmp.path().join("bad"));
    assert!(!bad.status.success());
    assert!(stdout(&bad).contains("host `db01`: no anchor `&db01` in .sops.yaml"), "{}\n{}", stdout(&bad), stderr(&bad));
}

/// `nix/package.nix` applied to builtins-only stand-ins for the nixpkgs functions it calls,
/// on a build platform that can (or cannot) run what it builds: the `postInstall` it gives.
fn package_post_install(nix: &Path, can_execute: bool) -> String {
    let expr = format!(
        r#"let
          lib = {{
            importTOML = f: builtins.fromTOML (builtins.readFile f);
            fileset = {{ toSource = _: "/stub/src"; unions = l: l; }};
            optionalString = c: s: if c then s else "";
            makeBinPath = l: builtins.concatStringsSep ":" (map (p: "${{p}}/bin") l);
            licenses.mit = "mit"; platforms.linux = [ ];
          }};
          platform = {{ canExecute = _: {can_execute}; }};
          package = import {repo}/nix/package.nix {{
            inherit lib;
            stdenv = {{ buildPlatform = platform; hostPlatform = platform; }};
            rustPlatform.buildRustPackage = args: args;
            makeWrapper = "makeWrapper"; installShellFiles = "installShellFiles";
            openssh = "/openssh"; sops = "/sops"; xorriso = "/xorriso"; gh = "/gh";
          }};
        in package.postInstall"#,
        repo = repo().display(),
    );
    serde_json::from_str(&ok(&run(Command::new(nix)
        .args(["--eval", "--strict", "--json", "-E", &expr])
        .env("NIX_CONFIG", "build-users-group ="))))
    .expect("a string")
}

#[test]
fn the_package_runs_its_own_binary_only_where_the_build_platform_can() {
    let Some(nix) = peer("nix-instantiate") else { return };
    let native = package_post_install(&nix, true);
    assert!(native.contains("$out/bin/hostsmith completions bash") && native.contains("$out/bin/hostsmith man --out man"), "{native}");
    let cross = package_post_install(&nix, false);
    assert!(
        !cross.contains("$out/bin/hostsmith completions") && !cross.contains("hostsmith man"),
        "a cross build runs the binary:\n{cross}"
    );
    for script in [&native, &cross] {
        assert!(script.contains("wrapProgram $out/bin/hostsmith --prefix PATH : /openssh/bin:/sops/bin:/xorriso/bin:/gh/bin"), "{script}");
    }
}

#[test]
fn the_github_host_keys_the_lib_pins_are_the_ones_github_publishes() {
    let Some(nix) = peer("nix-instantiate") else { return };
    let Some(keygen) = peer("ssh-keygen") else { return };
    let pins = eval(&nix, &format!("(import {}/nix/lib.nix).githubKnownHosts", repo().display()));
    let tmp = tempfile::tempdir().expect("tmp");
    let known = tmp.path().join("known_hosts");
    let lines: Vec<String> = pins
        .as_object()
        .expect("attrs")
        .values()
        .map(|p| {
            assert_eq!(p["hostNames"], serde_json::json!(["github.com"]));
            format!("github.com {}", p["publicKey"].as_str().expect("key"))
        })
        .collect();
    std::fs::write(&known, lines.join("\n") + "\n").expect("write");
    let listed = ok(&run(Command::new(&keygen).arg("-lf").arg(&known)));
    let mut fingerprints: Vec<&str> = listed.lines().filter_map(|l| l.split_whitespace().nth(1)).collect();
    fingerprints.sort_unstable();
    // docs.github.com, "GitHub's SSH key fingerprints".
    assert_eq!(
        fingerprints,
        [
            "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU",
            "SHA256:p2QAMXNIC1TJYWeIOttrVc98/R1BUFWu3/LiyKgUfQM",
            "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
        ]
    );
}

#[test]
fn the_committed_fleet_of_the_checks_holds_no_secret_and_is_consistent() {
    let Some(nix) = peer("nix-instantiate") else { return };
    let dir = fixture("nix-fleet");
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls") {
            let p = e.expect("entry").path();
            if p.is_dir() { stack.push(p) } else { files.push(p) }
        }
    }
    assert!(files.len() >= 6, "{files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).expect("text");
        for secret in ["PRIVATE KEY", "AGE-SECRET-KEY-", "BEGIN PGP PRIVATE"] {
            assert!(!text.contains(secret), "{} holds `{secret}`", f.display());
        }
    }
    let records = eval(&nix, &format!("builtins.attrNames ((import {}/nix/lib.nix).readHosts {}/hosts)", repo().display(), dir.display()));
    assert_eq!(records, serde_json::json!(["db01", "web01"]));
    let f = TestFleet::new();
    let cp = run(Command::new("cp").arg("-a").arg(format!("{}/.", dir.display())).arg(&f.dir));
    assert!(cp.status.success(), "{}", stderr(&cp));
    for check in [&["sops", "check"][..], &["check"]] {
        let text = ok(&f.run(check));
        assert!(text.starts_with("ok: 2 host(s)"), "{check:?}: {text}");
    }
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
