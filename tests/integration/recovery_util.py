"""Helpers shared by the disaster-recovery tests (issue 5):
test_recover_lazy, test_heal, test_check, test_hostile_remote.

Servers, remotes and the tree scanner come from test_push_recover (its
fixtures are imported by the test modules, not copied); this module adds
what those tests need on top: a store whose files sit in known, separate
packs, which packs hold a file, and bit flips.
"""

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, base_env, tresor
from test_push_recover import blob  # noqa: F401  (re-exported for the tests)

ALIVE = (1 << 63) - 1
MiB = 1 << 20


def env_with(remote=None, **extra):
    env = dict(remote.env) if remote is not None else base_env()
    env.update({k: str(v) for k, v in extra.items()})
    return env


def fill_store(store, mounts, files, volume="vol", snapshot_times=()):
    """Write files ({relpath: bytes}) into volume, each in its own mount
    session so each lands in its own pack; then take snapshots at the
    given ISO times.  Returns {relpath: bytes}."""
    for rel, data in files.items():
        m = mounts.mount(store, volume)
        p = Path(m.path) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        m.close()
    for t in snapshot_times:
        store.run("snapshot", "create", store.path, volume, "--time", t, "--scheduled",
                  check=True)
    return files


def db(store_path):
    return sqlite3.connect("file:%s?mode=ro" % (Path(store_path) / "index.db"), uri=True)


def lookup_ino(store_path, rel, volume="vol"):
    con = db(store_path)
    try:
        vol = con.execute("SELECT id FROM volume WHERE name = ?", (volume,)).fetchone()[0]
        ino = 1
        for part in [p for p in rel.split("/") if p]:
            row = con.execute("SELECT ino FROM dentry WHERE vol = ? AND parent = ? AND name = ?"
                              " AND death = ?", (vol, ino, part, ALIVE)).fetchone()
            assert row, "no live entry %r in %s" % (rel, store_path)
            ino = row[0]
        return vol, ino
    finally:
        con.close()


def packs_of_file(store_path, rel, volume="vol"):
    """Hex names of the packs that hold rel's live data."""
    vol, ino = lookup_ino(store_path, rel, volume)
    con = db(store_path)
    try:
        rows = con.execute("SELECT DISTINCT hex(p.name) FROM extent e JOIN chunk c ON c.id = e.chunk"
                           " JOIN pack p ON p.id = c.pack WHERE e.vol = ? AND e.ino = ?"
                           " AND e.death = ?", (vol, ino, ALIVE)).fetchall()
        return {r[0].lower() for r in rows}
    finally:
        con.close()


def all_packs(store_path):
    con = db(store_path)
    try:
        return {r[0].lower() for r in con.execute("SELECT hex(name) FROM pack WHERE state = 1")}
    finally:
        con.close()


def local_packs(store_path):
    """Hex names of the pack files present in the store (no temp files)."""
    d = Path(store_path) / "packs"
    return {p.name for p in d.glob("*/*") if p.is_file() and len(p.name) == 32}


def pack_path(store_path, name):
    return Path(store_path) / "packs" / name[:2] / name


def remote_pack_path(remote_dir, name):
    return Path(remote_dir) / "data" / name[:2] / name


def flip(path, offset, n=4):
    """Invert n bytes at offset of the file (bit rot)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(n)
        f.seek(offset)
        f.write(bytes(x ^ 0xFF for x in b))


def first_record_offset(store_path, name):
    con = db(store_path)
    try:
        return con.execute("SELECT MIN(c.off) FROM chunk c JOIN pack p ON p.id = c.pack"
                           " WHERE hex(p.name) = ?", (name.upper(),)).fetchone()[0]
    finally:
        con.close()


def read_errno(path):
    """Read a whole file: (bytes, None) or (None, errno)."""
    try:
        with open(path, "rb") as f:
            return f.read(), None
    except OSError as exc:
        return None, exc.errno


def tresor_pw(*args, env=None, timeout=300):
    e = dict(env) if env is not None else base_env()
    e["TRESOR_PASSPHRASE"] = PASSPHRASE
    return tresor(*args, env=e, timeout=timeout)


def old_tresor(commit, what, env_var):
    """A tresor of an older repository version: $env_var if set, else
    built once from commit of this repository's history into
    tests/.work/ (skipped in a shallow clone that lacks it)."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    repo = Path(__file__).resolve().parents[2]
    top = repo / "tests" / ".work" / ("%s-%s" % (what, commit))
    exe = top / "build" / "tresor"
    if exe.exists():
        return str(exe)
    have = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", commit + "^{commit}"],
                          stdin=subprocess.DEVNULL, capture_output=True)
    if have.returncode != 0:
        pytest.skip("commit %s is not in this clone's history (a shallow clone)" % commit)
    shutil.rmtree(top, ignore_errors=True)
    (top / "src").mkdir(parents=True)
    for cmd in (["bash", "-c", "git -C %s archive %s | tar -x -C %s" % (repo, commit, top / "src")],
                ["meson", "setup", str(top / "build"), str(top / "src"),
                 "--buildtype=debugoptimized"],
                ["ninja", "-C", str(top / "build"), "tresor"]):
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=1800)
        assert r.returncode == 0, "building the %s tresor failed: %s\n%s" % (
            what, cmd, r.stdout[-2000:] + r.stderr[-2000:])
    return str(exe)
