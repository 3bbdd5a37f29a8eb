"""`tresor daemon CONFIG`: the schedule with a movable clock.

- a day of scheduled work runs in order (snapshot, prune, check, push),
  each once, and nothing runs between slots;
- a slot missed while the daemon was down is caught up once at start,
  not once per missed day, and not again after a restart;
- a failing push is retried with backoff and reported by `status` (exit
  code 1, the error) and the metrics, and clears once a retry works;
- `tresor push` while the daemon runs goes through it;
- SIGTERM stops it cleanly (checked at every teardown: exit 0, unmounted).
"""

import json
import os
import shutil
import time

import pytest

from conftest import PASSPHRASE, mounted, tresor, wait_for
from daemon_helpers import Daemon, local_ts, store_run


@pytest.fixture
def daemons():
    ds = []
    yield ds
    problems = []
    for d in ds:
        try:
            rc = d.stop()
            if rc != 0:
                problems.append("daemon exit %s\n%s" % (rc, d.log_text()))
        except AssertionError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def snapshots(store, vol="vol"):
    p = store_run(store, "snapshot", "list", store.path, vol, "--json", check=True)
    return [s["name"] for s in json.loads(p.stdout)]


def test_day_of_work_runs_in_order(make_store, tmp, daemons):
    store = make_store(volumes=("plans",))
    remote = tmp / "offsite"
    remote.mkdir()
    d = Daemon(tmp, store, volumes=("plans",), remotes={"offsite": str(remote)})
    daemons.append(d)
    d.set_clock(local_ts(2026, 3, 10, 0, 30))
    d.start()
    # first start ever: nothing to catch up
    time.sleep(1)
    assert d.history() == []
    (d.mnt["plans"] / "OBJ-00001").mkdir()
    (d.mnt["plans"] / "OBJ-00001" / "plan.pdf").write_bytes(os.urandom(300000))
    st = d.status()
    assert st["volumes"][0]["mounted"] is True
    assert st["remotes"][0]["name"] == "offsite" and st["remotes"][0]["last_push"] is None

    d.set_clock(local_ts(2026, 3, 10, 2, 0, 5))
    assert d.wait_history(2) == [("snapshot", True), ("prune", True)]
    assert snapshots(store, "plans") == ["2026-03-10"]
    d.set_clock(local_ts(2026, 3, 10, 3, 0))
    time.sleep(1.5)
    assert len(d.history()) == 2, "nothing is due between 02:00 and 04:00"
    d.set_clock(local_ts(2026, 3, 10, 4, 0, 5))
    assert d.wait_history(3)[2] == ("check", True)
    d.set_clock(local_ts(2026, 3, 10, 5, 0, 5))
    assert d.wait_history(4)[3] == ("push", True)
    st = d.status()
    assert st["healthy"] is True, st["problems"]
    assert st["remotes"][0]["last_push"] is not None
    assert st["remotes"][0]["packs_pending"] == 0
    assert any(p.name.startswith("meta") for p in remote.iterdir())
    jobs = {j["name"]: j for j in st["jobs"]}
    assert jobs["snapshot"]["last_success"] and jobs["push"]["last_success"]
    assert jobs["snapshot"]["next_run"] == local_ts(2026, 3, 11, 2, 0)
    # the rest of the day: nothing more
    d.set_clock(local_ts(2026, 3, 10, 23, 59))
    time.sleep(1.5)
    assert len(d.history()) == 4
    # the next day's slot runs again, in order
    d.set_clock(local_ts(2026, 3, 11, 5, 30))
    h = d.wait_history(8)
    assert [j for j, ok in h[4:]] == ["snapshot", "prune", "push", "check"]
    assert all(ok for _, ok in h)
    assert snapshots(store, "plans") == ["2026-03-10", "2026-03-11"]


def test_missed_run_caught_up_once(make_store, tmp, daemons):
    store = make_store()
    remote = tmp / "offsite"
    remote.mkdir()
    d = Daemon(tmp, store, remotes={"offsite": str(remote)})
    daemons.append(d)
    d.set_clock(local_ts(2026, 6, 1, 1, 0))
    d.start()
    (d.mnt["vol"] / "f").write_text("day one\n")
    assert d.stop() == 0
    # three days pass with the host down
    d.set_clock(local_ts(2026, 6, 4, 10, 0))
    d.start()
    h = d.wait_history(4)
    assert [j for j, _ in h] == ["snapshot", "prune", "push", "check"]
    assert all(ok for _, ok in h)
    assert snapshots(store) == ["2026-06-04"]
    time.sleep(1.5)
    assert len(d.history()) == 4, "caught up once, not once per missed day"
    assert d.stop() == 0
    # state persisted: a restart the same morning runs nothing again
    d.start()
    time.sleep(1.5)
    assert d.history() == []
    assert snapshots(store) == ["2026-06-04"]


def test_failing_push_is_retried_and_reported(make_store, tmp, daemons):
    store = make_store()
    remote = tmp / "offsite"
    remote.mkdir()
    d = Daemon(tmp, store, remotes={"offsite": str(remote)},
               schedule={"snapshot": "daily 02:00", "push": "daily 05:00",
                         "check": "never"})
    daemons.append(d)
    d.set_clock(local_ts(2026, 5, 5, 4, 0))
    d.start()
    (d.mnt["vol"] / "f").write_bytes(os.urandom(100000))
    # the remote goes away (a file where its folder was)
    shutil.rmtree(remote)
    remote.write_text("not a folder\n")
    t0 = local_ts(2026, 5, 5, 5, 0, 1)
    d.set_clock(t0)
    assert d.wait_history(1) == [("push", False)]
    p = d.status_proc()
    assert p.returncode == 1, "unhealthy status must exit 1"
    st = json.loads(p.stdout)
    assert st["healthy"] is False
    push = [j for j in st["jobs"] if j["name"] == "push"][0]
    assert push["last_failed"] is True and push["failures"] == 1 and push["attempts"] == 1
    assert "offsite" in push["last_error"]
    assert any("push failed" in pr for pr in st["problems"])
    assert push["next_run"] >= t0 + 10
    text = tresor("status", d.cfg, env=d.env())
    assert text.returncode == 1 and "LAST RUN FAILED" in text.stdout
    m, _ = d.metrics()
    assert 'tresor_job_failures_total{job="push"} 1' in m
    assert 'tresor_job_last_run_failed{job="push"} 1' in m
    # not retried before the backoff ends
    time.sleep(1.5)
    assert len(d.history()) == 1
    # second attempt after 10 s (fails again), third after 20 s more
    d.set_clock(t0 + 12)
    assert d.wait_history(2)[1] == ("push", False)
    d.set_clock(t0 + 14)
    time.sleep(1.5)
    assert len(d.history()) == 2, "backoff doubles"
    remote.unlink()
    remote.mkdir()
    d.set_clock(t0 + 12 + 21)
    assert d.wait_history(3)[2] == ("push", True)
    st = d.status()
    assert st["healthy"] is True, st["problems"]
    push = [j for j in st["jobs"] if j["name"] == "push"][0]
    assert push["last_failed"] is False and push["failures"] == 2
    m, _ = d.metrics()
    assert 'tresor_job_last_run_failed{job="push"} 0' in m
    assert 'tresor_job_failures_total{job="push"} 2' in m


def test_push_goes_through_the_daemon(make_store, tmp, daemons):
    store = make_store()
    remote = tmp / "offsite"
    remote.mkdir()
    d = Daemon(tmp, store, remotes={"offsite": str(remote)})
    daemons.append(d)
    d.set_clock(local_ts(2026, 7, 1, 12, 0))
    d.start()
    (d.mnt["vol"] / "f").write_bytes(os.urandom(50000))
    p = store_run(store, "push", store.path, "offsite", "--json", timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["remote"] == "offsite" and out["packs"] >= 1
    assert d.history() == [("push", True)], "the daemon ran the push"
    st = d.status()
    assert st["remotes"][0]["packs_pending"] == 0
    # only the remote asked for: a second remote of the store stays behind
    other = tmp / "other"
    other.mkdir()
    store_run(store, "remote", "add", store.path, "other", str(other), check=True)
    p = store_run(store, "push", store.path, "other", timeout=120)
    assert p.returncode == 0 and "through the running tresor daemon" in p.stdout, p.stderr
    assert any(x.name.startswith("meta") for x in other.iterdir())
    assert d.history() == [("push", True), ("push", True)]
    p = store_run(store, "push", store.path, "nosuch", timeout=120)
    assert p.returncode == 1
    assert "through the running daemon failed" in p.stderr and "nosuch" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    # snapshot create still goes through the mount daemon while it runs
    s = store_run(store, "snapshot", "create", store.path, "vol", check=True)
    assert s.stdout.strip() in snapshots(store)


def test_mount_daemon_restarted_and_sigterm_unmounts(make_store, tmp, daemons):
    store = make_store()
    d = Daemon(tmp, store, schedule={"snapshot": "never", "push": "never", "check": "never"})
    daemons.append(d)
    d.set_clock(local_ts(2026, 7, 1, 12, 0))
    d.start()
    with open(d.mnt["vol"] / "kept", "w") as f:
        f.write("survives\n")
        f.flush()
        os.fsync(f.fileno())  # a kill -9 keeps what was synced
    pid = d.status()["volumes"][0]["pid"]
    os.kill(pid, 9)
    ok = wait_for(lambda: d.status()["volumes"][0]["pid"] not in (0, pid) and
                  d.status()["volumes"][0]["mounted"], 30, 0.2)
    assert ok, d.log_text()
    assert d.status()["volumes"][0]["restarts"] == 1
    assert (d.mnt["vol"] / "kept").read_text() == "survives\n"
    assert d.stop() == 0
    assert not mounted(d.mnt["vol"])
    assert "unmounted" in d.log_text()
    # the daemon killed outright: its mount process unmounts by itself
    d.start()
    mpid = d.status()["volumes"][0]["pid"]
    os.kill(d.proc.pid, 9)
    d.proc.wait()
    d.logf.close()
    assert wait_for(lambda: not mounted(d.mnt["vol"]), 30, 0.1), "mount left behind"
    assert wait_for(lambda: not os.path.exists("/proc/%d" % mpid) or
                    open("/proc/%d/stat" % mpid).read().split()[2] == "Z", 30, 0.1)
    # and a new daemon starts cleanly
    d.start()
    assert (d.mnt["vol"] / "kept").read_text() == "survives\n"


def test_sigterm_finishes_the_running_job(make_store, tmp, daemons):
    """SIGTERM while a snapshot job runs: the job completes, then the
    daemon unmounts and exits 0.  The job is held in place by freezing
    the volume's mount process over its control socket (as a push does)."""
    import hashlib
    import socket
    store = make_store()
    d = Daemon(tmp, store, schedule={"snapshot": "daily 02:00", "push": "never",
                                     "check": "never"})
    daemons.append(d)
    d.set_clock(local_ts(2026, 8, 1, 1, 0))
    d.start()
    (d.mnt["vol"] / "f").write_text("in the snapshot\n")
    real = os.path.realpath(str(store.path))
    addr = "\0tresor-%s-%d" % (hashlib.sha256(real.encode()).hexdigest()[:32], 1)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(addr)
    s.sendall(b"freeze\n")
    assert s.recv(100).startswith(b"ok")
    try:
        d.set_clock(local_ts(2026, 8, 1, 2, 0, 1))
        assert wait_for(lambda: [j for j in d.status()["jobs"] if j["name"] == "snapshot"][0]
                        ["running"], 30, 0.1), d.log_text()
        d.proc.send_signal(15)
        time.sleep(1.5)
        assert d.proc.poll() is None, "the daemon must wait for the running job"
    finally:
        s.sendall(b"thaw\n")
        s.close()
    assert d.proc.wait(timeout=60) == 0
    assert not mounted(d.mnt["vol"])
    assert snapshots(store) == ["2026-08-01"]
    state = (store.path / "daemon.state").read_text()
    assert "snapshot.runs=1\n" in state and "snapshot.last_failed=0\n" in state
    assert "prune.runs=0\n" in state, "nothing new starts after SIGTERM"


def test_dst_days_run_once(make_store, tmp, daemons):
    """Europe/Berlin, snapshot = daily 02:30: on 2026-03-29 02:30 does not
    exist (02:00 -> 03:00), the run is at 03:30 CEST, once; on 2026-10-25
    02:30 happens twice (03:00 -> 02:00), the run is at the first, once."""
    import datetime
    from zoneinfo import ZoneInfo
    store = make_store()
    d = Daemon(tmp, store, schedule={"snapshot": "daily 02:30", "push": "never",
                                     "check": "never"})
    daemons.append(d)
    berlin = ZoneInfo("Europe/Berlin")
    d.set_clock(local_ts(2026, 3, 29, 1, 0))
    d.start()

    def at(h, m, fold=0, day=(2026, 3, 29)):
        return int(datetime.datetime(*day, h, m, tzinfo=berlin, fold=fold).timestamp())

    spring_0300 = int(datetime.datetime(2026, 3, 29, 1, 0, tzinfo=datetime.timezone.utc)
                      .timestamp())  # 03:00 CEST, the first instant after the gap
    d.set_clock(spring_0300 + 60)
    time.sleep(1.5)
    assert d.history() == [], "02:30 does not exist; its slot is 03:30"
    d.set_clock(at(3, 30) + 5)
    assert d.wait_history(2) == [("snapshot", True), ("prune", True)]
    d.set_clock(at(23, 0))
    time.sleep(1.5)
    assert len(d.history()) == 2
    # fall back: 02:30 CEST (fold=0) runs, 02:30 CET (fold=1) does not
    fall = (2026, 10, 25)
    d.set_clock(at(2, 30, 0, fall) + 5)
    assert d.wait_history(4)[2] == ("snapshot", True)
    d.set_clock(at(2, 30, 1, fall) + 5)
    assert at(2, 30, 1, fall) - at(2, 30, 0, fall) == 3600
    time.sleep(1.5)
    assert len(d.history()) == 4, "the repeated 02:30 runs nothing"
    assert snapshots(store) == ["2026-03-29", "2026-10-25"]
