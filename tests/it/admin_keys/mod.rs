//! Admin keys of every kind sops takes, against the real peers: age plugins (the in-repo
//! `age-plugin-hstest`, the post-quantum `age-plugin-xwing` from crates.io), SSH keys,
//! passphrase-protected identities, and the places sops finds identities.

mod kinds;
mod plugin;
mod pq;
mod sources;
mod ssh;
mod unlock;
mod yubikey;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;

use crate::common::{TestFleet, ok, run};

/// A plugin identity file and its recipient, as the plugin printed them.
pub(crate) struct PluginKey {
    pub file: PathBuf,
    pub recipient: String,
}

/// Runs `plugin ARGS` (its key generation) and keeps the identity in `dir/name`.
pub(crate) fn plugin_key(plugin: &Path, args: &[&str], dir: &Path, name: &str) -> PluginKey {
    let text = ok(&run(Command::new(plugin).args(args)));
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# recipient: ").or_else(|| l.strip_prefix("#    Recipient: ")))
        .unwrap_or_else(|| panic!("no recipient line in:\n{text}"))
        .trim()
        .to_string();
    let file = dir.join(name);
    std::fs::write(&file, &text).expect("write identity");
    PluginKey { file, recipient }
}

/// `sops --decrypt FILE` in the fleet, with only the given identity variables set.
pub(crate) fn sops_decrypt(sops: &Path, f: &TestFleet, file: &str, env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(sops);
    c.args(["--decrypt", file]).current_dir(&f.dir);
    f.env(&mut c);
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

/// `sops --encrypt --in-place FILE` in the fleet (sops writes the file), identities as given.
pub(crate) fn sops_encrypt(sops: &Path, f: &TestFleet, file: &str, env: &[(&str, &Path)]) {
    let mut c = Command::new(sops);
    c.args(["--encrypt", "--in-place", file]).current_dir(&f.dir);
    f.env(&mut c);
    for (k, v) in env {
        c.env(k, v);
    }
    ok(&run(&mut c));
}

/// The stanza types of the data key stored for `recipient` in a SOPS file's text: the
/// `-> TYPE …` lines of its armored age header, without the random "grease" stanzas the Rust
/// age implementation adds (which every age reader skips).
pub(crate) fn stanza_types(text: &str, recipient: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().trim_start_matches("- ").trim_start() == format!("recipient: {recipient}"))
        .unwrap_or_else(|| panic!("no key for {recipient} in:\n{text}"));
    let body: String = lines[at..]
        .iter()
        .skip_while(|l| !l.contains("-----BEGIN AGE ENCRYPTED FILE-----"))
        .skip(1)
        .take_while(|l| !l.contains("-----END AGE ENCRYPTED FILE-----"))
        .map(|l| l.trim())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(body).expect("armor is base64");
    let header = String::from_utf8_lossy(&bytes);
    header
        .lines()
        .take_while(|l| !l.starts_with("---"))
        .filter_map(|l| l.strip_prefix("-> "))
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .filter(|t| !t.ends_with("-grease"))
        .collect()
}

/// PATH without the directories that hold `program`.
pub(crate) fn path_without(program: &str) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).filter(|d| !d.join(program).exists()).collect();
    std::env::join_paths(dirs).expect("join").to_string_lossy().into_owned()
}

/// A recipient of the fleet's `.sops.yaml` as written for `anchor`.
pub(crate) fn anchor_value(f: &TestFleet, anchor: &str) -> String {
    let prefix = format!("  - &{anchor} ");
    f.read(".sops.yaml").lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_string)).unwrap_or_else(|| panic!("no &{anchor}"))
}

/// `hostsmith ARGS` in the fleet with extra environment.
pub(crate) fn hostsmith(f: &TestFleet, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = f.cmd(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

/// A new SSH key pair at `path` (no passphrase); returns the public line.
pub(crate) fn ssh_key(ssh_keygen: &std::path::Path, kind: &[&str], path: &std::path::Path) -> String {
    ok(&run(Command::new(ssh_keygen).args(kind).args(["-q", "-N", "", "-C", "admin@laptop", "-f"]).arg(path)));
    std::fs::read_to_string(path.with_extension("pub")).expect("pub").trim().to_string()
}
