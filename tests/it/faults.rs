//! Faults beyond a kill: a full disk in the middle of a 200-host `vm-fresh`, a `keys rotate`
//! and a `sops rekey`; a read-only directory and a read-only file inside the fleet; an I/O
//! error (EIO) on every write in one directory, from a small FUSE file system
//! (`fuse_eio.py`). After
//! each, every file holds its old or its new complete content, the error names the file,
//! the exit status is 1, and a re-run without the fault leaves a fleet `sops check` accepts
//! and real sops decrypts.
//!
//! The faults are real: the fleet is copied into a tmpfs of a measured size (or read-only
//! bind mounts are laid over part of it), mounted over the fleet directory in a mount
//! namespace of the test's own (`unshare --mount`, which needs root), and the fleet as the
//! run left it is copied back out. Without root these tests say so and skip, unless peers
//! are required.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hostsmith::sops::file::{EncryptedFile, Value};
use hostsmith::sops::rules::SopsConfig;
use regex::Regex;

use crate::common::{TestFleet, fast_sops, ok, peers_required, run, sops_decrypt, stderr};

const PAGE: u64 = 4096;

/// Whether this process may make mount namespaces; skips (or fails, with peers required)
/// otherwise.
fn can_mount() -> bool {
    let probe = run(Command::new("unshare").args(["--mount", "--propagation", "private", "true"]));
    if probe.status.success() {
        return true;
    }
    assert!(!peers_required(), "fault tests need root (unshare --mount): {}", stderr(&probe));
    eprintln!("skipping: unshare --mount is not permitted here ({})", stderr(&probe).trim());
    false
}

/// Whether FUSE can be mounted (for EIO): `/dev/fuse` and python3.
fn can_fuse() -> bool {
    if Path::new("/dev/fuse").exists() && crate::common::which("python3").is_some() {
        return true;
    }
    assert!(!peers_required(), "the EIO tests need /dev/fuse and python3");
    eprintln!("skipping: no /dev/fuse or python3, so no EIO can be injected");
    false
}

/// What the run is given in place of a healthy fleet directory.
enum Fault<'a> {
    /// The fleet on a tmpfs of this many bytes.
    Disk(u64),
    /// The fleet on a roomy tmpfs with these paths (relative to the fleet) bound read-only.
    ReadOnly(&'a [&'a str]),
    /// The fleet behind `fuse_eio.py`: every write to a file in a directory of this name
    /// fails with EIO.
    Eio(&'a str),
}

/// The script that runs the command on a tmpfs copy of the fleet of `size` bytes, after
/// `extra` (more mounts), and copies the result out.
fn tmpfs_script(size: u64, extra: &str) -> String {
    format!(
        "set -u\nfleet=$1; copy=$2; shift 2\nmkdir \"$copy\" && cp -a \"$fleet/.\" \"$copy/\" || exit 99\n\
         mount -t tmpfs -o size={size},mode=0755 tmpfs \"$fleet\" || exit 98\ncp -a \"$copy/.\" \"$fleet/\" || exit 98\n\
         {extra}cd \"$fleet\"\n\"$@\"; rc=$?\nrm -rf \"$copy\" && mkdir \"$copy\" && cp -a \"$fleet/.\" \"$copy/\" || exit 96\nexit $rc\n"
    )
}

/// The script that mounts the fleet behind the EIO file system: the copy is its backing
/// directory, so it holds the fleet as the run left it.
fn eio_script(fail_dir: &str) -> String {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fuse_eio.py");
    format!(
        "set -u\nfleet=$1; copy=$2; shift 2\nmkdir \"$copy\" && cp -a \"$fleet/.\" \"$copy/\" || exit 99\n\
         python3 {} \"$copy\" \"$fleet\" {fail_dir} & server=$!\n\
         for i in $(seq 200); do mountpoint -q \"$fleet\" && break; sleep 0.05; done\nmountpoint -q \"$fleet\" || {{ kill $server; exit 98; }}\n\
         cd \"$fleet\"\n\"$@\"; rc=$?\ncd /\numount \"$fleet\" || {{ kill $server; exit 96; }}\nwait $server || exit 96\nexit $rc\n",
        server.display()
    )
}

/// Runs `hostsmith ARGS` in the fleet under `fault`, then puts the fleet as the run left it
/// back in place.
fn run_with_fault(f: &TestFleet, fault: &Fault<'_>, args: &[&str]) -> Output {
    let copy = f.tmp.path().join("copy");
    let _ = std::fs::remove_dir_all(&copy);
    let script = match fault {
        Fault::Disk(size) => tmpfs_script(*size, ""),
        Fault::ReadOnly(paths) => {
            let binds: String = paths.iter().map(|p| format!("mount --bind -o ro \"$fleet/{p}\" \"$fleet/{p}\" || exit 97\n")).collect();
            tmpfs_script(64 << 20, &binds)
        }
        Fault::Eio(dir) => eio_script(dir),
    };
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(&f.dir)
        .arg(&copy)
        .arg(crate::common::bin())
        .args(args);
    f.env(&mut cmd);
    let out = run(&mut cmd);
    assert!(!matches!(out.status.code(), Some(96..=99)), "the fault could not be set up: {}", stderr(&out));
    std::fs::remove_dir_all(&f.dir).expect("rm fleet");
    std::fs::rename(&copy, &f.dir).expect("fleet back");
    out
}

/// Every file of the fleet (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls").flatten() {
            let p = e.path();
            if e.file_type().expect("type").is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).expect("rel").to_path_buf(), std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// What the files take on a tmpfs: whole pages.
fn pages(files: &BTreeMap<PathBuf, Vec<u8>>) -> u64 {
    files.values().map(|b| (b.len() as u64).div_ceil(PAGE) * PAGE).sum()
}

/// A copy of the fleet in a directory of its own, sharing the admin identity: where a run
/// is measured before it is faulted.
fn scratch_copy(f: &TestFleet) -> PathBuf {
    let scratch = f.tmp.path().join("scratch");
    ok(&run(Command::new("cp").arg("-a").arg(&f.dir).arg(&scratch)));
    scratch
}

/// Runs `args` on the scratch copy of the fleet; returns the space the run needed at its
/// peak on a tmpfs (new and replacing files exist beside the old ones until they are named).
fn peak_need(f: &TestFleet, args: &[&str]) -> u64 {
    let scratch = scratch_copy(f);
    let before = files(&scratch);
    let mut cmd = f.cmd(args);
    ok(&run(cmd.current_dir(&scratch)));
    let after = files(&scratch);
    std::fs::remove_dir_all(&scratch).expect("rm scratch");
    after.iter().filter(|(p, b)| before.get(*p) != Some(b)).map(|(_, b)| (b.len() as u64).div_ceil(PAGE) * PAGE).sum()
}

fn admin(f: &TestFleet) -> (String, age::x25519::Identity) {
    let text = std::fs::read_to_string(f.admin_key_file()).expect("admin key");
    let id = text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).expect("identity").parse().expect("identity");
    (text, id)
}

/// Every file is complete (SOPS files parse and decrypt with the admin identity, their MAC
/// verified; records are JSON; `.sops.yaml` parses), no staging file is left, records and
/// `.sops.yaml` hold their content before the run or the one the re-run settled on, and a
/// host file the faulted run wrote holds the key the re-run kept (it was not a torn or
/// abandoned key).
#[track_caller]
fn assert_before_or_after(
    f: &TestFleet,
    before: &BTreeMap<PathBuf, Vec<u8>>,
    faulted: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
) {
    let (_, id) = admin(f);
    let host_key = |bytes: &[u8], name: &str| -> Option<String> {
        let file = EncryptedFile::parse(std::str::from_utf8(bytes).ok()?).unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
        let dec = file.decrypt(std::slice::from_ref(&id)).unwrap_or_else(|e| panic!("{name} does not decrypt: {e}"));
        match dec.document().get_path(&["ssh_host_ed25519_key"]) {
            Some(Value::Str(k)) => Some(k.clone()),
            _ => None,
        }
    };
    for (path, bytes) in faulted {
        let name = path.to_string_lossy();
        assert!(!name.contains(".hostsmith-tmp-"), "a staging file was left: {name}");
        let text = String::from_utf8(bytes.clone()).unwrap_or_else(|_| panic!("{name} is not text"));
        let old_or_new = before.get(path) == Some(bytes) || after.get(path) == Some(bytes);
        if name.ends_with(".json") || name == ".sops.yaml" {
            if name == ".sops.yaml" {
                SopsConfig::parse(&text).unwrap_or_else(|e| panic!(".sops.yaml does not parse: {e}"));
            } else {
                serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{name} is not complete JSON: {e}"));
            }
            assert!(old_or_new, "{name} holds neither its content before the run nor the one the re-run settled on");
        } else if name.ends_with(".yaml") {
            let key = host_key(bytes, &name);
            if before.get(path) != Some(bytes) && key.is_some() {
                let kept = after.get(path).and_then(|b| host_key(b, &name));
                assert_eq!(key, kept, "{name}: the re-run did not keep the key the faulted run wrote");
            }
        }
    }
}

/// The fleet is whole: `sops check` passes and real sops decrypts every `step`-th host file
/// and the shared file with the admin identity.
#[track_caller]
fn assert_consistent(f: &TestFleet, hosts: &[String], step: usize) {
    ok(&f.run(&["sops", "check"]));
    let Some(sops) = fast_sops() else { return };
    let (identity, _) = admin(f);
    let mut sample: Vec<String> = hosts.iter().step_by(step).map(|h| format!("sops/{h}.yaml")).collect();
    sample.push("sops/shared.yaml".into());
    for file in sample {
        let out = sops_decrypt(&sops, &f.dir, &file, &identity);
        assert!(out.status.success(), "sops -d {file}: {}", stderr(&out));
    }
    for h in hosts {
        assert!(f.dir.join(format!("hosts/{h}.json")).is_file(), "hosts/{h}.json is missing after the re-run");
    }
}

/// No file was added, removed or changed (named, not dumped).
#[track_caller]
fn assert_unchanged(before: &BTreeMap<PathBuf, Vec<u8>>, after: &BTreeMap<PathBuf, Vec<u8>>, why: &str) {
    let changed: Vec<_> = before.keys().chain(after.keys()).filter(|p| before.get(*p) != after.get(*p)).collect();
    assert!(changed.is_empty(), "{why}, yet these changed: {changed:?}");
}

/// The one error line a fault gives: the file and the cause, nothing else.
#[track_caller]
fn assert_error_names_a_file(out: &Output, cause: &str) {
    let err = stderr(out);
    let re = Regex::new(&format!(r"^error: cannot write `[^`]+/(sops/[a-z0-9-]+\.yaml|hosts/[a-z0-9-]+\.json|\.sops\.yaml)`: {cause}\n$"))
        .expect("re");
    assert!(re.is_match(&err), "stderr: {err}");
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i:03}")).collect()
}

/// A fleet with a shared file and `hosts` enrolled.
fn fleet_with(hosts: &[String]) -> TestFleet {
    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    let (_, id) = admin(&f);
    let mut doc = hostsmith::sops::file::Map::new();
    doc.set_path(&["wifi"], hostsmith::sops::file::Value::Str("hunter2".into())).expect("set");
    let text =
        hostsmith::sops::file::encrypt_new(&doc, &[vec![id.to_public().to_string()]], &hostsmith::sops::file::EncryptionOptions::default())
            .expect("encrypt");
    std::fs::create_dir_all(f.dir.join("sops")).expect("mkdir");
    std::fs::write(f.dir.join("sops/shared.yaml"), text).expect("write");
    if !hosts.is_empty() {
        let mut args = vec!["-q", "vm-fresh"];
        args.extend(hosts.iter().map(String::as_str));
        ok(&f.run(&args));
    }
    f
}

/// Runs the enrolment `args` on a tmpfs with room for half of what the run needs beyond the
/// fleet, checks the failure, re-runs on a healthy disk and checks the fleet.
fn full_disk_scenario(f: &TestFleet, args: &[&str], hosts: &[String]) -> (u64, u64) {
    let need = peak_need(f, args);
    let before = files(&f.dir);
    let size = pages(&before) + (need / 2).div_ceil(PAGE) * PAGE;
    let out = run_with_fault(f, &Fault::Disk(size), args);
    assert_error_names_a_file(&out, r"No space left on device \(os error 28\)");
    let faulted = files(&f.dir);
    // An enrolment stages every file before it names one: the full disk stops it first.
    assert_unchanged(&before, &faulted, "the run ran out of space while staging");
    ok(&f.run(args));
    assert_before_or_after(f, &before, &faulted, &files(&f.dir));
    assert_consistent(f, hosts, 10);
    (pages(&before), need)
}

#[test]
fn a_full_disk_in_the_middle_of_a_200_host_vm_fresh_changes_nothing_and_a_rerun_completes() {
    if !can_mount() {
        return;
    }
    let old = names("old", 3);
    let f = fleet_with(&old);
    let new = names("web", 200);
    let mut args = vec!["-q", "vm-fresh"];
    args.extend(new.iter().map(String::as_str));
    let (fleet, need) = full_disk_scenario(&f, &args, &new);
    eprintln!("200-host vm-fresh: fleet {fleet} B on tmpfs, the run needs {need} B more at its peak; given half");
    assert_consistent(&f, &old, 1);
}

#[test]
fn a_full_disk_during_keys_rotate_leaves_the_old_key_everywhere_and_a_rerun_completes() {
    if !can_mount() {
        return;
    }
    let hosts = names("web", 20);
    let f = fleet_with(&hosts);
    let old_record = f.read("hosts/web001.json");
    let (fleet, need) = full_disk_scenario(&f, &["-q", "keys", "rotate", "web001"], &hosts);
    eprintln!("keys rotate: fleet {fleet} B on tmpfs, the rotation needs {need} B more at its peak; given half");
    assert_ne!(f.read("hosts/web001.json"), old_record, "the re-run rotated the key");
}

#[test]
fn a_full_disk_during_sops_rekey_leaves_each_file_old_or_new_and_a_rerun_completes() {
    if !can_mount() {
        return;
    }
    let hosts = names("web", 40);
    let f = fleet_with(&hosts);
    // Four more admins join every rule: every SOPS file must be re-keyed, and grows.
    let mut text = f.read(".sops.yaml");
    for i in 2..=5 {
        let recipient = age::x25519::Identity::generate().to_public().to_string();
        text = text.replacen("keys:\n", &format!("keys:\n  - &admin{i} {recipient}\n"), 1);
        text = text.replace("          - *admin\n", &format!("          - *admin\n          - *admin{i}\n"));
    }
    std::fs::write(f.dir.join(".sops.yaml"), text).expect("write");
    // One file at a time, each replacing its old version: the disk must hold the fleet, one
    // new file beside its old one, and the files re-keyed so far (each grew by a stanza).
    let args = ["-q", "sops", "rekey", "-j", "1"];
    let before = files(&f.dir);
    let scratch = scratch_copy(&f);
    ok(&run(f.cmd(&args).current_dir(&scratch)));
    let rekeyed = files(&scratch);
    std::fs::remove_dir_all(&scratch).expect("rm scratch");
    let growth = pages(&rekeyed) - pages(&before);
    let largest = rekeyed.values().map(|b| (b.len() as u64).div_ceil(PAGE) * PAGE).max().unwrap_or(PAGE);
    assert!(growth >= 8 * PAGE, "the re-key must grow the fleet by several pages to fail part way ({growth} B)");
    let size = pages(&before) + largest + growth / 2;
    let need = growth + largest;
    let out = run_with_fault(&f, &Fault::Disk(size), &args);
    // One line per file that failed, naming it, even with --quiet; then the count.
    let err = stderr(&out);
    let line = Regex::new(
        r"^failed      sops/[a-z0-9]+\.yaml: cannot write `[^`]+/sops/[a-z0-9]+\.yaml`: No space left on device \(os error 28\)$",
    )
    .expect("re");
    let (failures, last) = err.trim_end().rsplit_once('\n').unwrap_or(("", err.trim_end()));
    assert!(failures.lines().all(|l| line.is_match(l)) && !failures.is_empty(), "stderr: {err}");
    assert_eq!(last, format!("error: {} problem(s) found", failures.lines().count()), "stderr: {err}");
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    let faulted = files(&f.dir);
    let rekeyed = faulted.iter().filter(|(p, b)| before.get(*p) != Some(b)).count();
    eprintln!("sops rekey: fleet {} B, needs {need} B more at its peak; given half, {rekeyed} of 41 files were re-keyed", pages(&before));
    ok(&f.run(&args));
    assert_before_or_after(&f, &before, &faulted, &files(&f.dir));
    assert_consistent(&f, &hosts, 5);
    let rekeyed_after = files(&f.dir).iter().filter(|(p, b)| p.starts_with("sops") && before.get(*p) != Some(b)).count();
    assert_eq!(rekeyed_after, 41, "every SOPS file holds the new admins after the re-run");
}

#[test]
fn a_read_only_directory_or_file_in_the_fleet_fails_vm_fresh_naming_it_and_a_rerun_completes() {
    if !can_mount() {
        return;
    }
    let old = names("old", 3);
    for (read_only, cause) in [
        (&["hosts"][..], r"Read-only file system \(os error 30\)"),
        (&["sops/shared.yaml"][..], r"Device or resource busy \(os error 16\)"),
    ] {
        let f = fleet_with(&old);
        let new = names("web", 5);
        let mut args = vec!["-q", "vm-fresh"];
        args.extend(new.iter().map(String::as_str));
        let before = files(&f.dir);
        let out = run_with_fault(&f, &Fault::ReadOnly(read_only), &args);
        assert_error_names_a_file(&out, cause);
        let faulted = files(&f.dir);
        ok(&f.run(&args));
        assert_before_or_after(&f, &before, &faulted, &files(&f.dir));
        assert_consistent(&f, &new, 1);
    }
}

#[test]
fn an_io_error_on_the_records_fails_vm_fresh_naming_the_file_and_changes_nothing() {
    if !can_mount() || !can_fuse() {
        return;
    }
    let old = names("old", 3);
    let f = fleet_with(&old);
    let new = names("web", 5);
    let mut args = vec!["-q", "vm-fresh"];
    args.extend(new.iter().map(String::as_str));
    let before = files(&f.dir);
    // Records are staged beside the host files before they are named: the fault follows
    // what is written (a record), not a directory.
    let out = run_with_fault(&f, &Fault::Eio("content:age_recipient"), &args);
    assert_error_names_a_file(&out, r"Input/output error \(os error 5\)");
    assert!(stderr(&out).contains("hosts/web"), "the record is named: {}", stderr(&out));
    let faulted = files(&f.dir);
    assert_unchanged(&before, &faulted, "every file was staged before any was named");
    ok(&f.run(&args));
    assert_before_or_after(&f, &before, &faulted, &files(&f.dir));
    assert_consistent(&f, &new, 1);
}

#[test]
fn an_io_error_on_the_sops_files_fails_each_rekey_and_leaves_every_file_as_it_was() {
    if !can_mount() || !can_fuse() {
        return;
    }
    let hosts = names("web", 5);
    let f = fleet_with(&hosts);
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let text = f
        .read(".sops.yaml")
        .replacen("keys:\n", &format!("keys:\n  - &admin2 {recipient}\n"), 1)
        .replace("          - *admin\n", "          - *admin\n          - *admin2\n");
    std::fs::write(f.dir.join(".sops.yaml"), text).expect("write");
    let args = ["-q", "sops", "rekey"];
    let before = files(&f.dir);
    let out = run_with_fault(&f, &Fault::Eio("sops"), &args);
    let err = stderr(&out);
    let line =
        Regex::new(r"^failed      sops/[a-z0-9]+\.yaml: cannot write `[^`]+/sops/[a-z0-9]+\.yaml`: Input/output error \(os error 5\)$")
            .expect("re");
    let (failures, last) = err.trim_end().rsplit_once('\n').expect("lines");
    assert_eq!(failures.lines().filter(|l| line.is_match(l)).count(), 6, "stderr: {err}");
    assert_eq!((last, out.status.code()), ("error: 6 problem(s) found", Some(1)), "stderr: {err}");
    let faulted = files(&f.dir);
    assert_unchanged(&before, &faulted, "no file was half re-keyed");
    ok(&f.run(&args));
    assert_before_or_after(&f, &before, &faulted, &files(&f.dir));
    assert_consistent(&f, &hosts, 1);
}
