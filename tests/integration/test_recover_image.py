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
    # newest header (1 ranged GET), 10 and 11 whole once each, 9's header (1)
    assert len([r for r in log if "/meta/" in r.path]) == 4, [r.target for r in log]
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


@pytest.mark.parametrize("image_every", ["0", "1"])
def test_two_pushes_killed_after_publishing(image_every, tmp, make_store, mounts, make_remote):
    """Two pushes in a row killed after publishing their delta, before
    noting it: the second continued the first's, and the next push
    continues both (it once refused the remote as "not the object it
    wrote", found by the crash torture)."""
    st = make_store()
    rem = make_remote("local")
    remote_add(st, "off", rem)
    want = {}
    add_file(st, mounts, "a.bin", blob(1, 200_000), want)
    push(st, "off", rem)
    for i in (2, 3):
        add_file(st, mounts, "f%d.bin" % i, blob(i, 200_000), want)
        p = run("push", st.path, "off", "--passphrase-file", st.passfile,
                "--image-every", image_every, env=env_with(rem, TRESOR_CRASH_AT="push-meta"))
        assert p.returncode != 0, "the crash point push-meta was not reached"
        assert (Path(rem.url) / "meta" / ("%016x" % i)).exists(), "meta/%d not published" % i
    add_file(st, mounts, "f4.bin", blob(4, 200_000), want)
    push(st, "off", rem, "--image-every", image_every)
    metas, _, _ = meta_objects(rem)
    assert max(metas) == 4, metas
    recover(rem, tmp / "r", st.passfile)
    assert read_all(mounts, Store(tmp / "r", st.passfile), tmp / "m") == want


def test_damaged_image_part_is_passed_over(tmp, make_store, mounts, make_remote):
    """The only image damaged or missing: object 1 still holds every row,
    so the recovery replays the deltas instead, and says so."""
    st = make_store()
    rem = make_remote("local")
    remote_add(st, "off", rem)
    want = fill_store(st, mounts, {"a.bin": blob(1, 300_000)})
    push(st, "off", rem)
    (part,) = image_keys(rem)
    path = Path(rem.url) / part
    good = path.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 1
    path.write_bytes(bytes(bad))
    p = tresor_pw("recover", rem.url, tmp / "r", env=env_with(rem))
    assert p.returncode == 0, p.stderr
    assert "damaged" in p.stderr and part in p.stderr and "replaying" in p.stderr, p.stderr
    assert "after the image" not in p.stdout and " 1 metadata object(s)" in p.stdout, p.stdout
    assert read_all(mounts, Store(tmp / "r", st.passfile), tmp / "m") == want
    # another image's part under this name does not authenticate either;
    # a missing one is passed over the same way
    os.rename(path, str(path) + ".x")
    p = tresor_pw("recover", rem.url, tmp / "r2", env=env_with(rem))
    assert p.returncode == 0 and "missing" in p.stderr and part in p.stderr, p.stderr
    os.rename(str(path) + ".x", path)
    path.write_bytes(good)
    out = recover(rem, tmp / "r3", st.passfile)
    assert "after the image of meta/%016x" % 1 in out, out


@pytest.fixture(scope="module")
def v2_bin():
    """A tresor writing repository version 2 (recovery_util.old_tresor)."""
    return old_tresor(V2_COMMIT, "v2", "TRESOR_V2_BIN")


def as_store_format_1(st):
    """The store as that tresor knew them: store format 1 (no
    snapshot.set_name and .note, FORMAT.md §2); it refuses format 2 as
    newer.  A mount by this tresor upgrades it again."""
    db = sqlite3.connect(str(st.path / "index.db"))
    cols = [r[1] for r in db.execute("PRAGMA table_info(snapshot)")]
    for c in ("set_name", "note"):
        if c in cols:
            db.execute("ALTER TABLE snapshot DROP COLUMN %s" % c)
    db.execute("UPDATE meta SET value = 1 WHERE key = 'format_version'")
    db.commit()
    db.close()


def test_version2_remote_recovers_and_is_upgraded(tmp, make_store, mounts, make_remote,
                                                  passfile, v2_bin):
    st = make_store()
    rem = make_remote("local")
    remote_add(st, "box", rem)
    want = {}
    old = [v2_bin, "push", st.path, "box", "--passphrase-file", passfile]
    for i in (1, 2):
        add_file(st, mounts, "f%d.bin" % i, blob(i, 300_000), want)
        as_store_format_1(st)
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


# ---- what a newer image makes unnecessary is deleted (FORMAT.md §15.5) ----

DAY = 86400


def meta_objects(remote):
    """({meta number}, {image object number: {image ids}}, bytes of meta/ and image/)."""
    objs = remote.objects()
    metas = {int(k[5:], 16) for k in objs if k.startswith("meta/")}
    images = {}
    for k in objs:
        if k.startswith("image/"):
            n, rest = k[6:].split("-", 1)
            images.setdefault(int(n, 16), set()).add(rest.split(".")[0])
    size = sum(v for k, v in objs.items() if k.startswith(("meta/", "image/")))
    return metas, images, size


def push_at(store, name, remote, offset_s, *extra):
    return push(store, name, remote, *extra,
                env=env_with(remote, TRESOR_TEST_CLOCK_OFFSET=offset_s) if offset_s
                else None)


def check_remote(store, name, remote, *extra):
    return tresor_pw("check", store.path, "--remote", name, *extra, env=env_with(remote))


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_metadata_stays_bounded(kind, tmp, make_store, mounts, make_remote):
    """30 pushes, an image every 4th object, no grace: after every push the
    remote holds one image and the objects from it on (nothing below), its
    metadata within twice the image; recoveries and checks work all along."""
    st = make_store()
    rem = make_remote(kind)
    run("remote", "add", st.path, "off", rem.url, *rem.opts, "--grace", "0",
        env=rem.env, check=True)
    want = {}
    m = mounts.mount(st, "vol")
    root = Path(m.path)
    (root / "tree").mkdir()
    deleted = 0
    try:
        for i in range(30):
            for j in range(20):     # rows to replicate: the deltas have weight
                (root / "tree" / ("p%02d-%02d.txt" % (i, j))).write_bytes(b"%d.%d" % (i, j))
            want["f%02d.bin" % i] = blob(500 + i, 20_000)
            (root / ("f%02d.bin" % i)).write_bytes(want["f%02d.bin" % i])
            if i % 5 == 4:      # some churn: rewrites and deletes
                (root / ("f%02d.bin" % (i - 3))).unlink()
                del want["f%02d.bin" % (i - 3)]
            res = push(st, "off", rem, "--image-every", "4")
            deleted += res["meta_deleted"]
            metas, images, size = meta_objects(rem)
            n = i + 1
            image = max(images)
            assert res["image"] in (0, n), res
            # the newest image and everything from it on, nothing below
            assert metas == set(range(image, n + 1)), (n, sorted(metas), images)
            assert list(images) == [image] and len(images[image]) == 1, (n, images)
            img_bytes = sum(v for k, v in rem.objects().items() if k.startswith("image/"))
            # (object 1 holds a full delta beside image 1 until image 5 replaces it)
            assert image == 1 or size <= 2 * img_bytes, (n, size, img_bytes)
            if n in (9, 30):
                out = recover(rem, tmp / ("r%d" % n), st.passfile,
                              *(["--lazy"] if n == 9 else []))
                assert "after the image of meta/%016x" % image in out, out
                p = check_remote(st, "off", rem, "--read-data")
                assert p.returncode == 0 and "0 problem(s)" in p.stdout, p.stdout + p.stderr
                assert "1 image(s) of the index" in p.stdout, p.stdout
    finally:
        m.close()
    assert deleted >= 20, deleted
    m = mounts.mount(Store(tmp / "r30", st.passfile), "vol", mnt=tmp / "m30")
    try:
        assert len(os.listdir(m.path / "tree")) == 600
        got = {p: (m.path / p).read_bytes() for p in os.listdir(m.path)
               if p.endswith(".bin")}
    finally:
        m.close()
    assert got == want


def test_metadata_deleted_only_after_the_grace(tmp, make_store, mounts, make_remote):
    """Grace 2 days: what image 3 makes unnecessary stays for 2 days after
    meta/3 was published, so a recovery that read the newest object before
    that (and starts from image 1) still finds everything it reads; after
    the 2 days it is deleted, and a recovery from image 3 works."""
    st = make_store()
    rem = make_remote("local")
    run("remote", "add", st.path, "off", rem.url, "--grace", "2d", env=rem.env, check=True)
    want = {}
    for i in range(1, 4):
        add_file(st, mounts, "f%d.bin" % i, blob(i, 50_000), want)
        res = push(st, "off", rem, "--image-every", "2")
        assert res["image"] == (i if i != 2 else 0), res
    metas, images, _ = meta_objects(rem)
    assert metas == {1, 2, 3} and sorted(images) == [1, 3], (metas, images)
    assert res["meta_deleted"] == 0 and res["images_awaiting"] == 1, res
    # a recovery that saw meta/2 as the newest object (meta/3 not yet out)
    root = Path(rem.url)
    hidden = tmp / "meta3"
    os.rename(root / "meta" / ("%016x" % 3), hidden)
    out = recover(rem, tmp / "before", st.passfile)
    assert "after the image of meta/%016x" % 1 in out, out
    os.rename(hidden, root / "meta" / ("%016x" % 3))
    # a day and a half later: still there
    add_file(st, mounts, "f4.bin", blob(4, 50_000), want)
    res = push_at(st, "off", rem, DAY + DAY // 2, "--image-every", "2")
    assert res["meta_deleted"] == 0 and res["images_awaiting"] == 1, res
    assert meta_objects(rem)[0] == {1, 2, 3, 4}
    p = check_remote(st, "off", rem, "--read-data")
    assert p.returncode == 0 and "2 image(s) of the index" in p.stdout, p.stdout + p.stderr
    # past the grace: meta/1, meta/2 and image 1 go (meta/5 brings image 5,
    # whose own grace starts now)
    add_file(st, mounts, "f5.bin", blob(5, 50_000), want)
    res = push_at(st, "off", rem, 2 * DAY + 60, "--image-every", "2")
    assert res["image"] == 5, res
    metas, images, _ = meta_objects(rem)
    assert metas == {3, 4, 5} and sorted(images) == [3, 5], (metas, images)
    assert res["meta_deleted"] == 3 and res["images_awaiting"] == 1, res   # 2 deltas, 1 part
    # the check knows the deleted ones are not needed
    p = check_remote(st, "off", rem, "--read-data")
    assert p.returncode == 0 and "0 problem(s)" in p.stdout, p.stdout + p.stderr
    out = recover(rem, tmp / "after", st.passfile)
    assert "after the image of meta/%016x" % 5 in out, out
    assert read_all(mounts, Store(tmp / "after", st.passfile), tmp / "m") == want
    # the recovered store takes over and pushes; after its grace it deletes
    # what the first store left below its image (found by the listing)
    new = Store(tmp / "after", st.passfile)
    p = tresor_pw("remote", "takeover", new.path, "origin", env=rem.env)
    assert p.returncode == 0, p.stderr
    add_file(new, mounts, "f6.bin", blob(6, 50_000), want)
    res = push_at(new, "origin", rem, 2 * DAY + 120)
    assert res["image"] == 7 and res["meta_deleted"] == 0, res  # full after a takeover
    add_file(new, mounts, "f7.bin", blob(7, 50_000), want)
    res = push_at(new, "origin", rem, 10 * DAY)     # origin's grace: the default 7 days
    assert res["meta_deleted"] == 6, res    # meta/3 .. 6, images 3 and 5
    metas, images, _ = meta_objects(rem)
    assert metas == {7, 8} and sorted(images) == [7], (metas, images)
    out = recover(rem, tmp / "third", st.passfile)
    assert read_all(mounts, Store(tmp / "third", st.passfile), tmp / "m3") == want


def test_dead_push_image_parts_are_deleted(tmp, make_store, mounts, make_remote):
    """Parts of an image whose push died are noted before they are sent:
    once a newer image is past its grace they go, without a listing."""
    st = make_store()
    rem = make_remote("local")
    run("remote", "add", st.path, "off", rem.url, "--grace", "0", env=rem.env, check=True)
    add_file(st, mounts, "a.bin", blob(1, 100_000), {})
    push(st, "off", rem)
    add_file(st, mounts, "b.bin", blob(2, 100_000), {})
    p = run("push", st.path, "off", "--passphrase-file", st.passfile, "--image-every", "1",
            env=env_with(rem, TRESOR_CRASH_AT="push-image"))
    assert p.returncode != 0
    assert len(meta_objects(rem)[1][2]) == 1, "the dead push left no part"
    res = push(st, "off", rem, "--image-every", "1")
    assert res["image"] == 2 and res["meta_deleted"] == 3, res  # meta/1, image 1, dead part
    metas, images, _ = meta_objects(rem)
    assert metas == {2} and list(images) == [2] and len(images[2]) == 1, (metas, images)


def test_damaged_newest_image_falls_back_or_fails_clearly(tmp, make_store, mounts,
                                                         make_remote):
    """Image 3 damaged: recovery takes image 1 and the deltas 2 .. 4 (the
    default grace keeps them); with those gone too (grace 0), it fails in one
    line naming the part and what to do, and a push with --image-every 1
    mends it."""
    st = make_store()
    rem = make_remote("local")
    remote_add(st, "off", rem)
    want = {}
    for i in range(1, 5):
        add_file(st, mounts, "f%d.bin" % i, blob(i, 60_000), want)
        push(st, "off", rem, "--image-every", "2")
    (part,) = [k for k in image_keys(rem) if k.startswith("image/%016x-" % 3)]
    path = Path(rem.url) / part
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    p = tresor_pw("recover", rem.url, tmp / "r1", env=env_with(rem))
    assert p.returncode == 0, p.stderr
    assert part in p.stderr and "from an older image" in p.stderr, p.stderr
    assert "after the image of meta/%016x" % 1 in p.stdout and " 3 metadata" in p.stdout, \
        p.stdout
    assert read_all(mounts, Store(tmp / "r1", st.passfile), tmp / "m1") == want
    # the check names it
    p = check_remote(st, "off", rem, "--read-data")
    assert p.returncode == 1 and part in p.stdout + p.stderr, p.stdout + p.stderr
    assert "fails authentication" in p.stdout + p.stderr
    # image 1 missing too: a replay of every delta
    (part1,) = [k for k in image_keys(rem) if k.startswith("image/%016x-" % 1)]
    os.rename(Path(rem.url) / part1, tmp / "part1")
    p = tresor_pw("recover", rem.url, tmp / "r2", env=env_with(rem))
    assert p.returncode == 0 and "by replaying every delta" in p.stderr, p.stderr
    assert " 4 metadata object(s)" in p.stdout, p.stdout
    assert read_all(mounts, Store(tmp / "r2", st.passfile), tmp / "m2") == want
    os.rename(tmp / "part1", Path(rem.url) / part1)
    # the objects below image 3 deleted (no grace): no way round it
    path.write_bytes(good)
    res = push(st, "off", rem, "--grace", "0")
    assert res["meta_deleted"] == 3, res        # meta/1, meta/2, image 1
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    p = tresor_pw("recover", rem.url, tmp / "r3", env=env_with(rem))
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert part in lines[0] and "damaged" in lines[0] and "--image-every 1" in lines[0], lines
    assert "meta/%016x" % 2 in lines[0], lines     # what the way round lacked
    assert not (tmp / "r3").exists()
    os.unlink(path)
    p = tresor_pw("recover", rem.url, tmp / "r3", env=env_with(rem))
    assert p.returncode == 1 and "is missing" in p.stderr and part in p.stderr, p.stderr
    p = check_remote(st, "off", rem)
    assert p.returncode == 1 and "%s (the newest image" % part in p.stdout, p.stdout
    assert "is missing" in p.stdout and "1 problem(s)" in p.stdout, p.stdout
    # the remedy it names
    add_file(st, mounts, "f5.bin", blob(5, 60_000), want)
    res = push(st, "off", rem, "--image-every", "1")
    assert res["image"] == 5, res
    out = recover(rem, tmp / "r4", st.passfile)
    assert "after the image of meta/%016x" % 5 in out, out
    assert read_all(mounts, Store(tmp / "r4", st.passfile), tmp / "m4") == want


def test_push_killed_among_the_deletions(tmp, make_store, mounts, make_remote):
    """A push killed after deleting part of what image 3 made unnecessary
    (image 1, meta/1; meta/2 not yet): the remote recovers from image 3,
    the check is clean, and the next push deletes the rest."""
    st = make_store()
    rem = make_remote("local")
    run("remote", "add", st.path, "off", rem.url, "--grace", "0", env=rem.env, check=True)
    want = {}
    for i in (1, 2):
        add_file(st, mounts, "f%d.bin" % i, blob(i, 40_000), want)
        push(st, "off", rem, "--image-every", "2")
    add_file(st, mounts, "f3.bin", blob(3, 40_000), want)
    p = run("push", st.path, "off", "--passphrase-file", st.passfile, "--image-every", "2",
            env=env_with(rem, TRESOR_CRASH_AT="push-meta-delete"))
    assert p.returncode != 0, "the crash point push-meta-delete was not reached"
    metas, images, _ = meta_objects(rem)
    assert metas == {2, 3} and list(images) == [3], (metas, images)
    out = recover(rem, tmp / "r", st.passfile)
    assert "after the image of meta/%016x" % 3 in out, out
    assert read_all(mounts, Store(tmp / "r", st.passfile), tmp / "m") == want
    p = check_remote(st, "off", rem, "--read-data")
    assert p.returncode == 0 and "0 problem(s)" in p.stdout, p.stdout + p.stderr
    add_file(st, mounts, "f4.bin", blob(4, 40_000), want)
    res = push(st, "off", rem, "--image-every", "2")
    # meta/2, and image 1 and meta/1 again (deleting what is gone is no error)
    assert res["meta_deleted"] == 3, res
    assert meta_objects(rem)[0] == {3, 4}
    res = push(st, "off", rem, "--image-every", "2")
    assert res["meta_deleted"] == 0, res
