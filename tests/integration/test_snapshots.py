"""Snapshots: `tresor snapshot create|list|diff`, `MOUNT/.snapshots/NAME`
and `tresor restore` (issue 3).

Each check compares a snapshot with a "saved copy": a manifest of the
live tree taken at the instant of the snapshot (every entry's type, mode,
owner, mtime, atime, size, sha256 of the content, symlink target, user.*
xattrs, link count and hard-link identity).  The same manifest of a
restored tree must be equal to it.

All commands and daemons run with TZ=Europe/Berlin (snapshot names are
local dates).  Helpers here are also used by test_prune.py.
"""

import datetime
import errno
import hashlib
import json
import mmap
import os
import random
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import base_env, tresor

TZ = "Europe/Berlin"
SEED = int(os.environ.get("TRESOR_SEED", "20261123"))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
U1, G1 = 101, 101
NOATIME = getattr(os, "O_NOATIME", 0)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def tenv(**extra):
    """The environment of every tresor command: TZ fixed, no passphrase."""
    return base_env(TZ=TZ, **extra)


def mount(mounts, store, volume="vol", opts=()):
    return mounts.mount(store, volume, opts=opts, extra_env={"TZ": TZ})


def snap(store, volume="vol", when=None, check=True, scheduled=False):
    """tresor snapshot create; returns the name it printed.  scheduled:
    --scheduled (the policy's, as the daemon's), else pinned (by hand)."""
    args = ["snapshot", "create", store.path, volume]
    if when:
        args += ["--time", when]
    if scheduled:
        args.append("--scheduled")
    p = tresor(*args, env=tenv(), check=check)
    if not check:
        return p
    name = p.stdout.strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d(_\d{4}(\d\d(\.\d+)?)?)?", name), \
        "snapshot create printed %r, not a name" % p.stdout
    return name


def snap_list(store, volume="vol"):
    p = tresor("snapshot", "list", store.path, volume, "--json", env=tenv(), check=True)
    try:
        return json.loads(p.stdout)
    except ValueError as exc:
        raise AssertionError("snapshot list --json printed no JSON: %r (%s)" % (p.stdout, exc))


def snap_diff(store, old, new, volume="vol"):
    """(set of text lines, list of json rows) of tresor snapshot diff."""
    p = tresor("snapshot", "diff", store.path, volume, old, new, env=tenv(), check=True)
    pj = tresor("snapshot", "diff", store.path, volume, old, new, "--json", env=tenv(),
                check=True)
    lines = [l for l in p.stdout.split("\n") if l]
    rows = json.loads(pj.stdout)
    return lines, rows


def restore(store, snapshot, path, dest, volume="vol", check=True):
    p = tresor("restore", store.path, volume, snapshot, path, dest,
               "--passphrase-file", store.passfile, env=tenv(), timeout=300)
    if check and p.returncode != 0:
        raise AssertionError("restore %s %r -> %s failed (exit %d)\nstdout: %s\nstderr: %s"
                             % (snapshot, path, dest, p.returncode, p.stdout, p.stderr))
    return p


def sha(data):
    return hashlib.sha256(data).hexdigest()


def read_noatime(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | NOATIME)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def listdir_noatime(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | NOATIME)
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


def manifest(root, skip_top=(".snapshots",)):
    """{relative path: attributes} of the tree at root ("" is root itself).
    Every entry is lstat'ed before it is read or listed, and reads use
    O_NOATIME, so taking a manifest changes no atime."""
    root = str(root)
    out = {}

    def visit(rel, full):
        st = os.lstat(full)
        e = {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
             "mtime": st.st_mtime_ns, "atime": st.st_atime_ns, "_ino": st.st_ino}
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFDIR:
            e["type"] = "dir"
        elif fmt == stat.S_IFREG:
            e["type"] = "file"
            e["size"] = st.st_size
            e["nlink"] = st.st_nlink
            e["sha"] = sha(read_noatime(full))
        elif fmt == stat.S_IFLNK:
            e["type"] = "symlink"
            e["target"] = os.readlink(full)
            e["nlink"] = st.st_nlink
        else:
            e["type"] = "special-%o" % fmt
            e["rdev"] = st.st_rdev
            e["nlink"] = st.st_nlink
        if fmt != stat.S_IFLNK:
            xs = {}
            for n in sorted(os.listxattr(full, follow_symlinks=False)):
                if n.startswith("user."):
                    xs[n] = os.getxattr(full, n, follow_symlinks=False).hex()
            e["xattrs"] = xs
        out[rel] = e
        if fmt == stat.S_IFDIR:
            for n in listdir_noatime(full):
                if rel == "" and n in skip_top:
                    continue
                visit(n if rel == "" else rel + "/" + n, os.path.join(full, n))

    visit("", root)
    return link_groups(out)


def link_groups(man):
    """Set each non-directory's "link" to the first path (sorted) with the
    same inode number in this manifest: hard-link identity, comparable
    across trees."""
    by_ino = {}
    for p in sorted(man):
        e = man[p]
        if e["type"] != "dir":
            by_ino.setdefault(e["_ino"], []).append(p)
    for paths in by_ino.values():
        for p in paths:
            man[p]["link"] = paths[0]
    return man


def sub_manifest(man, prefix):
    """The entries at and below prefix, re-rooted (prefix itself -> "")."""
    out = {}
    for p, e in man.items():
        if p == prefix:
            out[""] = dict(e)
        elif p.startswith(prefix + "/"):
            out[p[len(prefix) + 1:]] = dict(e)
    return link_groups(out)


def compare(got, want, ignore=()):
    problems = []
    for p in sorted(set(got) | set(want)):
        if p not in got:
            problems.append("missing %r (%s)" % (p, want[p]["type"]))
            continue
        if p not in want:
            problems.append("unexpected %r (%s)" % (p, got[p]["type"]))
            continue
        a, b = got[p], want[p]
        for k in sorted(set(a) | set(b)):
            if k.startswith("_") or k in ignore:
                continue
            if a.get(k) != b.get(k):
                problems.append("%r: %s is %r, expected %r" % (p, k, a.get(k), b.get(k)))
    return problems


def assert_same(got, want, what, ignore=()):
    problems = compare(got, want, ignore)
    assert not problems, "%s differs from the saved copy (%d difference(s)):\n  %s" % (
        what, len(problems), "\n  ".join(problems[:40]))


def rand_bytes(rng, n):
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def write_file(path, data, mode=None):
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)


NS = 1000000000


def tree_paths(r):
    """Every path below r (symlinks not followed), deepest first."""
    out = []
    for dirpath, dirnames, filenames in os.walk(r):
        for n in dirnames + filenames:
            out.append(Path(dirpath) / n)
    return sorted(out, key=lambda x: (-len(x.parts), str(x)))


def build_tree(r, rng):
    """A tree with what snapshots and restore must keep: modes (setuid,
    sticky, setgid, 0), owners, ns times (also far future), symlinks
    (relative, absolute, dangling, long, owned by another uid), hard links
    (3 links in different dirs), xattrs on files and dirs, a fifo, odd but
    legal names, a multi-chunk file, and a directory named .snapshots
    below the root."""
    r = Path(r)
    os.chmod(r, 0o755)
    for d in ("docs", "docs/deep", "docs/deep/er", "docs/deep/er/est", "private", "shared",
              "u101", "sticky", "hl", "odd", "sub", "sub/.snapshots", "ro"):
        os.mkdir(r / d)
    write_file(r / "docs/empty", b"")
    write_file(r / "docs/one", b"1")
    text = b"".join(b"line %06d of a building plan note\n" % i for i in range(2000))
    write_file(r / "docs/text.txt", text)
    write_file(r / "docs/rand.bin", rand_bytes(rng, 1300 * 1024 + 7))
    write_file(r / "docs/deep/er/est/leaf", b"leaf\n")
    write_file(r / "private/secret", b"secret\n", 0o600)
    os.chmod(r / "private", 0o700)
    write_file(r / "shared/doc", b"group doc\n", 0o640)
    os.chown(r / "shared/doc", 0, 2000)
    os.chown(r / "shared", 0, 2000)
    os.chmod(r / "shared", 0o2770)
    write_file(r / "u101/mine", b"mine\n", 0o640)
    os.chown(r / "u101/mine", U1, G1)
    os.chown(r / "u101", U1, G1)
    os.chmod(r / "sticky", 0o1777)
    write_file(r / "docs/setuid", b"#!/bin/sh\n", None)
    os.chown(r / "docs/setuid", 1234, 5678)
    os.chmod(r / "docs/setuid", 0o4755)
    write_file(r / "docs/nomode", b"x", 0o000)
    # hard links: three names of one inode in two dirs, and a pair
    write_file(r / "hl/a", b"linked content\n")
    os.link(r / "hl/a", r / "hl/b")
    os.link(r / "hl/a", r / "docs/a-link")
    write_file(r / "hl/p", rand_bytes(rng, 3000))
    os.link(r / "hl/p", r / "hl/q")
    # symlinks
    os.symlink("docs/text.txt", r / "link-rel")
    os.symlink("/etc/hostname", r / "link-abs")
    os.symlink("nowhere/at/all", r / "dangling")
    os.symlink("docs", r / "link-dir")
    os.symlink("t" * 1000, r / "docs/long-target")
    os.symlink("../docs/one", r / "u101/theirs")
    os.chown(r / "u101/theirs", U1, G1, follow_symlinks=False)
    # odd names
    for n in ("sp ace", "\u00fcn\u00efc\u00f6d\u00e9", "-dash", "...", ".hidden", "n" * 255,
              "new\nline", "back\\slash", "*"):
        write_file(r / "odd" / n, n.encode() + b"\n")
    write_file(r / "sub/.snapshots/not-a-snapshot", b"ordinary file\n")
    os.mkfifo(r / "docs/fifo", 0o620)
    # xattrs
    os.setxattr(r / "docs/text.txt", "user.mime", b"text/plain")
    os.setxattr(r / "docs/rand.bin", "user.bin", bytes(range(256)))
    os.setxattr(r / "docs/rand.bin", "user.empty", b"")
    os.setxattr(r / "docs", "user.dir", b"1")
    os.setxattr(r / "hl/a", "user.linked", b"yes")
    write_file(r / "ro/file", b"in a read-only dir\n", 0o444)
    # times: ns precision, old and after 2038; directories last
    t = 1000000000 * NS + 123456789
    for i, p in enumerate(tree_paths(r)):
        if not stat.S_ISDIR(os.lstat(p).st_mode):
            os.utime(p, ns=(t + i * 7919 * NS + 11, t + i * 104729 * NS + 999999999),
                     follow_symlinks=False)
    os.utime(r / "docs/one", ns=(4100000000 * NS + 5, 4200000000 * NS + 6))
    os.utime(r / "docs/empty", ns=(1 * NS, 2 * NS))
    os.chmod(r / "ro", 0o555)
    for p in tree_paths(r):
        if stat.S_ISDIR(os.lstat(p).st_mode):
            os.utime(p, ns=(1500000000 * NS + len(str(p)), 1600000000 * NS + len(str(p))))


def mutate(r, rng, rnd):
    """Round rnd of changes: in-place overwrite (seen by all hard links),
    truncate, append, unlink, create, renames (file, directory, over an
    existing file), chmod, chown, utime, xattr set/remove, new and removed
    hard links, a symlink retargeted, mkdir/rmdir."""
    r = Path(r)
    with open(r / "docs/rand.bin", "r+b") as f:
        f.seek(rng.randrange(1200 * 1024))
        f.write(rand_bytes(rng, 5000))
    with open(r / "docs/text.txt", "r+b") as f:
        f.truncate(os.fstat(f.fileno()).st_size * 2 // 3)
    with open(r / "docs/one", "ab") as f:
        f.write(b"+%d" % rnd)
    write_file(r / ("docs/new-%d" % rnd), rand_bytes(rng, 10000 + rnd))
    if (r / "docs/empty").exists():
        os.unlink(r / "docs/empty")
    else:
        write_file(r / "docs/empty", b"")
    if (r / "docs/deep").exists():
        os.rename(r / "docs/deep", r / "deep-moved")
    else:
        os.rename(r / "deep-moved", r / "docs/deep")
    write_file(r / "docs/tmp-save", b"saved version %d\n" % rnd)
    os.rename(r / "docs/tmp-save", r / "docs/deep/er/est/leaf"
              if (r / "docs/deep").exists() else r / "deep-moved/er/est/leaf")
    os.chmod(r / "private/secret", 0o640 if rnd % 2 else 0o600)
    os.chown(r / "u101/mine", U1 + rnd, G1)
    os.utime(r / "odd/sp ace", ns=(rnd * NS, 3000000000 * NS + rnd))
    os.setxattr(r / "docs/text.txt", "user.round", b"%d" % rnd)
    if rnd % 2:
        os.removexattr(r / "docs/rand.bin", "user.empty")
    else:
        os.setxattr(r / "docs/rand.bin", "user.empty", b"")
    os.link(r / "hl/p", r / ("hl/p-%d" % rnd))
    if (r / "hl/b").exists():
        os.unlink(r / "hl/b")
    else:
        os.link(r / "hl/a", r / "hl/b")
    os.unlink(r / "link-rel")
    os.symlink("docs/new-%d" % rnd, r / "link-rel")
    os.mkdir(r / ("dir-%d" % rnd))
    write_file(r / ("dir-%d/f" % rnd), b"%d" % rnd)
    if rnd > 1:
        os.unlink(r / ("dir-%d/f" % (rnd - 1)))
        os.rmdir(r / ("dir-%d" % (rnd - 1)))


def check_snapshot(mnt, name, want, what=""):
    got = manifest(Path(mnt) / ".snapshots" / name, skip_top=())
    assert_same(got, want, "snapshot %s%s" % (name, what))


# --------------------------------------------------------------------------
# content and metadata
# --------------------------------------------------------------------------
def test_snapshots_equal_the_tree_at_that_instant(store, mounts):
    m = mount(mounts, store)
    rng = random.Random(SEED)
    build_tree(m.path, rng)
    saved = []
    for rnd in range(4):
        if rnd:
            mutate(m.path, rng, rnd)
        want = manifest(m.path)
        name = snap(store)
        assert name not in [n for n, _ in saved]
        saved.append((name, want))
        assert_same(manifest(m.path), want, "live tree right after snapshot %s" % name)
        # this one and every earlier one, after all the changes made since
        for n, w in saved:
            check_snapshot(m.path, n, w, " (after round %d)" % rnd)
    # hard links share st_ino inside one snapshot (link groups above), and
    # a snapshot's inode numbers are stable while mounted
    s0 = m.path / ".snapshots" / saved[0][0]
    assert os.lstat(s0 / "hl/a").st_ino == os.lstat(s0 / "docs/a-link").st_ino
    assert os.lstat(s0 / "hl/a").st_nlink == 3
    assert os.lstat(s0 / "hl/a").st_ino != os.lstat(s0 / "hl/p").st_ino
    # the same after a remount
    m.close()
    m = mount(mounts, store)
    for n, w in saved:
        check_snapshot(m.path, n, w, " (after remount)")


def test_later_writes_never_change_a_snapshot(make_store, mounts):
    """Two separate questions, both reported: (1) is the snapshot equal to
    the tree when it was taken, (2) does anything done to the live tree
    afterwards change the snapshot (compared with the snapshot as first
    read, and with the saved copy)."""
    store = make_store(chunks=(4096, 16384, 65536))
    m = mount(mounts, store)
    r = m.path
    rng = random.Random(SEED + 1)
    build_tree(r, rng)
    big = rand_bytes(rng, 3 * 1024 * 1024)
    write_file(r / "big", big)
    write_file(r / "mapped", rand_bytes(rng, 64 * 1024))
    write_file(r / "held", b"H" * 100000)
    write_file(r / "doomed", b"D" * 70000)
    problems = []
    fds = []
    try:
        # files open for writing across the snapshot, one written just before
        held = os.open(r / "held", os.O_RDWR)
        fds.append(held)
        doomed = os.open(r / "doomed", os.O_RDWR)
        fds.append(doomed)
        os.pwrite(held, b"before-snapshot", 500)
        want = manifest(r)
        name = snap(store)
        first = manifest(r / ".snapshots" / name, skip_top=())
        problems += ["at creation: " + x for x in compare(first, want)]

        # overwrite (middle of a multi-chunk file; through the fd held open)
        with open(r / "big", "r+b") as f:
            f.seek(1024 * 1024 + 3)
            f.write(b"\xff" * 200000)
        os.pwrite(held, b"after-snapshot", 500)
        os.ftruncate(held, 40000)
        os.fsync(held)
        # write through a shared mapping
        with open(r / "mapped", "r+b") as f:
            mm = mmap.mmap(f.fileno(), 0)
            mm[100:200] = b"m" * 100
            mm.flush()
            mm.close()
        # truncate: down, to zero, up (sparse), O_TRUNC open
        os.truncate(r / "docs/text.txt", 10)
        os.truncate(r / "hl/p", 0)
        os.truncate(r / "docs/one", 5 * 1024 * 1024)
        with open(r / "private/secret", "wb") as f:
            f.write(b"replaced")
        # unlink (also of a file still open, written after the unlink), rm -r
        os.unlink(r / "doomed")
        os.pwrite(doomed, b"written after unlink", 0)
        os.unlink(r / "hl/a")
        subprocess.run(["rm", "-rf", str(r / "odd"), str(r / "docs/deep")], check=True)
        # renames: file, directory, over an existing file, a swap via a temp name
        os.rename(r / "docs/rand.bin", r / "moved.bin")
        os.rename(r / "sub", r / "sub-moved")
        os.rename(r / "docs/setuid", r / "u101/mine")
        os.rename(r / "shared", r / "tmpname")
        os.rename(r / "private", r / "shared")
        os.rename(r / "tmpname", r / "private")
        # metadata
        os.chmod(r / "docs", 0o700)
        os.chown(r / "docs/nomode", 42, 42)
        os.utime(r / "big", ns=(5, 6))
        os.setxattr(r / "docs/text.txt", "user.mime", b"changed")
        os.removexattr(r / "docs", "user.dir")
        os.symlink("new", r / "newlink")
        os.unlink(r / "link-abs")
        os.symlink("/changed", r / "link-abs")
        os.link(r / "hl/b", r / "hl/c")
    finally:
        for fd in fds:
            os.close(fd)
    after = manifest(r / ".snapshots" / name, skip_top=())
    problems += ["after the changes: " + x for x in compare(after, first)]

    # a second snapshot sees the changes; the first still does not
    want2 = manifest(r)
    name2 = snap(store)
    second = manifest(r / ".snapshots" / name2, skip_top=())
    problems += ["second snapshot at creation: " + x for x in compare(second, want2)]
    problems += ["after a second snapshot: " + x
                 for x in compare(manifest(r / ".snapshots" / name, skip_top=()), first)]
    m.close()
    m = mount(mounts, store)
    problems += ["after remount: " + x
                 for x in compare(manifest(m.path / ".snapshots" / name, skip_top=()), first)]
    problems += ["second snapshot after remount: " + x
                 for x in compare(manifest(m.path / ".snapshots" / name2, skip_top=()), second)]
    assert (m.path / "big").read_bytes()[:1024 * 1024 + 3] == big[:1024 * 1024 + 3]
    assert not problems, "snapshot %s / %s differ (%d):\n  %s" % (
        name, name2, len(problems), "\n  ".join(problems[:40]))


def test_mtime_of_a_rewritten_file_is_the_one_stat_showed(store, mounts):
    """open(O_TRUNC) + write + close of an existing file: the snapshot (and
    the live tree after a remount) keep the mtime stat showed."""
    m = mount(mounts, store)
    r = m.path
    for i in range(5):
        (r / ("f%d" % i)).write_bytes(b"first version %d\n" % i)
    snap(store)
    time.sleep(0.05)
    for i in range(5):
        with open(r / ("f%d" % i), "wb") as f:
            f.write(b"second version %d\n" % i)
    want = manifest(r)
    name = snap(store)
    problems = ["snapshot: " + x for x in compare(manifest(r / ".snapshots" / name, skip_top=()),
                                                  want)]
    m.close()
    m = mount(mounts, store)
    problems += ["live after remount: " + x for x in compare(manifest(m.path), want)]
    assert not problems, "\n  ".join(problems)


# --------------------------------------------------------------------------
# names and times
# --------------------------------------------------------------------------
def local_ns(s):
    """Local (TZ) wall time "YYYY-MM-DD HH:MM:SS" -> ns since the epoch."""
    p = subprocess.run(["date", "-d", s, "+%s"], env=tenv(), capture_output=True,
                       text=True, check=True)
    return int(p.stdout) * NS


def test_snapshot_names_and_suffixes(store, mounts):
    m = mount(mounts, store)
    (m.path / "f").write_bytes(b"x")
    # without --time: today's local date, then with the minute, then the
    # second (or .2 in one second): in byte order as taken
    before = datetime.datetime.now(datetime.timezone.utc)
    names = [snap(store) for _ in range(3)]
    after = datetime.datetime.now(datetime.timezone.utc)
    days = {subprocess.run(["date", "-d", "@%d" % t.timestamp(), "+%F"], env=tenv(),
                           capture_output=True, text=True).stdout.strip()
            for t in (before, after)}
    assert names == sorted(set(names)), names
    if len(days) == 1:
        day = days.pop()
        assert names[0] == day and re.fullmatch(re.escape(day) + r"_\d{4}", names[1]), names
        assert names[2].startswith(names[1]) and len(names[2]) > len(names[1]), names
    # with --time, mounted (through the daemon)
    assert snap(store, when="2025-03-10T08:00:00") == "2025-03-10"
    assert snap(store, when="2025-03-10 23:59:59") == "2025-03-10_2359"
    # taken before both, but named after them: a backdated snapshot of a
    # day that has its day name already
    assert snap(store, when="2025-03-10T00:00:00") == "2025-03-10_0000"
    assert snap(store, when="2025-03-11T00:00:00") == "2025-03-11"
    assert sorted(os.listdir(m.path / ".snapshots")) == sorted(
        names + ["2025-03-10", "2025-03-10_2359", "2025-03-10_0000", "2025-03-11"])
    # unmounted (directly in the index): the same rule
    m.close()
    assert snap(store, when="2025-03-10T12:00") == "2025-03-10_1200"
    assert snap(store, when="2025-03-11T12:00:30") == "2025-03-11_1200"
    m = mount(mounts, store)
    assert snap(store, when="2025-03-10T13:00") == "2025-03-10_1300"
    listed = snap_list(store)
    assert sorted(s["name"] for s in listed) == sorted(os.listdir(m.path / ".snapshots"))
    assert len(listed) == 10
    by = {s["name"]: s for s in listed}
    assert by["2025-03-10_2359"]["time_ns"] == local_ns("2025-03-10 23:59:59")
    assert by["2025-03-10_1200"]["time_ns"] == local_ns("2025-03-10 12:00:00")
    for s in listed:
        assert s["pinned"] is True    # taken by a person: kept until unpinned
        assert s["files"] == 1 and s["logical_bytes"] == 1, s
    p = tresor("snapshot", "create", store.path, "nosuchvol", env=tenv())
    assert p.returncode == 1 and "nosuchvol" in p.stderr and not p.stdout


@pytest.mark.parametrize("when,name,utc", [
    ("2025-03-10T23:30:00Z", "2025-03-11", "2025-03-10T23:30:00"),
    ("2025-03-10T22:59:59Z", "2025-03-10", "2025-03-10T22:59:59"),
    ("2025-07-01T00:30:00+02:00", "2025-07-01", "2025-06-30T22:30:00"),
    ("2025-07-01T00:30:00+0100", "2025-07-01", "2025-06-30T23:30:00"),
    ("2025-06-30T20:30:00-05:00", "2025-07-01", "2025-07-01T01:30:00"),
    ("2025-12-31 23:59:59", "2025-12-31", "2025-12-31T22:59:59"),
    ("2026-01-01T00:00", "2026-01-01", "2025-12-31T23:00:00"),
    ("2025-10-26 00:30:00", "2025-10-26", "2025-10-25T22:30:00"),   # still CEST
    ("2025-10-26 12:00:00", "2025-10-26", "2025-10-26T11:00:00"),   # CET again
    ("2024-02-29", "2024-02-29", "2024-02-28T23:00:00"),
])
def test_time_option(store, when, name, utc):
    assert snap(store, when=when) == name
    want = int(datetime.datetime.fromisoformat(utc).replace(
        tzinfo=datetime.timezone.utc).timestamp()) * NS
    s = [x for x in snap_list(store) if x["name"] == name]
    assert len(s) == 1 and s[0]["time_ns"] == want, (s, want)
    assert s[0]["time"].startswith(name), s


@pytest.mark.parametrize("when", ["yesterday", "2025-13-01", "2025-02-30", "2025-02-29T10:00",
                                  "2025-04-31", "2025-03-10 25:00:00", "2025-03-10T10:61",
                                  "10/03/2025", ""])
def test_time_option_rejects_invalid(store, when):
    p = tresor("snapshot", "create", store.path, "vol", "--time", when, env=tenv())
    assert p.returncode != 0, "--time %r accepted, snapshot %r created" % (when, p.stdout)
    assert snap_list(store) == []


def test_list_is_oldest_first(store):
    """Names follow --time; the list is ordered by the snapshots' times."""
    for t in ("2025-05-01T10:00", "2025-01-01T10:00", "2025-03-01T10:00", "2025-03-01T09:00"):
        snap(store, when=t)
    names = [s["name"] for s in snap_list(store)]
    assert names == ["2025-01-01", "2025-03-01_0900", "2025-03-01", "2025-05-01"], names


# --------------------------------------------------------------------------
# read-only
# --------------------------------------------------------------------------
def test_every_write_in_a_snapshot_fails_with_erofs(store, mounts):
    m = mount(mounts, store)
    r = m.path
    rng = random.Random(SEED + 2)
    build_tree(r, rng)
    os.mkdir(r / "emptydir")
    want = manifest(r)
    name = snap(store)
    s = r / ".snapshots" / name
    assert (s / "docs/rand.bin").is_file()
    live_before = manifest(r)

    def op_open(path, flags):
        return lambda: os.close(os.open(path, flags, 0o644))

    ops = {
        "create": op_open(s / "docs/newfile", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
        "create in snapshot root": op_open(s / "newfile", os.O_WRONLY | os.O_CREAT),
        "open O_WRONLY": op_open(s / "docs/one", os.O_WRONLY),
        "open O_RDWR": op_open(s / "docs/one", os.O_RDWR),
        "open O_APPEND": op_open(s / "docs/one", os.O_WRONLY | os.O_APPEND),
        "open O_TRUNC": op_open(s / "docs/one", os.O_RDONLY | os.O_TRUNC),
        "open O_WRONLY|O_TRUNC": op_open(s / "docs/rand.bin", os.O_WRONLY | os.O_TRUNC),
        "open 0-mode file O_WRONLY": op_open(s / "docs/nomode", os.O_WRONLY),
        "truncate": lambda: os.truncate(s / "docs/text.txt", 0),
        "truncate up": lambda: os.truncate(s / "docs/text.txt", 10 ** 7),
        "unlink": lambda: os.unlink(s / "docs/one"),
        "unlink symlink": lambda: os.unlink(s / "link-abs"),
        "unlink hard link": lambda: os.unlink(s / "hl/b"),
        "rmdir": lambda: os.rmdir(s / "emptydir"),
        "rmdir non-empty": lambda: os.rmdir(s / "docs/deep/er/est"),
        "rmdir snapshot": lambda: os.rmdir(s),
        "rmdir .snapshots": lambda: os.rmdir(r / ".snapshots"),
        "rename inside": lambda: os.rename(s / "docs/one", s / "docs/two"),
        "rename dir inside": lambda: os.rename(s / "docs", s / "docs2"),
        "rename out of": lambda: os.rename(s / "docs/one", r / "stolen"),
        "rename into": lambda: os.rename(r / "docs/one", s / "docs/planted"),
        "rename into, over a file": lambda: os.rename(r / "docs/one", s / "docs/text.txt"),
        "rename snapshot": lambda: os.rename(s, r / ".snapshots" / "renamed"),
        "rename snapshot out": lambda: os.rename(s, r / "stolen-snapshot"),
        "rename .snapshots": lambda: os.rename(r / ".snapshots", r / "snaps"),
        "chmod": lambda: os.chmod(s / "docs/one", 0o777),
        "chmod dir": lambda: os.chmod(s / "private", 0o777),
        "chmod snapshot root": lambda: os.chmod(s, 0o700),
        "chown": lambda: os.chown(s / "docs/one", 5, 5),
        "lchown symlink": lambda: os.chown(s / "link-abs", 5, 5, follow_symlinks=False),
        "utime set": lambda: os.utime(s / "docs/one", (1, 1)),
        "utime now": lambda: os.utime(s / "docs/one"),
        "utime symlink": lambda: os.utime(s / "link-abs", (1, 1), follow_symlinks=False),
        "setxattr": lambda: os.setxattr(s / "docs/one", "user.x", b"1"),
        "setxattr replace": lambda: os.setxattr(s / "docs/text.txt", "user.mime", b"x"),
        "setxattr dir": lambda: os.setxattr(s / "docs", "user.x", b"1"),
        "removexattr": lambda: os.removexattr(s / "docs/text.txt", "user.mime"),
        "link inside": lambda: os.link(s / "docs/one", s / "docs/one-link"),
        "link into": lambda: os.link(r / "docs/one", s / "docs/one-link"),
        "link out of": lambda: os.link(s / "docs/one", r / "one-link"),
        "symlink": lambda: os.symlink("target", s / "docs/sl"),
        "mkdir": lambda: os.mkdir(s / "docs/newdir"),
        "mkdir in .snapshots": lambda: os.mkdir(r / ".snapshots" / "2099-01-01"),
        "mkfifo": lambda: os.mkfifo(s / "docs/newfifo"),
        "mknod": lambda: os.mknod(s / "docs/newnod", 0o600 | stat.S_IFREG),
    }
    wrong = []
    for what, fn in ops.items():
        try:
            fn()
            wrong.append("%s: succeeded" % what)
        except OSError as e:
            if e.errno != errno.EROFS:
                wrong.append("%s: %s instead of EROFS" % (what, errno.errorcode.get(e.errno, e.errno)))
    # fallocate / write on an fd opened read-only is EBADF by the kernel
    fd = os.open(s / "docs/one", os.O_RDONLY)
    try:
        for what, fn in (("write on O_RDONLY fd", lambda: os.write(fd, b"x")),
                         ("ftruncate on O_RDONLY fd", lambda: os.ftruncate(fd, 0))):
            try:
                fn()
                wrong.append("%s: succeeded" % what)
            except OSError as e:
                if e.errno not in (errno.EBADF, errno.EINVAL, errno.EROFS):
                    wrong.append("%s: %s" % (what, errno.errorcode.get(e.errno, e.errno)))
        for what, fn in (("fchmod", lambda: os.fchmod(fd, 0o777)),
                         ("fchown", lambda: os.fchown(fd, 7, 7)),
                         ("futimes", lambda: os.utime(fd, (3, 3))),
                         ("fsetxattr", lambda: os.setxattr(fd, "user.f", b"1"))):
            try:
                fn()
                wrong.append("%s: succeeded" % what)
            except OSError as e:
                if e.errno != errno.EROFS:
                    wrong.append("%s: %s instead of EROFS" % (what, errno.errorcode.get(e.errno, e.errno)))
    finally:
        os.close(fd)
    assert not wrong, "writes into snapshot %s did not fail with EROFS:\n  %s" % (
        name, "\n  ".join(wrong))
    check_snapshot(r, name, want, " (after the refused writes)")
    assert_same(manifest(r), live_before, "live tree (after the refused writes)")
    assert sorted(os.listdir(r / ".snapshots")) == [name]


# --------------------------------------------------------------------------
# .snapshots is reachable but not listed
# --------------------------------------------------------------------------
def test_snapshots_dir_hidden_from_readdir(store, mounts):
    m = mount(mounts, store)
    r = m.path
    (r / "a").mkdir()
    (r / "a" / "f").write_bytes(b"x" * 5000)
    (r / "top").write_bytes(b"y")
    name1 = snap(store)
    name2 = snap(store)
    assert sorted(os.listdir(r)) == ["a", "top"]
    assert ".snapshots" not in [e.name for e in os.scandir(r)]
    found = subprocess.run(["find", str(r)], capture_output=True, text=True, check=True).stdout
    assert sorted(found.split()) == sorted([str(r), str(r / "a"), str(r / "a/f"), str(r / "top")])
    du = subprocess.run(["du", "-a", str(r)], capture_output=True, text=True, check=True).stdout
    assert ".snapshots" not in du and len(du.strip().split("\n")) == 4, du
    ls = subprocess.run(["ls", "-A", str(r)], capture_output=True, text=True, check=True).stdout
    assert ls.split() == ["a", "top"]
    # reachable by path
    assert os.path.isdir(r / ".snapshots")
    assert sorted(os.listdir(r / ".snapshots")) == sorted([name1, name2])
    assert (r / ".snapshots" / name1 / "a" / "f").read_bytes() == b"x" * 5000
    assert sorted(os.listdir(r / ".snapshots" / name1)) == ["a", "top"]
    # a snapshot's own root does not hold a nested .snapshots
    assert not os.path.exists(r / ".snapshots" / name1 / ".snapshots")
    # find/du through the path do walk it
    found = subprocess.run(["find", str(r / ".snapshots")], capture_output=True, text=True,
                           check=True).stdout.split()
    assert str(r / ".snapshots" / name2 / "a" / "f") in found
    m.close()
    m = mount(mounts, store, opts=["list_snapshots"])
    assert sorted(os.listdir(m.path)) == [".snapshots", "a", "top"]
    found = subprocess.run(["find", str(m.path)], capture_output=True, text=True,
                           check=True).stdout.split()
    assert str(m.path / ".snapshots" / name1 / "a" / "f") in found
    m.close()
    m = mount(mounts, store)
    assert sorted(os.listdir(m.path)) == ["a", "top"]


# --------------------------------------------------------------------------
# permissions as another uid
# --------------------------------------------------------------------------
CHILD = r'''
import errno, json, os, sys
res = []
for op in json.loads(sys.argv[1]):
    name, path = op[0], op[1]
    try:
        if name == "read":
            with open(path, "rb") as f:
                r = f.read().decode("latin-1")
        elif name == "listdir":
            r = sorted(os.listdir(path))
        elif name == "stat":
            r = "OK" if os.stat(path) else "?"
        elif name == "write":
            with open(path, "ab") as f:
                f.write(b"x")
            r = "OK"
        elif name == "create":
            with open(path, "xb") as f:
                pass
            r = "OK"
        elif name == "unlink":
            os.unlink(path); r = "OK"
        elif name == "chmod":
            os.chmod(path, 0o777); r = "OK"
        else:
            r = "BADOP"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    res.append(r)
print(json.dumps(res))
'''


def as_user(uid, gid, groups, ops):
    p = subprocess.run([PYTHON, "-c", CHILD, json.dumps([[o[0], str(o[1])] for o in ops])],
                       user=uid, group=gid, extra_groups=list(groups), cwd="/",
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "child as uid %d failed: %s" % (uid, p.stderr)
    return json.loads(p.stdout)


def test_permissions_inside_a_snapshot(store, mounts):
    m = mount(mounts, store, opts=["allow_other"])
    r = m.path
    os.chmod(r, 0o755)
    os.mkdir(r / "rootonly", 0o700)
    (r / "rootonly" / "hidden").write_bytes(b"hidden")
    os.mkdir(r / "pub", 0o755)
    os.chmod(r / "pub", 0o755)
    (r / "pub" / "secret").write_bytes(b"secret")
    os.chmod(r / "pub" / "secret", 0o600)
    (r / "pub" / "open").write_bytes(b"open")
    os.chmod(r / "pub" / "open", 0o644)
    os.mkdir(r / "grp")
    os.chown(r / "grp", 0, 2000)
    os.chmod(r / "grp", 0o750)
    (r / "grp" / "doc").write_bytes(b"group doc")
    os.chmod(r / "grp" / "doc", 0o640)
    os.chown(r / "grp" / "doc", 0, 2000)
    os.mkdir(r / "u101")
    os.chown(r / "u101", U1, G1)
    (r / "u101" / "mine").write_bytes(b"mine")
    os.chown(r / "u101" / "mine", U1, G1)
    os.chmod(r / "u101" / "mine", 0o600)
    name = snap(store)
    # change the live tree the other way round: the snapshot keeps the old rules
    os.chmod(r / "rootonly", 0o755)
    os.chmod(r / "pub" / "secret", 0o644)
    os.chmod(r / "u101" / "mine", 0o000)
    os.chown(r / "u101" / "mine", 0, 0)
    os.chmod(r / "grp", 0o755)
    os.chmod(r / "grp" / "doc", 0o644)
    s = r / ".snapshots" / name

    ops = [("listdir", r / ".snapshots"), ("listdir", s),
           ("listdir", s / "rootonly"), ("read", s / "rootonly" / "hidden"),
           ("stat", s / "rootonly" / "hidden"),
           ("read", s / "pub" / "secret"), ("read", s / "pub" / "open"),
           ("read", s / "u101" / "mine"), ("listdir", s / "grp"), ("read", s / "grp" / "doc"),
           # a write where uid 101 may write in the live tree: EROFS
           ("write", s / "u101" / "mine"), ("create", s / "u101" / "new"),
           ("unlink", s / "u101" / "mine"), ("chmod", s / "u101" / "mine"),
           # live tree, after the changes
           ("listdir", r / "rootonly"), ("read", r / "pub" / "secret"),
           ("read", r / "u101" / "mine")]
    got = as_user(U1, G1, [], ops)
    want = [[name], ["grp", "pub", "rootonly", "u101"],
            "EACCES", "EACCES", "EACCES",
            "EACCES", "open",
            "mine", "EACCES", "EACCES",
            "EROFS", "EROFS", "EROFS", "EROFS",
            ["hidden"], "secret", "EACCES"]
    bad = ["%s %s: got %r, expected %r" % (o[0], o[1], g, w)
           for o, g, w in zip(ops, got, want) if g != w]
    assert not bad, "as uid %d:\n  %s" % (U1, "\n  ".join(bad))
    # a member of group 2000 may read the group's 0640 doc in the snapshot
    got = as_user(U1, G1, [2000], [("listdir", s / "grp"), ("read", s / "grp" / "doc")])
    assert got == [["doc"], "group doc"]


# --------------------------------------------------------------------------
# a point in time while writers run
# --------------------------------------------------------------------------
REC = 1531          # odd size: records straddle page boundaries
NFILES = 4
SLOTS = 40
# In-place overwrites are checked for writes within one page: the kernel
# splits a write() that straddles a page it has not cached into two
# requests, and a snapshot may fall between them (documented in the
# README; appends go direct and are whole).
SLOT_STRIDE = 4096


def record(g, k, f):
    """Record g (global sequence) = the k-th record of file f."""
    head = b"R%010d:%010d:%02d|" % (g, k, f)
    body = hashlib.sha256(head).hexdigest().encode()
    out = head + body * ((REC - len(head)) // len(body) + 1)
    return out[:REC - 1] + b"\n"


def slot_record(slot, gen):
    head = b"S%04d:%010d|" % (slot, gen)
    body = hashlib.sha256(head).hexdigest().encode()
    out = head + body * ((REC - len(head)) // len(body) + 1)
    return out[:REC - 1] + b"\n"


class Appender(threading.Thread):
    """Appends records with a global sequence number to NFILES files in a
    random order; self.done = number of records whose write() returned."""

    def __init__(self, root, seed):
        super().__init__(daemon=True)
        self.root = Path(root)
        self.rng = random.Random(seed)
        self.done = 0
        self.stop = False
        self.error = None
        self.overwrites = 0

    def run(self):
        try:
            fds = [os.open(self.root / ("log-%d" % i), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                           0o644) for i in range(NFILES)]
            slots = os.open(self.root / "slots", os.O_WRONLY)
            counts = [0] * NFILES
            g = 0
            while not self.stop:
                f = self.rng.randrange(NFILES)
                n = os.write(fds[f], record(g, counts[f], f))
                assert n == REC, "short write %d" % n
                counts[f] += 1
                g += 1
                self.done = g
                if g % 3 == 0:  # an in-place overwrite of one slot
                    s = self.rng.randrange(SLOTS)
                    os.pwrite(slots, slot_record(s, g), s * SLOT_STRIDE)
                    self.overwrites += 1
            for fd in fds + [slots]:
                os.close(fd)
        except Exception as e:  # reported by the test
            self.error = e


def check_point_in_time(sdir, lo, hi, name):
    """Snapshot dir sdir: each log a clean prefix; together exactly the
    records 0..N-1 for one N with lo <= N <= hi; each slot one whole
    version.  Returns (N, [problems])."""
    seen = []
    problems = []
    for f in range(NFILES):
        p = sdir / ("log-%d" % f)
        data = p.read_bytes() if p.exists() else b""
        if len(data) % REC:
            problems.append("log-%d has %d bytes, not whole records: record %d is torn "
                            "(%d of its %d bytes)" % (f, len(data), len(data) // REC,
                                                       len(data) % REC, REC))
        for k in range(len(data) // REC):
            rec = data[k * REC:(k + 1) * REC]
            mo = re.match(rb"R(\d{10}):(\d{10}):(\d\d)\|", rec)
            if not mo or (int(mo.group(2)), int(mo.group(3))) != (k, f) or \
                    rec != record(int(mo.group(1)), k, f):
                problems.append("log-%d record %d is wrong: %r" % (f, k, rec[:40]))
                break
            seen.append(int(mo.group(1)))
    n = len(seen)
    missing = sorted(set(range(n)) - set(seen))
    if missing:
        problems.append("not one instant: %d whole records but record(s) %s missing while "
                        "later ones of other files are there" % (n, missing[:8]))
    if not lo <= n <= hi:
        problems.append("holds %d records; %d writes had returned before the snapshot was "
                        "requested, %d when it returned" % (n, lo, hi))
    data = (sdir / "slots").read_bytes()
    if len(data) != SLOTS * SLOT_STRIDE:
        problems.append("slots has %d bytes" % len(data))
    for s in range(SLOTS):
        rec = data[s * SLOT_STRIDE:s * SLOT_STRIDE + REC]
        mo = re.match(rb"S(\d{4}):(\d{10})\|", rec)
        if not (mo and int(mo.group(1)) == s and rec == slot_record(s, int(mo.group(2)))):
            problems.append("slot %d is torn (an overwrite half in): %r" % (s, rec[:40]))
    return n, ["snapshot %s: %s" % (name, x) for x in problems]


def test_point_in_time_with_writers(store, mounts):
    m = mount(mounts, store)
    r = m.path
    with open(r / "slots", "wb") as f:
        for s in range(SLOTS):
            f.write(slot_record(s, 0).ljust(SLOT_STRIDE, b"\0"))
    w = Appender(r, SEED)
    w.start()
    taken = []
    try:
        assert wait_until(lambda: w.done > 50 or w.error, 10)
        rng = random.Random(SEED)
        for _ in range(15):
            lo = w.done
            name = snap(store)
            hi = w.done
            taken.append((name, lo, hi))
            time.sleep(rng.random() * 0.08)
            if w.error:
                break
    finally:
        w.stop = True
        w.join(30)
    assert w.error is None, "writer failed: %r" % w.error
    assert w.done > 200 and w.overwrites > 50, "writer too slow to test anything"
    counts, problems = [], []
    for name, lo, hi in taken:
        n, probs = check_point_in_time(r / ".snapshots" / name, lo, hi, name)
        counts.append(n)
        problems += probs
    assert not problems, "%d of %d snapshots taken while writing are not a point in time:\n  %s" % (
        len({p.split(":")[0] for p in problems}), len(taken), "\n  ".join(problems[:30]))
    assert counts == sorted(counts)
    assert len(set(counts)) > len(counts) // 2, "snapshots did not see the writer progress"
    # and the same after a remount (nothing lived in a cache only)
    m.close()
    m = mount(mounts, store)
    for (name, lo, hi), n in zip(taken, counts):
        assert check_point_in_time(m.path / ".snapshots" / name, lo, hi, name) == (n, [])


def wait_until(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


# --------------------------------------------------------------------------
# snapshot of an unmounted volume
# --------------------------------------------------------------------------
def test_snapshot_while_unmounted(store, mounts):
    m = mount(mounts, store)
    rng = random.Random(SEED + 3)
    build_tree(m.path, rng)
    want1 = manifest(m.path)
    m.close()
    p = tresor("snapshot", "create", store.path, "vol", "--time", "2025-09-01T10:00:00",
               env=tenv(), check=True)
    name1 = p.stdout.strip()
    assert name1 == "2025-09-01"
    assert [s["name"] for s in snap_list(store)] == [name1]
    m = mount(mounts, store)
    assert sorted(os.listdir(m.path / ".snapshots")) == [name1]
    check_snapshot(m.path, name1, want1, " (taken unmounted)")
    assert_same(manifest(m.path), want1, "live tree after an unmounted snapshot")
    # changes after the remount do not reach it; a mounted snapshot next to it
    mutate(m.path, rng, 1)
    want2 = manifest(m.path)
    name2 = snap(store, when="2025-09-01T11:00:00")
    assert name2 == "2025-09-01_1100"
    check_snapshot(m.path, name1, want1)
    check_snapshot(m.path, name2, want2)
    m.close()
    # another unmounted one, after writes made while mounted
    name3 = snap(store, when="2025-09-02T11:00:00")
    m = mount(mounts, store)
    check_snapshot(m.path, name3, want2)
    check_snapshot(m.path, name1, want1)
    assert tresor("check", store.path, "--passphrase-file", store.passfile).returncode == 0


# --------------------------------------------------------------------------
# diff
# --------------------------------------------------------------------------
def diff_set(lines, rows):
    kinds = {"added": "+", "removed": "-", "changed": "M"}
    from_json = sorted("%s %s" % (kinds[r["change"]], r["path"]) for r in rows)
    assert sorted(lines) == from_json, "text and --json disagree: %s vs %s" % (lines, rows)
    assert len(set(lines)) == len(lines), "a line twice: %s" % lines
    return set(lines)


def invert(lines):
    inv = {"+": "-", "-": "+", "M": "M"}
    return {inv[l[0]] + l[1:] for l in lines}


def test_diff_added_removed_changed_moved(store, mounts):
    m = mount(mounts, store)
    r = m.path
    for d in ("d1", "d2", "d2/inner", "keep"):
        os.mkdir(r / d)
    for f, data in (("f1", b"one"), ("f2", b"two"), ("f3", b"three"), ("d1/x", b"x"),
                    ("d2/inner/y", b"y"), ("keep/same", b"same"), ("meta", b"m"),
                    ("grow", b"g"), ("keep/touched", b"t"), ("xa", b"xa")):
        (r / f).write_bytes(data)
    a = snap(store)
    (r / "f1").write_bytes(b"ONE")              # same size, new content
    with open(r / "grow", "ab") as f:
        f.write(b"more")
    os.chmod(r / "meta", 0o600)                  # metadata only
    os.utime(r / "keep/touched", (1, 1))         # times only
    os.unlink(r / "f3")
    (r / "f4").write_bytes(b"four")
    os.mkdir(r / "d3")
    (r / "d3" / "z").write_bytes(b"z")
    subprocess.run(["rm", "-rf", str(r / "d2")], check=True)
    os.rename(r / "d1/x", r / "d1/x-moved")
    os.rename(r / "f2", r / "keep/f2")
    os.utime(r / "keep", (5, 5))                 # a directory's times: not reported
    b = snap(store)
    want = {"M f1", "M grow", "M meta", "M keep/touched", "- f3", "+ f4", "+ d3", "+ d3/z",
            "- d2", "- d2/inner", "- d2/inner/y", "- d1/x", "+ d1/x-moved", "- f2", "+ keep/f2"}
    got = diff_set(*snap_diff(store, a, b))
    assert got == want, "diff %s %s: missing %s, unexpected %s" % (
        a, b, sorted(want - got), sorted(got - want))
    # the other way round
    got = diff_set(*snap_diff(store, b, a))
    assert got == invert(want), "diff %s %s: missing %s, unexpected %s" % (
        b, a, sorted(invert(want) - got), sorted(got - invert(want)))
    # identical snapshots, and a snapshot with itself
    c = snap(store)
    assert diff_set(*snap_diff(store, b, c)) == set()
    assert diff_set(*snap_diff(store, a, a)) == set()
    # a file changed and changed back to the same bytes/mode/mtime is the same
    (r / "f4").write_bytes(b"FOUR")
    d = snap(store)
    assert diff_set(*snap_diff(store, c, d)) == {"M f4"}
    assert diff_set(*snap_diff(store, a, d)) >= {"+ f4", "- f3"}
    # unknown snapshot
    p = tresor("snapshot", "diff", store.path, "vol", a, "1999-01-01", env=tenv())
    assert p.returncode == 1 and "1999-01-01" in p.stderr


def test_diff_hard_links(store, mounts):
    """Each name of a hard-linked file is a path of its own."""
    m = mount(mounts, store)
    r = m.path
    os.mkdir(r / "d")
    (r / "h1").write_bytes(b"linked")
    os.link(r / "h1", r / "d" / "h2")
    a = snap(store)
    os.link(r / "h1", r / "h3")                        # a new name
    b = snap(store)
    os.unlink(r / "h1")                                # the first name goes
    c = snap(store)
    with open(r / "d" / "h2", "r+b") as f:             # content, through one name
        f.write(b"LINKED")
    d = snap(store)
    problems = []
    for old, new, want in ((a, b, {"+ h3"}), (b, c, {"- h1"}), (c, d, {"M d/h2", "M h3"})):
        got = diff_set(*snap_diff(store, old, new))
        if got != want:
            problems.append("diff %s %s: got %s, expected %s" % (old, new, sorted(got),
                                                                   sorted(want)))
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------
# restore
# --------------------------------------------------------------------------
def test_restore_whole_volume_and_subtree(store, mounts, tmp):
    m = mount(mounts, store)
    r = m.path
    rng = random.Random(SEED + 4)
    build_tree(r, rng)
    want1 = manifest(r)
    s1 = snap(store)
    mutate(r, rng, 1)
    want2 = manifest(r)
    s2 = snap(store)
    mutate(r, rng, 2)   # the live tree differs from both

    out = tmp / "out"
    out.mkdir()
    # "." and "latest", while the volume is mounted
    restore(store, "latest", ".", out / "latest")
    got = manifest(out / "latest", skip_top=())
    got.pop("")
    w = dict(want2)
    w.pop("")
    assert_same(got, w, "restore of latest (%s)" % s2)
    m.close()
    # whole volume: its entries go into DEST
    restore(store, s1, "", out / "all")
    got = manifest(out / "all", skip_top=())
    got.pop("")
    w = dict(want1)
    w.pop("")
    assert_same(got, w, "whole-volume restore of %s" % s1)
    # subtrees: DEST/basename(PATH), with the subtree root's own metadata;
    # link counts differ where a name is outside the subtree
    for path in ("docs", "docs/deep/er", "hl", "odd", "sub/.snapshots", "ro", "private"):
        dest = out / ("sub-" + path.replace("/", "_"))
        restore(store, s1, path, dest)
        assert sorted(os.listdir(dest)) == [os.path.basename(path)]
        got = manifest(dest / os.path.basename(path), skip_top=())
        assert_same(got, sub_manifest(want1, path), "restore of %s:%s" % (s1, path),
                    ignore=("nlink",))
    # single files and a symlink
    for path in ("docs/rand.bin", "link-dir", "docs/fifo", "odd/new\nline", "hl/b"):
        dest = out / ("one-" + str(abs(hash(path))))
        restore(store, s1, path, dest)
        base = os.path.basename(path)
        assert os.listdir(dest) == [base]
        got = manifest(dest / base, skip_top=())
        assert_same(got, sub_manifest(want1, path), "restore of %s:%r" % (s1, path),
                    ignore=("nlink",))
    # no such path: an error, nothing created
    p = restore(store, s1, "docs/nope", out / "nope", check=False)
    assert p.returncode != 0 and not (out / "nope").exists()
    p = restore(store, "1999-01-01", "", out / "nope", check=False)
    assert p.returncode != 0 and not (out / "nope").exists()
    # the passphrase is needed
    p = tresor("restore", store.path, "vol", s1, "", out / "nopass", env=tenv())
    assert p.returncode != 0 and not (out / "nopass").exists()


def test_restore_resume_skips_what_is_there(store, mounts, tmp):
    m = mount(mounts, store)
    rng = random.Random(SEED + 5)
    build_tree(m.path, rng)
    write_file(m.path / "big", rand_bytes(rng, 9 * 1024 * 1024 + 3))
    want = manifest(m.path)
    want.pop("")
    s = snap(store)
    m.close()
    dest = tmp / "dest"
    p = restore(store, s, "", dest)
    nfiles = len({e["link"] for e in want.values() if e["type"] == "file"})
    mo = re.search(r"restored (\d+) file\(s\), (\d+) bytes .* \((\d+) already there\)", p.stdout)
    assert mo and int(mo.group(1)) == nfiles and int(mo.group(3)) == 0, p.stdout
    got = manifest(dest, skip_top=())
    got.pop("")
    assert_same(got, want, "first restore")
    inos = {pth: e["_ino"] for pth, e in got.items()}
    # a second run skips everything and changes nothing
    p = restore(store, s, "", dest)
    mo = re.search(r"restored (\d+) file\(s\), (\d+) bytes .* \((\d+) already there\)", p.stdout)
    assert mo and int(mo.group(1)) == 0 and int(mo.group(3)) == nfiles, p.stdout
    got = manifest(dest, skip_top=())
    got.pop("")
    assert_same(got, want, "second restore (resume)")
    changed = [pth for pth, e in got.items() if inos.get(pth) != e["_ino"]
               and e["type"] in ("file", "dir")]
    assert not changed, "rerun recreated %s" % changed[:10]
    # an interrupted restore: a file cut short, one missing, one half
    # written with the wrong mtime, a directory gone
    os.truncate(dest / "big", 4 * 1024 * 1024)
    os.unlink(dest / "docs/text.txt")
    subprocess.run(["rm", "-rf", str(dest / "odd")], check=True)
    with open(dest / "hl/p", "r+b") as f:
        f.write(b"garbage")
    p = restore(store, s, "", dest)
    mo = re.search(r"restored (\d+) file\(s\), (\d+) bytes .* \((\d+) already there\)", p.stdout)
    n_odd = len([1 for k in want if k.startswith("odd/")])
    assert mo and int(mo.group(1)) == 3 + n_odd, p.stdout
    got = manifest(dest, skip_top=())
    got.pop("")
    assert_same(got, want, "restore after an interrupted one")


def test_restore_writes_nothing_outside_dest(store, mounts, tmp):
    area = tmp / "area"
    outside = area / "outside"
    outside.mkdir(parents=True)
    (outside / "victim").write_bytes(b"untouched")
    m = mount(mounts, store)
    r = m.path
    # symlinks that point out of the tree, and names behind them
    os.symlink(str(outside), r / "esc-abs")
    os.symlink("../outside", r / "esc-rel")
    os.symlink(str(outside / "victim"), r / "esc-file")
    os.mkdir(r / "dir")
    os.symlink("../../outside/victim", r / "dir" / "up")
    (r / "victim").write_bytes(b"from the snapshot")
    (r / "plain").write_bytes(b"plain")
    os.mkdir(r / "esc-dir")
    (r / "esc-dir" / "victim").write_bytes(b"inside esc-dir")
    s1 = snap(store)
    want = manifest(r)
    want.pop("")
    m.close()

    def outside_state():
        return manifest(outside, skip_top=())

    before = outside_state()
    dest = area / "dest"
    restore(store, s1, "", dest)
    got = manifest(dest, skip_top=())
    got.pop("")
    assert_same(got, want, "restore with outward symlinks")
    restore(store, s1, "", dest)       # rerun over its own symlinks
    restore(store, s1, "esc-dir", dest)
    # DEST prepared with symlinks where the snapshot has a file and a dir:
    # whatever restore does, it must not follow them
    dest2 = area / "dest2"
    dest2.mkdir()
    os.symlink(str(outside / "victim"), dest2 / "victim")
    os.symlink(str(outside), dest2 / "esc-dir")
    os.symlink(str(outside / "victim"), dest2 / "plain")
    restore(store, s1, "", dest2, check=False)
    assert_same(outside_state(), before, "directory outside DEST")
    assert (outside / "victim").read_bytes() == b"untouched"
    assert sorted(os.listdir(area)) == ["dest", "dest2", "outside"]
    assert sorted(os.listdir(outside)) == ["victim"]
