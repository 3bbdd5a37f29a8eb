#!/bin/sh
# start.sh DIR [PORT] - set up (setup.sh) and start a private Apache
# WebDAV server in the background for manual tests and benchmarks.
# Prints the URL and driver options; stop it with:
#   kill $(cat DIR/apache2.pid)
set -eu
[ $# -ge 1 ] || { echo "usage: $0 DIR [PORT]" >&2; exit 2; }
mkdir -p "$1"
dir=$(cd "$1" && pwd)
port=${2:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
here=$(cd "$(dirname "$0")" && pwd)

"$here/setup.sh" "$dir" "$port"
/usr/sbin/apache2 -f "$dir/apache2.conf" -DFOREGROUND 2> "$dir/stderr.log" &
echo $! > "$dir/apache2.main.pid"
i=0
until curl -s -o /dev/null --cacert "$dir/ca.crt" "https://127.0.0.1:$port/"; do
	i=$((i + 1))
	if [ $i -ge 50 ]; then
		echo "apache2 did not come up; see $dir/error.log" >&2
		kill "$(cat "$dir/apache2.main.pid")" 2>/dev/null || true
		exit 1
	fi
	sleep 0.1
done
echo "url: https://127.0.0.1:$port/"
echo "options: --netrc $dir/netrc --ca-file $dir/ca.crt"
