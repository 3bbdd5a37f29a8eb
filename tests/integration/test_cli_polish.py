"""CLI polish: man pages (one per command, rendering without warnings),
bash completion (commands, options, volume and snapshot names from the
store), the progress line of restore and prune (on with
TRESOR_PROGRESS=1, silent when stderr is not a terminal), --version."""

import os
import re
import subprocess

import pytest

from conftest import PASSPHRASE, REPO, TRESOR_BIN, base_env, tresor

MAN = REPO / "docs" / "man"


def commands():
    usage = tresor("--help").stdout
    return sorted({m.group(1) for m in re.finditer(r"^  ([a-z]+) ", usage, re.M)})


def test_every_command_has_a_man_page_that_renders():
    cmds = commands()
    assert {"daemon", "status", "push", "snapshot"} <= set(cmds)
    pages = [MAN / "tresor.1"] + [MAN / ("tresor-%s.1" % c) for c in cmds]
    main = (MAN / "tresor.1").read_text()
    for p in pages:
        assert p.exists(), "no man page %s" % p
        r = subprocess.run(["man", "--warnings", "-l", str(p)], capture_output=True,
                           text=True, env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"),
                           timeout=60)
        assert r.returncode == 0 and not r.stderr.strip(), (p, r.stderr)
        assert "SYNOPSIS" in r.stdout
        if p.name != "tresor.1":
            assert "tresor\\-%s" % p.stem.split("-", 1)[1] in main, "tresor.1 must list %s" % p


def complete(words, cwd, env):
    script = r'''
source /usr/share/bash-completion/bash_completion
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1))
COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
_tresor
printf '%s\n' "${COMPREPLY[@]}"
'''
    r = subprocess.run(["bash", "-c", script, "bash", str(REPO / "tools/completion/tresor.bash")]
                       + words, capture_output=True, text=True, cwd=cwd, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return sorted(x for x in r.stdout.split("\n") if x)


def test_bash_completion(store, tmp):
    if not os.path.exists("/usr/share/bash-completion/bash_completion"):
        pytest.fail("bash-completion not installed (tools/install-deps.sh installs it)")
    store.create_volume("plans")
    store.run("snapshot", "create", store.path, "plans", "--time", "2026-05-01T02:00", check=True)
    env = dict(os.environ, PATH=os.path.dirname(TRESOR_BIN) + ":" + os.environ["PATH"])
    assert complete(["tresor", "sn"], tmp, env) == ["snapshot"]
    assert complete(["tresor", "st"], tmp, env) == ["stats", "status"]
    assert complete(["tresor", "snapshot", ""], tmp, env) == ["create", "diff", "list", "pin", "unpin"]
    assert complete(["tresor", "mount", "store", ""], tmp, env) == ["plans", "vol"]
    assert complete(["tresor", "restore", "store", "plans", ""], tmp, env) == ["2026-05-01", "latest"]
    assert complete(["tresor", "prune", "store", "vol", "--keep-m"], tmp, env) == ["--keep-monthly"]


def test_progress_on_a_terminal_only(store, mounts, tmp):
    m = mounts.mount(store, "vol")
    (m.path / "big").write_bytes(os.urandom(3 << 20))
    m.unmount()
    for when in ("2026-01-01T02:00", "2026-01-02T02:00"):
        store.run("snapshot", "create", store.path, "vol", "--time", when, "--scheduled",
                  check=True)
    env = base_env(TRESOR_PASSPHRASE=PASSPHRASE, TRESOR_PROGRESS="1")
    r = tresor("restore", store.path, "vol", "latest", "/", tmp / "out1", env=env, check=True)
    # (text mode reads the carriage returns as newlines)
    assert "restore: " in r.stderr and "of 3.0 MiB" in r.stderr
    r = tresor("restore", store.path, "vol", "latest", "/", tmp / "out2",
               passphrase_env=PASSPHRASE, check=True)
    assert r.stderr == "", "no progress when stderr is not a terminal"
    assert (tmp / "out2" / "big").stat().st_size == 3 << 20
    r = tresor("prune", store.path, "vol", "--keep-last", "1", env=env, check=True)
    assert "prune: removing snapshots: 0 of 1 snapshots" in r.stderr
    assert "\033[K" in r.stderr


def test_version():
    r = tresor("--version", check=True)
    assert re.match(r"tresor \d+\.\d+\.\d+ \(store format \d+\)", r.stdout)
