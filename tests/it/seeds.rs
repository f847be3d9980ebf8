//! The first-boot files: cloud-init schema, the seed image, the extra-files tree,
//! known_hosts, and `verify` against a real sshd on loopback.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use hostsmith::ssh_keys::Keypair;

use crate::common::{TestFleet, ok, peer, run, stderr, stdout};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
}

fn fleet_with_web01() -> (TestFleet, std::path::PathBuf) {
    let f = TestFleet::new();
    let admin = Keypair::generate("admin@ws").expect("key");
    let pubfile = f.tmp.path().join("admin.pub");
    std::fs::write(&pubfile, admin.public_line() + "\n").expect("write");
    f.init_with(&["web01"]);
    (f, pubfile)
}

#[test]
fn user_data_variants_pass_cloud_init_schema_and_a_broken_one_fails() {
    let Some(cloud_init) = peer("cloud-init") else { return };
    let (f, admin) = fleet_with_web01();
    let a = admin.to_str().expect("utf8");
    let variants: [&[&str]; 4] = [
        &["--authorized-key", a],
        &["--authorized-key", a, "--user", "ops"],
        &["--authorized-key", a, "--ip", "192.0.2.10/24", "--gateway", "192.0.2.1", "--dns", "192.0.2.53"],
        &["--authorized-key", a, "--authorized-key", a],
    ];
    for (i, extra) in variants.iter().enumerate() {
        let out = f.tmp.path().join(format!("seed{i}"));
        let mut args = vec!["cloud-init", "web01", "--out", out.to_str().expect("utf8")];
        args.extend_from_slice(extra);
        ok(&f.run(&args));
        let ud = out.join("user-data");
        let text = std::fs::read_to_string(&ud).expect("user-data");
        assert!(text.starts_with("#cloud-config\n"), "{text}");
        assert!(text.contains("ssh_deletekeys: true\n"));
        assert!(!text.contains("ssh_genkeytypes"));
        let check = run(Command::new(&cloud_init).args(["schema", "--config-file"]).arg(&ud));
        assert!(check.status.success(), "variant {i}: {}{}", stdout(&check), stderr(&check));
        assert_eq!(mode(&out), 0o700);
        assert_eq!(mode(&ud), 0o600);
        assert_eq!(mode(&out.join("meta-data")), 0o600);
        assert_eq!(out.join("network-config").exists(), i == 2);
    }
    let broken = f.tmp.path().join("broken-user-data");
    let good = std::fs::read_to_string(f.tmp.path().join("seed0/user-data")).expect("read");
    std::fs::write(&broken, good.replace("ssh_deletekeys: true", "ssh_deletekeys: \"yes please\"")).expect("write");
    let check = run(Command::new(&cloud_init).args(["schema", "--config-file"]).arg(&broken));
    assert!(!check.status.success(), "cloud-init accepted a broken user-data");
}

#[test]
fn meta_data_instance_id_follows_the_key() {
    let (f, admin) = fleet_with_web01();
    let a = admin.to_str().expect("utf8");
    let s1 = f.tmp.path().join("s1");
    let s2 = f.tmp.path().join("s2");
    ok(&f.run(&["cloud-init", "web01", "--out", s1.to_str().expect("utf8"), "--authorized-key", a]));
    ok(&f.run(&["cloud-init", "web01", "--out", s2.to_str().expect("utf8"), "--authorized-key", a]));
    let m1 = std::fs::read_to_string(s1.join("meta-data")).expect("meta");
    assert_eq!(m1, std::fs::read_to_string(s2.join("meta-data")).expect("meta"));
    assert!(m1.starts_with("instance-id: hostsmith-web01-"), "{m1}");
    assert!(m1.ends_with("local-hostname: \"web01\"\n"), "{m1}");
    ok(&f.run(&["vm-fresh", "--rotate", "web01"]));
    let s3 = f.tmp.path().join("s3");
    ok(&f.run(&["cloud-init", "web01", "--out", s3.to_str().expect("utf8"), "--authorized-key", a]));
    assert_ne!(m1, std::fs::read_to_string(s3.join("meta-data")).expect("meta"));
}

#[test]
fn the_seed_image_reads_back_byte_identical() {
    let (Some(bsdtar), Some(_)) = (peer("bsdtar"), peer("xorriso")) else { return };
    let (f, admin) = fleet_with_web01();
    let out = f.tmp.path().join("seed");
    let iso = f.tmp.path().join("web01-seed.iso");
    ok(&f.run(&[
        "cloud-init",
        "web01",
        "--out",
        out.to_str().expect("utf8"),
        "--iso",
        iso.to_str().expect("utf8"),
        "--authorized-key",
        admin.to_str().expect("utf8"),
    ]));
    assert_eq!(mode(&iso), 0o600);
    let listing = ok(&run(Command::new(&bsdtar).arg("-tf").arg(&iso)));
    let mut names: Vec<&str> = listing.lines().filter(|l| *l != ".").collect();
    names.sort_unstable();
    assert_eq!(names, vec!["meta-data", "user-data"]);
    for name in ["user-data", "meta-data"] {
        let got = run(Command::new(&bsdtar).arg("-xOf").arg(&iso).arg(name).stderr(Stdio::piped()));
        assert_eq!(got.stdout, std::fs::read(out.join(name)).expect("read"), "{name}");
    }
    if let Some(isoinfo) = peer("isoinfo") {
        let pvd = ok(&run(Command::new(isoinfo).arg("-d").arg("-i").arg(&iso)));
        assert!(pvd.contains("Volume id: cidata"), "{pvd}");
    }
}

#[test]
fn the_extra_files_tree_has_the_key_with_the_right_modes() {
    let (f, _) = fleet_with_web01();
    for (persist, prefix) in [(None, ""), (Some("/persist"), "persist/")] {
        let out = f.tmp.path().join(format!("extra{}", prefix.len()));
        let mut args = vec!["extra-files", "web01", "--out", out.to_str().expect("utf8")];
        if let Some(p) = persist {
            args.extend(["--persist", p]);
        }
        ok(&f.run(&args));
        let private = out.join(format!("{prefix}etc/ssh/ssh_host_ed25519_key"));
        let public = out.join(format!("{prefix}etc/ssh/ssh_host_ed25519_key.pub"));
        assert_eq!(mode(&out), 0o700);
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&public), 0o644);
        assert_eq!(mode(&out.join(format!("{prefix}etc/ssh"))), 0o755);
        let key = Keypair::from_openssh(&std::fs::read_to_string(&private).expect("key"), None).expect("openssh");
        let record: serde_json::Value = serde_json::from_str(&f.read("hosts/web01.json")).expect("record");
        assert_eq!(record["fingerprint"], key.fingerprint());
        assert_eq!(std::fs::read_to_string(&public).expect("pub"), key.public_line() + "\n");
    }
    let out = f.run(&["extra-files", "web01", "--out", "x", "--persist", "persist"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn known_hosts_lists_every_record() {
    let (f, _) = fleet_with_web01();
    ok(&f.run(&["vm-fresh", "db01"]));
    let text = ok(&f.run(&["known-hosts"]));
    let mut want = String::new();
    for h in ["db01", "web01"] {
        let r: serde_json::Value = serde_json::from_str(&f.read(&format!("hosts/{h}.json"))).expect("record");
        let key: Vec<&str> = r["ssh_host_ed25519_public"].as_str().expect("key").split_whitespace().take(2).collect();
        want.push_str(&format!("{h} {}\n", key.join(" ")));
    }
    assert_eq!(text, want);
}

#[test]
fn verify_against_a_real_sshd_passes_and_a_different_key_is_a_mismatch() {
    let Some(sshd_path) = peer("sshd").or_else(|| Path::new("/usr/sbin/sshd").exists().then(|| "/usr/sbin/sshd".into())) else { return };
    let (f, _) = fleet_with_web01();
    let (record_key, sshd) = crate::sshd::start_with_host_key_of(&f, "web01", &sshd_path);
    let addr = format!("127.0.0.1:{}", sshd.port);
    let text = ok(&f.run(&["verify", "web01", "--address", &addr]));
    assert_eq!(text, format!("verified: web01 at {addr} presents {}, as recorded\n", record_key.fingerprint()));
    drop(sshd);
    // A machine that generated its own key.
    let stranger = Keypair::generate("root@web01").expect("key");
    let sshd = crate::sshd::Sshd::start(&sshd_path, f.tmp.path(), &stranger);
    let addr = format!("127.0.0.1:{}", sshd.port);
    let out = f.run(&["verify", "web01", "--address", &addr]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&record_key.fingerprint()) && err.contains(&stranger.fingerprint()), "{err}");
}

#[test]
fn vm_fresh_checks_first_boot_options_before_making_any_key() {
    let f = TestFleet::new();
    f.init_with(&[]);
    let before = f.snapshot();
    let seeds = f.tmp.path().join("seeds");
    let out = f.run(&["vm-fresh", "web01", "--cloud-init", seeds.to_str().expect("utf8"), "--authorized-key", "/nonexistent/admin.pub"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("/nonexistent/admin.pub"), "{}", stderr(&out));
    f.assert_unchanged(&before, "a refused vm-fresh");
    assert!(!seeds.exists());
}
