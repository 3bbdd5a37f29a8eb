"""suite_report.py - the suite's report: the table of figures per dataset
and system, tresor as ratios to the ceiling or the best peer, the targets
with pass/fail and margin, and the JSON document."""

import statistics
import time

from bench_common import CACHES, MB
from bench_systems import Borg, Restic

DAY2 = ("plans", "filestore")



# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def fmt_s(x):
    return "-" if x is None else ("%.2f s" % x if x < 100 else "%.0f s" % x)


def fmt_mb(x):
    return "-" if x is None else "%.1f MB" % (x / MB)


def report(s):
    r, info, a = s.r, s.info, s.a
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "smoke": a.smoke, "scale": a.scale,
           "seed": a.seed, "repetitions": a.reps, "binary": a.tresor,
           "load_average": s.loads, "caches_dropped": CACHES["dropped"], "datasets": info,
           "raw": r.v, "summary": {}, "targets": [], "profiles": s.profiles, "fuse_ops": s.fuse_ops,
           "checks": s.checks}

    def per_rep_ratio(num, den, invert=False):
        x, y = r.v.get(num), r.v.get(den)
        if not x or not y:
            return None, None
        q = [(b / a_ if invert else a_ / b) for a_, b in zip(x, y) if a_ and b]
        if not q:
            return None, None
        return statistics.median(q), "%.2f-%.2f" % (min(q), max(q))

    systems = ["raw", "bindfs", "tresor"] + [p.name for p in s.peers]
    labels = {"raw": "raw disk", "bindfs": "bindfs", "tresor": "tresor"}
    labels.update({p.name: p.label() for p in s.peers})
    table = []
    for kind in a.datasets:
        nbytes = info.get(kind, {}).get("bytes", 0)
        for sysname in systems:
            k = "%s/%s/" % (kind, sysname)
            ing = r.med(k + "ingest_s") or r.med(k + "backup_s")
            rd = r.med(k + "read_s")
            row = {"dataset": kind, "system": labels[sysname],
                   "ingest_MBps": nbytes / MB / ing if ing else None,
                   "ingest_spread_s": r.spread(k + "ingest_s") or r.spread(k + "backup_s"),
                   "read_MBps": nbytes / MB / rd if rd else None,
                   "read_spread_s": r.spread(k + "read_s"),
                   "stored_day1": r.med(k + "stored_day1"),
                   "increment": r.med(k + "increment"),
                   "day2_s": r.med(k + "day2_s"),
                   "restore_s": r.med(k + "restore_s"),
                   "find_s": r.med(k + "find_s"),
                   "peak_mem_kb": max(r.v.get(k + "rss_kb", []) + r.v.get(k + "backup_rss_kb", [])
                                      + [0]) or None}
            if any(v is not None for kk, v in row.items() if kk not in ("dataset", "system")):
                table.append(row)
    out["table"] = table

    # tresor as a ratio to the ceiling or the best peer, per dataset
    # (speeds: >1 means tresor is faster; sizes and memory: <1 means smaller)
    def best(kind, metric, pick, names):
        c = [(r.med("%s/%s/%s" % (kind, n, metric)), n) for n in names
             if r.has("%s/%s/%s" % (kind, n, metric))]
        return pick(c) if c else (None, None)
    peer_names = [p.name for p in s.peers]
    backup_peers = [p.name for p in s.peers if isinstance(p, (Restic, Borg))]
    ratios = []
    for kind in a.datasets:
        k = kind + "/tresor/"
        rr = {"dataset": kind}

        def speed(label, metric, base_sys, base_metric=None):
            q, sp = per_rep_ratio("%s/%s/%s" % (kind, base_sys, base_metric or metric), k + metric)
            if q is not None:
                rr[label] = {"ratio": round(q, 3), "spread": sp, "vs": labels.get(base_sys, base_sys)}
        speed("ingest/raw", "ingest_s", "raw")
        speed("ingest/bindfs", "ingest_s", "bindfs")
        v, n = best(kind, "backup_s", min, backup_peers)
        if n:
            speed("ingest/fastest backup peer", "ingest_s", n, "backup_s")
        speed("read/raw", "read_s", "raw")
        speed("read/bindfs", "read_s", "bindfs")
        v, n = best(kind, "read_s", min, [x for x in peer_names if r.has("%s/%s/read_s" % (kind, x))])
        if n:
            speed("read/fastest peer mount", "read_s", n)
        v, n = best(kind, "restore_s", min, peer_names)
        if n:
            speed("restore/fastest peer", "restore_s", n)
        if kind in DAY2:
            v, n = best(kind, "day2_s", min, backup_peers)
            if n:
                speed("day-2 time/fastest backup peer", "day2_s", n)
        for label, metric in (("stored day 1/smallest peer", "stored_day1"),
                              ("day-2 increment/smallest peer", "increment")):
            v, n = best(kind, metric, min, peer_names)
            t = r.med(k + metric)
            if n and t is not None and v:
                rr[label] = {"ratio": round(t / v, 3), "vs": labels[n]}
        pk = max(r.v.get(k + "rss_kb", []) + [0])
        pm = [(max(r.v.get("%s/%s/backup_rss_kb" % (kind, n), [0])), n) for n in backup_peers]
        pm = [x for x in pm if x[0]]
        if pk and pm:
            v, n = min(pm)
            rr["peak memory/leanest backup peer"] = {"ratio": round(pk / v, 3), "vs": labels[n]}
        ratios.append(rr)
    out["ratios"] = ratios

    # ---------------------------------------------------------- targets
    T = out["targets"]

    def target(name, value, op, bound, detail, unit="x"):
        if value is None:
            T.append({"target": name, "value": None, "pass": None, "detail": detail + " (not measured)"})
            return
        ok = value >= bound if op == ">=" else (value <= bound if op == "<=" else value < bound)
        margin = (value / bound - 1) if op == ">=" else (bound / value - 1 if value else float("inf"))
        T.append({"target": name, "value": round(value, 3), "op": op, "bound": bound,
                  "pass": ok, "margin_pct": round(100 * margin, 1), "detail": detail, "unit": unit})

    peers_backup = [p.name for p in s.peers if isinstance(p, (Restic, Borg))]
    if "large" in a.datasets:
        q, sp = per_rep_ratio("large/raw/ingest_s", "large/tresor/ingest_s")
        target("ingest incompressible >= 60 % of raw disk write", q, ">=", 0.60,
               "tresor cp+sync+snapshot vs cp+syncfs on ext4, per-rep ratio, spread %s" % (sp,))
        for pn in ("restic", "borg"):
            names = [n for n in peers_backup if n.startswith(pn)]
            best = None
            for n in names:
                q, sp = per_rep_ratio("large/%s/backup_s" % n, "large/tresor/ingest_s")
                if q is not None and (best is None or q < best[0]):
                    best = (q, n, sp)
            if best:
                target("ingest incompressible >= 2x %s backup" % pn, best[0], ">=", 2.0,
                       "against the fastest %s config (%s), spread %s" % (pn, best[1], best[2]))
        q, sp = per_rep_ratio("large/raw/read_s", "large/tresor/read_s")
        target("cold sequential read >= 70 % of raw disk read", q, ">=", 0.70,
               "per-rep ratio, spread %s" % (sp,))
        if r.has("large/restic/read_s"):
            q, sp = per_rep_ratio("large/restic/read_s", "large/tresor/read_s")
            target("cold sequential read >= 3x restic mount", q, ">=", 3.0,
                   "per-rep ratio, spread %s" % (sp,))
    for kind in DAY2:
        if kind not in a.datasets:
            continue
        inc = r.med("%s/tresor/increment" % kind)
        for pn in ("restic", "borg"):
            cands = [(r.med("%s/%s/increment" % (kind, n)), n) for n in peers_backup
                     if n.startswith(pn) and r.has("%s/%s/increment" % (kind, n))]
            if cands and inc is not None:
                best, bn = min(cands)
                target("%s day-2 increment <= %s's" % (kind, pn),
                       inc / best if best else None, "<=", 1.0,
                       "tresor %s vs smallest %s increment %s (%s)" % (
                           fmt_mb(inc), pn, fmt_mb(best), bn))
    if "small" in a.datasets:
        q, sp = per_rep_ratio("small/bindfs/ingest_s", "small/tresor/ingest_s")
        target("untar small files >= bindfs speed", q, ">=", 1.0,
               "speed ratio tresor/bindfs (untar+sync; tresor incl. snapshot), spread %s" % (sp,))
        q, sp = per_rep_ratio("small/bindfs/find_s", "small/tresor/find_s")
        target("cold find of the small files >= 2x bindfs", q, ">=", 2.0,
               "find -printf size and mode after drop_caches, spread %s" % (sp,))
    for kind in ("large", "plans"):
        v = r.med("%s/tresor/cpu_s_per_GiB" % kind)
        if v is not None:
            target("%s: CPU-seconds per GiB ingested <= 1.3" % kind, v, "<=", 1.3,
                   "daemon user+system CPU from cp to syncfs, spread %s" % (
                       "%.2f-%.2f" % r.spread("%s/tresor/cpu_s_per_GiB" % kind),), unit="s")
        for what in ("ingest", "read"):
            q, sp = per_rep_ratio("cores/%s/1/%s_s" % (kind, what), "cores/%s/2/%s_s" % (kind, what))
            if q is not None:
                target("%s: %s one core -> two >= 1.7x" % (kind, what), q, ">=", 1.7,
                       "everything pinned (sched_setaffinity) to 1, then 2 cores, spread %s" % sp)
    if a.snap_files and len(a.snap_files) > 1:
        lo, hi = a.snap_files[0], a.snap_files[-1]
        x, y = r.med("snap/%d/create_s" % hi), r.med("snap/%d/create_s" % lo)
        target("snapshot creation time %d / %d files < 2" % (hi, lo),
               x / y if x and y else None, "<", 2.0,
               "%s vs %s (median of %d)" % (fmt_s(x), fmt_s(y), max(3, a.reps)))
    peak = max([max(v) for k, v in r.v.items() if k.endswith("/tresor/rss_kb") or
                (k.startswith("snap/") and k.endswith("rss_kb"))] + [0]) / 1024.0
    target("daemon peak RSS < 200 MB", peak, "<", 200.0,
           "VmHWM over every mount of the run", unit="MB")
    out["peak_rss_mb"] = round(peak, 1)

    # ---------------------------------------------------------- print
    print()
    print("tresor benchmark suite: scale %g, %d repetition(s), seed %d%s" % (
        a.scale, a.reps, a.seed, " (SMOKE: figures meaningless)" if a.smoke else ""))
    print("load average during the run: %s" % " ".join("%.1f" % l[0] for l in s.loads))
    if not CACHES["dropped"]:
        print("WARNING: page cache could not be dropped; reads were not cold")
    hdr = "%-10s %-26s %10s %10s %11s %11s %9s %9s %9s" % (
        "dataset", "system", "ingest", "cold read", "stored d1", "day-2 inc", "day-2", "restore",
        "peak mem")
    print(hdr)
    print("-" * len(hdr))
    for row in table:
        print("%-10s %-26s %10s %10s %11s %11s %9s %9s %9s" % (
            row["dataset"], row["system"][:26],
            "%.0f MB/s" % row["ingest_MBps"] if row["ingest_MBps"] else "-",
            "%.0f MB/s" % row["read_MBps"] if row["read_MBps"] else "-",
            fmt_mb(row["stored_day1"]), fmt_mb(row["increment"]), fmt_s(row["day2_s"]),
            fmt_s(row["restore_s"]),
            "%.0f MB" % (row["peak_mem_kb"] / 1024) if row["peak_mem_kb"] else "-"))
    extra = []
    if r.has("fio/write_MBps"):
        extra.append("fio seq write+fsync %.0f MB/s, cold read %.0f MB/s" % (
            r.med("fio/write_MBps"), r.med("fio/read_MBps")))
    if "small" in a.datasets:
        extra.append("small: cold find+stat raw %s, bindfs %s, tresor %s" % (
            fmt_s(r.med("small/raw/find_s")), fmt_s(r.med("small/bindfs/find_s")),
            fmt_s(r.med("small/tresor/find_s"))))
    for kind in a.datasets:
        if r.has("%s/tresor/dedup_ratio" % kind):
            extra.append("%s: tresor dedup %.2f, compression %.2f, snapshot after ingest %s" % (
                kind, r.med("%s/tresor/dedup_ratio" % kind),
                r.med("%s/tresor/compression_ratio" % kind),
                fmt_s(r.med("%s/tresor/snapshot_s" % kind))))
    if r.has("s3/push_day1_s"):
        up = r.med("s3/push_day1_bytes") / MB / r.med("s3/push_day1_s")
        ce = r.med("s3/awscli_up_bytes") / MB / r.med("s3/awscli_up_s")
        extra.append("S3 push day 1: %s in %s (%.0f MB/s; awscli cp of the packs %.0f MB/s, "
                     "ratio %.2f)" % (fmt_mb(r.med("s3/push_day1_bytes")),
                                      fmt_s(r.med("s3/push_day1_s")), up, ce, up / ce))
        out["summary"]["push_vs_awscli"] = up / ce
        if r.has("s3/push_day2_s"):
            extra.append("S3 push day 2: %s in %s" % (fmt_mb(r.med("s3/push_day2_bytes")),
                                                       fmt_s(r.med("s3/push_day2_s"))))
        if r.has("s3/recover_s"):
            rq = r.med("s3/awscli_down_s") / r.med("s3/recover_s")
            extra.append("recover from S3: %s (awscli download of the same objects %s, "
                         "speed ratio %.2f)" % (fmt_s(r.med("s3/recover_s")),
                                                fmt_s(r.med("s3/awscli_down_s")), rq))
            out["summary"]["recover_vs_awscli"] = rq
    for n in a.snap_files or []:
        if r.has("snap/%d/create_s" % n):
            extra.append("snapshot create at %d files: %s (spread %s), untar %s, cold find %s" % (
                n, "%.1f ms" % (1000 * r.med("snap/%d/create_s" % n)),
                "%.1f-%.1f ms" % tuple(1000 * x for x in r.spread("snap/%d/create_s" % n)),
                fmt_s(r.med("snap/%d/untar_s" % n)), fmt_s(r.med("snap/%d/find_s" % n))))
    for e in extra:
        print("  " + e)
    print()
    print("tresor as a ratio (speeds: tresor/other, >1 = tresor faster; sizes, memory: "
          "tresor/other, <1 = tresor smaller):")
    for rr in ratios:
        parts = ["%s %.2f" % (lab, v["ratio"]) for lab, v in rr.items() if lab != "dataset"]
        print("  %-10s %s" % (rr["dataset"], "; ".join(parts)))
    out["notes"] = extra
    print()
    print("targets:")
    for t in T:
        if t["pass"] is None:
            print("  %-52s %s" % (t["target"], t["detail"]))
            continue
        print("  %-52s %8.3f%s  %-4s margin %+6.1f %%  (%s)" % (
            t["target"], t["value"], " MB" if t.get("unit") == "MB" else "",
            "PASS" if t["pass"] else "FAIL", t["margin_pct"], t["detail"]))
    return all(t["pass"] for t in T if t["pass"] is not None), out

