//! The remote sync script on its own, run by real local shells exactly as a host runs it:
//! the constant remote command through a login shell, the script and request on stdin.
//! These pin down how `authorized_keys` lines are read (options, quotes, certificates,
//! prefixes), that the script's own checks refuse what hostsmith would never send, and the
//! lock-directory fallback on a host without util-linux `flock`.

use std::path::Path;
use std::process::{Command, Output};

use hostsmith::ssh_keys::Keypair;
use hostsmith::sync::keys::{SyncKey, UserName};
use hostsmith::sync::remote::{self, KeyState, Mode, REMOTE_COMMAND, SCRIPT};

use crate::common::{peer, run_with_stdin, stdout, which};

fn me() -> UserName {
    let out = Command::new("id").arg("-un").output().expect("id");
    UserName::parse(String::from_utf8_lossy(&out.stdout).trim()).expect("user")
}

fn key(comment: &str) -> SyncKey {
    SyncKey::parse(&Keypair::generate(comment).expect("key").public_line(), "test").expect("key")
}

/// Runs the remote command with `shell` as the login shell, `home` as HOME.
fn remote(shell: &Path, home: &Path, input: &[u8]) -> Output {
    let mut c = Command::new(shell);
    c.args(["-c", REMOTE_COMMAND]).env("HOME", home).env_remove("ENV").env_remove("BASH_ENV");
    run_with_stdin(&mut c, input)
}

fn states(out: &Output, n: usize) -> Vec<KeyState> {
    remote::parse_reply(&out.stdout, n, "test").unwrap_or_else(|e| panic!("{e}\n{}", stdout(out))).states
}

#[test]
fn every_login_shell_passes_the_constant_command_through() {
    let mut shells: Vec<_> = ["sh", "dash", "bash", "zsh", "fish", "ksh", "mksh", "tcsh", "csh"].iter().filter_map(|s| which(s)).collect();
    shells.dedup();
    assert!(!shells.is_empty());
    for shell in shells {
        let home = tempfile::tempdir().expect("tmp");
        let k = key("a@b");
        let out = remote(&shell, home.path(), &remote::stdin(Mode::Apply, 5, &me(), std::slice::from_ref(&k)));
        assert_eq!(states(&out, 1), [KeyState::Added], "{}", shell.display());
        let text = std::fs::read_to_string(home.path().join(".ssh/authorized_keys")).expect("written");
        assert_eq!(text, format!("ssh-ed25519 {} a@b\n", k.blob));
    }
}

/// A dd without `iflag=fullblock` (BSD, old busybox) refuses the flag before reading
/// anything; the bootstrap then reads the script byte by byte.
#[test]
fn the_bootstrap_works_with_a_dd_that_lacks_fullblock() {
    let sh = which("sh").expect("sh");
    let dd = which("dd").expect("dd");
    let bin = tempfile::tempdir().expect("tmp");
    let log = bin.path().join("calls");
    let wrapper = format!(
        "#!/bin/sh\necho \"$*\" >> {}\ncase \"$*\" in *iflag=*) echo 'dd: unknown operand iflag' >&2; exit 1 ;; esac\nexec {} \"$@\"\n",
        log.display(),
        dd.display()
    );
    std::fs::write(bin.path().join("dd"), wrapper).expect("write");
    std::fs::set_permissions(bin.path().join("dd"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let home = tempfile::tempdir().expect("tmp");
    let mut c = Command::new(&sh);
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    c.args(["-c", REMOTE_COMMAND]).env("HOME", home.path()).env("PATH", path);
    let out = run_with_stdin(&mut c, &remote::stdin(Mode::Apply, 5, &me(), &[key("a"), key("b")]));
    assert_eq!(states(&out, 2), [KeyState::Added, KeyState::Added]);
    let calls = std::fs::read_to_string(&log).expect("calls");
    assert!(calls.contains("iflag=fullblock") && calls.contains("bs=1 "), "{calls}");
}

#[test]
fn existing_lines_are_read_the_way_sshd_reads_them() {
    let sh = which("sh").expect("sh");
    let k = key("mine");
    let kb = format!("{} {}", k.kind, k.blob);
    let other = key("other");
    let present = [
        kb.clone(),
        format!("{kb} another comment"),
        format!("from=\"10.0.0.1,10.0.0.2\" {kb} c"),
        format!("command=\"echo \\\"x y\\\"\",no-pty {kb}"),
        format!("restrict,command=\"a b c\"\t{kb}"),
        format!("  \t{kb} crlf\r"),
    ];
    let missing = [
        format!("cert-authority {kb}"),
        format!("from=\"x\",CERT-AUTHORITY {kb}"),
        format!("# {kb}"),
        format!("{}x {}", k.kind, k.blob),
        format!("{} {}A", k.kind, k.blob),
        format!("{} {}", k.kind, &k.blob[..k.blob.len() - 4]),
        format!("command=\"{kb}\" {} {}", other.kind, other.blob),
        format!("from=\"unterminated {kb}"),
    ];
    for (lines, want) in [(&present[..], KeyState::Present), (&missing[..], KeyState::Missing)] {
        for line in lines {
            let home = tempfile::tempdir().expect("tmp");
            std::fs::create_dir(home.path().join(".ssh")).expect("mkdir");
            std::fs::write(home.path().join(".ssh/authorized_keys"), format!("{line}\n")).expect("write");
            let out = remote(&sh, home.path(), &remote::stdin(Mode::Check, 5, &me(), std::slice::from_ref(&k)));
            assert_eq!(states(&out, 1), [want], "line {line:?}");
        }
    }
}

#[test]
fn a_check_creates_nothing_and_a_truncated_script_runs_nothing() {
    let sh = which("sh").expect("sh");
    let home = tempfile::tempdir().expect("tmp");
    let out = remote(&sh, home.path(), &remote::stdin(Mode::Check, 5, &me(), &[key("a"), key("b")]));
    assert_eq!(states(&out, 2), [KeyState::Missing, KeyState::Missing]);
    assert!(!home.path().join(".ssh").exists());

    let cut = SCRIPT.len() - 300;
    let mut truncated = format!("{}\n", SCRIPT.len()).into_bytes();
    truncated.extend_from_slice(&SCRIPT.as_bytes()[..cut]);
    let out = remote(&sh, home.path(), &truncated);
    let err = remote::parse_reply(&out.stdout, 1, "test").expect_err("refused").to_string();
    assert!(err.contains("truncated"), "{err}");
    assert!(!home.path().join(".ssh").exists());
}

#[test]
fn the_script_refuses_requests_hostsmith_would_never_send() {
    let sh = which("sh").expect("sh");
    let home = tempfile::tempdir().expect("tmp");
    let marker = home.path().join("pwned");
    let k = key("a");
    let me = me();
    let requests = [
        format!("hostsmith-sync 1 apply 5\nuser {me}\nkey {} {} x'; touch {}; '\nend\n", k.kind, k.blob, marker.display()),
        format!("hostsmith-sync 1 apply 5\nuser {me}\nkey {} {}$(touch {})\nend\n", k.kind, k.blob, marker.display()),
        format!("hostsmith-sync 1 apply 5\nuser {me}\nkey ssh-dss {}\nend\n", k.blob),
        format!("hostsmith-sync 1 apply 5\nuser {me};touch {}\nkey {} {}\nend\n", marker.display(), k.kind, k.blob),
        format!("hostsmith-sync 1 apply $(touch {})\nuser {me}\nkey {} {}\nend\n", marker.display(), k.kind, k.blob),
        format!("hostsmith-sync 2 apply 5\nuser {me}\nkey {} {}\nend\n", k.kind, k.blob),
        format!("hostsmith-sync 1 apply 5\nuser {me}\nend\n"),
        format!("hostsmith-sync 1 apply 5\nuser {me}\nkey {} {}\n", k.kind, k.blob),
    ];
    for request in requests {
        let mut input = format!("{}\n{SCRIPT}", SCRIPT.len()).into_bytes();
        input.extend_from_slice(request.as_bytes());
        let out = remote(&sh, home.path(), &input);
        assert!(remote::parse_reply(&out.stdout, 1, "test").is_err(), "accepted {request:?}");
        assert!(!out.status.success());
        assert!(!marker.exists(), "{request:?}");
        assert!(
            !home.path().join(".ssh/authorized_keys").exists()
                || std::fs::read(home.path().join(".ssh/authorized_keys")).expect("read").is_empty()
        );
    }
}

/// `mount` arguments hiding `flock` in /usr/bin; each mount needs its own upper and work
/// directories (overlayfs refuses a work directory in use).
fn overlay_without_flock(dir: &Path, name: &str) -> Option<String> {
    let (upper, work) = (dir.join(format!("upper-{name}")), dir.join(format!("work-{name}")));
    std::fs::create_dir(&upper).expect("mkdir");
    std::fs::create_dir(&work).expect("mkdir");
    let whiteout = Command::new("mknod").arg(upper.join("flock")).args(["c", "0", "0"]).status();
    whiteout
        .is_ok_and(|s| s.success())
        .then(|| format!("mount -t overlay overlay -o lowerdir=/usr/bin,upperdir={},workdir={} /usr/bin", upper.display(), work.display()))
}

/// Without util-linux flock (hidden here by an overlay whiteout over /usr/bin in a private
/// mount namespace), the script falls back to a lock directory, says so, and concurrent
/// runs still add one line.
#[test]
fn without_flock_a_lock_directory_serialises_concurrent_runs() {
    let Some(unshare) = peer("unshare") else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).expect("mkdir");
    let in_namespace = |script: &str| {
        let mut c = Command::new(&unshare);
        c.args(["-m", "--propagation", "private", "sh", "-c", script]);
        c
    };
    let Some(mount) = overlay_without_flock(tmp.path(), "probe") else {
        eprintln!("skipped: cannot make an overlay whiteout here");
        return;
    };
    if !in_namespace(&format!("{mount} && ! command -v flock")).status().is_ok_and(|s| s.success()) {
        eprintln!("skipped: overlay mounts are not available here");
        return;
    }
    let k = key("a");
    let input = remote::stdin(Mode::Apply, 30, &me(), std::slice::from_ref(&k));
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mount = overlay_without_flock(tmp.path(), &i.to_string()).expect("whiteout");
            let mut c = in_namespace(&format!("{mount} && exec sh -c \"$0\""));
            c.arg(REMOTE_COMMAND).env("HOME", &home);
            c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            let mut child = c.spawn().expect("spawn");
            std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &input).expect("write");
            child
        })
        .collect();
    let mut added = 0;
    for child in children {
        let out = child.wait_with_output().expect("wait");
        let reply =
            remote::parse_reply(&out.stdout, 1, "test").unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), crate::common::stderr(&out)));
        assert_eq!(reply.lock.as_deref(), Some("mkdir"));
        added += usize::from(reply.states == [KeyState::Added]);
    }
    assert_eq!(added, 1);
    assert_eq!(std::fs::read_to_string(home.join(".ssh/authorized_keys")).expect("read"), format!("ssh-ed25519 {} a\n", k.blob));
    assert!(!home.join(".ssh/.hostsmith-sync.lock").exists(), "the lock directory is removed");
}

/// The guest agent runs the script as root for another user: the home comes from the
/// password database, created files are handed to the user, and symlinks are not followed.
/// Played with Debian's `games` user (home /usr/games), with a temporary directory mounted
/// over that home in a private mount namespace.
#[test]
fn as_root_for_another_user_the_files_go_to_that_user() {
    use std::os::unix::fs::MetadataExt;
    let Some(unshare) = peer("unshare") else { return };
    let games = Command::new("getent").args(["passwd", "games"]).output().expect("getent");
    let me = me();
    if me.as_str() != "root" || !games.status.success() || !String::from_utf8_lossy(&games.stdout).contains(":/usr/games:") {
        eprintln!("skipped: needs root and the `games` user with home /usr/games");
        return;
    }
    let user = UserName::parse("games").expect("user");
    let run_as_root_for_games = |home: &Path, input: &[u8]| {
        let mut c = Command::new(&unshare);
        c.args(["-m", "--propagation", "private", "sh", "-c", r#"mount --bind "$0" /usr/games && exec sh -c "$1""#])
            .arg(home)
            .arg(REMOTE_COMMAND);
        c.env("HOME", "/root");
        run_with_stdin(&mut c, input)
    };
    // The user's home is the user's: the script runs as the user there.
    let games_home = || {
        let home = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::chown(home.path(), Some(5), Some(60)).expect("chown");
        home
    };
    let home = games_home();
    let k = key("a");
    let out = run_as_root_for_games(home.path(), &remote::stdin(Mode::Apply, 5, &user, std::slice::from_ref(&k)));
    assert_eq!(states(&out, 1), [KeyState::Added]);
    let (dir, file) = (
        std::fs::metadata(home.path().join(".ssh")).expect("dir"),
        std::fs::metadata(home.path().join(".ssh/authorized_keys")).expect("file"),
    );
    assert_eq!((dir.uid(), dir.mode() & 0o777), (5, 0o700));
    assert_eq!((file.uid(), file.mode() & 0o777), (5, 0o600));

    let trap = tempfile::tempdir().expect("tmp");
    let target = trap.path().join("elsewhere");
    std::fs::write(&target, "precious\n").expect("write");
    let home = games_home();
    std::fs::create_dir(home.path().join(".ssh")).expect("mkdir");
    std::os::unix::fs::chown(home.path().join(".ssh"), Some(5), Some(60)).expect("chown");
    std::os::unix::fs::symlink(&target, home.path().join(".ssh/authorized_keys")).expect("symlink");
    let out = run_as_root_for_games(home.path(), &remote::stdin(Mode::Apply, 5, &user, std::slice::from_ref(&k)));
    let err = remote::parse_reply(&out.stdout, 1, "test").expect_err("refused").to_string();
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "precious\n");
}
