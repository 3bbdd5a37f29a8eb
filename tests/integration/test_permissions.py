"""Permission checks for other users, as on ext4 (mount -o allow_other).

The tests run as root and act as other uids through a child python process
started with setgroups/setgid/setuid.
"""

import json
import os
import stat
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

U1, G1 = 101, 101       # the "container user"
U2, G2 = 102, 102       # a stranger
SHARED_GID = 2000

CHILD = r'''
import errno, json, os, sys
res = []
for op in json.loads(sys.argv[1]):
    name, path, args = op[0], op[1], op[2:]
    try:
        if name == "read":
            with open(path, "rb") as f:
                r = f.read().decode("latin-1")
        elif name == "write":
            with open(path, "wb") as f:
                f.write(args[0].encode())
            r = "OK"
        elif name == "append":
            with open(path, "ab") as f:
                f.write(args[0].encode())
            r = "OK"
        elif name == "mkdir":
            os.mkdir(path); r = "OK"
        elif name == "listdir":
            r = sorted(os.listdir(path))
        elif name == "stat":
            st = os.stat(path); r = [st.st_uid, st.st_gid, st.st_mode]
        elif name == "chmod":
            os.chmod(path, args[0]); r = "OK"
        elif name == "chown":
            os.chown(path, args[0], args[1]); r = "OK"
        elif name == "unlink":
            os.unlink(path); r = "OK"
        elif name == "rename":
            os.rename(path, args[0]); r = "OK"
        elif name == "utime_now":
            os.utime(path); r = "OK"
        elif name == "utime_set":
            os.utime(path, (1000, 1000)); r = "OK"
        elif name == "setxattr":
            os.setxattr(path, args[0], args[1].encode()); r = "OK"
        elif name == "truncate":
            os.truncate(path, args[0]); r = "OK"
        else:
            r = "BADOP"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    res.append(r)
print(json.dumps(res))
'''

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def as_user(uid, gid, groups, *ops):
    p = subprocess.run([PYTHON, "-c", CHILD, json.dumps([[str(a) if hasattr(a, "__fspath__") else a
                                                           for a in op] for op in ops])],
                       user=uid, group=gid, extra_groups=list(groups), cwd="/",
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0, "child as uid %d failed: %s" % (uid, p.stderr)
    res = json.loads(p.stdout)
    return res[0] if len(ops) == 1 else res


def setup_tree(r):
    os.chmod(r, 0o755)
    os.mkdir(r / "u101", 0o755)
    os.chown(r / "u101", U1, G1)
    os.mkdir(r / "rootonly", 0o700)
    (r / "rootonly" / "hidden").write_bytes(b"hidden")
    os.mkdir(r / "rootpub", 0o755)
    os.chmod(r / "rootpub", 0o755)
    (r / "rootpub" / "secret").write_bytes(b"secret")
    os.chmod(r / "rootpub" / "secret", 0o600)
    (r / "rootpub" / "pub").write_bytes(b"public")
    os.chmod(r / "rootpub" / "pub", 0o644)
    os.mkdir(r / "grp")
    os.chown(r / "grp", 0, SHARED_GID)
    os.chmod(r / "grp", 0o770)
    (r / "grp" / "doc").write_bytes(b"group doc")
    os.chown(r / "grp" / "doc", 0, SHARED_GID)
    os.chmod(r / "grp" / "doc", 0o640)


def test_other_user_permissions(store, mounts):
    m = mounts.mount(store, "vol", opts=["allow_other"])
    r = m.path
    setup_tree(r)
    own = r / "u101" / "mine.txt"

    # the user's own directory: create, write, read, new file owned by it
    assert as_user(U1, G1, [], ("write", own, "hello")) == "OK"
    assert as_user(U1, G1, [], ("append", own, " world")) == "OK"
    assert as_user(U1, G1, [], ("read", own)) == "hello world"
    assert as_user(U1, G1, [], ("mkdir", r / "u101" / "sub")) == "OK"
    st = os.stat(own)
    assert (st.st_uid, st.st_gid) == (U1, G1), "new file owned by %d:%d" % (st.st_uid, st.st_gid)
    st = os.stat(r / "u101" / "sub")
    assert (st.st_uid, st.st_gid) == (U1, G1)
    assert own.read_bytes() == b"hello world"
    assert as_user(U1, G1, [], ("chmod", own, 0o600)) == "OK"
    assert stat.S_IMODE(os.stat(own).st_mode) == 0o600
    assert as_user(U1, G1, [], ("chown", own, 0, 0)) == "EPERM"
    assert as_user(U1, G1, [], ("utime_set", own)) == "OK"

    # root's files and directories
    assert as_user(U1, G1, [], ("read", r / "rootpub" / "secret")) == "EACCES"
    assert as_user(U1, G1, [], ("read", r / "rootpub" / "pub")) == "public"
    assert as_user(U1, G1, [], ("write", r / "rootpub" / "pub", "x")) == "EACCES"
    assert as_user(U1, G1, [], ("truncate", r / "rootpub" / "pub", 0)) == "EACCES"
    assert as_user(U1, G1, [], ("write", r / "rootpub" / "new", "x")) == "EACCES"
    assert as_user(U1, G1, [], ("mkdir", r / "rootpub" / "newdir")) == "EACCES"
    assert as_user(U1, G1, [], ("unlink", r / "rootpub" / "pub")) == "EACCES"
    assert as_user(U1, G1, [], ("rename", r / "rootpub" / "pub", r / "u101" / "stolen")) == "EACCES"
    assert as_user(U1, G1, [], ("chmod", r / "rootpub" / "pub", 0o666)) == "EPERM"
    assert as_user(U1, G1, [], ("chown", r / "rootpub" / "pub", U1, G1)) == "EPERM"
    assert as_user(U1, G1, [], ("utime_set", r / "rootpub" / "pub")) == "EPERM"
    assert as_user(U1, G1, [], ("utime_now", r / "rootpub" / "pub")) == "EACCES"
    assert as_user(U1, G1, [], ("listdir", r / "rootonly")) == "EACCES"
    assert as_user(U1, G1, [], ("read", r / "rootonly" / "hidden")) == "EACCES"
    assert as_user(U1, G1, [], ("setxattr", r / "rootpub" / "pub", "user.x", "1")) in ("EACCES", "EPERM")
    # nothing changed
    assert (r / "rootpub" / "pub").read_bytes() == b"public"
    assert stat.S_IMODE(os.stat(r / "rootpub" / "pub").st_mode) == 0o644
    assert sorted(os.listdir(r / "rootpub")) == ["pub", "secret"]
    # root can still do anything (also in the user's dir)
    (r / "u101" / "by-root").write_bytes(b"r")
    assert os.stat(r / "u101" / "by-root").st_uid == 0


def test_group_permissions(store, mounts):
    m = mounts.mount(store, "vol", opts=["allow_other"])
    r = m.path
    setup_tree(r)
    # a member of the group may read the 0640 file and create in the 0770 dir
    assert as_user(U1, G1, [SHARED_GID], ("read", r / "grp" / "doc")) == "group doc"
    assert as_user(U1, G1, [SHARED_GID], ("write", r / "grp" / "doc", "x")) == "EACCES"
    assert as_user(U1, G1, [SHARED_GID], ("write", r / "grp" / "by-u1", "u1")) == "OK"
    st = os.stat(r / "grp" / "by-u1")
    assert (st.st_uid, st.st_gid) == (U1, G1)
    # a non-member may not
    assert as_user(U2, G2, [], ("read", r / "grp" / "doc")) == "EACCES"
    assert as_user(U2, G2, [], ("listdir", r / "grp")) == "EACCES"
    assert as_user(U2, G2, [], ("write", r / "grp" / "by-u2", "u2")) == "EACCES"
    # primary gid counts as well
    assert as_user(U2, SHARED_GID, [], ("read", r / "grp" / "doc")) == "group doc"


def test_setgid_directory_inherits_group(store, mounts):
    m = mounts.mount(store, "vol", opts=["allow_other"])
    r = m.path
    setup_tree(r)
    os.chmod(r / "grp", 0o2770)
    assert as_user(U1, G1, [SHARED_GID], ("write", r / "grp" / "f", "x")) == "OK"
    assert as_user(U1, G1, [SHARED_GID], ("mkdir", r / "grp" / "d")) == "OK"
    assert os.stat(r / "grp" / "f").st_gid == SHARED_GID
    st = os.stat(r / "grp" / "d")
    assert st.st_gid == SHARED_GID
    assert st.st_mode & stat.S_ISGID, "subdirectory of a setgid dir lost the setgid bit"


def test_sticky_directory(store, mounts):
    m = mounts.mount(store, "vol", opts=["allow_other"])
    r = m.path
    os.chmod(r, 0o755)
    os.mkdir(r / "shared")
    os.chmod(r / "shared", 0o1777)
    assert as_user(U1, G1, [], ("write", r / "shared" / "u1file", "1")) == "OK"
    os.chmod(r / "shared" / "u1file", 0o666)
    assert as_user(U2, G2, [], ("unlink", r / "shared" / "u1file")) in ("EPERM", "EACCES")
    # (truncate, not open(O_CREAT): fs.protected_regular may refuse that)
    assert as_user(U2, G2, [], ("truncate", r / "shared" / "u1file", 0)) == "OK"
    assert as_user(U1, G1, [], ("unlink", r / "shared" / "u1file")) == "OK"


def test_permissions_persist(store, mounts):
    m = mounts.mount(store, "vol", opts=["allow_other"])
    setup_tree(m.path)
    assert as_user(U1, G1, [], ("write", m / "u101" / "f", "x")) == "OK"
    m.close()
    m = mounts.mount(store, "vol", opts=["allow_other"])
    r = m.path
    st = os.stat(r / "u101" / "f")
    assert (st.st_uid, st.st_gid) == (U1, G1)
    assert as_user(U1, G1, [], ("read", r / "rootpub" / "secret")) == "EACCES"
    assert as_user(U1, G1, [], ("read", r / "u101" / "f")) == "x"


def test_without_allow_other_others_are_refused(store, mounts):
    m = mounts.mount(store, "vol")
    os.chmod(m.path, 0o777)
    (m / "f").write_bytes(b"x")
    os.chmod(m / "f", 0o644)
    assert as_user(U1, G1, [], ("read", m / "f")) == "EACCES"


def test_write_by_another_user_drops_setuid_as_ext4(store, mounts):
    """A write by a non-root caller drops set-user-ID, and set-group-ID
    where the group may execute or the caller is outside the file's group,
    as on a local filesystem; root's write keeps them.
    Appends go through a direct handle, where the kernel leaves this to
    the filesystem; plain writes go through the page cache."""
    m = mounts.mount(store, "vol", opts=["allow_other"])
    local = Path(tempfile.mkdtemp(prefix="tresor-suid-", dir="/tmp"))   # others may enter /tmp
    got = {}
    try:
        compare(m.path, local, got)
    finally:
        shutil.rmtree(local)
    assert got["False"] == got["True"], got
    # set-group-ID without group execute goes only for a caller outside
    # the file's group (the kernel's rule since 6.2)
    assert got["False"] == ["0o777", "0o777", "0o767", "0o2767", "0o777", "0o777",
                            "0o4777"], got
    m.unmount()
    m = mounts.mount(store, "vol", opts=["allow_other"])
    assert oct(os.stat(m.path / "f0").st_mode & 0o7777) == "0o777", "not persisted"


def compare(mnt, local, got):
    for top in (mnt, local):
        os.chmod(top, 0o755)
        res = []
        for i, (mode, op, who, gid) in enumerate([
                (0o4777, "append", U1, 0), (0o6777, "append", U1, 0),
                (0o2767, "append", U1, 0), (0o2767, "append", U1, G1),
                (0o4777, "write", U1, 0), (0o6777, "write", U1, 0),
                (0o4777, "append", 0, 0)]):
            f = top / ("f%d" % i)
            f.write_bytes(b"x")
            os.chown(f, 0, gid)
            os.chmod(f, mode)
            if who:
                assert as_user(who, who, [], (op, f, "more")) == "OK"
            else:
                with open(f, "ab") as fh:
                    fh.write(b"more")
            res.append(oct(os.stat(f).st_mode & 0o7777))
        got[str(top == local)] = res
