use super::*;

fn doc(text: &str) -> Parsed {
    parse(text).expect("valid yaml")
}

#[test]
fn spans_anchors_and_comments() {
    let text = "# top\nkeys:\n  - &alice age1abc  # inline\n  - &web01 'age1q'\nrules:\n  - age: [*alice, *web01]\n    pgp: |\n      foo # not a comment\n# after\nx: \"q#x\"\n";
    let p = doc(text);
    let root = &p.documents[0];
    let keys = root.get("keys").expect("keys");
    let NodeKind::Sequence { items, flow } = &keys.kind else { panic!("sequence") };
    assert!(!flow);
    assert_eq!(items[0].anchor.as_deref(), Some("alice"));
    assert_eq!(&text[items[0].span.clone()], "&alice age1abc");
    assert_eq!(items[1].anchor.as_deref(), Some("web01"));
    assert_eq!(items[1].as_str(), Some("age1q"));
    let texts: Vec<(&str, bool, usize)> = p.comments.iter().map(|c| (c.text.as_str(), c.inline, c.line)).collect();
    assert_eq!(texts, vec![(" top", false, 0), (" inline", true, 2), (" after", false, 8)]);
    let rule = match &root.get("rules").expect("rules").kind {
        NodeKind::Sequence { items, .. } => &items[0],
        _ => panic!("rules"),
    };
    let age = rule.get("age").expect("age");
    assert!(matches!(&age.kind, NodeKind::Sequence { flow: true, .. }));
    assert_eq!(&text[age.span.clone()], "[*alice, *web01]");
    assert_eq!(root.get("x").and_then(Node::as_str), Some("q#x"));
}

#[test]
fn an_ampersand_word_inside_a_plain_scalar_is_not_its_anchor() {
    // Found by the `.sops.yaml` editor's property test: the string `. - &web01 age1q` anchored
    // `hosts` was taken for anchor `web01`, and rotating web01 replaced the whole string.
    let text = "keys:\n  - &hosts\n   . - &web01 age1q\n  - &a b &c\n  - &d !!str e\n";
    let p = doc(text);
    let NodeKind::Sequence { items, .. } = &p.documents[0].get("keys").expect("keys").kind else { panic!("sequence") };
    let got: Vec<(Option<&str>, Option<&str>)> = items.iter().map(|n| (n.anchor.as_deref(), n.as_str())).collect();
    assert_eq!(got, vec![(Some("hosts"), Some(". - &web01 age1q")), (Some("a"), Some("b &c")), (Some("d"), Some("e"))]);
}

#[test]
fn collection_anchors_and_multibyte_text() {
    let text = "a: &admins\n  - &ü ägé\nb: *admins\nc: *ü\n";
    let p = doc(text);
    let root = &p.documents[0];
    assert_eq!(root.get("a").and_then(|n| n.anchor.as_deref()), Some("admins"));
    let NodeKind::Sequence { items, .. } = &root.get("a").expect("a").kind else { panic!() };
    assert_eq!(items[0].anchor.as_deref(), Some("ü"));
    assert_eq!(&text[items[0].span.clone()], "&ü ägé");
    assert!(matches!(&root.get("c").expect("c").kind, NodeKind::Alias { name } if name == "ü"));
}

#[test]
fn rejects_unknown_alias_and_reports_duplicates() {
    let err = parse("a: *nope\n").expect_err("unknown alias");
    assert!(err.message.contains("*nope"), "{err}");
    let p = doc("a: &x 1\nb: &x 2\n");
    assert_eq!(p.duplicate_anchors(), vec!["x".to_string()]);
}

#[test]
fn syntax_errors_carry_a_position() {
    let err = parse("a: [1, 2\nb: c\n").expect_err("unclosed flow");
    assert!(err.line >= 1, "{err}");
}

#[test]
fn indentless_sequences_keep_item_anchors() {
    let text = "keys:\n- &alice age1x\n- &bob age1y\nrules:\n- &r\n  b: 2\nr: *alice\n";
    let p = doc(text);
    let root = &p.documents[0];
    let keys = root.get("keys").expect("keys");
    assert_eq!(keys.anchor, None);
    let NodeKind::Sequence { items, .. } = &keys.kind else { panic!("sequence") };
    assert_eq!(items[0].anchor.as_deref(), Some("alice"));
    let rules = root.get("rules").expect("rules");
    assert_eq!(rules.anchor, None);
    let NodeKind::Sequence { items, .. } = &rules.kind else { panic!("sequence") };
    assert_eq!(items[0].anchor.as_deref(), Some("r"));
    assert!(matches!(items[0].kind, NodeKind::Mapping { .. }));
}

#[test]
fn flow_collections_with_properties_and_block_sequences_of_flow_items() {
    let text = "a: &k [x, y]\nb: !!seq [z]\nc:\n- [d]\n- e\nf: &m {g: 1}\n";
    let p = doc(text);
    let root = &p.documents[0];
    let a = root.get("a").expect("a");
    assert!(matches!(a.kind, NodeKind::Sequence { flow: true, .. }));
    assert_eq!(a.anchor.as_deref(), Some("k"));
    assert!(text[a.span.clone()].ends_with(']'), "{:?}", &text[a.span.clone()]);
    assert!(matches!(root.get("b").expect("b").kind, NodeKind::Sequence { flow: true, .. }));
    let c = root.get("c").expect("c");
    let NodeKind::Sequence { items, flow: false } = &c.kind else { panic!("block sequence: {c:?}") };
    assert_eq!(items.len(), 2);
    assert!(matches!(root.get("f").expect("f").kind, NodeKind::Mapping { flow: true, .. }));
}

#[test]
fn quoted_scalars_end_at_their_closing_quote() {
    let text = "d: \"quo\\\"ted\" # c1\ns: 'it''s' # c2\nl: [ 'a' , \"b\" ] # c3\n";
    let p = doc(text);
    let root = &p.documents[0];
    let d = root.get("d").expect("d");
    assert_eq!(&text[d.span.clone()], "\"quo\\\"ted\"");
    assert_eq!(d.as_str(), Some("quo\"ted"));
    let s = root.get("s").expect("s");
    assert_eq!(&text[s.span.clone()], "'it''s'");
    let texts: Vec<&str> = p.comments.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, vec![" c1", " c2", " c3"]);
}
