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
#   key INDEX present|added|missing
#   ok
# or "error CODE MESSAGE" and exit status 1.
#
# Existing lines are never rewritten or reordered: keys are appended through an O_APPEND
# descriptor while an exclusive lock is held, so concurrent syncs never duplicate a line.
set -u
umask 077
PATH=$PATH:/run/current-system/sw/bin:/usr/bin:/bin:/usr/sbin:/sbin
export PATH
echo "hostsmith-sync 1"
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

# Whose file: our own when we are that user, else (the guest agent runs as root) the
# user's home from the password database, and created files are handed to the user.
me=$(id -un 2>/dev/null) || fail user "cannot tell who runs the script"
owner=''
if [ "$me" = "$user" ] && [ -n "${HOME:-}" ]; then
  home=$HOME
elif [ "$(id -u)" = 0 ]; then
  command -v getent >/dev/null 2>&1 || fail user "getent is missing: cannot find the home directory of the user"
  entry=$(getent passwd "$user") || fail user "no such user on the host"
  home=$(printf '%s\n' "$entry" | cut -d: -f6)
  owner=$user
else
  fail user "logged in as another user without root rights"
fi
case $home in /*) ;; *) fail home "the home directory is not an absolute path" ;; esac
cd "$home" 2>/dev/null || fail home "cannot enter the home directory"
if [ -n "$owner" ] && { [ -L .ssh ] || [ -L .ssh/authorized_keys ]; }; then
  fail home "refusing to follow a symlink in the home of another user as root"
fi
file=.ssh/authorized_keys

if [ "$mode" = apply ]; then
  if [ ! -d .ssh ]; then
    mkdir -m 700 .ssh 2>/dev/null || [ -d .ssh ] || fail write "cannot create .ssh"
    if [ -n "$owner" ]; then chown "$owner:$(id -g "$owner")" .ssh || fail write "cannot hand .ssh to the user"; fi
    echo "created .ssh"
  fi
  fresh=''
  [ -e "$file" ] || fresh=yes
  exec 9>>"$file" || fail write "cannot open .ssh/authorized_keys for appending"
  if [ -n "$fresh" ]; then
    if [ -n "$owner" ]; then chown "$owner:$(id -g "$owner")" "$file" || fail write "cannot hand .ssh/authorized_keys to the user"; fi
    echo "created .ssh/authorized_keys"
  fi
  if command -v flock >/dev/null 2>&1; then
    flock -w "$patience" 9 || fail lock "another sync held the lock on .ssh/authorized_keys for ${patience}s"
    echo "lock flock"
  else
    # No util-linux flock: a lock directory. It is removed on exit; one left by a killed
    # run makes later syncs fail with this message instead of racing.
    lockdir=.ssh/.hostsmith-sync.lock
    tries=0
    until mkdir "$lockdir" 2>/dev/null; do
      tries=$((tries + 1))
      [ "$tries" -le "$patience" ] || fail lock "no flock on the host, and ~/$lockdir stayed for ${patience}s: remove it if no sync is running"
      sleep 1
    done
    trap 'rmdir "$lockdir" 2>/dev/null' EXIT
    trap 'exit 1' HUP INT TERM PIPE
    echo "lock mkdir"
  fi
else
  echo "lock none"
fi

# The type and blob of every key line, the way sshd reads the file: a line that does not
# start with a key type starts with options, which end at the first blank outside double
# quotes (a backslash escapes a quote). cert-authority lines authorise certificates, not
# the key itself, and lines sshd would reject are skipped.
# shellcheck disable=SC2016 # an awk program, not shell
prog='
BEGIN {
  n = split("ssh-ed25519 ssh-rsa ssh-dss ecdsa-sha2-nistp256 ecdsa-sha2-nistp384 ecdsa-sha2-nistp521 sk-ssh-ed25519@openssh.com sk-ecdsa-sha2-nistp256@openssh.com ssh-ed25519-cert-v01@openssh.com ssh-rsa-cert-v01@openssh.com ecdsa-sha2-nistp256-cert-v01@openssh.com ecdsa-sha2-nistp384-cert-v01@openssh.com ecdsa-sha2-nistp521-cert-v01@openssh.com sk-ssh-ed25519-cert-v01@openssh.com sk-ecdsa-sha2-nistp256-cert-v01@openssh.com", t, " ")
  for (i = 1; i <= n; i++) known[t[i]] = 1
}
function two(s,   i, c, cur, got) {
  k1 = ""; k2 = ""; cur = ""; got = 0
  for (i = 1; i <= length(s) + 1; i++) {
    c = (i <= length(s)) ? substr(s, i, 1) : " "
    if (c == " " || c == "\t") {
      if (cur != "") { got++; if (got == 1) k1 = cur; else { k2 = cur; return } }
      cur = ""
    } else cur = cur c
  }
}
{
  line = $0
  sub(/\r$/, "", line)
  sub(/^[ \t]+/, "", line)
  if (line == "" || substr(line, 1, 1) == "#") next
  two(line)
  if (k1 in known) { print k1 " " k2; next }
  q = 0; name = ""; naming = 1; ca = 0
  for (i = 1; i <= length(line); i++) {
    c = substr(line, i, 1)
    if (!q && (c == " " || c == "\t")) break
    if (!q && c == ",") { if (tolower(name) == "cert-authority") ca = 1; name = ""; naming = 1; continue }
    if (!q && c == "=") naming = 0
    else if (naming && !q) name = name c
    if (c == "\\" && substr(line, i + 1, 1) == "\"") i++
    else if (c == "\"") q = !q
  }
  if (tolower(name) == "cert-authority") ca = 1
  if (q || ca) next
  two(substr(line, i))
  if (k1 in known) print k1 " " k2
}'
existing=''
if [ -e "$file" ]; then
  [ -r "$file" ] || fail read "cannot read .ssh/authorized_keys"
  existing=$(awk "$prog" "$file") || fail read "cannot read .ssh/authorized_keys"
fi

index=0
appended=''
while IFS= read -r entry; do
  [ -n "$entry" ] || continue
  index=$((index + 1))
  set -f
  # shellcheck disable=SC2086 # split into words on purpose, globbing off
  set -- $entry
  set +f
  pair="$1 $2"
  case "$nl$existing$nl" in
    *"$nl$pair$nl"*) echo "key $index present" ;;
    *)
      if [ "$mode" = check ]; then
        echo "key $index missing"
        continue
      fi
      if [ -z "$appended" ] && [ -s "$file" ] && [ -n "$(tail -c 1 "$file")" ]; then
        printf '\n' >&9 || fail write "cannot append to .ssh/authorized_keys"
      fi
      printf '%s\n' "$entry" >&9 || fail write "cannot append to .ssh/authorized_keys"
      appended=yes
      existing="$existing$nl$pair"
      echo "key $index added"
      ;;
  esac
done <<EOF
$want
EOF
echo ok
# end of hostsmith-sync
