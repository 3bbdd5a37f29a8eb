/*
 * test_store.c - unit tests for chunker/store.c: creating a store (and leaving
 * nothing behind when that fails), opening it (wrong passphrase, newer
 * format), the chunk path (deduplication, sealing, reading back whole and
 * in parts, across a reopen), pack rotation and the pack layout on disk,
 * damage detection, and finishing a pack left open by a process that died
 * (simulated with a child that commits and then _exits without closing).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "check.h"
#include "store.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sqlite3.h>

/* A finished pack's size: records, footer and trailer, rounded up to
 * PACK_PAD with a hole before the footer (docs/FORMAT.md 8.3a). */
static uint64_t padded(uint64_t total)
{
	return (total + PACK_PAD - 1) / PACK_PAD * PACK_PAD;
}

static char tmpdir[] = "/tmp/tresor-test-store-XXXXXX";
static const char pass[] = "correct horse battery staple";
#define PASSLEN (sizeof(pass) - 1)

#define TPATH(var, name)						\
	char var[512];							\
	snprintf(var, sizeof(var), "%s/%s", tmpdir, name)

/* ---- helpers ---- */

static void params(struct store_params *p)
{
	store_params_default(p);
	p->chunk_min = 4u << 10;
	p->chunk_avg = 16u << 10;
	p->chunk_max = 64u << 10;
	p->kdf.log2n = 10;
	p->kdf.r = 8;
	p->kdf.p = 1;
}

/* Deterministic bytes: random-looking (incompressible) if !text, else
 * compressible text.  The same seed always gives the same bytes, so a
 * forked child and its parent agree on them. */
static uint8_t *gen(size_t n, uint32_t seed, int text)
{
	uint8_t *p = malloc(n ? n : 1);
	uint64_t x = 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed << 17 | seed);

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (text)
			p[i] = "tresor packs chunks\n"[(x >> 33) % 20];
		else
			p[i] = (uint8_t)(x >> 32);
	}
	return p;
}

static int exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

static int64_t file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) ? -1 : (int64_t)sb.st_size;
}

/* Number of entries of tmpdir whose name starts with prefix. */
static int count_prefixed(const char *prefix)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			n++;
	closedir(d);
	return n;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static int64_t sql_int(struct store *st, const char *sql)
{
	sqlite3_stmt *s = NULL;
	int64_t v = -1000000;

	if (sqlite3_prepare_v2(index_db(st->ix), sql, -1, &s, NULL) != SQLITE_OK)
		return v;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* Read chunk rowid back whole and compare with data. */
static int reads_back(struct store *st, int64_t rowid, const uint8_t *data,
		      size_t len)
{
	struct chunk_ref ref;
	uint8_t *buf;
	int ok;

	if (store_chunk_ref(st, rowid, &ref))
		return 0;
	if (ref.e.rlen != len)
		return 0;
	buf = malloc(len ? len : 1);
	ok = store_read_chunk(st, &ref, 0, buf, len) == 0 &&
	     !memcmp(buf, data, len);
	free(buf);
	return ok;
}

static void rm_rf(const char *dir)
{
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* ---- store_init ---- */

static void test_init(void)
{
	struct store_params p;
	char sub[600];
	struct stat sb;

	params(&p);
	TPATH(s1, "s1");
	CHECK_EQ(store_init(s1, &p, pass, PASSLEN), 0);
	snprintf(sub, sizeof(sub), "%s/%s", s1, STORE_KEY_FILE);
	CHECK_EQ(stat(sub, &sb), 0);
	CHECK_EQ(sb.st_size, 152);
	CHECK_EQ(sb.st_mode & 0777, 0600);
	snprintf(sub, sizeof(sub), "%s/%s", s1, STORE_INDEX_FILE);
	CHECK_EQ(stat(sub, &sb), 0);
	CHECK_EQ(sb.st_mode & 0777, 0600);
	snprintf(sub, sizeof(sub), "%s/%s", s1, STORE_PACK_DIR);
	CHECK_EQ(stat(sub, &sb), 0);
	CHECK(S_ISDIR(sb.st_mode));
	CHECK_EQ(count_entries(sub), 0);
	CHECK_EQ(stat(s1, &sb), 0);
	CHECK_EQ(sb.st_mode & 0777, 0700);
	/* only s1 itself: no temporary sibling left */
	CHECK_EQ(count_prefixed("s1"), 1);

	/* the index holds the settings */
	struct index *ix = NULL;
	snprintf(sub, sizeof(sub), "%s/%s", s1, STORE_INDEX_FILE);
	CHECK_EQ(index_open(sub, 0, &ix), 0);
	if (ix) {
		int64_t v = 0;
		CHECK_EQ(index_meta_get(ix, "format_version", &v), 0);
		CHECK_EQ(v, STORE_FORMAT_VERSION);
		CHECK_EQ(index_meta_get(ix, "chunk_min", &v), 0);
		CHECK_EQ(v, 4096);
		CHECK_EQ(index_meta_get(ix, "chunk_avg", &v), 0);
		CHECK_EQ(v, 16384);
		CHECK_EQ(index_meta_get(ix, "chunk_max", &v), 0);
		CHECK_EQ(v, 65536);
		CHECK_EQ(index_meta_get(ix, "created", &v), 0);
		CHECK(v > 1600000000ll * 1000000000ll);
		index_close(ix);
	}

	/* not over an existing store, nor into a non-empty directory */
	CHECK_EQ(store_init(s1, &p, pass, PASSLEN), -ENOTEMPTY);
	CHECK_EQ(count_prefixed("s1"), 1);
	TPATH(full, "full");
	CHECK_EQ(mkdir(full, 0700), 0);
	snprintf(sub, sizeof(sub), "%s/precious", full);
	CHECK_EQ(write_file_atomic(sub, "x", 1, 0600), 0);
	CHECK_EQ(store_init(full, &p, pass, PASSLEN), -ENOTEMPTY);
	CHECK_EQ(count_entries(full), 1);
	CHECK(exists(sub));
	CHECK_EQ(count_prefixed("full"), 1);

	/* into an existing empty directory: fine */
	TPATH(empty, "empty");
	CHECK_EQ(mkdir(empty, 0700), 0);
	CHECK_EQ(store_init(empty, &p, pass, PASSLEN), 0);
	snprintf(sub, sizeof(sub), "%s/%s", empty, STORE_KEY_FILE);
	CHECK(exists(sub));
	CHECK_EQ(count_prefixed("empty"), 1);

	/* bad chunk sizes: -EINVAL, and nothing appears */
	TPATH(bad, "bad");
	struct store_params q = p;
	q.chunk_avg = 12288;			/* not a power of two */
	CHECK_EQ(store_init(bad, &q, pass, PASSLEN), -EINVAL);
	q = p;
	q.chunk_min = q.chunk_avg;		/* min < avg violated */
	CHECK_EQ(store_init(bad, &q, pass, PASSLEN), -EINVAL);
	q = p;
	q.chunk_max = 128u << 20;		/* over 64 MiB */
	CHECK_EQ(store_init(bad, &q, pass, PASSLEN), -EINVAL);
	q = p;
	q.chunk_min = 32;			/* under 64 */
	CHECK_EQ(store_init(bad, &q, pass, PASSLEN), -EINVAL);
	CHECK(!exists(bad));
	CHECK_EQ(count_prefixed("bad"), 0);
	/* a bad KDF cost fails later (the pack directory exists by then):
	 * still nothing left */
	q = p;
	q.kdf.log2n = 9;
	CHECK_EQ(store_init(bad, &q, pass, PASSLEN), -EINVAL);
	CHECK(!exists(bad));
	CHECK_EQ(count_prefixed("bad"), 0);
	/* a failed init into an existing empty directory leaves it empty */
	TPATH(empty2, "empty2");
	CHECK_EQ(mkdir(empty2, 0700), 0);
	CHECK_EQ(store_init(empty2, &q, pass, PASSLEN), -EINVAL);
	CHECK_EQ(count_entries(empty2), 0);
	CHECK_EQ(count_prefixed("empty2"), 1);

	/* a path given with a trailing slash (as shell completion
	 * produces) names the same directory */
	TPATH(slash, "slash/");
	CHECK_EQ(store_init(slash, &p, pass, PASSLEN), 0);
	TPATH(noslash, "slash");
	snprintf(sub, sizeof(sub), "%s/%s", noslash, STORE_KEY_FILE);
	CHECK(exists(sub));
	CHECK_EQ(count_prefixed("slash"), 1);
	TPATH(slash2, "slash2");
	CHECK_EQ(mkdir(slash2, 0700), 0);
	snprintf(sub, sizeof(sub), "%s/", slash2);
	CHECK_EQ(store_init(sub, &p, pass, PASSLEN), 0);
	snprintf(sub, sizeof(sub), "%s/%s", slash2, STORE_KEY_FILE);
	CHECK(exists(sub));
	CHECK_EQ(count_prefixed("slash2"), 1);
}

/* ---- store_open ---- */

static void test_open(void)
{
	struct store *st = NULL;
	struct store_params p;
	char sub[600];

	params(&p);
	TPATH(s1, "s1");
	CHECK_EQ(store_open(s1, "wrong", 5, &st), -EKEYREJECTED);
	CHECK(st == NULL);
	CHECK_EQ(store_open(s1, pass, PASSLEN - 1, &st), -EKEYREJECTED);
	TPATH(none, "does-not-exist");
	CHECK_EQ(store_open(none, pass, PASSLEN, &st), -ENOENT);
	TPATH(full, "full");			/* a directory, not a store */
	CHECK_EQ(store_open(full, pass, PASSLEN, &st), -ENOENT);
	/* a path through a regular file: no store there either */
	TPATH(through, "full/precious/store");
	int err = store_open(through, pass, PASSLEN, &st);
	CHECK(err == -ENOTDIR || err == -ENOENT);

	CHECK_EQ(store_open(s1, pass, PASSLEN, &st), 0);
	if (st) {
		CHECK(st->dir && st->dir[0] == '/');
		CHECK_EQ(st->cdc.min_size, 4096);
		CHECK_EQ(st->cdc.avg_size, 16384);
		CHECK_EQ(st->cdc.max_size, 65536);
		CHECK_EQ(st->pack_target, STORE_PACK_TARGET);
		CHECK(st->pw == NULL);
		CHECK_EQ(store_close(st), 0);
	}
	CHECK_EQ(store_close(NULL), 0);

	/* a store from a newer tresor is refused */
	TPATH(newer, "newer");
	CHECK_EQ(store_init(newer, &p, pass, PASSLEN), 0);
	struct index *ix = NULL;
	snprintf(sub, sizeof(sub), "%s/%s", newer, STORE_INDEX_FILE);
	CHECK_EQ(index_open(sub, 0, &ix), 0);
	if (ix) {
		CHECK_EQ(index_meta_set(ix, "format_version",
					STORE_FORMAT_VERSION + 1), 0);
		index_close(ix);
	}
	st = NULL;
	CHECK_EQ(store_open(newer, pass, PASSLEN, &st), -EPROTONOSUPPORT);
	CHECK(st == NULL);
}

/* ---- the chunk path ---- */

static void test_put_read(void)
{
	struct store *st = NULL;
	struct chunk_ref ref;
	const size_t l1 = 20000, l2 = 30000, l3 = 7;
	uint8_t *d1 = gen(l1, 1, 0), *d2 = gen(l2, 2, 1), *d3 = gen(l3, 3, 0);
	uint8_t buf[40000];
	int64_t r1 = 0, r1b = 0, r2 = 0, r3 = 0;
	char *ppath = NULL;

	TPATH(s1, "s1");
	CHECK_EQ(store_open(s1, pass, PASSLEN, &st), 0);
	if (!st)
		goto out;
	CHECK_EQ(index_begin(st->ix), 0);
	CHECK_EQ(store_put(st, d1, l1, &r1), 0);
	CHECK(r1 > 0);
	CHECK_EQ(store_put(st, d1, l1, &r1b), 0);
	CHECK_EQ(r1b, r1);
	CHECK_EQ(sql_int(st, "SELECT COUNT(*) FROM chunk"), 1);
	CHECK_EQ(sql_int(st, "SELECT COUNT(*) FROM pack"), 1);
	CHECK(st->pw != NULL);
	uint64_t psize = st->pw ? pack_size(st->pw) : 0;

	/* a sealed chunk that is already known: nothing is written */
	uint8_t id[CHUNK_ID_LEN];
	struct sealed_chunk sc;
	store_chunk_id(st, d1, l1, id);
	CHECK_EQ(store_seal_chunk(st, id, d1, l1, &sc, NULL), 0);
	r1b = 0;
	CHECK_EQ(store_chunk_add(st, &sc, &r1b), 0);
	CHECK_EQ(r1b, r1);
	free(sc.buf);
	if (st->pw)
		CHECK_EQ(pack_size(st->pw), psize);
	CHECK_EQ(store_chunk_lookup(st, id, &r1b), 0);
	CHECK_EQ(r1b, r1);
	id[5] ^= 1;
	CHECK_EQ(store_chunk_lookup(st, id, &r1b), -ENOENT);

	CHECK_EQ(store_put(st, d2, l2, &r2), 0);
	CHECK_EQ(store_put(st, d3, l3, &r3), 0);
	CHECK(r2 > 0 && r2 != r1);
	CHECK(r3 > 0 && r3 != r1 && r3 != r2);
	CHECK_EQ(sql_int(st, "SELECT COUNT(*) FROM chunk"), 3);
	CHECK_EQ(sql_int(st, "SELECT COUNT(*) FROM chunk WHERE refs != 0"), 0);
	CHECK_EQ(store_commit(st), 0);
	CHECK_EQ(index_in_tx(st->ix), 0);
	CHECK_EQ(store_commit(st), 0);		/* nothing open: no-op */

	/* read back, whole and in parts */
	CHECK(reads_back(st, r1, d1, l1));
	CHECK(reads_back(st, r2, d2, l2));
	CHECK(reads_back(st, r3, d3, l3));
	CHECK_EQ(store_chunk_ref(st, r1, &ref), 0);
	CHECK_EQ(ref.rowid, r1);
	CHECK_EQ(ref.e.rlen, l1);
	CHECK_EQ(ref.e.flags, 0);		/* random: stored raw */
	CHECK_EQ(ref.e.slen, l1 + SEAL_OVERHEAD);
	CHECK_EQ(ref.e.off, PACK_HEADER_LEN);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(store_read_chunk(st, &ref, 1234, buf, 5000), 0);
	CHECK(!memcmp(buf, d1 + 1234, 5000));
	CHECK_EQ(store_read_chunk(st, &ref, l1 - 1, buf, 1), 0);
	CHECK_EQ(buf[0], d1[l1 - 1]);
	CHECK_EQ(store_read_chunk(st, &ref, 0, buf, 0), 0);
	CHECK_EQ(store_read_chunk(st, &ref, l1 - 1, buf, 2), -EUCLEAN);
	CHECK_EQ(store_chunk_ref(st, r2, &ref), 0);
	CHECK_EQ(ref.e.flags, CHUNK_F_ZSTD);	/* text: compressed */
	CHECK(ref.e.slen < l2);
	CHECK_EQ(ref.e.off, PACK_HEADER_LEN + l1 + SEAL_OVERHEAD);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(store_read_chunk(st, &ref, 29000, buf, 1000), 0);
	CHECK(!memcmp(buf, d2 + 29000, 1000));
	CHECK_EQ(store_read_chunk(st, &ref, 1, buf, l2 - 1), 0);
	CHECK(!memcmp(buf, d2 + 1, l2 - 1));
	CHECK_EQ(store_chunk_ref(st, 999999, &ref), -EUCLEAN);

	/* the open pack: under packs/XX/, no footer yet */
	CHECK_EQ(store_chunk_ref(st, r1, &ref), 0);
	ppath = store_pack_path(st, ref.pack);
	CHECK(ppath != NULL);
	if (ppath) {
		char hex[PACK_NAME_LEN * 2 + 1], want[700];
		hex_encode(ref.pack, PACK_NAME_LEN, hex);
		snprintf(want, sizeof(want), "%s/packs/%.2s/%s", st->dir, hex, hex);
		CHECK(!strcmp(ppath, want));
		CHECK_EQ(pack_is_finished(ppath), 0);
		CHECK_EQ(sql_int(st, "SELECT state FROM pack"), PACK_OPEN);
	}
	CHECK_EQ(store_close(st), 0);
	st = NULL;

	/* closing finished the pack and recorded its size */
	if (ppath)
		CHECK_EQ(pack_is_finished(ppath), 1);
	CHECK_EQ(store_open(s1, pass, PASSLEN, &st), 0);
	if (!st)
		goto out;
	CHECK_EQ(sql_int(st, "SELECT state FROM pack"), PACK_FINISHED);
	if (ppath)
		CHECK_EQ(sql_int(st, "SELECT size FROM pack"), file_size(ppath));
	CHECK(reads_back(st, r1, d1, l1));
	CHECK(reads_back(st, r2, d2, l2));
	CHECK(reads_back(st, r3, d3, l3));
	CHECK_EQ(store_chunk_ref(st, r2, &ref), 0);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(store_read_chunk(st, &ref, 100, buf, 200), 0);
	CHECK(!memcmp(buf, d2 + 100, 200));
	/* the footer lists the three chunks */
	if (ppath) {
		struct pack_entry *es = NULL;
		size_t n = 0;
		CHECK_EQ(pack_read_footer(ppath, ref.pack, &st->keys, &es, &n), 0);
		CHECK_EQ(n, 3);
		free(es);
	}
	/* a new pack for new data; the finished one is left alone */
	CHECK_EQ(index_begin(st->ix), 0);
	uint8_t *d4 = gen(5000, 4, 0);
	int64_t r4 = 0;
	CHECK_EQ(store_put(st, d4, 5000, &r4), 0);
	CHECK_EQ(store_close(st), 0);
	st = NULL;
	CHECK_EQ(store_open(s1, pass, PASSLEN, &st), 0);
	if (st) {
		CHECK_EQ(sql_int(st, "SELECT COUNT(*) FROM pack WHERE state = 1"), 2);
		CHECK(reads_back(st, r4, d4, 5000));
		CHECK(reads_back(st, r1, d1, l1));
		CHECK_EQ(store_close(st), 0);
	}
	free(d4);
out:
	free(ppath);
	free(d1);
	free(d2);
	free(d3);
}

/* ---- pack rotation and the layout under packs/ ---- */

#define NROT 24
#define ROT_LEN (12u << 10)

static void test_rotation(void)
{
	struct store_params p;
	struct store *st = NULL;
	int64_t rows[NROT];
	uint8_t *data[NROT];

	params(&p);
	TPATH(dir, "rot");
	CHECK_EQ(store_init(dir, &p, pass, PASSLEN), 0);
	CHECK_EQ(store_open(dir, pass, PASSLEN, &st), 0);
	if (!st)
		return;
	st->pack_target = 64u << 10;
	CHECK_EQ(index_begin(st->ix), 0);
	for (int i = 0; i < NROT; i++) {
		data[i] = gen(ROT_LEN + i, 100 + i, i % 4 == 0);
		rows[i] = 0;
		CHECK_EQ(store_put(st, data[i], ROT_LEN + i, &rows[i]), 0);
	}
	CHECK_EQ(store_commit(st), 0);
	/* at least ~(24 * 12 KiB) / 64 KiB packs, all but the last finished */
	int64_t npacks = sql_int(st, "SELECT COUNT(*) FROM pack");
	CHECK(npacks >= 4);
	CHECK_EQ(sql_int(st, "SELECT COUNT(*) FROM pack WHERE state = 0"),
		 st->pw ? 1 : 0);
	CHECK_EQ(store_close(st), 0);
	st = NULL;

	CHECK_EQ(store_open(dir, pass, PASSLEN, &st), 0);
	if (!st)
		goto out;
	CHECK_EQ(sql_int(st, "SELECT COUNT(*) FROM pack WHERE state != 1"), 0);
	CHECK_EQ(sql_int(st, "SELECT COUNT(*) FROM chunk"), NROT);

	/* every pack row: its file at packs/XX/NAME, finished, of the
	 * recorded size, its footer listing exactly its chunks */
	sqlite3_stmt *s = NULL;
	int seen = 0;
	CHECK_EQ(sqlite3_prepare_v2(index_db(st->ix),
		 "SELECT id, name, state, size FROM pack ORDER BY id", -1, &s,
		 NULL), SQLITE_OK);
	while (s && sqlite3_step(s) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(s, 0);
		uint8_t name[PACK_NAME_LEN];
		char hex[PACK_NAME_LEN * 2 + 1], want[700];
		CHECK_EQ(sqlite3_column_bytes(s, 1), PACK_NAME_LEN);
		memcpy(name, sqlite3_column_blob(s, 1), PACK_NAME_LEN);
		hex_encode(name, PACK_NAME_LEN, hex);
		snprintf(want, sizeof(want), "%s/packs/%.2s/%s", st->dir, hex, hex);
		CHECK(exists(want));
		CHECK_EQ(pack_is_finished(want), 1);
		CHECK_EQ(sqlite3_column_int64(s, 3), file_size(want));
		struct chunk_loc *cs = NULL;
		struct pack_entry *es = NULL;
		size_t nc = 0, ne = 0;
		CHECK_EQ(catalog_pack_chunks(st->ix, id, &cs, &nc), 0);
		CHECK(nc >= 1);
		CHECK_EQ(pack_read_footer(want, name, &st->keys, &es, &ne), 0);
		CHECK_EQ(ne, nc);
		uint64_t end = PACK_HEADER_LEN;
		for (size_t i = 0; i < nc && i < ne; i++) {
			CHECK(!memcmp(es[i].id, cs[i].e.id, CHUNK_ID_LEN));
			CHECK_EQ(es[i].off, cs[i].e.off);
			CHECK_EQ(es[i].off, end);	/* back to back */
			CHECK_EQ(es[i].slen, cs[i].e.slen);
			CHECK_EQ(es[i].rlen, cs[i].e.rlen);
			CHECK_EQ(es[i].flags, cs[i].e.flags);
			end = es[i].off + es[i].slen;
		}
		/* header, records, footer, trailer and nothing else */
		CHECK_EQ(file_size(want),
			 padded(end + 4 + 49 * ne + SEAL_OVERHEAD + PACK_TRAILER_LEN));
		/* a pack is cut as soon as it reaches the target */
		if (nc)
			CHECK(end - cs[nc - 1].e.slen < st->pack_target);
		free(cs);
		free(es);
		seen++;
	}
	sqlite3_finalize(s);
	CHECK_EQ(seen, npacks);

	/* nothing under packs/ but XX directories holding XX... files */
	TPATH(pdir, "rot/packs");
	DIR *d = opendir(pdir);
	int files = 0;
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		CHECK_EQ(strlen(de->d_name), 2);
		char sub[800];
		snprintf(sub, sizeof(sub), "%s/%s", pdir, de->d_name);
		DIR *d2 = opendir(sub);
		CHECK(d2 != NULL);
		struct dirent *f;
		while (d2 && (f = readdir(d2))) {
			if (!strcmp(f->d_name, ".") || !strcmp(f->d_name, ".."))
				continue;
			CHECK_EQ(strlen(f->d_name), 32);
			CHECK(!strncmp(f->d_name, de->d_name, 2));
			files++;
		}
		if (d2)
			closedir(d2);
	}
	if (d)
		closedir(d);
	CHECK_EQ(files, npacks);

	for (int i = 0; i < NROT; i++)
		CHECK(reads_back(st, rows[i], data[i], ROT_LEN + i));
	CHECK_EQ(store_close(st), 0);
	st = NULL;

	/* damage: flip a byte inside one record */
	CHECK_EQ(store_open(dir, pass, PASSLEN, &st), 0);
	if (!st)
		goto out;
	struct chunk_ref ref, other;
	const int victim = NROT / 2;
	CHECK_EQ(store_chunk_ref(st, rows[victim], &ref), 0);
	CHECK_EQ(store_chunk_ref(st, rows[0], &other), 0);
	char *path = store_pack_path(st, ref.pack);
	CHECK_EQ(store_close(st), 0);
	st = NULL;
	int fd = path ? open(path, O_RDWR) : -1;
	CHECK(fd >= 0);
	uint8_t b = 0;
	off_t at = (off_t)(ref.e.off + ref.e.slen / 2);
	CHECK_EQ(pread(fd, &b, 1, at), 1);
	b ^= 0x20;
	CHECK_EQ(pwrite(fd, &b, 1, at), 1);

	CHECK_EQ(store_open(dir, pass, PASSLEN, &st), 0);	/* empty cache */
	if (st) {
		uint8_t *buf = malloc(ROT_LEN + NROT);
		memset(buf, 0xa5, ROT_LEN + NROT);
		CHECK_EQ(store_read_chunk(st, &ref, 0, buf, ref.e.rlen), -EBADMSG);
		CHECK_EQ(store_read_chunk(st, &ref, 10, buf, 10), -EBADMSG);
		/* no bytes of it reach the caller */
		int untouched = 1;
		for (size_t i = 0; i < ref.e.rlen; i++)
			untouched &= buf[i] == 0xa5;
		CHECK(untouched);
		/* other chunks are fine */
		if (memcmp(other.pack, ref.pack, PACK_NAME_LEN) || other.rowid != ref.rowid)
			CHECK(reads_back(st, rows[0], data[0], ROT_LEN));
		free(buf);
		CHECK_EQ(store_close(st), 0);
		st = NULL;
	}
	/* repaired: reads again */
	b ^= 0x20;
	CHECK_EQ(pwrite(fd, &b, 1, at), 1);
	if (fd >= 0)
		close(fd);
	CHECK_EQ(store_open(dir, pass, PASSLEN, &st), 0);
	if (st) {
		CHECK(reads_back(st, rows[victim], data[victim], ROT_LEN + victim));
		CHECK_EQ(store_close(st), 0);
	}
	free(path);
out:
	for (int i = 0; i < NROT; i++)
		free(data[i]);
}

/* ---- concurrent readers through the chunk cache ---- */

#define NCONC 80		/* more chunks than the cache has slots */
#define CONC_LEN 4096
#define CONC_THREADS 4
#define CONC_READS 3000

struct conc {
	struct store *st;
	struct chunk_ref *refs;
	uint8_t **data;
	unsigned int seed;
	int bad;
};

static void *conc_main(void *arg)
{
	struct conc *c = arg;
	uint8_t buf[CONC_LEN];

	for (int i = 0; i < CONC_READS; i++) {
		c->seed = c->seed * 1103515245u + 12345u;
		unsigned int k = (c->seed >> 8) % NCONC;
		size_t off = (c->seed >> 16) % CONC_LEN;
		size_t len = CONC_LEN - off;
		if (store_read_chunk(c->st, &c->refs[k], off, buf, len) ||
		    memcmp(buf, c->data[k] + off, len))
			c->bad++;
	}
	return NULL;
}

static void test_concurrent_reads(void)
{
	struct store_params p;
	struct store *st = NULL;
	struct chunk_ref refs[NCONC];
	uint8_t *data[NCONC];
	struct conc cs[CONC_THREADS];
	pthread_t th[CONC_THREADS];

	params(&p);
	TPATH(dir, "conc");
	CHECK_EQ(store_init(dir, &p, pass, PASSLEN), 0);
	CHECK_EQ(store_open(dir, pass, PASSLEN, &st), 0);
	if (!st)
		return;
	CHECK_EQ(index_begin(st->ix), 0);
	for (int i = 0; i < NCONC; i++) {
		int64_t r = 0;
		data[i] = gen(CONC_LEN, 2000 + i, i % 2);
		CHECK_EQ(store_put(st, data[i], CONC_LEN, &r), 0);
		CHECK_EQ(store_chunk_ref(st, r, &refs[i]), 0);
	}
	CHECK_EQ(store_commit(st), 0);
	for (int t = 0; t < CONC_THREADS; t++) {
		cs[t] = (struct conc){ .st = st, .refs = refs, .data = data,
				       .seed = 7u + (unsigned)t };
		CHECK_EQ(pthread_create(&th[t], NULL, conc_main, &cs[t]), 0);
	}
	for (int t = 0; t < CONC_THREADS; t++) {
		pthread_join(th[t], NULL);
		CHECK_EQ(cs[t].bad, 0);
	}
	CHECK_EQ(store_close(st), 0);
	for (int i = 0; i < NCONC; i++)
		free(data[i]);
}

/* ---- orphans: a writer that died after committing ---- */

#define NORPH 3
static size_t orph_len(int i)
{
	return 9000 + (size_t)i * 1111;
}

/* The child: open, put NORPH chunks, commit, then one more chunk that is
 * written to the pack but never committed, and die without closing. */
static void orphan_child(const char *dir)
{
	struct store *st = NULL;
	int64_t r;

	if (store_open(dir, pass, PASSLEN, &st))
		_exit(10);
	if (index_begin(st->ix))
		_exit(11);
	for (int i = 0; i < NORPH; i++) {
		uint8_t *d = gen(orph_len(i), 500 + i, i == 1);
		if (store_put(st, d, orph_len(i), &r))
			_exit(12);
		free(d);
	}
	if (store_commit(st))
		_exit(13);
	if (index_begin(st->ix))
		_exit(14);
	uint8_t *d = gen(4000, 999, 0);
	if (store_put(st, d, 4000, &r))
		_exit(15);
	if (pack_sync(st->pw))
		_exit(16);
	_exit(0);	/* no store_close: the pack stays open, unfinished */
}

static void test_orphan(void)
{
	struct store_params p;
	struct store *st = NULL;
	int status = -1;

	params(&p);
	TPATH(dir, "orphan");
	CHECK_EQ(store_init(dir, &p, pass, PASSLEN), 0);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		orphan_child(dir);
	CHECK(pid > 0);
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 0);

	CHECK_EQ(store_open(dir, pass, PASSLEN, &st), 0);
	if (!st)
		return;
	int64_t *ids = NULL;
	size_t n = 0;
	CHECK_EQ(catalog_pack_list(st->ix, PACK_OPEN, &ids, &n), 0);
	CHECK_EQ(n, 1);
	int64_t pack = n ? ids[0] : -1;
	free(ids);
	uint8_t name[PACK_NAME_LEN];
	CHECK_EQ(catalog_pack_name(st->ix, pack, name), 0);
	char *path = store_pack_path(st, name);
	CHECK_EQ(pack_is_finished(path), 0);
	struct chunk_loc *cs = NULL;
	size_t nc = 0;
	CHECK_EQ(catalog_pack_chunks(st->ix, pack, &cs, &nc), 0);
	CHECK_EQ(nc, NORPH);
	uint64_t end = PACK_HEADER_LEN;
	for (size_t i = 0; i < nc; i++)
		if (cs[i].e.off + cs[i].e.slen > end)
			end = cs[i].e.off + cs[i].e.slen;
	/* the uncommitted record is in the file, beyond the last listed */
	CHECK(file_size(path) > (int64_t)end);
	uint8_t id[CHUNK_ID_LEN];
	int64_t r;
	uint8_t *lost = gen(4000, 999, 0);
	store_chunk_id(st, lost, 4000, id);
	CHECK_EQ(store_chunk_lookup(st, id, &r), -ENOENT);
	free(lost);

	CHECK_EQ(store_finish_orphans(st), 1);
	CHECK_EQ(index_in_tx(st->ix), 0);
	CHECK_EQ(pack_is_finished(path), 1);
	CHECK_EQ(file_size(path),
		 (int64_t)padded(end + 4 + 49 * NORPH + SEAL_OVERHEAD + PACK_TRAILER_LEN));
	CHECK_EQ(catalog_pack_list(st->ix, PACK_OPEN, &ids, &n), 0);
	CHECK_EQ(n, 0);
	free(ids);
	CHECK_EQ(sql_int(st, "SELECT state FROM pack"), PACK_FINISHED);
	CHECK_EQ(sql_int(st, "SELECT size FROM pack"), file_size(path));
	struct pack_entry *es = NULL;
	size_t ne = 0;
	CHECK_EQ(pack_read_footer(path, name, &st->keys, &es, &ne), 0);
	CHECK_EQ(ne, NORPH);
	for (size_t i = 0; i < ne && i < nc; i++) {
		CHECK(!memcmp(es[i].id, cs[i].e.id, CHUNK_ID_LEN));
		CHECK_EQ(es[i].off, cs[i].e.off);
		CHECK_EQ(es[i].slen, cs[i].e.slen);
		CHECK_EQ(es[i].rlen, cs[i].e.rlen);
		CHECK_EQ(es[i].flags, cs[i].e.flags);
	}
	free(es);
	for (int i = 0; i < NORPH; i++) {
		uint8_t *d = gen(orph_len(i), 500 + i, i == 1);
		store_chunk_id(st, d, orph_len(i), id);
		r = 0;
		CHECK_EQ(store_chunk_lookup(st, id, &r), 0);
		CHECK(reads_back(st, r, d, orph_len(i)));
		free(d);
	}
	/* twice is harmless */
	CHECK_EQ(store_finish_orphans(st), 0);
	CHECK_EQ(store_close(st), 0);
	st = NULL;

	/* a pack whose writer is alive is left alone */
	struct store *a = NULL, *b = NULL;
	CHECK_EQ(store_open(dir, pass, PASSLEN, &a), 0);
	CHECK_EQ(store_open(dir, pass, PASSLEN, &b), 0);
	if (a && b) {
		uint8_t *d = gen(3000, 777, 0);
		CHECK_EQ(index_begin(a->ix), 0);
		CHECK_EQ(store_put(a, d, 3000, &r), 0);
		CHECK_EQ(store_commit(a), 0);
		char *live = a->pw ? store_pack_path(a, pack_name(a->pw)) : NULL;
		CHECK(live != NULL);
		CHECK_EQ(store_finish_orphans(b), 0);
		if (live)
			CHECK_EQ(pack_is_finished(live), 0);
		CHECK_EQ(store_close(a), 0);
		a = NULL;
		if (live)
			CHECK_EQ(pack_is_finished(live), 1);
		CHECK(reads_back(b, r, d, 3000));
		free(live);
		free(d);
	}
	store_close(a);
	store_close(b);
	free(cs);
	free(path);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	log_set_level(LOG_ERR);
	test_init();
	test_open();
	test_put_read();
	test_rotation();
	test_concurrent_reads();
	test_orphan();
	if (!check_failures)
		rm_rf(tmpdir);
	else
		fprintf(stderr, "test_store: left %s for inspection\n", tmpdir);
	printf("test_store: %s\n", check_failures ? "FAILED" : "ok");
	return CHECK_DONE();
}
