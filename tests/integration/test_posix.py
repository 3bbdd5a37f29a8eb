"""POSIX behaviour of a mounted volume, compared with what ext4 does."""

import errno
import hashlib
import os
import stat
import time

GiB = 1024 ** 3
MiB = 1024 ** 2


def rnd(n, seed):
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


def errno_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except OSError as e:
        return e.errno
    return 0


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
def test_write_read_offsets(mnt):
    p = mnt / "f"
    model = bytearray()
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for i, (off, n) in enumerate([(0, 100), (50, 4096), (MiB + 13, 70000),
                                      (3, 1), (MiB - 5, 10), (200000, 300000),
                                      (0, 0), (2 * MiB + 4095, 4097)]):
            data = rnd(n, i)
            assert os.pwrite(fd, data, off) == n
            if len(model) < off + n:
                model.extend(b"\0" * (off + n - len(model)))
            model[off:off + n] = data
        assert os.fstat(fd).st_size == len(model)
        assert os.pread(fd, len(model) + 100, 0) == bytes(model)
        # unaligned reads
        for off, n in [(1, 10), (MiB + 10, 100), (len(model) - 3, 10), (len(model) + 5, 10)]:
            assert os.pread(fd, n, off) == bytes(model[off:off + n])
    finally:
        os.close(fd)
    assert p.read_bytes() == bytes(model)
    assert os.stat(p).st_size == len(model)


def test_append_mode(mnt):
    p = mnt / "log"
    with open(p, "ab") as f:
        f.write(b"one\n")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"two\n")
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"three\n")  # O_APPEND ignores the seek
    os.close(fd)
    assert p.read_bytes() == b"one\ntwo\nthree\n"


def test_sparse_file(mnt):
    p = mnt / "sparse"
    with open(p, "wb") as f:
        f.seek(10 * MiB)
        f.write(b"end")
    st = os.stat(p)
    assert st.st_size == 10 * MiB + 3
    with open(p, "rb") as f:
        assert f.read(10 * MiB) == b"\0" * (10 * MiB)
        assert f.read() == b"end"
    assert st.st_blocks * 512 < 2 * MiB, "sparse 10 MiB file uses %d blocks" % st.st_blocks


def test_large_sparse_file_over_4gib(mnt, mounts, store):
    p = mnt / "big"
    off = int(4.5 * GiB)
    with open(p, "wb") as f:
        f.seek(off)
        f.write(b"beyond four gib")
        f.truncate(5 * GiB)
    st = os.stat(p)
    assert st.st_size == 5 * GiB
    assert st.st_blocks * 512 < 64 * MiB, "5 GiB sparse file takes %d blocks" % st.st_blocks
    with open(p, "rb") as f:
        f.seek(off)
        assert f.read(15) == b"beyond four gib"
        f.seek(GiB)
        assert f.read(4096) == b"\0" * 4096
        f.seek(5 * GiB - 10)
        assert f.read(100) == b"\0" * 10
    mnt.close()
    m = mounts.mount(store, "vol")
    with open(m / "big", "rb") as f:
        f.seek(off)
        assert f.read(15) == b"beyond four gib"
        f.seek(off - 4096)
        assert f.read(4096) == b"\0" * 4096
    assert os.stat(m / "big").st_size == 5 * GiB


def test_truncate(mnt):
    p = mnt / "t"
    data = rnd(3 * MiB, 7)
    p.write_bytes(data)
    os.truncate(p, MiB + 17)
    assert os.stat(p).st_size == MiB + 17
    assert p.read_bytes() == data[:MiB + 17]
    os.truncate(p, 2 * MiB)  # grow: the cut part must come back as zeros
    assert p.read_bytes() == data[:MiB + 17] + b"\0" * (MiB - 17)
    with open(p, "r+b") as f:
        f.truncate(10)
        f.seek(0)
        assert f.read() == data[:10]
        f.truncate(0)
        assert os.fstat(f.fileno()).st_size == 0
        f.seek(0)
        f.write(b"xyz")
    assert p.read_bytes() == b"xyz"
    p.write_bytes(data)
    with open(p, "wb") as f:  # O_TRUNC
        assert os.fstat(f.fileno()).st_size == 0
    assert p.read_bytes() == b""


def test_fsync_and_fdatasync(mnt):
    fd = os.open(mnt / "s", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"x" * 100000)
    os.fsync(fd)
    os.write(fd, b"y")
    os.fdatasync(fd)
    os.close(fd)
    dfd = os.open(mnt.path, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    assert (mnt / "s").read_bytes() == b"x" * 100000 + b"y"


def test_unlink_open_file(mnt):
    p = mnt / "gone"
    data = rnd(500000, 3)
    p.write_bytes(data)
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        assert not p.exists()
        assert "gone" not in os.listdir(mnt.path)
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, len(data), 0) == data
        os.pwrite(fd, b"still writable", 10)
        assert os.pread(fd, 14, 10) == b"still writable"
        # a new file of the same name is a different file
        (mnt / "gone").write_bytes(b"new")
        assert os.pread(fd, 4, 0) == data[:4]
    finally:
        os.close(fd)
    assert (mnt / "gone").read_bytes() == b"new"


# --------------------------------------------------------------------------
# namespace
# --------------------------------------------------------------------------
def test_rename(mnt):
    (mnt / "a").write_bytes(b"A")
    (mnt / "b").write_bytes(b"B" * 10000)
    os.mkdir(mnt / "d1")
    os.mkdir(mnt / "d2")
    os.rename(mnt / "a", mnt / "a2")
    assert sorted(os.listdir(mnt.path)) == ["a2", "b", "d1", "d2"]
    ino_a = os.stat(mnt / "a2").st_ino
    # over an existing file
    os.rename(mnt / "a2", mnt / "b")
    assert (mnt / "b").read_bytes() == b"A"
    assert os.stat(mnt / "b").st_ino == ino_a
    assert not (mnt / "a2").exists()
    # across directories
    os.rename(mnt / "b", mnt / "d1" / "moved")
    assert (mnt / "d1" / "moved").read_bytes() == b"A"
    (mnt / "d2" / "x").write_bytes(b"X")
    os.rename(mnt / "d1" / "moved", mnt / "d2" / "x")
    assert (mnt / "d2" / "x").read_bytes() == b"A"
    assert os.listdir(mnt / "d1") == []
    # a directory with content, across parents
    os.makedirs(mnt / "tree" / "sub")
    (mnt / "tree" / "sub" / "f").write_bytes(b"deep")
    os.rename(mnt / "tree", mnt / "d1" / "tree2")
    assert (mnt / "d1" / "tree2" / "sub" / "f").read_bytes() == b"deep"
    assert not (mnt / "tree").exists()
    # over an empty directory, and not over a non-empty one
    os.mkdir(mnt / "empty")
    os.rename(mnt / "d1" / "tree2", mnt / "empty")
    assert (mnt / "empty" / "sub" / "f").read_bytes() == b"deep"
    assert errno_of(os.rename, mnt / "d1", mnt / "empty") in (errno.ENOTEMPTY, errno.EEXIST)
    # file over directory and directory over file fail
    assert errno_of(os.rename, mnt / "d2" / "x", mnt / "d1") == errno.EISDIR
    assert errno_of(os.rename, mnt / "d1", mnt / "d2" / "x") == errno.ENOTDIR
    # into its own subdirectory
    assert errno_of(os.rename, mnt / "empty", mnt / "empty" / "sub" / "inside") == errno.EINVAL


def test_rename_open_file_keeps_data(mnt):
    p = mnt / "open"
    with open(p, "w+b") as f:
        f.write(b"before")
        f.flush()
        os.rename(p, mnt / "renamed")
        f.write(b"-after")
        f.flush()
    assert (mnt / "renamed").read_bytes() == b"before-after"


def test_hard_links(mnt):
    a, b = mnt / "orig", mnt / "link"
    a.write_bytes(b"shared")
    os.mkdir(mnt / "sub")
    os.link(a, b)
    os.link(a, mnt / "sub" / "link2")
    sa, sb = os.stat(a), os.stat(b)
    assert sa.st_ino == sb.st_ino
    assert sa.st_nlink == 3
    with open(b, "r+b") as f:
        f.write(b"SH")
    assert a.read_bytes() == b"SHared"
    assert (mnt / "sub" / "link2").read_bytes() == b"SHared"
    os.unlink(mnt / "sub" / "link2")
    assert os.stat(a).st_nlink == 2
    os.chmod(b, 0o600)
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o600
    os.unlink(a)
    assert os.stat(b).st_nlink == 1
    assert b.read_bytes() == b"SHared"
    assert errno_of(os.link, mnt / "sub", mnt / "sublink") == errno.EPERM
    assert errno_of(os.link, b, mnt / "sub") == errno.EEXIST


def test_symlinks(mnt):
    (mnt / "target").write_bytes(b"T")
    os.symlink("target", mnt / "rel")
    os.symlink("/nonexistent/abs/path", mnt / "dangling")
    long_target = "x/" * 1000 + "y"
    os.symlink(long_target, mnt / "long")
    assert os.readlink(mnt / "rel") == "target"
    assert os.readlink(mnt / "dangling") == "/nonexistent/abs/path"
    assert os.readlink(mnt / "long") == long_target
    st = os.lstat(mnt / "rel")
    assert stat.S_ISLNK(st.st_mode)
    assert st.st_size == len("target")
    assert (mnt / "rel").read_bytes() == b"T"
    assert not os.path.exists(mnt / "dangling")
    assert os.path.lexists(mnt / "dangling")
    assert errno_of(os.symlink, "t", mnt / "rel") == errno.EEXIST
    os.rename(mnt / "rel", mnt / "rel2")
    assert os.readlink(mnt / "rel2") == "target"


def test_mkdir_rmdir(mnt):
    os.makedirs(mnt / "a" / "b" / "c")
    os.mkdir(mnt / "a" / "m", 0o750)
    st = os.stat(mnt / "a" / "m")
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o750 & ~current_umask()
    assert errno_of(os.mkdir, mnt / "a") == errno.EEXIST
    assert errno_of(os.rmdir, mnt / "a") == errno.ENOTEMPTY
    (mnt / "a" / "b" / "c" / "f").write_bytes(b"")
    assert errno_of(os.rmdir, mnt / "a" / "b" / "c") == errno.ENOTEMPTY
    assert errno_of(os.rmdir, mnt / "a" / "b" / "c" / "f") == errno.ENOTDIR
    assert errno_of(os.unlink, mnt / "a" / "b") == errno.EISDIR
    os.unlink(mnt / "a" / "b" / "c" / "f")
    os.rmdir(mnt / "a" / "b" / "c")
    os.rmdir(mnt / "a" / "b")
    assert sorted(os.listdir(mnt / "a")) == ["m"]
    assert errno_of(os.stat, mnt / "a" / "b") == errno.ENOENT


def test_many_entries_readdir(mnt):
    d = mnt / "many"
    os.mkdir(d)
    names = ["file-%04d-%s" % (i, "x" * (i % 50)) for i in range(1500)]
    for n in names:
        with open(d / n, "wb"):
            pass
    assert sorted(os.listdir(d)) == sorted(names)
    for n in names[::3]:
        os.unlink(d / n)
    assert sorted(os.listdir(d)) == sorted(set(names) - set(names[::3]))


def test_long_names(mnt):
    n255 = "n" * 255
    (mnt / n255).write_bytes(b"ok")
    assert (mnt / n255).read_bytes() == b"ok"
    assert errno_of(open, mnt / ("n" * 256), "wb") == errno.ENAMETOOLONG


def current_umask():
    u = os.umask(0)
    os.umask(u)
    return u


# --------------------------------------------------------------------------
# attributes
# --------------------------------------------------------------------------
def test_chmod_chown_utimens(mnt):
    p = mnt / "f"
    p.write_bytes(b"data")
    st0 = os.stat(p)
    assert st0.st_uid == os.getuid() and st0.st_gid == os.getgid()
    os.chmod(p, 0o4751)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o4751
    os.chmod(p, 0o640)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    os.chown(p, 1234, 5678)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.chown(p, -1, 42)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 42)
    atime_ns = 1_000_000_000 * 1_500_000_000 + 123_456_789
    mtime_ns = 1_000_000_000 * 1_600_000_000 + 987_654_321
    os.utime(p, ns=(atime_ns, mtime_ns))
    st = os.stat(p)
    assert st.st_atime_ns == atime_ns
    assert st.st_mtime_ns == mtime_ns
    assert st.st_ctime_ns >= st0.st_ctime_ns
    # a write moves mtime to now
    with open(p, "r+b") as f:
        f.write(b"D")
    st2 = os.stat(p)
    assert st2.st_mtime_ns > mtime_ns
    # touch with "now"
    os.utime(p)
    assert abs(os.stat(p).st_mtime - time.time()) < 60
    # symlink lchown
    os.symlink("f", mnt / "l")
    os.chown(mnt / "l", 77, 88, follow_symlinks=False)
    sl = os.lstat(mnt / "l")
    assert (sl.st_uid, sl.st_gid) == (77, 88)
    assert os.stat(p).st_uid == 1234


def test_directory_times_change(mnt):
    os.mkdir(mnt / "d")
    os.utime(mnt / "d", ns=(10**18, 10**18))
    (mnt / "d" / "new").write_bytes(b"")
    st = os.stat(mnt / "d")
    assert st.st_mtime_ns != 10**18, "creating a file did not update the dir mtime"


def test_xattrs(mnt):
    p = mnt / "x"
    p.write_bytes(b"")
    os.setxattr(p, "user.color", b"blue")
    os.setxattr(p, "user.empty", b"")
    big = rnd(4000, 11)
    os.setxattr(p, "user.big", big)
    assert os.getxattr(p, "user.color") == b"blue"
    assert os.getxattr(p, "user.empty") == b""
    assert os.getxattr(p, "user.big") == big
    assert sorted(a for a in os.listxattr(p) if a.startswith("user.")) == \
        ["user.big", "user.color", "user.empty"]
    os.setxattr(p, "user.color", b"green")
    assert os.getxattr(p, "user.color") == b"green"
    assert errno_of(os.setxattr, p, "user.color", b"x", os.XATTR_CREATE) == errno.EEXIST
    assert errno_of(os.setxattr, p, "user.nope", b"x", os.XATTR_REPLACE) == errno.ENODATA
    os.removexattr(p, "user.color")
    assert errno_of(os.getxattr, p, "user.color") == errno.ENODATA
    assert errno_of(os.removexattr, p, "user.color") == errno.ENODATA
    os.mkdir(mnt / "xd")
    os.setxattr(mnt / "xd", "user.dir", b"1")
    assert os.getxattr(mnt / "xd", "user.dir") == b"1"


def test_statfs(mnt):
    s = os.statvfs(mnt.path)
    assert s.f_bsize > 0
    assert s.f_blocks > 0
    assert s.f_bfree > 0
    assert s.f_bavail > 0
    assert s.f_namemax >= 255


def test_new_file_mode_and_owner(mnt):
    old = os.umask(0o022)
    try:
        fd = os.open(mnt / "m", os.O_CREAT | os.O_WRONLY, 0o666)
        os.close(fd)
    finally:
        os.umask(old)
    st = os.stat(mnt / "m")
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o644
    assert st.st_uid == os.getuid()
    assert st.st_nlink == 1
    assert errno_of(os.open, mnt / "m", os.O_CREAT | os.O_EXCL | os.O_WRONLY) == errno.EEXIST


def test_mknod_fifo(mnt):
    os.mkfifo(mnt / "fifo", 0o644)
    assert stat.S_ISFIFO(os.lstat(mnt / "fifo").st_mode)


# --------------------------------------------------------------------------
# persistence of everything across a remount
# --------------------------------------------------------------------------
def snapshot(root):
    """Everything observable below root, hard links resolved to groups."""
    out = {}
    inode_names = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for n in sorted(dirs + files):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            e = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid,
                 "mtime_ns": st.st_mtime_ns}
            if stat.S_ISREG(st.st_mode):
                e["size"] = st.st_size
                e["nlink"] = st.st_nlink
                with open(p, "rb") as f:
                    e["sha"] = hashlib.sha256(f.read()).hexdigest()
                inode_names.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(p)
            if not stat.S_ISLNK(st.st_mode):
                e["xattrs"] = {a: os.getxattr(p, a) for a in sorted(os.listxattr(p))
                               if a.startswith("user.")}
            out[rel] = e
    groups = sorted(sorted(v) for v in inode_names.values() if len(v) > 1)
    return out, groups


def assert_same(before, after, when):
    diffs = []
    for k in sorted(set(before[0]) | set(after[0])):
        b, a = before[0].get(k), after[0].get(k)
        if a != b:
            if a and b:
                fields = sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))
                diffs.append("%s: %s" % (k, ", ".join("%s %r -> %r" % (f, b.get(f), a.get(f))
                                                      for f in fields)))
            else:
                diffs.append("%s: %r -> %r" % (k, b, a))
    if before[1] != after[1]:
        diffs.append("hard link groups %r -> %r" % (before[1], after[1]))
    assert not diffs, "%s:\n  %s" % (when, "\n  ".join(diffs))


def test_remount_persists_everything(store, mounts):
    m = mounts.mount(store, "vol")
    r = m.path
    os.makedirs(r / "objects" / "OBJ-00001" / "floor-plans")
    os.makedirs(r / "objects" / "OBJ-00001" / "photos")
    (r / "objects" / "OBJ-00001" / "metadata.json").write_text('{"site": 1}\n')
    (r / "objects" / "OBJ-00001" / "floor-plans" / "plan.pdf").write_bytes(rnd(3 * MiB + 5, 1))
    (r / "objects" / "OBJ-00001" / "photos" / "p.jpg").write_bytes(rnd(777777, 2))
    (r / "empty").write_bytes(b"")
    (r / "modes").write_bytes(b"m")
    os.chmod(r / "modes", 0o2741)
    os.chmod(r / "objects" / "OBJ-00001" / "photos", 0o710)
    (r / "owned").write_bytes(b"o")
    os.chown(r / "owned", 1001, 2002)
    os.symlink("objects/OBJ-00001/metadata.json", r / "sym")
    os.symlink("../dangling", r / "objects" / "dsym")
    os.link(r / "objects" / "OBJ-00001" / "photos" / "p.jpg", r / "hardlink.jpg")
    os.setxattr(r / "modes", "user.a", b"alpha")
    os.setxattr(r / "objects", "user.dir", b"d" * 300)
    with open(r / "sparse", "wb") as f:
        f.seek(20 * MiB)
        f.write(b"tail")
    with open(r / "rewritten", "wb") as f:
        f.write(rnd(2 * MiB, 5))
    with open(r / "rewritten", "r+b") as f:
        f.seek(MiB - 10)
        f.write(b"PATCHED!" * 100)
    (r / "timed").write_bytes(b"")
    os.utime(r / "timed", ns=(1_234_567_890_123_456_789, 1_300_000_000_987_654_321))
    os.utime(r / "objects" / "OBJ-00001", ns=(1_111_111_111_000_000_001, 1_222_222_222_000_000_002))
    timed_before = os.stat(r / "timed")
    before = snapshot(r)
    assert before[1] == [["hardlink.jpg", "objects/OBJ-00001/photos/p.jpg"]]
    m.close()

    m2 = mounts.mount(store, "vol")
    timed_after = os.stat(m2 / "timed")
    assert timed_after.st_atime_ns == timed_before.st_atime_ns
    assert timed_after.st_mtime_ns == timed_before.st_mtime_ns
    after = snapshot(m2.path)
    assert_same(before, after, "after the first remount")
    st1 = os.stat(m2 / "hardlink.jpg")
    st2 = os.stat(m2 / "objects" / "OBJ-00001" / "photos" / "p.jpg")
    assert st1.st_ino == st2.st_ino and st1.st_nlink == 2
    assert os.stat(m2 / "sparse").st_size == 20 * MiB + 4
    # second generation of changes, then a third mount
    os.unlink(m2 / "hardlink.jpg")
    os.rename(m2 / "sym", m2 / "objects" / "sym2")
    os.truncate(m2 / "rewritten", 1000)
    before2 = snapshot(m2.path)
    m2.close()
    m3 = mounts.mount(store, "vol")
    after2 = snapshot(m3.path)
    assert_same(before2, after2, "after the second remount")
    assert os.stat(m3 / "objects" / "OBJ-00001" / "photos" / "p.jpg").st_nlink == 1
    m3.close()
    p = store.check()
    assert p.returncode == 0, p.stdout + p.stderr


def test_read_only_mount(store, mounts):
    m = mounts.mount(store, "vol")
    (m / "f").write_bytes(b"x")
    m.close()
    m = mounts.mount(store, "vol", opts=["ro"])
    assert (m / "f").read_bytes() == b"x"
    assert errno_of(open, m / "g", "wb") == errno.EROFS
    assert errno_of(os.unlink, m / "f") == errno.EROFS
    assert errno_of(os.chmod, m / "f", 0o600) == errno.EROFS


def test_mount_raises_readahead(mnt):
    # The kernel starts a FUSE mount at 128 KiB of read-ahead; the daemon
    # raises it so that cold sequential reads come in 1 MiB requests.
    st = os.stat(mnt.path)
    dev = "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
    with open("/sys/class/bdi/%s/read_ahead_kb" % dev) as f:
        assert int(f.read()) == 1024
