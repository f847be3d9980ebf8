//! The documentation's examples run: every `hostsmith …` line of the `sh` blocks in README.md
//! and docs/quickstart.md, in order, in a throwaway fleet. Addresses in the examples point at
//! a real sshd on loopback that serves the host's key, so `verify` is checked for real.

use std::path::{Path, PathBuf};
use std::process::Command;

use hostsmith::ssh_keys::Keypair;

use crate::common::{TestFleet, ok, peer, run, stderr};

/// The example address used throughout the docs (TEST-NET-1: never a real machine).
const DOC_ADDRESS: &str = "192.0.2.10";

fn example_lines(doc: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).expect("doc");
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if in_sh {
            let code = line.split("  #").next().unwrap_or(line).trim();
            if code.starts_with("hostsmith ") {
                lines.push(code.to_string());
            }
        }
    }
    lines
}

/// A directory holding only a `hostsmith` that is the binary under test.
fn bin_dir(f: &TestFleet) -> PathBuf {
    let dir = f.tmp.path().join("bin");
    std::fs::create_dir_all(&dir).expect("bin dir");
    std::os::unix::fs::symlink(crate::common::bin(), dir.join("hostsmith")).expect("symlink");
    dir
}

fn run_examples(doc: &str, f: &TestFleet, sshd_path: Option<&Path>) -> usize {
    let lines = example_lines(doc);
    assert!(!lines.is_empty(), "{doc} has no examples");
    let path = format!("{}:{}", bin_dir(f).display(), std::env::var("PATH").unwrap_or_default());
    let mut server = None;
    for line in &lines {
        let mut line = line.clone();
        if line.contains(DOC_ADDRESS) {
            let Some(sshd) = sshd_path else { continue };
            let s = server.get_or_insert_with(|| crate::sshd::start_with_host_key_of(f, "web01", sshd).1);
            line = line.replace(DOC_ADDRESS, &format!("127.0.0.1:{}", s.port));
        }
        let mut c = Command::new("sh");
        c.args(["-c", &line]).current_dir(&f.dir);
        f.env(&mut c);
        c.env("PATH", &path);
        let out = run(&mut c);
        assert!(out.status.success(), "{doc}: `{line}` failed:\n{}", stderr(&out));
    }
    lines.len()
}

/// An admin key where the examples expect one, and the files they name.
fn prepare(f: &TestFleet) {
    let admin = Keypair::generate("admin@workstation").expect("key");
    std::fs::create_dir_all(f.home.join(".ssh")).expect("mkdir");
    std::fs::write(f.home.join(".ssh/id_ed25519.pub"), admin.public_line() + "\n").expect("write");
    let old = Keypair::generate("root@old01").expect("key");
    std::fs::write(f.dir.join("old01_host_key.pub"), old.public_line() + "\n").expect("write");
}

#[test]
fn every_example_in_the_readme_and_the_quickstart_runs() {
    let sshd = peer("sshd").or_else(|| Path::new("/usr/sbin/sshd").exists().then(|| "/usr/sbin/sshd".into()));
    if sshd.is_none() {
        return;
    }
    let readme = TestFleet::new();
    prepare(&readme);
    assert!(run_examples("README.md", &readme, sshd.as_deref()) >= 5);
    let quick = TestFleet::new();
    prepare(&quick);
    assert!(run_examples("docs/quickstart.md", &quick, sshd.as_deref()) >= 6);
    // The quickstart's claims hold: the seed and the tree exist, the known_hosts pins web01.
    assert!(quick.dir.join("seed/user-data").is_file());
    assert!(quick.dir.join("extra/etc/ssh/ssh_host_ed25519_key").is_file());
    assert!(quick.read("known_hosts").starts_with("web01 ssh-ed25519 "));
}

/// docs/commands.md as clap describes the commands: every command's help, in order.
fn commands_markdown() -> String {
    fn walk(cmd: &mut clap::Command, path: &str, out: &mut String) {
        let name = if path.is_empty() { cmd.get_name().to_string() } else { format!("{path} {}", cmd.get_name()) };
        out.push_str(&format!("\n## `{name}`\n\n```text\n"));
        let help = cmd.clone().term_width(100).render_long_help().to_string();
        for line in help.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push_str("```\n");
        let mut subs: Vec<clap::Command> = cmd.get_subcommands().filter(|s| s.get_name() != "help").cloned().collect();
        for sub in &mut subs {
            walk(sub, &name, out);
        }
    }
    let mut cmd = hostsmith::cli::clap_command();
    cmd.build();
    let mut out = String::from(
        "# Commands\n\nGenerated from the command definitions by the test suite (`HOSTSMITH_BLESS=1 cargo test --test it docs::`\nrewrites it); a test fails when it drifts from them.\n",
    );
    walk(&mut cmd, "", &mut out);
    out
}

#[test]
fn the_commands_reference_matches_the_cli() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/commands.md");
    let want = commands_markdown();
    if std::env::var_os("HOSTSMITH_BLESS").is_some() {
        std::fs::write(&path, &want).expect("write");
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(got == want, "docs/commands.md is out of date: run `HOSTSMITH_BLESS=1 cargo test --test it docs::` and commit it");
}

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let Some(bash) = peer("bash") else { return };
    let script = ok(&run(Command::new(crate::common::bin()).args(["completions", "bash"])));
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("hostsmith.bash");
    std::fs::write(&file, script).expect("write");
    // Load it, then ask for completions of `hostsmith vm` and `hostsmith keys r` as bash would.
    let probe = format!(
        r#"source {f}
COMP_WORDS=(hostsmith vm); COMP_CWORD=1; COMP_LINE="hostsmith vm"; COMP_POINT=${{#COMP_LINE}}
_hostsmith hostsmith vm hostsmith; echo "${{COMPREPLY[@]}}"
COMP_WORDS=(hostsmith keys r); COMP_CWORD=2; COMP_LINE="hostsmith keys r"; COMP_POINT=${{#COMP_LINE}}
_hostsmith hostsmith r keys; echo "${{COMPREPLY[@]}}""#,
        f = file.display()
    );
    let out = ok(&run(Command::new(bash).args(["--norc", "-c", &probe])));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("vm-fresh"), "{out}");
    assert!(lines.get(1).is_some_and(|l| l.split_whitespace().any(|w| w == "rotate")), "{out}");
}
