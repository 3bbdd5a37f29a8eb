"""Small packs are merged (issue 18: small pushes, long lives).

Every push finishes the pack being written, so a store pushed every hour
with little change gets one small pack per hour, each padded to 256 KiB,
locally and on the remote.  The GC of a prune merges them once there are
eight or more under 1 MiB: their live chunks go into one new pack in one
transaction and the old packs are trashed, as a rewrite does.  The next
push uploads the merged pack and deletes the old ones on the remote once
the grace has passed (here --grace 0s), and a recovery from the remote
reads every file and snapshot as before.  Packs of a lazy store that are
not here are left alone.
"""

import os

import pytest

from conftest import Store
from test_push_grace import local_pack_keys, pack_keys, prune_to_last, push_at, recovers_to
from test_push_recover import (compare, make_remote, remote_add, run, s3server,  # noqa: F401
                               scan, snapshot)

HOURS = 12


def remote_data_bytes(remote):
    """Bytes of the pack objects of a local-directory remote."""
    total = 0
    for dirpath, _, files in os.walk(os.path.join(remote.url, "data")):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


def test_hourly_pushes_leave_one_pack_not_twelve(tmp, make_store, mounts, make_remote,
                                                 passfile):
    store = make_store()
    remote = make_remote("local")
    run("remote", "add", store.path, "off", remote.url, *remote.opts, "--grace", "0s",
        env=remote.env, check=True)
    for h in range(HOURS):
        m = mounts.mount(store, "vol")
        (m.path / ("hour-%02d.txt" % h)).write_bytes(os.urandom(3000) + b"%d\n" % h)
        m.close()
        push_at(store, "off", remote)
    m = mounts.mount(store, "vol")
    want = scan(m.path)
    m.close()
    snapshot(store, "vol", "2024-03-02T02:00:00")
    small = local_pack_keys(store)
    assert len(small) >= HOURS, small
    assert pack_keys(remote) == small
    before = remote_data_bytes(remote)
    p = store.run("prune", store.path, "vol", "--keep-last", "1")
    assert p.returncode == 0, p.stderr
    n = int(p.stdout.split("merged ")[1].split()[0])
    assert n >= HOURS and "small pack(s)" in p.stdout, p.stdout
    merged = local_pack_keys(store)
    assert len(merged) <= len(small) - HOURS + 1, (len(small), len(merged))
    # the files read the same from the merged pack
    m = mounts.mount(store, "vol")
    compare(want, scan(m.path), "the tree read from the merged pack")
    m.close()
    p = store.check()
    assert p.returncode == 0, p.stdout + p.stderr
    # the push uploads the merged pack and, past the grace, deletes the rest
    res = push_at(store, "off", remote)
    assert res["packs"] >= 1, res
    res = push_at(store, "off", remote, 60)
    assert pack_keys(remote) == merged, (len(pack_keys(remote)), len(merged))
    # the padding of every small pack but one is gone from the remote
    after = remote_data_bytes(remote)
    assert after <= before - (HOURS - 1) * 256 * 1024, (before, after)
    print("remote data: %d packs, %d bytes -> %d packs, %d bytes"
          % (len(small), before, len(merged), after))
    recovers_to(tmp, mounts, remote, passfile, want, "merged")
    # a second prune finds nothing left to merge (and says nothing of it)
    pr = prune_to_last(store)
    assert pr["packs_merged"] == 0, pr
    p = store.run("prune", store.path, "vol", "--keep-last", "1")
    assert p.returncode == 0 and "merged" not in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_packs_of_killed_pushes_are_deleted_once_merged(kind, tmp, make_store, mounts,
                                                        make_remote, passfile):
    """A push killed after sending a pack but before noting it leaves that
    pack on the remote.  While the pack is here the next push finds it
    whole; once a merge has freed it here first, only the push's intent
    (remote_sending) says it may be there, and the push after the merge
    deletes it with the other freed packs: nothing stays on the remote
    that the index does not know of."""
    store = make_store()
    remote = make_remote(kind)
    run("remote", "add", store.path, "off", remote.url, *remote.opts, "--grace", "0s",
        env=remote.env, check=True)
    killed = 0
    for h in range(10):
        m = mounts.mount(store, "vol")
        (m.path / ("hour-%02d.txt" % h)).write_bytes(os.urandom(3000) + b"%d\n" % h)
        m.close()
        if h < 7:
            push_at(store, "off", remote)
            continue
        env = dict(remote.env, TRESOR_CRASH_AT="push-pack")
        p = run("push", store.path, "off", "--passphrase-file", store.passfile, env=env)
        assert p.returncode != 0, "the push was not killed: " + p.stdout
        killed += 1
    m = mounts.mount(store, "vol")
    want = scan(m.path)
    m.close()
    before = pack_keys(remote)
    assert len(before - local_pack_keys(store)) == 0
    p = store.run("prune", store.path, "vol", "--keep-last", "1")
    assert p.returncode == 0 and "merged" in p.stdout, p.stdout + p.stderr
    merged = local_pack_keys(store)
    # the killed pushes' packs are on the remote and no longer here
    strays = before - merged
    assert len(strays) >= 8, (len(before), len(merged))
    push_at(store, "off", remote)
    push_at(store, "off", remote, 60)
    left = pack_keys(remote) - merged
    assert not left, "%d of %d packs the killed pushes sent stay on the remote" % (
        len(left), killed)
    assert pack_keys(remote) == merged
    recovers_to(tmp, mounts, remote, passfile, want, "after-kills")
