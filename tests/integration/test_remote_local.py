"""The local-directory remote backend (remote/local.c) through remote_driver.

remote_driver (tests/unit/remote_driver.c) is a small CLI over remote.h:
`remote_driver URL put KEY FILE | get KEY FILE [--offset N --length N] |
head KEY | delete KEY | list PREFIX | putmany PREFIX N FILE`.

Checked here: the put/get/head/list/delete round trip, ranged reads,
that a put is atomic (a reader never sees a partial object, and temporary
files, including a crash's leftovers, never appear in a listing), that
listing does not depend on the order of creation, and that bad keys and a
missing root are refused with a clear message.

Environment:
  TRESOR_BUILD_DIR  where remote_driver is (default: the directory of
                    TRESOR_BIN if set, else <repo>/build)
"""

import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import check_sanitizer_text

REPO = Path(__file__).resolve().parents[2]


def driver_path():
    d = os.environ.get("TRESOR_BUILD_DIR")
    if not d and os.environ.get("TRESOR_BIN"):
        d = os.path.dirname(os.path.abspath(os.environ["TRESOR_BIN"]))
    return Path(d or REPO / "build") / "remote_driver"


DRIVER = driver_path()


@pytest.fixture(scope="module", autouse=True)
def _driver_exists():
    if not DRIVER.exists():
        pytest.fail("remote_driver not built: %s (run ninja -C build)" % DRIVER)


@pytest.fixture
def work():
    d = Path(tempfile.mkdtemp(prefix="tresor-remote-local-"))
    (d / "remote").mkdir()
    yield d
    if os.environ.get("TRESOR_KEEP_TMP") != "1":
        shutil.rmtree(d, ignore_errors=True)


def drv(url, *args, timeout=60, check=True):
    """Run remote_driver; return (returncode, stdout, stderr)."""
    cmd = [str(DRIVER), str(url)] + [str(a) for a in args]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    check_sanitizer_text(err, " ".join(cmd))
    if check and p.returncode != 0:
        raise AssertionError("remote_driver failed (%d): %s\n%s" %
                             (p.returncode, " ".join(cmd), err))
    return p.returncode, out, err


def listing(url, prefix=""):
    _, out, _ = drv(url, "list", prefix)
    res = {}
    for line in out.splitlines():
        key, size = line.rsplit(" ", 1)
        assert key not in res, "key listed twice: %s" % key
        res[key] = int(size)
    return res


def put_bytes(work, url, key, data):
    f = work / "in.bin"
    f.write_bytes(data)
    drv(url, "put", key, f)


def get_bytes(work, url, key, *extra):
    f = work / "out.bin"
    if f.exists():
        f.unlink()
    drv(url, "get", key, f, *extra)
    return f.read_bytes()


def test_roundtrip(work):
    url = work / "remote"
    data = os.urandom(300_000)
    put_bytes(work, url, "data/ab/ab12ef", data)
    put_bytes(work, url, "meta/00000001", b"m1")
    put_bytes(work, url, "empty", b"")
    assert (work / "remote/data/ab/ab12ef").read_bytes() == data
    assert get_bytes(work, url, "data/ab/ab12ef") == data
    assert get_bytes(work, url, "empty") == b""
    assert drv(url, "head", "data/ab/ab12ef")[1].strip() == "300000"
    assert listing(url) == {"data/ab/ab12ef": 300000, "meta/00000001": 2,
                            "empty": 0}
    assert listing(url, "data/") == {"data/ab/ab12ef": 300000}
    assert listing(url, "meta/") == {"meta/00000001": 2}
    assert listing(url, "nothing/") == {}

    # a second put of the same key replaces it whole
    put_bytes(work, url, "meta/00000001", b"m1-again")
    assert get_bytes(work, url, "meta/00000001") == b"m1-again"

    drv(url, "delete", "data/ab/ab12ef")
    drv(url, "delete", "data/ab/ab12ef")          # missing: not an error
    rc, _, err = drv(url, "get", "data/ab/ab12ef", work / "x", check=False)
    assert rc != 0 and "no such object" in err and str(url) in err
    rc, _, err = drv(url, "head", "data/ab/ab12ef", check=False)
    assert rc != 0 and "no such object" in err
    assert listing(url) == {"meta/00000001": 8, "empty": 0}

    # the file:// form names the same place
    assert listing("file://%s" % url) == {"meta/00000001": 8, "empty": 0}


def test_range_get(work):
    url = work / "remote"
    data = os.urandom(100_000)
    put_bytes(work, url, "obj", data)
    for off, length in [(0, 1), (10, 20), (99_990, 10), (99_990, 100),
                        (50_000, 0), (0, 100_000), (100_000, 5),
                        (250_000, 0)]:
        want = data[off:off + length] if length else data[off:]
        got = get_bytes(work, url, "obj", "--offset", off, "--length", length)
        assert got == want, (off, length)


def test_put_is_atomic(work):
    """Readers see a key absent or whole, never in between; temporary
    files (even a crash's leftovers) are never listed."""
    url = work / "remote"
    big = work / "big.bin"
    size = 64 << 20
    with open(big, "wb") as f:
        f.write(os.urandom(1 << 20) * 64)
    # leftovers of an interrupted put, and foreign names that are no key
    (work / "remote/data").mkdir()
    (work / "remote/data/.~tmp.0123456789abcdef").write_bytes(b"half")
    (work / "remote/data/not a key").write_bytes(b"x")
    (work / "remote/data/x~").write_bytes(b"x")
    os.symlink("/etc/passwd", work / "remote/data/link")

    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            _, out, _ = drv(url, "list", "data/")
            seen.append(out)

    t = threading.Thread(target=watch)
    t.start()
    try:
        for i in range(3):
            drv(url, "put", "data/big%d" % i, big, timeout=120)
    finally:
        stop.set()
        t.join()
    assert len(seen) > 1
    for out in seen:
        for line in out.splitlines():
            key, sz = line.rsplit(" ", 1)
            assert key.startswith("data/big"), line
            assert int(sz) == size, "partial object listed: %s" % line
    final = listing(url, "data/")
    assert final == {"data/big0": size, "data/big1": size, "data/big2": size}
    # only our objects and the planted files are in the directory: the
    # put left no temporary file behind
    names = sorted(os.listdir(work / "remote/data"))
    assert names == sorted([".~tmp.0123456789abcdef", "not a key", "x~",
                            "link", "big0", "big1", "big2"])


def test_list_order_independence(work):
    url = work / "remote"
    keys = ["data/%02x/%02x%s" % (i % 7, i, "f" * (i % 5)) for i in range(24)]
    keys += ["meta/%08d" % i for i in range(8, 20)]
    # (a directory cannot also be a file here: no "data/ab" next to
    # "data/ab/c"; tresor's keys never need that)
    keys += ["data/a", "data/ab", "data/abc/d", "datax/y"]
    rng = random.Random(4)
    order1 = keys[:]
    rng.shuffle(order1)
    for k in order1:
        put_bytes(work, url, k, k.encode())
    l1 = listing(url)
    assert l1 == {k: len(k) for k in keys}

    # a second remote filled in another order lists the same set
    other = work / "remote2"
    other.mkdir()
    order2 = keys[:]
    rng.shuffle(order2)
    for k in order2:
        put_bytes(work, other, k, k.encode())
    assert listing(other) == l1

    # prefixes select by string prefix, not only whole folders
    assert set(listing(url, "data/a")) == {"data/a", "data/ab", "data/abc/d"}
    assert set(listing(url, "data/abc/")) == {"data/abc/d"}
    assert set(listing(url, "data")) == {k for k in keys if k.startswith("data")}
    assert set(listing(url, "meta/0000001")) == {"meta/%08d" % i
                                                 for i in range(10, 20)}


def test_bad_keys_refused(work):
    url = work / "remote"
    f = work / "in.bin"
    f.write_bytes(b"x")
    for key in ["../x", "a/../../x", "a..b", "/abs", "a//b", "a b", "a/./b",
                "x/", "a+b", "caf\u00e9", "a~b", "..", ".", ""]:
        rc, _, err = drv(url, "put", key, f, check=False)
        assert rc != 0, key
        assert str(url) in err, err
    assert listing(url) == {}
    assert os.listdir(work / "remote") == []
    assert not (work / "x").exists()


def test_missing_root_refused(work):
    url = work / "not-mounted"
    f = work / "in.bin"
    f.write_bytes(b"x")
    rc, _, err = drv(url, "put", "k", f, check=False)
    assert rc != 0
    assert str(url) in err and "No such file" in err
    assert not url.exists()       # the root is never created


def test_many_objects(work):
    url = work / "remote"
    f = work / "in.bin"
    f.write_bytes(b"tiny")
    t0 = time.monotonic()
    drv(url, "putmany", "data/o", 1100, f)
    lst = listing(url, "data/")
    assert len(lst) == 1100
    assert set(lst) == {"data/o%06d" % i for i in range(1100)}
    assert time.monotonic() - t0 < 60
