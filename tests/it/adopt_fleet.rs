//! Adopting an existing fleet as it is. The fleet is built here the way such fleets are made
//! by hand: host directories (`hosts/<host>/secrets.yaml`, `ssh_host_ed25519_key.pub` beside
//! them), a shared `hosts/common/secrets.yaml`, the admin key in GnuPG, every file encrypted
//! by the real sops. Then `init` guesses the layout, `keys migrate` records the hosts,
//! `vm-fresh` adds one, and every key still opens exactly what it should.

use std::path::Path;
use std::process::{Command, Output};

use hostsmith::ssh_keys::Keypair;

use crate::common::{GnuPgHome, TestFleet, ok, peer, run, stdout, write};

const HOSTS: [&str; 2] = ["electra", "merope"];

/// `sops ARGS` in the fleet with only this GnuPG home and these age identities.
fn sops(sops: &Path, f: &TestFleet, gnupg: &Path, age: &str, args: &[&str]) -> Output {
    let mut c = Command::new(sops);
    c.args(args).current_dir(&f.dir).env("HOME", &f.home).env("GNUPGHOME", gnupg).env_remove("SOPS_AGE_KEY_FILE");
    if age.is_empty() {
        c.env_remove("SOPS_AGE_KEY");
    } else {
        c.env("SOPS_AGE_KEY", age);
    }
    run(&mut c)
}

/// Decrypts `rel` with real sops and returns the value of `key`, or `None` when it does not
/// open.
fn opened(sops_bin: &Path, f: &TestFleet, gnupg: &Path, age: &str, rel: &str, key: &str) -> Option<String> {
    let out = sops(sops_bin, f, gnupg, age, &["--decrypt", "--extract", &format!("[\"{key}\"]"), rel]);
    out.status.success().then(|| stdout(&out))
}

/// `hostsmith ARGS` with the admin's GnuPG home and no age identity at all.
fn hostsmith(f: &TestFleet, gpg: &GnuPgHome, args: &[&str]) -> Output {
    let mut c = f.cmd(args);
    c.env("GNUPGHOME", gpg.path());
    run(&mut c)
}

/// The `.sops.yaml` of a fleet of `HOSTS` whose admin is the PGP key `fp`.
fn sops_yaml(fp: &str, hosts: &[(&str, String)]) -> String {
    let mut s = format!("# Admins in GnuPG, hosts by their ssh-to-age keys.\nkeys:\n  - &users:\n    - &misterio {fp}\n  - &hosts:\n");
    for (h, r) in hosts {
        s.push_str(&format!("    - &{h} {r}\n"));
    }
    s.push_str("creation_rules:\n");
    for (h, _) in hosts {
        s.push_str(&format!(
            "  - path_regex: hosts/{h}/secrets.ya?ml$\n    key_groups:\n    - age:\n      - *{h}\n      pgp:\n      - *misterio\n"
        ));
    }
    s.push_str("  - path_regex: hosts/common/secrets.ya?ml$\n    key_groups:\n    - age:\n");
    for (h, _) in hosts {
        s.push_str(&format!("      - *{h}\n"));
    }
    s.push_str("      pgp:\n      - *misterio\n");
    s
}

/// The fleet as made by hand: `.sops.yaml`, each host's public key, NixOS module and
/// secrets, and the shared file, every SOPS file encrypted by real sops.
fn hand_made_fleet(sops_bin: &Path, gpg: &GnuPgHome) -> (TestFleet, Vec<(&'static str, Keypair)>) {
    let f = TestFleet::new();
    let keys: Vec<(&str, Keypair)> = HOSTS.iter().map(|h| (*h, Keypair::generate(h).expect("key"))).collect();
    let recipients: Vec<(&str, String)> = keys.iter().map(|(h, k)| (*h, k.age_recipient().expect("recipient"))).collect();
    write(&f.dir.join(".sops.yaml"), &sops_yaml(&gpg.fingerprint, &recipients));
    for (h, k) in &keys {
        write(&f.dir.join(format!("hosts/{h}/ssh_host_ed25519_key.pub")), &format!("{}\n", k.public_line()));
        write(&f.dir.join(format!("hosts/{h}/default.nix")), "{ }\n");
        write(&f.dir.join(format!("hosts/{h}/secrets.yaml")), &format!("password: {h}-secret\n"));
        ok(&sops(sops_bin, &f, gpg.path(), "", &["--encrypt", "--in-place", &format!("hosts/{h}/secrets.yaml")]));
    }
    write(&f.dir.join("hosts/common/secrets.yaml"), "wifi: hunter2\n");
    ok(&sops(sops_bin, &f, gpg.path(), "", &["--encrypt", "--in-place", "hosts/common/secrets.yaml"]));
    (f, keys)
}

#[test]
fn a_pgp_admin_fleet_with_host_directories_takes_a_new_host_without_being_restructured() {
    let Some(sops_bin) = peer("sops") else { return };
    let Some(gpg) = GnuPgHome::new() else { return };
    let (f, keys) = hand_made_fleet(&sops_bin, &gpg);
    let before = f.read(".sops.yaml");

    // init guesses every setting from what the fleet has, and creates no age identity.
    let guesses = ok(&hostsmith(&f, &gpg, &["init", "--dry-run"]));
    for want in
        ["admins: misterio (PGP)", "host files: hosts/{host}/secrets.yaml", "shared files: hosts/common/secrets.yaml", "hosts group: hosts"]
    {
        assert!(guesses.contains(want), "{want}: {guesses}");
    }
    assert!(!f.dir.join("hostsmith.toml").exists(), "a dry run writes nothing");
    ok(&hostsmith(&f, &gpg, &["init"]));
    let toml = f.read("hostsmith.toml");
    assert!(toml.contains("admins = [\"misterio\"]") && toml.contains("host_file = \"hosts/{host}/secrets.yaml\""), "{toml}");
    assert!(toml.contains("shared = [\"hosts/common/secrets.yaml\"]") && toml.contains("# Guessed: "), "{toml}");
    assert!(!f.admin_key_file().exists(), "a PGP-admin fleet gets no age admin identity");
    assert_eq!(f.read(".sops.yaml"), before, "init never touches .sops.yaml");

    let migrated = ok(&hostsmith(&f, &gpg, &["keys", "migrate", "--pubkeys", "hosts"]));
    assert!(HOSTS.iter().all(|h| f.dir.join(format!("hosts/{h}.json")).is_file()), "{migrated}");
    let clean = ok(&hostsmith(&f, &gpg, &["sops", "check"]));
    assert!(clean.starts_with("ok:"), "{clean}");

    let text = ok(&hostsmith(&f, &gpg, &["vm-fresh", "atlas"]));
    assert!(text.contains("hosts/atlas/secrets.yaml"), "{text}");
    let after = f.read(".sops.yaml");
    let mut new_lines = after.lines();
    assert!(before.lines().all(|l| new_lines.any(|n| n == l)), "only lines were added:\n{after}");
    // The new rule is in the file's own style, with the PGP admin in its group's `pgp:` list.
    let rule = "  - path_regex: ^hosts/atlas/secrets\\.yaml$\n    key_groups:\n    - age:\n      - *atlas\n      pgp:\n      - *misterio\n";
    assert!(after.contains(rule), "{after}");
    assert!(after.contains("    - &atlas age1"), "{after}");
    let ok_check = ok(&hostsmith(&f, &gpg, &["sops", "check"]));
    assert!(ok_check.starts_with("ok:"), "{ok_check}");

    // The admin, with nothing but GnuPG, opens the new host's file and the shared file.
    assert!(opened(&sops_bin, &f, gpg.path(), "", "hosts/atlas/secrets.yaml", "ssh_host_ed25519_key").is_some(), "admin opens atlas");
    assert_eq!(opened(&sops_bin, &f, gpg.path(), "", "hosts/common/secrets.yaml", "wifi").as_deref(), Some("hunter2"));
    // The new host's derived identity opens both; an empty GnuPG home shows gpg plays no part.
    let empty_home = GnuPgHome::empty();
    let empty = empty_home.path();
    let host_key = opened(&sops_bin, &f, gpg.path(), "", "hosts/atlas/secrets.yaml", "ssh_host_ed25519_key").expect("host key");
    let atlas = Keypair::from_openssh(&host_key, None).expect("key").age_identity().expect("identity");
    assert!(opened(&sops_bin, &f, empty, &atlas, "hosts/atlas/secrets.yaml", "ssh_host_ed25519_key").is_some());
    assert_eq!(opened(&sops_bin, &f, empty, &atlas, "hosts/common/secrets.yaml", "wifi").as_deref(), Some("hunter2"));
    // The existing hosts still open their own files and the shared one, and not atlas's.
    for (h, k) in &keys {
        let id = k.age_identity().expect("identity");
        assert_eq!(opened(&sops_bin, &f, empty, &id, &format!("hosts/{h}/secrets.yaml"), "password"), Some(format!("{h}-secret")));
        assert_eq!(opened(&sops_bin, &f, empty, &id, "hosts/common/secrets.yaml", "wifi").as_deref(), Some("hunter2"), "{h}");
        assert!(opened(&sops_bin, &f, empty, &id, "hosts/atlas/secrets.yaml", "ssh_host_ed25519_key").is_none(), "{h}");
    }
    // `keys list` audits PGP keys like age recipients: the fleet as it is has no problem; a PGP
    // key added to electra's rule that cannot open its file yet is named.
    let listed = ok(&hostsmith(&f, &gpg, &["keys", "list"]));
    assert!(!listed.contains("problems ("), "{listed}");
    let other = "0123456789ABCDEF0123456789ABCDEF01234567";
    let widened =
        f.read(".sops.yaml").replacen("      pgp:\n      - *misterio\n", &format!("      pgp:\n      - *misterio\n      - {other}\n"), 1);
    write(&f.dir.join(".sops.yaml"), &widened);
    let listed = ok(&hostsmith(&f, &gpg, &["keys", "list"]));
    let want = format!("`hosts/electra/secrets.yaml`: PGP key {other} is in its creation rule but cannot open it");
    assert!(listed.contains(&want), "{listed}");
}

/// Without `shared` in hostsmith.toml, a fleet that has no `sops/shared.yaml` and whose
/// `.sops.yaml` never names it is not given one: no shared rule appears, and `sops check`
/// asks about no such file.
#[test]
fn the_default_shared_file_only_counts_when_the_fleet_has_it() {
    let f = TestFleet::new();
    let admin = age::x25519::Identity::generate();
    write(&f.dir.join(".sops.yaml"), &format!("keys:\n  - &admin {}\ncreation_rules: []\n", admin.to_public()));
    write(&f.dir.join("hostsmith.toml"), "[sops]\nadmins = [\"admin\"]\n");
    ok(&f.run(&["vm-fresh", "web01"]));
    let rules = f.read(".sops.yaml");
    assert!(!rules.contains("shared"), "{rules}");
    let check = ok(&f.run(&["sops", "check"]));
    assert!(check.starts_with("ok:"), "{check}");
}
