"""Helpers for the tests of `tresor daemon` (test_daemon.py,
test_config.py, test_status_metrics.py, test_container_view.py).

A Daemon runs `tresor daemon CONFIG` in the foreground with a movable
clock (TRESOR_TEST_CLOCK: a file holding Unix seconds) in a fixed time
zone, and stops it with SIGTERM at teardown (it must exit 0 and leave
nothing mounted).
"""

import datetime
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from conftest import (PASSPHRASE, TRESOR_BIN, base_env, check_sanitizer_text,
                      mounted, tresor, wait_for)

TZ = "Europe/Berlin"


def local_ts(y, mo, d, h=0, mi=0, s=0):
    """Unix seconds of a local time in TZ."""
    return int(datetime.datetime(y, mo, d, h, mi, s, tzinfo=ZoneInfo(TZ)).timestamp())


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Daemon:
    def __init__(self, tmp, store, volumes=("vol",), remotes=None, schedule=None,
                 tresor_extra="", retention="keep-daily = 30\nkeep-monthly = 12\n",
                 metrics=True, volume_options=None):
        self.tmp = Path(tmp)
        self.store = store
        self.clock = self.tmp / "clock"
        self.cfg = self.tmp / "tresor.conf"
        self.log = self.tmp / "daemon.log"
        self.port = free_port() if metrics else None
        self.mnt = {}
        self.proc = None
        sched = schedule or {"snapshot": "daily 02:00", "push": "daily 05:00",
                             "check": "daily 04:00"}
        lines = ["[tresor]", "store = %s" % store.path,
                 "passphrase-file = %s" % store.passfile,
                 "retry-delay = 10s", "retries = 3"]
        if metrics:
            lines.append("metrics-listen = 127.0.0.1:%d" % self.port)
        lines += [tresor_extra, "", "[schedule]"]
        lines += ["%s = %s" % kv for kv in sched.items()]
        lines += ["", "[retention]", retention]
        for v in volumes:
            m = self.tmp / ("mnt-" + v)
            m.mkdir(exist_ok=True)
            self.mnt[v] = m
            lines += ["[volume %s]" % v, "mountpoint = %s" % m]
            if volume_options:
                lines.append("options = %s" % volume_options)
        for name, url in (remotes or {}).items():
            lines += ["[remote %s]" % name, "url = %s" % url]
        self.cfg.write_text("\n".join(lines) + "\n")

    def set_clock(self, ts):
        tmpf = self.clock.with_suffix(".tmp")
        tmpf.write_text("%d\n" % ts)
        os.replace(tmpf, self.clock)

    def env(self):
        e = base_env(TRESOR_TEST_CLOCK=str(self.clock), TZ=TZ)
        return e

    def start(self, wait=True):
        assert self.clock.exists(), "set_clock first"
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([TRESOR_BIN, "daemon", str(self.cfg)],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, env=self.env(),
                                     start_new_session=True)
        if wait:
            ok = wait_for(lambda: self.proc.poll() is not None or self.ready(), 30, 0.1)
            assert ok and self.proc.poll() is None, \
                "daemon did not come up:\n" + self.log_text()
        return self

    def ready(self):
        p = self.status_proc()
        if p.returncode not in (0, 1):
            return False
        st = json.loads(p.stdout)
        return all(v["mounted"] for v in st["volumes"])

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def status_proc(self, *extra):
        return tresor("status", self.cfg, "--json", *extra, env=self.env())

    def status_proc_text(self):
        """`tresor status CONFIG` in its human form."""
        return tresor("status", self.cfg, env=self.env())

    def status(self):
        p = self.status_proc()
        assert p.returncode in (0, 1), "status failed: %s %s" % (p.stdout, p.stderr)
        return json.loads(p.stdout)

    def history(self):
        return [(h["job"], h["ok"]) for h in self.status()["history"]]

    def wait_history(self, n, timeout=60):
        ok = wait_for(lambda: len(self.status()["history"]) >= n and
                      not any(j["running"] for j in self.status()["jobs"]), timeout, 0.2)
        assert ok, "expected %d job runs, have %s\n%s" % (n, self.history(), self.log_text())
        return self.history()

    def metrics(self):
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=30) as r:
            assert r.status == 200
            ctype = r.headers["Content-Type"]
            return r.read().decode(), ctype

    def stop(self):
        if not self.proc:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("daemon did not stop on SIGTERM\n" + self.log_text())
        self.logf.close()
        check_sanitizer_text(self.log_text(), "tresor daemon")
        for m in self.mnt.values():
            assert not mounted(m), "%s still mounted after the daemon stopped" % m
        return rc


def store_run(store, *args, **kw):
    kw.setdefault("passphrase_env", PASSPHRASE)
    return tresor(*args, **kw)
