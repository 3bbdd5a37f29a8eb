"""Pushing a lazily recovered store to a remote other than its origin
(follow-up to issues 4 and 5).

The new remote must end up complete, so the packs it lacks that the lazy
store does not hold yet are fetched from the origin first (verified, as
every fetch: FORMAT.md §15.1), and only those: packs the new remote has
already are not fetched again.  When the origin cannot give them the push
stops before sending anything, in one line naming the origin and the way
out (`recover --full`).

Remotes are local directories; fixtures come from test_push_recover.
"""

import json
import os
import shutil
from pathlib import Path

from conftest import Store
from recovery_util import MiB, all_packs, blob, env_with, local_packs, tresor_pw
from test_push_recover import make_remote, one_line, push, remote_add  # noqa: F401

FILES = {"a.bin": blob(11, 2 * MiB), "b.bin": blob(12, 3 * MiB), "c.bin": blob(13, 1 * MiB)}


def lazy_from_pushed(tmp, make_store, mounts, make_remote, passfile):
    st = make_store()
    for rel, data in FILES.items():          # a pack per file
        m = mounts.mount(st, "vol")
        (Path(m.path) / rel).write_bytes(data)
        m.close()
    st.run("snapshot", "create", st.path, "vol", "--time", "2024-03-01T02:00:00", check=True)
    origin = make_remote("local")
    remote_add(st, "offsite", origin)
    push(st, "offsite", origin)
    p = tresor_pw("recover", origin.url, tmp / "lazy", "--lazy", env=env_with(origin))
    assert p.returncode == 0, p.stderr
    lz = Store(tmp / "lazy", passfile)
    assert local_packs(lz.path) == set()
    return st, origin, lz


def files_of(store, mounts, mnt):
    m = mounts.mount(store, "vol", mnt=mnt)
    got = {rel: (Path(m.path) / rel).read_bytes() for rel in sorted(os.listdir(m.path))}
    m.close()
    return got


def test_push_lazy_store_to_another_remote_fetches_from_origin(tmp, make_store, mounts,
                                                               make_remote, passfile):
    st, origin, lz = lazy_from_pushed(tmp, make_store, mounts, make_remote, passfile)
    # one pack read before: already local, not fetched again
    m = mounts.mount(lz, "vol")
    assert (Path(m.path) / "c.bin").read_bytes() == FILES["c.bin"]
    m.close()
    before = {n: (Path(lz.path) / "packs" / n[:2] / n).stat().st_mtime_ns
              for n in local_packs(lz.path)}
    assert before
    second = make_remote("local")
    remote_add(lz, "second", second)
    res = push(lz, "second", second)
    assert res["packs"] == len(all_packs(lz.path)), res
    assert local_packs(lz.path) == all_packs(lz.path)
    # the second remote alone recovers the whole store
    p = tresor_pw("recover", second.url, tmp / "from-second", env=env_with(second))
    assert p.returncode == 0, p.stderr
    again = Store(tmp / "from-second", passfile)
    p = tresor_pw("check", again.path, "--read-data", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert files_of(again, mounts, tmp / "mnt-again") == FILES
    for n, mtime in before.items():
        assert (Path(lz.path) / "packs" / n[:2] / n).stat().st_mtime_ns == mtime, \
            "pack %s was local already and was fetched again" % n


def test_push_lazy_store_only_fetches_what_the_remote_lacks(tmp, make_store, mounts,
                                                            make_remote, passfile):
    st, origin, lz = lazy_from_pushed(tmp, make_store, mounts, make_remote, passfile)
    # a new file: a local pack; the origin gets it, nothing is fetched
    m = mounts.mount(lz, "vol")
    (Path(m.path) / "d.bin").write_bytes(blob(14, 1 * MiB))
    m.close()
    new = local_packs(lz.path)
    assert len(new) == 1
    res = push(lz, "origin", origin)
    assert res["packs"] == 1
    assert local_packs(lz.path) == new, "a push to the origin fetched packs"
    con_json = tresor_pw("check", lz.path, "--json")
    assert json.loads(con_json.stdout)["not_local"] == len(all_packs(lz.path)) - 1


def test_push_lazy_store_origin_gone_stops_in_one_line(tmp, make_store, mounts,
                                                       make_remote, passfile):
    st, origin, lz = lazy_from_pushed(tmp, make_store, mounts, make_remote, passfile)
    second = make_remote("local")
    remote_add(lz, "second", second)
    shutil.move(origin.url, tmp / "origin-away")
    p = tresor_pw("push", lz.path, "second", "--json")
    assert p.returncode == 1
    line = one_line(p.stderr)
    assert "origin" in line and "recover" in line and "--full" in line, line
    sent = [x for x in Path(second.url).rglob("*") if x.is_file()
            and x.relative_to(second.url).parts[0] in ("data", "meta")]
    assert sent == [], "the push sent %s with packs missing" % sent
    # with the origin back the same push completes
    shutil.move(tmp / "origin-away", origin.url)
    res = push(lz, "second", second)
    assert res["packs"] == len(all_packs(lz.path))
