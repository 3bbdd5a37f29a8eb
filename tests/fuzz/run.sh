#!/usr/bin/env bash
# tests/fuzz/run.sh - build and run the libFuzzer targets of tests/fuzz/.
#
#   bash tests/fuzz/run.sh [--seconds N] [--no-build] [--keep-going] [TARGET...]
#
# For each target (default: all five):
#  1. runs every input in tests/fuzz/regressions/TARGET/ once (crashes
#     found earlier: they must stay fixed);
#  2. fuzzes for N seconds (default 20) with -max_total_time=N and
#     -rss_limit_mb=1024, on a fresh copy of tests/fuzz/corpus/TARGET/ in
#     build-fuzz/work/TARGET/ (the committed corpus is never changed).
# A crash, leak, sanitizer report, timeout or out-of-memory input is kept
# in tests/fuzz/crashes/TARGET/ (move it to regressions/ once reported)
# and makes the script exit 1.  --keep-going fuzzes on after a finding
# (libFuzzer -fork=1 -ignore_crashes=1 ...: for long runs that should
# collect every distinct problem).  Logs are in build-fuzz/logs/; the
# figures (executions, exec/s, coverage) are printed and appended to
# build-fuzz/fuzz-stats.tsv.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FUZZ="$REPO/tests/fuzz"
OUT="$REPO/build-fuzz"
ALL=(fuzz_pack_footer fuzz_keyfile fuzz_xml fuzz_index fuzz_config fuzz_delta fuzz_s3_list fuzz_webdav_list)
SECONDS_PER=20
BUILD=1
KEEP_GOING=0
TARGETS=()

while (($#)); do
	case "$1" in
	--seconds)
		SECONDS_PER=${2:?--seconds needs a value}
		shift
		;;
	--seconds=*) SECONDS_PER=${1#--seconds=} ;;
	--no-build) BUILD=0 ;;
	--keep-going) KEEP_GOING=1 ;;
	-h | --help)
		sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	fuzz_*) TARGETS+=("$1") ;;
	*)
		echo "fuzz/run.sh: unknown argument $1 (try --help)" >&2
		exit 2
		;;
	esac
	shift
done
((${#TARGETS[@]})) || TARGETS=("${ALL[@]}")
[[ "$SECONDS_PER" =~ ^[0-9]+$ ]] || { echo "fuzz/run.sh: bad --seconds" >&2; exit 2; }

# Per-target options: longest input, extra flags.
declare -A MAXLEN=([fuzz_pack_footer]=65536 [fuzz_keyfile]=1024
	[fuzz_xml]=65536 [fuzz_index]=65536 [fuzz_config]=8192 [fuzz_delta]=65536
	[fuzz_s3_list]=65536 [fuzz_webdav_list]=65536)
declare -A EXTRA=([fuzz_xml]="-dict=$FUZZ/fuzz_xml.dict"
	[fuzz_config]="-dict=$FUZZ/fuzz_config.dict"
	[fuzz_s3_list]="-dict=$FUZZ/fuzz_list.dict" [fuzz_webdav_list]="-dict=$FUZZ/fuzz_list.dict")

if ((BUILD)); then
	bash "$FUZZ/build.sh" || { echo "fuzz/run.sh: build failed" >&2; exit 1; }
fi

# Symbolized stacks: llvm-symbolizer if there is one, else addr2line.
sym=$(command -v llvm-symbolizer || true)
if [[ -z "$sym" ]]; then
	for s in /usr/lib/llvm-*/bin/llvm-symbolizer; do
		[[ -x "$s" ]] && sym=$s
	done
fi
ASAN_OPTS="detect_leaks=1:allocator_may_return_null=1:handle_abort=1"
if [[ -n "$sym" ]]; then
	export ASAN_SYMBOLIZER_PATH=$sym
else
	ASAN_OPTS+=":allow_addr2line=1"
fi
export ASAN_OPTIONS=$ASAN_OPTS
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Scratch files of the targets (pack, key and database files) on tmpfs.
TRESOR_FUZZ_TMP=$(mktemp -d /dev/shm/tresor-fuzz-run-XXXXXX)
export TRESOR_FUZZ_TMP
trap 'rm -rf "$TRESOR_FUZZ_TMP"' EXIT

mkdir -p "$OUT/logs" "$OUT/work"
FAILED=()
ROWS=()
stat_of() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

for t in "${TARGETS[@]}"; do
	bin="$OUT/$t"
	log="$OUT/logs/$t.log"
	crashdir="$FUZZ/crashes/$t"
	if [[ ! -x "$bin" ]]; then
		echo "fuzz/run.sh: $bin missing" >&2
		FAILED+=("$t: not built")
		continue
	fi

	# 1. regression inputs, run once each
	reg=()
	if [[ -d "$FUZZ/regressions/$t" ]]; then
		while IFS= read -r -d '' f; do reg+=("$f"); done < \
			<(find "$FUZZ/regressions/$t" -type f ! -name '.*' ! -name '*.md' -print0 | sort -z)
	fi
	nbad=0
	: >"$OUT/logs/$t.regressions.log"
	for f in "${reg[@]}"; do
		# one process per input, so every failing one is named
		if ! "$bin" -rss_limit_mb=1024 -timeout=30 "$f" \
			>"$OUT/logs/$t.regression.log" 2>&1; then
			nbad=$((nbad + 1))
			echo "=== $t: regression input ${f#"$REPO/"} FAILS:"
			grep -v '^tresor: ' "$OUT/logs/$t.regression.log" |
				grep -A 14 -m 1 -E 'ERROR: |runtime error|deadly signal|ALARM|out-of-memory'
			FAILED+=("$t: regression input ${f#"$REPO/"}")
		fi
		cat "$OUT/logs/$t.regression.log" >>"$OUT/logs/$t.regressions.log"
	done
	rm -f "$OUT/logs/$t.regression.log"
	if ((${#reg[@]})); then
		echo "=== $t: $((${#reg[@]} - nbad)) of ${#reg[@]} regression input(s) pass"
	fi

	# 2. fuzz on a copy of the corpus
	work="$OUT/work/$t"
	rm -rf "$work"
	mkdir -p "$work" "$crashdir"
	if [[ -d "$FUZZ/corpus/$t" ]]; then
		cp "$FUZZ/corpus/$t/"* "$work/" 2>/dev/null
	fi
	nseed=$(find "$work" -type f | wc -l)
	before=$(ls "$crashdir")
	mode=()
	((KEEP_GOING)) && mode=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
	echo "=== $t: fuzzing ${SECONDS_PER}s from $nseed seed(s)"
	# shellcheck disable=SC2086
	"$bin" -max_total_time="$SECONDS_PER" -rss_limit_mb=1024 -timeout=10 \
		-max_len="${MAXLEN[$t]:-65536}" -print_final_stats=1 \
		-artifact_prefix="$crashdir/" "${mode[@]}" ${EXTRA[$t]:-} "$work" \
		</dev/null >"$log" 2>&1
	rc=$?
	[[ "$(ls "$crashdir")" == "$before" ]] || ((rc)) || rc=1
	execs=$(stat_of number_of_executed_units "$log")
	eps=$(stat_of average_exec_per_sec "$log")
	newu=$(stat_of new_units_added "$log")
	rss=$(stat_of peak_rss_mb "$log")
	if [[ -z "$execs" ]]; then
		# fork mode prints no final stats: "#N: cov: .. exec/s: E .. time: Ts"
		execs=$(grep -o '^#[0-9]*: cov' "$log" | tail -1 | tr -dc 0-9)
		eps=$(grep -oE 'exec/s:? [0-9]+' "$log" | tail -1 | tr -dc 0-9)
	fi
	cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
	units=$(find "$work" -type f | wc -l)
	ROWS+=("$(printf '%-17s %10s %8s %8s %6s %7s  %s' "$t" "${execs:-?}" \
		"${eps:-?}" "${newu:-?}" "$units" "${rss:-?}" "${cov:-?}")")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" \
		"$SECONDS_PER" "${execs:-}" "${eps:-}" "${newu:-}" "$rc" "${cov:-}" \
		>>"$OUT/fuzz-stats.tsv"
	if ((rc != 0)); then
		echo "=== $t: FOUND A PROBLEM (exit $rc); input kept in $crashdir/:"
		ls -l "$crashdir/"
		grep -n -m1 -E 'ERROR: |runtime error|SUMMARY|deadly signal|ALARM|out-of-memory' "$log"
		tail -n 80 "$log"
		FAILED+=("$t: fuzzing found a problem, see $log")
	else
		rmdir "$crashdir" 2>/dev/null
		echo "=== $t: clean (${execs:-?} execs, ${eps:-?}/s)"
	fi
done
rmdir "$FUZZ/crashes" 2>/dev/null

echo
printf '%-17s %10s %8s %8s %6s %7s  %s\n' target execs exec/s new corpus rss_mb coverage
printf '%s\n' "${ROWS[@]}"
if ((${#FAILED[@]})); then
	printf 'fuzz: FAILED: %s\n' "${FAILED[@]}"
	exit 1
fi
echo "fuzz: ${#TARGETS[@]} target(s) clean"
