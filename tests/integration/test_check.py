"""`tresor check` as a verifier (issue 5):

  - every problem names the files and snapshots it affects, and check
    exits non-zero;
  - `--read-data=N%` reads a rotating share: 100/N runs read every chunk
    exactly once, and bit rot is found within them;
  - `--remote NAME` checks the remote holds every pushed pack (sizes; with
    --read-data contents) and an unbroken metadata chain ending where the
    store's last push did; packs made since the last push are no problem;
  - an entry with an unsafe name in the index is a problem.
"""

import json
import os
import re
import sqlite3
from pathlib import Path

from recovery_util import (MiB, blob, fill_store, first_record_offset, flip, pack_path,
                           packs_of_file, remote_pack_path, tresor_pw)
from test_push_recover import make_remote, push, remote_add  # noqa: F401


def affects(stdout):
    return [l.strip() for l in stdout.splitlines() if l.startswith("  affects ")]


def test_problems_name_files_and_snapshots(make_store, mounts):
    st = make_store()
    # x.bin in snapshots day1 and day2 and live; y.bin only from day2 on,
    # renamed to z.bin afterwards; both in the same pack
    m = mounts.mount(st, "vol")
    (Path(m.path) / "docs").mkdir()
    (Path(m.path) / "docs/x.bin").write_bytes(blob(1, 2 * MiB))
    m.close()
    st.run("snapshot", "create", st.path, "vol", "--time", "2024-03-01T02:00:00", check=True)
    m = mounts.mount(st, "vol")
    (Path(m.path) / "y.bin").write_bytes(blob(2, MiB))
    m.close()
    st.run("snapshot", "create", st.path, "vol", "--time", "2024-03-02T02:00:00", check=True)
    m = mounts.mount(st, "vol")
    os.rename(Path(m.path) / "y.bin", Path(m.path) / "z.bin")
    m.close()
    (px,) = packs_of_file(st.path, "docs/x.bin")
    (py,) = packs_of_file(st.path, "z.bin")
    os.unlink(pack_path(st.path, px))
    flip(pack_path(st.path, py), first_record_offset(st.path, py) + 100)
    p = tresor_pw("check", st.path, "--read-data")
    assert p.returncode == 1, p.stdout
    out = p.stdout
    assert re.search(r"problem: .*pack %s.*missing" % px, out), out
    assert re.search(r"problem: .*pack %s.*fails authentication" % py, out), out
    a = affects(out)
    assert "affects volume vol: /docs/x.bin (live; snapshots 2024-03-01, 2024-03-02)" in a, out
    assert "affects volume vol: /z.bin (live; snapshot 2024-03-02)" in a, out
    p = tresor_pw("check", st.path, "--json")
    res = json.loads(p.stdout.splitlines()[-1])
    assert res["problems"] >= 1 and res["files_affected"] >= 1


def test_read_data_share_rotates_over_everything(make_store, mounts):
    st = make_store()
    # cut points are keyed per store, so the chunk count of a file varies
    # from store to store; eight distinct files are eight chunks at least
    fill_store(st, mounts, {"f%d" % i: blob(20 + i, MiB) for i in range(8)})
    total = json.loads(tresor_pw("check", st.path, "--json").stdout)["chunks"]
    assert total >= 8
    read = 0
    for run in range(4):
        p = tresor_pw("check", st.path, "--read-data=25%", "--json")
        assert p.returncode == 0
        read += json.loads(p.stdout)["chunks_read"]
    assert read >= total, "4 runs of 25%% read %d of %d chunks" % (read, total)
    assert read <= total + 4, "chunks read twice within one rotation"
    # bit rot anywhere is found within 100/N runs
    (name,) = packs_of_file(st.path, "f3")
    flip(pack_path(st.path, name), first_record_offset(st.path, name) + 64)
    # a run reads ceil(total/4) chunks from where the last one stopped, so
    # `rotation` runs read every chunk, and when total is no multiple of a
    # run the last one wraps round into the first again (10 chunks: 4 runs
    # of 3 read two of them twice)
    per_run = -(-total // 4)
    rotation = -(-total // per_run)
    found = 0
    for run in range(rotation):
        p = tresor_pw("check", st.path, "--read-data=25%")
        found += p.returncode == 1 and "/f3" in p.stdout
    twice = rotation * per_run - total
    assert 1 <= found <= (2 if twice else 1), \
        "the damaged chunk must be read once per rotation (found %d times in %d runs)" % (found, rotation)
    p = tresor_pw("check", st.path, "--read-data=0%")
    assert p.returncode == 2


def test_check_remote(make_store, mounts, make_remote):
    st = make_store()
    fill_store(st, mounts, {"a": blob(31, 2 * MiB), "b": blob(32, 2 * MiB)})
    remote = make_remote("local")
    remote_add(st, "offsite", remote)
    push(st, "offsite", remote)
    fill_store(st, mounts, {"c": blob(33, MiB)})
    p = tresor_pw("check", st.path, "--remote", "offsite", "--read-data")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 pack(s) not pushed yet: 0 problem(s)" in p.stdout, p.stdout
    push(st, "offsite", remote)
    (pa,) = packs_of_file(st.path, "a")
    (pb,) = packs_of_file(st.path, "b")
    # truncated pack: found by sizes alone
    rp = remote_pack_path(remote.url, pa)
    size = rp.stat().st_size
    os.truncate(rp, size // 2)
    p = tresor_pw("check", st.path, "--remote", "offsite")
    assert p.returncode == 1
    assert re.search(r"remote 'offsite': pack data/../%s is \d+ bytes" % pa, p.stdout), p.stdout
    assert "affects volume vol: /a (live)" in p.stdout
    # a flipped byte: found only by reading
    flip(remote_pack_path(remote.url, pb), first_record_offset(st.path, pb) + 10)
    p = tresor_pw("check", st.path, "--remote", "offsite")
    assert pb not in p.stdout
    p = tresor_pw("check", st.path, "--remote", "offsite", "--read-data")
    assert re.search(r"pack data/../%s fails verification" % pb, p.stdout), p.stdout
    # the newest delta deleted (a rollback): the chain is too short
    metas = sorted((Path(remote.url) / "meta").iterdir())
    assert len(metas) == 2
    metas[-1].unlink()
    p = tresor_pw("check", st.path, "--remote", "offsite")
    assert p.returncode == 1
    assert "metadata %s is missing" % ("meta/" + metas[-1].name) in p.stdout, p.stdout
    p = tresor_pw("check", st.path, "--remote", "nowhere")
    assert p.returncode == 1 and "no remote 'nowhere'" in p.stderr


def test_unsafe_name_is_a_problem(make_store, mounts):
    st = make_store()
    fill_store(st, mounts, {"evil": b"x" * 100})
    con = sqlite3.connect(str(st.path / "index.db"))
    con.execute("UPDATE dentry SET name = '../evil' WHERE name = 'evil'")
    con.commit()
    con.close()
    p = tresor_pw("check", st.path)
    assert p.returncode == 1
    assert "unsafe name" in p.stdout
