"""Bit rot and healing (issue 5): reads never return wrong bytes.

  - a flipped byte in a local pack: without a remote, EIO and a log line
    naming the file's path and the pack; with a remote, the right bytes,
    the pack replaced on disk by the remote's verified copy and a log line
    naming the pack and the volume;
  - a deleted pack is fetched back the same way;
  - a remote whose copy is damaged too: EIO, never wrong bytes;
  - `repair STORE --from REMOTE` replaces every missing or damaged pack,
    and says so; a pack the remote lacks makes it fail naming the pack.
"""

import hashlib
import os
from pathlib import Path

import pytest

from conftest import wait_for
from recovery_util import (MiB, blob, fill_store, first_record_offset, flip, pack_path,
                           packs_of_file, read_errno, remote_pack_path, tresor_pw)
from test_push_recover import make_remote, push, remote_add  # noqa: F401

FILES = {"plans/a.pdf": blob(11, 3 * MiB), "plans/b.dwg": blob(12, 2 * MiB),
         "c.jpg": blob(13, 1 * MiB)}


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_setup(make_store, mounts, make_remote=None):
    st = make_store()
    fill_store(st, mounts, FILES)
    remote = None
    if make_remote:
        remote = make_remote("local")
        remote_add(st, "offsite", remote)
        push(st, "offsite", remote)
    return st, remote


def rot(st, rel):
    """Flip bytes inside the first record of the pack holding rel."""
    (name,) = packs_of_file(st.path, rel)
    flip(pack_path(st.path, name), first_record_offset(st.path, name) + 40)
    return name


def test_bit_rot_without_remote_is_eio_naming_the_file(make_store, mounts):
    st, _ = make_setup(make_store, mounts)
    name = rot(st, "plans/a.pdf")
    m = mounts.mount(st, "vol")
    data, err = read_errno(Path(m.path) / "plans/a.pdf")
    assert data is None and err == 5, "a damaged pack must give EIO, got %r" % (err,)
    # the other files are untouched
    assert (Path(m.path) / "plans/b.dwg").read_bytes() == FILES["plans/b.dwg"]
    m.close()
    log = m.log_text()
    lines = [l for l in log.splitlines() if "/plans/a.pdf" in l]
    assert lines and name in lines[0] and "vol" in lines[0], log


def test_bit_rot_healed_from_the_remote(make_store, mounts, make_remote):
    st, remote = make_setup(make_store, mounts, make_remote)
    name = rot(st, "plans/a.pdf")
    good = sha(remote_pack_path(remote.url, name))
    assert sha(pack_path(st.path, name)) != good
    m = mounts.mount(st, "vol")
    assert (Path(m.path) / "plans/a.pdf").read_bytes() == FILES["plans/a.pdf"]
    assert wait_for(lambda: sha(pack_path(st.path, name)) == good, 30), \
        "the damaged pack was not replaced by the remote's copy"
    m.close()
    healed = [l for l in m.log_text().splitlines() if "healed pack" in l]
    assert healed and name in healed[0] and "volume vol" in healed[0], m.log_text()
    p = tresor_pw("check", st.path, "--read-data")
    assert p.returncode == 0, p.stdout


def test_missing_pack_fetched_back(make_store, mounts, make_remote):
    st, remote = make_setup(make_store, mounts, make_remote)
    (name,) = packs_of_file(st.path, "c.jpg")
    os.unlink(pack_path(st.path, name))
    m = mounts.mount(st, "vol")
    assert (Path(m.path) / "c.jpg").read_bytes() == FILES["c.jpg"]
    assert wait_for(lambda: pack_path(st.path, name).exists(), 30)
    m.close()
    assert sha(pack_path(st.path, name)) == sha(remote_pack_path(remote.url, name))


def test_remote_copy_damaged_too_gives_eio(make_store, mounts, make_remote):
    st, remote = make_setup(make_store, mounts, make_remote)
    name = rot(st, "plans/b.dwg")
    flip(remote_pack_path(remote.url, name), first_record_offset(st.path, name) + 40)
    before = sha(pack_path(st.path, name))
    m = mounts.mount(st, "vol")
    data, err = read_errno(Path(m.path) / "plans/b.dwg")
    assert data is None and err == 5
    m.close()
    assert sha(pack_path(st.path, name)) == before, "a bad remote copy must not be installed"
    assert "fails verification" in m.log_text() or "cannot" in m.log_text()


def test_repair_from_remote(make_store, mounts, make_remote):
    st, remote = make_setup(make_store, mounts, make_remote)
    bad = rot(st, "plans/a.pdf")
    (gone,) = packs_of_file(st.path, "c.jpg")
    os.unlink(pack_path(st.path, gone))
    p = tresor_pw("check", st.path, "--read-data")
    assert p.returncode == 1
    p = tresor_pw("repair", st.path, "--from", "offsite")
    assert p.returncode == 0, p.stdout + p.stderr
    repaired = [l for l in p.stdout.splitlines() if l.startswith("repaired pack")]
    assert len(repaired) == 2, p.stdout
    assert any(bad in l and "damaged" in l for l in repaired)
    assert any(gone in l and "missing" in l for l in repaired)
    p = tresor_pw("check", st.path, "--read-data")
    assert p.returncode == 0, p.stdout
    m = mounts.mount(st, "vol")
    for rel, data in FILES.items():
        assert (Path(m.path) / rel).read_bytes() == data
    m.close()


def test_repair_fails_naming_what_the_remote_lacks(make_store, mounts, make_remote):
    st, remote = make_setup(make_store, mounts, make_remote)
    (gone,) = packs_of_file(st.path, "c.jpg")
    os.unlink(pack_path(st.path, gone))
    os.unlink(remote_pack_path(remote.url, gone))
    p = tresor_pw("repair", st.path, "--from", "offsite")
    assert p.returncode == 1
    lines = [l for l in p.stdout.splitlines() if l.startswith("problem:")]
    assert len(lines) == 1 and gone in lines[0] and "does not have" in lines[0], p.stdout
    assert "affects volume vol: /c.jpg" in p.stdout
    p = tresor_pw("repair", st.path, "--from", "nowhere")
    assert p.returncode == 1 and "no remote 'nowhere'" in p.stderr


def test_restore_heals_from_the_remote(make_store, mounts, make_remote, tmp):
    st, remote = make_setup(make_store, mounts, make_remote)
    name = rot(st, "plans/a.pdf")
    st.run("snapshot", "create", st.path, "vol", "--time", "2024-03-01T02:00:00", check=True)
    p = tresor_pw("restore", st.path, "vol", "latest", "plans", tmp / "out")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp / "out/plans/a.pdf").read_bytes() == FILES["plans/a.pdf"]
    assert sha(pack_path(st.path, name)) == sha(remote_pack_path(remote.url, name)), p.stderr
    assert name in p.stderr and "fetching it from remote 'offsite'" in p.stderr, p.stderr
