"""Crash torture: a seeded mixed workload on a real mount, killed again and
again, and an oracle of what must survive (torture_model.py).

Each round mounts the volume, runs block writes, truncates, fsyncs,
renames, atomic replaces, hard links, unlinks, directory fsyncs, copies
(copy_file_range, by shared extents), fallocate punch/zero/extend and
RENAME_EXCHANGE, with
snapshots, prunes and pushes to a local-directory remote in between, and
ends in a crash of one of these kinds:
  - kill -9 of the daemon at a random moment (a timer thread);
  - a crash point inside the daemon (TRESOR_CRASH_AT: pack-append,
    pack-seal, index-commit, snapshot, copy) at a random pass;
  - a crash point inside a prune (gc-rewrite, gc-trash, index-commit), a
    push (push-pack, push-meta, push-image, push-meta-delete, index-commit)
    or a snapshot set's creation (snapshot-set, snapshot-set-committed:
    killed while it holds the daemon's writes) run beside the daemon
    (pushes send an image of the index every 3rd object, with no grace:
    each image deletes the metadata below it); the daemon must carry on
    (not stay frozen), then it is killed too.
About half the snapshots are snapshot sets (issue 17): the mounted volume
and a second one, "aux", unmounted, taken at one instant by `snapshot
create --set torture vol aux` and pruned as a set; every set snapshot
must be in both members or in neither.
After each crash the store mounts again without any manual step, and:
every fsynced block and every fsynced rename is there, no file holds a
block it never had, every snapshot that was acknowledged is there and holds
exactly the tree of its instant, no pruned snapshot comes back (one whose
prune crashed may be either), every set snapshot has every member and a
volume's own prune left them alone, and `tresor check` is clean.  At the end:
`check --read-data`, a clean push, and a recovery from the remote that
must equal the last tree and its snapshots.

TRESOR_TORTURE_ROUNDS (default 24) sets the number of crash rounds;
TRESOR_SOAK_SECONDS runs rounds until that much time has passed
(tests/soak.sh).  TRESOR_SEED changes the seed.  A summary line with the
figures is printed and, with TRESOR_TORTURE_REPORT=FILE, written as JSON.
"""

import datetime
import faulthandler
import json
import os
import random
import signal
import sqlite3
import threading
import time

from conftest import (PASSPHRASE, Store, check_sanitizer_text, fusermount_u, mounted,
                      tresor, wait_for)
from torture_model import Model, Workload, mount_dead, same_tree, tree_of, verify

ROUNDS = int(os.environ.get("TRESOR_TORTURE_ROUNDS", "24"))
SOAK = float(os.environ.get("TRESOR_SOAK_SECONDS", "0"))
SEED = int(os.environ.get("TRESOR_SEED", "8"))
OP_WATCHDOG = 120       # seconds one operation may take before we dump and abort
PACK_TARGET = "196608"  # small packs: many seals per round
KEEP = 3                # prune --keep-last

DAEMON_POINTS = (("pack-append", 200), ("pack-seal", 12), ("index-commit", 40), ("snapshot", 2),
                 ("copy", 20))
CLI_POINTS = (("prune", "gc-rewrite"), ("prune", "gc-trash"), ("prune", "index-commit"),
              ("push", "push-pack"), ("push", "push-meta"), ("push", "push-image"),
              ("push", "push-meta-delete"), ("push", "index-commit"))
SET_POINTS = (("set", "snapshot-set"), ("set", "snapshot-set-committed"))
SET = "torture"
AUX = "aux"             # the set's other member, never mounted: its volume lock
AUX_TREE = {"aux/kept": b"the set's other member\n"}


def kill9(m):
    """kill -9 the daemon if it still runs; detach the dead mount."""
    if m.proc.poll() is None:
        m.kill9()
        return
    fusermount_u(m.path, lazy=True)
    assert wait_for(lambda: not mounted(m.path), 10), "stale mount %s" % m.path
    m.active = False
    m.crashed = True
    check_sanitizer_text(m.log_text(), "daemon log %s" % m.log)


def penv(**extra):
    e = dict(os.environ)
    e["TRESOR_PASSPHRASE"] = PASSPHRASE
    e.update(extra)
    return e


class Torture:
    def __init__(self, tmp, store, mounts, rng):
        self.tmp = tmp
        self.store = store
        self.mounts = mounts
        self.rng = rng
        # What is taken or pruned as a set, and when a CLI crash is a set's:
        # drawn apart, so the rounds of a seed stay what they were before.
        self.set_rng = random.Random(SEED * 7919 + 17)
        self.model = Model()
        self.snaps = {}      # name -> expected tree (acknowledged)
        self.maybe = {}      # name -> expected tree (create or prune crashed)
        self.sets = set()    # names of snapshots taken as set SET (acknowledged or maybe)
        self.gone = set()    # names of sets killed before their commit: never there
        self.day = 0
        self.figures = {"rounds": 0, "kills": {}, "ops": 0, "acked_fsync": 0,
                        "acked_fsyncdir": 0, "snapshots": 0, "prunes": 0, "pushes": 0,
                        "checks": 0, "max_bytes": 0, "by_op": {}, "set_snapshots": 0}
        self.remote = tmp / "remote"
        self.remote.mkdir()
        tresor("remote", "add", store.path, "origin", self.remote, check=True)

    def count_kill(self, what):
        k = self.figures["kills"]
        k[what] = k.get(what, 0) + 1

    # ------------------------------------------------------------ events
    def snapshot(self, m, point=None):
        """A snapshot of vol, or (half of them, and always with a crash
        point) of set SET: vol and AUX at one instant."""
        self.day += 1
        when = datetime.datetime(2025, 1, 1) + datetime.timedelta(days=self.day)
        name = when.strftime("%Y-%m-%d")
        expected = self.model.expected_tree()
        as_set = point is not None or self.set_rng.random() < 0.5
        what = ["--set", SET, "vol", AUX] if as_set else ["vol"]
        env = penv(TRESOR_CRASH_AT=point) if point else penv()
        if as_set:
            self.sets.add(name)
        p = tresor("snapshot", "create", self.store.path, *what, "--time",
                   when.strftime("%Y-%m-%dT12:00:00"), "--scheduled", env=env,
                   timeout=OP_WATCHDOG)
        if point and p.returncode == -signal.SIGKILL:
            # killed holding the daemon's writes: before its commit the set
            # is in neither member, after it in both, as of its instant;
            # the daemon takes writes again (the workload goes on)
            self.count_kill("set:" + point)
            if point == "snapshot-set-committed":
                self.snaps[name] = expected
                self.figures["snapshots"] += 1
                self.figures["set_snapshots"] += 1
            else:
                self.sets.discard(name)
                self.gone.add(name)
            return True
        if p.returncode == 0 and m.proc.poll() is not None:
            # the daemon died before the request reached it: the CLI then
            # snapshots the committed state, as for an unmounted volume --
            # the tree that survives, not the instant's
            self.maybe[name] = expected
            return False
        if p.returncode == 0:
            assert p.stdout.strip() == name, "snapshot name %r, expected %r" % (p.stdout, name)
            self.snaps[name] = expected
            self.figures["snapshots"] += 1
            self.figures["set_snapshots"] += as_set
            # right away too: a wrong snapshot is then not the crash's doing
            try:
                bad = same_tree(expected, tree_of(m / ".snapshots" / name))
            except OSError as e:
                if mount_dead(e):
                    return True   # the kill came: checked after the restart
                raise
            assert not bad, "snapshot %s wrong right after it was taken (no crash yet): %s" \
                % (name, "; ".join(bad))
            return True
        assert wait_for(lambda: m.proc.poll() is not None, 10), \
            "snapshot create failed with the daemon alive: %s" % p.stderr
        self.maybe[name] = expected
        return False

    def prune(self, point=None):
        """vol's own prune (its snapshots outside the set), or the set's;
        a crash point in one of them, chosen at random."""
        as_set = self.set_rng.random() < 0.5
        env = penv(TRESOR_CRASH_AT=point) if point else penv()
        what = ["--set", SET] if as_set else ["vol"]
        p = tresor("prune", self.store.path, *what, "--keep-last", KEEP, env=env,
                   timeout=OP_WATCHDOG)
        order = sorted(n for n in self.snaps if (n in self.sets) == as_set)
        gone = order[:-KEEP] if len(order) > KEEP else []
        if p.returncode == 0:
            for n in gone:
                del self.snaps[n]
            self.figures["prunes"] += 1
            return
        assert point and p.returncode == -signal.SIGKILL, \
            "prune failed (exit %d): %s" % (p.returncode, p.stderr)
        self.count_kill("prune:" + point)
        for n in gone:
            self.maybe[n] = self.snaps.pop(n)

    def push(self, point=None, m=None):
        env = penv(TRESOR_CRASH_AT=point) if point else penv()
        # an image of the index every 3rd object: push-image is reached, and
        # (no grace) push-meta-delete when it makes older metadata unnecessary
        p = tresor("push", self.store.path, "origin", "--image-every", "3", "--grace", "0",
                   env=env, timeout=OP_WATCHDOG)
        if p.returncode == 0:
            self.figures["pushes"] += 1
            return
        if p.returncode == 1 and m is not None and wait_for(lambda: m.proc.poll() is not None, 5):
            return  # the daemon was killed under it: its open pack waits for a mount
        assert point and p.returncode == -signal.SIGKILL, \
            "push failed (exit %d): %s" % (p.returncode, p.stderr)
        self.count_kill("push:" + point)

    # ------------------------------------------------------------ rounds
    def round(self, n):
        rng = self.rng
        kind = rng.choice(("kill", "kill", "daemon", "daemon", "cli"))
        env = {"TRESOR_TEST_PACK_TARGET": PACK_TARGET}
        point = cli = None
        if kind == "daemon":
            point, most = rng.choice(DAEMON_POINTS)
            env["TRESOR_CRASH_AT"] = "%s:%d" % (point, rng.randint(1, most))
        elif kind == "cli":
            cli = rng.choice(CLI_POINTS)
            if self.set_rng.random() < 0.25:
                cli = self.set_rng.choice(SET_POINTS)
        budget = rng.randint(150, 700)
        events = {rng.randint(0, budget): "snapshot" for _ in range(rng.randint(0, 2))}
        events[rng.randint(0, budget)] = rng.choice(("prune", "push", "snapshot"))
        if cli:
            events[rng.randint(0, budget // 2)] = "cli"
        print("round %d: %s %s %s events %s" % (n, kind, env.get("TRESOR_CRASH_AT", ""), cli or "",
                                             sorted(events.items())))
        m = self.mounts.mount(self.store, "vol", extra_env=env)
        w = Workload(self.model, m.path, rng)
        if n == 0:
            w.setup()
        timer = None
        if kind == "kill":
            timer = threading.Timer(rng.uniform(0.05, 2.5), lambda: os.kill(m.pid, signal.SIGKILL))
            timer.start()
        died = False
        for i in range(budget):
            faulthandler.dump_traceback_later(OP_WATCHDOG, exit=True)
            try:
                ev = events.get(i)
                if ev == "snapshot":
                    if not self.snapshot(m):
                        died = True
                        break
                elif ev == "prune":
                    self.prune()
                elif ev == "push":
                    self.push(m=m)
                elif ev == "cli" and cli[0] == "set":
                    if not self.snapshot(m, cli[1]):
                        died = True
                        break
                elif ev == "cli":
                    self.prune(cli[1]) if cli[0] == "prune" else self.push(cli[1], m)
                w.step()
            except OSError as e:
                if mount_dead(e) and wait_for(lambda: m.proc.poll() is not None, 10):
                    died = True
                    break
                raise
            if m.proc.poll() is not None:
                died = True
                break
        faulthandler.cancel_dump_traceback_later()
        if timer:
            timer.cancel()
        if kind == "kill":
            self.count_kill("kill -9" if died else "kill -9 (after the ops)")
        elif kind == "daemon":
            self.count_kill(("daemon:" + point) if died else "kill -9 (point %s not reached)" % point)
        else:
            self.count_kill("kill -9 after " + cli[0])
        if m.proc.poll() is None:
            assert not died, "the mount failed but the daemon is alive"
        kill9(m)
        assert not mounted(m.path)
        self.figures["ops"] += sum(w.ops.values())
        for op, c in w.ops.items():
            self.figures["by_op"][op] = self.figures["by_op"].get(op, 0) + c
        self.figures["acked_fsync"] += w.acked["fsync"]
        self.figures["acked_fsyncdir"] += w.acked["fsyncdir"]
        self.figures["rounds"] += 1
        self.check_after(n, "%s%s" % (kind, " " + (point or "/".join(cli or ())) if kind != "kill" else ""))

    def check_after(self, n, what):
        m = self.mounts.mount(self.store, "vol", opts=["list_snapshots"])
        problems, st = verify(self.model, m.path)
        self.figures["max_bytes"] = max(self.figures["max_bytes"], st["bytes"])
        problems += self.check_snapshots(m)
        m.close()
        assert not problems, "round %d (%s): after the crash:\n  %s" % (n, what, "\n  ".join(problems))
        p = self.store.check()
        self.figures["checks"] += 1
        assert p.returncode == 0, "round %d (%s): check: %s %s" % (n, what, p.stdout, p.stderr)

    def check_snapshots(self, m):
        problems = []
        p = tresor("snapshot", "list", self.store.path, "vol", "--json", env=penv(), check=True)
        names = {s["name"] for s in json.loads(p.stdout)}
        # The set: every member or none, and only what was taken as one
        # (read from the index: two more commands a round cost 5 %).
        db = sqlite3.connect("file:%s?mode=ro" % (self.store.path / "index.db"), uri=True)
        try:
            got = db.execute("SELECT v.name, s.name, s.set_name FROM snapshot s"
                             " JOIN volume v ON v.id = s.vol ORDER BY v.name").fetchall()
        finally:
            db.close()
        inset, aux = {}, set()
        for vol, name, set_name in got:
            if set_name == SET:
                inset.setdefault(name, []).append(vol)
            if vol == AUX:
                aux.add(name)
        for name in sorted(set(inset) | aux):
            if sorted(inset.get(name, ())) != sorted(["vol", AUX]) or name not in aux or \
                    name not in names:
                problems.append("set snapshot %s: members %r, in %s %s, in vol %s"
                                % (name, inset.get(name), AUX, name in aux, name in names))
            if name not in self.sets:
                problems.append("set snapshot %s: taken alone" % name)
        for name in (names | aux) & self.gone:
            problems.append("set snapshot %s: killed before its commit, is there" % name)
        for name in names - set(inset):
            if name in self.sets:
                problems.append("snapshot %s: taken as set %s, is not in it" % (name, SET))
        live = self.model.expected_tree()
        for name in sorted(names):
            tree = tree_of(m / ".snapshots" / name)
            if name in self.snaps:
                bad = same_tree(self.snaps[name], tree)
                if bad:
                    problems.append("snapshot %s: %s" % (name, "; ".join(bad)))
            elif name in self.maybe:
                # its create or its prune died: the instant's tree, or (the
                # CLI snapshots the committed state when the daemon died
                # under it) the tree that survived
                if same_tree(self.maybe[name], tree) and same_tree(live, tree):
                    problems.append("snapshot %s (crashed during create/prune) holds neither"
                                    " its instant nor the surviving tree" % name)
                else:
                    self.snaps[name] = self.maybe[name] if not same_tree(self.maybe[name], tree) \
                        else live
            else:
                problems.append("snapshot %s: nobody made it" % name)
        for name in self.snaps:
            if name not in names:
                problems.append("snapshot %s: acknowledged but gone" % name)
        for name in list(self.snaps):
            if name not in names:
                del self.snaps[name]
        self.maybe = {}
        return problems

    def finish(self, recover):
        """check --read-data, a clean push, and (recover) a recovery that
        must equal the last tree and its snapshots."""
        p = tresor("check", self.store.path, "--read-data", env=penv(), timeout=600)
        assert p.returncode == 0, "check --read-data: %s %s" % (p.stdout, p.stderr)
        self.push()
        if not recover:
            return
        rec = Store(self.tmp / "recovered", self.store.passfile)
        p = tresor("recover", self.remote, rec.path, env=penv(), timeout=600)
        assert p.returncode == 0, "recover: %s" % p.stderr
        m = self.mounts.mount(rec, "vol", mnt=self.tmp / "mnt-recovered", opts=["list_snapshots"])
        problems = ["live tree: " + x for x in same_tree(self.model.expected_tree(), tree_of(m.path))]
        # The sets as the store has them (names, times, members).
        sl = [tresor("snapshot", "list", s, "--set", SET, "--json", env=penv(), check=True).stdout
              for s in (self.store.path, rec.path)]
        if sl[0] != sl[1]:
            problems.append("set %s: %s here, %s recovered" % (SET, sl[0], sl[1]))
        for name, exp in self.snaps.items():
            problems += ["snapshot %s: %s" % (name, x) for x in
                         same_tree(exp, tree_of(m / ".snapshots" / name))]
        m.close()
        assert not problems, "recovered store differs:\n  " + "\n  ".join(problems)


def run_torture(tmp, make_store, mounts, rounds, soak, recover):
    store = make_store(chunks=(4096, 16384, 65536), volumes=("vol", AUX))
    m = mounts.mount(store, AUX)
    for rel, data in AUX_TREE.items():
        (m.path / os.path.basename(rel)).write_bytes(data)
    m.close()
    rng = random.Random(SEED)
    t = Torture(tmp, store, mounts, rng)
    start = time.monotonic()
    n = 0
    while n < rounds or (soak and time.monotonic() - start < soak):
        t.round(n)
        n += 1
    t.finish(recover)
    f = t.figures
    f["seconds"] = round(time.monotonic() - start, 1)
    f["total_kills"] = sum(f["kills"].values())
    print("torture: %s" % json.dumps(f, sort_keys=True))
    if os.environ.get("TRESOR_TORTURE_REPORT"):
        with open(os.environ["TRESOR_TORTURE_REPORT"], "w") as fh:
            json.dump(f, fh, indent=1, sort_keys=True)
    assert f["acked_fsync"] > 0, "the workload acknowledged nothing: %r" % f
    assert all(f["by_op"].get(op) for op in ("copy", "punch", "exchange")), \
        "the operations on extents did not run: %r" % f["by_op"]
    return f


def test_crash_torture(tmp, make_store, mounts):
    f = run_torture(tmp, make_store, mounts, ROUNDS, SOAK, recover=False)
    assert f["snapshots"] > 0, "no snapshot was acknowledged: %r" % f


# The drill also recovers from the remote.  It found that a second full
# image (the first push died after writing meta/1) was laid over the first
# without deleting what it no longer held (fixed in chunker/changelog.c).
def test_recovery_after_crash_torture(tmp, make_store, mounts):
    run_torture(tmp, make_store, mounts, max(ROUNDS // 2, 8), SOAK, recover=True)
