#!/usr/bin/env python3
# STAND-IN for Proxmox VE's `qm`, `pvesm` and `pvesh`, for hostsmith's tests. NOT Proxmox.
#
# Proxmox cannot run in the test environment, so `deploy-image` is tested against a real
# sshd whose PATH starts with this script (installed as `qm`; `pvesm` and `pvesh` are
# symlinks to it). It is meant to be as strict as a real node: every value hostsmith sends
# is validated against the rules of the Proxmox sources (each rule names the file it
# mirrors), errors read and exit like the real CLIs', and anything it does not emulate is
# refused with a message saying so, never silently accepted.
#
# What it does:
# - records every argument vector, program name first, as one JSON array per line in
#   STATE/qm.log (never stdin, never file contents);
# - keeps VM configs in STATE/vms/N.conf in Proxmox's file format (sorted `key: value`
#   lines, the description as `#` comment lines, `[PENDING]` and `[special:cloudinit]`
#   sections);
# - emulates `qm status|config|clone|set|cloudinit update|resize|start|stop|reboot|destroy`,
#   `qm guest cmd N network-get-interfaces`, `pvesm path`, and `pvesh get` of
#   /cluster/nextid, /nodes/NODE/storage and /nodes/NODE/qemu/N/feature;
# - generates a real NoCloud ISO (label `cidata`) for a VM's cloud-init drive at `qm start`,
#   `qm reboot` and `qm cloudinit update`, with the files Proxmox would put there, as
#   STATE/images/STORAGE/N/vm-N-cloudinit.iso (mode 0600);
# - `qm start` "boots" the VM in the background: it extracts the VM's seed (its cloud-init
#   ISO, else an ISO on a cdrom drive) into the NoCloud seed directory of a debootstrap
#   Debian root, runs that root's real cloud-init (all four stages), and starts the root's
#   real sshd on port 22 of the VM's address (DHCP -> `lease`, static ipconfig0 `ip=` or
#   `ip6=` -> that address; the test puts it on `lo`). Once sshd listens the "guest agent"
#   answers: first with no IPv4 (only a link-local IPv6), then with the address.
#   A VM without any seed boots like `boot: own-key` (its root keeps a key of its own).
#
# STATE is the directory above this script's bin/. STATE/standin.json configures it:
#   node             the node name (default "pve-standin")
#   root             the debootstrap root to boot
#   lease            the IPv4 address "DHCP" gives the VM
#   boot             "seed" (apply the seed) or "own-key" (ignore the seed and serve a
#                    freshly made key, like a template that makes its own before cloud-init)
#   fail             what fails as if the node had trouble: "start" (QEMU cannot start),
#                    "cloudinit" (`qm cloudinit update` cannot lock the storage)
#   storages         id -> {"type": "dir"|"nfs"|"cifs"|"lvm"|"lvmthin"|"zfspool"|"rbd",
#                    "path": DIR (dir-like types), "content": [...], "shared": bool,
#                    "vgname"/"pool"}; merged over the defaults `local` (dir /var/lib/vz,
#                    iso,vztmpl,backup,snippets) and `local-lvm` (lvmthin, images,rootdir);
#                    `null` removes a default; a plain string is a dir storage at that path
#                    with content iso,snippets
#   cluster          id -> {"type": "qemu"|"lxc", "node": NAME}: guests elsewhere in the
#                    cluster (or CTs here); STATE/cluster-extra.json has the same shape
#   pools            the pool ids that exist
#   race             true: the first free id `pvesh get /cluster/nextid` answers is taken
#                    right after (by a VM on node pve2), as if another client raced us
#   agent_noip_polls how many agent answers report no IPv4 yet (default 2)
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

os.umask(0o077)  # nothing written here is for other users: seeds hold secrets

SCRIPT = os.path.realpath(__file__)
STATE = os.path.dirname(os.path.dirname(SCRIPT))
VMS = os.path.join(STATE, "vms")
IMAGES = os.path.join(STATE, "images")
CFG = json.load(open(os.path.join(STATE, "standin.json")))
NODE = CFG.get("node", "pve-standin")


# ---------------------------------------------------------------------------------------
# Errors, as the Perl CLIs print them.


class Fail(Exception):
    """A plain `die`: the message on stderr, Perl's exit status (255 unless errno is set)."""

    def __init__(self, msg, code=255):
        super().__init__(msg)
        self.msg, self.code = msg, code

    def text(self):
        return self.msg if self.msg.endswith("\n") else self.msg + "\n"


class Exc(Fail):
    """A PVE::Exception with an HTTP code; 400s get the command's usage line appended
    (pve-common: src/PVE/Exception.pm (stringify), src/PVE/RESTHandler.pm (cli_handler))."""

    def __init__(self, msg, code=400, errors=None, usage=None):
        super().__init__(msg)
        self.http, self.errors, self.usage = code, errors or {}, usage

    def text(self):
        out = "%d %s" % (self.http, self.msg)
        if not out.endswith("\n"):
            out += "\n"
        for key, msg in self.errors.items():
            out += "%s: %s\n" % (key, msg)
        if self.usage and self.http == 400:
            out += self.usage + "\n"
        return out


def param_exc(errors, usage=None):
    return Exc("Parameter verification failed.\n", 400, errors, usage)


class FmtErr(Exception):
    """A format check's die message (it ends in a newline, so the error line is followed by
    a blank one: pve-common: src/PVE/JSONSchema.pm (check_prop))."""


def task_fail(msg):
    """A failed worker task: its error on stderr as one line, exit -1 (pve-common:
    src/PVE/RESTEnvironment.pm (fork_worker); qemu-server: src/PVE/CLI/qm.pm ($upid_exit))."""
    return Fail(" ".join(msg.strip().split("\n")), 255)


def no_config(vmid, node=None):
    # pve-guest-common: src/PVE/AbstractConfig.pm (load_config); exits with ENOENT's 2.
    return Fail("Configuration file 'nodes/%s/qemu-server/%s.conf' does not exist" % (node or NODE, vmid), 2)


def not_emulated(what):
    return Fail("the Proxmox stand-in does not emulate `%s`" % what)


# ---------------------------------------------------------------------------------------
# Formats (pve-common: src/PVE/JSONSchema.pm unless noted). Each raises FmtErr.

IPV4 = re.compile(r"^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")


def is_ipv4(s):
    return bool(IPV4.match(s))


def is_ipv6(s):
    try:
        ipaddress.IPv6Address(s)
        return "%" not in s
    except ValueError:
        return False


def f_vmid(v):  # pve_verify_vmid
    if not re.match(r"^[1-9][0-9]{2,8}$", v):
        raise FmtErr("value does not look like a valid VM ID\n")


def f_dns_name(v):  # pve_verify_dns_name
    part = r"([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)"
    if not re.match(r"^(%s\.)*%s$" % (part, part), v):
        raise FmtErr("value does not look like a valid DNS name\n")


def f_volume_id(v):  # pve-storage: src/PVE/Storage/Plugin.pm (parse_volume_id)
    if not re.match(r"^([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$", v, re.I | re.S):
        raise FmtErr("unable to parse volume ID '%s'\n" % v)


def f_storage_id(v):  # parse_storage_id -> parse_id
    if len(v) < 2:
        raise FmtErr("storage ID '%s' cannot be shorter than 2 characters\n" % v)
    if not re.match(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", v, re.I):
        raise FmtErr("storage ID '%s' contains illegal characters\n" % v)


def f_bridge_id(v):  # parse_bridge_id
    if not re.match(r"^[-_.\w\d]+$", v):
        raise FmtErr("invalid bridge ID '%s'\n" % v)


def f_mac(v):  # pve_verify_mac_addr: unicast only
    if not re.match(r"^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$", v, re.I):
        raise FmtErr("value does not look like a valid unicast MAC address\n")


def f_ipv4(v):
    if not is_ipv4(v):
        raise FmtErr("value does not look like a valid IPv4 address\n")


def f_ipv6(v):
    if not is_ipv6(v):
        raise FmtErr("value does not look like a valid IPv6 address\n")


def cidr_ok(v, v6):
    m = re.match(r"^(.+)/(\d+)$", v)
    if not m:
        return False
    ok = is_ipv6(m.group(1)) if v6 else is_ipv4(m.group(1))
    return ok and 7 < int(m.group(2)) <= (128 if v6 else 32)


def f_ipv4_config(v):  # pve_verify_ipv4_config: dhcp | manual | CIDRv4 /8../32
    if v not in ("dhcp", "manual") and not cidr_ok(v, False):
        raise FmtErr("value does not look like a valid ipv4 network configuration\n")


def f_ipv6_config(v):  # pve_verify_ipv6_config: auto | dhcp | manual | CIDRv6 /8../128
    if v not in ("auto", "dhcp", "manual") and not cidr_ok(v, True):
        raise FmtErr("value does not look like a valid ipv6 network configuration\n")


def split_list(v):  # pve-common: src/PVE/ParseUtils.pm (split_list)
    return [x for x in re.split(r"\s+", re.sub(r"[,;]", " ", v).strip()) if x]


def f_tag_list(v):  # pve-tag-list: pve_verify_tag per item
    for tag in split_list(v):
        if not re.match(r"^[a-z0-9_][a-z0-9_\-+.]*$", tag, re.I):
            raise FmtErr("invalid characters in tag\n")


def f_address_list(v):  # address-list: pve_verify_address per item (IP or DNS name)
    for a in split_list(v):
        if is_ipv4(a) or is_ipv6(a):
            continue
        try:
            f_dns_name(a)
        except FmtErr:
            raise FmtErr("value does not look like a valid address: %s\n" % a) from None


def f_poolid(v):  # pve-access-control: src/PVE/AccessControl.pm (verify_poolname)
    if not re.match(r"^[A-Za-z0-9.\-_]+$", v):
        raise FmtErr("pool name '%s' contains invalid characters\n" % v)


def f_drive_file(v):  # pve-volume-id-or-qm-path
    if v in ("none", "cdrom") or v.startswith("/"):
        return
    f_volume_id(v)


# ---------------------------------------------------------------------------------------
# Schema checks (pve-common: src/PVE/JSONSchema.pm (check_prop, check_type, check_object,
# parse_property_string)). A schema is a dict: type, format (a function or a property
# string dict), pattern, maxlen, min, max, enum, optional, default_key, requires, alias.


def parse_boolean(v):  # JSONSchema.pm (parse_boolean)
    if re.match(r"^(1|on|yes|true)$", v, re.I):
        return "1"
    if re.match(r"^(0|off|no|false)$", v, re.I):
        return "0"
    return None


def add_error(errors, path, msg):
    errors[path] = errors[path] + "\\n" + msg if path in errors else msg


def check_prop(value, schema, path, errors):
    kind = schema.get("type", "string")
    if kind == "boolean" and value not in ("0", "1"):
        return add_error(errors, path, "type check ('boolean') failed - got '%s'" % value)
    if kind == "integer" and not re.match(r"^[+-]?\d+$", value):
        return add_error(errors, path, "type check ('integer') failed - got '%s'" % value)
    if kind == "number" and not re.match(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$", value):
        return add_error(errors, path, "type check ('number') failed - got '%s'" % value)
    fmt = schema.get("format")
    if fmt is not None:
        try:
            if isinstance(fmt, dict):
                parse_property_string(fmt, value, path)
            else:
                fmt(value)
        except FmtErr as e:
            return add_error(errors, path, "invalid format - %s" % e)
    if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
        return add_error(errors, path, "value does not match the regex pattern")
    if "maxlen" in schema and len(value) > schema["maxlen"]:
        return add_error(errors, path, "value may only be %d characters long" % schema["maxlen"])
    if kind in ("integer", "number"):
        if "max" in schema and float(value) > schema["max"]:
            return add_error(errors, path, "value must have a maximum value of %s" % schema["max"])
        if "min" in schema and float(value) < schema["min"]:
            return add_error(errors, path, "value must have a minimum value of %s" % schema["min"])
    if "enum" in schema and value not in schema["enum"]:
        add_error(errors, path, "value '%s' does not have a value in the enumeration '%s'" % (value, ", ".join(schema["enum"])))


def parse_property_string(fmt, data, path):
    """`k=v,...` against a format; raises FmtErr("format error\\n" + nested errors)."""
    res, default_key = {}, None
    for part in data.split(","):
        if re.match(r"^\s*$", part):
            continue
        m = re.match(r"^([^=]+)=(.+)$", part, re.S)
        if m:
            k, v = m.group(1), m.group(2)
            if k in res:
                raise FmtErr("duplicate key in comma-separated list property: %s\n" % k)
            schema = fmt.get(k)
            if schema and "alias" in schema:
                if "key_alias" in schema:
                    if schema["key_alias"] in res:
                        raise FmtErr("key alias '%s' is already defined\n" % schema["key_alias"])
                    res[schema["key_alias"]] = k
                k = schema["alias"]
                schema = fmt.get(k)
                if k in res:
                    raise FmtErr("key '%s' is already defined (via alias)\n" % k)
            if not schema:
                raise FmtErr("invalid key in comma-separated list property: %s\n" % k)
            if schema.get("type") == "boolean":
                v = parse_boolean(v) or v
            res[k] = v
        elif "=" not in part:
            if default_key:
                raise FmtErr("duplicate key in comma-separated list property: %s\n" % default_key)
            default_key = next((k for k, s in fmt.items() if s.get("default_key")), None)
            if default_key is None:
                raise FmtErr("value without key, but schema does not define a default key\n")
            if default_key in res:
                raise FmtErr("duplicate key in comma-separated list property: %s\n" % default_key)
            if fmt[default_key].get("type") == "boolean":
                part = parse_boolean(part) or part
            res[default_key] = part
        else:
            raise FmtErr("missing key in comma-separated list property\n")
    errors = {}
    for k, schema in fmt.items():
        if "alias" in schema:
            continue
        sub = "%s.%s" % (path, k) if path else k
        if k not in res:
            if not schema.get("optional"):
                add_error(errors, sub, "property is missing and it is not optional")
            continue
        check_prop(res[k], schema, sub, errors)
        req = schema.get("requires")
        if req and req not in res:
            add_error(errors, "%s.%s" % (path, req) if path else req, "missing property required by '%s'" % sub)
    if errors:
        raise FmtErr("format error\n" + "".join("%s: %s\n" % kv for kv in errors.items()))
    return res


def prop(fmt, value):
    """A stored property string, parsed without validation errors stopping us."""
    try:
        return parse_property_string(fmt, value or "", "")
    except FmtErr:
        return {}


def drive_of(value):
    """A stored drive (`VOLID,k=v,...`), read leniently: configs may use keys the stand-in
    does not validate."""
    out = {}
    for i, part in enumerate((value or "").split(",")):
        k, eq, v = part.partition("=")
        if eq and k != "file":
            out[k] = v
        elif i == 0 or k == "file":
            out["file"] = v if eq else part
    return out


def net_of(value):
    """A stored netN, read leniently (`MODEL=MAC` is model and macaddr)."""
    out = {}
    for part in (value or "").split(","):
        k, eq, v = part.partition("=")
        if k in NIC_MODELS:
            out["model"] = k
            if eq:
                out["macaddr"] = v
        elif eq:
            out[k] = v
    return out


OPT = {"optional": True}
BOOL = {"type": "boolean", "optional": True}
VMID = {"type": "integer", "format": f_vmid, "min": 100, "max": 999999999}

# qemu-server: src/PVE/QemuServer.pm ($cicustom_fmt)
CICUSTOM = {k: {"format": f_volume_id, "optional": True} for k in ("meta", "network", "user", "vendor")}
# qemu-server: src/PVE/QemuServer/Network.pm ($ipconfig_fmt)
IPCONFIG = {
    "ip": {"format": f_ipv4_config, "optional": True},
    "gw": {"format": f_ipv4, "optional": True, "requires": "ip"},
    "ip6": {"format": f_ipv6_config, "optional": True},
    "gw6": {"format": f_ipv6, "optional": True, "requires": "ip6"},
}
# qemu-server: src/PVE/QemuServer/Network.pm ($nic_model_list, $net_fmt)
NIC_MODELS = ["e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3"]
NET = {
    "macaddr": {"format": f_mac, "optional": True},
    "model": {"enum": NIC_MODELS, "default_key": True},
    "bridge": {"format": f_bridge_id, "optional": True},
    "queues": {"type": "integer", "min": 0, "max": 64, "optional": True},
    "rate": {"type": "number", "min": 0, "optional": True},
    "tag": {"type": "integer", "min": 1, "max": 4094, "optional": True},
    "trunks": {"pattern": r"\d+(?:-\d+)?(?:;\d+(?:-\d+)?)*", "optional": True},
    "firewall": BOOL,
    "link_down": BOOL,
    "mtu": {"type": "integer", "min": 1, "max": 65520, "optional": True},
    "host-tunnel": BOOL,
}
NET.update({m: {"alias": "macaddr", "key_alias": "model"} for m in NIC_MODELS})
# qemu-server: src/PVE/QemuServer/Agent.pm ($agent_fmt): `enabled` is not optional
AGENT = {
    "enabled": {"type": "boolean", "default_key": True},
    "fstrim_cloned_disks": BOOL,
    "freeze-fs-on-backup": {"alias": "freeze-fs"},
    "guest-fsfreeze": {"alias": "freeze-fs"},
    "freeze-fs": BOOL,
    "type": {"enum": ["virtio", "isa"], "optional": True},
}
# qemu-server: src/PVE/QemuServer/Memory.pm ($memory_fmt)
MEMORY = {"current": {"type": "integer", "default_key": True, "min": 16}}
# qemu-server: src/PVE/QemuServer/Drive.pm (the drive formats; the keys a cdrom uses)
DRIVE = {
    "file": {"format": f_drive_file, "default_key": True},
    "media": {"enum": ["cdrom", "disk"], "optional": True},
    "size": {"pattern": r"\d+(\.\d+)?[KMGT]?", "optional": True},
    "format": {"enum": ["raw", "cow", "qcow", "qed", "qcow2", "vmdk", "cloop"], "optional": True},
    "cache": {"enum": ["none", "writethrough", "writeback", "unsafe", "directsync"], "optional": True},
    "backup": BOOL,
    "discard": {"enum": ["ignore", "on"], "optional": True},
    "ssd": BOOL,
    "iothread": BOOL,
    "replicate": BOOL,
}

# The `qm set` options emulated (qemu-server: src/PVE/QemuServer.pm ($confdesc,
# $confdesc_cloudinit); MAX_NETS = 32).
SET_OPTS = {
    "cicustom": {"format": CICUSTOM, **OPT},
    "agent": {"format": AGENT, **OPT},
    "tags": {"format": f_tag_list, **OPT},
    "description": {"maxlen": 8192, **OPT},
    "onboot": BOOL,
    "cores": {"type": "integer", "min": 1, **OPT},
    "memory": {"format": MEMORY, **OPT},
    "nameserver": {"format": f_address_list, **OPT},
    "searchdomain": OPT,
    "name": {"format": f_dns_name, **OPT},
    "digest": {"pattern": r"[a-fA-F0-9]{40}", **OPT},
}
for _i in range(32):
    SET_OPTS["net%d" % _i] = {"format": NET, **OPT}
    SET_OPTS["ipconfig%d" % _i] = {"format": IPCONFIG, **OPT}
for _i in range(4):
    SET_OPTS["ide%d" % _i] = {"format": DRIVE, **OPT}
# Real `qm set` options this stand-in refuses rather than pretends to apply.
SET_NOT_EMULATED = {"delete", "revert", "skiplock", "force", "sshkeys", "ciuser", "cipassword", "citype", "ciupgrade", "boot", "ostype", "sockets", "vcpus", "cpu", "balloon", "scsihw", "vga", "serial0", "machine", "bios", "hotplug", "template", "protection", "startup", "kvm", "numa", "efidisk0", "tpmstate0"} | {"scsi%d" % i for i in range(31)} | {"virtio%d" % i for i in range(16)} | {"sata%d" % i for i in range(6)}

CLOUDINIT_OPTS = {"cicustom", "cipassword", "citype", "ciuser", "ciupgrade", "nameserver", "searchdomain", "sshkeys"} | {"ipconfig%d" % i for i in range(32)}
# qemu-server: src/PVE/QemuServer.pm ($fast_plug_option): applied at once even when running
FAST_PLUG = {"description", "hookscript", "lock", "migrate_downtime", "migrate_speed", "name", "onboot", "protection", "shares", "startup", "tags", "vmstatestorage"} | CLOUDINIT_OPTS
# qemu-server: src/PVE/QemuServer.pm (cloudinit_pending_properties)
CLOUDINIT_PENDING = CLOUDINIT_OPTS | {"name"} | {"net%d" % i for i in range(32)}

DRIVE_NAMES = ["ide%d" % i for i in range(4)] + ["sata%d" % i for i in range(6)] + ["scsi%d" % i for i in range(31)] + ["virtio%d" % i for i in range(16)] + ["efidisk0", "tpmstate0"]


# ---------------------------------------------------------------------------------------
# Command lines (pve-common: src/PVE/JSONSchema.pm (get_options)).


def get_options(argv, spec, args, usage, fixed=None):
    """Getopt::Long as PVE uses it: `--k v`, `-k v`, `--k=v`; booleans take an optional
    value (bare = 1); positional arguments fill `args` in order. Then every value is
    checked against its schema; all errors are reported together."""
    out, pos, i = {}, [], 0
    while i < len(argv):
        a = argv[i]
        m = re.match(r"^--?([A-Za-z0-9_\-]+)(?:=(.*))?$", a, re.S)
        if not m or re.match(r"^-\d", a):
            pos.append(a)
            i += 1
            continue
        key, inline = m.group(1), m.group(2)
        if key not in spec:
            if fixed and key in fixed:
                raise not_emulated("%s --%s" % (usage.split(" <")[0], key))
            sys.stderr.write("Unknown option: %s\n" % key)
            raise Exc("unable to parse option\n", 400, usage=usage)
        schema = spec[key]
        if inline is not None:
            value = inline
        elif schema.get("type") == "boolean":
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            value = "" if nxt is None or re.match(r"^--?[A-Za-z]", nxt) else nxt
            i += 0 if value == "" else 1
        else:
            if i + 1 >= len(argv) or re.match(r"^--?[A-Za-z]", argv[i + 1]):
                sys.stderr.write("Option %s requires an argument\n" % key)
                raise Exc("unable to parse option\n", 400, usage=usage)
            value = argv[i + 1]
            i += 1
        if schema.get("type") == "boolean":
            b = "1" if value == "" else parse_boolean(value)
            if b is None:
                raise Exc("unable to parse boolean option\n", 400, usage=usage)
            value = b
        out[key] = value
        i += 1
    names = [n for n, _ in args]
    if len(pos) > len(names):
        raise Exc("too many arguments\n", 400, usage=usage)
    for (name, schema), value in zip(args, pos):
        out[name] = value
    for name, schema in args[len(pos):]:
        if not schema.get("optional"):
            raise Exc("not enough arguments\n", 400, usage=usage)
    errors = {}
    for name, schema in list(args) + list(spec.items()):
        if name in out:
            check_prop(out[name], schema, name, errors)
    if errors:
        raise param_exc(errors, usage)
    return out


# ---------------------------------------------------------------------------------------
# VM configs (qemu-server: src/PVE/QemuServer.pm (parse_vm_config, write_vm_config)).


def conf_path(vmid):
    return os.path.join(VMS, "%s.conf" % vmid)


def marker(vmid, name):
    return os.path.join(VMS, "%s.%s" % (vmid, name))


def encode_text(text):  # pve-common: src/PVE/ParseUtils.pm (encode_text)
    return urllib.parse.quote(text, safe="".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ":%"))


class Conf:
    def __init__(self, vmid):
        self.vmid = vmid
        self.main, self.pending, self.special = {}, {}, {}
        p = conf_path(vmid)
        if not os.path.exists(p):
            raise no_config(vmid)
        section, descr = self.main, []
        for line in open(p).read().splitlines():
            if not line.strip():
                continue
            if line.startswith("#") and section is self.main:
                descr.append(urllib.parse.unquote(line[1:]))
                continue
            m = re.match(r"^\[(.+)\]$", line)
            if m:
                name = m.group(1)
                if name == "PENDING":
                    section = self.pending
                elif name == "special:cloudinit":
                    section = self.special
                else:
                    raise not_emulated("snapshots ([%s] in %s.conf)" % (name, vmid))
                continue
            k, _, v = line.partition(": ")
            section[k] = v
        if descr and "description" not in self.main:
            self.main["description"] = "\n".join(descr)

    def save(self):
        out = ""
        if "description" in self.main:
            out += "".join("#%s\n" % encode_text(line) for line in self.main["description"].split("\n"))
        out += "".join("%s: %s\n" % (k, self.main[k]) for k in sorted(self.main) if k != "description")
        for name, sec in (("PENDING", self.pending), ("special:cloudinit", self.special)):
            if sec:
                out += "\n[%s]\n" % name + "".join("%s: %s\n" % (k, sec[k]) for k in sorted(sec))
        tmp = conf_path(self.vmid) + ".tmp"
        with open(tmp, "w") as f:
            f.write(out)
        os.rename(tmp, conf_path(self.vmid))

    def effective(self):
        """The config with pending values applied (what `qm config` shows)."""
        c = dict(self.main)
        c.update({k: v for k, v in self.pending.items() if k != "delete"})
        return c

    def drives(self, conf=None):
        conf = self.main if conf is None else conf
        return drives(conf)


def drives(conf):
    return [(k, drive_of(conf[k])) for k in DRIVE_NAMES if k in conf]


def running(vmid):
    return os.path.exists(marker(vmid, "running"))


def drive_is_cloudinit(drive):  # qemu-server: src/PVE/QemuServer/Drive.pm (drive_is_cloudinit)
    return bool(re.search(r"[:/](?:vm-\d+-)?cloudinit(?:\.(raw|qcow2|vmdk))?$", drive.get("file", "")))


def drive_is_cdrom(drive, exclude_cloudinit=False):  # Drive.pm (drive_is_cdrom)
    if exclude_cloudinit and drive_is_cloudinit(drive):
        return False
    return drive.get("media") == "cdrom"


def random_mac():  # pve-common: src/PVE/Tools.pm (random_ether_addr), prefix BC:24:11
    b = secrets.token_bytes(3)
    return "BC:24:11:%02X:%02X:%02X" % tuple(b)


def print_net(net):  # Network.pm (print_net): model=MAC first, then the rest
    parts = ["%s=%s" % (net["model"], net["macaddr"])]
    parts += ["%s=%s" % (k, net[k]) for k in sorted(net) if k not in ("model", "macaddr")]
    return ",".join(parts)


# ---------------------------------------------------------------------------------------
# Storage (pve-storage: src/PVE/Storage.pm, src/PVE/Storage/*Plugin.pm).

DIR_TYPES = {"dir", "nfs", "cifs", "glusterfs", "cephfs", "btrfs"}
DEFAULT_STORAGES = {
    "local": {"type": "dir", "path": "/var/lib/vz", "content": ["iso", "vztmpl", "backup", "snippets"], "shared": False},
    "local-lvm": {"type": "lvmthin", "vgname": "pve", "thinpool": "data", "content": ["images", "rootdir"], "shared": False},
}


def storages():
    out = dict(DEFAULT_STORAGES)
    for sid, s in CFG.get("storages", {}).items():
        if s is None:
            out.pop(sid, None)
        elif isinstance(s, str):
            out[sid] = {"type": "dir", "path": s, "content": ["iso", "snippets"], "shared": False}
        else:
            out[sid] = s
    return out


def storage_config(sid):  # Storage.pm (storage_config)
    s = storages().get(sid)
    if s is None:
        raise Fail("storage '%s' does not exist" % sid)
    return s


def split_volid(volid):
    m = re.match(r"^([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$", volid, re.I | re.S)
    if not m:
        raise Fail("unable to parse volume ID '%s'" % volid)
    return m.group(1), m.group(2)


def parse_volname(scfg, volname):
    """-> (vtype, name, vmid, is_base, format, subpath) per the storage type's rules."""
    t = scfg.get("type")
    if t in DIR_TYPES:  # Plugin.pm (parse_volname)
        m = re.match(r"^(\d+)/(?:(base-\d+-disk-\d+\.(?:raw|qcow2|vmdk))/\d+/)?((base|vm)-\d+-(?:disk-\d+|cloudinit)\.(raw|qcow2|vmdk))$", volname)
        if m:
            return ("images", m.group(3), m.group(1), m.group(4) == "base" and not m.group(2), m.group(5), "images/%s/%s" % (m.group(1), m.group(3)))
        for vtype, rx in (("iso", r"^iso/([^/]+\.(?:iso|img))$"), ("vztmpl", r"^vztmpl/([^/]+\.tar\.(?:gz|xz|zst|bz2))$"), ("backup", r"^backup/([^/]+)$"), ("snippets", r"^snippets/([^/]+)$"), ("import", r"^import/([^/]+)$")):
            m = re.match(rx, volname, re.I)
            if m:
                sub = {"iso": "template/iso", "vztmpl": "template/cache", "backup": "dump"}.get(vtype, vtype)
                return (vtype, m.group(1), None, False, "raw", "%s/%s" % (sub, m.group(1)))
        raise Fail("unable to parse directory volume name '%s'" % volname)
    if t in ("lvm", "lvmthin", "zfspool", "rbd"):
        kind = {"lvm": "lvm", "lvmthin": "lvm", "zfspool": "zfs", "rbd": "rbd"}[t]
        m = re.match(r"^(?:(base-\d+-\S+)/)?((base|vm)-(\d+)-\S+)$", volname)
        if not m or (t == "lvm" and m.group(1)):
            raise Fail("unable to parse %s volume name '%s'" % (kind, volname))
        return ("images", m.group(2), m.group(4), m.group(3) == "base" and not m.group(1), "raw", m.group(2))
    raise not_emulated("storage type '%s'" % t)


def volume_path(volid):
    """`pvesm path`: Storage.pm (path) -> the plugin's filesystem_path / path."""
    sid, volname = split_volid(volid)
    scfg = storage_config(sid)
    vtype, name, vmid, _, _, sub = parse_volname(scfg, volname)
    t = scfg["type"]
    if t in DIR_TYPES:
        return os.path.join(scfg["path"], sub)
    if vtype != "images":
        raise Fail("unable to parse %s volume name '%s'" % ("lvm" if t.startswith("lvm") else t, volname))
    if t in ("lvm", "lvmthin"):
        return "/dev/%s/%s" % (scfg.get("vgname", "pve"), name)
    if t == "zfspool":
        return "/dev/zvol/%s/%s" % (scfg.get("pool", "rpool/data"), name)
    return "/dev/rbd/%s/%s" % (scfg.get("pool", "rbd"), name)


def volume_has_feature(feature, volid):
    """Storage plugins' volume_has_feature: dir-like (Plugin.pm) clones only base images;
    LVMPlugin.pm never clones; LvmThinPlugin/ZFSPoolPlugin/RBDPlugin clone base images."""
    sid, volname = split_volid(volid)
    scfg = storage_config(sid)
    _, _, _, is_base, fmt, _ = parse_volname(scfg, volname)
    key = "base" if is_base else "current"
    t = scfg["type"]
    if t in DIR_TYPES:
        table = {"clone": {"base": {"qcow2", "raw", "vmdk"}}, "copy": {"base": {"qcow2", "raw", "vmdk"}, "current": {"qcow2", "raw", "vmdk"}}}
        return fmt in table.get(feature, {}).get(key, set())
    table = {
        "lvm": {"copy": {"base", "current"}},
        "lvmthin": {"clone": {"base"}, "copy": {"base", "current"}},
        "zfspool": {"clone": {"base"}, "copy": {"base", "current"}},
        "rbd": {"clone": {"base"}, "copy": {"base", "current"}},
    }
    return key in table.get(t, {}).get(feature, set())


def has_feature(feature, conf):  # qemu-server: src/PVE/QemuConfig.pm (has_feature): cdroms skipped
    for _, drive in drives(conf):
        if drive_is_cdrom(drive) or drive.get("file") in (None, "none"):
            continue
        if not volume_has_feature(feature, drive["file"]):
            return False
    return True


def cluster_ids():
    """The cluster-wide vmlist (pve-cluster: src/PVE/Cluster.pm (get_vmlist)): local VMs,
    plus `cluster` from standin.json and STATE/cluster-extra.json."""
    ids = {}
    for name in os.listdir(VMS):
        m = re.match(r"^(\d+)\.conf$", name)
        if m:
            ids[m.group(1)] = {"type": "qemu", "node": NODE}
    extra = os.path.join(STATE, "cluster-extra.json")
    for src in (CFG.get("cluster", {}), json.load(open(extra)) if os.path.exists(extra) else {}):
        for vmid, d in src.items():
            ids[str(vmid)] = d
    return ids


# ---------------------------------------------------------------------------------------
# Cloud-init (qemu-server: src/PVE/QemuServer/Cloudinit.pm).


def cloudinit_drive(conf):
    for key, drive in drives(conf):
        if drive_is_cloudinit(drive):
            return key, drive
    return None, None


def resolv_conf():
    search, ns = [], []
    try:
        for line in open("/etc/resolv.conf"):
            parts = line.split()
            if parts and parts[0] == "search":
                search = parts[1:]
            elif parts and parts[0] == "nameserver" and len(ns) < 3 and len(parts) > 1:
                ns.append(parts[1])
    except OSError:
        pass
    return search, ns


def nocloud_network(conf):  # Cloudinit.pm (nocloud_network): version 1
    out = "version: 1\nconfig:\n"
    for iface in sorted(k for k in conf if re.match(r"^net\d+$", k)):
        n = iface[3:]
        if not conf.get("ipconfig" + n):
            continue
        net, ipc = net_of(conf[iface]), prop(IPCONFIG, conf["ipconfig" + n])
        if not ipc.get("ip") and not ipc.get("ip6"):
            ipc = {"ip": "dhcp", "ip6": "dhcp"}
        if not net.get("macaddr"):
            raise Fail("network interface '%s' has no mac address" % iface)
        out += "    - type: physical\n      name: eth%s\n      mac_address: '%s'\n      subnets:\n" % (n, net["macaddr"].lower())
        ip, ip6 = ipc.get("ip"), ipc.get("ip6")
        if ip == "dhcp":
            out += "      - type: dhcp4\n"
        elif ip:
            addr, plen = ip.split("/")
            mask = str(ipaddress.IPv4Network("0.0.0.0/%s" % plen).netmask)
            out += "      - type: static\n        address: '%s'\n        netmask: '%s'\n" % (addr, mask)
            if ipc.get("gw"):
                out += "        gateway: '%s'\n" % ipc["gw"]
        if ip6 == "dhcp":
            out += "      - type: dhcp6\n"
        elif ip6 == "auto":
            out += "      - type: ipv6_slaac\n"
        elif ip6:
            out += "      - type: static6\n        address: '%s'\n" % ip6
            if ipc.get("gw6"):
                out += "        gateway: '%s'\n" % ipc["gw6"]
    host_search, host_ns = resolv_conf()
    search = conf["searchdomain"].split() if "searchdomain" in conf else host_search
    ns = conf["nameserver"].split() if "nameserver" in conf else host_ns
    out += "    - type: nameserver\n"  # always: Perl's array refs are true even when empty
    if ns:
        out += "      address:\n" + "".join("      - '%s'\n" % a for a in ns)
    if search:
        out += "      search:\n" + "".join("      - '%s'\n" % d for d in search)
    return out


def nocloud_userdata(conf, vmid):  # Cloudinit.pm (cloudinit_userdata), no ciuser/keys here
    hostname = conf.get("name", "VM%s" % vmid)
    if "." in hostname:
        fqdn, hostname = hostname, hostname.split(".")[0]
    elif conf.get("searchdomain"):
        fqdn = "%s.%s" % (hostname, conf["searchdomain"])
    else:
        fqdn = hostname
    out = "#cloud-config\nhostname: %s\nmanage_etc_hosts: true\nfqdn: %s\n" % (hostname, fqdn)
    out += "chpasswd:\n  expire: False\nusers:\n  - default\n"
    if conf.get("ciupgrade", "1") != "0":
        out += "package_upgrade: true\n"
    return out


def read_snippet(volid):  # Cloudinit.pm (read_cloudinit_snippets_file)
    sid, volname = split_volid(volid)
    vtype = parse_volname(storage_config(sid), volname)[0]
    if vtype != "snippets":
        raise Fail("%s is not in the snippets directory" % volid)
    path = volume_path(volid)
    if not os.path.isfile(path):  # pve-storage: src/PVE/Storage.pm (abs_filesystem_path)
        raise Fail("can't find file '%s'" % volid)
    with open(path, "rb") as f:
        return f.read(1024 * 1024)


def cloudinit_iso(vmid, drive):
    sid, _ = split_volid(drive["file"])
    return os.path.join(IMAGES, sid, str(vmid), "vm-%s-cloudinit.iso" % vmid)


def generate_cloudinit(vmid, conf):
    """Cloudinit.pm (generate_nocloud, commit_cloudinit_disk) for a `vm-N-cloudinit` drive;
    returns whether there was one."""
    key, drive = cloudinit_drive(conf)
    if not drive or not re.search(r"vm-%s-cloudinit" % vmid, drive["file"]):
        return False
    if conf.get("citype", "nocloud") != "nocloud":
        raise not_emulated("citype %s" % conf["citype"])
    custom = prop(CICUSTOM, conf.get("cicustom"))
    files = {k: read_snippet(custom[k]) for k in ("user", "network", "meta", "vendor") if k in custom}
    user = files.get("user", nocloud_userdata(conf, vmid).encode())
    network = files.get("network", nocloud_network(conf).encode())
    vendor = files.get("vendor", b"")
    meta = files.get("meta", b"instance-id: %s\n" % hashlib.sha1(user + network).hexdigest().encode())
    if len(user) + len(network) + len(meta) + len(vendor) > 3 * 1024 * 1024:
        raise Fail("Cloud-Init sum of snippets too big (> 3 MiB)")
    iso = cloudinit_iso(vmid, drive)
    os.makedirs(os.path.dirname(iso), mode=0o700, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".cloudinit-", dir=STATE)
    try:
        for name, data in (("user-data", user), ("network-config", network), ("meta-data", meta), ("vendor-data", vendor)):
            fd = os.open(os.path.join(stage, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        print("generating cloud-init ISO")
        sys.stdout.flush()
        tmp = iso + ".tmp"
        r = subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-iso-level", "3", "-J", "-R", "-V", "cidata", "-o", tmp, stage], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise Fail("command 'genisoimage' failed: exit code %d" % r.returncode)
        os.chmod(tmp, 0o600)
        os.rename(tmp, iso)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return True


def apply_cloudinit(c):
    """Cloudinit.pm (apply_cloudinit_config): regenerate, and forget the recorded changes."""
    generate_cloudinit(c.vmid, c.main)
    if c.special:
        c.special = {}
        c.save()


def record_cloudinit_change(c, opt, old, new):
    """QemuServer.pm (vmconfig_hotplug_pending, $cloudinit_record_changed), simplified: the
    first value a cloud-init setting had before the drive went stale is kept."""
    if opt not in CLOUDINIT_PENDING or old == new:
        return
    added = set(split_list(c.special.pop("added", "")))
    if opt in c.special:
        if new == c.special[opt]:
            del c.special[opt]
    elif opt in added:
        if new is None:
            added.discard(opt)
    elif old is None:
        added.add(opt)
    else:
        c.special[opt] = old
    if added:
        c.special["added"] = ",".join(sorted(added))


# ---------------------------------------------------------------------------------------
# qm


def u(cmd):
    """The short usage line (pve-common: src/PVE/RESTHandler.pm (getopt_usage, 'short'))."""
    return {
        "status": "qm status <vmid> [OPTIONS]",
        "config": "qm config <vmid> [OPTIONS]",
        "clone": "qm clone <vmid> <newid> [OPTIONS]",
        "set": "qm set <vmid> [OPTIONS]",
        "start": "qm start <vmid> [OPTIONS]",
        "stop": "qm stop <vmid> [OPTIONS]",
        "reboot": "qm reboot <vmid> [OPTIONS]",
        "destroy": "qm destroy <vmid> [OPTIONS]",
        "resize": "qm disk resize <vmid> <disk> <size> [OPTIONS]",
        "cloudinit update": "qm cloudinit update <vmid>",
        "guest cmd": "qm guest cmd <vmid> <command>",
    }[cmd]


def qm_status(argv):
    o = get_options(argv, {"verbose": BOOL}, [("vmid", VMID)], u("status"))
    Conf(o["vmid"])  # "test if VM exists" (qemu-server: src/PVE/CLI/qm.pm (status))
    print("status: %s" % ("running" if running(o["vmid"]) else "stopped"))


def qm_config(argv):
    # qemu-server: src/PVE/API2/Qemu.pm (vm_config): pending applied unless --current;
    # src/PVE/CLI/qm.pm: sorted keys, digest omitted, description percent-encoded.
    o = get_options(argv, {"current": BOOL, "snapshot": OPT}, [("vmid", VMID)], u("config"))
    if "snapshot" in o:
        raise not_emulated("qm config --snapshot")
    c = Conf(o["vmid"])
    conf = dict(c.main) if o.get("current") == "1" else c.effective()
    for k in sorted(conf):
        v = encode_text(conf[k]) if k == "description" else conf[k]
        print("%s: %s" % (k, v))


CLONE_OPTS = {
    "name": {"format": f_dns_name, **OPT},
    "description": OPT,
    "pool": {"format": f_poolid, **OPT},
    "snapname": OPT,
    "storage": {"format": f_storage_id, **OPT},
    "format": {"enum": ["raw", "qcow2", "vmdk"], **OPT},
    "full": BOOL,
    "target": OPT,
    "bwlimit": {"type": "integer", "min": 0, **OPT},
}


def clone_volume(volid, newid, opt, full, storage, fmt):
    """The new volume id a clone gets (pve-storage plugins' clone_image / vdisk_alloc)."""
    sid, volname = split_volid(volid)
    scfg = storage_config(sid)
    _, name, _, _, srcfmt, _ = parse_volname(scfg, volname)
    cloudinit = drive_is_cloudinit({"file": volid})
    if not full:
        if scfg["type"] in DIR_TYPES:
            return "%s:%s/%s/%s/vm-%s-disk-0.qcow2" % (sid, volname.split("/")[0], name, newid, newid)
        return "%s:%s/vm-%s-disk-0" % (sid, name, newid)
    tsid = storage or sid
    tcfg = storage_config(tsid)
    base = "vm-%s-cloudinit" % newid if cloudinit else "vm-%s-disk-%s" % (newid, re.sub(r"\D", "", opt) or "0")
    if tcfg["type"] in DIR_TYPES:
        return "%s:%s/%s.%s" % (tsid, newid, base, fmt or srcfmt)
    return "%s:%s" % (tsid, base)


def qm_clone(argv):
    # qemu-server: src/PVE/API2/Qemu.pm (clone_vm)
    o = get_options(argv, CLONE_OPTS, [("vmid", VMID), ("newid", VMID)], u("clone"))
    vmid, newid = o["vmid"], o["newid"]
    for unsupported in ("snapname", "target", "bwlimit"):
        if unsupported in o:
            raise not_emulated("qm clone --%s" % unsupported)
    if "pool" in o and o["pool"] not in CFG.get("pools", []):
        # pve-access-control: src/PVE/RPCEnvironment.pm (check_pool_exist)
        raise Exc("Permission check failed (pool '%s' does not exist)\n" % o["pool"], 403)
    storage = o.get("storage")
    if storage:
        scfg = storage_config(storage)
        if "images" not in scfg.get("content", []):
            raise param_exc({"storage": "storage '%s' does not support vm images" % storage}, u("clone"))
    c = Conf(vmid)
    conf = c.main
    full = o["full"] == "1" if "full" in o else conf.get("template") != "1"
    if storage and not full:
        raise Fail("parameter 'storage' not allowed for linked clones")
    if "format" in o and not full:
        raise Fail("parameter 'format' not allowed for linked clones")
    if os.path.exists(conf_path(newid)):
        raise Fail("unable to create VM %s: config file already exists" % newid)
    new, clones = {}, []
    skip = {"snapshots", "parent", "snaptime", "vmstate", "snapstate", "runningcpu", "runningmachine", "running-nets-host-mtu", "template", "lock"}
    for opt in sorted(conf):
        value = conf[opt]
        if opt in skip or re.match(r"^unused\d+$", opt):
            continue
        if re.match(r"^net\d+$", opt):  # "always change MAC! address"
            net = net_of(value)
            net["macaddr"] = random_mac()
            new[opt] = print_net(net)
        elif opt in DRIVE_NAMES:
            drive = drive_of(value)
            if not drive.get("file"):
                raise Fail("unable to parse drive options for '%s'" % opt)
            if drive_is_cdrom(drive, True) or drive.get("file") == "none":
                new[opt] = value
                continue
            volid = drive["file"]
            copy = full or drive_is_cloudinit(drive) or opt == "tpmstate0"
            if not volume_has_feature("copy" if copy else "clone", volid):
                raise Fail("%s clone feature is not supported for '%s' (%s)" % ("Full" if copy else "Linked", volid, opt))
            clones.append((opt, drive, copy))
        else:
            new[opt] = value
    print("creating a clone of VM %s with ID %s" % (vmid, newid))
    other = cluster_ids().get(newid)
    if other and not (other.get("node") == NODE and other.get("type", "qemu") == "qemu"):
        # pmxcfs refuses a VM config whose id the cluster already has elsewhere
        # (pve-cluster: src/pmxcfs/memdb.c; pve-common: src/PVE/File.pm (file_set_contents)).
        raise task_fail("clone failed: close (rename) atomic file '/etc/pve/nodes/%s/qemu-server/%s.conf' failed: File exists" % (NODE, newid))
    for opt, drive, copy in clones:
        print("create %s clone of drive %s (%s)" % ("full" if copy else "linked", opt, drive["file"]))
        drive = dict(drive)
        drive["file"] = clone_volume(drive["file"], newid, opt, copy, storage if copy and not drive_is_cloudinit(drive) else None, o.get("format"))
        new[opt] = ",".join([drive.pop("file")] + ["%s=%s" % (k, drive[k]) for k in sorted(drive)])
    new["name"] = o.get("name") or "Copy-of-VM-%s" % conf.get("name", vmid)
    if o.get("description"):
        new["description"] = o["description"]
    uuid = "%08x-%04x-%04x-%04x-%012x" % tuple(int.from_bytes(secrets.token_bytes(n), "big") for n in (4, 2, 2, 2, 6))
    new["smbios1"] = "uuid=%s" % uuid
    if "vmgenid" in new:
        new["vmgenid"] = "%08x-%04x-%04x-%04x-%012x" % tuple(int.from_bytes(secrets.token_bytes(n), "big") for n in (4, 2, 2, 2, 6))
    open(conf_path(newid), "w").close()
    nc = Conf(newid)
    nc.main = new
    nc.save()


def qm_set(argv):
    # qemu-server: src/PVE/API2/Qemu.pm ($update_vm_api): every change goes to [PENDING];
    # a stopped VM applies them all; a running one hot-plugs what it can
    # (src/PVE/QemuServer.pm (vmconfig_hotplug_pending)).
    o = get_options(argv, SET_OPTS, [("vmid", VMID)], u("set"), fixed=SET_NOT_EMULATED)
    vmid = o.pop("vmid")
    digest = o.pop("digest", None)
    if not o:
        raise Fail("no options specified")
    c = Conf(vmid)
    if digest and digest != hashlib.sha1(open(conf_path(vmid), "rb").read()).hexdigest():
        raise Fail("detected modified configuration - file changed by other user? Try again.")
    for k, v in o.items():
        if re.match(r"^ide\d$", k):
            drive = prop(DRIVE, v)
            if drive.get("media") != "cdrom":
                raise not_emulated("qm set --%s without media=cdrom" % k)
            if drive["file"] not in ("none", "cdrom") and not drive_is_cloudinit(drive):
                sid, volname = split_volid(drive["file"])
                vtype = parse_volname(storage_config(sid), volname)[0]
                if vtype != "iso":  # qemu-server: src/PVE/API2/Qemu.pm (check_storage_access)
                    raise Fail("unable to use volume %s - content type needs to be 'iso'" % drive["file"])
        if re.match(r"^net\d+$", k):
            net = prop(NET, v)
            if "macaddr" not in net:  # Network.pm (add_random_macs)
                net["macaddr"] = random_mac()
                v = print_net(net)
        c.pending[k] = v
    # cleanup_pending: values equal to the current ones are no change
    for k in list(c.pending):
        if c.main.get(k) == c.pending[k]:
            del c.pending[k]
    if not running(vmid):
        for k in list(c.pending):
            c.main[k] = c.pending.pop(k)
        c.save()
        return
    for k in list(c.pending):
        new, old = c.pending[k], c.main.get(k)
        live = k in FAST_PLUG or re.match(r"^net\d+$", k)  # network is in the default hotplug
        if re.match(r"^ide\d$", k) and old is not None:
            o_drive, n_drive = drive_of(old), drive_of(new)
            if (o_drive.get("media") or "disk") != (n_drive.get("media") or "disk"):
                c.save()  # the change stays [PENDING], as real does
                raise param_exc({k: "hotplug problem - unable to change media type\n"}, u("set"))
            live = drive_is_cdrom(o_drive)  # a cdrom's medium changes live (vmconfig_update_disk)
        if live:
            record_cloudinit_change(c, k, old, new)
            c.main[k] = c.pending.pop(k)
        # agent, cores, memory, a new ide drive: stay [PENDING] until the next start
    c.save()


def qm_cloudinit_update(argv):
    # qemu-server: src/PVE/API2/Qemu.pm (cloudinit_update) -> QemuServer.pm
    # (vmconfig_update_cloudinit_drive): regenerate from the current config; no drive, no-op.
    o = get_options(argv, {}, [("vmid", VMID)], u("cloudinit update"))
    if "cloudinit" in CFG.get("fail", []):
        # A simulated storage failure (the test asks for it), as a plain die.
        raise Fail("can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout")
    apply_cloudinit(Conf(o["vmid"]))


def parse_size(s):
    m = re.match(r"^(\d+(?:\.\d+)?)([KMGT])?$", s)
    if not m:
        return None
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2) or " "))


def format_size(n):  # pve-common: src/PVE/Tools.pm (format_size)
    for unit, exp in (("T", 4), ("G", 3), ("M", 2), ("K", 1)):
        if n % (1024 ** exp) == 0:
            return "%d%s" % (n // 1024 ** exp, unit)
    return str(n)


def qm_resize(argv):
    # qemu-server: src/PVE/API2/Qemu.pm (resize_vm)
    args = [("vmid", VMID), ("disk", {"enum": DRIVE_NAMES}), ("size", {"pattern": r"\+?\d+(\.\d+)?[KMGT]?"})]
    o = get_options(argv, {"skiplock": BOOL, "digest": OPT}, args, u("resize"))
    c = Conf(o["vmid"])
    disk = o["disk"]
    if disk not in c.main:
        raise Fail("disk '%s' does not exist" % disk)
    drive = drive_of(c.main[disk])
    if not drive.get("file") or drive["file"] == "none":
        raise Fail("disk '%s' has no associated volume" % disk)
    if drive_is_cdrom(drive):
        raise Fail("you can't resize a cdrom")
    size = parse_size(drive.get("size", "")) if drive.get("size") else None
    if size is None:
        raise Fail("Could not determine current size of volume '%s'" % drive["file"])
    grow, new = o["size"].startswith("+"), parse_size(o["size"].lstrip("+"))
    new = int(new + size if grow else new)
    if new < size:
        raise Fail("shrinking disks is not supported")
    if new == size:
        return
    parts = [p for p in c.main[disk].split(",") if not p.startswith("size=")]
    c.main[disk] = ",".join(parts + ["size=%s" % format_size(new)])
    c.save()


def check_bridges(conf):
    # pve-common: src/PVE/Network.pm (read_bridge_mtu), called for virtio NICs by
    # qemu-server: src/PVE/QemuServer.pm (print_netdevice_full); others fail in tap_plug.
    for k in sorted(k for k in conf if re.match(r"^net\d+$", k)):
        net = net_of(conf[k])
        bridge = net.get("bridge")
        if bridge and not os.path.isdir("/sys/class/net/%s" % bridge):
            raise task_fail("bridge '%s' does not exist" % bridge)


def start(vmid):
    """vm_start (qemu-server: src/PVE/QemuServer.pm (vm_start_nolock)): apply [PENDING],
    regenerate the cloud-init drive, build the command line (bridges), start QEMU."""
    c = Conf(vmid)
    if c.main.get("template") == "1":
        raise task_fail("you can't start a vm if it's a template")
    if running(vmid):
        raise task_fail("VM %s already running" % vmid)
    if c.pending:
        for k in list(c.pending):
            c.main[k] = c.pending.pop(k)
        c.save()
    try:
        apply_cloudinit(c)
    except Fail as e:
        raise task_fail(e.msg)
    check_bridges(c.main)
    if "start" in CFG.get("fail", []):
        raise task_fail("start failed: QEMU exited with code 1")
    agent = prop(AGENT, c.main.get("agent")).get("enabled") == "1"
    with open(marker(vmid, "running"), "w") as f:
        f.write("agent\n" if agent else "no-agent\n")
    log = open(marker(vmid, "boot.log"), "w")
    p = subprocess.Popen([sys.executable, SCRIPT, "__boot", vmid], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    with open(marker(vmid, "boot.pid"), "w") as f:
        f.write("%d\n" % p.pid)


def qm_start(argv):
    o = get_options(argv, {"skiplock": BOOL, "timeout": {"type": "integer", "min": 0, **OPT}}, [("vmid", VMID)], u("start"))
    start(o["vmid"])


def alive(pid):
    try:
        stat = open("/proc/%d/stat" % pid).read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def halt(vmid):
    """Ends the VM: its boot process group and its sshd (by the pids recorded)."""
    pids = []
    for name in ("boot.pid", "sshd.pid"):
        p = marker(vmid, name)
        if os.path.exists(p):
            try:
                pids.append((name, int(open(p).read().strip())))
            except ValueError:
                pass
            os.remove(p)
    for name, pid in pids:
        try:
            if name == "boot.pid":
                os.killpg(pid, signal.SIGTERM)
            else:
                os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.time() + 10
    while any(alive(pid) for _, pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    for name in ("running", "agent", "agent-polls"):
        if os.path.exists(marker(vmid, name)):
            os.remove(marker(vmid, name))


def qm_stop(argv):
    # A stopped VM stops silently (qemu-server: src/PVE/API2/Qemu.pm (vm_stop)).
    o = get_options(argv, {"skiplock": BOOL, "keepActive": BOOL, "timeout": {"type": "integer", "min": 0, **OPT}, "overrule-shutdown": BOOL}, [("vmid", VMID)], u("stop"))
    Conf(o["vmid"])
    halt(o["vmid"])


def qm_reboot(argv):
    # qemu-server: src/PVE/API2/Qemu.pm (vm_reboot): "VM N not running"; a reboot is a
    # shutdown and a fresh start (pending applied, cloud-init drive regenerated).
    o = get_options(argv, {"timeout": {"type": "integer", "min": 0, **OPT}}, [("vmid", VMID)], u("reboot"))
    Conf(o["vmid"])
    if not running(o["vmid"]):
        raise Fail("VM %s not running" % o["vmid"])
    halt(o["vmid"])
    start(o["vmid"])


def qm_destroy(argv):
    # qemu-server: src/PVE/API2/Qemu.pm (destroy_vm)
    o = get_options(argv, {"purge": BOOL, "skiplock": BOOL, "destroy-unreferenced-disks": BOOL}, [("vmid", VMID)], u("destroy"))
    vmid = o["vmid"]
    c = Conf(vmid)
    if running(vmid):
        raise Fail("VM %s is running - destroy failed" % vmid)
    if os.path.isdir(IMAGES):  # its volumes go with it, the cloud-init one included
        for sid in os.listdir(IMAGES):
            shutil.rmtree(os.path.join(IMAGES, sid, vmid), ignore_errors=True)
    for name in os.listdir(VMS):
        if name.split(".")[0] == vmid:
            os.remove(os.path.join(VMS, name))


def interfaces(vmid, state, noip):
    """`network-get-interfaces` as `qm guest cmd` prints it (qemu-server: src/PVE/CLI/qm.pm
    ($print_agent_result): Perl JSON pretty + canonical: 3 spaces, " : ")."""
    mac = state["mac"].lower()
    b = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([b[0] ^ 2]) + b[1:3] + b"\xff\xfe" + b[3:]
    ll = str(ipaddress.IPv6Address(b"\xfe\x80" + b"\x00" * 6 + eui))
    lo = {"hardware-address": "00:00:00:00:00:00", "name": "lo", "ip-addresses": [
        {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
        {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}]}
    addrs = []
    if not noip:
        if state.get("v4"):
            addrs.append({"ip-address": state["v4"], "ip-address-type": "ipv4", "prefix": state["v4_prefix"]})
        if state.get("v6"):
            addrs.append({"ip-address": state["v6"], "ip-address-type": "ipv6", "prefix": state["v6_prefix"]})
    addrs.append({"ip-address": ll, "ip-address-type": "ipv6", "prefix": 64})
    eth = {"hardware-address": mac, "name": "eth0", "ip-addresses": addrs}
    return json.dumps([lo, eth], indent=3, separators=(",", " : "), sort_keys=True)


def qm_guest_cmd(argv):
    # qemu-server: src/PVE/QemuServer/Agent.pm (assert_agent_available)
    o = get_options(argv, {}, [("vmid", VMID), ("command", {})], u("guest cmd"))
    vmid = o["vmid"]
    if o["command"] != "network-get-interfaces":
        raise not_emulated("qm guest cmd %s %s" % (vmid, o["command"]))
    c = Conf(vmid)
    if "agent" not in c.main:
        raise Fail("No QEMU guest agent configured")
    if not running(vmid):
        raise Fail("VM %s is not running" % vmid)
    started_with_agent = open(marker(vmid, "running")).read().strip() == "agent"
    if not started_with_agent or not os.path.exists(marker(vmid, "agent")):
        raise Fail("QEMU guest agent is not running")
    state = json.load(open(marker(vmid, "agent")))
    polls_file = marker(vmid, "agent-polls")
    polls = int(open(polls_file).read()) if os.path.exists(polls_file) else 0
    with open(polls_file, "w") as f:
        f.write("%d\n" % (polls + 1))
    print(interfaces(vmid, state, polls < int(CFG.get("agent_noip_polls", 2))))


def qm(argv):
    subs = {"status": qm_status, "config": qm_config, "clone": qm_clone, "set": qm_set, "start": qm_start, "stop": qm_stop, "reboot": qm_reboot, "destroy": qm_destroy, "resize": qm_resize}
    if argv[:2] == ["disk", "resize"]:
        return qm_resize(argv[2:])
    if argv[:2] == ["cloudinit", "update"]:
        return qm_cloudinit_update(argv[2:])
    if argv[:2] == ["guest", "cmd"]:
        return qm_guest_cmd(argv[2:])
    if argv and argv[0] in subs:
        return subs[argv[0]](argv[1:])
    raise not_emulated("qm %s" % " ".join(argv))


# ---------------------------------------------------------------------------------------
# The boot (background): seed, cloud-init, sshd, agent.


def vm_addresses(conf):
    """The addresses the VM ends up with: ip=dhcp (or nothing set) -> the lease; static
    `ip=A/P` -> A; static `ip6=A/P` -> A; dhcp6/auto/manual give no address here."""
    ipc = prop(IPCONFIG, conf.get("ipconfig0"))
    if not ipc.get("ip") and not ipc.get("ip6"):
        ipc = {"ip": "dhcp"}
    out = {}
    ip, ip6 = ipc.get("ip"), ipc.get("ip6")
    if ip == "dhcp":
        out["v4"], out["v4_prefix"] = CFG["lease"], 24
    elif ip and ip != "manual":
        out["v4"], out["v4_prefix"] = ip.split("/")[0], int(ip.split("/")[1])
    if ip6 and ip6 not in ("dhcp", "auto", "manual"):
        out["v6"], out["v6_prefix"] = ip6.split("/")[0], int(ip6.split("/")[1])
    return out


def seed_iso(vmid, conf):
    """The VM's seed: its cloud-init drive's ISO, else an ISO on a cdrom drive."""
    isos = []
    for _, drive in drives(conf):
        if not drive_is_cdrom(drive) or drive.get("file") in (None, "none", "cdrom"):
            continue
        if drive_is_cloudinit(drive):
            return cloudinit_iso(vmid, drive)
        isos.append(volume_path(drive["file"]))
    return isos[0] if isos else None


def own_key(root):
    key = os.path.join(root, "etc/ssh/ssh_host_ed25519_key")
    for p in (key, key + ".pub"):
        if os.path.exists(p):
            os.remove(p)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@template", "-f", key], check=True)


def boot(vmid):
    conf, root = Conf(vmid).main, CFG["root"]
    addrs = vm_addresses(conf)
    iso = seed_iso(vmid, conf)
    if CFG.get("boot", "seed") == "seed" and iso:
        seed = os.path.join(root, "var/lib/cloud/seed/nocloud")
        shutil.rmtree(seed, ignore_errors=True)  # the previous boot's seed must not linger
        os.makedirs(seed, mode=0o700)
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", seed], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["chmod", "-R", "u+w,go-rwx", seed], check=True)
        # The four stages, as a machine boots (cloud-init 25 reads a NoCloud seed directory
        # only in the local stage); a stage that fails in a chroot for reasons of its own
        # (locale, say) does not stop the boot.
        for stage in (["init", "--local"], ["init"], ["modules", "--mode", "config"], ["modules", "--mode", "final"]):
            subprocess.run(["chroot", root, "cloud-init"] + stage, stdin=subprocess.DEVNULL)
    else:
        # No seed (or a template that makes its own key): cloud-init finds no datasource.
        own_key(root)
    listen = addrs.get("v4") or addrs.get("v6")
    mac = net_of(conf.get("net0")).get("macaddr") or "BC:24:11:00:00:00"
    state = dict(addrs, mac=mac)
    if listen:
        os.makedirs(os.path.join(root, "run/sshd"), exist_ok=True)
        # `chroot` execs sshd, so this pid is sshd's: `qm stop` and the test harness end it.
        sshd = subprocess.Popen(["chroot", root, "/usr/sbin/sshd", "-D", "-e", "-p", "22", "-o", "ListenAddress=" + listen], stdin=subprocess.DEVNULL)
        with open(marker(vmid, "sshd.pid"), "w") as f:
            f.write("%d\n" % sshd.pid)
        for _ in range(200):
            try:
                socket.create_connection((listen, 22), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
    with open(marker(vmid, "agent"), "w") as f:
        json.dump(state, f)


# ---------------------------------------------------------------------------------------
# pvesm, pvesh


def pvesm(argv):
    # pve-storage: src/PVE/CLI/pvesm.pm (path): content and existence are not checked.
    if argv[:1] == ["path"]:
        o = get_options(argv[1:], {}, [("volume", {"format": f_volume_id})], "pvesm path <volume>")
        print(volume_path(o["volume"]))
        return
    raise not_emulated("pvesm %s" % " ".join(argv))


FORMAT_OPTS = {"output-format": {"enum": ["text", "json", "json-pretty", "yaml"], **OPT}, "noborder": BOOL, "noheader": BOOL, "human-readable": BOOL, "quiet": BOOL}
PVESH_USAGE = "pvesh get <api_path> [OPTIONS] [FORMAT_OPTIONS]"


def print_result(data, o, what):
    # pve-common: src/PVE/CLIFormatter.pm (print_api_result)
    fmt = o.get("output-format", "text")
    if fmt == "json":
        print(json.dumps(data, sort_keys=True, separators=(",", ":")))
    elif fmt == "json-pretty":
        print(json.dumps(data, sort_keys=True, indent=3, separators=(",", " : ")))
    elif fmt == "text" and not isinstance(data, (dict, list)):
        print(data)
    else:
        raise not_emulated("pvesh get %s --output-format %s" % (what, fmt))


def check_node(node):
    # pvesh proxies /nodes/NODE/... to NODE (pve-manager: PVE/CLI/pvesh.pm (check_proxyto));
    # a name that is no cluster node fails the address lookup (pve-common: src/PVE/Network.pm).
    if node != NODE and node not in {d.get("node") for d in CFG.get("cluster", {}).values()}:
        raise Fail("hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known" % (node, node))
    if node != NODE:
        raise not_emulated("pvesh get on another node (%s)" % node)


def nextid(o):
    # pve-manager: PVE/API2/Cluster.pm (nextid): the cluster-wide vmlist, VMs and CTs
    ids = cluster_ids()
    if "vmid" in o:
        if o["vmid"] in ids:
            raise param_exc({"vmid": "VM %s already exists" % o["vmid"]}, PVESH_USAGE)
        return o["vmid"]  # the parameter itself: a string, printed "283" in JSON
    free = next((i for i in range(100, 1000000) if str(i) not in ids), None)
    if free is None:
        raise Fail("unable to get any free VMID in range [100, 1000000]")
    done = os.path.join(STATE, "race-done")
    if CFG.get("race") and not os.path.exists(done):
        extra = os.path.join(STATE, "cluster-extra.json")
        taken = json.load(open(extra)) if os.path.exists(extra) else {}
        taken[str(free)] = {"type": "qemu", "node": "pve2"}
        with open(extra, "w") as f:
            json.dump(taken, f)
        open(done, "w").close()
    # Perl used $i as a hash key, so JSON::XS prints it as a string: "100", not 100.
    return str(free)


def storage_index():
    # pve-storage: src/PVE/API2/Storage/Status.pm (index), src/PVE/Storage.pm (storage_info)
    out = []
    for sid, s in sorted(storages().items()):
        total, used = 100 * 1024 ** 3, 10 * 1024 ** 3
        out.append({"storage": sid, "type": s["type"], "content": ",".join(sorted(s.get("content", []))), "shared": 1 if s.get("shared") else 0, "active": 1, "enabled": 1, "total": total, "used": used, "avail": total - used, "used_fraction": used / total})
    return out


def feature(vmid, o):
    # qemu-server: src/PVE/API2/Qemu.pm (vm_feature), src/PVE/QemuServer.pm (shared_nodes)
    conf = Conf(vmid).main
    nodes = {NODE} | {d["node"] for d in CFG.get("cluster", {}).values() if d.get("node")}
    for _, drive in drives(conf):
        sid = drive.get("file", "").split(":")[0]
        if sid in storages() and not storages()[sid].get("shared"):
            nodes = {NODE}
    return {"hasFeature": 1 if has_feature(o["feature"], conf) else 0, "nodes": sorted(nodes)}


def pvesh(argv):
    if argv[:1] != ["get"] or len(argv) < 2:
        raise not_emulated("pvesh %s" % " ".join(argv))
    path = argv[1].rstrip("/")
    rest = argv[2:]
    if path == "/cluster/nextid":
        o = get_options(rest, dict(FORMAT_OPTS, vmid={**VMID, "optional": True}), [], PVESH_USAGE)
        return print_result(nextid(o), o, path)
    m = re.match(r"^/nodes/([^/]+)/storage$", path)
    if m:
        o = get_options(rest, dict(FORMAT_OPTS), [], PVESH_USAGE)
        check_node(m.group(1))
        return print_result(storage_index(), o, path)
    m = re.match(r"^/nodes/([^/]+)/qemu/([^/]+)/feature$", path)
    if m:
        spec = dict(FORMAT_OPTS, feature={"enum": ["snapshot", "clone", "copy"]}, snapname=OPT)
        o = get_options(rest, spec, [], PVESH_USAGE)
        if "feature" not in o:
            raise param_exc({"feature": "property is missing and it is not optional"}, PVESH_USAGE)
        errors = {}
        check_prop(m.group(2), VMID, "vmid", errors)
        if errors:
            raise param_exc(errors, PVESH_USAGE)
        check_node(m.group(1))
        if "snapname" in o:
            raise not_emulated("pvesh get %s --snapname" % path)
        return print_result(feature(m.group(2), o), o, path)
    raise not_emulated("pvesh get %s" % argv[1])


def main():
    prog, argv = os.path.basename(sys.argv[0]), sys.argv[1:]
    if argv[:1] == ["__boot"]:
        return boot(argv[1])
    with open(os.path.join(STATE, "qm.log"), "a") as log:
        log.write(json.dumps([prog] + argv) + "\n")
    try:
        {"pvesm": pvesm, "pvesh": pvesh}.get(prog, qm)(argv)
    except Fail as e:
        sys.stdout.flush()
        sys.stderr.write(e.text())
        sys.exit(e.code)


if __name__ == "__main__":
    main()
