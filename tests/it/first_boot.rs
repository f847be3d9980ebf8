//! First boot, end to end: real cloud-init in a Debian root applies hostsmith's seed, the
//! root's sshd serves the key, and everything a user relies on is checked against it.
//!
//! The root is built once with debootstrap and cached (`HOSTSMITH_E2E_CACHE`, default
//! `/var/tmp/hostsmith-e2e`); each test boots a fresh copy inside `unshare --uts --net
//! --mount`, so cloud-init can neither rename this machine nor reach any network: only
//! loopback exists there.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hostsmith::ssh_keys::Keypair;

use crate::common::{self, TestFleet, ok, peer, run, sops_decrypt, stderr, stdout};

/// The tools the end-to-end tests need on this machine.
const PEERS: [&str; 8] = ["debootstrap", "unshare", "nsenter", "chroot", "ip", "ssh", "ssh-keyscan", "sops"];

pub(crate) fn peers() -> bool {
    PEERS.iter().all(|p| peer(p).is_some())
}

/// The first-boot cache, created here where it is first needed: every caller (the root's
/// builder, a bare machine's temp dir) gets a directory that exists, whatever ran before.
fn cache_dir() -> PathBuf {
    let dir = std::env::var_os("HOSTSMITH_E2E_CACHE").map_or_else(|| PathBuf::from("/var/tmp/hostsmith-e2e"), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("first-boot cache {}: {e}", dir.display()));
    dir
}

/// The Debian mirror this machine's apt uses (so the test names no host of its own).
fn apt_mirror() -> String {
    let sources = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    if let Some(uri) = sources.lines().find_map(|l| l.strip_prefix("URIs:")) {
        return uri.split_whitespace().next().expect("a URI").to_string();
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").expect("apt has a sources list");
    list.lines()
        .find_map(|l| l.strip_prefix("deb ").and_then(|r| r.split_whitespace().find(|w| w.starts_with("http"))))
        .expect("a deb line in /etc/apt/sources.list")
        .to_string()
}

/// The cached bookworm root, built on first use (under a lock, so parallel tests wait).
fn cached_root() -> PathBuf {
    let cache = cache_dir();
    let root = cache.join("bookworm-cloud-init");
    let lock = std::fs::File::create(cache.join(".lock")).expect("lock file");
    lock.lock().expect("lock");
    if !root.join(".complete").exists() {
        let _ = std::fs::remove_dir_all(&root);
        let out = run(Command::new("debootstrap").args([
            "--variant=minbase",
            "--include=cloud-init,openssh-server,python3-cffi-backend",
            "bookworm",
            root.to_str().expect("utf8"),
            &apt_mirror(),
        ]));
        assert!(out.status.success(), "debootstrap failed:\n{}", stderr(&out));
        // Only NoCloud: the test must never wait on a metadata service.
        std::fs::write(root.join("etc/cloud/cloud.cfg.d/90-hostsmith-test.cfg"), "datasource_list: [ NoCloud, None ]\n").expect("cfg");
        std::fs::write(root.join(".complete"), "").expect("marker");
    }
    root
}

/// A booted copy of the root: a namespace holder process, mounts, and an sshd.
pub(crate) struct Machine {
    pub(crate) root: PathBuf,
    _tmp: tempfile::TempDir,
    holder: Child,
    holder_pid: u32,
    sshd: Option<Child>,
    pub port: u16,
}

impl Machine {
    /// Copies the cached root and enters fresh namespaces for it.
    pub(crate) fn new() -> Self {
        Self::enter(true)
    }

    /// Fresh namespaces without a copy of the root, for tests that boot nothing in them.
    pub(crate) fn bare() -> Self {
        Self::enter(false)
    }

    fn enter(with_root: bool) -> Self {
        let tmp = tempfile::tempdir_in(cache_dir()).expect("tmp");
        let root = tmp.path().join("root");
        if with_root {
            let cp = run(Command::new("cp").args(["-a", "--reflink=auto"]).arg(cached_root()).arg(&root));
            assert!(cp.status.success(), "{}", stderr(&cp));
        }
        let mut holder = Command::new("unshare")
            .args(["--uts", "--net", "--mount", "--fork", "sh", "-c", "echo $$; exec sleep 900"])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("stdout")).read_line(&mut line).expect("pid");
        let holder_pid: u32 = line.trim().parse().expect("holder pid");
        let m = Self { root, _tmp: tmp, holder, holder_pid, sshd: None, port: 22022 };
        m.sh("ip link set lo up");
        if with_root {
            let r = m.root.display().to_string();
            m.sh(&format!(
                "mount -t proc proc {r}/proc && mount --rbind /dev {r}/dev && mount -t sysfs sys {r}/sys && mkdir -p {r}/run/sshd"
            ));
        }
        m
    }

    /// A command run inside the machine's namespaces (but with this machine's files).
    pub(crate) fn inside(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder_pid.to_string(), "-n", "-m", "-u", "--"]).arg(program);
        c
    }

    #[track_caller]
    pub(crate) fn sh(&self, script: &str) -> String {
        let out = run(self.inside("sh").args(["-c", script]));
        assert!(out.status.success(), "`{script}` failed:\n{}\n{}", stdout(&out), stderr(&out));
        stdout(&out)
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Puts a NoCloud seed where cloud-init's NoCloud datasource looks for it.
    fn seed(&self, seed_dir: &Path) {
        let dest = self.path("var/lib/cloud/seed/nocloud");
        std::fs::create_dir_all(&dest).expect("seed dir");
        for f in ["user-data", "meta-data", "network-config"] {
            if seed_dir.join(f).exists() {
                std::fs::copy(seed_dir.join(f), dest.join(f)).expect("copy seed");
            }
        }
    }

    /// Runs cloud-init's init and config stages as a boot would, then starts the root's
    /// sshd on loopback. Returns what cloud-init printed, for failure messages.
    fn boot(&mut self) -> String {
        self.stop_sshd();
        let r = self.root.display().to_string();
        // The config stage exits non-zero in a chroot (its locale module fails); what
        // matters is what the stages did, which the tests check directly.
        let log = self.sh(&format!("{{ chroot {r} cloud-init init; chroot {r} cloud-init modules --mode config; }} 2>&1 || true"));
        let mut sshd = self
            .inside("chroot")
            .arg(&self.root)
            .args(["/usr/sbin/sshd", "-D", "-e", "-p", &self.port.to_string(), "-o", "ListenAddress=127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd");
        for _ in 0..100 {
            if self.sh(&format!("ssh-keyscan -T 1 -p {} 127.0.0.1 2>/dev/null || true", self.port)).contains("ssh-") {
                break;
            }
            if let Ok(Some(status)) = sshd.try_wait() {
                panic!("sshd exited: {status}\ncloud-init said:\n{log}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.sshd = Some(sshd);
        log
    }

    fn stop_sshd(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The ed25519 fingerprints of every host key file in the root's /etc/ssh.
    fn host_key_fingerprints(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.path("etc/ssh")).expect("etc/ssh") {
            let p = e.expect("entry").path();
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            if name.starts_with("ssh_host_") && name.ends_with(".pub") {
                let key = std::fs::read_to_string(&p).expect("pub");
                out.push(hostsmith::ssh_keys::parse_public(&key).map(|k| hostsmith::ssh_keys::fingerprint(&k)).unwrap_or(name));
            }
        }
        out.sort();
        out
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.stop_sshd();
        // Ending the holder ends the namespaces and with them every mount made inside. The
        // holder is `unshare`, which forked `holder_pid` (the `sleep`): end both.
        let _ = Command::new("kill").arg(self.holder_pid.to_string()).status();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// An admin SSH key pair for logging in, written 0600.
pub(crate) fn admin_key(dir: &Path) -> (PathBuf, PathBuf) {
    let k = Keypair::generate("admin@workstation").expect("key");
    let private = dir.join("admin_ed25519");
    hostsmith::atomic::create_secret(&private, k.openssh_private().expect("openssh").as_bytes()).expect("write");
    let public = dir.join("admin_ed25519.pub");
    std::fs::write(&public, k.public_line() + "\n").expect("write");
    (private, public)
}

#[test]
fn a_fresh_machine_presents_the_generated_key_at_first_boot() {
    if !peers() {
        return;
    }
    let f = TestFleet::new();
    let (admin_private, admin_public) = admin_key(f.tmp.path());
    ok(&f.run(&["init"]));
    let seeds = f.tmp.path().join("seeds");
    ok(&f.run(&[
        "vm-fresh",
        "web01",
        "--cloud-init",
        seeds.to_str().expect("utf8"),
        "--authorized-key",
        admin_public.to_str().expect("utf8"),
    ]));
    let record: serde_json::Value = serde_json::from_str(&f.read("hosts/web01.json")).expect("record");
    let fingerprint = record["fingerprint"].as_str().expect("fingerprint").to_string();

    let mut m = Machine::new();
    // A template's key, planted before first boot: it must be gone afterwards.
    let template = Keypair::generate("root@template").expect("key");
    std::fs::write(m.path("etc/ssh/ssh_host_ed25519_key"), template.openssh_private().expect("openssh").as_bytes()).expect("plant");
    std::fs::write(m.path("etc/ssh/ssh_host_ed25519_key.pub"), template.public_line() + "\n").expect("plant");
    m.seed(&seeds.join("web01"));
    let log = m.boot();

    // Only the generated key is left: the template's (and the image's rsa/ecdsa keys) are gone.
    assert_eq!(m.host_key_fingerprints(), vec![fingerprint.clone()], "cloud-init said:\n{log}");

    // hostsmith verify, inside the machine's network namespace.
    let port = m.port.to_string();
    let mut verify = m.inside(common::bin().to_str().expect("utf8"));
    verify.arg("--fleet").arg(&f.dir).args(["verify", "web01", "--address", &format!("127.0.0.1:{port}")]);
    f.env(&mut verify);
    let text = ok(&run(&mut verify));
    assert_eq!(text, format!("verified: web01 at 127.0.0.1:{port} presents {fingerprint}, as recorded\n"));

    // OpenSSH's ssh-keyscan sees exactly the recorded key.
    let scan = m.sh(&format!("ssh-keyscan -t ed25519 -p {port} 127.0.0.1 2>/dev/null"));
    let recorded = record["ssh_host_ed25519_public"].as_str().expect("public");
    let recorded_blob: Vec<&str> = recorded.split_whitespace().take(2).collect();
    assert_eq!(scan.trim(), format!("[127.0.0.1]:{port} {}", recorded_blob.join(" ")));

    // A strict first connection with hostsmith's known_hosts succeeds.
    let known = f.tmp.path().join("known_hosts");
    ok(&f.run(&["known-hosts", "--out", known.to_str().expect("utf8")]));
    let login = m.sh(&format!(
        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o HostKeyAlias=web01 -p {port} admin@127.0.0.1 'id -un; hostname'",
        admin_private.display(),
        known.display()
    ));
    assert_eq!(login, "admin\nweb01\n");

    // The key the machine holds opens its secrets with real sops.
    let on_disk = std::fs::read_to_string(m.path("etc/ssh/ssh_host_ed25519_key")).expect("host key");
    let identity = Keypair::from_openssh(&on_disk, None).expect("key").age_identity().expect("identity");
    let sops = peer("sops").expect("sops");
    let plain = ok(&sops_decrypt(&sops, &f.dir, "sops/web01.yaml", &identity));
    assert!(plain.contains("ssh_host_ed25519_key: |"), "{plain}");

    // A second boot with the same seed keeps the same key.
    let log = m.boot();
    assert_eq!(m.host_key_fingerprints(), vec![fingerprint.clone()], "cloud-init said:\n{log}");
    assert!(m.sh(&format!("ssh-keyscan -t ed25519 -p {port} 127.0.0.1 2>/dev/null")).contains(recorded_blob[1]));
}
