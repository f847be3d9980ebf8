//! `keys delete HOST`: revocation.

use super::{admin, append_rule, ciphertext, decrypt, fast_sops, host_identity, sops_encrypt};
use crate::common::{TestFleet, ok, stderr};

/// Asserts that `new` is `old` with exactly the lines at `removed` (0-based) taken out.
#[track_caller]
fn assert_removed_lines(old: &str, new: &str, removed: &[usize]) {
    let kept: Vec<&str> = old.lines().enumerate().filter(|(i, _)| !removed.contains(i)).map(|(_, l)| l).collect();
    assert_eq!(new.lines().collect::<Vec<_>>(), kept, "old:\n{old}\nnew:\n{new}");
}

#[test]
fn delete_revokes_the_host_everywhere_and_lists_what_to_rotate() {
    let Some(sops) = fast_sops() else { return };
    let f = TestFleet::new();
    f.init_with(&["web01", "db01"]);
    sops_encrypt(&sops, &f, "sops/shared.yaml", "wifi: hunter2\nnested:\n    n: 1\n");
    append_rule(&f, "sops/team.yaml", &["admin", "web01", "db01"]);
    sops_encrypt(&sops, &f, "sops/team.yaml", "token: abc\n");
    let admin = admin(&f);
    let web = host_identity(&sops, &f, "web01");
    let db = host_identity(&sops, &f, "db01");
    assert!(decrypt(&sops, &f, "sops/team.yaml", &web).is_some());
    let wifi_before = ciphertext(&f, "sops/shared.yaml", "wifi");
    let config_before = f.read(".sops.yaml");

    // Without a terminal and without --yes it refuses; --dry-run plans only.
    let before = f.snapshot();
    let out = f.run(&["keys", "delete", "web01"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("stdin is not a terminal; pass --yes"), "{}", stderr(&out));
    f.assert_unchanged(&before, "delete without --yes");
    let dry = ok(&f.run(&["keys", "delete", "web01", "--dry-run"]));
    assert!(dry.contains("would re-key sops/shared.yaml"), "{dry}");
    assert!(dry.contains("dry run: nothing changed"), "{dry}");
    f.assert_unchanged(&before, "delete --dry-run");

    let text = ok(&f.run(&["keys", "delete", "web01", "--yes"]));
    for want in [
        "secrets web01 could read; rotate them, it may have kept copies:\n",
        "  sops/shared.yaml: wifi, nested.n\n",
        "  sops/team.yaml: token\n",
        "  sops/web01.yaml: ssh_host_ed25519_key, deploy-keys.nix-config, deploy-keys.nix-secrets\n",
        "  web01-nix-config-deploy (nix-config, SHA256:",
        "deleted web01",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    for file in ["sops/shared.yaml", "sops/team.yaml"] {
        assert!(decrypt(&sops, &f, file, &web).is_none(), "the removed host opens {file}");
        assert!(decrypt(&sops, &f, file, &db).is_some(), "db01 keeps {file}");
        assert!(decrypt(&sops, &f, file, &admin).is_some(), "the admin keeps {file}");
    }
    assert_ne!(ciphertext(&f, "sops/shared.yaml", "wifi"), wifi_before, "a fresh data key");
    assert!(!f.dir.join("sops/web01.yaml").exists());
    assert!(!f.dir.join("hosts/web01.json").exists());
    assert!(f.dir.join("hosts/db01.json").exists());

    // `.sops.yaml` lost exactly the host's lines: its anchor, its aliases, its rule.
    let lines: Vec<&str> = config_before.lines().collect();
    let rule = lines.iter().position(|l| l.contains(r"^sops/web01\.yaml$")).expect("rule");
    let rule_end = (rule + 1..lines.len()).find(|&i| lines[i].starts_with("  - ")).unwrap_or(lines.len());
    let mut removed: Vec<usize> = (rule..rule_end).collect();
    removed.extend(lines.iter().enumerate().filter(|(i, l)| !(rule..rule_end).contains(i) && l.contains("web01")).map(|(i, _)| i));
    if rule > 0 && lines[rule - 1].trim().is_empty() && (rule_end == lines.len() || lines[rule_end].trim().is_empty()) {
        removed.push(rule - 1);
    }
    assert_eq!(removed.len(), 1 + 2 + 5, "anchor, two aliases, a five-line rule: {removed:?}\n{config_before}");
    assert_removed_lines(&config_before, &f.read(".sops.yaml"), &removed);
    let json: serde_json::Value = serde_json::from_str(&ok(&f.run(&["--json", "keys", "list"]))).expect("json");
    assert_eq!(json["problems"], serde_json::json!([]));
}

#[test]
fn delete_keep_files_keeps_the_host_file_and_record() {
    let f = TestFleet::new();
    f.init_with(&["web01", "db01"]);
    let text = ok(&f.run(&["--json", "keys", "delete", "web01", "--keep-files", "--yes"]));
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(json["kept"], serde_json::json!(["sops/web01.yaml", "hosts/web01.json"]));
    assert!(f.dir.join("sops/web01.yaml").exists() && f.dir.join("hosts/web01.json").exists());
    assert!(!f.read(".sops.yaml").contains("web01"));
    let out = f.run(&["keys", "delete", "nohost", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
