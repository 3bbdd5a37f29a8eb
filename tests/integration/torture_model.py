"""An oracle of what a crashed tresor mount may and must hold.

A seeded workload (Workload) runs file operations on a mount -- block
writes, truncates, fsync, renames, atomic replaces, hard links, unlinks,
directory fsyncs, copies between files (copy_file_range, which tresor
does by sharing extents), fallocate (punch, zero, extend) and
RENAME_EXCHANGE -- and keeps, for every name and every file, the set of
states a crash may leave (POSIX: data is durable once fsync on the file
returned, a name once fsync on its directory returned; tresor promises
no less):

  - every file content is tracked per 4 KiB block as the set of block
    versions it held since the file's last fsync (a version is a key:
    0 for zeros, or (file, block, generation) for the bytes a write made,
    wherever a copy took them since), plus the set of sizes it had since then (an unsynced
    extending write may be torn: the size may end inside it);
  - every name maps to the set of files (or "absent") it held since its
    directory's last fsync.

verify() reads the remounted tree and checks each name against those sets:
every fsynced byte and every completed (fsynced) rename is there, and no
file holds a block it never had.  It then rebuilds the model from what it
saw, so the next round starts from the recovered state.  Used by
test_torture.py (kill -9 and crash points) and test_powerloss.py.
"""

import ctypes
import errno
import hashlib
import os
import stat

BLK = 4096
DIRS = ("d0", "d1", "d2")
NAMES = ("f0", "f1", "f2", "f3", "f4", ".tmp")
MAX_BLOCKS = 40
DEAD_ERRNOS = (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO, errno.ENODEV)
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
LIBC.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 16
RENAME_EXCHANGE = 2


def block_bytes(key):
    """The 4 KiB a block version holds: key 0 is zeros, (obj, b, gen) the
    bytes generation gen of block b of file obj was written with."""
    if key == 0:
        return bytes(BLK)
    # incompressible, so packs fill and seal as with real data
    return hashlib.shake_256(b"%d:%d:%d" % key).digest(BLK)


class FileModel:
    """The content of one file: its current block versions and, per block,
    every version a crash may leave."""

    def __init__(self, oid, keys=()):
        self.oid = oid                   # names the blocks it writes
        self.cur = list(keys)            # version of each block now
        self.cand = [{k} for k in keys]  # per block: possible after a crash
        self.sizes = {len(self.cur)}     # possible sizes, in blocks

    def _grow(self, n):
        while len(self.cur) < n:
            self.cur.append(0)
            self.cand.append({0})

    def write(self, b0, nb, gen):
        self.put(b0, [(self.oid, b, gen) for b in range(b0, b0 + nb)])

    def put(self, b0, keys):
        """Blocks b0.. now hold keys (a write, a copy, zeros)."""
        self._grow(b0 + len(keys))
        for b, k in enumerate(keys, b0):
            self.cur[b] = k
            self.cand[b].add(k)
        self.sizes.add(len(self.cur))

    def truncate(self, nb):
        if nb < len(self.cur):
            for b in range(nb, len(self.cur)):
                self.cur[b] = 0
                self.cand[b].add(0)
            del self.cur[nb:]
        else:
            self._grow(nb)
        self.sizes.add(nb)

    def sync(self):
        self.cand = [{g} for g in self.cur]
        self.sizes = {len(self.cur)}

    def content(self):
        return b"".join(block_bytes(k) for k in self.cur)

    def match(self, data):
        """The block versions data consists of, or None if data is no
        state this file may be in after a crash.  An extending write that
        was not fsynced may be torn: the size may then end inside it (the
        daemon persists a size only as far as data is mapped), so any
        size between the smallest and the largest possible one is taken,
        the last block being a prefix of a version of it."""
        n = len(data)
        if not min(self.sizes) * BLK <= n <= max(self.sizes) * BLK:
            return None
        gens = []
        for b in range((n + BLK - 1) // BLK):
            blk = data[b * BLK:(b + 1) * BLK]
            cands = self.cand[b] if b < len(self.cand) else {0}
            # a block past the current end was truncated away: zeros allowed
            if b >= len(self.cur):
                cands = cands | {0}
            g = next((k for k in cands if block_bytes(k)[:len(blk)] == blk), None)
            if g is None:
                return None
            gens.append(g)
        return gens


class Model:
    def __init__(self):
        self.files = {}   # oid -> FileModel
        self.ns = {}      # "dN/name" -> oid or None (what the name holds now)
        self.poss = {}    # "dN/name" -> set of oid/None a crash may leave
        self.next_oid = 1
        self.next_gen = 1
        for d in DIRS:
            for n in NAMES:
                self.ns[d + "/" + n] = None
                self.poss[d + "/" + n] = {None}

    def new_file(self):
        oid = self.next_oid
        self.next_oid += 1
        self.files[oid] = FileModel(oid)
        return oid

    def gen(self):
        g = self.next_gen
        self.next_gen += 1
        return g

    def set_name(self, path, oid):
        self.ns[path] = oid
        self.poss[path].add(oid)

    def sync_dir(self, d):
        for p in self.ns:
            if p.startswith(d + "/"):
                self.poss[p] = {self.ns[p]}

    def expected_tree(self):
        """{path: (oid, sha256 of content)} of the tree as it is now."""
        out = {}
        for p, oid in self.ns.items():
            if oid is not None:
                data = self.files[oid].content()
                out[p] = (oid, hashlib.sha256(data).hexdigest(), len(data))
        return out


def tree_of(root):
    """{path: (inode, sha256)} of the files below root's DIRS."""
    out = {}
    for d in DIRS:
        dp = os.path.join(root, d)
        # not os.path.isdir: it answers False for a dead mount too, and a
        # daemon killed by its crash point right after a snapshot would
        # then look like a snapshot without files
        try:
            if not stat.S_ISDIR(os.stat(dp).st_mode):
                continue
        except FileNotFoundError:
            continue
        for n in os.listdir(dp):
            p = os.path.join(dp, n)
            st = os.lstat(p)
            with open(p, "rb") as f:
                data = f.read()
            out[d + "/" + n] = (st.st_ino, hashlib.sha256(data).hexdigest(), len(data))
    return out


def same_tree(expected, actual):
    """Compare an expected_tree() with a tree_of(): problems as strings.
    Names sharing a file must share an inode, and only they."""
    problems = []
    if set(expected) != set(actual):
        problems.append("names differ: missing %s, unexpected %s"
                        % (sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))))
    groups = {}
    for p in set(expected) & set(actual):
        if expected[p][1] != actual[p][1]:
            problems.append("%s: content differs (%s bytes expected, %s there)"
                            % (p, expected[p][2] if len(expected[p]) > 2 else "?",
                               actual[p][2] if len(actual[p]) > 2 else "?"))
        groups.setdefault(expected[p][0], set()).add(actual[p][0])
    for oid, inos in groups.items():
        if len(inos) != 1:
            problems.append("names of file %d are %d different inodes" % (oid, len(inos)))
    return problems


def verify(model, root):
    """Check the tree at root against what the model allows after a crash;
    return (problems, stats).  On success the model is rebuilt from what
    is there (all of it durable now) and its names are all durable."""
    problems = []
    seen = {}       # path -> (ino, nlink, data)
    for d in DIRS:
        dp = os.path.join(root, d)
        if not os.path.isdir(dp):
            problems.append("directory %s is missing" % d)
            continue
        for n in os.listdir(dp):
            p = d + "/" + n
            if p not in model.ns:
                problems.append("%s: a name the workload never made" % p)
                continue
            st = os.lstat(os.path.join(dp, n))
            with open(os.path.join(dp, n), "rb") as f:
                seen[p] = (st.st_ino, st.st_nlink, f.read())
    matches = {}    # path -> {oid: gens}
    for p, poss in model.poss.items():
        if p not in seen:
            if None not in poss:
                want = model.files[model.ns[p]] if model.ns[p] else None
                problems.append("%s: missing, but its name was made durable (file %s, %d blocks)"
                                % (p, model.ns[p], len(want.cur) if want else 0))
            continue
        data = seen[p][2]
        m = {}
        for oid in poss:
            if oid is None:
                continue
            g = model.files[oid].match(data)
            if g is not None:
                m[oid] = g
        if not m:
            problems.append("%s: %d bytes that are no state of %s (fsynced data lost or "
                            "bytes never written)" % (p, len(data), sorted(o for o in poss if o)))
        matches[p] = m
    # names sharing an inode hold one file; nlink counts exactly them
    by_ino = {}
    for p, (ino, nlink, _) in seen.items():
        by_ino.setdefault(ino, []).append(p)
    for ino, paths in by_ino.items():
        nlink = seen[paths[0]][1]
        if nlink != len(paths):
            problems.append("inode %d: nlink %d but %d names %s" % (ino, nlink, len(paths), paths))
        common = None
        for p in paths:
            s = set(matches.get(p, {}))
            common = s if common is None else common & s
        if paths and not common and all(matches.get(p) for p in paths):
            problems.append("names %s share inode %d but hold no common file" % (paths, ino))
    for p, q in ((p, q) for p in seen for q in seen if p < q):
        mp, mq = set(matches.get(p, {})), set(matches.get(q, {}))
        if seen[p][0] != seen[q][0] and len(mp) == 1 and mp == mq \
                and model.poss[p] == {model.ns[p]} and model.poss[q] == {model.ns[q]}:
            problems.append("%s and %s are durable links of one file but different inodes" % (p, q))
    stats = {"files": len(by_ino), "bytes": sum(len(v[2]) for v in seen.values())}
    if problems:
        return problems, stats
    # rebuild from what is there
    files, ns = {}, {p: None for p in model.ns}
    for ino, paths in by_ino.items():
        common = set.intersection(*[set(matches[p]) for p in paths])
        src = min(common)
        oid = model.next_oid
        model.next_oid += 1
        gens = matches[paths[0]][src]
        if len(seen[paths[0]][2]) % BLK:
            # a torn extension: cut the partial block off, durably, so
            # the model stays in whole blocks
            gens = gens[:-1]
            fd = os.open(os.path.join(root, paths[0]), os.O_WRONLY)
            try:
                os.ftruncate(fd, len(gens) * BLK)
                os.fsync(fd)
            finally:
                os.close(fd)
            stats["torn"] = stats.get("torn", 0) + 1
        # a new id, but the blocks keep the versions seen; new writes
        # make blocks of the file's own old id, never used elsewhere
        f = FileModel(model.files[src].oid, gens)
        files[oid] = f
        for p in paths:
            ns[p] = oid
    model.files = files
    model.ns = ns
    model.poss = {p: {o} for p, o in ns.items()}
    return problems, stats


def _fallocate(path, mode, b0, nb):
    fd = os.open(path, os.O_WRONLY)
    try:
        if LIBC.fallocate(fd, mode, b0 * BLK, nb * BLK):
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)


class Workload:
    """Seeded operations on a mount, applied to a Model.  step() does one
    operation; it raises OSError when the mount is gone."""

    OPS = (("write", 30), ("create", 8), ("fsync", 14), ("truncate", 6), ("rename", 8),
           ("replace", 5), ("link", 4), ("unlink", 4), ("fsyncdir", 8), ("copy", 8),
           ("punch", 3), ("zero", 2), ("falloc", 2), ("exchange", 3))

    def __init__(self, model, root, rng):
        self.m = model
        self.root = str(root)
        self.rng = rng
        self.ops = {}
        self.acked = {"fsync": 0, "fsyncdir": 0, "replace": 0}
        names, weights = zip(*self.OPS)
        self.names = names
        self.weights = weights

    def setup(self):
        for d in DIRS:
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def p(self, path):
        return os.path.join(self.root, path)

    def used(self, tmp=False):
        return [p for p, o in self.m.ns.items() if o is not None and (tmp or not p.endswith(".tmp"))]

    def free(self, d=None):
        return [p for p, o in self.m.ns.items() if o is None and not p.endswith(".tmp")
                and (d is None or p.startswith(d + "/"))]

    def step(self):
        op = self.rng.choices(self.names, self.weights)[0]
        getattr(self, "op_" + op)()
        self.ops[op] = self.ops.get(op, 0) + 1
        return op

    def _write(self, path, oid, b0, nb):
        gen = self.m.gen()
        f = self.m.files[oid]
        f.write(b0, nb, gen)          # possible from now on
        data = b"".join(block_bytes(k) for k in f.cur[b0:b0 + nb])
        fd = os.open(self.p(path), os.O_WRONLY)
        try:
            os.pwrite(fd, data, b0 * BLK)
        finally:
            os.close(fd)

    def op_write(self):
        used = self.used()
        if not used:
            return self.op_create()
        path = self.rng.choice(used)
        oid = self.m.ns[path]
        size = len(self.m.files[oid].cur)
        b0 = self.rng.randint(0, min(size, MAX_BLOCKS - 1))
        nb = self.rng.randint(1, min(16, MAX_BLOCKS - b0))
        self._write(path, oid, b0, nb)

    def op_create(self):
        free = self.free()
        if not free:
            return self.op_unlink()
        path = self.rng.choice(free)
        oid = self.m.new_file()
        self.m.set_name(path, oid)
        fd = os.open(self.p(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        self._write(path, oid, 0, self.rng.randint(1, 24))

    def _fsync_file(self, path):
        oid = self.m.ns[path]
        fd = os.open(self.p(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.m.files[oid].sync()
        self.acked["fsync"] += 1

    def op_fsync(self):
        used = self.used()
        if used:
            self._fsync_file(self.rng.choice(used))

    def _fsync_dir(self, d):
        fd = os.open(self.p(d), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.m.sync_dir(d)
        self.acked["fsyncdir"] += 1

    def op_fsyncdir(self):
        self._fsync_dir(self.rng.choice(DIRS))

    def op_truncate(self):
        used = self.used()
        if not used:
            return
        path = self.rng.choice(used)
        nb = self.rng.randint(0, MAX_BLOCKS)
        self.m.files[self.m.ns[path]].truncate(nb)
        os.truncate(self.p(path), nb * BLK)

    def op_rename(self):
        used = self.used()
        if not used:
            return
        src = self.rng.choice(used)
        dst = self.rng.choice([p for p in self.m.ns if not p.endswith(".tmp") and p != src])
        if self.m.ns[dst] == self.m.ns[src]:
            return  # two links of one file: rename is a no-op, skip it
        oid = self.m.ns[src]
        self.m.set_name(src, None)
        self.m.set_name(dst, oid)
        os.rename(self.p(src), self.p(dst))

    def op_replace(self):
        """Write a temp file, fsync it, rename it over a name, fsync the dir."""
        d = self.rng.choice(DIRS)
        tmp = d + "/.tmp"
        target = self.rng.choice([d + "/" + n for n in NAMES if n != ".tmp"])
        if self.m.ns[tmp] is not None:   # left by a crash: remove it
            self.m.set_name(tmp, None)
            os.unlink(self.p(tmp))
        oid = self.m.new_file()
        self.m.set_name(tmp, oid)
        fd = os.open(self.p(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        self._write(tmp, oid, 0, self.rng.randint(1, 12))
        self._fsync_file(tmp)
        self.m.set_name(tmp, None)
        self.m.set_name(target, oid)
        os.rename(self.p(tmp), self.p(target))
        self._fsync_dir(d)
        self.acked["replace"] += 1

    def op_link(self):
        used, free = self.used(), self.free()
        if not used or not free:
            return
        src, dst = self.rng.choice(used), self.rng.choice(free)
        self.m.set_name(dst, self.m.ns[src])
        os.link(self.p(src), self.p(dst))

    def op_unlink(self):
        used = self.used()
        if not used:
            return
        path = self.rng.choice(used)
        self.m.set_name(path, None)
        os.unlink(self.p(path))

    # ---- the operations on extents (fs/fuse_share.c) ----
    def op_copy(self):
        """copy_file_range of whole blocks from one file into another (or
        elsewhere in the same one): the destination's blocks become the
        source's versions."""
        used = self.used()
        if not used:
            return
        src, dst = self.rng.choice(used), self.rng.choice(used)
        fs, fd_ = self.m.files[self.m.ns[src]], self.m.files[self.m.ns[dst]]
        if not fs.cur:
            return
        bs = self.rng.randint(0, len(fs.cur) - 1)
        nb = self.rng.randint(1, min(16, len(fs.cur) - bs))
        bd = self.rng.randint(0, min(len(fd_.cur), MAX_BLOCKS - nb))
        if fs is fd_ and bd < bs + nb and bs < bd + nb:
            return  # overlapping ranges in one file: EINVAL
        fd_.put(bd, fs.cur[bs:bs + nb])
        a = os.open(self.p(src), os.O_RDONLY)
        try:
            b = os.open(self.p(dst), os.O_WRONLY)
            try:
                done = 0
                while done < nb * BLK:
                    k = os.copy_file_range(a, b, nb * BLK - done, bs * BLK + done,
                                           bd * BLK + done)
                    assert k > 0, "copy_file_range copied nothing"
                    done += k
            finally:
                os.close(b)
        finally:
            os.close(a)

    def _fallocate(self, mode, blocks):
        """fallocate(mode) on a file in use, over the blocks that
        blocks(its model) picks ((b0, nb) or None), zeros there."""
        used = self.used()
        if not used:
            return
        path = self.rng.choice(used)
        f = self.m.files[self.m.ns[path]]
        r = blocks(f)
        if r is None:
            return
        b0, nb = r
        if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
            f.put(b0, [0] * nb)
        elif b0 + nb > len(f.cur):
            f.truncate(b0 + nb)
        _fallocate(self.p(path), mode, b0, nb)

    def op_punch(self):
        def inside(f):
            if not f.cur:
                return None
            b0 = self.rng.randint(0, len(f.cur) - 1)
            return b0, self.rng.randint(1, len(f.cur) - b0)
        self._fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, inside)

    def op_zero(self):
        """ZERO_RANGE, which may also make the file longer."""
        def anywhere(f):
            b0 = self.rng.randint(0, min(len(f.cur), MAX_BLOCKS - 1))
            return b0, self.rng.randint(1, MAX_BLOCKS - b0)
        self._fallocate(FALLOC_FL_ZERO_RANGE, anywhere)

    def op_falloc(self):
        """Mode 0 from the start: zeros past the end, nothing else."""
        self._fallocate(0, lambda f: (0, self.rng.randint(1, MAX_BLOCKS)))

    def op_exchange(self):
        used = self.used()
        if len(used) < 2:
            return
        a, b = self.rng.sample(used, 2)
        oa, ob = self.m.ns[a], self.m.ns[b]
        if oa == ob:
            return  # two links of one file
        self.m.set_name(a, ob)
        self.m.set_name(b, oa)
        if LIBC.renameat2(-100, os.fsencode(self.p(a)), -100, os.fsencode(self.p(b)),
                          RENAME_EXCHANGE):
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))

def mount_dead(exc):
    return isinstance(exc, OSError) and exc.errno in DEAD_ERRNOS
