//! Unit tests of the planner on small texts; the realistic layouts (checked with PyYAML and
//! real sops) are in tests/it/sops_config.rs.

use super::*;

mod lifecycle;
mod patched;
mod pgp;

pub(crate) fn rec() -> String {
    age::x25519::Identity::generate().to_public().to_string()
}

pub(crate) fn policy(admins: &[&str], shared: &[&str]) -> EditPolicy {
    EditPolicy {
        host_file: "sops/{host}.yaml".into(),
        host_files: BTreeMap::new(),
        admins: admins.iter().map(ToString::to_string).collect(),
        shared: shared.iter().map(ToString::to_string).collect(),
        exclude_from_shared: Vec::new(),
        hosts_group: "hosts".into(),
    }
}

pub(crate) fn host(name: &str) -> HostKey {
    HostKey { name: name.into(), recipient: rec() }
}

pub(crate) fn cfg(text: &str) -> SopsConfig {
    SopsConfig::parse(text).expect("parses")
}

pub(crate) fn add(text: &str, hosts: &[HostKey], p: &EditPolicy) -> Edit {
    cfg(text).add_hosts(hosts, p).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

/// The output holds every input line, in order; only lines were added.
fn only_added(old: &str, new: &str) -> bool {
    let mut it = new.lines();
    old.lines().all(|l| it.any(|n| n == l))
}

#[test]
fn flat_list_gets_anchor_and_rule_in_the_files_style() {
    let (a, w) = (rec(), host("web01"));
    let text = format!(
        "keys:\n  - &alice {a} # laptop\ncreation_rules:\n  - path_regex: ^sops/db01\\.yaml$\n    key_groups:\n      - age:\n          - *alice\n"
    );
    let e = add(&text, std::slice::from_ref(&w), &policy(&["alice"], &[]));
    let want = format!(
        "keys:\n  - &alice {a} # laptop\n  - &web01 {r}\ncreation_rules:\n  - path_regex: ^sops/db01\\.yaml$\n    key_groups:\n      - age:\n          - *alice\n  - path_regex: ^sops/web01\\.yaml$\n    key_groups:\n      - age:\n          - *alice\n          - *web01\n",
        r = w.recipient
    );
    assert_eq!(e.text, want);
    assert_eq!(e.changes.len(), 2);
    let again = cfg(&e.text).add_hosts(std::slice::from_ref(&w), &policy(&["alice"], &[])).expect("second run");
    assert!(again.is_empty(), "{:?}", again.changes);
    assert_eq!(again.text, e.text);
    assert_eq!(cfg(&e.text).recipients_for("sops/web01.yaml"), Some(vec![vec![a, w.recipient.clone()]]));
    assert_eq!(cfg(&e.text).host_recipient("web01"), Some(w.recipient));
}

#[test]
fn rule_goes_before_a_catch_all_and_its_comment() {
    let a = rec();
    let text = format!(
        "keys:\n- &alice {a}\ncreation_rules:\n- path_regex: ^sops/sorrow\\.yaml$\n  age: *alice\n\n# everything else\n- age: *alice\n"
    );
    let row = host("row");
    let e = add(&text, std::slice::from_ref(&row), &policy(&["alice"], &[]));
    assert!(only_added(&text, &e.text), "{}", e.text);
    let c = cfg(&e.text);
    assert_eq!(c.recipients_for("sops/row.yaml"), Some(vec![vec![a.clone(), row.recipient.clone()]]));
    assert_eq!(c.recipients_for("sops/sorrow.yaml"), Some(vec![vec![a.clone()]]));
    assert_eq!(c.recipients_for("other.yaml"), Some(vec![vec![a]]));
    let rule = e.text.find("^sops/row").expect("rule");
    assert!(rule < e.text.find("# everything else").expect("comment"), "{}", e.text);
}

#[test]
fn empty_file_and_missing_sections_are_created() {
    let (a, w) = (rec(), host("web01"));
    let e = add("", std::slice::from_ref(&w), &policy(&[&a], &[]));
    assert_eq!(
        e.text,
        format!(
            "keys:\n  - &web01 {r}\ncreation_rules:\n  - path_regex: ^sops/web01\\.yaml$\n    key_groups:\n      - age:\n          - {a}\n          - *web01\n",
            r = w.recipient
        )
    );
    let text = "# fleet\ncreation_rules: []\n".to_string();
    let e = add(&text, std::slice::from_ref(&w), &policy(&[&a], &[]));
    assert!(e.text.starts_with("# fleet\nkeys:\n"), "{}", e.text);
    assert!(e.text.contains("creation_rules:\n  - path_regex"), "{}", e.text);
}

#[test]
fn mapping_keys_get_a_hosts_group_and_flow_lists_stay_flow() {
    let (a, w) = (rec(), host("web01"));
    let text = format!("keys:\n  users:\n    - &alice {a}\ncreation_rules:\n  - path_regex: x\n    key_groups:\n    - age: [*alice]\n");
    let e = add(&text, std::slice::from_ref(&w), &policy(&["alice"], &[]));
    assert!(only_added(&text, &e.text), "{}", e.text);
    assert!(e.text.contains(&format!("  hosts:\n    - &web01 {}\n", w.recipient)), "{}", e.text);
    assert!(e.text.contains("    - age: [*alice, *web01]\n"), "{}", e.text);
    let flow = format!("keys: [&alice {a}]\ncreation_rules:\n  - age: [*alice]\n");
    let e = add(&flow, std::slice::from_ref(&w), &policy(&["alice"], &["sops/shared.yaml"]));
    assert!(e.text.starts_with(&format!("keys: [&alice {a}, &web01 {}]\n", w.recipient)), "{}", e.text);
}

#[test]
fn grouped_anchor_lists_like_nix_secrets() {
    let (a, g, w) = (rec(), rec(), host("web01"));
    let text = format!(
        "keys:\n  - &users:\n    - &ta {a}\n  - &hosts:\n    - &ghost {g}\ncreation_rules:\n  - path_regex: sops/secrets.yaml$\n    key_groups:\n      - age:\n          - *ta\n          - *ghost\n"
    );
    let e = add(&text, std::slice::from_ref(&w), &policy(&["ta"], &["sops/secrets.yaml"]));
    assert!(only_added(&text, &e.text), "{}", e.text);
    assert!(e.text.contains(&format!("    - &ghost {g}\n    - &web01 {}\n", w.recipient)), "{}", e.text);
    let c = cfg(&e.text);
    assert_eq!(c.recipients_for("sops/secrets.yaml"), Some(vec![vec![a.clone(), g, w.recipient.clone()]]));
    assert_eq!(c.recipients_for("sops/web01.yaml"), Some(vec![vec![a, w.recipient]]));
}

#[test]
fn shared_string_lists_get_the_recipient_appended() {
    let (a, w) = (rec(), host("web01"));
    let text =
        format!("keys:\n  - &alice {a}\ncreation_rules:\n  - path_regex: ^sops/shared\\.yaml$\n    age: >-\n      {a},\n      {a}\n");
    let e = add(&text, std::slice::from_ref(&w), &policy(&["alice"], &["sops/shared.yaml"]));
    assert!(e.text.contains(&format!("      {a},{}\n", w.recipient)), "{}", e.text);
    let c = cfg(&e.text);
    assert!(c.recipients_for("sops/shared.yaml").expect("rule")[0].contains(&w.recipient));
}

#[test]
fn host_rules_follow_the_template_and_each_hosts_own_file() {
    let a = rec();
    let (web, db) = (host("web01"), host("db01"));
    let mut p = policy(&["alice"], &[]);
    p.host_file = "hosts/{host}/secrets.yaml".into();
    p.host_files.insert("db01".into(), "hosts/prod+eu/db01/secrets.yaml".into());
    let text = format!("keys:\n  - &alice {a}\ncreation_rules:\n  - path_regex: ^sops/.*\\.yaml$\n    age: *alice\n");
    let e = add(&text, &[web.clone(), db.clone()], &p);
    assert!(e.text.contains("- path_regex: ^hosts/web01/secrets\\.yaml$\n"), "{}", e.text);
    assert!(e.text.contains("- path_regex: ^hosts/prod\\+eu/db01/secrets\\.yaml$\n"), "{}", e.text);
    let c = cfg(&e.text);
    assert_eq!(c.recipients_for("hosts/web01/secrets.yaml"), Some(vec![vec![a.clone(), web.recipient.clone()]]));
    assert_eq!(c.recipients_for("hosts/prod+eu/db01/secrets.yaml"), Some(vec![vec![a.clone(), db.recipient.clone()]]));
    assert_eq!(c.recipients_for("hosts/db01/secrets.yaml"), None, "db01's file is its own, not the template's");
    let files = vec![p.file_of("web01"), p.file_of("db01")];
    assert_eq!(c.check(&files, &p), Vec::new());
    assert_eq!(p.host_of("hosts/web01/secrets.yaml").as_deref(), Some("web01"));
    assert_eq!(p.host_of("hosts/db01/secrets.yaml"), None);
    assert_eq!(p.host_of("./hosts/prod+eu/db01/secrets.yaml").as_deref(), Some("db01"));

    let removed = c.remove_host("db01", &p).expect("removed");
    assert!(!removed.text.contains("db01"), "{}", removed.text);
    assert!(removed.text.contains("^hosts/web01/secrets\\.yaml$"), "{}", removed.text);
}

#[test]
fn a_key_written_twice_is_refused_in_a_small_and_in_a_large_mapping() {
    // Small mappings are checked by comparing keys, larger ones with a set: both must find it,
    // with the lines of both copies; a merge key (`<<`) may repeat.
    let small = "creation_rules: []\nx: 1\n<<: {}\n<<: {}\nx: 2\n";
    let large: String = (0..12).map(|i| format!("k{i}: {i}\n")).chain(["k3: again\n".to_string(), "creation_rules: []\n".into()]).collect();
    for (text, key, line, first) in [(small, "x", 5, 2), (large.as_str(), "k3", 13, 4)] {
        match SopsConfig::parse(text) {
            Err(SopsConfigError::DuplicateKey { key: k, line: l, first: f }) => {
                assert_eq!((k.as_str(), l, f), (key, line, first), "{text}");
            }
            other => panic!("expected a duplicate key in\n{text}\ngot {other:?}"),
        }
    }
    let distinct: String = (0..12).map(|i| format!("k{i}: {i}\n")).collect();
    assert!(SopsConfig::parse(&distinct).is_ok());
}
