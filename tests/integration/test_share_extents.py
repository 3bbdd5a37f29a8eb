"""Copies that share extents (issue 16): copy_file_range maps the
destination to the source's chunks (live file -> live file, snapshot ->
live tree), fallocate, SEEK_DATA/SEEK_HOLE, rename with RENAME_EXCHANGE
and RENAME_NOREPLACE.

Every check compares bytes with a model kept in the test, asserts the
store's stored bytes where sharing promises they do not grow, and runs
`tresor check` after the copies, deletions, snapshots and prunes.
"""

import ctypes
import errno
import filecmp
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import threading

import pytest

from conftest import fusermount_u, mounted, tresor, wait_for
from test_snapshots import mount, snap, snap_list, tenv

CHUNKS = (8192, 16384, 65536)
SEED = int(os.environ.get("TRESOR_SEED", "1616"))

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
FALLOC_FL_ZERO_RANGE = 16
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, os.fsencode(str(a)), AT_FDCWD, os.fsencode(str(b)), flags):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def rnd(n, seed):
    return random.Random(seed).randbytes(n)


def stored(store):
    """Bytes of referenced chunks and their count, as `stats` reports them."""
    s = store.stats()
    return s["chunk_stored_bytes"], s["chunks"]


def commit(path):
    """fsync a file of the mount: the daemon commits its index."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def live_extents(store, ino):
    """The live extent rows of inode ino: (off, len, chunk, coff)."""
    db = sqlite3.connect("file:%s?mode=ro" % (store.path / "index.db"), uri=True)
    try:
        return db.execute("SELECT off, len, chunk, coff FROM extent WHERE ino = ?"
                          " AND death = 9223372036854775807 ORDER BY off", (ino,)).fetchall()
    finally:
        db.close()


def patched(path, data, seed):
    """Write data to path, then overwrite a few bytes in the middle in a
    second open: that leaves a small extent no chunking of the content
    would cut, so a byte copy could not reproduce the extents."""
    path.write_bytes(data)
    patch = rnd(100, seed)
    mid = len(data) // 2
    with open(path, "r+b") as f:
        f.seek(mid)
        f.write(patch)
    return data[:mid] + patch + data[mid + 100:]


def snapshot_and_lose(store, m, patched_file):
    """Commit, note patched_file's extents, snapshot, delete site/: the
    admin's mistake.  (extents, snapshot name, stored bytes before)."""
    commit(m / patched_file)
    xs = live_extents(store, os.stat(m / patched_file).st_ino)
    name = snap(store, scheduled=True)  # the night's snapshot
    shutil.rmtree(m / "site")
    commit(m)
    return xs, name, stored(store)


def assert_restored(store, root, files, xs, before, how):
    """root holds files byte for byte, site/patched maps the extents xs,
    and the store's stored bytes are (about) what they were."""
    for k, v in files.items():
        assert (root / k).read_bytes() == v, k
    commit(root / "site/patched")
    assert live_extents(store, os.stat(root / "site/patched").st_ino) == xs, \
        "%s did not share the extents" % how
    grew = stored(store)[0] - before[0]
    assert grew < 4096, "%s stored %d bytes" % (how, grew)


def check_clean(store):
    p = store.check()
    assert p.returncode == 0, "tresor check after the copies:\n%s\n%s" % (p.stdout, p.stderr)


def copy_range(src, dst, n, off_src=None, off_dst=None):
    """os.copy_file_range until n bytes are copied or it returns 0."""
    total = 0
    while total < n:
        k = os.copy_file_range(src, dst, n - total,
                               None if off_src is None else off_src + total,
                               None if off_dst is None else off_dst + total)
        if k == 0:
            break
        total += k
    return total


@pytest.fixture
def st(make_store):
    return make_store(chunks=CHUNKS)


# --------------------------------------------------------------------------
# copy_file_range
# --------------------------------------------------------------------------
def test_copy_whole_file_shares_chunks(st, mounts):
    m = mount(mounts, st)
    data = patched(m / "a", rnd(3 << 20, SEED), SEED + 100)
    commit(m / "a")
    before = stored(st)
    shared0 = st.stats()["shared_bytes"]
    with open(m / "a", "rb") as s, open(m / "b", "wb") as d:
        assert copy_range(s.fileno(), d.fileno(), len(data) + 100) == len(data)
        os.fsync(d.fileno())
    # shared = live bytes mapped - raw bytes of the live chunks: the copy
    # maps len(data) more, no chunk more (the patch left 100 bytes of a
    # chunk unmapped, which the figure nets out)
    shared = st.stats()["shared_bytes"]
    assert shared0 == 0 and len(data) - 100 <= shared <= len(data), (shared0, shared)
    assert (m / "b").read_bytes() == data
    assert os.stat(m / "b").st_size == len(data)
    after = stored(st)
    assert after == before, "an aligned copy stored bytes: %r -> %r" % (before, after)
    xa = live_extents(st, os.stat(m / "a").st_ino)
    assert len(xa) > 10 and any(x[1] == 100 for x in xa), xa
    assert live_extents(st, os.stat(m / "b").st_ino) == xa, "the copy maps other chunks"
    # the copy outlives its original, through a remount
    os.unlink(m / "a")
    m.close()
    check_clean(st)
    m = mount(mounts, st)
    assert (m / "b").read_bytes() == data
    assert stored(st) == before


def test_copy_unaligned_ranges(st, mounts):
    """Heads and tails cut out of extents are copied as bytes; the
    result equals a byte copy, into the middle of an existing file."""
    m = mount(mounts, st)
    src = rnd(2 << 20, SEED + 1)
    dst = bytearray(rnd(1 << 20, SEED + 2))
    (m / "s").write_bytes(src)
    (m / "d").write_bytes(bytes(dst))
    commit(m / "s")
    before, _ = stored(st)
    cases = [(12345, 777, 300000), (0, 5, 65536), (1 << 20, (1 << 20) + 4000, 900001),
             (2 * 1024 * 1024 - 10, 3, 100)]
    with open(m / "s", "rb") as s, open(m / "d", "r+b") as d:
        for off_s, off_d, n in cases:
            want = min(n, len(src) - off_s)
            got = copy_range(s.fileno(), d.fileno(), n, off_s, off_d)
            assert got == want, "copy %r copied %d, not %d" % ((off_s, off_d, n), got, want)
            end = off_d + want
            if end > len(dst):
                dst.extend(b"\0" * (end - len(dst)))
            dst[off_d:end] = src[off_s:off_s + want]
            assert (m / "d").read_bytes() == bytes(dst), "after copy %r" % ((off_s, off_d, n),)
        os.fsync(d.fileno())
    after, _ = stored(st)
    # only the cut pieces are new: at most two chunks' worth per copy
    assert after - before < len(cases) * 2 * CHUNKS[2] + 65536, (before, after)
    m.close()
    check_clean(st)
    m = mount(mounts, st)
    assert (m / "d").read_bytes() == bytes(dst)


def test_copy_unsealed_source_and_same_file(st, mounts):
    """Bytes written but not yet stored are copied too; a copy within one
    file works when the ranges do not overlap."""
    m = mount(mounts, st)
    data = bytearray(rnd(1 << 20, SEED + 3))
    fd = os.open(m / "w", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, bytes(data))      # still in the daemon's buffers
        os.pwrite(fd, b"X" * 5000, 4096)
        data[4096:9096] = b"X" * 5000
        with open(m / "c", "wb") as d:
            assert copy_range(fd, d.fileno(), len(data), 0, 0) == len(data)
        assert (m / "c").read_bytes() == bytes(data)
        # within one file: forward, past the end
        assert copy_range(fd, fd, 300000, 10, len(data) + 3) == 300000
        data.extend(b"\0" * 3)
        data.extend(data[10:300010])
        assert os.pread(fd, len(data) + 10, 0) == bytes(data)
        assert os.fstat(fd).st_size == len(data)
    finally:
        os.close(fd)
    m.close()
    check_clean(st)


def test_copy_errors(st, mounts):
    m = mount(mounts, st)
    (m / "f").write_bytes(rnd(200000, SEED + 4))
    (m / "dir").mkdir()
    fd = os.open(m / "f", os.O_RDWR)
    try:
        with pytest.raises(OSError) as ei:
            os.copy_file_range(fd, fd, 100000, 0, 50000)
        assert ei.value.errno == errno.EINVAL, "overlapping ranges in one file"
        # past the end of the source: nothing copied
        assert os.copy_file_range(fd, fd, 100, 200000, 300000) == 0
        assert os.copy_file_range(fd, fd, 100, 10 ** 9, 300000) == 0
        assert os.fstat(fd).st_size == 200000
        with pytest.raises(OSError) as ei:
            os.copy_file_range(fd, fd, 100, 0, 1 << 60)
        assert ei.value.errno == errno.EFBIG, "a copy past the largest file"
        # short copy at the end
        with open(m / "g", "wb") as g:
            assert os.copy_file_range(fd, g.fileno(), 1000, 199500, 0) == 500
        dfd = os.open(m / "dir", os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(OSError) as ei:
                os.copy_file_range(dfd, fd, 10, 0, 0)
            assert ei.value.errno in (errno.EISDIR, errno.EBADF, errno.EINVAL)
        finally:
            os.close(dfd)
    finally:
        os.close(fd)
    name = snap(st)
    with pytest.raises(OSError) as ei:
        os.open(m / ".snapshots" / name / "g", os.O_WRONLY)
    assert ei.value.errno == errno.EROFS


def test_restore_from_snapshot_with_cp(st, mounts):
    """cp (coreutils) out of a snapshot uses copy_file_range: the restored
    tree is identical and costs no stored bytes; it survives the deletion
    of the original, the prune of the snapshot and GC."""
    m = mount(mounts, st)
    files = {}
    (m / "site").mkdir()
    for i in range(6):
        d = rnd(random.Random(SEED + i).randint(1, 1500000), SEED + 10 + i)
        files["site/f%d" % i] = d
        (m / "site" / ("f%d" % i)).write_bytes(d)
    files["site/patched"] = patched(m / "site/patched", rnd(700000, SEED + 40), SEED + 41)
    xs, name, before = snapshot_and_lose(st, m, "site/patched")
    strace = shutil.which("strace")
    cmd = ["cp", "-a", str(m / ".snapshots" / name / "site"), str(m / "site")]
    if strace:
        cmd = [strace, "-f", "-e", "trace=copy_file_range", "-o", str(m.path.parent / "st")] + cmd
    subprocess.run(cmd, check=True, timeout=120)
    if strace:
        log = (m.path.parent / "st").read_text()
        assert "copy_file_range(" in log and "= -1" not in log, log[-2000:]
    assert_restored(st, m.path, files, xs, before, "cp from the snapshot")
    later = snap(st, scheduled=True)
    m.close()
    check_clean(st)
    # the snapshot the copies came from goes, with GC: they keep the chunks
    tresor("prune", st.path, "vol", "--keep-last", "1", "--passphrase-file", st.passfile,
           env=tenv(), timeout=300, check=True)
    names = [x["name"] for x in snap_list(st)]
    assert names == [later], names
    check_clean(st)
    m = mount(mounts, st)
    for k, v in files.items():
        assert (m / k).read_bytes() == v, k + " after prune"


def test_cp_a_big_tree_from_snapshot(make_store, mounts, tmp):
    """The issue's figure: a tree of TRESOR_SHARE_MB MiB (64 by default;
    2048 for the full-size run) copied out of a snapshot with plain
    `cp -a`, default chunk sizes: byte-identical, stored bytes grown by
    less than 1 MB.  tests/bench/bench_share.py times it."""
    mb = int(os.environ.get("TRESOR_SHARE_MB", "64"))
    st = make_store()
    m = mount(mounts, st)
    local = tmp / "local"
    for i in range(8):
        (local / ("site-%d" % (i % 3))).mkdir(parents=True, exist_ok=True)
        with open(local / ("site-%d" % (i % 3)) / ("plan-%d.dwg" % i), "wb") as f:
            for _ in range(mb // 8):
                f.write(os.urandom(1 << 20))
    subprocess.run(["cp", "-a", str(local), str(m / "tree")], check=True, timeout=3600)
    commit(m / "tree")
    name = snap(st)
    before = stored(st)[0]
    subprocess.run(["cp", "-a", str(m / ".snapshots" / name / "tree"), str(m / "restored")],
                   check=True, timeout=3600)
    commit(m / "restored")
    grew = stored(st)[0] - before
    assert grew < 1000000, "cp -a of %d MiB out of a snapshot stored %d bytes" % (mb, grew)
    for root, _, fs in os.walk(local):
        for f in fs:
            rel = os.path.relpath(os.path.join(root, f), local)
            assert filecmp.cmp(os.path.join(root, f), m / "restored" / rel, shallow=False), rel
    m.close()
    check_clean(st)


# --------------------------------------------------------------------------
# fallocate and SEEK_DATA / SEEK_HOLE
# --------------------------------------------------------------------------
def seek(fd, off, whence):
    try:
        return os.lseek(fd, off, whence)
    except OSError as e:
        return -e.errno


def test_fallocate_and_seek(st, mounts):
    m = mount(mounts, st)
    fd = os.open(m / "sp", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        before, _ = stored(st)
        os.posix_fallocate(fd, 0, 8 << 20)
        assert os.fstat(fd).st_size == 8 << 20
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 16 << 20)
        assert os.fstat(fd).st_size == 8 << 20
        os.fsync(fd)
        assert stored(st)[0] - before < 4096, "fallocate stored zeros"
        assert os.pread(fd, 4096, 5 << 20) == b"\0" * 4096
        # all hole: no data, a hole at 0
        assert seek(fd, 0, os.SEEK_DATA) == -errno.ENXIO
        assert seek(fd, 0, os.SEEK_HOLE) == 0
        a = rnd(300000, SEED + 20)
        b = rnd(200000, SEED + 21)
        os.pwrite(fd, a, 1 << 20)
        os.pwrite(fd, b, 6 << 20)
        model = bytearray(8 << 20)
        model[1 << 20:(1 << 20) + len(a)] = a
        model[6 << 20:(6 << 20) + len(b)] = b
        assert seek(fd, 0, os.SEEK_DATA) == 1 << 20
        assert seek(fd, 1 << 20, os.SEEK_HOLE) == (1 << 20) + len(a)
        assert seek(fd, (1 << 20) + len(a), os.SEEK_DATA) == 6 << 20
        assert seek(fd, 6 << 20, os.SEEK_HOLE) == (6 << 20) + len(b)
        assert seek(fd, (6 << 20) + len(b), os.SEEK_DATA) == -errno.ENXIO
        assert seek(fd, 8 << 20, os.SEEK_HOLE) == -errno.ENXIO
        assert seek(fd, (8 << 20) - 1, os.SEEK_HOLE) == (8 << 20) - 1
        # punch a hole into the middle of the first piece
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (1 << 20) + 1000, 100000)
        model[(1 << 20) + 1000:(1 << 20) + 101000] = b"\0" * 100000
        assert seek(fd, 1 << 20, os.SEEK_HOLE) == (1 << 20) + 1000
        assert seek(fd, (1 << 20) + 1000, os.SEEK_DATA) == (1 << 20) + 101000
        # zero a range that reaches past the end: the size grows
        fallocate(fd, FALLOC_FL_ZERO_RANGE, (6 << 20) + 100, 3 << 20)
        model[(6 << 20) + 100:] = b"\0" * (len(model) - (6 << 20) - 100)
        model.extend(b"\0" * ((6 << 20) + 100 + (3 << 20) - len(model)))
        assert os.fstat(fd).st_size == len(model)
        fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, len(model) - 10, 100)
        assert os.fstat(fd).st_size == len(model)
        assert os.pread(fd, len(model) + 10, 0) == bytes(model)
        with pytest.raises(OSError) as ei:
            fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10)
        assert ei.value.errno == errno.EOPNOTSUPP
    finally:
        os.close(fd)
    name = snap(st)
    sfd = os.open(m / ".snapshots" / name / "sp", os.O_RDONLY)
    try:
        assert seek(sfd, 0, os.SEEK_DATA) == 1 << 20
        assert seek(sfd, 1 << 20, os.SEEK_HOLE) == (1 << 20) + 1000
        assert os.pread(sfd, len(model) + 10, 0) == bytes(model)
        with pytest.raises(OSError) as ei:
            fallocate(sfd, 0, 0, 10)
        assert ei.value.errno in (errno.EBADF, errno.EROFS)
    finally:
        os.close(sfd)
    m.close()
    check_clean(st)
    m = mount(mounts, st)
    assert (m / "sp").read_bytes() == bytes(model)


def test_cp_sparse_file_keeps_holes(st, mounts):
    """cp sees the holes through SEEK_DATA/SEEK_HOLE and copies the data
    by copy_file_range: the copy is equal and as sparse."""
    m = mount(mounts, st)
    with open(m / "sparse", "wb") as f:
        f.truncate(20 << 20)
        f.seek(3 << 20)
        f.write(rnd(500000, SEED + 30))
        f.seek(15 << 20)
        f.write(rnd(100000, SEED + 31))
    subprocess.run(["cp", str(m / "sparse"), str(m / "copy")], check=True, timeout=60)
    assert (m / "copy").read_bytes() == (m / "sparse").read_bytes()
    assert os.stat(m / "copy").st_blocks * 512 < 2 << 20, os.stat(m / "copy")
    m.close()
    check_clean(st)


# --------------------------------------------------------------------------
# rename flags
# --------------------------------------------------------------------------
def test_rename_exchange_and_noreplace(st, mounts):
    m = mount(mounts, st)
    (m / "d1").mkdir()
    (m / "d2").mkdir()
    (m / "d1" / "sub").mkdir()
    (m / "d1" / "a").write_bytes(b"A")
    (m / "d2" / "b").write_bytes(b"B")
    ia, ib = os.stat(m / "d1/a").st_ino, os.stat(m / "d2/b").st_ino
    renameat2(m / "d1/a", m / "d2/b", RENAME_EXCHANGE)
    assert (m / "d1/a").read_bytes() == b"B" and (m / "d2/b").read_bytes() == b"A"
    assert os.stat(m / "d1/a").st_ino == ib and os.stat(m / "d2/b").st_ino == ia
    # a directory with a file, across parents: link counts follow
    n1, n2 = os.stat(m / "d1").st_nlink, os.stat(m / "d2").st_nlink
    renameat2(m / "d1/sub", m / "d2/b", RENAME_EXCHANGE)
    assert (m / "d2/b").is_dir() and (m / "d1/sub").read_bytes() == b"A"
    assert os.stat(m / "d1").st_nlink == n1 - 1 and os.stat(m / "d2").st_nlink == n2 + 1
    with pytest.raises(OSError) as ei:
        renameat2(m / "d1/a", m / "d1/nothing", RENAME_EXCHANGE)
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(OSError) as ei:
        renameat2(m / "d1/a", m / "d1/sub", RENAME_NOREPLACE)
    assert ei.value.errno == errno.EEXIST
    renameat2(m / "d1/a", m / "d1/new", RENAME_NOREPLACE)
    assert (m / "d1/new").read_bytes() == b"B"
    name = snap(st)
    with pytest.raises(OSError) as ei:
        renameat2(m / ".snapshots" / name / "d1/new", m / ".snapshots" / name / "d1/sub",
                  RENAME_EXCHANGE)
    assert ei.value.errno == errno.EROFS
    m.close()
    check_clean(st)
    m = mount(mounts, st)
    assert sorted(os.listdir(m / "d1")) == ["new", "sub"]
    assert sorted(os.listdir(m / "d2")) == ["b"]
    assert (m / "d1/sub").read_bytes() == b"A" and (m / "d2/b").is_dir()
    assert os.stat(m / "d1").st_nlink == 2 and os.stat(m / "d2").st_nlink == 3


# --------------------------------------------------------------------------
# crashes
# --------------------------------------------------------------------------
def dead(m):
    """The daemon died by itself (a crash point): detach its mount."""
    assert wait_for(lambda: m.proc.poll() is not None, 20), "the daemon did not die"
    fusermount_u(m.path, lazy=True)
    assert wait_for(lambda: not mounted(m.path), 10)
    m.active = False


def blocks_from(got, versions, bs=4096):
    """Block numbers of got that equal the block of none of versions."""
    bad = []
    for i in range(0, max(len(v) for v in versions), bs):
        if not any(got[i:i + bs] == v[i:i + bs] for v in versions):
            bad.append(i // bs)
    return bad


def test_copy_crash(st, mounts):
    """A crash leaves the destination with all of a copy or none of it,
    and the store clean: before the commit (crash point inside the copy),
    after an fsync (kill -9), and at a random moment of a run of copies."""
    m = mount(mounts, st)
    old = rnd(2 << 20, SEED + 50)
    s1 = rnd(2 << 20, SEED + 51)
    s2 = patched(m / "s2", rnd(2 << 20, SEED + 52), SEED + 53)
    (m / "d").write_bytes(old)
    (m / "s1").write_bytes(s1)
    commit(m / "d")
    m.close()
    off_s, off_d, n = 5000, 70001, (1 << 20) + 333

    def copied(src):
        d = bytearray(old)
        d[off_d:off_d + n] = src[off_s:off_s + n]
        return bytes(d)

    # crash point: mapped in the open transaction, not committed
    m = mounts.mount(st, "vol", extra_env={"TZ": "Europe/Berlin", "TRESOR_CRASH_AT": "copy"})
    s, d = os.open(m / "s1", os.O_RDONLY), os.open(m / "d", os.O_RDWR)
    with pytest.raises(OSError) as ei:
        copy_range(s, d, n, off_s, off_d)
    assert ei.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)  # the daemon died
    for fd in (s, d):
        try:
            os.close(fd)
        except OSError:
            pass  # the mount is dead
    dead(m)
    check_clean(st)
    m = mount(mounts, st)
    assert (m / "d").read_bytes() == old, "an uncommitted copy survived the crash"
    # fsynced: the copy survives kill -9
    with open(m / "s1", "rb") as s, open(m / "d", "r+b") as d:
        assert copy_range(s.fileno(), d.fileno(), n, off_s, off_d) == n
        os.fsync(d.fileno())
    m.kill9()
    check_clean(st)
    m = mount(mounts, st)
    assert (m / "d").read_bytes() == copied(s1)
    # kill -9 in a run of copies from two sources
    rng = random.Random(SEED)
    timer = threading.Timer(rng.uniform(0.3, 1.5), lambda: os.kill(m.pid, signal.SIGKILL))
    timer.start()
    fds = [os.open(m / "s1", os.O_RDONLY), os.open(m / "s2", os.O_RDONLY),
           os.open(m / "d", os.O_RDWR)]
    copies = 0
    try:
        while copies < 100000:
            copy_range(fds[copies % 2], fds[2], n, off_s, off_d)
            copies += 1
    except OSError:
        pass
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    timer.cancel()
    if m.proc.poll() is None:
        m.kill9()
    else:
        dead(m)
    check_clean(st)
    m = mount(mounts, st)
    got = (m / "d").read_bytes()
    assert len(got) == len(old)
    assert copies > 2, "only %d copies before the kill" % copies
    # one copy is one transaction: the file is one of the two copies whole
    bad = blocks_from(got, [copied(s1), copied(s2)])
    assert not bad, "blocks %s of the destination hold neither copy" % bad[:10]
    assert got in (copied(s1), copied(s2)), "a copy was torn by the crash"


# --------------------------------------------------------------------------
# tresor restore into the mounted volume
# --------------------------------------------------------------------------
def test_restore_into_mount_shares(st, mounts, tmp):
    """`tresor restore` into the volume's own mount copies by sharing
    extents (the patched file's extents are the original's, no stored
    bytes grow); into another directory it copies bytes as before."""
    m = mount(mounts, st)
    (m / "site" / "plans").mkdir(parents=True)
    files = {"site/plans/p%d" % i: rnd(200000 * (i + 1), SEED + 60 + i) for i in range(4)}
    files["site/empty"] = b""
    for k, v in files.items():
        (m / k).write_bytes(v)
    files["site/patched"] = patched(m / "site/patched", rnd(900000, SEED + 70), SEED + 71)
    os.symlink("plans/p0", m / "site/link")
    xs, name, before = snapshot_and_lose(st, m, "site/patched")
    p = tresor("restore", st.path, "vol", name, "site", m / "back", "--passphrase-file",
               st.passfile, env=tenv(), timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert_restored(st, m / "back", files, xs, before, "restore into the mount")
    assert os.readlink(m / "back/site/link") == "plans/p0"
    # the whole volume, and elsewhere: bytes
    p = tresor("restore", st.path, "vol", name, "/", tmp / "outside", "--passphrase-file",
               st.passfile, env=tenv(), timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    for k, v in files.items():
        assert (tmp / "outside" / k).read_bytes() == v, k
    m.close()
    check_clean(st)


def test_writeback_mount(st, mounts):
    """-o writeback: the kernel's dirty pages reach the daemon before a
    copy (the kernel flushes the ranges), and seeks are answered by the
    kernel as all data (it may hold data the daemon has not seen)."""
    m = mount(mounts, st, opts=["writeback"])
    data = rnd(1 << 20, SEED + 80)
    fd = os.open(m / "w", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 4 << 20)     # a hole before it, pages dirty
        with open(m / "c", "wb") as d:
            assert copy_range(fd, d.fileno(), 5 << 20, 0, 0) == 5 << 20
        assert (m / "c").read_bytes() == bytes(4 << 20) + data
        assert seek(fd, 0, os.SEEK_DATA) == 0
        assert seek(fd, 0, os.SEEK_HOLE) == 5 << 20
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4 << 20, 4096)
        assert os.pread(fd, 8192, 4 << 20) == bytes(4096) + data[4096:8192]
    finally:
        os.close(fd)
    m.close()
    check_clean(st)


def test_copy_across_volumes(make_store, mounts):
    """Two volumes are two mounts: the daemon never sees the copy (the
    kernel copies the bytes itself, or says EXDEV and cp does), and dedup
    stores them once."""
    st = make_store(chunks=CHUNKS, volumes=("vol", "other"))
    a = mounts.mount(st, "vol")
    b = mounts.mount(st, "other")
    data = rnd(1 << 20, SEED + 90)
    (a / "f").write_bytes(data)
    commit(a / "f")
    before = stored(st)[0]
    with open(a / "f", "rb") as s, open(b / "g", "wb") as d:
        try:
            assert copy_range(s.fileno(), d.fileno(), len(data)) == len(data)
        except OSError as e:
            assert e.errno == errno.EXDEV, e
    subprocess.run(["cp", str(a / "f"), str(b / "h")], check=True, timeout=60)
    assert (b / "h").read_bytes() == data
    commit(b / "h")
    assert stored(st)[0] - before < 4096, "a byte copy across volumes was not deduplicated"
    a.close()
    b.close()
    check_clean(st)
