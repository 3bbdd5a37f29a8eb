#!/usr/bin/python3
"""bench_share.py - "give me yesterday's folder back": the time of a restore
by `cp -a` out of `.snapshots/NAME/` into the live tree of a tresor mount,
where cp's copy_file_range shares the chunks (issue 16), against the same
cp made to copy bytes (`--reflink=never`: cp then reads and writes, and
tresor hashes and deduplicates every chunk) and against `cp -a` of the same
tree on the local disk.  Checks that every copy is byte-identical and
reports the growth of the store's stored bytes.

    /usr/bin/python3 tests/bench/bench_share.py [--mb 2048] [--files 40]
        [--dir /var/tmp/tresor-bench-share] [--tresor build/tresor] [--json FILE]

As root the page cache is dropped before each copy (cold reads).
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import (SuiteError, drop_caches, fuse_unmount, is_mount, log,  # noqa: E402
                          rmtree, sh, timed, tree_digest, wait_for)

PASS = "bench share passphrase"


def write_tree(root, mb, files):
    """files files of random bytes, mb MiB in all, in a few folders."""
    os.makedirs(root, exist_ok=True)
    each = (mb << 20) // files
    for i in range(files):
        d = os.path.join(root, "site-%02d" % (i % 8))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "plan-%03d.pdf" % i), "wb") as f:
            left = each
            while left:
                n = min(left, 8 << 20)
                f.write(os.urandom(n))
                left -= n


def stored(tresor, store, env):
    p = sh([tresor, "stats", store, "--json"], env=env)
    return json.loads(p.stdout)["chunk_stored_bytes"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=2048)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--dir", default="/var/tmp/tresor-bench-share")
    ap.add_argument("--tresor", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "tresor"))
    ap.add_argument("--json")
    a = ap.parse_args()
    tresor = os.path.abspath(a.tresor)
    rmtree(a.dir)
    os.makedirs(a.dir)
    store, mnt = os.path.join(a.dir, "store"), os.path.join(a.dir, "mnt")
    passfile = os.path.join(a.dir, "pass")
    with open(passfile, "w") as f:
        f.write(PASS + "\n")
    os.chmod(passfile, 0o600)
    env = dict(os.environ, TRESOR_PASSPHRASE=PASS)
    sh([tresor, "init", store, "--passphrase-file", passfile, "--kdf-log2n", "12"])
    sh([tresor, "volume", "create", store, "vol"], env=env)
    os.makedirs(mnt)
    daemon = subprocess.Popen([tresor, "mount", store, "vol", mnt, "--passphrase-file",
                               passfile, "-f"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    res = {"mb": a.mb, "files": a.files}
    try:
        wait_for(lambda: is_mount(mnt), 20, "the mount")
        log("writing %d MiB in %d files" % (a.mb, a.files))
        local = os.path.join(a.dir, "local")
        write_tree(local, a.mb, a.files)
        sh(["cp", "-a", os.path.join(local, "."), os.path.join(mnt, "tree")])
        sh(["sync", "-f", os.path.join(mnt, "tree")])
        name = sh([tresor, "snapshot", "create", store, "vol"], env=env).stdout.decode().strip()
        snapdir = os.path.join(mnt, ".snapshots", name, "tree")
        want = tree_digest(local)
        runs = [("shared", ["cp", "-a", snapdir, os.path.join(mnt, "shared")], mnt),
                ("bytes", ["cp", "-a", "--reflink=never", snapdir, os.path.join(mnt, "bytes")],
                 mnt),
                ("local_disk", ["cp", "-a", local, os.path.join(a.dir, "local-copy")], None)]
        for key, cmd, in_mount in runs:
            before = stored(tresor, store, env) if in_mount else 0
            drop_caches()
            secs, _ = timed(cmd)
            if in_mount:
                sh(["sync", "-f", cmd[-1]])
                time.sleep(1.5)  # the committer's second
            grew = stored(tresor, store, env) - before if in_mount else None
            if tree_digest(cmd[-1]) != want:
                raise SuiteError("%s: the copy differs from the original" % key)
            res[key] = {"seconds": round(secs, 3), "stored_growth_bytes": grew}
            log("%-10s %8.2f s  stored bytes grew by %s" % (key, secs, grew))
    finally:
        fuse_unmount(mnt, daemon)
    check = subprocess.run([tresor, "check", store, "--passphrase-file", passfile],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    res["check_clean"] = check.returncode == 0
    res["speedup_vs_bytes"] = round(res["bytes"]["seconds"] / max(res["shared"]["seconds"], 1e-3), 1)
    res["speedup_vs_local_disk"] = round(
        res["local_disk"]["seconds"] / max(res["shared"]["seconds"], 1e-3), 1)
    out = json.dumps(res, indent=2)
    print(out)
    if a.json:
        with open(a.json, "w") as f:
            f.write(out + "\n")
    rmtree(a.dir)
    return 0 if res["check_clean"] and res["shared"]["stored_growth_bytes"] < (1 << 20) else 1


if __name__ == "__main__":
    sys.exit(main())
