"""S3 Object Lock on push (issue 4): every upload carries a retention,
pushes extend the retention of what is still in use, and freed packs are
deleted only once both the grace and the retention have passed.

The s3rver fork ignores Object Lock, so the requests are checked on the
wire: tests/servers/faultproxy.py records everything between tresor and
the real s3rver.  Checked: the lock headers are on every PUT and on every
CreateMultipartUpload, listed in SignedHeaders, with the right dates;
Content-MD5 is on every lock upload; s3rver accepted the signature (it
checks it before anything else: 200 for uploads, 405 MethodNotAllowed for
PutObjectRetention, which it does not implement and the proxy turns into
200); botocore recomputes the same signature.  What is not tested: a server
actually refusing to delete a locked object.
"""

import copy
import datetime
import os
import re
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET

import pytest

from test_push_recover import DRIVER, MiB, push, recover, remote_status, run
from test_push_grace import local_pack_keys, prune_to_last, push_at
from remote_proxy import (content_md5_ok, s3_remote, s3proxy,  # noqa: F401
                          s3server, signed_headers, verify_sigv4)

DAY = 86400
LOCK_HDRS = ("x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date")


def parse_date(s):
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", s), s
    s = s.rstrip("Z").split(".")[0]
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def lock_remote(tmp, s3proxy, store, days, mode=None, grace=None):
    remote = s3_remote(tmp, s3proxy, uuid.uuid4().hex[:10])
    extra = ["--object-lock-days", str(days)] + (["--object-lock-mode", mode] if mode else [])
    extra += ["--grace", grace] if grace else []
    run("remote", "add", store.path, "off", remote.url, *remote.opts, *extra,
        env=remote.env, check=True)
    return remote


def uploads(log, prefix):
    """PUT objects (not parts, not retentions) and multipart creates."""
    puts = [r for r in log if r.method == "PUT" and prefix in r.path and
            "partNumber" not in r.query and "retention" not in r.query]
    creates = [r for r in log if r.method == "POST" and prefix in r.path and
               r.query == "uploads="]
    return puts, creates


def check_lock_request(rec, mode, t0, t1, days):
    for h in LOCK_HDRS:
        assert h in rec.headers, "%r lacks %s" % (rec, h)
        assert h in signed_headers(rec), "%s not signed in %r" % (h, rec)
    assert rec.headers["x-amz-object-lock-mode"] == mode, rec.headers
    until = parse_date(rec.headers["x-amz-object-lock-retain-until-date"])
    assert t0 + days * DAY - 2 <= until <= t1 + days * DAY + 2, (rec, until, t0)
    assert rec.status == 200 and rec.upstream_status == 200, rec


@pytest.mark.parametrize("mode", [None, "compliance"])
def test_every_upload_is_locked(mode, tmp, store, mounts, s3proxy):
    remote = lock_remote(tmp, s3proxy, store, 3, mode)
    st = remote_status(store, remote.env)["off"]
    want_mode = (mode or "governance").upper()
    assert st["object_lock_days"] == 3 and st["object_lock_mode"] == want_mode.lower(), st
    mnt = mounts.mount(store, "vol")
    (mnt.path / "big.bin").write_bytes(os.urandom(40 * MiB))   # a full 32 MiB pack
    (mnt.path / "small.txt").write_bytes(b"small\n")
    mnt.close()
    s3proxy.clear()
    t0 = time.time()
    res = push(store, "off", remote)
    t1 = time.time()
    assert res["packs"] >= 2, res
    puts, creates = uploads(s3proxy.log(), remote.url.split("/", 3)[3])
    keys = sorted(r.path for r in puts + creates)
    assert any(k.endswith("/tresor-repo") for k in keys), keys
    assert any(k.endswith("/keys/key") for k in keys), keys
    assert any("/meta/" in k for k in keys), keys
    assert len([k for k in keys if "/data/" in k]) == res["packs"], keys
    for rec in puts + creates:
        check_lock_request(rec, want_mode, t0, t1, 3)
    for rec in puts:
        assert "content-md5" in rec.headers and "content-md5" in signed_headers(rec), rec
        if rec.body is not None:
            assert content_md5_ok(rec), rec
            verify_sigv4(rec)
    for rec in creates:
        verify_sigv4(rec)
    # the check can fail: a changed date no longer matches the signature
    forged = copy.copy(puts[0])
    forged.headers = dict(forged.headers)
    forged.headers["x-amz-object-lock-retain-until-date"] = "2099-01-01T00:00:00.000Z"
    with pytest.raises(AssertionError):
        verify_sigv4(forged)
    assert remote_status(store, remote.env)["off"]["packs_pending"] == 0


def test_multipart_create_is_locked(tmp, s3proxy):
    """Bodies over 40 MiB go multipart (packs stay below): the retention is
    on CreateMultipartUpload, signed; every part has its Content-MD5."""
    remote = s3_remote(tmp, s3proxy, uuid.uuid4().hex[:10])
    f = tmp / "big"
    data = os.urandom(41 * MiB)
    f.write_bytes(data)
    until = int(time.time()) + 5 * DAY
    s3proxy.clear()
    p = subprocess.run([str(DRIVER), remote.url] + remote.driver_opts +
                       ["--lock-until", str(until), "put", "data/big", str(f)],
                       env=remote.env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    log = s3proxy.log()
    creates = [r for r in log if r.method == "POST" and r.query == "uploads="]
    parts = [r for r in log if "partNumber" in r.query]
    assert len(creates) == 1 and len(parts) == 6, log
    check_lock_request(creates[0], "GOVERNANCE", until - 5 * DAY, until - 5 * DAY, 5)
    verify_sigv4(creates[0])
    for r in parts:
        assert "content-md5" in signed_headers(r) and r.status == 200, r
        assert not any(h in r.headers for h in LOCK_HDRS), r
    assert remote.objects()["data/big"] == len(data)


def test_retention_extended_and_deletion_waits(tmp, store, mounts, s3proxy):
    remote = lock_remote(tmp, s3proxy, store, 3, grace="0")
    mnt = mounts.mount(store, "vol")
    (mnt.path / "old.bin").write_bytes(os.urandom(20 * MiB))
    (mnt.path / "keep.bin").write_bytes(os.urandom(2 * MiB))
    mnt.close()
    t0 = time.time()
    push_at(store, "off", remote)
    metas = {k for k in remote.objects() if k.startswith("meta/")}
    images = {k for k in remote.objects() if k.startswith("image/")}
    assert images, "the first push sent no image of the index"

    # one day later: more than half of 3 days is left, nothing is renewed
    s3proxy.clear()
    res = push_at(store, "off", remote, DAY)
    assert res["retained"] == 0, res
    assert not [r for r in s3proxy.log() if "retention" in r.query]

    # old.bin goes; the GC (run by prune) rewrites its pack
    before_prune = {k for k in remote.objects() if k.startswith("data/")}
    mnt = mounts.mount(store, "vol")
    os.unlink(mnt.path / "old.bin")
    mnt.close()
    pr = prune_to_last(store)
    assert pr["packs_deleted"] + pr["packs_rewritten"] >= 1, pr
    in_use = local_pack_keys(store)
    old_in_use = in_use & {k for k in remote.objects() if k.startswith("data/")}

    # two days later (no grace): retention of what is in use extended to
    # now + 3 d; the freed packs wait for their own retention (t0 + 3 d)
    s3proxy.clear()
    t2 = time.time() + 2 * DAY
    res = push_at(store, "off", remote, 2 * DAY)
    assert res["deleted"] == 0 and res["awaiting_deletion"] >= 1, (
        res, pr, before_prune, in_use)
    log = s3proxy.log()
    assert not [r for r in log if r.method == "DELETE"], "deleted under retention"
    ret = [r for r in log if "retention" in r.query]
    renewed = {r.path.split("/px/", 1)[1].split("/", 1)[1] for r in ret}
    assert old_in_use <= renewed, "packs in use not renewed: %s" % (old_in_use - renewed)
    # what the GC rewrote is new: uploaded now, with a fresh retention
    sent = {r.path.split("/px/", 1)[1].split("/", 1)[1]: r for r in log
            if r.method in ("PUT", "POST") and "/data/" in r.path and
            ("uploads=" == r.query or not r.query)}
    assert in_use - old_in_use == set(sent), (in_use, old_in_use, sorted(sent))
    for r in sent.values():
        check_lock_request(r, "GOVERNANCE", t2, time.time() + 2 * DAY, 3)
    assert {"tresor-repo", "keys/key"} | metas | images <= renewed, renewed
    assert res["retained"] == len(ret), (res, len(ret))
    for r in ret:
        assert r.query == "retention=", r      # exactly as SigV4 wants it
        assert content_md5_ok(r), r
        assert "content-md5" in signed_headers(r), r
        doc = ET.fromstring(r.body)
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        assert doc.tag == ns + "Retention", r.body
        assert doc.find(ns + "Mode").text == "GOVERNANCE", r.body
        until = parse_date(doc.find(ns + "RetainUntilDate").text)
        assert t2 + 3 * DAY - 120 <= until <= time.time() + 5 * DAY + 2, (r.body, t2)
        # s3rver checked the signature, then said it has no Object Lock
        assert r.upstream_status == 405 and r.status == 200, r
        verify_sigv4(r)
    st = remote_status(store, remote.env)["off"]
    dues = [d["due_ns"] / 1e9 for d in st["awaiting_deletion"]]
    assert dues and all(t0 + 3 * DAY - 5 <= d <= t0 + 3 * DAY + 120 for d in dues), (dues, t0)

    # after the freed packs' retention: deleted, nothing in use touched
    s3proxy.clear()
    res = push_at(store, "off", remote, 3 * DAY + 200)
    assert res["deleted"] == len(dues) and res["awaiting_deletion"] == 0, res
    dels = {r.path.split("/px/", 1)[1].split("/", 1)[1] for r in s3proxy.log()
            if r.method == "DELETE"}
    assert len(dels) == len(dues) and not (dels & in_use), (dels, in_use)
    left = {k for k in remote.objects() if k.startswith("data/")}
    assert in_use <= left and not (dels & left)
    new = tmp / "recovered"
    recover(remote, new, store.passfile)


def test_object_lock_refused_off_s3(tmp, store):
    p = run("remote", "add", store.path, "off", str(tmp / "dir"), "--object-lock-days", "3")
    assert p.returncode == 2 and "S3" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = run("remote", "add", store.path, "off", "s3://bucket/x", "--object-lock-days", "0")
    assert p.returncode == 2 and "--object-lock-days" in p.stderr, p.stderr


def test_metadata_below_the_image_waits_for_its_retention(tmp, store, mounts, s3proxy):
    """What a newer image makes unnecessary (the deltas below it, older
    images) is no longer renewed, and is deleted only once its retention
    (at most publication + lock days) has passed, even with no grace."""
    remote = lock_remote(tmp, s3proxy, store, 3, grace="0")

    def key(r):
        return r.path.split("/px/", 1)[1].split("/", 1)[1]

    def push_file(i, offset):
        mnt = mounts.mount(store, "vol")
        (mnt.path / ("f%d.bin" % i)).write_bytes(os.urandom(100_000))
        mnt.close()
        return push_at(store, "off", remote, offset, "--image-every", "2")

    for i in (1, 2, 3):     # images 1 and 3
        push_file(i, 0)
    objs = remote.objects()
    img1 = {k for k in objs if k.startswith("image/%016x-" % 1)}
    img3 = {k for k in objs if k.startswith("image/%016x-" % 3)}
    assert img1 and img3, sorted(objs)

    # two days later: renewed from image 3 on; meta/1, meta/2 and image 1
    # neither renewed nor deleted
    s3proxy.clear()
    res = push_file(4, 2 * DAY)
    log = s3proxy.log()
    assert not [r for r in log if r.method == "DELETE"], "deleted under retention"
    renewed = {key(r) for r in log if "retention" in r.query}
    assert {"meta/%016x" % 3, "meta/%016x" % 4} | img3 <= renewed, renewed
    assert not ({"meta/%016x" % 1, "meta/%016x" % 2} | img1) & renewed, renewed
    assert res["meta_deleted"] == 0 and res["images_awaiting"] == 1, res

    # past the retention: exactly those go; meta/5 brings image 5
    s3proxy.clear()
    res = push_file(5, 3 * DAY + 200)
    assert res["image"] == 5, res
    dels = {key(r) for r in s3proxy.log() if r.method == "DELETE"}
    assert dels == {"meta/%016x" % 1, "meta/%016x" % 2} | img1, dels
    assert res["meta_deleted"] == len(dels), res
    left = {k for k in remote.objects() if k.startswith(("meta/", "image/"))}
    assert {"meta/%016x" % k for k in (3, 4, 5)} | img3 <= left, left
    recover(remote, tmp / "recovered", store.passfile)
