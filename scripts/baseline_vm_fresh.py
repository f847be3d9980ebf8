#!/usr/bin/env python3
"""The per-host steps of scripts/baseline-vm-fresh.sh, done the way users' scripts do them.

This is the baseline hostsmith is measured against (scripts/bench.sh), not a tool to use:
  to-age PUBFILE            print the age1... recipient of an ssh-ed25519 public key
                            (PyNaCl's crypto_sign_ed25519_pk_to_curve25519 + Bech32, which
                            is what ssh-to-age does)
  edit-sops-yaml HOST AGE   add `&HOST AGE` under `keys:`, a creation rule for
                            sops/HOST.yaml (admins + host) before the catch-all rules, and the
                            host to the rule of sops/shared.yaml, with ruamel.yaml's
                            round-trip mode (keeps comments and anchors)
  record HOST PUBFILE AGE DEPLOY_PUB...  write hosts/HOST.json
"""

import base64
import datetime
import hashlib
import json
import os
import sys

import nacl.bindings
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import PlainScalarString

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32_polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        b = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if ((b >> i) & 1) else 0
    return chk


def bech32_encode(hrp, data8):
    acc, bits, data = 0, 0, []
    for b in data8:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    hrp_exp = [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]
    polymod = bech32_polymod(hrp_exp + data + [0] * 6) ^ 1  # BIP-173, not Bech32m
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[d] for d in data + checksum)


def to_age(pubfile):
    kind, blob = open(pubfile).read().split()[:2]
    assert kind == "ssh-ed25519", kind
    raw = base64.b64decode(blob)
    # string "ssh-ed25519", string key(32)
    n = int.from_bytes(raw[0:4], "big")
    key = raw[4 + n + 4 : 4 + n + 4 + 32]
    curve = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(key)
    return bech32_encode("age", curve)


def yaml_rt():
    y = YAML()  # round-trip
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    return y


def anchored(value, name):
    s = PlainScalarString(value)
    s.yaml_set_anchor(name, always_dump=True)
    return s


def edit_sops_yaml(host, recipient):
    y = yaml_rt()
    with open(".sops.yaml") as f:
        doc = y.load(f)
    keys = doc.setdefault("keys", CommentedSeq())
    by_anchor = {k.anchor.value: k for k in keys if getattr(k, "anchor", None) and k.anchor.value}
    admins = [v for name, v in by_anchor.items() if name == "admin"]
    if host in by_anchor:
        return  # already there: the classic "existence check"
    node = anchored(recipient, host)
    keys.append(node)
    rules = doc.setdefault("creation_rules", CommentedSeq())
    rule = CommentedMap()
    rule["path_regex"] = "^sops/%s\\.yaml$" % host.replace(".", "\\.")
    group = CommentedMap()
    group["age"] = CommentedSeq(admins + [node])
    rule["key_groups"] = CommentedSeq([group])
    # Before the first rule that is not specific to one file (a catch-all), else at the end.
    at = len(rules)
    for i, r in enumerate(rules):
        rx = str(r.get("path_regex", ""))
        if not rx.startswith("^") or not rx.endswith("$"):
            at = i
            break
    rules.insert(at, rule)
    for r in rules:
        if str(r.get("path_regex", "")) == "^sops/shared\\.yaml$":
            r["key_groups"][0]["age"].append(node)
    tmp = ".sops.yaml.tmp"
    with open(tmp, "w") as f:
        y.dump(doc, f)
    os.replace(tmp, ".sops.yaml")


def fingerprint(pubfile):
    blob = base64.b64decode(open(pubfile).read().split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def record(host, pubfile, recipient, deploy):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rec = {
        "schema": 1,
        "name": host,
        "ssh_host_ed25519_public": open(pubfile).read().strip(),
        "fingerprint": fingerprint(pubfile),
        "age_recipient": recipient,
        "deploy_keys": {os.path.basename(p).split(".")[0]: open(p).read().strip() for p in deploy},
        "created_at": now,
        "rotated_at": None,
        "origin": "generated",
    }
    os.makedirs("hosts", exist_ok=True)
    with open("hosts/%s.json" % host, "w") as f:
        json.dump(rec, f, indent=2)
        f.write("\n")


def main(argv):
    cmd = argv[1]
    if cmd == "to-age":
        print(to_age(argv[2]))
    elif cmd == "edit-sops-yaml":
        edit_sops_yaml(argv[2], argv[3])
    elif cmd == "record":
        record(argv[2], argv[3], argv[4], argv[5:])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
