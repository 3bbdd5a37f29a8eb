"""Snapshot names an office admin can find, and snapshots taken by hand.

- one scheduled run of the daemon gives every volume it snapshots the same
  name, also when one volume has a snapshot of that day already and the
  other has not;
- names sort (byte order, as `ls` shows them) in the order taken, and a
  name is not given again after prune removed it; names of older stores
  (`DATE.2`) stay and sort before the new ones of their day;
- a snapshot a person takes is pinned: `snapshot create` says so, `list`
  shows it, prune (the daemon's too) keeps it until it is unpinned; prune
  names what it removes (output, daemon log).
"""

import json
import os
import re


from conftest import PASSPHRASE, base_env, tresor
from daemon_helpers import TZ, Daemon, local_ts
from test_daemon import daemons  # noqa: F401  (the fixture)


def run(store, *args, check=True):
    return tresor(*args, env=base_env(TZ=TZ), passphrase_env=PASSPHRASE, check=check)


def listed(store, vol):
    p = run(store, "snapshot", "list", store.path, vol, "--json")
    return json.loads(p.stdout)


def names(store, vol):
    return [s["name"] for s in listed(store, vol)]


def create(store, vol, when, *extra):
    p = run(store, "snapshot", "create", store.path, vol, "--time", when, *extra)
    return p.stdout.strip(), p.stderr


def test_one_run_one_name_and_manual_snapshot_kept(make_store, tmp, daemons):  # noqa: F811
    store = make_store(volumes=("plans", "files"))
    d = Daemon(tmp, store, volumes=("plans", "files"),
               schedule={"snapshot": "daily 02:00", "push": "never", "check": "never"},
               retention="keep-last = 1\n")
    daemons.append(d)
    d.set_clock(local_ts(2026, 12, 6, 0, 30))
    d.start()
    (d.mnt["plans"] / "plan.pdf").write_bytes(b"v1")
    (d.mnt["files"] / "a").write_bytes(b"a")
    # a person takes a snapshot of plans before the night's run
    manual, said = create(store, "plans", "2026-12-06T01:00")
    assert manual == "2026-12-06"
    assert "pinned" in said and "unpin" in said and manual in said, said
    assert [s["pinned"] for s in listed(store, "plans")] == [True]

    d.set_clock(local_ts(2026, 12, 6, 2, 0, 5))
    assert d.wait_history(2) == [("snapshot", True), ("prune", True)]
    # one name for the run, though files had no snapshot of the day
    assert names(store, "plans") == ["2026-12-06", "2026-12-06_0200"]
    assert names(store, "files") == ["2026-12-06_0200"]
    sched = [s for s in listed(store, "plans") if s["name"] == "2026-12-06_0200"]
    assert sched[0]["pinned"] is False

    # the next night: keep-last 1 removes yesterday's scheduled snapshots,
    # not the one taken by hand; the log names what went
    (d.mnt["plans"] / "plan.pdf").write_bytes(b"v2")
    d.set_clock(local_ts(2026, 12, 7, 2, 0, 5))
    assert d.wait_history(4)[2:] == [("snapshot", True), ("prune", True)]
    assert names(store, "plans") == ["2026-12-06", "2026-12-07"]
    assert names(store, "files") == ["2026-12-07"]
    log = d.log_text()
    assert re.search(r"volume plans: prune removed 1 snapshot\(s\): 2026-12-06_0200\b", log), log
    assert re.search(r"volume files: prune removed 1 snapshot\(s\): 2026-12-06_0200\b", log), log
    assert (d.mnt["plans"] / ".snapshots" / "2026-12-06" / "plan.pdf").read_bytes() == b"v1"


def test_names_sort_as_taken_and_are_not_reused(store):
    vol = "vol"
    # an older store's names: the day, then .2
    for name, when in (("2026-03-09", "2026-03-09T02:00"), ("2026-03-09.2", "2026-03-09T14:00")):
        assert create(store, vol, when, "--name", name, "--scheduled")[0] == name
    taken = []
    for when in ("2026-03-09T18:00", "2026-03-10T02:00", "2026-03-10T02:00:30",
                 "2026-03-10T02:00:30", "2026-03-10T02:00:30", "2026-03-10T09:15"):
        taken.append(create(store, vol, when, "--scheduled")[0])
    assert taken == ["2026-03-09_1800", "2026-03-10", "2026-03-10_0200", "2026-03-10_020030",
                     "2026-03-10_020030.2", "2026-03-10_0915"]
    got = names(store, vol)  # oldest first
    assert got == sorted(got), "names do not sort in time order: %s" % got
    # prune keeps the newest; the pruned names do not come back
    p = run(store, "prune", store.path, vol, "--keep-last", "1")
    removed = re.findall(r"^remove (\S+)", p.stdout, re.M)
    assert sorted(removed) == sorted(n for n in got if n != "2026-03-10_0915"), p.stdout
    assert "removed %d snapshot(s)" % len(removed) in p.stdout
    assert names(store, vol) == ["2026-03-10_0915"]
    again = [create(store, vol, w, "--scheduled")[0]
             for w in ("2026-03-10T09:30", "2026-03-10T09:30:10", "2026-03-11T02:00")]
    assert again == ["2026-03-10_0930", "2026-03-10_093010", "2026-03-11"]
    got = names(store, vol)
    assert got == sorted(got) and not set(again) & set(removed)


def test_manual_snapshot_pinned_until_unpinned(store):
    vol = "vol"
    create(store, vol, "2026-05-01T02:00", "--scheduled")
    manual, said = create(store, vol, "2026-05-01T10:00")
    assert manual == "2026-05-01_1000"
    assert re.search(r"snapshot 2026-05-01_1000 of volume 'vol' is pinned: prune keeps it "
                     r"until 'tresor snapshot unpin .* vol 2026-05-01_1000'", said), said
    sched, said = create(store, vol, "2026-05-02T02:00", "--scheduled")
    assert "not pinned" in said and "retention policy" in said, said
    create(store, vol, "2026-05-03T02:00", "--scheduled")
    text = run(store, "snapshot", "list", store.path, vol).stdout
    assert re.search(r"^2026-05-01_1000 .* yes ", text, re.M), text
    p = run(store, "prune", store.path, vol, "--keep-last", "1")
    assert re.search(r"^keep   2026-05-01_1000 \(pinned\)$", p.stdout, re.M), p.stdout
    assert set(re.findall(r"^remove (\S+)", p.stdout, re.M)) == {"2026-05-01", sched}
    assert names(store, vol) == ["2026-05-01_1000", "2026-05-03"]
    # unpinned, it is the policy's
    run(store, "snapshot", "unpin", store.path, vol, manual)
    p = run(store, "prune", store.path, vol, "--keep-last", "1")
    assert re.findall(r"^remove (\S+)", p.stdout, re.M) == [manual], p.stdout
    # a set taken by hand is pinned too, --scheduled not
    store.create_volume("aux")
    p = run(store, "snapshot", "create", store.path, "--set", "s", vol, "aux", "--json")
    assert json.loads(p.stdout)["pinned"] is True and "pinned" in p.stderr
    p = run(store, "snapshot", "create", store.path, "--set", "s", "--scheduled", "--json")
    assert json.loads(p.stdout)["pinned"] is False


def test_name_option_checked(store):
    vol = "vol"
    for bad in ("a:b", "a/b", ".hidden", "latest", "two words", "", "-x", "x" * 128):
        p = run(store, "snapshot", "create", store.path, vol, "--name", bad, check=False)
        assert p.returncode == 2 and "--name" in p.stderr and not p.stdout, (bad, p.stderr)
    assert create(store, vol, "2026-01-01T10:00", "--name", "before-upgrade")[0] == "before-upgrade"
    p = run(store, "snapshot", "create", store.path, vol, "--name", "before-upgrade", check=False)
    assert p.returncode == 1 and "before-upgrade" in p.stderr and "already" in p.stderr
    # a name a person chose takes no part in the order of the others
    assert create(store, vol, "2026-01-02T10:00")[0] == "2026-01-02"
    assert names(store, vol) == ["before-upgrade", "2026-01-02"]


def test_name_by_the_local_time_of_who_asks(store, mounts):
    """The mount process (here in UTC) takes the snapshot; its name is in
    the local time of the `snapshot create` that asked (Europe/Berlin)."""
    m = mounts.mount(store, "vol", extra_env={"TZ": "UTC"})
    (m.path / "f").write_bytes(b"x")
    # 00:30 in Berlin is 23:30 the day before in UTC
    assert create(store, "vol", "2026-03-10T00:30")[0] == "2026-03-10"
    assert create(store, "vol", "2026-03-10T00:45")[0] == "2026-03-10_0045"
    assert sorted(os.listdir(m.path / ".snapshots")) == ["2026-03-10", "2026-03-10_0045"]
