#!/usr/bin/env bash
# tests/fuzz/build.sh - build the libFuzzer targets of tests/fuzz/ into
# build-fuzz/ at the repo root, with clang and
# -fsanitize=fuzzer,address,undefined (UBSan not recoverable: any report
# is a crash).  The product sources they need (chunker/util.c chunker/buf.c chunker/crypto.c
# chunker/pack.c chunker/index.c
# chunker/catalog.c fs/namespace.c chunker/changelog.c remote/xml.c) are compiled directly, not through
# meson.  Also builds build-fuzz/seedgen (no sanitizers) for make_corpus.sh.
#
#   bash tests/fuzz/build.sh            CLANG=clang-14 bash tests/fuzz/build.sh
#
# Needs the Debian packages clang and libclang-rt-14-dev (libFuzzer and
# the sanitizer runtimes; apt only recommends it), plus the -dev packages
# the normal build uses (libsqlite3-dev libzstd-dev libssl-dev
# libexpat1-dev).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT="$REPO/build-fuzz"
FUZZ="$REPO/tests/fuzz"
TARGETS=(fuzz_pack_footer fuzz_keyfile fuzz_xml fuzz_index fuzz_config fuzz_delta fuzz_s3_list fuzz_webdav_list)

CC=${CLANG:-}
if [[ -z "$CC" ]]; then
	for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
		if command -v "$c" >/dev/null 2>&1; then
			CC=$c
			break
		fi
	done
fi
if [[ -z "$CC" ]]; then
	echo "fuzz/build.sh: no clang found: install the Debian packages clang libclang-rt-14-dev" >&2
	exit 1
fi

mkdir -p "$OUT/obj"
[[ -f "$OUT/.gitignore" ]] || echo '*' >"$OUT/.gitignore"

# libFuzzer present?  (clang without libclang-rt-N-dev links nothing.)
probe="$OUT/obj/probe"
printf '%s\n' '#include <stdint.h>' '#include <stddef.h>' \
	'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
	>"$probe.c"
if ! "$CC" -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" 2>"$probe.log"; then
	cat "$probe.log" >&2
	echo "fuzz/build.sh: $CC cannot link libFuzzer: install libclang-rt-$("$CC" -dumpversion | cut -d. -f1)-dev" >&2
	exit 1
fi

pc() { pkg-config "$@" sqlite3 libzstd libcrypto expat 2>/dev/null || true; }
read -ra PC_CFLAGS <<<"$(pc --cflags)"
read -ra PC_LIBS <<<"$(pc --libs)"
((${#PC_LIBS[@]})) || PC_LIBS=(-lsqlite3 -lzstd -lcrypto -lexpat)
VERSION=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$REPO/meson.build" | head -1)

COMMON=(-std=c11 -D_GNU_SOURCE "-DTRESOR_VERSION=\"${VERSION:-fuzz}\""
	-I"$REPO/fs" -I"$REPO/remote" -I"$REPO/chunker" -I"$FUZZ"
	-g -O1 -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter)
# shellcheck disable=SC2054  # commas belong to the flag
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)

# object NAME SRC: instrumented object
object() {
	"$CC" "${COMMON[@]}" "${PC_CFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer-no-link \
		-c "$2" -o "$OUT/obj/$1.o"
}

echo "fuzz/build.sh: $CC ($("$CC" --version | head -1)) -> $OUT"
declare -A SRC=(
	[util]=chunker/util.c [buf]=chunker/buf.c [crypto]=chunker/crypto.c [pack]=chunker/pack.c
	[index]=chunker/index.c [catalog]=chunker/catalog.c [namespace]=fs/namespace.c [xml]=remote/xml.c [listing]=remote/listing.c [changelog]=chunker/changelog.c
	[config]=tools/config.c [schedule]=tools/schedule.c [retention]=fs/retention.c
)
pids=()
for o in "${!SRC[@]}"; do
	object "$o" "$REPO/${SRC[$o]}" &
	pids+=($!)
done
for t in "${TARGETS[@]}"; do
	object "$t" "$FUZZ/$t.c" &
	pids+=($!)
done
rc=0
for p in "${pids[@]}"; do
	wait "$p" || rc=1
done
((rc == 0)) || { echo "fuzz/build.sh: compile failed" >&2; exit 1; }

declare -A DEPS=(
	[fuzz_pack_footer]="util buf crypto pack"
	[fuzz_keyfile]="util buf crypto"
	[fuzz_xml]="buf xml"
	[fuzz_index]="util buf crypto pack index catalog namespace"
	[fuzz_config]="buf config schedule retention"
	[fuzz_delta]="util buf crypto pack index catalog namespace changelog"
	[fuzz_s3_list]="buf listing xml"
	[fuzz_webdav_list]="buf listing xml"
)
# Libraries of one target only (inih: the config parser's INI reader).
declare -A LIBS_OF=([fuzz_config]="-linih")
for t in "${TARGETS[@]}"; do
	objs=("$OUT/obj/$t.o")
	for d in ${DEPS[$t]}; do
		objs+=("$OUT/obj/$d.o")
	done
	# shellcheck disable=SC2086  # word-split on purpose
	"$CC" -fsanitize=fuzzer "${SAN[@]}" "${objs[@]}" "${PC_LIBS[@]}" ${LIBS_OF[$t]:-} -o "$OUT/$t"
done

# The seed generator: plain, no fuzzer main.
"$CC" "${COMMON[@]}" "${PC_CFLAGS[@]}" "$FUZZ/seedgen.c" "$REPO/chunker/util.c" \
	"$REPO/chunker/buf.c" "$REPO/chunker/crypto.c" "$REPO/chunker/pack.c" "${PC_LIBS[@]}" -o "$OUT/seedgen"

echo "fuzz/build.sh: built ${TARGETS[*]} seedgen"
