//! `sync`, `connect` and `audit` against a real OpenSSH sshd on 127.0.0.1.
//!
//! The server runs in its own mount namespace with a temporary directory mounted over
//! /root, so the tests log in as root (no user is added to the machine) and the session's
//! home, `~/.ssh/authorized_keys` included, is that directory. The login key is listed in a
//! separate file outside the home (`AuthorizedKeysFile .ssh/authorized_keys BOOTSTRAP`), so a
//! home may start without any `.ssh`. sshd logs at VERBOSE to a file the tests read to
//! prove that a refused run never connected.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hostsmith::ssh_keys::Keypair;

use crate::common::{TestFleet, ok, peer, run, stderr, stdout};
use crate::sshd::Sshd;

pub(crate) struct Rig {
    pub f: TestFleet,
    /// The server's /root.
    pub home: PathBuf,
    pub log: PathBuf,
    /// The private key the client logs in with.
    pub client: PathBuf,
    /// The admin public key file that sync installs.
    pub admin_pub: PathBuf,
    pub admin: Keypair,
    pub sshd: Sshd,
    pub record_key: Keypair,
}

fn sshd_path() -> Option<PathBuf> {
    let found = crate::common::which("sshd").or_else(|| Path::new("/usr/sbin/sshd").exists().then(|| "/usr/sbin/sshd".into()));
    match found {
        Some(p) => Some(p),
        None => peer("sshd"),
    }
}

/// A fleet with web01, and an sshd serving web01's recorded key with `home` as root's home.
pub(crate) fn rig() -> Option<Rig> {
    let (_, _, _) = (sshd_path()?, peer("ssh")?, peer("unshare")?);
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let home = f.tmp.path().join("remote-root");
    let client_key = Keypair::generate("client@test").expect("key");
    let client = f.tmp.path().join("client_key");
    hostsmith::atomic::create_secret(&client, client_key.openssh_private().expect("private").as_bytes()).expect("write");
    let bootstrap = f.tmp.path().join("bootstrap_keys");
    std::fs::write(&bootstrap, client_key.public_line() + "\n").expect("write");
    let admin = Keypair::generate("admin@workstation").expect("key");
    let admin_pub = f.tmp.path().join("admin.pub");
    std::fs::write(&admin_pub, admin.public_line() + "\n").expect("write");
    let log = f.tmp.path().join("sshd.log");
    let (record_key, server) = host_sshd(&f, "web01", &home, &log);
    Some(Rig { f, home, log, client, admin_pub, admin, sshd: server, record_key })
}

/// An sshd serving `host`'s recorded key (as `extra-files` gives it), in a mount namespace
/// of its own where `home` is root's home, accepting the fleet directory's
/// `bootstrap_keys` and logging to `log`.
pub(crate) fn host_sshd(f: &TestFleet, host: &str, home: &Path, log: &Path) -> (Keypair, Sshd) {
    let sshd = sshd_path().expect("sshd");
    let out = f.tmp.path().join(format!("extra-{host}"));
    ok(&f.run(&["extra-files", host, "--out", out.to_str().expect("utf8")]));
    let record_key =
        Keypair::from_openssh(&std::fs::read_to_string(out.join("etc/ssh/ssh_host_ed25519_key")).expect("key"), None).expect("key");
    std::fs::create_dir_all(home).expect("home");
    let mut launch = Command::new("unshare");
    launch
        .args(["-m", "--propagation", "private", "sh", "-c", r#"mount --bind "$0" /root && exec "$@""#])
        .arg(home)
        .arg(&sshd)
        .arg("-E")
        .arg(log);
    // node-bin holds the stand-in `qm` for the guest-agent test (this sshd plays the node).
    let node_bin = f.tmp.path().join("node-bin");
    std::fs::create_dir_all(&node_bin).expect("mkdir");
    let extra = format!(
        "AuthorizedKeysFile .ssh/authorized_keys {}\nMaxStartups 100:30:200\nLogLevel VERBOSE\nSetEnv PATH={}:/usr/local/bin:/usr/bin:/bin\n",
        f.tmp.path().join("bootstrap_keys").display(),
        node_bin.display()
    );
    let server =
        Sshd::start_via(launch, f.tmp.path(), &record_key, &extra, |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    (record_key, server)
}

impl Rig {
    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.sshd.port)
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.f.cmd(args);
        c.env_remove("XDG_STATE_HOME").env_remove("SSH_AUTH_SOCK");
        c
    }

    pub(crate) fn hs(&self, args: &[&str]) -> Output {
        run(&mut self.cmd(args))
    }

    /// `sync web01` at the rig's sshd as root with the client key, syncing `admin.pub`.
    pub(crate) fn sync_args<'a>(&'a self, extra: &[&'a str]) -> Vec<String> {
        let mut v: Vec<String> =
            ["sync", "web01", "--address", &self.addr(), "--user", "root", "--identity", self.client.to_str().expect("utf8")]
                .map(String::from)
                .to_vec();
        v.extend(["--key".to_string(), self.admin_pub.display().to_string()]);
        v.extend(extra.iter().map(std::string::ToString::to_string));
        v
    }

    pub(crate) fn sync(&self, extra: &[&str]) -> Output {
        let args = self.sync_args(extra);
        self.hs(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub(crate) fn keys_file(&self) -> PathBuf {
        self.home.join(".ssh/authorized_keys")
    }

    pub(crate) fn audit(&self) -> Vec<serde_json::Value> {
        let path = self.f.home.join(".local/state/hostsmith/audit.jsonl");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let material = [self.admin.public_line(), self.record_key.public_line()];
        text.lines()
            .map(|l| {
                for m in &material {
                    let blob = m.split_whitespace().nth(1).expect("blob");
                    assert!(!l.contains(blob), "key material in the audit log: {l}");
                }
                serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// How many connections sshd has seen.
    pub(crate) fn connections(&self) -> usize {
        std::fs::read_to_string(&self.log).unwrap_or_default().matches("Connection from").count()
    }
}

pub(crate) fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
}

fn admin_line(r: &Rig) -> String {
    let line = r.admin.public_line();
    let (kind_blob, _) = line.rsplit_once(' ').expect("comment");
    format!("{kind_blob} admin@workstation\n")
}

#[test]
fn a_missing_key_is_appended_once_with_everything_else_byte_identical() {
    let Some(r) = rig() else { return };
    // A fresh home: .ssh and the file are created 0700/0600.
    let out = r.sync(&[]);
    let text = ok(&out);
    assert!(text.contains("Checking key on web01... ✓ added 1 key (SHA256:"), "{text}");
    assert_eq!(mode(&r.home.join(".ssh")), 0o700);
    assert_eq!(mode(&r.keys_file()), 0o600);
    assert_eq!(std::fs::read_to_string(r.keys_file()).expect("read"), admin_line(&r));

    // An existing file with options, comments, blank lines and no final newline: appended
    // behind it, every existing byte kept.
    let before = format!(
        "# managed by hand\n\nfrom=\"10.0.0.1,10.0.0.2\",command=\"echo \\\"a b\\\"\" {}\nssh-rsa AAAAB3NzaC1yc2E= other",
        Keypair::generate("x").expect("key").public_line()
    );
    std::fs::write(r.keys_file(), &before).expect("write");
    std::fs::set_permissions(r.keys_file(), std::fs::Permissions::from_mode(0o640)).expect("chmod");
    ok(&r.sync(&[]));
    assert_eq!(std::fs::read_to_string(r.keys_file()).expect("read"), format!("{before}\n{}", admin_line(&r)));
    assert_eq!(mode(&r.keys_file()), 0o640, "an existing file's mode is left alone");

    // Again: present, not a byte or an mtime changed.
    let mtime = std::fs::metadata(r.keys_file()).expect("meta").modified().expect("mtime");
    std::thread::sleep(Duration::from_millis(20));
    let text = ok(&r.sync(&[]));
    assert!(text.contains("✓ already present"), "{text}");
    assert_eq!(std::fs::metadata(r.keys_file()).expect("meta").modified().expect("mtime"), mtime);

    let outcomes: Vec<_> = r.audit().iter().map(|e| e["outcome"].as_str().expect("outcome").to_string()).collect();
    assert_eq!(outcomes, ["synced", "synced", "present"]);
    let first = &r.audit()[0];
    assert_eq!(first["method"], "ssh");
    assert_eq!(first["user"], "root");
    assert_eq!(first["added"][0], first["keys"][0]);
    assert!(first["keys"][0].as_str().expect("fp").starts_with("SHA256:"));
    assert!(first["duration_ms"].as_u64().is_some() && first["error"].is_null());
}

#[test]
fn a_present_key_with_options_and_another_comment_is_left_alone() {
    let Some(r) = rig() else { return };
    let line = r.admin.public_line();
    let (kind_blob, _) = line.rsplit_once(' ').expect("comment");
    std::fs::create_dir_all(r.home.join(".ssh")).expect("mkdir");
    let content = format!("from=\"192.0.2.0/24,198.51.100.7\",no-pty {kind_blob} someone else's comment\n");
    std::fs::write(r.keys_file(), &content).expect("write");
    let mtime = std::fs::metadata(r.keys_file()).expect("meta").modified().expect("mtime");
    std::thread::sleep(Duration::from_millis(20));
    let out = r.sync(&["--json"]);
    let entry: serde_json::Value = serde_json::from_str(&ok(&out)).expect("json");
    assert_eq!(entry["outcome"], "present");
    assert_eq!(std::fs::read_to_string(r.keys_file()).expect("read"), content);
    assert_eq!(std::fs::metadata(r.keys_file()).expect("meta").modified().expect("mtime"), mtime);
    // A cert-authority line for the same key authorises certificates, not the key.
    std::fs::write(r.keys_file(), format!("cert-authority {kind_blob}\n")).expect("write");
    let entry: serde_json::Value = serde_json::from_str(&ok(&r.sync(&["--json"]))).expect("json");
    assert_eq!(entry["outcome"], "synced");
    assert_eq!(r.audit().len(), 2);
}

#[test]
fn twenty_concurrent_syncs_add_exactly_one_line() {
    let Some(r) = rig() else { return };
    std::fs::create_dir_all(r.home.join(".ssh")).expect("mkdir");
    std::fs::write(r.keys_file(), "# existing\n").expect("write");
    let args = r.sync_args(&["--json"]);
    let children: Vec<_> = (0..20)
        .map(|_| {
            let mut c = r.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn")
        })
        .collect();
    let mut outcomes = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        let entry: serde_json::Value = serde_json::from_str(&ok(&out)).expect("json");
        outcomes.push(entry["outcome"].as_str().expect("outcome").to_string());
    }
    assert_eq!(std::fs::read_to_string(r.keys_file()).expect("read"), format!("# existing\n{}", admin_line(&r)));
    assert_eq!(outcomes.iter().filter(|o| *o == "synced").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "present").count(), 19, "{outcomes:?}");
    assert_eq!(r.audit().len(), 20, "one audit line per run, none interleaved");
}

#[test]
fn hostile_keys_and_user_names_are_refused_before_any_connection() {
    let Some(r) = rig() else { return };
    let marker = r.f.tmp.path().join("pwned");
    let line = r.admin.public_line();
    let (kind_blob, _) = line.rsplit_once(' ').expect("comment");
    let hostile = [
        format!("{kind_blob} x'; touch {}; '\n", marker.display()),
        format!("{kind_blob}\n'; touch {}; '\n", marker.display()),
        format!("{kind_blob} a\rtouch {}\n", marker.display()),
    ];
    std::fs::create_dir_all(r.home.join(".ssh")).expect("mkdir");
    std::fs::write(r.keys_file(), "# untouched\n").expect("write");
    // The readiness probe's connection reaches the log a moment later; let it land.
    std::thread::sleep(Duration::from_millis(300));
    let connections = r.connections();
    assert_eq!(connections, 1, "only the readiness probe");
    for (i, text) in hostile.iter().enumerate() {
        let file = r.f.tmp.path().join(format!("hostile{i}.pub"));
        std::fs::write(&file, text).expect("write");
        let out = r.hs(&["sync", "web01", "--address", &r.addr(), "--user", "root", "--key", file.to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(2), "{}{}", stdout(&out), stderr(&out));
        assert!(!stderr(&out).contains("touch"), "the error quotes the hostile text: {}", stderr(&out));
    }
    for user in ["root;touch /tmp/x", "$(id)", "-oProxyCommand=x", "a b"] {
        let out = r.hs(&["sync", "web01", "--address", &r.addr(), &format!("--user={user}"), "--key", r.admin_pub.to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(2), "{user}: {}", stderr(&out));
        assert!(stderr(&out).contains("user name"), "{}", stderr(&out));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(r.connections(), connections, "sshd saw a connection");
    assert!(!marker.exists());
    assert_eq!(std::fs::read_to_string(r.keys_file()).expect("read"), "# untouched\n");
    let audit = r.audit();
    assert_eq!(audit.len(), 7);
    assert!(audit.iter().all(|e| e["outcome"] == "failed" && e["method"] == "none"));
    assert!(audit.iter().all(|e| e["error"].as_str().expect("error").starts_with("refused before connecting")));
}

#[test]
fn dry_run_changes_nothing_and_is_audited() {
    let Some(r) = rig() else { return };
    let out = r.sync(&["--dry-run"]);
    let text = ok(&out);
    assert!(text.contains("✓ would add 1 key (SHA256:"), "{text}");
    assert!(!r.home.join(".ssh").exists(), "a dry run created ~/.ssh");
    let audit = r.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["outcome"], "dry-run");
    assert_eq!(audit[0]["added"].as_array().expect("added").len(), 1);
}

#[test]
fn a_port_that_never_answers_fails_within_the_timeout_and_connect_goes_on() {
    let Some(r) = rig() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let started = Instant::now();
    let out =
        r.hs(&["sync", "web01", "--address", &silent, "--user", "root", "--key", r.admin_pub.to_str().expect("utf8"), "--timeout", "2"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(stdout(&out).contains("✗ failed"), "{}", stdout(&out));

    let started = Instant::now();
    let client = r.client.to_str().expect("utf8");
    let args = ["connect", "web01", "--address", &silent, "--user", "root", "--identity", client, "--key"];
    let mut args: Vec<&str> = args.to_vec();
    let admin = r.admin_pub.to_str().expect("utf8");
    args.extend([admin, "--sync-timeout", "2", "--", "-o", "ConnectTimeout=1", "-o", "BatchMode=yes", "true"]);
    let out = r.hs(&args);
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(err.contains("Warning: key sync failed (") && err.contains("connecting anyway"), "{err}");
    assert!(err.contains("no answer") || err.contains("timed out"), "{err}");
    assert!(err.contains("Connecting to web01 as root@"), "{err}");
    assert!(err.contains("banner exchange"), "ssh itself was not attempted: {err}");
    assert_eq!(out.status.code(), Some(255), "ssh's own status");
    assert!(took < Duration::from_secs(7), "took {took:?}");

    args.insert(2, "--dry-run");
    let out = r.hs(&args);
    assert!(stderr(&out).contains("Warning: key sync failed"), "{}", stderr(&out));
    let text = ok(&out);
    assert!(text.starts_with("Would run: ssh -o StrictHostKeyChecking=yes -o UserKnownHostsFile="), "{text}");
    assert!(
        text.contains("-o HostKeyAlias=web01") && text.contains(&format!("-p {} -l root 127.0.0.1 -o ConnectTimeout=1", &silent[10..])),
        "{text}"
    );

    let audit = r.audit();
    assert_eq!(audit.len(), 3);
    assert!(audit.iter().all(|e| e["outcome"] == "failed" && e["method"] == "ssh"), "{audit:?}");
    assert_eq!(audit[1]["command"], "connect");
    drop(listener);
}

#[test]
fn connect_syncs_then_runs_ssh_pinned_to_the_record() {
    let Some(r) = rig() else { return };
    let client = r.client.to_str().expect("utf8");
    let admin = r.admin_pub.to_str().expect("utf8");
    let out = r.hs(&[
        "connect",
        "web01",
        "--address",
        &r.addr(),
        "--user",
        "root",
        "--identity",
        client,
        "--key",
        admin,
        "--",
        "echo",
        "hello from web01",
    ]);
    assert_eq!(stdout(&out), "hello from web01\n", "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Checking key on web01... ✓ added 1 key"), "{err}");
    assert!(err.contains(&format!("host key pinned to {}", hostsmith::ssh_keys::fingerprint(r.record_key.public()))), "{err}");
    assert_eq!(std::fs::read_to_string(r.keys_file()).expect("read"), admin_line(&r));
    // Logging in with the synced key itself.
    let admin_private = r.f.tmp.path().join("admin_key");
    hostsmith::atomic::create_secret(&admin_private, r.admin.openssh_private().expect("private").as_bytes()).expect("write");
    let out = r.hs(&[
        "connect",
        "web01",
        "--address",
        &r.addr(),
        "--user",
        "root",
        "--no-sync",
        "--identity",
        admin_private.to_str().expect("utf8"),
        "--",
        "true",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Skipping key sync (--no-sync)"));
    let outcomes: Vec<_> = r.audit().iter().map(|e| e["outcome"].as_str().expect("o").to_string()).collect();
    assert_eq!(outcomes, ["synced", "skipped"]);
}

/// Whether `f` holds within `limit` (polled).
fn poll(limit: Duration, f: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Waits until sshd's log holds `n` connections (a line lands a moment after the
/// connection), then a little longer for any more, and returns the count.
fn wait_connections(r: &Rig, n: usize) -> usize {
    poll(Duration::from_secs(5), || r.connections() >= n);
    std::thread::sleep(Duration::from_millis(300));
    r.connections()
}

#[test]
fn connect_runs_the_session_over_the_syncs_connection() {
    let Some(r) = rig() else { return };
    let before = wait_connections(&r, 1);
    let runtime = r.f.tmp.path().join("runtime");
    std::fs::create_dir(&runtime).expect("mkdir");
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let (client, admin) = (r.client.to_str().expect("utf8"), r.admin_pub.to_str().expect("utf8"));
    let args =
        ["-v", "connect", "web01", "--address", &r.addr(), "--user", "root", "--identity", client, "--key", admin, "--", "echo", "hi"];
    let out = run(r.cmd(&args).env("XDG_RUNTIME_DIR", &runtime));
    assert_eq!(stdout(&out), "hi\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("the session reuses the sync's connection"), "{}", stderr(&out));
    assert_eq!(wait_connections(&r, before + 1), before + 1, "one handshake for the sync and the session");
    // The master's socket was in a private directory, and goes once the session ended.
    let dir = runtime.join("hostsmith");
    assert_eq!(mode(&dir), 0o700);
    let gone = poll(Duration::from_secs(hostsmith::sync::mux::LINGER_SECS + 5), || std::fs::read_dir(&dir).expect("ls").next().is_none());
    assert!(gone, "the master exits after the session and removes its socket");

    // No usable control path (too long for a socket): two connections, said under -v.
    let long = r.f.tmp.path().join("s".repeat(100));
    let out = run(r.cmd(&args).env_remove("XDG_RUNTIME_DIR").env("XDG_STATE_HOME", &long));
    assert_eq!(stdout(&out), "hi\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("no shared connection (the control socket path"), "{}", stderr(&out));
    assert_eq!(wait_connections(&r, before + 3), before + 3, "the sync and the session connect separately");
}

#[test]
fn connect_refuses_a_host_that_serves_another_key_and_names_both_fingerprints() {
    let Some(r) = rig() else { return };
    let Some(sshd) = sshd_path() else { return };
    let stranger = Keypair::generate("stranger").expect("key");
    let other = Sshd::start(&sshd, r.f.tmp.path(), &stranger);
    let addr = format!("127.0.0.1:{}", other.port);
    let recorded = hostsmith::ssh_keys::fingerprint(r.record_key.public());
    let served = stranger.fingerprint();
    let client = r.client.to_str().expect("utf8");
    let admin = r.admin_pub.to_str().expect("utf8");
    for extra in [&[][..], &["--no-sync"][..], &["--sync-method", "skip"][..]] {
        let mut args = vec!["connect", "web01", "--address", &addr, "--user", "root", "--identity", client, "--key", admin];
        args.extend_from_slice(extra);
        args.extend(["--", "echo", "connected"]);
        let out = r.hs(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{extra:?}: {err}");
        assert!(err.contains(&recorded) && err.contains(&served), "{extra:?}: {err}");
        assert!(!stdout(&out).contains("connected"));
    }
    let audit = r.audit();
    assert_eq!(audit[0]["outcome"], "failed");
    assert!(audit[0]["error"].as_str().expect("error").contains(&served));
}

/// A STAND-IN for Proxmox's `qm` (no qm can run here), on the PATH of the rig's sshd, which
/// plays the Proxmox node: it records its argv and plays `qm guest exec VMID --pass-stdin 1
/// --timeout N -- CMD…` by running CMD with its stdin, printing qm's JSON status.
const QM_STAND_IN: &str = r#"#!/usr/bin/env python3
import json, subprocess, sys
open(sys.argv[0] + ".log", "a").write(json.dumps(sys.argv[1:]) + "\n")
args = sys.argv[1:]
assert args[:2] == ["guest", "exec"], args
p = subprocess.run(args[args.index("--") + 1:], stdin=sys.stdin.buffer, capture_output=True)
print(json.dumps({"exitcode": p.returncode, "exited": 1, "out-data": p.stdout.decode()}, indent=3))
"#;

/// Makes the rig's record a deployed Proxmox VM whose node is the rig's sshd, reached
/// through `proxmox.ssh_config` (trusted, as a user would).
pub(crate) fn as_proxmox_vm(r: &Rig) {
    let record_path = r.f.dir.join("hosts/web01.json");
    let mut record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&record_path).expect("read")).expect("json");
    record["vm_id"] = 101.into();
    record["proxmox_node"] = "pve1".into();
    std::fs::write(&record_path, serde_json::to_string_pretty(&record).expect("json")).expect("write");
    let known = r.f.tmp.path().join("node_known_hosts");
    std::fs::write(&known, format!("[127.0.0.1]:{} {}\n", r.sshd.port, r.record_key.public_line())).expect("write");
    let ssh_config = r.f.tmp.path().join("node_ssh_config");
    let config = format!(
        "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
        r.client.display(),
        known.display()
    );
    std::fs::write(&ssh_config, config).expect("write");
    let toml = r.f.dir.join("hostsmith.toml");
    let text = std::fs::read_to_string(&toml).expect("read");
    std::fs::write(&toml, format!("{text}\n[proxmox]\nssh_config = \"{}\"\n", ssh_config.display())).expect("write");
    // The node's ssh configuration comes from the fleet: it runs only once trusted.
    ok(&r.hs(&["trust"]));
}

#[test]
fn guest_agent_runs_the_script_through_qm_on_the_node() {
    let Some(r) = rig() else { return };
    let Some(_) = peer("python3") else { return };
    let qm = r.f.tmp.path().join("node-bin/qm");
    std::fs::write(&qm, QM_STAND_IN).expect("write");
    std::fs::set_permissions(&qm, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    as_proxmox_vm(&r);
    let pve = format!("root@{}", r.addr());
    let admin = r.admin_pub.to_str().expect("utf8");
    let out = r.hs(&["sync", "web01", "--user", "root", "--key", admin, "--pve", &pve]);
    let text = ok(&out);
    assert!(text.contains("✓ added 1 key") && text.contains("(via guest-agent"), "{text}");
    assert_eq!(std::fs::read_to_string(r.keys_file()).expect("read"), admin_line(&r));
    let argv: Vec<String> = serde_json::from_str(std::fs::read_to_string(qm.with_extension("log")).expect("log").trim()).expect("argv");
    let expected = ["guest", "exec", "101", "--pass-stdin", "1", "--timeout", "28", "--", "sh", "-c", hostsmith::sync::remote::BOOTSTRAP];
    assert_eq!(argv, expected);
    let text = ok(&r.hs(&["sync", "web01", "--user", "root", "--key", admin, "--pve", &pve, "--method", "guest-agent"]));
    assert!(text.contains("✓ already present (via guest-agent"), "{text}");
    let audit = r.audit();
    assert_eq!(
        audit.iter().map(|e| (e["method"].as_str().expect("m"), e["outcome"].as_str().expect("o"))).collect::<Vec<_>>(),
        [("guest-agent", "synced"), ("guest-agent", "present")]
    );
}
