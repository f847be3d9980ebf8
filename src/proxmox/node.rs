//! The Proxmox node, reached over OpenSSH. hostsmith drives Proxmox with `qm` on the node
//! rather than the HTTP API because the API cannot upload cloud-init snippets; the node is
//! infrastructure the user already trusts, so ssh runs with the user's own ssh config and
//! known_hosts (never `StrictHostKeyChecking=no`), in batch mode with a connect timeout.
//!
//! Every remote command is an argument vector whose words are quoted one by one with
//! [`shell_quote`] for the node's login shell. Secrets never appear in argv: they travel on
//! stdin (the user-data goes to `install -m 0600 /dev/stdin PATH`). Commands are logged by
//! their argv only; stdin is logged by its length.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::openssh::SshCommand;
use crate::process::{Finished, Program, shell_quote};

use super::names::RemotePath;

/// How long ssh may take to connect before the node counts as unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one command on a node. [`Ssh`] is the real transport; tests or other front ends
/// (a Proxmox API runner, say) may supply their own.
pub trait Remote {
    /// Runs `argv` on the node with `stdin` (if any) and returns what it printed. A
    /// non-zero exit is not an error here: the caller judges it (see [`Node::probe`] for
    /// telling an unreachable node apart).
    ///
    /// # Errors
    /// [`Error::Program`] when the transport cannot run or the command times out.
    fn run(&self, argv: &[String], stdin: Option<&[u8]>, timeout: Duration) -> Result<Finished>;

    /// The node as shown to the user (`root@pve1:22`).
    fn describe(&self) -> String;

    /// How the user logs in to the node by hand, for advice in errors (`ssh` + this).
    fn login(&self) -> String {
        self.describe()
    }
}

/// Where the node is: `[USER@]HOST[:PORT]`, as given with `--pve` or `proxmox.pve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: Option<String>,
    pub host: String,
    /// `None` leaves the port to the user's ssh config.
    pub port: Option<u16>,
}

impl Target {
    /// Parses `[USER@]HOST[:PORT]`. The user is a POSIX login name, the host an IP address
    /// or DNS name: nothing that ssh could read as an option or the shell as syntax.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the value.
    pub fn parse(s: &str) -> Result<Self> {
        let bad =
            |why: &str| Error::Usage(format!("Proxmox node `{}` is invalid: {why}; use USER@HOST or USER@HOST:PORT", s.escape_debug()));
        let (user, rest) = match s.split_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, s),
        };
        if let Some(u) = user {
            let valid = u.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && u.len() <= 32
                && u.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !valid {
                return Err(bad("the user must be a login name (letters, digits, '_', '.', '-')"));
            }
        }
        let explicit_port = rest.starts_with('[') && rest.contains("]:") || (!rest.starts_with('[') && rest.matches(':').count() == 1);
        let addr =
            crate::address::Address::parse(rest).map_err(|_| bad("the host must be an IP address or DNS name, with an optional :PORT"))?;
        Ok(Self { user: user.map(str::to_string), host: addr.host, port: explicit_port.then_some(addr.port) })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// The real transport: `ssh -o BatchMode=yes -o ConnectTimeout=… [-F CONFIG] [-p PORT]
/// [-l USER] -- HOST 'quoted argv'`.
#[derive(Debug, Clone)]
pub struct Ssh {
    pub target: Target,
    /// An ssh config file to use instead of `~/.ssh/config` (`proxmox.ssh_config`).
    pub config: Option<std::path::PathBuf>,
    pub connect_timeout: Duration,
}

impl Ssh {
    #[must_use]
    pub fn new(target: Target) -> Self {
        Self { target, config: None, connect_timeout: CONNECT_TIMEOUT }
    }

    /// The local `ssh` invocation that runs `argv` on the node.
    #[must_use]
    pub fn program(&self, argv: &[String]) -> Program {
        let mut cmd = SshCommand::new().batch().connect_timeout(self.connect_timeout);
        if let Some(config) = &self.config {
            cmd = cmd.config_file(config);
        }
        if let Some(port) = self.target.port {
            cmd = cmd.port(port);
        }
        if let Some(user) = &self.target.user {
            cmd = cmd.user(user);
        }
        cmd.program(&self.target.host, [remote_command(argv)])
    }
}

impl Remote for Ssh {
    fn run(&self, argv: &[String], stdin: Option<&[u8]>, timeout: Duration) -> Result<Finished> {
        let mut p = self.program(argv).timeout(timeout);
        if let Some(input) = stdin {
            p = p.stdin(input.to_vec());
        }
        p.run()
            .map_err(|e| Error::Program { program: "ssh".into(), message: format!("{} on {}: {e}", remote_command(argv), self.describe()) })
    }

    fn describe(&self) -> String {
        self.target.to_string()
    }

    fn login(&self) -> String {
        let mut words = Vec::new();
        if let Some(c) = &self.config {
            words.push(format!("-F {}", shell_quote(&c.display().to_string())));
        }
        if let Some(p) = self.target.port {
            words.push(format!("-p {p}"));
        }
        words.push(self.target.user.as_ref().map_or_else(|| self.target.host.clone(), |u| format!("{u}@{}", self.target.host)));
        words.join(" ")
    }
}

/// The words of `argv` quoted for the remote shell and joined, as ssh sends them.
#[must_use]
pub(crate) fn remote_command(argv: &[String]) -> String {
    argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

/// A Proxmox node: `qm`, `pvesm` and file uploads over a [`Remote`].
pub struct Node {
    remote: Box<dyn Remote + Send + Sync>,
}

impl Node {
    /// A node reached over ssh.
    #[must_use]
    pub fn ssh(ssh: Ssh) -> Self {
        Self { remote: Box::new(ssh) }
    }

    /// A node reached through another transport.
    #[must_use]
    pub fn with_remote(remote: Box<dyn Remote + Send + Sync>) -> Self {
        Self { remote }
    }

    /// The node as shown to the user.
    #[must_use]
    pub fn describe(&self) -> String {
        self.remote.describe()
    }

    /// Runs `qm ARGS...` on the node — the public entry point for any `qm` subcommand
    /// (`status`, `clone`, `guest exec`, ...). `args[0]` must be a `qm` subcommand name and
    /// no argument may hold control characters; every word is quoted for the remote shell,
    /// so a value can never become shell syntax. Put secrets on `stdin` (for example with
    /// `qm guest exec N --pass-stdin 1 -- ...`), never in `args`: argv is logged.
    ///
    /// Returns what qm printed and its exit status: a non-zero exit is for the caller to
    /// judge (`qm status` fails for a free VM id); see [`Node::qm_ok`]. Over ssh, exit
    /// status 255 is both qm's failure and ssh's "cannot connect"; stderr tells which, and
    /// [`Node::probe`] first makes sure the node is reachable.
    ///
    /// # Errors
    /// [`Error::Usage`] for an invalid argv; [`Error::Program`] when the node cannot be
    /// reached or qm does not finish within `timeout`.
    pub fn qm(&self, args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Result<Finished> {
        let argv = qm_argv(args)?;
        self.exec(&argv, stdin, timeout)
    }

    /// [`Node::qm`] that requires exit status 0 and reports qm's stderr otherwise.
    ///
    /// # Errors
    /// As [`Node::qm`], and [`Error::Program`] for a non-zero exit.
    pub fn qm_ok(&self, args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Result<Finished> {
        let argv = qm_argv(args)?;
        let done = self.exec(&argv, stdin, timeout)?;
        require_success(&argv, &self.describe(), &done)?;
        Ok(done)
    }

    /// Asks the node for its name (`hostname`, up to the first '.', which is how Proxmox
    /// names a node). It is the first command of a run because it cannot fail once the node
    /// is reached: exit status 255 means both "ssh could not connect" and "qm failed", so
    /// only a probe like this one tells an unreachable node apart.
    ///
    /// # Errors
    /// [`Error::Program`] saying the node cannot be reached, with ssh's own message.
    pub fn probe(&self, timeout: Duration) -> Result<String> {
        let argv = probe_argv();
        let done = self.exec(&argv, None, timeout)?;
        let name = String::from_utf8_lossy(&done.stdout).trim().split('.').next().unwrap_or_default().to_string();
        let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if done.status == Some(0) && plain {
            return Ok(name);
        }
        let stderr = String::from_utf8_lossy(&done.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no error output").trim().to_string();
        Err(Error::Program {
            program: "ssh".into(),
            message: format!(
                "cannot reach the Proxmox node {}: {last}; check that `ssh {} true` works without a prompt",
                self.describe(),
                self.remote.login()
            ),
        })
    }

    /// Runs a fixed, non-qm command built by this module's `*_argv` functions (`test -d`,
    /// `rm -f`) and requires success.
    ///
    /// # Errors
    /// [`Error::Program`] with the command and its stderr.
    pub fn run_ok(&self, argv: &[String], timeout: Duration) -> Result<()> {
        let done = self.exec(argv, None, timeout)?;
        require_success(argv, &self.describe(), &done)
    }

    /// `pvesm path STORAGE:VOLUME`: where a volume of a storage lives on the node's disk.
    ///
    /// # Errors
    /// [`Error::Program`] when pvesm fails or prints no absolute path.
    pub fn pvesm_path(&self, volume: &str, timeout: Duration) -> Result<RemotePath> {
        let argv = vec!["pvesm".to_string(), "path".into(), volume.to_string()];
        let done = self.exec(&argv, None, timeout)?;
        require_success(&argv, &self.describe(), &done)?;
        let text = String::from_utf8_lossy(&done.stdout);
        RemotePath::parse(text.trim())
            .map_err(|e| Error::Program { program: "pvesm".into(), message: format!("`pvesm path {volume}` printed no usable path: {e}") })
    }

    /// Writes `content` to `path` on the node with mode 0600, through stdin:
    /// `install -m 0600 /dev/stdin PATH`. The content (user-data holds a private host key)
    /// is never on a command line or in a log.
    ///
    /// # Errors
    /// [`Error::Program`] when the upload fails.
    pub fn install_secret_file(&self, path: &RemotePath, content: &[u8], timeout: Duration) -> Result<()> {
        let argv = install_argv(path);
        let done = self.exec(&argv, Some(content), timeout)?;
        require_success(&argv, &self.describe(), &done)
    }

    /// Runs `argv` and returns the finished command, whatever its exit status (logged by
    /// argv, stdin by its length).
    ///
    /// # Errors
    /// [`Error::Program`] when the transport cannot run it or it times out.
    pub(crate) fn exec(&self, argv: &[String], stdin: Option<&[u8]>, timeout: Duration) -> Result<Finished> {
        match stdin {
            Some(s) => tracing::info!("on {}: {} (stdin: {} bytes)", self.describe(), remote_command(argv), s.len()),
            None => tracing::info!("on {}: {}", self.describe(), remote_command(argv)),
        }
        self.remote.run(argv, stdin, timeout)
    }
}

impl Node {
    /// Runs `argv`, requires success and returns its standard output.
    ///
    /// # Errors
    /// [`Error::Program`] with the command and its reason when it fails.
    pub(crate) fn output_ok(&self, argv: &[String], timeout: Duration) -> Result<String> {
        let done = self.exec(argv, None, timeout)?;
        require_success(argv, &self.describe(), &done)?;
        Ok(String::from_utf8_lossy(&done.stdout).into_owned())
    }
}

/// The node's name: `hostname`.
#[must_use]
pub(crate) fn probe_argv() -> Vec<String> {
    vec!["hostname".into()]
}

/// Removes a file hostsmith uploaded: `rm -f -- PATH`.
#[must_use]
pub(crate) fn remove_argv(path: &RemotePath) -> Vec<String> {
    remove_argv_shown(path.as_str())
}

/// The argv that installs a file from stdin with mode 0600.
#[must_use]
pub(crate) fn install_argv(path: &RemotePath) -> Vec<String> {
    install_argv_shown(path.as_str())
}

/// [`install_argv`] for a path that may be a placeholder (a dry run's plan).
#[must_use]
pub(crate) fn install_argv_shown(path: &str) -> Vec<String> {
    vec!["install".into(), "-m".into(), "0600".into(), "/dev/stdin".into(), path.to_string()]
}

/// [`remove_argv`] for a path that may be a placeholder (a dry run's plan).
#[must_use]
pub(crate) fn remove_argv_shown(path: &str) -> Vec<String> {
    vec!["rm".into(), "-f".into(), "--".into(), path.to_string()]
}

/// `qm` followed by `args`, validated.
///
/// # Errors
/// [`Error::Usage`] when the subcommand is not a plain name or an argument holds control
/// characters.
pub(crate) fn qm_argv(args: &[&str]) -> Result<Vec<String>> {
    let Some(sub) = args.first() else {
        return Err(Error::Usage("a qm command needs a subcommand".into()));
    };
    if sub.is_empty() || !sub.chars().all(|c| c.is_ascii_lowercase() || c == '-') || sub.starts_with('-') {
        return Err(Error::Usage(format!("`{}` is not a qm subcommand", sub.escape_debug())));
    }
    if let Some(a) = args.iter().find(|a| a.chars().any(char::is_control)) {
        return Err(Error::Usage(format!("qm argument `{}` contains a control character", a.escape_debug())));
    }
    Ok(std::iter::once("qm").chain(args.iter().copied()).map(str::to_string).collect())
}

fn require_success(argv: &[String], on: &str, done: &Finished) -> Result<()> {
    if done.status == Some(0) {
        return Ok(());
    }
    Err(failure(argv, on, done))
}

/// The error for `argv` that failed on node `on`: the command as the node ran it, the exit
/// status, and everything it said before its usage line. Proxmox's command-line tools
/// print a parameter error as `400 Parameter verification failed.`, one `param: reason`
/// line each, a blank line, then the usage (`qm set <vmid> [OPTIONS]`), which says
/// nothing about what went wrong.
#[must_use]
pub(crate) fn failure(argv: &[String], on: &str, done: &Finished) -> Error {
    crate::process::exit_error(remote_command(argv), Some(on), done.status, without_usage(&done.stderr).as_bytes())
}

/// What a Proxmox tool said, without its usage block, on one line (`; `-joined).
#[must_use]
pub(crate) fn reason(stderr: &[u8]) -> String {
    let text = without_usage(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() { "no error output".into() } else { lines.join("; ") }
}

/// `stderr` up to the usage block: the lines after the last blank line, when the first of
/// them starts with a Proxmox tool's name or `USAGE:`.
fn without_usage(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    let Some(blank) = lines.iter().rposition(|l| l.trim().is_empty()) else { return text.into_owned() };
    let usage = lines[blank + 1..].iter().find(|l| !l.trim().is_empty()).is_some_and(|l| {
        let l = l.trim_start();
        ["qm ", "pvesh ", "pvesm ", "pct ", "USAGE:"].iter().any(|p| l.starts_with(p))
    });
    if usage { lines[..blank].join("\n") } else { text.into_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node whose `qm` fails the way real qm does on a bad parameter: the reason first,
    /// then a usage line last.
    struct RefusingNode;

    impl Remote for RefusingNode {
        fn run(&self, _argv: &[String], _stdin: Option<&[u8]>, _timeout: Duration) -> Result<Finished> {
            let stderr = b"400 Parameter verification failed.\nipconfig0: invalid format - ip4 cidr prefix out of range\n\nqm set <vmid> [OPTIONS]\n";
            Ok(Finished { status: Some(255), stdout: Vec::new(), stderr: stderr.to_vec() })
        }

        fn describe(&self) -> String {
            "root@pve1".into()
        }
    }

    #[test]
    fn a_failed_qm_reports_its_reason_not_only_its_usage_line() {
        let node = Node::with_remote(Box::new(RefusingNode));
        let err = node.qm_ok(&["set", "105", "--ipconfig0", "ip=192.0.2.5/4"], None, Duration::from_secs(5)).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "`qm set 105 --ipconfig0 ip=192.0.2.5/4` failed: exit status 255 on root@pve1:\n  400 Parameter verification failed.\n  \
             ipconfig0: invalid format - ip4 cidr prefix out of range"
        );
        assert_eq!(reason(b"VM 105 already running\n"), "VM 105 already running");
        assert_eq!(reason(b"a\n\nnot a usage line\n"), "a; not a usage line");
    }

    #[test]
    fn targets_parse_and_refuse_option_syntax() {
        assert_eq!(Target::parse("root@pve1").expect("ok"), Target { user: Some("root".into()), host: "pve1".into(), port: None });
        assert_eq!(Target::parse("root@10.0.0.2:2222").expect("ok").port, Some(2222));
        assert_eq!(Target::parse("pve1.lan").expect("ok").user, None);
        assert_eq!(Target::parse("root@[::1]:22").expect("ok").to_string(), "root@[::1]:22");
        for bad in ["-oProxyCommand=x", "root@-x", "ro ot@pve", "root@pve;id", "@pve", "root@"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_gets_one_quoted_remote_command() {
        let ssh = Ssh::new(Target::parse("root@pve1:2222").expect("ok"));
        let argv = qm_argv(&["clone", "9000", "283", "--name", "a b;c"]).expect("argv");
        assert_eq!(
            ssh.program(&argv).argv(),
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-p",
                "2222",
                "-l",
                "root",
                "--",
                "pve1",
                "qm clone 9000 283 --name 'a b;c'"
            ]
        );
    }

    #[test]
    fn qm_argv_is_checked() {
        assert!(qm_argv(&[]).is_err());
        assert!(qm_argv(&["--help"]).is_err());
        assert!(qm_argv(&["status; rm"]).is_err());
        assert!(qm_argv(&["set", "100", "--description", "a\nb"]).is_err());
        assert_eq!(qm_argv(&["guest", "exec", "100", "--", "cat"]).expect("ok")[..3], ["qm", "guest", "exec"]);
    }
}
