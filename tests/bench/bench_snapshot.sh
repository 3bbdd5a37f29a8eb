#!/usr/bin/env bash
# bench_snapshot.sh - how long `tresor snapshot create` takes with few and
# with many files (issue 3: "O(1) snapshots").
#
#   bash tests/bench/bench_snapshot.sh [--smoke] [--small N] [--large N]
#                                      [--reps N] [--dir DIR] [--json FILE]
#
# For each size (default 1,000 and 200,000 files): a fresh store, mounted;
# the files untarred into the mount (a generated tarball of tiny files,
# 1,000 per directory, cached in DIR); then REPS (default 5) times: change
# a few files, time `tresor snapshot create` (through the daemon, fsync
# included, process start included), and once more with the volume
# unmounted (the direct path).  Reports the medians, the ratio
# large/small (target < 2), the absolute time (target < 50 ms, informative)
# and how much the index grew per snapshot (SQLite pages); checks that the last snapshot
# shows all files.  Prints a table, writes JSON (default DIR/bench-snapshot.json).
# Exit 0 when the ratio target passes, 1 when it fails, 2 on an error.
# --smoke: 1,000 vs 10,000 files in a temp dir (about a minute); the
# checks run, the targets are reported but do not change the exit status.
#
# Env: TRESOR_BIN (default <repo>/build/tresor), TRESOR_MOUNT_OPTS (extra
# -o options for tresor mount).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TRESOR=${TRESOR_BIN:-$REPO/build/tresor}
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

SMOKE=0
SMALL=1000
LARGE=200000
REPS=5
DIR=""
JSON=""

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
	case "$1" in
	--smoke) SMOKE=1 ;;
	--small) SMALL=$2; shift ;;
	--large) LARGE=$2; shift ;;
	--reps) REPS=$2; shift ;;
	--dir) DIR=$2; shift ;;
	--json) JSON=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

if ((SMOKE)); then
	LARGE=10000
	if [[ -z $DIR ]]; then
		DIR=$(mktemp -d /tmp/tresor-bench-snap-smoke.XXXXXX)
		SMOKE_TMP=$DIR
	fi
	if [[ -z $JSON ]]; then
		mkdir -p "$REPO/tests/.work"
		JSON=$REPO/tests/.work/bench-snapshot-smoke.json
	fi
fi
DIR=${DIR:-/var/tmp/tresor-bench-snapshot}
JSON=${JSON:-$DIR/bench-snapshot.json}
((REPS >= 1 && SMALL >= 1 && LARGE >= 1)) || { echo "bench: bad --reps/--small/--large" >&2; exit 2; }

[[ -x $TRESOR ]] || { echo "bench: $TRESOR not built (ninja -C build)" >&2; exit 2; }
for t in fusermount3 tar find mountpoint; do
	command -v "$t" >/dev/null || { echo "bench: $t missing (bash tools/install-deps.sh)" >&2; exit 2; }
done

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
RESULTS=$DIR/snapshot-results.tsv
PASSFILE=$DIR/passphrase
MNT=$DIR/mnt
DAEMON_PID=""
: >"$RESULTS"
mkdir -p "$MNT"
(umask 077 && head -c 24 /dev/urandom | base64 >"$PASSFILE")
export TRESOR_PASSPHRASE
TRESOR_PASSPHRASE=$(cat "$PASSFILE")

log() { echo "bench: $*" >&2; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }   # metric files rep value

# Seconds (with ns) that "$@" takes; its stdout goes to $DIR/last.out.
timed() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" </dev/null >"$DIR/last.out"
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", (b - a) / 1e9 }'
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

tresor_mount() {   # STORE
	local opts=()
	[[ -n ${TRESOR_MOUNT_OPTS:-} ]] && opts=(-o "$TRESOR_MOUNT_OPTS")
	"$TRESOR" mount "$1" bench "$MNT" -f --passphrase-file "$PASSFILE" "${opts[@]}" \
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

index_bytes() {   # STORE: logical size of the index (pages, WAL included)
	"$PY" - "$1/index.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=30)
print(db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0])
EOF
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
	set +e
	tresor_umount
	rm -rf "$DIR/store"
	if [[ -n ${SMOKE_TMP:-} ]]; then rm -rf "$SMOKE_TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_tarball() {   # N -> path of a tarball with N tiny files
	local n=$1 tb=$DIR/tiny-$1.tar
	if [[ ! -s $tb ]]; then
		log "generating $tb"
		"$PY" - "$tb" "$n" <<'EOF'
import io, sys, tarfile
path, n = sys.argv[1], int(sys.argv[2])
with tarfile.open(path + ".part", "w", format=tarfile.GNU_FORMAT) as tf:
    for d in range((n + 999) // 1000):
        ti = tarfile.TarInfo("objects/OBJ-%05d" % d)
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        ti.mtime = 1700000000
        tf.addfile(ti)
    for i in range(n):
        data = b"%d\n" % i if i % 2 else b""
        ti = tarfile.TarInfo("objects/OBJ-%05d/f-%07d" % (i // 1000, i))
        ti.size = len(data)
        ti.mode = 0o644
        ti.mtime = 1700000000 + i
        tf.addfile(ti, io.BytesIO(data))
import os
os.rename(path + ".part", path)
EOF
	fi
	echo "$tb"
}

# ------------------------------------------------------------------ runs
log "dir $DIR, $SMALL and $LARGE files, $REPS rep(s), binary $TRESOR"
for n in "$SMALL" "$LARGE"; do
	tb=$(make_tarball "$n")
	store=$DIR/store
	rm -rf "$store"
	"$TRESOR" init "$store" --kdf-log2n 12 --passphrase-file "$PASSFILE" </dev/null >/dev/null
	"$TRESOR" volume create "$store" bench </dev/null >/dev/null
	tresor_mount "$store"
	log "$n files: untar into the mount"
	t=$(timed tar xf "$tb" -C "$MNT")
	record untar_s "$n" 0 "$t"
	sync -f "$MNT" 2>/dev/null || sync
	got=$(find "$MNT/objects" -type f | wc -l)
	if ((got != n)); then
		log "the mount shows $got files after untar, expected $n"
		exit 2
	fi
	# a first snapshot (not timed), then REPS timed ones, each after a
	# few changes so that every snapshot has something to flush
	"$TRESOR" snapshot create "$store" bench --time 2020-01-01T00:00:00 </dev/null >/dev/null
	for ((rep = 1; rep <= REPS; rep++)); do
		for ((k = 0; k < 10; k++)); do
			echo "rep $rep" >>"$MNT/objects/OBJ-00000/f-$(printf %07d $((k * 7 % (n < 1000 ? n : 1000))))"
		done
		before=$(index_bytes "$store")
		t=$(timed "$TRESOR" snapshot create "$store" bench --time "2020-01-0$(((rep % 9) + 1))T12:00:00")
		record mounted_s "$n" "$rep" "$t"
		record index_growth "$n" "$rep" $(($(index_bytes "$store") - before))
	done
	last=$(cat "$DIR/last.out")
	got=$(find "$MNT/.snapshots/$last/objects" -type f | wc -l)
	if ((got != n)); then
		log "snapshot $last shows $got files, expected $n"
		exit 2
	fi
	tresor_umount
	# the direct path (volume not mounted)
	for ((rep = 1; rep <= REPS; rep++)); do
		t=$(timed "$TRESOR" snapshot create "$store" bench --time 2020-02-01T12:00:00)
		record unmounted_s "$n" "$rep" "$t"
	done
	rm -rf "$store"
done

# ------------------------------------------------------------------ report
rc=0
"$PY" - "$RESULTS" "$JSON" "$SMALL" "$LARGE" "$REPS" "$SMOKE" "$TRESOR" <<'EOF' || rc=$?
import json, statistics, sys, time
res_path, json_path, small, large, reps, smoke, binary = sys.argv[1:8]
small, large, reps, smoke = int(small), int(large), int(reps), smoke == "1"
vals = {}
for line in open(res_path):
    metric, n, rep, value = line.rstrip("\n").split("\t")
    vals.setdefault((metric, int(n)), []).append(float(value))
med = {k: statistics.median(v) for k, v in vals.items()}
ratio = med[("mounted_s", large)] / med[("mounted_s", small)]
ratio_direct = med[("unmounted_s", large)] / med[("unmounted_s", small)]
passed = ratio < 2.0
rows = []
print()
print("tresor snapshot benchmark: %d vs %d files, median of %d%s"
      % (small, large, reps, " (SMOKE: targets not enforced)" if smoke else ""))
hdr = "%-34s %12s %12s %8s  %s" % ("", "%d files" % small, "%d files" % large, "ratio", "target")
print(hdr)
print("-" * len(hdr))
def line(label, metric, fmt, target=""):
    a, b = med[(metric, small)], med[(metric, large)]
    r = "%8.2f" % (b / a) if a else "%8s" % "-"
    print("%-34s %12s %12s %s  %s" % (label, fmt % a, fmt % b, r, target))
line("snapshot create, mounted", "mounted_s", "%.4f s", "< 2 (%s)" % ("PASS" if passed else "FAIL"))
line("snapshot create, unmounted", "unmounted_s", "%.4f s")
line("index growth per snapshot", "index_growth", "%.0f B")
line("untar (setup)", "untar_s", "%.2f s")
abs_ok = med[("mounted_s", large)] < 0.050
print("absolute time at %d files: %.1f ms (issue target < 50 ms: %s)"
      % (large, med[("mounted_s", large)] * 1000, "PASS" if abs_ok else "FAIL"))
out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "binary": binary, "smoke": smoke,
       "files": [small, large], "reps": reps,
       "mounted_s": {str(small): vals[("mounted_s", small)], str(large): vals[("mounted_s", large)]},
       "unmounted_s": {str(small): vals[("unmounted_s", small)],
                       str(large): vals[("unmounted_s", large)]},
       "median_mounted_s": {str(small): med[("mounted_s", small)],
                            str(large): med[("mounted_s", large)]},
       "median_unmounted_s": {str(small): med[("unmounted_s", small)],
                              str(large): med[("unmounted_s", large)]},
       "index_growth_bytes": {str(small): vals[("index_growth", small)],
                              str(large): vals[("index_growth", large)]},
       "untar_s": {str(small): med[("untar_s", small)], str(large): med[("untar_s", large)]},
       "ratio": round(ratio, 3), "ratio_unmounted": round(ratio_direct, 3),
       "target_ratio": 2.0, "pass": passed, "absolute_under_50ms": abs_ok}
with open(json_path, "w") as f:
    json.dump(out, f, indent=1)
print("JSON: %s" % json_path)
sys.exit(0 if passed or smoke else 1)
EOF
exit $rc
