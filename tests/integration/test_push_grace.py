"""Delayed remote deletion (issue 4): packs that prune/GC freed locally are
deleted on the remote only after the delta that stops naming them is
published and the remote's grace period (default 7 days) has passed, so
the remote restores at every moment.

Days going by are simulated with TRESOR_TEST_CLOCK_OFFSET (seconds added
to the clock push schedules with); `push --grace` overrides the remote's
grace for one run.  Fixtures and helpers come from test_push_recover.py
(imported by name, not copied).
"""

import json
import os
import sqlite3
import time

import pytest

from conftest import Store, base_env, tresor
from test_push_recover import (MiB, compare, make_remote, push, read_data_check,  # noqa: F401
                               recover, remote_add, remote_status, run, s3server,
                               scan, snapshot)

DAY = 86400


def pack_keys(remote):
    return {k for k in remote.objects() if k.startswith("data/")}


def push_at(store, name, remote, offset_s=0, *extra):
    env = dict(remote.env)
    if offset_s:
        env["TRESOR_TEST_CLOCK_OFFSET"] = str(offset_s)
    p = run("push", store.path, name, "--json", "--passphrase-file", store.passfile,
            *extra, env=env)
    assert p.returncode == 0, "push failed (exit %d): %s" % (p.returncode, p.stderr)
    return json.loads(p.stdout)


def prune_to_last(store, vol="vol"):
    p = store.run("prune", store.path, vol, "--keep-last", "1", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def freed_store(store, mounts, remote, grace=None):
    """A store pushed twice, a 40 MiB file deleted in between, then pruned
    (the GC frees its packs): returns (pack keys on the remote before the
    prune, the tree as it is now)."""
    extra = ["--grace", grace] if grace else []
    run("remote", "add", store.path, "off", remote.url, *remote.opts, *extra,
        env=remote.env, check=True)
    mnt = mounts.mount(store, "vol")
    (mnt.path / "old.bin").write_bytes(os.urandom(40 * MiB))   # fills a pack or two
    (mnt.path / "keep.txt").write_bytes(b"kept\n" * 1000)
    push(store, "off", remote)
    os.unlink(mnt.path / "old.bin")
    (mnt.path / "new.bin").write_bytes(os.urandom(3 * MiB))
    snapshot(store, "vol", "2024-03-02T02:00:00")
    push(store, "off", remote)
    want = scan(mnt.path)
    mnt.close()
    before = pack_keys(remote)
    pr = prune_to_last(store)
    assert pr["packs_deleted"] + pr["packs_rewritten"] >= 1, pr
    return before, want


def local_pack_keys(store):
    out = set()
    for dirpath, _, files in os.walk(store.path / "packs"):
        for f in files:
            if len(f) == 32:
                out.add("data/%s/%s" % (f[:2], f))
    return out


def recovers_to(tmp, mounts, remote, passfile, want, tag):
    new = Store(tmp / ("recovered-" + tag), passfile)
    recover(remote, new.path, passfile)
    m = mounts.mount(new, "vol", mnt=tmp / ("mnt-" + tag))
    try:
        compare(want, scan(m.path), "the tree recovered (%s)" % tag)
    finally:
        m.close()
    read_data_check(new)


def test_grace_delays_remote_deletion(tmp, store, mounts, make_remote):
    remote = make_remote("local")
    before, want = freed_store(store, mounts, remote, grace="2d")
    freed = before - local_pack_keys(store)
    assert freed, "the prune freed no pack: the test proves nothing"

    t_push = time.time()
    res = push_at(store, "off", remote)
    assert res["deleted"] == 0 and res["awaiting_deletion"] == len(freed), res
    assert freed <= pack_keys(remote), "freed packs deleted at once"
    st = remote_status(store)["off"]
    assert st["grace_s"] == 2 * DAY, st
    waiting = {d["key"]: d["due_ns"] / 1e9 for d in st["awaiting_deletion"]}
    assert set(waiting) == freed, (waiting, freed)
    for k, due in waiting.items():
        assert t_push + 2 * DAY - 5 <= due <= time.time() + 2 * DAY + 5, (k, due, t_push)
    text = run("remote", "status", store.path, check=True).stdout
    assert "%d pack(s) awaiting deletion" % len(freed) in text, text
    # the remote as it is now restores the current state
    recovers_to(tmp, mounts, remote, store.passfile, want, "in-grace")

    # a day later: still there
    res = push_at(store, "off", remote, DAY)
    assert res["deleted"] == 0 and res["awaiting_deletion"] == len(freed), res
    assert freed <= pack_keys(remote)

    # past the grace: deleted, and the remote still restores byte for byte
    res = push_at(store, "off", remote, 2 * DAY + 60)
    assert res["deleted"] == len(freed) and res["awaiting_deletion"] == 0, res
    left = pack_keys(remote)
    assert not (freed & left), "freed packs still on the remote: %s" % (freed & left)
    assert local_pack_keys(store) <= left, "a pack in use was deleted remotely"
    assert remote_status(store)["off"]["awaiting_deletion"] == []
    recovers_to(tmp, mounts, remote, store.passfile, want, "after-grace")
    # the local trash forgot them too
    db = sqlite3.connect(str(store.path / "index.db"))
    try:
        n = db.execute("SELECT COUNT(*) FROM pack_trash").fetchone()[0]
    finally:
        db.close()
    assert n == 0, "pack_trash keeps %d rows of packs deleted everywhere" % n


def test_default_grace_is_seven_days(tmp, store, mounts, make_remote):
    """No --grace: 7 days; six days later nothing is deleted, eight days
    later everything freed is; `push --grace 0` overrides for one run."""
    remote = make_remote("local")
    before, want = freed_store(store, mounts, remote)
    freed = before - local_pack_keys(store)
    assert freed
    assert remote_status(store)["off"]["grace_s"] == 7 * DAY
    assert push_at(store, "off", remote)["awaiting_deletion"] == len(freed)
    assert push_at(store, "off", remote, 6 * DAY)["deleted"] == 0
    assert freed <= pack_keys(remote)
    res = push_at(store, "off", remote, 0, "--grace", "0")
    assert res["deleted"] == len(freed), res
    assert not (freed & pack_keys(remote))
    recovers_to(tmp, mounts, remote, store.passfile, want, "grace0")


def test_grace_zero_deletes_only_after_the_delta(tmp, store, mounts, make_remote):
    """Even with no grace, a freed pack goes only in the push that first
    publishes the delta not naming it, after that delta: the same run."""
    remote = make_remote("local")
    before, want = freed_store(store, mounts, remote, grace="0")
    freed = before - local_pack_keys(store)
    metas_before = {k for k in remote.objects() if k.startswith("meta/")}
    res = push_at(store, "off", remote)
    assert res["deleted"] == len(freed), res
    metas = {k for k in remote.objects() if k.startswith("meta/")}
    assert len(metas - metas_before) == 1, "no delta published with the deletion"
    recovers_to(tmp, mounts, remote, store.passfile, want, "g0")


@pytest.mark.parametrize("bad", ["7x", "-1d", "d", "1.5d"])
def test_bad_grace_refused(bad, tmp, store, make_remote):
    remote = make_remote("local")
    p = run("remote", "add", store.path, "off", remote.url, "--grace", bad)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "--grace" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "off" not in remote_status(store)


def test_store_without_new_columns_is_upgraded(tmp, store, mounts, make_remote):
    """A store whose replication tables predate the grace and Object Lock
    columns (the first release) gets them on first use, with defaults."""
    remote = make_remote("local")
    remote_add(store, "off", remote)
    db = sqlite3.connect(str(store.path / "index.db"))
    try:
        db.executescript("""
            DROP TABLE IF EXISTS remote_gone;
            CREATE TABLE r_old(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
              url TEXT NOT NULL, endpoint TEXT, region TEXT, path_style INTEGER NOT NULL DEFAULT 0,
              ca_file TEXT, credentials_file TEXT, ssh_key TEXT, known_hosts TEXT, netrc_file TEXT,
              last_seq INTEGER NOT NULL DEFAULT 0, next_meta INTEGER NOT NULL DEFAULT 1,
              last_push INTEGER NOT NULL DEFAULT 0);
            INSERT INTO r_old SELECT id, name, url, endpoint, region, path_style, ca_file,
              credentials_file, ssh_key, known_hosts, netrc_file, last_seq, next_meta,
              last_push FROM remote;
            DROP TABLE remote;
            ALTER TABLE r_old RENAME TO remote;
            DROP TABLE remote_pack;
            CREATE TABLE remote_pack(remote INTEGER NOT NULL, name BLOB NOT NULL,
              PRIMARY KEY(remote, name)) WITHOUT ROWID;
        """)
        db.commit()
    finally:
        db.close()
    st = remote_status(store)["off"]
    assert st["grace_s"] == 7 * DAY and st["object_lock_days"] == 0, st
    mnt = mounts.mount(store, "vol")
    (mnt.path / "f").write_bytes(b"x" * 100000)
    mnt.close()
    res = push(store, "off", remote)
    assert res["packs"] >= 1, res
    db = sqlite3.connect(str(store.path / "index.db"))
    try:
        cols = [r[1] for r in db.execute("PRAGMA table_info(remote_pack)")]
    finally:
        db.close()
    assert "lock_until" in cols, cols
