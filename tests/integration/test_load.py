"""Load: 32 concurrent clients doing mixed operations on one mount, with a
snapshot and a push in the middle.

Each client works in its own directory: creates and writes small files,
reads them back (content checked against what it wrote), appends to a log
and fsyncs it, overwrites in the middle, renames, lists, stats and
unlinks.  Meanwhile the main thread takes a snapshot (at 1/3 of the run)
and pushes to a local-directory remote (at 1/2), samples the daemon's RSS
each second, and watches every client: one that makes no progress for
WATCHDOG seconds fails the test (deadlock).  At the end: no client saw an
error, every file holds what its client wrote, the snapshot holds what
the files held when it returned, `check` is clean; p50/p99 latency of each
operation kind is printed; RSS is flat (the last third of the run no more
than 1.5x + 32 MiB of the peak seen in the first third -- a growth bound,
not an absolute figure).

TRESOR_LOAD_SECONDS (default 45) and TRESOR_LOAD_CLIENTS (default 32) set
the size; TRESOR_LOAD_MOUNT_OPTS adds mount options (mt: libfuse's thread
pool, as the TSan phase of tests/run.sh runs it); TRESOR_LOAD_REPORT=FILE
writes the figures as JSON.
"""

import hashlib
import json
import os
import random
import threading
import time

from conftest import PASSPHRASE, tresor

SECONDS = float(os.environ.get("TRESOR_LOAD_SECONDS", "45"))
CLIENTS = int(os.environ.get("TRESOR_LOAD_CLIENTS", "32"))
WATCHDOG = 60.0


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))] if xs else 0.0


class Client(threading.Thread):
    def __init__(self, root, idx, seed, deadline):
        super().__init__(daemon=True)
        self.dir = os.path.join(root, "c%02d" % idx)
        self.rng = random.Random(seed)
        self.deadline = deadline
        self.files = {}     # name -> bytes
        self.log = b""
        self.lat = {}       # op -> [seconds]
        self.error = None
        self.progress = time.monotonic()
        self.lock = threading.Lock()  # held while an op changes self.files
        self.n = 0

    def timed(self, op, fn, *a):
        t0 = time.monotonic()
        r = fn(*a)
        t1 = time.monotonic()
        self.lat.setdefault(op, []).append(t1 - t0)
        self.progress = t1
        self.n += 1
        return r

    def run(self):
        try:
            os.mkdir(self.dir)
            while time.monotonic() < self.deadline:
                self.step()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = "%s: %r" % (self.dir, e)

    def path(self, name):
        return os.path.join(self.dir, name)

    def step(self):
        r = self.rng.random()
        names = sorted(self.files)
        if r < 0.25 or not names:
            name = "f%d" % self.rng.randrange(10000)
            data = os.urandom(self.rng.choice((100, 4096, 20000, 65536)))
            with self.lock:
                self.timed("create+write", self.write, name, data)
                self.files[name] = data
        elif r < 0.50:
            name = self.rng.choice(names)
            got = self.timed("read", self.read, name)
            if got != self.files[name]:
                raise AssertionError("%s: read %d bytes that differ from the %d written"
                                     % (name, len(got), len(self.files[name])))
        elif r < 0.60:
            chunk = os.urandom(self.rng.choice((50, 512, 4096)))
            # under the lock like every other change: an append in flight
            # while the snapshot is taken would make the expected log
            # (self.log) and the snapshot disagree by a race of the test
            with self.lock:
                self.timed("append+fsync", self.append, chunk)
                self.log += chunk
        elif r < 0.70:
            name = self.rng.choice(names)
            old = self.files[name]
            off = self.rng.randrange(len(old))
            patch = os.urandom(min(1000, len(old) - off))
            with self.lock:
                self.timed("overwrite", self.overwrite, name, off, patch)
                self.files[name] = old[:off] + patch + old[off + len(patch):]
        elif r < 0.78:
            name = self.rng.choice(names)
            new = "r%d" % self.rng.randrange(10000)
            with self.lock:
                self.timed("rename", os.rename, self.path(name), self.path(new))
                self.files[new] = self.files.pop(name)
        elif r < 0.88:
            got = self.timed("readdir", os.listdir, self.dir)
            want = set(self.files) | ({"log"} if self.log else set())
            if set(got) != want:
                raise AssertionError("listdir %s: %s, expected %s" % (self.dir, sorted(got), sorted(want)))
        elif r < 0.95:
            name = self.rng.choice(names)
            st = self.timed("stat", os.stat, self.path(name))
            if st.st_size != len(self.files[name]):
                raise AssertionError("%s: size %d, wrote %d" % (name, st.st_size, len(self.files[name])))
        else:
            name = self.rng.choice(names)
            with self.lock:
                self.timed("unlink", os.unlink, self.path(name))
                del self.files[name]

    def write(self, name, data):
        with open(self.path(name), "wb") as f:
            f.write(data)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def append(self, chunk):
        with open(self.path("log"), "ab") as f:
            f.write(chunk)
            f.flush()
            os.fsync(f.fileno())

    def overwrite(self, name, off, patch):
        with open(self.path(name), "r+b") as f:
            f.seek(off)
            f.write(patch)


def digest_tree(clients):
    out = {}
    for c in clients:
        base = os.path.basename(c.dir)
        for n, d in c.files.items():
            out[base + "/" + n] = hashlib.sha256(d).hexdigest()
        if c.log:
            out[base + "/log"] = hashlib.sha256(c.log).hexdigest()
    return out


def read_tree(root, names):
    out = {}
    for n in names:
        with open(os.path.join(root, n), "rb") as f:
            out[n] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_32_clients(store, mounts, tmp):
    remote = tmp / "remote"
    remote.mkdir()
    tresor("remote", "add", store.path, "origin", remote, check=True)
    extra = [o for o in os.environ.get("TRESOR_LOAD_MOUNT_OPTS", "").split(",") if o]
    m = mounts.mount(store, "vol", opts=["list_snapshots"] + extra)
    start = time.monotonic()
    deadline = start + SECONDS
    clients = [Client(str(m.path), i, 1000 + i, deadline) for i in range(CLIENTS)]
    for c in clients:
        c.start()
    rss = []            # (seconds since start, KiB)
    snap = None
    snap_tree = None
    pushed = None
    env = dict(os.environ, TRESOR_PASSPHRASE=PASSPHRASE)
    stuck = None
    while any(c.is_alive() for c in clients):
        now = time.monotonic()
        rss.append((now - start, rss_kib(m.pid)))
        if snap is None and now - start > SECONDS / 3:
            # hold every client still while the snapshot runs, so the
            # expected tree is known; the snapshot itself is timed
            for c in clients:
                c.lock.acquire()
            try:
                t0 = time.monotonic()
                p = tresor("snapshot", "create", store.path, "vol", env=env, timeout=WATCHDOG)
                snap_s = time.monotonic() - t0
                assert p.returncode == 0, "snapshot under load: %s" % p.stderr
                snap = p.stdout.strip()
                snap_tree = digest_tree(clients)
            finally:
                for c in clients:
                    c.lock.release()
        if pushed is None and now - start > SECONDS / 2:
            t0 = time.monotonic()
            p = tresor("push", store.path, "origin", env=env, timeout=300)
            assert p.returncode == 0, "push under load: %s" % p.stderr
            pushed = time.monotonic() - t0
        late = [c for c in clients if c.is_alive() and time.monotonic() - c.progress > WATCHDOG]
        if late:
            stuck = late
            break
        time.sleep(1.0)
    assert not stuck, "deadlock? %d clients made no progress for %ds: %s" \
        % (len(stuck), WATCHDOG, [c.dir for c in stuck])
    errors = [c.error for c in clients if c.error]
    assert not errors, "client errors under load:\n" + "\n".join(errors)
    assert snap is not None and pushed is not None, "the run was too short for the snapshot and push"

    # everything is what the clients wrote, the snapshot what it held
    want = digest_tree(clients)
    got = read_tree(str(m.path), want)
    bad = [n for n in want if got[n] != want[n]]
    assert not bad, "files differ after the load: %s" % bad[:10]
    sgot = read_tree(str(m / ".snapshots" / snap), snap_tree)
    sbad = [n for n in snap_tree if sgot[n] != snap_tree[n]]
    assert not sbad, "snapshot %s differs from the tree at its instant: %s" % (snap, sbad[:10])

    lat = {}
    for c in clients:
        for op, xs in c.lat.items():
            lat.setdefault(op, []).extend(xs)
    ops = sum(len(x) for x in lat.values())
    report = {"clients": CLIENTS, "seconds": round(time.monotonic() - start, 1), "ops": ops,
              "ops_per_s": round(ops / SECONDS, 1), "snapshot_s": round(snap_s, 3),
              "push_s": round(pushed, 3),
              "latency_ms": {op: {"n": len(xs), "p50": round(pct(xs, 50) * 1000, 2),
                                  "p99": round(pct(xs, 99) * 1000, 2)}
                             for op, xs in sorted(lat.items())},
              "rss_kib": {"first": rss[0][1], "max": max(r for _, r in rss), "last": rss[-1][1]}}
    print("load: " + json.dumps(report, sort_keys=True))
    if os.environ.get("TRESOR_LOAD_REPORT"):
        with open(os.environ["TRESOR_LOAD_REPORT"], "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)

    # memory flat: the last third stays near the peak of the first third
    third = SECONDS / 3
    early = max([r for t, r in rss if t <= third] or [rss[0][1]])
    late_rss = max([r for t, r in rss if t >= 2 * third] or [rss[-1][1]])
    # under ASan (quarantine) and TSan (shadow) RSS is not the heap
    if "ASAN_OPTIONS" not in os.environ and "TSAN_OPTIONS" not in os.environ:
        assert late_rss <= early * 1.5 + 32 * 1024, \
            "daemon RSS grew from %d KiB (first third) to %d KiB (last third)" % (early, late_rss)
    m.close()
    p = store.check()
    assert p.returncode == 0, p.stdout + p.stderr
