#!/usr/bin/env python3
"""A FUSE file system for the fault tests: it passes a backing directory through, and every
write to a file in a directory named FAIL_DIR fails with EIO, as a failing disk would. A
FAIL_DIR of `content:TEXT` instead fails every write whose data holds TEXT (a kind of file,
wherever it is written: a run may stage it in another directory before naming it).

It speaks the kernel's FUSE protocol on /dev/fuse directly (no libfuse binding), serving one
request at a time: only what hostsmith's runs ask for is implemented; anything else answers
ENOSYS. O_TMPFILE is one of those (the kernel then reports EOPNOTSUPP), so the runs use their
named-staging fallback here.

Usage: fuse_eio.py BACKING MOUNTPOINT FAIL_DIR
"""

import errno
import os
import stat
import struct
import subprocess
import sys

IN_HDR = struct.Struct("<IIQQIIIHH")
OUT_HDR = struct.Struct("<IiQ")
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")

LOOKUP, FORGET, GETATTR, SETATTR = 1, 2, 3, 4
MKDIR, UNLINK, RMDIR, RENAME, LINK, OPEN, READ, WRITE, STATFS, RELEASE = 9, 10, 11, 12, 13, 14, 15, 16, 17, 18
FSYNC, FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, FSYNCDIR = 20, 25, 26, 27, 28, 29, 30
ACCESS, CREATE, INTERRUPT, DESTROY, BATCH_FORGET, RENAME2 = 34, 35, 36, 38, 42, 45


class Fs:
    def __init__(self, backing, fail_dir):
        self.backing = backing
        self.fail_dir = fail_dir
        self.paths = {1: ""}
        self.ids = {"": 1}
        self.next_id = 2
        self.handles = {}
        self.next_fh = 1

    def real(self, rel):
        return os.path.join(self.backing, rel) if rel else self.backing

    def node(self, rel):
        if rel not in self.ids:
            self.ids[rel] = self.next_id
            self.paths[self.next_id] = rel
            self.next_id += 1
        return self.ids[rel]

    def attr(self, rel):
        st = os.lstat(self.real(rel))
        return ATTR.pack(self.node(rel), st.st_size, st.st_blocks, int(st.st_atime), int(st.st_mtime), int(st.st_ctime),
                         0, 0, 0, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, 0, 4096, 0)

    def entry(self, rel):
        return struct.pack("<QQQQII", self.node(rel), 0, 0, 0, 0, 0) + self.attr(rel)

    def child(self, nodeid, name):
        parent = self.paths[nodeid]
        return os.path.join(parent, name) if parent else name

    def moved(self, old, new):
        for rel in [p for p in self.ids if p == old or p.startswith(old + "/")]:
            nid = self.ids.pop(rel)
            moved = new + rel[len(old):]
            self.ids.pop(moved, None)
            self.ids[moved] = nid
            self.paths[nid] = moved

    def handle(self, op, nodeid, body):
        names = lambda b: [n.decode() for n in b.split(b"\0")[:-1]]
        if op == INIT:
            return struct.pack("<IIIIHHIIHHI", 7, 31, 0, 0, 16, 12, 1 << 17, 1, 32, 0, 0) + b"\0" * 28
        if op == LOOKUP:
            return self.entry(self.child(nodeid, names(body)[0]))
        if op == GETATTR:
            return struct.pack("<QII", 0, 0, 0) + self.attr(self.paths[nodeid])
        if op == SETATTR:
            valid, _, fh, size = struct.unpack_from("<IIQQ", body)
            mode = struct.unpack_from("<I", body, 68)[0]
            real = self.real(self.paths[nodeid])
            if valid & (1 << 0):
                os.chmod(real, stat.S_IMODE(mode))
            if valid & (1 << 3):
                os.truncate(real, size)
            return struct.pack("<QII", 0, 0, 0) + self.attr(self.paths[nodeid])
        if op == MKDIR:
            mode, _ = struct.unpack_from("<II", body)
            rel = self.child(nodeid, names(body[8:])[0])
            os.mkdir(self.real(rel), stat.S_IMODE(mode))
            return self.entry(rel)
        if op in (UNLINK, RMDIR):
            rel = self.child(nodeid, names(body)[0])
            (os.unlink if op == UNLINK else os.rmdir)(self.real(rel))
            return b""
        if op in (RENAME, RENAME2):
            newdir = struct.unpack_from("<Q", body)[0]
            old, new = names(body[8 if op == RENAME else 16:])
            src, dst = self.child(nodeid, old), self.child(newdir, new)
            os.rename(self.real(src), self.real(dst))
            self.moved(src, dst)
            return b""
        if op == LINK:
            oldnode = struct.unpack_from("<Q", body)[0]
            rel = self.child(nodeid, names(body[8:])[0])
            os.link(self.real(self.paths[oldnode]), self.real(rel))
            return self.entry(rel)
        if op in (OPEN, OPENDIR):
            flags = struct.unpack_from("<I", body)[0]
            if op == OPEN:
                fd = os.open(self.real(self.paths[nodeid]), flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW))
            else:
                fd = None
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = (fd, self.paths[nodeid])
            return struct.pack("<QII", fh, 0, 0)
        if op == CREATE:
            flags, mode, _, _ = struct.unpack_from("<IIII", body)
            rel = self.child(nodeid, names(body[16:])[0])
            fd = os.open(self.real(rel), (flags | os.O_CREAT) & ~os.O_NOFOLLOW, stat.S_IMODE(mode))
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = (fd, rel)
            return self.entry(rel) + struct.pack("<QII", fh, 0, 0)
        if op == READ:
            fh, offset, size = struct.unpack_from("<QQI", body)
            return os.pread(self.handles[fh][0], size, offset)
        if op == WRITE:
            fh, offset, size = struct.unpack_from("<QQI", body)
            fd, rel = self.handles[fh]
            data = body[40:40 + size]
            if self.fail_dir.startswith("content:"):
                if self.fail_dir[len("content:"):].encode() in data:
                    raise OSError(errno.EIO, "injected")
            elif os.path.basename(os.path.dirname(rel)) == self.fail_dir:
                raise OSError(errno.EIO, "injected")
            return struct.pack("<II", os.pwrite(fd, data, offset), 0)
        if op in (RELEASE, RELEASEDIR):
            fh = struct.unpack_from("<Q", body)[0]
            fd, _ = self.handles.pop(fh, (None, None))
            if fd is not None:
                os.close(fd)
            return b""
        if op in (FSYNC, FSYNCDIR, FLUSH, ACCESS):
            return b""
        if op == READDIR:
            fh, offset, size = struct.unpack_from("<QQI", body)
            rel = self.handles[fh][1]
            entries = [".", ".."] + sorted(os.listdir(self.real(rel)))
            out = b""
            for i, name in enumerate(entries[offset:], start=offset + 1):
                raw = name.encode()
                kind = stat.S_IFMT(os.lstat(self.real(os.path.join(rel, name) if name not in (".", "..") else rel)).st_mode) >> 12
                ent = struct.pack("<QQII", 1, i, len(raw), kind) + raw
                ent += b"\0" * (-len(ent) % 8)
                if len(out) + len(ent) > size:
                    break
                out += ent
            return out
        if op == STATFS:
            st = os.statvfs(self.backing)
            return struct.pack("<QQQQQIIII", st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree, 4096, 255, 4096, 0) + b"\0" * 24
        raise OSError(errno.ENOSYS, "not implemented")


def main():
    backing, mountpoint, fail_dir = sys.argv[1:4]
    dev = os.open("/dev/fuse", os.O_RDWR)
    subprocess.run(["mount", "-t", "fuse", "-o", f"fd={dev},rootmode=40000,user_id=0,group_id=0,default_permissions",
                    "hostsmith-eio", mountpoint], pass_fds=(dev,), check=True)
    fs = Fs(backing, fail_dir)
    while True:
        try:
            data = os.read(dev, 1 << 20)
        except OSError as e:
            if e.errno == errno.ENODEV:
                return
            raise
        _, op, unique, nodeid, *_ = IN_HDR.unpack_from(data)
        body = data[IN_HDR.size:]
        if op in (FORGET, BATCH_FORGET, INTERRUPT):
            continue
        try:
            reply, err = fs.handle(op, nodeid, body), 0
        except OSError as e:
            reply, err = b"", -(e.errno or errno.EIO)
        os.write(dev, OUT_HDR.pack(OUT_HDR.size + len(reply), err, unique) + reply)
        if op == DESTROY:
            return


if __name__ == "__main__":
    main()
