"""Disaster recovery with relative paths (issue 13, part 3).

- `recover --lazy` with relative --ssh-key/--known-hosts (run in the
  recovery folder) stores absolute paths: a mount started elsewhere (whose
  daemon runs from /) reads files not fetched yet;
- `remote add` stores absolute paths too (a relative local directory as
  well); a missing file is one line naming the option, nothing stored;
- a lazy store whose remote cannot be used (key gone, directory gone, a
  relative path stored by an older tresor) refuses to mount with one line
  saying what to do; -o allow_unfetchable mounts it anyway, loudly;
  `remote set` mends the remote; the daemon's status is unhealthy;
- a daemon config naming origin's repository under another name (the
  config from before the disaster) uses origin: no second remote, no
  pack fetched again.
"""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (PASSPHRASE, TRESOR_BIN, Store, base_env, check_sanitizer_text,
                      tresor)
from daemon_helpers import Daemon, free_port, local_ts
from recovery_util import (MiB, all_packs, blob, fill_store, local_packs, read_errno,
                           tresor_pw)
from test_push_recover import make_remote, push, remote_add, sshserver  # noqa: F401

FILES = {"a.bin": blob(11, 1 * MiB), "b.bin": blob(12, 2 * MiB)}


def run_in(cwd, *args):
    env = base_env()
    env["TRESOR_PASSPHRASE"] = PASSPHRASE
    return subprocess.run([TRESOR_BIN, *map(str, args)], cwd=str(cwd), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300)


def remotes(store_path):
    p = tresor("remote", "list", store_path, "--json", env=base_env())
    assert p.returncode == 0, p.stderr
    return {r["name"]: r for r in json.loads(p.stdout)}


def pushed(make_store, mounts, make_remote, kind):
    st = make_store()
    fill_store(st, mounts, FILES)
    remote = make_remote(kind)
    remote_add(st, "offsite", remote)
    push(st, "offsite", remote)
    return st, remote


def sftp_files(remote, folder):
    """The server's key and known_hosts copied into folder/etc."""
    etc = folder / "etc"
    etc.mkdir(parents=True)
    shutil.copy(remote.server.key, etc / "id_ed25519")
    os.chmod(etc / "id_ed25519", 0o600)
    shutil.copy(remote.server.known_hosts, etc / "known_hosts")
    return etc


def mount_refused(store):
    """tresor mount -f of a lazy store that must refuse: (exit code, stderr)."""
    mnt = Path(store.path).parent / "mnt-refused"
    mnt.mkdir(exist_ok=True)
    p = subprocess.Popen([TRESOR_BIN, "mount", str(store.path), "vol", str(mnt),
                          "--passphrase-file", str(store.passfile), "-f"],
                         env=base_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
        p.kill()
        p.communicate()
        pytest.fail("the lazy store was mounted although its remote cannot be used")
    check_sanitizer_text(err, "tresor mount")
    assert not os.path.ismount(mnt)
    return p.returncode, err


def test_recover_relative_paths_then_mount_elsewhere(tmp, make_store, mounts, make_remote,
                                                     passfile):
    st, remote = pushed(make_store, mounts, make_remote, "sftp")
    rec = tmp / "recovery"
    etc = sftp_files(remote, rec)
    p = run_in(rec, "recover", remote.url, "store", "--lazy", "--ssh-key", "etc/id_ed25519",
               "--known-hosts", "etc/known_hosts")
    assert p.returncode == 0, p.stderr
    lz = Store(rec / "store", passfile)
    assert local_packs(lz.path) == set()
    # the test runs elsewhere; the mount's daemon from wherever it likes
    assert Path.cwd() != rec
    m = mounts.mount(lz, "vol")
    data, err = read_errno(Path(m.path) / "b.bin")
    assert err is None and data == FILES["b.bin"], "read of a file not fetched yet: %s\n%s" \
        % (err and os.strerror(err), m.log_text())
    m.close()
    origin = remotes(lz.path)["origin"]
    assert origin["ssh_key"] == str(etc / "id_ed25519")
    assert origin["known_hosts"] == str(etc / "known_hosts")
    # the key goes away: the mount refuses, naming the store, remote, file
    (etc / "id_ed25519").rename(etc / "moved_key")
    rc, err = mount_refused(lz)
    assert rc != 0 and len(err.strip().splitlines()) == 1, err
    for word in (str(lz.path), "lazy", "'origin'", "id_ed25519", "remote set", "--full"):
        assert word in err, (word, err)
    # remote set mends it (relative again, stored absolute)
    p = run_in(etc, "remote", "set", lz.path, "origin", "--ssh-key", "moved_key")
    assert p.returncode == 0, p.stderr
    assert remotes(lz.path)["origin"]["ssh_key"] == str(etc / "moved_key")
    m = mounts.mount(lz, "vol")
    data, err = read_errno(Path(m.path) / "a.bin")
    assert err is None and data == FILES["a.bin"]
    m.close()
    # a server that does not answer: refused after one quick attempt
    con = sqlite3.connect(str(Path(lz.path) / "index.db"))
    con.execute("UPDATE remote SET url = ? WHERE name = 'origin'",
                (re.sub(r":\d+/", ":%d/" % free_port(), remote.url, count=1),))
    con.commit()
    con.close()
    t0 = time.monotonic()
    rc, err = mount_refused(lz)
    assert rc != 0 and "'origin' cannot be used" in err, err
    assert time.monotonic() - t0 < 15, "the check retried or waited"


def test_recover_missing_key_is_one_line_and_installs_nothing(tmp, make_store, mounts,
                                                              make_remote):
    st, remote = pushed(make_store, mounts, make_remote, "sftp")
    rec = tmp / "recovery"
    sftp_files(remote, rec)
    p = run_in(rec, "recover", remote.url, "store", "--lazy", "--ssh-key", "etc/nope",
               "--known-hosts", "etc/known_hosts")
    assert p.returncode != 0
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "--ssh-key" in p.stderr and "etc/nope" in p.stderr, p.stderr
    assert not (rec / "store").exists()


def test_remote_add_stores_absolute_paths(tmp, store, make_remote):
    remote = make_remote("sftp")
    here = tmp / "work"
    etc = sftp_files(remote, here)
    (here / "backup").mkdir()
    p = run_in(here, "remote", "add", store.path, "offsite", remote.url,
               "--ssh-key", "etc/id_ed25519", "--known-hosts", "./etc/../etc/known_hosts")
    assert p.returncode == 0, p.stderr
    p = run_in(here, "remote", "add", store.path, "usb", "backup")
    assert p.returncode == 0, p.stderr
    rs = remotes(store.path)
    assert rs["offsite"]["ssh_key"] == str(etc / "id_ed25519")
    assert rs["offsite"]["known_hosts"] == str(etc / "known_hosts")
    assert rs["usb"]["url"] == str(here / "backup")
    # a missing file: one line naming the option and the file, nothing stored
    p = run_in(here, "remote", "add", store.path, "other", remote.url,
               "--ssh-key", "etc/id_ed25519", "--known-hosts", "etc/missing_hosts")
    assert p.returncode != 0
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "--known-hosts" in p.stderr and "etc/missing_hosts" in p.stderr, p.stderr
    assert "other" not in remotes(store.path)
    # the same repository under a second name: refused, naming the first
    p = run_in(here, "remote", "add", store.path, "usb2", str(here / "backup") + "/")
    assert p.returncode != 0 and "'usb'" in p.stderr, p.stderr
    assert "usb2" not in remotes(store.path)


def lazy_local(make_store, mounts, make_remote, tmp, passfile):
    st, remote = pushed(make_store, mounts, make_remote, "local")
    p = tresor_pw("recover", remote.url, tmp / "lazy", "--lazy")
    assert p.returncode == 0, p.stderr
    return Store(tmp / "lazy", passfile), remote


def test_lazy_store_with_unusable_origin_refuses_to_mount(tmp, make_store, mounts,
                                                          make_remote, passfile):
    lz, remote = lazy_local(make_store, mounts, make_remote, tmp, passfile)
    away = tmp / "remote-away"
    shutil.move(remote.url, away)
    rc, err = mount_refused(lz)
    assert rc != 0 and len(err.strip().splitlines()) == 1, err
    for word in (str(lz.path), "lazy", "'origin'", remote.url, "allow_unfetchable"):
        assert word in err, (word, err)
    # asked for: mounted, loudly; reads not fetched yet fail
    m = mounts.mount(lz, "vol", opts=("allow_unfetchable",))
    assert "WARNING" in m.log_text() and "cannot be used" in m.log_text()
    _, e = read_errno(Path(m.path) / "a.bin")
    assert e is not None
    m.close()
    # back: mounts and reads
    shutil.move(away, remote.url)
    m = mounts.mount(lz, "vol")
    data, e = read_errno(Path(m.path) / "a.bin")
    assert e is None and data == FILES["a.bin"]
    m.close()


def test_relative_path_stored_by_older_tresor_refuses_to_mount(tmp, make_store, mounts,
                                                               make_remote, passfile):
    lz, remote = lazy_local(make_store, mounts, make_remote, tmp, passfile)
    con = sqlite3.connect(str(Path(lz.path) / "index.db"))
    con.execute("UPDATE remote SET ca_file = 'etc/ca.pem' WHERE name = 'origin'")
    con.commit()
    con.close()
    rc, err = mount_refused(lz)
    assert rc != 0 and "etc/ca.pem" in err and "relative" in err, err


@pytest.fixture
def daemons():
    ds = []
    yield ds
    for d in ds:
        assert d.stop() == 0, d.log_text()


def test_status_unhealthy_while_lazy_origin_unusable(tmp, make_store, mounts, make_remote,
                                                     passfile, daemons):
    lz, remote = lazy_local(make_store, mounts, make_remote, tmp, passfile)
    away = tmp / "remote-away"
    shutil.move(remote.url, away)
    sched = {"snapshot": "never", "push": "never", "check": "never"}
    # the daemon mounting it refuses too, with the reason
    (tmp / "d1").mkdir()
    d1 = Daemon(tmp / "d1", lz, schedule=sched, metrics=False)
    d1.set_clock(local_ts(2026, 5, 5, 4, 0))
    d1.start(wait=False)
    try:
        d1.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        d1.stop()
        pytest.fail("the daemon serves a lazy store whose remote cannot be used")
    assert d1.stop() != 0
    assert "lazy and its remote 'origin' cannot be used" in d1.log_text(), d1.log_text()
    # mounted anyway on request: status says reads can fail
    (tmp / "d2").mkdir()
    d = Daemon(tmp / "d2", lz, schedule=sched, volume_options="allow_unfetchable")
    daemons.append(d)
    d.set_clock(local_ts(2026, 5, 5, 4, 0))
    d.start()
    p = d.status_proc()
    assert p.returncode == 1, p.stdout
    st = json.loads(p.stdout)
    probs = [x for x in st["problems"] if "lazy" in x]
    assert st["healthy"] is False and probs, st["problems"]
    assert "'origin'" in probs[0] and remote.url in probs[0], probs
    # the remote back: healthy again
    shutil.move(away, remote.url)
    p = d.status_proc()
    assert p.returncode == 0, p.stdout


def test_daemon_config_with_origins_url_is_origin(tmp, make_store, mounts, make_remote,
                                                  passfile, daemons):
    lz, remote = lazy_local(make_store, mounts, make_remote, tmp, passfile)
    everything = all_packs(lz.path)
    dtmp = tmp / "d"
    dtmp.mkdir()
    # the config from before the disaster: the same folder, spelled with a /
    d = Daemon(dtmp, lz, remotes={"offsite": remote.url + "/"},
               schedule={"snapshot": "never", "push": "daily 05:00", "check": "never"})
    daemons.append(d)
    d.set_clock(local_ts(2026, 5, 5, 4, 0))
    d.start()
    assert sorted(remotes(lz.path)) == ["origin"]
    (d.mnt["vol"] / "new.txt").write_text("after the disaster\n")
    d.set_clock(local_ts(2026, 5, 5, 5, 0, 1))
    assert d.wait_history(1) == [("push", True)], d.log_text()
    assert sorted(remotes(lz.path)) == ["origin"]
    assert remotes(lz.path)["origin"]["packs_pending"] == 0
    # nothing downloaded again: the store holds only the pack it wrote
    assert not (local_packs(lz.path) & everything), "packs fetched again from origin"
