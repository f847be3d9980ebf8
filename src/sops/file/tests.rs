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
fn a_recipient_that_is_not_one_is_refused_where_it_is_read() {
    // Found by the reader's property test: a line moved under `recipient:` made it a
    // two-line plain string; the file decrypted (another stanza opened it) and writing it
    // back failed on the recipient.
    let (_, r) = identity();
    let text = encrypt_new(&doc(), &[vec![r.clone()]], &EncryptionOptions::default()).expect("encrypts");
    let broken = text.replace(&format!("recipient: {r}"), &format!("recipient: {r}\n            moved line"));
    let err = EncryptedFile::parse(&broken).expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("not an age recipient") && msg.contains(&r[..20]), "{msg}");
}

#[test]
fn what_the_engine_writes_takes_the_fast_reader() {
    // The block reader exists for files this engine and sops write; if the emitter's layout
    // left its subset, every fleet-wide command would quietly fall back to the slow reader.
    let (_, r) = identity();
    let text = encrypt_new(&doc(), &[vec![r]], &EncryptionOptions::default()).expect("encrypts");
    assert!(crate::sops::yaml::block::parse(&text).is_some(), "{text}");
    assert!(crate::sops::yaml::block::parse(&emit_plain(&[doc()])).is_some());
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
    // A KMS key in the same group (the MAC does not cover metadata).
    let kms = "    kms:\n        - arn: arn:aws:kms:us-east-1:1:key/x\n          created_at: \"2024-01-01T00:00:00Z\"\n          enc: AQICAHh\n          aws_profile: \"\"\n";
    let with_kms = text.replace("    age:\n", &format!("{kms}    age:\n"));
    let file = EncryptedFile::parse(&with_kms).expect("parses");
    assert!(file.needs_external_sops());
    let mut dec = file.decrypt(std::slice::from_ref(&id)).expect("the age key still opens it");
    let again = dec.encrypt().expect("same data key: the kms entry stays valid");
    assert!(
        again.contains("arn:aws:kms:us-east-1:1:key/x") && again.contains("          enc: AQICAHh\n"),
        "kms entry written back:\n{again}"
    );
    assert!(matches!(dec.set_age_recipients(vec![vec![r.clone()]]), Err(SopsFileError::ExternalKeysRequired(_))));
    dec.rotate_data_key();
    assert!(matches!(dec.encrypt(), Err(SopsFileError::ExternalKeysRequired(_))), "cannot re-wrap for kms");

    // Only kms: nothing hostsmith can open.
    let age_block_start = text.find("    age:\n").expect("age block");
    let age_block_end = text.find("    lastmodified:").expect("lastmodified");
    let kms_only = format!("{}{}{}", &text[..age_block_start], kms, &text[age_block_end..]);
    assert!(!kms_only.contains("age1"));
    let err = EncryptedFile::parse(&kms_only).expect("parses").decrypt(std::slice::from_ref(&id)).expect_err("kms only");
    assert!(matches!(err, SopsFileError::ExternalKeysRequired(ref k) if k == "kms"), "{err}");
}

/// A stand-in for GnuPG: "PGP" messages are age files for one identity per fingerprint,
/// and every call is counted.
struct FakePgp {
    keys: Vec<(String, age::x25519::Identity)>,
    encrypted: std::sync::atomic::AtomicUsize,
    decrypted: std::sync::atomic::AtomicUsize,
}

impl FakePgp {
    fn new(fps: &[&str]) -> Self {
        let keys = fps.iter().map(|f| ((*f).to_string(), age::x25519::Identity::generate())).collect();
        Self { keys, encrypted: 0.into(), decrypted: 0.into() }
    }
    fn calls(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.encrypted.load(SeqCst), self.decrypted.load(SeqCst))
    }
}

impl Pgp for FakePgp {
    fn encrypt(&self, fp: &str, secret: &[u8]) -> Result<String, SopsFileError> {
        self.encrypted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (_, id) = self.keys.iter().find(|(f, _)| f == fp).ok_or_else(|| SopsFileError::PgpKeyMissing(fp.to_string()))?;
        crate::recipient::wrap(secret, &id.to_public().to_string()).map_err(|e| SopsFileError::Age(e.to_string()))
    }
    fn decrypt(&self, fp: &str, enc: &str) -> Result<Zeroizing<Vec<u8>>, SopsFileError> {
        self.decrypted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ids: Vec<&dyn age::Identity> = self.keys.iter().filter(|(f, _)| f == fp).map(|(_, i)| i as &dyn age::Identity).collect();
        metadata::unwrap_with(enc, &ids)
            .ok()
            .flatten()
            .ok_or_else(|| SopsFileError::PgpDecrypt { fingerprint: fp.into(), reason: "no secret key".into() })
    }
}

const NO_AGE: &[age::x25519::Identity] = &[];

const FP_A: &str = "0123456789ABCDEF0123456789ABCDEF01234567";
const FP_B: &str = "89ABCDEF0123456789ABCDEF0123456789ABCDEF";

fn spec(groups: &[(&[&str], &[&str])], threshold: u64) -> KeyGroups {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect();
    KeyGroups { groups: groups.iter().map(|(a, p)| KeyGroupSpec { age: strings(a), pgp: strings(p) }).collect(), threshold }
}

#[test]
fn pgp_keys_are_written_as_sops_writes_them_and_open_the_file() {
    let (id, r) = identity();
    let pgp = FakePgp::new(&[FP_A]);
    let text = encrypt_new_for(&doc(), &spec(&[(&[&r], &[FP_A])], 0), &EncryptionOptions::default(), &pgp).expect("encrypts");
    assert!(text.contains("    pgp:\n        - created_at: \""), "{text}");
    assert!(text.contains(&format!("          fp: \"{FP_A}\"\n")), "{text}");
    assert!(text.find("    mac:").expect("mac") < text.find("    pgp:").expect("pgp"), "pgp after mac, as sops writes it");
    let file = EncryptedFile::parse(&text).expect("parses");
    assert!(!file.needs_external_sops());
    assert_eq!(file.key_groups(), spec(&[(&[&r], &[FP_A])], 0));
    file.decrypt_with(NO_AGE, &pgp).expect("the PGP key opens it");
    assert_eq!(pgp.calls(), (1, 1));
    file.decrypt_with(std::slice::from_ref(&id), &pgp).expect("the age key opens it");
    assert_eq!(pgp.calls(), (1, 1), "no GnuPG call when an age identity opened the group");
    let err = file.decrypt_with(&[identity().0], &FakePgp::new(&[])).expect_err("neither");
    assert!(matches!(err, SopsFileError::NoMatchingIdentity { .. }) && err.to_string().contains(&format!("pgp:{FP_A}")), "{err}");
    let err = file.decrypt_with(&[identity().0], &NoPgp).expect_err("no GnuPG");
    assert!(matches!(err, SopsFileError::PgpUnavailable(_)), "{err}");
}

#[test]
fn kept_keys_keep_their_enc_and_only_new_keys_are_wrapped() {
    let (id, r) = identity();
    let (_, r2) = identity();
    let pgp = FakePgp::new(&[FP_A, FP_B]);
    let text = encrypt_new_for(&doc(), &spec(&[(&[&r], &[FP_A])], 0), &EncryptionOptions::default(), &pgp).expect("encrypts");
    let before = EncryptedFile::parse(&text).expect("parses");
    let mut dec = before.decrypt_with(std::slice::from_ref(&id), &pgp).expect("opens");
    dec.set_key_groups(&spec(&[(&[&r, &r2], &[&FP_A.to_lowercase(), FP_B])], 0)).expect("groups");
    let after = dec.encrypt_with(&pgp).expect("encrypts");
    assert_eq!(pgp.calls(), (2, 0), "one GnuPG call, for the new PGP key only");
    let enc_of = |t: &str, fp: &str| {
        let f = EncryptedFile::parse(t).expect("parses");
        f.metadata.groups[0].pgp.iter().find(|k| k.fp.eq_ignore_ascii_case(fp)).map(|k| (k.enc.clone(), k.created_at.clone()))
    };
    assert_eq!(enc_of(&text, FP_A), enc_of(&after, FP_A), "the kept PGP key's enc and created_at are unchanged");
    let age_enc = |t: &str| EncryptedFile::parse(t).expect("parses").metadata.groups[0].age[0].enc.clone();
    assert_eq!(age_enc(&text), age_enc(&after));
    EncryptedFile::parse(&after).expect("parses").decrypt_with(NO_AGE, &pgp).expect("opens by PGP");
    dec.rotate_data_key();
    let rotated = dec.encrypt_with(&pgp).expect("encrypts");
    assert_ne!(enc_of(&after, FP_A), enc_of(&rotated, FP_A), "a fresh data key is wrapped again for every key");
}

#[test]
fn shamir_groups_open_with_the_threshold_and_not_below() {
    let ids: Vec<_> = (0..3).map(|_| identity()).collect();
    let pgp = FakePgp::new(&[FP_A]);
    let keys = spec(&[(&[&ids[0].1], &[]), (&[&ids[1].1], &[]), (&[], &[FP_A])], 2);
    let text = encrypt_new_for(&doc(), &keys, &EncryptionOptions::default(), &pgp).expect("encrypts");
    assert!(text.contains("    shamir_threshold: 2\n    key_groups:\n        - hc_vault: []\n          age:\n"), "{text}");
    assert!(text.contains("        - pgp:\n            - created_at:"), "{text}");
    let file = EncryptedFile::parse(&text).expect("parses");
    assert_eq!(file.key_groups(), keys);
    for pair in [[0, 1], [1, 2], [0, 2]] {
        let age: Vec<_> = pair.iter().filter(|i| **i < 2).map(|i| ids[*i].0.clone()).collect();
        let with_pgp: &dyn Pgp = if pair.contains(&2) { &pgp } else { &NoPgp };
        let opened = file.decrypt_with(&age, with_pgp).expect("two groups open it");
        assert_eq!(opened.document(), &doc());
    }
    let err = file.decrypt_with(std::slice::from_ref(&ids[0].0), &NoPgp).expect_err("one group");
    let msg = err.to_string();
    assert!(matches!(err, SopsFileError::NotEnoughGroups { needed: 2, opened: 1, .. }), "{msg}");
    assert!(msg.contains("group 2 (") && msg.contains("group 3 (pgp:"), "{msg}");

    // Adding a key to one group splits the data key again; the file still opens by pairs.
    let mut dec = file.decrypt_with(&[ids[0].0.clone(), ids[1].0.clone()], &NoPgp).expect("opens");
    let (id4, r4) = identity();
    let grown = spec(&[(&[&ids[0].1, &r4], &[]), (&[&ids[1].1], &[]), (&[], &[FP_A])], 2);
    dec.set_key_groups(&grown).expect("groups");
    let again = EncryptedFile::parse(&dec.encrypt_with(&pgp).expect("encrypts")).expect("parses");
    again.decrypt_with(&[id4, ids[1].0.clone()], &NoPgp).expect("new key + group 2");
    again.decrypt_with(std::slice::from_ref(&ids[1].0), &pgp).expect("group 2 + PGP");
}

#[test]
fn thresholds_and_fingerprints_are_checked() {
    let (_, r) = identity();
    let two = |t| spec(&[(&[&r], &[]), (&[&r], &[])], t);
    let enc = |k: &KeyGroups| encrypt_new_for(&doc(), k, &EncryptionOptions::default(), &NoPgp);
    assert!(matches!(enc(&two(3)), Err(SopsFileError::Threshold { threshold: 3, groups: 2 })));
    assert!(matches!(enc(&two(1)), Err(SopsFileError::Threshold { threshold: 1, groups: 2 })));
    let all = enc(&two(0)).expect("0 means every group");
    assert!(all.contains("shamir_threshold: 2\n"), "{all}");
    for bad in ["--yes", "0123", "XYZ0123456789ABCDEF"] {
        assert!(matches!(enc(&spec(&[(&[&r], &[bad])], 0)), Err(SopsFileError::InvalidPgpFingerprint(_))), "{bad}");
    }
    let err = enc(&spec(&[(&[&r], &[FP_A])], 0)).expect_err("no GnuPG");
    assert!(matches!(err, SopsFileError::PgpUnavailable(_)), "{err}");
}

#[test]
fn a_fingerprint_read_from_a_file_reaches_gnupg_only_as_hex() {
    let (id, r) = identity();
    let pgp = FakePgp::new(&[FP_A]);
    let text = encrypt_new_for(&doc(), &spec(&[(&[&r], &[FP_A])], 0), &EncryptionOptions::default(), &pgp).expect("encrypts");
    let hostile = text.replace(&format!("fp: \"{FP_A}\""), "fp: --homedir=/tmp/x");
    assert_ne!(hostile, text);
    let mut dec = EncryptedFile::parse(&hostile).expect("parses").decrypt_with(std::slice::from_ref(&id), &pgp).expect("opens");
    dec.encrypt_with(&pgp).expect("kept as read while its enc is kept");
    dec.rotate_data_key();
    let err = dec.encrypt_with(&pgp).expect_err("re-wrapping for it");
    assert!(matches!(err, SopsFileError::InvalidPgpFingerprint(ref f) if f == "--homedir=/tmp/x"), "{err}");
    assert_eq!(pgp.calls().0, 1, "GnuPG never saw it");
}

#[test]
fn a_file_compares_its_key_groups_in_place_as_a_copy_of_them_compares() {
    let ids: Vec<_> = (0..3).map(|_| identity().1).collect();
    let pgp = FakePgp::new(&[FP_A]);
    let one = spec(&[(&[&ids[0], &ids[1]], &[FP_A])], 0);
    let three = spec(&[(&[&ids[0]], &[]), (&[&ids[1]], &[]), (&[], &[FP_A])], 2);
    let asked = [
        one.clone(),
        spec(&[(&[&ids[1], &ids[0], &ids[1]], &[&FP_A.to_lowercase()])], 0),
        spec(&[(&[&ids[0]], &[FP_A])], 0),
        spec(&[(&[&ids[0], &ids[1], &ids[2]], &[FP_A])], 0),
        spec(&[(&[&ids[0], &ids[1]], &[])], 0),
        three.clone(),
        KeyGroups { groups: three.groups.clone(), threshold: 3 },
        KeyGroups { groups: three.groups.clone(), threshold: 0 },
    ];
    for keys in [one, three] {
        let text = encrypt_new_for(&doc(), &keys, &EncryptionOptions::default(), &pgp).expect("encrypts");
        let file = EncryptedFile::parse(&text).expect("parses");
        for a in &asked {
            assert_eq!(file.has_key_groups(a), file.key_groups().same_as(a), "{a:?} against {keys:?}");
        }
        assert!(file.has_key_groups(&keys));
    }
}
