#!/usr/bin/env bash
# tests/soak.sh - the long form of the reliability harness, for releases.
#
#   bash tests/soak.sh [--minutes N] [--seed S]     (default 60 minutes)
#
# Runs, one after the other, on build/tresor (TRESOR_BIN to change):
#   - the crash torture (test_torture.py) for 55 % of the time: rounds of
#     the mixed workload ended by kill -9 or a crash point, until the time
#     is up, then check --read-data and a recovery drill;
#   - power-loss cuts (test_powerloss.py) for 15 %;
#   - the 32-client load test (test_load.py) for 15 %;
#   - every fuzz target (tests/fuzz/run.sh) for the rest, split evenly.
# Reports (JSON and logs) go to tests/.work/soak-DATE/; the last lines are
# the figures docs/RELIABILITY.md quotes.  Exits non-zero if anything
# failed.  Keep test dirs of a failure with TRESOR_KEEP_TMP=1.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
MIN=60
SEED=${TRESOR_SEED:-$RANDOM}
while (($#)); do
	case "$1" in
	--minutes) MIN=$2; shift ;;
	--seed) SEED=$2; shift ;;
	-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
OUT="$REPO/tests/.work/soak-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
export TRESOR_BIN=${TRESOR_BIN:-$REPO/build/tresor} TRESOR_SEED=$SEED PYTHONDONTWRITEBYTECODE=1
S=$((MIN * 60))
PY=/usr/bin/python3
rc=0
pytest() {
	timeout --kill-after=60 $(($2 + 1800)) "$PY" -m pytest -q -p no:cacheprovider -s -rfE "$1" \
		</dev/null >"$OUT/$3.log" 2>&1 || { rc=1; echo "soak: $3 FAILED (see $OUT/$3.log)"; }
	grep -E "^(torture|powerloss|load): " "$OUT/$3.log" | tail -1
}
echo "soak: $MIN minutes, seed $SEED, reports in $OUT"
TRESOR_TEST_TIMEOUT=$((S + 1800)) TRESOR_TORTURE_ROUNDS=1 TRESOR_SOAK_SECONDS=$((S * 55 / 100)) \
	TRESOR_TORTURE_REPORT="$OUT/torture.json" \
	pytest "tests/integration/test_torture.py::test_recovery_after_crash_torture" $((S * 55 / 100)) torture
TRESOR_TEST_TIMEOUT=$((S + 1800)) TRESOR_POWERLOSS_ROUNDS=1 TRESOR_POWERLOSS_SOAK_SECONDS=$((S * 15 / 100)) \
	pytest tests/integration/test_powerloss.py $((S * 15 / 100)) powerloss
TRESOR_TEST_TIMEOUT=$((S + 1800)) TRESOR_LOAD_SECONDS=$((S * 15 / 100)) TRESOR_LOAD_REPORT="$OUT/load.json" \
	pytest tests/integration/test_load.py $((S * 15 / 100)) load
per=$((S * 15 / 100 / 5))
((per < 10)) && per=10
if bash tests/fuzz/run.sh --seconds "$per" >"$OUT/fuzz.log" 2>&1; then
	sed -n '/^target /,$p' "$OUT/fuzz.log"
else
	rc=1
	echo "soak: fuzz FAILED (see $OUT/fuzz.log)"
fi
echo "soak: $( ((rc)) && echo FAILED || echo passed), reports in $OUT"
exit $rc
