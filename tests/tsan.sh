#!/usr/bin/env bash
# tests/tsan.sh - the threaded parts of tresor under ThreadSanitizer, in a
# couple of minutes: builds build-tsan/ (-Db_sanitize=thread) and runs
#   - the load test (tests/integration/test_load.py) with 16 clients for
#     20 s on a mount with -o mt (libfuse's thread pool) plus the chunk
#     pipeline workers, a snapshot and a push in the middle;
#   - the snapshot tests that take snapshots while writers run;
#   - reads answered off the request thread while a remote is slow
#     (fs/fuse_defer.c), and mounts handed to a new process (keeper.h).
# The test fixtures fail on any "WARNING: ThreadSanitizer" in a daemon's
# log or a command's output.  Part of tests/run.sh; TRESOR_TSAN_SECONDS
# changes the load duration.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
if [[ ! -f build-tsan/build.ninja ]]; then
	meson setup build-tsan --buildtype=debugoptimized -Db_sanitize=thread \
		-Db_lundef=false </dev/null || exit 1
fi
ninja -C build-tsan </dev/null || exit 1
export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1"
unset ASAN_OPTIONS UBSAN_OPTIONS
TRESOR_BIN="$REPO/build-tsan/tresor" TRESOR_LOAD_SECONDS=${TRESOR_TSAN_SECONDS:-20} \
	TRESOR_LOAD_CLIENTS=16 TRESOR_LOAD_MOUNT_OPTS=mt PYTHONDONTWRITEBYTECODE=1 \
	/usr/bin/python3 -m pytest -q -p no:cacheprovider -rfE \
	tests/integration/test_load.py \
	"tests/integration/test_snapshots.py::test_point_in_time_with_writers" \
	"tests/integration/test_snapshots.py::test_later_writes_never_change_a_snapshot" \
	tests/integration/test_lazy_slow_remote.py \
	tests/integration/test_daemon_handover.py </dev/null
