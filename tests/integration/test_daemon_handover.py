"""A volume's mount outlives its server process (issue 18).

The daemon keeps a copy of each mount's /dev/fuse descriptor (tools/
keeper.h).  When a volume's server process crashes (kill -9), the daemon
starts a new one on the same connection; `tresor daemon restart` (SIGUSR2)
runs the daemon's binary anew and hands every connection to the new
image.  Through all of it a bind mount of the volume - what Docker gives a
container - keeps working: a reader looping through it may see a request
fail (EINTR/EIO) but never ENOTCONN, a file held open across the
handover reads on, and every file whose fsync returned before a crash is
there after it (a handle whose writes a crash lost gets EIO from fsync and
close, never success).  A restart whose config the new image would refuse
is refused by the running daemon, which runs on.

Without the keeper a kill -9 of the server ends the connection: the bind
mount answers ENOTCONN for good, and `daemon restart` is no command.
"""

import errno
import os
import signal
import threading
import time

from conftest import tresor, wait_for
from daemon_helpers import Daemon
from test_daemon import daemons  # noqa: F401
from test_daemon_reload import SCHEDULE, Reader, bind, pids, start, write_config  # noqa: F401


def served_again(d, name, old):
    """Wait for a new server process of volume name, mounted."""
    def ok():
        v = [v for v in d.status()["volumes"] if v["name"] == name][0]
        return v["pid"] not in (0, None, old) and v["mounted"]
    assert wait_for(ok, 60, 0.1), d.log_text()
    return pids(d)[name]


def not_enotconn(errors):
    return [e for e in errors if e.startswith("%d:" % errno.ENOTCONN)]


def in_mountinfo(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


class Writer:
    """A thread writing and fsyncing small files through a path; the
    names whose fsync returned, and every error."""

    def __init__(self, dir):
        self.dir, self.done, self.errors, self.stop = dir, [], [], False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        n = 0
        while not self.stop:
            name = "w-%05d" % n
            n += 1
            try:
                fd = os.open(self.dir / name, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.write(fd, name.encode() * 100)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.done.append(name)
            except OSError as e:
                self.errors.append("%s: %s" % (e.errno, e.strerror))
            time.sleep(0.005)

    def finish(self):
        self.stop = True
        self.t.join(30)
        return self.errors


def test_server_crash_keeps_the_mount(make_store, tmp, daemons, bind):
    store = make_store()
    d = start(daemons, tmp, store)
    body = os.urandom(300000)
    (d.mnt["vol"] / "plan.pdf").write_bytes(body)
    big = os.urandom(4 << 20)
    (d.mnt["vol"] / "big.bin").write_bytes(big)
    b = bind(d.mnt["vol"])
    held = open(b / "big.bin", "rb")	# open across the crash
    first = held.read(1 << 20)
    reader = Reader(b / "plan.pdf", body)
    (b / "w").mkdir()
    writer = Writer(b / "w")
    try:
        for round in range(2):
            server = pids(d)["vol"]
            os.kill(server, signal.SIGKILL)
            served_again(d, "vol", server)
            assert reader.reads > 0
            n = reader.reads
            assert wait_for(lambda: reader.reads > n + 5, 30, 0.05), reader.errors[-5:]
    finally:
        errors = reader.finish()
        werrors = writer.finish()
    assert not_enotconn(errors) == [] and not_enotconn(werrors) == [], (errors[:5], werrors[:5])
    print("through the bind mount across two crashes: %d reads, errors %s; %d files written"
          " and fsynced, errors %s" % (reader.reads, sorted(set(errors)) or "none",
                                       len(writer.done), sorted(set(werrors)) or "none"))
    # what fsync acknowledged survived both crashes
    assert len(writer.done) > 10
    for name in writer.done:
        assert (b / "w" / name).read_bytes() == name.encode() * 100, name
    # the handle the first process opened reads on in the third
    assert first + held.read() == big
    held.close()
    # the bind mount writes and reads, and lists
    (b / "after.txt").write_text("written after two crashes\n")
    assert (d.mnt["vol"] / "after.txt").read_text() == "written after two crashes\n"
    assert sorted(os.listdir(b)) == ["after.txt", "big.bin", "plan.pdf", "w"]
    assert "the mount kept" in d.log_text()
    assert d.status()["volumes"][0]["mounted"] is True
    # a stop still unmounts it
    d.stop()
    assert not in_mountinfo(d.mnt["vol"])


def test_daemon_restart_keeps_the_mounts(make_store, tmp, daemons, bind):
    store = make_store(volumes=("a", "b"))
    d = start(daemons, tmp, store, volumes=("a", "b"))
    body = os.urandom(200000)
    (d.mnt["a"] / "odoo.dump").write_bytes(body)
    (d.mnt["b"] / "file.txt").write_text("b\n")
    ba = bind(d.mnt["a"])
    before = pids(d)
    reader = Reader(ba / "odoo.dump", body)
    try:
        p = tresor("daemon", "restart", d.cfg, env=d.env(), timeout=120)
        assert p.returncode == 0, p.stderr
        assert "volumes stayed mounted" in p.stdout, p.stdout
        assert d.proc.poll() is None, "the daemon process ended\n" + d.log_text()
        after = pids(d)
        assert after["a"] != before["a"] and after["b"] != before["b"], (before, after)
        n = reader.reads
        assert wait_for(lambda: reader.reads > n + 5, 30, 0.05), reader.errors[-5:]
    finally:
        errors = reader.finish()
    assert not_enotconn(errors) == [], errors[:5]
    assert (ba / "odoo.dump").read_bytes() == body
    assert (d.mnt["b"] / "file.txt").read_text() == "b\n"
    (ba / "new.txt").write_text("after the restart\n")
    assert "goes on from the previous daemon" in d.log_text()
    # a second restart, now with volume b gone from the config: a is kept,
    # b is unmounted
    write_config(d, ("a",), schedule=SCHEDULE)
    served = pids(d)["a"]
    p = tresor("daemon", "restart", d.cfg, env=d.env(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert pids(d).keys() == {"a"} and pids(d)["a"] != served
    assert (ba / "new.txt").read_text() == "after the restart\n"
    assert wait_for(lambda: not in_mountinfo(d.mnt["b"]), 20, 0.1)


def test_restart_with_a_bad_config_is_refused(make_store, tmp, daemons, bind):
    """The new image would refuse the file and end every kept mount: the
    running daemon checks it first, refuses, and runs on."""
    store = make_store()
    d = start(daemons, tmp, store)
    (d.mnt["vol"] / "f").write_text("kept\n")
    b = bind(d.mnt["vol"])
    server = pids(d)["vol"]
    good = d.cfg.read_text()
    # a line that does not parse: refused by the command itself
    d.cfg.write_text(good.replace("[volume vol]", "[volume vol]\nfrobnicate = 1"))
    p = tresor("daemon", "restart", d.cfg, env=d.env(), timeout=120)
    assert p.returncode == 1 and "not restarted" in p.stderr, p.stdout + p.stderr
    # a file that parses but fails a start's checks (the store has no such
    # volume): refused by the daemon, which runs on
    d.cfg.write_text(good + "\n[volume ghost]\nmountpoint = %s\n" % (tmp / "ghost"))
    p = tresor("daemon", "restart", d.cfg, env=d.env(), timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "restart refused: %s:" % d.cfg in p.stderr and "ghost" in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1, p.stderr
    assert d.proc.poll() is None and pids(d)["vol"] == server
    assert (b / "f").read_text() == "kept\n"
    st = d.status()
    assert st["daemon"]["reload_ok"] is False and not st["healthy"]
    # fixed, it restarts
    d.cfg.write_text(good)
    p = tresor("daemon", "restart", d.cfg, env=d.env(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert pids(d)["vol"] != server and (b / "f").read_text() == "kept\n"


def test_restart_without_a_daemon(make_store, tmp):
    store = make_store()
    d = Daemon(tmp, store, volumes=("vol",), schedule=SCHEDULE, metrics=False)
    p = tresor("daemon", "restart", d.cfg, env=d.env())
    assert p.returncode != 0 and "no tresor daemon runs for" in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1, p.stderr
