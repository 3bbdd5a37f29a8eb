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

from conftest import PASSPHRASE, tresor
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
