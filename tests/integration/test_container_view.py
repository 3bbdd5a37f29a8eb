"""A container's view of a tresor volume, simulated without Docker, and
the shipped integration files.

- A private mount namespace (unshare -m) bind-mounts the volume read-only
  as Docker does for `:ro`; a process as uid 101 (Odoo's user) reads files
  and snapshots there, is refused what the modes refuse, and cannot write.
- the systemd unit (tools/systemd/tresor.service.in as meson configures
  it) passes `systemd-analyze verify`.
- tools/mount.tresor mounts from an fstab line: mount(8) itself reads the
  fstab file (mount -T) and calls the helper, in a private namespace where
  /sbin holds it.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, TRESOR_BIN, mounted, pids_with_arg, tresor, wait_for
from daemon_helpers import Daemon, local_ts, store_run
from test_daemon import daemons  # noqa: F401  (fixture)

PROBE = r'''
import errno, json, os, sys
view = sys.argv[1]
out = {"uid": os.getuid()}
def attempt(name, fn):
    try:
        r = fn()
        out[name] = "OK" if r is None else r
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
def read(p):
    with open(p) as f:
        return f.read()
def write(p):
    with open(p, "w") as f:
        f.write("x")
attempt("read_plan", lambda: read(view + "/objects/OBJ-00001/plan.txt"))
attempt("read_private", lambda: read(view + "/objects/OBJ-00001/private.txt"))
attempt("read_root_only", lambda: read(view + "/root-only.txt"))
attempt("list_snapshots", lambda: sorted(os.listdir(view + "/.snapshots")))
attempt("read_snapshot", lambda: read(view + "/.snapshots/2026-02-01/objects/OBJ-00001/plan.txt"))
attempt("write_own_file", lambda: write(view + "/objects/OBJ-00001/private.txt"))
attempt("create", lambda: write(view + "/objects/OBJ-00001/new.txt"))
attempt("mkdir", lambda: os.mkdir(view + "/newdir"))
attempt("unlink", lambda: os.unlink(view + "/objects/OBJ-00001/plan.txt"))
attempt("write_snapshot", lambda: write(view + "/.snapshots/2026-02-01/objects/OBJ-00001/plan.txt"))
print(json.dumps(out))
'''


def test_container_view_read_only_as_uid_101(make_store, tmp, daemons):  # noqa: F811
    store = make_store(volumes=("plans",))
    d = Daemon(tmp, store, volumes=("plans",), volume_options="allow_other",
               schedule={"snapshot": "never", "push": "never", "check": "never"})
    daemons.append(d)
    d.set_clock(local_ts(2026, 2, 1, 12))
    d.start()
    m = d.mnt["plans"]
    obj = m / "objects" / "OBJ-00001"
    obj.mkdir(parents=True)
    (obj / "plan.txt").write_text("revision 1\n")
    (obj / "private.txt").write_text("odoo's own\n")
    os.chown(obj / "private.txt", 101, 101)
    os.chmod(obj / "private.txt", 0o600)
    (m / "root-only.txt").write_text("secret\n")
    os.chmod(m / "root-only.txt", 0o600)
    store_run(store, "snapshot", "create", store.path, "plans", "--time",
              "2026-02-01T12:00", check=True)
    (obj / "plan.txt").write_text("revision 2\n")

    view = tmp / "container-view"
    view.mkdir()
    probe = tmp / "probe.py"
    probe.write_text(PROBE)
    script = (
        "set -e\n"
        "mount --bind '{m}' '{v}'\n"
        "mount -o remount,bind,ro '{v}'\n"
        "setpriv --reuid=101 --regid=101 --clear-groups {py} '{p}' '{v}'\n"
    ).format(m=m, v=view, py=sys.executable, p=probe)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["uid"] == 101
    assert out["read_plan"] == "revision 2\n"
    assert out["read_private"] == "odoo's own\n"
    assert out["read_root_only"] == "EACCES"
    assert out["list_snapshots"] == ["2026-02-01"]
    assert out["read_snapshot"] == "revision 1\n"
    for op in ("write_own_file", "create", "mkdir", "unlink", "write_snapshot"):
        assert out[op] == "EROFS", (op, out[op])
    # the namespace was private: nothing left mounted here
    assert not mounted(view)
    assert (obj / "plan.txt").read_text() == "revision 2\n"


def test_systemd_unit_verifies(tmp):
    # the unit as meson configured it for this build (ExecStart= names the
    # installed binary: PREFIX/bin, /usr/local/bin by default)
    built = Path(TRESOR_BIN).parent / "tresor.service"
    assert built.exists(), "meson did not configure %s" % built
    unit = built.read_text()
    assert "Type=notify" in unit and "After=network-online.target" in unit
    assert "@" not in unit.replace("multi-user", "")
    m = re.search(r"^ExecStart=(/\S*/bin/tresor) daemon /etc/tresor/tresor.conf$", unit, re.M)
    assert m, unit
    # verify it against the built binary
    u = tmp / "tresor.service"
    u.write_text(unit.replace(m.group(1), TRESOR_BIN))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(u)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    # a broken unit fails: the check can fail
    bad = tmp / "broken.service"
    bad.write_text(unit.replace("Type=notify", "Type=notifyy").replace(
        m.group(1), TRESOR_BIN))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 or "notifyy" in r.stderr


def test_sd_notify_ready_and_stopping(make_store, tmp):
    """READY=1 once mounted, STOPPING=1 on SIGTERM, as Type=notify needs."""
    import socket
    store = make_store()
    d = Daemon(tmp, store, schedule={"snapshot": "never", "push": "never", "check": "never"})
    d.set_clock(local_ts(2026, 2, 1, 12))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp / "notify.sock")
    sock.bind(path)
    sock.settimeout(30)
    env = d.env()
    env["NOTIFY_SOCKET"] = path
    d.logf = open(d.log, "ab")
    d.proc = subprocess.Popen([TRESOR_BIN, "daemon", str(d.cfg)], stdin=subprocess.DEVNULL,
                              stdout=d.logf, stderr=d.logf, env=env, start_new_session=True)
    try:
        msg = sock.recv(4096).decode()
        assert "READY=1" in msg.split("\n")
        assert mounted(d.mnt["vol"]), "READY=1 only after the mounts are up"
    finally:
        rc = d.stop()
    msg = sock.recv(4096).decode()
    assert "STOPPING=1" in msg
    assert rc == 0


def test_fstab_line_mounts_through_mount_helper(make_store, tmp):
    store = make_store(volumes=("plans",))
    mnt = tmp / "plans"
    mnt.mkdir()
    fstab = tmp / "fstab"
    fstab.write_text("# a line as in /etc/fstab\n"
                     "%s#plans  %s  tresor  defaults,allow_other,passphrase_file=%s,_netdev  0 0\n"
                     % (store.path, mnt, store.passfile))
    sbin = tmp / "sbin"
    sbin.mkdir()
    # mount(8) runs /sbin/mount.TYPE: give it a /sbin with the helper, in a
    # private mount namespace only
    script = r'''
set -e
for f in /sbin/*; do ln -s "$f" "{sbin}/$(basename "$f")"; done
cp '{helper}' '{sbin}/mount.tresor'
mount --bind '{sbin}' /sbin
mount -T '{fstab}' '{mnt}'
grep -q ' {mnt} .* fuse.tresor ' /proc/self/mountinfo
echo hello > '{mnt}/written-through-fstab-mount'
setpriv --reuid=101 --regid=101 --clear-groups cat '{mnt}/written-through-fstab-mount'
umount '{mnt}'
'''.format(sbin=sbin, helper=REPO / "tools" / "mount.tresor", fstab=fstab, mnt=mnt)
    env = dict(os.environ, TRESOR_BIN=TRESOR_BIN)
    env.pop("TRESOR_PASSPHRASE", None)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == "hello\n"  # read back as uid 101: allow_other was passed
    # the mount process commits as it ends, after umount returned
    assert wait_for(lambda: not pids_with_arg(mnt), 60, 0.1), "mount process did not end"
    # the volume kept the file (the mount was real)
    p = store_run(store, "volume", "list", store.path, "--json", check=True)
    assert json.loads(p.stdout)[0]["files"] == 1
    # a source without '#' is refused with a clear message
    r = subprocess.run([str(REPO / "tools" / "mount.tresor"), str(store.path), str(mnt),
                        "-o", "passphrase_file=%s" % store.passfile],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "STORE#VOLUME" in r.stderr
