"""Snapshot hooks (issue 17): `before-snapshot` / `after-snapshot` commands
the daemon runs around a snapshot set, with a timeout, their environment,
their output in the log (bounded), and what a failure does: the snapshot
is skipped (or, with snapshot-on-hook-failure = yes, taken and marked),
and status, its exit code and the metrics say so.

Real daemon, real mounts, real hook scripts written by the test.
"""

import json
import os
import re
import stat
import time

import pytest

from conftest import tresor, wait_for
from daemon_helpers import Daemon, local_ts


def script(path, body, mode=0o755):
    path.write_text("#!/bin/sh\n" + body)
    os.chmod(path, mode)
    return path


def start_set_daemon(tmp, store, before=None, after=None, extra=""):
    d = Daemon(tmp, store, volumes=("db", "files"))
    lines = ["[snapshot-set odoo]", "volumes = db files"]
    if before:
        lines.append("before-snapshot = %s" % before)
    if after:
        lines.append("after-snapshot = %s" % after)
    with open(d.cfg, "a") as f:
        f.write("\n".join(lines) + "\n" + extra)
    d.set_clock(local_ts(2026, 3, 10, 0, 30))
    d.start()
    return d


def run_slot(d):
    """Move to the 02:00 slot and wait for its snapshot (and prune) to end."""
    d.set_clock(local_ts(2026, 3, 10, 2, 0, 5))
    ok = wait_for(lambda: any(j == "snapshot" for j, _ in d.history()) and
                  not any(j["running"] for j in d.status()["jobs"]), 120, 0.2)
    assert ok, d.log_text()
    return dict(d.history())


def set_names(store):
    p = tresor("snapshot", "list", store.path, "--set", "odoo", "--json", check=True)
    return json.loads(p.stdout)


def metric(text, name, labels):
    m = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return float(m.group(1)) if m else None


@pytest.fixture
def daemon_box():
    box = []
    yield box
    for d in box:
        assert d.stop() == 0, d.log_text()


def test_hooks_run_around_the_set_with_their_environment(make_store, tmp, daemon_box):
    st = make_store(volumes=("db", "files"))
    envlog = tmp / "env.txt"
    before = script(tmp / "before.sh",
                    'set -e\nset -- $TRESOR_MOUNTPOINTS\n'
                    'echo "dump for $TRESOR_SNAPSHOT" > "$1/prod.sql"\n'
                    'env | grep ^TRESOR_ | sort > %s\n'
                    'echo "dumped prod into $1"\n' % (tmp / "env-before.txt"))
    after = script(tmp / "after.sh", 'env | grep ^TRESOR_ | sort > %s\n' % envlog)
    d = start_set_daemon(tmp, st, before, after)
    daemon_box.append(d)
    (d.mnt["files"] / "ab12").write_text("attachment\n")
    h = run_slot(d)
    assert h["snapshot"] is True, d.log_text()
    names = set_names(st)
    assert [s["name"] for s in names] == ["2026-03-10"] and names[0]["note"] == ""
    # The hook ran before the instant: its dump is in the set.
    assert (d.mnt["db"] / ".snapshots" / "2026-03-10" / "prod.sql").read_text() == \
        "dump for 2026-03-10\n"
    env = dict(l.split("=", 1) for l in (tmp / "env-before.txt").read_text().splitlines())
    assert env["TRESOR_HOOK"] == "before-snapshot" and env["TRESOR_SET"] == "odoo"
    assert env["TRESOR_VOLUMES"] == "db files"
    assert env["TRESOR_MOUNTPOINTS"] == "%s %s" % (d.mnt["db"], d.mnt["files"])
    assert env["TRESOR_STORE"] == str(st.path) and "TRESOR_SNAPSHOT_STATUS" not in env
    env = dict(l.split("=", 1) for l in envlog.read_text().splitlines())
    assert env["TRESOR_HOOK"] == "after-snapshot"
    assert env["TRESOR_SNAPSHOT"] == "2026-03-10" and env["TRESOR_SNAPSHOT_STATUS"] == "ok"
    assert "set odoo: before-snapshot hook: dumped prod into %s" % d.mnt["db"] in d.log_text()
    s = d.status()
    assert s["healthy"] is True, s["problems"]
    assert s["sets"][0]["last_failed"] is False and s["sets"][0]["last_skipped"] is False
    assert s["sets"][0]["runs"] == 1
    assert s["hooks"] == [{"target": "set odoo", "runs": 1, "failures": 0,
                           "last_failed": False, "last_error": ""}]


BAD = [
    # (name, script body or None for a path, hook-timeout, words in the error)
    ("failing", 'echo "pg_dump: connection refused" >&2\nexit 3\n', None,
     "before-snapshot hook exit 3: pg_dump: connection refused; snapshot skipped"),
    ("missing", None, None, "before-snapshot hook cannot run"),
    ("not executable", "exit 0\n", None, "Permission denied"),
    ("hanging", "echo $$ > {pidfile}\nsleep 1000\n", "2s",
     "before-snapshot hook timed out after 2 s and was killed; snapshot skipped"),
]


@pytest.mark.parametrize("name,body,timeout,words", BAD, ids=[b[0] for b in BAD])
def test_failing_before_hook_skips_the_set(make_store, tmp, daemon_box, name, body,
                                           timeout, words):
    st = make_store(volumes=("db", "files"))
    pidfile = tmp / "hook.pid"
    if body is None:
        before = tmp / "no-such-hook"
    else:
        before = script(tmp / "before.sh", body.replace("{pidfile}", str(pidfile)),
                        mode=0o644 if name == "not executable" else 0o755)
    after = script(tmp / "after.sh", 'echo "$TRESOR_SNAPSHOT_STATUS" > %s\n' % (tmp / "after"))
    extra = "hook-timeout = %s\n" % timeout if timeout else ""
    d = start_set_daemon(tmp, st, before, after, extra)
    daemon_box.append(d)
    t0 = time.monotonic()
    h = run_slot(d)
    assert h["snapshot"] is False
    assert set_names(st) == []
    assert (tmp / "after").read_text() == "skipped\n"
    s = d.status()
    assert s["healthy"] is False
    job = {j["name"]: j for j in s["jobs"]}["snapshot"]
    assert words in job["last_error"], job["last_error"]
    assert any(words.split(";")[0] in p for p in s["problems"]), s["problems"]
    assert s["hooks"][0]["last_failed"] is True and s["hooks"][0]["failures"] == 1
    assert d.status_proc().returncode == 1
    m, _ = d.metrics()
    assert metric(m, "tresor_hook_last_failed", 'target="set odoo"') == 1
    assert metric(m, "tresor_job_last_run_failed", 'job="snapshot"') == 1
    # The set itself says it was skipped (taken by the snapshot job).
    sets = s["sets"][0]
    assert sets["last_skipped"] is True and sets["last_failed"] is True, sets
    assert sets["last_marked"] is False and words.split(";")[0] in sets["last_error"]
    assert metric(m, "tresor_set_last_run_skipped", 'set="odoo"') == 1
    assert metric(m, "tresor_set_last_run_failed", 'set="odoo"') == 1
    assert metric(m, "tresor_set_last_run_marked", 'set="odoo"') == 0
    assert "last run SKIPPED its snapshot" in d.status_proc_text().stdout
    if name == "hanging":
        assert time.monotonic() - t0 < 60
        pid = int(pidfile.read_text())
        assert wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10), \
            "the hung hook %d still runs" % pid


def test_snapshot_on_hook_failure_takes_it_marked(make_store, tmp, daemon_box):
    st = make_store(volumes=("db", "files"))
    before = script(tmp / "before.sh", 'echo "dump failed" >&2\nexit 2\n')
    d = start_set_daemon(tmp, st, before, extra="snapshot-on-hook-failure = yes\n")
    daemon_box.append(d)
    h = run_slot(d)
    assert h["snapshot"] is True
    names = set_names(st)
    assert [s["name"] for s in names] == ["2026-03-10"]
    assert names[0]["note"] == "before-snapshot hook exit 2: dump failed", names
    # Each member carries the mark.
    p = tresor("snapshot", "list", st.path, "files", "--json", check=True)
    assert json.loads(p.stdout)[0]["note"] == names[0]["note"]
    assert "marked: before-snapshot hook failed" in d.log_text()
    s = d.status()
    assert s["healthy"] is False and d.status_proc().returncode == 1
    assert any("set odoo: before-snapshot hook exit 2" in p for p in s["problems"])
    m, _ = d.metrics()
    assert metric(m, "tresor_hook_failures_total", 'target="set odoo"') == 1
    sets = s["sets"][0]
    assert sets["last_marked"] is True and sets["last_skipped"] is False, sets
    assert sets["last_failed"] is False
    assert metric(m, "tresor_set_last_run_marked", 'set="odoo"') == 1
    assert metric(m, "tresor_set_last_run_skipped", 'set="odoo"') == 0
    assert "last run took it MARKED" in d.status_proc_text().stdout


def test_chatty_hook_costs_no_memory(make_store, tmp, daemon_box):
    """A hook that writes 2 GiB: the log gets 64 KiB of it, the daemon's
    memory stays small, the snapshot is taken."""
    st = make_store(volumes=("db", "files"))
    before = script(tmp / "before.sh",
                    "dd if=/dev/zero bs=1M count=2048 status=none | tr '\\\\0' x\n"
                    "echo; echo done\n")
    d = start_set_daemon(tmp, st, before, extra="hook-timeout = 5m\n")
    daemon_box.append(d)
    h = run_slot(d)
    assert h["snapshot"] is True, d.log_text()[-3000:]
    assert [s["name"] for s in set_names(st)] == ["2026-03-10"]
    assert d.log.stat().st_size < 1024 * 1024
    assert "more bytes of output not logged" in d.log_text()
    with open("/proc/%d/status" % d.proc.pid) as f:
        hwm = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))
    assert hwm < 200 * 1024, "the daemon peaked at %d kB" % hwm
    assert stat.S_ISDIR(os.stat(d.mnt["db"]).st_mode)


def test_sigterm_ends_a_running_hook(make_store, tmp):
    """SIGTERM while a hook hangs: the hook is killed at once, not after its
    timeout, the snapshot is skipped, and the daemon exits 0."""
    st = make_store(volumes=("db", "files"))
    pidfile = tmp / "hook.pid"
    before = script(tmp / "before.sh", "echo $$ > %s\nexec sleep 1000\n" % pidfile)
    d = start_set_daemon(tmp, st, before, extra="hook-timeout = 1h\n")
    d.set_clock(local_ts(2026, 3, 10, 2, 0, 5))
    assert wait_for(pidfile.exists, 60, 0.1), d.log_text()
    pid = int(pidfile.read_text())
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 30
    assert not os.path.exists("/proc/%d" % pid)
    assert "before-snapshot hook was killed: the daemon is stopping" in d.log_text()
    assert set_names(st) == []


def test_restore_drill_waits_for_a_snapshot_then_runs(make_store, tmp, daemon_box):
    """restore-drill without PostgreSQL: the check job before the set's
    first snapshot drills nothing and stays healthy; the next one restores
    the set's latest snapshot and runs the drill in it, then removes it."""
    st = make_store(volumes=("db", "files"))
    before = script(tmp / "before.sh", 'set -e\nset -- $TRESOR_MOUNTPOINTS\n'
                    'echo "dump of $TRESOR_SNAPSHOT" > "$1/prod.sql"\n'
                    'mkdir -p "$2/ro"; echo x > "$2/ro/f"; chmod 555 "$2/ro"\n')
    seen = tmp / "drill-saw.txt"
    drill = script(tmp / "drill.sh",
                   'set -e\ncd "$TRESOR_RESTORE_DIR"\n'
                   '{ echo "$TRESOR_HOOK $TRESOR_SET $TRESOR_SNAPSHOT $TRESOR_VOLUMES";'
                   ' cat db/prod.sql; ls files/ro; } > %s\n' % seen)
    d = Daemon(tmp, st, volumes=("db", "files"),
               schedule={"snapshot": "daily 02:00", "push": "never", "check": "daily 01:00"})
    with open(d.cfg, "a") as f:
        f.write("[snapshot-set odoo]\nvolumes = db files\nbefore-snapshot = %s\n"
                "restore-drill = %s\n" % (before, drill))
    d.set_clock(local_ts(2026, 3, 10, 0, 30))
    d.start()
    daemon_box.append(d)
    d.set_clock(local_ts(2026, 3, 10, 1, 0, 5))
    assert wait_for(lambda: ("check", True) in d.history(), 60, 0.2), d.log_text()
    s = d.status()
    assert s["healthy"] is True and s["sets"][0]["drill"]["runs"] == 0, s
    assert "no snapshot yet, no restore drill" in d.log_text()
    d.set_clock(local_ts(2026, 3, 10, 2, 0, 5))
    assert wait_for(lambda: [j for j, _ in d.history()].count("prune") == 1, 60, 0.2)
    d.set_clock(local_ts(2026, 3, 11, 1, 0, 5))
    assert wait_for(lambda: [j for j, _ in d.history()].count("check") == 2 and
                    not any(j["running"] for j in d.status()["jobs"]), 60, 0.2), d.log_text()
    assert seen.read_text() == "restore-drill odoo 2026-03-10 db files\ndump of 2026-03-10\nf\n"
    dr = d.status()["sets"][0]["drill"]
    assert dr["runs"] == 1 and dr["last_failed"] is False and dr["snapshot"] == "2026-03-10"
    assert not (st.path / "drill-odoo").exists()
