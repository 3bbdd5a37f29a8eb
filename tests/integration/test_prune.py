"""tresor prune: retention like restic's forget, space given back, pins,
kill -9 safety, and pruning a mounted volume in use (issue 3).

The 400-day store (module fixture `year`): one mount, DAYS simulated days
from START; every day two files are rewritten in place, one added, one
deleted, a daily file rewritten whole and yesterday's scratch file
replaced, then `tresor snapshot create --time` through the daemon (every
11th day twice).  The state of the live tree at each snapshot is kept
(class Tree: a model of what was written, checked against a real manifest
of the mount).  Meanwhile restic gets one backup per snapshot time
(`restic backup --time`), so `restic forget --dry-run` says what it keeps
for the very same times.  Everything runs with TZ=Europe/Berlin.

restic runs with its master key re-encrypted under a cheap scrypt (see
weaken_restic_key; needs openssl): one backup then costs ~0.05 s of CPU
instead of ~0.3 s.  If that fails, restic's own key is used (slower).

Environment:
  TRESOR_PRUNE_DAYS     simulated days (default 400)
  TRESOR_RESTIC_EVERY   N > 1: give restic the snapshots of every Nth day
                        only (for a slow restic).  Those times are then
                        also snapshotted on a second volume "cmp", whose
                        prune --dry-run must equal restic's forget, and a
                        small Python model of restic's rules, checked
                        against restic on those times, judges the full
                        400-day volume.  Default 1: restic judges the
                        400-day volume itself.
  RESTIC                the restic binary (default: restic on PATH, else
                        apt-get install -y restic)
"""

import base64
import concurrent.futures
import datetime
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import (PASSPHRASE, TRESOR_BIN, Mounts, fusermount_u, init_store, mounts_under,
                      stats, tresor)
from test_snapshots import (TZ, compare, manifest, rand_bytes, snap_list, tenv,
                            write_file)
from test_snapshots import snap as snap_by_hand


def snap(*args, **kw):
    """The days' snapshots stand for the daemon's scheduled ones: taken
    --scheduled, so the policy decides (one taken by hand is pinned)."""
    return snap_by_hand(*args, scheduled=True, **kw)


START = datetime.date(2025, 1, 6)
DAYS = int(os.environ.get("TRESOR_PRUNE_DAYS", "400"))
RESTIC_EVERY = int(os.environ.get("TRESOR_RESTIC_EVERY", "1"))
POLICY = ["--keep-daily", "30", "--keep-monthly", "12"]
SEED = int(os.environ.get("TRESOR_SEED", "4004"))
CHUNKS = (8192, 16384, 65536)
# times are compared as content; mtimes of rewritten files are the subject
# of test_snapshots.py, not of these tests
IGNORE = ("mtime", "atime")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def prune(store, *args, volume="vol", passphrase=True, check=True, timeout=300):
    cmd = ["prune", store.path, volume] + list(args)
    if passphrase:
        cmd += ["--passphrase-file", store.passfile]
    p = tresor(*cmd, env=tenv(), timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("tresor %s failed (exit %d)\nstdout: %s\nstderr: %s"
                             % (" ".join(map(str, cmd)), p.returncode, p.stdout[-3000:],
                                p.stderr[-3000:]))
    return p


def prune_json(store, *args, **kw):
    p = prune(store, *(list(args) + ["--json"]), **kw)
    try:
        return json.loads(p.stdout)
    except ValueError as exc:
        raise AssertionError("prune --json printed no JSON: %r (%s)" % (p.stdout[:2000], exc))


def check_clean(store):
    p = tresor("check", store.path, "--passphrase-file", store.passfile, timeout=600)
    assert p.returncode == 0, "tresor check is not clean (exit %d):\n%s\n%s" % (
        p.returncode, p.stdout[-4000:], p.stderr[-2000:])
    return p


def tmount(mounts, store, mnt=None, opts=()):
    return mounts.mount(store, "vol", mnt=mnt, opts=opts, extra_env={"TZ": TZ})


def snapshot_problems(mnt, saved, names, label=""):
    """Compare .snapshots/NAME with its saved manifest for each name."""
    problems = []
    for n in names:
        got = manifest(Path(mnt) / ".snapshots" / n, skip_top=())
        problems += ["snapshot %s%s: %s" % (n, label, x)
                     for x in compare(got, saved[n], ignore=IGNORE)]
    return problems


def local_times(rng, days, start=START):
    """[(day index, "YYYY-MM-DD HH:MM:SS")] local times, one per day and a
    second one on every 11th day; never 02:xx (DST)."""
    out = []
    for d in range(days):
        date = start + datetime.timedelta(days=d)
        if d % 11 == 5:
            hours = [rng.choice([0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11]), rng.randrange(12, 24)]
        else:
            hours = [rng.choice([h for h in range(24) if h != 2])]
        for h in hours:
            out.append((d, "%s %02d:%02d:%02d" % (date, h, rng.randrange(60), rng.randrange(60))))
    return out


def utc_ns(rfc3339):
    dt = datetime.datetime.fromisoformat(re.sub(r"\.\d+", "", rfc3339))
    assert dt.tzinfo is not None, rfc3339
    return int(dt.timestamp()) * 10 ** 9


# --------------------------------------------------------------------------
# restic
# --------------------------------------------------------------------------
def _aes(mode, key, data, iv=None):
    cmd = ["openssl", "enc", "-" + mode, "-K", key.hex(), "-nosalt", "-nopad"]
    if iv is not None:
        cmd += ["-iv", iv.hex()]
    return subprocess.run(cmd, input=data, capture_output=True, check=True, timeout=30).stdout


def _poly1305_aes(msg, nonce, k, r):
    """restic's MAC: Poly1305 with s = AES-128_k(nonce)."""
    s = int.from_bytes(_aes("aes-128-ecb", k, nonce), "little")
    rr = int.from_bytes(r, "little") & 0x0ffffffc0ffffffc0ffffffc0fffffff
    p = (1 << 130) - 5
    acc = 0
    for i in range(0, len(msg), 16):
        acc = (acc + int.from_bytes(msg[i:i + 16] + b"\x01", "little")) * rr % p
    return ((acc + s) % (1 << 128)).to_bytes(16, "little")


def _restic_user_key(password, salt, n, r, p):
    b = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=1 << 30, dklen=64)
    return b[:32], b[32:48], b[48:64]


def weaken_restic_key(repo, password):
    """Re-encrypt the repository's master key under scrypt N=1024, r=1, p=1
    (restic calibrates ~0.3 s of scrypt per command, paid on every run).
    The key file format is restic's (json: kdf parameters, salt, and
    IV || AES-256-CTR ciphertext || Poly1305-AES MAC)."""
    keys = list((Path(repo) / "keys").iterdir())
    assert len(keys) == 1
    kf = json.loads(keys[0].read_text())
    data = base64.b64decode(kf["data"])
    enc, mk, mr = _restic_user_key(password, base64.b64decode(kf["salt"]), kf["N"], kf["r"],
                                   kf["p"])
    nonce, ct, mac = data[:16], data[16:-16], data[-16:]
    assert _poly1305_aes(ct, nonce, mk, mr) == mac, "restic key file: MAC mismatch"
    plain = _aes("aes-256-ctr", enc, ct, nonce)
    json.loads(plain)
    salt = os.urandom(64)
    enc, mk, mr = _restic_user_key(password, salt, 1024, 1, 1)
    nonce = os.urandom(16)
    ct = _aes("aes-256-ctr", enc, plain, nonce)
    kf.update(N=1024, r=1, p=1, salt=base64.b64encode(salt).decode(),
              data=base64.b64encode(nonce + ct + _poly1305_aes(ct, nonce, mk, mr)).decode())
    buf = json.dumps(kf).encode()
    (Path(repo) / "keys" / hashlib.sha256(buf).hexdigest()).write_bytes(buf)
    keys[0].unlink()


@pytest.fixture(scope="session")
def restic_bin():
    """restic (tools/install-deps.sh installs it; else apt-get it here)."""
    b = os.environ.get("RESTIC") or shutil.which("restic")
    if not b:
        p = subprocess.run(["apt-get", "install", "-y", "restic"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=900)
        b = shutil.which("restic")
        if not b:
            pytest.fail("restic missing and apt-get install -y restic failed: %s"
                        % (p.stdout + p.stderr)[-2000:], pytrace=False)
    return b


class Restic:
    """restic backups of a tiny directory, one per time, made in the
    background.  Concurrent backups into one repository stall on restic's
    lock checks, so CHAINS copies of one repository (same master key and
    config) each take a share of the times, one after the other, and their
    snapshot/index/data files are merged into the first at the end."""

    CHAINS = 4

    def __init__(self, binary, root, times):
        self.bin = binary
        self.root = Path(root)
        self.password = "prune-test"
        (self.root / "data").mkdir(parents=True)
        (self.root / "data" / "f").write_text("tiny\n")
        self.repo = self.root / "repo-0"
        self.run(self.repo, ["init", "-q"])
        try:
            weaken_restic_key(self.repo, self.password)
            self.run(self.repo, ["cat", "config"])
            self.weak = True
        except Exception as exc:  # keep restic's own key: slower, same result
            print("restic key not re-encrypted (%r): backups will be slow" % exc)
            shutil.rmtree(self.repo)
            self.run(self.repo, ["init", "-q"])
            self.weak = False
        self.repos = [self.repo]
        for i in range(1, self.CHAINS):
            shutil.copytree(self.repo, self.root / ("repo-%d" % i))
            self.repos.append(self.root / ("repo-%d" % i))
        self.times = list(times)
        self.pool = concurrent.futures.ThreadPoolExecutor(self.CHAINS)
        self.futures = [self.pool.submit(self.chain, repo, self.times[i::self.CHAINS])
                        for i, repo in enumerate(self.repos)]

    def env(self, repo):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env.update(RESTIC_REPOSITORY=str(repo), RESTIC_PASSWORD=self.password, TZ=TZ,
                   LC_ALL="C")
        return env

    def run(self, repo, args):
        p = subprocess.run([self.bin, "--no-cache"] + args, env=self.env(repo), cwd=self.root,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise AssertionError("restic %s failed (%d): %s" % (" ".join(args), p.returncode,
                                                                 p.stderr))
        return p.stdout

    def chain(self, repo, times):
        for t in times:
            self.run(repo, ["backup", "-q", "--time", t, "--host", "h", "data"])

    def wait(self):
        for f in self.futures:
            f.result()
        self.pool.shutdown()
        for other in self.repos[1:]:
            for kind in ("snapshots", "index", "data"):
                for dirpath, _, files in os.walk(other / kind):
                    for f in files:
                        dst = self.repo / os.path.relpath(os.path.join(dirpath, f), other)
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        if not dst.exists():
                            shutil.copy2(os.path.join(dirpath, f), dst)

    def keeps(self, policy):
        """{utc ns: sorted reasons} of what restic forget keeps."""
        out = json.loads(self.run(self.repo, ["forget", "--dry-run", "--json"] + policy))
        assert len(out) == 1, "one host/path group expected: %s" % out
        snaps = json.loads(self.run(self.repo, ["snapshots", "--json"]))
        assert len(snaps) == len(self.times), "restic holds %d snapshots, expected %d" % (
            len(snaps), len(self.times))
        kept = {}
        for r in out[0]["reasons"]:
            kept[utc_ns(r["snapshot"]["time"])] = sorted(r["matches"])
        assert len(kept) == len(out[0]["keep"] or [])
        return kept


def tresor_keeps(plan, listing):
    """{utc ns: sorted reasons} of what a prune --json plan keeps."""
    t = {s["name"]: s["time_ns"] for s in listing}
    return {t[s["name"]]: sorted(x for x in s["reasons"].split(", ") if x)
            for s in plan["snapshots"] if s["keep"]}


def restic_model(times_ns, daily, monthly):
    """restic 0.14's forget for --keep-daily/--keep-monthly: newest first,
    a snapshot is kept by a rule when its local day/month differs from
    that of the last snapshot the rule kept, while the rule has counts."""
    from zoneinfo import ZoneInfo
    zone = ZoneInfo(TZ)
    rules = [["daily snapshot", daily, None, "%Y-%m-%d"],
             ["monthly snapshot", monthly, None, "%Y-%m"]]
    kept = {}
    for ns in sorted(times_ns, reverse=True):
        t = datetime.datetime.fromtimestamp(ns // 10 ** 9, zone)
        reasons = []
        for rule in rules:
            if rule[1] > 0:
                v = t.strftime(rule[3])
                if v != rule[2]:
                    rule[2] = v
                    rule[1] -= 1
                    reasons.append(rule[0])
        if reasons:
            kept[ns] = sorted(reasons)
    return kept


def keep_diff(got, want, what):
    problems = []
    if set(got) != set(want):
        problems.append("%s: only the reference keeps %s; only tresor keeps %s"
                        % (what, show(set(want) - set(got)), show(set(got) - set(want))))
    problems += ["%s: reasons at %s: tresor %s, reference %s" % (what, show([t])[0], got[t],
                                                                   want[t])
                 for t in sorted(set(got) & set(want)) if got[t] != want[t]]
    return problems


def show(ns_set):
    return sorted(datetime.datetime.fromtimestamp(t // 10 ** 9, datetime.timezone.utc)
                  .astimezone().isoformat() for t in ns_set)


# --------------------------------------------------------------------------
# the 400-day store
# --------------------------------------------------------------------------
class Year:
    pass


class Tree:
    """The live tree of the 400-day volume, written through the mount and
    modelled here (entries as test_snapshots.manifest gives them, without
    times), so a day costs no read-back.  The model is checked against a
    real manifest of the mount at the end."""

    def __init__(self, r, rng):
        self.r = r
        self.rng = rng
        self.model = {}
        self.files = set()
        self.scratch = None
        mask = os.umask(0)
        os.umask(mask)
        self.fmode = 0o666 & ~mask

    def put(self, name, data, create):
        if create:
            write_file(self.r / name, data)
            mode = self.fmode
        else:
            with open(self.r / name, "r+b") as f:      # in place: no O_TRUNC
                f.write(data)
            mode = self.model[name]["mode"]
        self.model[name] = {"type": "file", "mode": mode, "uid": 0, "gid": 0,
                            "size": len(data), "nlink": 1, "link": name,
                            "sha": hashlib.sha256(data).hexdigest(), "xattrs": {}}

    def remove(self, name):
        os.unlink(self.r / name)
        del self.model[name]
        self.files.discard(name)

    def chmod(self, name, mode):
        os.chmod(self.r / name, mode)
        self.model[name] = dict(self.model[name], mode=mode)

    def day(self, d):
        """One day: two files rewritten in place, the daily file rewritten,
        yesterday's scratch file replaced, one file added, one deleted."""
        rng = self.rng
        for name in rng.sample(sorted(self.files), 2):
            self.put(name, rand_bytes(rng, 6000), False)
        self.put("daily.log", rand_bytes(rng, 24000), False)
        if self.scratch:
            self.remove(self.scratch)
        self.scratch = "scratch-%04d" % d
        self.put(self.scratch, rand_bytes(rng, 12000), True)
        new = "d%d/day-%04d" % (d % 4, d)
        self.put(new, rand_bytes(rng, 6000), True)
        self.remove(rng.choice(sorted(self.files)))
        self.files.add(new)
        if d % 7 == 0:
            self.chmod(rng.choice(sorted(self.files)), rng.choice([0o600, 0o644, 0o640]))

    def snapshot(self):
        return dict(self.model)


@pytest.fixture(scope="module")
def year(restic_bin):
    tmp = Path(tempfile.mkdtemp(prefix="tresor-test-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    mgr = Mounts(tmp)
    y = Year()
    y.tmp = tmp
    restic = None
    try:
        passfile = tmp / "passphrase"
        fd = os.open(str(passfile), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(PASSPHRASE + "\n")
        y.store = init_store(tmp / "store", passfile, chunks=CHUNKS, volumes=("vol", "cmp"))
        rng = random.Random(SEED)
        y.times = local_times(rng, DAYS)
        days_for_restic = set(range(0, DAYS, RESTIC_EVERY))
        y.restic_times = [t for d, t in y.times if d in days_for_restic]
        t0 = time.monotonic()
        restic = Restic(restic_bin, tmp / "restic", y.restic_times)

        m = mgr.mount(y.store, "vol", extra_env={"TZ": TZ})
        tree = Tree(m.path, rng)
        for k in range(4):
            os.mkdir(m.path / ("d%d" % k))
        for i in range(40):
            name = "d%d/base-%02d" % (i % 4, i)
            tree.put(name, rand_bytes(rng, 6000), True)
            tree.files.add(name)
        tree.put("daily.log", rand_bytes(rng, 24000), True)
        real = manifest(m.path)
        for p, e in real.items():            # directories as they are
            if e["type"] == "dir":
                tree.model[p] = {k: v for k, v in e.items()
                                 if k not in ("mtime", "atime", "_ino")}
        problems = compare(real, tree.model, ignore=IGNORE)
        assert not problems, "the test's model is wrong: %s" % problems
        y.saved = {}
        y.names = []
        last_day = None
        for d, when in y.times:
            if d != last_day:
                tree.day(d)
                last_day = d
            else:
                tree.put("daily.log", rand_bytes(rng, 24000), False)
            name = snap(y.store, when=when)
            assert name.startswith(when[:10]), (name, when)
            y.saved[name] = tree.snapshot()
            y.names.append(name)
        y.saved_live = tree.snapshot()
        problems = compare(manifest(m.path), y.saved_live, ignore=IGNORE)
        assert not problems, "live tree after %d days: %s" % (DAYS, problems[:20])
        m.close()
        y.build_s = time.monotonic() - t0
        y.listing = snap_list(y.store)
        assert [s["name"] for s in y.listing] == y.names
        y.plan = prune_json(y.store, *POLICY, "--dry-run", passphrase=False)
        t1 = time.monotonic()
        restic.wait()
        y.restic_wait_s = time.monotonic() - t1
        y.restic_keeps = restic.keeps(POLICY)
        y.restic_weak = restic.weak
        if RESTIC_EVERY > 1:
            # the same times on a volume of their own, taken unmounted
            for t in y.restic_times:
                snap(y.store, volume="cmp", when=t)
            y.cmp_listing = snap_list(y.store, "cmp")
            y.cmp_plan = prune_json(y.store, *POLICY, "--dry-run", volume="cmp",
                                    passphrase=False)
        yield y
    finally:
        if restic is not None:
            restic.pool.shutdown(cancel_futures=True)
        problems = mgr.teardown()
        for mp in mounts_under(tmp):
            fusermount_u(mp, lazy=True)
        if os.environ.get("TRESOR_KEEP_TMP") != "1" and not mounts_under(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        if problems:
            pytest.fail("mount teardown problems:\n" + "\n".join(problems), pytrace=False)


def test_keep_set_matches_restic_forget(year):
    y = year
    print("\n400-day store built in %.1fs, then waited %.1fs for restic (%d backups%s)"
          % (y.build_s, y.restic_wait_s, len(y.restic_times),
             "" if y.restic_weak else ", restic's own slow key"))
    restic_keeps = y.restic_keeps
    problems = []
    if RESTIC_EVERY > 1:
        assert len(y.cmp_listing) == len(y.restic_times)
        cmp_times = [s["time_ns"] for s in y.cmp_listing]
        problems += keep_diff(tresor_keeps(y.cmp_plan, y.cmp_listing), restic_keeps,
                              "volume cmp (%d snapshots) vs restic" % len(cmp_times))
        model = restic_model(cmp_times, 30, 12)
        assert model == restic_keeps, "the test's model of restic is wrong: %s" % keep_diff(
            model, restic_keeps, "model vs restic")
        reference = restic_model([s["time_ns"] for s in y.listing], 30, 12)
        what = "400-day volume vs restic's rules"
    else:
        reference = restic_keeps
        what = "400-day volume vs restic"
    got = tresor_keeps(y.plan, y.listing)
    problems += keep_diff(got, reference, what)
    assert not problems, "\n".join(problems)
    assert 30 <= len(got) < len(y.listing) // 4
    # the dry-run plan of the 400-day volume: each snapshot once, oldest first
    assert [s["name"] for s in y.plan["snapshots"]] == y.names
    assert y.plan["dry_run"] is True
    assert y.plan["removed"] == sum(1 for s in y.plan["snapshots"] if not s["keep"])
    # text output says the same as --json
    p = prune(y.store, *POLICY, "--dry-run", passphrase=False)
    text = {}
    for line in p.stdout.splitlines():
        mo = re.match(r"(keep|remove)\s+(\S+)(?: \((.*)\))?$", line)
        if mo:
            text[mo.group(2)] = (mo.group(1) == "keep", mo.group(3) or "")
    assert text == {s["name"]: (s["keep"], s["reasons"]) for s in y.plan["snapshots"]}
    # a dry run changed nothing
    assert snap_list(y.store) == y.listing


def test_prune_frees_what_removed_snapshots_held(year, mounts, tmp):
    y = year
    plan = prune_json(y.store, *POLICY, "--dry-run", passphrase=False)
    assert plan == y.plan, "a second dry run decided differently"
    removed = {s["name"] for s in plan["snapshots"] if not s["keep"]}
    kept = [s["name"] for s in plan["snapshots"] if s["keep"]]
    excl = sum(s["exclusive_bytes"] for s in y.listing if s["name"] in removed)
    assert excl > 0.5 * 24000 * len(removed), \
        "removed snapshots hold only %d bytes alone: test data too weak" % excl
    before = stats(y.store.path)
    # the passphrase is needed without --dry-run
    p = prune(y.store, *POLICY, passphrase=False, check=False)
    assert p.returncode != 0 and snap_list(y.store) == y.listing, \
        "prune without a passphrase: exit %d\n%s" % (p.returncode, p.stderr)
    t0 = time.monotonic()
    res = prune_json(y.store, *POLICY)
    prune_s = time.monotonic() - t0
    after = stats(y.store.path)
    print("\nprune of %d snapshots: %.1fs; they held %d bytes alone; stats before %s "
          "after %s; result %s" % (len(removed), prune_s, excl, before, after,
                                   {k: v for k, v in res.items() if k != "snapshots"}))
    assert res["dry_run"] is False
    assert res["removed"] == len(removed)
    assert {s["name"] for s in res["snapshots"] if not s["keep"]} == removed
    assert [s["name"] for s in snap_list(y.store)] == kept
    # space: the drop of (stored - garbage) covers what the removed
    # snapshots held alone; pack headers/trailers may differ a little
    tol = 4096 + 64 * max(before["packs"], after["packs"])
    dropped = (before["stored_bytes"] - before["garbage_bytes"]) - \
              (after["stored_bytes"] - after["garbage_bytes"])
    assert dropped >= excl - tol, (
        "stored-minus-garbage dropped by %d bytes; the removed snapshots held %d alone"
        % (dropped, excl))
    freed = before["stored_bytes"] - after["stored_bytes"]
    assert freed >= excl - after["garbage_bytes"] - tol, (
        "stored bytes dropped by %d (garbage left %d); removed snapshots held %d alone"
        % (freed, after["garbage_bytes"], excl))
    assert abs(res["bytes_freed"] - freed) <= tol + 49 * (before["chunks"] - after["chunks"]), \
        "prune says %d bytes freed, stored bytes dropped by %d" % (res["bytes_freed"], freed)
    # what GC leaves: packs under the rewrite threshold only
    assert after["garbage_bytes"] <= 0.2 * after["stored_bytes"] + tol
    if "snapshot_only_bytes" in before and "snapshot_only_bytes" in after:
        assert before["snapshot_only_bytes"] - after["snapshot_only_bytes"] >= excl - tol
    check_clean(y.store)
    assert len(pack_files(y.store)) == after["packs"], "%d pack files, the index knows %d%s" % (
        len(pack_files(y.store)), after["packs"], orphans(y.store, pack_files(y.store)))
    # a rerun has nothing left to do
    res2 = prune_json(y.store, *POLICY)
    assert res2["removed"] == 0 and res2["packs_deleted"] == 0 and res2["packs_rewritten"] == 0
    # data: the live tree and the kept snapshots
    m = tmount(mounts, y.store, mnt=tmp / "mnt")
    problems = ["live: " + x for x in compare(manifest(m.path), y.saved_live, ignore=IGNORE)]
    assert sorted(os.listdir(m.path / ".snapshots")) == sorted(kept)
    rng = random.Random(SEED + 1)
    sample = sorted(set(rng.sample(kept, min(12, len(kept))) + [kept[0], kept[-1]]))
    problems += snapshot_problems(m.path, y.saved, sample)
    assert not problems, "after prune:\n  " + "\n  ".join(problems[:40])


# --------------------------------------------------------------------------
# pins
# --------------------------------------------------------------------------
def test_pinned_snapshot_survives_prune(store, mounts):
    m = tmount(mounts, store)
    r = m.path
    rng = random.Random(SEED + 2)
    precious = rand_bytes(rng, 300000)
    write_file(r / "precious", precious)
    saved = {}
    names = []
    for d in range(8):
        if d == 1:
            os.unlink(r / "precious")
        write_file(r / ("f%d" % d), rand_bytes(rng, 20000))
        n = snap(store, when="2025-05-%02dT12:00:00" % (d + 1))
        saved[n] = manifest(r)
        names.append(n)
    m.close()
    first, third = names[0], names[2]
    tresor("snapshot", "pin", store.path, "vol", first, env=tenv(), check=True)
    tresor("snapshot", "pin", store.path, "vol", third, env=tenv(), check=True)
    tresor("snapshot", "unpin", store.path, "vol", third, env=tenv(), check=True)
    assert tresor("snapshot", "pin", store.path, "vol", "1999-01-01", env=tenv()).returncode != 0
    pinned = {s["name"]: s["pinned"] for s in snap_list(store)}
    assert pinned == {n: n == first for n in names}, pinned
    plan = prune_json(store, "--keep-last", "2", "--dry-run", passphrase=False)
    keep = {s["name"]: s for s in plan["snapshots"] if s["keep"]}
    assert set(keep) == {first, names[-2], names[-1]}, plan
    res = prune_json(store, "--keep-last", "2")
    assert {s["name"] for s in res["snapshots"] if s["keep"]} == {first, names[-2], names[-1]}
    assert [s["name"] for s in snap_list(store)] == [first, names[-2], names[-1]]
    # a policy that keeps nothing else (keep-within 1h of the newest) still keeps it
    res = prune_json(store, "--keep-within", "1h")
    assert [s["name"] for s in snap_list(store)] == [first, names[-1]], res
    check_clean(store)
    m = tmount(mounts, store)
    assert (m.path / ".snapshots" / first / "precious").read_bytes() == precious
    problems = snapshot_problems(m.path, saved, [first, names[-1]])
    assert not problems, "\n".join(problems)
    m.close()
    # unpinned, it goes, and its data with it
    before = stats(store.path)
    tresor("snapshot", "unpin", store.path, "vol", first, env=tenv(), check=True)
    prune_json(store, "--keep-last", "1")
    after = stats(store.path)
    assert [s["name"] for s in snap_list(store)] == [names[-1]]
    gone = (before["stored_bytes"] - before["garbage_bytes"]) - \
        (after["stored_bytes"] - after["garbage_bytes"])
    assert gone >= 290000, "unpinned snapshot removed, but only %d bytes given back" % gone


# --------------------------------------------------------------------------
# kill -9 during prune
# --------------------------------------------------------------------------
def build_history(store, mounts, rng, sessions, per_session, size, tag):
    """Snapshots with data of their own, over several mount sessions (each
    unmount finishes a pack, so there are several packs to collect).
    Returns (saved manifests by name, names, live manifest)."""
    saved, names = {}, []
    day = 0
    for s in range(sessions):
        m = tmount(mounts, store)
        r = m.path
        if s == 0:
            write_file(r / "keep.bin", rand_bytes(rng, size))
        for k in range(per_session):
            write_file(r / ("%s-%03d" % (tag, day)), rand_bytes(rng, size))
            if day >= 2:
                os.unlink(r / ("%s-%03d" % (tag, day - 2)))
            with open(r / "keep.bin", "r+b") as f:
                f.seek(rng.randrange(size - 10000))
                f.write(rand_bytes(rng, 10000))
            when = (datetime.datetime(2025, 1, 1, 12) + datetime.timedelta(days=day))
            n = snap(store, when=when.isoformat())
            saved[n] = manifest(r)
            names.append(n)
            day += 1
        live = manifest(r)
        m.close()
    return saved, names, live


def pack_files(store):
    out = []
    for dirpath, _, files in os.walk(Path(store.path) / "packs"):
        out += [os.path.join(dirpath, f) for f in files if re.fullmatch(r"[0-9a-f]{32}", f)]
    return out


def orphans(store, files):
    """For the message only: pack files neither the index's pack table nor
    its trash names (read-only look at index.db)."""
    try:
        import sqlite3
        db = sqlite3.connect("file:%s?mode=ro" % (Path(store.path) / "index.db"), uri=True)
        known = {bytes(r[0]).hex() for r in db.execute("SELECT name FROM pack")}
        known |= {bytes(r[0]).hex() for r in db.execute("SELECT name FROM pack_trash")}
        db.close()
        return " (%s)" % ", ".join("%s: %d bytes" % (os.path.basename(f), os.path.getsize(f))
                                   for f in files if os.path.basename(f) not in known)
    except Exception as exc:
        return " (%r)" % exc


def copy_store(store, dest):
    shutil.copytree(store.path, dest, symlinks=True)
    return type(store)(dest, store.passfile)


def start_prune(store, *args):
    return subprocess.Popen([TRESOR_BIN, "prune", str(store.path), "vol"] + list(args),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=tenv(TRESOR_PASSPHRASE=PASSPHRASE),
                            start_new_session=True)


def kill_after(p, delay):
    """SIGKILL p after delay s; True if it was still running."""
    end = time.monotonic() + delay
    while time.monotonic() < end and p.poll() is None:
        time.sleep(0.002)
    alive = p.poll() is None
    if alive:
        os.killpg(p.pid, signal.SIGKILL)
    out, err = p.communicate(timeout=60)
    assert p.returncode in (0, -signal.SIGKILL), \
        "prune failed by itself (exit %s): %s" % (p.returncode, err.decode()[-2000:])
    return alive


def store_problems(store, ref_stats, what):
    """After a finished prune: check clean, no pack files the index does
    not know, no more bytes than an uninterrupted prune left."""
    problems = []
    c = tresor("check", store.path, "--passphrase-file", store.passfile, timeout=600)
    if c.returncode != 0:
        problems.append("%s: tresor check exit %d: %s" % (what, c.returncode,
                                                          (c.stdout + c.stderr)[-1500:]))
    st = stats(store.path)
    files = pack_files(store)
    if len(files) != st["packs"]:
        extra = sum(os.path.getsize(f) for f in files) - st["stored_bytes"]
        problems.append("%s: %d pack files on disk (%d bytes more than stats' stored_bytes), "
                        "the index knows %d: a killed prune left orphan packs nothing removes%s"
                        % (what, len(files), extra, st["packs"], orphans(store, files)))
    if st["stored_bytes"] > ref_stats["stored_bytes"] * 1.05 + 65536:
        problems.append("%s: store holds %d bytes, an uninterrupted prune left %d"
                        % (what, st["stored_bytes"], ref_stats["stored_bytes"]))
    return problems


def test_kill9_during_prune(make_store, mounts, tmp):
    store = make_store(chunks=(16384, 65536, 262144))
    rng = random.Random(SEED + 3)
    saved, names, live = build_history(store, mounts, rng, sessions=6, per_session=10,
                                       size=600 * 1024, tag="f")
    pristine = copy_store(store, tmp / "pristine")
    # how long a whole prune takes, and what it leaves, on a copy
    full_s = None
    for i in range(2):
        ref = copy_store(pristine, tmp / ("ref-%d" % i))
        t0 = time.monotonic()
        prune(ref, "--keep-last", "4")
        took = time.monotonic() - t0
        full_s = took if full_s is None else min(full_s, took)
        ref_stats = stats(ref.path)
        assert not store_problems(ref, ref_stats, "uninterrupted prune")
        shutil.rmtree(ref.path)

    # (1) one store, prunes killed one after the other with different
    # delays and policies; check after each
    problems, log = [], []
    killed = 0
    for keep in (50, 42, 34, 26, 18, 10, 4):
        delay = full_s * rng.uniform(0.05, 0.6)
        alive = kill_after(start_prune(store, "--keep-last", str(keep)), delay)
        killed += alive
        log.append("keep-last %d, SIGKILL after %.3fs%s" % (keep, delay,
                                                           "" if alive else " (had finished)"))
        c = tresor("check", store.path, "--passphrase-file", store.passfile, timeout=600)
        if c.returncode != 0:
            problems.append("check after %s: exit %d: %s" % (log[-1], c.returncode,
                                                            (c.stdout + c.stderr)[-1500:]))
        left = [s["name"] for s in snap_list(store)]
        if left[-keep:] != names[-keep:]:
            problems.append("after %s snapshots it had to keep are gone" % log[-1])
    # a rerun finishes the job
    prune_json(store, "--keep-last", "4")
    assert [s["name"] for s in snap_list(store)] == names[-4:]
    problems += store_problems(store, ref_stats, "after the kills and a rerun")
    # nothing live lost; the kept snapshots intact
    m = tmount(mounts, store)
    problems += ["live: " + x for x in compare(manifest(m.path), live, ignore=IGNORE)]
    problems += snapshot_problems(m.path, saved, names[-4:])
    m.close()

    # (2) sweeps of kill points, each on a fresh copy: over a whole prune,
    # and over the space reclaim alone (a copy whose snapshots are gone
    # but whose GC did not run: prune found the GC lock taken)
    sweeps = [("whole prune", pristine, full_s)]
    pending = copy_store(pristine, tmp / "gc-pending")
    with open(Path(pending.path) / "locks" / "gc", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        p = prune(pending, "--keep-last", "4", check=False)
    if p.returncode != 0 and [s["name"] for s in snap_list(pending)] == names[-4:]:
        work = copy_store(pending, tmp / "gc-time")
        t0 = time.monotonic()
        prune(work, "--keep-last", "4")
        sweeps.append(("space reclaim", pending, time.monotonic() - t0))
        shutil.rmtree(work.path)
    else:
        log.append("no GC-only sweep: prune with the GC lock taken exited %d: %s"
                   % (p.returncode, p.stderr.strip()))
    swept = 0
    for label, origin, dur in sweeps:
        for i in range(10):
            delay = dur * (i + rng.random()) / 10
            work = copy_store(origin, tmp / ("sweep-%d" % i))
            alive = kill_after(start_prune(work, "--keep-last", "4"), delay)
            swept += alive
            what = "%s: SIGKILL after %.3fs of %.3fs%s" % (
                label, delay, dur, "" if alive else " (had finished)")
            log.append(what)
            c = tresor("check", work.path, "--passphrase-file", work.passfile, timeout=600)
            if c.returncode != 0:
                problems.append("%s: check exit %d: %s" % (what, c.returncode,
                                                           (c.stdout + c.stderr)[-1500:]))
            prune(work, "--keep-last", "4")
            if [s["name"] for s in snap_list(work)] != names[-4:]:
                problems.append("%s: rerun kept %s" % (what,
                                                       [s["name"] for s in snap_list(work)]))
            problems += store_problems(work, ref_stats, what + ", rerun")
            shutil.rmtree(work.path)
    print("\nwhole prune %.2fs\n%s" % (full_s, "\n".join(log)))
    assert not problems, "kill -9 during prune:\n  " + "\n  ".join(problems[:30])
    assert killed >= 3 and swept >= 5 * len(sweeps), \
        "too few prunes were still running when killed:\n" + "\n".join(log)


# --------------------------------------------------------------------------
# prune while mounted and written to
# --------------------------------------------------------------------------
def test_prune_while_mounted_and_written(make_store, mounts):
    store = make_store(chunks=(8192, 16384, 65536))
    rng = random.Random(SEED + 4)
    saved, names, live = build_history(store, mounts, rng, sessions=3, per_session=10,
                                       size=200 * 1024, tag="g")
    # the versions prune will free: the writer stores them again meanwhile,
    # so the daemon dedups against chunks the GC is deleting
    m = tmount(mounts, store)
    r = m.path
    originals = {}
    for i, n in enumerate(names[:20]):
        path = r / ".snapshots" / n / ("g-%03d" % i)
        if path.exists():
            originals["copy-%03d" % i] = path.read_bytes()
    assert len(originals) >= 10
    stop = threading.Event()
    errors = []
    written = {}
    appended = [0]

    def writer():
        try:
            k = 0
            logf = os.open(r / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            while not stop.is_set():
                name = sorted(originals)[k % len(originals)]
                dst = "%s-%d" % (name, k)
                write_file(r / dst, originals[name])
                written[dst] = originals[name]
                os.write(logf, b"%08d\n" % k)
                appended[0] = k + 1
                if k % 5 == 0:
                    os.fsync(logf)
                k += 1
            os.close(logf)
        except Exception as e:
            errors.append(e)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    try:
        time.sleep(0.3)
        res = prune_json(store, "--keep-last", "5")
        # and a snapshot while the writer runs, then another prune
        n_mid = snap(store, when="2026-01-01T00:00:00")
        res2 = prune_json(store, "--keep-last", "3")
        time.sleep(0.2)
    finally:
        stop.set()
        th.join(60)
    assert not errors, "writer failed during prune: %r" % errors
    assert res["removed"] == len(names) - 5 and res2["removed"] == 3
    kept = names[-2:] + [n_mid]
    assert [s["name"] for s in snap_list(store)] == kept
    assert sorted(os.listdir(r / ".snapshots")) == sorted(kept)
    assert len(written) > 5, "writer made no progress"
    problems = snapshot_problems(r, saved, names[-2:], " (mounted)")
    m.close()
    check_clean(store)
    files = pack_files(store)
    if len(files) != stats(store.path)["packs"]:
        problems.append("%d pack files, the index knows %d%s" % (
            len(files), stats(store.path)["packs"], orphans(store, files)))
    m = tmount(mounts, store)
    r = m.path
    for dst, data in sorted(written.items()):
        got = (r / dst).read_bytes()
        if got != data:
            problems.append("%s: %d bytes, differs from what was written" % (dst, len(got)))
    log = (r / "log").read_bytes()
    if log != b"".join(b"%08d\n" % k for k in range(appended[0])):
        problems.append("log is not the %d lines written" % appended[0])
    now = manifest(r)
    for p, e in live.items():
        if p and compare({p: now.get(p, {"type": "missing"})}, {p: e}, ignore=IGNORE):
            problems.append("live file %s changed or lost" % p)
    problems += snapshot_problems(r, saved, names[-2:], " (after remount)")
    assert not problems, "prune while mounted:\n  " + "\n  ".join(problems[:40])


def test_reused_snapshot_name_shows_the_new_snapshot(store, mounts):
    """A snapshot name taken again after prune deleted its holder shows the
    new snapshot through a mount that read the old one moments before: the
    kernel's cached entries must not lead to the old files (snapshot ids
    are never reused, and names in .snapshots are looked up at every use)."""
    m = mounts.mount(store, "vol", extra_env={"TZ": TZ})
    f = m.path / "f"
    f.write_bytes(b"A" * 5000)
    keep = snap(store, when="2026-06-02T12:00:00")
    for rnd in range(3):
        name = snap(store, when="2026-06-01T12:00:00")
        assert name == "2026-06-01"
        old = f.read_bytes()
        seen = m.path / ".snapshots" / name / "f"
        assert seen.read_bytes() == old, "round %d: the fresh snapshot" % rnd
        f.write_bytes(bytes([ord("B") + rnd]) * (6000 + rnd))
        prune(store, "--keep-last", "1")
        assert [s["name"] for s in snap_list(store)] == [keep]
        again = snap(store, when="2026-06-01T12:00:00")
        assert again == name
        assert seen.read_bytes() == f.read_bytes(), \
            "round %d: %s shows the pruned snapshot's file" % (rnd, name)
        prune(store, "--keep-last", "1")
