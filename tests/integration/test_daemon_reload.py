"""`tresor daemon` takes a changed config without a restart (issue 18).

A restart unmounts every volume, and a bind mount of a volume (what Docker
makes of it for a container) stays "Transport endpoint is not connected"
after the daemon is back.  On SIGHUP, or `tresor daemon reload CONFIG`,
the daemon reads its file again and applies it between jobs:

- a schedule and a retention change take effect, while a reader loops
  over a file through a bind mount of the volume and never sees an error,
  and the volume's FUSE server (its pid) stays the same;
- a bad file (a wrong line, a check that fails, a store that differs) is
  refused with its FILE:LINE, the daemon runs on with the old config and
  its mounts stay;
- a volume added is mounted, one removed is unmounted, one whose mount
  settings changed is remounted; the others keep their FUSE server.

Without the feature a SIGHUP ends the daemon (the default action): its
mounts go, the reader sees ENOTCONN, and `daemon reload` is no command.
"""

import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import mounted, tresor, wait_for
from daemon_helpers import Daemon, local_ts
from test_daemon import daemons, snapshots  # noqa: F401

RETENTION = "keep-daily = 30\nkeep-monthly = 12\n"
SCHEDULE = {"snapshot": "daily 02:00", "push": "never", "check": "never"}


def write_config(d, volumes, schedule=None, retention=RETENTION, extra="", **kw):
    """Rewrite d's config file (the file a running daemon re-reads)."""
    w = Daemon(d.tmp, d.store, volumes=volumes, schedule=schedule or SCHEDULE,
               retention=retention, metrics=False, **kw)
    if extra:
        with open(d.cfg, "a") as f:
            f.write(extra)
    d.mnt.update(w.mnt)
    return w


def start(daemons, tmp, store, volumes=("vol",)):
    d = Daemon(tmp, store, volumes=volumes, schedule=SCHEDULE, metrics=False)
    daemons.append(d)
    d.set_clock(local_ts(2026, 7, 1, 0, 30))
    d.start()
    return d


def reloads(d):
    t = d.log_text()
    return t.count("daemon: reloaded ") + t.count("daemon: reload refused: ")


def sighup(d):
    """SIGHUP the daemon and wait for it to log the result."""
    n = reloads(d)
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: reloads(d) > n, 60, 0.1), d.log_text()
    assert d.proc.poll() is None, "the daemon ended on SIGHUP\n" + d.log_text()
    return d.log_text().splitlines()


def reload_cmd(d):
    return tresor("daemon", "reload", d.cfg, env=d.env(), timeout=400)


def pids(d):
    return {v["name"]: v["pid"] for v in d.status()["volumes"]}


def jobs(d):
    return {j["name"]: j for j in d.status()["jobs"]}


class Reader:
    """A thread reading a file through a path in a loop; every error kept."""

    def __init__(self, path, want):
        self.path, self.want = path, want
        self.errors, self.reads = [], 0
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                with open(self.path, "rb") as f:
                    if f.read() != self.want:
                        self.errors.append("wrong content")
                self.reads += 1
            except OSError as e:
                self.errors.append("%s: %s" % (e.errno, e.strerror))
            time.sleep(0.01)

    def finish(self):
        self.stop = True
        self.t.join(10)
        return self.errors


@pytest.fixture
def bind(tmp):
    made = []

    def make(src):
        dst = tmp / ("bind-%d" % len(made))
        dst.mkdir()
        subprocess.run(["mount", "--bind", str(src), str(dst)], check=True)
        made.append(dst)
        return dst
    yield make
    for m in made:
        subprocess.run(["umount", "-l", str(m)], stdin=subprocess.DEVNULL)


def test_reload_applies_schedule_and_retention_under_a_bind_mount(make_store, tmp, daemons,
                                                                  bind):
    store = make_store()
    d = start(daemons, tmp, store)
    body = os.urandom(200000)
    (d.mnt["vol"] / "plan.pdf").write_bytes(body)
    b = bind(d.mnt["vol"])
    server = pids(d)["vol"]
    reader = Reader(b / "plan.pdf", body)
    try:
        # SIGHUP: a snapshot every hour at :15, keep the last one only
        write_config(d, ("vol",), schedule=dict(SCHEDULE, snapshot="hourly :15"),
                     retention="keep-last = 1\n")
        lines = sighup(d)
        done = [ln for ln in lines if "daemon: reloaded " in ln][-1]
        assert "1 volume(s) stay mounted" in done and "changed: schedule, retention" in done, done
        assert jobs(d)["snapshot"]["schedule"] != "daily 02:00"
        assert jobs(d)["snapshot"]["next_run"] == local_ts(2026, 7, 1, 1, 15)
        # the new schedule runs (the old one had nothing before 02:00)
        d.set_clock(local_ts(2026, 7, 1, 1, 15, 5))
        assert d.wait_history(2) == [("snapshot", True), ("prune", True)]
        d.set_clock(local_ts(2026, 7, 1, 2, 15, 5))
        assert d.wait_history(4)[2:] == [("snapshot", True), ("prune", True)]
        # keep-last = 1: the prune after the second snapshot left one
        assert len(snapshots(store)) == 1
        # `tresor daemon reload`: back to daily, said in one line
        write_config(d, ("vol",), schedule=dict(SCHEDULE, snapshot="daily 03:00"),
                     retention="keep-last = 1\n")
        p = reload_cmd(d)
        assert p.returncode == 0, p.stderr
        out = p.stdout.strip()
        assert out.startswith("reloaded %s: 1 volume(s) stay mounted" % d.cfg), out
        assert "changed: schedule" in out and "\n" not in out, out
        assert jobs(d)["snapshot"]["schedule"] == "daily 03:00"
        time.sleep(0.5)
    finally:
        errors = reader.finish()
    assert errors == [], "the reader saw errors through the bind mount: %s" % errors[:5]
    assert reader.reads > 20
    assert pids(d)["vol"] == server, "the volume's FUSE server was restarted"
    assert (b / "plan.pdf").read_bytes() == body
    assert d.status()["volumes"][0]["mounted"] is True


def test_bad_config_is_refused_and_the_daemon_runs_on(make_store, tmp, daemons, bind):
    store = make_store()
    other = make_store(name="other")
    d = start(daemons, tmp, store)
    (d.mnt["vol"] / "f").write_text("kept\n")
    b = bind(d.mnt["vol"])
    server = pids(d)["vol"]
    good = d.cfg.read_text()

    # a line that does not parse: its FILE:LINE, by the command and in the log
    write_config(d, ("vol",), schedule=dict(SCHEDULE, snapshot="every tuesday"))
    bad_line = [i + 1 for i, ln in enumerate(d.cfg.read_text().splitlines())
                if ln.startswith("snapshot = every")][0]
    p = reload_cmd(d)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "%s:%d: " % (d.cfg, bad_line) in p.stderr, p.stderr
    lines = sighup(d)
    assert "daemon: reload refused: %s:%d: " % (d.cfg, bad_line) in lines[-1], lines[-1]

    # a check the start makes: a mount point that does not exist
    d.cfg.write_text(good.replace(str(d.mnt["vol"]), str(tmp / "no-such-dir")))
    vol_line = [i + 1 for i, ln in enumerate(good.splitlines())
                if ln.startswith("[volume vol]")][0]
    p = reload_cmd(d)
    assert p.returncode == 1
    assert p.stderr.startswith("tresor: reload refused: %s:%d: volume vol: mountpoint %s: "
                               % (d.cfg, vol_line, tmp / "no-such-dir")) or \
        "reload refused: %s:%d: volume vol: mountpoint" % (d.cfg, vol_line) in p.stderr, p.stderr
    assert "the old config stays" in p.stderr and p.stderr.count("\n") == 1

    # what only a restart can change: another store (SIGHUP; the command
    # would look for a daemon of the other store)
    d.cfg.write_text(good.replace("store = %s" % store.path, "store = %s" % other.path))
    lines = sighup(d)
    assert "daemon: reload refused: %s:2: store '%s': the daemon runs with '%s'" \
        % (d.cfg, other.path, store.path) in lines[-1], lines[-1]
    assert "restart" in lines[-1]

    # the daemon runs on, with the old config and the same mount
    d.cfg.write_text(good)
    assert d.proc.poll() is None
    st = d.status()
    assert st["volumes"][0]["mounted"] is True and pids(d)["vol"] == server
    assert jobs(d)["snapshot"]["schedule"] == "daily 02:00"
    assert (b / "f").read_text() == "kept\n"
    # status says the file on disk was refused (the next start would be too)
    assert st["daemon"]["reload_ok"] is False and st["healthy"] is False
    assert any("was refused" in p and str(d.cfg) in p for p in st["problems"]), st["problems"]
    assert "last reload: REFUSED: " in d.status_proc_text().stdout
    # and a good file after the bad ones is taken
    p = reload_cmd(d)
    assert p.returncode == 0, p.stderr
    st = d.status()
    assert st["daemon"]["reload_ok"] is True
    assert not any("was refused" in p for p in st["problems"]), st["problems"]
    assert "last reload: applied: reloaded " in d.status_proc_text().stdout


def test_volumes_added_removed_and_remounted(make_store, tmp, daemons):
    store = make_store(volumes=("a", "b"))
    d = start(daemons, tmp, store, volumes=("a",))
    (d.mnt["a"] / "fa").write_text("a\n")
    pa = pids(d)["a"]

    # b added: mounted; a keeps its server
    write_config(d, ("a", "b"))
    assert not mounted(d.mnt["b"])
    p = reload_cmd(d)
    assert p.returncode == 0, p.stderr
    assert "1 volume(s) stay mounted; mounted b; no other change" in p.stdout, p.stdout
    assert mounted(d.mnt["b"])
    (d.mnt["b"] / "fb").write_text("b\n")
    st = {v["name"]: v for v in d.status()["volumes"]}
    assert st["a"]["pid"] == pa and st["b"]["mounted"] is True
    pb = st["b"]["pid"]

    # a removed: unmounted as a stop does; b keeps its server
    write_config(d, ("b",))
    p = reload_cmd(d)
    assert p.returncode == 0, p.stderr
    assert "unmounted a" in p.stdout, p.stdout
    assert not mounted(d.mnt["a"])
    assert [v["name"] for v in d.status()["volumes"]] == ["b"]
    assert pids(d)["b"] == pb
    assert (d.mnt["b"] / "fb").read_text() == "b\n"

    # b's mount options changed: remounted (a new server), said in the log
    write_config(d, ("b",), volume_options="ro")
    p = reload_cmd(d)
    assert p.returncode == 0, p.stderr
    assert "remounted b" in p.stdout, p.stdout
    assert "volume b: its mountpoint or options changed: restarting its mount process" \
        in d.log_text()
    assert wait_for(lambda: d.status()["volumes"][0]["mounted"], 30, 0.1)
    assert pids(d)["b"] not in (0, pb)
    with pytest.raises(OSError):
        (d.mnt["b"] / "new").write_text("x\n")
    assert (d.mnt["b"] / "fb").read_text() == "b\n"
    # a (unmounted) can come back
    write_config(d, ("a", "b"), volume_options="ro")
    p = reload_cmd(d)
    assert p.returncode == 0 and "mounted a" in p.stdout, p.stderr + p.stdout
    assert (d.mnt["a"] / "fa").read_text() == "a\n"


def test_reload_without_a_daemon(make_store, tmp):
    store = make_store()
    d = Daemon(tmp, store, schedule=SCHEDULE, metrics=False)
    p = tresor("daemon", "reload", d.cfg)
    assert p.returncode == 3
    assert "no tresor daemon runs for %s" % d.cfg in p.stderr and p.stderr.count("\n") == 1


def test_remote_state_survives_and_a_new_remote_is_added(make_store, tmp, daemons):
    import shutil
    store = make_store()
    remotes = {n: tmp / n for n in ("offsite", "second", "third")}
    for r in remotes.values():
        r.mkdir()
    sched = dict(SCHEDULE, push="daily 05:00")
    d = Daemon(tmp, store, schedule=sched, metrics=False,
               remotes={"offsite": str(remotes["offsite"]), "second": str(remotes["second"])})
    daemons.append(d)
    d.set_clock(local_ts(2026, 5, 5, 4, 0))
    d.start()
    (d.mnt["vol"] / "f").write_bytes(os.urandom(100000))
    shutil.rmtree(remotes["offsite"])
    remotes["offsite"].write_text("not a folder\n")
    t0 = local_ts(2026, 5, 5, 5, 0, 1)
    d.set_clock(t0)
    assert d.wait_history(1) == [("push", False)]
    before = {r["name"]: r for r in d.status()["remotes"]}
    assert before["offsite"]["attempts"] == 1 and before["offsite"]["failures"] == 1
    assert before["second"]["last_push"] is not None

    # offsite stays, second goes, third comes (added to the store as at start)
    write_config(d, ("vol",), schedule=sched,
                 remotes={"offsite": str(remotes["offsite"]), "third": str(remotes["third"])})
    p = reload_cmd(d)
    assert p.returncode == 0, p.stderr
    assert "changed: remotes" in p.stdout, p.stdout
    assert "added remote third" in d.log_text()
    after = {r["name"]: r for r in d.status()["remotes"]}
    assert set(after) == {"offsite", "second", "third"}
    for k in ("attempts", "failures", "next_retry", "last_error", "last_attempt"):
        assert after["offsite"][k] == before["offsite"][k], k
    assert after["second"]["last_push"] == before["second"]["last_push"]
    # the retry of the remote that stayed still comes, and now works
    remotes["offsite"].unlink()
    remotes["offsite"].mkdir()
    d.set_clock(t0 + 12)
    assert d.wait_history(2)[1] == ("push", True)
    st = {r["name"]: r for r in d.status()["remotes"]}
    assert st["offsite"]["last_push"] is not None and st["offsite"]["attempts"] == 0


def test_reload_waits_for_the_running_job(make_store, tmp, daemons):
    store = make_store()
    d = start(daemons, tmp, store)
    hook = tmp / "slow-hook.sh"
    hook.write_text("#!/bin/sh\nsleep 3\n")
    hook.chmod(0o755)
    # a hook added by a reload is run by the next snapshot
    write_config(d, ("vol",), extra="before-snapshot = %s\n" % hook)
    p = reload_cmd(d)
    assert p.returncode == 0 and "changed: hooks" in p.stdout, p.stderr + p.stdout
    d.set_clock(local_ts(2026, 7, 1, 2, 0, 5))
    assert wait_for(lambda: "running before-snapshot hook" in d.log_text(), 30, 0.05)
    write_config(d, ("vol",), schedule=dict(SCHEDULE, snapshot="daily 04:00"),
                 extra="before-snapshot = %s\n" % hook)
    t = time.monotonic()
    p = reload_cmd(d)
    took = time.monotonic() - t
    assert p.returncode == 0 and "changed: schedule" in p.stdout, p.stderr + p.stdout
    # the job was not interrupted: the reload came after it
    assert took > 1.5, took
    log = d.log_text()
    assert log.index("daemon: snapshot: done") < log.rindex("daemon: reloaded "), log
    assert d.wait_history(2) == [("snapshot", True), ("prune", True)]
    assert len(snapshots(store)) == 1
    assert jobs(d)["snapshot"]["schedule"] == "daily 04:00"
