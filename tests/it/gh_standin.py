#!/usr/bin/env python3
# STAND-IN for the GitHub CLI (`gh`), for hostsmith's tests. NOT gh, and it reaches no network.
#
# GitHub cannot be reached from the tests, so `deploy-keys` is tested against this script,
# installed as `gh` first on PATH. What it does:
# - records every call in DIR/gh.log: `argv: [a] [b] ...`, and for `repo deploy-key add` the
#   key it read on stdin as `stdin:...` (the tests assert the command lines real gh would get);
# - emulates `gh auth status` (exit status from the state's "auth"), `gh repo deploy-key add -
#   --title T --repo O/R [--allow-write]`, `gh repo deploy-key list|delete ID --repo O/R`,
#   and `gh api` for repos/O/R/keys: GET (with
#   ?per_page=&page=, default 30 per page; --paginate prints every page as its own JSON
#   array, back to back, as gh does), POST (-f title= -f key= -F read_only=), GET and DELETE
#   of repos/O/R/keys/ID. Unknown repositories and ids fail like gh: the API's error object
#   on stdout, `gh: Not Found (HTTP 404)` on stderr, exit 1.
#
# State is DIR/gh-state.json: {"auth": 0, "max_per_page": 100, "repos": {"O/R": [key objects as GitHub returns
# them: id, key, url, title, verified, created_at, read_only, added_by, last_used]}}.
# Keys carry no comment (GitHub drops it). Ids count up from 1 per state file.
import json
import os
import sys
import urllib.parse

DIR = os.path.dirname(os.path.realpath(__file__))
STATE = os.path.join(DIR, "gh-state.json")
LOG = os.path.join(DIR, "gh.log")
NOW = "2026-12-01T12:00:00Z"


def log(text):
    with open(LOG, "a") as f:
        f.write(text)


def load():
    with open(STATE) as f:
        return json.load(f)


def save(state):
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, STATE)


def http_error(status, message, path):
    sys.stdout.write(json.dumps({"message": message, "documentation_url": "https://docs.github.com/rest", "status": str(status)}))
    sys.stderr.write("gh: %s (HTTP %d)\n" % (message, status))
    sys.exit(1)


def new_key(state, repo, title, key, read_only):
    keys = state["repos"][repo]
    material = " ".join(key.split()[:2])
    if any(k["key"] == material for k in keys):
        return None
    state["next_id"] = state.get("next_id", 0) + 1
    obj = {
        "id": state["next_id"],
        "key": material,
        "url": "https://api.github.com/repos/%s/keys/%d" % (repo, state["next_id"]),
        "title": title,
        "verified": True,
        "created_at": NOW,
        "read_only": read_only,
        "added_by": "standin-user",
        "last_used": None,
    }
    keys.append(obj)
    return obj


def deploy_key_add(args):
    data = sys.stdin.read()
    log("stdin:" + data)
    title = args[args.index("--title") + 1]
    repo = args[args.index("--repo") + 1]
    state = load()
    if repo not in state["repos"]:
        sys.stderr.write("HTTP 404: Not Found (https://api.github.com/repos/%s/keys)\n" % repo)
        sys.exit(1)
    if new_key(state, repo, title, data.strip(), "--allow-write" not in args) is None:
        sys.stderr.write("HTTP 422: Validation Failed (https://api.github.com/repos/%s/keys)\nkey is already in use\n" % repo)
        sys.exit(1)
    save(state)


def deploy_key_list_or_delete(verb, args):
    repo = args[args.index("--repo") + 1]
    state = load()
    if repo not in state["repos"]:
        sys.stderr.write("HTTP 404: Not Found (https://api.github.com/repos/%s/keys)\n" % repo)
        sys.exit(1)
    keys = state["repos"][repo]
    if verb == "list":
        for k in keys:
            sys.stdout.write("%d\t%s\t%s\t%s\t%s\n" % (k["id"], k["title"], k["key"], "read-only" if k["read_only"] else "read-write", k["created_at"]))
        return
    found = [k for k in keys if str(k["id"]) == args[0]]
    if not found:
        sys.stderr.write("HTTP 404: Not Found (https://api.github.com/repos/%s/keys/%s)\n" % (repo, args[0]))
        sys.exit(1)
    keys.remove(found[0])
    save(state)
    sys.stdout.write("Deploy key deleted from %s\n" % repo)


def api(args):
    method, paginate, fields, path = "GET", False, {}, None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--paginate":
            paginate = True
        elif a in ("-X", "--method"):
            i += 1
            method = args[i]
        elif a in ("-H", "--header"):
            i += 1
        elif a in ("-f", "-F", "--raw-field", "--field"):
            i += 1
            k, _, v = args[i].partition("=")
            fields[k] = v if a in ("-f", "--raw-field") else json.loads(v) if v in ("true", "false") or v.isdigit() else v
            if method == "GET":
                method = "POST"
        elif path is None:
            path = a
        else:
            sys.stderr.write("accepts 1 arg(s), received 2\n")
            sys.exit(1)
        i += 1
    url = urllib.parse.urlsplit(path)
    query = dict(urllib.parse.parse_qsl(url.query))
    parts = url.path.strip("/").split("/")
    if len(parts) < 4 or parts[0] != "repos" or parts[3] != "keys":
        sys.stderr.write("stand-in gh: only repos/OWNER/REPO/keys is emulated, not %s\n" % path)
        sys.exit(2)
    repo = parts[1] + "/" + parts[2]
    state = load()
    if repo not in state["repos"]:
        http_error(404, "Not Found", path)
    keys = state["repos"][repo]
    if len(parts) == 4 and method == "GET":
        # GitHub caps per_page at 100; the state's max_per_page caps it lower to force pages.
        per_page = min(int(query.get("per_page", "30")), state.get("max_per_page", 100))
        page = int(query.get("page", "1"))
        pages = [keys[n:n + per_page] for n in range(0, max(len(keys), 1), per_page)]
        shown = pages[page - 1:] if paginate else pages[page - 1:page]
        sys.stdout.write("".join(json.dumps(p) for p in shown or [[]]))
    elif len(parts) == 4 and method == "POST":
        obj = new_key(state, repo, fields.get("title", ""), fields["key"], fields.get("read_only", False))
        if obj is None:
            http_error(422, "Validation Failed", path)
        save(state)
        sys.stdout.write(json.dumps(obj))
    elif len(parts) == 5:
        found = [k for k in keys if str(k["id"]) == parts[4]]
        if not found:
            http_error(404, "Not Found", path)
        if method == "DELETE":
            keys.remove(found[0])
            save(state)
        else:
            sys.stdout.write(json.dumps(found[0]))
    else:
        http_error(404, "Not Found", path)


def main():
    args = sys.argv[1:]
    log("argv:" + "".join(" [%s]" % a for a in args) + "\n")
    if args[:2] == ["auth", "status"]:
        sys.exit(load().get("auth", 0))
    if args[:3] == ["repo", "deploy-key", "add"]:
        return deploy_key_add(args[3:])
    if args[:2] == ["repo", "deploy-key"] and args[2:3] in (["list"], ["delete"]):
        return deploy_key_list_or_delete(args[2], args[3:])
    if args[:1] == ["api"]:
        return api(args[1:])
    sys.stderr.write("stand-in gh: `%s` is not emulated\n" % " ".join(args))
    sys.exit(2)


main()
