"""Health that can be trusted: `tresor status` per remote and per volume.

- two remotes, one broken: status is unhealthy (exit 1) even after the
  other one's push worked, the JSON and the metrics show each remote's
  failures, last error, pending packs and bytes and how far behind it is;
  the broken one alone is retried after the logged delay;
- a push started by hand (`tresor push` through the daemon) that fails is
  retried by the daemon after the delay it logged;
- the human status ends with plain lines, no piece of JSON;
- every line of the daemon's log is timed; prune names the snapshots it
  removed;
- the metrics have build_info and each volume's logical bytes.
"""

import json
import os
import re
import shutil
import time

from conftest import tresor
from daemon_helpers import Daemon, local_ts, store_run
from test_daemon import daemons  # noqa: F401  (fixture)
from test_status_metrics import parse_prometheus, value

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z tresor: ")


def remotes(st):
    return {r["name"]: r for r in st["remotes"]}


def break_remote(path):
    """A file where the remote's folder was: every push to it fails."""
    shutil.rmtree(path)
    path.write_text("not a folder\n")


def mend_remote(path):
    path.unlink()
    path.mkdir()


def box_daemon(make_store, tmp, daemons, clock):  # noqa: F811
    """A daemon started at clock with one remote, box, pushed daily at 05:00."""
    store = make_store()
    box = tmp / "box"
    box.mkdir()
    d = Daemon(tmp, store, remotes={"box": str(box)},
               schedule={"snapshot": "never", "push": "daily 05:00", "check": "never"})
    daemons.append(d)
    d.set_clock(clock)
    d.start()
    return store, box, d


def test_one_broken_remote_makes_status_unhealthy(make_store, tmp, daemons):  # noqa: F811
    store = make_store()
    box, offsite = tmp / "box", tmp / "offsite"
    box.mkdir()
    offsite.mkdir()
    d = Daemon(tmp, store, remotes={"box": str(box), "offsite": str(offsite)},
               schedule={"snapshot": "daily 02:00", "push": "daily 05:00", "check": "never"})
    daemons.append(d)
    d.set_clock(local_ts(2026, 5, 5, 4, 0))
    d.start()
    (d.mnt["vol"] / "f").write_bytes(os.urandom(300000))
    s = store_run(store, "snapshot", "create", store.path, "vol", check=True)
    assert s.stdout.strip()
    break_remote(box)
    t0 = local_ts(2026, 5, 5, 5, 0, 1)
    d.set_clock(t0)
    assert d.wait_history(1) == [("push", False)]
    # then the other remote is pushed by hand, and works
    p = store_run(store, "push", store.path, "offsite", timeout=120)
    assert p.returncode == 0, p.stderr
    assert d.history() == [("push", False), ("push", True)]

    p = d.status_proc()
    assert p.returncode == 1, "a remote whose last push failed makes status unhealthy"
    st = json.loads(p.stdout)
    assert st["healthy"] is False
    r = remotes(st)
    assert r["box"]["last_failed"] is True and r["box"]["healthy"] is False
    assert r["box"]["failures"] == 1 and r["box"]["attempts"] == 1
    assert "box" in r["box"]["last_error"]
    assert r["box"]["last_push"] is None and r["box"]["behind_seconds"] > 0
    assert r["box"]["packs_pending"] >= 1 and r["box"]["bytes_pending"] > 0
    assert r["box"]["next_retry"] >= t0 + 10 and r["box"]["last_attempt"] >= t0
    assert r["offsite"]["last_failed"] is False and r["offsite"]["healthy"] is True
    assert r["offsite"]["failures"] == 0 and r["offsite"]["last_error"] == ""
    assert r["offsite"]["packs_pending"] == 0 and r["offsite"]["last_push"] is not None
    assert any(x.startswith("remote box:") and "retries" in x for x in st["problems"])
    assert not any("offsite" in x for x in st["problems"])
    fams = parse_prometheus(d.metrics()[0])
    assert value(fams, "tresor_remote_last_push_failed", remote="box") == 1
    assert value(fams, "tresor_remote_last_push_failed", remote="offsite") == 0
    assert value(fams, "tresor_remote_healthy", remote="box") == 0
    assert value(fams, "tresor_remote_healthy", remote="offsite") == 1
    assert value(fams, "tresor_remote_push_failures_total", remote="box") == 1
    assert value(fams, "tresor_remote_bytes_pending", remote="box") == r["box"]["bytes_pending"]
    assert value(fams, "tresor_remote_packs_pending", remote="offsite") == 0
    assert value(fams, "tresor_remote_behind_seconds", remote="box") > 0

    # the human form says which remote
    text = tresor("status", d.cfg, env=d.env())
    assert text.returncode == 1
    lines = text.stdout.rstrip("\n").split("\n")
    assert lines[0] == "tresor daemon: UNHEALTHY"
    assert any(x.strip().startswith("remote box") and "UNHEALTHY" in x for x in lines)
    assert any(x.strip().startswith("remote offsite") and "UNHEALTHY" not in x and
               "last push" in x for x in lines)
    assert any(x.strip().startswith("remote box") and "never pushed" in x for x in lines)
    assert lines[-1].startswith("  problem: remote box:"), lines

    # the broken remote alone is retried after the delay, and clears
    mend_remote(box)
    d.set_clock(t0 + 11)
    assert d.wait_history(3)[2] == ("push", True)
    assert "retrying in 10s" in d.log_text()
    p = d.status_proc()
    assert p.returncode == 0, p.stdout
    r = remotes(json.loads(p.stdout))
    assert r["box"]["last_failed"] is False and r["box"]["packs_pending"] == 0
    assert r["box"]["failures"] == 1 and r["offsite"]["failures"] == 0
    assert any(x.name.startswith("meta") for x in box.iterdir())
    text = tresor("status", d.cfg, env=d.env())
    assert text.returncode == 0 and text.stdout.startswith("tresor daemon: healthy\n")
    assert "problem" not in text.stdout


def test_human_status_ends_with_plain_lines(make_store, tmp, daemons):  # noqa: F811
    store, box, d = box_daemon(make_store, tmp, daemons, local_ts(2026, 5, 5, 4, 0))
    break_remote(box)
    d.set_clock(local_ts(2026, 5, 5, 5, 0, 1))
    assert d.wait_history(1) == [("push", False)]
    text = tresor("status", d.cfg, env=d.env())
    assert text.returncode == 1
    lines = text.stdout.rstrip("\n").split("\n")
    assert lines[0] == "tresor daemon: UNHEALTHY"
    problems = [x for x in lines if x.startswith("  problem: ")]
    assert problems and lines[-len(problems):] == problems, lines
    assert any("push failed: push to box: cannot use remote" in x for x in problems)
    for x in lines:
        assert not re.search(r'[\[\]{}]|\\"|":', x), "JSON in the human status: %r" % x


def test_hand_started_failing_push_is_retried(make_store, tmp, daemons):  # noqa: F811
    t0 = local_ts(2026, 6, 1, 12, 0)
    store, box, d = box_daemon(make_store, tmp, daemons, t0)
    (d.mnt["vol"] / "f").write_bytes(os.urandom(100000))
    store_run(store, "snapshot", "create", store.path, "vol", check=True)
    break_remote(box)
    p = store_run(store, "push", store.path, "box", "--jobs", "2", timeout=120)
    assert p.returncode == 1 and "box" in p.stderr
    assert "the daemon retries it in 10 s" in p.stderr
    assert d.history() == [("push", False)]
    log = d.log_text()
    assert re.search(r"push.* failed \(attempt 1 of 4\), retrying in 10s", log), log
    # not before the delay
    time.sleep(1.5)
    assert len(d.history()) == 1
    # after it, the daemon pushes again by itself: the same request
    mend_remote(box)
    d.set_clock(t0 + 11)
    assert d.wait_history(2, timeout=20) == [("push", False), ("push", True)]
    assert "push to box failed (attempt 1 of 4), retrying in 10s" in log
    assert "push to box --jobs 2" in d.log_text().split("retrying in 10s", 1)[1]
    p = d.status_proc()
    assert p.returncode == 0, p.stdout
    r = remotes(json.loads(p.stdout))["box"]
    assert r["last_failed"] is False and r["attempts"] == 0 and r["packs_pending"] == 0
    push = [j for j in json.loads(p.stdout)["jobs"] if j["name"] == "push"][0]
    assert push["attempts"] == 0 and push["last_failed"] is False
    # and not once more
    d.set_clock(t0 + 60)
    time.sleep(1.5)
    assert len(d.history()) == 2


def test_log_is_timed_and_prune_names_removed_snapshots(make_store, tmp, daemons):  # noqa: F811
    store = make_store()
    d = Daemon(tmp, store, retention="keep-last = 1\n",
               schedule={"snapshot": "daily 02:00", "push": "never", "check": "never"})
    daemons.append(d)
    d.set_clock(local_ts(2026, 4, 1, 1, 0))
    d.start()
    (d.mnt["vol"] / "a").write_text("one\n")
    d.set_clock(local_ts(2026, 4, 1, 2, 0, 1))
    assert d.wait_history(2) == [("snapshot", True), ("prune", True)]
    assert "volume vol: prune removed no snapshot" in d.log_text()
    (d.mnt["vol"] / "b").write_text("two\n")
    d.set_clock(local_ts(2026, 4, 2, 2, 0, 1))
    assert d.wait_history(4)[2:] == [("snapshot", True), ("prune", True)]
    assert "volume vol: prune removed 1 snapshot(s): 2026-04-01" in d.log_text()
    # a child's failure relayed into the log is timed too
    p = store_run(store, "push", store.path, "nosuch", timeout=120)
    assert p.returncode == 1
    lines = [x for x in d.log_text().splitlines() if x]
    assert any("push:" in x and "nosuch" in x for x in lines)
    bad = [x for x in lines if not STAMP.match(x)]
    assert not bad, "log lines without a timestamp: %s" % bad
    fams = parse_prometheus(d.metrics()[0])
    assert value(fams, "tresor_volume_logical_bytes", volume="vol") == len("one\ntwo\n")
    assert d.stop() == 0
    bad = [x for x in d.log_text().splitlines() if x and not STAMP.match(x)]
    assert not bad, "log lines without a timestamp: %s" % bad


def test_metrics_build_info(make_store, tmp, daemons):  # noqa: F811
    store = make_store(volumes=("plans", "filestore"))
    d = Daemon(tmp, store, volumes=("plans", "filestore"),
               schedule={"snapshot": "never", "push": "never", "check": "never"})
    daemons.append(d)
    d.set_clock(local_ts(2026, 4, 1, 12))
    d.start()
    (d.mnt["plans"] / "f").write_bytes(b"x" * 12345)
    fams = parse_prometheus(d.metrics()[0])
    version = tresor("--version").stdout.split()[1]
    assert fams["tresor_build_info"]["type"] == "gauge"
    assert value(fams, "tresor_build_info", version=version) == 1
    assert value(fams, "tresor_volume_logical_bytes", volume="plans") in (0, 12345)
    assert value(fams, "tresor_volume_logical_bytes", volume="filestore") == 0
