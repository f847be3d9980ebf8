//! How the commands that share a kind of result print it: an enrolment report (`vm-fresh`,
//! `adopt`, `deploy-image`, `keys import/rotate`) and a re-key outcome (`sops rekey`, `keys
//! rotate/delete`), so the same thing always reads the same.

use crate::command::Context;
use crate::enroll::{Action, Report};
use crate::output::Tone;
use crate::rekey::{FileOutcome, Status};

/// Prints a provisioning report the same way for every command that provisions.
pub(crate) fn print_report(report: &Report, ctx: &Context) {
    let out = &ctx.out;
    out.json(report);
    for h in &report.hosts {
        let action = match h.action {
            Action::Created => "created",
            Action::Adopted => "adopted",
            Action::Imported => "imported",
            Action::Recovered => "recovered",
            Action::Rotated => "rotated",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
        };
        let tone = match h.action {
            Action::Unchanged => Tone::Dim,
            Action::Rotated | Action::Recovered => Tone::Warn,
            _ => Tone::Good,
        };
        // Pad before painting, so colour codes do not upset the columns.
        out.line(format!("{} {:<16} {}  {}", out.paint(&format!("{action:<10}"), tone), h.name, h.fingerprint, h.age_recipient));
        if !h.deploy_keys_added.is_empty() {
            out.line(format!("           deploy keys added: {}", h.deploy_keys_added.join(", ")));
        }
    }
    // A line per change reads well for a few hosts; for many, a count (the JSON has the list).
    if report.sops_config_changes.len() <= 8 {
        for c in &report.sops_config_changes {
            out.line(format!(".sops.yaml: {c}"));
        }
    } else {
        out.line(format!(".sops.yaml: {} changes (anchors, rules, shared rules; `--json` lists them)", report.sops_config_changes.len()));
    }
    if report.files.is_empty() {
        out.line("nothing to do: every file is already up to date");
    } else if report.dry_run {
        out.line(format!("dry run: would write {}", report.files.join(", ")));
    } else {
        out.line(format!("wrote {}", report.files.join(", ")));
    }
}

/// One line per file, as every command that re-keys prints it.
#[must_use]
pub(crate) fn outcome_line(o: &FileOutcome) -> String {
    let mut detail: Vec<String> = o.added.iter().map(|r| format!("+{r}")).chain(o.removed.iter().map(|r| format!("-{r}"))).collect();
    if o.data_key_rotated {
        detail.push("new data key".into());
    }
    if o.engine == "sops" {
        detail.push("via sops".into());
    }
    let detail = if detail.is_empty() { String::new() } else { format!(" ({})", detail.join(", ")) };
    match o.status {
        Status::Rekeyed => format!("rekeyed     {}{detail}", o.file),
        Status::WouldRekey => format!("would rekey {}{detail}", o.file),
        Status::Unchanged => format!("unchanged   {}", o.file),
        Status::Failed => format!("failed      {}: {}", o.file, o.error.as_deref().unwrap_or("unknown error")),
    }
}
