//! On a real terminal (tmux), `vm-fresh` shows its progress and `keys list` its table; piped,
//! the same commands print plain lines without a single escape code.

use std::time::{Duration, Instant};

use crate::common::{TestFleet, Tmux, ok, peer, run, wait_for};

#[test]
fn a_terminal_gets_progress_and_a_table_and_a_pipe_gets_plain_lines() {
    let Some(tmux) = peer("tmux") else { return };
    let f = TestFleet::new();
    f.init_with(&[]);
    let hosts: Vec<String> = (1..=40).map(|i| format!("h{i:02}")).collect();
    let script = format!(
        "cd {dir} && export HOME={home} && {bin} vm-fresh {hosts} && {bin} keys list && echo DONE; sleep 60",
        dir = f.dir.display(),
        home = f.home.display(),
        bin = crate::common::bin().display(),
        hosts = hosts.join(" ")
    );
    let t = Tmux { tmux, socket: format!("hostsmith-test-{}", std::process::id()) };
    ok(&run(t.cmd().args(["new-session", "-d", "-s", "t", "-x", "200", "-y", "120", "sh", "-c", &script])));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut screen = String::new();
    while Instant::now() < deadline {
        screen = t.screen();
        if screen.contains("DONE") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(screen.contains("DONE"), "the commands did not finish:\n{screen}");
    // The progress bar's final state, then the report, then the table.
    assert!(screen.contains("keys and files [") && screen.contains("80/80"), "no progress display:\n{screen}");
    assert!(screen.contains("created    h01"), "{screen}");
    let header = screen.lines().find(|l| l.starts_with("HOST")).unwrap_or_else(|| panic!("no table header:\n{screen}"));
    assert!(header.contains("FINGERPRINT") && header.contains("AGE RECIPIENT"), "{header}");
    assert!(screen.lines().any(|l| l.starts_with("h40 ")), "{screen}");

    // Piped: no escape codes, no progress bar.
    let piped = f.run(&["vm-fresh", "p01", "p02"]);
    let all = [piped.stdout, piped.stderr, f.run(&["keys", "list"]).stdout].concat();
    let text = String::from_utf8_lossy(&all);
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(!text.contains("keys and files ["), "{text}");
}

/// F21 on a terminal: an untrusted setting that runs code is shown and asked about; "no"
/// runs nothing (exit 2), "yes" runs it and remembers the answer for this fleet.
#[test]
fn a_terminal_is_asked_before_a_fleet_setting_runs_code() {
    let Some(tmux) = peer("tmux") else { return };
    let f = TestFleet::new();
    f.init_with(&["web01"]);
    let marker = f.tmp.path().join("ran");
    ok(&f.run(&["config", "set", "sync.key_command", "touch", marker.to_str().expect("utf8")]));
    let sync = format!(
        "cd {dir} && export HOME={home} && {bin} sync web01 --address 127.0.0.1:9 --timeout 2",
        dir = f.dir.display(),
        home = f.home.display(),
        bin = crate::common::bin().display(),
    );
    let script = format!("{sync}; echo EXIT1=$?; {sync}; echo EXIT2=$?; sleep 60");
    let t = Tmux { tmux, socket: format!("hostsmith-trust-{}", std::process::id()) };
    ok(&run(t.cmd().args(["new-session", "-d", "-s", "t", "-x", "200", "-y", "60", "sh", "-c", &script])));
    let screen = wait_for(&t, "Trust it for this fleet? [y/N]");
    assert!(screen.contains("sync.key_command in ") && screen.contains("runs code on this machine:"), "{screen}");
    ok(&run(t.cmd().args(["send-keys", "-t", "t", "n", "Enter"])));
    let screen = wait_for(&t, "EXIT1=");
    assert!(screen.contains("EXIT1=2") && screen.contains("has not been trusted here"), "{screen}");
    assert!(!marker.exists(), "refused, yet it ran");
    wait_for(&t, "[y/N]");
    ok(&run(t.cmd().args(["send-keys", "-t", "t", "y", "Enter"])));
    wait_for(&t, "EXIT2=");
    assert!(marker.exists(), "trusted on the terminal, yet it did not run");
    assert!(ok(&f.run(&["trust", "--show"])).starts_with("trusted: sync.key_command"), "the answer is remembered");
}
