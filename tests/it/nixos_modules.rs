//! The NixOS modules, evaluated with nixpkgs' module system over stand-ins for the NixOS
//! options they touch (tests/fixtures/nixos-stand-ins.nix) and, where it matters, over
//! sops-nix's real module.
//!
//! These are developer-machine tests: no nixpkgs can be fetched where CI runs, so they need
//! a nixpkgs `lib` directory in HOSTSMITH_NIXPKGS_LIB (e.g. a checkout of
//! nix-community/nixpkgs.lib, its `lib/`) and, for the sops-nix ones, a checkout of
//! Mic92/sops-nix in HOSTSMITH_SOPS_NIX. Without them they skip, and HOSTSMITH_REQUIRE_PEERS
//! does not turn that into a failure: what CI can evaluate with Nix alone is in `nix`.

use std::path::PathBuf;

use crate::common::peer;
use crate::nix::{eval, repo};

/// The prelude of every expression: `h` is tests/fixtures/eval-nixos.nix applied.
fn harness(with_sops_nix: bool) -> Option<(PathBuf, String)> {
    let Some(lib) = std::env::var_os("HOSTSMITH_NIXPKGS_LIB") else {
        eprintln!("skipped (developer-machine test): set HOSTSMITH_NIXPKGS_LIB to a nixpkgs `lib` directory to evaluate the NixOS modules");
        return None;
    };
    let sops = if with_sops_nix {
        let Some(dir) = std::env::var_os("HOSTSMITH_SOPS_NIX") else {
            eprintln!("skipped (developer-machine test): set HOSTSMITH_SOPS_NIX to a checkout of sops-nix to evaluate against its module");
            return None;
        };
        format!("sopsNix = {};", PathBuf::from(dir).display())
    } else {
        String::new()
    };
    let nix = peer("nix-instantiate")?;
    let prelude = format!(
        "let lib = import {lib}; h = import {repo}/tests/fixtures/eval-nixos.nix {{ inherit lib; repo = {repo}; {sops} }}; in ",
        lib = PathBuf::from(lib).display(),
        repo = repo().display(),
    );
    Some((nix, prelude))
}

/// Evaluates `expr` (which may use `lib` and `h`) to JSON.
fn nixos(with_sops_nix: bool, expr: &str) -> Option<serde_json::Value> {
    let (nix, prelude) = harness(with_sops_nix)?;
    Some(eval(&nix, &format!("{prelude}{expr}")))
}

fn has(list: &serde_json::Value, item: &str) -> bool {
    list.as_array().is_some_and(|l| l.iter().any(|x| x == item))
}

#[test]
fn the_template_installs_the_seed_key_before_sshd_and_names_nothing_itself() {
    let Some(got) = nixos(
        false,
        r#"let
          t = h.eval [ h.template ];
          socket = h.eval [ h.template { services.openssh.startWhenNeeded = true; } ];
        in {
          settings = t.services.cloud-init.settings;
          hostKeys = t.services.openssh.hostKeys;
          sshdAfter = t.systemd.services.sshd.after;
          hostName = t.networking.hostName;
          useDHCP = t.networking.useDHCP;
          failed = h.failed t;
          socketInstanceAfter = socket.systemd.services."sshd@".after;
          socketHasSshd = socket.systemd.services ? sshd;
          plainHasInstance = t.systemd.services ? "sshd@";
        }"#,
    ) else {
        return;
    };
    let settings = &got["settings"];
    assert_eq!(settings["cloud_init_modules"].as_array().and_then(|l| l.last()), Some(&serde_json::json!("ssh")));
    assert!(!has(&settings["cloud_config_modules"], "ssh"), "{settings}");
    assert_eq!(settings["ssh_genkeytypes"], serde_json::json!(["ed25519"]));
    assert_eq!(settings["ssh_deletekeys"], true);
    assert_eq!(got["hostKeys"], serde_json::json!([{ "path": "/etc/ssh/ssh_host_ed25519_key", "type": "ed25519" }]));
    assert!(has(&got["sshdAfter"], "cloud-init.service"), "{got}");
    // The seed names the machine, and cloud-init's network config is not doubled by DHCP.
    assert_eq!(got["hostName"], "");
    assert_eq!(got["useDHCP"], false);
    assert_eq!(got["failed"], serde_json::json!([]));
    // startWhenNeeded: each connection's sshd@ instance waits for cloud-init; no stray sshd unit.
    assert!(has(&got["socketInstanceAfter"], "cloud-init.service"), "{got}");
    assert_eq!(got["socketHasSshd"], false);
    assert_eq!(got["plainHasInstance"], false);
}

#[test]
fn the_host_module_evaluates_without_sops_nix_and_refuses_what_it_cannot_do() {
    let Some(got) = nixos(
        false,
        r#"let
          plain = h.eval [ h.host (h.web01 { deployKeys = [ ]; persist = "/persist"; }) ];
          withKeys = h.eval [ h.host (h.web01 { }) ];
          missing = h.eval [ h.host (h.web01 { name = "web02"; }) ];
          unnamed = h.eval [ h.host { hostsmith.host = { enable = true; fleet = h.fleet; }; networking.hostName = ""; } ];
          off = h.eval [ h.host { hostsmith.host.enable = false; } ];
        in {
          failed = h.failed plain;
          hostKeys = map (k: k.path) plain.services.openssh.hostKeys;
          knownHosts = builtins.attrNames plain.programs.ssh.knownHosts;
          withKeys = h.failed withKeys;
          githubPinned = withKeys.programs.ssh.knownHosts ? "github.com-ed25519";
          extraConfig = withKeys.programs.ssh.extraConfig;
          missing = h.failed missing;
          unnamed = h.failed unnamed;
          off = h.failed off;
          activation = plain.system.activationScripts ? hostsmith-host-key;
          noCloudInitUnit = plain.systemd.services ? hostsmith-host-key;
        }"#,
    ) else {
        return;
    };
    assert_eq!(got["failed"], serde_json::json!([]));
    assert_eq!(got["hostKeys"], serde_json::json!(["/persist/etc/ssh/ssh_host_ed25519_key"]));
    assert_eq!(got["knownHosts"], serde_json::json!(["db01", "web01"]));
    let with_keys = got["withKeys"].to_string();
    assert!(with_keys.contains("has deploy keys (nix-config, nix-secrets), which sops-nix installs"), "{with_keys}");
    assert!(with_keys.contains("sops-nix.nixosModules.sops"), "{with_keys}");
    assert_eq!(got["githubPinned"], true);
    let cfg = got["extraConfig"].as_str().expect("text");
    assert!(cfg.contains("Host github.com-nix-config\n  HostName github.com\n"), "{cfg}");
    assert!(cfg.contains("  StrictHostKeyChecking yes\n"), "{cfg}");
    let missing = got["missing"].to_string();
    assert!(missing.contains("no record `hosts/web02.json` for host `web02`"), "{missing}");
    assert!(missing.contains("hostsmith vm-fresh web02"), "{missing}");
    assert!(got["unnamed"].to_string().contains("hostsmith.host.name is ``, not a host name"), "{got}");
    assert_eq!(got["off"], serde_json::json!([]));
    // Persist without cloud-init here: the move runs in activation only.
    assert_eq!(got["activation"], true);
    assert_eq!(got["noCloudInitUnit"], false);
}

#[test]
fn one_configuration_with_template_and_persisting_host_moves_the_key_before_sshd() {
    let Some(got) = nixos(
        false,
        r#"let
          c = h.eval [ h.template h.host (h.web01 { deployKeys = [ ]; persist = "/persist"; }) ];
          socket = h.eval [ h.template h.host (h.web01 { deployKeys = [ ]; persist = "/persist"; }) { services.openssh.startWhenNeeded = true; } ];
          unit = c.systemd.services.hostsmith-host-key;
        in {
          failed = h.failed c;
          hostKeys = map (k: k.path) c.services.openssh.hostKeys;
          inherit (unit) after before requiredBy wantedBy;
          exec = unit.serviceConfig.ExecStart;
          mounts = unit.unitConfig.RequiresMountsFor;
          activation = c.system.activationScripts.hostsmith-host-key.text;
          socketInstanceAfter = socket.systemd.services."sshd@".after;
          socketBefore = socket.systemd.services.hostsmith-host-key.before;
        }"#,
    ) else {
        return;
    };
    assert_eq!(got["failed"], serde_json::json!([]));
    // The host's path wins over the template's default: sshd reads the persisted key.
    assert_eq!(got["hostKeys"], serde_json::json!(["/persist/etc/ssh/ssh_host_ed25519_key"]));
    assert!(has(&got["after"], "cloud-init.service"), "{got}");
    assert!(has(&got["before"], "sshd.service") && has(&got["before"], "sshd-keygen.service"), "{got}");
    assert!(has(&got["requiredBy"], "sshd-keygen.service"), "a failed move must not let sshd-keygen invent a key: {got}");
    assert_eq!(got["mounts"], serde_json::json!(["/persist/etc/ssh"]));
    for script in [&got["exec"], &got["activation"]] {
        let s = script.as_str().expect("text");
        assert!(s.contains("-persist-host-key.sh /persist/etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key"), "{s}");
    }
    assert!(has(&got["socketInstanceAfter"], "hostsmith-host-key.service"), "{got}");
    assert!(has(&got["socketInstanceAfter"], "cloud-init.service"), "{got}");
    assert!(!has(&got["socketBefore"], "sshd.service"), "{got}");
}

#[test]
fn with_the_real_sops_nix_the_key_is_in_place_before_sops_nix_reads_it() {
    let Some(got) = nixos(
        true,
        r#"let
          c = h.eval [ h.host (h.web01 { persist = "/persist"; }) ];
          theirs = h.eval [ h.host (h.web01 { }) { sops.defaultSopsFile = h.fleet + "/sops/db01.yaml"; sops.secrets.db = { }; } ];
        in {
          failed = h.failed c;
          keys = c.sops.age.sshKeyPaths;
          default = toString c.sops.defaultSopsFile;
          secrets = builtins.mapAttrs (n: s: { inherit (s) key path mode owner; file = toString s.sopsFile; }) c.sops.secrets;
          order = h.activationOrder c;
          theirsFailed = h.failed theirs;
          theirsDefault = toString theirs.sops.defaultSopsFile;
          theirsDeployFile = toString theirs.sops.secrets."deploy-keys/nix-config".sopsFile;
          theirsOwnFile = toString theirs.sops.secrets.db.sopsFile;
        }"#,
    ) else {
        return;
    };
    assert_eq!(got["failed"], serde_json::json!([]));
    assert_eq!(got["keys"], serde_json::json!(["/persist/etc/ssh/ssh_host_ed25519_key"]));
    let host_file = format!("{}/tests/fixtures/nix-fleet/sops/web01.yaml", repo().display());
    assert_eq!(got["default"], host_file.as_str());
    assert_eq!(
        got["secrets"]["deploy-keys/nix-config"],
        serde_json::json!({ "key": "deploy-keys/nix-config", "path": "/root/.ssh/nix-config-deploy", "mode": "0400", "owner": "root", "file": host_file })
    );
    // In activation, the key moves to the persist path before sops-nix's setupSecrets.
    let order: Vec<&str> = got["order"].as_array().expect("order").iter().map(|s| s.as_str().expect("name")).collect();
    let pos = |n: &str| order.iter().position(|x| *x == n).unwrap_or_else(|| panic!("{n} not in {order:?}"));
    assert!(pos("hostsmith-host-key") < pos("setupSecrets"), "{order:?}");
    // A configuration with its own default file keeps it; the deploy keys still come from the host's.
    assert_eq!(got["theirsFailed"], serde_json::json!([]));
    let db01 = format!("{}/tests/fixtures/nix-fleet/sops/db01.yaml", repo().display());
    assert_eq!(got["theirsDefault"], db01.as_str());
    assert_eq!(got["theirsOwnFile"], db01.as_str());
    assert_eq!(got["theirsDeployFile"], host_file.as_str());
}

#[test]
fn with_the_real_sops_nix_one_configuration_with_cloud_init_orders_or_refuses() {
    let Some(got) = nixos(
        true,
        r#"let
          both = extra: h.eval ([ h.template h.host (h.web01 { persist = "/persist"; }) ] ++ extra);
          activation = both [ ];
          systemd = both [ { sops.useSystemdActivation = true; } ];
          forUsers = both [ { sops.useSystemdActivation = true; sops.secrets.pw.neededForUsers = true; } ];
          unmounted = h.eval [ h.host (h.web01 { persist = "/persist"; }) { fileSystems."/persist".device = "/dev/vdb"; } ];
          mounted = h.eval [ h.host (h.web01 { persist = "/persist"; }) { fileSystems."/persist" = { device = "/dev/vdb"; neededForBoot = true; }; } ];
        in {
          activation = h.failed activation;
          systemd = h.failed systemd;
          sopsAfter = systemd.systemd.services.sops-install-secrets.after;
          hostKeyBefore = systemd.systemd.services.hostsmith-host-key.before;
          forUsers = h.failed forUsers;
          unmounted = h.failed unmounted;
          mounted = h.failed mounted;
        }"#,
    ) else {
        return;
    };
    let refused = got["activation"].to_string();
    assert!(refused.contains("cloud-init is enabled in this configuration"), "{refused}");
    assert!(refused.contains("sops.useSystemdActivation = true"), "{refused}");
    assert_eq!(got["systemd"], serde_json::json!([]));
    for unit in ["cloud-init.service", "hostsmith-host-key.service"] {
        assert!(has(&got["sopsAfter"], unit), "sops-install-secrets.service must start after {unit}: {got}");
    }
    assert!(has(&got["hostKeyBefore"], "sops-install-secrets.service"), "{got}");
    assert!(got["forUsers"].to_string().contains("neededForUsers = true` (pw)"), "{got}");
    assert!(got["unmounted"].to_string().contains("fileSystems.\\\"/persist\\\".neededForBoot = true"), "{got}");
    assert_eq!(got["mounted"], serde_json::json!([]));
}
