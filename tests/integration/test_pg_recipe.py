"""The Odoo recipe of docs/DAEMON.md with a real PostgreSQL (issue 17):
a before-snapshot hook runs pg_dump into a `db-dumps` volume that is in one
snapshot set with the filestore, so the dump and the files it names share
one instant.  Then both change, the store is pushed, recovered into a
fresh store from the remote, the set restored, the dump loaded into a new
database with psql, and every file a row names must exist with its bytes.

The cluster lives in a temporary directory owned by the unprivileged
`postgres` user, listening on a socket in that directory only.  Skipped
when PostgreSQL (Debian's `postgresql`, tools/install-deps.sh) is absent.
"""

import gzip
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from conftest import PASSPHRASE, Store, tresor, wait_for
from daemon_helpers import Daemon, free_port, local_ts
from test_snapshot_hooks import run_slot, script

PGBIN = "/usr/lib/postgresql/15/bin"
need = [os.path.join(PGBIN, b) for b in ("initdb", "pg_ctl")] + \
    [shutil.which(b) or "" for b in ("pg_dump", "psql", "runuser")]
pytestmark = pytest.mark.skipif(
    not all(os.access(p, os.X_OK) for p in need) or os.geteuid() != 0 or
    not any(u.pw_name == "postgres" for u in pwd.getpwall()),
    reason="needs PostgreSQL 15 (tools/install-deps.sh), root and the postgres user")


class Cluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tresor-pg-")
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        self.data = os.path.join(self.dir, "data")
        self.as_pg(os.path.join(PGBIN, "initdb"), "-D", self.data, "-U", "postgres",
                   "--auth=trust", "-E", "UTF8")
        self.as_pg(os.path.join(PGBIN, "pg_ctl"), "-D", self.data, "-w", "-l",
                   os.path.join(self.dir, "log"), "-o",
                   "-k %s -p %d -c listen_addresses=''" % (self.dir, self.port), "start")

    def as_pg(self, *args):
        p = subprocess.run(["runuser", "-u", "postgres", "--"] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=120, cwd=self.dir)
        assert p.returncode == 0, "%s: %s %s" % (args, p.stdout, p.stderr)
        return p.stdout

    def psql(self, db, sql):
        p = subprocess.run(["psql", "-h", self.dir, "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout

    def stop(self):
        self.as_pg(os.path.join(PGBIN, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.stop()


def put_attachment(pg, fs_root, data):
    """An Odoo-style attachment: the file named by its SHA-1, a row naming it."""
    h = hashlib.sha1(data).hexdigest()
    d = fs_root / "filestore" / "odoo" / h[:2]
    d.mkdir(parents=True, exist_ok=True)
    (d / h).write_bytes(data)
    pg.psql("odoo", "INSERT INTO ir_attachment(name, store_fname) VALUES ('f%s', '%s/%s')"
            % (h[:6], h[:2], h))
    return h


def test_dump_and_filestore_restore_as_one(make_store, tmp, cluster):
    pg = cluster
    pg.psql("postgres", "CREATE DATABASE odoo")
    pg.psql("odoo", "CREATE TABLE ir_attachment(id serial PRIMARY KEY, name text,"
                    " store_fname text NOT NULL)")
    st = make_store(volumes=("db-dumps", "filestore"))
    remote = tmp / "offsite"
    remote.mkdir()
    hook = script(tmp / "dump.sh",
                  "set -e\nset -- $TRESOR_MOUNTPOINTS\n"
                  "pg_dump -h %s -p %d -U postgres --format=plain odoo > \"$1/odoo.sql.tmp\"\n"
                  "mv \"$1/odoo.sql.tmp\" \"$1/odoo.sql\"\n"
                  "echo \"dumped odoo: $(wc -c < \"$1/odoo.sql\") bytes\"\n" % (pg.dir, pg.port))
    d = Daemon(tmp, st, volumes=("db-dumps", "filestore"), remotes={"offsite": str(remote)})
    with open(d.cfg, "a") as f:
        f.write("[snapshot-set odoo]\nvolumes = db-dumps filestore\n"
                "before-snapshot = %s\nhook-timeout = 2m\n" % hook)
    d.set_clock(local_ts(2026, 3, 10, 0, 30))
    d.start()
    try:
        fs = d.mnt["filestore"]
        kept = [put_attachment(pg, fs, os.urandom(5000 + i * 997)) for i in range(12)]
        h = run_slot(d)
        assert h["snapshot"] is True, d.log_text()[-4000:]
        assert "dumped odoo:" in d.log_text()
        # After the instant: an attachment deleted (row and file), one added.
        gone = kept[0]
        pg.psql("odoo", "DELETE FROM ir_attachment WHERE store_fname LIKE '%%%s'" % gone)
        os.unlink(fs / "filestore" / "odoo" / gone[:2] / gone)
        late = put_attachment(pg, fs, b"added after the set")
    finally:
        assert d.stop() == 0, d.log_text()[-4000:]
    env = dict(os.environ, TRESOR_PASSPHRASE=PASSPHRASE)
    tresor("push", st.path, "offsite", env=env, check=True, timeout=300)
    # A new machine: the store from the remote, the set restored.
    new = tmp / "recovered"
    tresor("recover", remote, new, env=env, check=True, timeout=300)
    dest = tmp / "restore"
    tresor("restore", new, "--set", "odoo", "latest", dest, env=env, check=True)
    pg.psql("postgres", "CREATE DATABASE odoo_restored")
    p = subprocess.run(["psql", "-h", pg.dir, "-p", str(pg.port), "-U", "postgres", "-d",
                        "odoo_restored", "-v", "ON_ERROR_STOP=1", "-q", "-f",
                        str(dest / "db-dumps" / "odoo.sql")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = pg.psql("odoo_restored", "SELECT store_fname FROM ir_attachment ORDER BY id").split()
    assert len(rows) == 12 and any(r.endswith(gone) for r in rows)
    assert not any(r.endswith(late) for r in rows)
    for r in rows:
        path = dest / "filestore" / "filestore" / "odoo" / r
        assert path.exists(), "row names %s, missing from the restored filestore" % r
        assert hashlib.sha1(path.read_bytes()).hexdigest() == r.split("/")[1]
    # The filestore of the same instant: nothing from after it.
    assert not (dest / "filestore" / "filestore" / "odoo" / late[:2] / late).exists()


def test_daily_plain_dump_costs_about_what_changed(make_store, mounts, cluster, capsys):
    """What a second day's plain-format dump costs in stored bytes: new rows
    appended (the common case: messages, journal lines) cost about their
    own size; the same rows gzip'd would cost the whole dump again."""
    pg = cluster
    pg.psql("postgres", "CREATE DATABASE odoo")
    pg.psql("odoo", "CREATE TABLE mail_message(id serial PRIMARY KEY, body text, author int)")
    pg.psql("odoo", "INSERT INTO mail_message(body, author) SELECT repeat(md5(g::text), 3),"
                    " g % 97 FROM generate_series(1, 250000) g")
    st = make_store(volumes=("db-dumps",))
    m = mounts.mount(st, "db-dumps")

    def dump_and_snapshot(day):
        with open(m / "odoo.sql.tmp", "wb") as f:
            p = subprocess.run(["pg_dump", "-h", pg.dir, "-p", str(pg.port), "-U", "postgres",
                                "--format=plain", "odoo"], stdout=f, stderr=subprocess.PIPE,
                               timeout=300)
        assert p.returncode == 0, p.stderr
        os.replace(m / "odoo.sql.tmp", m / "odoo.sql")
        tresor("snapshot", "create", st.path, "db-dumps", "--time", "2026-03-%02dT02:00" % day,
               check=True)
        return os.path.getsize(m / "odoo.sql"), st.stats()["stored_bytes"]

    size1, stored1 = dump_and_snapshot(10)
    # Day 2: 1 % new rows.
    pg.psql("odoo", "INSERT INTO mail_message(body, author) SELECT repeat(md5(g::text), 3),"
                    " 1 FROM generate_series(250001, 252500) g")
    size2, stored2 = dump_and_snapshot(11)
    cost = stored2 - stored1
    gz = len(gzip.compress((m / "odoo.sql").read_bytes(), 6))
    with capsys.disabled():
        print("\npg_dump plain: day 1 %d bytes (stored %d), day 2 %d bytes, stored +%d"
              " (%.1f %% of the dump; gzip'd it is %d bytes, each day)"
              % (size1, stored1, size2, cost, 100.0 * cost / size2, gz))
    assert cost < gz / 3
    assert size1 > 20 * 1024 * 1024
    assert cost < size2 * 0.25, "day 2 cost %d of a %d-byte dump" % (cost, size2)


# --------------------------------------------------------------------------
# the runbook of docs/DAEMON.md, as a drill
# --------------------------------------------------------------------------
DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "DAEMON.md")


def runbook_hook(pg):
    """The hook script of DAEMON.md's recipe, pg_dump run here instead of
    in the db container (the one line that differs)."""
    text = open(DOCS).read()
    start = text.index("```sh\n#!/bin/sh\n# /etc/tresor/dump-odoo.sh")
    body = text[start + len("```sh\n"):text.index("```", start + 6)]
    docker = ("docker compose -f /srv/odoo/docker-compose.yml exec -T db \\\n"
              "        pg_dump -U odoo")
    assert docker in body, "DAEMON.md's hook changed: %s" % body
    return body.replace(docker, "pg_dump -h %s -p %d -U postgres" % (pg.dir, pg.port))


def tree(root):
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != ".snapshots"]
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


DBS = ("prod", "test", "dev")


def test_runbook_drill_restores_one_instant(make_store, mounts, tmp, cluster):
    """DAEMON.md's recipe and restore runbook, step by step: three
    databases and their filestores, the hook of the recipe dumping them
    into db-dumps, a set each day; after the first instant every database,
    every filestore and the dumps themselves change.  On a "new machine"
    (a store recovered from the remote, a fresh PostgreSQL cluster): the
    set of the first instant restored, every member as it was then,
    byte for byte; each dump loads; the filestore copied into the mounted
    volume as the runbook does; every row names a file there with its
    bytes."""
    pg = cluster
    for db in DBS:
        pg.psql("postgres", "CREATE DATABASE %s" % db)
        pg.psql(db, "CREATE TABLE ir_attachment(id serial PRIMARY KEY, name text,"
                    " store_fname text NOT NULL)")
    st = make_store(volumes=("db-dumps", "filestore"))
    remote = tmp / "offsite"
    remote.mkdir()
    hook = tmp / "dump-odoo.sh"
    hook.write_text(runbook_hook(pg))
    os.chmod(hook, 0o755)
    d = Daemon(tmp, st, volumes=("db-dumps", "filestore"), remotes={"offsite": str(remote)})
    with open(d.cfg, "a") as f:
        f.write("[snapshot-set odoo]\nvolumes = db-dumps filestore\n"
                "before-snapshot = %s\nhook-timeout = 2m\n" % hook)

    def attach(fs, db, data, name=None):
        h = hashlib.sha1(data).hexdigest()
        p = fs / db / h[:2]
        p.mkdir(parents=True, exist_ok=True)
        (p / h).write_bytes(data)
        pg.psql(db, "INSERT INTO ir_attachment(name, store_fname) VALUES ('%s', '%s/%s')"
                % (name or "f" + h[:6], h[:2], h))
        return h

    def rows(cl, db):
        return cl.psql(db, "SELECT id, name, store_fname FROM ir_attachment ORDER BY id")

    def slot(day):
        d.set_clock(local_ts(2026, 3, day, 2, 0, 5))
        ok = wait_for(lambda: [j for j, _ in d.history()].count("snapshot") == day - 9 and
                      not any(j["running"] for j in d.status()["jobs"]), 120, 0.2)
        assert ok, d.log_text()[-4000:]
        assert all(ok for _, ok in d.history()), d.log_text()[-4000:]
        return {"db-dumps": tree(d.mnt["db-dumps"]), "filestore": tree(d.mnt["filestore"]),
                "rows": {db: rows(pg, db) for db in DBS}}

    d.set_clock(local_ts(2026, 3, 10, 0, 30))
    d.start()
    try:
        fs = d.mnt["filestore"]
        files = {db: [attach(fs, db, os.urandom(3000 + 211 * i) + db.encode())
                      for i in range(6)] for db in DBS}
        first = slot(10)
        assert sorted(first["db-dumps"]) == ["dev.sql", "prod.sql", "test.sql"]
        for db in DBS:
            assert "dumped %s:" % db in d.log_text()
        # After the instant: every database, filestore and the dumps change.
        for db in DBS:
            gone = files[db][0]
            pg.psql(db, "DELETE FROM ir_attachment WHERE store_fname = '%s/%s'"
                    % (gone[:2], gone))
            os.unlink(fs / db / gone[:2] / gone)
            pg.psql(db, "UPDATE ir_attachment SET name = 'renamed' WHERE id = 2")
            attach(fs, db, b"day 2 " + db.encode())
        (d.mnt["db-dumps"] / "prod.sql").write_text("-- a dump by hand, later\n")
        os.unlink(d.mnt["db-dumps"] / "dev.sql")
        second = slot(11)
        # After the second instant too: the live tree is neither.
        for db in DBS:
            attach(fs, db, b"after both " + db.encode())
        (d.mnt["db-dumps"] / "test.sql").write_text("-- overwritten\n")
    finally:
        assert d.stop() == 0, d.log_text()[-4000:]
    assert first["filestore"] != second["filestore"] and first["rows"] != second["rows"]
    assert first["db-dumps"]["dev.sql"] != second["db-dumps"]["dev.sql"]
    env = dict(os.environ, TRESOR_PASSPHRASE=PASSPHRASE)
    tresor("push", st.path, "offsite", env=env, check=True, timeout=300)

    # The new machine: tresor recover URL /srv/tresor.
    new = tmp / "srv-tresor"
    tresor("recover", remote, new, env=env, check=True, timeout=300)
    # tresor snapshot list /srv/tresor --set odoo: pick one.
    p = tresor("snapshot", "list", new, "--set", "odoo", env=env, check=True)
    assert "2026-03-10" in p.stdout and "2026-03-11" in p.stdout, p.stdout
    assert "db-dumps,filestore" in p.stdout
    for name, want in (("latest", second), ("2026-03-10", first)):
        dest = tmp / ("srv-restore-" + name)
        tresor("restore", new, "--set", "odoo", name, dest, env=env, check=True, timeout=300)
        assert sorted(os.listdir(dest)) == ["db-dumps", "filestore"]
        for v in ("db-dumps", "filestore"):
            got = tree(dest / v)
            assert sorted(got) == sorted(want[v]), (name, v)
            assert got == want[v], "%s: %s differs from the instant" % (name, v)
    # The databases of the first instant, into a fresh cluster (createdb,
    # psql < dump), the filestores copied into the mounted volume (cp -a).
    pg2 = Cluster()
    try:
        fsm = mounts.mount(Store(new, st.passfile), "filestore", mnt=tmp / "mnt-new-filestore")
        for db in DBS:
            pg2.psql("postgres", "CREATE DATABASE %s" % db)
            p = subprocess.run(["psql", "-h", pg2.dir, "-p", str(pg2.port), "-U", "postgres",
                                "-d", db, "-v", "ON_ERROR_STOP=1", "-q", "-f",
                                str(dest / "db-dumps" / ("%s.sql" % db))],
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            assert rows(pg2, db) == first["rows"][db], db
            subprocess.run(["cp", "-a", "%s/%s/." % (dest / "filestore", db),
                            "%s/%s/" % (fsm.path, db)], check=True)
            names = pg2.psql(db, "SELECT store_fname FROM ir_attachment").split()
            assert len(names) == 6 and files[db][0] in " ".join(names)
            for r in names:
                path = fsm.path / db / r
                assert path.exists(), "%s: row names %s, not in the filestore" % (db, r)
                assert hashlib.sha1(path.read_bytes()).hexdigest() == r.split("/")[1]
    finally:
        pg2.stop()


DRILL = """#!/bin/sh
# the restore drill of DAEMON.md: the dump loads, every file it names is there
set -eu
PG="-h {dir} -p {port} -U postgres"
db=drill_$$
psql $PG -d postgres -qc "CREATE DATABASE $db"
trap 'psql $PG -d postgres -qc "DROP DATABASE $db"' EXIT
psql $PG -d $db -v ON_ERROR_STOP=1 -q -f "$TRESOR_RESTORE_DIR/db-dumps/odoo.sql"
n=0
for f in $(psql $PG -d $db -At -c "SELECT store_fname FROM ir_attachment"); do
    p="$TRESOR_RESTORE_DIR/filestore/odoo/$f"
    [ -f "$p" ] || {{ echo "row names $f, not in the filestore"; exit 1; }}
    [ "$(sha1sum < "$p" | cut -c1-40)" = "${{f#*/}}" ] || {{ echo "$f: wrong bytes"; exit 1; }}
    n=$((n+1))
done
echo "$TRESOR_SNAPSHOT: the dump loads, its $n files are there"
"""


def test_daemon_restore_drill(make_store, tmp, cluster):
    """restore-drill: the check job restores the set's latest snapshot into
    a scratch directory and runs the drill there (the dump loaded into a
    scratch database, every file a row names checked).  A set whose dump
    names a file its filestore lacks fails the drill: status, the metrics
    and the check job say so."""
    pg = cluster
    pg.psql("postgres", "CREATE DATABASE odoo")
    pg.psql("odoo", "CREATE TABLE ir_attachment(id serial PRIMARY KEY, name text,"
                    " store_fname text NOT NULL)")
    st = make_store(volumes=("db-dumps", "filestore"))
    dump = tmp / "dump.sh"
    dump.write_text("#!/bin/sh\nset -e\nset -- $TRESOR_MOUNTPOINTS\n"
                    "pg_dump -h %s -p %d -U postgres odoo > \"$1/odoo.sql\"\n" % (pg.dir, pg.port))
    drill = tmp / "drill.sh"
    drill.write_text(DRILL.format(dir=pg.dir, port=pg.port))
    for p in (dump, drill):
        os.chmod(p, 0o755)
    d = Daemon(tmp, st, volumes=("db-dumps", "filestore"))
    with open(d.cfg, "a") as f:
        f.write("[snapshot-set odoo]\nvolumes = db-dumps filestore\nbefore-snapshot = %s\n"
                "restore-drill = %s\n" % (dump, drill))
    d.set_clock(local_ts(2026, 3, 10, 0, 30))
    d.start()
    try:
        fs = d.mnt["filestore"]

        def attach(data):
            h = hashlib.sha1(data).hexdigest()
            (fs / "odoo" / h[:2]).mkdir(parents=True, exist_ok=True)
            (fs / "odoo" / h[:2] / h).write_bytes(data)
            pg.psql("odoo", "INSERT INTO ir_attachment(name, store_fname) VALUES ('x', '%s/%s')"
                    % (h[:2], h))
            return h

        hs = [attach(os.urandom(4000 + i)) for i in range(5)]
        s = d.status()["sets"][0]
        assert s["drill"]["command"] == str(drill) and s["drill"]["last_run"] is None

        def day(n):
            d.set_clock(local_ts(2026, 3, n, 2, 0, 5))
            assert wait_for(lambda: [j for j, _ in d.history()].count("prune") == n - 9, 120, 0.2)
            d.set_clock(local_ts(2026, 3, n, 4, 0, 5))
            assert wait_for(lambda: [j for j, _ in d.history()].count("check") == n - 9 and
                            not any(j["running"] for j in d.status()["jobs"]), 180, 0.2), \
                d.log_text()[-4000:]
            return d.status()

        s = day(10)
        dr = s["sets"][0]["drill"]
        assert dr["last_failed"] is False and dr["runs"] == 1, (dr, d.log_text()[-3000:])
        assert dr["snapshot"] == "2026-03-10" and dr["last_success"] is not None
        assert "2026-03-10: the dump loads, its 5 files are there" in d.log_text()
        assert "restore drill of 2026-03-10 passed" in d.log_text()
        assert s["healthy"] is True, s["problems"]
        m, _ = d.metrics()
        assert 'tresor_set_drill_last_failed{set="odoo"} 0' in m
        assert not any(p.name.startswith("drill-") for p in st.path.iterdir())
        p = tresor("status", d.cfg, env=d.env())
        assert "restore drill of 2026-03-10: passed" in p.stdout, p.stdout
        # A file goes from the filestore while its row stays: the next set
        # is one Odoo cannot be restored from, and the drill says so.
        os.unlink(fs / "odoo" / hs[2][:2] / hs[2])
        s = day(11)
        dr = s["sets"][0]["drill"]
        assert dr["last_failed"] is True and dr["snapshot"] == "2026-03-11", dr
        assert "row names %s/%s, not in the filestore" % (hs[2][:2], hs[2]) in dr["last_error"]
        assert s["healthy"] is False and d.status_proc().returncode == 1
        assert any("set odoo: restore drill of 2026-03-11" in p for p in s["problems"])
        job = {j["name"]: j for j in s["jobs"]}["check"]
        assert job["last_failed"] is True and "restore drill" in job["last_error"]
        m, _ = d.metrics()
        assert 'tresor_set_drill_last_failed{set="odoo"} 1' in m
        assert not any(p.name.startswith("drill-") for p in st.path.iterdir())
        assert pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE"
                                   " 'drill_%'").strip() == "0"
    finally:
        assert d.stop() == 0, d.log_text()[-4000:]
