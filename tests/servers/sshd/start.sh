#!/bin/sh
# start.sh DIR [PORT] - set up (setup.sh) and start a private sshd in the
# background for manual tests and benchmarks.  Prints the SFTP URL and the
# driver options; stop it with: kill $(cat DIR/sshd.pid)
set -eu
[ $# -ge 1 ] || { echo "usage: $0 DIR [PORT]" >&2; exit 2; }
mkdir -p "$1"
dir=$(cd "$1" && pwd)
port=${2:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
here=$(cd "$(dirname "$0")" && pwd)

"$here/setup.sh" "$dir" "$port"
/usr/sbin/sshd -D -e -f "$dir/sshd_config" 2> "$dir/sshd.log" &
echo $! > "$dir/sshd.pid"
i=0
until ssh-keyscan -T 2 -t ed25519 -p "$port" 127.0.0.1 > "$dir/known_hosts" 2>/dev/null &&
	[ -s "$dir/known_hosts" ]; do
	i=$((i + 1))
	if [ $i -ge 50 ]; then
		echo "sshd did not come up; see $dir/sshd.log" >&2
		kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
		exit 1
	fi
	sleep 0.1
done
echo "url: sftp://$(id -un)@127.0.0.1:$port$dir/data"
echo "options: --ssh-key $dir/id_ed25519 --known-hosts $dir/known_hosts"
