//! Keys that ask before they open (a plugin's PIN, a passphrase-protected identity file, an
//! encrypted SSH key): asked once per run on the terminal however many files are re-keyed,
//! never when nothing needs decrypting, and a clear error when there is no terminal.

use std::path::Path;
use std::process::Command;

use super::plugin_key;
use crate::common::{TestFleet, Tmux, ok, peer, run, stderr, wait_for};

const HOSTS: [&str; 3] = ["web01", "web02", "db01"];

/// Runs `hostsmith ARGS` in a fresh tmux terminal with `env`, answers the first `prompt` with
/// `answer`, and returns the screen once it printed `EXIT=`.
fn on_a_terminal(tmux: &Path, f: &TestFleet, args: &str, env: &str, prompt: &str, answer: &str) -> String {
    let script = format!(
        "cd {dir} && export HOME={home} {env} && {bin} {args}; echo EXIT=$?; sleep 60",
        dir = f.dir.display(),
        home = f.home.display(),
        bin = crate::common::bin().display(),
    );
    let t = Tmux { tmux: tmux.to_path_buf(), socket: format!("hostsmith-unlock-{}-{}", std::process::id(), prompt.len()) };
    ok(&run(t.cmd().args(["new-session", "-d", "-s", "t", "-x", "250", "-y", "100", "sh", "-c", &script])));
    wait_for(&t, prompt);
    ok(&run(t.cmd().args(["send-keys", "-t", "t", answer, "Enter"])));
    wait_for(&t, "EXIT=")
}

/// The same command with no terminal at all (`setsid`: no controlling terminal).
fn without_a_terminal(f: &TestFleet, args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut c = Command::new("setsid");
    c.arg("-w").arg(crate::common::bin()).args(args).current_dir(&f.dir);
    f.env(&mut c);
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

/// Three hosts and a shared file they all join, for an admin that is `recipient`.
fn fleet_for(f: &TestFleet, recipient: &str) {
    ok(&f.run(&["init", "--admin-recipient", recipient]));
    let mut args = vec!["vm-fresh"];
    args.extend(HOSTS);
    // Creating files only wraps for the admin: no prompt, no terminal needed.
    let out = without_a_terminal(f, &args, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_plugin_pin_is_asked_once_for_many_files_and_never_when_nothing_opens() {
    let (Some(tmux), Some(plugin), Some(_)) = (peer("tmux"), peer("age-plugin-hstest"), peer("setsid")) else { return };
    let f = TestFleet::new();
    let admin = plugin_key(&plugin, &["--generate", "--pin"], f.tmp.path(), "pin-id.txt");
    fleet_for(&f, &admin.recipient);
    let log = f.tmp.path().join("plugin.log");
    let env = format!("SOPS_AGE_KEY_FILE={} HSTEST_LOG={}", admin.file.display(), log.display());
    let screen = on_a_terminal(&tmux, &f, "sops rekey --rotate-data-key -j 2", &format!("&& export {env}"), "Enter PIN", "246810");
    assert!(screen.contains("EXIT=0") && screen.contains("re-keyed 3, unchanged 0, failed 0"), "{screen}");
    assert_eq!(screen.matches("Enter PIN for the hstest key").count(), 1, "asked once:\n{screen}");
    let sessions = std::fs::read_to_string(&log).expect("log");
    // Every file's data key was opened in its own plugin session, each given the one answer.
    assert_eq!(sessions.lines().filter(|l| *l == "pin").count(), 3, "{sessions}");

    // Nothing to change: nothing is decrypted, so nothing is asked, terminal or not.
    std::fs::remove_file(&log).expect("rm");
    let id = [("SOPS_AGE_KEY_FILE", admin.file.as_path()), ("HSTEST_LOG", log.as_path())];
    let out = without_a_terminal(&f, &["sops", "rekey"], &id);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!log.exists(), "no plugin session: {:?}", std::fs::read_to_string(&log));

    // A file to open and no terminal to ask on: the reason and the fix, the file unchanged.
    let before = f.snapshot();
    let out = without_a_terminal(&f, &["sops", "rekey", "--rotate-data-key", "sops/web01.yaml"], &id);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("(it asked \"Enter PIN for the hstest key:\", and there is no terminal to ask on: run hostsmith in a terminal)"),
        "{err}"
    );
    assert!(!err.contains('\u{2068}'), "no direction marks: {err:?}");
    f.assert_unchanged(&before, "a re-key that could not ask for the PIN");
}

#[test]
fn a_passphrase_protected_identity_file_is_unlocked_once() {
    let (Some(tmux), Some(_)) = (peer("tmux"), peer("setsid")) else { return };
    let f = TestFleet::new();
    let id = age::x25519::Identity::generate();
    let plain = {
        use age::secrecy::ExposeSecret as _;
        format!("# public key: {}\n{}\n", id.to_public(), id.to_string().expose_secret())
    };
    // `age -p`, with a small work factor so the test is quick.
    let mut scrypt = age::scrypt::Recipient::new(age::secrecy::SecretString::from("correct horse".to_string()));
    scrypt.set_work_factor(10);
    let protected = age::encrypt_and_armor(&scrypt, plain.as_bytes()).expect("encrypt");
    let file = f.tmp.path().join("keys.txt.age");
    std::fs::write(&file, protected).expect("write");
    fleet_for(&f, &id.to_public().to_string());
    let env = format!("&& export SOPS_AGE_KEY_FILE={}", file.display());
    let screen = on_a_terminal(&tmux, &f, "sops rekey --rotate-data-key", &env, "Enter passphrase for identity", "correct horse");
    assert!(screen.contains("EXIT=0") && screen.contains("re-keyed 3,"), "{screen}");
    assert_eq!(screen.matches("Enter passphrase for identity SOPS_AGE_KEY_FILE").count(), 1, "{screen}");

    let out = without_a_terminal(&f, &["sops", "rekey", "--rotate-data-key"], &[("SOPS_AGE_KEY_FILE", file.as_path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("the identity file SOPS_AGE_KEY_FILE `{}` is passphrase-protected (it asked", file.display())),
        "{}",
        stderr(&out)
    );

    // A plugin identity kept in a protected file: one passphrase, then the plugin opens.
    let Some(plugin) = peer("age-plugin-hstest") else { return };
    let g = TestFleet::new();
    let admin = plugin_key(&plugin, &["--generate"], g.tmp.path(), "plugin-id.txt");
    let protected = age::encrypt_and_armor(&scrypt, std::fs::read_to_string(&admin.file).expect("id").as_bytes()).expect("encrypt");
    std::fs::write(&file, protected).expect("write");
    fleet_for(&g, &admin.recipient);
    let screen = on_a_terminal(&tmux, &g, "sops rekey --rotate-data-key", &env, "Enter passphrase for identity", "correct horse");
    assert!(screen.contains("EXIT=0") && screen.contains("re-keyed 3,"), "{screen}");
    assert_eq!(screen.matches("Enter passphrase for identity").count(), 1, "{screen}");
}

#[test]
fn an_encrypted_ssh_key_is_unlocked_once_and_only_for_its_own_files() {
    let (Some(tmux), Some(keygen), Some(_)) = (peer("tmux"), peer("ssh-keygen"), peer("setsid")) else { return };
    let f = TestFleet::new();
    let key = f.tmp.path().join("admin_key");
    ok(&run(Command::new(&keygen).args(["-q", "-t", "ed25519", "-N", "open sesame", "-f"]).arg(&key)));
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub");
    fleet_for(&f, public.trim());
    let env = format!("&& export SOPS_AGE_SSH_PRIVATE_KEY_FILE={}", key.display());
    let screen = on_a_terminal(&tmux, &f, "sops rekey --rotate-data-key", &env, "Enter passphrase for SSH key", "open sesame");
    assert!(screen.contains("EXIT=0") && screen.contains("re-keyed 3,"), "{screen}");
    assert_eq!(screen.matches("Enter passphrase for SSH key").count(), 1, "{screen}");

    // The same encrypted key as ~/.ssh/id_ed25519 of an X25519 admin: never asked for.
    let g = TestFleet::new();
    g.init_with(&["web01"]);
    std::fs::create_dir_all(g.home.join(".ssh")).expect("mkdir");
    std::fs::copy(&key, g.home.join(".ssh/id_ed25519")).expect("copy");
    let out = without_a_terminal(&g, &["sops", "rekey", "--rotate-data-key"], &[]);
    assert!(out.status.success(), "an unrelated encrypted key must not be unlocked: {}", stderr(&out));
}
