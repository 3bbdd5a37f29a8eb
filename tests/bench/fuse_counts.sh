#!/usr/bin/env bash
# fuse_counts.sh - count the FUSE requests the kernel sends to one mount
# while a command runs, by opcode (the kernel's fuse:fuse_request_send
# tracepoint through `perf record`; root).
#
#   bash tests/bench/fuse_counts.sh MOUNTPOINT [--per N] -- COMMAND...
#
# Prints "OPCODE COUNT" lines, most frequent first, and the total; with
# --per N also each count divided by N (e.g. per file of an untar).
set -euo pipefail
MNT=$1; shift
PER=""
if [[ ${1:-} == --per ]]; then PER=$2; shift 2; fi
[[ ${1:-} == -- ]] && shift
DEV=$(stat -c %d "$MNT")
OUT=$(mktemp /tmp/fuse-counts.XXXXXX)
trap 'rm -f "$OUT" "$OUT.txt"' EXIT
perf record -q -a -e fuse:fuse_request_send -o "$OUT" -- "$@" >/dev/null 2>&1
perf script -i "$OUT" 2>/dev/null >"$OUT.txt"
awk -v dev="$DEV" -v per="$PER" '
{
	conn = ""; op = ""
	for (i = 1; i <= NF; i++) {
		if ($i ~ /^connection/) { split($i, a, "="); conn = a[2]; if (conn == "") conn = $(i + 1) }
		if ($i ~ /^\(FUSE_/ || $i ~ /^FUSE_/) { op = $i; gsub(/[()]/, "", op) }
	}
	if (conn != "" && conn + 0 != dev + 0) next
	if (op == "") next
	n[op]++; total++
}
END {
	for (o in n) printf "%-22s %8d%s\n", o, n[o], per ? sprintf("  %8.2f", n[o] / per) : ""
	printf "%-22s %8d%s\n", "TOTAL", total, per ? sprintf("  %8.2f", total / per) : ""
}' "$OUT.txt" | sort -k2 -n -r
