#!/usr/bin/env bash
# tests/run.sh - THE test command of tresor.
#
#   bash tests/run.sh [--quick] [-- PYTEST-ARGS...]
#
# 1. installs the Debian packages it needs (tools/install-deps.sh)
# 2. builds build/ (meson, -Dwerror=true) and runs the C unit tests
# 3. runs the integration tests (pytest, tests/integration) against
#    build/tresor, the fuzz targets for 15 s each (tests/fuzz/run.sh;
#    TRESOR_FUZZ_SECONDS=N to change) and the benchmark script in --smoke
#    mode, and a short ThreadSanitizer run (tests/tsan.sh)
# 4. unless --quick: the same again with AddressSanitizer + UBSan in
#    build-asan/ (daemon stderr is checked for sanitizer reports)
#
# Exits non-zero if anything failed; the last line is "N passed, M failed"
# (unit tests and integration tests counted one by one, the other phases
# one each).  Works from any cwd, as root, with CI=true and no stdin.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1

QUICK=0
PYTEST_EXTRA=()
while (($#)); do
	case "$1" in
	--quick) QUICK=1 ;;
	-h | --help)
		sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	--)
		shift
		PYTEST_EXTRA=("$@")
		break
		;;
	*)
		echo "run.sh: unknown option $1 (try --help)" >&2
		exit 2
		;;
	esac
	shift
done

PY=/usr/bin/python3
WORK="$REPO/tests/.work"
mkdir -p "$WORK"
PYTEST_TIMEOUT=${TRESOR_PYTEST_TIMEOUT:-2700}

PASSED=0
FAILED=0
FAILED_WHAT=()

ok() {
	PASSED=$((PASSED + 1))
	echo "=== PASS: $1"
}
bad() {
	FAILED=$((FAILED + 1))
	FAILED_WHAT+=("$1")
	echo "=== FAIL: $1"
}
banner() {
	echo
	echo "=================================================================="
	echo "=== $*"
	echo "=================================================================="
}

# Lazily unmount mounts left below /tmp/tresor-test-* and end the tresor
# daemons serving them (only those: found by their mount point argument).
cleanup_stale() {
	local mp pid
	while read -r mp; do
		[[ -n "$mp" ]] || continue
		echo "run.sh: removing stale mount $mp"
		fusermount3 -u -z "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
	done < <(awk '$5 ~ /^\/tmp\/tresor-test-/ {print $5}' /proc/self/mountinfo | sort -r)
	for pid in $(pgrep -f -- ' /tmp/tresor-test-' 2>/dev/null || true); do
		if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q '^[^ ]*tresor mount '; then
			echo "run.sh: killing leftover daemon $pid"
			kill -9 "$pid" 2>/dev/null || true
		fi
	done
}

# count_meson BUILDDIR RC LABEL: add the unit test results from testlog.json
count_meson() {
	local dir=$1 rc=$2 label=$3 counts p f
	counts=$("$PY" - "$dir/meson-logs/testlog.json" <<'EOF'
import json, sys
p = f = 0
try:
    for line in open(sys.argv[1]):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line).get("result", "")
        if r in ("OK", "EXPECTEDFAIL"):
            p += 1
        elif r in ("SKIP",):
            pass
        else:
            f += 1
except OSError:
    pass
print(p, f)
EOF
	)
	read -r p f <<<"$counts"
	PASSED=$((PASSED + p))
	FAILED=$((FAILED + f))
	((f > 0)) && FAILED_WHAT+=("$label: $f unit test(s)")
	if ((rc != 0 && f == 0)); then
		bad "$label (meson test exit $rc)"
	fi
	echo "=== $label: $p passed, $f failed"
}

# count_pytest XML RC LABEL
count_pytest() {
	local xml=$1 rc=$2 label=$3 counts p f
	counts=$("$PY" - "$xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print("0 0 missing")
    sys.exit()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
t = fl = er = sk = 0
for s in suites:
    t += int(s.get("tests", 0)); fl += int(s.get("failures", 0))
    er += int(s.get("errors", 0)); sk += int(s.get("skipped", 0))
print(t - fl - er - sk, fl + er, "ok")
EOF
	)
	read -r p f state <<<"$counts"
	PASSED=$((PASSED + p))
	FAILED=$((FAILED + f))
	((f > 0)) && FAILED_WHAT+=("$label: $f test(s)")
	if [[ "$state" == missing ]]; then
		bad "$label (pytest exit $rc, no report: crashed or timed out)"
	elif ((rc != 0 && f == 0)); then
		bad "$label (pytest exit $rc)"
	elif ((p == 0 && f == 0)); then
		bad "$label (no test ran)"
	fi
	echo "=== $label: $p passed, $f failed"
}

# pass_suite NAME BUILDDIR: unit tests + integration tests of one build
run_suite() {
	local name=$1 dir=$2 rc xml
	banner "$name: C unit tests (meson test -C $dir)"
	rm -f "$dir/meson-logs/testlog.json"
	meson test -C "$dir" --print-errorlogs </dev/null
	rc=$?
	count_meson "$dir" "$rc" "$name unit"

	banner "$name: integration tests (TRESOR_BIN=$dir/tresor)"
	xml="$WORK/pytest-$name.xml"
	rm -f "$xml"
	cleanup_stale
	TRESOR_BIN="$REPO/$dir/tresor" PYTHONDONTWRITEBYTECODE=1 \
		timeout --kill-after=30 "$PYTEST_TIMEOUT" \
		"$PY" -m pytest -q -p no:cacheprovider -rfE --junitxml="$xml" \
		tests/integration "${PYTEST_EXTRA[@]}" </dev/null
	rc=$?
	cleanup_stale
	count_pytest "$xml" "$rc" "$name integration"
}

# ---------------------------------------------------------------- deps
banner "dependencies"
if bash "$REPO/tools/install-deps.sh" </dev/null; then
	ok "install-deps"
else
	bad "install-deps"
fi

# ---------------------------------------------------------------- build
banner "build (build/)"
build_ok=0
if [[ ! -f build/build.ninja ]]; then
	meson setup build --buildtype=debugoptimized -Dwerror=true </dev/null
fi
if [[ -f build/build.ninja ]] && ninja -C build </dev/null; then
	ok "build"
	build_ok=1
else
	bad "build"
fi

if ((build_ok)); then
	unset ASAN_OPTIONS UBSAN_OPTIONS
	run_suite default build

	# Hostile input: every libFuzzer target (tests/fuzz/) for a bounded
	# time, after replaying the inputs of crashes found earlier.
	banner "fuzzing (tests/fuzz/run.sh --seconds ${TRESOR_FUZZ_SECONDS:-15})"
	if timeout --kill-after=30 300 bash tests/fuzz/run.sh \
		--seconds "${TRESOR_FUZZ_SECONDS:-15}" </dev/null; then
		ok "fuzz"
	else
		bad "fuzz"
	fi

	# Threads: the threaded parts (chunk pipeline workers, libfuse's
	# thread pool with -o mt, snapshot and push during writes) once under
	# ThreadSanitizer, briefly (tests/tsan.sh).
	banner "ThreadSanitizer (tests/tsan.sh: build-tsan/, load with -o mt, snapshots under writes)"
	if timeout --kill-after=30 1200 bash tests/tsan.sh </dev/null; then
		ok "tsan"
	else
		bad "tsan"
	fi
	cleanup_stale

	banner "benchmark smoke run (tests/bench/bench_store.sh --smoke)"
	if TRESOR_BIN="$REPO/build/tresor" timeout --kill-after=30 600 \
		bash tests/bench/bench_store.sh --smoke </dev/null; then
		ok "bench --smoke"
	else
		bad "bench --smoke"
	fi
	banner "push benchmark smoke run (tests/bench/bench_push.sh --smoke)"
	if TRESOR_BIN="$REPO/build/tresor" timeout --kill-after=30 300 \
		bash tests/bench/bench_push.sh --smoke </dev/null; then
		ok "bench_push --smoke"
	else
		bad "bench_push --smoke"
	fi
	banner "lazy recovery benchmark smoke run (tests/bench/bench_lazy.sh --smoke)"
	if TRESOR_BIN="$REPO/build/tresor" timeout --kill-after=30 300 \
		bash tests/bench/bench_lazy.sh --smoke </dev/null; then
		ok "bench_lazy --smoke"
	else
		bad "bench_lazy --smoke"
	fi
	cleanup_stale

	banner "benchmark suite smoke run (tests/bench/suite.sh --smoke)"
	if TRESOR_BIN="$REPO/build/tresor" timeout --kill-after=30 600 \
		bash tests/bench/suite.sh --smoke </dev/null; then
		ok "bench suite --smoke"
	else
		bad "bench suite --smoke"
	fi
fi

# ---------------------------------------------------------------- asan
if ((!QUICK)); then
	banner "build (build-asan/, -Db_sanitize=address,undefined)"
	asan_ok=0
	if [[ ! -f build-asan/build.ninja ]]; then
		meson setup build-asan --buildtype=debugoptimized \
			-Db_sanitize=address,undefined -Db_lundef=false </dev/null
	fi
	if [[ -f build-asan/build.ninja ]] && ninja -C build-asan </dev/null; then
		ok "build-asan"
		asan_ok=1
	else
		bad "build-asan"
	fi
	if ((asan_ok)); then
		export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
		export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
		export LSAN_OPTIONS=suppressions=$REPO/tests/lsan.supp
		run_suite asan build-asan
		unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
	fi
fi

banner "summary"
if ((${#FAILED_WHAT[@]})); then
	echo "failed:"
	printf '  - %s\n' "${FAILED_WHAT[@]}"
fi
if ((PASSED == 0 && FAILED == 0)); then
	FAILED=1
fi
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
