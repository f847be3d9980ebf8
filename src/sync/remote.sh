# hostsmith-sync, protocol 1: append missing public keys to authorized_keys.
#
# This text is fixed: hostsmith sends it byte for byte as it stands in its source and never
# substitutes anything into it. It arrives on stdin behind a length line and is run by the
# constant bootstrap command (src/sync/remote.rs); the request follows it on stdin:
#   hostsmith-sync 1 check|apply LOCK_WAIT_SECONDS
#   user NAME
#   key TYPE BLOB [COMMENT]        (1 to 100 lines, validated by hostsmith and again here)
#   end
# What it prints after the line "hostsmith-sync 1" (anything before it, such as output of a
# login script, is ignored):
#   created .ssh | created .ssh/authorized_keys
#   lock flock|mkdir|none
#   note INDEX restricted LINE OPTION[,OPTION...]   the key's line limits what it may do
#   note INDEX invalid LINE REASON [NAME]           a line with the key that sshd rejects
#   key INDEX present|added|missing
#   ok
# or "error CODE MESSAGE" and exit status 1.
#
# Run as root for another user (the guest agent), it touches none of that user's files: it
# runs itself again as the user (setpriv, runuser or su, whichever the host has) and
# relays what that run prints. So every path below is followed with the user's own rights.
#
# Existing lines are never rewritten or reordered. The new file is the old one with the
# missing keys appended, written as a temporary file in ~/.ssh (a copy keeping the old
# file's mode and owner) and renamed over it while an exclusive lock on ~/.ssh is held: a
# dropped connection or a killed run leaves the file as it was or as it will be, never a
# partial line, and concurrent syncs never duplicate a line.
set -u
umask 077
PATH=$PATH:/run/current-system/sw/bin:/usr/bin:/bin:/usr/sbin:/sbin
export PATH
# The bootstrap holds this text in `s`; a run as the user starts with `set -- as-user`.
script=${s-}
as_user=''
[ "${1-}" = as-user ] && as_user=yes
[ -n "$as_user" ] || echo "hostsmith-sync 1"
fail() { echo "error $1 $2"; exit 1; }
nl='
'

IFS= read -r request || fail protocol "no request"
set -f
# shellcheck disable=SC2086 # split into words on purpose, globbing off
set -- $request
set +f
{ [ $# -eq 4 ] && [ "$1" = hostsmith-sync ] && [ "$2" = 1 ]; } || fail protocol "unsupported request"
mode=$3
patience=$4
case $mode in check|apply) ;; *) fail protocol "unknown mode" ;; esac
case $patience in ''|*[!0-9]*) fail protocol "bad lock wait" ;; esac

IFS= read -r line || fail protocol "no user"
user=${line#user }
[ "$line" = "user $user" ] || fail protocol "no user"
case $user in ''|-*|*[!A-Za-z0-9._-]*) fail user "invalid user name" ;; esac

types=" ssh-ed25519 ssh-rsa ecdsa-sha2-nistp256 ecdsa-sha2-nistp384 ecdsa-sha2-nistp521 sk-ssh-ed25519@openssh.com sk-ecdsa-sha2-nistp256@openssh.com "
badcomment='*[!A-Za-z0-9 @._+:,=/-]*'
want=''
count=0
while :; do
  IFS= read -r line || fail protocol "the request ended early"
  [ "$line" = end ] && break
  case $line in "key "*) ;; *) fail protocol "unexpected request line" ;; esac
  rest=${line#key }
  kind=${rest%% *}
  rest=${rest#"$kind"}
  rest=${rest# }
  blob=${rest%% *}
  comment=${rest#"$blob"}
  comment=${comment# }
  case $types in *" $kind "*) ;; *) fail key "key type not allowed" ;; esac
  case $blob in ''|*[!A-Za-z0-9+/=]*) fail key "key blob is not base64" ;; esac
  # shellcheck disable=SC2254 # badcomment is a pattern on purpose
  case $comment in $badcomment) fail key "key comment has characters outside the allowed set" ;; esac
  count=$((count + 1))
  [ "$count" -le 100 ] || fail protocol "too many keys"
  if [ -n "$comment" ]; then want="$want$kind $blob $comment$nl"; else want="$want$kind $blob$nl"; fi
done
[ "$count" -gt 0 ] || fail protocol "no keys"

# Whose file: our own when we are that user (HOME as the login set it), else the user's
# entry in the password database. Root for another user hands the run to that user.
me=$(id -un 2>/dev/null) || fail user "cannot tell who runs the script"
if [ "$me" = "$user" ] && [ -n "${HOME:-}" ]; then
  home=$HOME
else
  [ -z "$as_user" ] || fail user "the run as $user did not run as that user"
  command -v getent >/dev/null 2>&1 || fail user "getent is missing: cannot find the home directory of the user"
  entry=$(getent passwd "$user") || fail user "no such user on the host"
  uid=$(printf '%s\n' "$entry" | cut -d: -f3)
  gid=$(printf '%s\n' "$entry" | cut -d: -f4)
  home=$(printf '%s\n' "$entry" | cut -d: -f6)
  case $uid in ''|*[!0-9]*) fail user "the password database entry of the user has no numeric uid" ;; esac
  case $gid in ''|*[!0-9]*) fail user "the password database entry of the user has no numeric gid" ;; esac
  if [ "$uid" != "$(id -u)" ]; then
    [ "$(id -u)" = 0 ] || fail user "logged in as another user without root rights"
    [ -n "$script" ] || fail user "the script text is not at hand to run it as the user"
    case $home in /*) ;; *) fail home "the home directory is not an absolute path" ;; esac
    HOME=$home
    export HOME
    body="set -- as-user$nl$script"
    if command -v setpriv >/dev/null 2>&1; then
      tool=setpriv
      set -- setpriv --reuid="$uid" --regid="$gid" --init-groups -- sh -c "$body"
    elif command -v runuser >/dev/null 2>&1; then
      tool=runuser
      set -- runuser -u "$user" -- sh -c "$body"
    elif command -v su >/dev/null 2>&1; then
      tool=su
      set -- su -s /bin/sh -c "$body" "$user"
    else
      fail user "running as root, and none of setpriv, runuser or su is on the host to run as $user: install util-linux, or sync over ssh as $user"
    fi
    keys=''
    while IFS= read -r entry; do
      [ -n "$entry" ] && keys="${keys}key $entry$nl"
    done <<EOF
$want
EOF
    reply=$(printf 'hostsmith-sync 1 %s %s\nuser %s\n%send\n' "$mode" "$patience" "$user" "$keys" | "$@")
    status=$?
    [ -z "$reply" ] || printf '%s\n' "$reply"
    case "$nl$reply" in *"${nl}ok"|*"${nl}error "*) exit "$status" ;; esac
    fail user "could not run the script as $user with $tool (exit status $status)"
  fi
fi
case $home in /*) ;; *) fail home "the home directory is not an absolute path" ;; esac
cd "$home" 2>/dev/null || fail home "cannot enter the home directory"
file=.ssh/authorized_keys
new=.ssh/authorized_keys.hostsmith-new
lockdir=''
made=''
cleanup() {
  [ -z "$made" ] || rm -f "$new"
  [ -z "$lockdir" ] || rmdir "$lockdir" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM PIPE

if [ "$mode" = apply ]; then
  if mkdir -m 700 .ssh 2>/dev/null; then
    echo "created .ssh"
  elif [ ! -d .ssh ]; then
    fail write "cannot create .ssh"
  fi
  # The lock is on the directory: the file itself is replaced, so its inode changes.
  exec 9<.ssh || fail lock "cannot open .ssh to lock it"
  if command -v flock >/dev/null 2>&1; then
    flock -w "$patience" 9 || fail lock "another sync held the lock on .ssh for ${patience}s"
    echo "lock flock"
  else
    # No util-linux flock: a lock directory. It is removed on exit; one left by a killed
    # run makes later syncs fail with this message instead of racing.
    tries=0
    until mkdir .ssh/.hostsmith-sync.lock 2>/dev/null; do
      tries=$((tries + 1))
      [ "$tries" -le "$patience" ] || fail lock "no flock on the host, and ~/.ssh/.hostsmith-sync.lock stayed for ${patience}s: remove it if no sync is running"
      sleep 1
    done
    lockdir=.ssh/.hostsmith-sync.lock
    echo "lock mkdir"
  fi
else
  echo "lock none"
fi

# Every line read the way sshd reads it (auth2-pubkeyfile.c, auth-options.c): blank and #
# lines skipped; a line that does not start with a key starts with options, which end at the
# first blank outside double quotes (\" escapes a quote). The options are parsed as sshd
# parses them: an unknown option, a bad value or a duplicate makes sshd reject the whole
# line, so it does not count; cert-authority lines authorise certificates, not the key. The
# first line sshd accepts for a key decides: "present", or "restricted" with the options
# that limit what the key may do. Lines holding a wanted key that sshd rejects are noted.
# The wanted keys come first on stdin ("TYPE BLOB" per line), then the file.
# shellcheck disable=SC2016 # an awk program, not shell
prog='
BEGIN {
  n = split("ssh-ed25519 ssh-rsa ssh-dss ecdsa-sha2-nistp256 ecdsa-sha2-nistp384 ecdsa-sha2-nistp521 sk-ssh-ed25519@openssh.com sk-ecdsa-sha2-nistp256@openssh.com ssh-ed25519-cert-v01@openssh.com ssh-rsa-cert-v01@openssh.com ssh-dss-cert-v01@openssh.com ecdsa-sha2-nistp256-cert-v01@openssh.com ecdsa-sha2-nistp384-cert-v01@openssh.com ecdsa-sha2-nistp521-cert-v01@openssh.com sk-ssh-ed25519-cert-v01@openssh.com sk-ecdsa-sha2-nistp256-cert-v01@openssh.com", t, " ")
  for (i = 1; i <= n; i++) known[t[i]] = 1
  nflags = split("restrict cert-authority port-forwarding agent-forwarding x11-forwarding touch-required verify-required pty user-rc", flags, " ")
  negatable["port-forwarding"] = 1; negatable["agent-forwarding"] = 1; negatable["x11-forwarding"] = 1
  negatable["touch-required"] = 1; negatable["verify-required"] = 1; negatable["pty"] = 1; negatable["user-rc"] = 1
  nnames = split("command principals from expiry-time environment permitopen permitlisten tunnel", names, " ")
  split("restrict no-port-forwarding no-agent-forwarding no-x11-forwarding verify-required no-pty no-user-rc command from expiry-time permitopen permitlisten tunnel", t, " ")
  for (i in t) limits[t[i]] = 1
  wanted = 0
}
function blank(c) { return c == " " || c == "\t" }
# The key at the start of s, as sshkey_read finds it: a known type, blanks, a base64 blob.
function readkey(s,   i, j) {
  KT = ""; KB = ""
  for (i = 1; i <= length(s) && !blank(substr(s, i, 1)); i++) ;
  if (i > length(s) || !(substr(s, 1, i - 1) in known)) return 0
  KT = substr(s, 1, i - 1)
  for (; i <= length(s) && blank(substr(s, i, 1)); i++) ;
  for (j = i; j <= length(s) && !blank(substr(s, j, 1)); j++) ;
  KB = substr(s, i, j - i)
  gsub(/[\r\n\v\f]/, "", KB)
  return KB ~ /^[A-Za-z0-9+\/]+=*$/
}
function bad(code, name) { ERR = code; ERRNAME = name; return 0 }
function limit(name) { if (index("," RESTR ",", "," name ",") == 0) RESTR = RESTR (RESTR == "" ? "" : ",") name }
function service(name,   l, f, k, m) {
  if (!loaded) {
    loaded = 1
    while ((getline l < "/etc/services") > 0) {
      sub(/#.*/, "", l); m = split(l, f, /[ \t]+/)
      if (f[1] == "") { for (k = 1; k < m; k++) f[k] = f[k + 1]; m-- }
      if (m >= 2 && f[2] ~ /\/tcp$/) { services[f[1]] = 1; for (k = 3; k <= m; k++) services[f[k]] = 1 }
    }
  }
  return name in services
}
function permit(v, bare,   j, host, port, c) {
  if (bare && index(v, ":") == 0) v = "*:" v
  if (substr(v, 1, 1) == "[") {
    j = index(v, "]"); if (j == 0) return 0
    c = substr(v, j + 1, 1)
    if (c == "") return 0
    if (c != ":" && c != "/") return 0
    host = substr(v, 1, j); port = substr(v, j + 2)
  } else {
    if (!match(v, /[:\/]/)) return 0
    host = substr(v, 1, RSTART - 1); port = substr(v, RSTART + 1)
  }
  if (length(host) >= 1025) return 0
  if (port == "*") return 1
  if (port ~ /^[+]?[0-9]+$/) return port + 0 >= 1 && port + 0 <= 65535
  return port != "" && service(port)
}
function expiry(v,   l) {
  l = tolower(v)
  if (length(l) > 1 && substr(l, length(l)) == "z") v = substr(v, 1, length(v) - 1)
  else if (length(l) > 3 && substr(l, length(l) - 2) == "utc") v = substr(v, 1, length(v) - 3)
  if (v !~ /^[0-9]+$/ || (length(v) != 8 && length(v) != 12 && length(v) != 14)) return 0
  if (substr(v, 5, 2) + 0 < 1 || substr(v, 5, 2) + 0 > 12 || substr(v, 7, 2) + 0 < 1 || substr(v, 7, 2) + 0 > 31) return 0
  if (length(v) >= 12 && (substr(v, 9, 2) + 0 > 23 || substr(v, 11, 2) + 0 > 59)) return 0
  return length(v) < 14 || substr(v, 13, 2) + 0 <= 60
}
function value(name, v) {
  if (name == "expiry-time") return expiry(v)
  if (name == "environment") return v ~ /^[A-Za-z0-9_]+=/
  if (name == "permitopen") return permit(v, 0)
  if (name == "permitlisten") return permit(v, 1)
  if (name == "tunnel") return tolower(v) == "any" || (v ~ /^[0-9]+$/ && v + 0 <= 2147483645)
  return 1
}
# sshauthopt_parse over the options field f: 1 when sshd accepts it, with CA and RESTR set;
# else 0 with ERR (and ERRNAME) saying why.
function options(f,   pos, n, lr, k, fl, neg, t, name, named, start, i, c, v, dup, princ) {
  CA = 0; RESTR = ""; ERR = ""; ERRNAME = ""; princ = 0; split("", dup)
  n = length(f); pos = 1
  while (pos <= n) {
    start = pos; lr = tolower(substr(f, pos)); name = ""; named = 0
    for (k = 1; k <= nflags; k++) {
      fl = flags[k]; t = lr; neg = 0
      if ((fl in negatable) && substr(t, 1, 3) == "no-") { t = substr(t, 4); neg = 1 }
      if (substr(t, 1, length(fl)) == fl) { name = (neg ? "no-" : "") fl; pos += length(name); break }
    }
    if (name == "") for (k = 1; k <= nnames; k++) {
      if (substr(lr, 1, length(names[k]) + 1) == names[k] "=") { name = names[k]; named = 1; pos += length(name) + 1; break }
    }
    if (name == "cert-authority") CA = 1
    else if (name in limits) limit(name)
    if (named) {
      if (substr(f, pos, 1) != "\"") return bad("missing-quote", name)
      v = ""
      for (i = pos + 1; i <= n && (c = substr(f, i, 1)) != "\""; i++) {
        if (c == "\\" && substr(f, i + 1, 1) == "\"") { i++; c = "\"" }
        v = v c
      }
      if (i > n) return bad("bad-quotes", "")
      pos = i + 1
      if ((name == "command" || name == "principals" || name == "from") && (name in dup)) return bad("duplicate", name)
      dup[name] = 1
      if (name == "principals") princ = 1
      if (!value(name, v)) return bad("bad-value", name)
    }
    if (pos > n) break
    if (substr(f, pos, 1) != ",") {
      t = substr(f, start); sub(/[,=].*/, "", t)
      return bad("unknown-option", t ~ /^[A-Za-z0-9_.-]+$/ && length(t) <= 40 ? t : "")
    }
    pos++
  }
  if (princ && !CA) return bad("principals-without-cert-authority", "")
  return 1
}
function note(i, text) { if (count[i] < 10) { count[i]++; notes[i] = notes[i] "note " i " " text "\n" } }
phase == 1 { if (NF >= 2) { wanted++; want[$1 " " $2] = wanted; blobs[wanted] = $2 }; next }
{
  line = $0
  sub(/\r$/, "", line)
  sub(/^[ \t]+/, "", line)
  if (line == "" || substr(line, 1, 1) == "#") next
  holder = 0
  for (i = 1; i <= wanted; i++) if (index(line, blobs[i])) { holder = i; break }
  if (!holder) next
  if (readkey(line)) { opts = ""; rest = line }
  else {
    q = 0
    for (i = 1; i <= length(line); i++) {
      c = substr(line, i, 1)
      if (!q && blank(c)) break
      if (c == "\\" && substr(line, i + 1, 1) == "\"") i++
      else if (c == "\"") q = !q
    }
    if (q) { note(holder, "invalid " FNR " bad-quotes"); next }
    opts = substr(line, 1, i - 1); rest = substr(line, i)
    sub(/^[ \t]+/, "", rest)
    if (!readkey(rest)) { note(holder, "invalid " FNR " unreadable"); next }
  }
  if (!((KT " " KB) in want)) next
  k = want[KT " " KB]
  if (!options(opts)) { note(k, "invalid " FNR " " ERR (ERRNAME == "" ? "" : " " ERRNAME)); next }
  if (CA || (k in state)) next
  state[k] = RESTR == "" ? "present" : "restricted " FNR " " RESTR
}
END {
  for (i = 1; i <= wanted; i++) {
    printf "%s", notes[i]
    if (!(i in state)) print "absent " i
    else if (state[i] == "present") print "present " i
    else { split(state[i], t, " "); print "note " i " restricted " t[2] " " t[3]; print "present " i }
  }
}'
pairs=''
while IFS= read -r entry; do
  [ -n "$entry" ] || continue
  set -f
  # shellcheck disable=SC2086 # split into words on purpose, globbing off
  set -- $entry
  set +f
  pairs="$pairs$1 $2$nl"
done <<EOF
$want
EOF
source=/dev/null
if [ -e "$file" ]; then
  [ -r "$file" ] || fail read "cannot read .ssh/authorized_keys"
  source=$file
fi
found=$(printf '%s' "$pairs" | LC_ALL=C awk "$prog" phase=1 - phase=2 "$source") || fail read "cannot read .ssh/authorized_keys"

# What to append: each key sshd would not find, in request order.
append=''
index=0
while IFS= read -r entry; do
  [ -n "$entry" ] || continue
  index=$((index + 1))
  case "$nl$found$nl" in *"${nl}present $index$nl"*) ;; *) append="$append$entry$nl" ;; esac
done <<EOF
$want
EOF

if [ "$mode" = apply ] && [ -n "$append" ]; then
  [ ! -L "$file" ] || fail write ".ssh/authorized_keys is a symlink, and a sync replaces the file rather than write through a link: add the keys to the link's target, or make it a plain file"
  rm -f "$new" || fail write "cannot remove the stale .ssh/authorized_keys.hostsmith-new"
  made=yes
  if [ -e "$file" ]; then
    [ -f "$file" ] || fail write ".ssh/authorized_keys is not a regular file"
    [ -w "$file" ] || fail write "cannot write .ssh/authorized_keys"
    cp -p "$file" "$new" 2>/dev/null || fail write "cannot copy .ssh/authorized_keys to a temporary file in .ssh (is .ssh writable?)"
    [ "$(ls -ln "$file" | awk '{ print substr($1, 1, 10), $3, $4 }')" = "$(ls -ln "$new" | awk '{ print substr($1, 1, 10), $3, $4 }')" ] ||
      fail write "cannot keep the owner and mode of .ssh/authorized_keys in a copy (is it owned by another user?)"
    if [ -s "$new" ] && [ -n "$(tail -c 1 "$new")" ]; then
      printf '\n' >>"$new" || fail write "cannot write a temporary file in .ssh"
    fi
    created=''
  else
    : >"$new" || fail write "cannot create a temporary file in .ssh"
    created=yes
  fi
  printf '%s' "$append" >>"$new" || fail write "cannot write a temporary file in .ssh"
  # Where sync takes files (coreutils, busybox) the new file is on disk before the rename.
  sync "$new" 2>/dev/null
  mv -f "$new" "$file" || fail write "cannot rename the temporary file over .ssh/authorized_keys"
  made=''
  [ -z "$created" ] || echo "created .ssh/authorized_keys"
fi

printf '%s\n' "$found" | while IFS= read -r what; do
  case $what in
    "note "*) echo "$what" ;;
    "present "*) echo "key ${what#present } present" ;;
    "absent "*) if [ "$mode" = apply ]; then echo "key ${what#absent } added"; else echo "key ${what#absent } missing"; fi ;;
  esac
done
echo ok
# end of hostsmith-sync
