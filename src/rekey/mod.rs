//! Re-wrapping data keys after `.sops.yaml` changed: `sops rekey`, and the re-keys that a
//! rotation (`keys rotate`, `keys import`) and a revocation (`keys delete`) need.
//!
//! A file is planned on its own: its key groups (age recipients, PGP fingerprints, Shamir
//! threshold) are compared with those of the creation rule sops would use for it; when they
//! differ, or a fresh data key is asked for, it is decrypted with the admin identities (age,
//! then GnuPG), given the rule's key groups and encrypted again, all in memory. Files whose
//! key groups (or whose rule's) hold cloud KMS or Vault keys are handed to the real
//! `sops updatekeys -y` (and
//! `sops rotate -i`), with `--config` naming the fleet's `.sops.yaml` and absolute paths, so
//! sops matches the same rule whatever its working directory. Secrets never reach its argv:
//! sops finds the admin identity in the environment it inherits, as it always does.
//!
//! Parallelism is a fixed pool of `std::thread::scope` workers taking file indexes from an
//! atomic counter. The work is CPU-bound (an X25519 exchange per recipient, AES-GCM per value)
//! plus small reads and writes, or waiting on a `sops` child process; plain threads bounded
//! by the core count fit that exactly, and an async runtime (tokio) would add a dependency and
//! a scheduler without adding any concurrency the pool does not already have.

mod guard;

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

pub(crate) use guard::refusals;

use crate::admin_identity::Identities;
use crate::atomic;
use crate::error::{Error, Result};
use crate::fleet::{Fleet, SOPS_CONFIG};
use crate::gnupg::GnuPg;
use crate::parallel::Later;
use crate::process::Program;
use crate::sops::file::{EncryptedFile, KeyGroupSpec, KeyGroups, SopsFileError};
use crate::sops::rules::{CreationRule, SopsConfig};

/// How long one `sops` call may take before it is stopped.
const SOPS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Directories never searched for SOPS files: version control, build outputs, Nix results.
const SKIPPED_DIRS: [&str; 4] = ["target", "result", "node_modules", "vendor"];

/// The keys a file should have, and whether only real sops can give it them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The age and PGP keys of each key group, and the Shamir threshold.
    pub keys: KeyGroups,
    /// The rule holds KMS or Vault keys, or post-quantum recipients that only the `sops`
    /// on PATH (≥ 3.12) can encrypt for.
    pub external: bool,
    /// The rule holds post-quantum recipients left to sops (part of `external`).
    pub post_quantum: bool,
}

impl Target {
    /// What the creation rule sops uses for `rel` asks for; `None` when no rule matches.
    #[must_use]
    pub(crate) fn from_rule(config: &SopsConfig, rel: &str) -> Option<Self> {
        config.rule_for(rel).map(Self::of)
    }

    /// What `rule` asks for.
    #[must_use]
    pub(crate) fn of(rule: CreationRule) -> Self {
        let post_quantum = rule.key_groups.iter().flat_map(|g| &g.age).any(|r| crate::recipient::is_post_quantum(r))
            && matches!(crate::recipient::pq_route(), crate::recipient::PqRoute::Sops(_));
        let external = post_quantum || rule.key_groups.iter().any(|g| !g.other.is_empty());
        let groups = rule.key_groups.into_iter().map(|g| KeyGroupSpec { age: g.age, pgp: g.pgp }).collect();
        Self { keys: KeyGroups { groups, threshold: rule.shamir_threshold.unwrap_or(0) }, external, post_quantum }
    }

    /// The age recipients of each key group.
    #[must_use]
    pub(crate) fn age_groups(&self) -> Vec<Vec<String>> {
        self.keys.groups.iter().map(|g| g.age.clone()).collect()
    }
}

/// What re-keying one file takes.
#[derive(Debug)]
pub(crate) enum FilePlan {
    Unchanged,
    /// The new text, encrypted natively.
    Native {
        text: String,
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// Left to `sops updatekeys -y` (and `sops rotate -i` for a fresh data key).
    External {
        added: Vec<String>,
        removed: Vec<String>,
    },
}

/// Plans the re-key of one file (`text`, read from `path`) to `target`, in memory.
///
/// # Errors
/// The file is not SOPS, no admin identity opens it, or the new recipients are invalid.
pub(crate) fn plan(path: &Path, text: &str, target: &Target, ids: &Identities, rotate_data_key: bool) -> Result<FilePlan> {
    let file = EncryptedFile::parse(text).map_err(|e| Error::SopsEngine { path: path.to_path_buf(), source: e })?;
    plan_parsed(path, text, &file, target, ids, rotate_data_key)
}

/// [`plan`] for a file already parsed from `text` (a 7 MB shared file is not parsed twice).
///
/// # Errors
/// As [`plan`].
pub(crate) fn plan_parsed(
    path: &Path,
    text: &str,
    file: &EncryptedFile,
    target: &Target,
    ids: &Identities,
    rotate_data_key: bool,
) -> Result<FilePlan> {
    let err = |e: SopsFileError| Error::SopsEngine { path: path.to_path_buf(), source: e };
    let (added, removed) = diff(&file.key_groups(), &target.keys);
    let same = file.has_key_groups(&target.keys);
    if same && !rotate_data_key {
        return Ok(FilePlan::Unchanged);
    }
    if target.external || file.needs_external_sops() {
        return Ok(FilePlan::External { added, removed });
    }
    let mut decrypted = ids.decrypt(file, path)?;
    if !same {
        decrypted.set_key_groups(&target.keys).map_err(err)?;
    }
    if rotate_data_key {
        decrypted.rotate_data_key();
    }
    Ok(FilePlan::Native { text: decrypted.encrypt_in_place(file, text, &GnuPg::default()).map_err(err)?, added, removed })
}

/// Runs the real `sops` on one file: `updatekeys -y`, then `rotate -i` when a fresh data key
/// is asked for, both with the fleet's `.sops.yaml`.
///
/// # Errors
/// `sops` is missing, fails, or a path is not UTF-8.
pub(crate) fn run_external(fleet: &Fleet, rel: &str, rotate_data_key: bool) -> Result<()> {
    let root = std::path::absolute(&fleet.root).map_err(|source| Error::Read { path: fleet.root.clone(), source })?;
    let utf8 = |p: PathBuf| {
        p.to_str().map(str::to_string).ok_or_else(|| Error::Usage(format!("`{}` is not valid UTF-8; sops needs a UTF-8 path", p.display())))
    };
    let config = utf8(root.join(SOPS_CONFIG))?;
    let file = utf8(root.join(rel))?;
    let sops = |args: &[&str]| {
        Program::new("sops").args(["--config", config.as_str()]).args(args.iter().copied()).arg(file.as_str()).timeout(SOPS_TIMEOUT)
    };
    sops(&["updatekeys", "-y"]).run_ok()?;
    if rotate_data_key {
        sops(&["rotate", "-i"]).run_ok()?;
    }
    Ok(())
}

/// Encrypts the plain documents `docs` for the file `rel` with the real `sops` (post-quantum
/// recipients, sops ≥ 3.12), against `config_text` (the `.sops.yaml` as it will be, written
/// beside the real one for this call and removed after). The plaintext goes through sops'
/// stdin, never to disk; the encrypted text comes back on its stdout.
///
/// # Errors
/// `sops` is missing or fails, or a path is not UTF-8.
pub(crate) fn encrypt_by_sops(fleet: &Fleet, config_text: &str, rel: &str, docs: &[crate::sops::file::Map]) -> Result<String> {
    let root = std::path::absolute(&fleet.root).map_err(|source| Error::Read { path: fleet.root.clone(), source })?;
    let staged = tempfile::Builder::new()
        .prefix(".sops.yaml.hostsmith-")
        .tempfile_in(&root)
        .map_err(|source| Error::Write { path: root.clone(), source })?;
    std::fs::write(staged.path(), config_text).map_err(|source| Error::Write { path: staged.path().to_path_buf(), source })?;
    let utf8 = |p: &Path| {
        p.to_str().map(str::to_string).ok_or_else(|| Error::Usage(format!("`{}` is not valid UTF-8; sops needs a UTF-8 path", p.display())))
    };
    let plain = zeroize::Zeroizing::new(crate::sops::file::emit_plain(docs));
    let out = Program::new("sops")
        .args([
            "--config",
            utf8(staged.path())?.as_str(),
            "encrypt",
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
            "--filename-override",
        ])
        .arg(utf8(&root.join(rel))?)
        .stdin(plain.as_bytes().to_vec())
        .timeout(SOPS_TIMEOUT)
        .run_ok()?;
    String::from_utf8(out.stdout)
        .map_err(|_| Error::SopsFile { path: root.join(rel), message: "sops wrote something that is not UTF-8".into() })
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Status {
    Rekeyed,
    /// A dry run found that the file would be re-keyed.
    WouldRekey,
    Unchanged,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileOutcome {
    pub file: String,
    pub status: Status,
    /// `native` or `sops`.
    pub engine: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    pub data_key_rotated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub rotate_data_key: bool,
    /// Workers; at least 1.
    pub jobs: usize,
    pub dry_run: bool,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
}

/// Re-keys each file (relative to the fleet) to the rule `config` gives it, `opts.jobs` at a
/// time. A file that fails is reported and the others go on. The caller holds the fleet lock.
#[must_use]
pub(crate) fn rekey_files(fleet: &Fleet, config: &SopsConfig, files: &[String], ids: &Identities, opts: &Options) -> Vec<FileOutcome> {
    let bar = Progress::new(files.len(), opts.progress);
    let outcomes = crate::parallel::map(files, opts.jobs, |rel| {
        let outcome = rekey_one(fleet, config, rel, ids, opts);
        bar.tick();
        outcome
    });
    bar.finish();
    outcomes
}

fn rekey_one(fleet: &Fleet, config: &SopsConfig, rel: &str, ids: &Identities, opts: &Options) -> FileOutcome {
    let mut outcome = FileOutcome {
        file: rel.to_string(),
        status: Status::Failed,
        engine: "native",
        added: Vec::new(),
        removed: Vec::new(),
        data_key_rotated: false,
        error: None,
    };
    match rekey_inner(fleet, config, rel, ids, opts, &mut outcome) {
        Ok(status) => outcome.status = status,
        Err(e) => outcome.error = Some(e.to_string()),
    }
    outcome
}

fn rekey_inner(fleet: &Fleet, config: &SopsConfig, rel: &str, ids: &Identities, opts: &Options, out: &mut FileOutcome) -> Result<Status> {
    let path = fleet.root.join(rel);
    let target = Target::from_rule(config, rel).ok_or_else(|| Error::SopsConfig {
        path: fleet.sops_config_path(),
        message: format!("no creation rule matches `{rel}`: add one, or leave the file out"),
    })?;
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
    let done = if opts.dry_run { Status::WouldRekey } else { Status::Rekeyed };
    match plan(&path, &text, &target, ids, opts.rotate_data_key)? {
        FilePlan::Unchanged => Ok(Status::Unchanged),
        FilePlan::Native { text, added, removed } => {
            (out.added, out.removed, out.data_key_rotated) = (added, removed, opts.rotate_data_key);
            if !opts.dry_run {
                write_keeping_mode(&path, &text)?;
            }
            Ok(done)
        }
        FilePlan::External { added, removed } => {
            (out.engine, out.added, out.removed, out.data_key_rotated) = ("sops", added, removed, opts.rotate_data_key);
            if !opts.dry_run {
                run_external(fleet, rel, opts.rotate_data_key)?;
            }
            Ok(done)
        }
    }
}

/// Replaces `path` atomically, keeping its permission bits.
///
/// # Errors
/// [`Error::Write`].
pub(crate) fn write_keeping_mode(path: &Path, text: &str) -> Result<()> {
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o777);
    atomic::write(path, text.as_bytes(), mode)
}

/// The default number of workers: the cores this process may use.
#[must_use]
pub(crate) fn default_jobs() -> usize {
    crate::parallel::cores()
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
struct Progress {
    total: usize,
    done: AtomicUsize,
    draw: bool,
    out: Mutex<()>,
}

impl Progress {
    fn new(total: usize, wanted: bool) -> Self {
        Self { total, done: AtomicUsize::new(0), draw: wanted && total > 1 && std::io::stderr().is_terminal(), out: Mutex::new(()) }
    }

    fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.draw {
            return;
        }
        const WIDTH: usize = 30;
        let filled = done * WIDTH / self.total.max(1);
        if let Ok(_guard) = self.out.lock() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\rrekey [{}{}] {done}/{}", "#".repeat(filled), " ".repeat(WIDTH - filled), self.total);
            let _ = err.flush();
        }
    }

    fn finish(&self) {
        if self.draw {
            eprintln!();
        }
    }
}

/// Every SOPS YAML file of the fleet (a top-level `sops:` entry), relative paths, sorted.
/// Hidden directories (`.git`) and build outputs are skipped; symlinks are not followed.
///
/// # Errors
/// A directory that cannot be read.
pub(crate) fn discover(fleet: &Fleet) -> Result<Vec<String>> {
    discover_in(&fleet.root)
}

/// [`readable_later`]'s answer.
pub(crate) type Readable = Later<(PathBuf, String, Vec<String>), Result<Vec<Openable>>>;

/// The SOPS files of the fleet that `recipient` can open, other than those in `skip`, found on
/// another thread while the caller goes on ([`discover`], then [`openable_by`]).
pub(crate) fn readable_later(fleet: &Fleet, recipient: &str, skip: Vec<String>) -> Readable {
    Later::spawn((fleet.root.clone(), recipient.to_string(), skip), |(root, recipient, skip)| {
        let files: Vec<String> = discover_in(root)?.into_iter().filter(|f| !skip.contains(f)).collect();
        Ok(openable_in(root, &files, recipient))
    })
}

fn discover_in(root: &Path) -> Result<Vec<String>> {
    let mut candidates = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Read { path: dir.clone(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read { path: dir.clone(), source })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else { continue };
            let path = entry.path();
            if kind.is_dir() {
                if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_str()) {
                    stack.push(path);
                }
            } else if kind.is_file() && !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml")) {
                candidates.push(path);
            }
        }
    }
    // Every candidate is read whole (sops writes its metadata last): on every core.
    let sops = crate::parallel::map(&candidates, crate::parallel::cores(), |p| is_sops_yaml(p));
    let mut out: Vec<String> = candidates
        .iter()
        .zip(sops)
        .filter(|&(_, is)| is)
        .filter_map(|(path, _)| path.strip_prefix(root).ok()?.to_str().map(str::to_string))
        .collect();
    out.sort();
    Ok(out)
}

fn is_sops_yaml(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.starts_with("sops:") || t.contains("\nsops:"))
}

/// Turns paths given on the command line into paths relative to the fleet, checking each
/// before anything runs.
///
/// # Errors
/// [`Error::Usage`] for a path that does not exist or lies outside the fleet.
pub(crate) fn resolve(fleet: &Fleet, files: &[PathBuf]) -> Result<Vec<String>> {
    let root = std::fs::canonicalize(&fleet.root).map_err(|source| Error::Read { path: fleet.root.clone(), source })?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for f in files {
        let abs = std::fs::canonicalize(f)
            .map_err(|e| Error::Usage(format!("cannot read `{}`: {e}; give SOPS files of the fleet", f.display())))?;
        if !abs.is_file() {
            return Err(Error::Usage(format!("`{}` is not a file", f.display())));
        }
        let rel = abs.strip_prefix(&root).ok().and_then(Path::to_str).ok_or_else(|| {
            Error::Usage(format!(
                "`{}` is outside the fleet `{}`: .sops.yaml rules only apply to files below it",
                f.display(),
                fleet.root.display()
            ))
        })?;
        if seen.insert(rel.to_string()) {
            out.push(rel.to_string());
        }
    }
    Ok(out)
}

/// The fleet files whose key groups hold `recipient` (those it can open), relative paths.
#[must_use]
pub(crate) fn openable_by(fleet: &Fleet, files: &[String], recipient: &str) -> Vec<String> {
    openable_in(&fleet.root, files, recipient).into_iter().map(|o| o.rel).collect()
}

/// A fleet file a recipient opens, as read.
pub(crate) struct Openable {
    pub rel: String,
    pub text: String,
    pub file: EncryptedFile,
}

/// [`openable_by`], each file with its text and parse (which it took to know).
pub(crate) fn openable_in(root: &Path, files: &[String], recipient: &str) -> Vec<Openable> {
    let holds = |rel: &String| {
        let text = std::fs::read_to_string(root.join(rel)).ok()?;
        // A YAML scalar can spell the recipient otherwise only through a double-quoted
        // escape: a file with neither holds no stanza for it, and is not parsed.
        if !text.contains(recipient) && !text.contains('\\') {
            return None;
        }
        let file = EncryptedFile::parse(&text).ok()?;
        file.age_recipients().iter().flatten().any(|r| r == recipient).then(|| Openable { rel: rel.clone(), text, file })
    };
    crate::parallel::map(files, crate::parallel::cores(), holds).into_iter().flatten().collect()
}

/// Keys (age recipients, `pgp:FP`) in `to` and not in `from`, and the reverse (all groups
/// together).
fn diff(from: &KeyGroups, to: &KeyGroups) -> (Vec<String>, Vec<String>) {
    let (a, b): (BTreeSet<String>, BTreeSet<String>) = (from.key_names().into_iter().collect(), to.key_names().into_iter().collect());
    (b.difference(&a).cloned().collect(), a.difference(&b).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_compare_as_sets_with_fingerprints() {
        let g = |age: &[&str], pgp: &[&str]| KeyGroups {
            groups: vec![KeyGroupSpec {
                age: age.iter().map(|s| (*s).to_string()).collect(),
                pgp: pgp.iter().map(|s| (*s).to_string()).collect(),
            }],
            threshold: 0,
        };
        assert!(g(&["a", "b"], &[]).same_as(&g(&["b", "a"], &[])));
        assert!(!g(&["a"], &[]).same_as(&g(&["a", "b"], &[])));
        assert!(g(&["a"], &["ab12 CD34"]).same_as(&g(&["a"], &["AB12CD34"])), "case and spaces do not matter");
        assert!(!g(&["a"], &[]).same_as(&g(&["a"], &["AB12CD34"])), "a missing PGP key is a difference");
        assert_eq!(
            diff(&g(&["a", "c"], &[]), &g(&["a", "b"], &["ff"])),
            (vec!["b".to_string(), "pgp:FF".to_string()], vec!["c".to_string()])
        );
        let two = |t| KeyGroups { groups: vec![g(&["a"], &[]).groups[0].clone(), g(&["b"], &[]).groups[0].clone()], threshold: t };
        assert!(two(0).same_as(&two(2)), "0 means every group");
        assert!(!two(2).same_as(&KeyGroups { groups: two(2).groups, threshold: 1 }));
    }
}
