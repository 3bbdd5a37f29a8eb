"""Security checks not covered elsewhere.

  - the passphrase given in TRESOR_PASSPHRASE is not left in the
    daemon's /proc/PID/environ (nor ever in its cmdline), in foreground
    and background mode;
  - the passphrase appears in no daemon log and in no command's output,
    also of failing commands (wrong passphrase);
  - files holding secrets are 0600 (the key file), and the store's files
    are readable by nobody but the owner;
  - the control socket refuses another user (uid 101): no snapshot is
    made, and the answer says why; root is served.
Elsewhere: a non-root user cannot reach another's files through
allow_other (test_permissions.py), snapshots are read-only also for root
(test_snapshots.py, EROFS for every op).
"""

import hashlib
import json
import os
import stat
import subprocess
import sys

from conftest import PASSPHRASE, tresor

OTHER_UID = 101


def proc_bytes(pid, what):
    with open("/proc/%d/%s" % (pid, what), "rb") as f:
        return f.read()


def test_passphrase_not_in_daemon_environ_or_cmdline(store, mounts, tmp):
    secret = PASSPHRASE.encode()
    # foreground, passphrase from the environment
    m = mounts.mount(store, "vol", passfile=None, extra_env={"TRESOR_PASSPHRASE": PASSPHRASE})
    assert secret not in proc_bytes(m.pid, "cmdline")
    env = proc_bytes(m.pid, "environ")
    assert secret not in env, "the daemon's /proc/PID/environ still holds the passphrase"
    m.close()
    # background
    bg = mounts.mount(store, "vol", mnt=tmp / "bg", foreground=False,
                      extra_env={"TRESOR_PASSPHRASE": PASSPHRASE})
    assert bg.pid
    assert secret not in proc_bytes(bg.pid, "cmdline")
    assert secret not in proc_bytes(bg.pid, "environ"), \
        "the background daemon's /proc/PID/environ still holds the passphrase"
    bg.close()


def test_passphrase_never_logged(store, mounts, tmp):
    secret = PASSPHRASE
    outputs = []
    m = mounts.mount(store, "vol", extra_env={"TRESOR_LOG": "debug"})
    (m / "f").write_bytes(b"x" * 100000)
    remote = tmp / "remote"
    remote.mkdir()
    for args in (("snapshot", "create", store.path, "vol"), ("stats", store.path),
                 ("remote", "add", store.path, "origin", remote), ("push", store.path, "origin"),
                 ("check", store.path)):
        p = tresor(*args, passphrase_env=PASSPHRASE, env=dict(os.environ, TRESOR_LOG="debug"))
        assert p.returncode == 0, "%s: %s" % (args, p.stderr)
        outputs.append(p.stdout + p.stderr)
    m.close()
    bad = tresor("check", store.path, passphrase_env=secret + "wrong")
    assert bad.returncode != 0
    outputs.append(bad.stdout + bad.stderr)
    outputs.append(m.log_text())
    for text in outputs:
        assert secret not in text, "the passphrase was printed:\n" + text[-2000:]


def test_secret_files_0600(store):
    keys = [p for p in store.path.rglob("*") if p.is_file() and "key" in p.name]
    assert keys, "no key file found in %s" % store.path
    for k in keys:
        mode = stat.S_IMODE(k.stat().st_mode)
        assert mode == 0o600, "%s has mode %o" % (k, mode)
    for p in store.path.rglob("*"):
        mode = stat.S_IMODE(p.lstat().st_mode)
        if p.is_file():
            assert mode & 0o077 == 0, "%s has mode %o: others may read the store" % (p, mode)


def control_address(store_dir, vol=1):
    h = hashlib.sha256(os.path.realpath(str(store_dir)).encode()).hexdigest()[:32]
    return "\0tresor-%s-%d" % (h, vol)


ASK = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1].encode().replace(b"@", b"\0", 1))
try:
    s.sendall(b"take-snapshot 1700000000000000000 0 intruder\n")
except OSError:
    pass  # refused before the request was read: the answer is still there
print(s.recv(512).decode().strip())
"""


def snapshot_names(store):
    p = tresor("snapshot", "list", store.path, "vol", "--json", passphrase_env=PASSPHRASE,
               check=True)
    return [s["name"] for s in json.loads(p.stdout)]


def test_control_socket_refuses_other_users(store, mounts):
    m = mounts.mount(store, "vol", opts=["allow_other"])
    addr = "@" + control_address(store.path)[1:]
    before = snapshot_names(store)

    def as_uid(uid):
        def drop():
            os.setgid(uid)
            os.setuid(uid)
        return subprocess.run([sys.executable, "-c", ASK, addr], preexec_fn=drop if uid else None,
                              capture_output=True, text=True, timeout=30)
    p = as_uid(OTHER_UID)
    assert p.returncode == 0, "could not reach the socket as uid %d: %s" % (OTHER_UID, p.stderr)
    assert p.stdout.startswith("error"), "uid %d was answered %r" % (OTHER_UID, p.stdout)
    assert "root" in p.stdout
    assert snapshot_names(store) == before, "a snapshot was made for uid %d" % OTHER_UID
    # root is served (the same request works), so the refusal above is real
    p = as_uid(0)
    assert p.stdout.startswith("ok"), "root was answered %r" % p.stdout
    assert len(snapshot_names(store)) == len(before) + 1
    m.close()
