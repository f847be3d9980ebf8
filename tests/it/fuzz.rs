//! Property tests of the two readers of text hostsmith does not control: the `.sops.yaml`
//! editor and the SOPS file reader (proptest, with inputs from a grammar of realistic
//! fragments, the fixture corpus, byte-level mutations and plain random bytes).
//!
//! A short pass runs with the suite. `HOSTSMITH_FUZZ_CASES=N` sets the cases per batch;
//! `HOSTSMITH_FUZZ_SECONDS=S` keeps running new batches until S seconds have passed (for
//! long local runs: `HOSTSMITH_FUZZ_SECONDS=600 cargo test --release --test it fuzz::`).
//! Each batch prints its seed on failure; `HOSTSMITH_FUZZ_SEED=N` replays a batch.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hostsmith::sops;
use hostsmith::sops::file::{EncryptedFile, Map, Value};
use hostsmith::sops::rules::{EditPolicy, HostKey, SopsConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

const A: &str = "age188f29rluaclmdd62hva3nrq3szp80nqt9c6aq6hsrlu5gkrr0d4q9hkcyn";
const W: &str = "age1cpfhmmgq97glhj5thykyz7ga988y8w7zya3dpj7xgf7re29yn56shpe7ac";
const X: &str = "age1kfhk7xfshsrqcsf8au73s54n7uyanckhcmnsxnnxsg7sc3eev46s34hjgr";
const Y: &str = "age1xzzyhxcnfg7rpu0paxdrwrkjag29kf55s6eud25h5knepjm76uus0t6pfv";

/// How the cases of a property ended, by outcome (printed, to show what the inputs reach).
#[derive(Default)]
struct Outcomes(Mutex<BTreeMap<String, u64>>);

impl Outcomes {
    fn count(&self, outcome: impl Into<String>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(outcome.into()).or_default() += 1;
    }

    fn get(&self, outcome: &str) -> u64 {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(outcome).copied().unwrap_or(0)
    }

    fn show(&self) -> String {
        format!("{:?}", self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// The first words of an error message (after a `line N:` prefix), as a class of outcome.
fn class(msg: &str) -> String {
    let msg = msg.strip_prefix("line ").and_then(|m| m.split_once(": ")).map_or(msg, |(_, rest)| rest);
    msg.split(|c: char| !c.is_alphanumeric() && c != ' ').next().unwrap_or("").split(' ').take(6).collect::<Vec<_>>().join(" ")
}

/// Runs `test` on values of `strategy`: `default_cases` cases, or as the environment says.
fn fuzz<S: Strategy>(name: &str, strategy: S, default_cases: u32, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("HOSTSMITH_FUZZ_CASES").map_or(default_cases, |n| n as u32);
    let seconds = env("HOSTSMITH_FUZZ_SECONDS").map(Duration::from_secs);
    let fixed_seed = env("HOSTSMITH_FUZZ_SEED");
    let start = Instant::now();
    let mut executed: u64 = 0;
    let mut batches = 0;
    loop {
        let seed = fixed_seed.unwrap_or_else(rand::random);
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let config = Config { cases, failure_persistence: None, max_shrink_iters: 4096, ..Config::default() };
        let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: {e}\n(batch seed {seed}: HOSTSMITH_FUZZ_SEED={seed} HOSTSMITH_FUZZ_CASES={cases} replays it)");
        }
        executed += u64::from(cases);
        batches += 1;
        if fixed_seed.is_some() || seconds.is_none_or(|s| start.elapsed() >= s) {
            break;
        }
    }
    eprintln!("{name}: {executed} cases in {batches} batch(es), {:.1?}", start.elapsed());
}

// ---------------------------------------------------------------------------------------
// Inputs: documents from a grammar or the fixtures, then mutated.

#[derive(Debug, Clone)]
struct Grammar {
    header: bool,
    keys: u8,
    extra_anchors: u8,
    rules: Vec<u8>,
    empty_rules: u8,
    keys_last: bool,
    indent4: bool,
    extras: u8,
    blank_between: bool,
}

#[derive(Debug, Clone)]
enum Base {
    Grammar(Grammar),
    Fixture(usize),
}

#[derive(Debug, Clone)]
enum Mutation {
    Snippet { at: u16, which: u8 },
    Bytes { at: u16, bytes: Vec<u8> },
    Delete { at: u16, len: u8 },
    DupLine(u16),
    SwapLines(u16, u16),
    Reindent { line: u16, by: i8 },
    Truncate(u16),
}

const SNIPPETS: &[&str] = &[
    "&",
    "*",
    "- ",
    ": ",
    "#",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\n",
    "\r\n",
    "\r",
    "\t",
    " ",
    "  ",
    "&web01 ",
    "*web01",
    "*admin",
    "*nosuch",
    "&admin ",
    "<<: *admin\n",
    "---\n",
    "...\n",
    "!!str ",
    "!!map ",
    "|\n",
    ">-\n",
    "? ",
    "\u{feff}",
    "é",
    "\u{0}",
    "%YAML 1.2\n",
    "age1",
    A,
    ",",
    "keys:\n",
    "creation_rules:\n",
    "- path_regex: .*\n",
    "key_groups:\n",
    "age:\n",
    "  - ",
    "~",
    "null",
    "&a [*a]",
    "\\",
    "$",
    "^",
    "(",
    ".*",
    "\u{2028}",
];

const FIXTURES: &[(&str, &str)] = &[
    ("catch_all_last", include_str!("../fixtures/sops_config/catch_all_last.yaml")),
    ("comments", include_str!("../fixtures/sops_config/comments.yaml")),
    ("empty_rules", include_str!("../fixtures/sops_config/empty_rules.yaml")),
    ("flat", include_str!("../fixtures/sops_config/flat.yaml")),
    ("flow", include_str!("../fixtures/sops_config/flow.yaml")),
    ("folded", include_str!("../fixtures/sops_config/folded.yaml")),
    ("four_space", include_str!("../fixtures/sops_config/four_space.yaml")),
    ("indented_document", include_str!("../fixtures/sops_config/indented_document.yaml")),
    ("indentless", include_str!("../fixtures/sops_config/indentless.yaml")),
    ("merge_keys", include_str!("../fixtures/sops_config/merge_keys.yaml")),
    ("nested_users_hosts", include_str!("../fixtures/sops_config/nested_users_hosts.yaml")),
    ("nix_secrets", include_str!("../fixtures/sops_config/nix_secrets.yaml")),
    ("no_keys", include_str!("../fixtures/sops_config/no_keys.yaml")),
    ("pgp_age", include_str!("../fixtures/sops_config/pgp_age.yaml")),
    ("regex_first", include_str!("../fixtures/sops_config/regex_first.yaml")),
    ("shamir_one", include_str!("../fixtures/sops_config/shamir_one.yaml")),
    ("toplevel_age", include_str!("../fixtures/sops_config/toplevel_age.yaml")),
];

fn grammar() -> impl Strategy<Value = Grammar> {
    (
        any::<bool>(),
        0u8..7,
        0u8..3,
        prop::collection::vec(0u8..13, 0..6),
        0u8..3,
        prop::bool::weighted(0.1),
        any::<bool>(),
        0u8..8,
        any::<bool>(),
    )
        .prop_map(|(header, keys, extra_anchors, rules, empty_rules, keys_last, indent4, extras, blank_between)| Grammar {
            header,
            keys,
            extra_anchors,
            rules,
            empty_rules,
            keys_last,
            indent4,
            extras,
            blank_between,
        })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<u16>(), any::<u8>()).prop_map(|(at, which)| Mutation::Snippet { at, which }),
        1 => (any::<u16>(), prop::collection::vec(any::<u8>(), 1..4)).prop_map(|(at, bytes)| Mutation::Bytes { at, bytes }),
        2 => (any::<u16>(), 1u8..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => any::<u16>().prop_map(Mutation::DupLine),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        1 => (any::<u16>(), -4i8..5).prop_map(|(line, by)| Mutation::Reindent { line, by }),
        1 => any::<u16>().prop_map(Mutation::Truncate),
    ]
}

/// A document: half of the time untouched (the editor must then work), otherwise mutated.
fn document() -> impl Strategy<Value = (Base, bool, Vec<Mutation>)> {
    (
        prop_oneof![3 => grammar().prop_map(Base::Grammar), 2 => (0..FIXTURES.len()).prop_map(Base::Fixture)],
        prop::bool::weighted(0.15),
        prop_oneof![1 => Just(Vec::new()), 1 => prop::collection::vec(mutation(), 1..4)],
    )
}

const RULES: &[&str] = &[
    // 0: the shared file, the admins' key group.
    "  - path_regex: ^sops/shared\\.yaml$\n    key_groups:\n      - age:\n          - *admin\n",
    // 1: a rule for web01 alone.
    "  - path_regex: ^sops/web01\\.yaml$\n    key_groups:\n      - age:\n          - *admin\n          - *web01\n",
    // 2: a catch-all.
    "  - path_regex: .*\n    age: *admin\n",
    // 3: a string of recipients.
    "  - path_regex: \\.yaml$\n    age: AGE_A,AGE_W\n",
    // 4: a folded string.
    "  - path_regex: ^secrets/.*\n    age: >-\n      AGE_A,\n      AGE_W\n",
    // 5: a flow rule.
    "  - {path_regex: ^ci/, age: [*admin]}\n",
    // 6: pgp.
    "  - path_regex: ^pgp/\n    pgp: 85D77543B3D624B63CEA9E6DBC17301B491B3F21\n",
    // 7: a merge key.
    "  - <<: *defaults\n    path_regex: ^merged/\n",
    // 8: Shamir.
    "  - path_regex: ^shamir/\n    shamir_threshold: 2\n    key_groups:\n      - age:\n          - *admin\n      - age:\n          - AGE_W\n",
    // 9: no path_regex (matches everything).
    "  - age: *admin\n",
    // 10: a regex that does not compile.
    "  - path_regex: ^sops/(\n    age: *admin\n",
    // 11: the shared file with a top-level age list.
    "  - path_regex: ^sops/shared\\.yaml$\n    age:\n      - *admin\n      - *web01\n",
    // 12: settings and a flow key group.
    "  - path_regex: ^sops/db01\\.yaml$\n    encrypted_regex: ^(data|stringData)$\n    key_groups:\n      - age: [*admin]\n",
];

fn render_grammar(g: &Grammar) -> String {
    let mut keys = match g.keys {
        0 => String::new(),
        1 => "keys:\n  - &admin AGE_A\n  - &web01 AGE_W # the web server\n".to_string(),
        2 => "keys:\n  admins:\n    - &admin AGE_A\n  hosts:\n    - &web01 AGE_W\n".to_string(),
        3 => "keys:\n  - &admins\n    - &admin AGE_A\n  - &hosts\n    - &web01 AGE_W\n".to_string(),
        4 => "keys: [&admin AGE_A, &web01 AGE_W]\n".to_string(),
        5 => "keys:\n".to_string(),
        _ => "keys: []\n".to_string(),
    };
    if g.keys == 1 {
        for i in 0..g.extra_anchors {
            keys.push_str(&format!("  - &extra{i} AGE_Y\n"));
        }
    }
    let mut rules = String::new();
    if g.rules.is_empty() {
        rules = ["creation_rules: []\n", "creation_rules:\n", ""][usize::from(g.empty_rules)].to_string();
    } else {
        rules.push_str("creation_rules:\n");
        for (i, r) in g.rules.iter().enumerate() {
            if g.blank_between && i > 0 {
                rules.push('\n');
            }
            if g.extras & 1 != 0 && i + 1 == g.rules.len() {
                rules.push_str("  # the last rule\n");
            }
            rules.push_str(RULES[usize::from(*r) % RULES.len()]);
        }
    }
    let mut out = String::new();
    if g.header {
        out.push_str("# sops creation rules\n# (hand-written)\n\n");
    }
    if g.extras & 2 != 0 {
        out.push_str("defaults: &defaults\n  age: AGE_A\n");
    }
    if g.keys_last {
        out.push_str(&rules);
        out.push_str(&keys);
    } else {
        out.push_str(&keys);
        if g.extras & 4 != 0 {
            out.push('\n');
        }
        out.push_str(&rules);
    }
    if g.extras & 4 != 0 {
        out.push_str("stores:\n  yaml:\n    indent: 2\n");
    }
    let out = out.replace("AGE_A", A).replace("AGE_W", W).replace("AGE_Y", Y);
    if g.indent4 {
        out.lines()
            .map(|l| {
                let n = l.len() - l.trim_start_matches(' ').len();
                format!("{}{}\n", " ".repeat(n * 2), &l[n..])
            })
            .collect()
    } else {
        out
    }
}

fn at(len: usize, frac: u16) -> usize {
    len * usize::from(frac) / usize::from(u16::MAX)
}

fn mutate(text: &str, crlf: bool, mutations: &[Mutation]) -> String {
    let text = if crlf { text.replace('\n', "\r\n") } else { text.to_string() };
    let mut b = text.into_bytes();
    for m in mutations {
        match m {
            Mutation::Snippet { at: p, which } => {
                let s = SNIPPETS[usize::from(*which) % SNIPPETS.len()];
                let i = at(b.len(), *p);
                b.splice(i..i, s.bytes());
            }
            Mutation::Bytes { at: p, bytes } => {
                let i = at(b.len(), *p);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete { at: p, len } => {
                let i = at(b.len(), *p);
                let j = (i + usize::from(*len)).min(b.len());
                b.drain(i..j);
            }
            Mutation::Truncate(p) => b.truncate(at(b.len(), *p)),
            Mutation::DupLine(l) | Mutation::SwapLines(l, _) | Mutation::Reindent { line: l, .. } => {
                let mut lines: Vec<Vec<u8>> = b.split_inclusive(|c| *c == b'\n').map(<[u8]>::to_vec).collect();
                if lines.is_empty() {
                    continue;
                }
                let i = usize::from(*l) % lines.len();
                match m {
                    Mutation::DupLine(_) => {
                        let line = lines[i].clone();
                        lines.insert(i, line);
                    }
                    Mutation::SwapLines(_, o) => {
                        let j = usize::from(*o) % lines.len();
                        lines.swap(i, j);
                    }
                    Mutation::Reindent { by, .. } => {
                        if *by > 0 {
                            lines[i].splice(0..0, std::iter::repeat_n(b' ', by.unsigned_abs().into()));
                        } else {
                            let n = lines[i].iter().take_while(|c| **c == b' ').count().min(by.unsigned_abs().into());
                            lines[i].drain(..n);
                        }
                    }
                    _ => unreachable!(),
                }
                b = lines.concat();
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn render((base, crlf, mutations): &(Base, bool, Vec<Mutation>)) -> String {
    let text = match base {
        Base::Grammar(g) => render_grammar(g),
        Base::Fixture(i) => FIXTURES[*i].1.to_string(),
    };
    mutate(&text, *crlf, mutations)
}

// ---------------------------------------------------------------------------------------
// The `.sops.yaml` editor

const HOSTS: &[(&str, &str)] = &[("db01", X), ("web01", W), ("web01", X), ("admin", X), ("new-host-1", Y), ("hosts", Y), ("ghost", X)];
const ADMINS: &[&[&str]] = &[&["admin"], &["alice"], &[A], &["admins"], &["alice", "bob"]];

fn policy(choice: u8) -> EditPolicy {
    EditPolicy {
        // Both layouts: one directory of host files, and a directory per host.
        host_file: if choice & 32 == 0 { "sops/{host}.yaml".into() } else { "hosts/{host}/secrets.yaml".into() },
        host_files: std::collections::BTreeMap::new(),
        admins: ADMINS[usize::from(choice) % ADMINS.len()].iter().map(ToString::to_string).collect(),
        shared: if choice & 8 == 0 { vec!["sops/shared.yaml".into()] } else { Vec::new() },
        exclude_from_shared: if choice & 16 == 0 { Vec::new() } else { vec!["web*".into()] },
        hosts_group: "hosts".into(),
    }
}

fn is_subsequence(small: &[u8], big: &[u8]) -> bool {
    let mut it = big.iter();
    small.iter().all(|c| it.any(|d| d == c))
}

/// The original text survives in the result: its bytes are a subsequence of the result's,
/// except for the one documented removal (an empty flow list `[ ]` that becomes a block list).
fn original_kept(original: &str, result: &str) -> bool {
    if is_subsequence(original.as_bytes(), result.as_bytes()) {
        return true;
    }
    original.match_indices('[').any(|(i, _)| {
        let inner = original[i + 1..].len() - original[i + 1..].trim_start().len();
        if !original[i + 1 + inner..].starts_with(']') {
            return false;
        }
        let start = original[..i].trim_end_matches(' ').len();
        let without = format!("{}{}", &original[..start], &original[i + 1 + inner + 1..]);
        is_subsequence(without.as_bytes(), result.as_bytes())
    })
}

/// Original lines missing from the result (changed in place): the original's line count less
/// the longest common subsequence of lines.
fn changed_lines(original: &str, result: &str) -> usize {
    let (a, b): (Vec<&str>, Vec<&str>) = (original.lines().collect(), result.lines().collect());
    let mut row = vec![0usize; b.len() + 1];
    for x in &a {
        let mut diag = 0;
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    a.len() - row[b.len()]
}

#[allow(clippy::too_many_lines, reason = "a table of hostile inputs, one line each")]
fn check_editor(text: &str, host: (&str, &str), policy: &EditPolicy, seen: &Outcomes) -> Result<(), TestCaseError> {
    let cfg = match SopsConfig::parse(text) {
        Ok(c) => c,
        Err(e) => {
            prop_assert!(!e.to_string().trim().is_empty(), "empty error");
            seen.count("not parsed");
            return Ok(());
        }
    };
    // Read-only queries never panic.
    let _ = cfg.anchors();
    let _ = cfg.check(&[policy.file_of("web01")], policy);
    let _ = cfg.recipients_for(&policy.file_of("web01"));
    let _ = cfg.host_recipient("web01");
    let fail = |what: String, out: &str| TestCaseError::fail(format!("{what}\n--- input:\n{text}\n--- output:\n{out}\n---"));
    let (name, recipient) = host;
    let key = HostKey { name: name.into(), recipient: recipient.into() };
    match cfg.add_hosts(std::slice::from_ref(&key), policy) {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!msg.trim().is_empty(), "empty error");
            seen.count(format!("refused: {}", class(&msg)));
            if std::env::var_os("HOSTSMITH_FUZZ_SHOW").is_some_and(|v| msg.contains(&*v.to_string_lossy())) {
                eprintln!("--- {msg}\n{text}");
            }
        }
        Ok(edit) if edit.is_empty() => {
            prop_assert_eq!(&edit.text, text, "an empty edit changed the text");
            seen.count("nothing to do");
        }
        Ok(edit) => {
            seen.count("edited");
            let out = edit.text.as_str();
            let new = SopsConfig::parse(out).map_err(|e| fail(format!("the result does not parse: {e}"), out))?;
            if !original_kept(text, out) {
                return Err(fail("bytes of the original are missing from the result".into(), out));
            }
            let changed = changed_lines(text, out);
            if changed > edit.changes.len() {
                return Err(fail(format!("{changed} original lines changed for {} change(s)", edit.changes.len()), out));
            }
            if new.host_recipient(name).as_deref() != Some(recipient) {
                return Err(fail(format!("&{name} does not resolve to {recipient}: {:?}", new.host_recipient(name)), out));
            }
            let file = policy.file_of(name);
            if !new.recipients_for(&file).is_some_and(|g| g.iter().flatten().any(|r| r == recipient)) {
                return Err(fail(format!("the rule sops uses for {file} lacks the host: {:?}", new.recipients_for(&file)), out));
            }
            for shared in &policy.shared {
                let excluded = policy.exclude_from_shared.iter().any(|p| glob::Pattern::new(p).is_ok_and(|p| p.matches(name)));
                if !excluded && !new.recipients_for(shared).is_some_and(|g| g.iter().flatten().any(|r| r == recipient)) {
                    return Err(fail(format!("{shared} does not include the host"), out));
                }
            }
            let after = new.anchors();
            for a in cfg.anchors().into_iter().filter(|a| a.value.is_some()) {
                if !after.iter().any(|b| b.name == a.name && b.value == a.value) {
                    return Err(fail(format!("anchor &{} lost or changed", a.name), out));
                }
            }
            match new.add_hosts(std::slice::from_ref(&key), policy) {
                Ok(again) if again.is_empty() => {}
                Ok(again) => return Err(fail(format!("a second edit is not empty: {:?}\n{}", again.changes, again.text), out)),
                Err(e) => return Err(fail(format!("a second edit fails: {e}"), out)),
            }
        }
    }
    // Removal and rotation: an edit they return parses and did what it says.
    if let Ok(edit) = cfg.remove_host("web01", policy)
        && !edit.is_empty()
    {
        let new = SopsConfig::parse(&edit.text).map_err(|e| fail(format!("remove_host: the result does not parse: {e}"), &edit.text))?;
        if new.host_recipient("web01").is_some() {
            return Err(fail("remove_host left &web01".into(), &edit.text));
        }
    }
    if let Ok(edit) = cfg.replace_host_recipient("web01", X)
        && !edit.is_empty()
    {
        let new = SopsConfig::parse(&edit.text).map_err(|e| fail(format!("replace: the result does not parse: {e}"), &edit.text))?;
        if new.host_recipient("web01").as_deref() != Some(X) {
            return Err(fail("replace_host_recipient did not replace".into(), &edit.text));
        }
    }
    Ok(())
}

/// The `.sops.yaml` editor on documents from the grammar and the fixtures, mutated or not:
/// never panics; an edit it returns parses, keeps every original byte (lines are only added,
/// or changed by the documented in-line additions), resolves the new alias to the host's
/// recipient, gives the host's file and the shared files the host, keeps every anchor, and
/// is idempotent.
#[test]
fn sops_yaml_editor_properties() {
    let strategy = (document(), 0..HOSTS.len(), any::<u8>());
    let seen = Outcomes::default();
    fuzz("sops_yaml_editor", strategy, 1000, |(doc, h, p)| {
        let text = render(&doc);
        check_editor(&text, HOSTS[h], &policy(p), &seen)
    });
    eprintln!("sops_yaml_editor outcomes: {}", seen.show());
    assert!(seen.get("edited") > 0, "no case was edited");
}

/// Every fixture and the unmutated grammar's documents are edited when nothing in them is
/// unsupported: the editor is not "safe" by refusing everything.
#[test]
fn the_editor_edits_the_unmutated_corpus() {
    let policy = EditPolicy { host_file: "sops/{host}.yaml".into(), admins: vec![A.into()], shared: Vec::new(), ..EditPolicy::default() };
    let key = HostKey { name: "db02".into(), recipient: X.into() };
    let mut edited = 0;
    for (name, text) in FIXTURES {
        let cfg = SopsConfig::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        match cfg.add_hosts(std::slice::from_ref(&key), &policy) {
            Ok(e) if !e.is_empty() => edited += 1,
            other => eprintln!("{name}: {other:?}"),
        }
        check_editor(text, ("db02", X), &policy, &Outcomes::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(edited >= FIXTURES.len() - 2, "only {edited} of {} fixtures edited", FIXTURES.len());
}

// ---------------------------------------------------------------------------------------
// The SOPS file reader

struct Sample {
    text: String,
    identity: age::x25519::Identity,
    /// The decrypted values (see [`flatten`]).
    plain: Vec<(String, String)>,
    /// Substrings of the plaintext that must never appear in an error.
    secrets: Vec<String>,
}

/// The values of a decrypted file as sops' MAC and additional data see them: each value's
/// text with its path joined by `:`. What is left out is what the SOPS format does not
/// protect, and real sops 3.11 accepts the same changes: comments (encrypted, but outside the
/// MAC); the `type:` of a value (`type:int` edited to `type:str` decrypts `424242` as
/// `"424242"`); entries whose value is null or empty (no bytes are hashed for them: `extra:`
/// added decrypts); values left in clear, whose keys nothing authenticates
/// (`note_unencrypted` renamed `ote_unencrypted`); and the nesting of keys, since the path
/// is authenticated as its `:`-joined text (`a:\n  b: ENC[…]` edited to `a:b: ENC[…]`).
fn flatten(docs: &[Map]) -> Vec<(String, String)> {
    fn walk(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
        let text = match v {
            Value::Map(m) => {
                for item in m.items() {
                    if let hostsmith::sops::file::MapItem::Entry { key, value } = item {
                        walk(value, &format!("{path}{key}:"), out);
                    }
                }
                return;
            }
            Value::Seq(items) => {
                for item in items {
                    if let hostsmith::sops::file::SeqItem::Value(value) = item {
                        walk(value, path, out);
                    }
                }
                return;
            }
            Value::Null => return,
            Value::Str(s) | Value::Time(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
        };
        if !text.is_empty() && !path.contains("_unencrypted") {
            out.push((path.to_string(), text.to_lowercase()));
        }
    }
    let mut out = Vec::new();
    for d in docs {
        walk(&Value::Map(d.clone()), "", &mut out);
    }
    out
}

fn sample() -> &'static Sample {
    static SAMPLE: std::sync::OnceLock<Sample> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(|| {
        let identity = age::x25519::Identity::generate();
        let key = hostsmith::ssh_keys::Keypair::generate("root@fuzz").expect("key");
        let pem = key.openssh_private().expect("pem").to_string();
        let mut doc = Map::new();
        doc.push_comment(" comment-PLAINTEXT-c0mment");
        doc.set_path(&["ssh_host_ed25519_key"], Value::Str(pem.clone())).expect("set");
        doc.set_path(&["deploy-keys", "nix-config"], Value::Str("ghp_PLAINTEXT-d3pl0y".into())).expect("set");
        doc.set_path(&["count"], Value::Int(424_242)).expect("set");
        doc.set_path(&["ratio"], Value::Float(3.5)).expect("set");
        doc.set_path(&["on"], Value::Bool(true)).expect("set");
        doc.set_path(&["note_unencrypted"], Value::Str("public".into())).expect("set");
        doc.set_path(&["multi"], Value::Str("line one\nline-PLAINTEXT-tw0\n".into())).expect("set");
        doc.set_path(&["empty"], Value::Str(String::new())).expect("set");
        let text = sops::file::encrypt_new(
            &doc,
            &[vec![identity.to_public().to_string(), W.to_string()]],
            &hostsmith::sops::file::EncryptionOptions::default(),
        )
        .expect("encrypt");
        let plain = flatten(std::slice::from_ref(&doc));
        let mut secrets: Vec<String> = vec!["PLAINTEXT".into(), "424242".into(), identity_string(&identity)];
        secrets.extend(pem.lines().filter(|l| l.len() > 20 && !l.starts_with("-----")).map(str::to_string));
        Sample { text, identity, plain, secrets }
    })
}

fn identity_string(id: &age::x25519::Identity) -> String {
    use age::secrecy::ExposeSecret;
    id.to_string().expose_secret().to_string()
}

#[derive(Debug, Clone)]
enum SopsInput {
    /// Random bytes.
    Bytes(Vec<u8>),
    /// Random YAML-ish tokens.
    Tokens(Vec<u8>),
    /// The sample with its `ENC[…]` values swapped or edited, then mutated.
    Mutated { swaps: Vec<(u8, u8)>, edits: Vec<(u8, u8, u8)>, mutations: Vec<Mutation> },
}

fn sops_input() -> impl Strategy<Value = SopsInput> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..1500).prop_map(SopsInput::Bytes),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(SopsInput::Tokens),
        4 => (
            prop::collection::vec((any::<u8>(), any::<u8>()), 0..2),
            prop::collection::vec((any::<u8>(), 0u8..4, any::<u8>()), 0..2),
            prop::collection::vec(mutation(), 0..3),
        )
            .prop_map(|(swaps, edits, mutations)| SopsInput::Mutated { swaps, edits, mutations }),
    ]
}

const ENC_REPLACEMENTS: &[&str] =
    &["", "AAAA", "====", "not base64!", "AAAAAAAAAAAAAAAAAAAAAA==", "str", "int", "bytes", "comment", "bool"];

fn render_sops(input: &SopsInput) -> String {
    match input {
        SopsInput::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        SopsInput::Tokens(t) => t.iter().map(|i| SNIPPETS[usize::from(*i) % SNIPPETS.len()]).collect(),
        SopsInput::Mutated { swaps, edits, mutations } => {
            let text = &sample().text;
            let spans: Vec<(usize, usize)> =
                text.match_indices("ENC[").map(|(i, _)| (i, i + text[i..].find(']').map_or(text.len() - i, |e| e + 1))).collect();
            let mut values: Vec<String> = spans.iter().map(|(a, b)| text[*a..*b].to_string()).collect();
            let n = values.len().max(1);
            for (a, b) in swaps {
                values.swap(usize::from(*a) % n, usize::from(*b) % n);
            }
            for (v, field, r) in edits {
                let i = usize::from(*v) % n;
                let name = ["data:", "iv:", "tag:", "type:"][usize::from(*field)];
                if let Some(start) = values[i].find(name) {
                    let start = start + name.len();
                    let end = values[i][start..].find([',', ']']).map_or(values[i].len(), |e| start + e);
                    values[i].replace_range(start..end, ENC_REPLACEMENTS[usize::from(*r) % ENC_REPLACEMENTS.len()]);
                }
            }
            let mut out = String::new();
            let mut last = 0;
            for ((a, b), v) in spans.iter().zip(&values) {
                out.push_str(&text[last..*a]);
                out.push_str(v);
                last = *b;
            }
            out.push_str(&text[last..]);
            mutate(&out, false, mutations)
        }
    }
}

fn check_sops_reader(text: &str, seen: &Outcomes) -> Result<(), TestCaseError> {
    let s = sample();
    let leak = |msg: &str| s.secrets.iter().find(|m| msg.contains(m.as_str())).cloned();
    let file = match EncryptedFile::parse(text) {
        Ok(f) => f,
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!msg.trim().is_empty());
            prop_assert!(leak(&msg).is_none(), "the parse error shows {:?}: {}", leak(&msg), msg);
            seen.count(format!("parse: {}", class(&msg)));
            return Ok(());
        }
    };
    let _ = file.age_recipients();
    let _ = file.needs_external_sops();
    match file.decrypt(std::slice::from_ref(&s.identity)) {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!msg.trim().is_empty());
            prop_assert!(leak(&msg).is_none(), "the error shows {:?}: {}", leak(&msg), msg);
            seen.count(format!("decrypt: {}", class(&msg)));
        }
        Ok(dec) => {
            seen.count("decrypted");
            // Whatever was changed, what decrypts is what was encrypted: the MAC saw to it.
            let plain = flatten(dec.documents());
            prop_assert_eq!(&plain, &s.plain, "a changed file decrypted to other values:\n{}", text);
            // And it can be written again and read back.
            let again = dec.encrypt().map_err(|e| TestCaseError::fail(format!("re-encrypt: {e}")))?;
            let back = EncryptedFile::parse(&again)
                .and_then(|f| f.decrypt(std::slice::from_ref(&s.identity)))
                .map_err(|e| TestCaseError::fail(format!("read back: {e}\n{again}")))?;
            prop_assert_eq!(flatten(back.documents()), plain);
        }
    }
    Ok(())
}

/// The SOPS file reader on random bytes, random YAML-ish tokens and mutations of a valid file
/// (values swapped or edited, bytes inserted or deleted, lines moved): never panics; errors
/// are non-empty and never show the plaintext; a file that decrypts gives exactly the
/// original values and survives a write and a read.
#[test]
fn sops_file_reader_properties() {
    let s = sample();
    // The unmutated sample decrypts (the property is not vacuous).
    let file = EncryptedFile::parse(&s.text).expect("sample parses");
    let dec = file.decrypt(std::slice::from_ref(&s.identity)).expect("sample decrypts");
    assert_eq!(flatten(dec.documents()), s.plain);
    let seen = Outcomes::default();
    fuzz("sops_file_reader", sops_input(), 400, |input| check_sops_reader(&render_sops(&input), &seen));
    eprintln!("sops_file_reader outcomes: {}", seen.show());
    assert!(seen.get("decrypted") > 0, "no mutated file decrypted");
}

// What the property tests found, kept as plain tests: one regression test per bug the
// fuzzers above found, named for the bug.

fn web01() -> [HostKey; 1] {
    [HostKey { name: "web01".into(), recipient: W.into() }]
}

fn db01() -> [HostKey; 1] {
    [HostKey { name: "db01".into(), recipient: X.into() }]
}

fn admin_policy() -> EditPolicy {
    EditPolicy { host_file: "sops/{host}.yaml".into(), admins: vec!["admin".into()], ..EditPolicy::default() }
}

#[test]
fn fuzz_an_anchor_written_inside_a_plain_string_is_not_an_anchor() {
    // `&web01` inside the plain string `. - &web01 age1…` (anchored `hosts`) was taken for
    // anchor `web01`: rotating web01 replaced the whole string (src/sops/yaml/scan.rs).
    let text = format!("keys:\n  - &admins\n    - &admin {A}\n  - &hosts\n   . - &web01 {W}\n");
    let cfg = SopsConfig::parse(&text).expect("parses");
    assert_eq!(cfg.host_recipient("web01"), None);
    let err = cfg.replace_host_recipient("web01", X).expect_err("web01 has no anchor");
    assert!(err.to_string().contains("has no anchor `&web01`"), "{err}");
}

#[test]
fn fuzz_a_rule_before_the_anchors_it_would_alias_is_refused_with_the_reason() {
    // A rule appended to an empty `creation_rules:` that comes before `keys:` used aliases
    // of anchors defined after it; the edit failed its own verification ("this is a
    // hostsmith bug") instead of being refused with the reason (src/sops/rules/targets.rs).
    let text = format!("creation_rules:\nkeys:\n  - &admin {A}\n  - &web01 {W}\n");
    let cfg = SopsConfig::parse(&text).expect("parses");
    let msg = cfg.add_hosts(&web01(), &admin_policy()).expect_err("refused").to_string();
    assert!(msg.contains("is defined after line") && !msg.contains("hostsmith bug"), "{msg}");
    // The same with rules in the list: the new rule goes at the end of the list, still
    // before the anchors.
    let text = format!("creation_rules:\n  - path_regex: ^other$\n    age: {A}\nkeys:\n  - &admin {A}\n  - &web01 {W}\n");
    let cfg = SopsConfig::parse(&text).expect("parses");
    let msg = cfg.add_hosts(&web01(), &admin_policy()).expect_err("refused").to_string();
    assert!(msg.contains("is defined after line") && !msg.contains("hostsmith bug"), "{msg}");
}

#[test]
fn fuzz_an_anchored_empty_rule_list_keeps_its_anchor_and_trailing_blanks() {
    // `creation_rules: &rules []` lost its anchor when the first rule was added: the
    // whole ` &rules []` was cut instead of ` []` (src/sops/rules/render.rs).
    let text = format!("keys:\n  - &admin {A}\ncreation_rules: &rules []\n");
    let cfg = SopsConfig::parse(&text).expect("parses");
    let edit = cfg.add_hosts(&db01(), &admin_policy()).expect("edited");
    assert!(edit.text.contains("creation_rules: &rules\n  - path_regex: ^sops/db01\\.yaml$"), "{}", edit.text);
    assert!(SopsConfig::parse(&edit.text).expect("parses").anchors().iter().any(|a| a.name == "rules"));
    // And white space after the `]` went with it (the list's span runs past it).
    let text = format!("keys:\n  - &admin {A}\ncreation_rules: []\t\n");
    let edit = SopsConfig::parse(&text).expect("parses").add_hosts(&db01(), &admin_policy()).expect("edited");
    assert!(edit.text.contains("creation_rules:\t\n  - path_regex"), "{:?}", edit.text);
}

#[test]
fn fuzz_a_one_pair_mapping_in_a_flow_list_is_refused_not_a_panic() {
    // A flow list holding a one-pair mapping (`[*alice, ? *bob]`) made the editor slice the
    // text backwards and panic (src/sops/rules/flow.rs).
    let text = format!(
        "keys: [&alice {A}, &bob {W}]\ncreation_rules:\n  - path_regex: ^sops/shared\\.yaml$\n    key_groups:\n      - age: [*alice,?  *bob]\n"
    );
    let cfg = SopsConfig::parse(&text).expect("parses");
    let policy = EditPolicy { admins: vec!["alice".into()], shared: vec!["sops/shared.yaml".into()], ..admin_policy() };
    let err = cfg.add_hosts(&db01(), &policy).expect_err("refused");
    assert!(err.to_string().contains("cannot tell where the last item"), "{err}");
}

#[test]
fn fuzz_a_key_twice_in_one_sops_mapping_is_refused_as_sops_refuses_it() {
    // A SOPS file with a key twice in one mapping was read (and would have been written
    // back so) though sops refuses it ("mapping key already defined") (src/sops/file/mod.rs).
    let s = sample();
    let doubled = s.text.replacen("deploy-keys:\n", "deploy-keys:\ndeploy-keys:\n", 1);
    assert_ne!(doubled, s.text);
    let err = EncryptedFile::parse(&doubled).expect_err("duplicate key refused");
    assert!(err.to_string().contains("the key `deploy-keys` appears twice"), "{err}");
}
