#!/bin/sh
# setup.sh DIR PORT - prepare a private sshd for the SFTP tests in DIR:
# an ed25519 host key, an ed25519 user key (DIR/id_ed25519, mode 600)
# authorized for the current user, DIR/sshd_config from sshd_config.in,
# and DIR/data, the directory to serve.  Run it with
#   /usr/sbin/sshd -D -e -f DIR/sshd_config
# then write DIR/known_hosts with: ssh-keyscan -p PORT 127.0.0.1
# (start.sh does all of this).  Needs openssh-server and openssh-client.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 DIR PORT" >&2; exit 2; }
dir=$(cd "$1" && pwd)
port=$2
here=$(cd "$(dirname "$0")" && pwd)
user=$(id -un)

mkdir -p /run/sshd 2>/dev/null || true
mkdir -p "$dir/data"
[ -f "$dir/ssh_host_ed25519_key" ] ||
	ssh-keygen -q -t ed25519 -N '' -C tresor-test-host -f "$dir/ssh_host_ed25519_key"
[ -f "$dir/id_ed25519" ] ||
	ssh-keygen -q -t ed25519 -N '' -C tresor-test-user -f "$dir/id_ed25519"
chmod 600 "$dir/id_ed25519" "$dir/ssh_host_ed25519_key"
cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
chmod 600 "$dir/authorized_keys"
sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@USER@|$user|g" \
	"$here/sshd_config.in" > "$dir/sshd_config"
/usr/sbin/sshd -t -f "$dir/sshd_config"
