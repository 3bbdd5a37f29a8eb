#!/usr/bin/python3
"""suite.py - tresor beside raw disk, bindfs, restic, borg, rsync and tar.

Run through suite.sh (which installs the peers and builds tresor first):

    bash tests/bench/suite.sh [--smoke|--full] [--scale S] [--reps N]
        [--dir DIR] [--json FILE] [--datasets large,plans,filestore,small]
        [--snap-files 10000,100000] [--no-peers] [--no-s3] [--profile]

One run measures everything on the same disk (DIR, default
/var/tmp/tresor-bench-suite) with datasets from gen_dataset.py (seeded);
each measurement is repeated REPS times (default 3), back to back with its
ceiling or peer in the same repetition, and reported as median and spread
(min-max).  Ratios are computed per repetition and their median reported.

Per dataset (large, plans, filestore, small):
  raw disk       cp -a (small: untar) + syncfs; cold read (drop_caches)
  bindfs         the same through a bindfs passthrough (+ syncfs below it)
  tresor         cp/untar into the mount + syncfs + `snapshot create` (the
                 point where the daemon has everything on disk); cold read
                 after a remount; stored bytes and dedup (`stats --json`);
                 restore (`tresor restore`); day 2 applied in the mount +
                 snapshot; daemon peak RSS (VmHWM)
  restic         default (zstd auto) and --compression max; borg 1.2
                 (repokey) default (lz4) and --compression zstd: backup
                 day 1 and day 2, stored bytes (du), restore, peak memory
                 (/usr/bin/time); cold read through `restic mount` (and
                 `borg mount` when llfuse is there)
  rsync/tar      the users' method: rsync -a --link-dest of the previous
                 day, and tar | gzip of the whole tree every day
Plus: fio sequential write/read with fsync (the disk ceiling), snapshot
creation time at growing file counts (--snap-files), push to a loopback S3
(s3rver) and `tresor recover` from it, against `aws s3 cp --recursive` of
the same bytes.

Targets (pass/fail with margins; no absolute thresholds): see TARGETS below.
Exit 0 all targets met, 1 some missed, 2 the suite broke.  --smoke: tiny
data, one repetition, a minute; exit 0 unless the suite itself breaks.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
GEN = os.path.join(HERE, "gen_dataset.py")
MB = 1e6

S3_ACCESS = "AKIATRESORBENCH00001"
S3_SECRET = "tresorBenchSecret/Key+0123456789abcdefgh"
S3_BUCKET = "tresor-bench"


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
            proc.wait(timeout=30)
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


# --------------------------------------------------------------------------
# the systems under test
# --------------------------------------------------------------------------
class Tresor:
    def __init__(self, binary, work, passfile):
        self.bin = binary
        self.work = work
        self.passfile = passfile
        self.proc = None
        self.mnt = None
        self.peak_kb = 0
        self.daemon_log = os.path.join(work, "daemon.log")
        self.env = dict(os.environ)
        self.env.pop("TRESOR_PASSPHRASE", None)

    def cmd(self, *args, env=None):
        return sh([self.bin] + [str(a) for a in args] + ["--passphrase-file", self.passfile],
                  env=env or self.env)

    def new_store(self, path, volume="bench"):
        rmtree(path)
        sh([self.bin, "init", path, "--kdf-log2n", "12", "--passphrase-file", self.passfile])
        self.cmd("volume", "create", path, volume)
        return path

    def mount(self, store, mnt, volume="bench"):
        os.makedirs(mnt, exist_ok=True)
        opts = os.environ.get("TRESOR_MOUNT_OPTS")
        cmd = [self.bin, "mount", store, volume, mnt, "-f", "--passphrase-file", self.passfile]
        if opts:
            cmd += ["-o", opts]
        with open(self.daemon_log, "ab") as lf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                         env=self.env)
        self.mnt = mnt
        try:
            wait_for(lambda: is_mount(mnt) or self.proc.poll() is not None, 30, "tresor mount")
        except SuiteError:
            pass
        if not is_mount(mnt):
            raise SuiteError("tresor mount did not come up; see %s" % self.daemon_log)
        return self.proc.pid

    def hwm_kb(self):
        if not self.proc:
            return 0
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def umount(self):
        """Unmount; returns the daemon's peak RSS in KB."""
        if not self.proc:
            return 0
        kb = self.hwm_kb()
        self.peak_kb = max(self.peak_kb, kb)
        fuse_unmount(self.mnt, self.proc)
        rc = self.proc.returncode
        self.proc = None
        if rc not in (0, None):
            raise SuiteError("tresor daemon exited with %s; see %s" % (rc, self.daemon_log))
        return kb

    def snapshot(self, store, volume="bench"):
        t0 = time.monotonic()
        self.cmd("snapshot", "create", store, volume)
        return time.monotonic() - t0

    def stats(self, store):
        return json.loads(self.cmd("stats", store, "--json").stdout)


# --------------------------------------------------------------------------
# peers: restic, borg, rsync --link-dest, tar | gzip
# --------------------------------------------------------------------------
class Peer:
    name = "?"
    mountable = False

    def __init__(self, work):
        self.work = work
        self.repo = os.path.join(work, "repo-" + self.name)

    def init(self):
        rmtree(self.repo)

    def stored(self):
        return du_bytes(self.repo)


class Restic(Peer):
    mountable = True

    def __init__(self, work, compression=None):
        self.compression = compression
        self.name = "restic" if compression is None else "restic-" + compression
        super().__init__(work)
        self.env = dict(os.environ, RESTIC_PASSWORD="bench-password",
                        RESTIC_CACHE_DIR=os.path.join(work, "restic-cache"))

    def label(self):
        return "restic 0.14 (zstd auto)" if self.compression is None else \
            "restic --compression %s" % self.compression

    def init(self):
        super().init()
        rmtree(self.env["RESTIC_CACHE_DIR"])
        sh(["restic", "init", "-q", "-r", self.repo], env=self.env)

    def backup(self, src, day):
        cmd = ["restic", "-r", self.repo, "backup", "-q", src, "--tag", "day%d" % day]
        if self.compression:
            cmd += ["--compression", self.compression]
        return timed(cmd, env=self.env)

    def restore(self, src, dest, day):
        os.makedirs(dest, exist_ok=True)
        return timed(["restic", "-r", self.repo, "restore", "latest", "--tag", "day%d" % day,
                      "--target", dest, "-q"], env=self.env)

    def restored_root(self, src, dest):
        return dest + src

    def mount(self, mnt):
        os.makedirs(mnt, exist_ok=True)
        lf = open(os.path.join(self.work, "restic-mount.log"), "ab")
        p = subprocess.Popen(["restic", "-r", self.repo, "mount", mnt], env=self.env,
                             stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
        wait_for(lambda: is_mount(mnt) and os.path.isdir(os.path.join(mnt, "snapshots")),
                 60, "restic mount")
        return p

    def mounted_root(self, mnt, src):
        snaps = sorted(x for x in os.listdir(os.path.join(mnt, "snapshots")) if x != "latest")
        return os.path.join(mnt, "snapshots", snaps[-1]) + src


class Borg(Peer):
    def __init__(self, work, compression=None):
        self.compression = compression
        self.name = "borg" if compression is None else "borg-" + compression
        super().__init__(work)
        self.env = dict(os.environ, BORG_PASSPHRASE="bench-password",
                        BORG_BASE_DIR=os.path.join(work, "borg-base"),
                        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
        try:
            sh([PY, "-c", "import llfuse"])
            self.mountable = True
        except SuiteError:
            self.mountable = False

    def label(self):
        return "borg 1.2 (lz4)" if self.compression is None else \
            "borg --compression %s" % self.compression

    def init(self):
        super().init()
        rmtree(self.env["BORG_BASE_DIR"])
        sh(["borg", "init", "-e", "repokey", self.repo], env=self.env)

    def backup(self, src, day):
        cmd = ["borg", "create"]
        if self.compression:
            cmd += ["--compression", self.compression]
        # cwd = src, archive "." : paths inside the archive are relative
        return timed(cmd + ["%s::day%d" % (self.repo, day), "."], env=self.env, cwd=src)

    def restore(self, src, dest, day):
        os.makedirs(dest, exist_ok=True)
        return timed(["borg", "extract", "%s::day%d" % (self.repo, day)], env=self.env, cwd=dest)

    def restored_root(self, src, dest):
        return dest

    def mount(self, mnt):
        os.makedirs(mnt, exist_ok=True)
        lf = open(os.path.join(self.work, "borg-mount.log"), "ab")
        p = subprocess.Popen(["borg", "mount", "-f", "%s::day1" % self.repo, mnt], env=self.env,
                             stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
        wait_for(lambda: is_mount(mnt), 60, "borg mount")
        return p

    def mounted_root(self, mnt, src):
        return mnt


class Rsync(Peer):
    name = "rsync-link-dest"

    def label(self):
        return "rsync --link-dest"

    def init(self):
        super().init()
        os.makedirs(self.repo)

    def backup(self, src, day):
        cmd = ["rsync", "-a", src + "/", os.path.join(self.repo, "day%d" % day)]
        if day > 1:
            cmd.insert(2, "--link-dest=" + os.path.join(self.repo, "day%d" % (day - 1)))
        dt, kb = timed(cmd)
        t0 = time.monotonic()
        syncfs(self.repo)
        return dt + time.monotonic() - t0, kb

    def restore(self, src, dest, day):
        return timed("cp -a %s/. %s && sync -f %s" % (
            os.path.join(self.repo, "day%d" % day), dest, dest), shell=True)

    def restored_root(self, src, dest):
        return dest


class TarGz(Peer):
    name = "tar-gzip"

    def label(self):
        return "tar | gzip (full daily)"

    def init(self):
        super().init()
        os.makedirs(self.repo)

    def backup(self, src, day):
        out = os.path.join(self.repo, "day%d.tar.gz" % day)
        return timed("tar cf - -C %s . | gzip > %s && sync -f %s" % (src, out, out), shell=True)

    def restore(self, src, dest, day):
        os.makedirs(dest, exist_ok=True)
        return timed("gzip -dc %s | tar xf - -C %s && sync -f %s" % (
            os.path.join(self.repo, "day%d.tar.gz" % day), dest, dest), shell=True)

    def restored_root(self, src, dest):
        return dest


# --------------------------------------------------------------------------
# the suite
# --------------------------------------------------------------------------
DAY2 = ("plans", "filestore")


class Suite:
    def __init__(self, a):
        self.a = a
        self.dir = os.path.abspath(a.dir)
        self.data = os.path.join(self.dir, "data")
        self.work = os.path.join(self.dir, "work")
        self.r = Results()
        self.info = {}
        self.checks = 0
        os.makedirs(self.data, exist_ok=True)
        rmtree(self.work)
        os.makedirs(self.work)
        self.passfile = os.path.join(self.work, "passphrase")
        with open(os.open(self.passfile, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write("bench-%d\n" % os.getpid())
        self.tresor = Tresor(a.tresor, self.work, self.passfile)
        self.peers = []
        if not a.no_peers:
            self.peers = [Restic(self.work), Restic(self.work, "max"),
                          Borg(self.work), Borg(self.work, "zstd"),
                          Rsync(self.work), TarGz(self.work)]
        self.loads = [load_average()]
        self.bind_proc = None
        self.s3 = None
        self.profiles = {}

    # ---------------------------------------------------------- datasets
    def dataset(self, kind, day):
        """Path of the generated day-1 tree (cached across runs)."""
        tag = "%s-x%g-seed%d" % (kind, self.a.scale, self.a.seed)
        base = os.path.join(self.data, tag)
        day1 = os.path.join(base, "day1")
        if not os.path.isdir(day1):
            log("generating %s (scale %g)" % (kind, self.a.scale))
            rmtree(base)
            os.makedirs(base)
            if kind == "small":
                tb = os.path.join(base, "small.tar")
                sh([PY, GEN, "small", tb, "--scale", str(self.a.scale), "--seed", str(self.a.seed)]
                   + (["--files", str(self.a.small_files)] if self.a.small_files else []))
                os.makedirs(day1 + ".part")
                sh(["tar", "xf", tb, "-C", day1 + ".part"])
            else:
                sh([PY, GEN, kind, day1 + ".part", "--scale", str(self.a.scale),
                    "--seed", str(self.a.seed)])
            os.rename(day1 + ".part", day1)
        if day == 1:
            return day1
        return os.path.join(base, "small.tar")

    def apply_day2(self, kind, path, replace):
        cmd = [PY, GEN, "day2", kind, path, "--scale", str(self.a.scale), "--seed", str(self.a.seed)]
        if replace:
            cmd.append("--replace")
        t0 = time.monotonic()
        sh(cmd)
        return time.monotonic() - t0

    def warm(self, path):
        """Source in the page cache, so that ingest measures the writer."""
        read_tree(path)

    # ---------------------------------------------------------- ceilings
    def bind_mount(self, src, mnt):
        os.makedirs(mnt, exist_ok=True)
        self.bind_proc = subprocess.Popen(["bindfs", "-f", src, mnt], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: is_mount(mnt), 30, "bindfs")

    def bind_umount(self, mnt):
        fuse_unmount(mnt, self.bind_proc)
        self.bind_proc = None

    def ingest_cmd(self, kind, src, dest):
        if kind == "small":
            return ["tar", "xf", self.dataset("small", 0), "-C", dest]
        return ["cp", "-a", src + "/.", dest]

    def run_fio(self, rep):
        """Sequential write (fsync at the end) and cold read of one file:
        the disk's own ceiling, for context."""
        size = max(16, int(1024 * self.a.scale)) if not self.a.smoke else 16
        fn = os.path.join(self.work, "fio.data")
        res = {}
        for rw in ("write", "read"):
            if rw == "read":
                drop_caches()
            p = sh(["fio", "--name=seq", "--filename=" + fn, "--rw=" + rw, "--bs=1M",
                    "--size=%dM" % size, "--ioengine=psync", "--end_fsync=1",
                    "--output-format=json"])
            j = json.loads(p.stdout)
            job = j["jobs"][0][rw]
            res[rw] = job["bw_bytes"] / MB
            self.r.add("fio/%s_MBps" % rw, res[rw])
        os.unlink(fn)
        return res

    def raw_and_bindfs(self, kind, src, nbytes, rep):
        w = self.work
        # raw disk
        dst = os.path.join(w, "raw")
        rmtree(dst)
        os.makedirs(dst)
        self.warm(src)
        t0 = time.monotonic()
        sh(self.ingest_cmd(kind, src, dst))
        syncfs(dst)
        self.r.add("%s/raw/ingest_s" % kind, time.monotonic() - t0)
        drop_caches()
        dt, n = read_tree(dst)
        self.r.add("%s/raw/read_s" % kind, dt)
        if kind == "small":
            drop_caches()
            self.r.add("%s/raw/find_s" % kind, self.find_stat(dst)[0])
        rmtree(dst)
        # bindfs passthrough over a plain directory
        below = os.path.join(w, "bindsrc")
        mnt = os.path.join(w, "bindmnt")
        rmtree(below)
        os.makedirs(below)
        self.bind_mount(below, mnt)
        try:
            self.warm(src)
            t0 = time.monotonic()
            sh(self.ingest_cmd(kind, src, mnt))
            syncfs(mnt)
            syncfs(below)
            self.r.add("%s/bindfs/ingest_s" % kind, time.monotonic() - t0)
        finally:
            self.bind_umount(mnt)
        self.bind_mount(below, mnt)
        try:
            drop_caches()
            dt, n = read_tree(mnt)
            self.r.add("%s/bindfs/read_s" % kind, dt)
            if kind == "small":
                drop_caches()
                self.r.add("%s/bindfs/find_s" % kind, self.find_stat(mnt)[0])
        finally:
            self.bind_umount(mnt)
        rmtree(below)

    def find_stat(self, path):
        t0 = time.monotonic()
        p = sh(["find", path, "-printf", "%s %m\n"])
        return time.monotonic() - t0, p.stdout.count(b"\n")

    # ---------------------------------------------------------- tresor
    def run_tresor(self, kind, src, nbytes, rep, s3=False):
        t = self.tresor
        w = self.work
        store = t.new_store(os.path.join(w, "store"))
        mnt = os.path.join(w, "mnt")
        pid = t.mount(store, mnt)
        prof = self.a.profile and rep == 1 and kind in ("large", "small")
        try:
            self.warm(src)
            perf = self.perf_start(pid, "%s-ingest" % kind) if prof else None
            t0 = time.monotonic()
            sh(self.ingest_cmd(kind, src, mnt))
            syncfs(mnt)
            t1 = time.monotonic()
            t.snapshot(store)
            t2 = time.monotonic()
            self.perf_stop(perf)
            self.r.add("%s/tresor/ingest_s" % kind, t2 - t0)
            self.r.add("%s/tresor/ingest_nosnap_s" % kind, t1 - t0)
            self.r.add("%s/tresor/snapshot_s" % kind, t2 - t1)
        finally:
            self.r.add("%s/tresor/rss_kb" % kind, t.umount())
        st = t.stats(store)
        self.r.add("%s/tresor/stored_day1" % kind, st["stored_bytes"])
        self.r.add("%s/tresor/dedup_ratio" % kind, st["dedup_ratio"])
        self.r.add("%s/tresor/compression_ratio" % kind, st["compression_ratio"])
        # cold read through a fresh mount
        pid = t.mount(store, mnt)
        try:
            drop_caches()
            perf = self.perf_start(pid, "%s-read" % kind) if prof else None
            dt, n = read_tree(mnt)
            self.perf_stop(perf)
            if n != nbytes:
                raise SuiteError("%s: read %d bytes from tresor, expected %d" % (kind, n, nbytes))
            self.r.add("%s/tresor/read_s" % kind, dt)
            if kind == "small":
                drop_caches()
                dt, entries = self.find_stat(mnt)
                self.r.add("%s/tresor/find_s" % kind, dt)
            if self.a.smoke or self.a.verify:
                ref = src
                if tree_digest(mnt) != tree_digest(ref):
                    raise SuiteError("%s: the tree in tresor differs from the source" % kind)
                self.checks += 1
        finally:
            self.r.add("%s/tresor/rss_kb" % kind, t.umount())
        # restore the day-1 snapshot (unmounted)
        dest = os.path.join(w, "restore")
        rmtree(dest)
        drop_caches()
        t0 = time.monotonic()
        _, kb = timed([t.bin, "restore", store, "bench", "latest", "/", dest,
                       "--passphrase-file", self.passfile], env=t.env)
        syncfs(dest)
        self.r.add("%s/tresor/restore_s" % kind, time.monotonic() - t0)
        self.r.add("%s/tresor/restore_rss_kb" % kind, kb)
        rmtree(dest)
        if s3:
            self.push(store, 1, rep)
        if kind in DAY2:
            pid = t.mount(store, mnt)
            try:
                t0 = time.monotonic()
                self.apply_day2(kind, mnt, replace=False)
                syncfs(mnt)
                t.snapshot(store)
                self.r.add("%s/tresor/day2_s" % kind, time.monotonic() - t0)
                if self.a.smoke or self.a.verify:
                    ref = os.path.join(w, "day2-ref")
                    rmtree(ref)
                    shutil.copytree(src, ref, symlinks=True)
                    self.apply_day2(kind, ref, replace=False)
                    if tree_digest(mnt) != tree_digest(ref):
                        raise SuiteError("%s day 2: the tree in tresor differs" % kind)
                    rmtree(ref)
                    self.checks += 1
            finally:
                self.r.add("%s/tresor/rss_kb" % kind, t.umount())
            st2 = t.stats(store)
            self.r.add("%s/tresor/stored_day2" % kind, st2["stored_bytes"])
            self.r.add("%s/tresor/increment" % kind, st2["stored_bytes"] - st["stored_bytes"])
            if s3:
                self.push(store, 2, rep)
        if s3:
            self.recover(rep)
        rmtree(store)

    # ---------------------------------------------------------- peers
    def run_peer(self, p, kind, src, nbytes, rep):
        w = self.work
        live = os.path.join(w, "src")          # the fixed path every day
        rmtree(live)
        sh(["cp", "-al", src, live])
        p.init()
        self.warm(live)
        dt, kb = p.backup(live, 1)
        key = "%s/%s/" % (kind, p.name)
        self.r.add(key + "backup_s", dt)
        self.r.add(key + "backup_rss_kb", kb)
        s1 = p.stored()
        self.r.add(key + "stored_day1", s1)
        dest = os.path.join(w, "restore")
        rmtree(dest)
        os.makedirs(dest)
        drop_caches()
        dt, kb = p.restore(live, dest, 1)
        self.r.add(key + "restore_s", dt)
        self.r.add(key + "restore_rss_kb", kb)
        if self.a.smoke or self.a.verify:
            if tree_digest(p.restored_root(live, dest)) != tree_digest(src):
                raise SuiteError("%s: %s restored a different tree" % (kind, p.name))
            self.checks += 1
        rmtree(dest)
        if p.mountable and not self.a.no_peer_mounts:
            mnt = os.path.join(w, "peermnt")
            proc = p.mount(mnt)
            try:
                root = p.mounted_root(mnt, live)
                drop_caches()
                dt, n = read_tree(root)
                if n != nbytes:
                    raise SuiteError("%s: read %d bytes through %s mount, expected %d"
                                     % (kind, n, p.name, nbytes))
                self.r.add(key + "read_s", dt)
            finally:
                fuse_unmount(mnt)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if kind in DAY2:
            self.apply_day2(kind, live, replace=True)
            self.warm(live)
            dt, kb = p.backup(live, 2)
            self.r.add(key + "day2_s", dt)
            self.r.add(key + "backup_rss_kb", kb)
            s2 = p.stored()
            self.r.add(key + "stored_day2", s2)
            self.r.add(key + "increment", s2 - s1)
        rmtree(p.repo)
        rmtree(live)

    # ---------------------------------------------------------- snapshots
    def snapshot_scaling(self):
        t = self.tresor
        counts = self.a.snap_files
        w = self.work
        for n in counts:
            tb = os.path.join(self.data, "tiny-%d.tar" % n)
            if not os.path.exists(tb):
                log("generating %s" % tb)
                sh([PY, GEN, "tiny", tb, "--files", str(n)])
            store = t.new_store(os.path.join(w, "store"))
            mnt = os.path.join(w, "mnt")
            t.mount(store, mnt)
            try:
                log("snapshot scaling: %d files" % n)
                t0 = time.monotonic()
                sh(["tar", "xf", tb, "-C", mnt])
                syncfs(mnt)
                t.snapshot(store)
                self.r.add("snap/%d/untar_s" % n, time.monotonic() - t0)
                for rep in range(max(3, self.a.reps)):
                    for k in range(10):
                        with open(os.path.join(mnt, "objects/OBJ-00000/f-%07d" % (k * 7 % min(n, 1000))),
                                  "ab") as f:
                            f.write(b"rep %d\n" % rep)
                    self.r.add("snap/%d/create_s" % n, t.snapshot(store))
                names = json.loads(t.cmd("snapshot", "list", store, "bench", "--json").stdout)
                last = names[-1]["name"]
                got = sum(len(fs) for _, _, fs in os.walk(os.path.join(mnt, ".snapshots", last)))
                if got != n:
                    raise SuiteError("snapshot %s shows %d files, expected %d" % (last, got, n))
                self.checks += 1
            finally:
                self.r.add("snap/%d/rss_kb" % n, t.umount())
            rmtree(store)

    # ---------------------------------------------------------- S3
    def s3_start(self):
        d = os.path.join(REPO, "tests", "servers", "s3rver")
        marker = os.path.join(d, "node_modules", "@20minutes", "s3rver", "package.json")
        if not os.path.exists(marker):
            log("npm ci in %s" % d)
            sh(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=d, timeout=600)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        data = os.path.join(self.work, "s3data")
        os.makedirs(data, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(S3RVER_ACCESS_KEY=S3_ACCESS, S3RVER_SECRET_KEY=S3_SECRET)
        lf = open(os.path.join(self.work, "s3rver.log"), "ab")
        proc = subprocess.Popen(["node", "--openssl-legacy-provider", "start.js", "--port",
                                 str(port), "--dir", data, "--bucket", S3_BUCKET], cwd=d,
                                env=env, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                start_new_session=True)

        def up():
            if proc.poll() is not None:
                raise SuiteError("s3rver exited; see %s/s3rver.log" % self.work)
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return True
            except OSError:
                return False
        wait_for(up, 60, "s3rver")
        home = os.path.join(self.work, "s3home")
        os.makedirs(home, exist_ok=True)
        self.s3 = {"proc": proc, "port": port, "endpoint": "http://127.0.0.1:%d" % port,
                   "data": data,
                   "env": dict(env, AWS_ACCESS_KEY_ID=S3_ACCESS, AWS_SECRET_ACCESS_KEY=S3_SECRET,
                               AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="us-east-1",
                               HOME=home)}
        self.s3["env"].pop("S3RVER_ACCESS_KEY")
        self.s3["env"].pop("S3RVER_SECRET_KEY")
        self.s3["env"].pop("TRESOR_PASSPHRASE", None)

    def s3_stop(self):
        if self.s3 and self.s3["proc"].poll() is None:
            self.s3["proc"].terminate()
            try:
                self.s3["proc"].wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.s3["proc"].kill()
                self.s3["proc"].wait()

    def push(self, store, day, rep):
        s3 = self.s3
        url = "s3://%s/r%d" % (S3_BUCKET, rep)
        opts = ["--endpoint", s3["endpoint"], "--path-style"]
        if day == 1:
            sh([self.tresor.bin, "remote", "add", store, "bench", url] + opts, env=s3["env"])
        t0 = time.monotonic()
        p = sh([self.tresor.bin, "push", store, "bench", "--json",
                "--passphrase-file", self.passfile], env=s3["env"])
        dt = time.monotonic() - t0
        j = json.loads(p.stdout)
        b = j.get("pack_bytes", 0) + j.get("meta_bytes", 0)
        self.r.add("s3/push_day%d_s" % day, dt)
        self.r.add("s3/push_day%d_bytes" % day, b)
        if day == 1:
            # ceiling: the same pack files uploaded by awscli (10 parallel requests)
            t0 = time.monotonic()
            sh(["aws", "--endpoint-url", s3["endpoint"], "s3", "cp", "--recursive", "--quiet",
                os.path.join(store, "packs"), "s3://%s/ceiling%d/" % (S3_BUCKET, rep)],
               env=s3["env"])
            self.r.add("s3/awscli_up_s", time.monotonic() - t0)
            self.r.add("s3/awscli_up_bytes", tree_bytes(os.path.join(store, "packs"))[1])

    def recover(self, rep):
        s3 = self.s3
        url = "s3://%s/r%d" % (S3_BUCKET, rep)
        dest = os.path.join(self.work, "recovered")
        rmtree(dest)
        t0 = time.monotonic()
        sh([self.tresor.bin, "recover", url, dest, "--endpoint", s3["endpoint"], "--path-style",
            "--passphrase-file", self.passfile], env=s3["env"])
        self.r.add("s3/recover_s", time.monotonic() - t0)
        rmtree(dest)
        dl = os.path.join(self.work, "awscli-down")
        rmtree(dl)
        t0 = time.monotonic()
        sh(["aws", "--endpoint-url", s3["endpoint"], "s3", "cp", "--recursive", "--quiet",
            "s3://%s/r%d/" % (S3_BUCKET, rep), dl], env=s3["env"])
        syncfs(self.work)
        self.r.add("s3/awscli_down_s", time.monotonic() - t0)
        self.r.add("s3/awscli_down_bytes", tree_bytes(dl)[1])
        rmtree(dl)

    # ---------------------------------------------------------- profile
    def perf_start(self, pid, tag):
        out = os.path.join(self.dir, "perf-%s.data" % tag)
        p = subprocess.Popen(["perf", "record", "-g", "-F", "499", "-p", str(pid), "-o", out],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        return (p, out, tag)

    def perf_stop(self, perf):
        if not perf:
            return
        p, out, tag = perf
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
        rep = sh(["perf", "report", "-i", out, "--no-children", "--stdio", "--sort",
                  "comm,dso,symbol", "-g", "none", "--percent-limit", "1.5"], check=False)
        txt = rep.stdout.decode(errors="replace")
        path = os.path.join(self.dir, "perf-%s.txt" % tag)
        with open(path, "w") as f:
            f.write(txt)
        self.profiles[tag] = path
        log("profile %s: %s" % (tag, path))

    # ---------------------------------------------------------- main loop
    def run(self):
        a = self.a
        if "plans" in a.datasets and not a.no_s3:
            self.s3_start()
        try:
            for rep in range(1, a.reps + 1):
                log("=== repetition %d of %d (load %s)" % (rep, a.reps, load_average()))
                self.run_fio(rep)
                for kind in a.datasets:
                    src = self.dataset(kind, 1)
                    nfiles, nbytes = tree_bytes(src)
                    self.info[kind] = {"files": nfiles, "bytes": nbytes}
                    log("%s: %d files, %.1f MB" % (kind, nfiles, nbytes / MB))
                    self.raw_and_bindfs(kind, src, nbytes, rep)
                    self.run_tresor(kind, src, nbytes, rep, s3=(kind == "plans" and self.s3))
                    for p in self.peers:
                        log("%s: %s" % (kind, p.name))
                        self.run_peer(p, kind, src, nbytes, rep)
                    self.loads.append(load_average())
            if a.snap_files:
                self.snapshot_scaling()
                self.loads.append(load_average())
        finally:
            self.s3_stop()


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def fmt_s(x):
    return "-" if x is None else ("%.2f s" % x if x < 100 else "%.0f s" % x)


def fmt_mb(x):
    return "-" if x is None else "%.1f MB" % (x / MB)


def report(s):
    r, info, a = s.r, s.info, s.a
    rows = []          # (dataset, system, figure, value string, ratio string)
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "smoke": a.smoke, "scale": a.scale,
           "seed": a.seed, "repetitions": a.reps, "binary": a.tresor,
           "load_average": s.loads, "caches_dropped": CACHES["dropped"], "datasets": info,
           "raw": r.v, "summary": {}, "targets": [], "profiles": s.profiles,
           "checks": s.checks}

    def per_rep_ratio(num, den, invert=False):
        x, y = r.v.get(num), r.v.get(den)
        if not x or not y:
            return None, None
        q = [(b / a_ if invert else a_ / b) for a_, b in zip(x, y) if a_ and b]
        if not q:
            return None, None
        return statistics.median(q), (min(q), max(q))

    def summ(key, value, spread=None, unit=""):
        out["summary"][key] = {"median": value, "spread": spread, "unit": unit}

    systems = ["raw", "bindfs", "tresor"] + [p.name for p in s.peers]
    labels = {"raw": "raw disk", "bindfs": "bindfs", "tresor": "tresor"}
    labels.update({p.name: p.label() for p in s.peers})
    table = []
    for kind in a.datasets:
        nbytes = info.get(kind, {}).get("bytes", 0)
        for sysname in systems:
            k = "%s/%s/" % (kind, sysname)
            ing = r.med(k + "ingest_s") or r.med(k + "backup_s")
            rd = r.med(k + "read_s")
            row = {"dataset": kind, "system": labels[sysname],
                   "ingest_MBps": nbytes / MB / ing if ing else None,
                   "ingest_spread_s": r.spread(k + "ingest_s") or r.spread(k + "backup_s"),
                   "read_MBps": nbytes / MB / rd if rd else None,
                   "read_spread_s": r.spread(k + "read_s"),
                   "stored_day1": r.med(k + "stored_day1"),
                   "increment": r.med(k + "increment"),
                   "day2_s": r.med(k + "day2_s"),
                   "restore_s": r.med(k + "restore_s"),
                   "find_s": r.med(k + "find_s"),
                   "peak_mem_kb": max(r.v.get(k + "rss_kb", []) + r.v.get(k + "backup_rss_kb", [])
                                      + [0]) or None}
            if any(v is not None for kk, v in row.items() if kk not in ("dataset", "system")):
                table.append(row)
    out["table"] = table

    # ---------------------------------------------------------- targets
    T = out["targets"]

    def target(name, value, op, bound, detail, unit="x"):
        if value is None:
            T.append({"target": name, "value": None, "pass": None, "detail": detail + " (not measured)"})
            return
        ok = value >= bound if op == ">=" else (value <= bound if op == "<=" else value < bound)
        margin = (value / bound - 1) if op == ">=" else (bound / value - 1 if value else float("inf"))
        T.append({"target": name, "value": round(value, 3), "op": op, "bound": bound,
                  "pass": ok, "margin_pct": round(100 * margin, 1), "detail": detail, "unit": unit})

    peers_backup = [p.name for p in s.peers if isinstance(p, (Restic, Borg))]
    if "large" in a.datasets:
        q, sp = per_rep_ratio("large/raw/ingest_s", "large/tresor/ingest_s")
        target("ingest incompressible >= 60 % of raw disk write", q, ">=", 0.60,
               "tresor cp+sync+snapshot vs cp+syncfs on ext4, per-rep ratio, spread %s" % (sp,))
        for pn in ("restic", "borg"):
            names = [n for n in peers_backup if n.startswith(pn)]
            best = None
            for n in names:
                q, sp = per_rep_ratio("large/%s/backup_s" % n, "large/tresor/ingest_s")
                if q is not None and (best is None or q < best[0]):
                    best = (q, n, sp)
            if best:
                target("ingest incompressible >= 2x %s backup" % pn, best[0], ">=", 2.0,
                       "against the fastest %s config (%s), spread %s" % (pn, best[1], best[2]))
        q, sp = per_rep_ratio("large/raw/read_s", "large/tresor/read_s")
        target("cold sequential read >= 70 % of raw disk read", q, ">=", 0.70,
               "per-rep ratio, spread %s" % (sp,))
        if r.has("large/restic/read_s"):
            q, sp = per_rep_ratio("large/restic/read_s", "large/tresor/read_s")
            target("cold sequential read >= 3x restic mount", q, ">=", 3.0,
                   "per-rep ratio, spread %s" % (sp,))
    for kind in DAY2:
        if kind not in a.datasets:
            continue
        inc = r.med("%s/tresor/increment" % kind)
        for pn in ("restic", "borg"):
            cands = [(r.med("%s/%s/increment" % (kind, n)), n) for n in peers_backup
                     if n.startswith(pn) and r.has("%s/%s/increment" % (kind, n))]
            if cands and inc is not None:
                best, bn = min(cands)
                target("%s day-2 increment <= %s's" % (kind, pn),
                       inc / best if best else None, "<=", 1.0,
                       "tresor %s vs smallest %s increment %s (%s)" % (
                           fmt_mb(inc), pn, fmt_mb(best), bn))
    if "small" in a.datasets:
        q, sp = per_rep_ratio("small/tresor/ingest_s", "small/bindfs/ingest_s")
        target("untar small files >= bindfs speed", q, ">=", 1.0,
               "speed ratio tresor/bindfs (untar+sync; tresor incl. snapshot), spread %s" % (sp,))
    if a.snap_files and len(a.snap_files) > 1:
        lo, hi = a.snap_files[0], a.snap_files[-1]
        x, y = r.med("snap/%d/create_s" % hi), r.med("snap/%d/create_s" % lo)
        target("snapshot creation time %d / %d files < 2" % (hi, lo),
               x / y if x and y else None, "<", 2.0,
               "%s vs %s (median of %d)" % (fmt_s(x), fmt_s(y), max(3, a.reps)))
    peak = max([max(v) for k, v in r.v.items() if k.endswith("/tresor/rss_kb") or
                (k.startswith("snap/") and k.endswith("rss_kb"))] + [0]) / 1024.0
    target("daemon peak RSS < 200 MB", peak, "<", 200.0,
           "VmHWM over every mount of the run", unit="MB")
    out["peak_rss_mb"] = round(peak, 1)

    # ---------------------------------------------------------- print
    print()
    print("tresor benchmark suite: scale %g, %d repetition(s), seed %d%s" % (
        a.scale, a.reps, a.seed, " (SMOKE: figures meaningless)" if a.smoke else ""))
    print("load average during the run: %s" % " ".join("%.1f" % l[0] for l in s.loads))
    if not CACHES["dropped"]:
        print("WARNING: page cache could not be dropped; reads were not cold")
    hdr = "%-10s %-26s %10s %10s %11s %11s %9s %9s %9s" % (
        "dataset", "system", "ingest", "cold read", "stored d1", "day-2 inc", "day-2", "restore",
        "peak mem")
    print(hdr)
    print("-" * len(hdr))
    for row in table:
        print("%-10s %-26s %10s %10s %11s %11s %9s %9s %9s" % (
            row["dataset"], row["system"][:26],
            "%.0f MB/s" % row["ingest_MBps"] if row["ingest_MBps"] else "-",
            "%.0f MB/s" % row["read_MBps"] if row["read_MBps"] else "-",
            fmt_mb(row["stored_day1"]), fmt_mb(row["increment"]), fmt_s(row["day2_s"]),
            fmt_s(row["restore_s"]),
            "%.0f MB" % (row["peak_mem_kb"] / 1024) if row["peak_mem_kb"] else "-"))
    extra = []
    if r.has("fio/write_MBps"):
        extra.append("fio seq write+fsync %.0f MB/s, cold read %.0f MB/s" % (
            r.med("fio/write_MBps"), r.med("fio/read_MBps")))
    if "small" in a.datasets:
        extra.append("small: cold find+stat raw %s, bindfs %s, tresor %s" % (
            fmt_s(r.med("small/raw/find_s")), fmt_s(r.med("small/bindfs/find_s")),
            fmt_s(r.med("small/tresor/find_s"))))
    for kind in a.datasets:
        if r.has("%s/tresor/dedup_ratio" % kind):
            extra.append("%s: tresor dedup %.2f, compression %.2f, snapshot after ingest %s" % (
                kind, r.med("%s/tresor/dedup_ratio" % kind),
                r.med("%s/tresor/compression_ratio" % kind),
                fmt_s(r.med("%s/tresor/snapshot_s" % kind))))
    if r.has("s3/push_day1_s"):
        up = r.med("s3/push_day1_bytes") / MB / r.med("s3/push_day1_s")
        ce = r.med("s3/awscli_up_bytes") / MB / r.med("s3/awscli_up_s")
        extra.append("S3 push day 1: %s in %s (%.0f MB/s; awscli cp of the packs %.0f MB/s, "
                     "ratio %.2f)" % (fmt_mb(r.med("s3/push_day1_bytes")),
                                      fmt_s(r.med("s3/push_day1_s")), up, ce, up / ce))
        out["summary"]["push_vs_awscli"] = up / ce
        if r.has("s3/push_day2_s"):
            extra.append("S3 push day 2: %s in %s" % (fmt_mb(r.med("s3/push_day2_bytes")),
                                                       fmt_s(r.med("s3/push_day2_s"))))
        if r.has("s3/recover_s"):
            rq = r.med("s3/awscli_down_s") / r.med("s3/recover_s")
            extra.append("recover from S3: %s (awscli download of the same objects %s, "
                         "speed ratio %.2f)" % (fmt_s(r.med("s3/recover_s")),
                                                fmt_s(r.med("s3/awscli_down_s")), rq))
            out["summary"]["recover_vs_awscli"] = rq
    for n in a.snap_files or []:
        if r.has("snap/%d/create_s" % n):
            extra.append("snapshot create at %d files: %s (spread %s), untar %s" % (
                n, "%.1f ms" % (1000 * r.med("snap/%d/create_s" % n)),
                "%.1f-%.1f ms" % tuple(1000 * x for x in r.spread("snap/%d/create_s" % n)),
                fmt_s(r.med("snap/%d/untar_s" % n))))
    for e in extra:
        print("  " + e)
    out["notes"] = extra
    print()
    print("targets:")
    for t in T:
        if t["pass"] is None:
            print("  %-52s %s" % (t["target"], t["detail"]))
            continue
        print("  %-52s %8.3f%s  %-4s margin %+6.1f %%  (%s)" % (
            t["target"], t["value"], " MB" if t.get("unit") == "MB" else "",
            "PASS" if t["pass"] else "FAIL", t["margin_pct"], t["detail"]))
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1, default=str)
    print("\nJSON written to %s" % a.json)
    return all(t["pass"] for t in T if t["pass"] is not None)


def main():
    ap = argparse.ArgumentParser(description="tresor benchmark suite (see tests/bench/suite.sh)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--scale", type=float)
    ap.add_argument("--reps", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir")
    ap.add_argument("--json")
    ap.add_argument("--datasets", default="large,plans,filestore,small")
    ap.add_argument("--small-files", type=int, default=0)
    ap.add_argument("--snap-files")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--no-peer-mounts", action="store_true")
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--verify", action="store_true", help="compare every copy byte for byte")
    ap.add_argument("--tresor", default=os.environ.get("TRESOR_BIN",
                                                       os.path.join(REPO, "build", "tresor")))
    a = ap.parse_args()
    smoke_tmp = None
    if a.smoke:
        a.scale = a.scale or 0.01
        a.reps = a.reps or 1
        a.small_files = a.small_files or 300
        a.snap_files = a.snap_files or "1000,3000"
        if not a.dir:
            a.dir = smoke_tmp = tempfile.mkdtemp(prefix="tresor-suite-smoke-", dir="/var/tmp")
        if not a.json:
            os.makedirs(os.path.join(REPO, "tests", ".work"), exist_ok=True)
            a.json = os.path.join(REPO, "tests", ".work", "suite-smoke.json")
    elif a.full:
        a.scale = a.scale or 4
        a.reps = a.reps or 3
        a.snap_files = a.snap_files or "10000,100000,1000000"
    a.scale = a.scale or 1.0
    a.reps = a.reps or 3
    a.snap_files = [int(x) for x in (a.snap_files or "10000,100000").split(",") if x]
    a.dir = a.dir or "/var/tmp/tresor-bench-suite"
    os.makedirs(a.dir, exist_ok=True)
    a.json = a.json or os.path.join(a.dir, "suite.json")
    a.datasets = [x for x in a.datasets.split(",") if x]
    for d in a.datasets:
        if d not in ("large", "plans", "filestore", "small"):
            ap.error("unknown dataset %s" % d)
    if not os.access(a.tresor, os.X_OK):
        log("%s not built (ninja -C build)" % a.tresor)
        return 2
    s = Suite(a)
    log("dir %s, scale %g, %d rep(s), datasets %s, snapshot files %s, load %s" % (
        a.dir, a.scale, a.reps, ",".join(a.datasets), a.snap_files, load_average()))
    t0 = time.monotonic()
    try:
        s.run()
    except SuiteError as e:
        log("ERROR: %s" % e)
        s.tresor.umount() if s.tresor.proc else None
        return 2
    except KeyboardInterrupt:
        s.tresor.umount() if s.tresor.proc else None
        return 130
    finally:
        s.s3_stop()
    ok = report(s)
    log("done in %.0f s" % (time.monotonic() - t0))
    if smoke_tmp:
        shutil.rmtree(smoke_tmp, ignore_errors=True)
        return 0
    if not a.smoke:
        shutil.rmtree(s.work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
