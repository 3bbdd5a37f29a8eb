#!/usr/bin/env bash
# install-deps.sh - install (once) every Debian package needed to build,
# test and benchmark tresor.  Idempotent: when everything is already
# installed it returns at once without touching apt.
set -euo pipefail

PACKAGES=(
	build-essential meson ninja-build pkg-config
	libfuse3-dev fuse3
	libsqlite3-dev sqlite3
	libzstd-dev libxxhash-dev libssl-dev
	libcurl4-openssl-dev libexpat1-dev
	python3 python3-pytest
	bindfs fio attr acl util-linux psmisc tzdata
	restic borgbackup
	awscli
	openssh-server openssh-client apache2 apache2-utils openssl curl
	clang libclang-rt-14-dev llvm
	libinih-dev
	rsync time python3-cryptography python3-llfuse linux-perf
	bash-completion man-db groff-base
	postgresql
)

# Node (the S3 test server) may come from another source that ships npm
# inside its nodejs package and conflicts with Debian's npm: only ask apt
# for them when there is no npm at all.
if ! command -v npm >/dev/null 2>&1; then
	PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	if [[ "$status" != "install ok installed" ]]; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "install-deps: all ${#PACKAGES[@]} packages already installed"
	exit 0
fi

echo "install-deps: installing: ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		echo "install-deps: not root and no sudo; install these by hand: ${missing[*]}" >&2
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	--no-install-recommends "${missing[@]}" </dev/null
echo "install-deps: done"
