//! OpenSSH command lines, built in one place: every `ssh` hostsmith starts (the sync, the
//! `connect` session, the Proxmox node) gets its options from [`SshCommand`], so an option
//! that decides whom we trust is written once and read once.
//!
//! OpenSSH takes the first value given for an option, and command-line options come before
//! the user's config: options forced here win over `~/.ssh/config`, everything else there
//! (identities, ProxyJump, agents) keeps working.

use std::path::Path;
use std::time::Duration;

use crate::host_name::HostName;
use crate::process::Program;

/// An `ssh` invocation being built; options keep the order they were added in.
#[derive(Debug, Clone)]
pub struct SshCommand {
    argv: Vec<String>,
}

impl Default for SshCommand {
    fn default() -> Self {
        Self::new()
    }
}

impl SshCommand {
    #[must_use]
    pub fn new() -> Self {
        Self { argv: vec!["ssh".to_string()] }
    }

    /// A bare flag such as `-T` (no pseudo-terminal).
    #[must_use]
    pub fn flag(mut self, flag: &str) -> Self {
        self.argv.push(flag.to_string());
        self
    }

    /// `-o OPTION=VALUE`.
    #[must_use]
    pub fn option(mut self, option: impl Into<String>) -> Self {
        self.argv.extend(["-o".to_string(), option.into()]);
        self
    }

    /// Never prompt: a missing key or password fails instead of waiting for a human.
    #[must_use]
    pub fn batch(self) -> Self {
        self.option("BatchMode=yes")
    }

    /// Seconds to wait for the TCP connection and the handshake (at least one).
    #[must_use]
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        let secs = timeout.as_secs().max(1);
        self.option(format!("ConnectTimeout={secs}"))
    }

    /// The host key pinned to the fleet's record: a known_hosts file holding only that
    /// record, filed under `HostKeyAlias=HOST` so it applies at any address,
    /// `StrictHostKeyChecking=yes` so the first connection is verified rather than trusted,
    /// and no global known_hosts, IP check or host key updates.
    #[must_use]
    pub fn pinned(self, alias: &HostName, known_hosts: &Path) -> Self {
        self.option("StrictHostKeyChecking=yes")
            .option(format!("UserKnownHostsFile={}", option_path(known_hosts)))
            .option("GlobalKnownHostsFile=/dev/null")
            .option(format!("HostKeyAlias={alias}"))
            .option("HostKeyAlgorithms=ssh-ed25519")
            .option("CheckHostIP=no")
            .option("UpdateHostKeys=no")
    }

    /// A connection of its own that forwards nothing: no shared master (a lingering one would
    /// hold our pipes), no agent, X11 or port forwarding, no local command, errors only.
    #[must_use]
    pub fn isolated(self) -> Self {
        self.option("ControlMaster=no").option("ControlPath=none").quiet_and_forwarding_nothing()
    }

    /// No agent, X11 or port forwarding, no local command, errors only.
    fn quiet_and_forwarding_nothing(self) -> Self {
        self.option("ClearAllForwardings=yes")
            .option("ForwardAgent=no")
            .option("ForwardX11=no")
            .option("PermitLocalCommand=no")
            .option("LogLevel=ERROR")
    }

    /// Like [`SshCommand::isolated`], but the connection becomes the control master of
    /// `path` and stays `linger` after its last client leaves, for a session to reuse. It
    /// forwards nothing itself; a session over it asks for what it needs.
    #[must_use]
    pub fn shared_master(self, path: &Path, linger: Duration) -> Self {
        self.option("ControlMaster=yes")
            .option(format!("ControlPath={}", option_path(path)))
            .option(format!("ControlPersist={}", linger.as_secs().max(1)))
            .quiet_and_forwarding_nothing()
    }

    /// A client of the master at `path`, never a master itself; when the master is gone,
    /// ssh connects on its own (with the same options, pinning included).
    #[must_use]
    pub fn via_master(self, path: &Path) -> Self {
        self.option("ControlMaster=no").option(format!("ControlPath={}", option_path(path)))
    }

    /// `-F FILE`: this ssh config instead of `~/.ssh/config`.
    #[must_use]
    pub fn config_file(mut self, path: &Path) -> Self {
        self.argv.extend(["-F".to_string(), path.display().to_string()]);
        self
    }

    /// `-i FILE -o IdentitiesOnly=yes`: this key and no other.
    #[must_use]
    pub fn identity(mut self, path: &Path) -> Self {
        self.argv.extend(["-i".to_string(), path.display().to_string()]);
        self.option("IdentitiesOnly=yes")
    }

    /// `-p PORT`.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.argv.extend(["-p".to_string(), port.to_string()]);
        self
    }

    /// `-l USER`.
    #[must_use]
    pub fn user(mut self, user: &str) -> Self {
        self.argv.extend(["-l".to_string(), user.to_string()]);
        self
    }

    /// The full argv: the options, `--`, the destination, then the remote command words
    /// (ssh joins them with spaces for the remote shell; quote them first).
    #[must_use]
    pub fn to(self, host: &str, remote: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut argv = self.argv;
        argv.extend(["--".to_string(), host.to_string()]);
        argv.extend(remote);
        argv
    }

    /// [`SshCommand::to`] as a [`Program`] to run.
    #[must_use]
    pub fn program(self, host: &str, remote: impl IntoIterator<Item = String>) -> Program {
        let argv = self.to(host, remote);
        Program::new(argv[0].clone()).args(argv[1..].iter().cloned())
    }

    /// An interactive session as `connect` prints and runs it: the destination right after
    /// the options, then the user's words. The address was validated (it cannot start with
    /// `-`), and the words after it are the remote command whatever they look like.
    #[must_use]
    pub fn session(self, host: &str, remote: impl IntoIterator<Item = String>) -> Program {
        let mut argv = self.argv;
        argv.push(host.to_string());
        argv.extend(remote);
        Program::new(argv[0].clone()).args(argv[1..].iter().cloned())
    }
}

/// A path as an ssh option value: `%` doubled (ssh expands `%` tokens there) and quoted
/// when it holds blanks.
fn option_path(p: &Path) -> String {
    let s = p.display().to_string().replace('%', "%%");
    if s.contains([' ', '\t']) { format!("\"{s}\"") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_keep_their_order_and_the_destination_follows_the_end_of_options() {
        let alias = HostName::parse("web01").expect("name");
        let argv = SshCommand::new()
            .flag("-T")
            .batch()
            .pinned(&alias, Path::new("/run/k h%/web01"))
            .connect_timeout(Duration::from_millis(10))
            .identity(Path::new("/k/id"))
            .port(2222)
            .user("admin")
            .to("192.0.2.1", ["true".to_string()]);
        assert_eq!(
            argv.join(" "),
            "ssh -T -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=\"/run/k h%%/web01\" \
             -o GlobalKnownHostsFile=/dev/null -o HostKeyAlias=web01 -o HostKeyAlgorithms=ssh-ed25519 -o CheckHostIP=no \
             -o UpdateHostKeys=no -o ConnectTimeout=1 -i /k/id -o IdentitiesOnly=yes -p 2222 -l admin -- 192.0.2.1 true"
        );
    }

    #[test]
    fn option_values_survive_ssh_parsing() {
        assert_eq!(option_path(Path::new("/a b/100%/kh")), "\"/a b/100%%/kh\"");
    }
}
