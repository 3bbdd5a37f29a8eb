"""Lazy recovery (issue 5): `recover --lazy` fetches the key and metadata
only; a mount of the result works at once and fetches only the packs a
read needs (a ranged GET of the record, then the whole pack, verified, into
the local packs directory); `recover --full` completes it (resumable);
`-o fill` completes it from the daemon; `restore --remote` restores a tree
with no local store, fetching only the packs it needs.

Backends: the lazy mount on all four (local directory, S3 via s3rver,
SFTP via a private sshd, WebDAV via a private apache: ranged GETs on each),
the rest on local and S3; servers are started once for the module by
test_push_recover's fixtures.  Fetched objects are counted as the pack
files that appear in the local store.
"""

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from conftest import Store, wait_for
from recovery_util import (MiB, all_packs, blob, db, env_with, fill_store, local_packs,
                           packs_of_file, read_errno, remote_pack_path, tresor_pw)
from test_push_recover import (davserver, make_remote, one_line, push, recover,  # noqa: F401
                               remote_add, s3server, scan, compare, sshserver)

FILES = {"a.bin": blob(1, 3 * MiB), "b.bin": blob(2, 5 * MiB),
         "dir/c.bin": blob(3, 4 * MiB), "dir/d.bin": blob(4, 2 * MiB)}


def daemon_env(remote):
    return {k: remote.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HOME")
            if k in remote.env}


def pushed_store(make_store, mounts, make_remote, kind):
    st = make_store()
    fill_store(st, mounts, FILES, snapshot_times=["2024-03-01T02:00:00"])
    remote = make_remote(kind)
    remote_add(st, "offsite", remote)
    push(st, "offsite", remote)
    return st, remote


def recover_lazy(remote, dest, passfile):
    p = tresor_pw("recover", remote.url, dest, *remote.opts, "--lazy",
                  env=env_with(remote))
    assert p.returncode == 0, p.stderr
    return Store(dest, passfile)


@pytest.mark.parametrize("kind", ["local", "s3", "sftp", "webdav"])
def test_lazy_mount_reads_one_file_fetching_only_its_packs(kind, tmp, make_store, mounts,
                                                            make_remote, passfile):
    st, remote = pushed_store(make_store, mounts, make_remote, kind)
    everything = all_packs(st.path)
    assert len(everything) >= 4, "each file should sit in its own pack: %s" % everything
    lz = recover_lazy(remote, tmp / "lazy", passfile)
    assert local_packs(lz.path) == set(), "a lazy recovery must fetch no pack"
    want = packs_of_file(lz.path, "dir/c.bin")
    m = mounts.mount(lz, "vol", extra_env=daemon_env(remote))
    assert sorted(os.listdir(m.path)) == ["a.bin", "b.bin", "dir"]
    data, err = read_errno(Path(m.path) / "dir/c.bin")
    assert err is None and data == FILES["dir/c.bin"]
    # the whole pack lands locally in the background, and nothing else
    assert wait_for(lambda: local_packs(lz.path) == want, 30), \
        "local packs %s, expected exactly %s" % (local_packs(lz.path), want)
    time.sleep(1.0)
    assert local_packs(lz.path) == want, "packs fetched that the read did not need"
    assert "fetched pack" in m.log_text()
    # from the snapshot too, the same bytes (its packs are the same ones)
    data, err = read_errno(Path(m.path) / ".snapshots" / "2024-03-01" / "dir/c.bin")
    assert err is None and data == FILES["dir/c.bin"]
    m.close()
    # check on a lazy store: packs not fetched yet are not problems
    p = tresor_pw("check", lz.path, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["not_local"] == len(everything) - len(want)
    # --full completes it; afterwards every pack is here and verifies
    p = tresor_pw("recover", remote.url, lz.path, *remote.opts, "--full", env=env_with(remote))
    assert p.returncode == 0, p.stderr
    assert local_packs(lz.path) == everything
    p = tresor_pw("check", lz.path, "--read-data", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["not_local"] == 0


def test_lazy_fill_option_fetches_everything(tmp, make_store, mounts, make_remote, passfile):
    st, remote = pushed_store(make_store, mounts, make_remote, "local")
    lz = recover_lazy(remote, tmp / "lazy", passfile)
    m = mounts.mount(lz, "vol", opts=["fill"])
    assert wait_for(lambda: local_packs(lz.path) == all_packs(st.path), 60), \
        "-o fill did not fetch every pack: %s" % local_packs(lz.path)
    for rel, data in FILES.items():
        assert (Path(m.path) / rel).read_bytes() == data
    assert wait_for(lambda: "every pack of store" in m.log_text(), 10), m.log_text()
    m.close()
    # complete now: the lazy mark is gone, so a pack lost later is a problem
    con = db(lz.path)
    assert con.execute("SELECT value FROM meta WHERE key = 'lazy'").fetchone() == (0,)
    con.close()


def test_recover_full_resumes_after_a_missing_object(tmp, make_store, mounts, make_remote,
                                                     passfile):
    st, remote = pushed_store(make_store, mounts, make_remote, "local")
    lz = recover_lazy(remote, tmp / "lazy", passfile)
    names = sorted(all_packs(st.path))
    hidden = remote_pack_path(remote.url, names[-1])
    shutil.move(hidden, tmp / "hidden")
    p = tresor_pw("recover", remote.url, lz.path, "--full")
    assert p.returncode != 0
    line = one_line(p.stderr)
    assert names[-1] in line and "missing" in line
    got = local_packs(lz.path)
    assert names[-1] not in got
    mtimes = {n: (Path(lz.path) / "packs" / n[:2] / n).stat().st_mtime_ns for n in got}
    shutil.move(tmp / "hidden", hidden)
    p = tresor_pw("recover", remote.url, lz.path, "--full")
    assert p.returncode == 0, p.stderr
    assert local_packs(lz.path) == set(names)
    # packs fetched by the first run were kept, not fetched again
    for n, t in mtimes.items():
        assert (Path(lz.path) / "packs" / n[:2] / n).stat().st_mtime_ns == t


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_restore_remote_without_a_store(kind, tmp, make_store, mounts, make_remote):
    st, remote = pushed_store(make_store, mounts, make_remote, kind)
    # every file kind and its metadata, in a second snapshot and push
    m = mounts.mount(st, "vol")
    d = Path(m.path) / "dir"
    os.symlink("c.bin", d / "link")
    os.link(d / "d.bin", d / "d-hardlink.bin")
    os.mkfifo(d / "fifo", 0o640)
    (d / "sub").mkdir(mode=0o750)
    (d / "sub" / "note.txt").write_bytes(b"x" * 1000)
    os.setxattr(d / "sub" / "note.txt", "user.site", b"OBJ-00042")
    os.chmod(d / "c.bin", 0o604)
    os.chown(d / "sub" / "note.txt", 101, 102)
    os.utime(d / "sub", ns=(1709251200123456789, 1709251200123456789))
    m.close()
    st.run("snapshot", "create", st.path, "vol", "--time", "2024-03-02T02:00:00", check=True)
    push(st, "offsite", remote)
    m = mounts.mount(st, "vol")
    expected = scan(Path(m.path) / ".snapshots" / "2024-03-02" / "dir")
    m.close()
    cache = tmp / "cache"
    env = env_with(remote, TRESOR_CACHE_DIR=cache, TRESOR_LOG="debug")
    dest = tmp / "out"
    p = tresor_pw("restore", "--remote", remote.url, *remote.opts, "vol", "latest", "dir",
                  dest, env=env)
    assert p.returncode == 0, p.stderr
    compare(expected, scan(dest / "dir"), "restore --remote of dir")
    assert sorted(os.listdir(dest)) == ["dir"]
    fetched = {l.split("fetched pack ")[1].split()[0] for l in p.stderr.splitlines()
               if "fetched pack" in l}
    want = set()
    for rel, rec in expected.items():
        if rec["type"] in ("file", "symlink") and rel != ".":
            want |= packs_of_file(st.path, "dir/" + rel)
    assert fetched == want, "fetched %s, the tree needs %s" % (fetched, want)
    assert not any(cache.iterdir()), "the temporary store is removed after success"


def test_restore_remote_resumes(tmp, make_store, mounts, make_remote):
    st, remote = pushed_store(make_store, mounts, make_remote, "local")
    cache = tmp / "cache"
    env = env_with(remote, TRESOR_CACHE_DIR=cache)
    hidden_name = sorted(packs_of_file(st.path, "dir/d.bin"))[0]
    hidden = remote_pack_path(remote.url, hidden_name)
    shutil.move(hidden, tmp / "hidden")
    dest = tmp / "out"
    p = tresor_pw("restore", "--remote", remote.url, "vol", "latest", "/", dest, env=env)
    assert p.returncode != 0
    assert "rerun" in p.stderr
    assert any(cache.iterdir()), "the temporary store is kept for a rerun"
    shutil.move(tmp / "hidden", hidden)
    p = tresor_pw("restore", "--remote", remote.url, "vol", "latest", "/", dest, env=env)
    assert p.returncode == 0, p.stderr
    kept = int(re.search(r"\((\d+) already there\)", p.stdout).group(1))
    assert kept >= 3, "files restored by the first run are kept: %s" % p.stdout
    for rel, data in FILES.items():
        assert (dest / rel).read_bytes() == data


def test_restore_from_a_lazy_store_fetches_its_packs(tmp, make_store, mounts, make_remote,
                                                     passfile):
    st, remote = pushed_store(make_store, mounts, make_remote, "local")
    lz = recover_lazy(remote, tmp / "lazy", passfile)
    p = tresor_pw("restore", lz.path, "vol", "latest", "dir/c.bin", tmp / "out")
    assert p.returncode == 0, p.stderr
    assert (tmp / "out" / "c.bin").read_bytes() == FILES["dir/c.bin"]
    assert local_packs(lz.path) == packs_of_file(lz.path, "dir/c.bin")


def test_progress_lines(tmp, make_store, mounts, make_remote, passfile):
    """recover, check and restore draw tools/progress.h's line when asked
    (TRESOR_PROGRESS=1; on a terminal by default), never into stdout."""
    st, remote = pushed_store(make_store, mounts, make_remote, "local")
    env = env_with(remote, TRESOR_PROGRESS=1, TRESOR_CACHE_DIR=tmp / "cache")
    p = tresor_pw("recover", remote.url, tmp / "full", env=env)
    assert p.returncode == 0 and re.search(r"recover: .* of .*%", p.stderr), p.stderr
    assert "\r" not in p.stdout
    p = tresor_pw("check", tmp / "full", "--read-data", env=env)
    assert p.returncode == 0 and re.search(r"check: .* of ", p.stderr), p.stderr
    p = tresor_pw("restore", "--remote", remote.url, "vol", "latest", "/", tmp / "out", env=env)
    assert p.returncode == 0 and "restore: " in p.stderr, p.stderr
