"""The S3 remote backend (remote/s3.c) against a real S3-compatible server.

The server is @20minutes/s3rver (npm; it checks SigV4 signatures, unlike
s3rver 3.x), installed into tests/servers/s3rver/node_modules on first use
(`npm ci`, bounded time) and started once per session on a free port of
127.0.0.1 by tests/servers/s3rver/start.js: one bucket, one key pair, the
default account revoked, unsigned requests refused.  It is stopped by pid
at the end.  awscli (Debian's `aws`) is the independent second client
that must read back byte for byte what tresor wrote.

remote_driver (tests/unit/remote_driver.c) is the client under test:
`remote_driver s3://BUCKET/PREFIX --endpoint http://127.0.0.1:PORT ...
put KEY FILE | get KEY FILE [--offset N --length N] | head KEY |
delete KEY | list PREFIX | putmany PREFIX N FILE`.

Each test works under its own prefix of the shared bucket.  Tests that
kill, restart or stop the server restore it before they end.

Environment:
  TRESOR_BUILD_DIR  where remote_driver is (default: the directory of
                    TRESOR_BIN if set, else <repo>/build)
  AWS_CLI           the aws binary (default /usr/bin/aws, else aws on PATH)
  TRESOR_KEEP_TMP   1: keep the server's directory and log
"""

import hashlib
import hmac
import http.server
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import check_sanitizer_text

REPO = Path(__file__).resolve().parents[2]
S3RVER_DIR = REPO / "tests" / "servers" / "s3rver"
BUCKET = "tresor-test"
ACCESS_KEY = "AKIATRESORTEST000001"
SECRET_KEY = "tresorTestSecret/Key+0123456789abcdefghij"
NPM_TIMEOUT = 600
START_TIMEOUT = 30
MiB = 1 << 20


def driver_path():
    d = os.environ.get("TRESOR_BUILD_DIR")
    if not d and os.environ.get("TRESOR_BIN"):
        d = os.path.dirname(os.path.abspath(os.environ["TRESOR_BIN"]))
    return Path(d or REPO / "build") / "remote_driver"


DRIVER = driver_path()


def aws_cli():
    a = os.environ.get("AWS_CLI")
    if a:
        return a
    if os.path.exists("/usr/bin/aws"):
        return "/usr/bin/aws"
    return shutil.which("aws")


def clean_env(**extra):
    """The environment without any AWS_* setting of the machine, HOME
    pointing nowhere useful (no ~/.aws), plus extra (None deletes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------
def npm_install():
    """Install s3rver into tests/servers/s3rver/node_modules once."""
    marker = S3RVER_DIR / "node_modules" / "@20minutes" / "s3rver" / "package.json"
    if marker.exists():
        return
    npm = shutil.which("npm")
    if not shutil.which("node") or not npm:
        pytest.fail("node and npm are needed for the S3 tests "
                    "(tools/install-deps.sh installs nodejs and npm)")
    cmd = [npm, "ci" if (S3RVER_DIR / "package-lock.json").exists() else "install",
           "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        p = subprocess.run(cmd, cwd=S3RVER_DIR, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=NPM_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("%s timed out after %d s" % (" ".join(cmd), NPM_TIMEOUT))
    if p.returncode != 0 or not marker.exists():
        pytest.fail("%s failed:\n%s" % (" ".join(cmd),
                                        p.stdout.decode(errors="replace")[-3000:]))


class S3rver:
    """One s3rver process; restartable on the same port and directory."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.data = workdir / "data"
        self.data.mkdir()
        self.log = workdir / "s3rver.log"
        self.port = free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.proc = None
        self.starts = 0

    def start(self):
        env = clean_env(S3RVER_ACCESS_KEY=ACCESS_KEY, S3RVER_SECRET_KEY=SECRET_KEY)
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                ["node", "--openssl-legacy-provider", "start.js",
                 "--port", str(self.port), "--dir", str(self.data),
                 "--bucket", BUCKET, "--verbose"],
                cwd=S3RVER_DIR, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("s3rver exited (%d):\n%s" %
                            (self.proc.returncode, self.log_tail()))
            if self.log_text().count("ready %d" % self.port) >= self.starts:
                try:
                    socket.create_connection(("127.0.0.1", self.port), 1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        self.kill9()
        pytest.fail("s3rver did not start within %d s:\n%s" %
                    (START_TIMEOUT, self.log_tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if not self.running():
            return
        os.kill(self.proc.pid, signal.SIGCONT)
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill9()

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def ensure_running(self):
        if self.running():
            self.signal(signal.SIGCONT)
        else:
            self.start()

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=3000):
        return self.log_text()[-n:]


@pytest.fixture(scope="session")
def s3server():
    if not DRIVER.exists():
        pytest.fail("remote_driver not built: %s (run ninja -C build)" % DRIVER)
    npm_install()
    workdir = Path(tempfile.mkdtemp(prefix="tresor-s3rver-"))
    srv = S3rver(workdir)
    srv.start()
    yield srv
    srv.stop()
    if os.environ.get("TRESOR_KEEP_TMP") != "1":
        shutil.rmtree(workdir, ignore_errors=True)


class S3Remote:
    """A unique prefix of the test bucket, and ways to drive it."""

    def __init__(self, srv, tmp, name):
        self.srv = srv
        self.tmp = tmp
        self.prefix = "t/%s-%s" % (name[:40], uuid.uuid4().hex[:8])
        self.url = "s3://%s/%s" % (BUCKET, self.prefix)
        self.home = tmp / "home"
        self.home.mkdir()

    def env(self, **extra):
        base = dict(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                    HOME=self.home)
        base.update(extra)
        return clean_env(**base)

    def run(self, *args, env=None, timeout=120, check=True, url=None):
        cmd = [str(DRIVER), url or self.url, "--endpoint", self.srv.endpoint]
        cmd += [str(a) for a in args]
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout,
                           env=env if env is not None else self.env())
        self.elapsed = time.monotonic() - t0
        out = p.stdout.decode(errors="replace")
        err = p.stderr.decode(errors="replace")
        check_sanitizer_text(err, " ".join(cmd))
        if check and p.returncode != 0:
            raise AssertionError("remote_driver failed (%d): %s\n%s" %
                                 (p.returncode, " ".join(cmd), err))
        return p.returncode, out, err

    def put(self, key, data, *extra):
        f = self.tmp / "put.bin"
        f.write_bytes(data)
        self.run("put", key, f, *extra)

    def get(self, key, *extra):
        f = self.tmp / "get.bin"
        if f.exists():
            f.unlink()
        self.run("get", key, f, *extra)
        return f.read_bytes()

    def head(self, key):
        return int(self.run("head", key)[1].strip())

    def list(self, prefix=""):
        res = {}
        for line in self.run("list", prefix)[1].splitlines():
            key, size = line.rsplit(" ", 1)
            assert key not in res, "key listed twice: %s" % key
            res[key] = int(size)
        return res

    def aws(self, *args, check=True):
        cli = aws_cli()
        if not cli:
            pytest.fail("awscli is needed (Debian package awscli)")
        env = clean_env(AWS_ACCESS_KEY_ID=ACCESS_KEY,
                        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                        AWS_DEFAULT_REGION="us-east-1", HOME=self.home,
                        AWS_CONFIG_FILE=self.home / "aws-config",
                        AWS_SHARED_CREDENTIALS_FILE=self.home / "aws-credentials",
                        AWS_PAGER="")
        cmd = [cli, "--endpoint-url", self.srv.endpoint] + [str(a) for a in args]
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError("aws failed (%d): %s\n%s" %
                                 (p.returncode, " ".join(cmd),
                                  p.stderr.decode(errors="replace")))
        return p

    def aws_get_all(self):
        """Everything under the prefix, fetched by one `aws s3 cp
        --recursive` (awscli takes a second to start)."""
        d = self.tmp / "aws-all"
        shutil.rmtree(d, ignore_errors=True)
        self.aws("s3", "cp", "--recursive", "--only-show-errors",
                 "s3://%s/%s/" % (BUCKET, self.prefix), d)
        res = {}
        for root, _, files in os.walk(d):
            for name in files:
                path = Path(root) / name
                res[str(path.relative_to(d))] = path.read_bytes()
        return res

    def aws_get(self, key):
        f = self.tmp / "aws-get.bin"
        if f.exists():
            f.unlink()
        self.aws("s3api", "get-object", "--bucket", BUCKET,
                 "--key", "%s/%s" % (self.prefix, key), f)
        return f.read_bytes()


@pytest.fixture
def s3(s3server, request):
    s3server.ensure_running()
    tmp = Path(tempfile.mkdtemp(prefix="tresor-s3-test-"))
    name = request.node.name.replace("[", "-").replace("]", "")
    yield S3Remote(s3server, tmp, name)
    s3server.ensure_running()       # a test that broke the server repairs it
    if os.environ.get("TRESOR_KEEP_TMP") != "1":
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------
def test_server_refuses_unsigned_and_wrong_secrets(s3server):
    """The test server itself: no anonymous access (else the other tests
    prove nothing about signing)."""
    url = "%s/%s?list-type=2" % (s3server.endpoint, BUCKET)
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(url, timeout=10)
    assert ei.value.code == 403


def test_roundtrip(s3):
    data = os.urandom(300_000)
    s3.put("data/ab/ab12ef", data)
    s3.put("meta/00000001", b"m1")
    s3.put("empty", b"")
    assert s3.get("data/ab/ab12ef") == data
    assert s3.get("empty") == b""
    assert s3.head("data/ab/ab12ef") == 300_000
    assert s3.head("empty") == 0
    assert s3.list() == {"data/ab/ab12ef": 300_000, "meta/00000001": 2, "empty": 0}
    assert s3.list("data/") == {"data/ab/ab12ef": 300_000}
    assert s3.list("nothing/") == {}

    s3.run("delete", "data/ab/ab12ef")
    s3.run("delete", "data/ab/ab12ef")          # missing: not an error
    rc, _, err = s3.run("get", "data/ab/ab12ef", s3.tmp / "x", check=False)
    assert rc != 0 and s3.url in err and "NoSuchKey" in err
    assert s3.elapsed < 5, "a missing key must not be retried"
    rc, _, err = s3.run("head", "data/ab/ab12ef", check=False)
    assert rc != 0 and "not found" in err
    assert s3.list() == {"meta/00000001": 2, "empty": 0}


def test_range_get(s3):
    data = os.urandom(100_000)
    s3.put("obj", data)
    for off, length in [(0, 1), (10, 20), (99_990, 10), (99_990, 100),
                        (50_000, 0), (0, 100_000), (100_000, 5), (250_000, 0)]:
        want = data[off:off + length] if length else data[off:]
        got = s3.get("obj", "--offset", off, "--length", length)
        assert got == want, (off, length)


def test_multipart_40mib(s3):
    data = os.urandom(MiB) * 40 + os.urandom(12345)
    before = s3.srv.log_text().count("partNumber=")
    s3.put("data/big", data)
    log = s3.srv.log_text()
    # 8 MiB parts: 5 full ones and the rest
    assert log.count("partNumber=") - before == 6, "not a multipart upload"
    assert s3.head("data/big") == len(data)
    got = s3.get("data/big")
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert s3.aws_get("data/big") == data
    mid = 20 * MiB - 7
    assert s3.get("data/big", "--offset", mid, "--length", 4096) == data[mid:mid + 4096]


def test_list_paginates(s3):
    f = s3.tmp / "tiny"
    f.write_bytes(b"tiny")
    s3.run("putmany", "data/o", 1100, f, timeout=300)
    s3.put("other/x", b"x")
    before = s3.srv.log_text().count("continuation-token=")
    lst = s3.list("data/")
    # s3rver writes its log through a pipe: on a loaded machine the line of
    # the second request may land a moment after the reply (bounded wait).
    deadline = time.monotonic() + 10
    while (s3.srv.log_text().count("continuation-token=") <= before
           and time.monotonic() < deadline):
        time.sleep(0.1)
    assert s3.srv.log_text().count("continuation-token=") > before, "no second page"
    assert len(lst) == 1100
    assert set(lst) == {"data/o%06d" % i for i in range(1100)}
    assert set(lst.values()) == {4}
    assert len(s3.list()) == 1101


def test_list_order_independence(s3):
    keys = ["data/%02x/%02x%s" % (i % 5, i, "f" * (i % 4)) for i in range(30)]
    keys += ["data/a", "data/ab", "data/ab/c", "datax/y", "meta/00000009"]
    order = keys[:]
    random.Random(7).shuffle(order)
    for k in order:
        s3.put(k, k.encode())
    assert s3.list() == {k: len(k) for k in keys}
    assert set(s3.list("data/a")) == {"data/a", "data/ab", "data/ab/c"}
    assert set(s3.list("data/ab/")) == {"data/ab/c"}
    assert set(s3.list("data")) == {k for k in keys if k.startswith("data")}


def test_wrong_secret_refused(s3):
    s3.put("k", b"right")
    wrong = "WrongSecretKey/0000000000+abcdefghijklmno"
    rc, out, err = s3.run("put", "k", s3.tmp / "put.bin", check=False,
                          env=s3.env(AWS_SECRET_ACCESS_KEY=wrong))
    assert rc != 0
    assert len(err.strip().splitlines()) == 1, err
    assert s3.url in err
    assert "SignatureDoesNotMatch" in err and "AWS_SECRET_ACCESS_KEY" in err
    assert s3.elapsed < 5, "a refused signature must not be retried"
    for secret in (wrong, SECRET_KEY, wrong[:12], SECRET_KEY[:12]):
        assert secret not in out + err
    rc, out, err = s3.run("list", "", check=False,
                          env=s3.env(AWS_ACCESS_KEY_ID="AKIANOSUCHKEY0000000"))
    assert rc != 0 and "InvalidAccessKeyId" in err and s3.url in err
    assert SECRET_KEY not in out + err
    assert s3.get("k") == b"right"


def test_odd_but_legal_keys(s3):
    keys = ["-", "_", ".x", "a.b/c-d_e.f", "UPPER/lower/0123456789",
            "a/-/_/.hidden", "x--y__z.w.", "-lead/_lead/.lead",
            "deep/" * 30 + "end", "L" * 200 + "/" + "m" * 200]
    for i, k in enumerate(keys):
        s3.put(k, b"%d:%s" % (i, k.encode()))
    assert s3.list() == {k: len(b"%d:%s" % (i, k.encode()))
                         for i, k in enumerate(keys)}
    want = {k: b"%d:%s" % (i, k.encode()) for i, k in enumerate(keys)}
    for k in keys:
        assert s3.get(k) == want[k]
    assert s3.aws_get_all() == want
    # illegal keys never reach the server
    f = s3.tmp / "put.bin"
    for k in ["../x", "a..b", "/abs", "a//b", "a b", "a+b", "a~b", "a/./b",
              "x/", "caf\u00e9", "a%2Fb", "a?b", "a#b"]:
        rc, _, err = s3.run("put", k, f, check=False)
        assert rc != 0 and s3.url in err, k
    assert len(s3.list()) == len(keys)


def test_awscli_reads_what_tresor_wrote(s3):
    blobs = {"data/%02d" % i: os.urandom(random.Random(i).randrange(1, 200_000))
             for i in range(5)}
    for k, v in blobs.items():
        s3.put(k, v)
    assert s3.aws_get("data/01") == blobs["data/01"]     # s3api get-object
    assert s3.aws_get_all() == blobs                      # s3 cp --recursive
    p = s3.aws("s3api", "list-objects-v2", "--bucket", BUCKET,
               "--prefix", s3.prefix + "/", "--query", "Contents[].[Key,Size]",
               "--output", "text")
    seen = {}
    for line in p.stdout.decode().splitlines():
        k, sz = line.split()
        seen[k] = int(sz)
    assert seen == {"%s/%s" % (s3.prefix, k): len(v) for k, v in blobs.items()}
    # and the other way round
    f = s3.tmp / "from-aws.bin"
    f.write_bytes(os.urandom(70_000))
    s3.aws("s3api", "put-object", "--bucket", BUCKET,
           "--key", s3.prefix + "/from/aws", "--body", f)
    assert s3.get("from/aws") == f.read_bytes()
    # a foreign object whose name is no valid key is not listed
    s3.aws("s3api", "put-object", "--bucket", BUCKET,
           "--key", s3.prefix + "/from/not a+key", "--body", f)
    assert set(s3.list("from/")) == {"from/aws"}


def test_session_token_is_signed(s3):
    s3.put("k", b"with token")
    rc, out, _ = s3.run("head", "k", env=s3.env(AWS_SESSION_TOKEN="FQoGZXIvYXdzEXAMPLE"))
    assert rc == 0 and out.strip() == "10"


def test_server_killed_midway_then_restarted(s3):
    """kill -9 during a slow 40 MiB upload: the driver gives up with an
    error in bounded time (retries with backoff, no hang); nothing partial
    is visible; after a restart the next put succeeds."""
    data = os.urandom(MiB) * 40 + b"tail"
    f = s3.tmp / "big.bin"
    f.write_bytes(data)
    cmd = [str(DRIVER), s3.url, "--endpoint", s3.srv.endpoint,
           "--bwlimit", 4 * MiB, "--timeout", 5, "put", "data/big", f]
    t0 = time.monotonic()
    p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=s3.env())
    try:
        time.sleep(2.5)
        assert p.poll() is None, "upload finished before the kill"
        s3.srv.kill9()
        _, err = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    elapsed = time.monotonic() - t0
    err = err.decode(errors="replace")
    check_sanitizer_text(err, "remote_driver put (killed server)")
    assert p.returncode != 0
    assert s3.url in err and "gave up" in err, err
    assert elapsed < 60

    s3.srv.start()
    rc, _, err = s3.run("head", "data/big", check=False)
    assert rc != 0 and "not found" in err      # no partial object
    assert "data/big" not in s3.list()
    s3.put("data/big", data)
    assert s3.head("data/big") == len(data)
    assert s3.aws_get("data/big") == data


def test_server_restarted_during_put(s3):
    """A server that comes back while the driver is backing off: the
    retried put succeeds and the object is whole."""
    data = os.urandom(MiB) * 24
    f = s3.tmp / "big.bin"
    f.write_bytes(data)
    cmd = [str(DRIVER), s3.url, "--endpoint", s3.srv.endpoint,
           "--bwlimit", 4 * MiB, "put", "data/big", f]
    p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=s3.env())
    try:
        time.sleep(2)
        assert p.poll() is None, "upload finished before the kill"
        s3.srv.kill9()
        time.sleep(1)
        s3.srv.start()
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = err.decode(errors="replace")
    check_sanitizer_text(err, "remote_driver put (restarted server)")
    assert p.returncode == 0, err
    assert s3.get("data/big") == data


def test_stalled_server_times_out(s3):
    """A server that accepts connections but never answers (SIGSTOP):
    each attempt ends after --timeout seconds without progress and the
    driver gives up in bounded time."""
    s3.put("k", b"x")
    s3.srv.signal(signal.SIGSTOP)
    try:
        rc, _, err = s3.run("head", "k", "--timeout", 1, check=False, timeout=90)
    finally:
        s3.srv.signal(signal.SIGCONT)
    assert rc != 0 and s3.url in err and "gave up" in err, err
    assert s3.elapsed < 60
    assert s3.head("k") == 1


def test_credentials_file(s3):
    """Without the environment, the AWS credentials file is used; one
    that others can read is refused with a message saying how to fix it."""
    creds = s3.tmp / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIAWRONG\n"
                     "aws_secret_access_key = nope\n\n"
                     "[tresor]\naws_access_key_id = %s\n"
                     "aws_secret_access_key = %s\n" % (ACCESS_KEY, SECRET_KEY))
    env = s3.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)

    os.chmod(creds, 0o644)
    rc, out, err = s3.run("list", "", "--credentials-file", creds,
                          "--profile", "tresor", env=env, check=False)
    assert rc != 0
    assert "credentials file %s is readable by others: chmod 600 %s" % (creds, creds) in err
    assert SECRET_KEY not in out + err

    os.chmod(creds, 0o600)
    s3.run("put", "k", creds, "--credentials-file", creds, "--profile", "tresor",
           env=env)
    # the profile from AWS_PROFILE, the file from ~/.aws/credentials
    (s3.home / ".aws").mkdir()
    shutil.copy(creds, s3.home / ".aws" / "credentials")
    os.chmod(s3.home / ".aws" / "credentials", 0o600)
    rc, out, _ = s3.run("head", "k", env=dict(env, AWS_PROFILE="tresor"))
    assert out.strip() == str(creds.stat().st_size)
    # the default profile holds a wrong key: refused, named (a HEAD reply
    # has no body to say which part is wrong)
    rc, out, err = s3.run("head", "k", env=env, check=False)
    assert rc != 0 and "403" in err and s3.url in err
    rc, out, err = s3.run("list", "", env=env, check=False)
    assert rc != 0 and "InvalidAccessKeyId" in err and s3.url in err
    os.chmod(s3.home / ".aws" / "credentials", 0o640)
    rc, _, err = s3.run("head", "k", env=dict(env, AWS_PROFILE="tresor"), check=False)
    assert rc != 0 and "readable by others" in err
    # no credentials anywhere: a clear message
    os.unlink(s3.home / ".aws" / "credentials")
    rc, _, err = s3.run("head", "k", env=env, check=False)
    assert rc != 0 and "AWS_ACCESS_KEY_ID" in err and s3.url in err


def test_bad_urls_and_options(s3):
    for url, msg in [("s3://", "bucket name"), ("s3://AB", "bucket name"),
                     ("s3://user:pw@bucket/p", "credentials are never taken"),
                     ("s3://bucket/../x", "prefix")]:
        rc, _, err = s3.run("list", "", url=url, check=False)
        assert rc != 0 and msg in err, (url, err)
    rc, _, err = s3.run("list", "", "--region", "us-east-1:evil", check=False)
    assert rc != 0 and "region" in err


# --------------------------------------------------------------------------
# virtual-hosted style, checked against an independent SigV4 computation
# (s3rver's own virtual-host signature check is broken, TESTBED.md)
# --------------------------------------------------------------------------
def sigv4_expected(method, path, query, headers, secret):
    """The signature AWS would compute for a received request (stdlib
    only): canonical query rebuilt from the decoded parameters, headers
    as listed in SignedHeaders."""
    auth = headers["authorization"]
    algo, rest = auth.split(" ", 1)
    parts = dict(p.strip().split("=", 1) for p in rest.split(","))
    _, date, region, service, _ = parts["Credential"].split("/")
    signed = parts["SignedHeaders"].split(";")
    q = urllib.parse.parse_qsl(query, keep_blank_values=True)
    enc = lambda v: urllib.parse.quote(v, safe="-_.~")
    cq = "&".join("%s=%s" % (enc(k), enc(v)) for k, v in sorted(q))
    ch = "".join("%s:%s\n" % (h, " ".join(headers[h].split())) for h in signed)
    creq = "\n".join([method, path, cq, ch, ";".join(signed),
                      headers["x-amz-content-sha256"]])
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    sts = "\n".join([algo, headers["x-amz-date"], scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for m in (date, region, service, "aws4_request"):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    return parts["Signature"], hmac.new(k, sts.encode(), hashlib.sha256).hexdigest(), signed


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers HEAD with a 5-byte object and GET with an empty listing,
    recording every request."""
    seen = []

    def log_message(self, *a):
        pass

    def record(self):
        path, _, query = self.path.partition("?")
        self.seen.append((self.command, path, query,
                          {k.lower(): v for k, v in self.headers.items()}))

    def do_HEAD(self):
        self.record()
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()

    def do_GET(self):
        self.record()
        body = (b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
                b'<IsTruncated>false</IsTruncated></ListBucketResult>')
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("style", ["--virtual", "--path-style"])
def test_signing_virtual_and_path_style(style, tmp_path):
    if not DRIVER.exists():
        pytest.fail("remote_driver not built: %s" % DRIVER)
    Recorder.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    port = srv.server_address[1]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        # curl resolves *.localhost to the loopback itself
        env = clean_env(AWS_ACCESS_KEY_ID=ACCESS_KEY,
                        AWS_SECRET_ACCESS_KEY=SECRET_KEY, HOME=tmp_path)
        base = [str(DRIVER), "s3://my-bucket/pre.fix", "--endpoint",
                "http://localhost:%d" % port, "--region", "eu-central-1", style]
        for args in (["head", "data/ab/x-y_z.1"], ["list", "data/a"]):
            p = subprocess.run(base + args, stdin=subprocess.DEVNULL,
                               capture_output=True, env=env, timeout=60)
            check_sanitizer_text(p.stderr.decode(), "remote_driver")
            assert p.returncode == 0, p.stderr.decode()
    finally:
        srv.shutdown()
        srv.server_close()
    (m1, path1, q1, h1), (m2, path2, q2, h2) = Recorder.seen
    if style == "--virtual":
        assert h1["host"] == "my-bucket.localhost:%d" % port
        assert path1 == "/pre.fix/data/ab/x-y_z.1"
        assert path2 == "/"
    else:
        assert h1["host"] == "localhost:%d" % port
        assert path1 == "/my-bucket/pre.fix/data/ab/x-y_z.1"
        assert path2 == "/my-bucket"
    assert m1 == "HEAD" and q1 == ""
    # sorted, RFC 3986: '/' in a value is %2F
    assert m2 == "GET" and q2 == "list-type=2&prefix=pre.fix%2Fdata%2Fa"
    for m, path, q, h in Recorder.seen:
        assert h["x-amz-content-sha256"] == hashlib.sha256(b"").hexdigest()
        got, want, signed = sigv4_expected(m, path, q, h, SECRET_KEY)
        assert "x-amz-content-sha256" in signed and "host" in signed
        assert "/eu-central-1/s3/aws4_request" in h["authorization"]
        assert got == want, "bad signature for %s %s?%s" % (m, path, q)
        assert SECRET_KEY not in str(h)
