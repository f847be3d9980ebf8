//! Unit tests of the engine as a whole (no external programs; the interop tests against
//! real sops are in `tests/it/sops_engine.rs`).

use super::*;

fn identity() -> (age::x25519::Identity, String) {
    let id = age::x25519::Identity::generate();
    let r = id.to_public().to_string();
    (id, r)
}

const PLAIN: &str = "\
# top comment
name: web01 # inline
nested:
    # head of port
    port: 0x1F
    ratio: 1.5
    enabled: true
    when: 2001-12-14
    # foot of nested
list:
    - one
    # between
    - 2
    - key: v
      other: w
empty: \"\"
nothing: null
multi: |
    line one
    line two
plain_unencrypted: visible
quoted: 'it''s # not a comment' # after quoted
";

fn doc() -> Map {
    parse_plain(PLAIN).expect("plain parses").remove(0)
}

#[test]
fn plain_tree_has_types_and_comments() {
    let d = doc();
    assert_eq!(d.get_path(&["nested", "port"]), Some(&Value::Int(31)));
    assert_eq!(d.get_path(&["nested", "ratio"]), Some(&Value::Float(1.5)));
    assert_eq!(d.get_path(&["nested", "enabled"]), Some(&Value::Bool(true)));
    assert_eq!(d.get_path(&["nested", "when"]), Some(&Value::Time("2001-12-14T00:00:00Z".into())));
    assert_eq!(d.get("nothing"), Some(&Value::Null));
    assert_eq!(d.get("multi"), Some(&Value::Str("line one\nline two\n".into())));
    let top: Vec<&MapItem> = d.items().iter().take(3).collect();
    assert_eq!(top[0], &MapItem::Comment(" top comment".into()));
    assert_eq!(top[1], &MapItem::Comment(" inline".into()), "inline comment goes before its entry");
    let nested = d.get("nested").and_then(Value::as_map).expect("nested");
    assert_eq!(nested.items().first(), Some(&MapItem::Comment(" head of port".into())));
    assert_eq!(nested.items().last(), Some(&MapItem::Comment(" foot of nested".into())));
    assert_eq!(d.get("quoted"), Some(&Value::from("it's # not a comment")));
    let pos = d.items().iter().position(|i| matches!(i, MapItem::Entry { key, .. } if key == "quoted")).expect("quoted");
    assert_eq!(d.items()[pos - 1], MapItem::Comment(" after quoted".into()));
    let Some(Value::Seq(list)) = d.get("list") else { panic!("list") };
    assert_eq!(list[1], SeqItem::Comment(" between".into()));
}

#[test]
fn round_trip_through_our_own_format() {
    let (id, r) = identity();
    let text = encrypt_new(&doc(), &[vec![r.clone()]], &EncryptionOptions::default()).expect("encrypts");
    assert!(text.contains("plain_unencrypted: visible"), "{text}");
    assert!(!text.contains("web01"), "values are encrypted");
    assert!(!text.contains("head of port"), "comments are encrypted");
    assert!(text.contains("type:comment"));
    assert!(text.contains("    unencrypted_suffix: _unencrypted\n    version: 3.11.0\n"), "{text}");
    let file = EncryptedFile::parse(&text).expect("parses");
    assert_eq!(file.age_recipients(), vec![vec![r]]);
    assert!(!file.needs_external_sops());
    let dec = file.decrypt(std::slice::from_ref(&id)).expect("decrypts");
    assert_eq!(dec.document(), &doc());
    assert_eq!(dec.undecryptable_comments(), 0);
}

#[test]
fn unchanged_values_keep_their_ciphertext_and_rotation_changes_all() {
    let (id, r) = identity();
    let text = encrypt_new(&doc(), &[vec![r]], &EncryptionOptions::default()).expect("encrypts");
    let enc_lines =
        |t: &str| -> Vec<String> { t.lines().filter(|l| l.contains("ENC[") && !l.contains("mac:")).map(str::to_string).collect() };
    let mut dec = EncryptedFile::parse(&text).and_then(|f| f.decrypt(std::slice::from_ref(&id))).expect("decrypts");
    dec.document_mut().set_path(&["nested", "ratio"], Value::Float(2.5)).expect("set");
    let again = dec.encrypt().expect("encrypts");
    let (before, after) = (enc_lines(&text), enc_lines(&again));
    assert_eq!(before.len(), after.len());
    let changed: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    assert_eq!(changed.len(), 1, "only the changed value: {changed:?}");
    assert!(changed[0].trim_start().starts_with("ratio:"));
    dec.rotate_data_key();
    let rotated = dec.encrypt().expect("encrypts");
    assert!(enc_lines(&rotated).iter().all(|l| !after.contains(l)), "every ciphertext changes");
    let back = EncryptedFile::parse(&rotated).and_then(|f| f.decrypt(std::slice::from_ref(&id))).expect("decrypts");
    assert_eq!(back.document().get_path(&["nested", "ratio"]), Some(&Value::Float(2.5)));
}

#[test]
fn tampering_is_a_mac_error() {
    let (id, r) = identity();
    let text = encrypt_new(&doc(), &[vec![r]], &EncryptionOptions::default()).expect("encrypts");
    // A clear value changed: only the MAC can tell.
    let tampered = text.replace("plain_unencrypted: visible", "plain_unencrypted: changed");
    let err = EncryptedFile::parse(&tampered).and_then(|f| f.decrypt(std::slice::from_ref(&id))).expect_err("tampered");
    assert!(matches!(err, SopsFileError::MacMismatch(_)), "{err}");
    assert!(err.to_string().contains("MAC"), "{err}");
    // Two encrypted values swapped between keys: their additional data no longer matches.
    let a = text.lines().find(|l| l.starts_with("name: ")).expect("name line").to_string();
    let b = text.lines().find(|l| l.starts_with("empty: ")).expect("empty line").to_string();
    let swapped = text.replace(&a, &format!("name: {}", &b[7..]));
    let swapped_err = EncryptedFile::parse(&swapped).and_then(|f| f.decrypt(std::slice::from_ref(&id))).expect_err("swapped");
    assert!(matches!(swapped_err, SopsFileError::MacMismatch(_)), "{swapped_err}");
}

#[test]
fn wrong_identity_names_the_recipients() {
    let (_, r) = identity();
    let (other, _) = identity();
    let text = encrypt_new(&doc(), &[vec![r.clone()]], &EncryptionOptions::default()).expect("encrypts");
    let err = EncryptedFile::parse(&text).expect("parses").decrypt(&[other]).expect_err("wrong key");
    assert!(matches!(err, SopsFileError::NoMatchingIdentity { .. }), "{err}");
    assert!(err.to_string().contains(&r), "{err}");
}

#[test]
fn rules_select_what_is_encrypted() {
    let (id, r) = identity();
    let options = EncryptionOptions { encrypted_regex: Some("^(port|list)$".into()), mac_only_encrypted: true, ..Default::default() };
    let text = encrypt_new(&doc(), &[vec![r]], &options).expect("encrypts");
    assert!(text.contains("name: web01"), "{text}");
    assert!(!text.contains("port: 0x1F") && text.contains("port: ENC["));
    assert!(text.contains("encrypted_regex: \"^(port|list)$\"") && text.contains("mac_only_encrypted: true"), "{text}");
    let dec = EncryptedFile::parse(&text).and_then(|f| f.decrypt(std::slice::from_ref(&id))).expect("decrypts");
    assert_eq!(dec.document(), &doc());
    // With mac_only_encrypted, clear values may change without breaking the MAC.
    let edited = text.replace("name: web01", "name: web02");
    assert!(EncryptedFile::parse(&edited).and_then(|f| f.decrypt(std::slice::from_ref(&id))).is_ok());
    let two = EncryptionOptions { encrypted_regex: Some("x".into()), unencrypted_suffix: Some("_u".into()), ..Default::default() };
    assert!(matches!(encrypt_new(&doc(), &[vec![identity().1]], &two), Err(SopsFileError::Options(_))));
    let bad = EncryptionOptions { encrypted_regex: Some("(".into()), ..Default::default() };
    assert!(matches!(encrypt_new(&doc(), &[vec![identity().1]], &bad), Err(SopsFileError::Options(_))));
}

#[test]
fn map_paths() {
    let mut m = Map::new();
    m.set_path(&["a", "b", "c"], Value::from("x")).expect("creates maps");
    m.set_path(&["a", "d"], Value::Int(1)).expect("adds");
    m.set_path(&["a", "b", "c"], Value::from("y")).expect("replaces");
    assert_eq!(m.get_path(&["a", "b", "c"]), Some(&Value::from("y")));
    assert_eq!(m.get("a").and_then(Value::as_map).map(|a| a.keys().collect::<Vec<_>>()), Some(vec!["b", "d"]));
    let err = m.set_path(&["a", "d", "e"], Value::Null).expect_err("d is not a map");
    assert!(err.to_string().contains("`a:d`"), "{err}");
    assert_eq!(m.remove_path(&["a", "b"]).and_then(|v| v.as_map().map(Map::len)), Some(1));
    assert_eq!(m.get_path(&["a", "b", "c"]), None);
    assert!(m.set_path(&[], Value::Null).is_err());
}

#[test]
fn multiple_documents_round_trip() {
    let (id, r) = identity();
    let docs = parse_plain("a: 1\n---\n# second\nb: two\n").expect("parses");
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].items()[0], MapItem::Comment(" second".into()));
    let text = encrypt_new_documents(&docs, &[vec![r]], &EncryptionOptions::default()).expect("encrypts");
    assert_eq!(text.matches("\nsops:\n").count() + usize::from(text.starts_with("sops:")), 2, "{text}");
    let dec = EncryptedFile::parse(&text).and_then(|f| f.decrypt(std::slice::from_ref(&id))).expect("decrypts");
    assert_eq!(dec.documents(), &docs[..]);
}

#[test]
fn garbage_is_an_error() {
    let (_, r) = identity();
    let good = encrypt_new(&doc(), &[vec![r]], &EncryptionOptions::default()).expect("encrypts");
    assert!(matches!(EncryptedFile::parse("a: [1"), Err(SopsFileError::Yaml(_))));
    assert!(matches!(EncryptedFile::parse("a: 1\n"), Err(SopsFileError::NotSops)));
    assert!(matches!(EncryptedFile::parse(""), Err(SopsFileError::NotSops)));
    assert!(matches!(EncryptedFile::parse("- 1\n"), Err(SopsFileError::Unsupported(_))));
    assert!(matches!(EncryptedFile::parse("a: 1\nsops: 3\n"), Err(SopsFileError::Metadata(_))));
    let no_lm = good.lines().filter(|l| !l.contains("lastmodified")).collect::<Vec<_>>().join("\n");
    assert!(matches!(EncryptedFile::parse(&no_lm), Err(SopsFileError::Metadata(_))));
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    assert!(matches!(parse_plain(bomb), Err(SopsFileError::Unsupported(_))));
    assert!(matches!(parse_plain("1: x\n"), Err(SopsFileError::Unsupported(_))));
    assert!(matches!(parse_plain("a: 1\na: 2\n"), Err(SopsFileError::Unsupported(_))));
    assert!(matches!(parse_plain("a: 12345678901234567890\n"), Err(SopsFileError::InvalidValue { .. })));
}

#[test]
fn errors_never_show_values() {
    let (id, r) = identity();
    let mut d = Map::new();
    d.set_path(&["secret"], Value::from("hunter2-very-secret")).expect("set");
    let text = encrypt_new(&d, &[vec![r]], &EncryptionOptions::default()).expect("encrypts");
    let line = text.lines().find(|l| l.starts_with("secret:")).expect("line").to_string();
    for broken in [line.replace("data:", "data:AAAA"), line.replace(",tag:", ",tag:!"), line.replace("type:str", "type:zzz")] {
        let t = text.replace(&line, &broken);
        let err = EncryptedFile::parse(&t).and_then(|f| f.decrypt(std::slice::from_ref(&id))).expect_err("broken");
        let msg = err.to_string();
        assert!(msg.contains("`secret`") && !msg.contains("hunter2"), "{msg}");
    }
}

#[test]
fn plain_emission_reads_back() {
    let d = doc();
    let text = emit_plain(std::slice::from_ref(&d));
    assert_eq!(parse_plain(&text).expect("reads back").remove(0), d, "{text}");
    let mut m = Map::new();
    for s in ["", "yes", "1.5", " lead", "a: b", "tab\there", "ctl\u{1}", "é ü", "line\n", "two\n\n", "-x", "#x", "null", "0o17"] {
        m.push(format!("k{}", m.len()), Value::from(s));
    }
    m.push("a key: with colon", Value::Float(1e21));
    m.push("1", Value::Float(f64::NEG_INFINITY));
    m.push("t", Value::Time("2001-12-14T21:59:43.1-05:00".into()));
    m.push(
        "seqs",
        Value::Seq(vec![
            SeqItem::Value(Value::Seq(vec![SeqItem::Value(Value::Int(1)), SeqItem::Comment(" c".into())])),
            SeqItem::Value(Value::Map(Map::new())),
        ]),
    );
    let text = emit_plain(std::slice::from_ref(&m));
    assert_eq!(parse_plain(&text).expect("reads back").remove(0), m, "{text}");
}

#[test]
fn other_key_types_are_kept_and_detected() {
    let (id, r) = identity();
    let text = encrypt_new(&doc(), &[vec![r.clone()]], &EncryptionOptions::default()).expect("encrypts");
    // A pgp key in the same group (the MAC does not cover metadata).
    let pgp = "    pgp:\n        - created_at: \"2024-01-01T00:00:00Z\"\n          enc: |\n            -----BEGIN PGP MESSAGE-----\n            wcBMA\n            -----END PGP MESSAGE-----\n          fp: 0123456789ABCDEF\n";
    let with_pgp = text.replace("    unencrypted_suffix:", &format!("{pgp}    unencrypted_suffix:"));
    let file = EncryptedFile::parse(&with_pgp).expect("parses");
    assert!(file.needs_external_sops());
    let mut dec = file.decrypt(std::slice::from_ref(&id)).expect("the age key still opens it");
    let again = dec.encrypt().expect("same data key: the pgp entry stays valid");
    let quoted_fp = pgp.replace("fp: 0123456789ABCDEF", "fp: \"0123456789ABCDEF\"");
    assert!(again.contains(&quoted_fp), "pgp entry written back (digit-first fp quoted):\n{again}");
    assert!(matches!(dec.set_age_recipients(vec![vec![r.clone()]]), Err(SopsFileError::ExternalKeysRequired(_))));
    dec.rotate_data_key();
    assert!(matches!(dec.encrypt(), Err(SopsFileError::ExternalKeysRequired(_))), "cannot re-wrap for pgp");

    // Only pgp: nothing hostsmith can open.
    let age_block_start = text.find("    age:\n").expect("age block");
    let age_block_end = text.find("    lastmodified:").expect("lastmodified");
    let pgp_only = format!("{}{}{}", &text[..age_block_start], pgp, &text[age_block_end..]);
    let err = EncryptedFile::parse(&pgp_only).expect("parses").decrypt(std::slice::from_ref(&id)).expect_err("pgp only");
    assert!(matches!(err, SopsFileError::ExternalKeysRequired(ref k) if k == "pgp"), "{err}");

    // Two key groups: Shamir.
    let age_block = &text[age_block_start..age_block_end];
    let entries: String = age_block.lines().skip(1).map(|l| format!("    {l}\n")).collect();
    let groups = format!(
        "    key_groups:\n        - hc_vault: []\n          age:\n{entries}        - hc_vault: []\n          age:\n{entries}    shamir_threshold: 2\n"
    );
    let shamir = format!("{}{}{}", &text[..age_block_start], groups, &text[age_block_end..]);
    let file = EncryptedFile::parse(&shamir).expect("parses");
    assert_eq!(file.age_recipients(), vec![vec![r.clone()], vec![r]]);
    assert!(file.needs_external_sops());
    assert!(matches!(file.decrypt(std::slice::from_ref(&id)), Err(SopsFileError::ShamirUnsupported(2))));
}
