"""Fixtures for tresor's integration tests (pytest, stdlib only).

Environment:
  TRESOR_BIN       the binary under test (default: <repo>/build/tresor)
  TRESOR_KEEP_TMP  set to 1 to keep each test's /tmp/tresor-test-* dir
  TRESOR_TEST_TIMEOUT  seconds one test may take before the whole run is
                   aborted with a traceback (default 600)

Every test gets its own directory under /tmp.  Mounts are started in the
foreground (-f) with stderr captured to a log file; at teardown they are
unmounted with fusermount3 -u (falling back to -z), the daemon must exit
with status 0, and its log must hold no sanitizer report.
"""

import faulthandler
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRESOR_BIN = os.path.abspath(os.environ.get("TRESOR_BIN") or str(REPO / "build" / "tresor"))
KDF_LOG2N = "12"
PASSPHRASE = "correct horse battery staple"
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
    "ERROR: UndefinedBehaviorSanitizer",
)
MOUNT_TIMEOUT = 10.0
EXIT_TIMEOUT = 20.0
TEST_TIMEOUT = float(os.environ.get("TRESOR_TEST_TIMEOUT", "600"))


# --------------------------------------------------------------------------
# watchdog: a hung FUSE call would block pytest forever; dump and abort.
# --------------------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def pytest_report_header(config):
    return "tresor binary: %s" % TRESOR_BIN


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def base_env(**extra):
    env = dict(os.environ)
    env.pop("TRESOR_PASSPHRASE", None)
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def tresor(*args, env=None, timeout=120, passphrase_env=None, check=False):
    """Run the tresor CLI with no stdin and no controlling terminal."""
    e = base_env() if env is None else env
    if passphrase_env is not None:
        e["TRESOR_PASSPHRASE"] = passphrase_env
    cmd = [TRESOR_BIN] + [str(a) for a in args]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=e, timeout=timeout,
                       start_new_session=True, text=True)
    check_sanitizer_text(p.stderr, " ".join(cmd))
    if check and p.returncode != 0:
        raise AssertionError("command failed (exit %d): %s\nstdout: %s\nstderr: %s"
                             % (p.returncode, " ".join(cmd), p.stdout, p.stderr))
    return p


def check_sanitizer_text(text, what):
    for m in SANITIZER_MARKERS:
        if m in text:
            raise AssertionError("sanitizer report from %s:\n%s" % (what, text[-20000:]))


def mounted(path):
    """True if path is a mount point, read from mountinfo (never blocks on FUSE)."""
    path = os.path.realpath(str(path))
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                mp = fields[4].encode().decode("unicode_escape")
                if mp == path:
                    return True
    except OSError:
        pass
    return False


def mounts_under(d):
    d = os.path.realpath(str(d)).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if (mp + "/").startswith(d):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def wait_for(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def fusermount_u(mnt, lazy=False):
    cmd = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [str(mnt)]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=30)


def pids_with_arg(arg):
    """Pids of tresor processes whose command line contains arg."""
    arg = str(arg)
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                parts = f.read().split(b"\0")
        except OSError:
            continue
        if parts and os.path.basename(parts[0].decode(errors="replace")) == "tresor" \
                and arg.encode() in parts:
            out.append(int(d))
    return out


def stats(store_path, env_pass=PASSPHRASE):
    p = tresor("stats", store_path, "--json", passphrase_env=env_pass, check=True)
    try:
        return json.loads(p.stdout)
    except ValueError as exc:
        raise AssertionError("stats --json printed no JSON: %r (%s)" % (p.stdout[:500], exc))


# --------------------------------------------------------------------------
# store and mount objects
# --------------------------------------------------------------------------
class Store:
    def __init__(self, path, passfile):
        self.path = Path(path)
        self.passfile = Path(passfile)

    def __str__(self):
        return str(self.path)

    def run(self, *args, **kw):
        """Run tresor SUBCOMMAND... with the passphrase in the environment."""
        kw.setdefault("passphrase_env", PASSPHRASE)
        return tresor(*args, **kw)

    def create_volume(self, name):
        return self.run("volume", "create", self.path, name, check=True)

    def stats(self):
        return stats(self.path)

    def check(self):
        return tresor("check", self.path, "--passphrase-file", self.passfile, timeout=600)


class Mount:
    def __init__(self, mgr, store, volume, path, opts, foreground, log):
        self.mgr = mgr
        self.store = store
        self.volume = volume
        self.path = Path(path)
        self.opts = list(opts)
        self.foreground = foreground
        self.log = Path(log)
        self.proc = None
        self.pid = None
        self.active = False
        self.crashed = False

    def __truediv__(self, other):
        return self.path / other

    def __fspath__(self):
        return str(self.path)

    def __str__(self):
        return str(self.path)

    def log_text(self):
        """The daemon's stderr (foreground) plus any sanitizer log files."""
        parts = []
        paths = [self.log] + sorted(self.log.parent.glob(self.log.name + ".san.*"))
        for p in paths:
            try:
                parts.append(p.read_text(errors="replace"))
            except OSError:
                pass
        return "".join(parts)

    def wait_exit(self, timeout=EXIT_TIMEOUT):
        """After a signal: wait for the foreground daemon, return its status,
        and fail on a sanitizer report in its log."""
        rc = self.proc.wait(timeout=timeout)
        self.active = False
        check_sanitizer_text(self.log_text(), "daemon log %s" % self.log)
        return rc

    def kill9(self):
        """Kill the daemon with SIGKILL and lazily detach the dead mount."""
        assert self.pid, "no daemon pid"
        os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise AssertionError("daemon %d did not die after SIGKILL" % self.pid)
        else:
            wait_for(lambda: not os.path.exists("/proc/%d" % self.pid), EXIT_TIMEOUT)
        r = fusermount_u(self.path, lazy=True)
        if mounted(self.path):
            subprocess.run(["umount", "-l", str(self.path)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: not mounted(self.path), 10), \
            "stale mount %s still there after fusermount3 -u -z: %s" % (self.path, r.stdout)
        self.active = False
        self.crashed = True
        check_sanitizer_text(self.log_text(), "daemon log %s" % self.log)

    def unmount(self):
        """Clean unmount; returns a list of problems (empty when all is well)."""
        problems = []
        if not self.active:
            return problems
        self.active = False
        ok = False
        last = ""
        for _ in range(50):
            r = fusermount_u(self.path)
            if r.returncode == 0 or not mounted(self.path):
                ok = True
                break
            last = r.stdout
            time.sleep(0.1)
        if not ok:
            problems.append("fusermount3 -u %s failed (%s); used -z" % (self.path, last.strip()))
            fusermount_u(self.path, lazy=True)
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                rc = None
                problems.append("daemon did not exit within %ds of unmount" % EXIT_TIMEOUT)
            if rc is not None and rc != 0:
                problems.append("daemon exited with status %s after unmount" % rc)
        elif self.pid:
            if not wait_for(lambda: not os.path.exists("/proc/%d" % self.pid), EXIT_TIMEOUT):
                problems.append("background daemon %d still running %ds after unmount"
                                % (self.pid, EXIT_TIMEOUT))
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
        text = self.log_text()
        for m in SANITIZER_MARKERS:
            if m in text:
                problems.append("sanitizer report in daemon log %s:\n%s" % (self.log, text[-20000:]))
                break
        if problems and text:
            problems.append("daemon log tail:\n" + text[-4000:])
        return problems

    def close(self):
        problems = self.unmount()
        if problems:
            raise AssertionError("\n".join(problems))


class Mounts:
    """Starts and tracks tresor mounts for one test; tears them all down."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.all = []
        self.n = 0

    def mount(self, store, volume="vol", mnt=None, opts=(), foreground=True,
              passfile=None, extra_env=None):
        self.n += 1
        if mnt is None:
            mnt = self.tmp / ("mnt-%s" % volume)
        mnt = Path(mnt)
        mnt.mkdir(parents=True, exist_ok=True)
        log = self.tmp / ("daemon-%s-%d.log" % (volume, self.n))
        passfile = passfile or store.passfile
        m = Mount(self, store, volume, mnt, opts, foreground, log)
        cmd = [TRESOR_BIN, "mount", str(store.path), volume, str(mnt),
               "--passphrase-file", str(passfile)]
        if opts:
            cmd += ["-o", ",".join(opts)]
        env = base_env(**(extra_env or {}))
        if foreground:
            cmd.append("-f")
            with open(log, "wb") as lf:
                m.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf,
                                          stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
            m.pid = m.proc.pid
            m.active = True
            self.all.append(m)

            def ready():
                return mounted(mnt) or m.proc.poll() is not None
            if not wait_for(ready, MOUNT_TIMEOUT) or not mounted(mnt):
                rc = m.proc.poll()
                if rc is None:
                    m.proc.kill()
                    m.proc.wait(timeout=10)
                m.active = False
                raise AssertionError("mount %s %s -f did not become ready in %ss (exit %s)\n%s"
                                     % (store.path, volume, MOUNT_TIMEOUT, rc, m.log_text()))
        else:
            # a daemonized process has no stderr to read: sanitizer reports
            # go to files beside the log
            for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
                if env.get(var):
                    env[var] += ":log_path=%s.san" % log
            with open(log, "wb") as lf:
                p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                   env=env, timeout=60, start_new_session=True)
            if p.returncode != 0:
                raise AssertionError("background mount failed with exit %d:\n%s"
                                     % (p.returncode, m.log_text()))
            m.active = True
            self.all.append(m)
            assert mounted(mnt), "tresor mount returned but %s is not mounted yet" % mnt
            pids = pids_with_arg(mnt)
            m.pid = pids[0] if pids else None
        assert os.path.ismount(mnt)
        return m

    def teardown(self):
        problems = []
        for m in reversed(self.all):
            try:
                problems += m.unmount()
            except Exception as exc:  # keep tearing down the others
                problems.append("unmount of %s raised %r" % (m.path, exc))
        return problems


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not os.access(TRESOR_BIN, os.X_OK):
        pytest.fail("tresor binary not found or not executable: %s (build it first)"
                    % TRESOR_BIN, pytrace=False)


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="tresor-test-", dir="/tmp")
    os.chmod(d, 0o755)  # other uids must reach mount points below it
    yield Path(d)
    for mp in mounts_under(d):
        fusermount_u(mp, lazy=True)
        if mounted(mp):
            subprocess.run(["umount", "-l", mp], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if os.environ.get("TRESOR_KEEP_TMP") != "1":
        if mounts_under(d):
            return  # never rm -rf through a live mount
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def passfile(tmp):
    p = tmp / "passphrase"
    fd = os.open(str(p), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(PASSPHRASE + "\n")
    return p


def init_store(path, passfile, chunks=None, volumes=("vol",)):
    args = ["init", str(path), "--kdf-log2n", KDF_LOG2N, "--passphrase-file", str(passfile)]
    if chunks:
        cmin, cavg, cmax = chunks
        args += ["--chunk-min", str(cmin), "--chunk-avg", str(cavg), "--chunk-max", str(cmax)]
    tresor(*args, check=True)
    st = Store(path, passfile)
    for v in volumes:
        st.create_volume(v)
    return st


@pytest.fixture
def make_store(tmp, passfile):
    """Factory: make_store(name="store", chunks=(min, avg, max), volumes=("vol",))."""
    def make(name="store", chunks=None, volumes=("vol",)):
        return init_store(tmp / name, passfile, chunks=chunks, volumes=volumes)
    return make


@pytest.fixture
def store(make_store):
    """A store with default chunk sizes and one volume named 'vol'."""
    return make_store()


@pytest.fixture
def mounts(tmp):
    mgr = Mounts(tmp)
    yield mgr
    problems = mgr.teardown()
    if problems:
        pytest.fail("mount teardown problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def mnt(store, mounts):
    """The volume 'vol' of a default store, mounted in the foreground."""
    return mounts.mount(store, "vol")
