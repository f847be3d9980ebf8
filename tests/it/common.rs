//! Shared test machinery: locating peers, temp fleets, running the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Whether CI demands every peer (`HOSTSMITH_REQUIRE_PEERS=1`).
pub fn peers_required() -> bool {
    std::env::var("HOSTSMITH_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Finds a peer program on PATH. When it is missing the test is skipped with a message,
/// unless peers are required, in which case the test fails.
///
/// Use as `let Some(sops) = peer("sops") else { return };`.
#[must_use]
pub fn peer(name: &str) -> Option<PathBuf> {
    match which(name) {
        Some(p) => Some(p),
        None if peers_required() => panic!("peer `{name}` is required (HOSTSMITH_REQUIRE_PEERS=1) but not on PATH"),
        None => {
            eprintln!("skipped: peer `{name}` is not on PATH");
            None
        }
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The hostsmith binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hostsmith"))
}

/// Runs a program with stdin closed and returns its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("spawn")
}

/// Runs a program feeding `input` on stdin.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    child.wait_with_output().expect("wait")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "status {:?}\nstdout:\n{}\nstderr:\n{}", o.status, stdout(o), stderr(o));
    stdout(o)
}

/// Creates an age identity file with the real `age-keygen` when present, else None.
pub fn write(path: &Path, contents: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, contents).expect("write");
}
