"""The SFTP backend (remote/sftp.c) against a private OpenSSH sshd.

The server is Debian's /usr/sbin/sshd, started by this module on
127.0.0.1 and a free port with its own config (tests/servers/sshd/), an
ed25519 host key, a key-only user (the current user) and internal-sftp;
it is stopped by pid.  The client is build/remote_driver.

Environment:
  TRESOR_BUILD_DIR  where remote_driver is (default: the directory of
                    TRESOR_BIN if set, else <repo>/build)
  TRESOR_KEEP_TMP   set to 1 to keep the server's /tmp/tresor-sftp-* dir
"""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_DIR = REPO / "tests" / "servers" / "sshd"
SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def driver_path():
    d = os.environ.get("TRESOR_BUILD_DIR")
    if not d and os.environ.get("TRESOR_BIN"):
        d = os.path.dirname(os.path.abspath(os.environ["TRESOR_BIN"]))
    return Path(d or REPO / "build") / "remote_driver"


def sanitized():
    """Is remote_driver built with AddressSanitizer (build-asan)?"""
    r = subprocess.run(["ldd", str(driver_path())], capture_output=True, text=True)
    return "libasan" in r.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    """pid and every process below it (by walking /proc), leaves first."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out = []

    def walk(p):
        for c in children.get(p, []):
            walk(c)
        out.append(p)
    walk(pid)
    return out


def signal_tree(pid, sig):
    for p in descendants(pid):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


class SshServer:
    """A private sshd serving DIR/data over SFTP to the current user."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="tresor-sftp-", dir="/tmp"))
        self.port = free_port()
        self.proc = None
        subprocess.run([str(SERVER_DIR / "setup.sh"), str(self.dir), str(self.port)],
                       check=True, timeout=60, capture_output=True)
        self.data = self.dir / "data"
        self.key = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.user = subprocess.run(["id", "-un"], capture_output=True, text=True,
                                   check=True).stdout.strip()
        self.log = open(self.dir / "sshd.log", "ab")

    def start(self):
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited: %s" % self.log_text())
            r = subprocess.run(["ssh-keyscan", "-T", "2", "-t", "ed25519",
                                "-p", str(self.port), "127.0.0.1"],
                               capture_output=True, text=True, timeout=10)
            if r.returncode == 0 and "ssh-ed25519" in r.stdout:
                if not self.known_hosts.exists():
                    self.known_hosts.write_text(r.stdout)
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("sshd did not answer within %ss" % START_TIMEOUT)

    def stop(self, sig=signal.SIGTERM):
        """Stop the listener and every session process it forked."""
        if not self.proc:
            return
        signal_tree(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            signal_tree(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)
        self.proc = None

    def log_text(self):
        return (self.dir / "sshd.log").read_text(errors="replace")[-2000:]

    def url(self, sub):
        return "sftp://%s@127.0.0.1:%d%s/%s" % (self.user, self.port, self.data, sub)

    def opts(self, key=None, known_hosts=None):
        return ["--ssh-key", str(key or self.key),
                "--known-hosts", str(known_hosts or self.known_hosts)]

    def close(self):
        self.stop()
        self.log.close()
        if os.environ.get("TRESOR_KEEP_TMP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    if not os.access(driver_path(), os.X_OK):
        pytest.fail("remote_driver not found at %s (build it first)" % driver_path(),
                    pytrace=False)
    if not os.access(SSHD, os.X_OK):
        pytest.fail("%s missing: apt-get install openssh-server" % SSHD, pytrace=False)
    srv = SshServer()
    try:
        srv.start()
        yield srv
    finally:
        srv.close()


@pytest.fixture
def remote(server, request):
    """A base URL of its own for each test, and a runner for the driver."""
    sub = request.node.name.replace("[", "_").replace("]", "")
    return Remote(server, sub)


class Remote:
    def __init__(self, server, sub):
        self.server = server
        self.sub = sub
        self.url = server.url(sub)
        self.root = server.data / sub

    def run(self, *args, opts=None, timeout=120, check=False):
        cmd = [str(driver_path()), self.url] + (
            opts if opts is not None else self.server.opts()) + [str(a) for a in args]
        r = subprocess.run(cmd, capture_output=True, timeout=timeout)
        r.err = r.stderr.decode(errors="replace")
        r.out = r.stdout.decode(errors="replace")
        if check and r.returncode != 0:
            raise AssertionError("%s failed (%d): %s" % (args, r.returncode, r.err))
        return r

    def put(self, key, path, **kw):
        return self.run("put", key, path, check=True, **kw)

    def get(self, key, path, *extra):
        self.run("get", key, path, *extra, check=True)
        return Path(path).read_bytes()

    def listing(self, prefix):
        r = self.run("list", prefix, check=True)
        out = {}
        for line in r.out.splitlines():
            k, size = line.rsplit(" ", 1)
            assert k not in out, "key listed twice: %s" % k
            out[k] = int(size)
        return out

    def temps_on_disk(self):
        return [str(p) for p in self.root.rglob("*") if ".tmp-" in p.name]


def write_random(path, size, seed=b""):
    """Deterministic pseudo-random bytes (fast, incompressible)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest() * 64
        counter += 1
    data = bytes(out[:size])
    Path(path).write_bytes(data)
    return data


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


def test_roundtrip(remote, tmp):
    data = write_random(tmp / "obj", 100_000, b"rt")
    remote.put("data/ab/xyz", tmp / "obj")
    assert remote.run("head", "data/ab/xyz", check=True).out.strip() == "100000"
    assert remote.get("data/ab/xyz", tmp / "back") == data
    assert remote.listing("data/") == {"data/ab/xyz": 100000}
    assert remote.listing("") == {"data/ab/xyz": 100000}
    assert remote.listing("data/ab/") == {"data/ab/xyz": 100000}
    assert remote.listing("data/a") == {"data/ab/xyz": 100000}
    assert remote.listing("data/b") == {}
    assert remote.listing("meta/") == {}
    # the file on the server is the same bytes, private to its owner
    on_disk = remote.root / "data" / "ab" / "xyz"
    assert on_disk.read_bytes() == data
    assert on_disk.stat().st_mode & 0o077 == 0
    # a second put of the same object is a no-op, not an error
    remote.put("data/ab/xyz", tmp / "obj")
    assert remote.run("delete", "data/ab/xyz").returncode == 0
    r = remote.run("head", "data/ab/xyz")
    assert r.returncode != 0 and "no such file" in r.err
    r = remote.run("get", "data/ab/xyz", tmp / "gone")
    assert r.returncode != 0 and "no such file" in r.err
    assert remote.run("delete", "data/ab/xyz").returncode == 0, "deleting a missing key is fine"
    assert remote.listing("data/") == {}
    assert remote.temps_on_disk() == []


def test_empty_object(remote, tmp):
    (tmp / "empty").write_bytes(b"")
    remote.put("meta/empty", tmp / "empty")
    assert remote.run("head", "meta/empty", check=True).out.strip() == "0"
    assert remote.get("meta/empty", tmp / "back") == b""
    assert remote.listing("meta/") == {"meta/empty": 0}


def test_range_get(remote, tmp):
    data = write_random(tmp / "obj", 70_000, b"range")
    remote.put("data/r1", tmp / "obj")
    for off, length in [(0, 10), (10, 20), (65536, 1000), (69_990, 10)]:
        got = remote.get("data/r1", tmp / "part", "--offset", off, "--length", length)
        assert got == data[off:off + length], (off, length)
    # a range running past the end returns what is there
    assert remote.get("data/r1", tmp / "part", "--offset", 69_995, "--length", 20) == data[69_995:]
    assert remote.get("data/r1", tmp / "part", "--offset", 70_000, "--length", 5) == b""


def test_big_object(remote, tmp):
    data = write_random(tmp / "big", 20 << 20, b"big")
    remote.put("data/bb/big", tmp / "big")
    assert remote.run("head", "data/bb/big", check=True).out.strip() == str(20 << 20)
    back = remote.get("data/bb/big", tmp / "back")
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    got = remote.get("data/bb/big", tmp / "part", "--offset", 7 << 20, "--length", 3 << 20)
    assert got == data[7 << 20:10 << 20]
    assert remote.temps_on_disk() == []


def test_list_many(remote, tmp):
    (tmp / "small").write_bytes(b"0123456789")
    want = {}
    for d in ("00", "3f", "a7", "ff", "c0", "11"):
        remote.run("putmany", "data/%s/obj" % d, 50, tmp / "small", check=True, timeout=300)
        for i in range(50):
            want["data/%s/obj%06d" % (d, i)] = 10
    remote.put("meta/00000001", tmp / "small")
    got = remote.listing("data/")
    assert len(got) == 300
    assert got == want
    assert remote.listing("meta/") == {"meta/00000001": 10}
    assert len(remote.listing("")) == 301
    assert remote.listing("data/a7/") == {k: v for k, v in want.items()
                                          if k.startswith("data/a7/")}
    assert remote.temps_on_disk() == []


def test_temporaries_never_listed(remote, tmp):
    """A temporary left by a crashed put is neither listed nor found."""
    (tmp / "x").write_bytes(b"abc")
    remote.put("data/cd/real", tmp / "x")
    stale = remote.root / "data" / "cd" / "lost.tmp-0123456789abcdef"
    stale.write_bytes(b"half")
    assert remote.listing("data/") == {"data/cd/real": 3}


def test_wrong_host_key(remote, server, tmp):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp / "other")], check=True)
    pub = (tmp / "other.pub").read_text().split()
    kh = tmp / "known_hosts"
    kh.write_text("[127.0.0.1]:%d %s %s\n" % (server.port, pub[0], pub[1]))
    (tmp / "x").write_bytes(b"abc")
    t0 = time.monotonic()
    r = remote.run("put", "data/x", tmp / "x", opts=server.opts(known_hosts=kh), timeout=60)
    assert r.returncode != 0
    assert "does NOT match" in r.err and str(kh) in r.err, r.err
    assert time.monotonic() - t0 < 10, "a host key mismatch must not be retried"
    assert not (remote.root / "data" / "x").exists()


def test_unknown_host(remote, server, tmp):
    """known_hosts without this server: refused, with the ssh-keyscan line."""
    kh = tmp / "known_hosts"
    line = server.known_hosts.read_text().splitlines()[0].split(None, 1)[1]
    kh.write_text("[127.0.0.1]:1 %s\n" % line)
    r = remote.run("head", "data/x", opts=server.opts(known_hosts=kh), timeout=60)
    assert r.returncode != 0
    assert "not in %s" % kh in r.err, r.err
    assert "ssh-keyscan -p %d 127.0.0.1 >> %s" % (server.port, kh) in r.err, r.err


def test_missing_known_hosts(remote, server, tmp):
    r = remote.run("head", "data/x", opts=server.opts(known_hosts=tmp / "nope"))
    assert r.returncode != 0
    assert "known_hosts" in r.err and "ssh-keyscan" in r.err, r.err


def test_key_readable_by_others(remote, server, tmp):
    key = tmp / "key"
    shutil.copy(server.key, key)
    key.chmod(0o644)
    r = remote.run("head", "data/x", opts=server.opts(key=key))
    assert r.returncode != 0
    assert "readable by others" in r.err and str(key) in r.err, r.err


def test_key_not_authorized(remote, server, tmp):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp / "stranger")], check=True)
    r = remote.run("head", "data/x", opts=server.opts(key=tmp / "stranger"), timeout=60)
    assert r.returncode != 0
    assert "refused the SSH key" in r.err, r.err


def test_server_killed_mid_upload(remote, server, tmp):
    """kill -9 of the server during a put: the driver gives up in bounded
    time, nothing half-written is visible, and a put after the restart
    succeeds."""
    data = write_random(tmp / "obj", 24 << 20, b"kill")
    cmd = [str(driver_path()), remote.url] + server.opts() + [
        "--bwlimit", str(4 << 20), "--timeout", "5", "put", "data/kk/obj", str(tmp / "obj")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        part = None
        while time.monotonic() < deadline and part is None:
            parts = [p for p in (remote.root / "data" / "kk").glob("obj.tmp-*")
                     if p.stat().st_size > (1 << 20)] if (remote.root / "data" / "kk").exists() else []
            part = parts[0] if parts else None
            time.sleep(0.05)
        assert part is not None, "the upload did not start"
        t0 = time.monotonic()
        server.stop(signal.SIGKILL)
        out, err = proc.communicate(timeout=90)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server.proc is None:
            server.start()
    assert proc.returncode != 0
    assert took < 60, "the driver took %.1fs to give up" % took
    assert b"connect" in err.lower(), err
    assert not (remote.root / "data" / "kk" / "obj").exists()
    assert remote.listing("data/") == {}
    remote.put("data/kk/obj", tmp / "obj")
    assert remote.get("data/kk/obj", tmp / "back") == data
    assert remote.listing("data/") == {"data/kk/obj": 24 << 20}


def test_server_stalled(remote, server, tmp):
    """A server that stops answering (SIGSTOP) does not hang the driver."""
    write_random(tmp / "obj", 8 << 20, b"stall")
    cmd = [str(driver_path()), remote.url] + server.opts() + [
        "--bwlimit", str(1 << 20), "--timeout", "1", "put", "data/st/obj", str(tmp / "obj")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stopped = False
    try:
        time.sleep(1.5)
        signal_tree(server.proc.pid, signal.SIGSTOP)
        stopped = True
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if stopped:
            signal_tree(server.proc.pid, signal.SIGCONT)
    assert proc.returncode != 0
    assert took < 90, "the driver took %.1fs to give up" % took
    assert not (remote.root / "data" / "st" / "obj").exists()
    remote.put("data/st/obj", tmp / "obj")
    assert remote.listing("data/st/") == {"data/st/obj": 8 << 20}


def test_upload_speed(remote, server, tmp, capsys):
    """64 MiB upload: the driver against curl's own SFTP upload of the same
    file to the same server (both over one fresh connection).  Loose bound:
    it only catches a stop-and-wait regression."""
    if sanitized():
        pytest.skip("timings mean nothing under sanitizers")
    write_random(tmp / "obj", 64 << 20, b"speed")
    t0 = time.monotonic()
    remote.put("bench/obj", tmp / "obj", timeout=300)
    ours = time.monotonic() - t0
    fp = subprocess.run(["ssh-keygen", "-lf", str(server.known_hosts), "-E", "sha256"],
                        capture_output=True, text=True, check=True).stdout.split()[1]
    t0 = time.monotonic()
    subprocess.run(["curl", "-sS", "--key", str(server.key), "--pubkey",
                    str(server.key) + ".pub", "--hostpubsha256", fp.split(":", 1)[1],
                    "-T", str(tmp / "obj"), remote.url + "/bench/curl"],
                   check=True, timeout=300)
    theirs = time.monotonic() - t0
    with capsys.disabled():
        print("\nSFTP 64 MiB upload: remote_driver %.2fs (%.0f MB/s), curl %.2fs (%.0f MB/s)"
              % (ours, 64 * 1.048576 / ours, theirs, 64 * 1.048576 / theirs))
    assert ours < theirs * 4 + 2
