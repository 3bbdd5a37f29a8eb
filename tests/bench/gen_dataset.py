#!/usr/bin/env python3
"""gen_dataset.py - seeded, deterministic datasets for tresor's benchmark suite.

    gen_dataset.py KIND DEST [--scale S] [--files N] [--seed N]
    gen_dataset.py day2 KIND DIR [--scale S] [--seed N] [--replace]
    gen_dataset.py sizes KIND [--scale S] [--files N]

KIND is one of:
  large      incompressible large files (1x: 4 files of 256 MiB = 1 GiB)
  plans      a building-plans volume: site folders
             objects/OBJ-00001/{floor-plans,photos,archive}/ + metadata.json,
             PDFs/DWGs/photos of 1-20 MB, mostly incompressible with
             text-like parts (1x: 60 sites, ~1 GB)
  filestore  Odoo filestores filestore/{prod,test,dev}/ab/ab12... named by
             the SHA-1 of their bytes, 1 KB to 4 MB; test and dev hold most of
             prod's files (1x: 600 prod files, ~0.85 GB logical, ~0.35 GB unique)
  small      many small files (1x: 20,000 files of ~100 B-16 KB), written as
             a tarball DEST (the untar benchmark) - or a tree with --tree
  tiny       N (--files, default 10,000) tiny files in folders of 1,000, as a
             tarball DEST (snapshot-scaling and metadata runs)

The same arguments always give the same bytes, names, modes and times: every
file's content comes from AES-256-CTR keyed by SHA-256(seed, kind, path, role)
(fast and incompressible), text-like parts from a seeded word list.

`day2 KIND DIR` turns a day-1 tree of `plans` or `filestore` into the next
day's, in place and deterministically:
  plans      ~4 % of the files revised: bytes appended at the end (an
             incremental PDF save), a small insertion in the middle, a full
             rewrite, or a new revision beside the old file (old bytes with a
             small change); metadata.json of touched sites rewritten; ~3 %
             new sites
  filestore  new attachments (prod +3 %, test +1 %), a few removed in dev
By default it modifies files in place (open, append, rewrite: what an
application writing into a mount does).  --replace writes each changed file
to a temporary name and renames it over the old one, which leaves hard links
of the old file untouched (the suite's source trees are hard-link farms).

`sizes KIND` prints the logical bytes and file count the arguments would
make, without writing anything.
"""

import argparse
import hashlib
import io
import json
import math
import os
import random
import sys
import tarfile

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MiB = 1 << 20
MTIME = 1767225600  # 2026-01-01T00:00:00Z: fixed file times
DAY = 86400

# --------------------------------------------------------------------------
# deterministic byte sources
# --------------------------------------------------------------------------
_WORDS = None


def words():
    """A fixed vocabulary of plan/PDF-like tokens (seeded, so stable)."""
    global _WORDS
    if _WORDS is None:
        r = random.Random(20260101)
        base = [b"obj", b"endobj", b"stream", b"endstream", b"/Type", b"/Page",
                b"/Font", b"/Length", b"/Filter", b"BT", b"ET", b"Tf", b"Td",
                b"Tj", b"re", b"f", b"m", b"l", b"S", b"q", b"Q", b"cm",
                b"Grundriss", b"Ansicht", b"Schnitt", b"Kabel", b"Melder",
                b"Kamera", b"Tuer", b"Zentrale", b"EG", b"OG", b"UG"]
        letters = b"abcdefghijklmnopqrstuvwxyz"
        gen = [bytes(r.choice(letters) for _ in range(r.randint(2, 10)))
               for _ in range(700)]
        nums = [b"%d" % r.randint(0, 9999) for _ in range(300)]
        _WORDS = base + gen + nums
    return _WORDS


def key_for(seed, *parts):
    h = hashlib.sha256(b"tresor-bench-v1\0%d" % seed)
    for p in parts:
        h.update(b"\0" + (p if isinstance(p, bytes) else str(p).encode()))
    return h.digest()


class Stream:
    """Deterministic incompressible bytes: AES-256-CTR over zeros."""

    def __init__(self, seed, *parts):
        k = key_for(seed, *parts)
        self.enc = Cipher(algorithms.AES(k), modes.CTR(k[:16])).encryptor()
        self.rng = random.Random(k)

    def noise(self, n):
        return self.enc.update(bytes(n))

    def text(self, n):
        """n bytes of text-like content (compresses ~3-4x with zstd)."""
        w = words()
        out = []
        size = 0
        while size < n:
            chunk = b" ".join(self.rng.choices(w, k=2048)) + b"\n"
            out.append(chunk)
            size += len(chunk)
        return b"".join(out)[:n]


def write_file(path, chunks, mtime=MTIME, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        for c in chunks:
            f.write(c)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def log_uniform(rng, lo, hi):
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# --------------------------------------------------------------------------
# large: incompressible files
# --------------------------------------------------------------------------
def large_plan(scale):
    total = max(int(1024 * MiB * scale), MiB)
    size = min(256 * MiB, total)
    n = max(1, total // size)
    return [("large/big-%03d.bin" % i, size) for i in range(n)]


def gen_large(dest, seed, scale):
    for rel, size in large_plan(scale):
        s = Stream(seed, "large", rel)
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 4 * MiB)
                f.write(s.noise(n))
                left -= n
        os.utime(path, (MTIME, MTIME))


# --------------------------------------------------------------------------
# plans: building-plans volume
# --------------------------------------------------------------------------
def plan_file_bytes(seed, rel, size, kind, salt=""):
    """Content of one plan file: a header, then incompressible streams
    (images, embedded scans) with text-like parts between them (PDF page
    contents, DWG tables); photos are almost all noise."""
    s = Stream(seed, "plans", rel, salt)
    if kind == "photo":
        head = b"\xff\xd8\xff\xe1" + s.text(2000)   # JPEG + EXIF-ish text
        return [head, s.noise(max(size - len(head), 0))]
    head = b"%PDF-1.7\n" if kind == "pdf" else b"AC1032\0\0"
    out = [head]
    left = size - len(head)
    text_share = s.rng.uniform(0.05, 0.25)
    while left > 0:
        n = min(left, s.rng.randint(256 << 10, 2 << 20))
        t = min(int(n * text_share), n)
        out.append(s.text(t))
        out.append(s.noise(n - t))
        left -= n
    if kind == "pdf":
        out.append(b"\ntrailer\n<< /Size 42 >>\nstartxref\n0\n%%EOF\n")
    return out


def site_files(seed, site):
    """[(rel, size, kind)] of one site folder (deterministic per site)."""
    r = random.Random(key_for(seed, "site", site))
    base = "objects/OBJ-%05d" % site
    files = []
    for i in range(r.choice([1, 1, 2, 2, 3])):
        kind = "pdf" if r.random() < 0.6 else "dwg"
        files.append(("%s/floor-plans/plan-%d.%s" % (base, i + 1, kind),
                      log_uniform(r, 1 * MiB, 20 * MiB), kind))
    for i in range(r.choice([0, 1, 1, 2])):
        files.append(("%s/photos/IMG_%04d.jpg" % (base, r.randint(1, 9999)),
                      log_uniform(r, 1 * MiB, 8 * MiB), "photo"))
    if r.random() < 0.3:
        files.append(("%s/archive/plan-0.pdf" % base, log_uniform(r, 1 * MiB, 6 * MiB), "pdf"))
    return files


def metadata_json(site, revision=0):
    return json.dumps({"object": "OBJ-%05d" % site, "customer": "Kunde %d" % (site * 7919 % 10007),
                       "address": "Strasse %d, %05d Stadt" % (site % 200, 10000 + site),
                       "revision": revision, "systems": ["BMA", "EMA", "Video"][: 1 + site % 3]},
                      indent=2).encode() + b"\n"


def plans_sites(scale):
    return max(2, int(round(60 * scale)))


def gen_site(dest, seed, site, mtime=MTIME):
    for rel, size, kind in site_files(seed, site):
        write_file(os.path.join(dest, rel), plan_file_bytes(seed, rel, size, kind), mtime)
    write_file(os.path.join(dest, "objects/OBJ-%05d/metadata.json" % site),
               [metadata_json(site)], mtime)


def gen_plans(dest, seed, scale):
    for site in range(1, plans_sites(scale) + 1):
        gen_site(dest, seed, site)


def replace_or_inplace(path, data_fn, replace, mtime):
    """Rewrite path with data_fn(old_bytes) -> list of chunks."""
    with open(path, "rb") as f:
        old = f.read()
    chunks = data_fn(old)
    if replace:
        tmp = path + ".day2-tmp"
        write_file(tmp, chunks, mtime)
        os.rename(tmp, path)
    else:
        with open(path, "r+b") as f:
            f.truncate(0)
            for c in chunks:
                f.write(c)
        os.utime(path, (mtime, mtime))


def day2_plans(root, seed, scale, replace):
    r = random.Random(key_for(seed, "plans-day2"))
    nsites = plans_sites(scale)
    mtime = MTIME + DAY
    all_files = []
    for site in range(1, nsites + 1):
        all_files += [(site, rel, kind) for rel, _, kind in site_files(seed, site)]
    k = max(1, int(round(len(all_files) * 0.04)))
    touched = set()
    for site, rel, kind in r.sample(all_files, k):
        path = os.path.join(root, rel)
        what = r.choice(["append", "append", "insert", "rewrite", "revision"])
        s = Stream(seed, "plans-day2", rel)
        if what == "append":
            # an incremental PDF save: new objects, a new xref and trailer
            add = [b"\n% incremental update\n", s.text(r.randint(2, 40) << 10),
                   s.noise(r.randint(16, 400) << 10), b"\nstartxref\n1\n%%EOF\n"]
            if replace:
                replace_or_inplace(path, lambda old: [old] + add, True, mtime)
            else:
                with open(path, "ab") as f:
                    for c in add:
                        f.write(c)
                os.utime(path, (mtime, mtime))
        elif what == "insert":
            ins = s.text(r.randint(100, 4096))

            def edit(old, ins=ins, at=r.random()):
                p = int(len(old) * (0.3 + 0.4 * at))
                return [old[:p], ins, old[p:]]
            replace_or_inplace(path, edit, replace, mtime)
        elif what == "rewrite":
            size = os.path.getsize(path)
            replace_or_inplace(path, lambda old: plan_file_bytes(seed, rel, size, kind, "rewrite"),
                               replace, mtime)
        else:
            # a new revision beside the old one: mostly the same bytes
            base, ext = os.path.splitext(rel)
            with open(path, "rb") as f:
                old = f.read()
            p = int(len(old) * r.uniform(0.2, 0.8))
            write_file(os.path.join(root, base + "-rev2" + ext),
                       [old[:p], s.text(r.randint(200, 3000)), old[p:]], mtime)
        touched.add(site)
    for site in sorted(touched):
        path = os.path.join(root, "objects/OBJ-%05d/metadata.json" % site)
        replace_or_inplace(path, lambda old, site=site: [metadata_json(site, 1)], replace, mtime)
    for site in range(nsites + 1, nsites + 1 + max(1, int(round(nsites * 0.03)))):
        gen_site(root, seed, site, mtime)


# --------------------------------------------------------------------------
# filestore: Odoo attachments of prod, test and dev
# --------------------------------------------------------------------------
def attachment(seed, tag, i):
    """(bytes) of attachment i of a pool: 30 % text-like (XML, logs,
    invoices as text), the rest incompressible (PDFs, images)."""
    s = Stream(seed, "filestore", tag, i)
    size = log_uniform(s.rng, 1024, 4 * MiB)
    if s.rng.random() < 0.3:
        return s.text(size)
    head = s.text(min(size, 512))
    return head + s.noise(size - len(head))


def store_attachment(root, db, data, mtime):
    h = hashlib.sha1(data).hexdigest()
    write_file(os.path.join(root, "filestore", db, h[:2], h), [data], mtime, 0o640)


def filestore_plan(scale):
    nprod = max(10, int(round(600 * scale)))
    return nprod


def filestore_members(seed, nprod):
    """Which prod attachments test and dev hold (most of them) and how
    many of their own they have."""
    r = random.Random(key_for(seed, "filestore-members"))
    test = [i for i in range(nprod) if r.random() < 0.9]
    dev = [i for i in range(nprod) if r.random() < 0.8]
    return test, dev, max(1, nprod * 3 // 100), max(1, nprod * 5 // 100)


def gen_filestore(dest, seed, scale):
    nprod = filestore_plan(scale)
    test, dev, ntest_own, ndev_own = filestore_members(seed, nprod)
    for i in range(nprod):
        store_attachment(dest, "prod", attachment(seed, "prod", i), MTIME)
    for i in test:
        store_attachment(dest, "test", attachment(seed, "prod", i), MTIME)
    for i in range(ntest_own):
        store_attachment(dest, "test", attachment(seed, "test", i), MTIME)
    for i in dev:
        store_attachment(dest, "dev", attachment(seed, "prod", i), MTIME)
    for i in range(ndev_own):
        store_attachment(dest, "dev", attachment(seed, "dev", i), MTIME)


def day2_filestore(root, seed, scale, replace):
    del replace   # nothing is modified in place: Odoo only adds and removes
    nprod = filestore_plan(scale)
    mtime = MTIME + DAY
    for i in range(max(1, nprod * 3 // 100)):
        store_attachment(root, "prod", attachment(seed, "prod-day2", i), mtime)
    for i in range(max(1, nprod // 100)):
        store_attachment(root, "test", attachment(seed, "test-day2", i), mtime)
    r = random.Random(key_for(seed, "filestore-day2-rm"))
    _, dev, _, _ = filestore_members(seed, nprod)
    for i in r.sample(dev, max(1, len(dev) * 2 // 100)):
        h = hashlib.sha1(attachment(seed, "prod", i)).hexdigest()
        p = os.path.join(root, "filestore", "dev", h[:2], h)
        if os.path.exists(p):
            os.unlink(p)


# --------------------------------------------------------------------------
# small and tiny: metadata-heavy trees (as tarballs)
# --------------------------------------------------------------------------
def small_entries(seed, nfiles):
    r = random.Random(key_for(seed, "small"))
    s = Stream(seed, "small")
    for i in range(nfiles):
        size = min(int(r.expovariate(1 / 4000)) + 100, 16384)
        data = s.noise(size) if i % 3 == 0 else s.text(size)
        rel = "objects/OBJ-%05d/%s/file-%06d.%s" % (
            i // 30, "photos" if i % 2 else "floor-plans", i, "jpg" if i % 3 == 0 else "txt")
        yield rel, data, MTIME + i


def tiny_entries(nfiles):
    for i in range(nfiles):
        data = b"%d\n" % i if i % 2 else b""
        yield "objects/OBJ-%05d/f-%07d" % (i // 1000, i), data, MTIME + i


def write_tarball(dest, entries):
    """A GNU tarball with explicit directory entries (mode 755)."""
    tmp = dest + ".part"
    seen = set()
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tf:
        for rel, data, mtime in entries:
            d = os.path.dirname(rel)
            missing = []
            while d and d not in seen:
                missing.append(d)
                seen.add(d)
                d = os.path.dirname(d)
            for d in reversed(missing):
                ti = tarfile.TarInfo(d)
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                ti.mtime = MTIME
                tf.addfile(ti)
            ti = tarfile.TarInfo(rel)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = mtime
            tf.addfile(ti, io.BytesIO(data))
    os.rename(tmp, dest)


def small_count(scale, files):
    return files if files else max(100, int(round(20000 * scale)))


# --------------------------------------------------------------------------
def sizes(kind, seed, scale, files):
    """(files, logical bytes) without writing (plans/large exact; the others
    from their generators' size draws)."""
    if kind == "large":
        p = large_plan(scale)
        return len(p), sum(s for _, s in p)
    if kind == "plans":
        n = b = 0
        for site in range(1, plans_sites(scale) + 1):
            fs = site_files(seed, site)
            n += len(fs) + 1
            b += sum(s for _, s, _ in fs) + len(metadata_json(site))
        return n, b
    if kind == "filestore":
        nprod = filestore_plan(scale)
        test, dev, a, b_ = filestore_members(seed, nprod)
        sz = [log_uniform(Stream(seed, "filestore", "prod", i).rng, 1024, 4 * MiB)
              for i in range(nprod)]
        total = sum(sz) + sum(sz[i] for i in test) + sum(sz[i] for i in dev)
        return nprod + len(test) + len(dev) + a + b_, total
    if kind == "small":
        n = small_count(scale, files)
        return n, n * 4100
    if kind == "tiny":
        return files, files
    raise SystemExit("gen_dataset: unknown kind %s" % kind)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind")
    ap.add_argument("dest", nargs="?")
    ap.add_argument("dir", nargs="?")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--files", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--replace", action="store_true")
    ap.add_argument("--tree", action="store_true", help="small: write a tree, not a tarball")
    a = ap.parse_args()
    if a.kind == "sizes":
        n, b = sizes(a.dest, a.seed, a.scale, a.files or (10000 if a.dest == "tiny" else 0))
        print(json.dumps({"files": n, "bytes": b}))
        return
    if a.kind == "day2":
        if not a.dir:
            ap.error("day2 KIND DIR")
        fn = {"plans": day2_plans, "filestore": day2_filestore}.get(a.dest)
        if fn is None:
            ap.error("day2 exists for plans and filestore only")
        fn(a.dir, a.seed, a.scale, a.replace)
        return
    if not a.dest:
        ap.error("DEST is required")
    if a.kind == "large":
        gen_large(a.dest, a.seed, a.scale)
    elif a.kind == "plans":
        gen_plans(a.dest, a.seed, a.scale)
    elif a.kind == "filestore":
        gen_filestore(a.dest, a.seed, a.scale)
    elif a.kind == "small":
        ents = small_entries(a.seed, small_count(a.scale, a.files))
        if a.tree:
            for rel, data, mtime in ents:
                write_file(os.path.join(a.dest, rel), [data], mtime)
        else:
            write_tarball(a.dest, ents)
    elif a.kind == "tiny":
        write_tarball(a.dest, tiny_entries(a.files or 10000))
    else:
        ap.error("unknown kind %s" % a.kind)


if __name__ == "__main__":
    sys.exit(main())
