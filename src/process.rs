//! Every external program hostsmith runs goes through [`Program`]: an argument vector
//! (never a shell string), an optional stdin, a timeout, and errors that carry the argv and
//! the program's stderr. Secrets travel on stdin, never in argv.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Program {
    argv: Vec<String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    env: Vec<(String, String)>,
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

    /// Runs the program to completion or until the timeout (then it is killed).
    ///
    /// # Errors
    /// [`Error::Program`] when it cannot start or times out. A non-zero exit is not an error
    /// here; see [`Program::run_ok`].
    pub fn run(&self) -> Result<Finished> {
        tracing::debug!("running {}", self.display());
        let name = self.argv[0].clone();
        let mut cmd = Command::new(&name);
        cmd.args(&self.argv[1..])
            .stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| Error::Program {
            program: name.clone(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!("`{name}` is not installed or not on PATH")
            } else {
                e.to_string()
            },
        })?;
        let stdin = child.stdin.take();
        let input = self.stdin.clone();
        let writer = std::thread::spawn(move || {
            if let (Some(mut pipe), Some(input)) = (stdin, input) {
                let _ = pipe.write_all(&input);
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
                    return Err(Error::Program { program: name, message: format!("timed out after {}s", self.timeout.as_secs()) });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(Error::Program { program: name, message: e.to_string() }),
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
    /// [`Error::Program`] with the program's stderr summarised.
    pub fn run_ok(&self) -> Result<Finished> {
        let done = self.run()?;
        if done.status == Some(0) {
            Ok(done)
        } else {
            let stderr = String::from_utf8_lossy(&done.stderr);
            let summary = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no error output").trim().to_string();
            // The error carries the last line; `-v` shows everything the program said.
            tracing::info!("`{}` failed; its output:\n{}", self.display(), stderr.trim_end());
            Err(Error::Program {
                program: self.argv[0].clone(),
                message: format!("exit status {}: {summary}", done.status.map_or_else(|| "killed".into(), |c| c.to_string())),
            })
        }
    }
}

/// Quotes `s` for display as a POSIX shell word.
#[must_use]
pub fn shell_quote(s: &str) -> String {
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
        assert_eq!(err, "`sh` failed: exit status 3: boom");
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
