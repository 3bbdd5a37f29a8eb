"""The command line: init, volumes, passphrases, stats, background mount."""

import json
import os
import re
import signal

import pytest

from conftest import (KDF_LOG2N, PASSPHRASE, mounted,
                      pids_with_arg, tresor, wait_for)


def tree_state(path):
    """Names, sizes, modes and mtimes of everything below path."""
    out = {}
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mode, st.st_mtime_ns)
    return out


def one_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines


def volume_names(stdout_json):
    data = json.loads(stdout_json)
    if isinstance(data, dict):
        data = data.get("volumes", data)
    assert isinstance(data, list), "volume list --json: expected a list, got %r" % (data,)
    names = []
    for v in data:
        names.append(v["name"] if isinstance(v, dict) else v)
    return names


def test_version():
    p = tresor("--version")
    assert p.returncode == 0, p.stderr
    assert "tresor" in p.stdout.lower()
    assert re.search(r"\d+\.\d+", p.stdout), p.stdout


def test_init_creates_store_and_volumes(tmp, passfile):
    st = tmp / "s"
    p = tresor("init", st, "--kdf-log2n", KDF_LOG2N, "--passphrase-file", passfile)
    assert p.returncode == 0, p.stderr
    assert st.is_dir() and any(st.iterdir()), "init left no files in the store"
    for name in ("plans", "filestore-prod"):
        p = tresor("volume", "create", st, name, passphrase_env=PASSPHRASE)
        assert p.returncode == 0, p.stderr
    p = tresor("volume", "list", st, passphrase_env=PASSPHRASE)
    assert p.returncode == 0, p.stderr
    assert "plans" in p.stdout and "filestore-prod" in p.stdout
    p = tresor("volume", "list", st, "--json", passphrase_env=PASSPHRASE)
    assert p.returncode == 0, p.stderr
    assert sorted(volume_names(p.stdout)) == ["filestore-prod", "plans"]


def test_volume_create_duplicate_refused(store):
    p = store.run("volume", "create", store.path, "vol")
    assert p.returncode != 0, "creating volume 'vol' twice succeeded"
    assert "vol" in p.stderr
    p = store.run("volume", "list", store.path, "--json", check=True)
    assert volume_names(p.stdout) == ["vol"]


def test_init_on_empty_dir_ok(tmp, passfile):
    st = tmp / "empty"
    st.mkdir()
    p = tresor("init", st, "--kdf-log2n", KDF_LOG2N, "--passphrase-file", passfile)
    assert p.returncode == 0, p.stderr


def test_init_non_empty_dir_refused(tmp, passfile):
    st = tmp / "full"
    st.mkdir()
    (st / "precious.txt").write_text("do not touch")
    p = tresor("init", st, "--kdf-log2n", KDF_LOG2N, "--passphrase-file", passfile)
    assert p.returncode != 0, "init on a non-empty directory succeeded"
    assert p.stderr.strip(), "no error message"
    assert sorted(os.listdir(st)) == ["precious.txt"]
    assert (st / "precious.txt").read_text() == "do not touch"


def test_init_existing_store_refused(store):
    before = tree_state(store.path)
    p = tresor("init", store.path, "--kdf-log2n", KDF_LOG2N, "--passphrase-file", store.passfile)
    assert p.returncode != 0, "init over an existing store succeeded"
    assert tree_state(store.path) == before


def test_wrong_passphrase(store, tmp):
    wrong = tmp / "wrong"
    wrong.write_text("not the passphrase\n")
    os.chmod(wrong, 0o600)
    before = tree_state(store.path)

    p = tresor("check", store.path, "--passphrase-file", wrong)
    assert p.returncode != 0, "check with a wrong passphrase succeeded"
    lines = one_line(p.stderr)
    assert len(lines) == 1, "expected one error line, got: %r" % p.stderr
    assert str(store.path) in lines[0], "error does not name the store: %r" % lines[0]

    mnt = tmp / "m"
    mnt.mkdir()
    p = tresor("mount", store.path, "vol", mnt, "--passphrase-file", wrong, timeout=60)
    assert p.returncode != 0, "mount with a wrong passphrase succeeded"
    assert not mounted(mnt)
    lines = one_line(p.stderr)
    assert len(lines) == 1, "expected one error line, got: %r" % p.stderr
    assert str(store.path) in lines[0], "error does not name the store: %r" % lines[0]

    assert tree_state(store.path) == before, "a wrong passphrase changed the store"
    # and the right one still works
    assert store.check().returncode == 0


def test_passphrase_from_env(store, tmp):
    p = tresor("check", store.path, passphrase_env=PASSPHRASE)
    assert p.returncode == 0, p.stderr + p.stdout


def test_missing_passphrase_no_tty(tmp):
    st = tmp / "s"
    p = tresor("init", st, "--kdf-log2n", KDF_LOG2N)
    assert p.returncode == 2, "init without passphrase: exit %d, stderr %r" % (p.returncode, p.stderr)
    assert len(one_line(p.stderr)) == 1, p.stderr
    assert not st.exists() or not any(st.iterdir()), "init without passphrase created files"


def test_missing_passphrase_existing_store(store, tmp):
    p = tresor("check", store.path)
    assert p.returncode == 2, "check without passphrase: exit %d, %r" % (p.returncode, p.stderr)
    assert len(one_line(p.stderr)) == 1, p.stderr
    mnt = tmp / "m"
    mnt.mkdir()
    p = tresor("mount", store.path, "vol", mnt, timeout=60)
    assert p.returncode == 2, "mount without passphrase: exit %d, %r" % (p.returncode, p.stderr)
    assert not mounted(mnt)


def test_unknown_volume(store, tmp):
    mnt = tmp / "m"
    mnt.mkdir()
    p = tresor("mount", store.path, "nosuchvolume", mnt, "-f",
               "--passphrase-file", store.passfile, timeout=60)
    assert p.returncode != 0, "mounting an unknown volume succeeded"
    assert not mounted(mnt)
    assert "nosuchvolume" in p.stderr, "error does not name the volume: %r" % p.stderr
    assert len(one_line(p.stderr)) == 1, p.stderr


def test_not_a_store(tmp, passfile):
    d = tmp / "plain"
    d.mkdir()
    p = tresor("check", d, "--passphrase-file", passfile)
    assert p.returncode != 0
    assert str(d) in p.stderr


def test_stats_json_fresh_store(store):
    s = store.stats()
    for key in ("logical_bytes", "stored_bytes", "chunks", "packs", "dedup_ratio",
                "compression_ratio", "volumes"):
        assert key in s, "stats --json lacks %r: %r" % (key, s)
    assert s["logical_bytes"] == 0
    assert s["chunks"] == 0
    assert [v["name"] for v in s["volumes"]] == ["vol"]
    assert s["volumes"][0]["logical_bytes"] == 0
    p = store.run("stats", store.path, check=True)
    # the figures are the index's: it says so, and what to do for the latest
    assert "as of its last commit" in p.stdout.splitlines()[0], p.stdout
    assert "run sync first" in p.stdout.splitlines()[0], p.stdout


def test_check_clean_store(store):
    p = store.check()
    assert p.returncode == 0, p.stdout + p.stderr
    p = tresor("check", store.path, "--passphrase-file", store.passfile, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    json.loads(p.stdout)


def _store_with_pack(store, mounts):
    m = mounts.mount(store, "vol")
    data = os.urandom(3 * 1024 * 1024)
    with open(m / "f", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    m.close()
    assert store.check().returncode == 0
    biggest = None
    for root, _, files in os.walk(store.path):
        for n in files:
            p = os.path.join(root, n)
            if biggest is None or os.path.getsize(p) > os.path.getsize(biggest):
                biggest = p
    assert biggest and os.path.getsize(biggest) > 1024 * 1024, biggest
    return biggest


def test_check_read_data_detects_flipped_byte(store, mounts):
    pack = _store_with_pack(store, mounts)
    with open(pack, "r+b") as f:
        f.seek(os.path.getsize(pack) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x55]))
    p = tresor("check", store.path, "--read-data", "--passphrase-file", store.passfile, timeout=600)
    assert p.returncode == 1, "check --read-data missed a flipped byte: exit %d %r" % (p.returncode, p.stdout)
    assert (p.stdout + p.stderr).strip(), "check reported no problem line"


def test_check_detects_truncated_pack(store, mounts):
    pack = _store_with_pack(store, mounts)
    os.truncate(pack, os.path.getsize(pack) // 2)
    p = store.check()
    assert p.returncode == 1, "check missed a truncated pack: exit %d %r" % (p.returncode, p.stdout)
    assert (p.stdout + p.stderr).strip(), "check reported no problem line"


def test_background_mount(store, mounts, tmp):
    mnt = tmp / "bg"
    m = mounts.mount(store, "vol", mnt=mnt, foreground=False)
    assert m.pid, "no tresor daemon process found serving %s" % mnt
    (mnt / "hello.txt").write_text("hello from the background\n")
    assert (mnt / "hello.txt").read_text() == "hello from the background\n"
    m.close()
    assert not mounted(mnt)
    assert wait_for(lambda: not pids_with_arg(mnt), 10), "daemon kept running after unmount"
    m2 = mounts.mount(store, "vol", mnt=mnt, foreground=True)
    assert (mnt / "hello.txt").read_text() == "hello from the background\n"
    m2.close()


def test_stop_with_a_snapshot_file_open(store, mounts):
    """A snapshot file still open when the daemon stops: its handle never
    gets a RELEASE (the kernel drops what is queued at unmount), and the
    daemon frees it itself (under ASan, wait_exit fails on the leak that
    the crash torture once met)."""
    m = mounts.mount(store, "vol")
    (m.path / "f").write_bytes(b"snap" * 5000)
    p = store.run("snapshot", "create", store.path, "vol", check=True)
    name = p.stdout.strip()
    fd = os.open(m.path / ".snapshots" / name / "f", os.O_RDONLY)
    try:
        assert os.read(fd, 30000) == b"snap" * 5000
        os.kill(m.pid, signal.SIGTERM)
        rc = m.wait_exit()
    finally:
        try:
            os.close(fd)
        except OSError:
            pass    # ENOTCONN: the daemon is gone
    assert rc == 0, "daemon exited with %d" % rc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_foreground_signal_unmounts(store, mounts, sig):
    m = mounts.mount(store, "vol")
    with open(m / "x", "wb") as f:
        f.write(b"abc" * 1000)
    os.kill(m.pid, sig)
    rc = m.wait_exit()
    assert rc == 0, "daemon exited with %d on %s" % (rc, sig.name)
    assert wait_for(lambda: not mounted(m.path), 5), "%s left the mount in place" % sig.name
    m2 = mounts.mount(store, "vol")
    assert (m2 / "x").read_bytes() == b"abc" * 1000
