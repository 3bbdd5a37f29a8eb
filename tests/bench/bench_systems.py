"""bench_systems.py - the systems the suite drives: tresor (store, mount,
snapshot, stats) and the peers restic, borg, rsync --link-dest and
tar | gzip, each with init / backup / restore / stored bytes (and a FUSE
mount for restic and borg)."""

import json
import os
import subprocess
import sys
import time

from bench_common import (SuiteError, du_bytes, fuse_unmount, is_mount, rmtree, sh, timed,
                          wait_for)

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


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
    """A backup tool: init() a fresh repository, backup(src, day) ->
    (seconds, peak KB), restore(src, dest, day) -> (seconds, peak KB),
    stored() bytes on disk; restored_root() is where the tree lands."""
    name = "?"
    label_text = "?"
    mountable = False
    plain_dir = False      # the repository is a plain directory we create

    def __init__(self, work):
        self.work = work
        self.repo = os.path.join(work, "repo-" + self.name)

    init_cmd = None        # creates a repository (its path appended)
    cache_var = None       # environment variable naming the tool's cache
    compression = None

    def init(self):
        rmtree(self.repo)
        if self.plain_dir:
            os.makedirs(self.repo)
        if self.cache_var:
            rmtree(self.env[self.cache_var])
        if self.init_cmd:
            sh(self.init_cmd + [self.repo], env=self.env)

    def label(self):
        if self.compression is None:
            return self.label_text
        return "%s --compression %s" % (self.name.split("-")[0], self.compression)

    def restored_root(self, src, dest):
        return dest

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

    label_text = "restic 0.14 (zstd auto)"
    init_cmd = ["restic", "init", "-q", "-r"]
    cache_var = "RESTIC_CACHE_DIR"

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

    label_text = "borg 1.2 (lz4)"
    init_cmd = ["borg", "init", "-e", "repokey"]
    cache_var = "BORG_BASE_DIR"

    def backup(self, src, day):
        cmd = ["borg", "create"]
        if self.compression:
            cmd += ["--compression", self.compression]
        # cwd = src, archive "." : paths inside the archive are relative
        return timed(cmd + ["%s::day%d" % (self.repo, day), "."], env=self.env, cwd=src)

    def restore(self, src, dest, day):
        os.makedirs(dest, exist_ok=True)
        return timed(["borg", "extract", "%s::day%d" % (self.repo, day)], env=self.env, cwd=dest)

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
    label_text = "rsync --link-dest"
    plain_dir = True

    def backup(self, src, day):
        cmd = ["rsync", "-a", src + "/", os.path.join(self.repo, "day%d" % day)]
        if day > 1:
            cmd.insert(2, "--link-dest=" + os.path.join(self.repo, "day%d" % (day - 1)))
        return timed(cmd)

    def restore(self, src, dest, day):
        return timed("cp -a %s/. %s && sync -f %s" % (
            os.path.join(self.repo, "day%d" % day), dest, dest), shell=True)


class TarGz(Peer):
    name = "tar-gzip"
    label_text = "tar | gzip (full daily)"
    plain_dir = True

    def backup(self, src, day):
        out = os.path.join(self.repo, "day%d.tar.gz" % day)
        return timed("tar cf - -C %s . | gzip > %s" % (src, out), shell=True)

    def restore(self, src, dest, day):
        os.makedirs(dest, exist_ok=True)
        return timed("gzip -dc %s | tar xf - -C %s && sync -f %s" % (
            os.path.join(self.repo, "day%d.tar.gz" % day), dest, dest), shell=True)
