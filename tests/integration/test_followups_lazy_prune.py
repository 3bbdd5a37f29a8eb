"""Prune and push on a lazily recovered store (follow-up to issues 4 and 5).

A store recovered with `recover --lazy` holds none of its packs until
they are read.  Its GC must still work: dead chunk rows go, a pack that
is wholly dead leaves the index without a local file, and a pack that is
partly dead but not local is kept as it is (its dead space stays until
the store is complete: rewriting it would need the whole pack).  Nothing
live is lost: `check` is clean, every file reads back, `recover --full`
still completes, and pushes to the origin carry on, deleting the freed
packs there after the grace period (FORMAT.md §9.11 remote_gone).

A push of a lazy store to a *different* remote fetches the packs it does
not hold from the origin first (FORMAT.md §15.1), so the new remote is
complete.

Remotes are local directories; fixtures come from test_push_recover.
"""

import json
import os
from pathlib import Path

from conftest import Store, wait_for
from recovery_util import (MiB, all_packs, blob, db, env_with, local_packs, packs_of_file,
                           remote_pack_path, tresor_pw)
from test_push_recover import (make_remote, one_line, push, remote_add, run,  # noqa: F401
                               scan, snapshot)

DAY = 86400


def session(store, mounts, write=(), delete=()):
    """One mount session: write {rel: bytes}, delete [rel]; one pack per
    session for what it writes."""
    m = mounts.mount(store, "vol")
    for rel, data in write:
        (Path(m.path) / rel).write_bytes(data)
    for rel in delete:
        os.unlink(Path(m.path) / rel)
    m.close()


def garbage_store(make_store, mounts, remote):
    """A store pushed to remote whose older snapshot, once pruned, leaves
    one pack partly dead (half.bin's pack also held gone1.bin), one wholly
    dead (gone2.bin's) and one live (live.bin's).  Returns (store, packs by
    role, live files)."""
    st = make_store()
    session(st, mounts, [("half.bin", blob(1, 3 * MiB)), ("gone1.bin", blob(2, 3 * MiB))])
    session(st, mounts, [("gone2.bin", blob(3, 2 * MiB))])
    session(st, mounts, [("live.bin", blob(4, 2 * MiB))])
    roles = {"partly": packs_of_file(st.path, "half.bin"),
             "whole": packs_of_file(st.path, "gone2.bin"),
             "live": packs_of_file(st.path, "live.bin")}
    assert roles["partly"] == packs_of_file(st.path, "gone1.bin"), roles
    assert len(set.union(*roles.values())) == 3, roles
    snapshot(st, "vol", "2024-03-01T02:00:00")
    session(st, mounts, delete=["gone1.bin", "gone2.bin"])
    snapshot(st, "vol", "2024-03-02T02:00:00")
    remote_add(st, "offsite", remote)
    push(st, "offsite", remote)
    files = {"half.bin": blob(1, 3 * MiB), "live.bin": blob(4, 2 * MiB)}
    return st, {k: v.pop() for k, v in roles.items()}, files


def recover_lazy(remote, dest, passfile):
    p = tresor_pw("recover", remote.url, dest, "--lazy", env=env_with(remote))
    assert p.returncode == 0, p.stderr
    return Store(dest, passfile)


def prune_json(store):
    p = tresor_pw("prune", store.path, "vol", "--keep-last", "1", "--json")
    assert p.returncode == 0, "prune of a lazy store failed: %s" % p.stderr
    return json.loads(p.stdout)


def check_json(store, *extra):
    p = tresor_pw("check", store.path, "--json", *extra)
    assert p.returncode == 0, "check not clean: %s%s" % (p.stdout, p.stderr)
    return json.loads(p.stdout)


def read_all(store, mounts, files):
    m = mounts.mount(store, "vol")
    got = {rel: (Path(m.path) / rel).read_bytes() for rel in sorted(os.listdir(m.path))}
    m.close()
    assert got == files


def dead_rows(store, pack):
    con = db(store.path)
    try:
        return con.execute("SELECT COUNT(*) FROM chunk c JOIN pack p ON p.id = c.pack"
                           " WHERE hex(p.name) = ? AND c.refs = 0",
                           (pack.upper(),)).fetchone()[0]
    finally:
        con.close()


def test_prune_lazy_store_keeps_what_is_not_local(tmp, make_store, mounts, make_remote,
                                                   passfile):
    remote = make_remote("local")
    st, roles, files = garbage_store(make_store, mounts, remote)
    lz = recover_lazy(remote, tmp / "lazy", passfile)
    assert local_packs(lz.path) == set()
    res = prune_json(lz)
    assert res["removed"] == 1
    # the wholly dead pack left the index although it never was local
    assert res["packs_deleted"] == 1 and roles["whole"] not in all_packs(lz.path)
    # the partly dead one is not local: kept whole, dead space noted
    assert res["packs_rewritten"] == 0
    assert res["packs_not_local"] == 1 and res["bytes_not_local"] >= 3 * MiB
    assert roles["partly"] in all_packs(lz.path) and dead_rows(lz, roles["partly"]) > 0
    assert local_packs(lz.path) == set(), "prune must fetch nothing"
    assert check_json(lz)["not_local"] == 2
    read_all(lz, mounts, files)
    # complete it: every pack the index still names comes, the freed one does not
    p = tresor_pw("recover", remote.url, lz.path, "--full")
    assert p.returncode == 0, p.stderr
    assert local_packs(lz.path) == all_packs(lz.path) == {roles["partly"], roles["live"]}
    assert check_json(lz, "--read-data")["not_local"] == 0
    # now complete, the next prune rewrites the partly dead pack
    res = prune_json(lz)
    assert res["packs_rewritten"] == 1 and res["packs_not_local"] == 0
    assert roles["partly"] not in all_packs(lz.path)
    check_json(lz, "--read-data")
    read_all(lz, mounts, files)


def test_prune_lazy_store_rewrites_a_pack_fetched_meanwhile(tmp, make_store, mounts,
                                                            make_remote, passfile):
    remote = make_remote("local")
    st, roles, files = garbage_store(make_store, mounts, remote)
    lz = recover_lazy(remote, tmp / "lazy", passfile)
    m = mounts.mount(lz, "vol")     # a read fetches the partly dead pack
    assert (Path(m.path) / "half.bin").read_bytes() == files["half.bin"]
    assert wait_for(lambda: roles["partly"] in local_packs(lz.path), 30)
    m.close()
    res = prune_json(lz)
    assert res["packs_rewritten"] == 1 and res["packs_not_local"] == 0
    assert res["packs_deleted"] == 1
    check_json(lz)
    read_all(lz, mounts, files)


def test_push_to_origin_after_prune_of_lazy_store(tmp, make_store, mounts, make_remote,
                                                  passfile):
    remote = make_remote("local")
    st, roles, files = garbage_store(make_store, mounts, remote)
    lz = recover_lazy(remote, tmp / "lazy", passfile)
    prune_json(lz)
    session(lz, mounts, [("new.bin", blob(5, 1 * MiB))])
    files["new.bin"] = blob(5, 1 * MiB)
    res = push(lz, "origin", remote)
    assert res["packs"] == 1, res           # only the new pack is sent
    # the freed pack stays on the remote for the grace period...
    assert remote_pack_path(remote.url, roles["whole"]).exists()
    assert remote_pack_path(remote.url, roles["partly"]).exists()
    env = dict(remote.env, TRESOR_TEST_CLOCK_OFFSET=str(8 * DAY))
    p = run("push", lz.path, "origin", "--json", "--passphrase-file", lz.passfile, env=env)
    assert p.returncode == 0, p.stderr
    # ...and goes after it; the kept, partly dead one stays (still named)
    assert not remote_pack_path(remote.url, roles["whole"]).exists()
    assert remote_pack_path(remote.url, roles["partly"]).exists()
    assert remote_pack_path(remote.url, roles["live"]).exists()
    check_json(lz)
    # -o fill completes the pruned lazy store: every pack still named
    m = mounts.mount(lz, "vol", opts=["fill"])
    assert wait_for(lambda: local_packs(lz.path) == all_packs(lz.path), 60), \
        "-o fill left %s" % (all_packs(lz.path) - local_packs(lz.path))
    assert wait_for(lambda: "every pack of store" in m.log_text(), 10), m.log_text()
    m.close()
    assert roles["whole"] not in local_packs(lz.path)
    check_json(lz, "--read-data")
    # what the remote holds now recovers to the pruned tree
    again = tmp / "again"
    p = tresor_pw("recover", remote.url, again, env=env_with(remote))
    assert p.returncode == 0, p.stderr
    re_st = Store(again, passfile)
    check_json(re_st, "--read-data")
    read_all(re_st, mounts, files)


def test_prune_complete_store_missing_pack_names_it(tmp, make_store, mounts, make_remote):
    """Outside a lazy store a missing pack is damage: prune stops with one
    line naming the pack and the way back, and loses nothing."""
    remote = make_remote("local")
    st, roles, files = garbage_store(make_store, mounts, remote)
    lost = Path(st.path) / "packs" / roles["partly"][:2] / roles["partly"]
    os.rename(lost, tmp / "saved")
    p = tresor_pw("prune", st.path, "vol", "--keep-last", "1")
    assert p.returncode == 1
    line = one_line(p.stderr)
    assert roles["partly"] in line and "repair" in line, line
    assert roles["partly"] in all_packs(st.path)
    os.rename(tmp / "saved", lost)
    res = prune_json(st)
    assert res["packs_rewritten"] == 1 and res["packs_not_local"] == 0
    check_json(st, "--read-data")
    read_all(st, mounts, files)
