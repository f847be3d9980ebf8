//! `sync HOST…` and `sync --all` against real sshds on 127.0.0.1, one per host: every host
//! synced side by side, one audit line each, one table, and a failed host that does not stop
//! the others.

use std::path::Path;

use crate::common::{ok, stderr, stdout};
use crate::sync::{Rig, host_sshd, rig};

/// Records `address` as the host's only address.
fn set_address(r: &Rig, host: &str, address: &str) {
    let path = r.f.dir.join(format!("hosts/{host}.json"));
    let mut record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    record["addresses"] = serde_json::json!([address]);
    std::fs::write(&path, serde_json::to_string_pretty(&record).expect("json") + "\n").expect("write");
}

fn sync_args<'a>(r: &'a Rig, hosts: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["sync"];
    v.extend_from_slice(hosts);
    v.extend(["--user", "root", "--identity", r.client.to_str().expect("utf8"), "--key", r.admin_pub.to_str().expect("utf8")]);
    v.extend(["--timeout", "5"]);
    v
}

fn authorized(home: &Path) -> String {
    std::fs::read_to_string(home.join(".ssh/authorized_keys")).unwrap_or_default()
}

/// The table row of `host`, split on blanks.
fn row<'a>(out: &'a str, host: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no row for {host}:\n{out}"))
        .split_whitespace()
        .collect()
}

#[test]
fn sync_all_syncs_every_host_side_by_side_and_a_failed_one_does_not_stop_the_others() {
    let Some(r) = rig() else { return };
    ok(&r.f.run(&["-q", "vm-fresh", "web02", "web03"]));
    let home2 = r.f.tmp.path().join("remote-root-2");
    let (_, sshd2) = host_sshd(&r.f, "web02", &home2, &r.f.tmp.path().join("sshd2.log"));
    set_address(&r, "web01", &r.addr());
    set_address(&r, "web02", &format!("127.0.0.1:{}", sshd2.port));
    // Nothing listens there.
    set_address(&r, "web03", &format!("127.0.0.1:{}", crate::sshd::free_port()));

    let mut args = sync_args(&r, &[]);
    args.extend(["--all", "-j", "3"]);
    let out = r.hs(&args);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert_eq!(row(&text, "HOST")[..3], ["HOST", "ADDRESS", "OUTCOME"]);
    assert_eq!(row(&text, "web01")[2..5], ["synced", "ssh", "1"], "{text}");
    assert_eq!(row(&text, "web02")[2..5], ["synced", "ssh", "1"], "{text}");
    assert_eq!(row(&text, "web03")[2..4], ["failed", "ssh"], "{text}");
    assert!(text.contains("3 hosts in ") && text.contains(": 2 synced, 1 failed"), "{text}");
    assert!(stderr(&out).contains("error: 1 of 3 hosts failed: web03"), "{}", stderr(&out));
    let line = {
        let l = r.admin.public_line();
        format!("{} admin@workstation\n", l.rsplit_once(' ').expect("comment").0)
    };
    assert_eq!(authorized(&r.home), line);
    assert_eq!(authorized(&home2), line);
    let audit = r.audit();
    let mut logged: Vec<(String, String)> = audit
        .iter()
        .map(|e| (e["host"].as_str().expect("host").to_string(), e["outcome"].as_str().expect("outcome").to_string()))
        .collect();
    logged.sort();
    assert_eq!(logged, [("web01", "synced"), ("web02", "synced"), ("web03", "failed")].map(|(h, o)| (h.to_string(), o.to_string())));

    // Named hosts, again: present, nothing written; JSON holds each host's entry.
    let mut args = sync_args(&r, &["web02", "web01"]);
    args.push("--json");
    let out = r.hs(&args);
    ok(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(report["present"], 2);
    assert_eq!(report["failed"], 0);
    let hosts: Vec<&str> = report["hosts"].as_array().expect("hosts").iter().map(|e| e["host"].as_str().expect("host")).collect();
    assert_eq!(hosts, ["web02", "web01"], "in the order named");
    assert_eq!(authorized(&home2), line, "unchanged");

    // A host answering with another host's key is the run's verdict (exit 3), the rest done.
    set_address(&r, "web02", &r.addr());
    let out = r.hs(&sync_args(&r, &["web01", "web02"]));
    assert_eq!(out.status.code(), Some(3), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(row(&stdout(&out), "web01")[2], "present");
    assert_eq!(row(&stdout(&out), "web02")[2], "failed");

    // Bad input stops the run before any host is reached.
    let before = r.audit().len();
    let out = r.hs(&sync_args(&r, &["web01", "nosuch"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = r.hs(&["sync", "web01", "web02", "--address", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--address is one host's address"), "{}", stderr(&out));
    assert_eq!(r.audit().len(), before + 1, "only the refusal of `nosuch` is logged");
}
