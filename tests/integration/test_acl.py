"""POSIX ACLs behave as on ext4 (issue 13, fault 1).

Every operation runs twice, into an ext4 file system on a loop device and
into a tresor mount, and the two trees must agree: modes, ACLs (getfacl)
and whether uid 101 (Odoo in its container) can read each file.  Before
the fix `cp -a` left 0600/0700 modes behind (cp sets the ACL instead of
chmod, and tresor stored ACLs as opaque xattrs).
"""

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import tresor

UID = 101
IMG_MB = 64


@pytest.fixture
def ext4(tmp):
    img = tmp / "ext4.img"
    mnt = tmp / "ext4"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(IMG_MB << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True,
                   stdin=subprocess.DEVNULL)
    subprocess.run(["mount", "-o", "loop,acl", str(img), str(mnt)], check=True,
                   stdin=subprocess.DEVNULL)
    os.chmod(mnt, 0o755)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], stdin=subprocess.DEVNULL)


@pytest.fixture
def amnt(store, mounts):
    """The volume mounted for other users, as the containers use it."""
    m = mounts.mount(store, "vol", opts=("allow_other",))
    os.chmod(m.path, 0o755)
    return m


def sh(script, cwd, umask="022"):
    subprocess.run(["bash", "-euc", "umask %s; %s" % (umask, script)], cwd=str(cwd),
                   check=True, stdin=subprocess.DEVNULL)


def make_source(ext4):
    """A plans-like tree with plain modes, a private file and ACLs."""
    src = ext4 / "src"
    src.mkdir()
    sh("""
mkdir -p objects/OBJ-00001/photos private acl
echo plan > objects/OBJ-00001/plan.pdf
echo meta > objects/OBJ-00001/metadata.json
echo jpg > objects/OBJ-00001/photos/a.jpg
echo secret > private/key; chmod 600 private/key; chmod 700 private
echo run > objects/run.sh; chmod 755 objects/run.sh
chmod 750 acl
setfacl -m u:%(u)d:rx acl
setfacl -d -m u:%(u)d:rwx,g::rx,o::- acl
echo shared > acl/shared; chmod 640 acl/shared; setfacl -m u:%(u)d:r acl/shared
echo inherited > acl/inherited
mkdir acl/sub
""" % {"u": UID}, src)
    return src


def tree(root):
    """Relative path -> (mode, getfacl text) for every entry below root."""
    root = Path(root)
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                   if p.name != "lost+found")
    out = {}
    for rel in ["."] + paths:
        p = root / rel
        st = os.lstat(p)
        if os.path.islink(p):
            out[rel] = (oct(st.st_mode), "")
            continue
        acl = subprocess.run(["getfacl", "-p", "-n", "--omit-header", "--", str(p)],
                             capture_output=True, text=True, check=True).stdout
        out[rel] = (oct(st.st_mode), acl)
    return out


def uid_reads(root):
    """Relative path -> whether uid 101 can read the file."""
    res = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and not p.is_symlink():
            r = subprocess.run(["setpriv", "--reuid=%d" % UID, "--regid=%d" % UID,
                                "--clear-groups", "cat", str(p)],
                               stdin=subprocess.DEVNULL, capture_output=True)
            res[str(p.relative_to(root))] = r.returncode == 0
    return res


def assert_same(ref, got):
    a, b = tree(ref), tree(got)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k] == b[k], "%s differs from ext4:\next4:   %r\ntresor: %r" % (k, a[k], b[k])
    ra, rb = uid_reads(ref), uid_reads(got)
    assert ra == rb, "uid %d reads differ: ext4 %r tresor %r" % (UID, ra, rb)
    return ra


COPIES = {
    "cp -a": "cp -a {src}/. {dst}/",
    "rsync -aAX": "rsync -aAX {src}/ {dst}/",
    "tar --acls": "tar --acls -cf - -C {src} . | tar --acls -xpf - -C {dst}",
}


@pytest.mark.parametrize("how", sorted(COPIES))
def test_copy_keeps_modes_and_acls_as_ext4(ext4, amnt, how):
    src = make_source(ext4)
    for dst in (ext4 / "dst", amnt.path / "dst"):
        dst.mkdir()
        sh(COPIES[how].format(src=src, dst=dst), "/")
    reads = assert_same(ext4 / "dst", amnt.path / "dst")
    # the container user reads the plans, not the private key
    assert reads["objects/OBJ-00001/plan.pdf"] and reads["acl/shared"]
    assert not reads["private/key"]
    st = os.stat(amnt.path / "dst" / "objects" / "OBJ-00001" / "plan.pdf")
    assert st.st_mode & 0o777 == 0o644
    assert os.stat(amnt.path / "dst" / "objects").st_mode & 0o777 == 0o755


SETFACL_SCRIPT = """
mkdir x; chmod 755 x
setfacl -m u:%(u)d:rx x
setfacl -d -m g:%(u)d:rwx x
touch x/a; mkdir x/b; echo data > x/c
setfacl -m m::r x/a
chmod 640 x/c
setfacl -m u:%(u)d:rw x/c
chmod 600 x/c
setfacl -x u:%(u)d x
setfacl -b x/b
setfacl -k x
touch x/after-k
echo y > y; setfacl --set u::rw,g::r,o::r y
echo z > z; setfacl -m u:%(u)d:r z; setfacl -b z
mkdir -p sg; chmod 2775 sg; setfacl -d -m u::rwx,g::rwx,o::rx sg; mkdir sg/in; touch sg/f
""" % {"u": UID}


def test_setfacl_round_trips_as_ext4(ext4, amnt):
    for d in (ext4, amnt.path):
        (d / "w").mkdir()
        sh(SETFACL_SCRIPT, d / "w", umask="027")
    assert_same(ext4 / "w", amnt.path / "w")


@pytest.mark.parametrize("umask", ["022", "077", "002"])
def test_umask_applies_without_default_acl(ext4, amnt, umask):
    for d in (ext4, amnt.path):
        (d / "u").mkdir()
        sh("touch f; mkdir d; mkfifo p; ln -s f l", d / "u", umask=umask)
    assert_same(ext4 / "u", amnt.path / "u")


def test_acl_is_enforced_for_the_container_user(amnt):
    d = amnt.path / "d"
    d.mkdir(mode=0o700)
    (d / "f").write_text("x")
    os.chmod(d / "f", 0o600)
    assert uid_reads(amnt.path)["d/f"] is False
    sh("setfacl -m u:%d:rx d; setfacl -m u:%d:r d/f" % (UID, UID), amnt.path)
    assert uid_reads(amnt.path)["d/f"] is True
    # chmod narrows the mask, as on ext4: the named entry loses its effect
    os.chmod(d / "f", 0o600)
    assert uid_reads(amnt.path)["d/f"] is False


def test_snapshot_keeps_modes_and_acls(ext4, store, amnt):
    src = make_source(ext4)
    for dst in (ext4 / "dst", amnt.path / "dst"):
        dst.mkdir()
        sh("cp -a %s/. %s/" % (src, dst), "/")
    store.run("snapshot", "create", str(store.path), "vol", check=True)
    snaps = os.listdir(amnt.path / ".snapshots")
    assert len(snaps) == 1
    snap = amnt.path / ".snapshots" / snaps[0] / "dst"
    reads = assert_same(ext4 / "dst", snap)
    assert reads["objects/OBJ-00001/plan.pdf"] and not reads["private/key"]
    # restore brings back the same modes and ACLs
    out = ext4 / "restored"
    tresor("restore", str(store.path), "vol", snaps[0], "dst", str(out),
           "--passphrase-file", str(store.passfile), check=True)
    os.chmod(out, 0o755)
    assert_same(ext4 / "dst", out / "dst")


def test_noacl_refuses_acls_so_tools_fall_back(ext4, store, mounts):
    m = mounts.mount(store, "vol", opts=("allow_other", "noacl"))
    os.chmod(m.path, 0o755)
    (ext4 / "s").mkdir()
    sh("echo a > f; chmod 644 f; mkdir d; chmod 755 d", ext4 / "s", umask="077")
    (m.path / "dst").mkdir()
    sh("cp -a %s/. %s/" % (ext4 / "s", m.path / "dst"), "/", umask="077")
    assert os.stat(m.path / "dst" / "f").st_mode & 0o777 == 0o644
    assert os.stat(m.path / "dst" / "d").st_mode & 0o777 == 0o755
    r = subprocess.run(["setfacl", "-m", "u:%d:r" % UID, str(m.path / "dst" / "f")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "not supported" in r.stderr.lower()


def acl_blob(entries):
    """The kernel's xattr form of an ACL: [(tag, perm, id)]."""
    b = (2).to_bytes(4, "little")
    for tag, perm, ident in entries:
        b += tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + \
            (ident & 0xffffffff).to_bytes(4, "little")
    return b


def test_old_store_acl_blobs_follow_the_mode(store, mounts):
    """Stores written before ACLs were applied hold ACL xattrs as opaque
    blobs (`cp -a` of 755/644 trees left minimal ACLs on 0600 files): the
    mode stays the truth, minimal blobs say nothing, extended ones apply
    with their owner, mask and other entries taken from the mode."""
    m = mounts.mount(store, "vol", opts=("allow_other",))
    os.chmod(m.path, 0o755)
    for name, mode in (("minimal", 0o600), ("extended", 0o640)):
        (m.path / name).write_text(name)
        os.chmod(m.path / name, mode)
    inos = {n: os.stat(m.path / n).st_ino for n in ("minimal", "extended")}
    m.unmount()
    db = sqlite3.connect(str(store.path / "index.db"))
    vol = db.execute("SELECT id FROM volume WHERE name='vol'").fetchone()[0]
    blobs = {
        "minimal": acl_blob([(1, 7, -1), (4, 5, -1), (0x20, 5, -1)]),          # rwxr-xr-x
        "extended": acl_blob([(1, 7, -1), (2, 4, UID), (4, 7, -1), (0x10, 7, -1),
                              (0x20, 7, -1)]),                                  # u:101:r, mask rwx
    }
    for n, blob in blobs.items():
        birth = db.execute("SELECT birth FROM inode WHERE vol=? AND ino=? AND death=?",
                           (vol, inos[n], 2**63 - 1)).fetchone()[0]
        db.execute("INSERT INTO xattr(vol, ino, name, birth, death, value) VALUES (?,?,?,?,?,?)",
                   (vol, inos[n], "system.posix_acl_access", birth, 2**63 - 1, blob))
    db.commit()
    db.close()
    m = mounts.mount(store, "vol", opts=("allow_other",))
    assert os.stat(m.path / "minimal").st_mode & 0o777 == 0o600
    assert "system.posix_acl_access" not in os.listxattr(m.path / "minimal")
    acl = subprocess.run(["getfacl", "-n", "--omit-header", str(m.path / "extended")],
                         capture_output=True, text=True, check=True).stdout.split()
    # owner, mask and other as the mode 0640 says; the named entry stays
    assert acl == ["user::rw-", "user:%d:r--" % UID, "group::rwx", "#effective:r--",
                   "mask::r--", "other::---"]
    reads = uid_reads(m.path)
    assert reads == {"minimal": False, "extended": True}
