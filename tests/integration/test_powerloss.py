"""Power loss: crashes where what the kernel had not yet written to the
disk is lost too, at the block level.

The store lives on an ext4 filesystem in an image file attached to a loop
device.  A seeded workload (torture_model.py) runs on the mount; at a
random moment the power is "cut": the daemon is stopped (SIGSTOP), and
the image file is copied -- that copy holds exactly the blocks the loop
device had been given, i.e. everything fsync/fdatasync forced down and
whatever write-back happened to send, and none of the dirty page cache of
the ext4 above it.  The copy is only used when the loop device's count of
completed writes did not move during it and nothing was in flight (else
the copy could mix two instants and it is taken again).  The daemon is
then killed, the old filesystem thrown away, and the copy attached,
mounted (ext4 replays its journal) and mounted by tresor without any
manual step: every fsynced block and fsynced rename must be there, no file
may hold a block it never had, and `tresor check` must be clean.  The next
round runs on the copy, so the damage of each cut accumulates.

Device-mapper (dm-flakey, dm-log-writes) is not available in this kernel
(no /dev/mapper/control), so this image-copy cut is the block-level method.
TRESOR_POWERLOSS_ROUNDS (default 5) sets the number of cuts.
"""

import os
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import PASSPHRASE, Store, fusermount_u, mounted, tresor, wait_for
from torture_model import Model, Workload, mount_dead, tree_of, verify

ROUNDS = int(os.environ.get("TRESOR_POWERLOSS_ROUNDS", "5"))
SOAK = float(os.environ.get("TRESOR_POWERLOSS_SOAK_SECONDS", "0"))
SEED = int(os.environ.get("TRESOR_SEED", "8"))
IMAGE_MB = 384


def run(*cmd):
    p = subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, "%s: %s %s" % (" ".join(map(str, cmd)), p.stdout, p.stderr)
    return p.stdout.strip()


class Disk:
    """An ext4 image on a loop device, mounted at a directory."""

    def __init__(self, image, mnt):
        self.image = image
        self.mnt = mnt
        self.dev = None

    def attach(self):
        self.dev = run("losetup", "-f", "--show", self.image)
        self.mnt.mkdir(exist_ok=True)
        run("mount", "-t", "ext4", self.dev, self.mnt)

    def detach(self):
        if self.dev:
            subprocess.run(["umount", str(self.mnt)], capture_output=True)
            if mounted(self.mnt):
                subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
            subprocess.run(["losetup", "-d", self.dev], capture_output=True)
            self.dev = None

    def io_counts(self):
        name = os.path.basename(self.dev)
        f = open("/sys/block/%s/stat" % name).read().split()
        return int(f[4]), int(f[8])   # writes completed, in flight

    def cut(self, dest):
        """Copy the image as the loop device holds it now; retried until
        no write completed or was in flight during the copy."""
        for tries in range(50):
            before = self.io_counts()
            shutil.copyfile(self.image, dest)
            after = self.io_counts()
            if before == after and before[1] == 0:
                return tries + 1
            time.sleep(0.2)
        return 0


@pytest.fixture
def disk(tmp):
    image = tmp / "disk.img"
    with open(image, "wb") as f:
        f.truncate(IMAGE_MB << 20)
    run("mkfs.ext4", "-q", "-F", "-E", "nodiscard", image)
    d = Disk(image, tmp / "disk")
    d.attach()
    yield d
    d.detach()


def test_power_loss(tmp, disk, passfile, mounts):
    run_tresor = lambda *a: tresor(*a, passphrase_env=PASSPHRASE, check=True)  # noqa: E731
    run_tresor("init", disk.mnt / "store", "--kdf-log2n", "12",
               "--chunk-min", "4096", "--chunk-avg", "16384", "--chunk-max", "65536")
    run_tresor("volume", "create", disk.mnt / "store", "vol")
    store = Store(disk.mnt / "store", passfile)
    rng = random.Random(SEED)
    model = Model()
    figures = {"cuts": 0, "ops": 0, "acked_fsync": 0, "retried_copies": 0, "rolled_back": 0}
    start = time.monotonic()
    n = 0
    while n < ROUNDS or (SOAK and time.monotonic() - start < SOAK):
        m = mounts.mount(store, "vol", extra_env={"TRESOR_TEST_PACK_TARGET": "196608"})
        w = Workload(model, m.path, rng)
        if n == 0:
            w.setup()
        stop = threading.Event()
        err = []

        def work():
            try:
                while not stop.is_set():
                    w.step()
            except OSError as e:
                if not mount_dead(e):
                    err.append(e)
            except Exception as e:  # noqa: BLE001 - reported below
                err.append(e)
        t = threading.Thread(target=work, daemon=True)
        t.start()
        time.sleep(rng.uniform(0.2, 2.0))
        # the cut: nothing the daemon does from here on reaches the disk
        os.kill(m.pid, signal.SIGSTOP)
        stop.set()
        acked = dict(w.acked)
        at_cut = model.expected_tree()
        cut = tmp / "cut.img"
        tries = disk.cut(cut)
        assert tries, "the loop device kept writing for 10 s after the daemon stopped"
        figures["retried_copies"] += tries - 1
        os.kill(m.pid, signal.SIGKILL)
        m.proc.wait(timeout=20)
        fusermount_u(m.path, lazy=True)
        assert wait_for(lambda: not mounted(m.path), 10)
        m.active = False
        t.join(30)
        assert not t.is_alive(), "the workload is still blocked 30 s after the kill"
        assert not err, "workload error before the cut: %r" % err
        # throw the old disk away, boot from the cut
        disk.detach()
        os.replace(cut, disk.image)
        disk.attach()
        m = mounts.mount(store, "vol")
        after = tree_of(m.path)
        # names whose content the crash took back to an older state
        # (unsynced writes lost: in the daemon's memory or the page cache)
        figures["rolled_back"] += sum(1 for p, v in at_cut.items()
                                      if p not in after or after[p][1] != v[1])
        problems, st = verify(model, m.path)
        m.close()
        assert not problems, "cut %d: after power loss:\n  %s" % (n, "\n  ".join(problems))
        p = store.check()
        assert p.returncode == 0, "cut %d: check: %s %s" % (n, p.stdout, p.stderr)
        if n % 5 == 4:
            # overwritten blocks leave dead chunks: give the space back
            p = tresor("prune", store.path, "vol", "--keep-last", "1",
                       passphrase_env=PASSPHRASE, timeout=600)
            assert p.returncode == 0, "prune after cut %d: %s" % (n, p.stderr)
        figures["cuts"] += 1
        figures["ops"] += sum(w.ops.values())
        figures["acked_fsync"] += acked["fsync"]
        n += 1
    p = tresor("check", store.path, "--read-data", passphrase_env=PASSPHRASE, timeout=600)
    assert p.returncode == 0, "check --read-data: %s %s" % (p.stdout, p.stderr)
    figures["seconds"] = round(time.monotonic() - start, 1)
    print("powerloss: %r" % figures)
    assert figures["acked_fsync"] > 0
    assert figures["rolled_back"] > 0, "no cut lost any unsynced write: the cuts came too late"

