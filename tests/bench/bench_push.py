#!/usr/bin/python3
"""bench_push.py - push throughput against curl, and bytes sent for a 1 %
change (run through bench_push.sh; see there for the options).

In one run, on this machine, against the same servers the tests use
(s3rver, a private sshd, a private apache with mod_dav over TLS, all on
127.0.0.1, started here and stopped by pid):
  (a) a store with one volume of SIZE incompressible bytes (64 MiB files);
  (b) per backend: `tresor push` to a fresh location with --jobs 1 and with
      the default 4 jobs, against curl uploading the same bytes (the store's
      pack files) to the same server, one file after the other on one
      connection (`curl -T {a,b,..}`) and 4 at a time (`-Z
      --parallel-max 4`); MB/s = pack bytes / wall time;
  (c) 1 % of the volume changed (half new files, half 1 MiB overwrites at
      random places in existing files), pushed again: bytes sent (packs +
      metadata) against bytes changed.
curl does less work than tresor here: S3 bodies go UNSIGNED-PAYLOAD (tresor
hashes each body with SHA-256 and MD5, and verifies ETags and sizes) and no
SFTP/WebDAV upload is renamed into place.  So for S3 a third baseline sends
what tresor sends (payload SHA-256 signed, Content-MD5), one curl per pack.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
os.environ.setdefault("TRESOR_BIN", str(REPO / "build" / "tresor"))

import conftest  # noqa: E402
import test_remote_s3 as s3mod  # noqa: E402
import test_remote_sftp as sftpmod  # noqa: E402
import test_remote_webdav as davmod  # noqa: E402

MiB = 1 << 20
FILE = 64 * MiB


def log(msg):
    print("bench_push: " + msg, file=sys.stderr, flush=True)


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.upper()
    return int(s[:-1]) * units[s[-1]] if s[-1] in units else int(s)


def fill(path, size, seed):
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(rnd.randbytes(n))
            left -= n


def tresor(*args, env=None, timeout=3600):
    p = conftest.tresor(*args, env=env, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit("bench_push: tresor %s failed: %s" % (args[0], p.stderr.strip()))
    return p


class Bench:
    def __init__(self, work, size):
        self.work = work
        self.size = size
        self.passfile = work / "passphrase"
        fd = os.open(str(self.passfile), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, conftest.PASSPHRASE.encode() + b"\n")
        os.close(fd)
        self.mounts = conftest.Mounts(work)
        self.results = {"size": size, "backends": {}}

    def make_store(self):
        self.store = conftest.init_store(self.work / "store", self.passfile)
        m = self.mounts.mount(self.store, "vol")
        n = 0
        left = self.size
        while left:
            k = min(left, FILE)
            fill(m.path / ("f%04d.bin" % n), k, n)
            left -= k
            n += 1
        self.nfiles = n
        m.close()
        self.packs = sorted(str(p) for p in (self.store.path / "packs").rglob("*")
                            if p.is_file() and len(p.name) == 32)
        self.pack_bytes = sum(os.path.getsize(p) for p in self.packs)
        log("store: %d MiB in %d files, %d packs, %d MiB of packs" % (
            self.size // MiB, n, len(self.packs), self.pack_bytes // MiB))

    def push(self, name, url, opts, env, jobs):
        tresor("remote", "add", self.store.path, name, url, *opts, env=env)
        t = time.monotonic()
        p = tresor("push", self.store.path, name, "--json", "--jobs", str(jobs),
                   "--passphrase-file", self.passfile, env=env)
        took = time.monotonic() - t
        res = json.loads(p.stdout)
        assert res["pack_bytes"] == self.pack_bytes, (res, self.pack_bytes)
        return took, res

    def curl(self, base, extra, env, parallel):
        files = self.packs
        cmd = ["curl", "-sS", "--fail", "-o", "/dev/null"] + extra
        if parallel:
            cmd += ["-Z", "--parallel-max", "4"]
        for f in files:
            cmd += ["-T", f, base + os.path.basename(f)]
        t = time.monotonic()
        p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=3600)
        took = time.monotonic() - t
        if p.returncode != 0:
            raise SystemExit("bench_push: curl failed (%d): %s" % (p.returncode, p.stderr))
        return took

    def curl_signed(self, base, extra, env):
        """S3 as tresor sends it: the body's SHA-256 signed and Content-MD5
        (hashes computed before the clock starts), one curl per file."""
        hdrs = []
        for f in self.packs:
            data = Path(f).read_bytes()
            hdrs.append(["-H", "x-amz-content-sha256: " + hashlib.sha256(data).hexdigest(),
                         "-H", "Content-MD5: " + base64.b64encode(
                             hashlib.md5(data).digest()).decode()])
        t = time.monotonic()
        for f, h in zip(self.packs, hdrs):
            subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null"] + extra + h +
                           ["-T", f, base + os.path.basename(f)], env=env, check=True,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=3600)
        return time.monotonic() - t

    def run_backend(self, kind, tag, url_fn, opts, env, curl_base_fn, curl_extra, curl_env,
                    signed_extra=None):
        row = {}
        for jobs in (1, 4):
            took, res = self.push("%s%d" % (tag, jobs), url_fn("tresor-j%d" % jobs), opts,
                                  env, jobs)
            row["tresor_j%d_s" % jobs] = round(took, 3)
            row["tresor_j%d_MBps" % jobs] = round(self.pack_bytes / took / 1e6, 1)
        for par in (0, 1):
            took = self.curl(curl_base_fn("curl-p%d" % par), curl_extra, curl_env, par)
            k = "curl_par4" if par else "curl_seq"
            row[k + "_s"] = round(took, 3)
            row[k + "_MBps"] = round(self.pack_bytes / took / 1e6, 1)
        if signed_extra:
            took = self.curl_signed(curl_base_fn("curl-signed"), signed_extra, curl_env)
            row["curl_signed_s"] = round(took, 3)
            row["curl_signed_MBps"] = round(self.pack_bytes / took / 1e6, 1)
        row["ratio_seq"] = round(row["curl_seq_s"] / row["tresor_j1_s"], 2)
        row["ratio_par4"] = round(row["curl_par4_s"] / row["tresor_j4_s"], 2)
        self.results["backends"][kind] = row
        log("%s: %s" % (kind, row))

    def s3(self):
        s3mod.npm_install()
        srv = s3mod.S3rver(Path(tempfile.mkdtemp(prefix="tresor-bench-s3-", dir=self.work)))
        srv.start()
        try:
            env = s3mod.clean_env(AWS_ACCESS_KEY_ID=s3mod.ACCESS_KEY,
                                  AWS_SECRET_ACCESS_KEY=s3mod.SECRET_KEY,
                                  HOME=str(self.work))
            netrc = self.work / "s3.netrc"
            fd = os.open(str(netrc), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, ("machine 127.0.0.1 login %s password %s\n" % (
                s3mod.ACCESS_KEY, s3mod.SECRET_KEY)).encode())
            os.close(fd)
            opts = ["--endpoint", srv.endpoint, "--path-style"]
            auth = ["--netrc-file", str(netrc), "--aws-sigv4", "aws:amz:us-east-1:s3"]
            self.run_backend(
                "s3", "s3", lambda sub: "s3://%s/bench/%s" % (s3mod.BUCKET, sub), opts, env,
                lambda sub: "%s/%s/bench/%s/" % (srv.endpoint, s3mod.BUCKET, sub),
                auth + ["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"], env, auth)
        finally:
            srv.stop()

    def sftp(self):
        srv = sftpmod.SshServer()
        try:
            srv.start()
            self.run_backend(
                "sftp", "sftp", srv.url, srv.opts(), conftest.base_env(),
                lambda sub: "sftp://%s@127.0.0.1:%d%s/%s/" % (srv.user, srv.port, srv.data,
                                                               sub),
                ["--key", str(srv.key), "--ftp-create-dirs", "-k"], conftest.base_env())
        finally:
            srv.close()

    def webdav(self):
        srv = davmod.DavServer()
        try:
            srv.start()
            for sub in ("curl-p0", "curl-p1"):
                subprocess.run(["curl", "-sS", "--fail", "-X", "MKCOL", "--netrc-file",
                                str(srv.netrc), "--cacert", str(srv.ca), srv.url(sub) + "/"],
                               check=True, capture_output=True, timeout=60)
            self.run_backend(
                "webdav", "dav", srv.url, srv.opts(), conftest.base_env(),
                lambda sub: srv.url(sub) + "/",
                ["--netrc-file", str(srv.netrc), "--cacert", str(srv.ca)],
                conftest.base_env())
        finally:
            srv.close()

    def one_percent(self):
        """Change 1 % of the volume, push again to a local remote (the
        bytes sent do not depend on the backend)."""
        remote = self.work / "local-remote"
        remote.mkdir()
        tresor("remote", "add", self.store.path, "local", str(remote))
        tresor("push", self.store.path, "local", "--passphrase-file", self.passfile)
        change = max(self.size // 100, 2 * MiB)
        rnd = random.Random(42)
        m = self.mounts.mount(self.store, "vol")
        fill(m.path / "new-1pct.bin", change // 2, 999)
        left = change - change // 2
        while left > 0:
            k = min(left, MiB)
            i = rnd.randrange(self.nfiles)
            path = m.path / ("f%04d.bin" % i)
            off = rnd.randrange(0, max(1, os.path.getsize(path) - k))
            with open(path, "r+b") as f:
                f.seek(off)
                f.write(rnd.randbytes(k))
            left -= k
        m.close()
        p = tresor("push", self.store.path, "local", "--json",
                   "--passphrase-file", self.passfile)
        res = json.loads(p.stdout)
        sent = res["pack_bytes"] + res["meta_bytes"]
        self.results["one_percent"] = {
            "volume_bytes": self.size, "changed_bytes": change,
            "pack_bytes": res["pack_bytes"], "meta_bytes": res["meta_bytes"],
            "sent_bytes": sent, "sent_over_changed": round(sent / change, 2),
            "sent_over_volume_pct": round(100.0 * sent / self.size, 3)}
        log("1%% change: %s" % self.results["one_percent"])

    def close(self):
        problems = self.mounts.teardown()
        if problems:
            log("mount teardown: %s" % problems)


def table(r):
    out = ["push throughput, %d MiB volume (MB/s; wall time in s)" % (r["size"] // MiB),
           "%-8s %16s %16s %16s %16s %8s %8s" % ("backend", "tresor jobs 1", "curl 1 conn",
                                                "tresor jobs 4", "curl 4 conns",
                                                "seq", "par")]
    for k, v in r["backends"].items():
        out.append("%-8s %8.1f (%5.1f) %8.1f (%5.1f) %8.1f (%5.1f) %8.1f (%5.1f) %8.2f %8.2f" % (
            k, v["tresor_j1_MBps"], v["tresor_j1_s"], v["curl_seq_MBps"], v["curl_seq_s"],
            v["tresor_j4_MBps"], v["tresor_j4_s"], v["curl_par4_MBps"], v["curl_par4_s"],
            v["ratio_seq"], v["ratio_par4"]))
    out.append("(seq/par: curl time / tresor time; 1.0 = as fast as curl)")
    s3 = r["backends"].get("s3")
    if s3 and "curl_signed_MBps" in s3:
        out.append("s3, curl with the payload SHA-256 and Content-MD5 as tresor sends them "
                   "(one curl per pack, hashes computed beforehand): %.1f MB/s (%.1f s)" % (
                       s3["curl_signed_MBps"], s3["curl_signed_s"]))
    o = r.get("one_percent")
    if o:
        out.append("1 %% change: %d bytes changed, %d sent (%d packs + %d metadata): "
                   "%.2fx the change, %.3f %% of the volume" % (
                       o["changed_bytes"], o["sent_bytes"], o["pack_bytes"], o["meta_bytes"],
                       o["sent_over_changed"], o["sent_over_volume_pct"]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--size", default="2G")
    ap.add_argument("--backends", default="s3,sftp,webdav")
    ap.add_argument("--json")
    ap.add_argument("--dir")
    a = ap.parse_args()
    size = parse_size("24M" if a.smoke else a.size)
    if size < 2 * MiB:
        raise SystemExit("bench_push: --size must be at least 2M")
    base = Path(a.dir) if a.dir else Path("/tmp" if a.smoke else "/var/tmp")
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tresor-bench-push-", dir=base))
    os.chmod(work, 0o755)
    b = Bench(work, size)
    try:
        b.make_store()
        for kind in a.backends.split(","):
            getattr(b, kind)()
        b.one_percent()
    finally:
        b.close()
    print(table(b.results))
    out = a.json or str(REPO / "tests" / ".work" / ("bench-push-smoke.json" if a.smoke
                                                    else "bench-push.json"))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(b.results, indent=1) + "\n")
    log("results in %s" % out)
    if not conftest.mounts_under(work):
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
