//! PGP admins in `.sops.yaml`: fingerprints as anchors, as lists of anchors, inline.

use super::*;

const FP: &str = "7088C7421873E0DB97FF17C2245CAB70B4C225E9";

#[test]
fn a_pgp_admin_anchor_goes_in_the_new_rules_pgp_list() {
    let w = host("electra");
    let text = format!(
        "keys:\n  - &misterio {FP}\ncreation_rules:\n  - path_regex: hosts/common/secrets.ya?ml$\n    key_groups:\n    - age: []\n      pgp:\n      - *misterio\n"
    );
    let e = add(&text, std::slice::from_ref(&w), &policy(&["misterio"], &[]));
    // The rule follows the file's style (flow lists, as in `age: []`) and goes at the end,
    // since no earlier rule matches the host's file.
    let want = format!(
        "keys:\n  - &misterio {FP}\n  - &electra {r}\ncreation_rules:\n  - path_regex: hosts/common/secrets.ya?ml$\n    key_groups:\n    - age: []\n      pgp:\n      - *misterio\n  - path_regex: ^sops/electra\\.yaml$\n    key_groups:\n    - age: [*electra]\n      pgp: [*misterio]\n",
        r = w.recipient
    );
    assert_eq!(e.text, want, "{}", e.text);
    let rule = cfg(&e.text).rule_for("sops/electra.yaml").expect("rule");
    assert_eq!(rule.key_groups.len(), 1);
    assert_eq!(rule.key_groups[0].pgp, vec![FP.to_string()]);
    assert_eq!(rule.key_groups[0].age, vec![w.recipient.clone()]);
    assert!(cfg(&e.text).check(&["sops/electra.yaml".into()], &policy(&["misterio"], &[])).is_empty());
}

#[test]
fn age_and_pgp_admins_together_and_inline_fingerprints() {
    let (a, w) = (rec(), host("web01"));
    let text = format!("keys:\n  - &alice {a}\n  - &bob {FP}\ncreation_rules: []\n");
    let e = add(&text, std::slice::from_ref(&w), &policy(&["alice", "bob"], &[]));
    let rule = cfg(&e.text).rule_for("sops/web01.yaml").expect("rule");
    assert_eq!(rule.key_groups[0].age, vec![a.clone(), w.recipient.clone()]);
    assert_eq!(rule.key_groups[0].pgp, vec![FP.to_string()]);
    // A fingerprint in `sops.admins` itself is written inline, spaces removed.
    let spaced = "7088 C742 1873 E0DB 97FF  17C2 245C AB70 B4C2 25E9";
    let e = add(&format!("keys:\n  - &alice {a}\ncreation_rules: []\n"), std::slice::from_ref(&w), &policy(&["alice", spaced], &[]));
    assert!(e.text.contains(&format!("pgp:\n          - {FP}\n")), "{}", e.text);
    assert!(cfg(&e.text).check(&["sops/web01.yaml".into()], &policy(&["alice", FP], &[])).is_empty());
}

#[test]
fn check_knows_pgp_keys_from_age_recipients() {
    let w = host("web01");
    // A fingerprint defined under keys and used in a pgp list is fine; one in an age list is
    // a problem, and so is an age recipient in a pgp list.
    let text = format!(
        "keys:\n  - &admin {FP}\n  - &web01 {r}\ncreation_rules:\n  - path_regex: ^sops/web01\\.yaml$\n    key_groups:\n      - age: [*web01]\n        pgp: [*admin]\n",
        r = w.recipient
    );
    let p = policy(&["admin"], &[]);
    assert_eq!(cfg(&text).check(&["sops/web01.yaml".into()], &p), Vec::new());
    let wrong = text.replace("age: [*web01]\n        pgp: [*admin]", "age: [*web01, *admin]\n        pgp: [*web01]");
    let problems: Vec<String> = cfg(&wrong).check(&["sops/web01.yaml".into()], &p).iter().map(ToString::to_string).collect();
    assert!(problems.iter().any(|m| m.contains("PGP fingerprint in an age list")), "{problems:?}");
    assert!(problems.iter().any(|m| m.contains("is not a PGP fingerprint")), "{problems:?}");
    assert!(problems.iter().any(|m| m.contains("admin *admin is missing")), "{problems:?}");
}
