//! On a real terminal (tmux), `vm-fresh` shows its progress and `keys list` its table; piped,
//! the same commands print plain lines without a single escape code.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{TestFleet, ok, peer, run};

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux {
    tmux: std::path::PathBuf,
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.tmux);
        c.args(["-L", &self.socket]);
        c
    }

    fn screen(&self) -> String {
        ok(&run(self.cmd().args(["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = run(self.cmd().arg("kill-server"));
    }
}

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
