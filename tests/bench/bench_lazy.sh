#!/usr/bin/env bash
# bench_lazy.sh - fast first byte after a disaster (issue 5): the time to
# read one file from a lazily recovered store, against the time to
# download the whole repository (a full recovery), at two volume sizes.
#
#   bash tests/bench/bench_lazy.sh [--smoke] [--size 2G] [--small 256M]
#                                  [--file 4M] [--dir DIR] [--json FILE]
#
# For each size: a fresh store whose volume holds SIZE of incompressible
# files (8 MiB each) plus one FILE-sized target; pushed to a loopback S3
# (tests/servers/s3rver, the SigV4-checking fork, on 127.0.0.1).  Then,
# timed in the same run:
#   full  `tresor recover URL STORE` (every pack downloaded and verified);
#   lazy  `tresor recover URL STORE --lazy` + `tresor mount` + reading the
#         target file whole (its bytes checked), until the read returns
#         (best of 3 fresh runs: each takes about a second).
# Reports both times, the ratio lazy/full at each size, and how the ratio
# changes from the small to the large size: lazy time should stay roughly
# constant while full time grows with the volume, so the ratio falls.
# Exit 0 when lazy < full at the large size and the lazy time grows less
# than the volume did (large/small lazy time < large/small size / 2);
# 1 when not; 2 on an error.
# --smoke: 48 MiB and 192 MiB in a temp dir (well under a minute); the
# checks run, the targets are reported but do not change the exit status.
#
# Env: TRESOR_BIN (default <repo>/build/tresor).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TRESOR=${TRESOR_BIN:-$REPO/build/tresor}
S3DIR=$REPO/tests/servers/s3rver
SMOKE=0
LARGE=$((2048 << 20))
SMALL=$((256 << 20))
FILE=$((4 << 20))
DIR=""
JSON=""

usage() { sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

bytes() {	# 2G, 256M, 4096K, 123 -> bytes
	local v=${1%[KkMmGg]} u=${1: -1}
	case $u in
	k | K) echo $((v << 10)) ;;
	m | M) echo $((v << 20)) ;;
	g | G) echo $((v << 30)) ;;
	*) echo "$1" ;;
	esac
}

while (($#)); do
	case "$1" in
	--smoke) SMOKE=1 ;;
	--size) LARGE=$(bytes "$2"); shift ;;
	--small) SMALL=$(bytes "$2"); shift ;;
	--file) FILE=$(bytes "$2"); shift ;;
	--dir) DIR=$2; shift ;;
	--json) JSON=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

if ((SMOKE)); then
	SMALL=$((48 << 20))
	LARGE=$((192 << 20))
	if [[ -z $DIR ]]; then
		DIR=$(mktemp -d /tmp/tresor-bench-lazy-smoke.XXXXXX)
		SMOKE_TMP=$DIR
	fi
	if [[ -z $JSON ]]; then
		mkdir -p "$REPO/tests/.work"
		JSON=$REPO/tests/.work/bench-lazy-smoke.json
	fi
fi
DIR=${DIR:-/var/tmp/tresor-bench-lazy}
JSON=${JSON:-$DIR/bench-lazy.json}
((SMALL > 0 && LARGE > SMALL && FILE > 0)) || { echo "bench: need 0 < --small < --size" >&2; exit 2; }

[[ -x $TRESOR ]] || { echo "bench: $TRESOR not built (ninja -C build)" >&2; exit 2; }
for t in fusermount3 node npm mountpoint cmp; do
	command -v "$t" >/dev/null || { echo "bench: $t missing (bash tools/install-deps.sh)" >&2; exit 2; }
done
if [[ ! -f $S3DIR/node_modules/@20minutes/s3rver/package.json ]]; then
	(cd "$S3DIR" && npm ci --no-audit --no-fund --loglevel=error </dev/null) ||
		{ echo "bench: npm ci in $S3DIR failed" >&2; exit 2; }
fi

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
MNT=$DIR/mnt
PASSFILE=$DIR/passphrase
S3PID=""
DAEMON_MNT=""
mkdir -p "$MNT"
umask 077
printf 'bench-lazy passphrase\n' >"$PASSFILE"

cleanup() {
	if [[ -n $DAEMON_MNT ]] && mountpoint -q "$DAEMON_MNT"; then
		fusermount3 -u "$DAEMON_MNT" 2>/dev/null || fusermount3 -u -z "$DAEMON_MNT" 2>/dev/null || true
	fi
	if [[ -n $S3PID ]]; then
		kill "$S3PID" 2>/dev/null || true
		wait "$S3PID" 2>/dev/null || true
	fi
	if [[ -n ${SMOKE_TMP:-} ]]; then
		rm -rf "$SMOKE_TMP"
	fi
}
trap cleanup EXIT

# ---- the loopback S3 server (key pair in the environment, never argv)
export AWS_ACCESS_KEY_ID=AKIATRESORBENCH00001
export AWS_SECRET_ACCESS_KEY=tresorBenchSecret/Key+0123456789abcdefgh
export AWS_EC2_METADATA_DISABLED=true
export HOME=$DIR/home
mkdir -p "$HOME" "$DIR/s3data"
S3LOG=$DIR/s3rver.log
S3RVER_ACCESS_KEY=$AWS_ACCESS_KEY_ID S3RVER_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
	node --openssl-legacy-provider "$S3DIR/start.js" --port 0 --dir "$DIR/s3data" \
	--bucket bench >"$S3LOG" 2>&1 </dev/null &
S3PID=$!
PORT=""
for _ in $(seq 1 300); do
	PORT=$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$S3LOG" | head -1)
	[[ -n $PORT ]] && break
	kill -0 "$S3PID" 2>/dev/null || { echo "bench: s3rver died:" >&2; cat "$S3LOG" >&2; exit 2; }
	sleep 0.1
done
[[ -n $PORT ]] || { echo "bench: s3rver did not start" >&2; exit 2; }
ROPTS=(--endpoint "http://127.0.0.1:$PORT" --path-style)

now() { date +%s.%N; }
calc() { awk "BEGIN { print $* }"; }	# floating point, no bc needed
elapsed() { calc "$(now) - $1"; }

T() { "$TRESOR" "$@" --passphrase-file "$PASSFILE"; }

RESULTS=()
# run_size NAME BYTES: build, push, time full and lazy; appends to RESULTS.
run_size() {
	local name=$1 size=$2 store=$DIR/store-$1 url=s3://bench/$1
	rm -rf "$store" "$DIR/full-$name" "$DIR/lazy-$name" "$DIR/full-$name.recover" "$DIR/lazy-$name.recover"
	T init "$store" --kdf-log2n 12 >/dev/null
	T volume create "$store" vol >/dev/null
	T mount "$store" vol "$MNT" >/dev/null
	DAEMON_MNT=$MNT
	local n=$(((size + (8 << 20) - 1) / (8 << 20))) i
	mkdir -p "$MNT/site"
	for ((i = 0; i < n; i++)); do
		head -c $((8 << 20)) /dev/urandom >"$MNT/site/plan-$i.pdf"
	done
	head -c "$FILE" /dev/urandom >"$DIR/target"
	cp "$DIR/target" "$MNT/site/target.dwg"
	fusermount3 -u "$MNT"
	DAEMON_MNT=""
	for _ in $(seq 1 100); do pgrep -f "mount $store vol" >/dev/null || break; sleep 0.1; done
	T remote add "$store" offsite "$url" "${ROPTS[@]}" >/dev/null
	T push "$store" offsite >/dev/null
	local repo_bytes
	repo_bytes=$(du -sb "$DIR/s3data" | cut -f1)

	# full: download everything (verified)
	local t0 full lazy
	sync
	t0=$(now)
	T recover "$url" "$DIR/full-$name" "${ROPTS[@]}" >/dev/null
	full=$(elapsed "$t0")

	# lazy: metadata, mount, read one file whole; the best of 3 fresh
	# runs (each one second or less, so load spikes weigh heavily)
	local rep t
	lazy=""
	for rep in 1 2 3; do
		rm -rf "$DIR/lazy-$name"
		t0=$(now)
		T recover "$url" "$DIR/lazy-$name" "${ROPTS[@]}" --lazy >/dev/null
		T mount "$DIR/lazy-$name" vol "$MNT" >/dev/null
		DAEMON_MNT=$MNT
		cmp "$MNT/site/target.dwg" "$DIR/target"
		t=$(elapsed "$t0")
		fusermount3 -u "$MNT"
		DAEMON_MNT=""
		for _ in $(seq 1 100); do pgrep -f "mount $DIR/lazy-$name vol" >/dev/null || break; sleep 0.1; done
		if [[ -z $lazy ]] || (($(calc "$t < $lazy ? 1 : 0"))); then lazy=$t; fi
	done
	local packs_all packs_lazy
	packs_all=$(find "$DIR/full-$name/packs" -type f | wc -l)
	sleep 0.5
	packs_lazy=$(find "$DIR/lazy-$name/packs" -type f -name '????????????????????????????????' | wc -l)
	RESULTS+=("$name $size $full $lazy $packs_all $packs_lazy")
	printf '%-6s volume %6d MiB: full recovery %7.2f s (%d packs)   lazy read of one %d MiB file %6.2f s (%d pack(s) fetched)   ratio %.3f\n' \
		"$name" $((size >> 20)) "$full" "$packs_all" $((FILE >> 20)) "$lazy" "$packs_lazy" \
		"$(calc "$lazy / $full")"
	rm -rf "$store" "$DIR/full-$name" "$DIR/lazy-$name" "$DIR/s3data/bench/$name" 2>/dev/null || true
	: "$repo_bytes"
}

echo "bench_lazy: loopback S3 on 127.0.0.1:$PORT, sizes $((SMALL >> 20)) and $((LARGE >> 20)) MiB, target file $((FILE >> 20)) MiB"
run_size small "$SMALL"
run_size large "$LARGE"

read -r _ s_size s_full s_lazy _ _ <<<"${RESULTS[0]}"
read -r _ l_size l_full l_lazy _ l_packs_lazy <<<"${RESULTS[1]}"
r_small=$(calc "$s_lazy / $s_full")
r_large=$(calc "$l_lazy / $l_full")
growth_lazy=$(calc "$l_lazy / $s_lazy")
growth_size=$(calc "$l_size / $s_size")
pass=$(calc "($l_lazy < $l_full && $growth_lazy < $growth_size / 2) ? 1 : 0")
printf 'ratio lazy/full: %.3f at %d MiB, %.3f at %d MiB; volume grew %.1fx, lazy read time %.2fx: %s\n' \
	"$r_small" $((s_size >> 20)) "$r_large" $((l_size >> 20)) "$growth_size" "$growth_lazy" \
	"$( ((pass)) && echo PASS || echo FAIL)"
cat >"$JSON" <<EOF
{"file_bytes": $FILE,
 "sizes": [{"bytes": $s_size, "full_s": $s_full, "lazy_s": $s_lazy, "ratio": $r_small},
           {"bytes": $l_size, "full_s": $l_full, "lazy_s": $l_lazy, "ratio": $r_large,
            "lazy_packs_fetched": $l_packs_lazy}],
 "lazy_growth": $growth_lazy, "size_growth": $growth_size, "pass": $pass}
EOF
echo "bench_lazy: results in $JSON"
if ((SMOKE)); then
	exit 0
fi
((pass)) && exit 0 || exit 1
