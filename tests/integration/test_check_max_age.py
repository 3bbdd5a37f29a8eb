"""`tresor check --max-age DURATION` (issue 18): every pack read at least
once per DURATION, whatever the store's size.

  - the index notes when each pack was last read whole and authenticated
    (table pack_verified, FORMAT.md §9.12), by any `check --read-data`;
  - `--max-age` reads the packs not verified within it, and nothing else:
    a first run reads all, an immediate second none, and after some
    packs' notes are made old (by editing the index, as a month passing
    would) only those;
  - a damaged pack that is due is found (exit 1), one that is not due is
    not read; a store from before the table has every pack due;
  - `repair --from`, which reads and authenticates every pack whole,
    notes them too, the packs it replaced included;
  - `check --remote NAME --max-age D` downloads and verifies only the
    remote's packs not verified there within D (remote_pack.verified);
  - the daemon's `check-max-age` makes its scheduled check read by age;
  - with =N% it reads the packs due and that share; a bad DURATION is a
    usage error.
"""

import json
import sqlite3
from pathlib import Path

from recovery_util import (MiB, all_packs, blob, fill_store, first_record_offset, flip,
                           pack_path, remote_pack_path, tresor_pw)
from daemon_helpers import local_ts
from test_daemon import daemons  # noqa: F401
from test_followups_daemon import SMALL_PACKS, start_daemon, write_packs
from test_push_recover import make_remote, push, remote_add  # noqa: F401

DAY_NS = 86400 * 10**9


def check(st, *args):
    p = tresor_pw("check", st.path, *args, "--json")
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout.splitlines()[-1]), p.stdout


def rw(store_path):
    return sqlite3.connect(str(Path(store_path) / "index.db"))


def verified(store_path, sql="SELECT hex(name), time FROM pack_verified"):
    """{pack hex: time ns} of the notes (local, or sql's)."""
    con = rw(store_path)
    try:
        return {r[0].lower(): r[1] for r in con.execute(sql)}
    finally:
        con.close()


def age(store_path, names, days):
    """Make the notes of packs names days older."""
    con = rw(store_path)
    try:
        for n in names:
            cur = con.execute("UPDATE pack_verified SET time = time - ? WHERE hex(name) = ?",
                              (days * DAY_NS, n.upper()))
            assert cur.rowcount == 1, n
        con.commit()
    finally:
        con.close()


def chunks_of(store_path, names):
    con = rw(store_path)
    try:
        return sum(con.execute("SELECT COUNT(*) FROM chunk c JOIN pack p ON p.id = c.pack"
                               " WHERE hex(p.name) = ?", (n.upper(),)).fetchone()[0]
                   for n in names)
    finally:
        con.close()


def store_of_packs(make_store, mounts, n=4):
    st = make_store()
    # each file in its own mount session: its own pack
    fill_store(st, mounts, {"f%d" % i: blob(40 + i, MiB) for i in range(n)})
    packs = sorted(all_packs(st.path))
    assert len(packs) >= n
    return st, packs


def test_max_age_reads_what_is_due_and_nothing_else(make_store, mounts):
    st, packs = store_of_packs(make_store, mounts)
    total = check(st)[1]["chunks"]
    # never verified: all due, all read, all noted
    rc, r, _ = check(st, "--read-data", "--max-age", "30d")
    assert rc == 0
    assert (r["packs_due"], r["packs_due_read"]) == (len(packs), len(packs)), r
    assert r["chunks_read"] == total
    assert r["packs_never_verified"] == 0 and r["oldest_verified"], r
    notes = verified(st.path)
    assert set(notes) == set(packs)
    # at once again: nothing due, nothing read
    rc, r, _ = check(st, "--read-data", "--max-age", "30d")
    assert rc == 0
    assert (r["packs_due"], r["packs_due_read"], r["chunks_read"]) == (0, 0, 0), r
    # a month later for two of them: those two, and their chunks only
    old = packs[1:3]
    age(st.path, old, 31)
    rc, r, _ = check(st, "--max-age", "30d")  # --max-age alone reads by age too
    assert rc == 0
    assert (r["packs_due"], r["packs_due_read"]) == (2, 2), r
    assert r["chunks_read"] == chunks_of(st.path, old)
    after = verified(st.path)
    for n in old:
        assert after[n] > notes[n], "the pack read was noted again"
    for n in set(packs) - set(old):
        assert after[n] == notes[n], "a pack not due was noted"
    # within its age (2w is 14 days): not due
    age(st.path, old, 10)
    assert check(st, "--max-age", "2w")[1]["packs_due"] == 0
    assert check(st, "--max-age", "240h")[1]["packs_due"] == 2


def test_damage_found_when_due_not_read_when_not(make_store, mounts):
    st, packs = store_of_packs(make_store, mounts)
    assert check(st, "--read-data", "--max-age", "30d")[0] == 0
    due, fresh = packs[0], packs[1]
    for n in (due, fresh):
        flip(pack_path(st.path, n), first_record_offset(st.path, n) + 64)
    before = verified(st.path)
    age(st.path, [due], 40)
    rc, r, out = check(st, "--max-age", "30d")
    assert rc == 1, out
    assert r["packs_due"] == 1 and r["problems"] == 1, r
    assert "pack %s" % due in out and "fails authentication" in out, out
    assert "pack %s" % fresh not in out, "a pack not due was read"
    # the damaged pack keeps its old note: still due next time
    assert verified(st.path)[due] == before[due] - 40 * DAY_NS
    rc, r, out = check(st, "--max-age", "30d")
    assert rc == 1 and r["packs_due"] == 1, out
    # reading everything finds the other one too, and notes neither
    rc, r, out = check(st, "--read-data")
    assert rc == 1 and "pack %s" % fresh in out and "pack %s" % due in out, out
    assert verified(st.path)[fresh] == before[fresh]
    # human report: due, read, oldest left
    p = tresor_pw("check", st.path, "--max-age", "30d")
    assert p.returncode == 1
    assert "1 pack(s) due by age, 1 read; oldest verification now " in p.stdout, p.stdout


def test_full_and_share_reads_note_packs(make_store, mounts):
    st, packs = store_of_packs(make_store, mounts)
    # a plain --read-data notes every pack it read whole
    rc, r, _ = check(st, "--read-data")
    assert rc == 0 and r["packs_never_verified"] == 0, r
    assert check(st, "--max-age", "30d")[1]["packs_due"] == 0
    # =N% with --max-age: the packs due, then the share
    age(st.path, packs[:1], 31)
    total = check(st)[1]["chunks"]
    rc, r, _ = check(st, "--read-data=50%", "--max-age", "30d")
    assert rc == 0
    assert (r["packs_due"], r["packs_due_read"]) == (1, 1), r
    due_chunks = chunks_of(st.path, packs[:1])
    assert due_chunks <= r["chunks_read"] <= due_chunks + (total + 1) // 2, r
    assert check(st, "--max-age", "30d")[1]["packs_due"] == 0


def test_store_from_before_the_table(make_store, mounts):
    st, packs = store_of_packs(make_store, mounts, n=2)
    # what a store written by an older tresor looks like: no table
    con = rw(st.path)
    con.execute("DROP TABLE pack_verified")
    con.commit()
    con.close()
    rc, r, _ = check(st, "--max-age", "30d")
    assert rc == 0
    assert (r["packs_due"], r["packs_due_read"]) == (len(packs), len(packs)), r
    assert set(verified(st.path)) == set(packs)


def test_bad_duration_is_a_usage_error(make_store):
    st = make_store()
    for bad in ("30x", "", "-1d", "d", "3.5d"):
        p = tresor_pw("check", st.path, "--max-age", bad)
        assert p.returncode == 2, (bad, p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "--max-age" in lines[0], p.stderr


def test_repair_notes_the_packs_it_read(make_store, mounts, make_remote):
    st, packs = store_of_packs(make_store, mounts, n=2)
    remote = make_remote("local")
    remote_add(st, "offsite", remote)
    push(st, "offsite", remote)
    bad = packs[0]
    flip(pack_path(st.path, bad), first_record_offset(st.path, bad) + 64)
    assert verified(st.path) == {}
    p = tresor_pw("repair", st.path, "--from", "offsite")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "repaired pack %s" % bad in p.stdout, p.stdout
    assert set(verified(st.path)) == set(packs)
    rc, r, _ = check(st, "--max-age", "30d")
    assert rc == 0 and r["packs_due"] == 0, r


def test_daemon_check_max_age(make_store, tmp, daemons):
    store = make_store()
    d = start_daemon(daemons, tmp, store, local_ts(2026, 7, 1, 3, 0),
                     {"snapshot": "never", "push": "never", "check": "daily 04:00",
                      "check-max-age": "30d"}, SMALL_PACKS)
    write_packs(d, "a")
    s = tresor_pw("snapshot", "create", store.path, "vol")
    assert s.returncode == 0, s.stderr
    assert verified(store.path) == {}
    d.set_clock(local_ts(2026, 7, 1, 4, 0, 5))
    assert d.wait_history(1) == [("check", True)], d.log_text()
    # check-read-data is no: only the age made it read, and every pack
    assert set(verified(store.path)) == set(all_packs(store.path)) != set()


def remote_verified(store_path):
    return verified(store_path, "SELECT hex(name), verified FROM remote_pack")


def test_remote_packs_by_age(make_store, mounts, make_remote):
    st, packs = store_of_packs(make_store, mounts, n=3)
    remote = make_remote("local")
    remote_add(st, "offsite", remote)
    push(st, "offsite", remote)
    assert set(remote_verified(st.path).values()) == {0}

    def rcheck():
        p = tresor_pw("check", st.path, "--remote", "offsite", "--max-age", "30d")
        m = [l for l in p.stdout.splitlines() if l.startswith("checked remote offsite")]
        assert len(m) == 1, p.stdout + p.stderr
        return p, m[0]

    p, line = rcheck()
    assert p.returncode == 0, p.stdout
    assert "%d pack(s) due by age, %d read and verified" % (len(packs), len(packs)) in line
    notes = remote_verified(st.path)
    assert set(notes) == set(packs) and 0 not in notes.values()
    p, line = rcheck()
    assert p.returncode == 0 and "0 pack(s) due by age, 0 read" in line, line
    # a due copy that rotted is found; one not due is not downloaded
    due, fresh = packs[0], packs[1]
    for n in (due, fresh):
        flip(remote_pack_path(remote.url, n), first_record_offset(st.path, n) + 10)
    con = rw(st.path)
    con.execute("UPDATE remote_pack SET verified = verified - ? WHERE hex(name) = ?",
                (31 * DAY_NS, due.upper()))
    con.commit()
    con.close()
    p, line = rcheck()
    assert p.returncode == 1, p.stdout
    assert "1 pack(s) due by age, 1 read and verified" in line, line
    assert due in p.stdout and "fails verification" in p.stdout, p.stdout
    assert fresh not in p.stdout, p.stdout
    assert remote_verified(st.path)[due] < notes[due], "a bad copy was noted as verified"
    # a push that extends nothing keeps the notes
    push(st, "offsite", remote)
    assert remote_verified(st.path)[fresh] == notes[fresh]
