"""What users of restic and kopia reach for (issue 18).

- `tresor COMMAND --help` prints that command's usage on stdout, exit 0.
- Exit codes are distinct and documented in one place (docs/CLI.md, and
  tresor(1)): 2 usage, 3 no daemon, 4 wrong passphrase, 5 no such store.
- The passphrase from TRESOR_PASSPHRASE_FILE or TRESOR_PASSPHRASE_COMMAND.
- AWS_ENDPOINT_URL and AWS_REGION for S3 remotes; `remote add` with wrong
  S3 secrets fails at once, in one line.
"""

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, base_env, mounted, tresor
from daemon_helpers import Daemon, local_ts

import test_remote_s3 as s3mod

COMMANDS = ["init", "volume", "mount", "stats", "check", "snapshot", "restore", "prune",
            "remote", "push", "recover", "repair", "key", "daemon", "status"]


def one_line(p):
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]


# --------------------------------------------------------------------------
# --help
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", COMMANDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_command_help(cmd, flag, tmp):
    p = tresor(cmd, flag)
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert p.stderr == ""
    assert p.stdout.startswith("usage:\n  tresor %s " % cmd), p.stdout
    # only that command's lines
    for line in p.stdout.splitlines():
        if line.startswith("  tresor "):
            assert line.startswith("  tresor %s " % cmd), line
    assert "man tresor-%s" % cmd in p.stdout


def test_help_after_arguments_and_unknown_command(tmp):
    p = tresor("mount", "/srv/tresor", "plans", "--help")
    assert p.returncode == 0 and "tresor mount STORE VOLUME MOUNTPOINT" in p.stdout
    p = tresor("remote", "add", "--help")
    assert p.returncode == 0 and "--no-check" in p.stdout
    p = tresor("frobnicate", "--help")
    assert p.returncode == 2 and "unknown command" in p.stderr


# --------------------------------------------------------------------------
# exit codes
# --------------------------------------------------------------------------
def documented_codes(text):
    """{code: meaning} from the exit-code table of docs/CLI.md."""
    out = {}
    for m in re.finditer(r"^\| *(\d+) *\| *([^|]+)\|", text, re.M):
        out[int(m.group(1))] = m.group(2).strip()
    return out


def test_exit_codes_documented_and_distinct():
    src = (REPO / "tools" / "cli.h").read_text()
    defined = {int(v): k for k, v in re.findall(r"#define (EXIT_\w+) (\d+)", src)}
    assert len(defined) == len(re.findall(r"#define EXIT_\w+ \d+", src)), "a code used twice"
    doc = documented_codes((REPO / "docs" / "CLI.md").read_text())
    for code in [0, 1] + sorted(defined):
        assert code in doc, "exit code %d not in docs/CLI.md" % code
    man = (REPO / "docs" / "man" / "tresor.1").read_text()
    sect = man[man.index(".SH EXIT STATUS"):]
    sect = sect[:sect.index("\n.SH", 5)]
    for code in doc:
        assert re.search(r"\\fB%d\\fR" % code, sect), "exit code %d not in tresor(1)" % code


def test_wrong_passphrase_is_4_everywhere(make_store, tmp):
    store = make_store()
    wrong = tmp / "wrong"
    fd = os.open(str(wrong), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"not the passphrase\n")
    os.close(fd)
    mnt = tmp / "m"
    mnt.mkdir()
    remote = tmp / "remote"
    remote.mkdir()
    tresor("remote", "add", store.path, "usb", remote, check=True)
    tresor("push", store.path, "usb", "--passphrase-file", store.passfile, check=True)
    for args in (["check", store.path], ["mount", store.path, "vol", mnt],
                 ["push", store.path, "usb"],
                 ["recover", remote, tmp / "rec"],
                 ["restore", "--remote", remote, "vol", "latest", "/", tmp / "out"]):
        p = tresor(*args, "--passphrase-file", wrong, timeout=120)
        assert p.returncode == 4, (args, p.returncode, p.stderr)
        assert "wrong passphrase" in one_line(p)
    assert not mounted(mnt)
    # and a bad command line stays 2, a missing store 5
    assert tresor("check").returncode == 2
    p = tresor("check", tmp / "nosuch", "--passphrase-file", store.passfile)
    assert p.returncode == 5 and "not a tresor store" in p.stderr
    p = tresor("stats", tmp / "nosuch")
    assert p.returncode == 5


def test_status_codes_distinct(make_store, tmp):
    store = make_store()
    d = Daemon(tmp, store)
    p = tresor("status", d.cfg)
    assert p.returncode == 3 and "no tresor daemon runs" in p.stderr
    moved = tmp / "moved"
    store.path.rename(moved)
    try:
        p = tresor("status", d.cfg)
        assert p.returncode == 5 and str(store.path) in p.stderr, p.stderr
    finally:
        moved.rename(store.path)
    bad = tmp / "bad.conf"
    bad.write_text("[tresor]\nstore = relative\n")
    assert tresor("status", bad).returncode == 2


# --------------------------------------------------------------------------
# the passphrase from a file or a command named in the environment
# --------------------------------------------------------------------------
def test_passphrase_file_and_command_from_environment(make_store, tmp):
    store = make_store()
    p = tresor("check", store.path, env=base_env(TRESOR_PASSPHRASE_FILE=str(store.passfile)))
    assert p.returncode == 0, p.stderr
    cmd = "cat '%s'" % store.passfile
    p = tresor("check", store.path, env=base_env(TRESOR_PASSPHRASE_COMMAND=cmd))
    assert p.returncode == 0, p.stderr
    # the command's first line only, whatever follows
    p = tresor("check", store.path,
               env=base_env(TRESOR_PASSPHRASE_COMMAND="printf '%s\\nnoise\\n'" % PASSPHRASE))
    assert p.returncode == 0, p.stderr
    # a failing command is an error naming it, not a prompt or an empty passphrase
    p = tresor("check", store.path, env=base_env(TRESOR_PASSPHRASE_COMMAND="exit 7"))
    assert p.returncode == 1 and "TRESOR_PASSPHRASE_COMMAND failed (exit code 7)" in one_line(p)
    p = tresor("check", store.path, env=base_env(TRESOR_PASSPHRASE_COMMAND="echo wrong"))
    assert p.returncode == 4
    # --passphrase-file wins over both
    wrong = tmp / "wrong"
    fd = os.open(str(wrong), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"wrong\n")
    os.close(fd)
    p = tresor("check", store.path, "--passphrase-file", store.passfile,
               env=base_env(TRESOR_PASSPHRASE_FILE=str(wrong),
                            TRESOR_PASSPHRASE_COMMAND="echo wrong"))
    assert p.returncode == 0, p.stderr
    # the file before the command, the command before TRESOR_PASSPHRASE
    p = tresor("check", store.path,
               env=base_env(TRESOR_PASSPHRASE_FILE=str(store.passfile),
                            TRESOR_PASSPHRASE_COMMAND="echo wrong"))
    assert p.returncode == 0, p.stderr
    p = tresor("check", store.path, env=base_env(TRESOR_PASSPHRASE_COMMAND=cmd,
                                                 TRESOR_PASSPHRASE="wrong"))
    assert p.returncode == 0, p.stderr
    # a missing TRESOR_PASSPHRASE_FILE is an error naming the variable
    p = tresor("check", store.path, env=base_env(TRESOR_PASSPHRASE_FILE=str(tmp / "gone")))
    assert p.returncode == 1 and "TRESOR_PASSPHRASE_FILE" in one_line(p)


def test_daemon_takes_passphrase_file_from_environment(make_store, tmp):
    store = make_store()
    d = Daemon(tmp, store)
    text = d.cfg.read_text().replace("passphrase-file = %s\n" % store.passfile, "")
    d.cfg.write_text(text)
    d.set_clock(local_ts(2026, 3, 28, 12))
    p = tresor("daemon", d.cfg, "--dry-run", env=d.env(), timeout=60)
    assert p.returncode == 1 and "no passphrase-file" in p.stderr
    env = d.env()
    env["TRESOR_PASSPHRASE_FILE"] = str(store.passfile)
    p = tresor("daemon", d.cfg, "--dry-run", env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    os.chmod(store.passfile, 0o640)
    try:
        p = tresor("daemon", d.cfg, "--dry-run", env=env, timeout=60)
    finally:
        os.chmod(store.passfile, 0o600)
    assert p.returncode == 1 and "chmod 600" in p.stderr


# --------------------------------------------------------------------------
# AWS_ENDPOINT_URL, AWS_REGION; wrong secrets found by remote add
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3srv():
    s3mod.npm_install()
    workdir = Path(tempfile.mkdtemp(prefix="tresor-conv-s3rver-"))
    srv = s3mod.S3rver(workdir)
    srv.start()
    yield srv
    srv.stop()
    if os.environ.get("TRESOR_KEEP_TMP") != "1":
        shutil.rmtree(workdir, ignore_errors=True)


def test_aws_endpoint_and_region_from_environment(make_store, tmp, s3srv):
    store = make_store()
    home = tmp / "home"
    home.mkdir()
    env = s3mod.clean_env(AWS_ACCESS_KEY_ID=s3mod.ACCESS_KEY,
                          AWS_SECRET_ACCESS_KEY=s3mod.SECRET_KEY, HOME=home)
    env.pop("TRESOR_PASSPHRASE", None)
    url = "s3://%s/conv-env" % s3mod.BUCKET
    # no endpoint anywhere: AWS itself, which is not reachable from here
    # (or refuses these keys): the check fails
    p = tresor("remote", "add", store.path, "s3", url, env=env, timeout=120)
    assert p.returncode == 1, p.stdout
    # the endpoint from the environment: reached, added, pushed to
    env["AWS_ENDPOINT_URL"] = s3srv.endpoint
    env["AWS_REGION"] = "eu-central-1"
    p = tresor("remote", "add", store.path, "s3", url, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    rl = json.loads(tresor("remote", "list", store.path, "--json", env=env,
                           check=True).stdout)
    assert rl[0]["endpoint"] is None, "the environment is read at each use, not stored"
    p = tresor("push", store.path, "s3", "--json", "--passphrase-file", store.passfile,
               env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["packs"] >= 0
    # what was pushed is there: a recovery through the same environment reads it
    p = tresor("recover", url, tmp / "rec", "--passphrase-file", store.passfile, env=env,
               timeout=300)
    assert p.returncode == 0, p.stderr
    # AWS_REGION is used: a malformed one is refused by name
    env["AWS_REGION"] = "Not_A_Region"
    p = tresor("push", store.path, "s3", "--passphrase-file", store.passfile, env=env,
               timeout=120)
    assert p.returncode == 1 and "bad region 'Not_A_Region'" in p.stderr, p.stderr
    # an option given wins over the environment
    env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    env.pop("AWS_REGION")
    p = tresor("remote", "add", store.path, "s3b", "s3://%s/conv-opt" % s3mod.BUCKET,
               "--endpoint", s3srv.endpoint, env=env, timeout=120)
    assert p.returncode == 0, p.stderr


def test_remote_add_wrong_s3_secret_one_line(make_store, tmp, s3srv):
    store = make_store()
    home = tmp / "home"
    home.mkdir()
    env = s3mod.clean_env(AWS_ACCESS_KEY_ID=s3mod.ACCESS_KEY,
                          AWS_SECRET_ACCESS_KEY="not-the-secret", HOME=home)
    p = tresor("remote", "add", store.path, "s3", "s3://%s/conv-auth" % s3mod.BUCKET,
               "--endpoint", s3srv.endpoint, "--path-style", env=env, timeout=120)
    assert p.returncode == 1
    line = one_line(p)
    assert "s3://%s/conv-auth" % s3mod.BUCKET in line and "--no-check" in line, line
    assert "not-the-secret" not in line
    assert tresor("remote", "list", store.path, "--json").stdout.strip() == "[]"


def test_new_man_pages_render_and_are_installed():
    import subprocess
    for page in ("tresor.conf.5", "mount.tresor.8"):
        p = REPO / "docs" / "man" / page
        r = subprocess.run(["man", "--warnings", "-l", str(p)], capture_output=True, text=True,
                           env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"), timeout=60)
        assert r.returncode == 0 and not r.stderr.strip(), (page, r.stderr)
        assert "SYNOPSIS" in r.stdout and "EXAMPLE" in r.stdout
        assert "'docs/man/%s'" % page in (REPO / "meson.build").read_text()
    # the fstab page's example line is one mount.tresor accepts
    text = (REPO / "docs" / "man" / "mount.tresor.8").read_text()
    assert "/srv/tresor#plans  /mnt/plans   tresor  defaults,allow_other,passphrase_file=" in text
