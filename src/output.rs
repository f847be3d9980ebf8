//! What a command prints: human lines on stdout, JSON with `--json`, nothing but errors
//! with `-q`. Commands describe results; this decides how they are shown.

use std::io::Write;

#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
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

    /// The machine-readable result, printed only with `--json`.
    pub fn json(&self, value: &impl serde::Serialize) {
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer_pretty(&mut out, value);
            let _ = writeln!(out);
        }
    }
}
