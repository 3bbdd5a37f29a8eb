"""kill -9 of the daemon in the middle of a workload.

A writer appends a known pattern to files and fsyncs them, and replaces
other files atomically (write temp, fsync, rename, fsync dir).  After each
kill -9 + lazy unmount + remount:
  - every fsynced byte is there and correct,
  - no file holds a byte that was never written (each file is a prefix of
    its pattern; each atomically replaced file is one complete version),
  - files from earlier rounds are unchanged,
and `tresor check` is clean at the end.
"""

import hashlib
import os
import random
import signal
import threading
import time

from conftest import fusermount_u, mounted, wait_for

ROUNDS = int(os.environ.get("TRESOR_CRASH_ROUNDS", "5"))


def pattern(name, off, n):
    """Bytes [off, off+n) of the infinite pattern of file `name`."""
    blk = 4096
    out = bytearray()
    first = off // blk
    last = (off + n + blk - 1) // blk
    key = name.encode()
    for b in range(first, last):
        seed = hashlib.sha256(key + b":%d" % b).digest()
        out += (seed * (blk // len(seed)))
    start = off - first * blk
    return bytes(out[start:start + n])


def version_bytes(name, gen, n):
    return pattern("%s#%d" % (name, gen), 0, n)


class Writer(threading.Thread):
    def __init__(self, root, rnd, tag):
        super().__init__(daemon=True)
        self.root = root
        self.rng = rnd
        self.tag = tag
        self.lock = threading.Lock()
        self.appended = {}   # name -> bytes handed to write() (upper bound)
        self.synced = {}     # name -> bytes known durable (fsync returned)
        self.versions = {}   # name -> list of (gen, size) ever written
        self.durable_gen = {}  # name -> gen whose rename + dir fsync returned
        self.error = None
        self.stop = False

    def run(self):
        try:
            self.work()
        except OSError as e:  # ENOTCONN/EIO once the daemon dies
            self.error = e

    def work(self):
        names = ["%s-app-%d" % (self.tag, i) for i in range(6)]
        atomics = ["%s-atom-%d" % (self.tag, i) for i in range(3)]
        fds = {}
        gen = 0
        while not self.stop:
            if self.rng.random() < 0.75:
                name = self.rng.choice(names)
                if name not in fds:
                    fds[name] = os.open(os.path.join(self.root, name),
                                        os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    with self.lock:
                        self.appended.setdefault(name, 0)
                fd = fds[name]
                n = self.rng.choice([1, 100, 4096, 5000, 65536, 200000])
                with self.lock:
                    off = self.appended[name]
                    self.appended[name] = off + n
                os.write(fd, pattern(name, off, n))
                if self.rng.random() < 0.4:
                    os.fsync(fd)
                    with self.lock:
                        self.synced[name] = off + n
            else:
                name = self.rng.choice(atomics)
                gen += 1
                size = self.rng.randint(1, 300000)
                with self.lock:
                    self.versions.setdefault(name, []).append((gen, size))
                tmp = os.path.join(self.root, ".%s.tmp" % name)
                with open(tmp, "wb") as f:
                    f.write(version_bytes(name, gen, size))
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(tmp, os.path.join(self.root, name))
                dfd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
                with self.lock:
                    self.durable_gen[name] = gen


def verify_round(root, w):
    """Check the files of writer w after a crash; return {name: bytes}."""
    seen = {}
    problems = []
    present = set(os.listdir(root))
    for name, upper in w.appended.items():
        synced = w.synced.get(name, 0)
        if name not in present:
            if synced:
                problems.append("%s: fsynced (%d bytes) but missing" % (name, synced))
            continue
        with open(os.path.join(root, name), "rb") as f:
            data = f.read()
        seen[name] = data
        if len(data) < synced:
            problems.append("%s: %d bytes fsynced but only %d present" % (name, synced, len(data)))
        if len(data) > upper:
            problems.append("%s: %d bytes present but only %d ever written" % (name, len(data), upper))
        want = pattern(name, 0, len(data))
        if data != want:
            bad = next(i for i in range(len(data)) if data[i] != want[i])
            problems.append("%s: byte %d of %d is not what was written (synced %d)"
                            % (name, bad, len(data), synced))
    for name, vers in w.versions.items():
        durable = w.durable_gen.get(name)
        if name not in present:
            if durable is not None:
                problems.append("%s: generation %d was made durable but the file is missing"
                                % (name, durable))
            continue
        with open(os.path.join(root, name), "rb") as f:
            data = f.read()
        seen[name] = data
        ok = [g for g, n in vers if (durable is None or g >= durable)
              and len(data) == n and data == version_bytes(name, g, n)]
        if not ok:
            problems.append("%s: content (%d bytes) is no complete version >= durable gen %s"
                            % (name, len(data), durable))
    assert not problems, "after kill -9:\n" + "\n".join(problems)
    return seen


def test_kill9_during_writes(make_store, mounts):
    store = make_store(chunks=(16 * 1024, 64 * 1024, 256 * 1024))
    rng = random.Random(int(os.environ.get("TRESOR_SEED", "99")))
    kept = {}  # name -> content verified in an earlier round
    total_synced = 0
    for rnd in range(ROUNDS):
        m = mounts.mount(store, "vol")
        # files of earlier rounds are unchanged
        for name, data in kept.items():
            with open(m / name, "rb") as f:
                assert f.read() == data, "round %d: %s changed since it was verified" % (rnd, name)
        w = Writer(str(m.path), random.Random(rng.random()), "r%d" % rnd)
        w.start()
        time.sleep(rng.uniform(0.3, 2.0))
        # kill, and let the writer run into the dead mount before it is
        # detached: after a lazy unmount its paths would reach the empty
        # directory below and "succeed" there
        os.kill(m.pid, signal.SIGKILL)
        m.proc.wait(timeout=20)
        w.join(30)
        w.stop = True
        assert not w.is_alive(), "writer still blocked 30 s after the daemon was killed"
        assert w.error is not None, "the writer did not notice the dead mount"
        fusermount_u(m.path, lazy=True)
        assert wait_for(lambda: not mounted(m.path), 10)
        m.active = False
        m.crashed = True
        total_synced += sum(w.synced.values()) + len(w.durable_gen)
        print("round %d: wrote %d bytes, %d fsynced, %d atomic replaces, writer stopped by %r"
              % (rnd, sum(w.appended.values()), sum(w.synced.values()),
                 sum(len(v) for v in w.versions.values()), w.error))
        m = mounts.mount(store, "vol")
        kept.update(verify_round(str(m.path), w))
        # leftovers of the interrupted atomic replace are allowed: drop them
        for n in os.listdir(m.path):
            if n.endswith(".tmp"):
                os.unlink(m / n)
        m.close()
        p = store.check()
        assert p.returncode == 0, "check after crash round %d: %s %s" % (rnd, p.stdout, p.stderr)
    assert total_synced > 0, "the writers fsynced nothing before the kills (daemon too slow?)"
    m = mounts.mount(store, "vol")
    for name, data in kept.items():
        with open(m / name, "rb") as f:
            assert f.read() == data, "%s changed after the last round" % name
    m.close()
    p = store.check()
    assert p.returncode == 0, p.stdout + p.stderr


def test_kill9_background_daemon_after_stats(store, mounts, tmp):
    """Background mode (no -f): what was fsynced survives kill -9, also when
    other tresor commands (stats, check) opened the store in between, and
    stats sees it while the volume is mounted."""
    m = mounts.mount(store, "vol", mnt=tmp / "bg", foreground=False)
    assert m.pid, "no daemon found"
    first = os.urandom(2 * 1024 * 1024)
    with open(m / "first", "wb") as f:
        f.write(first)
        f.flush()
        os.fsync(f.fileno())
    s = store.stats()
    assert s["volumes"][0]["files"] == 1, "stats does not see the fsynced file: %r" % s
    second = os.urandom(1024 * 1024)
    with open(m / "second", "wb") as f:
        f.write(second)
        f.flush()
        os.fsync(f.fileno())
    s = store.stats()
    assert s["volumes"][0]["files"] == 2, "stats does not see the second fsynced file: %r" % s
    m.kill9()
    m2 = mounts.mount(store, "vol", mnt=tmp / "bg")
    assert sorted(os.listdir(m2.path)) == ["first", "second"]
    assert (m2 / "first").read_bytes() == first
    assert (m2 / "second").read_bytes() == second
    m2.close()
    p = store.check()
    assert p.returncode == 0, p.stdout + p.stderr
