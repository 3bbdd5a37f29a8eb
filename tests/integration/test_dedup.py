"""Deduplication across volumes and inside files, and compression."""

import os
import random
import threading

MiB = 1024 * 1024


def write_synced(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def make_files(seed, total, sizes=(256 * 1024, 3 * MiB)):
    rng = random.Random(seed)
    out = {}
    left = total
    i = 0
    while left > 0:
        n = min(left, rng.randint(*sizes))
        out["site-%02d/file-%03d.bin" % (i % 4, i)] = rng.randbytes(n)
        left -= n
        i += 1
    return out


def vol_stats(s, name):
    for v in s["volumes"]:
        if v["name"] == name:
            return v
    raise AssertionError("volume %s missing from stats: %r" % (name, s["volumes"]))


def test_same_data_in_two_mounted_volumes(make_store, mounts):
    """Both volumes mounted at once (two daemons); the same 20 MB copied into
    each.  Stats are read with both unmounted, so they are settled."""
    store = make_store(volumes=("a", "b"))
    files = make_files(1, 20 * MiB)
    total = sum(len(d) for d in files.values())
    s0 = store.stats()

    ma = mounts.mount(store, "a")
    mb = mounts.mount(store, "b")
    for rel, data in files.items():
        write_synced(os.path.join(ma.path, rel), data)
    mb.close()
    ma.close()
    s1 = store.stats()
    grow1 = s1["stored_bytes"] - s0["stored_bytes"]
    assert grow1 >= 0.9 * total, "20 MB of random data grew stored_bytes only by %d" % grow1

    ma = mounts.mount(store, "a")
    mb = mounts.mount(store, "b")
    for rel, data in files.items():
        write_synced(os.path.join(mb.path, rel), data)
    for rel, data in files.items():
        with open(os.path.join(mb.path, rel), "rb") as f:
            assert f.read() == data, rel
        with open(os.path.join(ma.path, rel), "rb") as f:
            assert f.read() == data, rel
    mb.close()
    ma.close()
    s2 = store.stats()
    grow2 = s2["stored_bytes"] - s1["stored_bytes"]
    assert grow2 < 0.05 * total, \
        "second copy of %d bytes grew stored_bytes by %d (%.1f%%)" % (total, grow2, 100.0 * grow2 / total)
    assert s2["logical_bytes"] >= 2 * total
    for name in ("a", "b"):
        v = vol_stats(s2, name)
        assert v["logical_bytes"] == total, v
        assert v["files"] == len(files), v
    assert s2["dedup_ratio"] >= 1.8, s2
    p = store.check()
    assert p.returncode == 0, p.stdout + p.stderr


def test_stats_while_mounted_show_fsynced_data(make_store, mounts):
    """stats on a mounted store (monitoring) counts what fsync made durable."""
    store = make_store()
    m = mounts.mount(store, "vol")
    s0 = store.stats()
    data = random.Random(5).randbytes(8 * MiB)
    write_synced(os.path.join(m.path, "f"), data)
    s1 = store.stats()
    assert s1["logical_bytes"] - s0["logical_bytes"] == len(data), (s0, s1)
    assert s1["chunks"] > s0["chunks"], (s0, s1)
    assert s1["stored_bytes"] - s0["stored_bytes"] >= 0.9 * len(data), \
        "stored_bytes grew by %d after 8 MiB were fsynced: %r" % (s1["stored_bytes"] - s0["stored_bytes"], s1)


def test_identical_copy_adds_no_chunks(make_store, mounts):
    """Chunk boundaries depend on content only, not on how it was written."""
    store = make_store()
    m = mounts.mount(store, "vol")
    data = random.Random(4).randbytes(50 * MiB)
    write_synced(os.path.join(m.path, "one"), data)
    s1 = store.stats()
    with open(os.path.join(m.path, "two"), "wb") as f:
        for off in range(0, len(data), MiB):
            f.write(data[off:off + MiB])
        f.flush()
        os.fsync(f.fileno())
    s2 = store.stats()
    assert s2["chunks"] == s1["chunks"], \
        "an identical copy of a 50 MiB file added %d chunks" % (s2["chunks"] - s1["chunks"])


def test_shifted_copy_reuses_chunks(make_store, mounts):
    store = make_store()  # default chunks: 256K / 1M / 4M
    m = mounts.mount(store, "vol")
    data = random.Random(2).randbytes(50 * MiB)
    s0 = store.stats()
    write_synced(os.path.join(m.path, "orig.bin"), data)
    s1 = store.stats()
    first_chunks = s1["chunks"] - s0["chunks"]
    assert 20 <= first_chunks <= 200, \
        "50 MiB with 1 MiB average chunks made %d chunks" % first_chunks
    write_synced(os.path.join(m.path, "shifted.bin"), b"!" + data)
    s2 = store.stats()
    new_chunks = s2["chunks"] - s1["chunks"]
    reused = first_chunks - new_chunks
    assert reused >= 0.9 * first_chunks, \
        "1 byte inserted at the start: %d of %d chunks new" % (new_chunks, first_chunks)
    grow = s2["stored_bytes"] - s1["stored_bytes"]
    assert grow < 0.1 * len(data), "shifted copy stored %d new bytes" % grow
    with open(os.path.join(m.path, "shifted.bin"), "rb") as f:
        assert f.read() == b"!" + data


def test_small_chunks_dedup_edit_in_middle(make_store, mounts):
    store = make_store(chunks=(16 * 1024, 64 * 1024, 256 * 1024))
    m = mounts.mount(store, "vol")
    data = random.Random(3).randbytes(8 * MiB)
    write_synced(os.path.join(m.path, "v1.pdf"), data)
    s1 = store.stats()
    edited = data[:4 * MiB] + b"incremental update" + data[4 * MiB:] + b"%%EOF appended"
    write_synced(os.path.join(m.path, "v2.pdf"), edited)
    s2 = store.stats()
    new_chunks = s2["chunks"] - s1["chunks"]
    assert 0 < new_chunks <= 6, "an edit in the middle made %d new chunks" % new_chunks
    assert s2["stored_bytes"] - s1["stored_bytes"] < 1 * MiB
    with open(os.path.join(m.path, "v2.pdf"), "rb") as f:
        assert f.read() == edited


def test_compression_ratio(make_store, mounts):
    store = make_store()
    m = mounts.mount(store, "vol")
    lines = []
    for i in range(400000):
        lines.append("2024-05-%02d 12:%02d:%02d INFO odoo.models: record %d of res.partner written\n"
                     % (i % 28 + 1, i % 60, i % 60, i))
    text = "".join(lines).encode()
    write_synced(os.path.join(m.path, "odoo.log"), text)
    s = store.stats()
    assert s["compression_ratio"] > 1.5, s
    assert s["stored_bytes"] < len(text) / 1.5, s
    with open(os.path.join(m.path, "odoo.log"), "rb") as f:
        assert f.read() == text


def test_zero_file_is_cheap(make_store, mounts):
    store = make_store()
    m = mounts.mount(store, "vol")
    s0 = store.stats()
    write_synced(os.path.join(m.path, "zeros"), b"\0" * (64 * MiB))
    s1 = store.stats()
    assert s1["stored_bytes"] - s0["stored_bytes"] < 2 * MiB, (s0, s1)


def test_concurrent_writes_to_two_volumes(make_store, mounts):
    """Two daemons write different data into one store at the same time."""
    store = make_store(chunks=(16 * 1024, 64 * 1024, 256 * 1024), volumes=("a", "b"))
    ma = mounts.mount(store, "a")
    mb = mounts.mount(store, "b")
    fa = make_files(10, 12 * MiB, sizes=(64 * 1024, MiB))
    fb = make_files(11, 12 * MiB, sizes=(64 * 1024, MiB))
    shared = random.Random(12).randbytes(4 * MiB)
    fa["shared.bin"] = shared
    fb["shared.bin"] = shared
    errors = []

    def writer(root, files):
        for rel, data in files.items():
            try:
                write_synced(os.path.join(root, rel), data)
            except Exception as e:  # reported below
                errors.append("%s/%s: %r" % (root, rel, e))
                return

    ta = threading.Thread(target=writer, args=(str(ma.path), fa))
    tb = threading.Thread(target=writer, args=(str(mb.path), fb))
    ta.start()
    tb.start()
    ta.join(300)
    tb.join(300)
    assert not ta.is_alive() and not tb.is_alive(), "writers hung"
    assert not errors, errors
    ma.close()
    mb.close()
    p = store.check()
    assert p.returncode == 0, p.stdout + p.stderr
    ma = mounts.mount(store, "a")
    mb = mounts.mount(store, "b")
    for root, files in ((ma.path, fa), (mb.path, fb)):
        for rel, data in files.items():
            with open(os.path.join(root, rel), "rb") as f:
                assert f.read() == data, "%s/%s differs after concurrent writes" % (root, rel)
    s = store.stats()
    assert vol_stats(s, "a")["files"] == len(fa)
    assert vol_stats(s, "b")["files"] == len(fb)
