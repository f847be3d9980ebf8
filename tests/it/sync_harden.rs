//! The remote script under attack, run by real shells exactly as a host runs it: as root
//! for another user (the guest agent) while the account's owner races it (F02), without the
//! tools it drops root rights with, and killed in the middle of writing `authorized_keys`.
//!
//! "Another user" is Debian's unprivileged `games` account (uid 5, home /usr/games), with a
//! temporary directory mounted over that home in a private mount namespace, so nothing on
//! the machine changes. The races are deterministic: wrapper programs on PATH do the
//! attacker's (or the network's) part at exactly the moment that matters.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hostsmith::ssh_keys::Keypair;
use hostsmith::sync::keys::{SyncKey, UserName};
use hostsmith::sync::remote::{self, Mode, REMOTE_COMMAND};

use crate::common::{peer, run_with_stdin, stdout};

const GAMES_UID: u32 = 5;

fn key(comment: &str) -> SyncKey {
    SyncKey::parse(&Keypair::generate(comment).expect("key").public_line(), "test").expect("key")
}

/// Root, `unshare` and a `games` user whose home is /usr/games, or a reason to skip.
fn games() -> Option<(PathBuf, UserName)> {
    let unshare = peer("unshare")?;
    let entry = Command::new("getent").args(["passwd", "games"]).output().expect("getent");
    let root = euid() == 0;
    if !root || !entry.status.success() || !String::from_utf8_lossy(&entry.stdout).starts_with("games:x:5:60:") {
        assert!(!crate::common::peers_required(), "needs root and the `games` user (uid 5, gid 60, home /usr/games)");
        eprintln!("skipped: needs root and the `games` user with home /usr/games");
        return None;
    }
    Some((unshare, UserName::parse("games").expect("user")))
}

/// The uid the tests run as.
fn euid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// A directory every user can enter (tempdirs are 0700), for wrappers and the attacker's
/// target.
/// A shared directory holding the swap wrappers (`bin/`) and the root-owned target they
/// swap `~/.ssh` for.
fn race() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let shared = open_dir();
    let bin = shared.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let target = root_target(shared.path());
    swap_wrappers(&bin, &target);
    (shared, bin, target)
}

fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A home owned by `games`, as a real one would be.
fn games_home() -> tempfile::TempDir {
    let home = open_dir();
    std::os::unix::fs::chown(home.path(), Some(GAMES_UID), Some(60)).expect("chown");
    home
}

/// Runs the constant remote command as root (as the guest agent does), with `home` mounted
/// over /usr/games, `shell_prefix` run first in the namespace (extra mounts), and `path`
/// in front of PATH.
fn as_root_for_games(unshare: &Path, home: &Path, shell_prefix: &str, path: Option<&Path>, input: &[u8]) -> Output {
    let mut c = Command::new(unshare);
    let script = format!(r#"mount --bind "$0" /usr/games && {shell_prefix} exec sh -c "$1""#);
    c.args(["-m", "--propagation", "private", "sh", "-c", &script]).arg(home).arg(REMOTE_COMMAND);
    c.env("HOME", "/root").env_remove("ENV").env_remove("BASH_ENV");
    if let Some(p) = path {
        c.env("PATH", format!("{}:{}", p.display(), std::env::var("PATH").unwrap_or_default()));
    }
    run_with_stdin(&mut c, input)
}

fn write_program(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The attacker's move, installed as `mkdir`, `chown` and `flock`: the moment the script
/// creates `.ssh` (after it) or is about to hand over or lock it (before), `.ssh` becomes a
/// link to `target`, once. This is the window the old script left between `[ -L .ssh ]`
/// and `chown`.
fn swap_wrappers(bin: &Path, target: &Path) {
    let text = format!(
        r#"#!/bin/sh
name=${{0##*/}}
real=$(PATH=/usr/bin:/bin:/usr/sbin:/sbin command -v "$name")
swap() {{ if [ -d .ssh ] && [ ! -L .ssh ]; then /usr/bin/mv .ssh .ssh.moved && /usr/bin/ln -s {} .ssh; fi; }}
case $name in
  mkdir) "$real" "$@"; status=$?; swap; exit $status ;;
  *) swap; exec "$real" "$@" ;;
esac
"#,
        target.display()
    );
    for name in ["mkdir", "chown", "flock"] {
        write_program(&bin.join(name), &text);
    }
}

/// The root-owned directory the attacker points `.ssh` at, holding root's own keys.
fn root_target(parent: &Path) -> PathBuf {
    let target = parent.join("root-ssh");
    std::fs::create_dir(&target).expect("mkdir");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(target.join("authorized_keys"), "ssh-ed25519 AAAAroot root@precious\n").expect("write");
    std::fs::set_permissions(target.join("authorized_keys"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    target
}

fn assert_still_roots(target: &Path) {
    let dir = std::fs::metadata(target).expect("target");
    assert_eq!((dir.uid(), dir.mode() & 0o7777), (0, 0o755), "the root-owned directory changed hands");
    let file = std::fs::symlink_metadata(target.join("authorized_keys")).expect("file");
    assert_eq!((file.uid(), file.mode() & 0o7777), (0, 0o644));
    assert_eq!(std::fs::read_to_string(target.join("authorized_keys")).expect("read"), "ssh-ed25519 AAAAroot root@precious\n");
    let names: Vec<_> = std::fs::read_dir(target).expect("ls").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, ["authorized_keys"], "nothing else appears in the root-owned directory");
}

/// F02: as root for another user, the script never operates on the user's paths with root
/// rights. The account's owner swaps `~/.ssh` for a link to a root-owned directory at the
/// racy moment, in a fresh home (right after `mkdir .ssh`) and in a home that has `.ssh`
/// (right before the old script's `chown .ssh/authorized_keys`). The old script handed the
/// directory, or root's own authorized_keys, to the user and wrote the key into it; now
/// the run is the user's own, so it cannot write there and says so.
#[test]
fn f02_a_symlink_swapped_in_mid_run_never_hands_root_files_to_the_user() {
    let Some((unshare, games)) = games() else { return };
    for (existing_ssh, expected) in [
        (false, "hostsmith-sync 1\ncreated .ssh\nlock flock\nerror write cannot write .ssh/authorized_keys\n"),
        (true, "hostsmith-sync 1\nlock flock\nerror write cannot write .ssh/authorized_keys\n"),
    ] {
        let (_shared, bin, target) = race();
        let home = games_home();
        if existing_ssh {
            std::fs::create_dir(home.path().join(".ssh")).expect("mkdir");
            std::os::unix::fs::chown(home.path().join(".ssh"), Some(GAMES_UID), Some(60)).expect("chown");
        }
        let input = remote::stdin(Mode::Apply, 5, &games, &[key("attacker@games")]);
        let out = as_root_for_games(&unshare, home.path(), "", Some(&bin), &input);
        assert!(std::fs::symlink_metadata(home.path().join(".ssh")).expect("link").file_type().is_symlink(), "the swap happened");
        assert_still_roots(&target);
        assert_eq!(stdout(&out), expected, "existing .ssh: {existing_ssh}; stderr: {}", crate::common::stderr(&out));
        assert_eq!(out.status.code(), Some(1));
    }
}

/// `mount` arguments (for a private mount namespace) that hide `names` from /usr/bin and
/// /usr/sbin with overlay whiteouts; each mount gets its own upper and work directories.
fn hide(dir: &Path, names: &[&str]) -> String {
    let mut mounts = String::new();
    for bindir in ["/usr/bin", "/usr/sbin"] {
        let tag = bindir.replace('/', "-");
        let (upper, work) = (dir.join(format!("upper{tag}")), dir.join(format!("work{tag}")));
        std::fs::create_dir(&upper).expect("mkdir");
        std::fs::create_dir(&work).expect("mkdir");
        for name in names {
            if Path::new(bindir).join(name).exists() {
                let status = Command::new("mknod").arg(upper.join(name)).args(["c", "0", "0"]).status().expect("mknod");
                assert!(status.success());
            }
        }
        mounts.push_str(&format!(
            "mount -t overlay overlay -o lowerdir={bindir},upperdir={},workdir={} {bindir} && ",
            upper.display(),
            work.display()
        ));
    }
    mounts
}

/// The script picks whichever of setpriv, runuser and su the host has to become the user
/// (the files it creates are then the user's own), and says clearly when it has none.
#[test]
fn f02_the_script_drops_to_the_user_with_setpriv_runuser_or_su_or_says_it_cannot() {
    let Some((unshare, games)) = games() else { return };
    for hidden in [&[][..], &["setpriv"][..], &["setpriv", "runuser"][..]] {
        let tmp = tempfile::tempdir().expect("tmp");
        let home = games_home();
        let k = key("admin@laptop");
        let input = remote::stdin(Mode::Apply, 5, &games, std::slice::from_ref(&k));
        let out = as_root_for_games(&unshare, home.path(), &hide(tmp.path(), hidden), None, &input);
        assert_eq!(
            stdout(&out),
            "hostsmith-sync 1\ncreated .ssh\nlock flock\ncreated .ssh/authorized_keys\nkey 1 added\nok\n",
            "without {hidden:?}: {}",
            crate::common::stderr(&out)
        );
        let (dir, file) = (
            std::fs::metadata(home.path().join(".ssh")).expect("dir"),
            std::fs::metadata(home.path().join(".ssh/authorized_keys")).expect("file"),
        );
        assert_eq!((dir.uid(), dir.gid(), dir.mode() & 0o777), (GAMES_UID, 60, 0o700), "without {hidden:?}");
        assert_eq!((file.uid(), file.gid(), file.mode() & 0o777), (GAMES_UID, 60, 0o600), "without {hidden:?}");
        assert_eq!(
            std::fs::read_to_string(home.path().join(".ssh/authorized_keys")).expect("read"),
            format!("ssh-ed25519 {} admin@laptop\n", k.blob)
        );
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let home = games_home();
    let input = remote::stdin(Mode::Apply, 5, &games, &[key("a")]);
    let out = as_root_for_games(&unshare, home.path(), &hide(tmp.path(), &["setpriv", "runuser", "su"]), None, &input);
    assert_eq!(
        stdout(&out),
        "hostsmith-sync 1\nerror user running as root, and none of setpriv, runuser or su is on the host to run as games: install util-linux, or sync over ssh as games\n"
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_dir(home.path()).expect("ls").count(), 0, "nothing was created");
}

/// A kill at the worst moment: `sync` (run between writing the temporary file and renaming
/// it over authorized_keys) is a wrapper that kills the script with `signal`, as a dropped
/// connection (HUP, PIPE) or the OOM killer (KILL) would.
fn killed_while_writing(signal: &str, home: &Path, input: &[u8]) -> Output {
    let bin = tempfile::tempdir().expect("tmp");
    write_program(&bin.path().join("sync"), &format!("#!/bin/sh\nkill -{signal} $PPID\nsleep 1\n"));
    let mut c = Command::new("sh");
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    c.args(["-c", REMOTE_COMMAND]).env("HOME", home).env("PATH", path).env_remove("ENV");
    run_with_stdin(&mut c, input)
}

/// A run that dies in the middle of writing leaves authorized_keys byte for byte as it was
/// (never a partial line), keeps its mode, and the next run completes the work; a
/// truncated request writes nothing at all.
#[test]
fn a_run_killed_mid_write_leaves_authorized_keys_whole() {
    let me = Command::new("id").arg("-un").output().expect("id");
    let me = UserName::parse(String::from_utf8_lossy(&me.stdout).trim()).expect("user");
    let before = "# by hand\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeep kept@host";
    for signal in ["HUP", "PIPE", "TERM", "KILL"] {
        let home = tempfile::tempdir().expect("tmp");
        let ssh = home.path().join(".ssh");
        std::fs::create_dir(&ssh).expect("mkdir");
        std::fs::write(ssh.join("authorized_keys"), before).expect("write");
        std::fs::set_permissions(ssh.join("authorized_keys"), std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let k = key("admin@laptop");
        let input = remote::stdin(Mode::Apply, 5, &me, std::slice::from_ref(&k));
        let out = killed_while_writing(signal, home.path(), &input);
        assert!(!out.status.success(), "{signal}");
        assert_eq!(stdout(&out), "hostsmith-sync 1\nlock flock\n", "{signal}");
        assert_eq!(std::fs::read_to_string(ssh.join("authorized_keys")).expect("read"), before, "{signal}");
        assert_eq!(std::fs::metadata(ssh.join("authorized_keys")).expect("meta").mode() & 0o777, 0o640);
        // A trapped signal removes the temporary file; after SIGKILL the next run does.
        let leftover = ssh.join("authorized_keys.hostsmith-new").exists();
        assert_eq!(leftover, signal == "KILL", "{signal}");

        let mut c = Command::new("sh");
        c.args(["-c", REMOTE_COMMAND]).env("HOME", home.path()).env_remove("ENV");
        let out = run_with_stdin(&mut c, &input);
        assert_eq!(stdout(&out), "hostsmith-sync 1\nlock flock\nkey 1 added\nok\n", "{signal}");
        assert_eq!(
            std::fs::read_to_string(ssh.join("authorized_keys")).expect("read"),
            format!("{before}\nssh-ed25519 {} admin@laptop\n", k.blob)
        );
        assert_eq!(std::fs::metadata(ssh.join("authorized_keys")).expect("meta").mode() & 0o777, 0o640, "the mode is kept");
        let names: Vec<_> = std::fs::read_dir(&ssh).expect("ls").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(names, ["authorized_keys"], "{signal}: no temporary file is left");
    }

    // The request cut anywhere before `end`: nothing is written.
    let home = tempfile::tempdir().expect("tmp");
    let input = remote::stdin(Mode::Apply, 5, &me, &[key("a"), key("b")]);
    let request = input.windows(22).position(|w| w == b"hostsmith-sync 1 apply").expect("request");
    for cut in [request, request + 30, input.len() - 4, input.len() - 1] {
        let mut c = Command::new("sh");
        c.args(["-c", REMOTE_COMMAND]).env("HOME", home.path()).env_remove("ENV");
        let out = run_with_stdin(&mut c, &input[..cut]);
        assert!(!out.status.success(), "cut at {cut}");
        assert!(!home.path().join(".ssh/authorized_keys").exists(), "cut at {cut}: {}", stdout(&out));
    }
}

/// How sshd itself takes a line: whether the admin key logs in with `line` as the whole of
/// root's authorized_keys on the rig's real sshd.
fn sshd_accepts(r: &crate::sync::Rig, admin_private: &Path, line: &str) -> bool {
    std::fs::write(r.keys_file(), format!("{line}\n")).expect("write");
    let out = crate::common::run(Command::new("ssh").args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]).args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-i",
        admin_private.to_str().expect("utf8"),
        "-p",
        &r.sshd.port.to_string(),
        "root@127.0.0.1",
        "true",
    ]));
    out.status.success()
}

/// An authorized_keys line and the exact warning hostsmith gives for it (maybe none).
type Case = (String, String);

/// The lines of the F15 test with the warning each must give: sshd accepts the first set
/// and rejects the second (the test checks that against sshd itself).
fn f15_lines(kb: &str) -> (Vec<Case>, Vec<Case>) {
    let place = "warning: root@web01:~/.ssh/authorized_keys line 1:";
    let restricted = |options: &str| {
        let what = if options.contains(',') { "restricting options" } else { "a restricting option" };
        format!(
            "{place} key <FP> is there with {what} ({options}), which may keep it from a shell; sync counts it present and leaves the line alone (edit the line to lift them)\n"
        )
    };
    let invalid = |why: &str| format!("{place} sshd ignores this line with key <FP> ({why}); it does not count as present\n");
    let accepted = [
        (format!("{kb} admin"), String::new()),
        (format!("{kb} admin\r"), String::new()),
        (format!("no-touch-required,port-forwarding {kb}"), String::new()),
        (format!("command=\"echo \\\"forced\\\"\" {kb}"), restricted("command")),
        (format!("from=\"127.0.0.1,10.0.0.0/8\",no-pty {kb}"), restricted("from, no-pty")),
        (format!("restrict,pty {kb}"), restricted("restrict")),
        (format!("expiry-time=\"29991231Z\" {kb}"), restricted("expiry-time")),
        (
            format!("environment=\"A_1=b c\",permitopen=\"localhost:ssh\",permitlisten=\"8080\" {kb}"),
            restricted("permitopen, permitlisten"),
        ),
        (format!("NO-PTY,,No-Agent-Forwarding,\t{kb}"), restricted("no-pty, no-agent-forwarding")),
        (format!("tunnel=\"any\",verify-required {kb}"), restricted("tunnel, verify-required")),
    ];
    let rejected = [
        (format!("badopt {kb}"), invalid("unknown option `badopt`")),
        (format!("restrictive {kb}"), invalid("unknown option `restrictive`")),
        (format!("no-pty;touch\u{1b}[2J {kb}"), invalid("an unknown option")),
        (format!("command=echo {kb}"), invalid("`command=` without a double-quoted value")),
        (format!("command=\"a\",command=\"b\" {kb}"), invalid("`command=` given twice")),
        (format!("expiry-time=\"2026\" {kb}"), invalid("an invalid `expiry-time=` value")),
        (format!("environment=\"1-A\" {kb}"), invalid("an invalid `environment=` value")),
        (format!("permitopen=\"localhost\" {kb}"), invalid("an invalid `permitopen=` value")),
        (format!("permitopen=\"localhost:no-such-service\" {kb}"), invalid("an invalid `permitopen=` value")),
        (format!("tunnel=\"x\" {kb}"), invalid("an invalid `tunnel=` value")),
        (format!("principals=\"admin\" {kb}"), invalid("`principals=` without `cert-authority`")),
        (format!("from=\"127.0.0.1 {kb}"), invalid("an unterminated quote in its options")),
        (format!("\u{feff}{kb}"), invalid("no key where sshd reads one (stray characters before the key type?)")),
    ];
    (accepted.to_vec(), rejected.to_vec())
}

/// F15: existing lines are judged as sshd judges them, and the real sshd on loopback is the
/// oracle. A line sshd rejects (an unknown option, a bad value, a duplicate, …) does not
/// make its key present: a dry run says it would add the key and warns, naming the line and
/// why. A line sshd accepts with options that restrict the key counts as present, with a
/// warning naming those options; sync adds no unrestricted line beside it (sshd uses the
/// first line that matches, so the new line would either be ignored or undo a restriction
/// someone chose). After a real sync over an invalid line, sshd lets the key in.
#[test]
fn f15_lines_sshd_rejects_are_not_present_and_restricted_lines_are_reported() {
    let Some(r) = crate::sync::rig() else { return };
    let admin_private = r.f.tmp.path().join("admin_key");
    hostsmith::atomic::create_secret(&admin_private, r.admin.openssh_private().expect("private").as_bytes()).expect("write");
    std::fs::create_dir_all(r.home.join(".ssh")).expect("mkdir");
    let line = r.admin.public_line();
    let (kb, _) = line.rsplit_once(' ').expect("comment");
    let (accepted, rejected) = f15_lines(kb);
    let addr = r.addr();
    for (line, warning) in &accepted {
        assert!(sshd_accepts(&r, &admin_private, line), "sshd refused {line:?}");
        std::fs::write(r.keys_file(), format!("{line}\n")).expect("write");
        let out = r.hs(&r.sync_args(&["--dry-run"]).iter().map(String::as_str).collect::<Vec<_>>());
        let text = crate::exact::normalize(&stdout(&out), &r.f);
        assert_eq!(
            text.lines().last(),
            Some(format!("Checking key on web01... ✓ already present (via ssh, root@{addr})").as_str()),
            "{line:?}"
        );
        assert_eq!(crate::exact::normalize(&crate::common::stderr(&out), &r.f), *warning, "{line:?}");
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(std::fs::read_to_string(r.keys_file()).expect("read"), format!("{line}\n"), "nothing changed");
    }
    for (line, warning) in &rejected {
        assert!(!sshd_accepts(&r, &admin_private, line), "sshd accepted {line:?}");
        std::fs::write(r.keys_file(), format!("{line}\n")).expect("write");
        let out = r.hs(&r.sync_args(&["--dry-run"]).iter().map(String::as_str).collect::<Vec<_>>());
        let text = crate::exact::normalize(&stdout(&out), &r.f);
        let would = format!("Checking key on web01... ✓ would add 1 key (<FP>); dry run, nothing written (via ssh, root@{addr})");
        assert_eq!(text.lines().last(), Some(would.as_str()), "{line:?}");
        assert_eq!(crate::exact::normalize(&crate::common::stderr(&out), &r.f), *warning, "{line:?}");
        assert_eq!(out.status.code(), Some(0));
    }

    // A real sync over the first rejected line adds a line sshd takes, and warns once.
    let (line, warning) = &rejected[0];
    std::fs::write(r.keys_file(), format!("{line}\n")).expect("write");
    let out = r.sync(&["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", crate::common::stderr(&out));
    assert_eq!(crate::exact::normalize(&crate::common::stderr(&out), &r.f), *warning);
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(entry["outcome"], "synced");
    assert_eq!(entry["warnings"].as_array().map(Vec::len), Some(1));
    let after = std::fs::read_to_string(r.keys_file()).expect("read");
    assert_eq!(after, format!("{line}\n{kb} admin@workstation\n"));
    assert!(sshd_accepts(&r, &admin_private, after.trim_end()), "sshd takes the synced file");
}

/// A dropped connection in the middle of a real sync over ssh: the host's `sync` (run after
/// the temporary file is written, before it is renamed into place) is a wrapper that kills
/// the sshd process serving the session. The client reports the dropped connection (exit
/// 1); on the host the file is as it was or as it will be, never a partial line, and the
/// next sync completes the work and leaves no temporary file.
#[test]
fn a_dropped_connection_mid_sync_leaves_no_partial_line() {
    let Some(r) = crate::sync::rig() else { return };
    let before = "# by hand\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeep kept@host";
    std::fs::create_dir_all(r.home.join(".ssh")).expect("mkdir");
    std::fs::write(r.keys_file(), before).expect("write");
    let wrapper = r.f.tmp.path().join("node-bin/sync");
    write_program(
        &wrapper,
        "#!/bin/sh\necho $PPID > \"$0.script-pid\"\npid=$$\nwhile pid=$(sed -n 's/^PPid:\t*//p' /proc/$pid/status) && [ \"$pid\" -gt 1 ]; do\n  if [ \"$(cat /proc/$pid/comm)\" = sshd ]; then kill -KILL \"$pid\"; break; fi\ndone\nsleep 0.3\n",
    );
    let out = r.sync(&[]);
    let port = r.sshd.port;
    let failed = format!("`ssh` failed: ssh to root@127.0.0.1:{port} failed: Connection to 127.0.0.1 closed by remote host.");
    assert_eq!(stdout(&out), format!("Reading keys from --key... ✓ 1 key\nChecking key on web01... ✗ failed: {failed}\n"));
    assert_eq!(crate::common::stderr(&out), format!("error: {failed}\n"));
    assert_eq!(out.status.code(), Some(1));
    let (kb, _) = r.admin.public_line().rsplit_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).expect("comment");
    // The script on the host outlives the connection: wait for it to end.
    let pid = std::fs::read_to_string(wrapper.with_extension("script-pid")).expect("pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Path::new(&format!("/proc/{}", pid.trim())).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let after = format!("{before}\n{kb} admin@workstation\n");
    let now = std::fs::read_to_string(r.keys_file()).expect("read");
    assert!(now == before || now == after, "a torn authorized_keys: {now:?}");
    std::fs::remove_file(&wrapper).expect("rm");
    let text = crate::common::ok(&r.sync(&[]));
    let state = if now == before { "added 1 key (SHA256:" } else { "already present" };
    assert!(text.contains(&format!("✓ {state}")), "{text}");
    assert_eq!(std::fs::read_to_string(r.keys_file()).expect("read"), after);
    // A temporary file left by a session killed outright is removed by the next run.
    let names: Vec<_> = std::fs::read_dir(r.home.join(".ssh")).expect("ls").map(|e| e.expect("e").file_name()).collect();
    assert_eq!(names, ["authorized_keys"], "no temporary file is left");
}

/// Attacks on the remote side that held before the atomic write, run again through a real
/// sshd: a 10 MB file of CRLF lines behind a byte-order mark, without a final newline and
/// with hostile comments, gets the key appended and every existing byte kept; a symlinked
/// authorized_keys is refused and its target untouched; a `.bashrc` that eats stdin makes
/// the sync fail cleanly without writing.
#[test]
fn the_remote_attacks_that_held_still_hold() {
    let Some(r) = crate::sync::rig() else { return };
    std::fs::create_dir_all(r.home.join(".ssh")).expect("mkdir");
    let mut before = String::from("\u{feff}# managed\r\n");
    let other = Keypair::generate("x").expect("key").public_line();
    while before.len() < 10 << 20 {
        before.push_str(&format!("{other} $(reboot) `id` \u{1b}]0;owned\u{7} ;rm -rf /\r\n"));
    }
    before.push_str("command=\"x\" ssh-ed25519 AAAA no-final-newline");
    std::fs::write(r.keys_file(), &before).expect("write");
    std::fs::set_permissions(r.keys_file(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let started = std::time::Instant::now();
    let text = crate::common::ok(&r.sync(&[]));
    eprintln!("10 MB authorized_keys: sync took {:?}", started.elapsed());
    assert!(text.contains("✓ added 1 key (SHA256:"), "{text}");
    let (kb, _) = r.admin.public_line().rsplit_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).expect("comment");
    assert_eq!(std::fs::read_to_string(r.keys_file()).expect("read"), format!("{before}\n{kb} admin@workstation\n"));
    assert_eq!(std::fs::metadata(r.keys_file()).expect("meta").mode() & 0o777, 0o644);

    let elsewhere = r.f.tmp.path().join("elsewhere");
    std::fs::write(&elsewhere, "precious\n").expect("write");
    std::fs::remove_file(r.keys_file()).expect("rm");
    std::os::unix::fs::symlink(&elsewhere, r.keys_file()).expect("symlink");
    let out = r.sync(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        crate::common::stderr(&out),
        "error: `ssh` failed: the sync script on the host stopped (write): .ssh/authorized_keys is a symlink, and a sync replaces the file rather than write through a link: add the keys to the link's target, or make it a plain file\n"
    );
    assert_eq!(std::fs::read_to_string(&elsewhere).expect("read"), "precious\n");

    std::fs::remove_file(r.keys_file()).expect("rm");
    std::fs::write(r.keys_file(), "# untouched\n").expect("write");
    std::fs::write(r.home.join(".bashrc"), "cat > /dev/null\n").expect("write");
    let out = r.sync(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", crate::common::stderr(&out));
    assert_eq!(
        crate::common::stderr(&out),
        "error: `ssh` failed: the sync script did not start on the host (is `sh` there?); the host said: no error output\n"
    );
    assert_eq!(std::fs::read_to_string(r.keys_file()).expect("read"), "# untouched\n");
}

/// A STAND-IN for Proxmox's `qm` (no qm can run here) on the rig's sshd, which plays the
/// node: `qm guest exec VMID … -- CMD…` runs CMD as root the way the guest agent does, in a
/// mount namespace where HOME_DIR is mounted over /usr/games (the `games` user's home) and
/// with WRAPPERS first on PATH, and prints qm's JSON status.
const QM_FOR_GAMES: &str = r#"#!/usr/bin/env python3
import json, os, subprocess, sys
args = sys.argv[1:]
assert args[:2] == ["guest", "exec"], args
env = dict(os.environ, PATH="WRAPPERS:" + os.environ["PATH"])
cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /usr/games && exec "$@"', "HOME_DIR"]
p = subprocess.run(cmd + args[args.index("--") + 1:], stdin=sys.stdin.buffer, capture_output=True, env=env)
print(json.dumps({"exitcode": p.returncode, "exited": 1, "out-data": p.stdout.decode()}))
"#;

/// F02 end to end: `hostsmith sync --method guest-agent --user games` through qm on the
/// node, with the account's owner swapping `~/.ssh` mid-run. The sync fails (exit 1) with
/// the script's message, root's directory and keys stay root's, and the audit says failed.
#[test]
fn f02_guest_agent_sync_for_another_user_fails_cleanly_when_the_owner_races_it() {
    let Some((_, _)) = games() else { return };
    let Some(r) = crate::sync::rig() else { return };
    let Some(_) = peer("python3") else { return };
    let (_shared, bin, target) = race();
    let home = games_home();
    let qm = QM_FOR_GAMES.replace("WRAPPERS", &bin.display().to_string()).replace("HOME_DIR", &home.path().display().to_string());
    write_program(&r.f.tmp.path().join("node-bin/qm"), &qm);
    crate::sync::as_proxmox_vm(&r);
    let pve = format!("root@{}", r.addr());
    let admin = r.admin_pub.to_str().expect("utf8");
    let out = r.hs(&["sync", "web01", "--user", "games", "--key", admin, "--pve", &pve, "--method", "guest-agent"]);
    assert_still_roots(&target);
    let failed = "`qm guest exec` failed: the sync script on the host stopped (write): cannot write .ssh/authorized_keys";
    assert_eq!(stdout(&out), format!("Reading keys from --key... ✓ 1 key\nChecking key on web01... ✗ failed: {failed}\n"));
    assert_eq!(crate::common::stderr(&out), format!("error: {failed}\n"));
    assert_eq!(out.status.code(), Some(1));
    let audit = r.audit();
    assert_eq!((audit[0]["method"].as_str(), audit[0]["outcome"].as_str()), (Some("guest-agent"), Some("failed")));
}
