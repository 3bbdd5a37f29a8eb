/*
 * test_index.c - unit tests for the index (chunker/index.c, catalog.c,
 * fs/namespace.c): volumes, the versioned-row model (birth/death epochs, views, in-place vs copy-on-write updates),
 * directory entries, extents (replace, punch, trimming, overlap queries),
 * chunk reference counts, xattrs, orphans, packs, stats and transactions.
 *
 * There is no snapshot API yet, so a snapshot is simulated by bumping the
 * volume's epoch with raw SQL: rows written afterwards are born in the new
 * epoch and the old epoch is a view that must not change.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "check.h"
#include "namespace.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sqlite3.h>

static char tmpdir[] = "/tmp/tresor-test-index-XXXXXX";

#define TPATH(var, name)						\
	char var[256];							\
	snprintf(var, sizeof(var), "%s/%s", tmpdir, name)

/* ---- helpers ---- */

/* Run a query returning one integer; -1000000 if it fails (so a check
 * against any plausible expected value fails too). */
static int64_t sql_int(struct index *ix, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1000000;

	if (sqlite3_prepare_v2(index_db(ix), sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "prepare %s: %s\n", sql,
			sqlite3_errmsg(index_db(ix)));
		return v;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* sql_int with a printf-style query. */
static int64_t sqlf(struct index *ix, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int64_t sqlf(struct index *ix, const char *fmt, ...)
{
	char sql[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	return sql_int(ix, sql);
}

/* Simulate a snapshot: bump the volume's epoch; return the new one. */
static int64_t bump_epoch(struct index *ix, int64_t vol)
{
	char sql[128];
	struct volume_info vi;

	snprintf(sql, sizeof(sql),
		 "UPDATE volume SET epoch = epoch + 1 WHERE id = %lld",
		 (long long)vol);
	CHECK_EQ(sqlite3_exec(index_db(ix), sql, NULL, NULL, NULL), SQLITE_OK);
	memset(&vi, 0, sizeof(vi));
	vi.id = -1;
	/* find it by id through the list */
	struct volume_info *vis = NULL;
	size_t n = 0;
	CHECK_EQ(ns_volume_list(ix, &vis, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (vis[i].id == vol)
			vi = vis[i];
	free(vis);
	CHECK_EQ(vi.id, vol);
	return vi.epoch;
}

/* Rows of the chunk table whose refs differ from the number of extent
 * rows (any version) naming the chunk: must always be 0. */
static int64_t bad_refs(struct index *ix)
{
	return sql_int(ix,
		"SELECT COUNT(*) FROM chunk c WHERE c.refs !="
		" (SELECT COUNT(*) FROM extent e WHERE e.chunk = c.id)");
}

static int64_t refs_of(struct index *ix, int64_t chunk)
{
	struct chunk_loc c;

	memset(&c, 0, sizeof(c));
	c.refs = -1000;
	CHECK_EQ(catalog_chunk_get(ix, chunk, &c), 0);
	return c.refs;
}

static struct inode_attr mk_attr(uint64_t ino, uint32_t mode, uint64_t size)
{
	struct inode_attr a;

	memset(&a, 0, sizeof(a));
	a.ino = ino;
	a.mode = mode;
	a.uid = 1000 + (uint32_t)ino;
	a.gid = 2000 + (uint32_t)ino;
	a.nlink = 1;
	a.size = size;
	a.rdev = 0;
	a.atime = 111;
	a.mtime = 222;
	a.ctime = 333;
	return a;
}

/* Compare the visible extents of ino in view over [start, end) with want. */
#define EXPECT_EXTENTS(ix, vol, view, ino, start, end, ...)		\
	do {								\
		const struct extent want_[] = { __VA_ARGS__ };		\
		expect_extents(__LINE__, ix, vol, view, ino, start, end, \
			       want_, sizeof(want_) / sizeof(want_[0])); \
	} while (0)
#define NO_EXTENTS(ix, vol, view, ino, start, end)			\
	expect_extents(__LINE__, ix, vol, view, ino, start, end, NULL, 0)

static void expect_extents(int line, struct index *ix, int64_t vol,
			   int64_t view, uint64_t ino, uint64_t start,
			   uint64_t end, const struct extent *want, size_t nw)
{
	struct extent *xs = NULL;
	size_t n = 12345;
	int err = ns_extents_in(ix, vol, view, ino, start, end, &xs, &n);

	if (err) {
		fprintf(stderr, "line %d: ns_extents_in: %d\n", line, err);
		check_failures++;
		return;
	}
	int bad = n != nw;
	for (size_t i = 0; !bad && i < n; i++)
		bad = xs[i].off != want[i].off || xs[i].len != want[i].len ||
		      xs[i].chunk != want[i].chunk ||
		      xs[i].coff != want[i].coff;
	if (bad) {
		fprintf(stderr, "line %d: extents of ino %llu in view %lld "
			"[%llu, %llu) differ:\n  got", line,
			(unsigned long long)ino, (long long)view,
			(unsigned long long)start, (unsigned long long)end);
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, " {%llu,%llu,%lld,%llu}",
				(unsigned long long)xs[i].off,
				(unsigned long long)xs[i].len,
				(long long)xs[i].chunk,
				(unsigned long long)xs[i].coff);
		fprintf(stderr, "\n  want");
		for (size_t i = 0; i < nw; i++)
			fprintf(stderr, " {%llu,%llu,%lld,%llu}",
				(unsigned long long)want[i].off,
				(unsigned long long)want[i].len,
				(long long)want[i].chunk,
				(unsigned long long)want[i].coff);
		fprintf(stderr, "\n");
		check_failures++;
	}
	free(xs);
}

/* A pack row and n chunk rows in it; ids are derived from tag. */
static int64_t make_pack(struct index *ix, uint8_t tag)
{
	uint8_t name[PACK_NAME_LEN];
	int64_t rowid = -1;

	memset(name, tag, sizeof(name));
	CHECK_EQ(catalog_pack_insert(ix, name, &rowid), 0);
	CHECK(rowid > 0);
	return rowid;
}

static int64_t make_chunk(struct index *ix, int64_t pack, uint8_t tag,
			  uint64_t off, uint32_t slen, uint32_t rlen)
{
	struct chunk_loc c;

	memset(&c, 0, sizeof(c));
	memset(c.e.id, tag, CHUNK_ID_LEN);
	c.e.id[0] = 0xc0;
	c.pack = pack;
	c.e.off = off;
	c.e.slen = slen;
	c.e.rlen = rlen;
	c.e.flags = tag & 1;
	c.refs = 99;
	c.rowid = -1;
	CHECK_EQ(catalog_chunk_insert(ix, &c), 0);
	CHECK(c.rowid > 0);
	CHECK_EQ(c.refs, 0);
	return c.rowid;
}

/* ---- volumes and meta ---- */

static void test_volumes(struct index *ix, struct volume_info *vi)
{
	struct volume_info v2, f;
	struct inode_attr a;

	CHECK_EQ(ns_volume_create(ix, "main", 1000, 1001, 123456789, vi), 0);
	CHECK(vi->id > 0);
	CHECK(!strcmp(vi->name, "main"));
	CHECK_EQ(vi->epoch, 1);
	CHECK_EQ(vi->next_ino, 2);

	/* the root directory */
	memset(&a, 0xff, sizeof(a));
	CHECK_EQ(ns_inode_get(ix, vi->id, VIEW_LIVE, ROOT_INO, &a), 0);
	CHECK_EQ(a.ino, ROOT_INO);
	CHECK_EQ(a.mode, S_IFDIR | 0755);
	CHECK_EQ(a.uid, 1000);
	CHECK_EQ(a.gid, 1001);
	CHECK_EQ(a.nlink, 2);
	CHECK_EQ(a.size, 0);
	CHECK_EQ(a.rdev, 0);
	CHECK_EQ(a.atime, 123456789);
	CHECK_EQ(a.mtime, 123456789);
	CHECK_EQ(a.ctime, 123456789);
	CHECK_EQ(a.birth, 1);
	CHECK_EQ(ns_inode_get(ix, vi->id, 1, ROOT_INO, &a), 0);
	/* before the volume existed */
	CHECK_EQ(ns_inode_get(ix, vi->id, 0, ROOT_INO, &a), -ENOENT);
	CHECK_EQ(sqlf(ix, "SELECT death FROM inode WHERE vol = %lld AND ino = 1",
		      (long long)vi->id), EPOCH_ALIVE);
	CHECK_EQ(ns_dir_empty(ix, vi->id, VIEW_LIVE, ROOT_INO), 1);

	CHECK_EQ(ns_volume_create(ix, "main", 0, 0, 1, &v2), -EEXIST);
	CHECK_EQ(ns_volume_create(ix, "aux", 5, 6, 7, &v2), 0);
	CHECK(v2.id != vi->id);
	CHECK_EQ(ns_inode_get(ix, v2.id, VIEW_LIVE, ROOT_INO, &a), 0);
	CHECK_EQ(a.uid, 5);

	memset(&f, 0, sizeof(f));
	CHECK_EQ(ns_volume_find(ix, "main", &f), 0);
	CHECK_EQ(f.id, vi->id);
	CHECK_EQ(f.epoch, 1);
	CHECK_EQ(ns_volume_find(ix, "nope", &f), -ENOENT);

	struct volume_info *vis = NULL;
	size_t n = 0;
	CHECK_EQ(ns_volume_list(ix, &vis, &n), 0);
	CHECK_EQ(n, 2);
	if (n == 2) {	/* by name */
		CHECK(!strcmp(vis[0].name, "aux"));
		CHECK(!strcmp(vis[1].name, "main"));
	}
	free(vis);

	CHECK_EQ(ns_volume_set_next_ino(ix, vi->id, 5000), 0);
	CHECK_EQ(ns_volume_find(ix, "main", &f), 0);
	CHECK_EQ(f.next_ino, 5000);
	CHECK_EQ(ns_volume_find(ix, "aux", &f), 0);
	CHECK_EQ(f.next_ino, 2);

	/* meta */
	int64_t val = 77;
	CHECK_EQ(index_meta_get(ix, "test_key", &val), -ENOENT);
	CHECK_EQ(val, 77);
	CHECK_EQ(index_meta_set(ix, "test_key", 42), 0);
	CHECK_EQ(index_meta_get(ix, "test_key", &val), 0);
	CHECK_EQ(val, 42);
	CHECK_EQ(index_meta_set(ix, "test_key", -3), 0);
	CHECK_EQ(index_meta_get(ix, "test_key", &val), 0);
	CHECK_EQ(val, -3);
	CHECK_EQ(sql_int(ix, "SELECT COUNT(*) FROM meta WHERE key = 'test_key'"), 1);
}

/* ---- inodes ---- */

static int64_t inode_rows(struct index *ix, int64_t vol, uint64_t ino)
{
	return sqlf(ix, "SELECT COUNT(*) FROM inode WHERE vol = %lld AND ino = %llu",
		    (long long)vol, (unsigned long long)ino);
}

static void test_inodes(struct index *ix, struct volume_info *vi)
{
	int64_t vol = vi->id;
	int64_t e1 = vi->epoch;
	struct inode_attr a, g;

	a = mk_attr(10, S_IFREG | 0644, 10);
	a.rdev = 77;
	a.nlink = 3;
	a.birth = -5;
	CHECK_EQ(ns_inode_put(ix, vol, e1, &a), 0);
	CHECK_EQ(a.birth, e1);
	memset(&g, 0, sizeof(g));
	CHECK_EQ(ns_inode_get(ix, vol, VIEW_LIVE, 10, &g), 0);
	CHECK_EQ(g.ino, 10);
	CHECK_EQ(g.mode, S_IFREG | 0644);
	CHECK_EQ(g.uid, 1010);
	CHECK_EQ(g.gid, 2010);
	CHECK_EQ(g.nlink, 3);
	CHECK_EQ(g.size, 10);
	CHECK_EQ(g.rdev, 77);
	CHECK_EQ(g.atime, 111);
	CHECK_EQ(g.mtime, 222);
	CHECK_EQ(g.ctime, 333);
	CHECK_EQ(g.birth, e1);
	CHECK_EQ(ns_inode_get(ix, vol, VIEW_LIVE, 11, &g), -ENOENT);
	/* other volume does not see it */
	CHECK_EQ(ns_inode_get(ix, vol + 1, VIEW_LIVE, 10, &g), -ENOENT);

	/* same epoch: in place */
	a.size = 20;
	a.mtime = 444;
	CHECK_EQ(ns_inode_put(ix, vol, e1, &a), 0);
	CHECK_EQ(inode_rows(ix, vol, 10), 1);
	CHECK_EQ(ns_inode_get(ix, vol, VIEW_LIVE, 10, &g), 0);
	CHECK_EQ(g.size, 20);
	CHECK_EQ(g.mtime, 444);
	CHECK_EQ(g.birth, e1);

	/* new epoch: copy on write */
	int64_t e2 = bump_epoch(ix, vol);
	CHECK_EQ(e2, e1 + 1);
	a.size = 30;
	a.mode = S_IFREG | 0600;
	CHECK_EQ(ns_inode_put(ix, vol, e2, &a), 0);
	CHECK_EQ(a.birth, e2);
	CHECK_EQ(inode_rows(ix, vol, 10), 2);
	CHECK_EQ(sqlf(ix, "SELECT death FROM inode WHERE vol = %lld AND ino = 10"
		      " AND birth = %lld", (long long)vol, (long long)e1), e2);
	CHECK_EQ(sqlf(ix, "SELECT death FROM inode WHERE vol = %lld AND ino = 10"
		      " AND birth = %lld", (long long)vol, (long long)e2),
		 EPOCH_ALIVE);
	CHECK_EQ(ns_inode_get(ix, vol, e1, 10, &g), 0);
	CHECK_EQ(g.size, 20);
	CHECK_EQ(g.mode, S_IFREG | 0644);
	CHECK_EQ(g.birth, e1);
	CHECK_EQ(ns_inode_get(ix, vol, VIEW_LIVE, 10, &g), 0);
	CHECK_EQ(g.size, 30);
	CHECK_EQ(g.mode, S_IFREG | 0600);
	CHECK_EQ(g.birth, e2);
	CHECK_EQ(ns_inode_get(ix, vol, e2, 10, &g), 0);
	CHECK_EQ(g.size, 30);

	/* again in e2: in place, the old version untouched */
	a.size = 40;
	CHECK_EQ(ns_inode_put(ix, vol, e2, &a), 0);
	CHECK_EQ(inode_rows(ix, vol, 10), 2);
	CHECK_EQ(ns_inode_get(ix, vol, VIEW_LIVE, 10, &g), 0);
	CHECK_EQ(g.size, 40);
	CHECK_EQ(ns_inode_get(ix, vol, e1, 10, &g), 0);
	CHECK_EQ(g.size, 20);

	/* kill in e2: the e2 version goes, the e1 one stays for view e1 */
	CHECK_EQ(ns_inode_kill(ix, vol, e2, 10), 0);
	CHECK_EQ(ns_inode_get(ix, vol, VIEW_LIVE, 10, &g), -ENOENT);
	CHECK_EQ(ns_inode_get(ix, vol, e2, 10, &g), -ENOENT);
	CHECK_EQ(ns_inode_get(ix, vol, e1, 10, &g), 0);
	CHECK_EQ(g.size, 20);
	CHECK_EQ(inode_rows(ix, vol, 10), 1);
	CHECK_EQ(ns_inode_kill(ix, vol, e2, 10), -ENOENT);

	/* kill a version born in an older epoch: ended, kept */
	a = mk_attr(11, S_IFREG | 0644, 5);
	CHECK_EQ(ns_inode_put(ix, vol, e2, &a), 0);
	int64_t e3 = bump_epoch(ix, vol);
	CHECK_EQ(ns_inode_kill(ix, vol, e3, 11), 0);
	CHECK_EQ(inode_rows(ix, vol, 11), 1);
	CHECK_EQ(sqlf(ix, "SELECT death FROM inode WHERE vol = %lld AND ino = 11",
		      (long long)vol), e3);
	CHECK_EQ(ns_inode_get(ix, vol, VIEW_LIVE, 11, &g), -ENOENT);
	CHECK_EQ(ns_inode_get(ix, vol, e2, 11, &g), 0);
	CHECK_EQ(ns_inode_get(ix, vol, e1, 11, &g), -ENOENT);

	/* re-created after the kill in the same epoch: a fresh version */
	a.size = 6;
	CHECK_EQ(ns_inode_put(ix, vol, e3, &a), 0);
	CHECK_EQ(inode_rows(ix, vol, 11), 2);
	CHECK_EQ(ns_inode_get(ix, vol, VIEW_LIVE, 11, &g), 0);
	CHECK_EQ(g.size, 6);
	CHECK_EQ(ns_inode_get(ix, vol, e2, 11, &g), 0);
	CHECK_EQ(g.size, 5);
	vi->epoch = e3;
}

/* ---- directory entries ---- */

struct seen {
	int n;
	char names[16][32];
	uint64_t inos[16];
	uint32_t modes[16];
	int stop_at;	/* return 7 after this many (0: never) */
};

static int list_cb(void *arg, const char *name, uint64_t ino, uint32_t mode)
{
	struct seen *s = arg;

	if (s->n < 16) {
		snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
		s->inos[s->n] = ino;
		s->modes[s->n] = mode;
	}
	s->n++;
	return s->stop_at && s->n == s->stop_at ? 7 : 0;
}

static int64_t dentry_rows(struct index *ix, int64_t vol, uint64_t parent,
			   const char *name)
{
	return sqlf(ix, "SELECT COUNT(*) FROM dentry WHERE vol = %lld AND"
		    " parent = %llu AND name = '%s'", (long long)vol,
		    (unsigned long long)parent, name);
}

static void test_dentries(struct index *ix, struct volume_info *vi)
{
	int64_t vol = vi->id, e = vi->epoch;
	const uint64_t dir = 100;
	struct inode_attr a;
	struct seen s;
	uint64_t ino;

	a = mk_attr(dir, S_IFDIR | 0755, 0);
	CHECK_EQ(ns_inode_put(ix, vol, e, &a), 0);
	a = mk_attr(101, S_IFREG | 0644, 0);
	CHECK_EQ(ns_inode_put(ix, vol, e, &a), 0);
	a = mk_attr(102, S_IFLNK | 0777, 3);
	CHECK_EQ(ns_inode_put(ix, vol, e, &a), 0);
	a = mk_attr(103, S_IFDIR | 0700, 0);
	CHECK_EQ(ns_inode_put(ix, vol, e, &a), 0);

	CHECK_EQ(ns_dir_empty(ix, vol, VIEW_LIVE, dir), 1);
	CHECK_EQ(ns_dentry_add(ix, vol, e, dir, "b", 101), 0);
	CHECK_EQ(ns_dentry_add(ix, vol, e, dir, "a", 102), 0);
	CHECK_EQ(ns_dentry_add(ix, vol, e, dir, "c", 103), 0);
	/* same name, same epoch: refused */
	CHECK_EQ(ns_dentry_add(ix, vol, e, dir, "c", 104), -EEXIST);
	CHECK_EQ(ns_dir_empty(ix, vol, VIEW_LIVE, dir), 0);
	CHECK_EQ(ns_dir_empty(ix, vol, VIEW_LIVE, 999), 1);

	ino = 0;
	CHECK_EQ(ns_dentry_lookup(ix, vol, VIEW_LIVE, dir, "a", &ino), 0);
	CHECK_EQ(ino, 102);
	CHECK_EQ(ns_dentry_lookup(ix, vol, VIEW_LIVE, dir, "b", &ino), 0);
	CHECK_EQ(ino, 101);
	CHECK_EQ(ns_dentry_lookup(ix, vol, VIEW_LIVE, dir, "c", &ino), 0);
	CHECK_EQ(ino, 103);
	CHECK_EQ(ns_dentry_lookup(ix, vol, VIEW_LIVE, dir, "d", &ino), -ENOENT);
	CHECK_EQ(ns_dentry_lookup(ix, vol, VIEW_LIVE, ROOT_INO, "a", &ino), -ENOENT);
	/* not visible before it was born */
	CHECK_EQ(ns_dentry_lookup(ix, vol, e - 1, dir, "a", &ino), -ENOENT);

	memset(&s, 0, sizeof(s));
	CHECK_EQ(ns_dentry_list(ix, vol, VIEW_LIVE, dir, NULL, list_cb, &s), 0);
	CHECK_EQ(s.n, 3);
	CHECK(!strcmp(s.names[0], "a") && !strcmp(s.names[1], "b") &&
	      !strcmp(s.names[2], "c"));
	CHECK_EQ(s.inos[0], 102);
	CHECK_EQ(s.inos[1], 101);
	CHECK_EQ(s.inos[2], 103);
	CHECK_EQ(s.modes[0], S_IFLNK | 0777);
	CHECK_EQ(s.modes[1], S_IFREG | 0644);
	CHECK_EQ(s.modes[2], S_IFDIR | 0700);

	memset(&s, 0, sizeof(s));
	CHECK_EQ(ns_dentry_list(ix, vol, VIEW_LIVE, dir, "a", list_cb, &s), 0);
	CHECK_EQ(s.n, 2);
	CHECK(!strcmp(s.names[0], "b") && !strcmp(s.names[1], "c"));
	memset(&s, 0, sizeof(s));
	CHECK_EQ(ns_dentry_list(ix, vol, VIEW_LIVE, dir, "bb", list_cb, &s), 0);
	CHECK_EQ(s.n, 1);
	CHECK(!strcmp(s.names[0], "c"));
	memset(&s, 0, sizeof(s));
	CHECK_EQ(ns_dentry_list(ix, vol, VIEW_LIVE, dir, "c", list_cb, &s), 0);
	CHECK_EQ(s.n, 0);
	/* the callback stops the listing, its value is returned */
	memset(&s, 0, sizeof(s));
	s.stop_at = 2;
	CHECK_EQ(ns_dentry_list(ix, vol, VIEW_LIVE, dir, NULL, list_cb, &s), 7);
	CHECK_EQ(s.n, 2);

	/* remove in the birth epoch: the row goes */
	CHECK_EQ(ns_dentry_remove(ix, vol, e, dir, "b"), 0);
	CHECK_EQ(dentry_rows(ix, vol, dir, "b"), 0);
	CHECK_EQ(ns_dentry_lookup(ix, vol, VIEW_LIVE, dir, "b", &ino), -ENOENT);
	CHECK_EQ(ns_dentry_remove(ix, vol, e, dir, "b"), -ENOENT);

	/* new epoch: removal ends the row, the old view keeps it */
	int64_t old = e;
	e = bump_epoch(ix, vol);
	CHECK_EQ(ns_dentry_remove(ix, vol, e, dir, "a"), 0);
	CHECK_EQ(dentry_rows(ix, vol, dir, "a"), 1);
	CHECK_EQ(sqlf(ix, "SELECT death FROM dentry WHERE vol = %lld AND"
		      " parent = %llu AND name = 'a'", (long long)vol,
		      (unsigned long long)dir), e);
	CHECK_EQ(ns_dentry_lookup(ix, vol, VIEW_LIVE, dir, "a", &ino), -ENOENT);
	ino = 0;
	CHECK_EQ(ns_dentry_lookup(ix, vol, old, dir, "a", &ino), 0);
	CHECK_EQ(ino, 102);
	memset(&s, 0, sizeof(s));
	CHECK_EQ(ns_dentry_list(ix, vol, old, dir, NULL, list_cb, &s), 0);
	CHECK_EQ(s.n, 2);
	CHECK(!strcmp(s.names[0], "a") && !strcmp(s.names[1], "c"));
	memset(&s, 0, sizeof(s));
	CHECK_EQ(ns_dentry_list(ix, vol, VIEW_LIVE, dir, NULL, list_cb, &s), 0);
	CHECK_EQ(s.n, 1);
	CHECK(!strcmp(s.names[0], "c"));

	/* re-add the name in the new epoch, pointing elsewhere */
	CHECK_EQ(ns_dentry_add(ix, vol, e, dir, "a", 101), 0);
	CHECK_EQ(dentry_rows(ix, vol, dir, "a"), 2);
	CHECK_EQ(ns_dentry_lookup(ix, vol, VIEW_LIVE, dir, "a", &ino), 0);
	CHECK_EQ(ino, 101);
	CHECK_EQ(ns_dentry_lookup(ix, vol, old, dir, "a", &ino), 0);
	CHECK_EQ(ino, 102);
	memset(&s, 0, sizeof(s));
	CHECK_EQ(ns_dentry_list(ix, vol, VIEW_LIVE, dir, NULL, list_cb, &s), 0);
	CHECK_EQ(s.n, 2);
	CHECK(!strcmp(s.names[0], "a") && !strcmp(s.names[1], "c"));
	CHECK_EQ(s.inos[0], 101);
	CHECK_EQ(s.modes[0], S_IFREG | 0644);
	/* and remove it again in the same epoch: only the new row goes */
	CHECK_EQ(ns_dentry_remove(ix, vol, e, dir, "a"), 0);
	CHECK_EQ(dentry_rows(ix, vol, dir, "a"), 1);
	CHECK_EQ(ns_dentry_lookup(ix, vol, old, dir, "a", &ino), 0);
	CHECK_EQ(ino, 102);
	CHECK_EQ(ns_dentry_lookup(ix, vol, VIEW_LIVE, dir, "a", &ino), -ENOENT);

	/* removing the last live entry empties the directory in the live
	 * view only */
	CHECK_EQ(ns_dentry_remove(ix, vol, e, dir, "c"), 0);
	CHECK_EQ(ns_dir_empty(ix, vol, VIEW_LIVE, dir), 1);
	CHECK_EQ(ns_dir_empty(ix, vol, old, dir), 0);
	vi->epoch = e;
}

/* ---- extents and chunk references ---- */

static int64_t extent_rows(struct index *ix, int64_t vol, uint64_t ino)
{
	return sqlf(ix, "SELECT COUNT(*) FROM extent WHERE vol = %lld AND ino = %llu",
		    (long long)vol, (unsigned long long)ino);
}

static void test_extents(struct index *ix, struct volume_info *vi)
{
	int64_t vol = vi->id, e = vi->epoch;
	const uint64_t ino = 30;
	struct inode_attr a;

	a = mk_attr(ino, S_IFREG | 0644, 200);
	CHECK_EQ(ns_inode_put(ix, vol, e, &a), 0);

	int64_t pack = make_pack(ix, 0x11);
	int64_t A = make_chunk(ix, pack, 0xa, 16, 128, 100);
	int64_t B = make_chunk(ix, pack, 0xb, 144, 128, 100);
	int64_t C = make_chunk(ix, pack, 0xc, 272, 228, 200);
	int64_t D = make_chunk(ix, pack, 0xd, 500, 228, 200);
	CHECK(A != B && B != C && C != D);

	/* chunk rows */
	struct chunk_loc c, dup;
	memset(&c, 0, sizeof(c));
	CHECK_EQ(catalog_chunk_get(ix, C, &c), 0);
	CHECK_EQ(c.rowid, C);
	CHECK_EQ(c.pack, pack);
	CHECK_EQ(c.e.off, 272);
	CHECK_EQ(c.e.slen, 228);
	CHECK_EQ(c.e.rlen, 200);
	CHECK_EQ(c.e.flags, 0);
	CHECK_EQ(c.e.id[0], 0xc0);
	CHECK_EQ(c.e.id[1], 0xc);
	struct chunk_loc f;
	memset(&f, 0, sizeof(f));
	CHECK_EQ(catalog_chunk_find(ix, c.e.id, &f), 0);
	CHECK_EQ(f.rowid, C);
	CHECK_EQ(f.e.off, 272);
	dup = c;
	CHECK_EQ(catalog_chunk_insert(ix, &dup), -EEXIST);
	uint8_t unknown[CHUNK_ID_LEN];
	memset(unknown, 0x5a, sizeof(unknown));
	CHECK_EQ(catalog_chunk_find(ix, unknown, &f), -ENOENT);
	CHECK_EQ(catalog_chunk_get(ix, 424242, &f), -ENOENT);

	/* epoch e: every change is in place */
	struct extent x = { .off = 0, .len = 100, .chunk = A, .coff = 0 };
	CHECK_EQ(ns_extent_replace(ix, vol, e, ino, &x), 0);
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 0, 1000, { 0, 100, A, 0 });
	CHECK_EQ(refs_of(ix, A), 1);
	x = (struct extent){ .off = 100, .len = 100, .chunk = B, .coff = 0 };
	CHECK_EQ(ns_extent_replace(ix, vol, e, ino, &x), 0);
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 0, 1000,
		       { 0, 100, A, 0 }, { 100, 100, B, 0 });
	/* straddles both: left of A and right of B remain */
	x = (struct extent){ .off = 50, .len = 100, .chunk = C, .coff = 7 };
	CHECK_EQ(ns_extent_replace(ix, vol, e, ino, &x), 0);
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 0, 1000,
		       { 0, 50, A, 0 }, { 50, 100, C, 7 }, { 150, 50, B, 50 });
	CHECK_EQ(extent_rows(ix, vol, ino), 3);
	CHECK_EQ(refs_of(ix, A), 1);
	CHECK_EQ(refs_of(ix, B), 1);
	CHECK_EQ(refs_of(ix, C), 1);
	CHECK_EQ(bad_refs(ix), 0);

	/* punch a hole inside A's piece: two pieces of A */
	CHECK_EQ(ns_extent_punch(ix, vol, e, ino, 20, 30), 0);
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 0, 1000,
		       { 0, 20, A, 0 }, { 30, 20, A, 30 }, { 50, 100, C, 7 },
		       { 150, 50, B, 50 });
	CHECK_EQ(extent_rows(ix, vol, ino), 4);
	CHECK_EQ(refs_of(ix, A), 2);
	CHECK_EQ(bad_refs(ix), 0);
	CHECK_EQ(ns_extent_bytes(ix, vol, VIEW_LIVE, ino), 190);

	/* overlap queries */
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 25, 60,
		       { 30, 20, A, 30 }, { 50, 100, C, 7 });
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 10, 31,
		       { 0, 20, A, 0 }, { 30, 20, A, 30 });
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 19, 20, { 0, 20, A, 0 });
	NO_EXTENTS(ix, vol, VIEW_LIVE, ino, 20, 30);	/* the hole */
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 149, 151,
		       { 50, 100, C, 7 }, { 150, 50, B, 50 });
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 199, 200, { 150, 50, B, 50 });
	NO_EXTENTS(ix, vol, VIEW_LIVE, ino, 200, 300);
	NO_EXTENTS(ix, vol, VIEW_LIVE, ino + 1, 0, 1000);
	/* punching nothing changes nothing */
	CHECK_EQ(ns_extent_punch(ix, vol, e, ino, 20, 30), 0);
	CHECK_EQ(ns_extent_punch(ix, vol, e, ino, 500, 600), 0);
	CHECK_EQ(extent_rows(ix, vol, ino), 4);
	CHECK_EQ(bad_refs(ix), 0);

	/* new epoch: rows of e are ended, not changed */
	int64_t old = e;
	e = bump_epoch(ix, vol);
	CHECK_EQ(ns_extent_punch(ix, vol, e, ino, 10, 60), 0);
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 0, 1000,
		       { 0, 10, A, 0 }, { 60, 90, C, 17 }, { 150, 50, B, 50 });
	EXPECT_EXTENTS(ix, vol, old, ino, 0, 1000,
		       { 0, 20, A, 0 }, { 30, 20, A, 30 }, { 50, 100, C, 7 },
		       { 150, 50, B, 50 });
	/* 4 old rows (3 ended) + 2 remainders */
	CHECK_EQ(extent_rows(ix, vol, ino), 6);
	CHECK_EQ(sqlf(ix, "SELECT COUNT(*) FROM extent WHERE vol = %lld AND"
		      " ino = %llu AND birth = %lld AND death = %lld",
		      (long long)vol, (unsigned long long)ino, (long long)old,
		      (long long)e), 3);
	CHECK_EQ(refs_of(ix, A), 3);
	CHECK_EQ(refs_of(ix, B), 1);
	CHECK_EQ(refs_of(ix, C), 2);
	CHECK_EQ(bad_refs(ix), 0);
	CHECK_EQ(ns_extent_bytes(ix, vol, VIEW_LIVE, ino), 150);
	CHECK_EQ(ns_extent_bytes(ix, vol, old, ino), 190);

	/* in e, a row born in e is deleted (refs drop), its remainder born */
	CHECK_EQ(ns_extent_punch(ix, vol, e, ino, 0, 5), 0);
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 0, 1000,
		       { 5, 5, A, 5 }, { 60, 90, C, 17 }, { 150, 50, B, 50 });
	CHECK_EQ(refs_of(ix, A), 3);
	CHECK_EQ(extent_rows(ix, vol, ino), 6);
	CHECK_EQ(ns_extent_punch(ix, vol, e, ino, 5, 10), 0);
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 0, 1000,
		       { 60, 90, C, 17 }, { 150, 50, B, 50 });
	CHECK_EQ(refs_of(ix, A), 2);
	CHECK_EQ(extent_rows(ix, vol, ino), 5);
	CHECK_EQ(bad_refs(ix), 0);

	/* replace everything with D: B's old row ended (kept), C's e row
	 * deleted */
	x = (struct extent){ .off = 0, .len = 200, .chunk = D, .coff = 0 };
	CHECK_EQ(ns_extent_replace(ix, vol, e, ino, &x), 0);
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 0, 1000, { 0, 200, D, 0 });
	EXPECT_EXTENTS(ix, vol, old, ino, 0, 1000,
		       { 0, 20, A, 0 }, { 30, 20, A, 30 }, { 50, 100, C, 7 },
		       { 150, 50, B, 50 });
	CHECK_EQ(refs_of(ix, A), 2);
	CHECK_EQ(refs_of(ix, B), 1);
	CHECK_EQ(refs_of(ix, C), 1);
	CHECK_EQ(refs_of(ix, D), 1);
	CHECK_EQ(extent_rows(ix, vol, ino), 5);
	CHECK_EQ(bad_refs(ix), 0);

	/* the same range in the same epoch again: in place */
	x = (struct extent){ .off = 0, .len = 200, .chunk = C, .coff = 0 };
	CHECK_EQ(ns_extent_replace(ix, vol, e, ino, &x), 0);
	EXPECT_EXTENTS(ix, vol, VIEW_LIVE, ino, 0, 1000, { 0, 200, C, 0 });
	CHECK_EQ(refs_of(ix, D), 0);
	CHECK_EQ(refs_of(ix, C), 2);
	CHECK_EQ(extent_rows(ix, vol, ino), 5);
	CHECK_EQ(bad_refs(ix), 0);

	/* killing the inode ends its extents too */
	CHECK_EQ(ns_inode_kill(ix, vol, e, ino), 0);
	NO_EXTENTS(ix, vol, VIEW_LIVE, ino, 0, 1000);
	EXPECT_EXTENTS(ix, vol, old, ino, 0, 1000,
		       { 0, 20, A, 0 }, { 30, 20, A, 30 }, { 50, 100, C, 7 },
		       { 150, 50, B, 50 });
	CHECK_EQ(refs_of(ix, C), 1);
	CHECK_EQ(extent_rows(ix, vol, ino), 4);
	CHECK_EQ(bad_refs(ix), 0);
	CHECK_EQ(ns_extent_bytes(ix, vol, VIEW_LIVE, ino), 0);

	/* a later epoch again: a file written in e, punched in e + 1 */
	const uint64_t ino2 = 31;
	a = mk_attr(ino2, S_IFREG | 0644, 300);
	CHECK_EQ(ns_inode_put(ix, vol, e, &a), 0);
	x = (struct extent){ .off = 0, .len = 300, .chunk = D, .coff = 0 };
	CHECK_EQ(ns_extent_replace(ix, vol, e, ino2, &x), 0);
	CHECK_EQ(refs_of(ix, D), 1);
	int64_t e3 = bump_epoch(ix, vol);
	CHECK_EQ(ns_extent_punch(ix, vol, e3, ino2, 0, 300), 0);
	NO_EXTENTS(ix, vol, VIEW_LIVE, ino2, 0, 300);
	EXPECT_EXTENTS(ix, vol, e, ino2, 0, 300, { 0, 300, D, 0 });
	CHECK_EQ(refs_of(ix, D), 1);	/* row ended, kept */
	CHECK_EQ(extent_rows(ix, vol, ino2), 1);
	CHECK_EQ(bad_refs(ix), 0);
	vi->epoch = e3;
}

/* ---- xattrs ---- */

static int64_t xattr_rows(struct index *ix, int64_t vol, uint64_t ino,
			  const char *name)
{
	return sqlf(ix, "SELECT COUNT(*) FROM xattr WHERE vol = %lld AND"
		    " ino = %llu AND name = '%s'", (long long)vol,
		    (unsigned long long)ino, name);
}

static void test_xattrs(struct index *ix, struct volume_info *vi)
{
	int64_t vol = vi->id, e = vi->epoch;
	const uint64_t ino = 40;
	char buf[64];
	struct inode_attr a;

	a = mk_attr(ino, S_IFREG | 0644, 0);
	CHECK_EQ(ns_inode_put(ix, vol, e, &a), 0);

	CHECK_EQ(ns_xattr_list(ix, vol, VIEW_LIVE, ino, NULL, 0), 0);
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.a", buf,
				 sizeof(buf)), -ENODATA);
	CHECK_EQ(ns_xattr_set(ix, vol, e, ino, "user.a", "hello", 5), 0);
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.a", NULL, 0), 5);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.a", buf,
				 sizeof(buf)), 5);
	CHECK(!memcmp(buf, "hello", 5));
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.a", buf, 5), 5);
	memset(buf, 'z', sizeof(buf));
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.a", buf, 4),
		 -ERANGE);
	CHECK_EQ(buf[0], 'z');
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.none", buf,
				 sizeof(buf)), -ENODATA);
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino + 1, "user.a", buf,
				 sizeof(buf)), -ENODATA);

	/* an empty value, and binary bytes */
	CHECK_EQ(ns_xattr_set(ix, vol, e, ino, "user.empty", "", 0), 0);
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.empty", NULL, 0), 0);
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.empty", buf,
				 sizeof(buf)), 0);
	static const uint8_t bin[4] = { 0, 0xff, 0, 7 };
	CHECK_EQ(ns_xattr_set(ix, vol, e, ino, "trusted.bin", bin, 4), 0);
	memset(buf, 1, sizeof(buf));
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "trusted.bin", buf,
				 sizeof(buf)), 4);
	CHECK(!memcmp(buf, bin, 4));

	/* list: NUL-separated, by name */
	static const char want[] = "trusted.bin\0user.a\0user.empty";
	const int wl = (int)sizeof(want);	/* incl. the final NUL: 30 */
	CHECK_EQ(ns_xattr_list(ix, vol, VIEW_LIVE, ino, NULL, 0), wl);
	memset(buf, 'z', sizeof(buf));
	CHECK_EQ(ns_xattr_list(ix, vol, VIEW_LIVE, ino, buf, sizeof(buf)), wl);
	CHECK(!memcmp(buf, want, wl));
	CHECK_EQ(ns_xattr_list(ix, vol, VIEW_LIVE, ino, buf, wl), wl);
	CHECK_EQ(ns_xattr_list(ix, vol, VIEW_LIVE, ino, buf, wl - 1), -ERANGE);
	CHECK_EQ(ns_xattr_list(ix, vol, VIEW_LIVE, ino, buf, 3), -ERANGE);
	CHECK_EQ(ns_xattr_list(ix, vol, VIEW_LIVE, ino + 1, buf, sizeof(buf)), 0);

	/* same epoch: replaced in place */
	CHECK_EQ(ns_xattr_set(ix, vol, e, ino, "user.a", "world!", 6), 0);
	CHECK_EQ(xattr_rows(ix, vol, ino, "user.a"), 1);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.a", buf,
				 sizeof(buf)), 6);
	CHECK(!memcmp(buf, "world!", 6));

	/* new epoch: a new version, the old one visible in the old view */
	int64_t old = e;
	e = bump_epoch(ix, vol);
	CHECK_EQ(ns_xattr_set(ix, vol, e, ino, "user.a", "v3", 2), 0);
	CHECK_EQ(xattr_rows(ix, vol, ino, "user.a"), 2);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.a", buf,
				 sizeof(buf)), 2);
	CHECK(!memcmp(buf, "v3", 2));
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(ns_xattr_get(ix, vol, old, ino, "user.a", buf,
				 sizeof(buf)), 6);
	CHECK(!memcmp(buf, "world!", 6));

	/* remove in the new epoch: ended, still in the old view */
	CHECK_EQ(ns_xattr_remove(ix, vol, e, ino, "user.empty"), 0);
	CHECK_EQ(xattr_rows(ix, vol, ino, "user.empty"), 1);
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.empty", NULL, 0),
		 -ENODATA);
	CHECK_EQ(ns_xattr_get(ix, vol, old, ino, "user.empty", NULL, 0), 0);
	CHECK_EQ(ns_xattr_remove(ix, vol, e, ino, "user.empty"), -ENODATA);
	CHECK_EQ(ns_xattr_remove(ix, vol, e, ino, "user.never"), -ENODATA);
	static const char want_live[] = "trusted.bin\0user.a";
	memset(buf, 'z', sizeof(buf));
	CHECK_EQ(ns_xattr_list(ix, vol, VIEW_LIVE, ino, buf, sizeof(buf)),
		 (int)sizeof(want_live));
	CHECK(!memcmp(buf, want_live, sizeof(want_live)));
	CHECK_EQ(ns_xattr_list(ix, vol, old, ino, NULL, 0), wl);

	/* remove in the epoch it was born in: deleted */
	CHECK_EQ(ns_xattr_remove(ix, vol, e, ino, "user.a"), 0);
	CHECK_EQ(xattr_rows(ix, vol, ino, "user.a"), 1);
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "user.a", NULL, 0),
		 -ENODATA);
	CHECK_EQ(ns_xattr_get(ix, vol, old, ino, "user.a", NULL, 0), 6);

	/* killing the inode ends its remaining xattrs */
	CHECK_EQ(ns_xattr_set(ix, vol, e, ino, "user.new", "n", 1), 0);
	CHECK_EQ(ns_inode_kill(ix, vol, e, ino), 0);
	CHECK_EQ(ns_xattr_list(ix, vol, VIEW_LIVE, ino, NULL, 0), 0);
	CHECK_EQ(ns_xattr_get(ix, vol, VIEW_LIVE, ino, "trusted.bin", NULL, 0),
		 -ENODATA);
	CHECK_EQ(ns_xattr_get(ix, vol, old, ino, "trusted.bin", NULL, 0), 4);
	CHECK_EQ(xattr_rows(ix, vol, ino, "user.new"), 0);
	CHECK_EQ(xattr_rows(ix, vol, ino, "trusted.bin"), 1);
	vi->epoch = e;
}

/* ---- orphans ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_orphans(struct index *ix, struct volume_info *vi)
{
	int64_t vol = vi->id;
	uint64_t *inos = NULL;
	size_t n = 99;

	CHECK_EQ(ns_orphan_list(ix, vol, &inos, &n), 0);
	CHECK_EQ(n, 0);
	free(inos);
	CHECK_EQ(ns_orphan_add(ix, vol, 52), 0);
	CHECK_EQ(ns_orphan_add(ix, vol, 50), 0);
	CHECK_EQ(ns_orphan_add(ix, vol, 52), 0);	/* again: no-op */
	CHECK_EQ(ns_orphan_add(ix, vol + 1, 60), 0);
	CHECK_EQ(ns_orphan_list(ix, vol, &inos, &n), 0);
	CHECK_EQ(n, 2);
	if (n == 2) {
		qsort(inos, n, sizeof(*inos), cmp_u64);
		CHECK_EQ(inos[0], 50);
		CHECK_EQ(inos[1], 52);
	}
	free(inos);
	CHECK_EQ(ns_orphan_remove(ix, vol, 52), 0);
	CHECK_EQ(ns_orphan_remove(ix, vol, 12345), 0);
	CHECK_EQ(ns_orphan_list(ix, vol, &inos, &n), 0);
	CHECK_EQ(n, 1);
	if (n == 1)
		CHECK_EQ(inos[0], 50);
	free(inos);
	CHECK_EQ(ns_orphan_list(ix, vol + 1, &inos, &n), 0);
	CHECK_EQ(n, 1);
	if (n == 1)
		CHECK_EQ(inos[0], 60);
	free(inos);
	CHECK_EQ(ns_orphan_remove(ix, vol, 50), 0);
	CHECK_EQ(ns_orphan_remove(ix, vol + 1, 60), 0);
	CHECK_EQ(ns_orphan_list(ix, vol, &inos, &n), 0);
	CHECK_EQ(n, 0);
	free(inos);
}

/* ---- packs ---- */

static void test_packs(struct index *ix)
{
	uint8_t name[PACK_NAME_LEN], got[PACK_NAME_LEN];
	int64_t p1, p2, *ids = NULL;
	size_t n = 0;

	p1 = make_pack(ix, 0x21);
	p2 = make_pack(ix, 0x22);
	memset(name, 0x21, sizeof(name));
	CHECK_EQ(catalog_pack_insert(ix, name, &(int64_t){ 0 }), -EEXIST);
	memset(got, 0, sizeof(got));
	CHECK_EQ(catalog_pack_name(ix, p2, got), 0);
	memset(name, 0x22, sizeof(name));
	CHECK(!memcmp(got, name, PACK_NAME_LEN));
	CHECK_EQ(catalog_pack_name(ix, 987654, got), -ENOENT);

	/* both open (as is the one test_extents made) */
	CHECK_EQ(catalog_pack_list(ix, PACK_OPEN, &ids, &n), 0);
	int has1 = 0, has2 = 0;
	for (size_t i = 0; i < n; i++) {
		has1 |= ids[i] == p1;
		has2 |= ids[i] == p2;
		if (i)
			CHECK(ids[i - 1] < ids[i]);
	}
	CHECK(has1 && has2);
	free(ids);
	CHECK_EQ(catalog_pack_finished(ix, p1, 4321), 0);
	CHECK_EQ(catalog_pack_list(ix, PACK_FINISHED, &ids, &n), 0);
	CHECK_EQ(n, 1);
	if (n == 1)
		CHECK_EQ(ids[0], p1);
	free(ids);
	CHECK_EQ(catalog_pack_list(ix, PACK_OPEN, &ids, &n), 0);
	for (size_t i = 0; i < n; i++)
		CHECK(ids[i] != p1);
	free(ids);
	CHECK_EQ(sqlf(ix, "SELECT size FROM pack WHERE id = %lld", (long long)p1),
		 4321);
	CHECK_EQ(sqlf(ix, "SELECT state FROM pack WHERE id = %lld", (long long)p1),
		 PACK_FINISHED);

	/* chunks of a pack, by offset whatever the insertion order */
	make_chunk(ix, p2, 0x31, 5000, 100, 72);
	make_chunk(ix, p2, 0x32, 16, 200, 172);
	make_chunk(ix, p2, 0x33, 216, 300, 272);
	struct chunk_loc *cs = NULL;
	CHECK_EQ(catalog_pack_chunks(ix, p2, &cs, &n), 0);
	CHECK_EQ(n, 3);
	if (n == 3) {
		CHECK_EQ(cs[0].e.off, 16);
		CHECK_EQ(cs[1].e.off, 216);
		CHECK_EQ(cs[2].e.off, 5000);
		CHECK_EQ(cs[0].e.slen, 200);
		CHECK_EQ(cs[0].e.rlen, 172);
		CHECK_EQ(cs[0].e.id[1], 0x32);
		CHECK_EQ(cs[2].pack, p2);
	}
	free(cs);
	CHECK_EQ(catalog_pack_chunks(ix, p1, &cs, &n), 0);
	CHECK_EQ(n, 0);
	free(cs);
}

/* ---- stats (on a fresh index, so every figure is known) ---- */

static void test_stats(void)
{
	TPATH(path, "stats.db");
	struct index *ix = NULL;
	struct volume_info v1, v2;
	struct inode_attr a;
	struct ns_stats s;

	CHECK_EQ(index_open(path, 1, &ix), 0);
	if (!ix)
		return;
	CHECK_EQ(ns_volume_create(ix, "one", 0, 0, 1, &v1), 0);
	CHECK_EQ(ns_volume_create(ix, "two", 0, 0, 1, &v2), 0);

	memset(&s, 0xee, sizeof(s));
	CHECK_EQ(ns_stats(ix, -1, &s), 0);
	CHECK_EQ(s.logical, 0);
	CHECK_EQ(s.files, 0);
	CHECK_EQ(s.chunks, 0);
	CHECK_EQ(s.packs, 0);
	CHECK_EQ(s.pack_bytes, 0);

	a = mk_attr(2, S_IFREG | 0644, 1000);
	CHECK_EQ(ns_inode_put(ix, v1.id, v1.epoch, &a), 0);
	a = mk_attr(3, S_IFREG | 0600, 500);
	CHECK_EQ(ns_inode_put(ix, v1.id, v1.epoch, &a), 0);
	a = mk_attr(4, S_IFDIR | 0755, 4096);	/* not a file */
	CHECK_EQ(ns_inode_put(ix, v1.id, v1.epoch, &a), 0);
	a = mk_attr(5, S_IFLNK | 0777, 7);	/* not a regular file */
	CHECK_EQ(ns_inode_put(ix, v1.id, v1.epoch, &a), 0);
	a = mk_attr(6, S_IFREG | 0644, 99999);	/* dead: not counted */
	CHECK_EQ(ns_inode_put(ix, v1.id, v1.epoch, &a), 0);
	CHECK_EQ(ns_inode_kill(ix, v1.id, v1.epoch, 6), 0);
	/* a file with an old version: only the live size counts */
	a = mk_attr(7, S_IFREG | 0644, 8888);
	CHECK_EQ(ns_inode_put(ix, v1.id, v1.epoch, &a), 0);
	int64_t e2 = bump_epoch(ix, v1.id);
	a.size = 1;
	CHECK_EQ(ns_inode_put(ix, v1.id, e2, &a), 0);
	a = mk_attr(2, S_IFREG | 0644, 77);
	CHECK_EQ(ns_inode_put(ix, v2.id, v2.epoch, &a), 0);

	int64_t p1 = make_pack(ix, 1), p2 = make_pack(ix, 2);
	CHECK_EQ(catalog_pack_finished(ix, p1, 5000), 0);
	int64_t X = make_chunk(ix, p1, 0x41, 16, 128, 100);
	int64_t Y = make_chunk(ix, p1, 0x42, 144, 228, 200);
	make_chunk(ix, p2, 0x43, 16, 50, 40);		/* garbage */
	int64_t W = make_chunk(ix, p2, 0x44, 66, 30, 2);
	struct extent x = { .off = 0, .len = 100, .chunk = X, .coff = 0 };
	CHECK_EQ(ns_extent_replace(ix, v1.id, e2, 2, &x), 0);
	/* X twice: counted once */
	x = (struct extent){ .off = 0, .len = 100, .chunk = X, .coff = 0 };
	CHECK_EQ(ns_extent_replace(ix, v1.id, e2, 3, &x), 0);
	x = (struct extent){ .off = 100, .len = 200, .chunk = Y, .coff = 0 };
	CHECK_EQ(ns_extent_replace(ix, v1.id, e2, 3, &x), 0);
	/* W referenced only by a row ended in a later epoch: still counted */
	x = (struct extent){ .off = 0, .len = 2, .chunk = W, .coff = 0 };
	CHECK_EQ(ns_extent_replace(ix, v2.id, v2.epoch, 2, &x), 0);
	int64_t v2e2 = bump_epoch(ix, v2.id);
	CHECK_EQ(ns_extent_punch(ix, v2.id, v2e2, 2, 0, 2), 0);
	CHECK_EQ(refs_of(ix, X), 2);
	CHECK_EQ(refs_of(ix, W), 1);

	memset(&s, 0xee, sizeof(s));
	CHECK_EQ(ns_stats(ix, v1.id, &s), 0);
	CHECK_EQ(s.logical, 1000 + 500 + 1);
	CHECK_EQ(s.files, 3);
	CHECK_EQ(s.chunks, 3);
	CHECK_EQ(s.chunk_raw, 100 + 200 + 2);
	CHECK_EQ(s.chunk_stored, 128 + 228 + 30);
	CHECK_EQ(s.garbage_chunks, 1);
	CHECK_EQ(s.garbage_stored, 50);
	CHECK_EQ(s.packs, 2);
	/* finished: its size; open: header + its records */
	CHECK_EQ(s.pack_bytes, 5000 + 16 + 50 + 30);
	CHECK_EQ(ns_stats(ix, v2.id, &s), 0);
	CHECK_EQ(s.logical, 77);
	CHECK_EQ(s.files, 1);
	CHECK_EQ(s.chunks, 3);
	CHECK_EQ(ns_stats(ix, -1, &s), 0);
	CHECK_EQ(s.logical, 1000 + 500 + 1 + 77);
	CHECK_EQ(s.files, 4);
	CHECK_EQ(s.packs, 2);
	index_close(ix);
}

/* ---- transactions ---- */

/* One integer from sql, or -1. */
static int64_t one_int(struct index *ix, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;
	if (sqlite3_prepare_v2(index_db(ix), sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Snapshot sets: one name free in every member, one transaction's rows;
 * then a format-1 index (no set_name, note) upgraded at its next open. */
/* Snapshot names (ns_snapshot_name): the day, then the minute, the
 * second, .2 ...; always after the names before, never a pruned one again,
 * one name free in all volumes of a run; old-style names stay. */
static void test_snapshot_names(const char *path)
{
	struct index *ix = NULL;
	CHECK_EQ(index_open(path, 0, &ix), 0);
	if (!ix)
		return;
	char *tz = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
	setenv("TZ", "UTC", 1);
	tzset();
	const int64_t s = 1000000000, d6 = 1796522400LL * s;	/* 2026-12-06 02:00 UTC */
	struct volume_info p, q;
	struct snapshot_info si;
	char name[128];
	CHECK_EQ(index_begin(ix), 0);
	CHECK_EQ(ns_volume_create(ix, "names-p", 0, 0, 1, &p), 0);
	CHECK_EQ(ns_volume_create(ix, "names-q", 0, 0, 1, &q), 0);
	int64_t both[2] = { p.id, q.id };
	/* An old-style store: 2026-12-05 and 2026-12-05.2 */
	CHECK_EQ(ns_snapshot_create(ix, p.id, "2026-12-05", d6 - 86400 * s, 0, &si), 0);
	CHECK_EQ(ns_snapshot_create(ix, p.id, "2026-12-05.2", d6 - 6 * 3600 * s, 0, &si), 0);
	CHECK_EQ(ns_snapshot_create(ix, p.id, NULL, d6 - 3 * 3600 * s, 0, &si), 0);
	CHECK(!strcmp(si.name, "2026-12-05_2300"));	/* after .2 */
	CHECK_EQ(ns_snapshot_create(ix, p.id, NULL, d6, 0, &si), 0);
	CHECK(!strcmp(si.name, "2026-12-06"));
	/* q has none of the day: a run over both still gives one name */
	CHECK_EQ(ns_snapshot_name(ix, both, 2, d6 + 60 * s, name, sizeof(name)), 0);
	CHECK(!strcmp(name, "2026-12-06_0201"));
	CHECK_EQ(ns_snapshot_name(ix, &q.id, 1, d6 + 60 * s, name, sizeof(name)), 0);
	CHECK(!strcmp(name, "2026-12-06"));
	CHECK_EQ(ns_snapshot_create(ix, p.id, NULL, d6 + 60 * s, 0, &si), 0);
	CHECK(!strcmp(si.name, "2026-12-06_0201"));
	CHECK_EQ(ns_snapshot_create(ix, p.id, NULL, d6 + 75 * s, 0, &si), 0);
	CHECK(!strcmp(si.name, "2026-12-06_020115"));
	const char *want[] = { "2026-12-06_020115.2", "2026-12-06_020115.3" };
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(ns_snapshot_create(ix, p.id, NULL, d6 + 75 * s, 0, &si), 0);
		CHECK(!strcmp(si.name, want[i]));
	}
	int64_t last = si.id;
	/* Pruned "2026-12-06" and the .3: neither comes back. */
	CHECK_EQ(ns_snapshot_find(ix, p.id, "2026-12-06", &si), 0);
	CHECK_EQ(ns_snapshot_delete(ix, si.id, NULL), 0);
	CHECK_EQ(ns_snapshot_delete(ix, last, NULL), 0);
	CHECK_EQ(ns_snapshot_create(ix, p.id, NULL, d6 + 80 * s, 0, &si), 0);
	CHECK(!strcmp(si.name, "2026-12-06_020120"));
	/* a name a person gave takes no part */
	CHECK_EQ(ns_snapshot_create(ix, p.id, "before-upgrade", d6 + 90 * s, 1, &si), 0);
	CHECK_EQ(ns_snapshot_create(ix, p.id, NULL, d6 + 120 * s, 0, &si), 0);
	CHECK(!strcmp(si.name, "2026-12-06_0202"));
	/* Names in creation order sort in byte order. */
	struct snapshot_info *all = NULL;
	size_t n = 0;
	CHECK_EQ(ns_snapshot_list(ix, p.id, &all, &n), 0);
	for (size_t i = 1; i < n; i++)
		if (strcmp(all[i].name, "before-upgrade") && strcmp(all[i - 1].name, "before-upgrade"))
			CHECK(strcmp(all[i - 1].name, all[i].name) < 0);
	free(all);
	index_rollback(ix);
	if (tz)
		setenv("TZ", tz, 1);
	else
		unsetenv("TZ");
	free(tz);
	tzset();
	index_close(ix);
}

static void test_sets(const char *path)
{
	struct index *ix = NULL;
	CHECK_EQ(index_open(path, 0, &ix), 0);
	if (!ix)
		return;
	struct volume_info a, b;
	CHECK_EQ(ns_volume_find(ix, "main", &a), 0);
	CHECK_EQ(ns_volume_find(ix, "aux", &b), 0);
	struct snapshot_info alone, sis[2], *m = NULL;
	CHECK_EQ(index_begin(ix), 0);
	CHECK_EQ(ns_snapshot_create(ix, a.id, "2026-01-01", 5, 1, &alone), 0);
	CHECK_EQ(alone.pinned, 1);
	int64_t vols[2] = { a.id, b.id };
	/* A name given is taken as it is, or refused if any member has it. */
	CHECK_EQ(ns_snapshot_create_set(ix, "odoo", vols, 2, "2026-01-01", 42, 0, NULL, sis),
		 -EEXIST);
	CHECK_EQ(ns_snapshot_create_set(ix, "odoo", vols, 2, "2026-01-01.2", 42, 0, "hook failed",
					sis), 0);
	CHECK_EQ(sis[0].pinned + sis[1].pinned, 0);
	CHECK_EQ(ns_snapshot_create_set(ix, "", vols, 2, "x", 1, 0, NULL, sis), -EINVAL);
	CHECK_EQ(index_commit(ix), 0);
	CHECK(!strcmp(sis[0].name, "2026-01-01.2") && !strcmp(sis[1].name, "2026-01-01.2"));
	CHECK_EQ(sis[0].epoch, alone.epoch + 1);
	CHECK(!strcmp(sis[1].set_name, "odoo") && !strcmp(sis[1].note, "hook failed"));
	CHECK_EQ(alone.set_name[0], 0);
	size_t n = 0;
	CHECK_EQ(ns_set_members(ix, "odoo", "2026-01-01.2", &m, &n), 0);
	CHECK_EQ(n, 2);
	CHECK(m && m[0].time == 42 && m[1].time == 42);
	free(m);
	CHECK_EQ(ns_set_members(ix, "odoo", "2026-01-01", &m, &n), -ENOENT);
	CHECK(m == NULL);
	struct set_snap *sl = NULL;
	CHECK_EQ(ns_set_list(ix, "odoo", &sl, &n), 0);
	CHECK(n == 1 && sl && !strcmp(sl[0].name, "2026-01-01.2") && sl[0].time == 42);
	free(sl);
	CHECK_EQ(bad_refs(ix), 0);
	index_close(ix);

	/* Back to format 1, then reopened: upgraded, rows kept. */
	CHECK_EQ(index_open(path, 0, &ix), 0);
	CHECK_EQ(sqlite3_exec(index_db(ix), "ALTER TABLE snapshot DROP COLUMN set_name;"
			      "ALTER TABLE snapshot DROP COLUMN note;"
			      "INSERT OR REPLACE INTO meta VALUES ('format_version', 1)",
			      NULL, NULL, NULL), SQLITE_OK);
	index_close(ix);
	CHECK_EQ(index_open(path, 0, &ix), 0);
	CHECK_EQ(one_int(ix, "SELECT value FROM meta WHERE key = 'format_version'"), 2);
	CHECK_EQ(one_int(ix, "SELECT COUNT(*) FROM snapshot WHERE set_name IS NULL AND note IS NULL"), 3);
	/* A newer format is left alone (the caller refuses it). */
	CHECK_EQ(sqlite3_exec(index_db(ix), "INSERT OR REPLACE INTO meta VALUES ('format_version', 3)",
			      NULL, NULL, NULL), SQLITE_OK);
	index_close(ix);
	CHECK_EQ(index_open(path, 0, &ix), 0);
	CHECK_EQ(one_int(ix, "SELECT value FROM meta WHERE key = 'format_version'"), 3);
	CHECK_EQ(index_meta_set(ix, "format_version", 2), 0);
	index_close(ix);
}

static void test_transactions(const char *path)
{
	struct index *ix = NULL;
	struct volume_info vi;
	struct inode_attr a;
	int64_t val = 0;

	CHECK_EQ(index_open(path, 0, &ix), 0);
	if (!ix)
		return;
	CHECK_EQ(ns_volume_find(ix, "main", &vi), 0);
	CHECK_EQ(index_in_tx(ix), 0);
	CHECK_EQ(index_commit(ix), 0);		/* nothing open: no-op */
	index_rollback(ix);			/* likewise */
	CHECK_EQ(index_in_tx(ix), 0);

	CHECK_EQ(index_begin(ix), 0);
	CHECK_EQ(index_in_tx(ix), 1);
	CHECK_EQ(index_begin(ix), 0);		/* already open: joins it */
	CHECK_EQ(index_in_tx(ix), 1);
	CHECK_EQ(index_meta_set(ix, "tx", 1), 0);
	a = mk_attr(777, S_IFREG | 0644, 1);
	CHECK_EQ(ns_inode_put(ix, vi.id, vi.epoch, &a), 0);
	CHECK_EQ(ns_inode_get(ix, vi.id, VIEW_LIVE, 777, &a), 0);
	index_rollback(ix);
	CHECK_EQ(index_in_tx(ix), 0);
	CHECK_EQ(index_meta_get(ix, "tx", &val), -ENOENT);
	CHECK_EQ(ns_inode_get(ix, vi.id, VIEW_LIVE, 777, &a), -ENOENT);

	CHECK_EQ(index_begin(ix), 0);
	CHECK_EQ(index_meta_set(ix, "tx", 2), 0);
	a = mk_attr(778, S_IFREG | 0644, 1);
	CHECK_EQ(ns_inode_put(ix, vi.id, vi.epoch, &a), 0);
	CHECK_EQ(index_commit(ix), 0);
	CHECK_EQ(index_in_tx(ix), 0);
	CHECK_EQ(index_meta_get(ix, "tx", &val), 0);
	CHECK_EQ(val, 2);

	/* a savepoint undoes its part only, or keeps it */
	CHECK_EQ(index_begin(ix), 0);
	CHECK_EQ(index_meta_set(ix, "tx", 5), 0);
	CHECK_EQ(index_savepoint(ix), 0);
	CHECK_EQ(index_meta_set(ix, "sp", 1), 0);
	index_savepoint_end(ix, 1);
	CHECK_EQ(index_in_tx(ix), 1);
	CHECK_EQ(index_meta_get(ix, "sp", &val), -ENOENT);
	CHECK_EQ(index_savepoint(ix), 0);
	CHECK_EQ(index_meta_set(ix, "sp", 2), 0);
	index_savepoint_end(ix, 0);
	CHECK_EQ(index_meta_set(ix, "tx", 2), 0);
	CHECK_EQ(index_commit(ix), 0);
	CHECK_EQ(index_meta_get(ix, "sp", &val), 0);
	CHECK_EQ(val, 2);

	/* a second connection sees only committed data */
	struct index *ix2 = NULL;
	CHECK_EQ(index_begin(ix), 0);
	CHECK_EQ(index_meta_set(ix, "tx", 3), 0);
	CHECK_EQ(index_open(path, 0, &ix2), 0);
	if (ix2) {
		val = 0;
		CHECK_EQ(index_meta_get(ix2, "tx", &val), 0);
		CHECK_EQ(val, 2);
		/* a writer is active: a second writer cannot start (after
		 * the busy timeout, so do not try) */
	}
	CHECK_EQ(index_commit(ix), 0);
	if (ix2) {
		CHECK_EQ(index_meta_get(ix2, "tx", &val), 0);
		CHECK_EQ(val, 3);
		index_close(ix2);
	}

	/* an open transaction is rolled back by close */
	CHECK_EQ(index_begin(ix), 0);
	CHECK_EQ(index_meta_set(ix, "tx", 4), 0);
	index_close(ix);
	ix = NULL;
	CHECK_EQ(index_open(path, 0, &ix), 0);
	if (!ix)
		return;
	CHECK_EQ(index_meta_get(ix, "tx", &val), 0);
	CHECK_EQ(val, 3);
	CHECK_EQ(ns_inode_get(ix, vi.id, VIEW_LIVE, 778, &a), 0);
	CHECK_EQ(ns_inode_get(ix, vi.id, VIEW_LIVE, 777, &a), -ENOENT);
	index_close(ix);
}

static void remove_db(const char *path)
{
	char p[300];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

int main(void)
{
	struct index *ix = NULL;
	struct volume_info vi;

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	log_set_level(LOG_ERR);
	TPATH(path, "index.db");
	TPATH(stats_path, "stats.db");

	/* no such index, and not asked to create one */
	CHECK_EQ(index_open(path, 0, &ix), -ENOENT);
	CHECK_EQ(index_open(path, 1, &ix), 0);
	if (!ix)
		return 1;
	struct stat sb;
	CHECK_EQ(stat(path, &sb), 0);
	CHECK_EQ(sb.st_mode & 0777, 0600);

	test_volumes(ix, &vi);
	test_inodes(ix, &vi);
	test_dentries(ix, &vi);
	test_extents(ix, &vi);
	test_xattrs(ix, &vi);
	test_orphans(ix, &vi);
	test_packs(ix);
	CHECK_EQ(index_in_tx(ix), 0);
	index_close(ix);

	/* everything above was autocommitted: still there after reopening */
	ix = NULL;
	CHECK_EQ(index_open(path, 0, &ix), 0);
	if (ix) {
		struct volume_info f;
		struct inode_attr a;
		CHECK_EQ(ns_volume_find(ix, "main", &f), 0);
		CHECK_EQ(f.epoch, vi.epoch);
		CHECK_EQ(ns_inode_get(ix, f.id, VIEW_LIVE, 11, &a), 0);
		CHECK_EQ(a.size, 6);
		CHECK_EQ(bad_refs(ix), 0);
		index_close(ix);
	}

	test_sets(path);
	test_snapshot_names(path);
	test_transactions(path);
	test_stats();

	remove_db(path);
	remove_db(stats_path);
	rmdir(tmpdir);
	printf("test_index: %s\n", check_failures ? "FAILED" : "ok");
	return CHECK_DONE();
}
