//! Step lines in the seed's style (`Checking key on web01... ✓ already present`): a spinner
//! on stderr while a step waits when stderr is a terminal, one plain line per finished
//! step otherwise. `sync` prints its lines on stdout; `connect` on stderr, because stdout
//! belongs to the ssh session that follows.

use std::io::IsTerminal;
use std::time::Duration;

use crate::output::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub out: Output,
    pub stream: Stream,
}

impl Progress {
    /// Runs `work` as the step `label`, then prints `label... RESULT` where `summary` says
    /// what came of it.
    pub fn step<T>(&self, label: &str, work: impl FnOnce() -> T, summary: impl FnOnce(&T) -> String) -> T {
        let spinning = !self.out.quiet && std::io::stderr().is_terminal();
        let spinner = spinning.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}...") {
                bar.set_style(style);
            }
            bar.set_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(80));
            bar
        });
        let result = work();
        if let Some(bar) = spinner {
            bar.finish_and_clear();
        }
        self.line(&format!("{label}... {}", summary(&result)));
        result
    }

    /// A line on this progress' stream (silent with `-q`, and on stdout with `--json`).
    pub fn line(&self, text: &str) {
        match self.stream {
            Stream::Stdout => self.out.line(text),
            Stream::Stderr => self.out.note(text),
        }
    }
}
