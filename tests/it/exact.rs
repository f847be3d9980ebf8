//! Exact-output tests in the style of just's test suite: a run is described by its
//! arguments, environment and stdin, and the whole of its stdout, stderr and exit status are
//! asserted. Values that differ from run to run are written as placeholders: `<FP>` for a
//! SHA256 fingerprint, `<AGE>` for an age recipient, `<KEY>` for the base64 of an ed25519
//! public key, `<TIME>` for an RFC 3339 time, `<FLEET>` and `<HOME>` for the test's
//! directories.

use std::process::Output;

use regex::Regex;

use crate::common::{TestFleet, run_with_stdin};

/// One run of `hostsmith` in a [`TestFleet`], and what it must print.
#[must_use = "a Test asserts nothing until `.run()`"]
pub(crate) struct Test<'f> {
    fleet: &'f TestFleet,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: String,
    stdout: String,
    stderr: String,
    status: i32,
}

impl<'f> Test<'f> {
    pub(crate) fn new(fleet: &'f TestFleet) -> Self {
        Self { fleet, args: Vec::new(), env: Vec::new(), stdin: String::new(), stdout: String::new(), stderr: String::new(), status: 0 }
    }

    pub(crate) fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    pub(crate) fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(ToString::to_string));
        self
    }

    pub(crate) fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    pub(crate) fn stdin(mut self, s: &str) -> Self {
        self.stdin = s.to_string();
        self
    }

    /// The exact stdout, placeholders allowed (empty unless given).
    pub(crate) fn stdout(mut self, s: &str) -> Self {
        self.stdout = s.to_string();
        self
    }

    /// The exact stderr, placeholders allowed (empty unless given).
    pub(crate) fn stderr(mut self, s: &str) -> Self {
        self.stderr = s.to_string();
        self
    }

    /// The exit status (0 unless given).
    pub(crate) fn status(mut self, n: i32) -> Self {
        self.status = n;
        self
    }

    /// Runs and asserts all three; returns the raw output for further checks.
    #[track_caller]
    pub(crate) fn run(self) -> Output {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut cmd = self.fleet.cmd(&args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = run_with_stdin(&mut cmd, self.stdin.as_bytes());
        let shown = |b: &[u8]| self.normalize(&String::from_utf8_lossy(b));
        let (stdout, stderr) = (shown(&out.stdout), shown(&out.stderr));
        let ctx = format!("hostsmith {}", self.args.join(" "));
        assert_eq!(stdout, self.stdout, "{ctx}: stdout differs (stderr: {stderr})");
        assert_eq!(stderr, self.stderr, "{ctx}: stderr differs");
        assert_eq!(out.status.code(), Some(self.status), "{ctx}: exit status (stderr: {stderr})");
        out
    }

    /// `text` with the run-dependent values replaced by their placeholders.
    fn normalize(&self, text: &str) -> String {
        normalize(text, self.fleet)
    }
}

/// Replaces fingerprints, recipients, times and the fleet's directories with placeholders.
pub(crate) fn normalize(text: &str, fleet: &TestFleet) -> String {
    let mut s = text.replace(&fleet.dir.display().to_string(), "<FLEET>").replace(&fleet.home.display().to_string(), "<HOME>");
    for (re, placeholder) in [
        (r"SHA256:[A-Za-z0-9+/]{43}", "<FP>"),
        (r"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/]{48}", "ssh-ed25519 <KEY>"),
        (r"age1[02-9ac-hj-np-z]{58}", "<AGE>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "<TIME>"),
    ] {
        s = Regex::new(re).expect("placeholder pattern").replace_all(&s, placeholder).into_owned();
    }
    s
}

#[test]
fn placeholders_stand_for_what_varies_and_nothing_else() {
    let f = TestFleet::new();
    let key = hostsmith::ssh_keys::Keypair::generate("x").expect("key").public_line();
    let text = format!(
        "web01 SHA256:{} age1{} at 2026-12-01T11:15:13Z in {}/sops, {key}, not SHA256:short or age1short\n",
        "A".repeat(43),
        "q".repeat(58),
        f.dir.display()
    );
    assert_eq!(normalize(&text, &f), "web01 <FP> <AGE> at <TIME> in <FLEET>/sops, ssh-ed25519 <KEY> x, not SHA256:short or age1short\n");
}
