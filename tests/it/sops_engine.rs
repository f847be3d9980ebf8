//! The native SOPS engine against real sops 3.11, both directions.
//!
//! sops gets the age identity through `SOPS_AGE_KEY` (never argv) and runs in a temporary
//! directory with its own HOME/XDG_CONFIG_HOME, so no user configuration or key leaks in.

use std::path::Path;
use std::process::{Command, Output};

use age::secrecy::ExposeSecret as _;
use hostsmith::sops::file::{
    Decrypted, EncryptedFile, EncryptionOptions, Map, MapItem, SeqItem, SopsFileError, Value, emit_plain, encrypt_new, parse_plain,
};

use crate::common;

struct Key {
    id: age::x25519::Identity,
    recipient: String,
}

fn key() -> Key {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    Key { id, recipient }
}

/// A `sops` command that sees only `key`'s identity and runs in `dir`.
fn sops_cmd(sops: &Path, dir: &Path, key: &Key) -> Command {
    let mut cmd = Command::new(sops);
    cmd.current_dir(dir)
        .env("SOPS_AGE_KEY", key.id.to_string().expose_secret())
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_RECIPIENTS")
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join(".config"));
    cmd
}

fn sops_decrypt(sops: &Path, dir: &Path, key: &Key, file: &str, output: &str) -> Output {
    common::run(sops_cmd(sops, dir, key).args(["--decrypt", "--input-type", "yaml", "--output-type", output, file]))
}

fn write(dir: &Path, name: &str, text: &str) {
    common::write(&dir.join(name), text);
}

fn decrypt(text: &str, key: &Key) -> Result<Decrypted, SopsFileError> {
    EncryptedFile::parse(text)?.decrypt(std::slice::from_ref(&key.id))
}

/// Compares one of our values with sops' JSON rendering of it (numbers numerically).
fn same_as_json(ours: &Value, theirs: &serde_json::Value, at: &str) -> Result<(), String> {
    use serde_json::Value as J;
    let ok = match (ours, theirs) {
        (Value::Null, J::Null) => true,
        (Value::Bool(a), J::Bool(b)) => a == b,
        (Value::Int(a), J::Number(b)) => b.as_i64() == Some(*a),
        (Value::Float(a), J::Number(b)) => b.as_f64() == Some(*a),
        (Value::Str(a) | Value::Time(a), J::String(b)) => a == b,
        (Value::Map(m), J::Object(o)) => {
            if m.len() != o.len() {
                return Err(format!("{at}: {} keys here, {} in sops' output", m.len(), o.len()));
            }
            for (k, v) in m.entries() {
                let theirs = o.get(k).ok_or_else(|| format!("{at}: key `{k}` missing in sops' output"))?;
                same_as_json(v, theirs, &format!("{at}:{k}"))?;
            }
            true
        }
        (v @ Value::Seq(_), J::Array(a)) => {
            let ours: Vec<&Value> = v.seq_values().collect();
            if ours.len() != a.len() {
                return Err(format!("{at}: {} items here, {} in sops' output", ours.len(), a.len()));
            }
            for (i, (x, y)) in ours.iter().zip(a).enumerate() {
                same_as_json(x, y, &format!("{at}[{i}]"))?;
            }
            true
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(format!("{at}: {ours:?} here, {theirs} in sops' output")) }
}

/// Every comment of a tree, in walk order.
fn comments(root: &Map) -> Vec<String> {
    fn value(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Map(m) => map(m, out),
            Value::Seq(items) => {
                for i in items {
                    match i {
                        SeqItem::Comment(c) => out.push(c.clone()),
                        SeqItem::Value(v) => value(v, out),
                    }
                }
            }
            _ => {}
        }
    }
    fn map(m: &Map, out: &mut Vec<String>) {
        for item in m.items() {
            match item {
                MapItem::Comment(c) => out.push(c.clone()),
                MapItem::Entry { value: v, .. } => value(v, out),
            }
        }
    }
    let mut out = Vec::new();
    map(root, &mut out);
    out
}

/// Every `ENC[…]` string in a file except the MAC's.
fn ciphertexts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("mac:")) {
        let mut rest = line;
        while let Some(start) = rest.find("ENC[") {
            let end = rest[start..].find(']').map_or(rest.len(), |e| start + e + 1);
            out.push(rest[start..end].to_string());
            rest = &rest[end..];
        }
    }
    out.sort();
    out
}

const RICH: &str = r#"# Secrets of web01
name: web01
port: 8443
ratio: 0.25
enabled: true
disabled: false
empty: ""
nothing: null
unicode: "ключ → ✓ 🦀"
"key with: colon": quoted key
"yes": not a bool key
ssh_host_ed25519_key: |
    -----BEGIN OPENSSH PRIVATE KEY-----
    b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==
    -----END OPENSSH PRIVATE KEY-----
folded: "line one\nline two"
tabbed: "a\tb"
deploy-keys:
    # per-repository keys
    nix-config: ssh-ed25519 AAAAC3Nza
    nested:
        deeper:
            - 1
            - two
            - 3.5
            - - inner
              - list
            - map: in list
              other: 2
settings_unencrypted:
    visible: in clear
    count: 3
negative: -42
big: 9007199254740993
small_float: 1.5e-7
when: 2001-12-14
# trailing comment
"#;

#[test]
fn hostsmith_written_file_decrypts_with_sops() {
    let Some(sops) = common::peer("sops") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key();
    let doc = parse_plain(RICH).expect("fixture parses").remove(0);
    let text = encrypt_new(&doc, &[vec![key.recipient.clone()]], &EncryptionOptions::default()).expect("encrypts");
    assert!(text.contains("    visible: in clear\n"), "the _unencrypted subtree stays in clear:\n{text}");
    assert!(!text.contains("web01") && !text.contains("OPENSSH") && !text.contains("per-repository"), "{text}");
    write(dir.path(), "secrets.yaml", &text);

    let json = sops_decrypt(&sops, dir.path(), &key, "secrets.yaml", "json");
    let theirs: serde_json::Value = serde_json::from_str(&common::ok(&json)).expect("sops prints JSON");
    same_as_json(&Value::Map(doc.clone()), &theirs, "").expect("sops decrypts every value");
    assert!(!common::stderr(&json).contains("unencrypted comment"), "{}", common::stderr(&json));

    let yaml = sops_decrypt(&sops, dir.path(), &key, "secrets.yaml", "yaml");
    let shown = parse_plain(&common::ok(&yaml)).expect("sops' output parses").remove(0);
    assert_eq!(comments(&shown), comments(&doc), "every comment survives, in order");
    assert_eq!(shown.get("ssh_host_ed25519_key"), doc.get("ssh_host_ed25519_key"));

    // sops can change the file we wrote (it accepts our metadata), and we read its result.
    let set = common::run(sops_cmd(&sops, dir.path(), &key).args(["set", "secrets.yaml", r#"["added"]"#, r#""by sops""#]));
    common::ok(&set);
    let after = std::fs::read_to_string(dir.path().join("secrets.yaml")).expect("read");
    let back = decrypt(&after, &key).expect("we read what sops rewrote");
    assert_eq!(back.document().get("added"), Some(&Value::from("by sops")));
    assert_eq!(back.document().get_path(&["deploy-keys", "nested"]), doc.get_path(&["deploy-keys", "nested"]));
}

/// A plaintext in sops' own layout, so its comments sit where sops writes them.
const SOPS_FIXTURE: &str = r#"# top comment
# second top comment
database:
    # the primary
    host: db.internal
    port: 5432
    password: "hunter2 with spaces"
    # end of database
replicas:
    - host: r1
      port: 5433
    # between replicas
    - host: r2
      weight: 0.5
flags:
    - true
    - false
certificate: |
    -----BEGIN CERTIFICATE-----
    MIIB
    -----END CERTIFICATE-----
motd: "two\nlines"
public_unencrypted: kept in clear
# end comment
"#;

#[test]
fn sops_written_file_is_read_changed_and_rekeyed() {
    let Some(sops) = common::peer("sops") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = (key(), key());
    write(dir.path(), "plain.yaml", SOPS_FIXTURE);
    let enc = common::run(sops_cmd(&sops, dir.path(), &first).args(["--encrypt", "--age", &first.recipient, "plain.yaml"]));
    let original = common::ok(&enc);

    let file = EncryptedFile::parse(&original).expect("parses sops' file");
    assert_eq!(file.age_recipients(), vec![vec![first.recipient.clone()]]);
    assert!(!file.needs_external_sops());
    let mut dec = file.decrypt(std::slice::from_ref(&first.id)).expect("decrypts and the MAC verifies");
    assert_eq!(dec.undecryptable_comments(), 0);
    let expected = parse_plain(SOPS_FIXTURE).expect("fixture parses").remove(0);
    assert_eq!(dec.document(), &expected, "same values and comments as the plaintext");

    write(dir.path(), "original.yaml", &original);
    let before = common::ok(&sops_decrypt(&sops, dir.path(), &first, "original.yaml", "yaml"));

    dec.document_mut().set_path(&["added"], Value::from("new value")).expect("set");
    dec.set_age_recipients(vec![vec![first.recipient.clone(), second.recipient.clone()]]).expect("recipients");
    let rewritten = dec.encrypt().expect("encrypts");
    assert_eq!(
        EncryptedFile::parse(&rewritten).expect("parses").age_recipients(),
        vec![vec![first.recipient.clone(), second.recipient.clone()]]
    );
    write(dir.path(), "rewritten.yaml", &rewritten);
    for k in [&first, &second] {
        let out = sops_decrypt(&sops, dir.path(), k, "rewritten.yaml", "yaml");
        assert_eq!(common::ok(&out), format!("{before}added: new value\n"), "sops shows every original value and comment plus the new one");
        assert!(!common::stderr(&out).contains("unencrypted comment"), "{}", common::stderr(&out));
    }
}

#[test]
fn a_recipient_added_in_place_opens_the_file_for_sops_and_the_rest_is_kept_byte_for_byte() {
    let Some(sops) = common::peer("sops") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second, third) = (key(), key(), key());
    write(dir.path(), "plain.yaml", SOPS_FIXTURE);
    let original =
        common::ok(&common::run(sops_cmd(&sops, dir.path(), &first).args(["--encrypt", "--age", &first.recipient, "plain.yaml"])));
    write(dir.path(), "original.yaml", &original);
    let before = common::ok(&sops_decrypt(&sops, dir.path(), &first, "original.yaml", "yaml"));

    // sops' own layout, then ours: each gets a stanza spliced in, and again.
    let mut text = original.clone();
    for (round, added) in [&second, &third].into_iter().enumerate() {
        let file = EncryptedFile::parse(&text).expect("parses");
        let mut dec = file.decrypt(std::slice::from_ref(&first.id)).expect("decrypts");
        let mut recipients = file.age_recipients().remove(0);
        recipients.push(added.recipient.clone());
        dec.set_age_recipients(vec![recipients]).expect("recipients");
        let out = dec.encrypt_in_place(&file, &text, &hostsmith::sops::file::NoPgp).expect("encrypts");
        // Everything but the new stanza, `lastmodified` and `mac` is the text as it was.
        let changed = |l: &str| l.trim_start().starts_with("lastmodified:") || l.trim_start().starts_with("mac:");
        let kept: Vec<&str> = text.lines().filter(|l| !changed(l)).collect();
        let now: Vec<&str> = out.lines().filter(|l| !changed(l)).collect();
        let at = kept.iter().zip(&now).take_while(|(a, b)| a == b).count();
        let stanza = now.len() - kept.len();
        assert_eq!(&now[..at], &kept[..at], "round {round}");
        assert_eq!(&now[at + stanza..], &kept[at..], "round {round}: only a stanza was inserted");
        assert!(now[at].trim_start().starts_with(&format!("- recipient: {}", added.recipient)), "round {round}: {}", now[at]);
        write(dir.path(), "added.yaml", &out);
        for k in [&first, added] {
            assert_eq!(common::ok(&sops_decrypt(&sops, dir.path(), k, "added.yaml", "yaml")), before, "round {round}");
        }
        text = out;
    }

    // A change of values is not an addition of keys: the file is written whole.
    let file = EncryptedFile::parse(&text).expect("parses");
    let mut dec = file.decrypt(std::slice::from_ref(&first.id)).expect("decrypts");
    dec.document_mut().set_path(&["added"], Value::from("new value")).expect("set");
    let out = dec.encrypt_in_place(&file, &text, &hostsmith::sops::file::NoPgp).expect("encrypts");
    write(dir.path(), "changed.yaml", &out);
    assert_eq!(common::ok(&sops_decrypt(&sops, dir.path(), &third, "changed.yaml", "yaml")), format!("{before}added: new value\n"));
}

#[test]
fn unchanged_ciphertexts_survive_a_rekey_and_rotation_replaces_them_all() {
    let Some(sops) = common::peer("sops") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = (key(), key());
    write(dir.path(), "plain.yaml", SOPS_FIXTURE);
    let original =
        common::ok(&common::run(sops_cmd(&sops, dir.path(), &first).args(["--encrypt", "--age", &first.recipient, "plain.yaml"])));
    write(dir.path(), "original.yaml", &original);
    let before = common::ok(&sops_decrypt(&sops, dir.path(), &first, "original.yaml", "yaml"));

    let mut dec = decrypt(&original, &first).expect("decrypts");
    dec.set_age_recipients(vec![vec![second.recipient.clone()]]).expect("recipients");
    let rekeyed = dec.encrypt().expect("encrypts");
    assert_eq!(ciphertexts(&rekeyed), ciphertexts(&original), "a re-key keeps every value's and comment's ciphertext");
    assert!(!rekeyed.contains(&first.recipient), "the old recipient is gone");
    write(dir.path(), "rekeyed.yaml", &rekeyed);
    assert_eq!(common::ok(&sops_decrypt(&sops, dir.path(), &second, "rekeyed.yaml", "yaml")), before);
    assert!(!sops_decrypt(&sops, dir.path(), &first, "rekeyed.yaml", "yaml").status.success(), "the removed key no longer opens it");

    dec.rotate_data_key();
    let rotated = dec.encrypt().expect("encrypts");
    let (old, new) = (ciphertexts(&original), ciphertexts(&rotated));
    assert_eq!(old.len(), new.len());
    assert!(new.iter().all(|c| !old.contains(c)), "rotation re-encrypts everything");
    write(dir.path(), "rotated.yaml", &rotated);
    assert_eq!(common::ok(&sops_decrypt(&sops, dir.path(), &second, "rotated.yaml", "yaml")), before);
}

#[test]
fn a_wrong_mac_is_refused_here_and_by_sops() {
    let Some(sops) = common::peer("sops") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let k = key();
    let doc = parse_plain(SOPS_FIXTURE).expect("fixture").remove(0);
    let text = encrypt_new(&doc, &[vec![k.recipient.clone()]], &EncryptionOptions::default()).expect("encrypts");

    // A validly encrypted value for the same key and path, spliced in without a new MAC.
    let mut dec = decrypt(&text, &k).expect("decrypts");
    dec.document_mut().set_path(&["database", "host"], Value::from("evil.example")).expect("set");
    let forged = dec.encrypt().expect("encrypts");
    let line = |t: &str| t.lines().find(|l| l.trim_start().starts_with("host: ENC[")).expect("host line").to_string();
    let spliced = text.replace(&line(&text), &line(&forged));
    assert_ne!(spliced, text);
    let err = decrypt(&spliced, &k).expect_err("MAC must not match");
    assert!(matches!(err, SopsFileError::MacMismatch(_)) && err.to_string().contains("MAC mismatch"), "{err}");
    write(dir.path(), "spliced.yaml", &spliced);
    let out = sops_decrypt(&sops, dir.path(), &k, "spliced.yaml", "yaml");
    assert!(!out.status.success() && common::stderr(&out).contains("MAC mismatch"), "{}", common::stderr(&out));

    // A clear value changed: only the MAC notices.
    let edited = text.replace("public_unencrypted: kept in clear", "public_unencrypted: changed");
    assert!(matches!(decrypt(&edited, &k), Err(SopsFileError::MacMismatch(_))));
    write(dir.path(), "edited.yaml", &edited);
    assert!(!sops_decrypt(&sops, dir.path(), &k, "edited.yaml", "yaml").status.success());

    // The MAC itself damaged.
    let mac_line = text.lines().find(|l| l.trim_start().starts_with("mac: ENC[")).expect("mac line");
    let bad_mac = text.replace(mac_line, &mac_line.replacen("data:", "data:AA", 1));
    let err = decrypt(&bad_mac, &k).expect_err("bad mac");
    assert!(matches!(err, SopsFileError::MacMismatch(_)), "{err}");
    write(dir.path(), "badmac.yaml", &bad_mac);
    assert!(!sops_decrypt(&sops, dir.path(), &k, "badmac.yaml", "yaml").status.success());

    // A value's ciphertext damaged: its tag fails, and the error names the key, not the value.
    let host = line(&text);
    let damaged = text.replace(&host, &host.replacen("data:", "data:AAAA", 1));
    let err = decrypt(&damaged, &k).expect_err("damaged value");
    assert!(err.to_string().contains("`database:host`") && !err.to_string().contains("db.internal"), "{err}");
    write(dir.path(), "damaged.yaml", &damaged);
    assert!(!sops_decrypt(&sops, dir.path(), &k, "damaged.yaml", "yaml").status.success());
}

#[test]
fn a_wrong_identity_names_the_recipients() {
    let (owner, stranger) = (key(), key());
    let doc = parse_plain("a: 1\n").expect("plain").remove(0);
    let text = encrypt_new(&doc, &[vec![owner.recipient.clone()]], &EncryptionOptions::default()).expect("encrypts");
    let err = decrypt(&text, &stranger).expect_err("not ours");
    let msg = err.to_string();
    assert!(msg.contains("none of the age identities") && msg.contains(&owner.recipient), "{msg}");
    assert!(!msg.contains("AGE-SECRET-KEY"), "{msg}");
    let err = EncryptedFile::parse(&text).expect("parses").decrypt(&[]).expect_err("no identity");
    assert!(matches!(err, SopsFileError::NoIdentities), "{err}");
}

#[test]
fn garbage_gives_errors_not_panics() {
    let k = key();
    let doc = parse_plain(SOPS_FIXTURE).expect("fixture").remove(0);
    let good = encrypt_new(&doc, &[vec![k.recipient.clone()]], &EncryptionOptions::default()).expect("encrypts");
    let host = good.lines().find(|l| l.trim_start().starts_with("host: ENC[")).expect("host").to_string();
    let cases: Vec<(String, &str)> = vec![
        ("{{{ not yaml".into(), "not valid YAML"),
        ("\u{0}\u{1}binary".into(), "YAML"),
        ("a: 1\nb: [2]\n".into(), "no `sops` metadata"),
        (good.replace(&host, &host.replacen("data:", "data:@@", 1)), "malformed"),
        (good.replace(&host, &host[..host.len() / 2]), "malformed"),
        (good.replace("    age:\n", "    age: nope\n    x:\n"), "invalid sops metadata"),
    ];
    for (text, expected) in &cases {
        let err = EncryptedFile::parse(text).and_then(|f| f.decrypt(std::slice::from_ref(&k.id))).expect_err("garbage");
        assert!(err.to_string().contains(expected), "{expected:?} not in: {err}");
    }

    // Deterministic pseudo-random mutations of a valid file: every outcome is Ok or Err.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let bytes = good.as_bytes();
    let mut outcomes = (0usize, 0usize);
    for _ in 0..3000 {
        let mut m = bytes.to_vec();
        for _ in 0..=(next() % 4) {
            let at = (next() as usize) % m.len().max(1);
            match next() % 6 {
                0 => m[at] = (next() & 0xFF) as u8,
                1 => {
                    m.remove(at);
                }
                2 => m.insert(at, b"-:#[]{}&*!|>'\"%@`, \n\t"[(next() % 21) as usize]),
                3 => m.truncate(at),
                4 => {
                    let end = (at + (next() as usize % 80)).min(m.len());
                    let chunk = m[at..end].to_vec();
                    m.splice(at..at, chunk);
                }
                _ => m[at] = b"ABCabc0129+/="[(next() % 13) as usize],
            }
            if m.is_empty() {
                break;
            }
        }
        let text = String::from_utf8_lossy(&m);
        match EncryptedFile::parse(&text).and_then(|f| f.decrypt(std::slice::from_ref(&k.id))) {
            Ok(_) => outcomes.0 += 1,
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains("hunter2") && !msg.contains("AGE-SECRET-KEY"), "{msg}");
                outcomes.1 += 1;
            }
        }
    }
    assert!(outcomes.1 > 2000, "most mutations are caught: {outcomes:?}");
}

#[test]
fn output_is_plain_yaml_for_pyyaml() {
    let Some(python) = common::python_with("yaml") else { return };
    let k = key();
    let doc = parse_plain(RICH).expect("fixture").remove(0);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "enc.yaml", &encrypt_new(&doc, &[vec![k.recipient]], &EncryptionOptions::default()).expect("encrypts"));
    write(dir.path(), "plain.yaml", &emit_plain(std::slice::from_ref(&doc)));
    let script = "import sys, yaml, json\nfor f in sys.argv[1:]:\n    d = yaml.safe_load(open(f, encoding='utf-8'))\n    print(json.dumps(d, default=str, ensure_ascii=False))\n";
    let out = common::run(Command::new(&python).current_dir(dir.path()).args(["-c", script, "enc.yaml", "plain.yaml"]));
    let text = common::ok(&out);
    let mut lines = text.lines();
    let enc: serde_json::Value = serde_json::from_str(lines.next().expect("enc line")).expect("json");
    assert!(enc["sops"]["age"][0]["enc"].as_str().is_some_and(|s| s.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n")));
    assert!(enc["name"].as_str().is_some_and(|s| s.starts_with("ENC[AES256_GCM,")));
    let plain: serde_json::Value = serde_json::from_str(lines.next().expect("plain line")).expect("json");
    for (k, v) in doc.entries() {
        // PyYAML (YAML 1.1) reads dates as dates; the rest must be exactly our values.
        if matches!(v, Value::Time(_)) {
            continue;
        }
        same_as_json(v, &plain[k], k).expect("PyYAML reads what we wrote");
    }
}

/// Plaintext exercising every selector: key suffixes, key regexes, comment markers.
const RULES_FIXTURE: &str = "\
# sops:enc
secret: s1
public: p1
# sops:clear
token_enc: t1
key_clear: c1
nested:
    # sops:enc
    password: pw
    public_port: 22
    items:
        # sops:clear
        - a
        - b
# plain note
after: z
";

/// The file with every `ENC[…]` masked and the metadata cut off: what is in clear, where.
fn clear_layout(text: &str) -> String {
    let body = text.split("\nsops:\n").next().unwrap_or_default();
    let mut out = String::new();
    for line in body.lines() {
        let masked = match (line.find("ENC["), line.rfind(']')) {
            (Some(a), Some(b)) if b > a => format!("{}ENC{}", &line[..a], &line[b + 1..]),
            _ => line.to_string(),
        };
        out.push_str(&masked);
        out.push('\n');
    }
    out
}

#[test]
fn every_creation_rule_option_splits_like_sops() {
    let Some(sops) = common::peer("sops") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let k = key();
    write(dir.path(), "plain.yaml", RULES_FIXTURE);
    let expected = parse_plain(RULES_FIXTURE).expect("fixture").remove(0);
    let s = |v: &str| Some(v.to_string());
    let cases: Vec<(Vec<&str>, EncryptionOptions)> = vec![
        (vec![], EncryptionOptions::default()),
        (vec!["--unencrypted-suffix", "_clear"], EncryptionOptions { unencrypted_suffix: s("_clear"), ..Default::default() }),
        (vec!["--encrypted-suffix", "_enc"], EncryptionOptions { encrypted_suffix: s("_enc"), ..Default::default() }),
        (vec!["--unencrypted-regex", "^pub"], EncryptionOptions { unencrypted_regex: s("^pub"), ..Default::default() }),
        (
            vec!["--encrypted-regex", "^(secret|password)$"],
            EncryptionOptions { encrypted_regex: s("^(secret|password)$"), ..Default::default() },
        ),
        (
            vec!["--unencrypted-comment-regex", "sops:clear"],
            EncryptionOptions { unencrypted_comment_regex: s("sops:clear"), ..Default::default() },
        ),
        (vec!["--encrypted-comment-regex", "sops:enc"], EncryptionOptions { encrypted_comment_regex: s("sops:enc"), ..Default::default() }),
        (
            vec!["--encrypted-regex", "^nested$", "--mac-only-encrypted"],
            EncryptionOptions { encrypted_regex: s("^nested$"), mac_only_encrypted: true, ..Default::default() },
        ),
    ];
    for (flags, options) in cases {
        let mut cmd = sops_cmd(&sops, dir.path(), &k);
        cmd.args(["--encrypt", "--age", &k.recipient]).args(&flags).arg("plain.yaml");
        let theirs = common::ok(&common::run(&mut cmd));
        let dec = decrypt(&theirs, &k).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        assert_eq!(dec.document(), &expected, "{flags:?}: we decrypt sops' file");

        let ours = encrypt_new(&expected, &[vec![k.recipient.clone()]], &options).expect("encrypts");
        assert_eq!(clear_layout(&ours), clear_layout(&theirs), "{flags:?}: the same values and comments stay in clear");
        write(dir.path(), "ours.yaml", &ours);
        let out = sops_decrypt(&sops, dir.path(), &k, "ours.yaml", "yaml");
        assert_eq!(parse_plain(&common::ok(&out)).expect("sops output").remove(0), expected, "{flags:?}: sops decrypts ours");
        assert!(!common::stderr(&out).contains("unencrypted comment"), "{flags:?}: {}", common::stderr(&out));
    }
}

#[test]
fn debug_of_a_decrypted_document_shows_its_shape_and_no_secret() {
    let key = key();
    let plain =
        "# the db password below\ndb:\n    password: hunter2-very-secret\n    port: 5432\nlist:\n    - seq-secret-item\nenabled: true\n";
    let doc = parse_plain(plain).expect("parses").remove(0);
    let text = encrypt_new(&doc, &[vec![key.recipient.clone()]], &EncryptionOptions::default()).expect("encrypts");
    let decrypted = decrypt(&text, &key).expect("decrypts");
    let root = decrypted.document();
    let shown = format!("{root:?} {:?} {:?}", root.get_path(&["db", "password"]), Value::Map(root.clone()));
    for secret in ["hunter2", "5432", "seq-secret-item", "the db password", "true"] {
        assert!(!shown.contains(secret), "`{secret}` shows in {shown}");
    }
    // The shape is still there to debug with: keys (in clear in every SOPS file) and kinds.
    for shape in ["\"db\"", "\"password\": Str(<redacted, 19 bytes>)", "\"port\": Int(<redacted>)", "Comment(<redacted>)"] {
        assert!(shown.contains(shape), "`{shape}` missing from {shown}");
    }
}
