#!/usr/bin/python3
"""suite.py - tresor beside raw disk, bindfs, restic, borg, rsync and tar.

Run through suite.sh (which installs the peers and builds tresor first):

    bash tests/bench/suite.sh [--smoke|--full] [--scale S] [--reps N]
        [--dir DIR] [--json FILE] [--datasets large,plans,filestore,small]
        [--snap-files 10000,100000] [--no-peers] [--no-s3] [--profile] [--cores]

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
                 snapshot; daemon peak RSS (VmHWM); the daemon's CPU
                 seconds (user + system, all threads) per GiB ingested
  --cores        large and plans: ingest and cold read once with the whole
                 run (daemon, cp, reader) pinned to one core, then to two
                 (--cores-store DIR: the store there, e.g. a tmpfs, so that
                 the disk does not set the pace)
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
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_common import (Results, SuiteError, drop_caches, fuse_unmount,  # noqa: E402
                          is_mount, load_average, log, read_tree, rmtree, sh, syncfs,
                          timed, tree_bytes, tree_digest, wait_for)
from bench_systems import Borg, Restic, Rsync, TarGz, Tresor  # noqa: E402
from suite_report import report  # noqa: E402
REPO = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
GEN = os.path.join(HERE, "gen_dataset.py")
MB = 1e6

S3_ACCESS = "AKIATRESORBENCH00001"
S3_SECRET = "tresorBenchSecret/Key+0123456789abcdefgh"
S3_BUCKET = "tresor-bench"

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
            self.peers = [Restic(self.work), Borg(self.work), Rsync(self.work), TarGz(self.work)]
            if a.peer_set == "all":
                self.peers[1:1] = [Restic(self.work, "max")]
                self.peers[3:3] = [Borg(self.work, "zstd")]
        self.loads = [load_average()]
        self.bind_proc = None
        self.s3 = None
        self.profiles = {}
        self.fuse_ops = {}

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
        self.timed_ingest(kind, src, dst, "%s/raw/ingest_s" % kind)
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
            self.timed_ingest(kind, src, mnt, "%s/bindfs/ingest_s" % kind, below)
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

    def timed_ingest(self, kind, src, dest, key, *below):
        """Copy src into dest from a warm page cache, up to its being on
        disk (syncfs of dest and of what lies below it)."""
        self.warm(src)
        t0 = time.monotonic()
        sh(self.ingest_cmd(kind, src, dest))
        for p in (dest,) + below:
            syncfs(p)
        self.r.add(key, time.monotonic() - t0)

    def find_stat(self, path):
        t0 = time.monotonic()
        p = sh(["find", path, "-printf", "%s %m\n"])
        return time.monotonic() - t0, p.stdout.count(b"\n")

    # ---------------------------------------------------------- tresor
    def run_tresor(self, kind, src, nbytes, rep, s3=False, profile=False):
        t = self.tresor
        w = self.work
        store = t.new_store(os.path.join(w, "store"))
        mnt = os.path.join(w, "mnt")
        pid = t.mount(store, mnt)
        prof = profile
        try:
            self.warm(src)
            perf = self.perf_start(pid, "%s-ingest" % kind) if prof else None
            cpu0 = self.process_cpu(pid)
            t0 = time.monotonic()
            sh(self.ingest_cmd(kind, src, mnt))
            syncfs(mnt)
            t1 = time.monotonic()
            # the daemon's CPU (all its threads) for the bytes it took in
            self.r.add("%s/tresor/cpu_s_per_GiB" % kind,
                       (self.process_cpu(pid) - cpu0) / (nbytes / 2.0**30))
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
    @staticmethod
    def peer_backup(p, src, day):
        """A peer's backup, up to its repository being on disk (syncfs)."""
        dt, kb = p.backup(src, day)
        t0 = time.monotonic()
        syncfs(p.repo)
        return dt + time.monotonic() - t0, kb

    def run_peer(self, p, kind, src, nbytes, rep):
        w = self.work
        live = os.path.join(w, "src")          # the fixed path every day
        rmtree(live)
        sh(["cp", "-al", src, live])
        p.init()
        self.warm(live)
        dt, kb = self.peer_backup(p, live, 1)
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
            dt, kb = self.peer_backup(p, live, 2)
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
                drop_caches()
                self.r.add("snap/%d/find_s" % n, self.find_stat(mnt)[0])
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

    # ---------------------------------------------------------- cores
    def core_scaling(self, kind, src, nbytes, rep):
        """Ingest and cold read with the whole run (daemon, cp, reader)
        pinned to one core, then to two: what a second core buys."""
        t = self.tresor
        w = self.work
        mnt = os.path.join(w, "mnt")
        keep = os.sched_getaffinity(0)
        try:
            for n in (1, 2):
                os.sched_setaffinity(0, set(sorted(keep)[:n]))
                store = t.new_store(os.path.join(self.a.cores_store or w, "store"))
                t.mount(store, mnt)
                try:
                    self.timed_ingest(kind, src, mnt, "cores/%s/%d/ingest_s" % (kind, n))
                finally:
                    t.umount()
                t.mount(store, mnt)
                try:
                    drop_caches()
                    dt, got = read_tree(mnt)
                    if got != nbytes:
                        raise SuiteError("%s: read %d bytes, expected %d" % (kind, got, nbytes))
                    self.r.add("cores/%s/%d/read_s" % (kind, n), dt)
                finally:
                    t.umount()
                rmtree(store)
        finally:
            os.sched_setaffinity(0, keep)

    # ---------------------------------------------------------- profile
    @staticmethod
    def stat_cpu(path):
        """CPU seconds (user + system) in a /proc .../stat file."""
        with open(path) as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def process_cpu(pid):
        """CPU seconds of a process, all threads."""
        return Suite.stat_cpu("/proc/%d/stat" % pid)

    @staticmethod
    def thread_cpu(pid):
        """{thread name/tid: CPU seconds (user + system)} of a process."""
        out = {}
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                cpu = Suite.stat_cpu("/proc/%d/task/%s/stat" % (pid, tid))
                with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                    comm = f.read().strip()
            except OSError:
                continue
            name = "%s/%s%s" % (comm, tid, " (main: FUSE loop)" if int(tid) == pid else "")
            out[name] = cpu
        return out

    def perf_start(self, pid, tag):
        """perf record of the daemon (call graphs) plus per-thread CPU
        time, for the analysis of what holds tresor back."""
        out = os.path.join(self.dir, "perf-%s.data" % tag)
        p = subprocess.Popen(["perf", "record", "-g", "-F", "999", "-p", str(pid), "-o", out],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        # FUSE requests of this mount only (the kernel's tracepoint, filtered
        # by the connection number = the mount's device minor)
        conn = os.minor(os.stat(self.tresor.mnt).st_dev)
        fout = out + ".fuse"
        fp = subprocess.Popen(["perf", "record", "-e", "fuse:fuse_request_send", "-a",
                               "--filter", "connection == %d" % conn, "-o", fout],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        return (p, out, tag, pid, self.thread_cpu(pid), time.monotonic(), fp, fout)

    def perf_stop(self, perf):
        if not perf:
            return
        p, out, tag, pid, cpu0, t0, fp, fout = perf
        wall = time.monotonic() - t0
        cpu1 = self.thread_cpu(pid)
        for x in (p, fp):
            x.send_signal(signal.SIGINT)
            x.wait(timeout=60)
        lines = ["wall %.2f s; daemon CPU seconds per thread:" % wall]
        for k in sorted(cpu1):
            lines.append("  %-24s %6.2f" % (k, cpu1[k] - cpu0.get(k, 0)))
        ops = {}
        sc = sh(["perf", "script", "-i", fout, "-F", "trace"], check=False)
        for line in sc.stdout.decode(errors="replace").split("\n"):
            f = line.split()
            if "opcode" in f and "len" in f:
                name = f[f.index("opcode") + 2].strip("()")
                n, b = ops.get(name, (0, 0))
                ops[name] = (n + 1, b + int(f[f.index("len") + 1]))
        lines.append("FUSE requests sent to the daemon (count, mean request bytes):")
        for name, (n, b) in sorted(ops.items(), key=lambda x: -x[1][0]):
            lines.append("  %-20s %9d %10.0f" % (name, n, b / n))
        self.fuse_ops[tag] = {k: v[0] for k, v in ops.items()}
        txt = "\n".join(lines) + "\n\n"
        for sort in ("dso", "dso,symbol"):
            rep = sh(["perf", "report", "-i", out, "--no-children", "--stdio", "--sort", sort,
                      "-g", "none", "--percent-limit", "1"], check=False)
            txt += "\n".join(x for x in rep.stdout.decode(errors="replace").split("\n")
                             if x.strip() and not x.startswith("#")) + "\n\n"
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
                    if a.cores and kind in ("large", "plans") and len(os.sched_getaffinity(0)) > 1:
                        self.core_scaling(kind, src, nbytes, rep)
                    for p in self.peers:
                        log("%s: %s" % (kind, p.name))
                        self.run_peer(p, kind, src, nbytes, rep)
                    self.loads.append(load_average())
            if a.profile:
                # one extra, unrecorded pass under perf (perf slows what it watches)
                keep, self.r = self.r, Results()
                try:
                    for kind in [k for k in ("large", "small", "plans") if k in a.datasets]:
                        src = self.dataset(kind, 1)
                        self.run_tresor(kind, src, tree_bytes(src)[1], 0, profile=True)
                except SuiteError as e:
                    # the timed figures are complete; report them anyway
                    log("profile pass failed: %s" % e)
                    if self.tresor.proc:
                        self.tresor.umount()
                self.r = keep
            if a.snap_files:
                self.snapshot_scaling()
                self.loads.append(load_average())
        finally:
            self.s3_stop()

def scaling_table(runs):
    """How tresor's figures grow from the smallest to the largest scale."""
    if len(runs) < 2:
        return None
    scales = sorted(runs)
    print("\nscaling (tresor; ratios to raw disk measured in the same run):")
    out = []
    hdr = "%-10s %-28s" % ("dataset", "figure") + "".join("%14s" % ("x%g" % x) for x in scales)
    print(hdr)
    print("-" * len(hdr))
    for row in runs[scales[0]]["table"]:
        if row["system"] != "tresor":
            continue
        kind = row["dataset"]
        for fig in ("ingest_MBps", "read_MBps", "restore_s", "day2_s", "peak_mem_kb"):
            vals = []
            for x in scales:
                r = [t for t in runs[x]["table"] if t["dataset"] == kind and t["system"] == "tresor"]
                vals.append(r[0].get(fig) if r else None)
            if all(v is None for v in vals):
                continue
            out.append({"dataset": kind, "figure": fig, "values": dict(zip(map(str, scales), vals))})
            print("%-10s %-28s" % (kind, fig) + "".join(
                "%14s" % ("-" if v is None else "%.2f" % v) for v in vals))
        for lab in ("ingest/raw", "read/raw"):
            vals = []
            for x in scales:
                r = [t for t in runs[x]["ratios"] if t["dataset"] == kind]
                vals.append(r[0].get(lab, {}).get("ratio") if r else None)
            out.append({"dataset": kind, "figure": lab, "values": dict(zip(map(str, scales), vals))})
            print("%-10s %-28s" % (kind, lab) + "".join(
                "%14s" % ("-" if v is None else "%.2f" % v) for v in vals))
    return out


def main():
    ap = argparse.ArgumentParser(description="tresor benchmark suite (see tests/bench/suite.sh)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--scale", help="data scale, or a list (1,4) for a scaling run")
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
    ap.add_argument("--cores", action="store_true",
                    help="also ingest and read large and plans on one core, then two (taskset)")
    ap.add_argument("--cores-store", metavar="DIR",
                    help="keep the store of the --cores runs in DIR (a tmpfs takes the disk out)")
    ap.add_argument("--verify", action="store_true", help="compare every copy byte for byte")
    ap.add_argument("--tresor", default=os.environ.get("TRESOR_BIN",
                                                       os.path.join(REPO, "build", "tresor")))
    a = ap.parse_args()
    smoke_tmp = None
    a.peer_set = "all"
    if a.smoke:
        a.scale = a.scale or "0.005"
        a.reps = a.reps or 1
        a.small_files = a.small_files or 300
        a.snap_files = a.snap_files or "1000,3000"
        a.peer_set = "defaults"
        if not a.dir:
            a.dir = smoke_tmp = tempfile.mkdtemp(prefix="tresor-suite-smoke-", dir="/var/tmp")
        if not a.json:
            os.makedirs(os.path.join(REPO, "tests", ".work"), exist_ok=True)
            a.json = os.path.join(REPO, "tests", ".work", "suite-smoke.json")
    elif a.full:
        a.scale = a.scale or "1,4"
        a.reps = a.reps or 3
        a.snap_files = a.snap_files or "10000,100000,1000000"
    scales = [float(x) for x in (a.scale or "1").split(",") if x]
    a.reps = a.reps or 3
    a.snap_files = [int(x) for x in (a.snap_files or "10000,100000").split(",")
                    if x and x != "none"]
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
    t0 = time.monotonic()
    runs = {}
    ok = True
    snap_files = a.snap_files
    for i, scale in enumerate(scales):
        a.scale = scale
        a.snap_files = snap_files if i == len(scales) - 1 else []   # once, at the end
        s = Suite(a)
        log("dir %s, scale %g, %d rep(s), datasets %s, snapshot files %s, load %s" % (
            a.dir, a.scale, a.reps, ",".join(a.datasets), a.snap_files, load_average()))
        try:
            s.run()
        except SuiteError as e:
            log("ERROR: %s" % e)
            if s.tresor.proc:
                s.tresor.umount()
            return 2
        except KeyboardInterrupt:
            if s.tresor.proc:
                s.tresor.umount()
            return 130
        finally:
            s.s3_stop()
        passed, runs[scale] = report(s)
        ok = ok and passed
        if not a.smoke:
            shutil.rmtree(s.work, ignore_errors=True)
    doc = runs[scales[0]] if len(scales) == 1 else {
        "scales": {str(k): v for k, v in runs.items()}, "scaling": scaling_table(runs)}
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    print("\nJSON written to %s" % a.json)
    log("done in %.0f s" % (time.monotonic() - t0))
    if smoke_tmp:
        shutil.rmtree(smoke_tmp, ignore_errors=True)
    if a.smoke:
        return 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
