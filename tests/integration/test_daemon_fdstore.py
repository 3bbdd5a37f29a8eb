"""The mounts outlive a crash of the daemon itself (systemd's fd store).

Under systemd with FileDescriptorStoreMax= and TRESOR_FDSTORE=1 (the
unit sets both), the daemon also gives each mount's /dev/fuse connection
to systemd's file-descriptor store (sd_notify FDSTORE=1 with SCM_RIGHTS)
and writes what the next daemon needs to serve it into STATE-FILE.fds.
When the daemon is killed (kill -9), its mount processes leave their
mounts (SIGUSR2 as their parent-death signal) instead of unmounting;
systemd starts the daemon again and hands the stored connections back
(LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES); the new daemon's mount
processes serve the same mounts, so a bind mount of a volume (what Docker
gives a container) never answers ENOTCONN.

systemd cannot run as the service manager here (it is not PID 1 of this
machine), so a small peer, FdStore below, stands in for it: it speaks the
documented protocol for real (an AF_UNIX datagram socket as NOTIFY_SOCKET,
FDSTORE=1 / FDSTOREREMOVE=1 with the descriptors as SCM_RIGHTS, and the
stored descriptors passed from fd 3 on with the LISTEN_* variables, as
systemd passes them to a restarted service).

Without TRESOR_FDSTORE a kill -9 of the daemon still unmounts the volumes
(its mount processes get SIGTERM when it dies): nothing would serve them.
"""

import errno
import fcntl
import os
import signal
import socket
import subprocess
import threading
import time

from conftest import TRESOR_BIN, tresor, wait_for
from daemon_helpers import Daemon, local_ts
from test_daemon import daemons  # noqa: F401
from test_daemon_handover import in_mountinfo, not_enotconn
from test_daemon_reload import SCHEDULE, Reader, bind, pids  # noqa: F401


class FdStore:
    """systemd's side of sd_notify and of its fd store (a stand-in, see
    the module docstring): every message kept, stored descriptors held
    by name until FDSTOREREMOVE=1."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.lock = threading.Lock()
        self.messages = []
        self.store = []	# [name, fd] in the order stored, as systemd passes them
        self.done = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.done.is_set():
            try:
                msg, fds, _, _ = socket.recv_fds(self.sock, 4096, 16)
            except socket.timeout:
                continue
            f = dict(line.split("=", 1) for line in msg.decode().split("\n") if "=" in line)
            with self.lock:
                self.messages.append(f)
                if f.get("FDSTORE") == "1":
                    self.store += [[f.get("FDNAME", "stored"), fd] for fd in fds]
                    fds = []
                elif f.get("FDSTOREREMOVE") == "1":
                    gone = [e for e in self.store if e[0] == f.get("FDNAME")]
                    self.store = [e for e in self.store if e not in gone]
                    fds = [e[1] for e in gone]
            for fd in fds:
                os.close(fd)

    def said(self, key, value=None):
        with self.lock:
            return [m for m in self.messages if key in m and (value is None or m[key] == value)]

    def names(self):
        with self.lock:
            return [e[0] for e in self.store]

    def close(self):
        self.done.set()
        self.t.join(5)
        self.sock.close()
        for _, fd in self.store:
            os.close(fd)
        self.store = []


def daemon_with_peer(tmp, store, peer, fdstore=True):
    d = Daemon(tmp, store, volumes=("vol",), schedule=SCHEDULE, metrics=False)
    plain = d.env

    def env():
        e = plain()
        e["NOTIFY_SOCKET"] = peer.path
        e.pop("TRESOR_FDSTORE", None)
        if fdstore:
            e["TRESOR_FDSTORE"] = "1"
        return e
    d.env = env
    d.set_clock(local_ts(2026, 7, 1, 0, 30))
    return d


def fds_entries(store):
    """STATE-FILE.fds: (name, generation, volume, mount point) per line."""
    lines = (store.path / "daemon.state.fds").read_text().splitlines()
    assert lines[0].startswith("#"), lines
    return [(e[0], e[1], e[3], e[4]) for e in (line.split("\t") for line in lines[1:])]


def gone(pid):
    """The process ended (reaped, or a zombie of whoever adopted it)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def start_as_systemd(d, peer):
    """Start the daemon as systemd starts a restarted service: the stored
    descriptors from fd 3 on, LISTEN_PID its own pid.  A bash in between
    places them and sets LISTEN_PID to $$, then waits for a line on its
    stdin (go()) and execs the daemon (same pid).  It is forked before the
    reader opens a file on the mount: a fork made while nobody serves the
    mount would hang closing that descriptor (FUSE_FLUSH), which systemd,
    holding none, never does."""
    with peer.lock:
        stored = list(peer.store)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 50) for _, fd in stored]
    script = "read go || exit 1; export LISTEN_PID=$$; "
    script += "".join("exec %d<&%d %d<&-; " % (3 + k, h, h) for k, h in enumerate(high))
    script += 'exec "$0" "$@"'
    env = dict(d.env(), LISTEN_FDS=str(len(stored)),
               LISTEN_FDNAMES=":".join(name for name, _ in stored))
    logf = open(d.log, "ab")
    try:
        proc = subprocess.Popen(["/bin/bash", "-c", script, TRESOR_BIN, "daemon", str(d.cfg)],
                                stdin=subprocess.PIPE, stdout=logf, stderr=logf,
                                env=env, pass_fds=high, start_new_session=True)
    finally:
        for h in high:
            os.close(h)

    def go():
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        d.proc, d.logf = proc, logf
        ok = wait_for(lambda: d.proc.poll() is not None or d.ready(), 60, 0.1)
        assert ok and d.proc.poll() is None, "the new daemon did not come up:\n" + d.log_text()
    return go


def test_daemon_crash_keeps_the_mounts_in_the_fd_store(make_store, tmp, daemons, bind):
    store = make_store()
    peer = FdStore(tmp / "notify.sock")
    try:
        d = daemon_with_peer(tmp, store, peer)
        daemons.append(d)
        d.start()
        assert wait_for(lambda: peer.said("READY") and peer.names(), 30, 0.1), \
            (peer.messages, d.log_text())
        [name] = peer.names()
        assert name.startswith("tresor-vol-")
        assert fds_entries(store) == [(name, "1", "vol", str(d.mnt["vol"]))]
        # `daemon restart` (a re-exec) carries the name along: stored once
        p = tresor("daemon", "restart", d.cfg, env=d.env(), timeout=120)
        assert p.returncode == 0, p.stderr
        assert len(peer.said("FDSTORE", "1")) == 1 and peer.names() == [name]
        assert fds_entries(store) == [(name, "2", "vol", str(d.mnt["vol"]))]
        body = os.urandom(300000)
        (d.mnt["vol"] / "plan.pdf").write_bytes(body)
        b = bind(d.mnt["vol"])
        go = start_as_systemd(d, peer)
        reader = Reader(b / "plan.pdf", body)
        try:
            assert wait_for(lambda: reader.reads > 3, 30, 0.05), reader.errors[-5:]
            server = pids(d)["vol"]
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
            d.logf.close()
            # its mount process leaves the mount (SIGUSR2 at its parent's death)
            assert wait_for(lambda: gone(server), 30, 0.1), d.log_text()
            assert "detached from %s" % d.mnt["vol"] in d.log_text(), d.log_text()
            # nobody serves it now, and it is still there (no stat: it would wait)
            assert in_mountinfo(d.mnt["vol"])
            assert peer.names() == [name]
            time.sleep(1)	# readers wait in the kernel meanwhile
            go()
            assert pids(d)["vol"] != server
            # the generation goes on from the stored one
            assert fds_entries(store) == [(name, "3", "vol", str(d.mnt["vol"]))]
            n = reader.reads
            assert wait_for(lambda: reader.reads > n + 5, 30, 0.05), reader.errors[-5:]
        finally:
            errors = reader.finish()
        assert not_enotconn(errors) == [], errors[:5]
        assert "goes on from the previous daemon" in d.log_text(), d.log_text()
        assert (b / "plan.pdf").read_bytes() == body
        (b / "after.txt").write_text("written after the daemon crashed\n")
        assert (d.mnt["vol"] / "after.txt").read_text() == "written after the daemon crashed\n"
        assert in_mountinfo(d.mnt["vol"])
        assert d.status()["volumes"][0]["mounted"] is True
        # the new daemon knows the stored connection by its name still
        assert peer.names() == [name]
        # a stop is a stop: unmounted, and taken out of the store
        assert d.stop() == 0
        daemons.remove(d)
        assert not in_mountinfo(d.mnt["vol"])
        assert peer.said("FDSTOREREMOVE", "1") and peer.said("FDNAME", name)
        assert peer.names() == []
        assert fds_entries(store) == []
    finally:
        peer.close()


def test_daemon_crash_unmounts_without_the_fd_store(make_store, tmp, bind):
    store = make_store()
    peer = FdStore(tmp / "notify.sock")
    d = daemon_with_peer(tmp, store, peer, fdstore=False)
    try:
        d.start()
        assert wait_for(lambda: peer.said("READY"), 30, 0.1), d.log_text()
        (d.mnt["vol"] / "f.txt").write_text("x\n")
        b = bind(d.mnt["vol"])
        server = pids(d)["vol"]
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        assert wait_for(lambda: gone(server), 30, 0.1), d.log_text()
        assert wait_for(lambda: not in_mountinfo(d.mnt["vol"]), 30, 0.1), d.log_text()
        assert peer.said("FDSTORE") == [] and peer.names() == []
        try:
            os.listdir(b)
            raise AssertionError("the bind mount still answers")
        except OSError as e:
            assert e.errno == errno.ENOTCONN, e
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        d.logf.close()
        peer.close()
