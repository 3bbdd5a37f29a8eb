#!/usr/bin/env bash
# tests/fuzz/make_corpus.sh - regenerate the seed corpus tests/fuzz/corpus/
# (committed; run this only to refresh it, after a format change):
#
#   fuzz_pack_footer/  packs sealed with the fixed fuzzing keys, real and in
#                      the harness's plaintext "P-form" (build-fuzz/seedgen)
#   fuzz_keyfile/      key files for the fixed passphrase, log2n 10 (seedgen)
#   fuzz_xml/          S3 (ListObjectsV2, multipart, Error) and WebDAV
#                      PROPFIND replies, written out below
#   fuzz_delta/        metadata deltas (full image, incremental, empty) of
#                      that index (make_delta_seeds.py)
#   fuzz_index/        index.db of a small store made by the tresor binary
#                      (init, volumes, files written through a FUSE mount
#                      when /dev/fuse works, snapshots), compacted with the
#                      sqlite3 shell to 512-byte pages so it stays < 64 KiB
#   fuzz_config/       not made here: hand-written daemon configs (one is the
#                      example of docs/DAEMON.md), committed as they are
#
#   bash tests/fuzz/make_corpus.sh [--tresor PATH]   (default build/tresor)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FUZZ="$REPO/tests/fuzz"
CORPUS="$FUZZ/corpus"
TRESOR="$REPO/build/tresor"
if [[ "${1:-}" == --tresor ]]; then
	TRESOR=$2
fi

bash "$FUZZ/build.sh"

echo "== packs and key files"
rm -rf "$CORPUS/fuzz_pack_footer" "$CORPUS/fuzz_keyfile"
mkdir -p "$CORPUS"
"$REPO/build-fuzz/seedgen" "$CORPUS"

echo "== XML replies"
X="$CORPUS/fuzz_xml"
rm -rf "$X"
mkdir -p "$X"
cat >"$X/s3-list.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>tresor</Name><Prefix>store1/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><Contents><Key>store1/data/ab/ab3f0c1e9d2b4a5f6e7d8c9b0a1f2e3d</Key><LastModified>2024-05-01T10:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>4194304</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>store1/data/cd/cd00112233445566778899aabbccddee</Key><LastModified>2024-05-01T10:00:01.000Z</LastModified><ETag>&quot;0cc175b9c0f1b6a831c399e269772661&quot;</ETag><Size>1024</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>store1/meta/index-0001</Key><Size>0</Size></Contents></ListBucketResult>
XML
cat >"$X/s3-list-truncated.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>tresor</Name>
  <Prefix></Prefix>
  <ContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</ContinuationToken>
  <NextContinuationToken>1Wf3a%2Bq/7z9x&amp;y=</NextContinuationToken>
  <KeyCount>1</KeyCount>
  <MaxKeys>1</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents>
    <Key>data/00/0011 with space &amp; ampersand&#x20AC;</Key>
    <Size>18446744073709551615</Size>
  </Contents>
</ListBucketResult>
XML
cat >"$X/s3-list-empty.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>x/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>
XML
cat >"$X/s3-error.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>data/ab/missing</Key><RequestId>4442587FB7D0A2F9</RequestId><HostId><![CDATA[tresor-test]]></HostId></Error>
XML
cat >"$X/s3-multipart.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>tresor</Bucket><Key>data/ab/ab3f</Key><UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId></InitiateMultipartUploadResult>
XML
cat >"$X/s3-complete.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>http://127.0.0.1/tresor/data/ab/ab3f</Location><Bucket>tresor</Bucket><Key>data/ab/ab3f</Key><ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag></CompleteMultipartUploadResult>
XML
cat >"$X/dav-propfind.xml" <<'XML'
<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:" xmlns:ns0="DAV:">
<D:response xmlns:lp1="DAV:" xmlns:lp2="http://apache.org/dav/props/">
<D:href>/dav/store1/data/</D:href>
<D:propstat>
<D:prop>
<lp1:resourcetype><D:collection/></lp1:resourcetype>
<lp1:getlastmodified>Wed, 01 May 2024 10:00:00 GMT</lp1:getlastmodified>
</D:prop>
<D:status>HTTP/1.1 200 OK</D:status>
</D:propstat>
</D:response>
<D:response xmlns:lp1="DAV:" xmlns:lp2="http://apache.org/dav/props/">
<D:href>/dav/store1/data/ab%20cd/ab3f0c1e9d2b4a5f</D:href>
<D:propstat>
<D:prop>
<lp1:resourcetype/>
<lp1:getcontentlength>4194304</lp1:getcontentlength>
<lp2:executable>F</lp2:executable>
</D:prop>
<D:status>HTTP/1.1 200 OK</D:status>
</D:propstat>
</D:response>
</D:multistatus>
XML
cat >"$X/dav-propfind-lower.xml" <<'XML'
<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:response><d:href>http://127.0.0.1:8080/remote.php/dav/files/u/tresor/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype><oc:size>10</oc:size></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat><d:propstat><d:prop><d:getcontentlength/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response><d:response><d:href>/remote.php/dav/files/u/tresor/x%2Fy</d:href><d:propstat><d:prop><d:resourcetype/><d:getcontentlength>-1</d:getcontentlength></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>
XML
cat >"$X/dtd-entity.xml" <<'XML'
<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<ListBucketResult><Name>&lol2;</Name></ListBucketResult>
XML
{
	printf '<a>'
	for _ in $(seq 1 40); do printf '<b>'; done
	printf 'deep'
	for _ in $(seq 1 40); do printf '</b>'; done
	printf '</a>\n'
} >"$X/deep.xml"
printf '<Error><Code>STOP</Code><Message>stops the walk</Message></Error>' >"$X/stop.xml"
printf '<?xml version="1.0" encoding="ISO-8859-1"?><r>caf\xe9 <![CDATA[ <x> ]]> &#65;&lt;</r>' >"$X/latin1.xml"

echo "== index.db from $TRESOR"
I="$CORPUS/fuzz_index"
rm -rf "$I"
mkdir -p "$I"
[[ -x "$TRESOR" ]] || { echo "make_corpus.sh: $TRESOR not built (ninja -C build)" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "make_corpus.sh: needs the sqlite3 shell" >&2; exit 1; }
T=$(mktemp -d /tmp/tresor-fuzz-corpus-XXXXXX)
cleanup() {
	if [[ -d "$T/mnt" ]] && grep -q " $T/mnt " /proc/self/mountinfo; then
		fusermount3 -u -z "$T/mnt" 2>/dev/null || true
	fi
	rm -rf "$T"
}
trap cleanup EXIT
export TRESOR_PASSPHRASE=tresor-fuzz-passphrase
S="$T/store"
"$TRESOR" init "$S" --kdf-log2n 10 >/dev/null
"$TRESOR" volume create "$S" vol >/dev/null
"$TRESOR" volume create "$S" other >/dev/null
"$TRESOR" snapshot create "$S" other --time 2024-01-01T00:00:00Z >/dev/null

mkdir "$T/mnt"
# dirty_mount: files, dirs, a symlink, a hard link, an xattr, a sparse file
if "$TRESOR" mount "$S" vol "$T/mnt" </dev/null && grep -q " $T/mnt " /proc/self/mountinfo; then
	mkdir -p "$T/mnt/docs/sub"
	printf 'hello tresor\n' >"$T/mnt/docs/hello.txt"
	head -c 3000 /dev/zero | tr '\0' 'a' >"$T/mnt/docs/sub/a.txt"
	ln -s docs/hello.txt "$T/mnt/link"
	ln "$T/mnt/docs/hello.txt" "$T/mnt/hard"
	setfattr -n user.tag -v seed "$T/mnt/docs/hello.txt" 2>/dev/null || true
	truncate -s 100000 "$T/mnt/sparse"
	printf 'x' | dd of="$T/mnt/sparse" bs=1 seek=70000 conv=notrunc status=none
	sync
	fusermount3 -u "$T/mnt"
	# the daemon finishes its packs and exits after the unmount
	for _ in $(seq 1 100); do
		pgrep -f -- "mount $S vol $T/mnt" >/dev/null || break
		sleep 0.1
	done
	"$TRESOR" snapshot create "$S" vol --time 2024-02-01T00:00:00Z >/dev/null
	if "$TRESOR" mount "$S" vol "$T/mnt" </dev/null; then
		printf 'changed\n' >"$T/mnt/docs/hello.txt"
		rm -f "$T/mnt/hard"
		fusermount3 -u "$T/mnt"
		for _ in $(seq 1 100); do
			pgrep -f -- "mount $S vol $T/mnt" >/dev/null || break
			sleep 0.1
		done
	fi
else
	echo "make_corpus.sh: no FUSE mount here: index seed without files" >&2
fi
"$TRESOR" snapshot create "$S" vol --time 2024-03-01T00:00:00Z >/dev/null

# compact: 512-byte pages; one copy in WAL mode (as tresor keeps it), one
# in rollback mode; plus an empty store's index
compact() {
	cp "$1" "$2"
	sqlite3 "$2" "PRAGMA journal_mode=DELETE; PRAGMA page_size=512; VACUUM; PRAGMA journal_mode=$3;" >/dev/null
	rm -f "$2-wal" "$2-shm"
}
sqlite3 "$S/index.db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
compact "$S/index.db" "$I/store-wal.db" WAL
compact "$S/index.db" "$I/store-rollback.db" DELETE
E="$T/empty"
"$TRESOR" init "$E" --kdf-log2n 10 >/dev/null
compact "$E/index.db" "$I/empty-store.db" WAL

echo "== metadata deltas from that index"
rm -rf "$CORPUS/fuzz_delta"
python3 "$FUZZ/make_delta_seeds.py" "$I/store-wal.db" "$CORPUS/fuzz_delta"

echo "== sizes"
find "$CORPUS" -type f -printf '%s\t%P\n' | sort -k2
big=$(find "$CORPUS" -type f -size +64k)
if [[ -n "$big" ]]; then
	echo "make_corpus.sh: seeds over 64 KiB: $big" >&2
	exit 1
fi
