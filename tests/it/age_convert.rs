//! The ssh-to-age conversion against real age and libsodium.

use std::process::Command;

use hostsmith::ssh_keys::Keypair;

use crate::common::{ok, peer, run, run_with_stdin};

#[test]
fn identity_and_recipient_agree_under_age_keygen() {
    let Some(age_keygen) = peer("age-keygen") else { return };
    for _ in 0..5 {
        let k = Keypair::generate("root@t").expect("key");
        let identity = k.age_identity().expect("identity");
        let out = run_with_stdin(Command::new(&age_keygen).arg("-y"), format!("{}\n", identity.as_str()).as_bytes());
        assert_eq!(ok(&out).trim(), k.age_recipient().expect("recipient"));
    }
}

#[test]
fn a_message_for_the_recipient_from_real_age_opens_with_the_identity() {
    let Some(age) = peer("age") else { return };
    let k = Keypair::generate("root@t").expect("key");
    let recipient = k.age_recipient().expect("recipient");
    let sealed = run_with_stdin(Command::new(&age).args(["-r", &recipient]), b"first boot");
    assert!(sealed.status.success());
    let identity: age::x25519::Identity = k.age_identity().expect("identity").parse().expect("parse");
    let decryptor = age::Decryptor::new(&sealed.stdout[..]).expect("age header");
    let mut reader = decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)).expect("decrypt");
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut plain).expect("read");
    assert_eq!(plain, b"first boot");
}

#[test]
fn the_recipient_equals_libsodiums_conversion() {
    let Some(python) = crate::common::python_with("nacl") else { return };
    let script = r#"
import sys, base64, nacl.bindings as b
CH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
def polymod(v):
    g = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]; c = 1
    for x in v:
        t = c >> 25; c = (c & 0x1ffffff) << 5 ^ x
        for i in range(5): c ^= g[i] if (t >> i) & 1 else 0
    return c
def bech32(hrp, data):
    acc = bits = 0; out = []
    for x in data:
        acc = (acc << 8) | x; bits += 8
        while bits >= 5: bits -= 5; out.append((acc >> bits) & 31)
    if bits: out.append((acc << (5 - bits)) & 31)
    pm = polymod([ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + out + [0] * 6) ^ 1
    return hrp + "1" + "".join(CH[d] for d in out + [(pm >> 5 * (5 - i)) & 31 for i in range(6)])
for line in sys.stdin:
    blob = base64.b64decode(line.split()[1])
    print(bech32("age", b.crypto_sign_ed25519_pk_to_curve25519(blob[-32:])))
"#;
    let keys: Vec<Keypair> = (0..8).map(|i| Keypair::generate(&format!("k{i}")).expect("key")).collect();
    let input: String = keys.iter().map(|k| k.public_line() + "\n").collect();
    let out = run_with_stdin(Command::new(&python).args(["-c", script]), input.as_bytes());
    let got: Vec<String> = ok(&out).lines().map(str::to_string).collect();
    let want: Vec<String> = keys.iter().map(|k| k.age_recipient().expect("recipient")).collect();
    assert_eq!(got, want);
}

#[test]
fn fingerprints_match_ssh_keygen() {
    let Some(ssh_keygen) = peer("ssh-keygen") else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let k = Keypair::generate("root@web01").expect("key");
    let path = dir.path().join("k.pub");
    std::fs::write(&path, k.public_line() + "\n").expect("write");
    let out = ok(&run(Command::new(&ssh_keygen).arg("-lf").arg(&path)));
    assert_eq!(out, format!("256 {} root@web01 (ED25519)\n", k.fingerprint()));
    // And the private key we emit is one OpenSSH accepts.
    let private = dir.path().join("k");
    hostsmith::atomic::create_secret(&private, k.openssh_private().expect("openssh").as_bytes()).expect("write");
    let public = ok(&run(Command::new(&ssh_keygen).arg("-y").arg("-f").arg(&private)));
    assert_eq!(public.trim(), k.public_line());
}
