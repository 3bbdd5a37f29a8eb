"""A seeded random sequence of file operations, applied identically to a
tresor mount and to a reference directory on the local disk; the trees must
stay identical, also across unmount/remount.  Besides reads, writes and
names: copy_file_range (tresor shares extents), fallocate in its modes,
rename's RENAME_EXCHANGE and RENAME_NOREPLACE, and SEEK_DATA/SEEK_HOLE
(checked against the reference's bytes: holes must read as zeros).
Before each remount a snapshot set (issue 17) of the volume and a second,
unmounted one is taken; at the end the oldest must hold the reference tree
of its instant byte for byte, the others its names, sizes, modes and links,
and a prune of the set must remove the older ones from both members.

TRESOR_SEED=N reproduces a run; TRESOR_RANDOM_OPS=N changes its length.
"""

import errno
import hashlib
import os
import random
import sqlite3
import stat

from conftest import mounted, tresor
from test_share_extents import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
                                FALLOC_FL_ZERO_RANGE, RENAME_EXCHANGE, RENAME_NOREPLACE,
                                fallocate, renameat2)

SEED = int(os.environ.get("TRESOR_SEED", "20240917"))
NOPS = int(os.environ.get("TRESOR_RANDOM_OPS", "3000"))
COMPARE_EVERY = 300
REMOUNT_AT = {NOPS // 4, NOPS // 2, (3 * NOPS) // 4}
MAX_FILE = 3 * 1024 * 1024
MAX_FILES = 60


def tree(root):
    """{relpath: (kind, mode, size, sha256, nlink)} for everything below root."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = f.read()
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, len(data),
                            hashlib.sha256(data).hexdigest(), st.st_nlink)
            else:
                out[rel] = ("other", st.st_mode)
    return out


def tree_meta(root):
    """tree() without reading the files: kind, mode, size and links."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                             st.st_size if stat.S_ISREG(st.st_mode) else 0,
                                             st.st_nlink if stat.S_ISREG(st.st_mode) else 0)
    return out


def take_set(store, k):
    """Set "ops" of vol (mounted: its writes held) and aux (not: its lock)."""
    p = tresor("snapshot", "create", store.path, "--set", "ops", "vol", "aux",
               "--time", "2025-01-%02dT12:00" % (k + 1), "--scheduled", check=True)
    return p.stdout.strip()


def check_sets(store, mnt, sets):
    """The oldest set holds its instant's tree byte for byte, the others
    its shape; a prune of the set removes the older ones from both
    members together."""
    for k, (name, ref) in enumerate(sets):
        snap = os.path.join(mnt, ".snapshots", name)
        if k == 0:
            got = tree(snap)
            assert got == ref, "set snapshot %s differs from its instant (seed %d): %s" % (
                name, SEED, sorted(x for x in set(got) | set(ref) if got.get(x) != ref.get(x))[:10])
        else:
            want = {rel: ((stat.S_IFDIR, v[1], 0, 0) if v[0] == "dir" else
                          (stat.S_IFREG, v[1], v[2], v[5])) for rel, v in ref.items()}
            assert tree_meta(snap) == want, "set snapshot %s: names, sizes or links" % name
    store.run("prune", store.path, "--set", "ops", "--keep-last", "1", check=True)
    db = sqlite3.connect("file:%s?mode=ro" % (store.path / "index.db"), uri=True)
    try:
        left = db.execute("SELECT v.name, s.name, s.set_name FROM snapshot s JOIN volume v"
                          " ON v.id = s.vol ORDER BY v.name").fetchall()
    finally:
        db.close()
    assert left == [("aux", sets[-1][0], "ops"), ("vol", sets[-1][0], "ops")], left


def first_difference(root_a, root_b, rel):
    a = open(os.path.join(root_a, rel), "rb").read()
    b = open(os.path.join(root_b, rel), "rb").read()
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return "first differing byte at offset %d (sizes %d vs %d)" % (i, len(a), len(b))
    return "sizes %d vs %d, common prefix equal" % (len(a), len(b))


class Workload:
    def __init__(self, rng, ref, mnt):
        self.rng = rng
        self.roots = [ref, mnt]
        self.files = []     # relpaths of regular files
        self.dirs = [""]    # relpaths of directories ("" = root)
        self.n = 0
        self.log = []

    # ---- helpers --------------------------------------------------------
    def both(self, fn):
        for r in self.roots:
            fn(r)

    def data(self, n):
        kind = self.rng.random()
        if kind < 0.6:
            return self.rng.randbytes(n)
        if kind < 0.8:  # compressible
            word = self.rng.randbytes(self.rng.randint(1, 64))
            return (word * (n // len(word) + 1))[:n]
        # repeats an earlier chunk of some file: dedup inside the store
        seed = self.rng.randint(0, 20)
        r = random.Random(seed)
        return r.randbytes(n)

    def size_of(self, rel):
        return os.path.getsize(os.path.join(self.roots[0], rel))

    def new_name(self, prefix):
        self.n += 1
        d = self.rng.choice(self.dirs)
        return os.path.join(d, "%s%d" % (prefix, self.n)) if d else "%s%d" % (prefix, self.n)

    def write_size(self):
        if self.rng.random() < 0.7:
            return self.rng.randint(0, 16 * 1024)
        return self.rng.randint(16 * 1024, 300 * 1024)

    def same_inode(self, a, b):
        sa = os.lstat(os.path.join(self.roots[0], a))
        sb = os.lstat(os.path.join(self.roots[0], b))
        return sa.st_ino == sb.st_ino

    # ---- operations -----------------------------------------------------
    def op_create(self):
        rel = self.new_name("f")
        data = self.data(self.write_size())

        def f(r):
            with open(os.path.join(r, rel), "xb") as fh:
                fh.write(data)
        self.both(f)
        self.files.append(rel)
        return "create %s %d" % (rel, len(data))

    def op_write(self):
        rel = self.rng.choice(self.files)
        size = self.size_of(rel)
        off = self.rng.randint(0, min(size + 100 * 1024, MAX_FILE))
        data = self.data(min(self.write_size(), MAX_FILE - off + 1))

        def f(r):
            fd = os.open(os.path.join(r, rel), os.O_WRONLY)
            try:
                assert os.pwrite(fd, data, off) == len(data)
            finally:
                os.close(fd)
        self.both(f)
        return "write %s off=%d len=%d" % (rel, off, len(data))

    def op_append(self):
        rel = self.rng.choice(self.files)
        if self.size_of(rel) > MAX_FILE:
            return self.op_truncate()
        data = self.data(self.write_size())

        def f(r):
            with open(os.path.join(r, rel), "ab") as fh:
                fh.write(data)
        self.both(f)
        return "append %s %d" % (rel, len(data))

    def op_truncate(self):
        rel = self.rng.choice(self.files)
        size = self.size_of(rel)
        if self.rng.random() < 0.5:
            new = self.rng.randint(0, size)
        else:
            new = self.rng.randint(size, min(size + 600 * 1024, MAX_FILE))
        self.both(lambda r: os.truncate(os.path.join(r, rel), new))
        return "truncate %s %d->%d" % (rel, size, new)

    def op_unlink(self):
        rel = self.rng.choice(self.files)
        self.both(lambda r: os.unlink(os.path.join(r, rel)))
        self.files.remove(rel)
        return "unlink %s" % rel

    def op_rename(self):
        src = self.rng.choice(self.files)
        others = [f for f in self.files if f != src and not self.same_inode(f, src)]
        if others and self.rng.random() < 0.4:
            dst = self.rng.choice(others)
            self.files.remove(dst)
        else:
            dst = self.new_name("r")
        self.both(lambda r: os.rename(os.path.join(r, src), os.path.join(r, dst)))
        self.files.remove(src)
        self.files.append(dst)
        return "rename %s -> %s" % (src, dst)

    def op_mkdir(self):
        rel = self.new_name("d")
        self.both(lambda r: os.mkdir(os.path.join(r, rel)))
        self.dirs.append(rel)
        return "mkdir %s" % rel

    def op_rename_dir(self):
        cands = [d for d in self.dirs if d]
        if not cands:
            return self.op_mkdir()
        src = self.rng.choice(cands)
        parents = [d for d in self.dirs if d != src and not d.startswith(src + "/")]
        parent = self.rng.choice(parents)
        self.n += 1
        dst = os.path.join(parent, "D%d" % self.n) if parent else "D%d" % self.n
        self.both(lambda r: os.rename(os.path.join(r, src), os.path.join(r, dst)))

        def move(p):
            if p == src:
                return dst
            if p.startswith(src + "/"):
                return dst + p[len(src):]
            return p
        self.dirs = [move(d) for d in self.dirs]
        self.files = [move(f) for f in self.files]
        return "rename-dir %s -> %s" % (src, dst)

    def op_rmdir(self):
        empty = [d for d in self.dirs if d and not os.listdir(os.path.join(self.roots[0], d))]
        if not empty:
            return self.op_mkdir()
        rel = self.rng.choice(empty)
        self.both(lambda r: os.rmdir(os.path.join(r, rel)))
        self.dirs.remove(rel)
        return "rmdir %s" % rel

    def op_link(self):
        src = self.rng.choice(self.files)
        dst = self.new_name("h")
        self.both(lambda r: os.link(os.path.join(r, src), os.path.join(r, dst)))
        self.files.append(dst)
        return "link %s %s" % (src, dst)

    def op_chmod(self):
        rel = self.rng.choice(self.files)
        mode = self.rng.choice([0o600, 0o644, 0o640, 0o755, 0o400])
        self.both(lambda r: os.chmod(os.path.join(r, rel), mode))
        return "chmod %s %o" % (rel, mode)

    def op_overwrite_whole(self):
        rel = self.rng.choice(self.files)
        data = self.data(self.write_size())

        def f(r):
            with open(os.path.join(r, rel), "wb") as fh:  # O_TRUNC
                fh.write(data)
        self.both(f)
        return "rewrite %s %d" % (rel, len(data))

    def op_copy_range(self):
        src = self.rng.choice(self.files)
        dst = self.rng.choice(self.files)
        size = self.size_of(src)
        off_in = self.rng.randint(0, size + 1000)
        n = self.rng.choice([self.rng.randint(0, 70000), size])
        off_out = self.rng.randint(0, min(self.size_of(dst) + 50000, MAX_FILE))
        if self.same_inode(src, dst) and off_out < off_in + n and off_in < off_out + n:
            off_out = off_in + n  # overlapping ranges in one file: EINVAL (test_share_extents)
        got = []

        def f(r):
            a = os.open(os.path.join(r, src), os.O_RDONLY)
            b = os.open(os.path.join(r, dst), os.O_WRONLY)
            try:
                total = 0
                while total < n:
                    k = os.copy_file_range(a, b, n - total, off_in + total, off_out + total)
                    if not k:
                        break
                    total += k
                got.append(total)
            finally:
                os.close(a)
                os.close(b)
        self.both(f)
        assert got[0] == got[1], "copy_file_range copied %d on the reference, %d on tresor" % (
            got[0], got[1])
        return "copy %s@%d -> %s@%d len=%d (%d)" % (src, off_in, dst, off_out, n, got[0])

    def op_fallocate(self):
        rel = self.rng.choice(self.files)
        mode = self.rng.choice([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE])
        size = self.size_of(rel)
        off = self.rng.randint(0, min(size + 20000, MAX_FILE))
        n = self.rng.randint(1, 200000)

        def f(r):
            fd = os.open(os.path.join(r, rel), os.O_WRONLY)
            try:
                fallocate(fd, mode, off, n)
            finally:
                os.close(fd)
        self.both(f)
        return "fallocate %s mode=%d off=%d len=%d" % (rel, mode, off, n)

    def op_rename_exchange(self):
        a, b = self.rng.choice(self.files), self.rng.choice(self.files)
        self.both(lambda r: renameat2(os.path.join(r, a), os.path.join(r, b), RENAME_EXCHANGE))
        return "exchange %s %s" % (a, b)

    def op_rename_noreplace(self):
        src = self.rng.choice(self.files)
        if self.rng.random() < 0.3:
            dst = self.rng.choice(self.files)
            errs = []

            def f(r):
                try:
                    renameat2(os.path.join(r, src), os.path.join(r, dst), RENAME_NOREPLACE)
                    errs.append(0)
                except OSError as e:
                    errs.append(e.errno)
            self.both(f)
            assert errs == [errno.EEXIST, errno.EEXIST], "RENAME_NOREPLACE onto %s: %r" % (
                dst, errs)
            return "rename-noreplace %s -> existing %s: EEXIST" % (src, dst)
        dst = self.new_name("n")
        self.both(lambda r: renameat2(os.path.join(r, src), os.path.join(r, dst),
                                      RENAME_NOREPLACE))
        self.files.remove(src)
        self.files.append(dst)
        return "rename-noreplace %s -> %s" % (src, dst)

    def op_seek(self):
        """SEEK_DATA/SEEK_HOLE on tresor tile the file, its holes read as
        zeros in the reference, and past the end both say ENXIO."""
        rel = self.rng.choice(self.files)
        with open(os.path.join(self.roots[0], rel), "rb") as fh:
            ref = fh.read()
        fd = os.open(os.path.join(self.roots[1], rel), os.O_RDONLY)
        try:
            pos = 0
            while pos < len(ref):
                try:
                    data = os.lseek(fd, pos, os.SEEK_DATA)
                except OSError as e:
                    assert e.errno == errno.ENXIO, e
                    data = len(ref)
                assert pos <= data <= len(ref), (rel, pos, data)
                assert ref[pos:data] == bytes(data - pos), \
                    "%s: SEEK_DATA from %d says %d, but the bytes between are not zeros" % (
                        rel, pos, data)
                if data == len(ref):
                    break
                hole = os.lseek(fd, data, os.SEEK_HOLE)
                assert data < hole <= len(ref), (rel, data, hole)
                pos = hole
            for whence in (os.SEEK_DATA, os.SEEK_HOLE):
                try:
                    r = os.lseek(fd, len(ref), whence)
                    raise AssertionError("%s: lseek at the end gave %d" % (rel, r))
                except OSError as e:
                    assert e.errno == errno.ENXIO, e
        finally:
            os.close(fd)
        return "seek %s" % rel

    def step(self):
        if len(self.files) < 5:
            return self.op_create()
        ops = [(self.op_write, 30), (self.op_append, 10), (self.op_truncate, 10),
               (self.op_rename, 8), (self.op_unlink, 5), (self.op_create, 10),
               (self.op_mkdir, 3), (self.op_rename_dir, 2), (self.op_rmdir, 2),
               (self.op_link, 4), (self.op_chmod, 3), (self.op_overwrite_whole, 5),
               (self.op_copy_range, 8), (self.op_fallocate, 5), (self.op_rename_exchange, 3),
               (self.op_rename_noreplace, 2), (self.op_seek, 3)]
        if len(self.files) > MAX_FILES:
            ops = [(self.op_unlink, 1)]
        fn = self.rng.choices([o for o, _ in ops], weights=[w for _, w in ops])[0]
        desc = fn()
        self.log.append(desc)
        return desc


def compare(ref, mnt, wl, when):
    """Raise if the trees differ; else the reference's tree()."""
    a, b = tree(ref), tree(mnt)
    if a == b:
        return a
    lines = ["trees differ %s (seed %d); last ops:" % (when, SEED)]
    lines += ["  " + l for l in wl.log[-25:]]
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            lines.append("  %s: reference %r, tresor %r" % (k, a.get(k), b.get(k)))
            if a.get(k) and b.get(k) and a[k][0] == "file" and b[k][0] == "file":
                lines.append("    " + first_difference(ref, mnt, k))
            if len(lines) > 60:
                break
    raise AssertionError("\n".join(lines))


def test_random_ops_match_reference(tmp, make_store, mounts):
    store = make_store(chunks=(4096, 16384, 65536), volumes=("vol", "aux"))
    sets = []
    ref = tmp / "reference"
    ref.mkdir()
    m = mounts.mount(store, "vol")
    rng = random.Random(SEED)
    wl = Workload(rng, str(ref), str(m.path))
    old_umask = os.umask(0o022)
    try:
        for i in range(1, NOPS + 1):
            try:
                wl.step()
            except OSError as e:
                raise AssertionError("op %d (%s) failed: %s; last ops:\n%s"
                                     % (i, wl.log[-1] if wl.log else "?", e,
                                        "\n".join(wl.log[-10:])))
            if i % COMPARE_EVERY == 0:
                compare(str(ref), str(m.path), wl, "after op %d" % i)
            if i in REMOUNT_AT:
                now = compare(str(ref), str(m.path), wl, "before remount at op %d" % i)
                sets.append((take_set(store, len(sets)), now))
                m.close()
                assert not mounted(m.path)
                m = mounts.mount(store, "vol")
                wl.roots[1] = str(m.path)
                compare(str(ref), str(m.path), wl, "after remount at op %d" % i)
        compare(str(ref), str(m.path), wl, "at the end")
        m.close()
        m = mounts.mount(store, "vol")
        compare(str(ref), str(m.path), wl, "after the final remount")
        check_sets(store, str(m.path), sets)
        m.close()
    finally:
        os.umask(old_umask)
    p = store.check()
    assert p.returncode == 0, "check after random ops: %s %s" % (p.stdout, p.stderr)
