//! Where identities are found, row by row against real sops 3.11: each row sets some of
//! `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY_CMD`, `SOPS_AGE_SSH_PRIVATE_KEY_FILE`,
//! `XDG_CONFIG_HOME` and the default `keys.txt`, and both programs must open (or both fail to
//! open) the same file. sops combines every source rather than taking the first, and a
//! broken source does not hide a good one. Two rows follow sops 3.13, which reads several
//! keys on one line of `SOPS_AGE_KEY`; there 3.11 fails and hostsmith opens the file.

use std::path::Path;
use std::process::Command;

use age::secrecy::ExposeSecret as _;

use crate::common::{TestFleet, fast_sops, ok, peer, run};

/// What a source holds.
#[derive(Clone, Copy)]
enum Holds {
    /// The admin's identity.
    Key,
    /// Someone else's identity.
    Wrong,
    /// Not an identity at all.
    Garbage,
    /// Someone else's and the admin's, on one line.
    TwoOnALine,
    /// The admin's, indented by two spaces.
    Indented,
}

/// Where a row puts something.
#[derive(Clone, Copy)]
enum At {
    Key(Holds),
    KeyFile(Holds),
    MissingKeyFile,
    KeyCmd(Holds),
    FailingKeyCmd,
    DefaultFile(Holds),
    Xdg(Holds),
    RelativeXdg(Holds),
    SshKeyFile,
    GarbageSshKeyFile,
}

struct Row {
    name: &'static str,
    at: &'static [At],
    /// Whether sops 3.11 opens the file.
    sops: bool,
    hostsmith: bool,
}

const ROWS: &[Row] = &[
    Row { name: "SOPS_AGE_KEY alone", at: &[At::Key(Holds::Key)], sops: true, hostsmith: true },
    Row { name: "SOPS_AGE_KEY_FILE alone", at: &[At::KeyFile(Holds::Key)], sops: true, hostsmith: true },
    Row { name: "the default keys.txt alone", at: &[At::DefaultFile(Holds::Key)], sops: true, hostsmith: true },
    Row { name: "keys.txt under XDG_CONFIG_HOME", at: &[At::Xdg(Holds::Key)], sops: true, hostsmith: true },
    Row { name: "SOPS_AGE_KEY_CMD alone", at: &[At::KeyCmd(Holds::Key)], sops: true, hostsmith: true },
    Row {
        name: "a wrong SOPS_AGE_KEY does not hide SOPS_AGE_KEY_FILE",
        at: &[At::Key(Holds::Wrong), At::KeyFile(Holds::Key)],
        sops: true,
        hostsmith: true,
    },
    Row {
        name: "SOPS_AGE_KEY_FILE does not hide keys.txt",
        at: &[At::KeyFile(Holds::Wrong), At::DefaultFile(Holds::Key)],
        sops: true,
        hostsmith: true,
    },
    Row {
        name: "SOPS_AGE_KEY_CMD does not hide SOPS_AGE_KEY",
        at: &[At::KeyCmd(Holds::Wrong), At::Key(Holds::Key)],
        sops: true,
        hostsmith: true,
    },
    Row {
        name: "garbage in SOPS_AGE_KEY does not stop SOPS_AGE_KEY_FILE",
        at: &[At::Key(Holds::Garbage), At::KeyFile(Holds::Key)],
        sops: true,
        hostsmith: true,
    },
    Row {
        name: "a missing SOPS_AGE_KEY_FILE does not stop keys.txt",
        at: &[At::MissingKeyFile, At::DefaultFile(Holds::Key)],
        sops: true,
        hostsmith: true,
    },
    Row {
        name: "a failing SOPS_AGE_KEY_CMD does not stop keys.txt",
        at: &[At::FailingKeyCmd, At::DefaultFile(Holds::Key)],
        sops: true,
        hostsmith: true,
    },
    Row { name: "an unrelated SSH key beside the admin's key", at: &[At::SshKeyFile, At::Key(Holds::Key)], sops: true, hostsmith: true },
    Row {
        name: "a broken SSH key file beside the admin's key",
        at: &[At::GarbageSshKeyFile, At::Key(Holds::Key)],
        sops: true,
        hostsmith: true,
    },
    Row { name: "only a wrong key", at: &[At::Key(Holds::Wrong), At::DefaultFile(Holds::Wrong)], sops: false, hostsmith: false },
    Row { name: "nothing at all", at: &[], sops: false, hostsmith: false },
    Row { name: "only an unrelated SSH key", at: &[At::SshKeyFile], sops: false, hostsmith: false },
    Row { name: "an indented key in a key file", at: &[At::KeyFile(Holds::Indented)], sops: false, hostsmith: false },
    Row { name: "a relative XDG_CONFIG_HOME is not used", at: &[At::RelativeXdg(Holds::Key)], sops: false, hostsmith: false },
    // sops 3.13 splits SOPS_AGE_KEY at spaces; 3.11 reads each line as one key.
    Row { name: "two keys on one line of SOPS_AGE_KEY (3.13)", at: &[At::Key(Holds::TwoOnALine)], sops: false, hostsmith: true },
    Row { name: "an indented key in SOPS_AGE_KEY (3.13)", at: &[At::Key(Holds::Indented)], sops: false, hostsmith: true },
];

struct Keys {
    right: String,
    wrong: String,
}

impl Keys {
    fn text(&self, h: Holds) -> String {
        match h {
            Holds::Key => format!("# admin\n{}\n", self.right),
            Holds::Wrong => format!("{}\n", self.wrong),
            Holds::Garbage => "not an identity\n".into(),
            Holds::TwoOnALine => format!("{} {}\n", self.wrong, self.right),
            Holds::Indented => format!("  {}\n", self.right),
        }
    }
}

/// Applies a row to `c` (and to the row's own home directory `home`).
fn apply(c: &mut Command, row: &Row, keys: &Keys, home: &Path, ssh_key: &Path) {
    c.env("HOME", home);
    let file = |name: &str, text: String| {
        let p = home.join(name);
        std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    };
    for at in row.at {
        match *at {
            At::Key(h) => {
                c.env("SOPS_AGE_KEY", keys.text(h));
            }
            At::KeyFile(h) => {
                c.env("SOPS_AGE_KEY_FILE", file("given.txt", keys.text(h)));
            }
            At::MissingKeyFile => {
                c.env("SOPS_AGE_KEY_FILE", home.join("missing.txt"));
            }
            At::KeyCmd(h) => {
                let p = file("cmd.txt", keys.text(h));
                c.env("SOPS_AGE_KEY_CMD", format!("cat {}", p.display()));
            }
            At::FailingKeyCmd => {
                c.env("SOPS_AGE_KEY_CMD", "false");
            }
            At::DefaultFile(h) => {
                file(".config/sops/age/keys.txt", keys.text(h));
            }
            At::Xdg(h) => {
                file("xdg/sops/age/keys.txt", keys.text(h));
                c.env("XDG_CONFIG_HOME", home.join("xdg"));
            }
            At::RelativeXdg(h) => {
                file("xdg/sops/age/keys.txt", keys.text(h));
                c.env("XDG_CONFIG_HOME", "xdg").current_dir(home);
            }
            At::SshKeyFile => {
                c.env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", ssh_key);
            }
            At::GarbageSshKeyFile => {
                c.env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", file("broken_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n".into()));
            }
        }
    }
}

#[test]
fn identities_are_found_and_combined_where_sops_finds_them() {
    let (Some(sops), Some(keygen)) = (fast_sops(), peer("ssh-keygen")) else { return };
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let admin = std::fs::read_to_string(f.admin_key_file()).expect("admin key");
    let right = admin.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).expect("identity").to_string();
    std::fs::remove_file(f.admin_key_file()).expect("remove the default key file");
    let wrong = age::x25519::Identity::generate().to_string().expose_secret().to_string();
    let keys = Keys { right, wrong };
    let ssh_key = f.tmp.path().join("unrelated_ssh_key");
    ok(&run(Command::new(&keygen).args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&ssh_key)));
    let host_file = f.dir.join("sops/web01.yaml");
    let mut differ = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        let home = f.tmp.path().join(format!("row{i}"));
        std::fs::create_dir_all(&home).expect("home");
        let mut s = Command::new(&sops);
        s.arg("--decrypt").arg(&host_file);
        f.env(&mut s);
        apply(&mut s, row, &keys, &home, &ssh_key);
        let sops_ok = run(&mut s).status.success();
        let out = home.join("exported");
        let mut h = f.cmd(&["keys", "export", "web01", "--output", out.to_str().expect("utf8")]);
        apply(&mut h, row, &keys, &home, &ssh_key);
        h.arg("--fleet").arg(&f.dir);
        let result = run(&mut h);
        let ours = result.status.success();
        if (sops_ok, ours) != (row.sops, row.hostsmith) {
            differ.push(format!(
                "{}: sops 3.11 {}, hostsmith {} (expected {} / {}): {}",
                row.name,
                sops_ok,
                ours,
                row.sops,
                row.hostsmith,
                String::from_utf8_lossy(&result.stderr).trim()
            ));
        }
        if !ours {
            let err = String::from_utf8_lossy(&result.stderr);
            assert!(!err.contains(&keys.right) && !err.contains(&keys.wrong), "{}: an identity in an error: {err}", row.name);
        }
    }
    assert!(differ.is_empty(), "rows that differ:\n{}", differ.join("\n"));
}
