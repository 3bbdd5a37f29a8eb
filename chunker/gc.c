/*
 * gc.c - pack garbage collection (see gc.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>

#include "buf.h"
#include "gc.h"
#include "util.h"

/* Run sql with int64 args; for statements that return no rows. */
static int exec_i64(sqlite3 *db, const char *sql, int n, const int64_t *a)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	for (int i = 0; i < n; i++)
		sqlite3_bind_int64(st, i + 1, a[i]);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : (rc == SQLITE_BUSY ? -EBUSY : -EIO);
}

/* Unlink the files of packs in pack_trash not yet removed locally: the
 * index forgot them in a committed transaction (I3, docs/DESIGN.md). */
static int empty_trash(struct store *st)
{
	sqlite3 *db = index_db(st->ix);
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(db, "SELECT name FROM pack_trash WHERE local_done = 0",
			       -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	size_t n = 0, cap = 0;
	uint8_t (*names)[PACK_NAME_LEN] = NULL;
	while (sqlite3_step(q) == SQLITE_ROW) {
		if (sqlite3_column_bytes(q, 0) != PACK_NAME_LEN)
			continue;
		void *p = buf_grow(names, &cap, n + 1, PACK_NAME_LEN);
		if (!p)
			break;
		names = p;
		memcpy(names[n++], sqlite3_column_blob(q, 0), PACK_NAME_LEN);
	}
	sqlite3_finalize(q);
	int err = 0;
	for (size_t i = 0; i < n && !err; i++) {
		char *path = store_pack_path(st, names[i]);
		if (!path) {
			err = -ENOMEM;
			break;
		}
		if (unlink(path) && errno != ENOENT)
			err = -errno;
		free(path);
		if (err)
			break;
		sqlite3_stmt *u;
		if (sqlite3_prepare_v2(db, "UPDATE pack_trash SET local_done = 1 WHERE name = ?1",
				       -1, &u, NULL) != SQLITE_OK) {
			err = -EIO;
			break;
		}
		sqlite3_bind_blob(u, 1, names[i], PACK_NAME_LEN, SQLITE_STATIC);
		if (sqlite3_step(u) != SQLITE_DONE)
			err = -EIO;
		sqlite3_finalize(u);
	}
	free(names);
	return err;
}

/* Forget pack id in the index and queue its file for removal. */
static int trash_pack(struct store *st, int64_t pack)
{
	uint8_t name[PACK_NAME_LEN];
	int err = catalog_pack_name(st->ix, pack, name);
	if (err)
		return err;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	err = catalog_trash_add(st->ix, name, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
	if (err)
		return err;
	sqlite3 *db = index_db(st->ix);
	int64_t a[] = { pack };
	err = exec_i64(db, "DELETE FROM chunk WHERE pack = ?1 AND refs = 0", 1, a);
	if (!err)
		err = exec_i64(db, "DELETE FROM pack WHERE id = ?1", 1, a);
	return err;
}

/* Bytes a pack file takes on disk (its padding is a hole), or 0. */
static uint64_t pack_disk_bytes(struct store *st, const uint8_t name[PACK_NAME_LEN])
{
	char *path = store_pack_path(st, name);
	struct stat sb;
	uint64_t b = path && !stat(path, &sb) ? (uint64_t)sb.st_blocks * 512 : 0;
	free(path);
	return b;
}

/* 0 if the file of pack name is absent (a lazy store need not hold it);
 * 1 otherwise, also when unsure (the rewrite then reports the error). */
static int pack_is_local(struct store *st, const uint8_t name[PACK_NAME_LEN])
{
	char *path = store_pack_path(st, name);
	if (!path)
		return 1;
	struct stat sb;
	int absent = stat(path, &sb) && errno == ENOENT;
	free(path);
	return !absent;
}

/* Copy the live chunks of pack into a new pack (sealed bytes as they are:
 * a record does not depend on the pack it is in), then trash the old one.
 * Inside the caller's transaction. */
static int rewrite_pack(struct store *st, int64_t pack, uint64_t *newbytes)
{
	uint8_t newname[PACK_NAME_LEN];
	int have_new = 0;
	struct chunk_loc *cs = NULL;
	size_t n = 0;
	uint8_t name[PACK_NAME_LEN];
	int err = catalog_pack_name(st->ix, pack, name);
	if (!err)
		err = catalog_pack_chunks(st->ix, pack, &cs, &n);
	char *path = err ? NULL : store_pack_path(st, name);
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (!err && fd < 0)
		err = path ? -errno : -ENOMEM;
	uint8_t *buf = NULL;
	for (size_t i = 0; i < n && !err; i++) {
		if (cs[i].refs == 0)
			continue;
		if (!st->pw) {
			err = store_new_gc_pack(st, newname);
			if (err)
				break;
			have_new = 1;
		}
		uint8_t *nb = realloc(buf, cs[i].e.slen);
		if (!nb) {
			err = -ENOMEM;
			break;
		}
		buf = nb;
		err = pread_full(fd, buf, cs[i].e.slen, cs[i].e.off);
		if (err)
			break;
		struct sealed_chunk sc = { .e = cs[i].e, .buf = buf };
		err = store_chunk_move(st, &sc, cs[i].rowid);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	free(cs);
	free(path);
	/* The moved records must be durable before the index names them. */
	if (!err)
		err = store_finish_current_pack(st);
	crash_point("gc-rewrite");
	if (!err && have_new)
		*newbytes = pack_disk_bytes(st, newname);
	if (!err && have_new) {
		sqlite3_stmt *del;
		if (sqlite3_prepare_v2(index_db(st->ix), "DELETE FROM pack_trash WHERE name = ?1",
				       -1, &del, NULL) != SQLITE_OK)
			return -EIO;
		sqlite3_bind_blob(del, 1, newname, PACK_NAME_LEN, SQLITE_STATIC);
		if (sqlite3_step(del) != SQLITE_DONE)
			err = -EIO;
		sqlite3_finalize(del);
	}
	if (!err)
		err = trash_pack(st, pack);
	return err;
}

int store_gc(struct store *st, struct gc_result *res)
{
	memset(res, 0, sizeof(*res));
	char lock[4096];
	snprintf(lock, sizeof(lock), "%s/locks", st->dir);
	mkdir(lock, 0700);
	snprintf(lock, sizeof(lock), "%s/locks/gc", st->dir);
	int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0)
		return -errno;
	if (flock(lfd, LOCK_EX | LOCK_NB)) {
		close(lfd);
		return -EBUSY;
	}
	int err = empty_trash(st);
	int64_t lazy = 0;
	index_meta_get(st->ix, "lazy", &lazy);
	sqlite3 *db = index_db(st->ix);
	/* Finished packs holding garbage, with their live and dead bytes. */
	sqlite3_stmt *q = NULL;
	int64_t *packs = NULL;
	size_t np = 0, cap = 0;
	if (!err && sqlite3_prepare_v2(db,
		"SELECT g.pack, g.dead, g.cnt, p.size FROM (SELECT pack, SUM(slen) AS dead,"
		" COUNT(*) AS cnt FROM chunk WHERE refs = 0 GROUP BY pack) g"
		" JOIN pack p ON p.id = g.pack WHERE p.state = 1", -1, &q, NULL) != SQLITE_OK)
		err = -EIO;
	int64_t *dead = NULL, *cnt = NULL, *size = NULL;
	while (!err && sqlite3_step(q) == SQLITE_ROW) {
		int64_t d = sqlite3_column_int64(q, 1);
		int64_t sz = sqlite3_column_int64(q, 3);
		if (d * 100 < sz * GC_REWRITE_PERCENT)
			continue;	/* not worth a rewrite yet: reclaimable */
		if (np == cap) {
			cap = cap ? cap * 2 : 16;
			void *p1 = realloc(packs, cap * sizeof(*packs));
			void *p2 = p1 ? realloc(dead, cap * sizeof(*dead)) : NULL;
			void *p3 = p2 ? realloc(cnt, cap * sizeof(*cnt)) : NULL;
			void *p4 = p3 ? realloc(size, cap * sizeof(*size)) : NULL;
			if (p1) packs = p1;
			if (p2) dead = p2;
			if (p3) cnt = p3;
			if (p4) size = p4;
			if (!p4) {
				err = -ENOMEM;
				break;
			}
		}
		packs[np] = sqlite3_column_int64(q, 0);
		dead[np] = d;
		cnt[np] = sqlite3_column_int64(q, 2);
		size[np++] = sz;
	}
	sqlite3_finalize(q);
	/* One transaction per pack, so a running daemon waits briefly.  Two
	 * passes: packs with nothing live go first and their files are
	 * removed before any rewrite, so on a full disk the space they give
	 * back is there for the rewrites (which write before they free). */
	for (size_t k = 0; k < 2 * np && !err; k++) {
		size_t i = k % np;
		if (k == np)
			err = empty_trash(st);
		if (err)
			break;
		sqlite3_stmt *c;
		int64_t live = -1;
		err = index_begin(st->ix);
		if (!err && sqlite3_prepare_v2(db,
			"SELECT COUNT(*) FROM chunk WHERE pack = ?1 AND refs > 0",
			-1, &c, NULL) == SQLITE_OK) {
			sqlite3_bind_int64(c, 1, packs[i]);
			if (sqlite3_step(c) == SQLITE_ROW)
				live = sqlite3_column_int64(c, 0);
			sqlite3_finalize(c);
		}
		if (!err && live < 0)
			err = -EIO;
		if (!err && (live == 0) != (k < np)) {
			index_rollback(st->ix);
			continue;	/* not in this pass */
		}
		uint8_t oldname[PACK_NAME_LEN];
		uint64_t before = 0, after = 0;
		int named = !err && !catalog_pack_name(st->ix, packs[i], oldname);
		if (named)
			before = pack_disk_bytes(st, oldname);
		/* A rewrite reads the pack; one not here is never rewritten
		 * from nothing.  Dropping a wholly dead one needs no file. */
		if (named && live > 0 && !pack_is_local(st, oldname)) {
			index_rollback(st->ix);
			if (lazy) {
				res->packs_not_local++;
				res->bytes_not_local += dead[i];
				continue;
			}
			hex_encode(oldname, PACK_NAME_LEN, res->failed);
			err = -ENOENT;
			break;
		}
		if (!err)
			err = live == 0 ? trash_pack(st, packs[i])
					: rewrite_pack(st, packs[i], &after);
		if (!err)
			err = store_commit(st);
		if (err) {
			index_rollback(st->ix);
			break;
		}
		res->chunks_freed += cnt[i];
		/* What the disk gives back: the old file less the new one. */
		res->bytes_freed += before > after ? before - after : 0;
		(void)size;
		if (live == 0)
			res->packs_deleted++;
		else
			res->packs_rewritten++;
	}
	crash_point("gc-trash");
	if (!err)
		err = empty_trash(st);
	free(dead);
	free(cnt);
	free(size);
	free(packs);
	close(lfd);
	return err;
}
