"""Push and recovery under remote faults (issue 4; recovery side for
issue 5): HTTP 500/503, a slow server, connections cut in the middle of a
request or of a reply, reply bodies truncated, the SFTP server killed and
restarted.

S3 (s3rver) and WebDAV (apache over TLS) are reached through
tests/servers/faultproxy.py, which injects the faults; SFTP faults kill
the private sshd.  After every scenario: the push either completed or
failed with one line naming the remote; a rerun completes without
resending packs that were complete; every object on the remote is whole
(its size is the local pack's); and `tresor recover` gives back the tree
byte for byte.  Recovery under faults: a truncated body is detected and
nothing is installed; transient faults are retried through.
"""

import os
import time
import uuid
from pathlib import Path

import pytest

from conftest import Store
from test_push_recover import (MiB, compare, push, recover, remote_add, run,  # noqa: F401
                               scan, sshserver, make_remote)
from remote_proxy import (dav_remote, davproxy, davserver, s3_remote, s3proxy,  # noqa: F401
                          s3server)

KINDS = ["s3", "webdav"]


@pytest.fixture
def proxied(request, tmp):
    """proxied(kind) -> (remote, proxy) at a fresh location."""
    def make(kind):
        tag = "f-" + uuid.uuid4().hex[:10]
        if kind == "s3":
            px = request.getfixturevalue("s3proxy")
            return s3_remote(tmp, px, tag), px
        px = request.getfixturevalue("davproxy")
        return dav_remote(px, request.getfixturevalue("davserver"), tag), px
    yield make
    for name in ("s3proxy", "davproxy"):
        if name in request.fixturenames:
            request.getfixturevalue(name).clear()


def write_packs(store, mounts, n, size=3 * MiB, tag="a"):
    """n packs (one per mount session); returns the tree as it is then."""
    for i in range(n):
        m = mounts.mount(store, "vol")
        (m.path / ("%s%02d.bin" % (tag, i))).write_bytes(os.urandom(size))
        m.close()
    m = mounts.mount(store, "vol")
    want = scan(m.path)
    m.close()
    return want


def local_packs(store):
    out = {}
    for dirpath, _, files in os.walk(store.path / "packs"):
        for f in files:
            if len(f) == 32:
                out["data/%s/%s" % (f[:2], f)] = os.path.getsize(os.path.join(dirpath, f))
    return out


def assert_remote_whole(store, remote):
    """Every pack object on the remote is a whole local pack; no stray
    object counts as one."""
    objs = remote.objects()
    mine = local_packs(store)
    packs = {k: v for k, v in objs.items() if k.startswith("data/") and ".tmp-" not in k}
    for k, size in packs.items():
        assert k in mine, "unknown object %s on the remote" % k
        assert size == mine[k], "%s is %d bytes on the remote, %d here" % (k, size, mine[k])
    return packs


def assert_recovers(tmp, mounts, store, remote, want, tag):
    new = Store(tmp / ("rec-" + tag), store.passfile)
    recover(remote, new.path, store.passfile)
    m = mounts.mount(new, "vol", mnt=tmp / ("mnt-" + tag))
    try:
        compare(want, scan(m.path), "the tree recovered (%s)" % tag)
    finally:
        m.close()


def one_line_error(p, remote):
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert p.returncode == 1 and len(lines) == 1, (p.returncode, p.stderr)
    assert "rerun" in lines[0], lines[0]
    return lines[0]


def sent_packs(proxy, kind):
    """Pack keys whose upload the server answered with success (WebDAV: the
    MOVE of the temporary into place)."""
    out = set()
    for r in proxy.log():
        if kind == "s3" and r.method == "PUT" and "/data/" in r.path and \
                r.status == 200 and "partNumber" not in r.query:
            out.add(r.path)
        if r.method == "MOVE" and "/data/" in r.path and r.status in (201, 204):
            out.add(r.path)
        if r.method == "POST" and "/data/" in r.path and "uploadId" in r.query \
                and r.status == 200:
            out.add(r.path)
    return {p.split("/data/", 1)[1].split(".tmp-")[0] for p in out}


@pytest.mark.parametrize("kind", KINDS)
def test_push_through_transient_faults(kind, tmp, store, mounts, proxied):
    """Every kind of transient fault at once, each a few times: the push
    retries through them and the remote is whole."""
    remote, px = proxied(kind)
    want = write_packs(store, mounts, 5)
    remote_add(store, "off", remote)
    px.clear()
    px.add("status", method="PUT", path="/data/", count=2, status=503)
    px.add("status", method="PUT", path="/meta/", count=1, status=500)
    px.add("cut_request", method="PUT", path="/data/", count=1)
    px.add("cut_response", method="PUT", path="/data/", count=1)
    px.add("stall", method="PUT", path="/meta/", count=1, seconds=2)
    px.add("drop", method="HEAD", path="/data/", count=1)
    if kind == "webdav":
        px.add("status", method="MOVE", count=1, status=503)
    push(store, "off", remote, timeout=300)
    faults = [r.fault for r in px.log() if r.fault]
    for f in ("status", "cut_request", "cut_response", "stall", "drop"):
        assert f in faults, "fault %s never hit: %s" % (f, faults)
    packs = assert_remote_whole(store, remote)
    assert set(packs) == set(local_packs(store)), "a pack is missing on the remote"
    assert_recovers(tmp, mounts, store, remote, want, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_push_fails_cleanly_and_resumes(kind, tmp, store, mounts, proxied):
    """A server that keeps failing after two packs: the push gives up with
    one line, the remote still restores the previous push, and the next
    push sends only what was not complete."""
    remote, px = proxied(kind)
    want1 = write_packs(store, mounts, 1, tag="first")
    remote_add(store, "off", remote)
    push(store, "off", remote)
    want2 = write_packs(store, mounts, 5, tag="second")
    px.clear()
    verb = "PUT" if kind == "s3" else "MOVE"
    px.add("status", method=verb, path="/data/", count=None, after=2, status=500)
    p = run("push", store.path, "off", "--json", "--jobs", "2", "--passphrase-file",
            store.passfile, env=remote.env, timeout=300)
    one_line_error(p, remote)
    done_first = sent_packs(px, kind)
    assert 2 <= len(done_first) < 5, done_first
    assert not [r for r in px.log() if "/meta/" in r.path and r.method in ("PUT", "MOVE")
                and r.status in (200, 201, 204)], "a delta was published without its packs"
    assert_remote_whole(store, remote)
    assert_recovers(tmp, mounts, store, remote, want1, kind + "-between")
    px.clear()
    res = push(store, "off", remote)
    again = sent_packs(px, kind)
    assert not (again & done_first), "resent complete packs: %s" % (again & done_first)
    assert res["packs"] == len(again), (res, again)
    assert set(assert_remote_whole(store, remote)) == set(local_packs(store))
    assert_recovers(tmp, mounts, store, remote, want2, kind + "-after")


def test_sftp_server_killed_and_restarted(tmp, store, mounts, make_remote):
    """sshd and all its sessions killed during a slow push, back 2 s later:
    the push retries through it (or fails with one line and a rerun
    finishes); nothing half-written counts; the remote recovers whole."""
    remote = make_remote("sftp")
    srv = remote.server
    want = write_packs(store, mounts, 4, size=2 * MiB)
    remote_add(store, "off", remote)
    import subprocess
    import signal
    from conftest import TRESOR_BIN, base_env
    env = base_env()
    proc = subprocess.Popen([TRESOR_BIN, "push", str(store.path), "off", "--json",
                             "--limit-upload", "2M", "--passphrase-file", str(store.passfile)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    try:
        time.sleep(1.5)
        assert proc.poll() is None, "the push ended before the server was killed"
        srv.stop(signal.SIGKILL)
        time.sleep(2)
        srv.start()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert proc.returncode == 1 and len(lines) == 1 and "rerun" in lines[0], err
        push(store, "off", remote)
    assert set(assert_remote_whole(store, remote)) == set(local_packs(store))
    assert_recovers(tmp, mounts, store, remote, want, "sftp")


@pytest.mark.parametrize("kind", KINDS)
def test_recover_under_faults(kind, tmp, store, mounts, proxied):
    """Recovery: a pack or delta whose body comes back short (with a
    matching Content-Length) is detected and nothing is installed; cut
    replies and 503s are retried through.  (Two pushes: the first brings
    an image of the index, so recovery reads meta/1's header alone, in
    one ranged GET whose cut tail need not matter; the delta of meta/2 is
    read whole, after the newest header.)"""
    remote, px = proxied(kind)
    write_packs(store, mounts, 2, size=2 * MiB)
    remote_add(store, "off", remote)
    push(store, "off", remote)
    want = write_packs(store, mounts, 1, size=2 * MiB, tag="b")
    push(store, "off", remote)
    for what, after in (("/data/", 0), ("/meta/", 1)):
        px.clear()
        px.add("truncate", method="GET", path=what, count=1, after=after)
        dest = tmp / ("bad-" + what.strip("/"))
        p = recover(remote, dest, store.passfile, check=False)
        assert p.returncode != 0, "a truncated %s object was accepted" % what
        assert "truncate" in [r.fault for r in px.log()], px.log()
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1, p.stderr
        assert not Path(dest).exists(), "a failed recover installed %s" % dest
    px.clear()
    px.add("cut_response", method="GET", path="/data/", count=2)
    px.add("status", method="GET", path="/meta/", count=2, status=503)
    px.add("stall", method="GET", path="/data/", count=1, seconds=2)
    assert_recovers(tmp, mounts, store, remote, want, kind + "-faults")
    faults = [r.fault for r in px.log() if r.fault]
    assert faults.count("cut_response") == 2 and faults.count("status") == 2, faults


def test_hung_server_times_out(tmp, store, mounts, proxied):
    """A request the server never answers (30 s) is abandoned after the
    stall limit (TRESOR_REMOTE_TIMEOUT=2) and retried: the push does not
    wait for the hung one."""
    remote, px = proxied("s3")
    want = write_packs(store, mounts, 2, size=2 * MiB)
    remote_add(store, "off", remote)
    px.clear()
    px.add("stall", method="PUT", path="/data/", count=1, seconds=30)
    env = dict(remote.env, TRESOR_REMOTE_TIMEOUT="2")
    t = time.monotonic()
    p = run("push", store.path, "off", "--json", "--passphrase-file", store.passfile,
            env=env, timeout=120)
    took = time.monotonic() - t
    assert p.returncode == 0, p.stderr
    assert "stall" in [r.fault for r in px.log()]
    assert took < 25, "the push waited %.1f s for a request hung for 30 s" % took
    assert_recovers(tmp, mounts, store, remote, want, "hung")
