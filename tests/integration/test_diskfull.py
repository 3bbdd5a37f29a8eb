"""Disk full: the store on a small filesystem of its own (tmpfs, size=).

  - writes fail with ENOSPC (at write, flush or fsync), never EIO, and the
    daemon keeps running;
  - nothing already stored is damaged: files written before are
    byte-exact, snapshots too, and `check --read-data` is clean;
  - freeing space (a ballast file on the same filesystem removed) makes
    writes work again without a remount;
  - snapshot create works on the full disk, and prune frees space there:
    deleting the big files and pruning the snapshots that held them gives
    the space back, and writes work again.
The store keeps a reserve free for this (chunker/store.c store_space_check):
new data gets ENOSPC while less than max(2 %, a pack + 1 MiB) is free.
"""

import errno
import os
import shutil
import subprocess

import pytest

from conftest import PASSPHRASE, init_store, mounted, tresor


# 2 MiB packs: the space reserve is a pack plus 1 MiB (chunker/store.c), so
# the reserve stays small on this small disk
SMALL_PACKS = {"TRESOR_TEST_PACK_TARGET": str(2 << 20)}


def tenv():
    e = dict(os.environ)
    e["TRESOR_PASSPHRASE"] = PASSPHRASE
    e.update(SMALL_PACKS)
    return e


@pytest.fixture
def small_fs(tmp):
    d = tmp / "disk"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", str(d)],
                   check=True)
    yield d
    subprocess.run(["umount", "-l", str(d)])


def fill(path, chunk=1 << 20, limit=1 << 30):
    """Write random data to path until the store says no; return
    (bytes accepted by write(), the errno that stopped us)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    n = 0
    err = None
    try:
        while n < limit:
            try:
                os.write(fd, os.urandom(chunk))
                n += chunk
                if n % (4 * chunk) == 0:
                    os.fsync(fd)
            except OSError as e:
                err = e.errno
                break
        if err is None:
            os.fsync(fd)
    finally:
        try:
            os.close(fd)
        except OSError as e:
            err = err or e.errno
    return n, err


def write_file(path, data):
    """Write and fsync; return None or the errno of the failure."""
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return None
    except OSError as e:
        return e.errno


def free_bytes(path):
    s = os.statvfs(path)
    return s.f_bavail * s.f_frsize


def test_enospc_keeps_data_and_recovers(small_fs, tmp, passfile, mounts):
    store = init_store(small_fs / "store", passfile)
    m = mounts.mount(store, "vol", extra_env=SMALL_PACKS)
    old = {"a": os.urandom(3 << 20), "b": os.urandom(100_000), "sub/c": b"small\n" * 100}
    os.mkdir(m / "sub")
    for name, data in old.items():
        assert write_file(m / name, data) is None
    p = tresor("snapshot", "create", store.path, "vol", "--scheduled", env=tenv())
    assert p.returncode == 0, p.stderr
    snap = p.stdout.strip()

    # a ballast file on the store's own disk, to free later
    ballast = small_fs / "ballast"
    with open(ballast, "wb") as f:
        f.write(b"\1" * (4 << 20))

    n, err = fill(m / "big")
    assert err == errno.ENOSPC, "filling the disk stopped with %s after %d bytes, not ENOSPC" \
        % (errno.errorcode.get(err, err), n)
    assert n > 8 << 20, "only %d bytes fit before ENOSPC" % n
    assert m.proc.poll() is None, "the daemon died on a full disk:\n" + m.log_text()[-3000:]
    # a new small file fails the same way, not with EIO
    e = write_file(m / "more", os.urandom(2 << 20))
    assert e in (errno.ENOSPC, None), "write on a full disk: %s" % errno.errorcode.get(e, e)

    # what was there is intact, and readable now
    for name, data in old.items():
        assert (m / name).read_bytes() == data, "%s changed on a full disk" % name
    for name, data in old.items():
        assert (m / ".snapshots" / snap / name).read_bytes() == data

    # a snapshot can be taken on the full disk
    p = tresor("snapshot", "create", store.path, "vol", "--scheduled", env=tenv())
    assert p.returncode == 0, "snapshot create on a full disk: %s" % p.stderr

    # freeing space outside the store: writes work again, no remount
    os.unlink(ballast)
    e = write_file(m / "after-ballast", os.urandom(1 << 20))
    assert e is None, "write after freeing space: %s" % errno.errorcode.get(e, e)

    # fill again, then free space inside the store: delete the big files,
    # snapshot, prune the snapshots that hold them
    n2, err = fill(m / "big2")
    assert err == errno.ENOSPC
    for f in ("big", "big2", "more"):
        if os.path.exists(m / f):
            os.unlink(m / f)
    dfd = os.open(m.path, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    p = tresor("snapshot", "create", store.path, "vol", "--scheduled", env=tenv())
    assert p.returncode == 0, "snapshot create on a full disk: %s" % p.stderr
    before = free_bytes(small_fs)
    p = tresor("prune", store.path, "vol", "--keep-last", "1", "--json", env=tenv(), timeout=300)
    assert p.returncode == 0, "prune on a full disk: %s %s" % (p.stdout, p.stderr)
    after = free_bytes(small_fs)
    assert after > before + (8 << 20), "prune freed only %d bytes (%d -> %d)" \
        % (after - before, before, after)
    e = write_file(m / "after-prune", os.urandom(4 << 20))
    assert e is None, "write after prune: %s" % errno.errorcode.get(e, e)

    for name, data in old.items():
        assert (m / name).read_bytes() == data
    m.close()
    p = tresor("check", store.path, "--read-data", env=tenv(), timeout=300)
    assert p.returncode == 0, "check --read-data after ENOSPC: %s %s" % (p.stdout, p.stderr)
    m = mounts.mount(store, "vol", extra_env=SMALL_PACKS)
    for name, data in old.items():
        assert (m / name).read_bytes() == data
    m.close()
