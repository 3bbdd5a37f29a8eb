"""`tresor status --json`, the metrics endpoint and textfile, and every
--json output of the CLI: each parses, with the documented fields.

The metrics are checked by a strict parser of the Prometheus text
exposition format 0.0.4 (written here: names, labels and escapes, one
TYPE per family before its samples, families contiguous, no duplicate
series, histogram buckets cumulative with +Inf equal to _count)."""

import json
import math
import os
import re

import pytest

from conftest import PASSPHRASE, tresor
from daemon_helpers import Daemon, local_ts, store_run
from test_daemon import daemons  # noqa: F401  (fixture)

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise AssertionError("bad sample value %r" % s)
    return float(s)


def parse_labels(s, lineno):
    """'a="x",b="y"' -> dict, honouring \\\\ \\" \\n escapes."""
    out = {}
    i = 0
    while i < len(s):
        m = re.match(LABEL + "=\"", s[i:])
        assert m, "line %d: bad label at %r" % (lineno, s[i:])
        name = m.group(0)[:-2]
        i += len(m.group(0))
        val = []
        while True:
            assert i < len(s), "line %d: unterminated label value" % lineno
            c = s[i]
            if c == "\\":
                nxt = s[i + 1]
                assert nxt in '\\"n', "line %d: bad escape \\%s" % (lineno, nxt)
                val.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                assert c != "\n"
                val.append(c)
                i += 1
        assert name not in out, "line %d: label %s twice" % (lineno, name)
        out[name] = "".join(val)
        if i < len(s):
            assert s[i] == ",", "line %d: expected , in labels" % lineno
            i += 1
    return out


def parse_prometheus(text):
    """Strict parse: {family: {"type", "help", "samples": [(name, labels, value)]}}."""
    assert text.endswith("\n"), "exposition must end with a newline"
    families = {}
    order = []
    seen_series = set()
    current = None
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        assert line, "line %d: empty line" % lineno
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (%s) (.*)" % NAME, line)
            if not m:
                continue  # a plain comment
            kind, name, rest = m.groups()
            fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
            if kind == "TYPE":
                assert rest in TYPES, "line %d: bad type %s" % (lineno, rest)
                assert fam["type"] is None, "line %d: second TYPE for %s" % (lineno, name)
                assert not fam["samples"], "line %d: TYPE after samples of %s" % (lineno, name)
                fam["type"] = rest
            else:
                assert fam["help"] is None, "line %d: second HELP for %s" % (lineno, name)
                fam["help"] = rest
            if name not in order:
                order.append(name)
            current = name
            continue
        m = re.fullmatch(r"(%s)(?:\{(.*)\})? (\S+)(?: (-?\d+))?" % NAME, line)
        assert m, "line %d: not a sample: %r" % (lineno, line)
        sname, labels, value, _ts = m.groups()
        labels = parse_labels(labels or "", lineno)
        fam_name = sname
        for suffix in ("_bucket", "_sum", "_count"):
            base = sname[:-len(suffix)] if sname.endswith(suffix) else None
            if base and families.get(base, {}).get("type") in ("histogram", "summary"):
                fam_name = base
        assert fam_name == current, \
            "line %d: sample of %s outside its family block (%s)" % (lineno, sname, current)
        key = (sname, tuple(sorted(labels.items())))
        assert key not in seen_series, "line %d: duplicate series %s" % (lineno, key)
        seen_series.add(key)
        v = parse_value(value)
        fam = families.setdefault(fam_name, {"type": "untyped", "help": None, "samples": []})
        if fam["type"] == "counter":
            assert v >= 0, "line %d: negative counter" % lineno
        if sname.endswith("_bucket") and fam["type"] == "histogram":
            assert "le" in labels, "line %d: bucket without le" % lineno
        fam["samples"].append((sname, labels, v))
    # histograms: cumulative buckets per series, +Inf == _count
    for name, fam in families.items():
        if fam["type"] != "histogram":
            continue
        series = {}
        for sname, labels, v in fam["samples"]:
            rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
            series.setdefault(rest, {"b": [], "sum": None, "count": None})
            if sname.endswith("_bucket"):
                series[rest]["b"].append((parse_value(labels["le"]), v))
            elif sname.endswith("_sum"):
                series[rest]["sum"] = v
            elif sname.endswith("_count"):
                series[rest]["count"] = v
        for rest, s in series.items():
            bounds = [b for b, _ in s["b"]]
            assert bounds == sorted(bounds) and bounds[-1] == math.inf, (name, rest)
            counts = [c for _, c in s["b"]]
            assert counts == sorted(counts), "%s %s: buckets not cumulative" % (name, rest)
            assert s["count"] == counts[-1], "%s %s: +Inf bucket != _count" % (name, rest)
            assert s["sum"] is not None and s["sum"] >= 0
    return families


def value(fams, name, **labels):
    fam = name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[:-len(suffix)] in fams:
            fam = name[:-len(suffix)]
    for sname, l, v in fams[fam]["samples"]:
        if sname == name and all(l.get(k) == x for k, x in labels.items()):
            return v
    raise AssertionError("no sample %s %s" % (name, labels))


def test_parser_rejects_bad_exposition():
    good = "# TYPE a counter\na 1\n"
    parse_prometheus(good)
    for bad in ["a 1", "# TYPE a counter\na one\n", "# TYPE a counter\na{x=\"1} 1\n",
                "# TYPE a gauge\na 1\n# TYPE a gauge\n", "# TYPE a gauge\na 1\na 2\n",
                "# TYPE a gauge\n# TYPE b gauge\na 1\n", "# TYPE a counter\na -1\n",
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                "h_sum 1\nh_count 1\n"]:
        with pytest.raises(AssertionError):
            parse_prometheus(bad)


STATUS_FIELDS = {
    "daemon": {"pid", "config", "store", "started", "now", "stale_push_seconds",
               "reloads", "reload_ok", "reload_message"},
    "volumes": {"name", "mountpoint", "mounted", "pid", "restarts", "last_error", "healthy",
                "snapshots", "last_snapshot", "last_snapshot_time", "last_snapshot_age_seconds"},
    "remotes": {"name", "url", "last_push", "last_push_age_seconds", "behind_seconds",
                "packs_pending", "bytes_pending", "last_attempt", "failures", "last_failed",
                "last_error", "attempts", "next_retry", "healthy"},
    "jobs": {"name", "schedule", "running", "last_run", "last_success", "last_failed",
             "last_error", "runs", "failures", "attempts", "next_run"},
    "history": {"job", "slot", "start", "end", "ok"},
}


def test_status_and_metrics(make_store, tmp, daemons):  # noqa: F811
    store = make_store(volumes=("plans", "filestore"))
    remote = tmp / "offsite"
    remote.mkdir()
    d = Daemon(tmp, store, volumes=("plans", "filestore"), remotes={"offsite": str(remote)},
               tresor_extra="metrics-textfile = %s\nstale-push = 2h" % (tmp / "tresor.prom"))
    daemons.append(d)
    d.set_clock(local_ts(2026, 4, 1, 1, 0))
    d.start()
    for i in range(20):
        (d.mnt["plans"] / ("f%d" % i)).write_bytes(b"same bytes\n" * 5000)
    os.listdir(d.mnt["filestore"])
    d.set_clock(local_ts(2026, 4, 1, 2, 0, 1))
    d.wait_history(2)
    st = d.status()
    assert set(st) == {"daemon", "volumes", "remotes", "jobs", "sets", "hooks", "history",
                       "healthy", "problems"}
    for key, fields in STATUS_FIELDS.items():
        items = [st[key]] if key == "daemon" else st[key]
        assert items, key
        for it in items:
            assert set(it) == fields, (key, set(it) ^ fields)
    v = {x["name"]: x for x in st["volumes"]}
    assert v["plans"]["last_snapshot"] == "2026-04-01" and v["plans"]["snapshots"] == 1
    assert v["plans"]["last_snapshot_age_seconds"] == 0 or v["plans"]["last_snapshot_age_seconds"] < 60
    r = st["remotes"][0]
    # pending counts finished packs: the mount process may still fill its pack
    assert r["last_push"] is None and r["bytes_pending"] >= 0 and r["behind_seconds"] > 0
    assert st["healthy"] is True  # not stale yet: the daemon runs < 2h

    import urllib.error
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/health" % d.port, timeout=30) as h:
        assert h.status == 200 and json.loads(h.read())["healthy"] is True

    # 3 hours later without a push: stale, exit code 1, /health 503
    d.set_clock(local_ts(2026, 4, 1, 4, 30))
    assert d.wait_history(3)[2] == ("check", True)
    p = d.status_proc()
    assert p.returncode == 1
    st = json.loads(p.stdout)
    assert any("offsite" in x and "never" in x for x in st["problems"])
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen("http://127.0.0.1:%d/health" % d.port, timeout=30)
    assert e.value.code == 503 and json.loads(e.value.read())["healthy"] is False

    text, ctype = d.metrics()
    assert ctype.startswith("text/plain; version=0.0.4")
    fams = parse_prometheus(text)
    assert value(fams, "tresor_up") == 1
    assert value(fams, "tresor_volume_mounted", volume="plans") == 1
    assert value(fams, "tresor_snapshots", volume="plans") == 1
    assert value(fams, "tresor_snapshot_last_timestamp_seconds", volume="plans") == \
        local_ts(2026, 4, 1, 2, 0, 1)
    assert value(fams, "tresor_snapshot_age_seconds", volume="plans") == \
        local_ts(2026, 4, 1, 4, 30) - local_ts(2026, 4, 1, 2, 0, 1)
    assert value(fams, "tresor_job_runs_total", job="snapshot") == 1
    assert value(fams, "tresor_job_last_duration_seconds", job="snapshot") > 0
    assert value(fams, "tresor_remote_last_push_timestamp_seconds", remote="offsite") == 0
    assert value(fams, "tresor_push_lag_seconds", remote="offsite") > 3600
    assert value(fams, "tresor_logical_bytes") == 20 * 55000
    assert value(fams, "tresor_dedup_ratio") > 10  # 20 copies of one file
    assert value(fams, "tresor_compression_ratio") > 1
    # FUSE latencies of the writes above, counted in the mount process
    assert fams["tresor_fuse_op_duration_seconds"]["type"] == "histogram"
    assert value(fams, "tresor_fuse_op_duration_seconds_count", volume="plans", op="create") == 20
    assert value(fams, "tresor_fuse_op_duration_seconds_count", volume="plans", op="write") >= 20
    assert value(fams, "tresor_fuse_op_duration_seconds_sum", volume="plans", op="write") > 0

    # push: lag and pending drop; the textfile is written after each job
    d.set_clock(local_ts(2026, 4, 1, 5, 0, 1))
    assert d.wait_history(4) == [("snapshot", True), ("prune", True), ("check", True),
                                 ("push", True)]
    d.set_clock(local_ts(2026, 4, 1, 5, 10, 0))
    fams = parse_prometheus(d.metrics()[0])
    # the push's own time is the real clock (the daemon's test clock does
    # not reach into it): check the lag is measured from it
    lp = value(fams, "tresor_remote_last_push_timestamp_seconds", remote="offsite")
    assert lp > 0 and lp == d.status()["remotes"][0]["last_push"]
    assert value(fams, "tresor_push_lag_seconds", remote="offsite") == \
        local_ts(2026, 4, 1, 5, 10, 0) - lp
    assert d.status()["remotes"][0]["packs_pending"] == 0
    tf = parse_prometheus((tmp / "tresor.prom").read_text())
    assert value(tf, "tresor_job_runs_total", job="push") == 1
    assert d.status_proc().returncode == 0
    # the HTTP endpoint answers only /metrics and /health
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen("http://127.0.0.1:%d/other" % d.port, timeout=10)
    assert e.value.code == 404


def test_status_without_daemon(make_store, tmp):
    store = make_store()
    d = Daemon(tmp, store)
    p = tresor("status", d.cfg)
    assert p.returncode == 3 and "no tresor daemon runs" in p.stderr
    p = tresor("status", d.cfg, "--json")
    assert p.returncode == 3 and json.loads(p.stdout)["healthy"] is False


def test_every_json_output_parses(make_store, tmp, mounts):
    store = make_store()
    m = mounts.mount(store, "vol")
    (m.path / "a").write_text("one\n")
    run = lambda *a: store_run(store, *a, check=True)  # noqa: E731

    def j(*a):
        p = run(*a)
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise AssertionError("%s --json printed no JSON: %r" % (a, p.stdout))

    vols = j("volume", "list", store.path, "--json")
    assert {"name", "logical_bytes", "files"} <= set(vols[0])
    s = j("stats", store.path, "--json")
    assert {"logical_bytes", "stored_bytes", "dedup_ratio", "compression_ratio", "volumes"} <= set(s)
    run("snapshot", "create", store.path, "vol", "--time", "2026-01-01T10:00")
    (m.path / "b").write_text("two\n")
    run("snapshot", "create", store.path, "vol", "--time", "2026-01-02T10:00")
    sl = j("snapshot", "list", store.path, "vol", "--json")
    assert {"name", "time", "time_ns", "pinned", "logical_bytes", "files",
            "exclusive_bytes"} <= set(sl[0])
    diff = j("snapshot", "diff", store.path, "vol", sl[0]["name"], sl[1]["name"], "--json")
    assert diff == [{"change": "added", "path": "b"}]
    pr = j("prune", store.path, "vol", "--keep-last", "1", "--dry-run", "--json")
    assert {"dry_run", "snapshots", "removed", "bytes_freed"} <= set(pr)
    remote = tmp / "r"
    remote.mkdir()
    run("remote", "add", store.path, "r", str(remote))
    rl = j("remote", "list", store.path, "--json")
    assert {"name", "url", "last_push", "packs_pending", "bytes_pending"} <= set(rl[0])
    pu = j("push", store.path, "r", "--json")
    assert {"remote", "packs", "pack_bytes", "meta_bytes", "records"} <= set(pu)
    m.unmount()
    ck = j("check", store.path, "--json")
    assert {"packs", "chunks", "problems"} <= set(ck) and ck["problems"] == 0


def test_read_only_volume_counted_and_refuses_snapshots(make_store, tmp, daemons):  # noqa: F811
    store = make_store(volumes=("plans",))
    d = Daemon(tmp, store, volumes=("plans",), volume_options="ro",
               schedule={"snapshot": "never", "push": "never", "check": "never"})
    daemons.append(d)
    d.set_clock(local_ts(2026, 4, 1, 12))
    d.start()
    for _ in range(5):
        os.listdir(d.mnt["plans"])
        os.stat(d.mnt["plans"])
    fams = parse_prometheus(d.metrics()[0])
    assert value(fams, "tresor_fuse_op_duration_seconds_count", volume="plans", op="getattr") >= 1
    p = store_run(store, "snapshot", "create", store.path, "plans")
    assert p.returncode == 1 and "read-only" in p.stderr
