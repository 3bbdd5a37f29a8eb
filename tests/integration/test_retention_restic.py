"""tresor's retention policy (fs/retention.c) against real restic.

One restic repository gets 55 snapshots of a one-file directory, spread
over 400 days (2025-06 .. 2026-07) with irregular gaps, some days holding
2-3 snapshots, and a few placed on purpose where local time and UTC
disagree (00:xx on the two DST-change days, New Year's Eve/Day, a Sunday/
Monday ISO-week edge).  For several policies, `restic forget --dry-run
--json` says which it keeps; the same times go through
retention_driver (tests/unit/retention_driver.c), and the keep sets and
the reasons must be equal.  Both run with TZ=Europe/Berlin.

Environment:
  TRESOR_BUILD_DIR  where retention_driver is (default: the directory of
                    TRESOR_BIN if set, else <repo>/build)
  RESTIC            the restic binary (default: restic on PATH; installed
                    by tools/install-deps.sh)

restic >= 0.16 also keeps the oldest snapshot while a rule has counts
left; tresor (like Debian 12's restic 0.14) does not.  The data is chosen
so that this never changes a decision, and the test checks that it does
not, so the comparison holds with either version.
"""

import concurrent.futures
import datetime
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import zoneinfo
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TZ = "Europe/Berlin"
SEED = 20260329
START = datetime.date(2025, 6, 1)
DAYS = 400
# Local times placed on purpose (see the module doc).
FIXED = [
    "2025-10-25 23:40:00", "2025-10-26 00:30:00",    # DST ends 10-26
    "2025-10-26 23:30:00",
    "2025-12-31 23:45:00", "2026-01-01 00:15:00",    # year boundary
    "2026-01-04 23:50:00", "2026-01-05 00:10:00",    # Sun/Mon: ISO week edge
    "2026-03-28 23:40:00", "2026-03-29 00:30:00",    # DST starts 03-29
    "2026-03-29 23:30:00",
    "2026-02-10 10:05:00", "2026-02-10 10:40:00",    # same hour
]
POLICIES = {
    "daily30-monthly12": ["--keep-daily", "30", "--keep-monthly", "12"],
    "d7-w4-m6-y2": ["--keep-daily", "7", "--keep-weekly", "4",
                    "--keep-monthly", "6", "--keep-yearly", "2"],
    "last5-within30d": ["--keep-last", "5", "--keep-within", "30d"],
    # every local day / ISO week / hour / year: all buckets compared
    "all-daily-weekly": ["--keep-daily", "1000", "--keep-weekly", "1000"],
    "all-hourly-yearly": ["--keep-hourly", "1000", "--keep-yearly", "1000"],
}
RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def driver_path():
    d = os.environ.get("TRESOR_BUILD_DIR")
    if not d and os.environ.get("TRESOR_BIN"):
        d = os.path.dirname(os.path.abspath(os.environ["TRESOR_BIN"]))
    return Path(d or REPO / "build") / "retention_driver"


def snapshot_times():
    """The local times "YYYY-MM-DD HH:MM:SS" to back up, sorted, unique.
    The first day has one snapshot alone in its day (see the module doc);
    hour 2 is never used (it is missing or doubled on DST-change days)."""
    rng = random.Random(SEED)
    times = set(FIXED)
    day = 0
    while True:
        day += rng.choice((1, 1, 2, 4, 9, 15, 21, 30))   # irregular gaps
        if day >= DAYS:
            break
        date = START + datetime.timedelta(days=day)
        for _ in range(rng.choice((1, 1, 1, 1, 1, 1, 2, 3))):
            hour = rng.choice([h for h in range(24) if h != 2])
            times.add("%s %02d:%02d:%02d" % (date, hour, rng.randrange(60),
                                             rng.randrange(60)))
    times.add("%s 12:00:00" % START)
    return sorted(times)


def restic_env(repo):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env.update(RESTIC_REPOSITORY=str(repo), RESTIC_PASSWORD="retention-test",
               TZ=TZ, LC_ALL="C")
    return env


def run(cmd, env, **kw):
    p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=300, **kw)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(cmd),
                                                     p.returncode, p.stderr))
    return p.stdout


def time_ns(rfc3339):
    """restic's JSON time ("2025-10-26T00:30:00+02:00", maybe with a
    fraction) as UTC ns since the epoch (whole seconds: --time has no
    fraction)."""
    dt = datetime.datetime.fromisoformat(re.sub(r"\.\d+", "", rfc3339))
    assert dt.tzinfo is not None, rfc3339
    return int(dt.timestamp()) * 10**9


@pytest.fixture(scope="module")
def restic_repo():
    """A restic repository with the snapshots of snapshot_times(); yields
    (restic binary, env, {snapshot id: time ns})."""
    restic = os.environ.get("RESTIC") or shutil.which("restic")
    if not restic:
        pytest.fail("restic not installed (tools/install-deps.sh installs it)",
                    pytrace=False)
    if not os.access(driver_path(), os.X_OK):
        pytest.fail("retention_driver not found at %s (build it first)"
                    % driver_path(), pytrace=False)
    tmp = Path(tempfile.mkdtemp(prefix="tresor-retention-", dir="/tmp"))
    try:
        env = restic_env(tmp / "repo")
        (tmp / "data").mkdir()
        (tmp / "data" / "f").write_text("tiny\n")
        run([restic, "init", "-q", "--no-cache"], env)

        # One process per snapshot; restic's key derivation is most of
        # the time, and it waits on fsync too, so run a few more processes
        # than cores (concurrent backups are fine for restic).
        def backup(t):
            run([restic, "backup", "-q", "--no-cache", "--time", t,
                 "--host", "h", "--tag", "t", "data"], env, cwd=tmp)
        workers = min(6, 2 * (os.cpu_count() or 2))
        times = snapshot_times()
        with concurrent.futures.ThreadPoolExecutor(workers) as ex:
            list(ex.map(backup, times))

        snaps = json.loads(run([restic, "snapshots", "--no-cache", "--json"],
                               env))
        ids = {s["id"]: time_ns(s["time"]) for s in snaps}
        assert len(ids) == len(times)
        assert len(set(ids.values())) == len(times), "times must be unique"
        yield restic, env, ids
    finally:
        if os.environ.get("TRESOR_KEEP_TMP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


def restic_decision(restic, env, args):
    """{time ns: [reasons]} of the snapshots restic keeps under args."""
    out = run([restic, "forget", "--no-cache", "--dry-run", "--json"] + args,
              env)
    groups = json.loads(out)
    assert len(groups) == 1, "one host/path group expected"
    kept = {}
    for r in groups[0]["reasons"]:
        kept[time_ns(r["snapshot"]["time"])] = list(r["matches"])
    assert len(kept) == len(groups[0]["keep"] or [])
    return kept


def tresor_decision(ids, args):
    """{time ns: [reasons]} of the snapshots tresor keeps, and the
    driver's per-snapshot lines (name -> (keep, reasons))."""
    lines = "".join("%s %d 0\n" % (sid, t) for sid, t in ids.items())
    env = dict(os.environ, TZ=TZ)
    p = subprocess.run([str(driver_path())] + args, input=lines, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    kept, rows = {}, {}
    for line in p.stdout.splitlines():
        # "NAME keep|remove REASON, REASON"
        parts = line.split(" ", 2)
        reasons = parts[2].split(", ") if len(parts) > 2 and parts[2] else []
        rows[parts[0]] = (parts[1] == "keep", reasons)
        if parts[1] == "keep":
            kept[ids[parts[0]]] = reasons
    assert len(rows) == len(ids)
    return kept, rows


def check_oldest_rule_irrelevant(ids, args, rows):
    """restic >= 0.16 keeps the oldest snapshot if a rule has counts left
    at the end.  Make sure that cannot change the keep set here: either
    every rule's count is used up, or tresor keeps the oldest snapshot
    anyway.  Returns the oldest snapshot's time if its reasons may differ
    (restic >= 0.16 would add that rule to them), else None."""
    counts = {}
    for i in range(0, len(args), 2):
        rule = args[i][len("--keep-"):]
        if rule in RULES:
            counts[rule] = int(args[i + 1])
    used = {r: 0 for r in counts}
    for keep, reasons in rows.values():
        for r in reasons:
            w = r.split(" ")[0]
            if r.endswith(" snapshot") and w in used:
                used[w] += 1
    oldest = min(ids, key=ids.get)
    if all(used[r] >= counts[r] for r in counts):
        return None
    assert rows[oldest][0], "test data: the oldest snapshot must be kept"
    return ids[oldest]


def check_within_margin(ids, args):
    """tresor's "30d" is 30*24 h; restic's is 30 calendar days (an hour
    more or less across a DST change).  No snapshot may sit within 2 h of
    the edge, so the comparison does not depend on that."""
    if "--keep-within" not in args:
        return
    days = int(args[args.index("--keep-within") + 1].rstrip("d"))
    edge = max(ids.values()) - days * 86400 * 10**9
    near = [t for t in ids.values() if abs(t - edge) < 2 * 3600 * 10**9]
    assert not near, "test data: a snapshot sits on the --keep-within edge"


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_same_decision_as_restic(restic_repo, policy):
    restic, env, ids = restic_repo
    args = POLICIES[policy]
    want = restic_decision(restic, env, args)
    got, rows = tresor_decision(ids, args)
    oldest_may_differ = check_oldest_rule_irrelevant(ids, args, rows)
    check_within_margin(ids, args)

    def show(ts):   # as Europe/Berlin local times
        return sorted(datetime.datetime.fromtimestamp(
            t // 10**9, zoneinfo.ZoneInfo(TZ)).isoformat() for t in ts)
    assert set(got) == set(want), (
        "keep sets differ: only restic keeps %s; only tresor keeps %s"
        % (show(set(want) - set(got)), show(set(got) - set(want))))
    # Not vacuous: the policy removes some and keeps some.
    assert 0 < len(got) < len(ids)
    for t in want:
        if t != oldest_may_differ:
            assert got[t] == want[t], "reasons differ at %s" % show([t])
