"""The daemon's config file: a bad line is reported as FILE:LINE: what is
wrong, the exit code is 2, and nothing starts (no mount, no state file,
no control socket)."""

import os

import pytest

from conftest import mounted, tresor
from daemon_helpers import Daemon, local_ts

GOOD_HEAD = """[tresor]
store = {store}
passphrase-file = {passfile}

[volume vol]
mountpoint = {mnt}
"""

# (name, text appended to the good head, expected line, words in the message)
CASES = [
    ("unknown key", "[schedule]\nsnapshot = daily 02:00\nsnapshoot = daily 03:00\n", 9,
     "unknown key 'snapshoot'"),
    ("bad schedule", "[schedule]\npush = every day at five\n", 8, "bad schedule"),
    ("bad time", "[schedule]\nsnapshot = daily 25:00\n", 8, "bad schedule"),
    ("not ini", "[schedule]\nsnapshot daily\n", 8, "not NAME = VALUE"),
    ("duplicate volume", "[volume vol]\nmountpoint = /mnt/x\n", 7, "given twice"),
    ("relative path", "[volume other]\nmountpoint = mnt/other\n", 8, "absolute path"),
    ("bad count", "[retention]\nkeep-daily = thirty\n", 8, "not a count"),
    ("keeps nothing", "[retention]\nkeep-daily = 0\n", 7, "keeps nothing"),
    ("unknown section", "[volumes]\n", 7, "unknown section"),
    ("no mountpoint", "\n[volume second]\noptions = ro\n", 8, "has no mountpoint"),
    ("bad listen", "[tresor]\n", 7, "given twice"),
    ("bad retries", "", 0, None),  # placeholder replaced below
]
CASES[-1] = ("bad read-data", "[schedule]\ncheck-read-data = lots\n", 8, "check-read-data")
CASES.append(("bad max-age", "[schedule]\ncheck-max-age = monthly\n", 8,
              "check-max-age: not a duration like 30d"))


@pytest.mark.parametrize("name,tail,line,words", CASES, ids=[c[0] for c in CASES])
def test_bad_line_reported_and_nothing_starts(make_store, tmp, name, tail, line, words):
    store = make_store()
    mnt = tmp / "mnt"
    mnt.mkdir()
    cfg = tmp / "bad.conf"
    cfg.write_text(GOOD_HEAD.format(store=store.path, passfile=store.passfile, mnt=mnt) + tail)
    p = tresor("daemon", cfg, timeout=60)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("tresor: %s:%d: " % (cfg, line)), p.stderr
    assert words in lines[0]
    assert "nothing started" in lines[0]
    assert not mounted(mnt)
    assert not (store.path / "daemon.state").exists()
    # status reads the same file and says the same
    s = tresor("status", cfg)
    assert s.returncode == 2 and ("%s:%d:" % (cfg, line)) in s.stderr


def test_missing_store_and_volume_refused_before_mounting(make_store, tmp):
    store = make_store()
    d = Daemon(tmp, store, volumes=("vol", "nosuch"))
    d.set_clock(local_ts(2026, 1, 1, 12))
    p = tresor("daemon", d.cfg, env=d.env(), timeout=60)
    assert p.returncode == 1
    line = d.cfg.read_text().splitlines().index("[volume nosuch]") + 1
    assert "%s:%d: store %s has no volume 'nosuch'" % (d.cfg, line, store.path) in p.stderr
    assert not mounted(d.mnt["vol"])


def test_unreadable_config(tmp):
    p = tresor("daemon", tmp / "missing.conf")
    assert p.returncode == 2 and "missing.conf: cannot read" in p.stderr


@pytest.mark.parametrize("doc", ["docs/DAEMON.md", "README.md"])
def test_example_config_in_docs_parses(make_store, tmp, doc):
    """The config examples of the docs are valid: only their paths change."""
    from conftest import REPO
    text = (REPO / doc).read_text()
    start = text.index("```ini\n") + 7
    example = text[start:text.index("```", start)]
    store = make_store(volumes=("plans", "filestore"))
    example = example.replace("/srv/tresor", str(store.path))
    example = example.replace("/etc/tresor/passphrase", str(store.passfile))
    example = example.replace("/mnt/", str(tmp) + "/mnt-")
    cfg = tmp / "example.conf"
    cfg.write_text(example)
    # parse only: status loads the config first and then finds no daemon
    p = tresor("status", cfg)
    assert p.returncode == 3 and "no tresor daemon runs" in p.stderr, p.stderr


def test_dry_run_checks_and_starts_nothing(make_store, tmp):
    store = make_store()
    remote = tmp / "offsite"
    remote.mkdir()
    d = Daemon(tmp, store, remotes={"offsite": str(remote)})
    d.set_clock(local_ts(2026, 3, 28, 12))
    p = tresor("daemon", d.cfg, "--dry-run", env=d.env(), timeout=60)
    assert p.returncode == 0, p.stderr
    assert "ok: store %s, 1 volume(s)" % store.path in p.stdout
    assert "would add remote offsite" in p.stdout
    # the spring-forward night: 02:00 does not exist, the slot is 03:00 CEST
    assert "snapshot: daily 02:00, next 2026-03-29T03:00:00+0200" in p.stdout
    assert "push: daily 05:00, next 2026-03-29T05:00:00+0200" in p.stdout
    assert not mounted(d.mnt["vol"])
    assert not (store.path / "daemon.state").exists()
    rl = store.run("remote", "list", store.path, "--json", check=True)
    assert rl.stdout.strip() == "[]", "dry run added nothing"


def test_passphrase_file_readable_by_others_refused(make_store, tmp):
    store = make_store()
    d = Daemon(tmp, store)
    d.set_clock(local_ts(2026, 3, 28, 12))
    os.chmod(store.passfile, 0o644)
    try:
        p = tresor("daemon", d.cfg, env=d.env(), timeout=60)
    finally:
        os.chmod(store.passfile, 0o600)
    assert p.returncode == 1 and "chmod 600" in p.stderr and "0644" in p.stderr
    assert not mounted(d.mnt["vol"])


def test_metrics_port_taken_nothing_left_running(make_store, tmp):
    import socket
    store = make_store()
    d = Daemon(tmp, store)
    d.set_clock(local_ts(2026, 3, 28, 12))
    s = socket.socket()
    s.bind(("127.0.0.1", d.port))
    s.listen(1)
    try:
        p = tresor("daemon", d.cfg, env=d.env(), timeout=120)
    finally:
        s.close()
    assert p.returncode == 1
    assert "cannot listen on metrics-listen 127.0.0.1:%d" % d.port in p.stderr
    assert "nothing started" in p.stderr
    assert not mounted(d.mnt["vol"])
