//! The justfile `init` offers a fleet: recipes that run hostsmith on that fleet from any
//! directory. The text lives here and nowhere else.
//!
//! A fleet without a justfile gets `justfile` ([`JUSTFILE`]); one with its own gets
//! `hostsmith.just` ([`RECIPES`]) to import, and its justfile is never touched. Nothing is
//! ever overwritten.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

/// The file a fleet with its own justfile imports.
pub(crate) const IMPORTED: &str = "hostsmith.just";

/// The recipes, as `hostsmith.just` holds them and the end of [`JUSTFILE`].
///
/// Every recipe takes its arguments as positional arguments (`"$@"`), so each reaches
/// hostsmith as one argv entry and none is ever parsed by the shell; `{{ hostsmith }}` alone
/// is split on spaces, so `HOSTSMITH` can be a command with arguments.
pub(crate) const RECIPES: &str = r#"# Recipes that run hostsmith on the fleet in this file's directory, from any directory
# (`just -f path/to/fleet/justfile check`). Written by `hostsmith init`; yours to edit.
# HOSTSMITH picks the program (split on spaces), e.g. HOSTSMITH="nix run github:OWNER/hostsmith --".
# Arguments reach hostsmith as given, one argv entry each, never parsed by the shell.

hostsmith := env("HOSTSMITH", "hostsmith")
hostsmith_fleet := source_directory()

# Give HOST (and more) an identity: host key, deploy keys, .sops.yaml entries, record.
[positional-arguments]
vm-fresh host *args:
    {{ hostsmith }} --fleet {{ quote(hostsmith_fleet) }} vm-fresh "$@"

# Proxmox: clone VM VMID as host NAME with its identity injected, then verify its key.
[positional-arguments]
deploy-image vmid name *args:
    vmid="$1" name="$2"; shift 2; {{ hostsmith }} --fleet {{ quote(hostsmith_fleet) }} deploy-image --vm-id "$vmid" --name "$name" "$@"

# The seed holds the host's private key: it goes to a private directory in $XDG_RUNTIME_DIR
# (in memory, the user's alone, gone at logout), never into the fleet where it could be
# committed. For another place run `hostsmith cloud-init HOST --out DIR` yourself.

# Write HOST's NoCloud seed to $XDG_RUNTIME_DIR/hostsmith/seeds/HOST (private key inside).
[positional-arguments]
cloud-init host *args:
    out="${XDG_RUNTIME_DIR:?is not set: run hostsmith cloud-init HOST --out DIR instead}/hostsmith/seeds/$1"; {{ hostsmith }} --fleet {{ quote(hostsmith_fleet) }} cloud-init "$@" --out "$out"

# Re-wrap the data keys of the fleet's SOPS files after .sops.yaml changed.
[positional-arguments]
rekey *args:
    {{ hostsmith }} --fleet {{ quote(hostsmith_fleet) }} sops rekey "$@"

# Check the fleet: rules, records, host files, who can open what (exit 1 on a problem).
check:
    {{ hostsmith }} --fleet {{ quote(hostsmith_fleet) }} check

# Print known_hosts lines for every recorded host.
[positional-arguments]
known-hosts *args:
    {{ hostsmith }} --fleet {{ quote(hostsmith_fleet) }} known-hosts "$@"
"#;

/// What a line of [`RECIPES`] says, to recognise a justfile that already has them.
const MARKER: &str = "hostsmith_fleet := source_directory()";

/// The justfile of a fleet that had none: a `default` recipe that lists, then [`RECIPES`].
pub(crate) const JUSTFILE: &str = concat!(
    "# List the recipes.\n",
    "default:\n",
    "    @{{ quote(just_executable()) }} --justfile {{ quote(justfile()) }} --list\n",
    "\n",
);

/// What `init` does about the fleet's justfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Outcome {
    /// The file written or that would be (`justfile`, `hostsmith.just`), relative to the
    /// fleet; `None` when nothing is to be written.
    pub write: Option<String>,
    /// The fleet's own justfile, when it has one.
    pub existing: Option<String>,
    /// Why nothing is written, or what the user should do next.
    pub note: Option<String>,
}

/// The text of the file `outcome.write` names.
#[must_use]
pub(crate) fn contents(file: &str) -> String {
    if file == IMPORTED { RECIPES.to_string() } else { format!("{JUSTFILE}{RECIPES}") }
}

/// Decides what to write in `dir`, reading only. `just` finds `justfile` and `.justfile` in
/// any case, so any of those names is the fleet's own.
///
/// # Errors
/// [`Error::Read`] when the directory cannot be listed.
pub(crate) fn plan(dir: &Path) -> Result<Outcome> {
    let existing = match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.eq_ignore_ascii_case("justfile") || n.eq_ignore_ascii_case(".justfile"))
                .collect();
            names.sort();
            names.into_iter().next()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(Error::Read { path: dir.to_path_buf(), source }),
    };
    let Some(existing) = existing else {
        return Ok(Outcome { write: Some("justfile".into()), existing: None, note: None });
    };
    let text = std::fs::read_to_string(dir.join(&existing)).unwrap_or_default();
    let imports = text.lines().any(|l| l.trim_start().starts_with("import") && l.contains(IMPORTED));
    let (write, note) = if text.contains(MARKER) || (imports && dir.join(IMPORTED).exists()) {
        (None, None)
    } else if imports {
        (Some(IMPORTED.to_string()), None)
    } else if dir.join(IMPORTED).exists() {
        (
            None,
            Some(format!("`{IMPORTED}` exists and was left as it is: add `import '{IMPORTED}'` to `{existing}` for the fleet's recipes")),
        )
    } else {
        (
            Some(IMPORTED.to_string()),
            Some(format!("add `import '{IMPORTED}'` to `{existing}` for the fleet's recipes (`just check`, `just vm-fresh HOST`)")),
        )
    };
    Ok(Outcome { write, existing: Some(existing), note })
}

/// Writes the file `outcome` plans, never over an existing one: a file that appeared since
/// [`plan`] is kept and `false` returned.
///
/// # Errors
/// [`Error::Write`].
pub(crate) fn write(dir: &Path, outcome: &Outcome) -> Result<bool> {
    let Some(file) = &outcome.write else { return Ok(false) };
    match crate::atomic::create_new(&dir.join(file), contents(file).as_bytes(), 0o644) {
        Ok(()) => Ok(true),
        Err(Error::Write { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}
