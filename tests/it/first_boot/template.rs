//! The NixOS template's cloud-init settings (`nix/modules/cloud-init-settings.nix`), applied
//! by real cloud-init in both Debian roots: after the stages that run before sshd may start
//! (`init --local`, `init`), the seed's key is the only host key, a seed without keys gets
//! exactly one ed25519 key, and hostsmith's seed names the host.
//!
//! Debian's own `cloud.cfg` already runs the `ssh` module in the init stage; nixpkgs runs it
//! in the config stage. So that these tests fail if the template's settings stop moving it,
//! the root first gets nixpkgs' order (derived from the settings themselves: `ssh` taken out
//! of the init modules and appended to the config modules), which the settings then override.

use std::path::{Path, PathBuf};
use std::process::Command;

use hostsmith::ssh_keys;

use super::{Machine, Release, Stage, Web01, host_key_files, peers};
use crate::common::{peer, run, stderr, stdout};

/// The settings, evaluated by Nix: `None` (skip) without `nix-instantiate`.
fn settings() -> Option<serde_json::Value> {
    let nix = peer("nix-instantiate")?;
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("nix/modules/cloud-init-settings.nix");
    let out = run(Command::new(nix).args(["--eval", "--strict", "--json"]).arg(&file).env("NIX_CONFIG", "build-users-group ="));
    assert!(out.status.success(), "{}", stderr(&out));
    Some(serde_json::from_str(&stdout(&out)).expect("the settings evaluate to JSON"))
}

/// Drops nixpkgs' module order (94) and the template's settings (95) into the root's
/// cloud.cfg.d. JSON is YAML, so both go in as Nix printed them.
fn install_settings(m: &Machine, settings: &serde_json::Value) {
    let names = |key: &str| -> Vec<String> {
        settings[key].as_array().expect(key).iter().map(|v| v.as_str().expect("a module name").to_string()).collect()
    };
    let mut init = names("cloud_init_modules");
    let mut config = names("cloud_config_modules");
    assert_eq!(init.last().map(String::as_str), Some("ssh"), "the template runs `ssh` last in the init stage");
    assert!(!config.iter().any(|n| n == "ssh"), "and not in the config stage");
    init.retain(|n| n != "ssh");
    config.push("ssh".to_string());
    let nixpkgs = serde_json::json!({ "cloud_init_modules": init, "cloud_config_modules": config });
    let dir = m.path("etc/cloud/cloud.cfg.d");
    std::fs::write(dir.join("94-nixpkgs-order.cfg"), nixpkgs.to_string()).expect("cfg");
    std::fs::write(dir.join("95-nixos-template.cfg"), settings.to_string()).expect("cfg");
}

/// A template's keys of all three types, made by the root's own ssh-keygen. Returns the
/// ed25519 one's public line.
fn plant_template_keys(m: &Machine) -> String {
    let r = m.root.display();
    m.sh(&format!(
        "rm -f {r}/etc/ssh/ssh_host_* && for t in rsa ecdsa ed25519; do chroot {r} ssh-keygen -q -t $t -N '' -C root@template -f /etc/ssh/ssh_host_${{t}}_key || exit 1; done"
    ));
    assert_eq!(host_key_files(m).len(), 6, "{:?}", host_key_files(m));
    std::fs::read_to_string(m.path("etc/ssh/ssh_host_ed25519_key.pub")).expect("template key")
}

/// The one ed25519 key pair cloud-init leaves.
fn only_ed25519() -> Vec<String> {
    vec!["ssh_host_ed25519_key".to_string(), "ssh_host_ed25519_key.pub".to_string()]
}

/// The seed's host name is in the root's /etc/hostname and is the namespace's host name.
#[track_caller]
fn assert_hostname(m: &Machine, name: &str, log: &str) {
    assert_eq!(std::fs::read_to_string(m.path("etc/hostname")).expect("/etc/hostname"), format!("{name}\n"), "cloud-init said:\n{log}");
    assert_eq!(m.sh("hostname"), format!("{name}\n"));
}

#[test]
fn template_settings_leave_only_the_seed_key_before_sshd_on_bookworm() {
    only_the_seed_key_before_sshd(Release::Bookworm);
}

#[test]
fn template_settings_leave_only_the_seed_key_before_sshd_on_trixie() {
    only_the_seed_key_before_sshd(Release::Trixie);
}

fn only_the_seed_key_before_sshd(release: Release) {
    if !peers() {
        return;
    }
    let Some(settings) = settings() else { return };
    let w = Web01::new();
    let mut m = Machine::new(release);
    install_settings(&m, &settings);
    plant_template_keys(&m);
    m.seed(&w.seed);
    let log = m.stages(&Stage::BEFORE_SSHD);

    // Where NixOS starts sshd: the record's key, and nothing else, is in /etc/ssh.
    assert_eq!(host_key_files(&m), only_ed25519(), "cloud-init said:\n{log}");
    assert_eq!(m.host_key_fingerprints(), vec![w.fingerprint.clone()], "cloud-init said:\n{log}");
    assert!(m.datasource().starts_with("DataSourceNoCloud"), "{}\n{log}", m.datasource());
    assert_hostname(&m, "web01", &log);

    // sshd started now serves it, and only it.
    m.start_sshd(&[], &log);
    w.verify(&m);
    assert_eq!(m.sh(&format!("ssh-keyscan -p {} 127.0.0.1 2>/dev/null", m.port)).trim(), w.scan_line(&m));

    // The later stages leave the key alone.
    let later = m.stages(&[Stage::Config, Stage::Final]);
    assert_eq!(host_key_files(&m), only_ed25519(), "cloud-init said:\n{later}");
    assert_eq!(m.host_key_fingerprints(), vec![w.fingerprint.clone()], "cloud-init said:\n{later}");
    w.verify(&m);
}

#[test]
fn template_settings_make_one_ed25519_key_without_a_seed_key_on_bookworm() {
    one_ed25519_key_without_a_seed_key(Release::Bookworm);
}

#[test]
fn template_settings_make_one_ed25519_key_without_a_seed_key_on_trixie() {
    one_ed25519_key_without_a_seed_key(Release::Trixie);
}

/// A seed with no `ssh_keys` (a clone booted with a seed of its own, not hostsmith's), in
/// the shape Proxmox writes: the name in user-data, only the instance id in meta-data.
fn keyless_seed(dir: &Path) {
    std::fs::write(dir.join("user-data"), "#cloud-config\nhostname: web02\n").expect("user-data");
    std::fs::write(dir.join("meta-data"), "instance-id: iid-web02\n").expect("meta-data");
}

fn one_ed25519_key_without_a_seed_key(release: Release) {
    if !peers() {
        return;
    }
    let Some(settings) = settings() else { return };
    let m = Machine::new(release);
    install_settings(&m, &settings);
    let template = plant_template_keys(&m);
    let seed = tempfile::tempdir().expect("tmp");
    keyless_seed(seed.path());
    m.seed(seed.path());
    let log = m.stages(&Stage::BEFORE_SSHD);

    assert_eq!(host_key_files(&m), only_ed25519(), "cloud-init said:\n{log}");
    let made = std::fs::read_to_string(m.path("etc/ssh/ssh_host_ed25519_key.pub")).expect("pub");
    let key = ssh_keys::parse_public(&made).expect("an ed25519 public key");
    let template = ssh_keys::parse_public(&template).expect("template key");
    assert_ne!(ssh_keys::fingerprint(&key), ssh_keys::fingerprint(&template), "a new key, not the template's");
    assert!(m.datasource().starts_with("DataSourceNoCloud"), "{}\n{log}", m.datasource());
    // A name given only in user-data is applied too (`set_hostname` before `update_hostname`).
    assert_hostname(&m, "web02", &log);
}
