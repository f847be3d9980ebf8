//! Output trees and output files (issue 14: F09, F10, F11, F16): no link followed inside an
//! output directory, an existing one open to others refused rather than changed, only
//! regular files replaced, and no file holding a key left by a kill.

use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hostsmith::sops::file::{EncryptedFile, Value};

use crate::common::{TestFleet, ok, run};
use crate::exact::Test;

fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).expect("mkdir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("meta").permissions().mode() & 0o7777
}

/// Every file below `dir`, links not followed.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let t = e.file_type().expect("type");
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The middle line of web01's private host key, decrypted from its host file: a string
/// that appears in any clear copy of the key.
fn key_line(f: &TestFleet, host: &str) -> String {
    let text = std::fs::read_to_string(f.admin_key_file()).expect("admin key");
    let id: age::x25519::Identity = text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).expect("identity").parse().expect("identity");
    let file = EncryptedFile::parse(&f.read(&format!("sops/{host}.yaml"))).expect("parse");
    let dec = file.decrypt(&[id]).expect("decrypt");
    let Some(Value::Str(key)) = dec.document().get_path(&["ssh_host_ed25519_key"]) else { panic!("no host key") };
    key.lines().nth(2).expect("a key body line").to_string()
}

/// Files below `dir` that hold `needle`.
fn holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir).into_iter().filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(needle))).collect()
}

#[test]
fn f09_a_link_inside_an_output_tree_is_refused_and_no_key_leaves_it() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let before = f.snapshot();
    let (out, elsewhere) = (f.tmp.path().join("out"), f.tmp.path().join("elsewhere"));
    mkdir(&out, 0o700);
    mkdir(&elsewhere, 0o755);
    symlink(&elsewhere, out.join("etc")).expect("symlink");
    let o = out.to_str().expect("utf8");
    Test::new(&f)
        .args(&["extra-files", "web01", "--out", o])
        .stderr(&format!("error: `{o}/etc` is a symbolic link: hostsmith follows no link inside an output directory (one could send a private key elsewhere); remove it, or choose a new output directory\n"))
        .status(2)
        .run();
    // The same link one level deeper, planted by vm-fresh's per-host tree: refused before
    // the fleet changes.
    let trees = f.tmp.path().join("trees");
    mkdir(&trees, 0o700);
    mkdir(&trees.join("web02"), 0o700);
    symlink(&elsewhere, trees.join("web02/etc")).expect("symlink");
    let t = trees.to_str().expect("utf8");
    Test::new(&f)
        .args(&["vm-fresh", "web02", "--extra-files", t])
        .stderr(&format!("error: `{t}/web02/etc` is a symbolic link: hostsmith follows no link inside an output directory (one could send a private key elsewhere); remove it, or choose a new output directory\n"))
        .status(2)
        .run();
    // A link where a seed file goes is not written through either.
    let seed = f.tmp.path().join("seed");
    mkdir(&seed, 0o700);
    symlink(elsewhere.join("user-data"), seed.join("user-data")).expect("symlink");
    let s = seed.to_str().expect("utf8");
    Test::new(&f)
        .args(&["cloud-init", "web01", "--out", s, "--authorized-key", &admin_key()])
        .stderr(&format!("error: `{s}/user-data` is a symbolic link: hostsmith replaces only regular files; remove it, or choose a new output directory\n"))
        .status(2)
        .run();
    assert_eq!(std::fs::read_dir(&elsewhere).expect("ls").count(), 0, "nothing was written through a link");
    assert!(holding(f.tmp.path(), &key_line(&f, "web01")).is_empty(), "no clear copy of the key anywhere");
    f.assert_unchanged(&before, "refused runs");
}

#[test]
fn f10_an_existing_out_that_others_can_reach_is_refused_and_keeps_its_mode() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    for (name, m) in [("sticky", 0o1777), ("readable", 0o755)] {
        let out = f.tmp.path().join(name);
        mkdir(&out, m);
        let o = out.to_str().expect("utf8");
        Test::new(&f)
            .args(&["extra-files", "web01", "--out", o])
            .stderr(&format!("error: `{o}` can be read or written by other users (mode {m:04o}) and would hold private keys: run `chmod 700 {o}`, or name a new directory (it is created 0700)\n"))
            .status(2)
            .run();
        assert_eq!(mode(&out), m, "{name}: a directory hostsmith did not create keeps its mode");
        assert_eq!(std::fs::read_dir(&out).expect("ls").count(), 0, "{name}: nothing written");
    }
    // A directory it creates is 0700; one that is already private is used as it is.
    let fresh = f.tmp.path().join("fresh/tree");
    ok(&f.run(&["extra-files", "web01", "--out", fresh.to_str().expect("utf8")]));
    assert_eq!((mode(&fresh), mode(&fresh.join("etc/ssh")), mode(&fresh.join("etc/ssh/ssh_host_ed25519_key"))), (0o700, 0o755, 0o600));
    ok(&f.run(&["extra-files", "web01", "--out", fresh.to_str().expect("utf8")]));
}

#[test]
fn f11_export_force_replaces_only_regular_files() {
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let fifo = f.tmp.path().join("fifo");
    let dev = f.tmp.path().join("null");
    ok(&run(Command::new("mkfifo").arg(&fifo)));
    // A character device like /dev/null (root may make one), so the test never risks the real one.
    ok(&run(Command::new("mknod").arg(&dev).args(["c", "1", "3"])));
    for (path, what) in [(&fifo, "a FIFO"), (&dev, "a character device")] {
        let p = path.to_str().expect("utf8");
        Test::new(&f)
            .args(&["keys", "export", "web01", "--output", p, "--force"])
            .stderr(&format!("error: `{p}` is {what}: hostsmith replaces only regular files; remove it, or give --output another path\n"))
            .status(2)
            .run();
    }
    let meta = |p: &Path| std::fs::symlink_metadata(p).expect("meta").file_type();
    assert!(meta(&fifo).is_fifo(), "the FIFO is still a FIFO");
    assert!(meta(&dev).is_char_device(), "the device is still a device");
    // A regular file is replaced, 0600.
    let file = f.tmp.path().join("web01.key");
    std::fs::write(&file, "old").expect("write");
    ok(&f.run(&["keys", "export", "web01", "--output", file.to_str().expect("utf8"), "--force"]));
    assert!(std::fs::read_to_string(&file).expect("read").contains(&key_line(&f, "web01")));
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn f16_a_kill_between_staging_and_renaming_a_seed_leaves_no_file_with_the_key() {
    let f = TestFleet::new();
    f.init_with(&[]);
    let seeds = f.tmp.path().join("seeds");
    let s = seeds.to_str().expect("utf8");
    let admin = admin_key();
    // Killed right after user-data (the private key) is staged and fsynced.
    let mut cmd = f.cmd(&["vm-fresh", "web01", "--cloud-init", s, "--authorized-key", &admin]);
    let killed = run(cmd.env("HOSTSMITH_CRASH_AT", "staged:user-data"));
    assert_eq!(killed.status.signal(), Some(libc_sigabrt()), "the run stopped at the crash point");
    let key = key_line(&f, "web01");
    assert_eq!(holding(f.tmp.path(), &key), Vec::<PathBuf>::new(), "no file holds the key after the kill");
    // Killed in the one moment a replacement has a staging name (linked, not yet renamed):
    // the next run in that directory removes what was left.
    ok(&f.run(&["cloud-init", "web01", "--out", &format!("{s}/web01"), "--authorized-key", &admin]));
    let mut cmd = f.cmd(&["cloud-init", "web01", "--out", &format!("{s}/web01"), "--authorized-key", &admin]);
    assert_eq!(run(cmd.env("HOSTSMITH_CRASH_AT", "linked:user-data")).status.signal(), Some(libc_sigabrt()));
    let staged = |p: &PathBuf| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".hostsmith-tmp-"));
    assert_eq!(holding(&seeds, &key).iter().filter(|p| staged(p)).count(), 1, "the window this test exists to show");
    ok(&f.run(&["cloud-init", "web01", "--out", &format!("{s}/web01"), "--authorized-key", &admin]));
    assert_eq!(holding(&seeds, &key), vec![seeds.join("web01/user-data")], "only the seed itself holds the key");
}

fn libc_sigabrt() -> i32 {
    6
}

/// An admin public key line for `--authorized-key`.
fn admin_key() -> String {
    hostsmith::ssh_keys::Keypair::generate("alice@laptop").expect("key").public_line()
}
