"""Snapshot sets (issue 17): several volumes of one store snapshotted at
one instant, as one unit - `tresor snapshot create|list|pin STORE --set`.

Real mounts of real volumes; the "one instant" check writes a counter into
one file of each of two mounted volumes, strictly one after the other,
while the set is taken: both members must show the same counter.
"""

import json
import pytest
import os
import re
import signal
import sqlite3
import threading
import time

from conftest import tresor, wait_for
from test_snapshots import TZ, mount, snap, snap_list, tenv


def set_create(store, setname, *vols, check=True):
    p = tresor("snapshot", "create", store.path, "--set", setname, *vols,
               "--json", env=tenv(), check=check)
    return json.loads(p.stdout) if check else p


def set_list(store, setname):
    p = tresor("snapshot", "list", store.path, "--set", setname, "--json",
               env=tenv(), check=True)
    return json.loads(p.stdout)


def rows(store):
    db = sqlite3.connect(str(store.path / "index.db"))
    try:
        return db.execute("SELECT v.name, s.name, s.time, s.set_name FROM snapshot s"
                          " JOIN volume v ON v.id = s.vol ORDER BY v.name, s.id").fetchall()
    finally:
        db.close()


def test_set_one_name_one_time_every_member(make_store, mounts):
    st = make_store(volumes=("db", "files", "extra"))
    mdb = mount(mounts, st, "db")
    mfiles = mount(mounts, st, "files")
    # "extra" stays unmounted: taken under its volume lock, as snapshot create does.
    (mdb / "dump.sql").write_text("rows v1\n")
    (mfiles / "att.bin").write_bytes(b"attachment v1")
    # A snapshot of db alone with today's name: the set must pick a name free
    # in every member.
    alone = snap(st, "db")
    out = set_create(st, "odoo", "db", "files", "extra")
    assert out["set"] == "odoo" and out["volumes"] == ["db", "files", "extra"]
    name = out["name"]
    assert name > alone and name.startswith(alone + "_"), \
        "the set took %r though db has %r" % (name, alone)
    got = [r for r in rows(st) if r[3] == "odoo"]
    assert sorted(r[0] for r in got) == ["db", "extra", "files"]
    assert {r[1] for r in got} == {name} and len({r[2] for r in got}) == 1, got
    # The alone snapshot stays outside the set.
    assert [r for r in rows(st) if r[0] == "db" and r[1] == alone][0][3] is None
    # Writes after the set are in the live tree only.
    (mdb / "dump.sql").write_text("rows v2\n")
    (mfiles / "att.bin").write_bytes(b"attachment v2")
    assert (mdb / ".snapshots" / name / "dump.sql").read_text() == "rows v1\n"
    assert (mfiles / ".snapshots" / name / "att.bin").read_bytes() == b"attachment v1"
    assert (mdb / "dump.sql").read_text() == "rows v2\n"
    # The second set of the day, with the members of the last one.
    p = tresor("snapshot", "create", st.path, "--set", "odoo", env=tenv(), check=True)
    second = p.stdout.strip()
    assert second > name and second.startswith(alone + "_"), (name, second)
    assert (mfiles / ".snapshots" / second / "att.bin").read_bytes() == b"attachment v2"
    lst = set_list(st, "odoo")
    assert [s["name"] for s in lst] == [name, second]
    assert all(s["volumes"] == ["db", "files", "extra"] for s in lst)
    # Each member lists it among its own snapshots too.
    assert [s["name"] for s in snap_list(st, "files")] == [name, second]


def test_set_is_one_instant(make_store, mounts):
    st = make_store(volumes=("a", "b"))
    ma = mount(mounts, st, "a")
    mb = mount(mounts, st, "b")
    fa = os.open(str(ma / "counter"), os.O_WRONLY | os.O_CREAT, 0o644)
    fb = os.open(str(mb / "counter"), os.O_WRONLY | os.O_CREAT, 0o644)
    stop = threading.Event()
    done = []

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            v = b"%016d" % i
            os.pwrite(fa, v, 0)
            os.pwrite(fb, v, 0)
        done.append(i)

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.3)
        names = [set_create(st, "pair", "a", "b")["name"] for _ in range(3)]
    finally:
        stop.set()
        t.join(30)
        os.close(fa)
        os.close(fb)
    assert done and done[0] > 10, "the writer hardly ran: %r" % done
    for n in names:
        va = (ma / ".snapshots" / n / "counter").read_bytes()
        vb = (mb / ".snapshots" / n / "counter").read_bytes()
        assert va == vb, "set %s: a holds %r, b holds %r: not one instant" % (n, va, vb)
        assert int(va) > 0


def test_set_pin_pins_every_member(make_store, mounts):
    st = make_store(volumes=("db", "files"))
    mount(mounts, st, "db")
    name = set_create(st, "odoo", "db", "files")["name"]
    p = tresor("snapshot", "pin", st.path, "--set", "odoo", name, env=tenv(), check=True)
    assert "2 volume(s)" in p.stdout
    assert all(s["pinned"] for v in ("db", "files") for s in snap_list(st, v))
    assert set_list(st, "odoo")[0]["pinned"] is True
    tresor("snapshot", "unpin", st.path, "--set", "odoo", name, env=tenv(), check=True)
    assert not any(s["pinned"] for v in ("db", "files") for s in snap_list(st, v))
    p = tresor("snapshot", "pin", st.path, "--set", "odoo", "1999-01-01", env=tenv())
    assert p.returncode == 1 and "set 'odoo'" in p.stderr and "no snapshot '1999-01-01'" in p.stderr


def test_set_refused_whole(make_store, mounts):
    """A member that cannot be held: nothing is taken in any member."""
    st = make_store(volumes=("db", "files"))
    mount(mounts, st, "db")
    mount(mounts, st, "files", opts=("ro",))
    p = set_create(st, "odoo", "db", "files", check=False)
    assert p.returncode == 1
    assert "volume 'files'" in p.stderr and "read-only" in p.stderr, p.stderr
    assert rows(st) == []
    # Bad input.
    p = set_create(st, "odoo", "db", "nosuch", check=False)
    assert p.returncode == 1 and "no volume 'nosuch'" in p.stderr
    p = set_create(st, "odoo", "db", "db", check=False)
    assert p.returncode == 2 and "named twice" in p.stderr
    p = tresor("snapshot", "create", st.path, "--set", "fresh", env=tenv())
    assert p.returncode == 2 and "no snapshot of set 'fresh' yet" in p.stderr
    assert rows(st) == []
    # The writable member still works and its daemon was released.
    p = set_create(st, "odoo", "db")
    assert p["volumes"] == ["db"]
    # A volume is in one set only, by hand as in the config.
    p = set_create(st, "other", "files", "db", check=False)
    assert p.returncode == 2 and "volume 'db'" in p.stderr \
        and "in set 'odoo'" in p.stderr and "one set only" in p.stderr, p.stderr
    assert [r[3] for r in rows(st)] == ["odoo"]


def test_member_daemon_killed(make_store, mounts):
    """A member whose daemon died: its lock is free, so it is taken from the
    committed state under its volume lock, like snapshot create."""
    st = make_store(volumes=("db", "files"))
    mdb = mount(mounts, st, "db")
    mf = mount(mounts, st, "files")
    (mf / "f").write_text("committed")
    os.sync()
    time.sleep(1.5)  # the committer commits every second
    mf.kill9()
    out = set_create(st, "odoo", "db", "files")
    assert sorted(r[0] for r in rows(st) if r[1] == out["name"]) == ["db", "files"]
    m2 = mount(mounts, st, "files")
    assert (m2 / ".snapshots" / out["name"] / "f").read_text() == "committed"
    assert mdb


def test_member_daemon_hung(make_store, mounts):
    """A member whose daemon does not answer (stopped): the set is refused
    within seconds, before any member's writes are held."""
    st = make_store(volumes=("db", "files"))
    mdb = mount(mounts, st, "db")
    mf = mount(mounts, st, "files")
    os.kill(mf.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        p = set_create(st, "odoo", "db", "files", check=False)
        took = time.monotonic() - t0
        assert p.returncode == 1 and "volume 'files'" in p.stderr and \
            "does not answer" in p.stderr, p.stderr
        assert took < 30, took
        assert rows(st) == []
        # db was never held: it takes writes at once.
        t0 = time.monotonic()
        (mdb / "after").write_text("x")
        assert time.monotonic() - t0 < 5
    finally:
        os.kill(mf.pid, signal.SIGCONT)
    assert set_create(st, "odoo", "db", "files")["volumes"] == ["db", "files"]


def test_old_store_upgraded(make_store, mounts):
    """A store of format 1 (no set_name column) is upgraded at its next open."""
    st = make_store(volumes=("db",))
    mount(mounts, st, "db").unmount()
    one = snap(st, "db")
    db = sqlite3.connect(str(st.path / "index.db"))
    db.execute("ALTER TABLE snapshot DROP COLUMN set_name")
    db.execute("UPDATE meta SET value = 1 WHERE key = 'format_version'")
    db.commit()
    db.close()
    assert [s["name"] for s in snap_list(st, "db")] == [one]
    db = sqlite3.connect(str(st.path / "index.db"))
    ver = db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0]
    cols = [r[1] for r in db.execute("PRAGMA table_info(snapshot)")]
    db.close()
    assert ver == 2 and "set_name" in cols
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d{4}", set_create(st, "s", "db")["name"])
    # A newer format is refused, not touched.
    db = sqlite3.connect(str(st.path / "index.db"))
    db.execute("UPDATE meta SET value = 3 WHERE key = 'format_version'")
    db.commit()
    db.close()
    p = tresor("snapshot", "list", st.path, "db", env=tenv())
    assert p.returncode == 1 and "newer tresor" in p.stderr
    assert TZ


# --------------------------------------------------------------------------
# prune as a set
# --------------------------------------------------------------------------
def test_prune_keeps_or_removes_members_together(make_store, mounts):
    st = make_store(volumes=("db", "files"))
    mount(mounts, st, "db")
    days = ["2026-03-0%dT02:00" % d for d in (1, 2, 3, 4)]
    names = []
    for when in days:
        p = tresor("snapshot", "create", st.path, "--set", "odoo", "db", "files",
                   "--time", when, "--scheduled", env=tenv(), check=True)
        names.append(p.stdout.strip())
    alone = snap(st, "db", when="2026-02-01T02:00")
    tresor("snapshot", "pin", st.path, "--set", "odoo", names[0], env=tenv(), check=True)
    # A volume's own prune leaves the set's snapshots alone.
    p = st.run("prune", st.path, "db", "--keep-last", "1", env=tenv(), check=True)
    assert "in snapshot set odoo" in p.stdout
    assert [s["name"] for s in snap_list(st, "db")] == [alone] + names or \
        sorted(s["name"] for s in snap_list(st, "db")) == sorted([alone] + names)
    # The set's prune: keep the last 2 (and the pinned one), in both members.
    p = st.run("prune", st.path, "--set", "odoo", "--keep-last", "2", "--dry-run",
               env=tenv(), check=True)
    assert "remove %s" % names[1] in p.stdout and "would remove 1" in p.stdout
    st.run("prune", st.path, "--set", "odoo", "--keep-last", "2", env=tenv(), check=True)
    want = [names[0], names[2], names[3]]
    assert [s["name"] for s in set_list(st, "odoo")] == want
    assert [s["name"] for s in snap_list(st, "files")] == want
    assert sorted(s["name"] for s in snap_list(st, "db")) == sorted([alone] + want)
    assert st.check().returncode == 0


# --------------------------------------------------------------------------
# the config file and the daemon
# --------------------------------------------------------------------------
from daemon_helpers import Daemon, local_ts  # noqa: E402

HEAD = """[tresor]
store = {store}
passphrase-file = {passfile}

[volume db]
mountpoint = {mnt}/db

[volume files]
mountpoint = {mnt}/files
"""

SET_CASES = [
    ("unknown volume", "[snapshot-set odoo]\nvolumes = db filez\n", 11,
     "unknown volume 'filez'"),
    ("volume in two sets", "[snapshot-set a]\nvolumes = db\n[snapshot-set b]\nvolumes = files, db\n",
     13, "volume 'db' is already in [snapshot-set a] (line 10)"),
    ("no volumes", "[snapshot-set odoo]\nkeep-last = 3\n", 10, "names no volumes"),
    ("keeps nothing", "[snapshot-set odoo]\nvolumes = db\nkeep-daily = 0\n", 10, "keeps nothing"),
    ("unknown key", "[snapshot-set odoo]\nvolumes = db\nhook = x\n", 12, "unknown key 'hook'"),
    ("bad schedule", "[snapshot-set odoo]\nvolumes = db\nsnapshot = dayly 03:00\n", 12,
     "snapshot: bad schedule"),
    ("set twice", "[snapshot-set o]\nvolumes = db\n[snapshot-set o]\nvolumes = files\n", 12,
     "given twice"),
    ("relative drill", "[snapshot-set odoo]\nvolumes = db\nrestore-drill = drill.sh\n", 12,
     "restore-drill: the command must be an absolute path"),
]


@pytest.mark.parametrize("name,tail,line,words", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_bad_set_reported_and_nothing_starts(make_store, tmp, name, tail, line, words):
    st = make_store(volumes=("db", "files"))
    cfg = tmp / "bad.conf"
    cfg.write_text(HEAD.format(store=st.path, passfile=st.passfile, mnt=tmp) + tail)
    p = tresor("daemon", cfg, timeout=60)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tresor: %s:%d: " % (cfg, line)), p.stderr
    assert words in lines[0] and "nothing started" in lines[0], lines[0]
    assert not (st.path / "daemon.state").exists()


def test_daemon_takes_and_prunes_the_set(make_store, tmp):
    st = make_store(volumes=("db", "files", "plans"))
    d = Daemon(tmp, st, volumes=("db", "files", "plans"))
    with open(d.cfg, "a") as f:
        f.write("[snapshot-set odoo]\nvolumes = db files\nkeep-last = 2\n")
    p = tresor("daemon", d.cfg, "--dry-run", env=d.env())
    assert p.returncode == 0 and "snapshot-set odoo: db files" in p.stdout, p.stdout + p.stderr
    d.set_clock(local_ts(2026, 3, 10, 0, 30))
    d.start()
    try:
        (d.mnt["db"] / "prod.sql").write_text("day 1\n")
        (d.mnt["files"] / "ab12").write_text("attachment 1\n")
        for k, day in enumerate((10, 11, 12), 1):
            d.set_clock(local_ts(2026, 3, day, 2, 0, 5))
            assert wait_for(lambda: [j for j, _ in d.history()].count("prune") == k and
                            not any(j["running"] for j in d.status()["jobs"]), 60, 0.2), \
                d.log_text()
        assert all(ok for _, ok in d.history()), d.history()
        names = [s["name"] for s in set_list(st, "odoo")]
        assert names == ["2026-03-11", "2026-03-12"], names
        assert [s["name"] for s in snap_list(st, "db")] == names
        assert [s["name"] for s in snap_list(st, "files")] == names
        # plans is in no set: its own snapshot, its own retention (daily 30).
        assert [s["name"] for s in snap_list(st, "plans")] == \
            ["2026-03-10", "2026-03-11", "2026-03-12"]
        assert (d.mnt["db"] / ".snapshots" / "2026-03-12" / "prod.sql").read_text() == "day 1\n"
        sets = d.status()["sets"]
        assert len(sets) == 1 and sets[0]["name"] == "odoo"
        assert sets[0]["volumes"] == ["db", "files"] and sets[0]["snapshots"] == 2
        assert sets[0]["last_snapshot"] == "2026-03-12"
        assert sets[0]["last_snapshot_time"] == local_ts(2026, 3, 12, 2, 0, 5)
        m, _ = d.metrics()
        assert 'tresor_set_snapshots{set="odoo"} 2' in m
        p = tresor("status", d.cfg, env=d.env())
        assert "set    odoo" in p.stdout and "2 snapshot(s), last 2026-03-12" in p.stdout
        log = d.log_text()
        assert "set odoo: snapshot 2026-03-10" in log
        assert "set odoo: prune removed 1 snapshot(s) of every member: 2026-03-10" in log
    finally:
        assert d.stop() == 0


# --------------------------------------------------------------------------
# restore as a set
# --------------------------------------------------------------------------
def test_restore_set_brings_every_member_back(make_store, mounts, tmp):
    st = make_store(volumes=("db", "files"))
    mdb = mount(mounts, st, "db")
    mf = mount(mounts, st, "files")
    (mdb / "prod.sql").write_text("INSERT 1\n")
    (mf / "ab").mkdir()
    (mf / "ab" / "ab12").write_bytes(b"\x00attachment" * 1000)
    first = set_create(st, "odoo", "db", "files")["name"]
    (mdb / "prod.sql").write_text("INSERT 1\nINSERT 2\n")
    (mf / "ab" / "ab34").write_bytes(b"second")
    second = set_create(st, "odoo", "db", "files")["name"]
    dest = tmp / "restored"
    p = st.run("restore", st.path, "--set", "odoo", first, dest, env=tenv(), check=True)
    assert p.stdout.count("restored ") == 2, p.stdout
    assert (dest / "db" / "prod.sql").read_text() == "INSERT 1\n"
    assert (dest / "files" / "ab" / "ab12").read_bytes() == b"\x00attachment" * 1000
    assert not (dest / "files" / "ab" / "ab34").exists()
    latest = tmp / "latest"
    st.run("restore", st.path, "--set", "odoo", "latest", latest, env=tenv(), check=True)
    assert (latest / "db" / "prod.sql").read_text() == "INSERT 1\nINSERT 2\n"
    assert (latest / "files" / "ab" / "ab34").read_bytes() == b"second"
    assert second != first
    p = st.run("restore", st.path, "--set", "odoo", "1999-01-01", tmp / "none", env=tenv())
    assert p.returncode == 1 and "no snapshot '1999-01-01'" in p.stderr


def test_set_with_its_own_schedule(make_store, tmp):
    """[snapshot-set] snapshot = daily 03:00: the set is taken (and pruned)
    at its own slot, not at the snapshot job's; a failure is retried; the
    slot survives a restart."""
    st = make_store(volumes=("db", "files", "plans"))
    d = Daemon(tmp, st, volumes=("db", "files", "plans"))
    counter = tmp / "attempts"
    hook = tmp / "hook.sh"
    # Fails the first time, works after: the retry takes the set.
    hook.write_text("#!/bin/sh\nn=$(cat %s 2>/dev/null || echo 0)\necho $((n+1)) > %s\n"
                    "[ $n -ge 1 ] || { echo 'database busy'; exit 1; }\n" % (counter, counter))
    os.chmod(hook, 0o755)
    with open(d.cfg, "a") as f:
        f.write("[snapshot-set odoo]\nvolumes = db files\nsnapshot = daily 03:00\n"
                "keep-last = 1\nbefore-snapshot = %s\n" % hook)
    p = tresor("daemon", d.cfg, "--dry-run", env=d.env())
    assert "snapshot-set odoo: db files; snapshot: daily 03:00, next" in p.stdout, p.stdout
    d.set_clock(local_ts(2026, 3, 10, 0, 30))
    d.start()
    try:
        d.set_clock(local_ts(2026, 3, 10, 2, 0, 5))
        assert wait_for(lambda: [j for j, _ in d.history()].count("prune") == 1, 60, 0.2)
        assert set_list(st, "odoo") == [] and [s["name"] for s in snap_list(st, "plans")] == \
            ["2026-03-10"]
        s = d.status()["sets"][0]
        assert s["own_schedule"] is True and s["schedule"] == "daily 03:00"
        assert s["next_run"] == local_ts(2026, 3, 10, 3, 0)
        # Its slot: the hook fails, the set waits for its retry (10 s).
        d.set_clock(local_ts(2026, 3, 10, 3, 0, 5))
        assert wait_for(lambda: d.status()["sets"][0]["last_failed"], 60, 0.2), d.log_text()
        s = d.status()
        assert "before-snapshot hook exit 1: database busy" in s["sets"][0]["last_error"]
        assert any(p.startswith("set odoo failed:") for p in s["problems"]), s["problems"]
        assert set_list(st, "odoo") == []
        d.set_clock(local_ts(2026, 3, 10, 3, 0, 20))
        assert wait_for(lambda: not d.status()["sets"][0]["last_failed"], 60, 0.2), d.log_text()
        assert [x["name"] for x in set_list(st, "odoo")] == ["2026-03-10"]
        m, _ = d.metrics()
        assert 'tresor_set_last_run_failed{set="odoo"} 0' in m
        # The next day's slot, and its prune (keep-last 1).
        d.set_clock(local_ts(2026, 3, 11, 3, 0, 5))
        assert wait_for(lambda: [x["name"] for x in set_list(st, "odoo")] == ["2026-03-11"],
                        60, 0.2), d.log_text()
    finally:
        assert d.stop() == 0
    # A restart in the same day does not take it again.
    d.start()
    try:
        time.sleep(2)
        assert [x["name"] for x in set_list(st, "odoo")] == ["2026-03-11"]
        assert d.status()["sets"][0]["runs"] == 3
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("point", ["snapshot-set", "snapshot-set-committed"])
def test_set_command_killed(make_store, mounts, point):
    """The command dies holding the members (SIGKILL at a crash point):
    before its commit no member has the set, after it every member has it;
    either way the daemons take writes again at once, and what is written
    after is in the live tree only."""
    st = make_store(volumes=("db", "files"))
    mdb = mount(mounts, st, "db")
    mf = mount(mounts, st, "files")
    (mdb / "d").write_text("before")
    (mf / "f").write_text("before")
    p = tresor("snapshot", "create", st.path, "--set", "odoo", "db", "files",
               env=tenv(TRESOR_CRASH_AT=point))
    assert p.returncode in (-9, 137) and "crash point %s reached" % point in p.stderr, \
        p.stderr
    t0 = time.monotonic()
    (mdb / "d").write_text("after")
    (mf / "f").write_text("after")
    assert time.monotonic() - t0 < 10, "the members stayed held"
    got = [r for r in rows(st) if r[3] == "odoo"]
    if point == "snapshot-set":
        assert got == []
    else:
        assert sorted(r[0] for r in got) == ["db", "files"]
        name = got[0][1]
        assert (mdb / ".snapshots" / name / "d").read_text() == "before"
        assert (mf / ".snapshots" / name / "f").read_text() == "before"
    assert (mdb / "d").read_text() == "after"
    name2 = set_create(st, "odoo", "db", "files")["name"]
    assert (mf / ".snapshots" / name2 / "f").read_text() == "after"
