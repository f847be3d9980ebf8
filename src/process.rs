//! Every external program hostsmith runs goes through [`Program`]: an argument vector
//! (never a shell string), an optional stdin, a timeout, and errors that carry the argv and
//! the program's stderr. Secrets travel on stdin, never in argv.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Program {
    argv: Vec<String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    env: Vec<(String, String)>,
}

/// Stdin is left out: it may hold a secret.
impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program").field("argv", &self.argv).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Drop for Program {
    /// Stdin may hold a secret: it is wiped with the program.
    fn drop(&mut self) {
        if let Some(input) = self.stdin.as_mut() {
            zeroize::Zeroize::zeroize(input);
        }
    }
}

/// What a finished program printed.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Program {
    pub fn new(program: impl Into<String>) -> Self {
        Self { argv: vec![program.into()], stdin: None, timeout: Duration::from_secs(60), env: Vec::new() }
    }

    #[must_use]
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.argv.push(a.into());
        self
    }

    #[must_use]
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    #[must_use]
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    #[must_use]
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    #[must_use]
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    #[must_use]
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The command line as it would be typed, for logs and dry runs.
    #[must_use]
    pub fn display(&self) -> String {
        self.argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
    }

    /// Replaces this process with the program (for `connect`: the session owns the terminal
    /// and its exit status is ours). Returns only when it could not be started.
    #[must_use]
    pub fn exec(&self) -> Error {
        use std::os::unix::process::CommandExt;
        tracing::debug!("exec {}", self.display());
        let err = self.command().exec();
        Error::Program { program: self.display(), message: format!("cannot start it: {err}") }
    }

    /// The `std` command for this argv and environment; stdio is the caller's to set.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the program to completion or until the timeout (then it is killed).
    ///
    /// # Errors
    /// [`Error::Program`] when it cannot start or times out. A non-zero exit is not an error
    /// here; see [`Program::run_ok`].
    #[allow(clippy::too_many_lines, reason = "spawn, feed, drain and reap are one lifecycle; apart they would share every handle")]
    pub fn run(&self) -> Result<Finished> {
        tracing::debug!("running {}", self.display());
        let name = &self.argv[0];
        let mut cmd = self.command();
        cmd.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Error::Program {
            program: self.display(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!("`{name}` is not installed or not on PATH")
            } else {
                e.to_string()
            },
        })?;
        let stdin = child.stdin.take();
        // The input may be a secret (a data key): the copy handed to the writer is wiped.
        let input = self.stdin.clone().map(zeroize::Zeroizing::new);
        let writer = std::thread::spawn(move || {
            if let (Some(mut pipe), Some(input)) = (stdin, input) {
                let _ = pipe.write_all(input.as_slice());
            }
        });
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = err_pipe.as_mut() {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::Program {
                        program: self.display(),
                        message: format!("timed out after {}s", self.timeout.as_secs()),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(Error::Program { program: self.display(), message: e.to_string() }),
            }
        };
        let _ = writer.join();
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        Ok(Finished { status: status.code(), stdout, stderr })
    }

    /// Runs the program and requires exit status 0.
    ///
    /// # Errors
    /// [`Error::Program`] with the full command line, the exit status and the program's
    /// stderr (see [`exit_error`]).
    pub fn run_ok(&self) -> Result<Finished> {
        let done = self.run()?;
        if done.status == Some(0) {
            return Ok(done);
        }
        tracing::info!("`{}` failed; its output:\n{}", self.display(), String::from_utf8_lossy(&done.stderr).trim_end());
        Err(exit_error(self.display(), None, done.status, &done.stderr))
    }
}

/// At most this many lines of a failed program's stderr go into its error (the last ones,
/// where programs put the reason); `-v` logs all of it.
const STDERR_LINES: usize = 20;

/// The error for a program that exited non-zero: `command` (the command line as typed), the
/// exit status (and the machine it ran `on`, when not this one), and the last lines of its
/// stderr, indented under it. Control characters are removed, so a program (or a remote
/// host) cannot drive the user's terminal.
#[must_use]
pub(crate) fn exit_error(command: String, on: Option<&str>, status: Option<i32>, stderr: &[u8]) -> Error {
    let mut status = status.map_or_else(|| "killed by a signal".to_string(), |c| format!("exit status {c}"));
    if let Some(on) = on {
        status.push_str(&format!(" on {on}"));
    }
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.chars().filter(|c| !c.is_control() || *c == '\t').collect::<String>())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut message = status;
    if lines.is_empty() {
        message.push_str(", no error output");
    } else {
        message.push(':');
        let skip = lines.len().saturating_sub(STDERR_LINES);
        if skip > 0 {
            message.push_str(&format!("\n  ({skip} earlier lines left out; -v shows them)"));
        }
        for l in &lines[skip..] {
            message.push_str("\n  ");
            message.push_str(l.trim_end());
        }
    }
    Error::Program { program: command, message }
}

/// Quotes `s` for display as a POSIX shell word.
#[must_use]
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_stdin_and_reports_failures_with_stderr() {
        let out = Program::new("cat").stdin(b"hello".to_vec()).run_ok().expect("cat");
        assert_eq!(out.stdout, b"hello");
        let err = Program::new("sh").args(["-c", "echo boom >&2; exit 3"]).run_ok().expect_err("fails").to_string();
        assert_eq!(err, "`sh -c 'echo boom >&2; exit 3'` failed: exit status 3:\n  boom");
        let noisy = "i=0; while [ $i -lt 30 ]; do echo line$i >&2; i=$((i+1)); done; printf 'a\\033[2Jb\\n' >&2; exit 1";
        let err = Program::new("sh").args(["-c", noisy]).run_ok().expect_err("fails").to_string();
        assert!(err.contains("exit status 1:\n  (11 earlier lines left out; -v shows them)\n  line11\n"), "{err}");
        assert!(err.ends_with("\n  line29\n  a[2Jb"), "control characters are removed: {err:?}");
        let err = Program::new("false").run_ok().expect_err("fails").to_string();
        assert_eq!(err, "`false` failed: exit status 1, no error output");
        let err = Program::new("no-such-program-xyz").run().expect_err("missing").to_string();
        assert!(err.contains("not installed"), "{err}");
    }

    #[test]
    fn the_timeout_is_enforced() {
        let started = Instant::now();
        let err = Program::new("sleep").arg("5").timeout(Duration::from_millis(200)).run().expect_err("timeout").to_string();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn quoting_for_display() {
        assert_eq!(shell_quote("web01"), "web01");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("x'y"), r"'x'\''y'");
    }
}
