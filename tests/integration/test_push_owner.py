"""Two stores pushing to one remote (issue 13, part 2).

After a disaster recovery the old server (still configured) and the new
one both pushed to the same remote; the old one wrote its delta on top of
the new one's and a later recovery mixed the two.  What is checked, on
every backend (local directory, S3 via s3rver, SFTP via a private sshd,
WebDAV via a private apache, started as test_push_recover starts them):

  - store A pushes, B recovers, B pushes, A's next push is refused in one
    line naming the other store and `remote takeover`, exit non-zero,
    nothing on the remote changed; a new recovery holds B's bytes and
    `check` is clean;
  - `recover --takeover`: A is refused before B ever pushed;
  - A pushes after B recovered (a drill): B's push is refused until
    `remote takeover`, then A's is;
  - two stores that both believe they own the chain (a cloned store
    directory) push at the same moment: one publishes, the other refuses
    cleanly (or, where Apache's MOVE lets both succeed, is refused by its
    next push), and a recovery holds one store's bytes, never a mix (S3
    goes through tests/servers/faultproxy.py with create_only: s3rver
    ignores If-None-Match and can interleave two PUTs of one key);
  - a forked chain (a delta continuing an object that is not there):
    recover refuses and lists the branches; --chain ID recovers one;
  - a version 1 remote (written by a tresor built from before, or TRESOR_V1_BIN) is continued
    and upgraded, and its old writer refused afterwards.
"""

import re
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import Store
from recovery_util import old_tresor
from test_push_recover import (BACKENDS, make_remote, one_line, push, recover,  # noqa: F401
                               remote_add, run)
from test_push_recover import s3server, sshserver, davserver  # noqa: F401
from remote_proxy import FaultProxy, s3_remote

MiB = 1 << 20


def write(store, mounts, rel, data, mnt=None):
    m = mounts.mount(store, "vol", mnt=mnt)
    (Path(m.path) / rel).write_bytes(data)
    m.close()


def read_all(store, mounts, mnt):
    m = mounts.mount(store, "vol", mnt=mnt)
    got = {p.name: p.read_bytes() for p in sorted(Path(m.path).iterdir()) if p.is_file()}
    m.close()
    return got


def meta_objects(remote):
    return {k: v for k, v in remote.objects().items() if k.startswith("meta/")}


def recovered_clean(tmp, remote, passfile, mounts, name):
    """Recover from the remote into a fresh store (read only), check it,
    and return its files."""
    p = run("recover", remote.url, tmp / name, *remote.opts,
            "--passphrase-file", passfile, env=remote.env)
    assert p.returncode == 0, "recover failed: %s" % p.stderr
    st = Store(tmp / name, passfile)
    c = st.check()
    assert c.returncode == 0, "check after recovery: %s%s" % (c.stdout, c.stderr)
    return read_all(st, mounts, tmp / ("mnt-" + name))


def push_at_once(a, b, rem):
    """Push stores a and b to their remote 'box' at the same moment."""
    results = {}

    def go(name, st):
        results[name] = push(st, "box", rem, check=False)

    ts = [threading.Thread(target=go, args=(n, s)) for n, s in (("a", a), ("b", b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results


def assert_refused(p, remote_name):
    assert p.returncode != 0, "push was not refused: %s" % p.stdout
    line = one_line(p.stderr)
    assert "another store" in line and "takeover" in line, line
    assert "'%s'" % remote_name in line, line
    return line


def pushed_a(kind, make_store, mounts, make_remote):
    a = make_store("a")
    write(a, mounts, "f.bin", b"A1" * 5000)
    rem = make_remote(kind)
    remote_add(a, "box", rem)
    push(a, "box", rem)
    return a, rem


def recover_b(rem, tmp, passfile, *extra):
    p = run("recover", rem.url, tmp / "b", *rem.opts, *extra, "--passphrase-file", passfile,
            env=rem.env)
    assert p.returncode == 0, p.stderr
    return Store(tmp / "b", passfile), p


def old_store_refused(a, rem, mounts):
    """A, still configured, pushes new bytes: refused, the remote untouched."""
    write(a, mounts, "f.bin", b"A3" * 9000)
    write(a, mounts, "g.bin", b"only on A" * 1000)
    before = rem.objects()
    line = assert_refused(push(a, "box", rem, check=False), "box")
    assert "meta/" in line, line
    assert rem.objects() == before, "a refused push changed the remote"
    assert_refused(push(a, "box", rem, check=False), "box")   # and stays refused
    assert rem.objects() == before


@pytest.mark.parametrize("kind", BACKENDS)
def test_new_store_pushes_then_old_store_is_refused(kind, tmp, make_store, mounts,
                                                    make_remote, passfile):
    """The issue's case: B recovers and pushes, then A pushes."""
    a, rem = pushed_a(kind, make_store, mounts, make_remote)
    b, _ = recover_b(rem, tmp, passfile)
    write(b, mounts, "f.bin", b"B2" * 7000, mnt=tmp / "mnt-b")
    push(b, "origin", rem)
    old_store_refused(a, rem, mounts)
    push(b, "origin", rem)          # B goes on
    assert recovered_clean(tmp, rem, passfile, mounts, "c") == {"f.bin": b"B2" * 7000}


@pytest.mark.parametrize("kind", BACKENDS)
def test_recover_takeover_refuses_old_store_at_once(kind, tmp, make_store, mounts,
                                                    make_remote, passfile):
    a, rem = pushed_a(kind, make_store, mounts, make_remote)
    b, p = recover_b(rem, tmp, passfile, "--takeover")
    assert "now owns the chain" in p.stdout, p.stdout
    old_store_refused(a, rem, mounts)    # before B ever pushed
    write(b, mounts, "f.bin", b"B2" * 7000, mnt=tmp / "mnt-b")
    push(b, "origin", rem)
    assert recovered_clean(tmp, rem, passfile, mounts, "c") == {"f.bin": b"B2" * 7000}


@pytest.mark.parametrize("kind", BACKENDS)
def test_old_store_pushed_first_then_explicit_takeover(kind, tmp, make_store, mounts,
                                                       make_remote, passfile):
    a, rem = pushed_a(kind, make_store, mounts, make_remote)
    b, _ = recover_b(rem, tmp, passfile)            # a drill: the remote is only read
    write(a, mounts, "f.bin", b"A2" * 9000)
    push(a, "box", rem)                             # A goes on: nothing took over
    write(b, mounts, "f.bin", b"B2" * 7000, mnt=tmp / "mnt-b")
    before = rem.objects()
    assert_refused(push(b, "origin", rem, check=False), "origin")
    assert rem.objects() == before
    # B takes over explicitly: its next push is a full image, A is refused
    p = run("remote", "takeover", b.path, "origin", "--passphrase-file", passfile, env=rem.env)
    assert p.returncode == 0, p.stderr
    assert "now owns the chain" in p.stdout, p.stdout
    push(b, "origin", rem)
    old_store_refused(a, rem, mounts)
    assert recovered_clean(tmp, rem, passfile, mounts, "c") == {"f.bin": b"B2" * 7000}


@pytest.fixture(scope="module")
def s3_create_only(s3server):
    """s3rver behind a proxy that gives If-None-Match: * S3's semantics."""
    px = FaultProxy(s3server.port, create_only=True).start()
    yield px
    px.stop()


@pytest.mark.parametrize("kind", BACKENDS)
def test_concurrent_pushes_one_wins(kind, tmp, make_store, mounts, make_remote, passfile,
                                    request):
    a = make_store("a")
    write(a, mounts, "f.bin", b"A1" * 5000)
    if kind == "s3":
        rem = s3_remote(tmp, request.getfixturevalue("s3_create_only"),
                        "race-" + tmp.name)
    else:
        rem = make_remote(kind)
    remote_add(a, "box", rem)
    push(a, "box", rem)
    # a clone of the store (a restored VM image): it believes it owns the chain too
    shutil.copytree(a.path, tmp / "clone", symlinks=True)
    b = Store(tmp / "clone", passfile)
    write(a, mounts, "f.bin", b"A2" * 6000)
    write(b, mounts, "f.bin", b"B2" * 7000, mnt=tmp / "mnt-b")

    results = push_at_once(a, b, rem)
    ok = [n for n, p in results.items() if p.returncode == 0]
    for n, p in results.items():
        if p.returncode != 0:
            line = one_line(p.stderr)
            assert "not by this one" in line or "not the object it wrote" in line, line
    if kind == "webdav" and len(ok) == 2:
        # Apache's mod_dav_fs checks "Overwrite: F" before it renames, so
        # two MOVEs at one moment can both succeed: the store whose object
        # was replaced learns it at its next push
        for st in (a, b):
            write(st, mounts, "h.bin", b"later", mnt=tmp / ("mnt-late-" + Path(st.path).name))
        again = {n: push(s, "box", rem, check=False) for n, s in (("a", a), ("b", b))}
        ok = [n for n, p in again.items() if p.returncode == 0]
        assert len(ok) == 1, {n: p.stderr for n, p in again.items()}
    assert len(ok) == 1, {n: p.stderr for n, p in results.items()}
    got = recovered_clean(tmp, rem, passfile, mounts, "c")
    assert got["f.bin"] in (b"A2" * 6000, b"B2" * 7000)
    winner = a if ok[0] == "a" else b
    assert got["f.bin"] == read_all(winner, mounts, tmp / "mnt-w")["f.bin"]
    # the loser stays refused
    loser = b if winner is a else a
    assert push(loser, "box", rem, check=False).returncode != 0


def test_first_pushes_of_two_stores_at_once(tmp, make_store, mounts, make_remote, passfile):
    """Two unrelated stores (two keys) push to one empty remote at once."""
    a, b = make_store("a"), make_store("b")
    write(a, mounts, "f.bin", b"A" * 9000)
    write(b, mounts, "f.bin", b"B" * 9000, mnt=tmp / "mnt-b")
    rem = make_remote("local")
    remote_add(a, "box", rem)
    remote_add(b, "box", rem)
    results = push_at_once(a, b, rem)
    ok = [n for n, p in results.items() if p.returncode == 0]
    assert len(ok) == 1, {n: p.stderr for n, p in results.items()}
    lost = results["b" if ok == ["a"] else "a"]
    one_line(lost.stderr)
    got = recovered_clean(tmp, rem, passfile, mounts, "c")
    assert got == {"f.bin": (b"A" if ok == ["a"] else b"B") * 9000}


def test_forked_chain_recover_refuses_or_takes_the_named_branch(tmp, make_store, mounts,
                                                                 make_remote, passfile):
    a, rem = pushed_a("local", make_store, mounts, make_remote)     # meta/1
    # a copy of the remote as it is now; B recovers from the copy
    copy = Path(str(rem.url) + "-copy")
    shutil.copytree(rem.url, copy)
    write(a, mounts, "f.bin", b"A2" * 5000)
    push(a, "box", rem)                                  # meta/2 by A
    p = run("recover", str(copy), tmp / "b", "--takeover", "--passphrase-file", passfile)
    assert p.returncode == 0, p.stderr                   # meta/2 on the copy: B's takeover
    b = Store(tmp / "b", passfile)
    write(b, mounts, "f.bin", b"B3" * 5000, mnt=tmp / "mnt-b")
    push(b, "origin", type(rem)("local", str(copy), [], rem.env, []))   # meta/3 by B
    # B's meta/3 lands beside A's chain (as an old tresor would have put it):
    # it continues a meta/2 that is not the one there
    shutil.copy(copy / "meta" / ("%016x" % 3), Path(rem.url) / "meta" / ("%016x" % 3))

    p = run("recover", rem.url, tmp / "x", "--passphrase-file", passfile)
    assert p.returncode != 0
    line = one_line(p.stderr)
    assert "forks" in line and "--chain" in line, line
    assert not (tmp / "x").exists()
    branches = re.findall(r"meta/([0-9a-f]+) by ([^;]*?) \(id ([0-9a-f]{16})\)", line)
    assert len(branches) == 2, line
    by = {Path(origin.split(":", 1)[1]).name: ident for _, origin, ident in branches}
    assert set(by) == {"a", "b"}, branches

    # A's branch is whole: recovered alone, never mixed with B's delta
    p = run("recover", rem.url, tmp / "ra", "--chain", by["a"], "--passphrase-file", passfile)
    assert p.returncode == 0, p.stderr
    ra = Store(tmp / "ra", passfile)
    c = ra.check()
    assert c.returncode == 0, c.stdout + c.stderr
    assert read_all(ra, mounts, tmp / "mnt-ra") == {"f.bin": b"A2" * 5000}
    # B's continues a meta/2 that is not the one on this remote: refused
    p = run("recover", rem.url, tmp / "rb", "--chain", by["b"], "--passphrase-file", passfile)
    assert p.returncode != 0
    assert "forks" in one_line(p.stderr)
    assert not (tmp / "rb").exists()


# The last commit whose tresor writes repository version 1.
V1_COMMIT = "c430ffa"


@pytest.fixture(scope="session")
def v1_bin():
    """A tresor writing repository version 1 (recovery_util.old_tresor)."""
    return old_tresor(V1_COMMIT, "v1", "TRESOR_V1_BIN")


def v1(v1_bin, *args):
    return subprocess.run([v1_bin] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300,
                          start_new_session=True)


def test_version1_remote_upgrades_and_old_store_is_refused(tmp, make_store, mounts,
                                                           make_remote, passfile, v1_bin):
    a = make_store("a")
    write(a, mounts, "f.bin", b"A1" * 5000)
    rem = make_remote("local")
    remote_add(a, "box", rem)
    # A store as that tresor knew them: store format 1 (no snapshot.set_name
    # and .note, FORMAT.md §2); it refuses a store of format 2 as newer.
    db = sqlite3.connect(str(a.path / "index.db"))
    db.execute("ALTER TABLE snapshot DROP COLUMN set_name")
    db.execute("ALTER TABLE snapshot DROP COLUMN note")
    db.execute("UPDATE meta SET value = 1 WHERE key = 'format_version'")
    db.commit()
    db.close()
    p = v1(v1_bin, "push", a.path, "box", "--passphrase-file", passfile)
    assert p.returncode == 0, p.stderr
    marker = Path(rem.url) / "tresor-repo"
    assert marker.read_bytes()[8:12] == (1).to_bytes(4, "little")
    # this tresor recovers the version 1 chain and continues it: the marker
    # becomes the current version (3), the new object carries a header
    b, _ = recover_b(rem, tmp, passfile)
    write(b, mounts, "f.bin", b"B2" * 7000, mnt=tmp / "mnt-b")
    push(b, "origin", rem)
    assert marker.read_bytes()[8:12] == (3).to_bytes(4, "little")
    assert (Path(rem.url) / "meta" / ("%016x" % 2)).read_bytes()[:8] == b"TRSMETA3"
    # A (its remote row from before writer ids) is refused with the new binary
    old_store_refused(a, rem, mounts)
    # the old binary refuses the upgraded repository as newer, not damaged
    p = v1(v1_bin, "recover", rem.url, tmp / "old", "--passphrase-file", passfile)
    assert p.returncode != 0 and "newer" in p.stderr, p.stderr
    assert recovered_clean(tmp, rem, passfile, mounts, "c") == {"f.bin": b"B2" * 7000}
