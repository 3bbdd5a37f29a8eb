"""The daemon's pushes and checks use the options push and check have
(follow-up to issues 4, 5 and 6).

- `push-jobs` / `push-limit-upload` in [schedule] reach every push the
  daemon runs: scheduled, and asked for by `tresor push` without options;
- `tresor push STORE REMOTE --jobs N --limit-upload R` forwarded to a
  running daemon keeps its options (they override the config), and a bad
  value is reported in one line, as push itself would;
- `check-read-data = N%` runs `check --read-data=N%`: a share of the
  chunks is read and the check cursor moves.

The number of upload jobs is what push reports (`jobs` in --json: the
jobs it ran, at most one per pack); the upload limit is seen from its
effect, a lower bound on the push's duration over S3 (s3rver), the one
thing a limit guarantees on a loaded machine.  Small packs
(TRESOR_TEST_PACK_TARGET) give several packs from a few MiB.
"""

import json
import os
import sqlite3

from conftest import tresor
from daemon_helpers import Daemon, local_ts, store_run
from recovery_util import MiB
from test_daemon import daemons  # noqa: F401
from test_push_recover import make_remote, remote_add, s3server  # noqa: F401

SMALL_PACKS = {"TRESOR_TEST_PACK_TARGET": str(1 * MiB)}


class EnvDaemon(Daemon):
    """A Daemon whose processes (and their children) get extra variables."""

    def __init__(self, *args, extra_env=None, **kw):
        super().__init__(*args, **kw)
        self.extra_env = dict(extra_env or {})

    def env(self):
        e = super().env()
        e.update(self.extra_env)
        return e


def start_daemon(daemons, tmp, store, clock, schedule, extra_env, **kw):
    d = EnvDaemon(tmp, store, schedule=schedule, extra_env=extra_env, **kw)
    daemons.append(d)
    d.set_clock(clock)
    d.start()
    return d


def write_packs(d, tag, n=4):
    """n files of 1 MiB through the daemon's mount: n small packs."""
    for i in range(n):
        (d.mnt["vol"] / ("%s-%d.bin" % (tag, i))).write_bytes(os.urandom(1 * MiB))


def forward_push(d, store, remote, *extra):
    p = store_run(store, "push", store.path, remote, "--json", *extra, env=d.env(),
                  timeout=300)
    return p


def test_config_push_options_and_forwarded_ones(make_store, tmp, daemons):
    store = make_store()
    remote = tmp / "offsite"
    remote.mkdir()
    d = start_daemon(daemons, tmp, store, local_ts(2026, 7, 1, 4, 0),
                     {"snapshot": "never", "push": "daily 05:00", "check": "never",
                      "push-jobs": "2", "push-limit-upload": "64M"},
                     SMALL_PACKS, remotes={"offsite": str(remote)})
    write_packs(d, "a")
    # the scheduled push runs with the config's options
    d.set_clock(local_ts(2026, 7, 1, 5, 0, 5))
    assert d.wait_history(1) == [("push", True)]
    assert "push to offsite --jobs 2 --limit-upload 64M" in d.log_text(), d.log_text()
    # asked for without options: the config's again
    write_packs(d, "b")
    p = forward_push(d, store, "offsite")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["packs"] >= 3 and res["jobs"] == 2, res
    # asked for with options: those, not the config's
    write_packs(d, "c")
    p = forward_push(d, store, "offsite", "--jobs", "3", "--limit-upload", "48M")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["packs"] >= 3 and res["jobs"] == 3, res
    assert "push to offsite --jobs 3 --limit-upload 48M" in d.log_text()
    assert d.history() == [("push", True)] * 3
    # a bad value: one line naming the option, from push itself
    p = forward_push(d, store, "offsite", "--jobs", "0")
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "--jobs" in lines[0] and "daemon" in lines[0], p.stderr
    p = forward_push(d, store, "offsite", "--limit-upload", "10 M")
    assert p.returncode == 2 and "--limit-upload" in p.stderr, p.stderr
    p = forward_push(d, store, "offsite", "--grace", "0")
    assert p.returncode == 0, p.stderr


def test_forwarded_limit_upload_holds(make_store, tmp, daemons, make_remote):
    """600 KiB/s asked for through the daemon (whose config says 64M): 3 MiB
    of packs cannot go in less than about 5 s."""
    store = make_store()
    remote = make_remote("s3")
    remote_add(store, "offsite", remote)
    env = dict(SMALL_PACKS)
    env.update({k: remote.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "HOME")})
    d = start_daemon(daemons, tmp, store, local_ts(2026, 7, 1, 12, 0),
                     {"snapshot": "never", "push": "never", "check": "never",
                      "push-limit-upload": "64M"}, env)
    write_packs(d, "a", 3)
    p = forward_push(d, store, "offsite", "--limit-upload", "600k", "--jobs", "2")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["pack_bytes"] >= 3 * MiB, res
    floor = res["pack_bytes"] / (600 * 1024)
    assert res["seconds"] >= 0.75 * floor, \
        "pushed %d bytes in %.2f s: faster than the 600 KiB/s asked for" % (
            res["pack_bytes"], res["seconds"])
    assert res["jobs"] == 2, res


def check_cursor(store):
    con = sqlite3.connect("file:%s?mode=ro" % (store.path / "index.db"), uri=True)
    try:
        cur = con.execute("SELECT value FROM meta WHERE key = 'check_cursor'").fetchone()
        top = con.execute("SELECT MAX(id) FROM chunk").fetchone()[0]
        return (cur[0] if cur else None), top
    finally:
        con.close()


def test_check_read_data_share_runs(make_store, tmp, daemons):
    store = make_store()
    d = start_daemon(daemons, tmp, store, local_ts(2026, 7, 1, 3, 0),
                     {"snapshot": "never", "push": "never", "check": "daily 04:00",
                      "check-read-data": "50%"}, SMALL_PACKS)
    write_packs(d, "a")
    s = store_run(store, "snapshot", "create", store.path, "vol", check=True)
    assert s.returncode == 0
    d.set_clock(local_ts(2026, 7, 1, 4, 0, 5))
    assert d.wait_history(1) == [("check", True)], d.log_text()
    cursor, top = check_cursor(store)
    assert cursor is not None and 0 < cursor < top, \
        "check --read-data=50%% left the cursor at %s of %s" % (cursor, top)
    # the next day's share continues after it
    d.set_clock(local_ts(2026, 7, 2, 4, 0, 5))
    assert d.wait_history(2) == [("check", True)] * 2
    assert check_cursor(store)[0] != cursor


def test_push_keys_in_config_checked(make_store, tmp):
    store = make_store()
    for key, val, words in (("push-jobs", "0", "from 1 to 32"), ("push-jobs", "99", "from 1 to 32"),
                            ("push-limit-upload", "10Q", "not a rate"),
                            ("push-limit-upload", "0", "not a rate")):
        d = Daemon(tmp, store, schedule={key: val})
        p = tresor("daemon", d.cfg, timeout=60)
        assert p.returncode == 2, (key, val, p.stderr)
        assert ("%s:" % d.cfg) in p.stderr and words in p.stderr, p.stderr
        assert "nothing started" in p.stderr
    d = Daemon(tmp, store, schedule={"push-jobs": "32", "push-limit-upload": "2.5MB/s"})
    p = tresor("status", d.cfg, timeout=60)
    assert p.returncode == 3 and "no tresor daemon runs" in p.stderr, p.stderr


def test_config_image_policy_reaches_the_daemons_pushes(make_store, tmp, daemons):
    """`push-image-every` in [schedule] is the image policy of every push the
    daemon runs (FORMAT.md §15.5): 2 here, so the scheduled first push
    (full) brings image 1, the next none, the third image 3; `tresor push
    --image-every 1` through the daemon overrides it; and 0 turns images
    off."""
    store = make_store()
    remote = tmp / "offsite"
    remote.mkdir()
    d = start_daemon(daemons, tmp, store, local_ts(2026, 7, 1, 4, 0),
                     {"snapshot": "never", "push": "daily 05:00", "check": "never",
                      "push-image-every": "2"},
                     SMALL_PACKS, remotes={"offsite": str(remote)})
    write_packs(d, "a", 1)
    d.set_clock(local_ts(2026, 7, 1, 5, 0, 5))
    assert d.wait_history(1) == [("push", True)]
    assert "push to offsite --image-every 2" in d.log_text(), d.log_text()
    images = lambda: sorted(int(p.name.split("-")[0], 16)
                            for p in (remote / "image").iterdir())
    assert images() == [1], images()
    got = []
    for tag in ("b", "c"):
        write_packs(d, tag, 1)
        p = forward_push(d, store, "offsite")
        assert p.returncode == 0, p.stderr
        got.append(json.loads(p.stdout)["image"])
    assert got == [0, 3], got
    write_packs(d, "d", 1)
    p = forward_push(d, store, "offsite", "--image-every", "1")
    assert p.returncode == 0 and json.loads(p.stdout)["image"] == 4, p.stdout + p.stderr
    assert "push to offsite --image-every 1" in d.log_text()
    assert images() == [1, 3, 4], images()


def test_config_image_policy_never(make_store, tmp, daemons):
    store = make_store()
    remote = tmp / "offsite"
    remote.mkdir()
    d = start_daemon(daemons, tmp, store, local_ts(2026, 7, 1, 4, 0),
                     {"snapshot": "never", "push": "daily 05:00", "check": "never",
                      "push-image-every": "0"},
                     SMALL_PACKS, remotes={"offsite": str(remote)})
    write_packs(d, "a", 1)
    d.set_clock(local_ts(2026, 7, 1, 5, 0, 5))
    assert d.wait_history(1) == [("push", True)]
    assert "push to offsite --image-every 0" in d.log_text(), d.log_text()
    assert not (remote / "image").exists() or not list((remote / "image").iterdir())
    for val in ("-1", "often"):
        bad = Daemon(tmp, store, schedule={"push-image-every": val})
        p = tresor("daemon", bad.cfg, timeout=60)
        assert p.returncode == 2 and "push-image-every" in p.stderr, p.stderr
