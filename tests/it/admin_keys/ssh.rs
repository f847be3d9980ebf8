//! SSH keys as admins: `ssh-ed25519` and `ssh-rsa` recipients in `.sops.yaml`, opened with
//! the key sops finds in `SOPS_AGE_SSH_PRIVATE_KEY_FILE` or `~/.ssh/id_ed25519`.

use super::{hostsmith, sops_decrypt, sops_encrypt, ssh_key, stanza_types};
use crate::common::{TestFleet, fast_sops, ok, peer};

#[test]
fn an_ssh_admin_round_trips_with_sops_through_its_private_key_file() {
    let (Some(sops), Some(keygen)) = (fast_sops(), peer("ssh-keygen")) else { return };
    // ed25519, RSA in OpenSSH's format, and RSA in the old PEM format (which sops reads too).
    let kinds = [
        (&["-t", "ed25519"][..], "ssh-ed25519"),
        (&["-t", "rsa", "-b", "2048"][..], "ssh-rsa"),
        (&["-t", "rsa", "-b", "2048", "-m", "PEM"][..], "ssh-rsa"),
    ];
    for (kind, stanza) in kinds {
        let f = TestFleet::new();
        let key = f.tmp.path().join("admin_key");
        let public = ssh_key(&keygen, kind, &key);
        ok(&f.run(&["init", "--admin-recipient", &public]));
        // The recipient is stored without its comment, as `type base64`.
        let stored: String = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        assert!(f.read(".sops.yaml").contains(&format!("  - &admin {stored}\n")), "{}", f.read(".sops.yaml"));
        let id = [("SOPS_AGE_SSH_PRIVATE_KEY_FILE", key.as_path())];

        ok(&f.run(&["vm-fresh", "web01"]));
        assert_eq!(stanza_types(&f.read("sops/web01.yaml"), &stored), [stanza], "{stanza}");
        assert!(ok(&sops_decrypt(&sops, &f, "sops/web01.yaml", &id)).contains("ssh_host_ed25519_key"), "{stanza}");

        std::fs::write(f.dir.join("sops/shared.yaml"), "token: s3cret\n").expect("write");
        sops_encrypt(&sops, &f, "sops/shared.yaml", &id);
        ok(&hostsmith(&f, &["vm-fresh", "web02"], &id));
        assert_eq!(ok(&sops_decrypt(&sops, &f, "sops/shared.yaml", &id)), "token: s3cret\n", "{stanza}");
        assert!(f.read("sops/shared.yaml").matches("recipient:").count() == 3, "admin, web01, web02");

        // sops' fallback: the same key as ~/.ssh/id_ed25519 (or id_rsa), no variable set.
        let home_key = f.home.join(".ssh").join(if stanza == "ssh-rsa" { "id_rsa" } else { "id_ed25519" });
        std::fs::create_dir_all(home_key.parent().expect("dir")).expect("mkdir");
        std::fs::copy(&key, &home_key).expect("copy");
        ok(&f.run(&["vm-fresh", "web03"]));
        assert_eq!(ok(&sops_decrypt(&sops, &f, "sops/shared.yaml", &[])), "token: s3cret\n");
    }
}

#[test]
fn a_host_cannot_be_given_an_ssh_recipient_and_is_told_why() {
    let Some(keygen) = peer("ssh-keygen") else { return };
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let key = f.tmp.path().join("host_key");
    let public = ssh_key(&keygen, &["-t", "ed25519"], &key);
    let config = f.read(".sops.yaml");
    let line = config.lines().find(|l| l.starts_with("  - &web01 ")).expect("anchor").to_string();
    std::fs::write(f.dir.join(".sops.yaml"), config.replace(&line, &format!("  - &web01 {public}"))).expect("write");
    let out = f.run(&["sops", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("host `web01` has an SSH recipient; .sops.yaml must hold its age1 form"), "{text}");
    assert!(text.contains("X25519 key derived from its ed25519 host key"), "{text}");
}

#[test]
fn keys_migrate_tells_a_host_with_an_ssh_recipient_its_x25519_form() {
    let Some(keygen) = peer("ssh-keygen") else { return };
    let f = TestFleet::new();
    f.init_with(&[]);
    let key = f.tmp.path().join("web02_host_key");
    let public = ssh_key(&keygen, &["-t", "ed25519"], &key);
    let config = f.read(".sops.yaml");
    let admin = config.lines().find(|l| l.starts_with("  - &admin ")).expect("admin").to_string();
    let config = config.replace(&admin, &format!("{admin}\n  - &web02 {public}"))
        + "  - path_regex: ^sops/web02\\.yaml$\n    key_groups:\n      - age:\n          - *admin\n          - *web02\n";
    std::fs::write(f.dir.join(".sops.yaml"), config).expect("write");
    let x25519 = hostsmith::ssh_keys::recipient_of(&ssh_key::PublicKey::from_openssh(&public).expect("pub")).expect("recipient");
    let before = f.snapshot();
    let out = f.run(&["keys", "migrate"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("host `web02`: its anchor holds an SSH key, but a host's recipient must be X25519")
            && text.contains(&format!("replace it with {x25519}, its X25519 form")),
        "{text}"
    );
    f.assert_unchanged(&before, "migrate of a host with an SSH recipient");
}
