use super::*;

fn deployment() -> Deployment {
    Deployment {
        host: HostName::parse("mqtt-01").expect("name"),
        vm_id: IdChoice::Fixed(VmId::new(283).expect("id")),
        template: VmId::new(9000).expect("id"),
        node_name: None,
        full: false,
        storage: Some(StorageName::parse("fast").expect("storage")),
        seeding: Seeding::Snippet,
        seed_storage: StorageName::parse("local").expect("storage"),
        ip: IpConfig::Dhcp,
        vm: VmSettings::default(),
        start: true,
        wait: Duration::from_secs(300),
        cleanup_on_failure: false,
        keep_seed: false,
        rotate: false,
    }
}

const TEMPLATE: &str = "agent: enabled=1,fstrim_cloned_disks=1\nboot: order=scsi0;ide2;net0\n\
    ide2: local-lvm:vm-9000-cloudinit,media=cdrom\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1\n\
    scsi0: local-lvm:base-9000-disk-0,size=8G\ntemplate: 1\n";

fn plan(d: &Deployment) -> Plan<'_> {
    Plan {
        d,
        vm_id: match d.vm_id {
            IdChoice::Fixed(id) => Some(id),
            IdChoice::Auto => None,
        },
        node: Some("pve1".into()),
        template: VmConfig::parse(TEMPLATE),
        seed_dir: RemotePath::parse("/var/lib/vz/snippets").ok(),
    }
}

fn words(argv: &[String]) -> String {
    argv.join(" ")
}

#[test]
fn the_command_lines_of_a_linked_clone_by_snippets() {
    let d = deployment();
    let p = plan(&d);
    assert_eq!(words(&p.clone_argv()), "qm clone 9000 283 --name mqtt-01", "--storage only with --full");
    assert_eq!(
        words(&p.set_argv()),
        "qm set 283 --cicustom user=local:snippets/hostsmith-283-user-key.yaml,meta=local:snippets/hostsmith-283-meta.yaml --ipconfig0 ip=dhcp",
        "the template's agent is enabled already and its net0 is kept"
    );
    assert_eq!(
        words(&p.reseed_argv()),
        "qm set 283 --cicustom user=local:snippets/hostsmith-283-user.yaml,meta=local:snippets/hostsmith-283-meta.yaml"
    );
    assert_eq!(p.path(SeedFile::UserWithKey).expect("path").as_str(), "/var/lib/vz/snippets/hostsmith-283-user-key.yaml");
    assert_eq!(words(&p.nextid_argv()), "pvesh get /cluster/nextid --vmid 283 --output-format json");
    assert_eq!(words(&p.feature_argv()), "pvesh get /nodes/pve1/qemu/9000/feature --feature clone --output-format json");
    let full = Deployment { full: true, vm: VmSettings { pool: Some("prod".into()), ..VmSettings::default() }, ..deployment() };
    assert_eq!(words(&plan(&full).clone_argv()), "qm clone 9000 283 --name mqtt-01 --full --storage fast --pool prod");
}

#[test]
fn vm_settings_merge_into_the_template() {
    let d = Deployment {
        ip: IpConfig::parse_static("2001:db8::10/64", Some("2001:db8::1")).expect("ip"),
        vm: VmSettings {
            bridge: Some(BridgeName::parse("vmbr1").expect("bridge")),
            vlan: Some(20),
            tags: Some("web;prod".into()),
            onboot: Some(true),
            cores: Some(4),
            memory: Some(4096),
            disk_size: Some(DiskSize::parse("20G").expect("size")),
            nameservers: vec!["192.0.2.53".parse().expect("ip")],
            searchdomain: Some("example.org".into()),
            description: Some("the broker".into()),
            pool: None,
        },
        ..deployment()
    };
    let p = plan(&d);
    assert_eq!(
        words(&p.set_argv()),
        "qm set 283 --cicustom user=local:snippets/hostsmith-283-user-key.yaml,meta=local:snippets/hostsmith-283-meta.yaml \
         --ipconfig0 ip6=2001:db8::10/64,gw6=2001:db8::1 --nameserver 192.0.2.53 --searchdomain example.org \
         --net0 virtio,bridge=vmbr1,firewall=1,tag=20 --cores 4 --memory 4096 --onboot 1 --tags web;prod --description the broker"
    );
    assert_eq!(p.resize_argv().map(|a| words(&a)).as_deref(), Some("qm resize 283 scsi0 20G"));
    assert_eq!(p.bridge().as_deref(), Some("vmbr1"));
}

#[test]
fn a_seed_image_replaces_the_snippets() {
    let d = Deployment { seeding: Seeding::Iso, ..deployment() };
    let p = Plan { seed_dir: RemotePath::parse("/var/lib/vz/template/iso").ok(), template: VmConfig::parse("template: 1\n"), ..plan(&d) };
    assert_eq!(words(&p.set_argv()), "qm set 283 --ide2 local:iso/hostsmith-283-seed-key.iso,media=cdrom --agent enabled=1");
    assert_eq!(words(&p.reseed_argv()), "qm set 283 --ide2 local:iso/hostsmith-283-seed.iso,media=cdrom");
    assert_eq!(p.cloudinit_update_argv(), None, "no Proxmox cloud-init drive to rebuild");
    assert_eq!(p.uploads(), [SeedFile::Iso, SeedFile::IsoWithKey]);
}

#[test]
fn the_plan_lists_checks_then_changes_then_the_key_removal() {
    let d = deployment();
    let steps = plan(&d).steps();
    let shown: Vec<String> = steps.iter().map(|s| words(&s.argv)).collect();
    assert_eq!(
        shown,
        [
            "hostname",
            "pvesh get /cluster/nextid --vmid 283 --output-format json",
            "qm config 9000",
            "pvesh get /nodes/pve1/storage --output-format json",
            "pvesh get /nodes/pve1/qemu/9000/feature --feature clone --output-format json",
            "pvesm path local:snippets/hostsmith-283-meta.yaml",
            "find /var/lib/vz/snippets -maxdepth 1 -name hostsmith-283-*",
            "test -d /sys/class/net/vmbr0",
            "qm clone 9000 283 --name mqtt-01",
            "install -m 0600 /dev/stdin /var/lib/vz/snippets/hostsmith-283-meta.yaml",
            "install -m 0600 /dev/stdin /var/lib/vz/snippets/hostsmith-283-user.yaml",
            "install -m 0600 /dev/stdin /var/lib/vz/snippets/hostsmith-283-user-key.yaml",
            "qm set 283 --cicustom user=local:snippets/hostsmith-283-user-key.yaml,meta=local:snippets/hostsmith-283-meta.yaml --ipconfig0 ip=dhcp",
            "qm start 283",
            "qm guest cmd 283 network-get-interfaces",
            "qm set 283 --cicustom user=local:snippets/hostsmith-283-user.yaml,meta=local:snippets/hostsmith-283-meta.yaml",
            "qm cloudinit update 283",
            "rm -f -- /var/lib/vz/snippets/hostsmith-283-user-key.yaml",
        ]
    );
    assert!(steps[..8].iter().all(|s| s.check) && !steps[8..].iter().any(|s| s.check));
    let kept = Deployment { keep_seed: true, ..deployment() };
    assert_eq!(plan(&kept).steps().last().map(|s| words(&s.argv)).as_deref(), Some("qm guest cmd 283 network-get-interfaces"));
    let auto = Deployment { vm_id: IdChoice::Auto, full: true, ..deployment() };
    let p = Plan { template: VmConfig::default(), seed_dir: None, node: None, ..plan(&auto) };
    let shown: Vec<String> = p.steps().iter().map(|s| words(&s.argv)).collect();
    assert_eq!(shown[1], "pvesh get /cluster/nextid --output-format json");
    assert_eq!(shown[3], "pvesh get /nodes/<node>/storage --output-format json");
    assert!(
        shown.contains(&"install -m 0600 /dev/stdin <path of local:snippets/hostsmith-<next free id>-meta.yaml>".to_string()),
        "{shown:?}"
    );
}

#[test]
fn addresses_are_checked_against_proxmox_ranges() {
    for ok in ["192.0.2.10/8", "192.0.2.10/32", "2001:db8::10/8", "2001:db8::10/128"] {
        assert!(IpConfig::parse_static(ok, None).is_ok(), "{ok}");
    }
    for bad in ["192.0.2.10/7", "192.0.2.10/33", "2001:db8::10/7", "2001:db8::10/129", "192.0.2.10"] {
        assert!(IpConfig::parse_static(bad, None).is_err(), "{bad}");
    }
    assert!(IpConfig::parse_static("192.0.2.10/24", Some("2001:db8::1")).is_err());
    assert_eq!(DiskSize::parse("+10G").expect("grow"), DiskSize { text: "+10G".into(), grow: true, bytes: 10 << 30 });
    assert!(DiskSize::parse("0").is_err() && DiskSize::parse("10X").is_err() && DiskSize::parse("-1G").is_err());
}

#[test]
fn templates_are_checked_for_what_the_seed_needs() {
    let d = deployment();
    let template = VmConfig::parse("ide2: local-lvm:vm-9000-cloudinit,media=cdrom\nname: tpl\ntemplate: 1\n");
    assert!(check_template(&d, &template).is_ok());
    let err = check_template(&d, &VmConfig::parse("name: tpl\ntemplate: 1\n")).expect_err("no drive").to_string();
    assert!(err.contains("no cloud-init drive"), "{err}");
    let err =
        check_template(&d, &VmConfig::parse("ide2: local-lvm:vm-9000-cloudinit,media=cdrom\n")).expect_err("not a template").to_string();
    assert!(err.contains("is not a template") && err.contains("--full"), "{err}");
    assert!(check_template(&Deployment { full: true, ..deployment() }, &VmConfig::parse("ide2: local-lvm:vm-9000-cloudinit\n")).is_ok());
    let iso = Deployment { seeding: Seeding::Iso, ..deployment() };
    assert!(check_template(&iso, &template).is_ok(), "the seed image takes ide2's place");
    let err =
        check_template(&iso, &VmConfig::parse("scsi1: local-lvm:vm-9000-cloudinit\ntemplate: 1\n")).expect_err("two sources").to_string();
    assert!(err.contains("scsi1"), "{err}");
    let shrink =
        Deployment { vm: VmSettings { disk_size: Some(DiskSize::parse("8G").expect("size")), ..VmSettings::default() }, ..deployment() };
    let err = check_template(&shrink, &VmConfig::parse(TEMPLATE)).expect_err("not larger").to_string();
    assert!(err.contains("cannot shrink"), "{err}");
}
