"""Parallel pushes, the upload bandwidth limit, the progress line, and a
push that never blocks the mount (issue 4).

S3 traffic goes through tests/servers/faultproxy.py in front of s3rver,
which records when each request started and ended; a small stall on every
pack upload makes overlap (or its absence) visible.  Nothing asserts an
absolute time: only orderings, overlaps, and lower bounds that a rate
limit guarantees.
"""

import json
import os
import threading
import time
import uuid

import pytest

from test_push_recover import (MiB, Remote, compare, make_remote, recover,  # noqa: F401
                               remote_add, run, scan, sshserver)
from remote_proxy import s3_remote, s3proxy, s3server  # noqa: F401
from conftest import Store, base_env


def many_packs(store, mounts, n, size=3 * MiB):
    """n packs: each mount session's writes end in a pack of their own."""
    for i in range(n):
        m = mounts.mount(store, "vol")
        (m.path / ("f%02d.bin" % i)).write_bytes(os.urandom(size))
        m.close()


def push_json(store, remote, *extra, env=None, timeout=600):
    p = run("push", store.path, "off", "--json", "--passphrase-file", store.passfile,
            *extra, env=env or remote.env, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), p


def overlap(recs):
    """Most requests in flight at once."""
    ev = sorted([(r.time, 1) for r in recs] + [(r.end, -1) for r in recs])
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def data_puts(log):
    return [r for r in log if r.method == "PUT" and "/data/" in r.path]


@pytest.mark.parametrize("jobs", [1, 4])
def test_jobs_run_in_parallel_and_delta_last(jobs, tmp, store, mounts, s3proxy):
    many_packs(store, mounts, 6)
    remote = s3_remote(tmp, s3proxy, uuid.uuid4().hex[:10])
    remote_add(store, "off", remote)
    s3proxy.clear()
    s3proxy.add("stall", method="PUT", path="/data/", count=None, seconds=0.4)
    try:
        res, _ = push_json(store, remote, "--jobs", str(jobs))
    finally:
        s3proxy.clear_faults()
    assert res["packs"] >= 6 and res["jobs"] == jobs, res
    log = s3proxy.log()
    puts = data_puts(log)
    assert len(puts) == res["packs"], (len(puts), res)
    if jobs == 1:
        assert overlap(puts) == 1
    else:
        assert overlap(puts) >= 2, "no two packs were ever sent at once"
        assert overlap(puts) <= jobs
    metas = [r for r in log if r.method == "PUT" and "/meta/" in r.path]
    assert len(metas) == 1
    assert metas[0].time >= max(r.end for r in puts), \
        "the delta was sent before all of its packs were there"
    new = Store(tmp / "recovered", store.passfile)
    recover(remote, new.path, store.passfile)


def test_parallel_sftp(tmp, store, mounts, make_remote):
    """Each job has its own SSH connection; the result recovers whole."""
    many_packs(store, mounts, 5, size=2 * MiB)
    m = mounts.mount(store, "vol")
    want = scan(m.path)
    m.close()
    remote = make_remote("sftp")
    remote_add(store, "off", remote)
    res, _ = push_json(store, remote, "--jobs", "3")
    assert res["packs"] >= 5 and res["jobs"] == 3, res
    new = Store(tmp / "recovered", store.passfile)
    recover(remote, new.path, store.passfile)
    m = mounts.mount(new, "vol", mnt=tmp / "mnt-rec")
    compare(want, scan(m.path), "the tree pushed with 3 SFTP jobs")


def test_limit_upload_is_total(tmp, store, mounts, s3proxy):
    """--limit-upload bounds the whole push, not each job: 12 MiB at
    4 MiB/s with 4 jobs cannot take less than about 3 s."""
    many_packs(store, mounts, 4)
    remote = s3_remote(tmp, s3proxy, uuid.uuid4().hex[:10])
    remote_add(store, "off", remote)
    t0 = time.monotonic()
    res, _ = push_json(store, remote, "--jobs", "4", "--limit-upload", "4M")
    took = time.monotonic() - t0
    assert res["pack_bytes"] >= 12 * MiB, res
    floor = res["pack_bytes"] / (4 * MiB)
    assert took >= 0.75 * floor, "pushed %d bytes in %.2f s: faster than 4 MiB/s" % (
        res["pack_bytes"], took)


@pytest.mark.parametrize("bad", ["0", "-1", "10Q", "x"])
def test_bad_push_options(bad, store, tmp):
    for opt in ("--jobs", "--limit-upload"):
        p = run("push", store.path, "off", opt, bad, "--passphrase-file", store.passfile)
        assert p.returncode == 2 and opt in p.stderr, (opt, bad, p.stderr)


def test_progress_only_when_asked(tmp, store, mounts):
    many_packs(store, mounts, 2)
    remote = make_local(tmp)
    remote_add(store, "off", remote)
    res, p = push_json(store, remote)
    assert p.stderr == "", "progress written to a non-terminal: %r" % p.stderr
    many_packs(store, mounts, 2)
    env = dict(remote.env, TRESOR_PROGRESS="1")
    res, p = push_json(store, remote, env=env)
    assert "push off: " in p.stderr and "MiB" in p.stderr, p.stderr
    # (text mode turned the carriage returns into newlines)
    assert p.stderr.endswith("\n\x1b[K"), "progress line not cleared: %r" % p.stderr[-40:]


def make_local(tmp):
    d = tmp / ("remote-%s" % uuid.uuid4().hex[:6])
    d.mkdir()
    return Remote("local", str(d), [], base_env(), [])


class Writer(threading.Thread):
    """Small appends + fsync in a mounted volume; keeps the slowest."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.ops = 0
        self.worst = 0.0
        self.error = None

    def run(self):
        try:
            with open(self.path, "ab") as f:
                while not self.stop.is_set():
                    t = time.monotonic()
                    f.write(os.urandom(4096))
                    f.flush()
                    os.fsync(f.fileno())
                    self.worst = max(self.worst, time.monotonic() - t)
                    self.ops += 1
                    time.sleep(0.01)
        except Exception as e:  # reported by the test
            self.error = e


def test_push_never_blocks_the_mount(tmp, store, mounts, s3proxy):
    """A long push (64 MiB at 8 MiB/s) of a mounted volume: writes to the
    mount go on during the uploads; the daemons are frozen only for the
    read view (freeze_ms in the summary, printed for the report)."""
    m = mounts.mount(store, "vol")
    for i in range(2):
        (m.path / ("big%d.bin" % i)).write_bytes(os.urandom(32 * MiB))
    remote = s3_remote(tmp, s3proxy, uuid.uuid4().hex[:10])
    remote_add(store, "off", remote)
    w = Writer(m.path / "log.bin")
    w.start()
    time.sleep(0.3)
    ops_before = w.ops
    t0 = time.monotonic()
    res, _ = push_json(store, remote, "--limit-upload", "8M")
    took = time.monotonic() - t0
    ops_during = w.ops - ops_before
    w.stop.set()
    w.join(30)
    assert w.error is None, w.error
    assert res["pack_bytes"] >= 64 * MiB, res
    print("\npush of %.0f MiB took %.2f s; daemon frozen %.1f ms; writer: %d fsynced "
          "writes during the push, slowest %.1f ms" % (
              res["pack_bytes"] / MiB, took, res["freeze_ms"], ops_during, w.worst * 1000))
    assert ops_during >= 20, "the mount hardly moved during the push (%d ops)" % ops_during
    assert w.worst < took / 2, "a write waited %.2f s of a %.2f s push" % (w.worst, took)
    assert 0 < res["freeze_ms"] < took * 1000 / 2, res
    # what the push took is consistent: recover it and find the big files whole
    want = {("big%d.bin" % i): (m.path / ("big%d.bin" % i)).read_bytes() for i in range(2)}
    m.close()
    new = Store(tmp / "recovered", store.passfile)
    recover(remote, new.path, store.passfile)
    r = mounts.mount(new, "vol", mnt=tmp / "mnt-rec")
    for k, v in want.items():
        assert (r.path / k).read_bytes() == v, k


def test_one_push_per_remote_at_a_time(tmp, store, mounts):
    """A second push to the same remote while one runs is refused (two
    would race for the same delta slot); another remote is not held up."""
    import fcntl
    many_packs(store, mounts, 1)
    a, b = make_local(tmp), make_local(tmp)
    remote_add(store, "a", a)
    remote_add(store, "b", b)
    import sqlite3
    db = sqlite3.connect(str(store.path / "index.db"))
    ids = dict(db.execute("SELECT name, id FROM remote").fetchall())
    db.close()
    (store.path / "locks").mkdir(exist_ok=True)
    with open(store.path / "locks" / ("push-%d" % ids["a"]), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        p = run("push", store.path, "a", "--passphrase-file", store.passfile)
        assert p.returncode == 1 and "another push to remote 'a' is running" in p.stderr, \
            p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert not os.listdir(a.url), "the refused push wrote to the remote"
        p = run("push", store.path, "b", "--passphrase-file", store.passfile)
        assert p.returncode == 0, p.stderr
    p = run("push", store.path, "a", "--passphrase-file", store.passfile)
    assert p.returncode == 0, p.stderr
