"""A hostile or damaged remote (issue 5): truncated objects, swapped
objects (a pack's bytes under another pack's name; meta N's bytes as meta
M), rolled-back metadata and file names with '..' or '/' are detected and
refused with one line naming the object; nothing is installed or written
outside the destination, and reads never return wrong bytes.

What a client cannot detect from the remote alone (deleting the newest
deltas of a repository it has never seen) is documented in docs/FORMAT.md;
a store that pushed there detects it (`check --remote`).
"""

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from conftest import Store
from recovery_util import (MiB, blob, env_with, fill_store, first_record_offset,
                           packs_of_file, read_errno, remote_pack_path, tresor_pw)
from test_push_recover import make_remote, one_line, push, remote_add  # noqa: F401

FILES = {"a.bin": blob(41, 2 * MiB), "b.bin": blob(42, 2 * MiB)}


@pytest.fixture
def pushed(make_store, mounts, make_remote):
    st = make_store()
    fill_store(st, mounts, FILES, snapshot_times=["2024-03-01T02:00:00"])
    remote = make_remote("local")
    remote_add(st, "offsite", remote)
    push(st, "offsite", remote)
    (pa,) = packs_of_file(st.path, "a.bin")
    (pb,) = packs_of_file(st.path, "b.bin")
    return st, remote, pa, pb


def tree(d):
    """Every path under d (to show nothing appeared outside a destination)."""
    return sorted(str(p.relative_to(d)) for p in Path(d).rglob("*"))


def refused_recover(remote, dest, *extra):
    p = tresor_pw("recover", remote.url, dest, *extra)
    assert p.returncode == 1, p.stdout + p.stderr
    assert not Path(dest).exists(), "nothing may be installed at %s" % dest
    return one_line(p.stderr)


def test_truncated_pack(pushed, tmp):
    st, remote, pa, pb = pushed
    rp = remote_pack_path(remote.url, pa)
    os.truncate(rp, rp.stat().st_size - 4096)
    line = refused_recover(remote, tmp / "rec")
    assert pa in line and "damaged" in line


def test_truncated_pack_lazy_read_is_eio(pushed, tmp, mounts, passfile):
    st, remote, pa, pb = pushed
    p = tresor_pw("recover", remote.url, tmp / "lazy", "--lazy")
    assert p.returncode == 0, p.stderr
    os.truncate(remote_pack_path(remote.url, pa), 16)   # header only
    m = mounts.mount(Store(tmp / "lazy", passfile), "vol")
    data, err = read_errno(Path(m.path) / "a.bin")
    assert data is None and err == 5
    assert (Path(m.path) / "b.bin").read_bytes() == FILES["b.bin"]
    m.close()
    assert pa in m.log_text()


def test_swapped_packs(pushed, tmp, mounts, passfile):
    st, remote, pa, pb = pushed
    # a lazy store first, then the swap: its reads must fail, not lie
    p = tresor_pw("recover", remote.url, tmp / "lazy", "--lazy")
    assert p.returncode == 0, p.stderr
    ra, rb = remote_pack_path(remote.url, pa), remote_pack_path(remote.url, pb)
    da, db_ = ra.read_bytes(), rb.read_bytes()
    n = min(len(da), len(db_))
    # same size, so only the contents can tell
    ra.write_bytes(db_[:n] + da[n:])
    line = refused_recover(remote, tmp / "rec")
    assert pa in line and "tampered" in line
    m = mounts.mount(Store(tmp / "lazy", passfile), "vol")
    data, err = read_errno(Path(m.path) / "a.bin")
    assert data is None and err == 5, "another pack's bytes must never be returned"
    m.close()
    p = tresor_pw("restore", "--remote", remote.url, "vol", "latest", "a.bin", tmp / "out",
                  env=env_with(None, TRESOR_CACHE_DIR=tmp / "cache"))
    assert p.returncode == 1
    assert not (tmp / "out" / "a.bin").exists(), "no file with wrong or partial bytes"
    assert "a.bin" in p.stderr


def test_swapped_metadata(make_store, mounts, make_remote, tmp):
    st = make_store()
    fill_store(st, mounts, {"a": blob(51, MiB)})
    remote = make_remote("local")
    remote_add(st, "offsite", remote)
    push(st, "offsite", remote)
    fill_store(st, mounts, {"b": blob(52, MiB)})
    push(st, "offsite", remote)
    m1, m2 = sorted((Path(remote.url) / "meta").iterdir())
    b1, b2 = m1.read_bytes(), m2.read_bytes()
    m1.write_bytes(b2)
    m2.write_bytes(b1)
    line = refused_recover(remote, tmp / "rec")
    # headers are read from the newest down (FORMAT.md §15.5): either is named
    assert ("meta/" + m1.name in line or "meta/" + m2.name in line) and "tampered" in line
    # meta 1 replayed as meta 2 (an old delta in a newer one's place)
    m1.write_bytes(b1)
    line = refused_recover(remote, tmp / "rec")
    assert "meta/" + m2.name in line


def test_rolled_back_remote(make_store, mounts, make_remote, tmp):
    st = make_store()
    fill_store(st, mounts, {"a": blob(61, MiB)})
    remote = make_remote("local")
    remote_add(st, "offsite", remote)
    push(st, "offsite", remote)
    old = tmp / "old-remote"
    shutil.copytree(remote.url, old)
    fill_store(st, mounts, {"b": blob(62, MiB)})
    push(st, "offsite", remote)
    # the server goes back to yesterday's state
    shutil.rmtree(remote.url)
    shutil.copytree(old, remote.url)
    p = tresor_pw("check", st.path, "--remote", "offsite")
    assert p.returncode == 1
    assert "rolled back" in p.stdout
    # a gap (a middle delta deleted) is refused even without a store
    fill_store(st, mounts, {"c": blob(63, MiB)})
    shutil.rmtree(remote.url)
    shutil.copytree(old, remote.url)
    (Path(remote.url) / "meta" / ("%016x" % 3)).write_bytes(b"\0" * 64)
    line = refused_recover(remote, tmp / "rec")
    assert "meta/%016x" % 2 in line and "missing" in line


@pytest.mark.parametrize("bad", ["../evil", "..", "a/b"])
def test_unsafe_names_refused(bad, make_store, mounts, make_remote, tmp):
    st = make_store()
    fill_store(st, mounts, {"evil": b"owned\n", "ok": b"fine\n"},
               snapshot_times=["2024-03-01T02:00:00"])
    remote = make_remote("local")
    remote_add(st, "offsite", remote)
    con = sqlite3.connect(str(st.path / "index.db"))
    con.execute("UPDATE dentry SET name = ? WHERE name = 'evil'", (bad,))
    con.commit()
    con.close()
    push(st, "offsite", remote)
    work = tmp / "work"
    work.mkdir()
    before = tree(tmp)
    line = refused_recover(remote, work / "rec")
    assert "unsafe file name" in line and repr(bad)[1:-1] in line
    p = tresor_pw("restore", "--remote", remote.url, "vol", "latest", "/", work / "out",
                  env=env_with(None, TRESOR_CACHE_DIR=tmp / "cache"))
    assert p.returncode == 1
    assert "unsafe file name" in one_line(p.stderr)
    after = [x for x in tree(tmp) if not x.startswith("cache")]
    assert [x for x in after if x not in before and not x.startswith("work/rec.recover")] == [], \
        "files appeared outside the destination"
    # a local restore from the damaged store refuses the name too
    p = tresor_pw("restore", st.path, "vol", "2024-03-01", "/", work / "out2")
    assert p.returncode == 1
    assert sorted(os.listdir(work / "out2")) == ["ok"]
    assert not (tmp / "evil").exists() and not (work / "evil").exists()
