//! `.sops.yaml` editing against real sops and an independent YAML parser (PyYAML).
//!
//! Every layout under tests/fixtures/sops_config/ gets hosts added in one pass; the result
//! must only add lines (a flow list or a string `age:` changes exactly the line it extends),
//! PyYAML must resolve the new host rules to exactly admins + host and the shared rules to
//! include the hosts, a second run must change nothing, and removing the hosts must take them
//! out again. With real sops, encrypting `sops/<host>.yaml` must pick exactly admins + host.

use std::path::Path;
use std::process::Command;

use hostsmith::sops::rules::{EditPolicy, HostKey, ProblemKind, SopsConfig, SopsConfigError};
use hostsmith::sops::yaml::NodeKind;

use crate::common::{peer, run, run_with_stdin};

struct Case {
    file: &'static str,
    admins: &'static [&'static str],
    shared: &'static [&'static str],
    /// Lines of the input the edit may change in place (flow lists, strings, `[]`).
    changed_lines: usize,
    /// Whether removing the hosts gives back the input byte for byte.
    reversible: bool,
    /// Whether real sops can encrypt the shared file (no PGP key in its rule).
    sops_shared: bool,
}

const fn case(file: &'static str, admins: &'static [&'static str], shared: &'static [&'static str]) -> Case {
    Case { file, admins, shared, changed_lines: 0, reversible: true, sops_shared: true }
}

const A: &str = "age1xzzyhxcnfg7rpu0paxdrwrkjag29kf55s6eud25h5knepjm76uus0t6pfv";
const B: &str = "age154rej62m36y55a5zjx2ckw7h8urj560w4qyntgcj4kqq0u9msujseyuupl";
const SHARED: &[&str] = &["sops/shared.yaml"];

const CASES: &[Case] = &[
    case("flat.yaml", &["alice", "bob"], SHARED),
    case("nested_users_hosts.yaml", &["alice", "bob"], SHARED),
    case("nix_secrets.yaml", &["ta"], &["sops/secrets.yaml"]),
    Case { changed_lines: 2, ..case("flow.yaml", &["alice", "bob"], SHARED) },
    case("four_space.yaml", &["alice", "bob"], SHARED),
    case("indentless.yaml", &["alice", "bob"], SHARED),
    case("comments.yaml", &["alice", "bob"], SHARED),
    Case { changed_lines: 1, sops_shared: false, ..case("pgp_age.yaml", &["alice"], SHARED) },
    Case { changed_lines: 1, ..case("folded.yaml", &["alice"], SHARED) },
    case("toplevel_age.yaml", &["alice", "bob"], SHARED),
    case("catch_all_last.yaml", &["alice", "bob"], SHARED),
    Case { reversible: false, ..case("regex_first.yaml", &["alice", "bob"], SHARED) },
    case("indented_document.yaml", &["alice", "bob"], SHARED),
    Case { reversible: false, ..case("merge_keys.yaml", &["admins"], SHARED) },
    Case { changed_lines: 1, reversible: false, ..case("no_keys.yaml", &[A, B], SHARED) },
    Case { changed_lines: 1, reversible: false, ..case("empty_rules.yaml", &["alice", "bob"], SHARED) },
    Case { sops_shared: false, ..case("shamir_one.yaml", &["alice"], SHARED) },
];

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sops_config").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn policy(c: &Case) -> EditPolicy {
    EditPolicy {
        host_file: "sops/{host}.yaml".into(),
        host_files: std::collections::BTreeMap::new(),
        admins: c.admins.iter().map(ToString::to_string).collect(),
        shared: c.shared.iter().map(ToString::to_string).collect(),
        exclude_from_shared: vec!["bastion-*".into()],
        hosts_group: "hosts".into(),
    }
}

fn host(name: &str) -> HostKey {
    HostKey { name: name.into(), recipient: age::x25519::Identity::generate().to_public().to_string() }
}

/// The admins' recipients as the original file defines them.
fn admin_recipients(cfg: &SopsConfig, admins: &[&str]) -> Vec<String> {
    let anchors = cfg.anchors();
    let mut out = Vec::new();
    for a in admins {
        if a.starts_with("age1") {
            out.push((*a).to_string());
        } else if let Some(v) = cfg.host_recipient(a) {
            out.push(v);
        } else {
            // A list anchor (`admins: &admins`): its items are the anchors that follow it.
            let at = anchors.iter().position(|x| x.name == *a).expect("admin anchor");
            out.extend(anchors[at + 1..].iter().take_while(|x| x.kind == "string").filter_map(|x| x.value.clone()));
        }
    }
    out
}

/// Lines of `old` that `new` lacks, and lines of `new` that `old` lacks (an LCS line diff).
fn line_diff(old: &str, new: &str) -> (Vec<String>, Vec<String>) {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut removed, mut added) = (0, 0, Vec::new(), Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            added.push(b[j].to_string());
            j += 1;
        } else {
            removed.push(a[i].to_string());
            i += 1;
        }
    }
    (removed, added)
}

/// `new` is `old` with text inserted at one place (or `key: []` opened into a block list).
fn extends(old: &str, new: &str) -> bool {
    let p = old.bytes().zip(new.bytes()).take_while(|(x, y)| x == y).count();
    let s = old[p..].bytes().rev().zip(new[p..].bytes().rev()).take_while(|(x, y)| x == y).count();
    (p + s >= old.len() && new.len() > old.len()) || old.trim_end().strip_suffix(" []") == Some(new.trim_end())
}

const PY_RULES: &str = r#"
import json, re, sys, yaml
doc = yaml.safe_load(sys.stdin.read()) or {}
def split(v):
    if v is None:
        return []
    items = [v] if isinstance(v, str) else v
    out = []
    for i in items:
        if not isinstance(i, str):
            raise SystemExit("age item is not a string: %r" % (i,))
        out += [p.strip() for p in i.split(",") if p.strip()]
    return out
def groups(rule):
    kg = rule.get("key_groups") or []
    return [split(g.get("age")) for g in kg] if kg else [split(rule.get("age"))]
res = {}
for p in json.loads(sys.argv[1]):
    res[p] = None
    for r in doc.get("creation_rules") or []:
        rx = r.get("path_regex") or ""
        if rx == "" or re.search(rx, p):
            res[p] = groups(r)
            break
print(json.dumps(res))
"#;

/// The age key groups PyYAML + Python's `re` give for each path, sops' way.
fn pyyaml_groups(text: &str, paths: &[String]) -> serde_json::Value {
    let arg = serde_json::to_string(paths).expect("json");
    let out = run_with_stdin(Command::new("python3").args(["-c", PY_RULES, &arg]), text.as_bytes());
    assert!(out.status.success(), "pyyaml: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("python json")
}

fn run_case(c: &Case, text: &str, label: &str) {
    let cfg = SopsConfig::parse(text).unwrap_or_else(|e| panic!("{label}: {e}"));
    let p = policy(c);
    let hosts = [host("web01"), host("row"), host("bastion-1")];
    let edit = cfg.add_hosts(&hosts, &p).unwrap_or_else(|e| panic!("{label}: {e}"));
    let out = &edit.text;
    let ctx = || format!("{label}\n--- before\n{text}--- after\n{out}");

    let (removed, added) = line_diff(text, out);
    assert!(removed.len() <= c.changed_lines, "{label}: lines changed: {removed:?}\n{}", ctx());
    for r in &removed {
        assert!(added.iter().any(|a| extends(r, a)), "{label}: `{r}` changed beyond an insertion\n{}", ctx());
    }
    assert_eq!(text.contains("\r\n"), out.contains("\r\n"), "{label}: line endings");
    if text.contains("\r\n") {
        assert!(!out.replace("\r\n", "").contains('\n'), "{label}: a bare LF was inserted");
    }

    let admins = admin_recipients(&cfg, c.admins);
    let mut paths: Vec<String> = hosts.iter().map(|h| format!("sops/{}.yaml", h.name)).collect();
    paths.extend(c.shared.iter().map(ToString::to_string));
    let py = pyyaml_groups(out, &paths);
    let new = SopsConfig::parse(out).expect("output parses");
    for h in &hosts {
        let file = format!("sops/{}.yaml", h.name);
        let mut want = admins.clone();
        want.push(h.recipient.clone());
        assert_eq!(py[&file], serde_json::json!([want]), "{label}: pyyaml rule for {file}\n{}", ctx());
        assert_eq!(new.recipients_for(&file), Some(vec![want]), "{label}: {file}");
    }
    for s in c.shared {
        let groups: Vec<Vec<String>> = serde_json::from_value(py[*s].clone()).expect("shared rule");
        assert_eq!(new.recipients_for(s), Some(groups.clone()), "{label}: read side agrees with pyyaml on {s}");
        let all: Vec<&String> = groups.iter().flatten().collect();
        assert!(all.contains(&&hosts[0].recipient) && all.contains(&&hosts[1].recipient), "{label}: {s}\n{}", ctx());
        assert!(!all.contains(&&hosts[2].recipient), "{label}: an excluded host joined {s}");
    }
    let files: Vec<String> = paths[..3].to_vec();
    let problems = new.check(&files, &p);
    let bad = [ProblemKind::NotSpecific, ProblemKind::HostMissing, ProblemKind::AdminMissing, ProblemKind::SharedMissing];
    assert!(!problems.iter().any(|x| bad.contains(&x.kind)), "{label}: {problems:?}");

    let again = new.add_hosts(&hosts, &p).expect("second run");
    assert!(again.is_empty(), "{label}: second run changed {:?}", again.changes);
    assert_eq!(&again.text, out);

    let mut back = out.clone();
    for h in hosts.iter().rev() {
        back = SopsConfig::parse(&back).and_then(|c| c.remove_host(&h.name, &p)).unwrap_or_else(|e| panic!("{label}: remove: {e}")).text;
    }
    let gone = SopsConfig::parse(&back).expect("after removal");
    for h in &hosts {
        assert_eq!(gone.host_recipient(&h.name), None, "{label}");
        assert!(!back.contains(&h.recipient), "{label}: {} left behind\n{back}", h.name);
    }
    if c.reversible {
        assert_eq!(back, text, "{label}: removal is not the inverse of the addition");
    }
}

#[test]
fn every_layout_gets_hosts_by_insertion_only() {
    for c in CASES {
        let text = fixture(c.file);
        run_case(c, &text, c.file);
    }
    let crlf = fixture("comments.yaml").replace('\n', "\r\n");
    run_case(&case("comments.yaml", &["alice", "bob"], SHARED), &crlf, "comments.yaml with crlf");
}

#[test]
fn a_hundred_hosts_in_one_pass() {
    let c = case("flat.yaml", &["alice", "bob"], SHARED);
    let cfg = SopsConfig::parse(&fixture(c.file)).expect("parse");
    let hosts: Vec<HostKey> = (0..100).map(|i| host(&format!("node{i:03}"))).collect();
    let edit = cfg.add_hosts(&hosts, &policy(&c)).expect("edit");
    let new = SopsConfig::parse(&edit.text).expect("parse");
    for h in &hosts {
        let groups = new.recipients_for(&format!("sops/{}.yaml", h.name)).expect("rule");
        assert_eq!(groups, vec![vec![A.to_string(), B.to_string(), h.recipient.clone()]]);
    }
    assert_eq!(new.recipients_for("sops/shared.yaml").expect("shared")[0].len(), 103);
}

fn sops_recipients(sops: &Path, dir: &Path, file: &str) -> Vec<String> {
    crate::common::write(&dir.join(file), "hello: world\n");
    let out = run(Command::new(sops).current_dir(dir).args(["--encrypt", file]).env_remove("SOPS_AGE_KEY_FILE"));
    let stdout = crate::common::ok(&out);
    let parsed = hostsmith::sops::yaml::parse(&stdout).expect("sops output is yaml");
    let age = parsed.documents[0].get("sops").and_then(|s| s.get("age")).expect("sops.age");
    let NodeKind::Sequence { items, .. } = &age.kind else { panic!("sops.age is a list") };
    let mut r: Vec<String> = items.iter().filter_map(|i| i.get("recipient")?.as_str().map(str::to_string)).collect();
    r.sort();
    r
}

#[test]
fn real_sops_encrypts_host_files_for_admins_and_host() {
    let Some(sops) = peer("sops") else { return };
    for c in CASES {
        let text = fixture(c.file);
        let cfg = SopsConfig::parse(&text).expect("parse");
        let hosts = [host("web01"), host("row")];
        let edit = cfg.add_hosts(&hosts, &policy(c)).unwrap_or_else(|e| panic!("{}: {e}", c.file));
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".sops.yaml"), &edit.text).expect("write");
        let admins = admin_recipients(&cfg, c.admins);
        for h in &hosts {
            let mut want: Vec<String> = admins.iter().cloned().chain([h.recipient.clone()]).collect();
            want.sort();
            want.dedup();
            let file = format!("sops/{}.yaml", h.name);
            assert_eq!(sops_recipients(&sops, dir.path(), &file), want, "{}: {file}\n{}", c.file, edit.text);
        }
        if c.file == "flat.yaml" {
            // The rule for `sorrow` (unanchored at the start) is not `row`'s, and stays as is.
            let sorrow = cfg.host_recipient("sorrow").expect("sorrow");
            let mut want = admins.clone();
            want.push(sorrow);
            want.sort();
            assert_eq!(sops_recipients(&sops, dir.path(), "sops/sorrow.yaml"), want);
        }
        if c.sops_shared {
            let got = sops_recipients(&sops, dir.path(), c.shared[0]);
            assert!(hosts.iter().all(|h| got.contains(&h.recipient)), "{}: shared {got:?}", c.file);
        }
    }
}

#[test]
fn hostile_inputs_are_refused_with_the_line() {
    let p = policy(&case("x", &["alice"], SHARED));
    let hosts = [host("web01")];
    let alice = format!("keys:\n  - &alice {A}\n");
    let cases: Vec<(String, &str)> = vec![
        (format!("{alice}  - &alice {B}\ncreation_rules: []\n"), "line 3: anchor `&alice` is defined more than once"),
        ("creation_rules:\n  - age: *nobody\n".into(), "alias `*nobody`"),
        ("creation_rules: [\n".into(), "not valid yaml"),
        ("- path_regex: x\n".into(), "line 1: .sops.yaml must be a mapping"),
        ("creation_rules:\n  path_regex: x\n".into(), "line 2: `creation_rules` must be a list"),
        ("a: 1\n---\nb: 2\n".into(), "yaml documents"),
        (format!("creation_rules: []\n{alice}"), "`keys:` comes after `creation_rules:`"),
        (
            format!(
                "keys:\n  admins: &admins\n    - &alice {A}\ncreation_rules:\n  - path_regex: ^sops/shared\\.yaml$\n    age: *admins\n"
            ),
            "line 6: cannot edit .sops.yaml safely: the age list of the rule for `sops/shared.yaml` is the alias `*admins`",
        ),
        (format!("{alice}  - &web01 ssh-ed25519 AAAAC3Nza\ncreation_rules: []\n"), "line 3: host `web01` has recipient ssh-ed25519"),
        (format!("{alice}creation_rules:\n  - path_regex: '('\n"), "line 4: path_regex `(` does not compile"),
    ];
    for (text, want) in cases {
        let err: SopsConfigError = match SopsConfig::parse(&text) {
            Ok(cfg) => cfg.add_hosts(&hosts, &p).expect_err(&text),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains(want), "{text}\n=> {msg}\nwanted: {want}");
        assert!(msg.starts_with(|c: char| c.is_lowercase()), "lowercase: {msg}");
    }
}
