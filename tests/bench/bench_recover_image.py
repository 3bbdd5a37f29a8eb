#!/usr/bin/python3
"""bench_recover_image.py - time and requests to the first byte of a lazy
recovery, by number of files and length of history (issue 19).

    nice -n 19 /usr/bin/python3 tests/bench/bench_recover_image.py \
        [--files 10000,100000] [--pushes 1,200] [--delay-ms 30] \
        [--image-every 64] [--grace DURATION] [--json FILE] [--smoke]

For each number of files F and each history length P: a fresh store with
F small files (1 KiB, 1,000 per directory) written in one mount session,
pushed to s3rver (tests/servers/s3rver, on 127.0.0.1) once, then P - 1
more times with one new file each (the mount stays up; each push freezes
it as in production).  The same pushes go to two remotes: one with images
(--image-every N) and one without (--image-every 0: every delta replayed,
as a version 2 remote is read).  Then, through a proxy that delays every
request by --delay-ms (tests/servers/faultproxy.py, stall), for each
remote: `tresor recover URL STORE --lazy`, a mount of the result, and a
read of one byte of the first file; timed until that byte, and the
requests the proxy saw until then counted.  Also reported: the bytes of
metadata (meta/ and image/) on each remote, and of its newest image.
--grace D is passed to every push (`push --grace`: how long metadata a
newer image made unnecessary, and freed packs, stay on the remote; not
given: the remote's default, 7 days, so a bench's pushes delete nothing).

Reports a table (stderr) and, with --json, the numbers.  This is a
measurement, not a test: the exit status is 0 unless something failed.
--smoke: 2,000 files, histories 1 and 20.

Env: TRESOR_BIN (default <repo>/build/tresor).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "tests" / "servers"))
os.environ.setdefault("TRESOR_BIN", str(REPO / "build" / "tresor"))

import conftest  # noqa: E402
import test_remote_s3 as s3mod  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402


def log(msg):
    print("bench_recover_image: " + msg, file=sys.stderr, flush=True)


def tresor(*args, env=None, timeout=7200):
    p = conftest.tresor(*args, env=env, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit("bench_recover_image: tresor %s failed: %s" % (args[0], p.stderr.strip()))
    return p


class Bench:
    def __init__(self, work, srv, proxy, delay, every, grace=None):
        self.work, self.srv, self.proxy = work, srv, proxy
        self.delay, self.every, self.grace = delay, every, grace
        self.passfile = work / "passphrase"
        fd = os.open(str(self.passfile), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, conftest.PASSPHRASE.encode() + b"\n")
        os.close(fd)
        self.mounts = conftest.Mounts(work)
        home = work / "s3home"
        home.mkdir(exist_ok=True)
        self.env = s3mod.clean_env(AWS_ACCESS_KEY_ID=s3mod.ACCESS_KEY,
                                   AWS_SECRET_ACCESS_KEY=s3mod.SECRET_KEY, HOME=home)
        self.env.pop("TRESOR_PASSPHRASE", None)
        self.n = 0

    def opts(self, endpoint):
        return ["--endpoint", endpoint, "--path-style"]

    def history(self, files, pushes):
        """A store with files files and pushes pushes to two remotes:
        returns {remote name: url}."""
        self.n += 1
        store = conftest.init_store(self.work / ("store-%d" % self.n), self.passfile)
        urls = {}
        for name in ("image", "replay"):
            urls[name] = "s3://%s/bench-%d-%s-%d" % (s3mod.BUCKET, os.getpid(), name, self.n)
            tresor("remote", "add", store.path, name, urls[name],
                   *self.opts(self.srv.endpoint), env=self.env)
        m = self.mounts.mount(store, "vol")
        t = time.monotonic()
        for i in range(files):
            d = m.path / ("d%04d" % (i // 1000))
            if i % 1000 == 0:
                d.mkdir()
            (d / ("f%07d.txt" % i)).write_bytes(b"%07d" % i + b"x" * 1017)
        log("%d files written in %.1f s" % (files, time.monotonic() - t))
        t = time.monotonic()
        for p in range(pushes):
            if p:
                (m.path / ("new%05d.txt" % p)).write_bytes(b"push %d\n" % p)
            for name, every in (("image", str(self.every)), ("replay", "0")):
                grace = ["--grace", self.grace] if self.grace else []
                tresor("push", store.path, name, "--image-every", every, "--passphrase-file",
                       self.passfile, *grace, env=self.env)
        log("%d push(es) to 2 remotes in %.1f s" % (pushes, time.monotonic() - t))
        m.close()
        return urls

    def meta_bytes(self, url):
        """(bytes of meta/ and image/, bytes of the newest image)."""
        cmd = [str(s3mod.driver_path()), url] + self.opts(self.srv.endpoint) + ["list", ""]
        p = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise SystemExit("bench_recover_image: listing %s failed: %s" % (url, p.stderr))
        total, images = 0, {}
        for line in p.stdout.splitlines():
            key, size = line.rsplit(" ", 1)
            if key.startswith("meta/") or key.startswith("image/"):
                total += int(size)
            if key.startswith("image/"):
                n = int(key[6:].split("-", 1)[0], 16)
                images[n] = images.get(n, 0) + int(size)
        return total, images[max(images)] if images else 0

    def first_byte(self, url):
        self.n += 1
        dest = self.work / ("lazy-%d" % self.n)
        self.proxy.clear()
        self.proxy.add("stall", count=None, seconds=self.delay)
        t = time.monotonic()
        tresor("recover", url, dest, *self.opts(self.proxy.endpoint), "--lazy",
               "--passphrase-file", self.passfile, env=self.env)
        t_rec = time.monotonic() - t
        st = conftest.Store(dest, self.passfile)
        keep = {k: self.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HOME")}
        m = self.mounts.mount(st, "vol", extra_env=keep)
        with open(m.path / "d0000" / "f0000000.txt", "rb") as f:
            b = f.read(1)
        took = time.monotonic() - t
        reqs = len(self.proxy.log())
        self.proxy.clear()
        m.close()
        assert b == b"0", b
        return {"seconds": round(took, 3), "recover_seconds": round(t_rec, 3),
                "requests": reqs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", default="10000,100000")
    ap.add_argument("--pushes", default="1,200")
    ap.add_argument("--delay-ms", type=float, default=30)
    ap.add_argument("--image-every", type=int, default=64)
    ap.add_argument("--grace")
    ap.add_argument("--json")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.files, a.pushes = "2000", "1,20"
    work = Path(tempfile.mkdtemp(prefix="bench-recover-image-"))
    s3mod.npm_install()
    (work / "s3rver").mkdir()
    srv = s3mod.S3rver(work / "s3rver")
    srv.start()
    proxy = FaultProxy(srv.port).start()
    b = Bench(work, srv, proxy, a.delay_ms / 1000.0, a.image_every, a.grace)
    rows = []
    try:
        for files in [int(x) for x in a.files.split(",")]:
            for pushes in [int(x) for x in a.pushes.split(",")]:
                urls = b.history(files, pushes)
                for name, url in urls.items():
                    r = b.first_byte(url)
                    mb, ib = b.meta_bytes(url)
                    r.update(files=files, pushes=pushes, remote=name, meta_bytes=mb,
                             image_bytes=ib)
                    rows.append(r)
                    log("%7d files %5d pushes %-6s: first byte %.2f s, %d requests,"
                        " metadata %d bytes (newest image %d)" % (
                            files, pushes, name, r["seconds"], r["requests"],
                            r["meta_bytes"], ib))
    finally:
        b.mounts.teardown()
        proxy.stop()
        srv.stop()
    if a.json:
        Path(a.json).write_text(json.dumps({"delay_ms": a.delay_ms,
                                            "image_every": a.image_every,
                                            "grace": a.grace,
                                            "rows": rows}, indent=1) + "\n")
    print("%8s %7s %-7s %9s %9s %12s %12s" % ("files", "pushes", "remote", "seconds",
                                               "requests", "meta bytes", "image bytes"))
    for r in rows:
        print("%8d %7d %-7s %9.2f %9d %12d %12d" % (
            r["files"], r["pushes"], r["remote"], r["seconds"], r["requests"],
            r["meta_bytes"], r["image_bytes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
