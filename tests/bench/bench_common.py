"""bench_common.py - helpers shared by the benchmark suite's modules:
running and timing commands (with peak memory), dropping the page cache,
mounts, tree sizes/reads/digests, and the per-repetition result store."""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MB = 1e6


class SuiteError(Exception):
    pass


def log(msg):
    sys.stderr.write("suite: %s\n" % msg)
    sys.stderr.flush()


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------
def sh(cmd, cwd=None, env=None, check=True, quiet=True, timeout=None):
    p = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE if quiet else None,
                       stderr=subprocess.PIPE, timeout=timeout)
    if check and p.returncode != 0:
        raise SuiteError("%s failed (exit %d): %s" % (
            " ".join(map(str, cmd)), p.returncode,
            (p.stderr or b"").decode(errors="replace")[-2000:]))
    return p


def timed(cmd, cwd=None, env=None, shell=False):
    """(seconds, peak RSS in KB) of one command, run under /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r", prefix="tresor-bench-time-") as tf:
        full = ["/usr/bin/time", "-f", "%M", "-o", tf.name]
        full += ["bash", "-o", "pipefail", "-c", cmd] if shell else list(map(str, cmd))
        t0 = time.monotonic()
        p = subprocess.run(full, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = time.monotonic() - t0
        if p.returncode != 0:
            raise SuiteError("%s failed (exit %d): %s" % (
                cmd if shell else " ".join(map(str, cmd)), p.returncode,
                p.stderr.decode(errors="replace")[-2000:]))
        lines = [x for x in tf.read().split("\n") if x.strip().isdigit()]
        return dt, int(lines[-1]) if lines else 0


CACHES = {"dropped": True}


def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        if CACHES["dropped"]:
            log("cannot drop caches (not root?): reads are not cold")
        CACHES["dropped"] = False


def syncfs(path):
    sh(["sync", "-f", path])


def du_bytes(path):
    """Bytes the tree takes on disk (allocated blocks, hard links once)."""
    out = sh(["du", "-s", "-B1", path]).stdout.decode().split()
    return int(out[0])


def tree_bytes(path):
    n = b = 0
    for root, _, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            n += 1
            b += st.st_size
    return n, b


def read_tree(path):
    """Read every file below path in sorted order (what a restore or a
    scan does); returns (seconds, bytes)."""
    files = []
    for root, dirs, fs in os.walk(path):
        dirs.sort()
        files += [os.path.join(root, f) for f in sorted(fs)]
    t0 = time.monotonic()
    total = 0
    buf = bytearray(1 << 20)
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while True:
                n = fh.readinto(buf)
                if not n:
                    break
                total += n
    return time.monotonic() - t0, total


def tree_digest(path):
    """{relpath: (size, sha1)} for checking that a copy is the same."""
    import hashlib
    out = {}
    for root, _, fs in os.walk(path):
        for f in fs:
            p = os.path.join(root, f)
            h = hashlib.sha1()
            with open(p, "rb") as fh:
                for blk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(blk)
            out[os.path.relpath(p, path)] = (os.path.getsize(p), h.hexdigest())
    return out


def wait_for(pred, timeout=30, what="condition"):
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        if pred():
            return
        time.sleep(0.05)
    raise SuiteError("timed out waiting for %s" % what)


def is_mount(path):
    return subprocess.run(["mountpoint", "-q", path]).returncode == 0


def fuse_unmount(path, proc=None):
    for _ in range(50):
        if not is_mount(path):
            break
        if subprocess.run(["fusermount3", "-u", path], stderr=subprocess.DEVNULL).returncode == 0:
            break
        time.sleep(0.1)
    if is_mount(path):
        subprocess.run(["fusermount3", "-u", "-z", path], stderr=subprocess.DEVNULL)
    if proc is not None:
        try:
            # a daemon may commit for a while after a big ingest (longer
            # still under perf): wait minutes, not seconds
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            log("process %d did not exit after unmount; killing it" % proc.pid)
            proc.kill()
            proc.wait()


def rmtree(path):
    if os.path.lexists(path):
        shutil.rmtree(path)


def load_average():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------
class Results:
    """metric name -> list of values (one per repetition)."""

    def __init__(self):
        self.v = {}

    def add(self, key, value):
        self.v.setdefault(key, []).append(value)

    def med(self, key):
        x = self.v.get(key)
        return statistics.median(x) if x else None

    def spread(self, key):
        x = self.v.get(key)
        return (min(x), max(x)) if x else None

    def has(self, key):
        return bool(self.v.get(key))
