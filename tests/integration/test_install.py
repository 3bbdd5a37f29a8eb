"""Installs like a system tool (issue 18).

- `meson install` (a prefix other than /usr, into a DESTDIR) puts
  mount.tresor in /sbin, where mount(8) looks, whatever the prefix, with
  the installed binary's path in it; the systemd unit's ExecStart= names
  the installed bindir; the man pages tresor.conf(5) and mount.tresor(8)
  are installed.
- `mount -t tresor STORE#VOLUME DIR` works with the installed helper and
  the installed binary (in a private mount namespace, /sbin and /opt
  replaced there only); the mount's source is STORE#VOLUME; a second
  `mount -a` of the same fstab exits 0 and mounts nothing twice.
- A mount point holding files is refused (CLI, fstab helper, daemon)
  unless `-o nonempty`.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, TRESOR_BIN, base_env, mounted, tresor, wait_for
from daemon_helpers import Daemon, local_ts

PREFIX = "/opt/tresor-install-test"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh build with --prefix=PREFIX, installed into a DESTDIR."""
    top = tmp_path_factory.mktemp("install")
    build = top / "build"
    dest = top / "dest"
    env = dict(os.environ, DESTDIR=str(dest))
    for cmd in (["meson", "setup", str(build), str(REPO), "--prefix=" + PREFIX,
                 "--buildtype=plain"],
                ["ninja", "-C", str(build), "tresor"],
                ["meson", "install", "-C", str(build), "--quiet", "--no-rebuild"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        assert r.returncode == 0, "%s:\n%s%s" % (cmd, r.stdout[-3000:], r.stderr[-3000:])
    yield dest
    if os.environ.get("TRESOR_KEEP_TMP") != "1":
        shutil.rmtree(top, ignore_errors=True)


def test_install_layout(installed):
    dest = installed
    helper = dest / "sbin" / "mount.tresor"
    assert helper.exists(), sorted(str(p) for p in dest.rglob("*"))
    assert os.access(helper, os.X_OK)
    assert not (dest / PREFIX.lstrip("/") / "sbin" / "mount.tresor").exists()
    assert 'installed_bin="%s/bin/tresor"' % PREFIX in helper.read_text()
    unit = (dest / PREFIX.lstrip("/") / "lib/systemd/system/tresor.service").read_text()
    assert "ExecStart=%s/bin/tresor daemon /etc/tresor/tresor.conf" % PREFIX in unit
    assert "@" not in unit.replace("multi-user", "")
    man = dest / PREFIX.lstrip("/") / "share" / "man"
    for page in ("man5/tresor.conf.5", "man8/mount.tresor.8", "man1/tresor.1"):
        assert (man / page).exists(), page
    assert (dest / PREFIX.lstrip("/") / "share/doc/tresor/CLI.md").exists()
    r = subprocess.run(["systemd-analyze", "verify", "--man=no",
                        str(dest / PREFIX.lstrip("/") / "lib/systemd/system/tresor.service")],
                       capture_output=True, text=True, timeout=120)
    # the binary is not at PREFIX outside the namespace: that is the only complaint
    assert "Type=" not in r.stderr and "Unknown" not in r.stderr, r.stderr


def namespace_script(installed, body):
    """body run in a private mount namespace where /sbin holds the installed
    helper and PREFIX the installed files (the installed binary is this
    build's, so that the sanitizer builds are tested too)."""
    sbin = installed.parent / "sbin-view"
    if not sbin.exists():
        sbin.mkdir()
        for f in Path("/sbin").iterdir():
            (sbin / f.name).symlink_to(f)
        (sbin / "mount.tresor").unlink(missing_ok=True)
        shutil.copy(installed / "sbin" / "mount.tresor", sbin / "mount.tresor")
        binp = installed / PREFIX.lstrip("/") / "bin" / "tresor"
        binp.unlink()
        shutil.copy(TRESOR_BIN, binp)
    return r'''
set -e
mount --bind '{sbin}' /sbin
mount -t tmpfs tmpfs /opt
mkdir -p '{prefix}'
mount --bind '{dest}{prefix}' '{prefix}'
{body}
'''.format(sbin=sbin, prefix=PREFIX, dest=installed, body=body)


def run_ns(script):
    env = base_env()
    env.pop("TRESOR_BIN", None)  # the helper must find the installed binary itself
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"  # no build dir in PATH
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=180, env=env)


def test_mount_t_tresor_and_mount_a_twice(installed, make_store, tmp):
    store = make_store(volumes=("plans",))
    mnt = tmp / "plans"
    mnt.mkdir()
    fstab = tmp / "fstab"
    fstab.write_text("%s#plans  %s  tresor  defaults,passphrase_file=%s  0 0\n"
                     % (store.path, mnt, store.passfile))
    body = r'''
mount -t tresor '{store}#plans' '{mnt}' -o passphrase_file='{pf}'
findmnt -n -o SOURCE,FSTYPE '{mnt}'
echo via-mount-t > '{mnt}/a'
umount '{mnt}'
# the mount process commits and lets go of the volume as it ends
for i in $(seq 300); do pgrep -f -- 'mount {store} plans {mnt}' >/dev/null || break; sleep 0.1; done
mount -a -T '{fstab}'
echo first=$?
mount -a -T '{fstab}' 2>&1
echo second=$?
mount -T '{fstab}' '{mnt}' 2>&1 || echo third-failed
echo count=$(grep -c ' {mnt} ' /proc/self/mountinfo)
cat '{mnt}/a'
umount '{mnt}'
for i in $(seq 300); do pgrep -f -- 'mount {store} plans {mnt}' >/dev/null || break; sleep 0.1; done
'''.format(store=store.path, mnt=mnt, pf=store.passfile, fstab=fstab)
    r = run_ns(namespace_script(installed, body))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0].split() == ["%s#plans" % store.path, "fuse.tresor"], r.stdout
    assert "first=0" in out and "second=0" in out, r.stdout
    assert "third-failed" not in out, r.stdout
    assert "count=1" in out and out[-1] == "via-mount-t", r.stdout
    assert not mounted(mnt)


def test_cli_mount_twice_same_source_is_a_note(make_store, mounts, tmp):
    store = make_store(volumes=("vol", "other"))
    m = mounts.mount(store, "vol")
    p = tresor("mount", store.path, "vol", m.path, "--passphrase-file", store.passfile)
    assert p.returncode == 0, p.stderr
    assert "already mounted on" in p.stderr and "nothing to do" in p.stderr
    # another volume on the same place: refused, naming what is there
    p = tresor("mount", store.path, "other", m.path, "--passphrase-file", store.passfile)
    assert p.returncode == 1 and "%s#vol is mounted there" % store.path in p.stderr, p.stderr
    src = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(m.path)],
                         capture_output=True, text=True).stdout.strip()
    assert src == "%s#vol" % store.path


def test_nonempty_mount_point_refused_unless_asked(make_store, tmp):
    store = make_store()
    mnt = tmp / "m"
    mnt.mkdir()
    (mnt / "hidden.txt").write_text("would vanish under the mount\n")
    p = tresor("mount", store.path, "vol", mnt, "--passphrase-file", store.passfile)
    assert p.returncode == 1 and "not empty" in p.stderr and "nonempty" in p.stderr
    assert not mounted(mnt)
    helper = subprocess.run([str(REPO / "tools" / "mount.tresor"), "%s#vol" % store.path,
                             str(mnt), "-o", "passphrase_file=%s" % store.passfile],
                            capture_output=True, text=True, timeout=60,
                            env=base_env(TRESOR_BIN=TRESOR_BIN))
    assert helper.returncode == 1 and "not empty" in helper.stderr
    assert not mounted(mnt)
    # the daemon refuses before mounting anything (the dry run too)
    d = Daemon(tmp, store)
    (d.mnt["vol"] / "hidden.txt").write_text("x")
    d.set_clock(local_ts(2026, 3, 28, 12))
    for extra in (["--dry-run"], []):
        p = tresor("daemon", d.cfg, *extra, env=d.env(), timeout=60)
        assert p.returncode == 1 and "is not empty" in p.stderr, p.stderr
    assert not mounted(d.mnt["vol"])
    # asked for: mounted over, and the file is back after the unmount
    p = tresor("mount", store.path, "vol", mnt, "-o", "nonempty",
               "--passphrase-file", store.passfile)
    assert p.returncode == 0, p.stderr
    try:
        assert mounted(mnt) and not (mnt / "hidden.txt").exists()
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
    assert wait_for(lambda: not mounted(mnt), 20, 0.1)
    assert (mnt / "hidden.txt").read_text() == "would vanish under the mount\n"
