"""Images of the index on a remote (issue 19, FORMAT.md §15.5): a push
writes a sealed copy of the index every N objects (and with every full
delta); recovery starts from the newest image and applies only the deltas
after it, so neither its requests nor its row inserts grow with history.

Checked on the local backend and S3 (s3rver, started once by
test_push_recover's fixture):
- recovery from an image plus deltas gives the same replicated tables as a
  replay of every delta (the same store pushed to a second remote without
  images), and needs no object below the image (they are deleted here);
- a lazy recovery starts from the image and a mount reads at once;
- a version 2 remote (written by the tresor of V2_COMMIT) still recovers,
  and a push of this tresor upgrades it: marker 3, image, older binary
  refuses it as newer;
- the requests of a recovery (through a recording proxy, S3) touch no
  object below the newest image, and the deltas after it are fetched in
  parallel;
- a full recovery fetches its packs in parallel;
- a push killed while sending an image's parts leaves the remote
  recoverable at the previous push, and the rerun completes.
"""

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import Store
from remote_proxy import s3_remote, s3proxy  # noqa: F401
from recovery_util import MiB, blob, env_with, fill_store, old_tresor, tresor_pw
from test_push_recover import (make_remote, remote_add, run, s3server,  # noqa: F401
                               snapshot)

# The last commit writing repository version 2 (before issue 19).
V2_COMMIT = "5f3cd13"
REPLICATED = ["meta", "volume", "snapshot", "inode", "dentry", "extent", "xattr",
              "chunk", "pack", "orphan"]


def push(store, name, remote, *extra, env=None):
    p = run("push", store.path, name, "--json", "--passphrase-file", store.passfile,
            *extra, env=env if env is not None else remote.env)
    assert p.returncode == 0, "push failed (exit %d): %s" % (p.returncode, p.stderr)
    return json.loads(p.stdout)


def recover(remote, dest, passfile, *extra):
    p = tresor_pw("recover", remote.url, dest, *remote.opts, *extra, env=env_with(remote))
    assert p.returncode == 0, "recover failed (exit %d): %s" % (p.returncode, p.stderr)
    return p.stdout


def tables(store_path):
    """Every replicated table's rows (meta without the keys recovery sets)."""
    con = sqlite3.connect("file:%s?mode=ro" % (Path(store_path) / "index.db"), uri=True)
    out = {}
    for t in REPLICATED:
        rows = con.execute("SELECT * FROM %s" % t).fetchall()
        if t == "meta":
            rows = [r for r in rows if r[0] not in ("lazy",)]
        out[t] = sorted(rows, key=repr)
    con.close()
    return out


def rounds(store, mounts, remotes, pushes):
    """pushes rounds of changes (new files, a rewrite, a delete, a rename),
    each pushed to every (name, remote, extra args): yields (round, name,
    push summary)."""
    files = {}
    for i in range(pushes):
        m = mounts.mount(store, "vol")
        root = Path(m.path)
        name = "f%02d.bin" % i
        files[name] = blob(100 + i, 200_000 + i)
        (root / name).write_bytes(files[name])
        if i >= 2:
            files["f00.bin"] = blob(900 + i, 150_000)
            (root / "f00.bin").write_bytes(files["f00.bin"])
        if i == 3:
            (root / "f01.bin").unlink()
            del files["f01.bin"]
        if i == 4:
            os.rename(root / "f02.bin", root / "moved.bin")
            files["moved.bin"] = files.pop("f02.bin")
        m.close()
        snapshot(store, "vol", "2024-03-%02dT02:00:00" % (i + 1))
        for name_, rem, extra in remotes:
            res = push(store, name_, rem, *extra)
            yield i + 1, name_, res


def read_all(mounts, store, mnt):
    m = mounts.mount(store, "vol", mnt=mnt)
    try:
        return {p: (m.path / p).read_bytes() for p in sorted(os.listdir(m.path))
                if p != ".snapshots"}
    finally:
        m.close()


def add_file(store, mounts, rel, data, want):
    m = mounts.mount(store, "vol")
    (Path(m.path) / rel).write_bytes(data)
    m.close()
    want[rel] = data


def image_keys(remote):
    return sorted(k for k in remote.objects() if k.startswith("image/"))


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_image_recovery_equals_replay(kind, tmp, make_store, mounts, make_remote):
    st = make_store()
    img, plain = make_remote(kind), make_remote(kind)
    remote_add(st, "img", img)
    remote_add(st, "plain", plain)
    images = {}
    for n, name, res in rounds(st, mounts, [("img", img, ["--image-every", "3"]),
                                             ("plain", plain, ["--image-every", "0"])], 6):
        if name == "img":
            images[n] = res["image"]
        else:
            assert res["image"] == 0 and res["image_bytes"] == 0, res
    # the first (full) push and the third object after an image bring one
    # (the deltas are far below half the index: no image for their bytes)
    assert images == {1: 1, 2: 0, 3: 0, 4: 4, 5: 0, 6: 0}, images
    assert image_keys(plain) == []
    keys = image_keys(img)
    assert any(k.startswith("image/%016x-" % 4) for k in keys), keys

    a, b = tmp / "from-image", tmp / "from-replay"
    out = recover(img, a, st.passfile)
    assert "after the image of meta/%016x" % 4 in out and " 2 metadata object(s)" in out, out
    out = recover(plain, b, st.passfile)
    assert "after the image" not in out and " 6 metadata object(s)" in out, out
    ta, tb = tables(a), tables(b)
    for t in REPLICATED:
        assert ta[t] == tb[t], "table %s differs between image and replay recovery" % t
    assert ta["dentry"], "nothing was recovered"
    want = read_all(mounts, st, tmp / "mnt-src")
    assert read_all(mounts, Store(a, st.passfile), tmp / "mnt-a") == want
    # a store recovered from an image keeps pushing to the same chain
    sa = Store(a, st.passfile)
    m = mounts.mount(sa, "vol", mnt=tmp / "mnt-a2")
    (Path(m.path) / "after.bin").write_bytes(blob(77, 300_000))
    m.close()
    res = push(sa, "origin", img, "--image-every", "3")
    assert res["image"] == 7 and res["records"] > 0, res   # 3 after image 4

    # nothing below the newest image is read: a recovery without them works
    if kind == "local":
        for k in range(1, 7):
            (Path(img.url) / "meta" / ("%016x" % k)).unlink()
        for k in keys:      # images 1 and 4; 7 is the newest
            (Path(img.url) / k).unlink()
        c = tmp / "without-history"
        out = recover(img, c, st.passfile)
        assert "after the image of meta/%016x" % 7 in out and " 0 metadata object(s)" in out
        want["after.bin"] = blob(77, 300_000)
        assert read_all(mounts, Store(c, st.passfile), tmp / "mnt-c") == want


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_lazy_recovery_starts_from_the_image(kind, tmp, make_store, mounts, make_remote):
    st = make_store()
    rem = make_remote(kind)
    remote_add(st, "off", rem)
    files = fill_store(st, mounts, {"a.bin": blob(1, 2 * MiB), "d/b.bin": blob(2, MiB)})
    push(st, "off", rem)        # full: image 1
    add_file(st, mounts, "c.bin", blob(3, 500_000), files)
    push(st, "off", rem)
    out = recover(rem, tmp / "lazy", st.passfile, "--lazy")
    assert "after the image of meta/%016x" % 1 in out and " 1 metadata object(s)" in out, out
    lz = Store(tmp / "lazy", st.passfile)
    assert not any((tmp / "lazy" / "packs").rglob("*.tmp"))
    env = {k: rem.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HOME")
           if k in rem.env}
    m = mounts.mount(lz, "vol", extra_env=env)
    try:
        for rel, data in files.items():
            assert (Path(m.path) / rel).read_bytes() == data, rel
    finally:
        m.close()


def test_image_when_the_deltas_since_weigh_half_the_index(tmp, make_store, mounts,
                                                          make_remote):
    st = make_store()
    rem = make_remote("local")
    remote_add(st, "off", rem)
    want = {}
    add_file(st, mounts, "a.bin", blob(1, 100_000), want)
    got = [push(st, "off", rem, "--image-every", "1000")]
    add_file(st, mounts, "b.bin", blob(2, 100_000), want)
    got.append(push(st, "off", rem, "--image-every", "1000"))
    m = mounts.mount(st, "vol")
    (Path(m.path) / "many").mkdir()
    for i in range(600):
        (Path(m.path) / "many" / ("n%04d-with-a-longish-name.txt" % i)).write_bytes(b"x%d" % i)
    m.close()
    got.append(push(st, "off", rem, "--image-every", "1000"))
    assert [r["image"] for r in got] == [1, 0, 3], got
    out = recover(rem, tmp / "r", st.passfile)
    assert "after the image of meta/%016x" % 3 in out, out
    m = mounts.mount(Store(tmp / "r", st.passfile), "vol", mnt=tmp / "m")
    try:
        assert len(os.listdir(Path(m.path) / "many")) == 600
        assert (Path(m.path) / "b.bin").read_bytes() == want["b.bin"]
    finally:
        m.close()


def test_recovery_requests_do_not_grow_with_history(tmp, make_store, mounts, s3proxy):
    st = make_store()
    rem = s3_remote(tmp, s3proxy, "hist-%d" % os.getpid())
    remote_add(st, "off", rem)
    want = {}
    for i in range(11):
        add_file(st, mounts, "f%02d.bin" % i, blob(i, 50_000), want)
        push(st, "off", rem, "--image-every", "4")
    s3proxy.clear()
    s3proxy.add("stall", method="GET", path="/meta/", count=None, seconds=0.5)
    out = recover(rem, tmp / "r", st.passfile)
    s3proxy.clear_faults()
    # images at 1, 5, 9 (every 4th object since the last one)
    assert "after the image of meta/%016x" % 9 in out and " 2 metadata object(s)" in out, out
    log = [r for r in s3proxy.log() if r.method == "GET"]
    metas = sorted({r.path.rsplit("/meta/", 1)[1] for r in log if "/meta/" in r.path})
    assert metas == ["%016x" % k for k in range(9, 12)], metas
    # newest header (2 ranged GETs), 10 and 11 whole once each, 9's header (2)
    assert len([r for r in log if "/meta/" in r.path]) == 6, [r.target for r in log]
    whole = [r for r in log if "/meta/" in r.path and "range" not in r.headers]
    assert len(whole) == 2, [r.target for r in whole]
    assert max(r.time for r in whole) < min(r.end for r in whole), \
        "the deltas after the image were fetched one after the other"
    assert read_all(mounts, Store(tmp / "r", st.passfile), tmp / "m") == want


def test_full_recovery_fetches_packs_in_parallel(tmp, make_store, mounts, s3proxy):
    st = make_store()
    rem = s3_remote(tmp, s3proxy, "full-%d" % os.getpid())
    remote_add(st, "off", rem)
    files = fill_store(st, mounts, {"f%d.bin" % i: blob(40 + i, 300_000) for i in range(6)})
    push(st, "off", rem)
    s3proxy.clear()
    s3proxy.add("stall", method="GET", path="/data/", count=None, seconds=0.5)
    recover(rem, tmp / "r", st.passfile)
    s3proxy.clear_faults()
    gets = [r for r in s3proxy.log() if r.method == "GET" and "/data/" in r.path]
    assert len(gets) >= 6, [r.target for r in gets]
    assert max(r.time for r in gets) < min(r.end for r in gets), \
        "the packs were fetched one after the other"
    assert read_all(mounts, Store(tmp / "r", st.passfile), tmp / "m") == files


def test_push_killed_while_sending_an_image(tmp, make_store, mounts, make_remote):
    st = make_store()
    rem = make_remote("local")
    remote_add(st, "off", rem)
    fill_store(st, mounts, {"a.bin": blob(1, 300_000)})
    push(st, "off", rem, "--image-every", "2")
    add_file(st, mounts, "b.bin", blob(2, 300_000), {})
    p = run("push", st.path, "off", "--passphrase-file", st.passfile, "--image-every", "1",
            env=env_with(rem, TRESOR_CRASH_AT="push-image"))
    assert p.returncode != 0, "the crash point push-image was not reached"
    root = Path(rem.url)
    assert not (root / "meta" / ("%016x" % 2)).exists(), "meta/2 published before its image"
    assert any(k.startswith("image/%016x-" % 2) for k in image_keys(rem)), \
        "the killed push sent no part of its image"
    # the remote recovers the previous push
    out = recover(rem, tmp / "r1", st.passfile)
    assert "after the image of meta/%016x" % 1 in out, out
    assert sorted(read_all(mounts, Store(tmp / "r1", st.passfile), tmp / "m1")) == ["a.bin"]
    # the rerun sends the image again, under a new id, and publishes meta/2
    res = push(st, "off", rem, "--image-every", "1")
    assert res["image"] == 2, res
    assert len([k for k in image_keys(rem) if k.startswith("image/%016x-" % 2)]) == 2
    out = recover(rem, tmp / "r2", st.passfile)
    assert "after the image of meta/%016x" % 2 in out, out
    got = read_all(mounts, Store(tmp / "r2", st.passfile), tmp / "m2")
    assert got == {"a.bin": blob(1, 300_000), "b.bin": blob(2, 300_000)}


def test_damaged_image_part_is_refused(tmp, make_store, mounts, make_remote):
    st = make_store()
    rem = make_remote("local")
    remote_add(st, "off", rem)
    fill_store(st, mounts, {"a.bin": blob(1, 300_000)})
    push(st, "off", rem)
    (part,) = image_keys(rem)
    path = Path(rem.url) / part
    good = path.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 1
    path.write_bytes(bytes(bad))
    p = tresor_pw("recover", rem.url, tmp / "r", env=env_with(rem))
    assert p.returncode != 0 and "damaged" in p.stderr and part.split("/")[1] in p.stderr, \
        p.stderr
    assert not (tmp / "r").exists()
    # another image's part under this name does not authenticate either
    os.rename(path, str(path) + ".x")
    p = tresor_pw("recover", rem.url, tmp / "r", env=env_with(rem))
    assert p.returncode != 0 and "missing" in p.stderr, p.stderr
    os.rename(str(path) + ".x", path)
    path.write_bytes(good)
    recover(rem, tmp / "r", st.passfile)


@pytest.fixture(scope="module")
def v2_bin():
    """A tresor writing repository version 2 (recovery_util.old_tresor)."""
    return old_tresor(V2_COMMIT, "v2", "TRESOR_V2_BIN")


def test_version2_remote_recovers_and_is_upgraded(tmp, make_store, mounts, make_remote,
                                                  passfile, v2_bin):
    st = make_store()
    rem = make_remote("local")
    remote_add(st, "box", rem)
    want = {}
    old = [v2_bin, "push", st.path, "box", "--passphrase-file", passfile]
    for i in (1, 2):
        add_file(st, mounts, "f%d.bin" % i, blob(i, 300_000), want)
        p = subprocess.run([str(a) for a in old], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
    marker = Path(rem.url) / "tresor-repo"
    assert marker.read_bytes()[8:12] == (2).to_bytes(4, "little")
    assert (Path(rem.url) / "meta" / ("%016x" % 2)).read_bytes()[:8] == b"TRSMETA2"
    # this tresor recovers it by replay
    out = recover(rem, tmp / "r2", passfile)
    assert "after the image" not in out and " 2 metadata object(s)" in out, out
    assert read_all(mounts, Store(tmp / "r2", passfile), tmp / "m2") == want
    # a push of this tresor continues the chain, upgrading the marker; push
    # 3 names no image (none due): a recovery replays from object 1; push 4
    # brings one: a recovery starts there
    for i, every, image in ((3, "0", 0), (4, "4", 4)):
        add_file(st, mounts, "f%d.bin" % i, blob(i, 300_000), want)
        res = push(st, "box", rem, "--image-every", every)
        assert res["image"] == image, res
        assert marker.read_bytes()[8:12] == (3).to_bytes(4, "little")
        assert (Path(rem.url) / "meta" / ("%016x" % i)).read_bytes()[:8] == b"TRSMETA3"
        out = recover(rem, tmp / ("r%d" % i), passfile)
        if image:
            assert "after the image of meta/%016x" % image in out, out
            assert " 0 metadata object(s)" in out, out
        else:
            assert "after the image" not in out and " %d metadata object(s)" % i in out, out
        assert read_all(mounts, Store(tmp / ("r%d" % i), passfile), tmp / ("m%d" % i)) == want
    # the version 2 binary refuses the upgraded repository as newer
    p = subprocess.run([v2_bin, "recover", rem.url, str(tmp / "old"), "--passphrase-file",
                        str(passfile)], capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "newer" in p.stderr, p.stderr
