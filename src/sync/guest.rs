//! The `guest-agent` method: the sync script run inside a Proxmox VM by the QEMU guest
//! agent, `qm guest exec VMID --pass-stdin 1 -- sh -c BOOTSTRAP` on the node over ssh. It
//! is the counterpart of a cloud's run-command: it reaches a VM whose sshd does not accept
//! us yet. The same fixed script and stdin protocol as over ssh; the agent runs it as root,
//! and the script then runs itself again as the user (`setpriv`, `runuser` or `su`) before
//! it touches a file of the user's, so the user's own paths are never followed as root.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::proxmox::{Node, Ssh, Target, VmId};
use crate::record::HostRecord;

use super::remote::BOOTSTRAP;

/// The node a recorded VM runs on: `pve` (from `--pve` or `proxmox.pve`), else
/// `root@<proxmox_node>`, reached with `ssh_config` when given.
///
/// # Errors
/// A record without a node, or a node name that is not a host name.
pub fn node_for(record: &HostRecord, pve: Option<&Target>, ssh_config: Option<&Path>) -> Result<Node> {
    let target = match (pve, &record.proxmox_node) {
        (Some(t), _) => t.clone(),
        (None, Some(n)) => Target::parse(&format!("root@{n}"))?,
        (None, None) => return Err(Error::Usage(format!("host `{}` has no recorded proxmox_node; pass --pve USER@HOST", record.name))),
    };
    let mut ssh = Ssh::new(target);
    ssh.config = ssh_config.map(Path::to_path_buf);
    Ok(Node::ssh(ssh))
}

/// The `qm` arguments (after `qm`) that run the script in the VM.
#[must_use]
pub fn qm_args(vm: VmId, timeout: Duration) -> Vec<String> {
    // qm waits a little less than we do, so its own timeout report reaches us.
    let wait = timeout.as_secs().saturating_sub(2).max(1);
    ["guest", "exec", &vm.to_string(), "--pass-stdin", "1", "--timeout", &wait.to_string(), "--", "sh", "-c", BOOTSTRAP]
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Runs the script in the VM and returns what it printed.
///
/// # Errors
/// [`Error::Program`] when the node, qm or the agent fails, or the script outlives the wait.
pub fn attempt(node: &Node, vm_id: u64, timeout: Duration, stdin: &[u8]) -> Result<Vec<u8>> {
    let vm = VmId::new(vm_id)?;
    let args = qm_args(vm, timeout);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = node.qm(&refs, Some(stdin), timeout)?;
    let fail = |message: String| Error::Program { program: "qm guest exec".into(), message };
    if done.status != Some(0) {
        let stderr = String::from_utf8_lossy(&done.stderr);
        let last = stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no error output");
        return Err(fail(format!("VM {vm} on {}: {last} (is qemu-guest-agent running in the VM?)", node.describe())));
    }
    let status: serde_json::Value =
        serde_json::from_slice(&done.stdout).map_err(|_| fail(format!("VM {vm} on {}: qm printed no JSON status", node.describe())))?;
    if status.get("exited").and_then(serde_json::Value::as_u64) != Some(1) {
        return Err(fail(format!("VM {vm}: the script did not finish within {}s", timeout.as_secs())));
    }
    Ok(status.get("out-data").and_then(serde_json::Value::as_str).unwrap_or_default().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::process::{Finished, Program};
    use crate::proxmox::node::Remote;
    use crate::sync::keys::{SyncKey, UserName};
    use crate::sync::remote::{self, KeyState, Mode};

    /// A STAND-IN for a Proxmox node (no `qm` can run here): it records the argv it is given
    /// and plays `qm guest exec` by running the `sh -c` part locally, with `home` as HOME,
    /// then wraps the output in qm's JSON the way qm does.
    struct StandInNode {
        home: std::path::PathBuf,
        seen: Arc<Mutex<Vec<Vec<String>>>>,
    }

    impl Remote for StandInNode {
        fn run(&self, argv: &[String], stdin: Option<&[u8]>, timeout: Duration) -> Result<Finished> {
            self.seen.lock().expect("lock").push(argv.to_vec());
            let dash = argv.iter().position(|a| a == "--").expect("--");
            let done = Program::new(argv[dash + 1].clone())
                .args(argv[dash + 2..].iter().cloned())
                .env("HOME", self.home.display().to_string())
                .stdin(stdin.unwrap_or_default().to_vec())
                .timeout(timeout)
                .run()?;
            let json = serde_json::json!({ "exitcode": done.status, "exited": 1, "out-data": String::from_utf8_lossy(&done.stdout) });
            Ok(Finished { status: Some(0), stdout: json.to_string().into_bytes(), stderr: Vec::new() })
        }

        fn describe(&self) -> String {
            "stand-in node".into()
        }
    }

    #[test]
    fn the_guest_agent_runs_the_same_script_with_the_real_qm_command_line() {
        let tmp = tempfile::tempdir().expect("tmp");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let node = Node::with_remote(Box::new(StandInNode { home: tmp.path().to_path_buf(), seen: Arc::clone(&seen) }));
        let me = String::from_utf8(Program::new("id").arg("-un").run_ok().expect("id").stdout).expect("utf8");
        let user = UserName::parse(me.trim()).expect("user");
        let key = SyncKey::parse(&crate::ssh_keys::Keypair::generate("a@b").expect("key").public_line(), "t").expect("key");
        let stdin = remote::stdin(Mode::Apply, 5, &user, std::slice::from_ref(&key));
        let out = attempt(&node, 101, Duration::from_secs(30), &stdin).expect("attempt");
        let reply = remote::parse_reply(&out, 1, "qm").expect("reply");
        assert_eq!(reply.states, [KeyState::Added]);
        let written = std::fs::read_to_string(tmp.path().join(".ssh/authorized_keys")).expect("written");
        assert_eq!(written, format!("ssh-ed25519 {} a@b\n", key.blob));
        let argv = seen.lock().expect("lock")[0].clone();
        let expected: Vec<String> =
            ["qm", "guest", "exec", "101", "--pass-stdin", "1", "--timeout", "28", "--", "sh", "-c", BOOTSTRAP].map(String::from).to_vec();
        assert_eq!(argv, expected);
        assert!(!argv.join(" ").contains(&key.blob), "key material stays on stdin");
    }
}
