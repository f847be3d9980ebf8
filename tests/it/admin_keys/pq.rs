//! Post-quantum admins. `age1pq1…` (sops ≥ 3.12) cannot be wrapped for by the age crate:
//! with sops 3.11 on PATH and no `age-plugin-pq`, hostsmith says which version it needs and
//! changes nothing. A post-quantum plugin (X-Wing, from crates.io) works like any plugin,
//! with real sops 3.11 on the other side.

use super::{hostsmith, plugin_key, sops_decrypt, sops_encrypt, stanza_types};
use crate::common::{TestFleet, fast_sops, ok, peer, stderr};

/// age's own post-quantum test recipient (cmd/age/testdata/hybrid.txt).
const PQ: &str = include_str!("../../fixtures/age1pq-recipient.txt");

#[test]
fn a_post_quantum_admin_needs_sops_3_12_and_hostsmith_says_so() {
    let Some(_) = peer("sops") else { return };
    let pq = PQ.trim();
    let f = TestFleet::new();
    ok(&f.run(&["init", "--admin-recipient", pq]));
    assert!(f.read(".sops.yaml").contains(&format!("  - &admin {pq}\n")));
    let before = f.snapshot();
    let out = f.run(&["vm-fresh", "web01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("is post-quantum (ML-KEM-768 + X25519), which only sops ≥ 3.12 or the age plugin `age-plugin-pq` (age ≥ 1.3) can encrypt for, and the sops on PATH is 3.11.0: install sops ≥ 3.12 or put age-plugin-pq on PATH"), "{err}");
    f.assert_unchanged(&before, "a run that cannot encrypt for a post-quantum admin");
    // The kind is known, not invalid: `sops check` has nothing to say against it.
    let check = ok(&f.run(&["sops", "check"]));
    assert_eq!(
        check,
        "ok: 0 host(s), every rule and anchor consistent\nadmins: admin (pq)\nnote: admin `admin`: needs sops ≥ 3.12 or age-plugin-pq on PATH\n"
    );
    let list = ok(&f.run(&["keys", "list"]));
    assert!(list.contains("admin  pq  age1pq1044e3h") && list.contains("(needs sops ≥ 3.12 or age-plugin-pq on PATH)"), "{list}");
}

#[test]
fn a_post_quantum_plugin_admin_round_trips_with_sops_3_11() {
    let (Some(sops), Some(plugin)) = (fast_sops(), peer("age-plugin-xwing")) else { return };
    let f = TestFleet::new();
    let admin = plugin_key(&plugin, &[], f.tmp.path(), "xwing-id.txt");
    assert!(admin.recipient.starts_with("age1xwing1"), "{}", admin.recipient);
    ok(&f.run(&["init", "--admin-recipient", &admin.recipient]));
    let id = [("SOPS_AGE_KEY_FILE", admin.file.as_path())];
    ok(&f.run(&["vm-fresh", "web01"]));
    let ours = stanza_types(&f.read("sops/web01.yaml"), &admin.recipient);
    assert!(ok(&sops_decrypt(&sops, &f, "sops/web01.yaml", &id)).contains("ssh_host_ed25519_key"));
    std::fs::write(f.dir.join("sops/shared.yaml"), "pq: hybrid\n").expect("write");
    sops_encrypt(&sops, &f, "sops/shared.yaml", &id);
    assert_eq!(stanza_types(&f.read("sops/shared.yaml"), &admin.recipient), ours, "sops and hostsmith write the same stanza type");
    ok(&hostsmith(&f, &["vm-fresh", "web02"], &id));
    assert_eq!(ok(&sops_decrypt(&sops, &f, "sops/shared.yaml", &id)), "pq: hybrid\n");
    let list = ok(&f.run(&["keys", "list"]));
    assert!(list.contains("admin  plugin:xwing  age1xwing1"), "{list}");
}
