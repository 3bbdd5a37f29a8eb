#!/usr/bin/env bash
# bench_store.sh - tresor's speed benchmark against the raw disk and bindfs.
#
#   bash tests/bench/bench_store.sh [--smoke] [--size SIZE] [--files N]
#                                   [--reps N] [--dir DIR] [--json FILE]
#                                   [--compare BIN]
#
# In one run, on the same disk (DIR, default /var/tmp/tresor-bench):
#  (a) sequential write of SIZE (default 2G) incompressible bytes with fsync
#      (dd conv=fsync from a file pre-generated in /dev/shm): raw vs tresor
#  (b) cold sequential read (drop_caches; tresor remounted): raw vs tresor
#  (c) untar of N (default 30000) small files (then syncfs; tresor: and a
#      snapshot, the point where its data is stored), then a cold
#      `find -ls` of the tree: raw disk, bindfs passthrough, tresor
#  (d) the daemon's peak RSS (VmHWM) over all of it
# Each measurement REPS (default 3) times, a fresh store each time, every
# system one after the other within a repetition.  Ratios are computed per
# repetition (the machine's load moves between repetitions) and their
# median is reported with the spread; pass/fail against the targets:
#   write >= 50% of raw, read >= 60% of raw, untar and find no slower than
#   bindfs, RSS < 200 MB.  The 1-minute load average is recorded per step.
# --compare BIN: a second tresor binary (e.g. the build before a change)
# measured the same way in every repetition ("tresor-B"), for an A/B run;
# the two go in turns (A first in odd repetitions, B first in even ones),
# since a run right after another's deletion of its tree pays for part of
# it.  --no-large leaves out (a) and (b).
# Prints a table and writes JSON (default DIR/bench.json).  Exit 0 when all
# targets pass, 1 when one fails, 2 on an error.
# --smoke: tiny sizes (16 MiB, 300 files, 1 rep) in a temp dir; checks that
# everything runs and reads back correctly, ignores the targets.  run.sh
# uses it.
#
# Env: TRESOR_BIN (default <repo>/build/tresor), TRESOR_MOUNT_OPTS (extra
# -o options for tresor mount), BINDFS_OPTS (extra options for bindfs).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TRESOR=${TRESOR_BIN:-$REPO/build/tresor}
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

SMOKE=0
SIZE=2G
NFILES=30000
REPS=3
DIR=""
JSON=""
COMPARE=""
NOLARGE=0

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
	case "$1" in
	--smoke) SMOKE=1 ;;
	--size) SIZE=$2; shift ;;
	--files) NFILES=$2; shift ;;
	--reps) REPS=$2; shift ;;
	--dir) DIR=$2; shift ;;
	--json) JSON=$2; shift ;;
	--compare) COMPARE=$2; shift ;;
	--no-large) NOLARGE=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

if ((SMOKE)); then
	SIZE=16M
	NFILES=300
	REPS=1
	if [[ -z $DIR ]]; then
		DIR=$(mktemp -d /tmp/tresor-bench-smoke.XXXXXX)
		SMOKE_TMP=$DIR
	fi
fi
DIR=${DIR:-/var/tmp/tresor-bench}
if ((SMOKE)) && [[ -z $JSON ]]; then
	mkdir -p "$REPO/tests/.work"
	JSON=$REPO/tests/.work/bench-smoke.json
fi
JSON=${JSON:-$DIR/bench.json}

to_bytes() {
	local s=$1 n unit
	n=${s%[KkMmGg]}
	unit=${s#"$n"}
	case "$unit" in
	"") echo "$n" ;;
	[Kk]) echo $((n * 1024)) ;;
	[Mm]) echo $((n * 1024 * 1024)) ;;
	[Gg]) echo $((n * 1024 * 1024 * 1024)) ;;
	esac
}
BYTES=$(to_bytes "$SIZE")
((BYTES >= 1048576)) || { echo "bench: --size must be at least 1M" >&2; exit 2; }
MIB=$((BYTES / 1048576))

[[ -x $TRESOR ]] || { echo "bench: $TRESOR not built (ninja -C build)" >&2; exit 2; }
for t in bindfs fusermount3 dd tar find; do
	command -v "$t" >/dev/null || { echo "bench: $t missing (bash tools/install-deps.sh)" >&2; exit 2; }
done

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
SHM_DATA=/dev/shm/tresor-bench-$$.data
RESULTS=$DIR/results.tsv
PASSFILE=$DIR/passphrase
MNT=$DIR/mnt
BMNT=$DIR/bindmnt
DAEMON_PID=""
BIND_PID=""
: >"$RESULTS"
mkdir -p "$MNT" "$BMNT" "$DIR/raw"
(umask 077 && head -c 24 /dev/urandom | base64 >"$PASSFILE")

log() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; }   # metric rep value
loadavg() { cut -d' ' -f1 /proc/loadavg; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }

CACHES_DROPPED=1
drop_caches() {
	sync
	if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
		if ((CACHES_DROPPED)); then log "cannot drop caches (not root?): reads are not cold"; fi
		CACHES_DROPPED=0
	fi
}

wait_mounted() {
	local i
	for ((i = 0; i < 200; i++)); do
		mountpoint -q "$1" && return 0
		sleep 0.05
	done
	return 1
}

wait_gone() {
	local pid=$1 i
	for ((i = 0; i < 400; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
	return 1
}

PEAK_RSS_KB=0
sample_rss() {
	local kb
	[[ -n $DAEMON_PID ]] || return 0
	kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$DAEMON_PID/status" 2>/dev/null || echo 0)
	kb=${kb:-0}
	if ((kb > PEAK_RSS_KB)); then PEAK_RSS_KB=$kb; fi
}

TBIN=$TRESOR
tresor_mount() {   # STORE (with binary $TBIN)
	local opts=()
	[[ -n ${TRESOR_MOUNT_OPTS:-} ]] && opts=(-o "$TRESOR_MOUNT_OPTS")
	"$TBIN" mount "$1" bench "$MNT" -f --passphrase-file "$PASSFILE" "${opts[@]}" \
		</dev/null 2>>"$DIR/daemon.log" &
	DAEMON_PID=$!
	if ! wait_mounted "$MNT"; then
		log "tresor mount did not come up; daemon log:"
		tail -20 "$DIR/daemon.log" >&2
		exit 2
	fi
}

tresor_umount() {
	[[ -n $DAEMON_PID ]] || return 0
	sample_rss
	local i
	for ((i = 0; i < 50; i++)); do
		fusermount3 -u "$MNT" 2>/dev/null && break
		sleep 0.1
	done
	mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"
	if ! wait_gone "$DAEMON_PID"; then
		log "daemon $DAEMON_PID did not exit after unmount; killing it"
		kill -9 "$DAEMON_PID" 2>/dev/null || true
	fi
	wait "$DAEMON_PID" 2>/dev/null || log "daemon exited with status $?"
	DAEMON_PID=""
}

bind_mount() {   # SRC
	# shellcheck disable=SC2086
	bindfs -f ${BINDFS_OPTS:-} "$1" "$BMNT" </dev/null 2>>"$DIR/bindfs.log" &
	BIND_PID=$!
	wait_mounted "$BMNT" || { log "bindfs did not come up"; exit 2; }
}

bind_umount() {
	[[ -n $BIND_PID ]] || return 0
	fusermount3 -u "$BMNT" 2>/dev/null || fusermount3 -u -z "$BMNT"
	wait_gone "$BIND_PID" || kill -9 "$BIND_PID" 2>/dev/null || true
	wait "$BIND_PID" 2>/dev/null || true
	BIND_PID=""
}

new_store() {   # prints the path of a fresh store with volume "bench"
	local st=$DIR/store
	rm -rf "$st"
	"$TBIN" init "$st" --kdf-log2n 12 --passphrase-file "$PASSFILE" </dev/null >/dev/null
	TRESOR_PASSPHRASE=$(cat "$PASSFILE") "$TBIN" volume create "$st" bench </dev/null >/dev/null
	echo "$st"
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
	set +e
	tresor_umount
	bind_umount
	rm -f "$SHM_DATA"
	if [[ -n ${SMOKE_TMP:-} ]]; then rm -rf "$SMOKE_TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ data
log "dir $DIR, size $SIZE ($BYTES bytes), $NFILES small files, $REPS rep(s), binary $TRESOR"
if ((NOLARGE)); then
	: >"$SHM_DATA"
elif command -v openssl >/dev/null; then
	log "generating $MIB MiB of incompressible data in /dev/shm"
	{ openssl enc -aes-128-ctr -nosalt -pass "pass:$RANDOM$RANDOM" -pbkdf2 </dev/zero 2>/dev/null || true; } |
		head -c "$BYTES" >"$SHM_DATA"
fi
if ((!NOLARGE)) && [[ $(stat -c %s "$SHM_DATA" 2>/dev/null || echo 0) -ne $BYTES ]]; then
	head -c "$BYTES" /dev/urandom >"$SHM_DATA"
fi

TARBALL=$DIR/small-$NFILES.tar
if [[ ! -s $TARBALL ]]; then
	log "generating $TARBALL"
	"$PY" - "$TARBALL" "$NFILES" <<'EOF'
import io, random, sys, tarfile
path, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
         for _ in range(500)]
with tarfile.open(path + ".part", "w", format=tarfile.GNU_FORMAT) as tf:
    for i in range(n):
        size = int(rng.expovariate(1 / 4000)) + 100
        if i % 3 == 0:
            data = rng.randbytes(size)
        else:
            data = b" ".join(rng.choice(words) for _ in range(size // 5))[:size]
        ti = tarfile.TarInfo("objects/OBJ-%05d/%s/file-%05d.%s" % (
            i // 30, "photos" if i % 2 else "floor-plans", i, "jpg" if i % 3 == 0 else "txt"))
        ti.size = len(data)
        ti.mode = 0o644
        ti.mtime = 1700000000 + i
        tf.addfile(ti, io.BytesIO(data))
import os
os.rename(path + ".part", path)
EOF
fi

# ------------------------------------------------------------------ runs
# The systems measured as tresor: "tresor" ($TRESOR) and, with --compare,
# "tresorB".
SYSTEMS=(tresor)
declare -A BINOF=([tresor]=$TRESOR)
if [[ -n $COMPARE ]]; then
	[[ -x $COMPARE ]] || { echo "bench: --compare $COMPARE is not executable" >&2; exit 2; }
	SYSTEMS+=(tresorB)
	BINOF[tresorB]=$COMPARE
fi
# A deleted tree's blocks and journal are written back before the next
# timed step starts.
settle() { sync; sleep 1; }
for ((rep = 1; rep <= REPS; rep++)); do
	log "--- repetition $rep of $REPS (load $(loadavg))"
	record load "$rep" "$(loadavg)"
	ORDER=("${SYSTEMS[@]}")
	if ((${#SYSTEMS[@]} == 2 && rep % 2 == 0)); then ORDER=("${SYSTEMS[1]}" "${SYSTEMS[0]}"); fi
	if ((!NOLARGE)); then

	# (a) sequential write, (b) cold sequential read
	rm -f "$DIR/raw/data"
	drop_caches
	t0=$(now)
	dd if="$SHM_DATA" of="$DIR/raw/data" bs=1M conv=fsync status=none
	t1=$(now)
	record raw_write "$rep" "$(elapsed "$t0" "$t1")"
	drop_caches
	t0=$(now)
	dd if="$DIR/raw/data" of=/dev/null bs=1M status=none
	t1=$(now)
	record raw_read "$rep" "$(elapsed "$t0" "$t1")"
	rm -f "$DIR/raw/data"
	settle

	for sys in "${ORDER[@]}"; do
		TBIN=${BINOF[$sys]}
		store=$(new_store)
		tresor_mount "$store"
		drop_caches
		t0=$(now)
		dd if="$SHM_DATA" of="$MNT/data" bs=1M conv=fsync status=none
		t1=$(now)
		record ${sys}_write "$rep" "$(elapsed "$t0" "$t1")"
		sample_rss
		tresor_umount
		tresor_mount "$store"
		drop_caches
		t0=$(now)
		dd if="$MNT/data" of=/dev/null bs=1M status=none
		t1=$(now)
		record ${sys}_read "$rep" "$(elapsed "$t0" "$t1")"
		if ((SMOKE)); then
			cmp "$SHM_DATA" "$MNT/data" || { log "$sys read back different data"; exit 2; }
		fi
		sample_rss
		tresor_umount
		rm -rf "$store"
		settle
	done
	fi

	# (c) untar + find: raw disk
	rm -rf "$DIR/rawtree"
	mkdir -p "$DIR/rawtree"
	drop_caches
	cat "$TARBALL" >/dev/null	# the source in the page cache: the writer is measured
	t0=$(now)
	tar xf "$TARBALL" -C "$DIR/rawtree"
	sync -f "$DIR/rawtree"
	t1=$(now)
	record raw_untar "$rep" "$(elapsed "$t0" "$t1")"
	drop_caches
	t0=$(now)
	n=$(find "$DIR/rawtree" -ls | wc -l)
	t1=$(now)
	record raw_find "$rep" "$(elapsed "$t0" "$t1")"
	rm -rf "$DIR/rawtree"
	settle

	# (c) untar + find: bindfs passthrough
	rm -rf "$DIR/bindsrc"
	mkdir -p "$DIR/bindsrc"
	bind_mount "$DIR/bindsrc"
	drop_caches
	cat "$TARBALL" >/dev/null
	t0=$(now)
	tar xf "$TARBALL" -C "$BMNT"
	sync -f "$BMNT/objects" 2>/dev/null || sync
	t1=$(now)
	record bindfs_untar "$rep" "$(elapsed "$t0" "$t1")"
	bind_umount
	bind_mount "$DIR/bindsrc"
	drop_caches
	t0=$(now)
	n=$(find "$BMNT" -ls | wc -l)
	t1=$(now)
	record bindfs_find "$rep" "$(elapsed "$t0" "$t1")"
	bind_umount
	rm -rf "$DIR/bindsrc"
	settle

	# (c) untar + find: tresor
	for sys in "${ORDER[@]}"; do
		TBIN=${BINOF[$sys]}
		store=$(new_store)
		tresor_mount "$store"
		drop_caches
		cat "$TARBALL" >/dev/null
		t0=$(now)
		tar xf "$TARBALL" -C "$MNT"
		sync -f "$MNT/objects" 2>/dev/null || sync
		"$TBIN" snapshot create "$store" bench </dev/null >/dev/null
		t1=$(now)
		record ${sys}_untar "$rep" "$(elapsed "$t0" "$t1")"
		sample_rss
		tresor_umount
		tresor_mount "$store"
		drop_caches
		t0=$(now)
		m=$(find "$MNT" -ls | wc -l)
		t1=$(now)
		record ${sys}_find "$rep" "$(elapsed "$t0" "$t1")"
		# tresor's root also lists .snapshots only with list_snapshots
		if ((m != n)); then
			log "find saw $m entries on $sys but $n on bindfs"
			exit 2
		fi
		if ((SMOKE)); then
			mkdir -p "$DIR/untar-ref"
			tar xf "$TARBALL" -C "$DIR/untar-ref"
			diff -r "$DIR/untar-ref" "$MNT" >/dev/null || { log "untarred tree differs on $sys"; exit 2; }
			rm -rf "$DIR/untar-ref"
		fi
		sample_rss
		tresor_umount
		rm -rf "$store"
		settle
	done
	record load_end "$rep" "$(loadavg)"
done

record peak_rss_kb 0 "$PEAK_RSS_KB"

# ------------------------------------------------------------------ report
rc=0
"$PY" - "$RESULTS" "$JSON" "$BYTES" "$NFILES" "$REPS" "$SMOKE" "$CACHES_DROPPED" "$TRESOR" <<'EOF' || rc=$?
import json, statistics, sys, time
res_path, json_path, nbytes, nfiles, reps, smoke, dropped, binary = sys.argv[1:9]
nbytes, nfiles, reps, smoke = int(nbytes), int(nfiles), int(reps), smoke == "1"
vals = {}
for line in open(res_path):
    metric, rep, value = line.rstrip("\n").split("\t")
    vals.setdefault(metric, []).append(float(value))
med = {k: statistics.median(v) for k, v in vals.items()}
mb = nbytes / 1e6
rss_mb = med["peak_rss_kb"] / 1024.0

rows = []
systems = ["tresor"] + (["tresorB"] if "tresorB_untar" in vals else [])
def per_rep(num, den):
    """Per-repetition ratios num[i] / den[i] (both times)."""
    return [a / b for a, b in zip(vals[num], vals[den])]
def summary(rs):
    return statistics.median(rs), min(rs), max(rs), rs
def row(name, base_label, sysname, base, tres, kind, target, bound, higher):
    # speed ratio tresor/baseline per repetition: baseline time / tresor time
    rs = per_rep(base, tres)
    r, lo, hi, each = summary(rs)
    passed = None if bound is None else (r >= bound if higher else r <= bound)
    rows.append({"test": name, "system": sysname, "baseline": base_label,
                 "baseline_s": round(med[base], 4), "tresor_s": round(med[tres], 4),
                 "kind": kind,
                 "baseline_mb_s": round(mb / med[base], 1) if kind == "throughput" else None,
                 "tresor_mb_s": round(mb / med[tres], 1) if kind == "throughput" else None,
                 "ratio": round(r, 3), "ratio_min": round(lo, 3), "ratio_max": round(hi, 3),
                 "ratio_per_rep": [round(x, 3) for x in each],
                 "target": target, "pass": passed})

for sysn in systems:
    if "raw_write" not in vals:
        pass
    else:
        row("seq write + fsync", "raw disk", sysn, "raw_write", sysn + "_write", "throughput",
            ">= 0.50 x raw", 0.5, True)
        row("cold seq read", "raw disk", sysn, "raw_read", sysn + "_read", "throughput",
            ">= 0.60 x raw", 0.6, True)
    row("untar %d files" % nfiles, "bindfs", sysn, "bindfs_untar", sysn + "_untar", "time",
        "speed >= bindfs", 1.0, True)
    row("untar %d files" % nfiles, "raw disk", sysn, "raw_untar", sysn + "_untar", "time",
        "(issue 15: >= 0.5)", None, True)
    row("cold find -ls", "bindfs", sysn, "bindfs_find", sysn + "_find", "time",
        "speed >= bindfs", 1.0, True)
    row("cold find -ls", "raw disk", sysn, "raw_find", sysn + "_find", "time",
        "(context)", None, True)
ab = []
if "tresorB_untar" in vals:
    for m, label in (("write", "seq write"), ("read", "cold seq read"),
                     ("untar", "untar"), ("find", "cold find -ls")):
        if "tresor_" + m not in vals:
            continue
        rs = per_rep("tresorB_" + m, "tresor_" + m)
        ab.append((label, summary(rs)))

print()
print("tresor benchmark: %d MiB sequential, %d small files, %d repetition(s)%s"
      % (nbytes // 2**20, nfiles, reps, " (SMOKE: numbers meaningless)" if smoke else ""))
print("1-minute load average at the start of each repetition: %s; at the end: %s"
      % (", ".join("%.2f" % x for x in vals["load"]),
         ", ".join("%.2f" % x for x in vals.get("load_end", []))))
if "tresorB_untar" in vals:
    print("tresor = %s, tresor-B = --compare binary" % binary)
if dropped != "1":
    print("WARNING: page cache could not be dropped; reads were not cold")
print("ratio: tresor's speed / the baseline's, computed per repetition; median (min-max) [each]")
hdr = "%-20s %-8s %-9s %11s %11s %6s %-13s %-22s %s" % (
    "test", "system", "baseline", "baseline", "tresor", "ratio", "(spread)", "target", "result")
print(hdr)
print("-" * len(hdr))
for x in rows:
    if x["kind"] == "throughput":
        b, t = "%.1f MB/s" % x["baseline_mb_s"], "%.1f MB/s" % x["tresor_mb_s"]
    else:
        b, t = "%.2f s" % x["baseline_s"], "%.2f s" % x["tresor_s"]
    print("%-20s %-8s %-9s %11s %11s %6.2f %-13s %-22s %s  [%s]" % (
        x["test"], x["system"], x["baseline"], b, t, x["ratio"],
        "(%.2f-%.2f)" % (x["ratio_min"], x["ratio_max"]), x["target"],
        "-" if x["pass"] is None else "PASS" if x["pass"] else "FAIL", " ".join("%.2f" % r for r in x["ratio_per_rep"])))
if ab:
    print("\nA/B: tresor's speed / tresor-B's, per repetition; median (min-max) [each]")
    for label, (r, lo, hi, each) in ab:
        print("  %-16s %5.2f (%.2f-%.2f) [%s]" % (label, r, lo, hi,
                                                 " ".join("%.2f" % x for x in each)))
rss_pass = rss_mb < 200
print("%-22s %-9s %12s %12s %8s  %-22s %s" % ("daemon peak RSS", "-", "-", "%.1f MB" % rss_mb, "-",
                                             "< 200 MB", "PASS" if rss_pass else "FAIL"))
allpass = all(x["pass"] is not False for x in rows if x["system"] == "tresor") and rss_pass
out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "binary": binary, "smoke": smoke,
       "bytes": nbytes, "small_files": nfiles, "repetitions": reps,
       "caches_dropped": dropped == "1", "results": rows,
       "peak_rss_mb": round(rss_mb, 1), "peak_rss_pass": rss_pass,
       "raw_seconds": vals, "all_pass": allpass,
       "ab": [{"figure": l, "ratio": round(r[0], 3), "per_rep": [round(x, 3) for x in r[3]]}
              for l, r in ab]}
with open(json_path, "w") as f:
    json.dump(out, f, indent=2)
print("\nJSON written to %s" % json_path)
print("overall: %s" % ("PASS" if allpass else "FAIL"))
sys.exit(0 if allpass else 1)
EOF
if ((SMOKE)); then
	# tiny sizes say nothing about speed: the smoke run checks that it works
	exit 0
fi
exit $rc
