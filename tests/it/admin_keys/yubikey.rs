//! A YubiKey admin without the hardware: wrapping for a PIV recipient needs only its public
//! key, so hostsmith and real sops 3.11, both through `age-plugin-yubikey`, must write the same
//! stanza type for the same recipient. The plugin takes minutes to build (PC/SC and PIV
//! crates), more than CI's budget allows: this test runs where `age-plugin-yubikey` is on
//! PATH (`cargo install age-plugin-yubikey`, with libpcsclite-dev) and says so when skipped.

use super::{hostsmith, stanza_types};
use crate::common::{TestFleet, fast_sops, ok, which};

/// The P-256 generator, compressed: a valid public key (its private key is 1), as a YubiKey
/// PIV slot would hold one.
const P256_G: [u8; 33] = [
    0x03, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40, 0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d,
    0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96,
];

#[test]
fn hostsmith_and_sops_write_the_same_yubikey_stanza() {
    let Some(_) = which("age-plugin-yubikey") else {
        eprintln!("skipped: age-plugin-yubikey is not on PATH (built outside CI: `cargo install age-plugin-yubikey`)");
        return;
    };
    let Some(sops) = fast_sops() else { return };
    let yk = bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("age1yubikey").expect("hrp"), &P256_G).expect("encode");
    let f = TestFleet::new();
    f.init_with(&[]);
    let config = f.read(".sops.yaml");
    let admin = config.lines().find(|l| l.starts_with("  - &admin ")).expect("admin").to_string();
    std::fs::write(f.dir.join(".sops.yaml"), config.replace(&admin, &format!("{admin}\n  - &yk {yk}"))).expect("write");
    let toml = f.read("hostsmith.toml").replace("admins = [\"admin\"]", "admins = [\"admin\", \"yk\"]");
    std::fs::write(f.dir.join("hostsmith.toml"), toml).expect("write");
    ok(&hostsmith(&f, &["vm-fresh", "web01"], &[]));
    let ours = stanza_types(&f.read("sops/web01.yaml"), &yk);
    assert_eq!(ours, ["piv-p256"], "age-plugin-yubikey's stanza");
    std::fs::write(f.dir.join("sops/shared.yaml"), "k: v\n").expect("write");
    let mut c = std::process::Command::new(&sops);
    c.args(["--encrypt", "--age", &yk, "--in-place", "sops/shared.yaml"]).current_dir(&f.dir);
    f.env(&mut c);
    ok(&crate::common::run(&mut c));
    assert_eq!(stanza_types(&f.read("sops/shared.yaml"), &yk), ours, "sops writes the same stanza type");
}
