//! The messages of common failures, exactly: each says what failed, why, and what to do, and
//! each comes with the documented exit status. `{fleet}` and `{home}` stand for the test's
//! directories.

use std::process::Command;

use crate::common::{TestFleet, ok, run_with_stdin, stderr};

/// What a case needs before it runs.
#[derive(Clone, Copy)]
enum Setup {
    Nothing,
    Init,
    WithHosts,
}

struct Case {
    name: &'static str,
    setup: Setup,
    /// Runs before the command, in the fleet directory, with the test's environment.
    prepare: &'static str,
    args: &'static [&'static str],
    stdin: &'static str,
    status: i32,
    stderr: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "no .sops.yaml",
        setup: Setup::Nothing,
        prepare: "",
        args: &["vm-fresh", "web01"],
        stdin: "",
        status: 1,
        stderr: "error: no `.sops.yaml` in `.`: run `hostsmith init` there, or point --fleet (or HOSTSMITH_FLEET) at your fleet\n",
    },
    Case {
        name: "bad host name",
        setup: Setup::Init,
        prepare: "",
        args: &["vm-fresh", "web_01"],
        stdin: "",
        status: 2,
        stderr: "error: host name `web_01` is invalid: '_' is not allowed in host names; use letters, digits and '-' (at most 63, not starting or ending with '-')\n",
    },
    Case {
        name: "host named twice",
        setup: Setup::Init,
        prepare: "",
        args: &["vm-fresh", "web01", "web01"],
        stdin: "",
        status: 2,
        stderr: "error: host `web01` is named twice; name each host once\n",
    },
    Case {
        name: "unknown host",
        setup: Setup::WithHosts,
        prepare: "",
        args: &["cloud-init", "db99", "--out", "seed"],
        stdin: "",
        status: 2,
        stderr: "error: host `db99` is not in this fleet (no `hosts/db99.json`): run `hostsmith vm-fresh db99` or `hostsmith adopt db99`\n",
    },
    Case {
        name: "no admin identity",
        setup: Setup::WithHosts,
        prepare: "rm {home}/.config/sops/age/keys.txt",
        args: &["extra-files", "web01", "--out", "x"],
        stdin: "",
        status: 1,
        stderr: "error: no admin age identity found (looked in SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY_CMD, `{home}/.config/sops/age/keys.txt`, SOPS_AGE_SSH_PRIVATE_KEY_CMD, SOPS_AGE_SSH_PRIVATE_KEY_FILE, `{home}/.ssh/id_ed25519`, `{home}/.ssh/id_rsa`), and GnuPG is only tried for files with PGP keys: run `hostsmith init`, or set SOPS_AGE_KEY_FILE to your age key file\n",
    },
    Case {
        name: "bad config key",
        setup: Setup::Init,
        prepare: "printf '[sops]\\nadmin = [\"x\"]\\n' > hostsmith.toml",
        args: &["vm-fresh", "web01"],
        stdin: "",
        status: 2,
        stderr: "error: configuration `./hostsmith.toml`: unknown field `admin`, expected one of `host_dir`, `host_file`, `admins`, `shared`, `exclude_from_shared`, `hosts_group` (line 2)\n",
    },
    Case {
        name: "no admins configured",
        setup: Setup::Init,
        prepare: "printf '[sops]\\nhost_dir = \"sops\"\\n' > hostsmith.toml",
        args: &["vm-fresh", "web01"],
        stdin: "",
        status: 2,
        stderr: "error: configuration `./hostsmith.toml`: `sops.admins` is not set: list the admin anchor names of .sops.yaml (or age1… recipients), e.g. `admins = [\"admin\"]`, or run `hostsmith init`\n",
    },
    Case {
        name: "public key that is not ed25519",
        setup: Setup::Init,
        prepare: "",
        args: &["adopt", "old01", "--pubkey", "-"],
        stdin: "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg= x\n",
        status: 2,
        stderr: "error: the public key is ecdsa-sha2-nistp256 and not ed25519: only ed25519 host keys have an age recipient (sops-nix derives it from the ed25519 key)\n",
    },
    Case {
        name: "private key given as a public key",
        setup: Setup::Init,
        prepare: "",
        args: &["adopt", "old01", "--pubkey", "-"],
        stdin: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        status: 2,
        stderr: "error: that is a private key: give the public key (`.pub`), or use `hostsmith keys import`\n",
    },
    Case {
        name: "adopting a known host with another key",
        setup: Setup::WithHosts,
        prepare: "",
        args: &["adopt", "web01", "--pubkey", "-"],
        stdin: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOHz+U0YtjINc54dZiJNclfmEFifF7RXCFlNlTbuZBji x\n",
        status: 1,
        stderr: "error: host `web01`: it is recorded with {fp:web01} but the given key is SHA256:wEPu5zkkhaJZhOM5BFhVJnRbJC7OEuRKz/lt2XCrN8I: pass --rotate to replace the recorded key\n",
    },
    Case {
        name: ".sops.yaml that is not YAML",
        setup: Setup::Init,
        prepare: "printf 'keys: [unclosed\\n' > .sops.yaml",
        args: &["vm-fresh", "web01"],
        stdin: "",
        status: 2,
        stderr: "",
    },
    Case {
        name: "bad address",
        setup: Setup::WithHosts,
        prepare: "",
        args: &["verify", "web01", "--address=-oProxyCommand=x"],
        stdin: "",
        status: 2,
        stderr: "error: address `-oProxyCommand=x` is invalid: not an IP address or DNS name; use HOST, HOST:PORT or [IPv6]:PORT\n",
    },
    Case {
        name: "unreachable host",
        setup: Setup::WithHosts,
        prepare: "",
        args: &["verify", "web01", "--address", "127.0.0.1:1", "--timeout", "1"],
        stdin: "",
        status: 1,
        stderr: "error: `ssh-keyscan` failed: no ed25519 host key from 127.0.0.1:1 within 1s: the host is unreachable, not running sshd yet, or has no ed25519 key\n",
    },
    Case {
        name: "bad cidr",
        setup: Setup::WithHosts,
        prepare: "",
        args: &[
            "cloud-init",
            "web01",
            "--out",
            "seed",
            "--authorized-key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOHz+U0YtjINc54dZiJNclfmEFifF7RXCFlNlTbuZBji a",
            "--ip",
            "10.0.0.5",
        ],
        stdin: "",
        status: 2,
        stderr: "error: `10.0.0.5` is not an address with a prefix length, e.g. 192.0.2.10/24 or 2001:db8::10/64\n",
    },
    Case {
        name: "missing authorized key file",
        setup: Setup::WithHosts,
        prepare: "",
        args: &["cloud-init", "web01", "--out", "seed"],
        stdin: "",
        status: 2,
        stderr: "error: authorized key file `{home}/.ssh/id_ed25519.pub` cannot be read (No such file or directory (os error 2)): set `cloud_init.authorized_keys` in hostsmith.toml or pass --authorized-key FILE\n",
    },
    Case {
        name: "bad persist prefix",
        setup: Setup::WithHosts,
        prepare: "",
        args: &["extra-files", "web01", "--out", "x", "--persist", "persist"],
        stdin: "",
        status: 2,
        stderr: "error: persist prefix `persist` must be an absolute path like /persist, without `..`\n",
    },
    Case {
        name: "record without its secret file",
        setup: Setup::WithHosts,
        prepare: "rm sops/web01.yaml",
        args: &["vm-fresh", "web01"],
        stdin: "",
        status: 1,
        stderr: "error: host `web01`: the record exists but `sops/web01.yaml` is missing: restore it from version control, or run `hostsmith vm-fresh --rotate web01` to give the host a new key\n",
    },
];

#[test]
fn common_failures_say_what_to_do() {
    assert!(CASES.len() >= 15);
    for case in CASES {
        let f = TestFleet::new();
        match case.setup {
            Setup::Nothing => {}
            Setup::Init => f.init_with(&[]),
            Setup::WithHosts => f.init_with(&["web01"]),
        }
        let home = f.home.display().to_string();
        let fleet = f.dir.display().to_string();
        if !case.prepare.is_empty() {
            let script = case.prepare.replace("{home}", &home).replace("{fleet}", &fleet);
            let mut c = Command::new("sh");
            c.args(["-c", &script]).current_dir(&f.dir);
            f.env(&mut c);
            ok(&crate::common::run(&mut c));
        }
        let before = f.snapshot();
        let out = run_with_stdin(&mut f.cmd(case.args), case.stdin.as_bytes());
        assert_eq!(out.status.code(), Some(case.status), "{}: {}", case.name, stderr(&out));
        let mut want = case.stderr.replace("{home}", &home).replace("{fleet}", &fleet);
        if want.contains("{fp:web01}") {
            let r: serde_json::Value = serde_json::from_str(&f.read("hosts/web01.json")).expect("record");
            want = want.replace("{fp:web01}", r["fingerprint"].as_str().expect("fp"));
        }
        if want.is_empty() {
            assert!(stderr(&out).starts_with("error: "), "{}: {}", case.name, stderr(&out));
        } else {
            assert_eq!(stderr(&out), want, "{}", case.name);
        }
        f.assert_unchanged(&before, case.name);
    }
}

#[test]
fn piped_output_has_no_colour_and_always_forces_it() {
    let f = TestFleet::new();
    f.init_with(&[]);
    let plain = f.run(&["vm-fresh", "web01"]);
    assert!(!String::from_utf8_lossy(&plain.stdout).contains('\x1b'));
    let coloured = f.run(&["--color", "always", "vm-fresh", "db01"]);
    assert!(String::from_utf8_lossy(&coloured.stdout).contains("\x1b[32mcreated   \x1b[0m db01"), "{}", crate::common::stdout(&coloured));
    let never = f.run(&["--color", "never", "vm-fresh", "x01"]);
    assert!(!String::from_utf8_lossy(&never.stdout).contains('\x1b'));
    let bad = f.run(&["--color", "always", "vm-fresh", "a_b"]);
    assert!(stderr(&bad).starts_with("\x1b[31merror:\x1b[0m host name"), "{}", stderr(&bad));
}
