"""A slow remote stalls only the reads that need it (issue 15).

A lazily recovered store fetches a pack when a read needs it.  That fetch
used to run on the mount's one FUSE request thread, so while the remote
took its time every other request of the mount waited too: a read of a
file that is already here, a listing, a write.  Now a read that needs a
pack not here is answered by a thread of its own (fs/fuse_defer.c) and the
request thread goes on.

The remote is the real s3rver behind tests/servers/faultproxy.py, which
holds every GET of the second file's pack for STALL seconds.  While a
reader waits for it, the same mount serves a read of the first (fetched)
file, a listing, a stat and a write, each well within that time; the
slow read then returns the right bytes.  With the fetch on the request
thread each of those would wait out the stall.
"""

import os
import threading
import time
from pathlib import Path

from conftest import wait_for
from recovery_util import blob, fill_store, local_packs, packs_of_file, MiB
from remote_proxy import s3_remote, s3proxy, s3server  # noqa: F401
from test_push_recover import push, remote_add
from test_recover_lazy import daemon_env, recover_lazy

STALL = 8.0
FILES = {"here.bin": blob(11, 3 * MiB), "far.bin": blob(12, 4 * MiB)}


def timed(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t


def read_uncached(path):
    with open(path, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return f.read()


def test_local_reads_go_on_while_a_pack_is_fetched(tmp, make_store, mounts, s3proxy, passfile):
    st = make_store()
    fill_store(st, mounts, FILES, snapshot_times=["2024-03-01T02:00:00"])
    remote = s3_remote(tmp, s3proxy, "slow-%d" % os.getpid())
    remote_add(st, "offsite", remote)
    push(st, "offsite", remote)
    lz = recover_lazy(remote, tmp / "lazy", passfile)
    m = mounts.mount(lz, "vol", extra_env=daemon_env(remote))
    here = Path(m.path) / "here.bin"
    far = Path(m.path) / "far.bin"
    # here.bin's packs are fetched and local now
    assert read_uncached(here) == FILES["here.bin"]
    want = packs_of_file(lz.path, "here.bin")
    assert wait_for(lambda: want <= local_packs(lz.path), 30)
    far_packs = packs_of_file(lz.path, "far.bin") - want
    assert far_packs and not far_packs & local_packs(lz.path)
    for name in far_packs:
        s3proxy.add("stall", method="GET", path=name, count=None, seconds=STALL)
    got = {}

    def slow():
        got["data"], got["t"] = timed(lambda: far.read_bytes())
    t = threading.Thread(target=slow, daemon=True)
    t.start()
    try:
        # the slow read is at the remote now
        assert wait_for(lambda: any(name in r.target for r in s3proxy.records
                                    for name in far_packs), 20, 0.05)
        # the same bytes through another inode: nothing of it is cached
        # in the kernel, so the read reaches the mount's request thread
        data, read_took = timed(lambda: read_uncached(
            Path(m.path) / ".snapshots" / "2024-03-01" / "here.bin"))
        assert data == FILES["here.bin"]
        assert read_took < STALL / 4, \
            "a local read waited %.1f s for another file's fetch" % read_took
        names, list_took = timed(lambda: sorted(os.listdir(m.path)))
        assert names == ["far.bin", "here.bin"] and list_took < STALL / 4, list_took
        _, took = timed(lambda: (Path(m.path) / "new.txt").write_text("written meanwhile\n"))
        assert took < STALL / 4, "a write waited %.1f s for another file's fetch" % took
        assert (Path(m.path) / "new.txt").read_text() == "written meanwhile\n"
        assert t.is_alive(), "the slow read ended before the others were tried"
        print("during a %.0f s fetch: local read of 3 MiB %.3f s, listing %.3f s, write %.3f s"
              % (STALL, read_took, list_took, took))
    finally:
        t.join(STALL * 6)
        s3proxy.clear_faults()
    assert not t.is_alive()
    assert got["data"] == FILES["far.bin"]
    assert got["t"] >= STALL * 0.9, got["t"]
