//! A real OpenSSH server on 127.0.0.1 for tests: its own config, host key and port, stopped
//! by PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hostsmith::ssh_keys::Keypair;

use crate::common::{TestFleet, ok};

pub(crate) struct Sshd {
    child: Child,
    pub port: u16,
    /// Holds the server's config and key until it is dropped.
    _dir: tempfile::TempDir,
}

/// A free loopback port (there is a short race between this and the server's bind).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Sshd {
    /// Starts sshd with `key` as its only host key; extra config lines may follow.
    pub(crate) fn start_with(sshd: &Path, parent: &Path, key: &Keypair, extra: &str) -> Self {
        Self::start_via(Command::new(sshd), parent, key, extra, |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
    }

    /// Like [`Sshd::start_with`], with `launch` as the sshd program (e.g. `nsenter … --
    /// /usr/sbin/sshd`, to serve inside a network namespace) and `listening` telling when
    /// the port answers.
    pub(crate) fn start_via(mut launch: Command, parent: &Path, key: &Keypair, extra: &str, listening: impl Fn(u16) -> bool) -> Self {
        let dir = tempfile::tempdir_in(parent).expect("tmp");
        let key_path = dir.path().join("host_key");
        hostsmith::atomic::create_secret(&key_path, key.openssh_private().expect("openssh").as_bytes()).expect("key");
        std::fs::create_dir_all("/run/sshd").expect("privsep dir");
        let port = free_port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n{extra}",
                key_path.display(),
                dir.path().join("sshd.pid").display()
            ),
        )
        .expect("config");
        let child = launch
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd");
        let s = Self { child, port, _dir: dir };
        s.wait_listening(listening);
        s
    }

    pub(crate) fn start(sshd: &Path, parent: &Path, key: &Keypair) -> Self {
        Self::start_with(sshd, parent, key, "")
    }

    fn wait_listening(&self, listening: impl Fn(u16) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if listening(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sshd did not listen on 127.0.0.1:{}", self.port);
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host's key as hostsmith holds it (through `extra-files`), served by a new sshd.
pub(crate) fn start_with_host_key_of(f: &TestFleet, host: &str, sshd: &Path) -> (Keypair, Sshd) {
    let out: PathBuf = f.tmp.path().join(format!("extra-{host}"));
    ok(&f.run(&["extra-files", host, "--out", out.to_str().expect("utf8")]));
    let key = Keypair::from_openssh(&std::fs::read_to_string(out.join("etc/ssh/ssh_host_ed25519_key")).expect("key"), None).expect("key");
    let server = Sshd::start(sshd, f.tmp.path(), &key);
    (key, server)
}
