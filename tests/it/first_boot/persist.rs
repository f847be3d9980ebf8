//! The persist step (`nix/modules/persist-host-key.sh`) after real cloud-init: the key
//! cloud-init installed moves to `/persist/etc/ssh`, sshd reading only that path serves the
//! recorded key, and a key already persisted (nixos-anywhere's `--extra-files` route) is the
//! one kept, whatever lies at /etc/ssh.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use hostsmith::ssh_keys::Keypair;

use super::{Machine, Release, Stage, Web01, host_key_files, peers};
use crate::common::{ok, run, stderr};

const PERSISTED: &str = "/persist/etc/ssh/ssh_host_ed25519_key";
const SCRIPT: &str = "usr/local/sbin/persist-host-key.sh";

/// Runs the persist step in the root, as the NixOS host module does after cloud-init.
fn persist_step(m: &Machine) -> Output {
    let script = m.path(SCRIPT);
    if !script.exists() {
        std::fs::create_dir_all(script.parent().expect("dir")).expect("dir");
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("nix/modules/persist-host-key.sh");
        std::fs::copy(source, &script).expect("copy the script");
    }
    run(m.inside("chroot").arg(&m.root).args(["sh", &format!("/{SCRIPT}"), PERSISTED]))
}

/// sshd with the persisted key as its only host key.
fn serve_persisted(m: &mut Machine, log: &str) {
    m.start_sshd(&[&format!("HostKey={PERSISTED}")], log);
}

/// Bytes, inode and mode of a file (not following a link), for "nothing changed" checks.
fn state(path: &Path) -> (Vec<u8>, u64, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bytes = if meta.file_type().is_symlink() {
        std::fs::read_link(path).expect("link").into_os_string().into_encoded_bytes()
    } else {
        std::fs::read(path).expect("read")
    };
    (bytes, meta.ino(), meta.permissions().mode() & 0o7777)
}

/// Everything the persist step may touch, in the root.
fn persist_state(m: &Machine) -> Vec<(Vec<u8>, u64, u32)> {
    let p = &PERSISTED[1..];
    [p.to_string(), format!("{p}.pub"), "etc/ssh/ssh_host_ed25519_key".into(), "etc/ssh/ssh_host_ed25519_key.pub".into()]
        .iter()
        .map(|rel| m.path(rel))
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(|p| state(&p))
        .collect()
}

#[test]
fn the_persist_step_moves_the_cloud_init_key_on_bookworm() {
    moves_the_cloud_init_key(Release::Bookworm);
}

#[test]
fn the_persist_step_moves_the_cloud_init_key_on_trixie() {
    moves_the_cloud_init_key(Release::Trixie);
}

fn moves_the_cloud_init_key(release: Release) {
    if !peers() {
        return;
    }
    let w = Web01::new();
    let mut m = Machine::new(release);
    m.seed(&w.seed);
    let log = m.stages(&Stage::BEFORE_SSHD);
    let moved = persist_step(&m);
    ok(&moved);
    assert!(
        stderr(&moved).contains(&format!("moved the host key cloud-init installed at /etc/ssh/ssh_host_ed25519_key to {PERSISTED}")),
        "{}",
        stderr(&moved)
    );
    serve_persisted(&mut m, &log);
    w.verify(&m);
    assert_persisted_layout(&m, &w);

    // Running the step again changes nothing.
    let before = persist_state(&m);
    assert_eq!(before.len(), 4);
    let again = persist_step(&m);
    assert_eq!((ok(&again), stderr(&again)), (String::new(), String::new()));
    assert_eq!(persist_state(&m), before, "a second run changed the files");

    // A second boot with the same seed, then the step: the same key, the same files.
    let log = m.stages(&Stage::ALL);
    ok(&persist_step(&m));
    assert_eq!(persist_state(&m), before, "the second boot changed the files; cloud-init said:\n{log}");
    serve_persisted(&mut m, &log);
    w.verify(&m);
}

/// The persisted key opens the host's secrets, has the modes sshd and sops-nix expect, and
/// /etc/ssh links to it.
#[track_caller]
fn assert_persisted_layout(m: &Machine, w: &Web01) {
    let persisted = m.path(&PERSISTED[1..]);
    w.assert_key_opens_secrets(&std::fs::read_to_string(&persisted).expect("persisted key"));
    let mode = |p: &Path| std::fs::symlink_metadata(p).expect("meta").permissions().mode() & 0o7777;
    assert_eq!(mode(&persisted), 0o600);
    assert_eq!(mode(&m.path(&format!("{}.pub", &PERSISTED[1..]))), 0o644);
    for (link, target) in
        [("etc/ssh/ssh_host_ed25519_key", PERSISTED.to_string()), ("etc/ssh/ssh_host_ed25519_key.pub", format!("{PERSISTED}.pub"))]
    {
        assert_eq!(std::fs::read_link(m.path(link)).unwrap_or_else(|e| panic!("{link} is not a link: {e}")), PathBuf::from(target));
    }
    assert_eq!(host_key_files(m), ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]);
}

#[test]
fn a_key_from_extra_files_stays_the_persisted_key_on_bookworm() {
    extra_files_key_stays(Release::Bookworm);
}

#[test]
fn a_key_from_extra_files_stays_the_persisted_key_on_trixie() {
    extra_files_key_stays(Release::Trixie);
}

/// The nixos-anywhere route: `hostsmith extra-files --persist /persist` put the key in place
/// and cloud-init installed none.
fn extra_files_key_stays(release: Release) {
    if !peers() {
        return;
    }
    let w = Web01::new();
    let mut m = Machine::new(release);
    let tree = w.f.tmp.path().join("extra");
    ok(&w.f.run(&["extra-files", "web01", "--out", tree.to_str().expect("utf8"), "--persist", "/persist"]));
    m.sh(&format!("rm -f {r}/etc/ssh/ssh_host_* && cp -a {t}/persist {r}/", r = m.root.display(), t = tree.display()));
    let before = persist_state(&m);
    assert_eq!(before.len(), 2, "only the persisted key and its .pub");

    let step = persist_step(&m);
    assert_eq!((ok(&step), stderr(&step)), (String::new(), String::new()), "nothing to do is silent");
    assert_eq!(persist_state(&m), before);
    serve_persisted(&mut m, "(no cloud-init run)");
    w.verify(&m);

    // A different key at /etc/ssh (a template's): the persisted key is kept, with a warning.
    let other = Keypair::generate("root@template").expect("key");
    std::fs::write(m.path("etc/ssh/ssh_host_ed25519_key"), other.openssh_private().expect("openssh").as_bytes()).expect("plant");
    std::fs::set_permissions(m.path("etc/ssh/ssh_host_ed25519_key"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let planted = state(&m.path("etc/ssh/ssh_host_ed25519_key"));
    let step = persist_step(&m);
    ok(&step);
    assert!(stderr(&step).contains(&format!("keeping the persisted host key {PERSISTED}")), "{}", stderr(&step));
    assert_eq!(persist_state(&m)[..2], before[..], "the persisted key changed");
    assert_eq!(state(&m.path("etc/ssh/ssh_host_ed25519_key")), planted, "the other key is left alone");
    serve_persisted(&mut m, "(no cloud-init run)");
    w.verify(&m);
}
