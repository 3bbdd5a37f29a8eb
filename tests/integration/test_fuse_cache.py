"""What the kernel may cache of a mount, and when the daemon makes it forget
(issue 15): entries and attributes are cached for -o cache_timeout, listings
carry attributes (READDIRPLUS), and whatever changes without a FUSE request
the kernel saw is invalidated at once, not after the timeout.

Every mount here caches for an hour (cache_timeout=3600), so a test that
sees a change did not see it because a cache expired.  The daemon's own
count of LOOKUP requests (control socket, "opstats") shows that the cache
is really used: a second stat of a name costs no request.
"""

import hashlib
import os
import socket
import time

from conftest import tresor
from test_snapshots import mount, restore, snap, tenv

CACHED = ("cache_timeout=3600", "list_snapshots")


def control(store, line):
    """One request to the control socket of the store's mounted volume
    (control.c: abstract socket named after the store's real path)."""
    h = hashlib.sha256(os.path.realpath(str(store.path)).encode()).hexdigest()[:32]
    for vol in range(1, 9):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect("\0tresor-%s-%d" % (h, vol))
        except OSError:
            s.close()
            continue
        with s:
            s.sendall(line.encode() + b"\n")
            out = b""
            while not out.endswith(b"\n"):
                b = s.recv(4096)
                if not b:
                    break
                out += b
        reply = out.decode().strip()
        assert reply.startswith("ok"), "control %r: %r" % (line, reply)
        return reply[2:].strip()
    raise AssertionError("no daemon answers on the control socket of %s" % store.path)


def op_count(store, name):
    """How many requests of op name the daemon has served.  It counts an
    operation after replying to it: wait until the count stands still."""
    def once():
        for field in control(store, "opstats").split():
            parts = field.split(":")
            if parts[0] == name:
                return int(parts[1])
        return 0
    last = once()
    while True:
        time.sleep(0.05)
        now = once()
        if now == last:
            return now
        last = now


def exists(path):
    try:
        os.stat(path)
        return True
    except FileNotFoundError:
        return False


def test_cache_is_used(store, mounts):
    """The premise of the tests below: a second stat of a name, and a stat
    of what a listing returned, cost no LOOKUP."""
    m = mount(mounts, store, opts=CACHED)
    os.makedirs(m / "d")
    for i in range(50):
        (m / "d" / ("f%02d" % i)).write_bytes(b"x" * i)
    assert m.unmount() == []
    m = mount(mounts, store, opts=CACHED)
    before = op_count(store, "lookup")
    names = sorted(os.listdir(m / "d"))
    sizes = {n: os.stat(m / "d" / n).st_size for n in names}
    assert sizes == {"f%02d" % i: i for i in range(50)}
    # the listing brought every entry's attributes: no LOOKUP per name
    assert op_count(store, "lookup") - before <= 1, "stat after a listing looked names up"
    mid = op_count(store, "lookup")
    for n in names:
        os.stat(m / "d" / n)
    assert op_count(store, "lookup") == mid, "a second stat asked the daemon again"
    # a missing name is cached too
    assert not exists(m / "d" / "nope")
    n0 = op_count(store, "lookup")
    assert not exists(m / "d" / "nope")
    assert op_count(store, "lookup") == n0, "a negative entry was not cached"


def test_readdirplus_attributes(store, mounts):
    """A listing's attributes (READDIRPLUS, cold) are the ones stat gives,
    in the live tree, in .snapshots and in a snapshot."""
    m = mount(mounts, store, opts=CACHED)
    os.makedirs(m / "a" / "b")
    (m / "a" / "f").write_bytes(b"hello")
    os.symlink("f", m / "a" / "l")
    os.chmod(m / "a" / "f", 0o640)
    os.utime(m / "a" / "f", ns=(1_600_000_000_000_000_000, 1_650_000_000_123_456_789))
    name = snap(store)
    want = {}
    for root in (m / "a", m / ".snapshots" / name / "a"):
        got = {}
        with os.scandir(root) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                got[e.name] = (e.inode(), st.st_mode, st.st_size, st.st_mtime_ns,
                               st.st_nlink, st.st_uid)
        for n, v in got.items():
            st = os.lstat(root / n)
            assert v == (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_nlink,
                         st.st_uid), "%s/%s: listing and stat differ" % (root, n)
        want.setdefault("x", got)
        assert {n: v[1:] for n, v in got.items()} == \
            {n: v[1:] for n, v in want["x"].items()}
    with os.scandir(m / ".snapshots") as it:
        ents = {e.name: e.stat() for e in it}
    assert name in ents and ents[name].st_mode & 0o170000 == 0o040000


def test_new_snapshot_appears_at_once(store, mounts):
    """A name looked up in .snapshots before the snapshot exists is cached
    as missing; the snapshot the daemon makes is there at once."""
    m = mount(mounts, store, opts=CACHED)
    (m / "f").write_bytes(b"one")
    target = m / ".snapshots" / "2030-01-01"
    assert not exists(target)
    n0 = op_count(store, "lookup")
    assert not exists(target)
    assert op_count(store, "lookup") == n0, "the missing name was not cached"
    name = snap(store, when="2030-01-01T12:00:00")
    assert name == "2030-01-01"
    assert exists(target), "a new snapshot stayed hidden behind a cached negative entry"
    assert (target / "f").read_bytes() == b"one"
    assert name in os.listdir(m / ".snapshots")


def test_pruned_snapshot_goes_at_once(store, mounts):
    """prune deletes snapshots behind the daemon; it tells the daemon, and
    the kernel forgets the names at once."""
    m = mount(mounts, store, opts=CACHED)
    (m / "f").write_bytes(b"data")
    names = [snap(store, when="2030-02-%02dT12:00:00" % d, scheduled=True) for d in (1, 2, 3)]
    for n in names:
        assert (m / ".snapshots" / n / "f").read_bytes() == b"data"
    n0 = op_count(store, "lookup")
    for n in names:
        os.stat(m / ".snapshots" / n)
    assert op_count(store, "lookup") == n0, "snapshot names were not cached"
    p = tresor("prune", store.path, "vol", "--keep-last", "1", "--passphrase-file",
               store.passfile, env=tenv(), timeout=300)
    assert p.returncode == 0, p.stderr
    assert not exists(m / ".snapshots" / names[0]), "a pruned snapshot is still there"
    assert not exists(m / ".snapshots" / names[1])
    assert (m / ".snapshots" / names[2] / "f").read_bytes() == b"data"
    assert sorted(os.listdir(m / ".snapshots")) == [names[2]]


def test_restore_into_mount_shows_at_once(store, mounts):
    """A file stat'ed through the mount, then restored over from a snapshot
    into the mount: the next stat and read show the restored file."""
    m = mount(mounts, store, opts=CACHED)
    (m / "d").mkdir()
    (m / "d" / "f").write_bytes(b"old contents\n")
    os.utime(m / "d" / "f", ns=(1_500_000_000_000_000_000,) * 2)
    name = snap(store)
    (m / "d" / "f").write_bytes(b"newer and longer contents\n")
    st = os.stat(m / "d" / "f")
    assert st.st_size == 26
    restore(store, name, "d", m)
    st = os.stat(m / "d" / "f")
    assert st.st_size == 13 and st.st_mtime_ns == 1_500_000_000_000_000_000
    assert (m / "d" / "f").read_bytes() == b"old contents\n"


def test_hard_link_second_path(store, mounts):
    """A change through one name of a file shows through its other name."""
    m = mount(mounts, store, opts=CACHED)
    (m / "a").write_bytes(b"1234")
    st = os.stat(m / "a")
    assert st.st_nlink == 1
    os.link(m / "a", m / "b")
    assert os.stat(m / "a").st_nlink == 2
    with open(m / "b", "ab") as f:
        f.write(b"5678")
    time.sleep(0.01)
    assert os.stat(m / "a").st_size == 8
    assert (m / "a").read_bytes() == b"12345678"
    os.chmod(m / "b", 0o600)
    assert os.stat(m / "a").st_mode & 0o777 == 0o600
    os.unlink(m / "b")
    assert os.stat(m / "a").st_nlink == 1


def test_reads_use_the_extent_map(make_store, mounts):
    """Reads of an open file look its extents up once, and see every
    change made since (overwrite, append, truncate), live and in a
    snapshot."""
    store = make_store(chunks=(4096, 16384, 65536))
    m = mount(mounts, store, opts=CACHED)
    data = bytearray(os.urandom(3 << 20))
    (m / "big").write_bytes(data)
    name = snap(store)
    r0, l0 = map(int, control(store, "reads").split())
    with open(m / "big", "rb", buffering=0) as f:
        got = bytearray()
        while True:
            b = f.read(65536)
            if not b:
                break
            got += b
    assert got == data
    r1, l1 = map(int, control(store, "reads").split())
    assert r1 - r0 >= 3 and l1 - l0 == 1, "reads %d, maps built %d" % (r1 - r0, l1 - l0)
    # changes through an open handle, read back through it (page cache off)
    fd = os.open(m / "big", os.O_RDWR)
    try:
        os.pwrite(fd, b"X" * 100000, 1 << 20)
        data[1 << 20:(1 << 20) + 100000] = b"X" * 100000
        os.fsync(fd)
        os.ftruncate(fd, 2 << 20)
        del data[2 << 20:]
        os.pwrite(fd, b"tail", 2 << 20)
        data += b"tail"
        os.fsync(fd)
    finally:
        os.close(fd)
    # a fresh open reads what the index has now (the kernel's pages of
    # the file are dropped at open: keep_cache is off)
    assert (m / "big").read_bytes() == bytes(data)
    snapdata = (m / ".snapshots" / name / "big").read_bytes()
    assert len(snapdata) == 3 << 20 and snapdata[:1 << 20] == bytes(data[:1 << 20])



def test_set_snapshot_and_set_prune_at_once(make_store, mounts):
    """A snapshot set is recorded by the CLI, not by the members' daemons:
    it tells each of them, and every member's kernel shows the new name at
    once (looked up before as missing); a set prune takes it away at once."""
    st = make_store(volumes=("db", "files"))
    ms = [mount(mounts, st, v, opts=CACHED) for v in ("db", "files")]
    for m in ms:
        (m / "f").write_bytes(b"one")
    targets = [m / ".snapshots" / "2030-03-01" for m in ms]
    for t in targets:
        assert not exists(t) and not exists(t)
    tresor("snapshot", "create", st.path, "--set", "odoo", "db", "files",
           "--time", "2030-03-01T12:00:00", "--scheduled", env=tenv(), check=True)
    for t in targets:
        assert exists(t), "a set's snapshot stayed hidden behind a cached negative entry"
        assert (t / "f").read_bytes() == b"one"
    tresor("snapshot", "create", st.path, "--set", "odoo", "--time", "2030-03-02T12:00:00",
           "--scheduled", env=tenv(), check=True)
    for t in targets:
        os.stat(t)
    p = tresor("prune", st.path, "--set", "odoo", "--keep-last", "1", "--passphrase-file",
               st.passfile, env=tenv(), timeout=300)
    assert p.returncode == 0, p.stderr
    for m, t in zip(ms, targets):
        assert not exists(t), "a pruned set snapshot is still there"
        assert os.listdir(m / ".snapshots") == ["2030-03-02"]
