//! `deploy-image` against the STAND-IN Proxmox node of `pve_standin` (a real sshd whose
//! `qm`/`pvesm` are our script, not Proxmox): the command lines Proxmox would receive, the
//! snippet on the node, refusals before any change, the dry run, and first boots of a real
//! Debian root with cloud-init that end in a real `verify`.

use std::os::unix::process::ExitStatusExt;

use crate::common::{TestFleet, ok, stderr, stdout};
use crate::pve_standin::{Boot, LEASE, NODE, StandIn, admin_public};

const SNIPPET: &str = "/var/lib/vz/snippets/hostsmith-web01-user.yaml";

/// The argv vectors the stand-in recorded.
type Calls = Vec<Vec<String>>;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

/// A fleet with an admin and a `[proxmox]` table, and a node holding template 9000.
fn setup(boot: Boot, fail: &[&str]) -> Option<(TestFleet, StandIn, String)> {
    let f = TestFleet::new();
    let node = StandIn::start(&f, boot, fail)?;
    ok(&f.run(&["init"]));
    node.configure(&f, 9000);
    node.add_template(9000);
    let admin = admin_public(&f).to_str().expect("utf8").to_string();
    Some((f, node, admin))
}

fn record(f: &TestFleet) -> serde_json::Value {
    serde_json::from_str(&f.read("hosts/web01.json")).expect("record")
}

#[test]
fn deploys_verifies_and_records_a_vm_with_the_snippet_of_cloud_init() {
    let Some((f, node, admin)) = setup(Boot::Seed, &[]) else { return };
    let out = node.hostsmith(&f, &["deploy-image", "--vm-id", "283", "--name", "web01", "--authorized-key", &admin]);
    let text = ok(&out);
    let rec = record(&f);
    let fingerprint = rec["fingerprint"].as_str().expect("fingerprint").to_string();

    // The exact command lines Proxmox would receive, in order; the agent is polled until
    // the VM has booted.
    let log = node.log();
    let expected = [
        argv(&["qm", "status", "283"]),
        argv(&["qm", "config", "9000"]),
        argv(&["qm", "clone", "9000", "283", "--name", "web01"]),
        argv(&[
            "qm",
            "set",
            "283",
            "--cicustom",
            "user=local:snippets/hostsmith-web01-user.yaml",
            "--ipconfig0",
            "ip=dhcp",
            "--agent",
            "enabled=1",
        ]),
        argv(&["qm", "start", "283"]),
    ];
    assert_eq!(log[..expected.len()], expected, "{log:?}");
    let polls = &log[expected.len()..];
    assert!(!polls.is_empty() && polls.iter().all(|a| a == &argv(&["qm", "guest", "cmd", "283", "network-get-interfaces"])), "{log:?}");

    // The snippet is byte for byte what `hostsmith cloud-init` writes, and 0600.
    let seed = f.tmp.path().join("seed");
    ok(&f.run(&["cloud-init", "web01", "--out", seed.to_str().expect("utf8"), "--authorized-key", &admin]));
    let expected_user_data = std::fs::read_to_string(seed.join("user-data")).expect("user-data");
    assert_eq!(node.machine.sh(&format!("cat {SNIPPET}")), expected_user_data);
    assert_eq!(node.machine.sh(&format!("stat -c '%a %U' {SNIPPET}")), "600 root\n");

    // A real verify of the key the booted root serves; the record says where the VM is.
    assert_eq!(node.served_fingerprint(), fingerprint);
    assert!(
        text.contains(&format!("deployed: web01 is VM 283 on node {NODE} at {LEASE}, presenting {fingerprint}, as recorded")),
        "{text}"
    );
    assert!(text.contains("next: deploy its configuration"), "{text}");
    assert_eq!(rec["vm_id"], 283);
    assert_eq!(rec["proxmox_node"], NODE);
    assert_eq!(rec["addresses"], serde_json::json!([LEASE]));

    // The private key went on stdin only: not in any argv, nor in what hostsmith printed.
    let all = format!("{log:?}{text}{}", stderr(&out));
    assert!(!all.contains("PRIVATE KEY"), "{all}");
}

#[test]
fn a_static_address_full_clone_and_bridge_need_no_guest_agent() {
    let Some((f, node, admin)) = setup(Boot::Seed, &[]) else { return };
    let args = [
        "deploy-image",
        "--vm-id",
        "284",
        "--name",
        "web01",
        "--authorized-key",
        &admin,
        "--ip",
        "10.0.2.15/24",
        "--gateway",
        "10.0.2.1",
        "--full",
        "--storage",
        "local-lvm",
        "--bridge",
        "vmbr1",
    ];
    let text = ok(&node.hostsmith(&f, &args));
    assert_eq!(
        node.log(),
        [
            argv(&["qm", "status", "284"]),
            argv(&["qm", "config", "9000"]),
            argv(&["qm", "clone", "9000", "284", "--name", "web01", "--full", "--storage", "local-lvm"]),
            argv(&[
                "qm",
                "set",
                "284",
                "--cicustom",
                "user=local:snippets/hostsmith-web01-user.yaml",
                "--ipconfig0",
                "ip=10.0.2.15/24,gw=10.0.2.1",
                "--agent",
                "enabled=1",
                "--net0",
                "virtio,bridge=vmbr1",
            ]),
            argv(&["qm", "start", "284"]),
        ]
    );
    assert!(text.contains("deployed: web01 is VM 284"), "{text}");
    assert_eq!(record(&f)["vm_id"], 284);
}

#[test]
fn a_seed_image_is_uploaded_0600_and_attached_as_a_cdrom() {
    let Some((f, node, admin)) = setup(Boot::Seed, &[]) else { return };
    ok(&node.hostsmith(&f, &["deploy-image", "--vm-id", "285", "--name", "web01", "--authorized-key", &admin, "--seed-iso"]));
    let log = node.log();
    assert_eq!(log[3], argv(&["qm", "set", "285", "--ide2", "local:iso/hostsmith-web01-seed.iso,media=cdrom", "--agent", "enabled=1"]));
    assert_eq!(node.machine.sh("stat -c %a /var/lib/vz/template/iso/hostsmith-web01-seed.iso"), "600\n");
    assert_eq!(node.served_fingerprint(), record(&f)["fingerprint"].as_str().expect("fingerprint"));
}

#[test]
fn bad_ids_templates_and_names_are_refused_before_any_change_on_the_node() {
    let Some((f, node, admin)) = setup(Boot::Never, &[]) else { return };
    node.add_vm(283, "name: taken\nscsi0: local-lvm:vm-283-disk-0,size=8G\n");
    let vms = node.vms();
    let before = f.snapshot();
    let cases: [(&[&str], &str, Calls); 4] = [
        (&["--vm-id", "42", "--name", "web01"], "VM id 42 is out of Proxmox's range", vec![]),
        (&["--vm-id", "290", "--name", "web;01"], "host name `web;01` is invalid", vec![]),
        (&["--vm-id", "283", "--name", "web01"], "VM 283 already exists", vec![argv(&["qm", "status", "283"])]),
        (
            &["--vm-id", "290", "--name", "web01", "--template", "9999"],
            "template VM 9999 does not exist",
            vec![argv(&["qm", "status", "290"]), argv(&["qm", "config", "9999"])],
        ),
    ];
    for (args, message, calls) in cases {
        std::fs::remove_file(node.state.join("qm.log")).ok();
        let mut all = vec!["deploy-image", "--authorized-key", &admin];
        all.extend_from_slice(args);
        let out = node.hostsmith(&f, &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert_eq!(node.log(), calls, "{args:?}: only read-only calls");
    }
    assert_eq!(node.vms(), vms, "no VM changed");
    assert_eq!(node.uploads(), "/var/lib/vz/snippets:\n\n/var/lib/vz/template/iso:\n", "nothing uploaded");
    f.assert_unchanged(&before, "a refused deploy-image (no key made, no record)");
}

#[test]
fn a_dry_run_prints_every_node_command_and_changes_nothing() {
    let Some((f, node, admin)) = setup(Boot::Never, &[]) else { return };
    let vms = node.vms();
    let before = f.snapshot();
    let args = ["deploy-image", "--vm-id", "283", "--name", "web01", "--authorized-key", &admin, "--snippets", "shared", "--dry-run"];
    let text = ok(&node.hostsmith(&f, &args));
    let shared = node.state.join("shared/snippets");
    let plan: Vec<&str> = text.lines().filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit())).collect();
    let expected = [
        "hostname  (read-only check: passed)".to_string(),
        "qm status 283  (read-only check: passed)".into(),
        "qm config 9000  (read-only check: passed)".into(),
        "pvesm path shared:snippets/hostsmith-web01-user.yaml  (read-only check: passed)".into(),
        format!("test -d {}  (read-only check: passed)", shared.display()),
        format!(
            "install -m 0600 /dev/stdin {}/hostsmith-web01-user.yaml  < the user-data of `hostsmith cloud-init web01` (holds its private host key)",
            shared.display()
        ),
        "qm clone 9000 283 --name web01".into(),
        "qm set 283 --cicustom user=shared:snippets/hostsmith-web01-user.yaml --ipconfig0 ip=dhcp --agent enabled=1".into(),
        "qm start 283".into(),
        "qm guest cmd 283 network-get-interfaces".into(),
    ];
    let shown: Vec<String> = plan.iter().map(|l| l.trim_start().split_once(". ").expect("numbered").1.to_string()).collect();
    assert_eq!(shown, expected, "{text}");
    assert_eq!(
        node.log(),
        [
            argv(&["qm", "status", "283"]),
            argv(&["qm", "config", "9000"]),
            argv(&["pvesm", "path", "shared:snippets/hostsmith-web01-user.yaml"])
        ]
    );
    assert_eq!(node.vms(), vms);
    assert_eq!(std::fs::read_dir(&shared).expect("shared").count(), 0);
    f.assert_unchanged(&before, "a dry run");

    // An unreachable node: said so, the plan still printed, exit 0.
    let out =
        f.run(&["deploy-image", "--vm-id", "283", "--name", "web01", "--authorized-key", &admin, "--pve", "root@127.0.0.1:1", "--dry-run"]);
    let text = ok(&out);
    assert!(
        stderr(&out).contains("cannot reach the Proxmox node root@127.0.0.1:1") && stderr(&out).contains("-p 1 root@127.0.0.1 true`"),
        "{}",
        stderr(&out)
    );
    assert!(text.contains("qm clone 9000 283 --name web01") && text.contains(&format!("install -m 0600 /dev/stdin {SNIPPET}")), "{text}");
    f.assert_unchanged(&before, "a dry run against an unreachable node");
}

#[test]
fn a_vm_presenting_another_key_stops_with_both_fingerprints_and_the_cleanup() {
    let Some((f, node, admin)) = setup(Boot::OwnKey, &[]) else { return };
    let out = node.hostsmith(&f, &["deploy-image", "--vm-id", "283", "--name", "web01", "--authorized-key", &admin, "--wait", "60"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let rec = record(&f);
    let recorded = rec["fingerprint"].as_str().expect("fingerprint");
    assert!(err.contains(recorded) && err.contains(&node.served_fingerprint()), "{err}");
    assert!(err.contains("left on node `pve-standin`"), "{err}");
    assert!(err.contains(&format!("qm stop 283 && qm destroy 283 && rm -f -- {SNIPPET}")), "{err}");
    assert!(rec.get("vm_id").is_none(), "no deployment recorded: {rec}");
    assert!(out.status.signal().is_none());
}

#[test]
fn cleanup_on_failure_removes_what_the_run_created() {
    let Some((f, node, admin)) = setup(Boot::Never, &["start"]) else { return };
    let out =
        node.hostsmith(&f, &["deploy-image", "--vm-id", "283", "--name", "web01", "--authorized-key", &admin, "--cleanup-on-failure"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("start failed: QEMU exited with code 1") && err.contains("cleaned up on node `pve-standin`"), "{err}");
    let log = node.log();
    assert_eq!(log[log.len() - 3..], [argv(&["qm", "start", "283"]), argv(&["qm", "stop", "283"]), argv(&["qm", "destroy", "283"])]);
    assert_eq!(node.vms().len(), 1, "only the template is left: {:?}", node.vms());
    assert_eq!(node.uploads(), "/var/lib/vz/snippets:\n\n/var/lib/vz/template/iso:\n");
    assert!(stdout(&out).contains("qm clone 9000 283"), "{}", stdout(&out));
}
