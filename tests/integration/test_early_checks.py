"""Checks that come early and agree (issue 18).

- A passphrase file others may read is refused with the same words by the
  CLI, the fstab helper mount.tresor and the daemon (one check:
  secret_file_check), and so is a remote's credentials file.
- `daemon --dry-run` makes the checks the real start makes: what the
  start refuses, the dry run refuses too (and nothing is mounted); it runs
  while the daemon runs (a second real start is refused).
- `remote add` tries the connection: a DNS typo, a changed host key, a key
  the server does not take are one line and nothing is added;
  `--no-check` adds without trying.
- `sftp://user@host/path` without a port is port 22.
"""

import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, TRESOR_BIN, base_env, mounted, tresor
from daemon_helpers import Daemon, local_ts
from test_daemon import daemons  # noqa: F401

import test_remote_sftp as sftpmod

MOUNT_HELPER = REPO / "tools" / "mount.tresor"


def err_line(p):
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, "expected one line, got %r" % p.stderr
    return lines[0]


def remotes(store):
    import json
    p = tresor("remote", "list", store.path, "--json", check=True)
    return [r["name"] for r in json.loads(p.stdout)]


# --------------------------------------------------------------------------
# one rule for a secret file, whoever reads it
# --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_passphrase_file_mode_same_for_cli_helper_and_daemon(make_store, tmp, mode):
    store = make_store()
    os.chmod(store.passfile, mode)
    want = "passphrase file %s is readable by others: chmod 600 %s (its mode is %04o)" % (
        store.passfile, store.passfile, mode)
    mnt = tmp / "m"
    mnt.mkdir()
    try:
        cli = tresor("check", store.path, "--passphrase-file", store.passfile)
        mnt_cli = tresor("mount", store.path, "vol", mnt, "--passphrase-file", store.passfile)
        helper = subprocess.run([str(MOUNT_HELPER), "%s#vol" % store.path, str(mnt), "-o",
                                 "passphrase_file=%s" % store.passfile],
                                capture_output=True, text=True, timeout=60,
                                env=base_env(TRESOR_BIN=TRESOR_BIN))
        env_file = tresor("check", store.path,
                          env=base_env(TRESOR_PASSPHRASE_FILE=str(store.passfile)))
        d = Daemon(tmp, store)
        d.set_clock(local_ts(2026, 3, 28, 12))
        dry = tresor("daemon", d.cfg, "--dry-run", env=d.env(), timeout=60)
        real = tresor("daemon", d.cfg, env=d.env(), timeout=60)
    finally:
        os.chmod(store.passfile, 0o600)
    for name, p in [("check", cli), ("mount", mnt_cli), ("mount.tresor", helper),
                    ("TRESOR_PASSPHRASE_FILE", env_file), ("daemon --dry-run", dry),
                    ("daemon", real)]:
        assert p.returncode == 1, (name, p.returncode, p.stdout, p.stderr)
        assert want in err_line(p), (name, p.stderr)
    assert not mounted(mnt) and not mounted(d.mnt["vol"])
    assert "ok:" not in dry.stdout
    # 0600 is fine everywhere
    assert tresor("check", store.path, "--passphrase-file", store.passfile).returncode == 0
    assert tresor("daemon", d.cfg, "--dry-run", env=d.env(), timeout=60).returncode == 0


# --------------------------------------------------------------------------
# the dry run refuses what the start refuses
# --------------------------------------------------------------------------
def s3_remote_conf(creds):
    # the endpoint is never reached: the credentials file is refused first
    return ("[remote offsite]\nurl = s3://bucket/prefix\nendpoint = https://127.0.0.1:9\n"
            "path-style = yes\ncredentials-file = %s\n" % creds)


@pytest.mark.parametrize("case", ["group-readable", "missing"])
def test_dry_run_refuses_credentials_file_the_start_refuses(make_store, tmp, case):
    store = make_store()
    creds = tmp / "aws-credentials"
    if case == "group-readable":
        creds.write_text("[default]\naws_access_key_id = A\naws_secret_access_key = B\n")
        os.chmod(creds, 0o640)
        words = "credentials file %s is readable by others: chmod 600 %s" % (creds, creds)
    else:
        words = "--credentials-file %s: No such file or directory" % creds
    d = Daemon(tmp, store)
    with open(d.cfg, "a") as f:
        f.write(s3_remote_conf(creds))
    d.set_clock(local_ts(2026, 3, 28, 12))
    env = d.env()
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    dry = tresor("daemon", d.cfg, "--dry-run", env=env, timeout=60)
    assert dry.returncode == 1, (dry.stdout, dry.stderr)
    line = err_line(dry)
    assert words in line and "[remote offsite]" in line, line
    assert "ok:" not in dry.stdout and "would add" not in dry.stdout
    real = tresor("daemon", d.cfg, env=env, timeout=60)
    assert real.returncode == 1, real.stderr
    assert words in real.stderr and "[remote offsite]" in real.stderr, real.stderr
    assert not mounted(d.mnt["vol"])
    assert remotes(store) == []
    assert not (store.path / "daemon.state").exists()


def test_known_remote_with_exposed_credentials_refused_by_both(make_store, tmp):
    """A remote the store has already: its files are checked at start too."""
    store = make_store()
    creds = tmp / "aws-credentials"
    creds.write_text("[default]\naws_access_key_id = A\naws_secret_access_key = B\n")
    os.chmod(creds, 0o600)
    p = tresor("remote", "add", store.path, "offsite", "s3://bucket/prefix", "--endpoint",
               "https://127.0.0.1:9", "--path-style", "--credentials-file", creds,
               "--no-check")
    assert p.returncode == 0, p.stderr
    d = Daemon(tmp, store)
    with open(d.cfg, "a") as f:
        f.write("[remote offsite]\n")
    d.set_clock(local_ts(2026, 3, 28, 12))
    assert tresor("daemon", d.cfg, "--dry-run", env=d.env(), timeout=60).returncode == 0
    os.chmod(creds, 0o644)
    want = "credentials file %s is readable by others" % creds
    dry = tresor("daemon", d.cfg, "--dry-run", env=d.env(), timeout=60)
    real = tresor("daemon", d.cfg, env=d.env(), timeout=60)
    for p in (dry, real):
        assert p.returncode == 1 and want in err_line(p), p.stderr
    assert not mounted(d.mnt["vol"])


def test_dry_run_while_the_daemon_runs(make_store, tmp, daemons):
    store = make_store()
    remote = tmp / "offsite"
    remote.mkdir()
    d = Daemon(tmp, store, remotes={"offsite": str(remote)})
    daemons.append(d)
    d.set_clock(local_ts(2026, 3, 28, 12))
    d.start()
    assert mounted(d.mnt["vol"])
    dry = tresor("daemon", d.cfg, "--dry-run", env=d.env(), timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "ok: store %s" % store.path in dry.stdout
    assert "a tresor daemon runs for store" in dry.stdout
    # a config error is still found while it runs
    bad = tmp / "bad.conf"
    bad.write_text(d.cfg.read_text() + "[volume nosuch]\nmountpoint = %s\n" % tmp)
    p = tresor("daemon", bad, "--dry-run", env=d.env(), timeout=60)
    assert p.returncode == 1 and "has no volume 'nosuch'" in err_line(p)
    # a second real start is refused, and the running one is untouched
    p = tresor("daemon", d.cfg, env=d.env(), timeout=60)
    assert p.returncode == 1 and "already serves store" in err_line(p), p.stderr
    assert mounted(d.mnt["vol"]) and d.proc.poll() is None
    assert d.status_proc().returncode == 0


# --------------------------------------------------------------------------
# remote add tries the connection
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sshd():
    srv = sftpmod.SshServer()
    try:
        srv.start()
        yield srv
    finally:
        srv.close()


def test_remote_add_dns_typo_one_line_nothing_added(make_store, tmp, sshd):
    store = make_store()
    url = "sftp://%s@no-such-host.invalid/backup" % sshd.user
    p = tresor("remote", "add", store.path, "offsite", url, *sshd.opts(), timeout=60)
    assert p.returncode == 1
    line = err_line(p)
    assert "no-such-host.invalid" in line and "resolve" in line.lower(), line
    assert "--no-check" in line
    assert remotes(store) == []
    # --no-check adds it without trying
    p = tresor("remote", "add", store.path, "offsite", url, *sshd.opts(), "--no-check",
               timeout=60)
    assert p.returncode == 0, p.stderr
    assert remotes(store) == ["offsite"]


def test_remote_add_changed_host_key(make_store, tmp, sshd):
    store = make_store()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "other")],
                   check=True)
    pub = (tmp / "other.pub").read_text().split()
    kh = tmp / "known_hosts"
    kh.write_text("[127.0.0.1]:%d %s %s\n" % (sshd.port, pub[0], pub[1]))
    p = tresor("remote", "add", store.path, "offsite", sshd.url("hk"),
               *sshd.opts(known_hosts=kh), timeout=60)
    assert p.returncode == 1
    line = err_line(p)
    assert "does NOT match" in line and str(kh) in line, line
    assert remotes(store) == []
    # the right host key: added
    p = tresor("remote", "add", store.path, "offsite", sshd.url("hk"), *sshd.opts(),
               timeout=60)
    assert p.returncode == 0, p.stderr
    assert remotes(store) == ["offsite"]


def test_remote_add_key_not_accepted(make_store, tmp, sshd):
    store = make_store()
    key = tmp / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    p = tresor("remote", "add", store.path, "offsite", sshd.url("auth"),
               *sshd.opts(key=key), timeout=60)
    assert p.returncode == 1
    line = err_line(p)
    assert sshd.url("auth") in line and "--no-check" in line, line
    assert remotes(store) == []


def test_remote_set_tries_the_new_options(make_store, tmp, sshd):
    store = make_store()
    p = tresor("remote", "add", store.path, "offsite", sshd.url("set"), *sshd.opts(),
               timeout=60)
    assert p.returncode == 0, p.stderr
    key = tmp / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    p = tresor("remote", "set", store.path, "offsite", "--ssh-key", key, timeout=60)
    assert p.returncode == 1 and "nothing changed" in err_line(p)
    import json
    rl = json.loads(tresor("remote", "list", store.path, "--json", check=True).stdout)
    assert rl[0]["ssh_key"] == str(sshd.key)


def test_dry_run_tries_a_new_remote_as_remote_add_does(make_store, tmp):
    """A new remote's server that does not answer: the dry run says so."""
    store = make_store()
    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kh = home / "known_hosts"
    kh.write_text("")
    d = Daemon(tmp, store)
    with open(d.cfg, "a") as f:
        f.write("[remote offsite]\nurl = sftp://u@no-such-host.invalid/x\n"
                "ssh-key = %s\nknown-hosts = %s\n" % (key, kh))
    d.set_clock(local_ts(2026, 3, 28, 12))
    dry = tresor("daemon", d.cfg, "--dry-run", env=d.env(), timeout=60)
    assert dry.returncode == 1 and "no-such-host.invalid" in err_line(dry), dry.stderr
    real = tresor("daemon", d.cfg, env=d.env(), timeout=60)
    assert real.returncode == 1 and "no-such-host.invalid" in real.stderr, real.stderr
    assert not mounted(d.mnt["vol"]) and remotes(store) == []


# --------------------------------------------------------------------------
# sftp:// without a port: 22
# --------------------------------------------------------------------------
@pytest.mark.parametrize("port,url_port", [(22, ""), (23, ":23"), (2222, ":2222")])
def test_sftp_default_port_is_22(make_store, tmp, port, url_port):
    store = make_store()
    home = tmp / "home"
    home.mkdir()
    key = tmp / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    # no known_hosts at all: the message names the port it would use
    p = tresor("remote", "add", store.path, "box", "sftp://u@127.0.0.1%s/backup" % url_port,
               "--ssh-key", key, env=base_env(HOME=str(home)), timeout=60)
    assert p.returncode == 1
    assert "ssh-keyscan -p %d 127.0.0.1" % port in err_line(p), p.stderr


def test_sftp_url_without_port_connects_to_22(make_store, tmp, sshd):
    """What the probe tries is port 22, not 23 (nothing listens on either
    here, or the sshd of the host answers with its own host key)."""
    store = make_store()
    p = tresor("remote", "add", store.path, "box", "sftp://%s@127.0.0.1/x" % sshd.user,
               *sshd.opts(), timeout=60)
    line = err_line(p)
    assert p.returncode == 1
    assert "port 22" in line or "[127.0.0.1]:22" in line or "127.0.0.1 " in line, line
    assert "port 23" not in line and ":23" not in line, line


def test_sftp_port_kept_explicit_and_old_rows_keep_23(make_store, tmp):
    """A new remote is stored with its port written out; a row an older
    tresor stored without one meant port 23 then, and still does."""
    import json
    import sqlite3
    store = make_store()
    key = tmp / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kh = tmp / "kh"
    kh.write_text("")
    p = tresor("remote", "add", store.path, "new", "sftp://u@box.example/tresor",
               "--ssh-key", key, "--known-hosts", kh, "--no-check")
    assert p.returncode == 0, p.stderr
    p = tresor("remote", "add", store.path, "old", "sftp://u@old.example:2222/tresor",
               "--ssh-key", key, "--known-hosts", kh, "--no-check")
    assert p.returncode == 0, p.stderr
    # what a tresor from before issue 18 left in the index
    db = sqlite3.connect(str(store.path / "index.db"))
    with db:
        db.execute("UPDATE remote SET url = 'sftp://u@old.example/tresor' WHERE name = 'old'")
    db.close()
    rl = {r["name"]: r["url"] for r in json.loads(
        tresor("remote", "list", store.path, "--json", check=True).stdout)}
    assert rl == {"new": "sftp://u@box.example:22/tresor",
                  "old": "sftp://u@old.example:23/tresor"}, rl
