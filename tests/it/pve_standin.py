#!/usr/bin/env python3
# STAND-IN for Proxmox VE's `qm` and `pvesm`, for hostsmith's tests. NOT Proxmox.
#
# Proxmox cannot run in the test environment, so `deploy-image` is tested against a real
# sshd whose PATH starts with this script (installed as `qm`, and as `pvesm` by symlink).
# What it does:
# - records every argument vector, as one JSON array per line, in STATE/qm.log (the tests
#   assert that log equals the command lines real Proxmox would receive);
# - emulates `qm status|config|clone|set|start|stop|destroy`, `qm guest cmd N
#   network-get-interfaces` (JSON as Proxmox prints it) and `pvesm path`, with VM configs in
#   STATE/vms/N.conf and error messages and exit codes like Proxmox's;
# - `qm start` "boots" the VM: in the background, it puts the user-data the VM's `cicustom`
#   (or its seed image on ide2) names into the NoCloud seed of a debootstrap Debian root,
#   runs that root's real cloud-init, and starts the root's real sshd on port 22 of the
#   VM's address. Once sshd runs, the "guest agent" answers.
#   Not emulated: Proxmox's network-config from --ipconfig0 (the namespace the tests run in
#   has only loopback; the VM's address is put on `lo` by the test).
#
# STATE is the directory above this script's bin/. STATE/standin.json configures it:
#   node     the node name used in messages
#   root     the debootstrap root to boot
#   lease    the IPv4 address "DHCP" gives the VM
#   boot     "seed" (apply the seed) or "own-key" (ignore the seed and serve a freshly made
#            key, like a template that generates its own before cloud-init runs)
#   fail     subcommands that fail as if QEMU could not start ("start")
#   storages extra storage ids and their directories, for `pvesm path`
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import hashlib

SCRIPT = os.path.realpath(__file__)
STATE = os.path.dirname(os.path.dirname(SCRIPT))
VMS = os.path.join(STATE, "vms")
CFG = json.load(open(os.path.join(STATE, "standin.json")))
NODE = CFG.get("node", "pve-standin")


def die(msg, code=255):
    sys.stderr.write(msg + "\n")
    sys.exit(code)


def conf_path(vmid):
    return os.path.join(VMS, "%s.conf" % vmid)


def load(vmid):
    p = conf_path(vmid)
    if not os.path.exists(p):
        die("Configuration file 'nodes/%s/qemu-server/%s.conf' does not exist" % (NODE, vmid), 2)
    pairs = []
    for line in open(p).read().splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            pairs.append([k, v])
    return pairs


def save(vmid, pairs):
    tmp = conf_path(vmid) + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join("%s: %s\n" % (k, v) for k, v in pairs))
    os.rename(tmp, conf_path(vmid))


def get(pairs, key):
    return next((v for k, v in pairs if k == key), None)


def put(pairs, key, value):
    for p in pairs:
        if p[0] == key:
            p[1] = value
            return
    pairs.append([key, value])


def marker(vmid, name):
    return os.path.join(VMS, "%s.%s" % (vmid, name))


def volume_path(volume):
    """STORAGE:CONTENT/FILE -> a path, as `pvesm path` resolves it."""
    storage, rest = volume.split(":", 1)
    content, name = rest.split("/", 1)
    if storage == "local":
        base = "/var/lib/vz"
        sub = {"snippets": "snippets", "iso": "template/iso"}.get(content)
    else:
        base = CFG.get("storages", {}).get(storage)
        sub = content
    if base is None or sub is None or "/" in name:
        die("storage '%s' does not exist" % storage)
    return os.path.join(base, sub, name)


def options(argv):
    """`--key value` pairs (a bare `--full` is `1`)."""
    out, i = [], 0
    while i < len(argv):
        key = argv[i]
        if not key.startswith("--"):
            die("400 unable to parse option\n%s" % key)
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out.append((key[2:], argv[i + 1]))
            i += 2
        else:
            out.append((key[2:], "1"))
            i += 1
    return out


def qm(argv):
    sub, rest = argv[0], argv[1:]
    if sub == "status":
        load(rest[0])
        running = os.path.exists(marker(rest[0], "running"))
        print("status: %s" % ("running" if running else "stopped"))
    elif sub == "config":
        for k, v in load(rest[0]):
            print("%s: %s" % (k, v))
    elif sub == "clone":
        template, new = rest[0], rest[1]
        pairs = load(template)
        if os.path.exists(conf_path(new)):
            die("unable to create VM %s: config file already exists" % new)
        opts = dict(options(rest[2:]))
        if get(pairs, "template") != "1" and opts.get("full") != "1":
            die("parameter verification failed. (400)\nfull: must be set when cloning a VM that is not a template")
        pairs = [p for p in pairs if p[0] != "template"]
        put(pairs, "name", opts.get("name", "Copy-of-VM-" + template))
        print("create %s clone of drive scsi0 (local-lvm:base-%s-disk-0)" % ("full" if "full" in opts else "linked", template))
        save(new, pairs)
    elif sub == "set":
        pairs = load(rest[0])
        for k, v in options(rest[1:]):
            if k == "delete":
                die("the stand-in does not emulate --delete")
            put(pairs, k, v)
        save(rest[0], pairs)
    elif sub == "start":
        load(rest[0])
        if os.path.exists(marker(rest[0], "running")):
            die("VM %s already running" % rest[0])
        if "start" in CFG.get("fail", []):
            die("start failed: QEMU exited with code 1")
        open(marker(rest[0], "running"), "w").close()
        log = open(marker(rest[0], "boot.log"), "w")
        subprocess.Popen([sys.executable, SCRIPT, "__boot", rest[0]], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    elif sub == "stop":
        load(rest[0])
        halt(rest[0])
    elif sub == "destroy":
        load(rest[0])
        if os.path.exists(marker(rest[0], "running")):
            die("VM %s is running - destroy failed" % rest[0])
        for name in os.listdir(VMS):
            if name.split(".")[0] == rest[0]:
                os.remove(os.path.join(VMS, name))
    elif sub == "guest" and rest[0] == "cmd" and rest[2:] == ["network-get-interfaces"]:
        load(rest[1])
        if not os.path.exists(marker(rest[1], "agent")):
            die("QEMU guest agent is not running")
        print(interfaces(open(marker(rest[1], "agent")).read().strip()))
    else:
        die("the stand-in does not emulate `qm %s`" % " ".join(argv))


def interfaces(ip):
    """`network-get-interfaces` as `qm guest cmd` prints it (Perl JSON, pretty, canonical)."""
    lo = {"hardware-address": "00:00:00:00:00:00", "name": "lo", "ip-addresses": [
        {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
        {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}]}
    eth = {"hardware-address": "bc:24:11:5e:4a:01", "name": "eth0", "ip-addresses": [
        {"ip-address": "fe80::be24:11ff:fe5e:4a01", "ip-address-type": "ipv6", "prefix": 64},
        {"ip-address": ip, "ip-address-type": "ipv4", "prefix": 24}]}
    return json.dumps([lo, eth], indent=3, separators=(",", " : "), sort_keys=True)


def halt(vmid):
    pid = marker(vmid, "sshd.pid")
    if os.path.exists(pid):
        try:
            os.kill(int(open(pid).read().strip()), 15)
        except (ValueError, ProcessLookupError):
            pass
        os.remove(pid)
    for name in ("running", "agent"):
        if os.path.exists(marker(vmid, name)):
            os.remove(marker(vmid, name))


def boot(vmid):
    pairs, root = load(vmid), CFG["root"]
    ipconfig = dict(kv.split("=", 1) for kv in (get(pairs, "ipconfig0") or "ip=dhcp").split(","))
    ip = CFG["lease"] if ipconfig.get("ip", "dhcp") == "dhcp" else ipconfig["ip"].split("/")[0]
    if CFG.get("boot", "seed") == "seed":
        seed = os.path.join(root, "var/lib/cloud/seed/nocloud")
        os.makedirs(seed, exist_ok=True)
        cicustom = dict(kv.split("=", 1) for kv in (get(pairs, "cicustom") or "").split(",") if kv)
        if "user" in cicustom:
            shutil.copyfile(volume_path(cicustom["user"]), os.path.join(seed, "user-data"))
            # Proxmox's meta-data: an instance id derived from the cloud-init settings.
            digest = hashlib.sha1(repr(sorted(pairs)).encode()).hexdigest()
            open(os.path.join(seed, "meta-data"), "w").write("instance-id: %s\n" % digest)
        elif (get(pairs, "ide2") or "").endswith(",media=cdrom"):
            iso = volume_path(get(pairs, "ide2").split(",")[0])
            subprocess.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", seed], check=True)
            subprocess.run(["chmod", "-R", "u+w", seed], check=True)
        # The four stages, as a machine boots (cloud-init 25 reads a NoCloud seed
        # directory only in the local stage); a stage that fails in a chroot for reasons of
        # its own (locale, say) does not stop the boot.
        for stage in ("init --local", "init", "modules --mode config", "modules --mode final"):
            subprocess.run("chroot %s cloud-init %s" % (root, stage), shell=True)
    else:
        key = os.path.join(root, "etc/ssh/ssh_host_ed25519_key")
        for p in (key, key + ".pub"):
            if os.path.exists(p):
                os.remove(p)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@template", "-f", key], check=True)
    os.makedirs(os.path.join(root, "run/sshd"), exist_ok=True)
    # `chroot` execs sshd, so this pid is sshd's: `qm stop` and the test harness end it.
    sshd = subprocess.Popen(["chroot", root, "/usr/sbin/sshd", "-D", "-e", "-p", "22", "-o", "ListenAddress=" + ip], stdin=subprocess.DEVNULL)
    open(marker(vmid, "sshd.pid"), "w").write("%d\n" % sshd.pid)
    for _ in range(200):
        try:
            socket.create_connection((ip, 22), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    open(marker(vmid, "agent"), "w").write(ip + "\n")


def pvesm(argv):
    if argv[:1] == ["path"] and len(argv) == 2:
        print(volume_path(argv[1]))
    else:
        die("the stand-in does not emulate `pvesm %s`" % " ".join(argv))


def main():
    prog, argv = os.path.basename(sys.argv[0]), sys.argv[1:]
    if argv[:1] == ["__boot"]:
        return boot(argv[1])
    with open(os.path.join(STATE, "qm.log"), "a") as log:
        log.write(json.dumps([prog] + argv) + "\n")
    if prog == "pvesm":
        pvesm(argv)
    else:
        qm(argv)


if __name__ == "__main__":
    main()
