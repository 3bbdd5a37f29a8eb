#!/usr/bin/env bash
# suite.sh - tresor's benchmark suite: tresor beside the raw disk, bindfs,
# restic, borg, rsync --link-dest and tar | gzip, on the same seeded data,
# in one run (issue 7; docs/BENCHMARKS.md says what it measures).
#
#   bash tests/bench/suite.sh [--smoke|--full] [--scale S] [--reps N]
#        [--dir DIR] [--json FILE] [--datasets large,plans,filestore,small]
#        [--snap-files 10000,100000] [--no-peers] [--no-s3] [--profile]
#        [--verify]
#
# Installs the peers (tools/install-deps.sh: Debian packages), builds
# build/tresor if needed, then runs tests/bench/suite.py as root (it drops
# the page cache and mounts FUSE filesystems).  Default: scale 1 (about
# 3 GB of data), 3 repetitions, snapshot scaling at 10k and 100k files.
# --full: scale 4 and 10k/100k/1M files.  --smoke: tiny data, 1 repetition,
# about a minute; exits 0 unless the suite itself breaks (tests/run.sh
# runs it).  Otherwise exit 0 when every target is met, 1 when one is
# missed, 2 on an error.  Prints a table; writes JSON (DIR/suite.json).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
case " $* " in *" -h "* | *" --help "*) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
bash "$REPO/tools/install-deps.sh" >&2
if [[ -z ${TRESOR_BIN:-} ]]; then
	if [[ ! -f $REPO/build/build.ninja ]]; then
		meson setup "$REPO/build" "$REPO" --buildtype=debugoptimized -Dwerror=true >&2
	fi
	ninja -C "$REPO/build" >&2
fi
exec /usr/bin/python3 "$REPO/tests/bench/suite.py" "$@"
