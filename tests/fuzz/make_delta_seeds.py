"""Write seed deltas for fuzz_delta from an index.db (docs/FORMAT.md §15):
a full image of every replicated table, an incremental delta with upserts
and deletions, and an empty one.  Called by make_corpus.sh.

    python3 make_delta_seeds.py INDEX.DB OUTDIR
"""
import os
import sqlite3
import struct
import sys

TABLES = (("meta", ("key",)), ("volume", ("id",)), ("snapshot", ("id",)),
          ("inode", ("vol", "ino", "birth")), ("dentry", ("vol", "parent", "name", "birth")),
          ("extent", ("vol", "ino", "off", "birth")), ("xattr", ("vol", "ino", "name", "birth")),
          ("chunk", ("id",)), ("pack", ("id",)), ("orphan", ("vol", "ino")))
FULL = 2**64 - 1


def value(v):
    if v is None:
        return b"\4"
    if isinstance(v, int):
        return b"\1" + struct.pack("<q", v)
    if isinstance(v, str):
        b = v.encode()
        return b"\2" + struct.pack("<I", len(b)) + b
    return b"\3" + struct.pack("<I", len(v)) + bytes(v)


def delta(frm, to, records):
    return b"TRSDELT1" + struct.pack("<QQI", frm, to, len(records)) + b"".join(records)


def main(db, out):
    os.makedirs(out, exist_ok=True)
    c = sqlite3.connect(db)
    full, upserts, deletes = [], [], []
    for t, (name, keys) in enumerate(TABLES):
        cols = [r[1] for r in c.execute("PRAGMA table_info(%s)" % name)]
        for row in c.execute("SELECT * FROM %s" % name):
            rec = bytes([t, 1, len(row)]) + b"".join(value(v) for v in row)
            full.append(rec)
            if len(upserts) < 12:
                upserts.append(rec)
            if len(deletes) < 6 and name != "meta":
                kv = [row[cols.index(k)] for k in keys]
                deletes.append(bytes([t, 2, len(kv)]) + b"".join(value(v) for v in kv))
    for fname, data in (("full", delta(FULL, 40, full)), ("incremental", delta(3, 9, upserts + deletes)),
                        ("empty", delta(9, 9, [])), ("legacy-full-from-0", delta(0, 40, full))):
        with open(os.path.join(out, fname), "wb") as f:
            f.write(data[:65536])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
