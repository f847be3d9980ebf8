//! Which edits are verified by reading only their added lines ([`super::super::patch`]).
//! Whichever way an edit goes, debug builds also parse the result whole and require the
//! same tree; these tests pin down that the fast way is taken where it should be, and not
//! where its argument does not hold.

use super::*;
use crate::sops::rules::verify::PATCHED;

/// The edit, and whether it was verified from its added lines alone.
fn add_counted(text: &str, hosts: &[HostKey], p: &EditPolicy) -> (Edit, bool) {
    let before = PATCHED.with(std::cell::Cell::get);
    let e = add(text, hosts, p);
    (e, PATCHED.with(std::cell::Cell::get) > before)
}

/// A fleet as `vm-fresh` leaves it: admins and hosts under `keys:`, one rule per host, a
/// shared file every host joins, and a catch-all last.
fn fleet(a: &str, h1: &str) -> String {
    format!(
        "keys:\n  - &alice {a} # laptop\n  - &h1 {h1}\ncreation_rules:\n  # hosts\n  - path_regex: ^sops/h1\\.yaml$\n    key_groups:\n      - age:\n          - *alice\n          - *h1\n  - path_regex: ^sops/shared\\.yaml$\n    key_groups:\n      - age:\n          - *alice\n          - *h1\n\n  # everything else\n  - path_regex: .*\n    key_groups:\n      - age:\n          - *alice\n"
    )
}

fn shared_policy() -> EditPolicy {
    policy(&["alice"], &["sops/shared.yaml"])
}

fn assert_host_added(e: &Edit, a: &str, h: &HostKey) {
    let c = cfg(&e.text);
    let file = format!("sops/{}.yaml", h.name);
    assert_eq!(c.recipients_for(&file), Some(vec![vec![a.to_string(), h.recipient.clone()]]), "{}", e.text);
    let shared = c.recipients_for("sops/shared.yaml").expect("a rule for the shared file");
    assert!(shared[0].contains(&h.recipient), "{}", e.text);
    assert_eq!(c.host_recipient(&h.name), Some(h.recipient.clone()));
}

#[test]
fn a_host_added_to_a_typical_fleet_is_read_from_its_lines() {
    let (a, h1, h2) = (rec(), rec(), host("h2"));
    let (e, fast) = add_counted(&fleet(&a, &h1), std::slice::from_ref(&h2), &shared_policy());
    assert!(fast, "{}", e.text);
    assert!(only_added(&fleet(&a, &h1), &e.text));
    assert_host_added(&e, &a, &h2);
    // The catch-all still comes last, so the host's rule went before it.
    let (rule, catch_all) = (e.text.find("^sops/h2").expect("the rule"), e.text.find("path_regex: .*\n").expect("the catch-all"));
    assert!(rule < catch_all, "{}", e.text);
}

#[test]
fn several_hosts_at_once_and_in_turn_are_read_from_their_lines() {
    let (a, h1) = (rec(), rec());
    let hosts: Vec<HostKey> = (2..6).map(|i| host(&format!("h{i}"))).collect();
    let (e, fast) = add_counted(&fleet(&a, &h1), &hosts, &shared_policy());
    assert!(fast, "{}", e.text);
    for h in &hosts {
        assert_host_added(&e, &a, h);
    }
    let next = host("h9");
    let (e2, fast) = add_counted(&e.text, std::slice::from_ref(&next), &shared_policy());
    assert!(fast, "{}", e2.text);
    assert_host_added(&e2, &a, &next);
}

#[test]
fn lists_written_without_indentation_and_a_file_without_a_last_newline() {
    let (a, h1, h2) = (rec(), rec(), host("h2"));
    let text = format!(
        "keys:\n- &alice {a}\n- &h1 {h1}\ncreation_rules:\n- path_regex: ^sops/h1\\.yaml$\n  key_groups:\n  - age:\n    - *alice\n    - *h1\n- path_regex: ^sops/shared\\.yaml$\n  key_groups:\n  - age:\n    - *alice\n    - *h1  # every host"
    );
    let (e, fast) = add_counted(&text, std::slice::from_ref(&h2), &shared_policy());
    assert!(fast, "{}", e.text);
    assert!(only_added(&text, &e.text), "{}", e.text);
    assert_host_added(&e, &a, &h2);
}

#[test]
fn a_shared_list_in_flow_style_is_read_whole() {
    // The alias goes inside `[...]`: a replacement within a line, not whole lines.
    let (a, h2) = (rec(), host("h2"));
    let text =
        format!("keys:\n  - &alice {a}\ncreation_rules:\n  - path_regex: ^sops/shared\\.yaml$\n    key_groups:\n      - age: [*alice]\n");
    let (e, fast) = add_counted(&text, std::slice::from_ref(&h2), &shared_policy());
    assert!(!fast, "{}", e.text);
    assert_host_added(&e, &a, &h2);
}

#[test]
fn a_shared_rule_with_a_recipient_string_is_read_whole() {
    // The recipient joins `age: a,b` within its line.
    let (a, h2) = (rec(), host("h2"));
    let text = format!("keys:\n  - &alice {a}\ncreation_rules:\n  - path_regex: ^sops/shared\\.yaml$\n    age: {a}\n");
    let (e, fast) = add_counted(&text, std::slice::from_ref(&h2), &shared_policy());
    assert!(!fast, "{}", e.text);
    assert_host_added(&e, &a, &h2);
}

#[test]
fn a_block_scalar_in_the_file_sends_the_edit_to_the_whole_reading() {
    // The lines after a `|` scalar decide its trailing line breaks.
    let (a, h1, h2) = (rec(), rec(), host("h2"));
    let text = fleet(&a, &h1).replace("  # everything else\n  - path_regex: .*\n", "  - path_regex: |-\n      .*\n");
    assert!(text.contains('|'), "{text}");
    let (e, fast) = add_counted(&text, std::slice::from_ref(&h2), &shared_policy());
    assert!(!fast, "{}", e.text);
    assert_host_added(&e, &a, &h2);
}
