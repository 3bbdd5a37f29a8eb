"""The WebDAV backend (remote/webdav.c) against a private Apache mod_dav.

The server is Debian's apache2 with mod_dav, mod_dav_fs and mod_ssl,
started by this module on 127.0.0.1 and a free port with its own config
(tests/servers/apache/): TLS with a certificate from a test CA made in
its temp dir, basic auth from an htpasswd file; it is stopped by pid.
The client is build/remote_driver with --netrc and --ca-file.

Environment:
  TRESOR_BUILD_DIR  where remote_driver is (default: the directory of
                    TRESOR_BIN if set, else <repo>/build)
  TRESOR_KEEP_TMP   set to 1 to keep the server's /tmp/tresor-dav-* dir
"""

import hashlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_DIR = REPO / "tests" / "servers" / "apache"
APACHE = "/usr/sbin/apache2"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
USER = "tresor"
PASSWORD = "tresor-test-password"


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


class DavServer:
    """A private Apache serving DIR/dav over WebDAV on HTTPS."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="tresor-dav-", dir="/tmp"))
        self.port = free_port()
        self.proc = None
        subprocess.run([str(SERVER_DIR / "setup.sh"), str(self.dir), str(self.port),
                        USER, PASSWORD], check=True, timeout=60, capture_output=True)
        self.dav = self.dir / "dav"
        self.netrc = self.dir / "netrc"
        self.ca = self.dir / "ca.crt"
        self.log = open(self.dir / "stderr.log", "ab")

    def answers(self):
        ctx = ssl.create_default_context(cafile=str(self.ca))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2, context=ctx)
        try:
            conn.request("OPTIONS", "/")
            return conn.getresponse().status in (200, 401)
        except OSError:
            return False
        finally:
            conn.close()

    def start(self):
        self.proc = subprocess.Popen(
            [APACHE, "-f", str(self.dir / "apache2.conf"), "-DFOREGROUND"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("apache2 exited: %s" % self.log_text())
            if self.answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("apache2 did not answer within %ss: %s"
                           % (START_TIMEOUT, self.log_text()))

    def stop(self, sig=signal.SIGTERM):
        """Stop the parent and every worker."""
        if not self.proc:
            return
        if sig == signal.SIGTERM:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None or sig != signal.SIGTERM:
            signal_tree(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)
        self.proc = None

    def log_text(self):
        text = ""
        for name in ("stderr.log", "error.log"):
            p = self.dir / name
            if p.exists():
                text += p.read_text(errors="replace")[-1500:]
        return text

    def url(self, sub):
        return "https://127.0.0.1:%d/%s" % (self.port, sub)

    def opts(self, netrc=None, ca=True):
        out = ["--netrc", str(netrc or self.netrc)]
        if ca:
            out += ["--ca-file", str(self.ca)]
        return out

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
    if not os.access(APACHE, os.X_OK):
        pytest.fail("%s missing: apt-get install apache2 apache2-utils" % APACHE,
                    pytrace=False)
    srv = DavServer()
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
        self.root = server.dav / sub

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
        if not self.root.exists():
            return []
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
    assert (remote.root / "data" / "ab" / "xyz").read_bytes() == data
    # a second put of the same object is a no-op, not an error
    remote.put("data/ab/xyz", tmp / "obj")
    assert remote.run("delete", "data/ab/xyz").returncode == 0
    r = remote.run("head", "data/ab/xyz")
    assert r.returncode != 0 and "not found" in r.err
    r = remote.run("get", "data/ab/xyz", tmp / "gone")
    assert r.returncode != 0 and "not found" in r.err
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
    """A temporary left by a crashed put is not listed."""
    (tmp / "x").write_bytes(b"abc")
    remote.put("data/cd/real", tmp / "x")
    stale = remote.root / "data" / "cd" / "lost.tmp-0123456789abcdef"
    stale.write_bytes(b"half")
    assert remote.listing("data/") == {"data/cd/real": 3}


def test_wrong_password(remote, server, tmp):
    netrc = tmp / "netrc"
    netrc.write_text("machine 127.0.0.1\nlogin %s\npassword not-the-password\n" % USER)
    netrc.chmod(0o600)
    (tmp / "x").write_bytes(b"abc")
    t0 = time.monotonic()
    r = remote.run("put", "data/x", tmp / "x", opts=server.opts(netrc=netrc), timeout=60)
    assert r.returncode != 0
    assert "login refused" in r.err and str(netrc) in r.err, r.err
    assert PASSWORD not in r.err and "not-the-password" not in r.err
    assert time.monotonic() - t0 < 10, "a refused login must not be retried"
    assert not (remote.root / "data" / "x").exists()


def test_netrc_without_this_host(remote, server, tmp):
    netrc = tmp / "netrc"
    netrc.write_text("machine example.org\nlogin %s\npassword %s\n" % (USER, PASSWORD))
    netrc.chmod(0o600)
    r = remote.run("head", "data/x", opts=server.opts(netrc=netrc), timeout=60)
    assert r.returncode != 0 and "login refused" in r.err, r.err


def test_netrc_readable_by_others(remote, server, tmp):
    netrc = tmp / "netrc"
    shutil.copy(server.netrc, netrc)
    netrc.chmod(0o644)
    r = remote.run("head", "data/x", opts=server.opts(netrc=netrc))
    assert r.returncode != 0
    assert "readable by others" in r.err and str(netrc) in r.err, r.err


def test_missing_netrc(remote, server, tmp):
    r = remote.run("head", "data/x", opts=server.opts(netrc=tmp / "nope"))
    assert r.returncode != 0 and str(tmp / "nope") in r.err, r.err


def test_password_in_url_refused(server, tmp):
    url = "https://%s:%s@127.0.0.1:%d/x" % (USER, PASSWORD, server.port)
    r = subprocess.run([str(driver_path()), url] + server.opts() + ["head", "k"],
                       capture_output=True, timeout=60)
    assert r.returncode != 0
    assert PASSWORD.encode() not in r.stderr


def test_untrusted_certificate(remote, server, tmp):
    """Without the test CA the server's certificate is refused at once."""
    t0 = time.monotonic()
    r = remote.run("head", "data/x", opts=server.opts(ca=False), timeout=60)
    assert r.returncode != 0
    assert "certificate" in r.err, r.err
    assert time.monotonic() - t0 < 10, "a TLS failure must not be retried"


def test_server_killed_mid_upload(remote, server, tmp):
    """kill -9 of the server during a put: the driver gives up in bounded
    time, nothing half-written is visible, and a put after the restart
    succeeds."""
    data = write_random(tmp / "obj", 24 << 20, b"kill")
    (tmp / "x").write_bytes(b"x")
    remote.put("data/kk/first", tmp / "x")      # collections exist
    cmd = [str(driver_path()), remote.url] + server.opts() + [
        "--bwlimit", str(4 << 20), "--timeout", "5", "put", "data/kk/obj", str(tmp / "obj")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(2.0)
        assert proc.poll() is None, "the upload finished too soon"
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
    assert remote.listing("data/") == {"data/kk/first": 1}
    remote.put("data/kk/obj", tmp / "obj")
    assert remote.get("data/kk/obj", tmp / "back") == data
    assert remote.listing("data/") == {"data/kk/first": 1, "data/kk/obj": 24 << 20}


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
    """64 MiB upload: the driver against curl uploading the same file to
    the same server.  Loose bound: it only catches a gross regression."""
    if sanitized():
        pytest.skip("timings mean nothing under sanitizers")
    write_random(tmp / "obj", 64 << 20, b"speed")
    t0 = time.monotonic()
    remote.put("bench/obj", tmp / "obj", timeout=300)
    ours = time.monotonic() - t0
    t0 = time.monotonic()
    subprocess.run(["curl", "-sS", "-o", "/dev/null", "--netrc-file", str(server.netrc),
                    "--cacert", str(server.ca), "-T", str(tmp / "obj"),
                    remote.url + "/bench/curl"], check=True, timeout=300)
    theirs = time.monotonic() - t0
    with capsys.disabled():
        print("\nWebDAV 64 MiB upload: remote_driver %.2fs (%.0f MB/s), curl %.2fs (%.0f MB/s)"
              % (ours, 64 * 1.048576 / ours, theirs, 64 * 1.048576 / theirs))
    assert ours < theirs * 4 + 2
