//! What a command prints: human lines on stdout, JSON with `--json`, nothing but errors
//! with `-q`. Commands describe results; this decides how they are shown.

use std::io::{IsTerminal, Write};

#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    /// Whether stdout gets ANSI colours.
    pub color: bool,
    /// Whether stderr gets ANSI colours (and spinners: it is a terminal).
    pub color_stderr: bool,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// A colour for status words and marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
    Warn,
    Dim,
}

impl Output {
    /// Decides colours the way `ls` and `git` do: `auto` colours a terminal unless `NO_COLOR`
    /// is set (to anything non-empty); `always` and `never` mean what they say.
    #[must_use]
    pub fn new(json: bool, quiet: bool, choice: ColorChoice) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let decide = |tty: bool| match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => tty && !no_color,
        };
        Self { json, quiet, color: decide(std::io::stdout().is_terminal()), color_stderr: decide(std::io::stderr().is_terminal()) }
    }

    /// A progress bar on stderr for `len` steps, drawn only when stderr is a terminal and
    /// output is not quieted (hidden otherwise, so pipes and logs stay clean). Its final
    /// state stays on screen as a record of the work done.
    #[must_use]
    pub fn progress_bar(&self, len: u64, what: &str) -> indicatif::ProgressBar {
        if self.quiet || self.json || !std::io::stderr().is_terminal() {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        bar
    }

    /// `text` in `tone` when stdout is coloured, as it is otherwise.
    #[must_use]
    pub fn paint(&self, text: &str, tone: Tone) -> String {
        paint(self.color, text, tone)
    }

    /// `text` in `tone` when stderr is coloured.
    #[must_use]
    pub fn paint_err(&self, text: &str, tone: Tone) -> String {
        paint(self.color_stderr, text, tone)
    }

    /// A line for people. Silent with `--json` (stdout is for the JSON) and `-q`.
    pub fn line(&self, text: impl AsRef<str>) {
        if !self.json && !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", text.as_ref());
        }
    }

    /// A note for people on stderr (warnings, hints); silent with `-q`.
    pub fn note(&self, text: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", text.as_ref());
        }
    }

    /// A problem worth seeing even with `--quiet` (a file that failed), on stderr.
    #[allow(clippy::unused_self, reason = "a method beside `line` and `note`, so every command prints through `ctx.out`")]
    pub fn problem(&self, text: impl AsRef<str>) {
        eprintln!("{}", text.as_ref());
    }

    /// The machine-readable result, printed only with `--json`.
    pub fn json(&self, value: &impl serde::Serialize) {
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut out, value);
            let _ = writeln!(out);
        }
    }
}

fn paint(on: bool, text: &str, tone: Tone) -> String {
    if !on {
        return text.to_string();
    }
    let code = match tone {
        Tone::Good => "32",
        Tone::Bad => "31",
        Tone::Warn => "33",
        Tone::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// `text` safe to put on a terminal: control characters other than newline and tab are shown
/// escaped (`\u{1b}`), so text that came from a fleet file (a record, `.sops.yaml`, a host's
/// reply) cannot move the cursor, retitle the window or forge lines of output.
#[must_use]
pub(crate) fn terminal_safe(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return text.to_string();
    }
    text.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { c.escape_debug().collect() } else { c.to_string() }).collect()
}

/// Rows as a table: columns as wide as their widest cell, two spaces apart, the last
/// unpadded.
#[must_use]
pub(crate) fn table<R: AsRef<[String]>>(rows: &[R]) -> Vec<String> {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..columns).map(|i| rows.iter().filter_map(|r| r.as_ref().get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|row| {
            let row = row.as_ref();
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                }
            }
            line
        })
        .collect()
}
