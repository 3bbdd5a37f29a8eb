#!/bin/sh
# setup.sh DIR PORT [USER PASSWORD] - prepare a private Apache WebDAV
# server in DIR: a test CA (DIR/ca.crt, give it to the client as its CA
# file) and a server certificate for 127.0.0.1 signed by it, an htpasswd
# file, a netrc file for the client (DIR/netrc, mode 600), DIR/dav (the
# served folder, owned by www-data) and DIR/apache2.conf from
# apache2.conf.in.  Run it with
#   /usr/sbin/apache2 -f DIR/apache2.conf -DFOREGROUND
# (start.sh does).  Needs apache2, apache2-utils and openssl.
set -eu
[ $# -eq 2 ] || [ $# -eq 4 ] || { echo "usage: $0 DIR PORT [USER PASSWORD]" >&2; exit 2; }
dir=$(cd "$1" && pwd)
port=$2
user=${3:-tresor}
pass=${4:-tresor-test-password}
here=$(cd "$(dirname "$0")" && pwd)

# www-data must reach DIR/dav: DIR is opened up, its parents must already
# be traversable by others (a directory under /tmp is).
chmod 755 "$dir"
d=$(dirname "$dir")
while [ "$d" != / ]; do
	case $(stat -c %A "$d") in
	*x | *t) ;;
	*)
		echo "$0: $d is not traversable by www-data; use a directory under /tmp" >&2
		exit 1
		;;
	esac
	d=$(dirname "$d")
done
mkdir -p "$dir/dav" "$dir/lock" "$dir/run"
chown www-data:www-data "$dir/dav" "$dir/lock"
chmod 700 "$dir/dav" "$dir/lock"

if [ ! -f "$dir/server.crt" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$dir/ca.key" -out "$dir/ca.crt" -days 30 \
		-subj "/CN=tresor test CA" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$dir/server.key" -out "$dir/server.csr" \
		-subj "/CN=127.0.0.1" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
		> "$dir/server.ext"
	openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" \
		-CAkey "$dir/ca.key" -CAcreateserial -days 30 \
		-extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
	chmod 600 "$dir/ca.key" "$dir/server.key"
fi
htpasswd -cbB "$dir/htpasswd" "$user" "$pass" 2>/dev/null
chmod 644 "$dir/htpasswd"
umask 077
printf 'machine 127.0.0.1\nlogin %s\npassword %s\n' "$user" "$pass" > "$dir/netrc"
chmod 600 "$dir/netrc"
sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" "$here/apache2.conf.in" \
	> "$dir/apache2.conf"
/usr/sbin/apache2 -t -f "$dir/apache2.conf" 2>&1 | grep -v 'Syntax OK' >&2 || true
