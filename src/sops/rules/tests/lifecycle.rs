//! Unit tests: removal, rotation, the read side, `check`, and placement details.

use super::*;
use super::{add, cfg, host, policy, rec};

#[test]
fn refusals() {
    let a = rec();
    let w = host("web01");
    let p = policy(&["alice"], &["sops/shared.yaml"]);
    let alias_list =
        format!("keys:\n  admins: &admins\n    - &alice {a}\ncreation_rules:\n  - path_regex: ^sops/shared\\.yaml$\n    age: *admins\n");
    let err = cfg(&alias_list).add_hosts(std::slice::from_ref(&w), &p).expect_err("alias of a list");
    assert!(err.to_string().contains("alias `*admins`"), "{err}");
    let dup = format!("keys:\n  - &alice {a}\n  - &alice {a}\ncreation_rules: []\n");
    let err = cfg(&dup).add_hosts(std::slice::from_ref(&w), &p).expect_err("duplicate");
    assert!(matches!(err, SopsConfigError::DuplicateAnchor { line: 3, .. }), "{err}");
    let other = format!("keys:\n  - &alice {a}\n  - &web01 {}\ncreation_rules: []\n", rec());
    let err = cfg(&other).add_hosts(std::slice::from_ref(&w), &p).expect_err("mismatch");
    assert!(matches!(err, SopsConfigError::RecipientMismatch { line: 3, .. }), "{err}");
    let taken = format!("keys:\n  - &alice {a}\nweb: &web01 {{x: 1}}\ncreation_rules: []\n");
    let err = cfg(&taken).add_hosts(std::slice::from_ref(&w), &p).expect_err("taken");
    assert!(matches!(err, SopsConfigError::AnchorTaken { line: 3, .. }), "{err}");
    let err = cfg("creation_rules: []\n").add_hosts(std::slice::from_ref(&w), &p).expect_err("admins");
    assert!(matches!(err, SopsConfigError::UnknownAdmins { .. }), "{err}");
    let shamir = format!(
        "keys:\n  - &alice {a}\ncreation_rules:\n  - path_regex: ^sops/shared\\.yaml$\n    key_groups:\n      - age: [*alice]\n      - age: [*alice]\n"
    );
    let err = cfg(&shamir).add_hosts(std::slice::from_ref(&w), &p).expect_err("shamir");
    assert!(err.to_string().contains("2 key groups"), "{err}");
    for bad in ["- a\n", "a: [\n", "a: *x\n"] {
        assert!(SopsConfig::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn remove_undoes_add_and_rotation_replaces_in_place() {
    let (a, w) = (rec(), host("web01"));
    let text = format!(
        "keys:\n  - &alice {a}\ncreation_rules:\n  - path_regex: ^sops/shared\\.yaml$\n    age: {a}\n  - path_regex: ^sops/all\\.yaml$\n    key_groups:\n      - age:\n          - *alice\n"
    );
    let p = policy(&["alice"], &["sops/shared.yaml", "sops/all.yaml"]);
    let e = add(&text, std::slice::from_ref(&w), &p);
    let new = rec();
    let rot = cfg(&e.text).replace_host_recipient("web01", &new).expect("rotate");
    assert_eq!(rot.text, e.text.replace(&w.recipient, &new));
    assert_eq!(rot.changes, vec![Change::RecipientReplaced { host: "web01".into(), places: 2 }]);
    let back = cfg(&rot.text).remove_host("web01", &p).expect("remove");
    assert_eq!(back.text, text, "{}", back.text);
    assert!(cfg(&text).remove_host("web01", &p).expect("nothing").is_empty());
}

#[test]
fn reads_like_sops() {
    let (a, b) = (rec(), rec());
    let text = format!(
        "keys:\n  - &a {a}\ndefaults: &d\n  key_groups:\n    - age: [*a]\ncreation_rules:\n  - path_regex: \\.env$\n    age: ' {a} , {b},'\n    pgp: ABC\n  - <<: *d\n    path_regex: ^x/\n  - shamir_threshold: 1\n    encrypted_regex: ^data$\n    key_groups:\n      - pgp: [F]\n      - age: [*a]\n        merge:\n          - age: ['{b}']\n"
    );
    let c = cfg(&text);
    assert_eq!(c.recipients_for("./app/.env"), Some(vec![vec![a.clone(), b.clone()]]));
    assert_eq!(c.recipients_for("x/y"), Some(vec![vec![a.clone()]]));
    let r = c.rule_for("z").expect("last rule");
    assert_eq!(r.shamir_threshold, Some(1));
    assert_eq!(r.key_groups[0].pgp, vec!["F".to_string()]);
    assert_eq!(r.key_groups[1].age, vec![a, b]);
    assert_eq!(r.settings, vec![("encrypted_regex".to_string(), "^data$".to_string())]);
    assert_eq!(c.anchors().len(), 2);
}

#[test]
fn check_reports_what_is_wrong() {
    let (a, w) = (rec(), rec());
    let text = format!(
        "keys:\n  - &alice {a}\n  - &web01 {w}\n  - &db01 ssh-ed25519 AAAA\n  - &bad age1nope\ncreation_rules:\n  - path_regex: .*\\.yaml$\n    age: [*alice, *bad]\n  - path_regex: ^sops/web01\\.yaml$\n    age: [*web01]\n  - path_regex: '('\n"
    );
    let c = cfg(&text);
    let files = vec!["sops/web01.yaml".to_string(), "sops/db01.yaml".to_string()];
    let kinds: Vec<ProblemKind> = c.check(&files, &policy(&["alice"], &[])).iter().map(|p| p.kind).collect();
    for k in [
        ProblemKind::InvalidRegex,
        ProblemKind::InvalidRecipient,
        ProblemKind::SshRecipient,
        ProblemKind::NotSpecific,
        ProblemKind::HostMissing,
    ] {
        assert!(kinds.contains(&k), "{k:?} not in {kinds:?}");
    }
    let good = add("", &[HostKey { name: "web01".into(), recipient: w }], &policy(&[&a], &[]));
    assert_eq!(cfg(&good.text).check(&files[..1], &policy(&[&a], &[])), Vec::new());
}

#[test]
fn a_rule_aliasing_the_hosts_list_is_reported() {
    let (a, w) = (rec(), host("web01"));
    let text = format!(
        "keys:\n  users:\n    - &alice {a}\n  hosts: &hosts\n    - &db01 {}\ncreation_rules:\n  - path_regex: ^sops/fleet\\.yaml$\n    age: *hosts\n",
        rec()
    );
    let e = add(&text, std::slice::from_ref(&w), &policy(&["alice"], &[]));
    assert!(e.changes.contains(&Change::AlsoGranted { host: "web01".into(), line: 7 }), "{:?}", e.changes);
    assert!(cfg(&e.text).recipients_for("sops/fleet.yaml").expect("rule")[0].contains(&w.recipient));
}

#[test]
fn placement_details() {
    let a = rec();
    // A deeper comment ends the previous rule; the new rule goes below it.
    let text = format!(
        "keys:\n  - &alice {a}\ncreation_rules:\n  - path_regex: ^x$\n    age: *alice\n    # about x\n  # the rest\n  - age: *alice\n"
    );
    let e = add(&text, &[host("web01")], &policy(&["alice"], &[]));
    let at = e.text.find("^sops/web01").expect("rule");
    assert!(e.text.find("# about x").expect("x") < at && at < e.text.find("# the rest").expect("rest"), "{}", e.text);
    // Quoting of path_regex follows the file.
    let text = format!("keys:\n  - &alice {a}\ncreation_rules:\n  - path_regex: \"^x\\\\.yaml$\"\n    age: [*alice]\n");
    let e = add(&text, &[host("web-01")], &policy(&["alice"], &[]));
    assert!(e.text.contains("path_regex: \"^sops/web-01\\\\.yaml$\""), "{}", e.text);
    // Excluded hosts stay out of shared rules; a host's file cannot be a shared file.
    let shared = format!("keys:\n  - &alice {a}\ncreation_rules:\n  - path_regex: ^sops/shared\\.yaml$\n    age: [*alice]\n");
    let mut p = policy(&["alice"], &["sops/shared.yaml"]);
    p.exclude_from_shared = vec!["bastion*".into()];
    let e = add(&shared, &[host("bastion1")], &p);
    assert!(e.text.contains("    age: [*alice]\n"), "{}", e.text);
    let err = cfg(&shared).add_hosts(&[host("shared")], &p).expect_err("shared host");
    assert!(matches!(err, SopsConfigError::HostFileIsShared { .. }), "{err}");
    for bad in ["", "-x", "a b", "web_01", "../x", "ü", &"a".repeat(64)] {
        let err = cfg(&shared).add_hosts(&[host(bad)], &p).expect_err(bad);
        assert!(matches!(err, SopsConfigError::InvalidHostName { .. }), "{bad}: {err}");
    }
    let err = cfg(&shared).add_hosts(&[HostKey { name: "web01".into(), recipient: "ssh-ed25519 AAAA".into() }], &p).expect_err("ssh");
    assert!(matches!(err, SopsConfigError::InvalidRecipient { .. }), "{err}");
}

#[test]
fn flow_and_multiline_flow_lists_take_items_in_their_layout() {
    let (a, w) = (rec(), host("web01"));
    let text = format!(
        "keys: [\n  &alice {a}, # alice\n]\ncreation_rules:\n  - path_regex: ^sops/shared\\.yaml$\n    age: [\n      *alice # admin\n      ]\n"
    );
    let p = policy(&["alice"], &["sops/shared.yaml"]);
    let e = add(&text, std::slice::from_ref(&w), &p);
    assert!(e.text.starts_with(&format!("keys: [\n  &alice {a}, # alice\n  &web01 {},\n]\n", w.recipient)), "{}", e.text);
    assert!(e.text.contains("      *alice, # admin\n      *web01\n      ]\n"), "{}", e.text);
    let back = cfg(&e.text).remove_host("web01", &p).expect("remove");
    assert!(!back.text.contains("web01"), "{}", back.text);
    assert_eq!(cfg(&back.text).recipients_for("sops/shared.yaml"), Some(vec![vec![a]]));
}
