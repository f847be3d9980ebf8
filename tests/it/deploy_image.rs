//! `deploy-image` against the STAND-IN Proxmox node of `pve_standin` (a real sshd whose
//! `qm`/`pvesm`/`pvesh` are our script, as strict as the real tools, not Proxmox): the
//! command lines Proxmox would receive, the seed files on the node and the private key
//! leaving it, refusals before any change, merges with the template, the dry run, and
//! first (and second) boots of a real Debian root with cloud-init that end in a real
//! `verify`.

use std::os::unix::process::ExitStatusExt;

use crate::common::{TestFleet, ok, stderr, stdout};
use crate::pve_standin::{Boot, LEASE, NODE, STATIC6, Setup, StandIn, admin_public, template_config};

const SNIPPETS: &str = "/var/lib/vz/snippets";

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

/// The read-only calls of a linked clone of template 9000 as VM `id`, by snippets on `local`.
fn checks(id: &str) -> Vec<Vec<String>> {
    vec![
        argv(&["pvesh", "get", "/cluster/nextid", "--vmid", id, "--output-format", "json"]),
        argv(&["qm", "config", "9000"]),
        argv(&["pvesh", "get", &format!("/nodes/{NODE}/storage"), "--output-format", "json"]),
        argv(&["pvesh", "get", &format!("/nodes/{NODE}/qemu/9000/feature"), "--feature", "clone", "--output-format", "json"]),
        argv(&["pvesm", "path", &format!("local:snippets/hostsmith-{id}-meta.yaml")]),
    ]
}

fn cicustom(id: &str, user: &str) -> String {
    format!("user=local:snippets/hostsmith-{id}-{user}.yaml,meta=local:snippets/hostsmith-{id}-meta.yaml")
}

/// A fleet with an admin and a `[proxmox]` table, and a node holding template 9000.
fn setup_with(boot: Boot, s: &Setup<'_>) -> Option<(TestFleet, StandIn, String)> {
    let f = TestFleet::new();
    let node = StandIn::start(&f, boot, s)?;
    ok(&f.run(&["init"]));
    node.configure(&f, 9000);
    node.add_template(9000);
    let admin = admin_public(&f).to_str().expect("utf8").to_string();
    Some((f, node, admin))
}

fn setup(boot: Boot, fail: &[&str]) -> Option<(TestFleet, StandIn, String)> {
    setup_with(boot, &Setup { fail, ..Setup::default() })
}

fn record(f: &TestFleet) -> serde_json::Value {
    serde_json::from_str(&f.read("hosts/web01.json")).expect("record")
}

/// The seed `hostsmith cloud-init web01` writes: (user-data, a line of the private key).
fn cloud_init_seed(f: &TestFleet, admin: &str) -> (String, String) {
    let dir = tempfile::tempdir_in(f.tmp.path()).expect("tmp");
    let seed = dir.path().join("seed");
    ok(&f.run(&["cloud-init", "web01", "--out", seed.to_str().expect("utf8"), "--authorized-key", admin]));
    let user_data = std::fs::read_to_string(seed.join("user-data")).expect("user-data");
    let key_line = user_data
        .lines()
        .skip_while(|l| !l.contains("BEGIN OPENSSH PRIVATE KEY"))
        .nth(2)
        .expect("a line of key material")
        .trim()
        .to_string();
    (user_data, key_line)
}

#[test]
fn deploys_verifies_records_and_takes_the_private_key_off_the_node() {
    let Some((f, node, admin)) = setup(Boot::Seed, &[]) else { return };
    let out = node.hostsmith(&f, &["deploy-image", "--vm-id", "283", "--name", "web01", "--authorized-key", &admin]);
    let text = ok(&out);
    let rec = record(&f);
    let fingerprint = rec["fingerprint"].as_str().expect("fingerprint").to_string();

    // The exact command lines Proxmox receives, in order: checks, clone, seed, start, the
    // agent polled until the VM has an address, then the switch to the key-less seed.
    let log = node.log();
    let mut expected = checks("283");
    expected.extend([
        argv(&["qm", "clone", "9000", "283", "--name", "web01"]),
        argv(&["qm", "set", "283", "--cicustom", &cicustom("283", "user-key"), "--ipconfig0", "ip=dhcp"]),
        argv(&["qm", "start", "283"]),
    ]);
    assert_eq!(log[..expected.len()], expected, "{log:?}");
    let tail = [argv(&["qm", "set", "283", "--cicustom", &cicustom("283", "user")]), argv(&["qm", "cloudinit", "update", "283"])];
    assert_eq!(log[log.len() - 2..], tail, "{log:?}");
    let polls = &log[expected.len()..log.len() - 2];
    assert!(polls.len() >= 2, "the agent runs before the VM has an IPv4 address: {log:?}");
    assert!(polls.iter().all(|a| a == &argv(&["qm", "guest", "cmd", "283", "network-get-interfaces"])), "{log:?}");

    // A real verify of the key the booted root serves; the record says where the VM is.
    assert_eq!(node.served_fingerprint(), fingerprint);
    assert!(
        text.contains(&format!("deployed: web01 is VM 283 on node {NODE} at {LEASE}, presenting {fingerprint}, as recorded")),
        "{text}"
    );
    assert!(text.contains("the private host key is off node"), "{text}");
    assert_eq!(rec["vm_id"], 283);
    assert_eq!(rec["proxmox_node"], NODE);
    assert_eq!(rec["addresses"], serde_json::json!([LEASE]));

    // What stays on the node: hostsmith's meta-data (its instance id) and the user-data
    // without the key, which is otherwise what `hostsmith cloud-init` writes. No file on
    // the node holds the private key: not a snippet, not the cloud-init drive, not a log.
    let (user_data, key_line) = cloud_init_seed(&f, &admin);
    assert_eq!(node.uploads(), format!("{SNIPPETS}:\nhostsmith-283-meta.yaml\nhostsmith-283-user.yaml\n\n/var/lib/vz/template/iso:\n"));
    let keyless = node.machine.sh(&format!("cat {SNIPPETS}/hostsmith-283-user.yaml"));
    assert!(!keyless.contains("PRIVATE KEY") && keyless.contains("ssh_deletekeys: false"), "{keyless}");
    let first_line = |s: &str| s.lines().find(|l| l.starts_with("users:")).map(str::to_string);
    assert_eq!(first_line(&keyless), first_line(&user_data));
    let meta = node.machine.sh(&format!("cat {SNIPPETS}/hostsmith-283-meta.yaml"));
    assert!(meta.starts_with("instance-id: hostsmith-web01-"), "{meta}");
    assert_eq!(node.files_containing(&key_line), Vec::<String>::new(), "the private key is left on the node");

    // A second boot from the key-less seed: same instance id, so cloud-init leaves the
    // key alone, and the VM still presents the recorded key.
    node.qm(&["stop", "283"]);
    node.qm(&["start", "283"]);
    let mut last = String::new();
    let verified = (0..90).any(|_| {
        let v = node.hostsmith(&f, &["verify", "web01", "--address", LEASE]);
        last = stderr(&v);
        v.status.success() || {
            std::thread::sleep(std::time::Duration::from_secs(1));
            false
        }
    });
    let boot_log = std::fs::read_to_string(node.state.join("vms/283.boot.log")).unwrap_or_default();
    assert!(verified, "after a reboot the VM presents the recorded key; last verify: {last}\nboot log:\n{boot_log}");
    assert_eq!(node.served_fingerprint(), fingerprint);

    // The private key went on stdin only: not in any argv, nor in what hostsmith printed.
    let all = format!("{log:?}{text}{}", stderr(&out));
    assert!(!all.contains("PRIVATE KEY"), "{all}");
}

#[test]
fn a_static_ipv6_full_clone_keeps_its_seed_with_keep_seed_and_warns() {
    let Some((f, node, admin)) = setup(Boot::Seed, &[]) else { return };
    let cidr = format!("{STATIC6}/64");
    let mut args = vec!["deploy-image", "--vm-id", "284", "--name", "web01", "--authorized-key", &admin, "--ip", &cidr];
    args.extend(
        "--gateway fd00:2::1 --full --storage local-lvm --bridge vmbr1 --vlan 20 --cores 4 --memory 1024 --tags web,prod \
         --onboot --pool pool1 --disk-size +2G --nameserver fd00:2::53 --searchdomain example.org --keep-seed"
            .split_whitespace(),
    );
    let out = node.hostsmith(&f, &args);
    let text = ok(&out);
    let mut set =
        argv(&["qm", "set", "284", "--cicustom", &cicustom("284", "user-key"), "--ipconfig0", &format!("ip6={cidr},gw6=fd00:2::1")]);
    set.extend(
        "--nameserver fd00:2::53 --searchdomain example.org --net0 virtio,bridge=vmbr1,tag=20 --cores 4 --memory 1024 --onboot 1 --tags web;prod"
            .split_whitespace()
            .map(str::to_string),
    );
    let expected = vec![
        argv(&["pvesh", "get", "/cluster/nextid", "--vmid", "284", "--output-format", "json"]),
        argv(&["qm", "config", "9000"]),
        argv(&["pvesh", "get", &format!("/nodes/{NODE}/storage"), "--output-format", "json"]),
        argv(&["pvesm", "path", "local:snippets/hostsmith-284-meta.yaml"]),
        argv(&["qm", "clone", "9000", "284", "--name", "web01", "--full", "--storage", "local-lvm", "--pool", "pool1"]),
        set,
        argv(&["qm", "resize", "284", "scsi0", "+2G"]),
        argv(&["qm", "start", "284"]),
    ];
    assert_eq!(node.log(), expected, "no agent polls for a static address, no key removal with --keep-seed");
    assert!(text.contains(&format!("deployed: web01 is VM 284 on node {NODE} at {STATIC6}")), "{text}");
    assert_eq!(record(&f)["addresses"], serde_json::json!([STATIC6]));

    // The first-boot seed stays, byte for byte what `hostsmith cloud-init` writes, 0600;
    // the warning names it and how to remove it.
    let (user_data, key_line) = cloud_init_seed(&f, &admin);
    let keyed = format!("{SNIPPETS}/hostsmith-284-user-key.yaml");
    let holding = node.files_containing(&key_line);
    assert!(
        holding.contains(&keyed) && holding.iter().any(|p| p.ends_with("vm-284-cloudinit.iso")),
        "the keyed snippet and the cloud-init drive hold the key, and the search finds both: {holding:?}"
    );
    assert_eq!(node.machine.sh(&format!("cat {keyed}")), user_data);
    assert_eq!(node.machine.sh(&format!("stat -c '%a %U' {keyed}")), "600 root\n");
    let err = stderr(&out);
    assert!(err.contains(&format!("warning: --keep-seed: web01's private host key stays on node {NODE} in `{keyed}`")), "{err}");
    assert!(
        err.contains(&format!("qm set 284 --cicustom {} && qm cloudinit update 284 && rm -f -- {keyed}", cicustom("284", "user"))),
        "{err}"
    );
    let conf = node.qm(&["config", "284"]);
    assert!(conf.contains("scsi0: local-lvm:vm-284-disk-0,size=10G") || conf.contains("size=10G"), "{conf}");
}

#[test]
fn a_failure_to_remove_the_key_keeps_the_deployed_vm_and_names_the_file_and_the_rest() {
    let Some((f, node, admin)) = setup(Boot::Seed, &["cloudinit"]) else { return };
    let out = node.hostsmith(&f, &["deploy-image", "--vm-id", "283", "--name", "web01", "--authorized-key", &admin]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`qm cloudinit update 283` failed") && err.contains("got timeout"), "{err}");
    let keyed = format!("{SNIPPETS}/hostsmith-283-user-key.yaml");
    assert!(
        err.contains(&format!(
            "VM 283 is deployed, verified and recorded, but `{keyed}` on node `{NODE}` still holds web01's private host key"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("finish there with: qm cloudinit update 283 && rm -f -- {keyed}")), "{err}");
    assert!(!err.contains("qm destroy"), "a verified VM is not offered for removal: {err}");
    assert_eq!(record(&f)["vm_id"], 283, "the deployment is recorded");
    assert!(node.uploads().contains("hostsmith-283-user-key.yaml"));
}

#[test]
fn a_seed_image_is_uploaded_0600_attached_and_swapped_for_one_without_the_key() {
    let Some((f, node, admin)) = setup(Boot::Seed, &[]) else { return };
    node.add_vm(9000, &template_config(9000, "local-lvm").replace("ide2: local-lvm:vm-9000-cloudinit,media=cdrom\n", ""));
    ok(&node.hostsmith(&f, &["deploy-image", "--vm-id", "285", "--name", "web01", "--authorized-key", &admin, "--seed-iso"]));
    let log = node.log();
    assert!(log.contains(&argv(&["pvesm", "path", "local:iso/hostsmith-285-seed.iso"])), "{log:?}");
    assert!(log.contains(&argv(&["qm", "set", "285", "--ide2", "local:iso/hostsmith-285-seed-key.iso,media=cdrom"])), "{log:?}");
    assert_eq!(log.last(), Some(&argv(&["qm", "set", "285", "--ide2", "local:iso/hostsmith-285-seed.iso,media=cdrom"])));
    assert_eq!(node.uploads(), format!("{SNIPPETS}:\n\n/var/lib/vz/template/iso:\nhostsmith-285-seed.iso\n"));
    assert_eq!(node.machine.sh("stat -c %a /var/lib/vz/template/iso/hostsmith-285-seed.iso"), "600\n");
    assert_eq!(node.served_fingerprint(), record(&f)["fingerprint"].as_str().expect("fingerprint"));
    let (_, key_line) = cloud_init_seed(&f, &admin);
    assert_eq!(node.files_containing(&key_line), Vec::<String>::new(), "the key-less image holds no key, the keyed one is gone");
}

/// Cases refused before any change, with the node calls they may make.
struct Refusal {
    args: Vec<String>,
    message: String,
    calls: usize,
}

fn refusal(args: &[&str], message: &str, calls: usize) -> Refusal {
    Refusal { args: args.iter().map(|a| (*a).to_string()).collect(), message: message.into(), calls }
}

#[test]
fn bad_input_is_refused_before_any_change_on_the_node() {
    let cluster = serde_json::json!({ "301": { "type": "lxc", "node": NODE }, "302": { "type": "qemu", "node": "pve2" } });
    let Some((f, node, admin)) = setup_with(Boot::Never, &Setup { cluster: Some(cluster), ..Setup::default() }) else { return };
    node.add_vm(9001, &template_config(9001, "thick"));
    node.add_vm(9002, &template_config(9002, "local-lvm").replace("template: 1\n", ""));
    node.machine.sh(&format!("touch {SNIPPETS}/hostsmith-290-user.yaml"));
    let vms = node.vms();
    let uploads = node.uploads();
    let before = f.snapshot();
    let cases = [
        refusal(&["--vm-id", "42"], "VM id 42 is out of Proxmox's range", 0),
        refusal(&["--vm-id", "283", "--name", "web;01"], "host name `web;01` is invalid", 0),
        refusal(&["--ip", "10.0.2.15/7"], "prefix length from 8 to 32", 0),
        refusal(&["--ip", "10.0.2.15/33"], "is not an address with a prefix length", 0),
        refusal(&["--ip", "fd00::15/7"], "prefix length from 8 to 128", 0),
        refusal(&["--ip", "fd00::15/129"], "is not an address with a prefix length", 0),
        refusal(&["--snippets", "a"], "storage `a` is invalid", 0),
        refusal(&["--snippets", "local-"], "storage `local-` is invalid", 0),
        refusal(&["--vlan", "4095"], "VLAN tag is 1 to 4094", 0),
        refusal(&["--memory", "8"], "at least 16", 0),
        refusal(&["--tags=-web"], "tag `-web` is invalid", 0),
        refusal(&["--vm-id", "301"], "VM id 301 is already used in the cluster", 1),
        refusal(&["--vm-id", "302"], "VM id 302 is already used in the cluster", 1),
        refusal(&["--template", "9999"], "template VM 9999 does not exist", 2),
        refusal(&["--template", "9002"], "VM 9002 is not a template", 2),
        refusal(&["--disk-size", "8G"], "Proxmox cannot shrink a disk", 2),
        refusal(&["--snippets", "local-lvm"], "does not hold `snippets`", 3),
        refusal(&["--full", "--storage", "nowhere"], "storage `nowhere` (for the full clone's disks) does not exist", 3),
        refusal(&["--template", "9001"], "cannot be cloned linked", 4),
        refusal(&["--vm-id", "290"], "hostsmith-290-user.yaml` already on node", 5),
        refusal(&["--bridge", "vmbr9"], "bridge `vmbr9` does not exist on node", 5),
    ];
    for case in cases {
        std::fs::remove_file(node.state.join("qm.log")).ok();
        let mut all = vec!["deploy-image", "--authorized-key", &admin];
        if !case.args.iter().any(|a| a == "--vm-id") {
            all.extend(["--vm-id", "283"]);
        }
        if !case.args.iter().any(|a| a == "--name") {
            all.extend(["--name", "web01"]);
        }
        all.extend(case.args.iter().map(String::as_str));
        let out = node.hostsmith(&f, &all);
        assert_eq!(out.status.code(), Some(2), "{:?}: {}", case.args, stderr(&out));
        assert!(stderr(&out).contains(&case.message), "{:?}: {}", case.args, stderr(&out));
        let log = node.log();
        assert_eq!(log.len(), case.calls, "{:?}: {log:?}", case.args);
        assert!(
            log.iter().all(|a| a[0] == "pvesh" || a[0] == "pvesm" || a[1] == "config"),
            "{:?}: only read-only calls: {log:?}",
            case.args
        );
    }
    assert_eq!(node.vms(), vms, "no VM changed");
    assert_eq!(node.uploads(), uploads, "nothing uploaded");
    f.assert_unchanged(&before, "a refused deploy-image (no key made, no record)");

    // Valid edges of the same ranges pass the same checks (a dry run, against the node).
    for cidr in ["10.0.2.15/8", "10.0.2.15/32", "fd00::15/8", "fd00::15/128"] {
        let out = node
            .hostsmith(&f, &["deploy-image", "--vm-id", "283", "--name", "web01", "--authorized-key", &admin, "--ip", cidr, "--dry-run"]);
        assert!(stdout(&out).contains(cidr), "{cidr}: {}", stderr(&out));
    }
}

#[test]
fn settings_merge_into_the_template_and_a_redeploy_leaves_the_old_vms_seed_alone() {
    let Some((f, node, admin)) = setup(Boot::Never, &[]) else { return };
    let template = template_config(9000, "local-lvm").replace("agent: enabled=1\n", "agent: enabled=0,fstrim_cloned_disks=1\n").replace(
        "net0: virtio=BC:24:11:00:00:01,bridge=vmbr0\n",
        "net0: virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1,tag=20,mtu=1400\n",
    ) + "cicustom: vendor=local:snippets/vendor.yaml\n";
    node.add_vm(9000, &template);
    let deploy = |id: &str, extra: &[&str]| {
        let mut args = vec!["deploy-image", "--vm-id", id, "--name", "web01", "--authorized-key", &admin, "--no-start"];
        args.extend_from_slice(extra);
        node.hostsmith(&f, &args)
    };
    let text = ok(&deploy("283", &["--bridge", "vmbr1"]));
    let conf = node.qm(&["config", "283"]);
    let line = |key: &str| conf.lines().find(|l| l.starts_with(&format!("{key}: "))).unwrap_or_default().to_string();
    assert_eq!(line("cicustom"), format!("cicustom: {},vendor=local:snippets/vendor.yaml", cicustom("283", "user-key")));
    assert_eq!(line("agent"), "agent: enabled=1,fstrim_cloned_disks=1");
    let net0 = line("net0");
    let mut items: Vec<&str> = net0.split(',').skip(1).collect();
    items.sort_unstable();
    assert!(net0.starts_with("net0: virtio=") && items == ["bridge=vmbr1", "firewall=1", "mtu=1400", "tag=20"], "{net0}");
    assert!(!net0.contains("BC:24:11:00:00:01"), "the clone has a MAC of its own: {net0}");
    assert!(text.contains("created: web01 is VM 283") && text.contains("then remove the private key from the node"), "{text}");
    // The stand-in, like Proxmox, will not start a VM whose cicustom names a missing snippet
    // (the template's vendor.yaml was never put on the node).
    let start = node.machine.inside(node.state.join("bin/qm").to_str().expect("utf8")).args(["start", "283"]).output().expect("qm");
    assert_eq!(start.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&start.stderr).contains("can't find file 'local:snippets/vendor.yaml'"), "{start:?}");

    // Redeployed as a new VM: the old VM's files are untouched.
    let old: Vec<String> =
        ["meta", "user", "user-key"].iter().map(|k| node.machine.sh(&format!("cat {SNIPPETS}/hostsmith-283-{k}.yaml"))).collect();
    ok(&deploy("284", &[]));
    let again: Vec<String> =
        ["meta", "user", "user-key"].iter().map(|k| node.machine.sh(&format!("cat {SNIPPETS}/hostsmith-283-{k}.yaml"))).collect();
    assert_eq!(old, again);
    assert!(node.uploads().contains("hostsmith-284-user-key.yaml"));
    assert_eq!(node.machine.sh(&format!("cat {SNIPPETS}/hostsmith-284-meta.yaml")), old[0], "same key, same instance id");

    // A new key (--rotate) is a new instance for cloud-init.
    ok(&deploy("285", &["--rotate"]));
    assert_ne!(node.machine.sh(&format!("cat {SNIPPETS}/hostsmith-285-meta.yaml")), old[0]);
}

#[test]
fn vm_id_auto_takes_the_next_free_id_and_retries_once_when_it_is_taken_meanwhile() {
    let Some((f, node, admin)) = setup_with(Boot::Never, &Setup { race: true, ..Setup::default() }) else { return };
    let text = ok(&node.hostsmith(&f, &["deploy-image", "--vm-id", "auto", "--name", "web01", "--authorized-key", &admin, "--no-start"]));
    let log = node.log();
    let nextid = argv(&["pvesh", "get", "/cluster/nextid", "--output-format", "json"]);
    assert_eq!(log.iter().filter(|a| **a == nextid).count(), 2, "{log:?}");
    let clones: Vec<&Vec<String>> = log.iter().filter(|a| a.get(1).map(String::as_str) == Some("clone")).collect();
    assert_eq!(clones.len(), 2, "{log:?}");
    assert_ne!(clones[0][3], clones[1][3]);
    let id = clones[1][3].clone();
    assert_eq!(record(&f)["vm_id"].to_string(), id);
    assert!(text.contains(&format!("created: web01 is VM {id}")), "{text}");
}

#[test]
fn a_dry_run_prints_every_node_command_and_changes_nothing() {
    let Some((f, node, admin)) = setup(Boot::Never, &[]) else { return };
    let vms = node.vms();
    let before = f.snapshot();
    let args = ["deploy-image", "--vm-id", "283", "--name", "web01", "--authorized-key", &admin, "--snippets", "shared", "--dry-run"];
    let text = ok(&node.hostsmith(&f, &args));
    let shared = node.state.join("shared/snippets");
    let shared = shared.display();
    let plan: Vec<&str> = text.lines().filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit())).collect();
    let cic = "user=shared:snippets/hostsmith-283-user-key.yaml,meta=shared:snippets/hostsmith-283-meta.yaml";
    let expected = [
        "hostname  (read-only check: passed)".to_string(),
        "pvesh get /cluster/nextid --vmid 283 --output-format json  (read-only check: passed)".into(),
        "qm config 9000  (read-only check: passed)".into(),
        format!("pvesh get /nodes/{NODE}/storage --output-format json  (read-only check: passed)"),
        format!("pvesh get /nodes/{NODE}/qemu/9000/feature --feature clone --output-format json  (read-only check: passed)"),
        "pvesm path shared:snippets/hostsmith-283-meta.yaml  (read-only check: passed)".into(),
        format!("find {shared} -maxdepth 1 -name 'hostsmith-283-*'  (read-only check: passed)"),
        "test -d /sys/class/net/vmbr0  (read-only check: passed)".into(),
        "qm clone 9000 283 --name web01".into(),
        format!("install -m 0600 /dev/stdin {shared}/hostsmith-283-meta.yaml  < the meta-data: hostsmith's instance id for this VM"),
        format!(
            "install -m 0600 /dev/stdin {shared}/hostsmith-283-user.yaml  < the same user-data without the private host key (web01 keeps the key it has)"
        ),
        format!(
            "install -m 0600 /dev/stdin {shared}/hostsmith-283-user-key.yaml  < the user-data of `hostsmith cloud-init web01` (holds its private host key)"
        ),
        format!("qm set 283 --cicustom {cic} --ipconfig0 ip=dhcp"),
        "qm start 283".into(),
        "qm guest cmd 283 network-get-interfaces".into(),
        "qm set 283 --cicustom user=shared:snippets/hostsmith-283-user.yaml,meta=shared:snippets/hostsmith-283-meta.yaml".into(),
        "qm cloudinit update 283".into(),
        format!("rm -f -- {shared}/hostsmith-283-user-key.yaml"),
    ];
    let shown: Vec<String> = plan.iter().map(|l| l.trim_start().split_once(". ").expect("numbered").1.to_string()).collect();
    assert_eq!(shown, expected, "{text}");
    assert_eq!(
        node.log(),
        checks("283").into_iter().map(|a| a.iter().map(|w| w.replace("local:", "shared:")).collect()).collect::<Vec<Vec<String>>>()
    );
    assert_eq!(node.vms(), vms);
    assert_eq!(std::fs::read_dir(node.state.join("shared/snippets")).expect("shared").count(), 0);
    f.assert_unchanged(&before, "a dry run");
}

#[test]
fn a_dry_run_against_an_unreachable_node_prints_the_plan_with_placeholders() {
    let Some((f, _node, admin)) = setup(Boot::Never, &[]) else { return };
    let before = f.snapshot();
    let out = f.run(&[
        "deploy-image",
        "--vm-id",
        "auto",
        "--name",
        "web01",
        "--authorized-key",
        &admin,
        "--pve",
        "root@127.0.0.1:1",
        "--dry-run",
    ]);
    let text = ok(&out);
    assert!(
        stderr(&out).contains("cannot reach the Proxmox node root@127.0.0.1:1") && stderr(&out).contains("-p 1 root@127.0.0.1 true`"),
        "{}",
        stderr(&out)
    );
    assert!(text.contains("qm clone 9000 '<next free id>' --name web01"), "{text}");
    assert!(text.contains("install -m 0600 /dev/stdin '<path of local:snippets/hostsmith-<next free id>-user-key.yaml>'"), "{text}");
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
    assert!(err.contains(&format!("`{SNIPPETS}/hostsmith-283-user-key.yaml` (0600; holds web01's private host key)")), "{err}");
    let rm = |k: &str| format!("rm -f -- {SNIPPETS}/hostsmith-283-{k}.yaml");
    let cleanup = format!("qm stop 283 && qm destroy 283 && {} && {} && {}", rm("meta"), rm("user"), rm("user-key"));
    assert!(err.contains(&cleanup), "{err}");
    assert!(rec.get("vm_id").is_none(), "no deployment recorded: {rec}");
    assert!(out.status.signal().is_none());
}

#[test]
fn a_node_refusal_shows_the_reason_not_the_usage_line_and_cleanup_removes_what_was_made() {
    let Some((f, node, admin)) = setup(Boot::Never, &["start"]) else { return };
    // A pool the node does not have: qm refuses the clone; nothing was made.
    let out = node.hostsmith(&f, &["deploy-image", "--vm-id", "283", "--name", "web01", "--authorized-key", &admin, "--pool", "nopool"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`qm clone 9000 283 --name web01 --pool nopool` failed") && err.contains("pool 'nopool' does not exist"), "{err}");
    assert!(!err.contains("left on node"), "{err}");

    let out =
        node.hostsmith(&f, &["deploy-image", "--vm-id", "283", "--name", "web01", "--authorized-key", &admin, "--cleanup-on-failure"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`qm start 283` failed") && err.contains("cleaned up on node `pve-standin`"), "{err}");
    assert!(!err.contains("qm start <vmid>"), "no usage line: {err}");
    let log = node.log();
    assert_eq!(log[log.len() - 3..], [argv(&["qm", "start", "283"]), argv(&["qm", "stop", "283"]), argv(&["qm", "destroy", "283"])]);
    assert_eq!(node.vms().len(), 1, "only the template is left: {:?}", node.vms());
    assert_eq!(node.uploads(), format!("{SNIPPETS}:\n\n/var/lib/vz/template/iso:\n"));
    assert!(stdout(&out).contains("qm clone 9000 283"), "{}", stdout(&out));
}
