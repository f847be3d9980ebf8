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

#[allow(clippy::too_many_lines, reason = "a generator: one arm per kind of line")]
/// Random block YAML near what fleets hold: mappings, lists (also indentless and nested),
/// anchors and aliases, comments, quoted and literal scalars, then a few bytes changed.
fn block_doc(seed: u64) -> String {
    let mut s = seed | 1;
    let mut next = move |n: u64| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % n
    };
    let words = ["age1abc", "^sops/h1\\.yaml$", "ENC[AES256_GCM,data:aGk=,type:str]", "a b", "x:y", "~", "null", "3.11.0", "-1", "é"];
    let mut out = String::new();
    let mut anchors: Vec<String> = Vec::new();
    fn emit(out: &mut String, next: &mut dyn FnMut(u64) -> u64, words: &[&str], anchors: &mut Vec<String>, indent: usize, depth: usize) {
        let pad = " ".repeat(indent);
        let lines = 1 + next(4);
        let as_list = next(2) == 0;
        for i in 0..lines {
            if next(6) == 0 {
                out.push_str(&format!("{pad}# note {i}\n"));
            }
            let lead = if as_list { format!("{pad}- ") } else { format!("{pad}k{i}: ") };
            let inner = if as_list { indent + 2 } else { indent + 2 * (1 + next(2) as usize) };
            match next(9) {
                0 if depth < 3 => {
                    out.push_str(lead.trim_end());
                    if next(3) == 0 {
                        let name = format!("n{}", anchors.len());
                        out.push_str(&format!(" &{name}"));
                        anchors.push(name);
                    }
                    out.push('\n');
                    let child = if !as_list && next(3) == 0 { indent } else { inner };
                    emit(out, next, words, anchors, child, depth + 1);
                }
                1 if !anchors.is_empty() => {
                    let a = &anchors[next(anchors.len() as u64) as usize];
                    out.push_str(&format!("{lead}*{a}\n"));
                }
                2 => out.push_str(&format!(
                    "{lead}|{}\n{}line one\n{}  two # kept\n\n",
                    ["", "-", "+"][next(3) as usize],
                    " ".repeat(inner),
                    " ".repeat(inner)
                )),
                3 => out.push_str(&format!("{lead}'it''s {i}'\n")),
                4 => out.push_str(&format!("{lead}\"q {i}\" # c\n")),
                5 => {
                    let name = format!("n{}", anchors.len());
                    out.push_str(&format!("{lead}&{name} {}\n", words[next(words.len() as u64) as usize]));
                    anchors.push(name);
                }
                6 if as_list => out.push_str(&format!("{lead}k: v\n{pad}  j: w\n")),
                7 => out.push_str(lead.trim_end()),
                _ => out.push_str(&format!("{lead}{}\n", words[next(words.len() as u64) as usize])),
            }
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    emit(&mut out, &mut next, &words, &mut anchors, 0, 0);
    // A few changed bytes: most make text the block reader must leave to the event reader.
    let mut bytes = out.into_bytes();
    for _ in 0..next(3) {
        let at = next(bytes.len() as u64) as usize;
        match next(3) {
            0 => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, b" -:#&*|'\"\n\t"[next(11) as usize]),
            _ => bytes.insert(at, b' '),
        }
    }
    String::from_utf8(bytes).unwrap_or_default()
}

#[test]
fn the_block_reader_reads_exactly_what_the_event_reader_reads() {
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config { cases: 3000, failure_persistence: None, ..Config::default() });
    let (read, left) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    runner
        .run(&proptest::num::u64::ANY, |seed| {
            let text = block_doc(seed);
            match block::parse(&text) {
                Some(fast) => {
                    read.set(read.get() + 1);
                    proptest::prop_assert_eq!(scan::parse(&text), Ok(fast), "on:\n{}", text);
                }
                None => left.set(left.get() + 1),
            }
            Ok(())
        })
        .expect("the readers agree");
    // Both paths are exercised.
    assert!(read.get() > 500 && left.get() > 300, "read {} left {}", read.get(), left.get());
}

#[test]
fn what_sops_and_hostsmith_write_takes_the_block_reader() {
    let sops = "a: ENC[AES256_GCM,data:aGk=,iv:aaaa,tag:bbbb,type:str]\n#ENC[AES256_GCM,data:Yw==,iv:cc,tag:dd,type:comment]\nsops:\n    age:\n        - recipient: age1abc\n          enc: |\n            -----BEGIN AGE ENCRYPTED FILE-----\n            YWdl\n            -----END AGE ENCRYPTED FILE-----\n    lastmodified: \"2026-12-01T20:57:55Z\"\n    mac: ENC[AES256_GCM,data:bWFj,iv:ee,tag:ff,type:str]\n    version: 3.11.0\n";
    let rules = "# rules\nkeys:\n  - &admin age1abc # the admin\ncreation_rules:\n  - path_regex: ^sops/web01\\.yaml$\n    key_groups:\n      - age:\n          - *admin\n";
    // Lists written without indentation under their keys, also inside a rule, whose first
    // item is a mapping or carries an anchor.
    let indentless = "keys:\n- &admin age1abc\n- &web01 age1def\ncreation_rules:\n- path_regex: ^sops/web01\\.yaml$\n  key_groups:\n  - age:\n    - *admin\n    - *web01\n";
    let anchored_map = "k:\n- &a\n  x: 1\n- b: 2\n  c:\n  - d\n";
    for text in [sops, rules, indentless, anchored_map] {
        let fast = block::parse(text).expect("in the block subset");
        assert_eq!(scan::parse(text), Ok(fast));
    }
    // Outside the subset, the event reader answers (and still reads these).
    for text in ["a: [1, 2]\n", "a: !!str b\n", "a: b\n  c\n", "a:\r\n  b: c\r\n", "--- \na: b\n", "a: \"x\\ty\"\n", "a: >\n  folded\n"] {
        assert_eq!(block::parse(text), None, "{text:?}");
        assert!(parse(text).is_ok(), "{text:?}");
    }
}
