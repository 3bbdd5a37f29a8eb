#!/usr/bin/env bash
# demo.sh - set up tresor on a fresh Debian 12 machine and show it working.
#
#   bash tools/demo.sh
#
# Installs the build dependencies, builds build/tresor, creates a demo store
# in ${TRESOR_DEMO_DIR:-$HOME/tresor-demo} (random passphrase in a 0600 file
# beside it), creates the volume "plans", mounts it at $DIR/mnt/plans in the
# background, copies a small generated sample tree of customer sites in, then
# shows what tresor is for: an Odoo-like filestore copied from prod to test
# and dev is stored once; a snapshot is browsed in .snapshots after a
# change; the store is pushed to a local remote ($DIR/offsite) and recovered
# lazily from it into $DIR/recovered, whose files read back the same.
# Prints the store statistics.  Safe to run again: it reuses the store and
# says so if the volume is already mounted.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${TRESOR_DEMO_DIR:-$HOME/tresor-demo}
STORE=$DIR/store
PASS=$DIR/passphrase
MNT=$DIR/mnt/plans
TRESOR=$REPO/build/tresor

say() { printf '\n==> %s\n' "$*"; }

say "installing dependencies"
bash "$REPO/tools/install-deps.sh"

say "building"
if [[ ! -f $REPO/build/build.ninja ]]; then
	meson setup "$REPO/build" "$REPO" --buildtype=debugoptimized
fi
ninja -C "$REPO/build"

mkdir -p "$DIR"
if [[ -d $STORE ]] && [[ -n $(ls -A "$STORE" 2>/dev/null) ]]; then
	say "reusing the store $STORE"
	[[ -f $PASS ]] || { echo "the store exists but its passphrase file $PASS is gone" >&2; exit 1; }
else
	if [[ ! -f $PASS ]]; then
		(umask 077 && head -c 32 /dev/urandom | base64 >"$PASS")
	fi
	chmod 600 "$PASS"
	say "creating the store $STORE"
	"$TRESOR" init "$STORE" --passphrase-file "$PASS"
fi
echo "passphrase file: $PASS (mode 600) - keep a copy somewhere safe: without it the data is lost"

TRESOR_PASSPHRASE=$(cat "$PASS")
export TRESOR_PASSPHRASE
has_volume() {
	"$TRESOR" volume list "$STORE" --json | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
if isinstance(d, dict):
    d = d.get("volumes", [])
names = [v.get("name") if isinstance(v, dict) else v for v in d]
sys.exit(0 if sys.argv[1] in names else 1)' "$1"
}
if ! has_volume plans; then
	say "creating the volume plans"
	"$TRESOR" volume create "$STORE" plans
fi

is_mounted() { awk -v m="$1" '$5 == m {f = 1} END {exit !f}' /proc/self/mountinfo; }

mkdir -p "$MNT" 2>/dev/null || true
if is_mounted "$MNT"; then
	if stat "$MNT" >/dev/null 2>&1; then
		say "plans is already mounted at $MNT"
	else
		say "found a dead mount at $MNT (daemon gone): cleaning it up and mounting again"
		fusermount3 -u -z "$MNT"
		"$TRESOR" mount "$STORE" plans "$MNT" --passphrase-file "$PASS"
	fi
else
	say "mounting plans at $MNT"
	"$TRESOR" mount "$STORE" plans "$MNT" --passphrase-file "$PASS"
fi

say "copying a sample tree of customer sites into $MNT/objects"
for n in 1 2 3 4 5; do
	site=$(printf 'OBJ-%05d' "$n")
	d=$MNT/objects/$site
	if [[ -f $d/metadata.json ]]; then
		echo "  $site already there"
		continue
	fi
	mkdir -p "$d/floor-plans" "$d/photos"
	for plan in ground-floor first-floor; do
		{
			printf '%%PDF-1.7\n%% demo floor plan %s of %s\n' "$plan" "$site"
			head -c $((200000 + RANDOM * 10)) /dev/urandom
			printf '\n%%%%EOF\n'
		} >"$d/floor-plans/$plan.pdf"
	done
	for i in 1 2 3; do
		head -c $((300000 + RANDOM * 20)) /dev/urandom >"$d/photos/photo-$i.jpg"
	done
	cat >"$d/metadata.json" <<EOF
{
  "object": "$site",
  "customer": "Demo customer $n",
  "address": "Example street $n, 12345 Sample town",
  "systems": ["alarm", "video", "access control"],
  "updated": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
EOF
	echo "  $site"
done
# a revision that is mostly the same bytes: tresor stores it once
if [[ ! -f $MNT/objects/OBJ-00001/floor-plans/ground-floor-rev2.pdf ]]; then
	{
		cat "$MNT/objects/OBJ-00001/floor-plans/ground-floor.pdf"
		printf '%% incremental update: revision 2\n%%%%EOF\n'
	} >"$MNT/objects/OBJ-00001/floor-plans/ground-floor-rev2.pdf"
fi
say "an Odoo filestore: prod, and test and dev as copies of it"
# Odoo names attachments by their SHA-1 under two-hex-digit folders; test
# and dev are periodic copies of prod, so they are the same bytes again.
FS=$MNT/filestore
if [[ ! -d $FS/prod ]]; then
	mkdir -p "$FS/prod"
	for i in $(seq 1 40); do
		f=$(mktemp)
		head -c $((20000 + RANDOM * 3)) /dev/urandom >"$f"
		h=$(sha1sum "$f" | cut -c1-40)
		mkdir -p "$FS/prod/${h:0:2}"
		mv "$f" "$FS/prod/${h:0:2}/$h"
	done
	cp -a "$FS/prod" "$FS/test"
	cp -a "$FS/prod" "$FS/dev"
fi
echo "  prod, test, dev: $(du -sb "$FS/prod" | cut -f1) bytes each"

say "a snapshot, a change, and the old version in .snapshots"
SNAP=$("$TRESOR" snapshot create "$STORE" plans 2>/dev/null)
echo "  snapshot $SNAP taken (by hand, so pinned: prune keeps it until unpinned)"
META=$MNT/objects/OBJ-00002/metadata.json
sed -i "s/\"Demo customer 2[^\"]*\"/\"Demo customer 2, renamed $(date -u +%H:%M:%S)\"/" "$META"
echo "  now:               $(grep customer "$META")"
echo "  in .snapshots/$SNAP: $(grep customer "$MNT/.snapshots/$SNAP/objects/OBJ-00002/metadata.json")"
# fsync what was copied, so the push and the statistics below include it
find "$MNT/objects" "$FS" -type f -exec sync {} +

say "offsite: a push to a local remote, and a lazy recovery from it"
OFF=$DIR/offsite
if ! "$TRESOR" remote list "$STORE" 2>/dev/null | grep -qw offsite; then
	mkdir -p "$OFF"
	"$TRESOR" remote add "$STORE" offsite "$OFF"
fi
"$TRESOR" push "$STORE" offsite
REC=$DIR/recovered
RMNT=$DIR/mnt/recovered
if is_mounted "$RMNT"; then
	fusermount3 -u "$RMNT"
fi
rm -rf "$REC"
"$TRESOR" recover "$OFF" "$REC" --lazy
mkdir -p "$RMNT"
"$TRESOR" mount "$REC" plans "$RMNT" --passphrase-file "$PASS"
if cmp -s "$MNT/objects/OBJ-00003/photos/photo-1.jpg" "$RMNT/objects/OBJ-00003/photos/photo-1.jpg"; then
	echo "  the recovered store reads the same bytes (its packs are fetched when read)"
else
	echo "  the recovered store does not read the same bytes" >&2
	fusermount3 -u "$RMNT"
	exit 1
fi
fusermount3 -u "$RMNT"

say "what is in the volume"
find "$MNT" -maxdepth 2 | sed "s|^$MNT|plans|" | sort | head -30

say "store statistics (as of the last commit: the sync above made one)"
"$TRESOR" stats "$STORE"

cat <<EOF

Done.  The volume "plans" is mounted at:
    $MNT
Use it like any directory; its snapshots are in $MNT/.snapshots.
Other commands:
    export TRESOR_PASSPHRASE=\$(cat $PASS)
    $TRESOR stats $STORE
    $TRESOR snapshot list $STORE plans
    $TRESOR check $STORE
    $TRESOR push $STORE offsite
Unmount with:
    fusermount3 -u $MNT
Mount again with:
    $TRESOR mount $STORE plans $MNT --passphrase-file $PASS
EOF
