//! First boot, end to end: real cloud-init in a Debian root applies hostsmith's seed, the
//! root's sshd serves the key, and everything a user relies on is checked against it.
//!
//! There are two roots, Debian bookworm and trixie ([`Release`]), each built once with
//! debootstrap and cached (`HOSTSMITH_E2E_CACHE`, default `/var/tmp/hostsmith-e2e`); each
//! test boots a fresh copy inside `unshare --uts --net --mount`, so cloud-init can neither
//! rename this machine nor reach any network: only loopback exists there. A boot runs
//! cloud-init's four stages ([`Stage`]) as systemd does. The NixOS template's settings are
//! checked in [`template`], the persist step in [`persist`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hostsmith::ssh_keys::Keypair;

use crate::common::{self, TestFleet, ok, peer, run, sops_decrypt, stderr, stdout};

mod persist;
mod template;

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

/// The Debian releases a first-boot root is built from: bookworm (cloud-init 22.4, OpenSSH
/// 9.2) and trixie (cloud-init 25.1, OpenSSH 10, whose sshd execs `sshd-session`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    Bookworm,
    Trixie,
}

impl Release {
    fn codename(self) -> &'static str {
        match self {
            Self::Bookworm => "bookworm",
            Self::Trixie => "trixie",
        }
    }
}

/// cloud-init's four boot stages, in the order systemd runs them: `cloud-init-local.service`,
/// `cloud-init.service` (the NixOS template orders sshd after it), `cloud-config.service`,
/// `cloud-final.service`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Local,
    Init,
    Config,
    Final,
}

impl Stage {
    /// Every stage: a whole boot.
    pub(crate) const ALL: [Self; 4] = [Self::Local, Self::Init, Self::Config, Self::Final];
    /// The stages that have run when sshd may start.
    pub(crate) const BEFORE_SSHD: [Self; 2] = [Self::Local, Self::Init];

    fn args(self) -> &'static str {
        match self {
            Self::Local => "init --local",
            Self::Init => "init",
            Self::Config => "modules --mode config",
            Self::Final => "modules --mode final",
        }
    }
}

/// The cached root of `release`, built on first use under a lock of its own, so parallel
/// tests wait for the one build while the other release's root can build beside it.
fn cached_root(release: Release) -> PathBuf {
    let cache = cache_dir();
    let name = release.codename();
    let root = cache.join(format!("{name}-cloud-init"));
    let lock = std::fs::File::create(cache.join(format!(".{name}.lock"))).expect("lock file");
    lock.lock().expect("lock");
    if !root.join(".complete").exists() {
        let _ = std::fs::remove_dir_all(&root);
        let started = std::time::Instant::now();
        let out = run(Command::new("debootstrap").args([
            "--variant=minbase",
            "--include=cloud-init,openssh-server,python3-cffi-backend",
            name,
            root.to_str().expect("utf8"),
            &apt_mirror(),
        ]));
        assert!(out.status.success(), "debootstrap {name} failed:\n{}", stderr(&out));
        eprintln!("first-boot root {name}: debootstrap took {:.0?}", started.elapsed());
        // apt's downloaded packages and lists are a third of the root, and every test copies
        // it: nothing in a boot reads them.
        let trim = run(Command::new("sh")
            .args(["-c", r#"rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*_*"#, "sh"])
            .arg(&root));
        assert!(trim.status.success(), "{}", stderr(&trim));
        // Only NoCloud: the test must never wait on a metadata service.
        std::fs::write(root.join("etc/cloud/cloud.cfg.d/90-hostsmith-test.cfg"), "datasource_list: [ NoCloud, None ]\n").expect("cfg");
        std::fs::write(root.join(".complete"), "").expect("marker");
    }
    root
}

/// A booted copy of the root: a namespace holder process, mounts, and an sshd.
pub(crate) struct Machine {
    pub(crate) root: PathBuf,
    tmp: tempfile::TempDir,
    holder: Child,
    holder_pid: u32,
    sshd: Option<Child>,
    pub port: u16,
}

impl Machine {
    /// Copies the cached root of `release` and enters fresh namespaces for it.
    pub(crate) fn new(release: Release) -> Self {
        Self::enter(Some(release))
    }

    /// Fresh namespaces without a copy of the root, for tests that boot nothing in them.
    pub(crate) fn bare() -> Self {
        Self::enter(None)
    }

    fn enter(release: Option<Release>) -> Self {
        let tmp = tempfile::tempdir_in(cache_dir()).expect("tmp");
        let root = tmp.path().join("root");
        let with_root = release.is_some();
        if let Some(release) = release {
            let cp = run(Command::new("cp").args(["-a", "--reflink=auto"]).arg(cached_root(release)).arg(&root));
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
        let m = Self { root, tmp, holder, holder_pid, sshd: None, port: 22022 };
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

    /// A whole boot: every cloud-init stage in order (see [`Machine::stages`]), then the
    /// root's sshd on loopback. Returns what cloud-init printed, for failure messages.
    pub(crate) fn boot(&mut self) -> String {
        self.stop_sshd();
        let log = self.stages(&Stage::ALL);
        self.start_sshd(&[], &log);
        log
    }

    /// Runs cloud-init's `stages`, in order, in the root, as systemd would at boot. A stage
    /// may exit non-zero in a chroot for reasons of its own (bookworm's config stage fails
    /// in its locale module); what matters is what the stages did, which the tests check
    /// directly, and [`Machine::datasource`] checks which datasource cloud-init used.
    /// Returns what they printed, each stage headed by its command and exit status.
    pub(crate) fn stages(&self, stages: &[Stage]) -> String {
        let r = self.root.display().to_string();
        let script: String = stages
            .iter()
            .map(|s| {
                let args = s.args();
                format!("chroot {r} cloud-init {args}; rc=$?; echo \"== cloud-init {args}: exit $rc\"; ")
            })
            .collect();
        self.sh(&format!("{{ {script}}} 2>&1"))
    }

    /// Starts the root's sshd on loopback (port [`Machine::port`]) with `options` (`-o`
    /// settings) and waits until it answers. `log` goes into the failure message.
    pub(crate) fn start_sshd(&mut self, options: &[&str], log: &str) {
        self.stop_sshd();
        let mut sshd = self.inside("chroot");
        sshd.arg(&self.root).args(["/usr/sbin/sshd", "-D", "-e", "-p", &self.port.to_string(), "-o", "ListenAddress=127.0.0.1"]);
        for o in options {
            sshd.args(["-o", o]);
        }
        let log_file = self.tmp.path().join("sshd.log");
        let said = std::fs::File::create(&log_file).expect("sshd log");
        let mut sshd = sshd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(said).spawn().expect("sshd");
        for _ in 0..100 {
            if self.sh(&format!("ssh-keyscan -T 1 -p {} 127.0.0.1 2>/dev/null || true", self.port)).contains("ssh-") {
                break;
            }
            if let Ok(Some(status)) = sshd.try_wait() {
                let said = std::fs::read_to_string(&log_file).unwrap_or_default();
                panic!("sshd exited: {status}\n{said}\ncloud-init said:\n{log}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.sshd = Some(sshd);
    }

    /// The datasource cloud-init's status file names (`/var/lib/cloud/data/status.json`,
    /// written by every stage), e.g. `DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud]`.
    pub(crate) fn datasource(&self) -> String {
        let status = std::fs::read_to_string(self.path("var/lib/cloud/data/status.json")).expect("cloud-init's status.json");
        let status: serde_json::Value = serde_json::from_str(&status).expect("status.json is JSON");
        status["v1"]["datasource"].as_str().unwrap_or_default().to_string()
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

/// Host web01 of a fresh fleet, seeded as an operator would: `vm-fresh web01 --cloud-init`
/// with an admin key that may log in.
pub(crate) struct Web01 {
    pub f: TestFleet,
    /// The host's NoCloud seed directory (user-data, meta-data).
    pub seed: PathBuf,
    /// The recorded fingerprint of the host key.
    pub fingerprint: String,
    /// The recorded public key line.
    pub public: String,
    pub admin_private: PathBuf,
}

impl Web01 {
    pub(crate) fn new() -> Self {
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
        let public = record["ssh_host_ed25519_public"].as_str().expect("public").to_string();
        Self { f, seed: seeds.join("web01"), fingerprint, public, admin_private }
    }

    /// `hostsmith verify web01` against the machine's sshd (inside its network namespace):
    /// asserts exit 0 and the message that the recorded key was presented.
    #[track_caller]
    pub(crate) fn verify(&self, m: &Machine) {
        let port = m.port.to_string();
        let mut verify = m.inside(common::bin().to_str().expect("utf8"));
        verify.arg("--fleet").arg(&self.f.dir).args(["verify", "web01", "--address", &format!("127.0.0.1:{port}")]);
        self.f.env(&mut verify);
        let text = ok(&run(&mut verify));
        assert_eq!(text, format!("verified: web01 at 127.0.0.1:{port} presents {}, as recorded\n", self.fingerprint));
    }

    /// Asserts that `private_key` (OpenSSH text) opens the host's SOPS file with real sops.
    #[track_caller]
    pub(crate) fn assert_key_opens_secrets(&self, private_key: &str) {
        let identity = Keypair::from_openssh(private_key, None).expect("key").age_identity().expect("identity");
        let sops = peer("sops").expect("sops");
        let plain = ok(&sops_decrypt(&sops, &self.f.dir, "sops/web01.yaml", &identity));
        assert!(plain.contains("ssh_host_ed25519_key: |"), "{plain}");
    }

    /// The recorded key as ssh-keyscan prints it for the machine: `[127.0.0.1]:PORT TYPE BLOB`.
    fn scan_line(&self, m: &Machine) -> String {
        let blob: Vec<&str> = self.public.split_whitespace().take(2).collect();
        format!("[127.0.0.1]:{} {}", m.port, blob.join(" "))
    }
}

/// The host key file names in the root's /etc/ssh (`ssh_host_*`), sorted.
pub(crate) fn host_key_files(m: &Machine) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.path("etc/ssh"))
        .expect("etc/ssh")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ssh_host_"))
        .collect();
    names.sort();
    names
}

/// A template's key, planted before first boot: it must be gone afterwards.
fn plant_template_key(m: &Machine) {
    let template = Keypair::generate("root@template").expect("key");
    std::fs::write(m.path("etc/ssh/ssh_host_ed25519_key"), template.openssh_private().expect("openssh").as_bytes()).expect("plant");
    std::fs::write(m.path("etc/ssh/ssh_host_ed25519_key.pub"), template.public_line() + "\n").expect("plant");
}

#[test]
fn a_fresh_bookworm_machine_presents_the_generated_key_at_first_boot() {
    presents_the_generated_key_at_first_boot(Release::Bookworm);
}

#[test]
fn a_fresh_trixie_machine_presents_the_generated_key_at_first_boot() {
    presents_the_generated_key_at_first_boot(Release::Trixie);
}

fn presents_the_generated_key_at_first_boot(release: Release) {
    if !peers() {
        return;
    }
    let w = Web01::new();
    let mut m = Machine::new(release);
    plant_template_key(&m);
    m.seed(&w.seed);
    let log = m.boot();

    // Only the generated key is left: the template's (and the image's rsa/ecdsa keys) are
    // gone, and cloud-init says it read hostsmith's seed.
    assert_eq!(m.host_key_fingerprints(), vec![w.fingerprint.clone()], "cloud-init said:\n{log}");
    assert!(m.datasource().starts_with("DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud]"), "{}\n{log}", m.datasource());
    w.verify(&m);

    // OpenSSH's ssh-keyscan sees exactly the recorded key.
    let port = m.port;
    let scan = m.sh(&format!("ssh-keyscan -t ed25519 -p {port} 127.0.0.1 2>/dev/null"));
    assert_eq!(scan.trim(), w.scan_line(&m));

    logs_in_strictly(&w, &m);

    // The key the machine holds opens its secrets with real sops.
    w.assert_key_opens_secrets(&std::fs::read_to_string(m.path("etc/ssh/ssh_host_ed25519_key")).expect("host key"));

    // A second boot with the same seed keeps the same key.
    let log = m.boot();
    assert_eq!(m.host_key_fingerprints(), vec![w.fingerprint.clone()], "cloud-init said:\n{log}");
    assert_eq!(m.sh(&format!("ssh-keyscan -t ed25519 -p {port} 127.0.0.1 2>/dev/null")).trim(), w.scan_line(&m));
}

/// A strict first connection with hostsmith's known_hosts succeeds, as the admin, on the
/// machine named by the seed.
fn logs_in_strictly(w: &Web01, m: &Machine) {
    let known = w.f.tmp.path().join("known_hosts");
    ok(&w.f.run(&["known-hosts", "--out", known.to_str().expect("utf8")]));
    let login = m.sh(&format!(
        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o HostKeyAlias=web01 -p {} admin@127.0.0.1 'id -un; hostname'",
        w.admin_private.display(),
        known.display(),
        m.port
    ));
    assert_eq!(login, "admin\nweb01\n");
}
