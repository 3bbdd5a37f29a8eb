"""Snapshot sets through a remote (issue 17): what `recover` makes of the
metadata a store of index format 2 pushed (snapshot.set_name, .note), and
what it makes of a store of a format newer than it knows.

- A set snapshot (marked with a note) pushed in the first delta, a pin,
  a second set and a set prune in later deltas: `recover` (full and lazy)
  gives a store whose `snapshot list --set` is the source's, member by
  member, and `restore --set` of the recovered store brings back every
  member as of the set's instant.
- A delta written by a store of format 3 (simulated: the test opens the
  sealed metadata object with the passphrase, as the code does, makes it a
  newer store's delta - meta.format_version 3 and one more snapshot
  column - and seals it again under the same number and header): recover
  and restore --remote refuse it in one line naming the remote, the
  format and what to do, and install nothing.

Local directory remotes; real mounts.
"""

import hashlib
import hmac
import json
import os
import struct
import subprocess

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import PASSPHRASE, tresor
from test_snapshots import mount, tenv


def penv(**extra):
    return tenv(TRESOR_PASSPHRASE=PASSPHRASE, **extra)


def set_list(store_path, name="odoo"):
    p = tresor("snapshot", "list", store_path, "--set", name, "--json", env=tenv(), check=True)
    return json.loads(p.stdout)


def vol_list(store_path, vol):
    p = tresor("snapshot", "list", store_path, vol, "--json", env=tenv(), check=True)
    return json.loads(p.stdout)


def tree(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


# --------------------------------------------------------------------------
# a sealed metadata object, opened and sealed again (docs/FORMAT.md §4, §15)
# --------------------------------------------------------------------------
def meta_key(store_path):
    """The `meta` sub-key from the store's key file and the passphrase."""
    kf = (store_path / "tresor.key").read_bytes()
    log2n, r, p = struct.unpack("<III", kf[16:28])
    w = hashlib.scrypt(PASSPHRASE.encode(), salt=kf[28:60], n=1 << log2n, r=r, p=p,
                       maxmem=1 << 30, dklen=32)
    master = AESGCM(w).decrypt(kf[60:72], kf[72:152], kf[:60])
    prk = hmac.new(b"\0" * 32, master, hashlib.sha256).digest()
    return hmac.new(prk, b"tresor meta v1\x01", hashlib.sha256).digest()


def zstd(data, decompress=False, tmpdir=None):
    src = tmpdir / "zin"
    src.write_bytes(data)
    args = ["zstd", "-q", "-f", "-c"] + (["-d"] if decompress else ["-3"]) + [str(src)]
    return subprocess.run(args, capture_output=True, check=True).stdout


def read_values(b, off, n):
    vals = []
    for _ in range(n):
        t = b[off]
        off += 1
        if t == 1:
            vals.append((1, struct.unpack_from("<q", b, off)[0]))
            off += 8
        elif t in (2, 3):
            ln = struct.unpack_from("<I", b, off)[0]
            vals.append((t, bytes(b[off + 4:off + 4 + ln])))
            off += 4 + ln
        else:
            vals.append((4, None))
    return vals, off


def write_values(vals):
    out = b""
    for t, v in vals:
        out += bytes([t])
        if t == 1:
            out += struct.pack("<q", v)
        elif t in (2, 3):
            out += struct.pack("<I", len(v)) + v
    return out


def parse_delta(d):
    assert d[:8] == b"TRSDELT1"
    frm, to, count = struct.unpack_from("<QQI", d, 8)
    off, recs = 28, []
    for _ in range(count):
        tbl, op, nv = d[off], d[off + 1], d[off + 2]
        vals, off = read_values(d, off + 3, nv)
        recs.append([tbl, op, vals])
    assert off == len(d)
    return frm, to, recs


def build_delta(frm, to, recs):
    out = b"TRSDELT1" + struct.pack("<QQI", frm, to, len(recs))
    for tbl, op, vals in recs:
        out += bytes([tbl, op, len(vals)]) + write_values(vals)
    return out


def as_newer_store(store_path, remote, n, tmpdir, fmt=3):
    """Make meta/n what a store of format `fmt` would have written: its
    meta.format_version row says fmt (added if the delta has none), and
    every snapshot row carries one more column.  Sealed again under the
    same number and header, so it authenticates as before."""
    key = meta_key(store_path)
    path = remote / "meta" / ("%016x" % n)
    obj = path.read_bytes()
    assert obj[:8] in (b"TRSMETA2", b"TRSMETA3")
    hl = struct.unpack_from("<I", obj, 8)[0]
    hdr = obj[12:12 + hl]
    aad = (b"tresor meta v" + obj[7:8] + struct.pack("<Q", n)
           + hashlib.sha256(hdr).digest())
    body = obj[12 + hl:]
    z = AESGCM(key).decrypt(body[:12], body[12:], aad)
    frm, to, recs = parse_delta(zstd(z, decompress=True, tmpdir=tmpdir))
    seen = False
    for r in recs:
        if r[0] == 0 and r[1] == 1 and r[2][0] == (2, b"format_version"):
            r[2][1] = (1, fmt)
            seen = True
        if r[0] == 2 and r[1] == 1:      # snapshot upsert
            r[2].append((2, b"a column of format %d" % fmt))
    if not seen:
        recs.insert(0, [0, 1, [(2, b"format_version"), (1, fmt)]])
    z = zstd(build_delta(frm, to, recs), tmpdir=tmpdir)
    nonce = os.urandom(12)
    path.write_bytes(obj[:12 + hl] + nonce + AESGCM(key).encrypt(nonce, z, aad))


# --------------------------------------------------------------------------
# a set through push and recover
# --------------------------------------------------------------------------
def pushed_sets(make_store, mounts, tmp):
    """db-dumps and filestore as set odoo, plans alone; three set snapshots
    over three pushes (the first marked, then a pin, then a set prune),
    the files each instant held.  Returns (store, remote, {name: trees})."""
    st = make_store(volumes=("db-dumps", "filestore", "plans"))
    remote = tmp / "offsite"
    remote.mkdir()
    tresor("remote", "add", st.path, "offsite", remote, env=tenv(), check=True)
    mdb = mount(mounts, st, "db-dumps")
    mfs = mount(mounts, st, "filestore")
    (mfs / "prod" / "ab").mkdir(parents=True)
    instants = {}

    def take(when, note=None):
        extra = ["--note", note] if note else []
        p = tresor("snapshot", "create", st.path, "--set", "odoo", "db-dumps", "filestore",
                   "--time", when, "--scheduled", *extra, env=tenv(), check=True)
        name = p.stdout.strip()
        instants[name] = {"db-dumps": tree(mdb.path), "filestore": tree(mfs.path)}
        return name

    (mdb / "prod.sql").write_bytes(b"COPY ir_attachment FROM stdin;\n1\tab/ab01\n\\.\n")
    (mfs / "prod" / "ab" / "ab01").write_bytes(os.urandom(70000))
    first = take("2026-03-10T02:00", note="before-snapshot hook exit 3: pg_dump: refused")
    tresor("push", st.path, "offsite", env=penv(), check=True, timeout=300)
    # After the first instant: the dump grows, a file goes, one comes.
    (mdb / "prod.sql").write_bytes(b"COPY ir_attachment FROM stdin;\n2\tab/ab02\n\\.\n")
    os.unlink(mfs / "prod" / "ab" / "ab01")
    (mfs / "prod" / "ab" / "ab02").write_bytes(os.urandom(50000))
    second = take("2026-03-11T02:00")
    tresor("snapshot", "pin", st.path, "--set", "odoo", first, env=tenv(), check=True)
    tresor("push", st.path, "offsite", env=penv(), check=True, timeout=300)
    (mdb / "prod.sql").write_bytes(b"-- day three\n")
    third = take("2026-03-12T02:00")
    # The set's prune: keep the last one (and the pinned first).
    st.run("prune", st.path, "--set", "odoo", "--keep-last", "1", env=tenv(), check=True)
    del instants[second]
    (mdb / "prod.sql").write_bytes(b"-- after every instant\n")
    tresor("push", st.path, "offsite", env=penv(), check=True, timeout=300)
    assert [s["name"] for s in set_list(st.path)] == [first, third]
    return st, remote, instants


def test_set_through_push_and_recover(make_store, mounts, tmp):
    st, remote, instants = pushed_sets(make_store, mounts, tmp)
    first, third = sorted(instants)
    want = set_list(st.path)
    assert want[0]["note"] == "before-snapshot hook exit 3: pg_dump: refused"
    assert want[0]["pinned"] is True and want[1]["pinned"] is False
    for how in ("full", "lazy"):
        new = tmp / ("recovered-" + how)
        args = ["--lazy"] if how == "lazy" else []
        tresor("recover", remote, new, *args, env=penv(), check=True, timeout=300)
        # The set, its members, its mark and its pin: as the source has them.
        got = set_list(new)
        assert got == want, (how, got, want)
        for v in ("db-dumps", "filestore"):
            mine = [(s["name"], s.get("note"), s["pinned"]) for s in vol_list(st.path, v)]
            theirs = [(s["name"], s.get("note"), s["pinned"]) for s in vol_list(new, v)]
            assert theirs == mine, (how, v)
        # plans was in no set: nothing of the set there.
        assert vol_list(new, "plans") == []
        # The recovered store restores every member at each instant.
        for name, trees in instants.items():
            dest = tmp / ("restore-%s-%s" % (how, name))
            p = tresor("restore", new, "--set", "odoo", name, dest, env=penv(), check=True,
                       timeout=300)
            assert p.stdout.count("restored ") == 2, p.stdout
            for v in ("db-dumps", "filestore"):
                assert tree(dest / v) == trees[v], (how, name, v)
        # Its index is of this format, and a later set continues there.
        p = tresor("snapshot", "create", new, "--set", "odoo", "--time", "2026-03-13T02:00",
                   env=tenv(), check=True)
        assert p.stdout.strip() == "2026-03-13"
        assert [s["name"] for s in set_list(new)] == [first, third, "2026-03-13"]
    # No store at all: restore --remote --set of each instant (latest: the
    # third), with only the packs the members need fetched.
    for name, arg in ((first, first), (third, "latest")):
        dest = tmp / ("remote-restore-" + name)
        p = tresor("restore", "--remote", remote, "--set", "odoo", arg, dest,
                   env=penv(TRESOR_CACHE_DIR=str(tmp / "cache")), check=True, timeout=300)
        assert p.stdout.count("restored ") == 2, p.stdout
        for v in ("db-dumps", "filestore"):
            assert tree(dest / v) == instants[name][v], (name, v)
    p = tresor("restore", "--remote", remote, "--set", "odoo", "2026-01-01", tmp / "none",
               env=penv(TRESOR_CACHE_DIR=str(tmp / "cache")), timeout=300)
    assert p.returncode == 1 and "has no snapshot '2026-01-01'" in p.stderr, p.stderr
    assert st.check().returncode == 0


def test_recover_refuses_a_newer_store_format(make_store, mounts, tmp):
    """Format 3's delta: refused as newer, in one line, nothing installed;
    the repository itself is untouched (the same recover works once the
    object is the format-2 one again)."""
    st = make_store(volumes=("db-dumps", "filestore"))
    remote = tmp / "offsite"
    remote.mkdir()
    tresor("remote", "add", st.path, "offsite", remote, env=tenv(), check=True)
    m = mount(mounts, st, "db-dumps")
    (m / "prod.sql").write_text("rows\n")
    tresor("snapshot", "create", st.path, "--set", "odoo", "db-dumps", "filestore",
           "--time", "2026-03-10T02:00", env=tenv(), check=True)
    # No image of the index (a replay of the deltas): the deltas are what
    # this test makes newer.
    tresor("push", st.path, "offsite", "--image-every", "0", env=penv(), check=True,
           timeout=300)
    (m / "prod.sql").write_text("rows 2\n")
    tresor("snapshot", "create", st.path, "--set", "odoo", "--time", "2026-03-11T02:00",
           env=tenv(), check=True)
    tresor("push", st.path, "offsite", "--image-every", "0", env=penv(), check=True,
           timeout=300)
    good = {n: (remote / "meta" / ("%016x" % n)).read_bytes() for n in (1, 2)}

    # The store was upgraded to format 3 after its first push: delta 2 says so.
    for n, newer in ((2, "meta/0000000000000002"), (1, "meta/0000000000000001")):
        for k, v in good.items():
            (remote / "meta" / ("%016x" % k)).write_bytes(v)
        as_newer_store(st.path, remote, n, tmp)
        new = tmp / "recovered"
        p = tresor("recover", remote, new, env=penv(), timeout=300)
        assert p.returncode == 1, (p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1, p.stderr
        line = lines[0]
        assert line.startswith("tresor: %s: " % remote), line
        assert "store format 3 (%s)" % newer in line and "up to 2" in line, line
        assert "upgrade tresor" in line and "nothing was installed at %s" % new in line, line
        assert "damaged" not in line
        assert not new.exists()
        # restore --remote reads the metadata the same way.
        p = tresor("restore", "--remote", remote, "db-dumps", "latest", "/", tmp / "r",
                   env=penv(TRESOR_CACHE_DIR=str(tmp / "cache")), timeout=300)
        assert p.returncode == 1 and "store format 3" in p.stderr and \
            "upgrade tresor" in p.stderr, p.stderr
        assert not (tmp / "r").exists()

    # The objects as the format-2 store wrote them: recovered, set and all.
    for k, v in good.items():
        (remote / "meta" / ("%016x" % k)).write_bytes(v)
    new = tmp / "recovered"
    tresor("recover", remote, new, env=penv(), check=True, timeout=300)
    assert [s["name"] for s in set_list(new)] == ["2026-03-10", "2026-03-11"]
    assert set_list(new) == set_list(st.path)
