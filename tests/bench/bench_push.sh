#!/usr/bin/env bash
# bench_push.sh - tresor push throughput against curl uploading the same
# bytes to the same servers (S3 via s3rver, SFTP via a private sshd, WebDAV
# via a private apache over TLS; all on 127.0.0.1, started and stopped here),
# and the bytes a push sends after 1 % of the volume changed.
#
#   bash tests/bench/bench_push.sh [--smoke] [--size 2G] [--backends s3,sftp,webdav]
#                                  [--dir DIR] [--json FILE]
#
# Default: a 2 GiB volume in /var/tmp.  --smoke: 24 MiB in /tmp, every
# backend, well under a minute (tests/run.sh runs it).  Prints a table and
# writes JSON (default tests/.work/bench-push[-smoke].json).  Figures are
# only comparable within one run: the machine is shared.  Exit 0 unless
# something failed.  The details are in bench_push.py.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export TRESOR_BIN=${TRESOR_BIN:-$REPO/build/tresor}
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
exec "$PY" "$REPO/tests/bench/bench_push.py" "$@"
