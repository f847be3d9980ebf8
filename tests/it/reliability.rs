//! Reliability: `vm-fresh` killed at random moments, eight runs at once on one fleet, and
//! audits of file modes and of where private key material can show up.
//!
//! The crash test prints its seed; `HOSTSMITH_CRASH_SEED=N` replays the same kill times.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hostsmith::sops::file::{EncryptedFile, Value};
use hostsmith::sops::rules::SopsConfig;
use hostsmith::ssh_keys::Keypair;
use rand::{Rng, SeedableRng};

use crate::common::{self, TestFleet, ok, stderr, stdout};

const TMP_PREFIX: &str = ".hostsmith-tmp-";

// ---------------------------------------------------------------------------------------
// Shared helpers

fn admin_identity(f: &TestFleet) -> (String, age::x25519::Identity) {
    let text = std::fs::read_to_string(f.admin_key_file()).expect("admin key");
    let id = text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).expect("identity line").parse().expect("identity");
    (text, id)
}

/// Every file under `dir` (recursively), sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e.expect("entry").path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("ls") {
        let e = e.expect("entry");
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}

/// Decrypts a host file natively with the admin identity; returns its host key.
fn host_key_in(path: &Path, admin: &age::x25519::Identity) -> Keypair {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = EncryptedFile::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dec = file.decrypt(std::slice::from_ref(admin)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match dec.document().get_path(&["ssh_host_ed25519_key"]) {
        Some(Value::Str(s)) => Keypair::from_openssh(s, None).expect("host key"),
        other => panic!("{}: no host key ({other:?})", path.display()),
    }
}

fn record(dir: &Path, host: &str) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join(format!("hosts/{host}.json"))).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("hosts/{host}.json does not parse: {e}\n{text}")))
}

/// Files in the fleet that hold private key material in clear, or staging files.
fn leftovers(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut temps = Vec::new();
    let mut plain = Vec::new();
    for p in files_under(dir) {
        if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(TMP_PREFIX)) {
            temps.push(p.clone());
        }
        let bytes = std::fs::read(&p).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("PRIVATE KEY-----") || text.contains("AGE-SECRET-KEY-") {
            plain.push(p);
        }
    }
    (temps, plain)
}

/// The consistency every fleet state must have, killed or not. `hosts` are the hosts the
/// interrupted run was adding; `others` hosts that were complete before it. Returns the hosts
/// whose `.sops.yaml` entries exist.
#[track_caller]
fn assert_consistent(f: &TestFleet, admin: &age::x25519::Identity, hosts: &[String], others: &[String], ctx: &str) -> usize {
    let admin_recipient = admin.to_public().to_string();
    // Every file parses.
    for p in files_under(&f.dir) {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{ctx}: {} unreadable: {e}", p.display()));
        if name.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{ctx}: {} is not JSON: {e}", p.display()));
        } else if name == ".sops.yaml" {
            SopsConfig::parse(&text).unwrap_or_else(|e| panic!("{ctx}: .sops.yaml does not parse: {e}\n{text}"));
        } else if name.ends_with(".yaml") {
            let file = EncryptedFile::parse(&text).unwrap_or_else(|e| panic!("{ctx}: {} does not parse: {e}", p.display()));
            file.decrypt(std::slice::from_ref(admin)).unwrap_or_else(|e| panic!("{ctx}: {} does not decrypt: {e}", p.display()));
        } else if name.ends_with(".toml") {
            text.parse::<toml::Table>().unwrap_or_else(|e| panic!("{ctx}: {} is not TOML: {e}", p.display()));
        }
    }
    // `.sops.yaml`: one edit per run, so the run's hosts are all there or none is; every
    // anchor has its rule (admins + host) and the shared rule, and every rule its anchor.
    let cfg = SopsConfig::parse(&f.read(".sops.yaml")).expect("parses");
    let anchors: BTreeMap<String, Option<String>> = cfg.anchors().into_iter().map(|a| (a.name, a.value)).collect();
    let present: Vec<&String> = hosts.iter().filter(|h| anchors.contains_key(*h)).collect();
    assert!(present.is_empty() || present.len() == hosts.len(), "{ctx}: half an edit: {} of {} anchors", present.len(), hosts.len());
    let shared = cfg.recipients_for("sops/shared.yaml").expect("shared rule");
    for (name, value) in &anchors {
        if name == "admin" {
            continue;
        }
        let value = value.clone().unwrap_or_else(|| panic!("{ctx}: anchor &{name} is not a recipient"));
        let rule = cfg.rule_for(&format!("sops/{name}.yaml")).unwrap_or_else(|| panic!("{ctx}: no rule for anchor &{name}"));
        assert_eq!(rule.path_regex.as_deref(), Some(format!("^sops/{name}\\.yaml$").as_str()), "{ctx}: rule of {name}");
        assert_eq!(cfg.recipients_for(&format!("sops/{name}.yaml")), Some(vec![vec![admin_recipient.clone(), value.clone()]]), "{ctx}");
        assert!(shared.iter().flatten().any(|r| *r == value), "{ctx}: {name} is not in the shared rule");
    }
    for h in hosts.iter().chain(others) {
        let rule = cfg.rule_for(&format!("sops/{h}.yaml"));
        assert_eq!(rule.is_some(), anchors.contains_key(h), "{ctx}: rule and anchor of {h} disagree");
    }
    // A record means a complete host: anchor, rule, file, all agreeing.
    for h in hosts.iter().chain(others) {
        let Some(rec) = record(&f.dir, h) else { continue };
        let recipient = rec["age_recipient"].as_str().expect("recipient");
        assert_eq!(anchors.get(h).cloned().flatten().as_deref(), Some(recipient), "{ctx}: record of {h} without its anchor");
        let key = host_key_in(&f.dir.join(format!("sops/{h}.yaml")), admin);
        assert_eq!(rec["fingerprint"].as_str(), Some(key.fingerprint().as_str()), "{ctx}: record and key of {h} differ");
        assert_eq!(key.age_recipient().expect("recipient"), recipient, "{ctx}");
    }
    // No private key in clear, whatever else was left.
    let (_, plain) = leftovers(&f.dir);
    assert!(plain.is_empty(), "{ctx}: private key material in clear in {plain:?}");
    present.len()
}

/// Writes a shared file every host joins, encrypted for the admin by hostsmith's engine.
fn add_shared_file(f: &TestFleet, admin: &age::x25519::Identity) {
    let mut doc = hostsmith::sops::file::Map::new();
    doc.set_path(&["wifi"], Value::Str("hunter2".into())).expect("set");
    let text = hostsmith::sops::file::encrypt_new(
        &doc,
        &[vec![admin.to_public().to_string()]],
        &hostsmith::sops::file::EncryptionOptions::default(),
    )
    .expect("encrypt");
    std::fs::create_dir_all(f.dir.join("sops")).expect("mkdir");
    std::fs::write(f.dir.join("sops/shared.yaml"), text).expect("write");
}

fn run_vm_fresh(f: &TestFleet, hosts: &[String]) -> std::process::Child {
    let mut args = vec!["-q", "vm-fresh"];
    args.extend(hosts.iter().map(String::as_str));
    f.cmd(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn")
}

// ---------------------------------------------------------------------------------------
// Crash safety

/// `vm-fresh` of many hosts is SIGKILLed at 30 moments spread over its run (seeded, printed).
/// After each kill the fleet is consistent (every file parses, `.sops.yaml` has all of the
/// run's entries or none, records agree with keys, nothing in clear); a re-run succeeds,
/// keeps every key a host file already held, `sops check` passes, real sops decrypts the host
/// files, and no staging file is left.
#[test]
#[allow(clippy::too_many_lines, reason = "kills a run at every step and checks the fleet after each; the steps are a table")]
fn vm_fresh_killed_at_random_moments_leaves_a_fleet_a_rerun_completes() {
    let Some(sops) = common::fast_sops() else { return };
    const KILLS: usize = 30;
    let per_run: usize = std::env::var("HOSTSMITH_CRASH_HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let seed: u64 = std::env::var("HOSTSMITH_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_nanos() as u64);
    eprintln!("crash test seed: {seed} (HOSTSMITH_CRASH_SEED={seed} replays the kill times)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    let (admin_text, admin) = admin_identity(&f);
    add_shared_file(&f, &admin);
    let others: Vec<String> = (0..3).map(|i| format!("pre{i}")).collect();
    let mut args = vec!["vm-fresh"];
    args.extend(others.iter().map(String::as_str));
    ok(&f.run(&args));
    let template = f.tmp.path().join("template");
    copy_dir(&f.dir, &template);
    let reset = || {
        std::fs::remove_dir_all(&f.dir).expect("rm");
        copy_dir(&template, &f.dir);
    };
    let pre_files: BTreeMap<String, Vec<u8>> =
        others.iter().map(|h| (h.clone(), std::fs::read(f.dir.join(format!("sops/{h}.yaml"))).expect("read"))).collect();
    let hosts: Vec<String> = (0..per_run).map(|i| format!("n{i:02}")).collect();

    // How long an uninterrupted run takes here, and when it starts writing (the first host
    // file appears): the median of three runs.
    let first_file = f.dir.join(format!("sops/{}.yaml", hosts[0]));
    let (mut durations, mut firsts) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        reset();
        let start = Instant::now();
        let mut child = run_vm_fresh(&f, &hosts);
        let mut first = None;
        while child.try_wait().expect("try_wait").is_none() {
            if first.is_none() && first_file.is_file() {
                first = Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        durations.push(start.elapsed());
        firsts.push(first.unwrap_or(Duration::ZERO));
        assert!(child.wait_with_output().expect("wait").status.success());
    }
    durations.sort();
    firsts.sort();
    let (mut duration, mut writes_at) = (durations[1], firsts[1]);
    eprintln!("an uninterrupted run of {per_run} hosts takes {duration:?}, writing from {writes_at:?}");

    // A third of the kills spread over the whole run, two thirds over its writing phase (where
    // a kill can leave files half done), each stratified. A run that finished before its kill
    // is tried again with an earlier kill (and the estimate of a run's length shrinks).
    let mut missed = 0;
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut temps_after_kill = 0;
    let mut recovered_keys = 0;
    let (spread, writing) = (KILLS / 3, KILLS - KILLS / 3);
    let mut slots: Vec<(f64, f64)> = Vec::new();
    for (phase, count) in [(0.0, spread), (1.0, writing)] {
        for i in 0..count {
            slots.push((phase, (i as f64 + rng.r#gen::<f64>()) / count as f64));
        }
    }
    for (k, (in_writes, fraction)) in slots.into_iter().enumerate() {
        let (mut at, mut finished) = (Duration::ZERO, true);
        for _ in 0..6 {
            reset();
            let from = writes_at.mul_f64(in_writes);
            at = from + duration.saturating_sub(from).mul_f64(fraction);
            let mut child = run_vm_fresh(&f, &hosts);
            std::thread::sleep(at);
            finished = child.try_wait().expect("try_wait").is_some();
            child.kill().ok();
            let status = child.wait().expect("wait");
            if !finished {
                break;
            }
            assert!(status.success(), "the run failed on its own");
            missed += 1;
            duration = duration.mul_f64(0.85);
            writes_at = writes_at.mul_f64(0.85);
        }
        let ctx = format!("kill {k} at {at:?} (seed {seed})");

        // The state the kill left.
        let files: usize = hosts.iter().filter(|h| f.dir.join(format!("sops/{h}.yaml")).is_file()).count();
        let records: usize = hosts.iter().filter(|h| f.dir.join(format!("hosts/{h}.json")).is_file()).count();
        let (temps, _) = leftovers(&f.dir);
        temps_after_kill += temps.len();
        let edited = assert_consistent(&f, &admin, &hosts, &others, &ctx) > 0;
        let phase = match (files, edited, records) {
            _ if finished => "finished before the kill",
            (0, false, 0) => "planning (nothing written)",
            (_, false, 0) => "writing host files",
            (_, true, 0) => "after .sops.yaml",
            (_, true, r) if r < hosts.len() => "writing records",
            _ => "all written",
        };
        *phases.entry(phase).or_default() += 1;
        for (h, bytes) in &pre_files {
            assert_eq!(&std::fs::read(f.dir.join(format!("sops/{h}.yaml"))).expect("read"), bytes, "{ctx}: {h} changed");
        }
        if edited {
            // Real sops reads the edited rules: a new file for one of the run's hosts gets
            // exactly the admin and that host.
            let h = &hosts[rng.gen_range(0..hosts.len())];
            let plain = f.tmp.path().join("plain.yaml");
            std::fs::write(&plain, "a: b\n").expect("write");
            let mut c = Command::new(&sops);
            c.args(["--encrypt", "--filename-override", &format!("sops/{h}.yaml")]).arg(&plain).current_dir(&f.dir);
            f.env(&mut c);
            let enc = EncryptedFile::parse(&ok(&common::run(&mut c))).expect("sops output");
            let cfg = SopsConfig::parse(&f.read(".sops.yaml")).expect("parses");
            assert_eq!(Some(enc.age_recipients()), cfg.recipients_for(&format!("sops/{h}.yaml")), "{ctx}");
        }
        let keys_before: BTreeMap<String, String> = hosts
            .iter()
            .filter(|h| f.dir.join(format!("sops/{h}.yaml")).is_file())
            .map(|h| (h.clone(), host_key_in(&f.dir.join(format!("sops/{h}.yaml")), &admin).fingerprint()))
            .collect();

        // The same command again completes the work.
        let out = run_vm_fresh(&f, &hosts).wait_with_output().expect("wait");
        assert!(out.status.success(), "{ctx}: the re-run failed: {}", String::from_utf8_lossy(&out.stderr));
        let check = f.run(&["sops", "check"]);
        assert!(check.status.success(), "{ctx}: sops check: {}{}", stdout(&check), stderr(&check));
        assert_eq!(assert_consistent(&f, &admin, &hosts, &others, &ctx), hosts.len(), "{ctx}");
        for h in &hosts {
            let rec = record(&f.dir, h).unwrap_or_else(|| panic!("{ctx}: no record for {h} after the re-run"));
            if let Some(fp) = keys_before.get(h) {
                assert_eq!(rec["fingerprint"].as_str(), Some(fp.as_str()), "{ctx}: the re-run replaced the key of {h}");
                recovered_keys += usize::from(!finished);
            }
        }
        let (temps, plain) = leftovers(&f.dir);
        assert!(temps.is_empty() && plain.is_empty(), "{ctx}: left behind: {temps:?} {plain:?}");
        for (h, bytes) in &pre_files {
            assert_eq!(&std::fs::read(f.dir.join(format!("sops/{h}.yaml"))).expect("read"), bytes, "{ctx}: {h} changed");
        }
        // Real sops opens the host files: all of them every fifth kill, otherwise a few of
        // those that existed before the kill (their keys were recovered) and a few more.
        let mut sample: BTreeSet<&String> = BTreeSet::new();
        if k % 5 == 0 {
            sample.extend(&hosts);
        } else {
            let before: Vec<&String> = keys_before.keys().collect();
            for _ in 0..3 {
                if !before.is_empty() {
                    sample.insert(before[rng.gen_range(0..before.len())]);
                }
                sample.insert(&hosts[rng.gen_range(0..hosts.len())]);
            }
        }
        sample.insert(&others[0]);
        for h in sample {
            let out = common::sops_decrypt(&sops, &f.dir, &format!("sops/{h}.yaml"), &admin_text);
            assert!(ok(&out).contains("ssh_host_ed25519_key"), "{ctx}: {h}");
        }
        let shared = ok(&common::sops_decrypt(&sops, &f.dir, "sops/shared.yaml", &admin_text));
        assert!(shared.contains("hunter2"), "{ctx}");
    }
    eprintln!(
        "{KILLS} kills ({missed} more runs finished before their kill and were tried again); \
         {temps_after_kill} staging file(s) found after kills; {recovered_keys} key(s) recovered from host files; \
         where the kills landed: {phases:?}"
    );
    assert!(phases.get("finished before the kill").copied().unwrap_or(0) <= KILLS / 10, "most kills must land (seed {seed})");
}

// ---------------------------------------------------------------------------------------
// Concurrency

/// Eight runs of `vm-fresh` for different hosts at once on one fleet: the fleet lock
/// serialises them, so no edit of `.sops.yaml` or of the shared file is lost.
#[test]
fn eight_concurrent_vm_fresh_runs_all_land() {
    let Some(sops) = common::fast_sops() else { return };
    let f = TestFleet::new();
    ok(&f.run(&["init"]));
    let (admin_text, admin) = admin_identity(&f);
    add_shared_file(&f, &admin);
    let groups: Vec<Vec<String>> = (0..8).map(|i| (0..3).map(|j| format!("c{i}h{j}")).collect()).collect();
    let children: Vec<_> = groups.iter().map(|g| run_vm_fresh(&f, g)).collect();
    for (g, child) in groups.iter().zip(children) {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{g:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let all: Vec<String> = groups.concat();
    assert_eq!(assert_consistent(&f, &admin, &all, &[], "after 8 concurrent runs"), all.len());
    let check = f.run(&["sops", "check"]);
    assert!(check.status.success(), "{}{}", stdout(&check), stderr(&check));
    assert!(stdout(&check).starts_with(&format!("ok: {} host(s)", all.len())), "{}", stdout(&check));
    let shared = EncryptedFile::parse(&f.read("sops/shared.yaml")).expect("shared");
    for h in &all {
        let rec = record(&f.dir, h).unwrap_or_else(|| panic!("no record for {h}"));
        let recipient = rec["age_recipient"].as_str().expect("recipient").to_string();
        assert!(shared.age_recipients().iter().flatten().any(|r| *r == recipient), "{h} lost from the shared file");
        let out = common::sops_decrypt(&sops, &f.dir, &format!("sops/{h}.yaml"), &admin_text);
        assert!(ok(&out).contains("ssh_host_ed25519_key"), "{h}");
        // The host itself opens its file and the shared one.
        let key = host_key_in(&f.dir.join(format!("sops/{h}.yaml")), &admin);
        let id = key.age_identity().expect("identity");
        let out = common::sops_decrypt(&sops, &f.dir, "sops/shared.yaml", &id);
        assert!(ok(&out).contains("hunter2"), "{h}");
    }
    let (temps, plain) = leftovers(&f.dir);
    assert!(temps.is_empty() && plain.is_empty(), "{temps:?} {plain:?}");
}

// ---------------------------------------------------------------------------------------
// Permissions and secrets

/// Runs `hostsmith ARGS` in the fleet under umask 000, so every mode is the one hostsmith
/// asked for and none comes from a restrictive umask.
fn run_umask0(f: &TestFleet, args: &[&str], extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("sh");
    c.arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(common::bin()).args(args).current_dir(&f.dir);
    f.env(&mut c);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    common::run(&mut c)
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).expect("meta").permissions().mode() & 0o7777
}

/// The mode policy, checked on everything init, vm-fresh (with first-boot outputs),
/// cloud-init (with --iso when xorriso is present), extra-files and known-hosts create, run
/// under umask 000:
/// - secrets (the admin identity; every file of a cloud-init output, which holds the host
///   key; the private keys of an extra-files tree; the seed image) are 0600;
/// - the directories that hold them and that hostsmith creates for them (the admin
///   identity's directories, each `--out` directory and per-host output directory) are 0700;
///   directories inside an extra-files tree keep the modes they must have on the target
///   (0755: they become `/etc`, `/etc/ssh`), shielded by their 0700 root;
/// - public files (hostsmith.toml, .sops.yaml, host records, encrypted host files, public
///   keys, known_hosts) are 0644 and fleet directories 0755: never group- or world-writable;
/// - nothing anywhere is group- or world-writable.
#[test]
#[allow(clippy::too_many_lines, reason = "a fault-injection scenario told in order")]
fn every_file_the_commands_create_has_the_mode_of_what_it_holds() {
    let f = TestFleet::new();
    let out = f.tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let key = Keypair::generate("alice@laptop").expect("key");
    let pubkey = out.join("alice.pub");
    std::fs::write(&pubkey, key.public_line()).expect("write");
    let pk = pubkey.to_str().expect("utf8");
    let p = |s: &str| out.join(s).to_str().expect("utf8").to_string();
    ok(&run_umask0(&f, &["init"], &[]));
    ok(&run_umask0(&f, &["vm-fresh", "web01", "db01", "--cloud-init", &p("ci"), "--extra-files", &p("ef"), "--authorized-key", pk], &[]));
    let iso = common::which("xorriso").is_some();
    let mut ci = vec!["cloud-init", "web01", "--out", &p("ci2")].into_iter().map(String::from).collect::<Vec<_>>();
    ci.extend(["--authorized-key".into(), pk.into()]);
    if iso {
        ci.extend(["--iso".into(), p("seed.iso")]);
    } else {
        eprintln!("note: xorriso is not on PATH; the seed image's mode is not checked");
    }
    ok(&run_umask0(&f, &ci.iter().map(String::as_str).collect::<Vec<_>>(), &[]));
    ok(&run_umask0(&f, &["extra-files", "db01", "--out", &p("ef2")], &[]));
    ok(&run_umask0(&f, &["known-hosts", "--out", &p("known_hosts")], &[]));

    let mut problems = Vec::new();
    let mut expect = |path: &Path, want: u32, why: &str| {
        let got = mode(path);
        if got != want {
            problems.push(format!("{}: {got:o}, want {want:o} ({why})", path.display()));
        }
    };
    // The admin identity.
    let cfg = f.home.join(".config");
    for d in [cfg.clone(), cfg.join("sops"), cfg.join("sops/age")] {
        expect(&d, 0o700, "directory of the admin identity");
    }
    expect(&f.admin_key_file(), 0o600, "admin identity");
    // The fleet: public.
    for dir in [f.dir.clone(), f.dir.join("sops"), f.dir.join("hosts")] {
        expect(&dir, 0o755, "fleet directory");
    }
    let fleet_files = files_under(&f.dir);
    assert!(fleet_files.len() >= 6, "{fleet_files:?}");
    for file in &fleet_files {
        expect(file, 0o644, "public fleet file");
    }
    // First-boot outputs: secret.
    for root in ["ci/web01", "ci/db01", "ci2"] {
        let dir = out.join(root);
        expect(&dir, 0o700, "cloud-init output directory");
        let files = files_under(&dir);
        assert!(files.iter().any(|p| p.ends_with("user-data")), "{files:?}");
        for file in files {
            expect(&file, 0o600, "cloud-init output (user-data holds the host key)");
        }
    }
    expect(&out.join("ci"), 0o700, "--cloud-init directory");
    expect(&out.join("ef"), 0o700, "--extra-files directory");
    for root in ["ef/web01", "ef/db01", "ef2"] {
        let dir = out.join(root);
        expect(&dir, 0o700, "extra-files tree root");
        let files = files_under(&dir);
        assert!(files.iter().any(|p| p.ends_with("ssh_host_ed25519_key")), "{files:?}");
        for file in files {
            let public = file.extension().is_some_and(|e| e == "pub");
            expect(&file, if public { 0o644 } else { 0o600 }, "extra-files tree file");
        }
    }
    if iso {
        expect(&out.join("seed.iso"), 0o600, "seed image (holds the host key)");
    }
    expect(&out.join("known_hosts"), 0o644, "known_hosts");
    // Nothing is group- or world-writable (the test's own files apart).
    for file in files_under(f.tmp.path()).into_iter().chain(dirs_under(f.tmp.path())) {
        if file.starts_with(f.home.join(".ssh")) {
            continue;
        }
        let m = mode(&file);
        if m & 0o022 != 0 {
            problems.push(format!("{}: {m:o} is group- or world-writable", file.display()));
        }
    }
    assert!(problems.is_empty(), "modes:\n{}", problems.join("\n"));
}

fn dirs_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls") {
            let p = e.expect("entry").path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
                out.push(p);
            }
        }
    }
    out
}

/// Private key material of a fleet, as substrings that cannot occur by chance.
fn secret_markers(f: &TestFleet, admin: &age::x25519::Identity, hosts: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (admin_text, _) = admin_identity(f);
    let admin_line = admin_text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).expect("line").to_string();
    out.push(("admin identity".into(), admin_line));
    for h in hosts {
        let text = f.read(&format!("sops/{h}.yaml"));
        let dec = EncryptedFile::parse(&text).expect("parse").decrypt(std::slice::from_ref(admin)).expect("decrypt");
        let mut keys = Vec::new();
        for (what, path) in [
            ("host key", &["ssh_host_ed25519_key"][..]),
            ("deploy key nix-config", &["deploy-keys", "nix-config"][..]),
            ("deploy key nix-secrets", &["deploy-keys", "nix-secrets"][..]),
        ] {
            if let Some(Value::Str(s)) = dec.document().get_path(path) {
                keys.push((what.to_string(), s.clone()));
            }
        }
        assert_eq!(keys.len(), 3, "{h}: a key is missing from the decrypted file");
        for (what, pem) in keys {
            // The body lines after the first two (the format header and public key) are
            // the private half.
            let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            for (i, line) in body.iter().enumerate().skip(2).filter(|(_, l)| l.len() >= 40) {
                out.push((format!("{h} {what}, body line {i}"), (*line).to_string()));
            }
            let pair = Keypair::from_openssh(&pem, None).expect("key");
            if what == "host key" {
                out.push((format!("{h} age identity"), pair.age_identity().expect("identity").to_string()));
            }
        }
    }
    out
}

/// Every command run with `RUST_LOG=trace -vvv` (and with `--json`): no private key material
/// (any key's private body, any age identity, or even a PEM private-key header) appears on
/// stdout, on stderr, or in any file other than the admin identity and the first-boot
/// outputs the user asked for; the temp directory stays empty.
#[test]
#[allow(clippy::too_many_lines, reason = "a fault-injection scenario told in order")]
fn no_private_key_material_in_output_logs_or_stray_files() {
    let f = TestFleet::new();
    let out = f.tmp.path().join("out");
    let tmpdir = f.tmp.path().join("tmp");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::create_dir_all(&tmpdir).expect("mkdir");
    let key = Keypair::generate("alice@laptop").expect("key");
    let pubkey = f.tmp.path().join("alice.pub");
    std::fs::write(&pubkey, key.public_line()).expect("write");
    let pk = pubkey.to_str().expect("utf8").to_string();
    let p = |s: &str| out.join(s).to_str().expect("utf8").to_string();
    let iso = common::which("xorriso").is_some();

    let mut commands: Vec<Vec<String>> = vec![
        vec!["init".into()],
        vec!["vm-fresh".into(), "web01".into(), "db01".into()],
        vec!["vm-fresh".into(), "app01".into(), "--cloud-init".into(), p("ci"), "--extra-files".into(), p("ef")],
        vec!["cloud-init".into(), "web01".into(), "--out".into(), p("ci2")],
        vec!["extra-files".into(), "db01".into(), "--out".into(), p("ef2")],
        vec!["known-hosts".into()],
        vec!["known-hosts".into(), "--out".into(), f.tmp.path().join("known_hosts").to_str().expect("utf8").into()],
        vec!["sops".into(), "check".into()],
        vec!["vm-fresh".into(), "web01".into(), "db01".into(), "app01".into()],
        vec!["vm-fresh".into(), "--rotate".into(), "db01".into()],
        vec!["vm-fresh".into(), "--dry-run".into(), "new01".into()],
        vec!["keys".into(), "rotate".into(), "web01".into()],
        vec!["sops".into(), "rekey".into(), "--rotate-data-key".into()],
        vec!["trust".into(), "--show".into()],
    ];
    if iso {
        commands[3].extend(["--iso".into(), p("seed.iso")]);
    }
    for c in &mut commands[2..5] {
        if c[0] != "extra-files" {
            c.extend(["--authorized-key".into(), pk.clone()]);
        }
    }
    let mut transcripts = Vec::new();
    // Markers are gathered after every command, so keys a later `--rotate` replaces count too.
    let mut markers: BTreeSet<(String, String)> = BTreeSet::new();
    for c in &commands {
        for json in [false, true] {
            if json && c[0] == "init" {
                continue;
            }
            let mut args: Vec<&str> = vec!["-vvv"];
            if json {
                args.push("--json");
            }
            args.extend(c.iter().map(String::as_str));
            let mut cmd = f.cmd(&args);
            cmd.env("RUST_LOG", "trace").env("TMPDIR", &tmpdir);
            let o = common::run(&mut cmd);
            assert!(o.status.success(), "{args:?}: {}", stderr(&o));
            transcripts.push((format!("{args:?}"), stdout(&o), stderr(&o)));
        }
        if c[0] != "init" {
            let (_, admin) = admin_identity(&f);
            let hosts: Vec<&str> =
                ["web01", "db01", "app01"].into_iter().filter(|h| f.dir.join(format!("hosts/{h}.json")).is_file()).collect();
            markers.extend(secret_markers(&f, &admin, &hosts));
        }
    }
    // Three hosts of three keys each (four or five private body lines per key), db01's
    // host key twice (rotated), their age identities, and the admin's.
    assert!(markers.len() >= 30, "{}", markers.len());
    let generic = ["PRIVATE KEY-----", "AGE-SECRET-KEY-"];
    let mut found = Vec::new();
    for (what, out, err) in &transcripts {
        for (name, text) in [("stdout", out), ("stderr", err)] {
            for g in generic {
                if text.contains(g) {
                    found.push(format!("{what} {name}: `{g}`"));
                }
            }
            for (m, marker) in &markers {
                if text.contains(marker.as_str()) {
                    found.push(format!("{what} {name}: {m}"));
                }
            }
        }
    }
    // Files: every file of the test's tree but the admin identity and the asked-for outputs.
    let allowed = [f.admin_key_file(), out.clone()];
    for file in files_under(f.tmp.path()) {
        if allowed.iter().any(|a| file.starts_with(a)) {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&file).expect("read")).into_owned();
        for g in generic {
            if text.contains(g) {
                found.push(format!("{}: `{g}`", file.display()));
            }
        }
        for (m, marker) in &markers {
            if text.contains(marker.as_str()) {
                found.push(format!("{}: {m}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "private key material found:\n{}", found.join("\n"));
    assert!(files_under(&tmpdir).is_empty(), "left in TMPDIR: {:?}", files_under(&tmpdir));
    // The outputs the user asked for do hold the key (so the markers are the right ones).
    let user_data = std::fs::read_to_string(out.join("ci2/user-data")).expect("user-data");
    assert!(markers.iter().any(|(m, v)| m.starts_with("web01 host key") && user_data.contains(v.as_str())), "markers miss the key");
}
