/*
 * catalog.c - the rows of chunks, packs, pack_trash and pack_verified
 * (catalog.h), and the questions the GC and verify ask of them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "catalog.h"
#include "index_sql.h"

/* ---- chunks ---- */

/* Fill c from a chunk row; -EUCLEAN if its ID is not 32 bytes (a damaged
 * index must give an error, never a crash). */
static int chunk_row(sqlite3_stmt *st, struct chunk_loc *c)
{
	c->rowid = sqlite3_column_int64(st, 0);
	if (sqlite3_column_bytes(st, 1) != CHUNK_ID_LEN)
		return -EUCLEAN;
	memcpy(c->e.id, sqlite3_column_blob(st, 1), CHUNK_ID_LEN);
	c->pack = sqlite3_column_int64(st, 2);
	c->e.off = sqlite3_column_int64(st, 3);
	c->e.slen = sqlite3_column_int64(st, 4);
	c->e.rlen = sqlite3_column_int64(st, 5);
	c->e.flags = sqlite3_column_int64(st, 6);
	c->refs = sqlite3_column_int64(st, 7);
	return 0;
}

int catalog_chunk_find(struct index *ix, const uint8_t id[CHUNK_ID_LEN],
		     struct chunk_loc *c)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT id, hash, pack, off, slen, rlen, flags, refs FROM chunk WHERE hash = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_blob(st, 1, id, CHUNK_ID_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
	int err = chunk_row(st, c);
	sqlite3_reset(st);
	return err;
}

int catalog_chunk_get(struct index *ix, int64_t rowid, struct chunk_loc *c)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT id, hash, pack, off, slen, rlen, flags, refs FROM chunk WHERE id = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, rowid);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
	int err = chunk_row(st, c);
	sqlite3_reset(st);
	return err;
}

int catalog_chunk_insert(struct index *ix, struct chunk_loc *c)
{
	sqlite3_stmt *st = index_stmt(ix,
		"INSERT INTO chunk(hash, pack, off, slen, rlen, flags, refs)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)");
	if (!st)
		return -EIO;
	sqlite3_bind_blob(st, 1, c->e.id, CHUNK_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, c->pack);
	sqlite3_bind_int64(st, 3, (int64_t)c->e.off);
	sqlite3_bind_int64(st, 4, c->e.slen);
	sqlite3_bind_int64(st, 5, c->e.rlen);
	sqlite3_bind_int64(st, 6, c->e.flags);
	int err = index_exec(ix, st);
	if (!err) {
		c->rowid = sqlite3_last_insert_rowid(index_db(ix));
		c->refs = 0;
	}
	return err;
}

int catalog_chunk_totals(struct index *ix, uint64_t *count, uint64_t *rlen)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT COUNT(*), COALESCE(SUM(rlen), 0) FROM chunk");
	if (!st)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*count = sqlite3_column_int64(st, 0);
		*rlen = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -EIO : index_errno(rc);
}

int catalog_chunk_each(struct index *ix, int64_t after, int64_t upto,
		       catalog_chunk_fn fn, void *arg)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT id, rlen, pack FROM chunk WHERE id > ?1 AND id <= ?2 ORDER BY id");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, upto);
	int rc = SQLITE_DONE, ret = 0;
	while (!ret && (rc = sqlite3_step(st)) == SQLITE_ROW)
		ret = fn(arg, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
			 sqlite3_column_int64(st, 2));
	if (!ret && rc != SQLITE_DONE)
		ret = index_errno(rc);
	sqlite3_reset(st);
	return ret;
}

/* ---- packs ---- */

int catalog_pack_insert(struct index *ix, const uint8_t name[PACK_NAME_LEN],
		      int64_t *rowid)
{
	sqlite3_stmt *st = index_stmt(ix, "INSERT INTO pack(name, state, size) VALUES (?1, 0, 0)");
	if (!st)
		return -EIO;
	sqlite3_bind_blob(st, 1, name, PACK_NAME_LEN, SQLITE_STATIC);
	int err = index_exec(ix, st);
	if (!err)
		*rowid = sqlite3_last_insert_rowid(index_db(ix));
	return err;
}

int catalog_pack_finished(struct index *ix, int64_t rowid, uint64_t size)
{
	return INDEX_EXEC(ix, "UPDATE pack SET state = 1, size = ?2 WHERE id = ?1",
		    rowid, (int64_t)size);
}

int catalog_pack_name(struct index *ix, int64_t rowid,
		    uint8_t name[PACK_NAME_LEN])
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT name FROM pack WHERE id = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, rowid);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
	int bad = sqlite3_column_bytes(st, 0) != PACK_NAME_LEN;
	if (!bad)
		memcpy(name, sqlite3_column_blob(st, 0), PACK_NAME_LEN);
	sqlite3_reset(st);
	return bad ? -EUCLEAN : 0;
}


int catalog_pack_list(struct index *ix, int state, int64_t **ids, size_t *n)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT id FROM pack WHERE state = ?1 ORDER BY id");
	if (!st)
		return -EIO;
	sqlite3_bind_int(st, 1, state);
	return index_collect_ints(st, ids, n);
}

int catalog_pack_chunks(struct index *ix, int64_t pack, struct chunk_loc **cs,
		      size_t *n)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT id, hash, pack, off, slen, rlen, flags, refs FROM chunk"
		" WHERE pack = ?1 ORDER BY off");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, pack);
	size_t cap = 0;
	*cs = NULL;
	*n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct chunk_loc *p = buf_grow(*cs, &cap, *n + 1, sizeof(**cs));
		if (!p)
			return -ENOMEM;
		*cs = p;
		if (chunk_row(st, &(*cs)[(*n)++])) {
			sqlite3_reset(st);
			return -EUCLEAN;
		}
	}
	return rc == SQLITE_DONE ? 0 : index_errno(rc);
}

/* ---- what the GC asks (gc.c keeps the policy) ---- */

/* Step st to the end, one element of size bytes per row filled by row()
 * into a malloc'd array (freed again on error). */
static int collect_rows(sqlite3_stmt *st, size_t size,
			void (*row)(sqlite3_stmt *st, void *elem), void **out,
			size_t *n)
{
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char *p = buf_grow(*out, &cap, *n + 1, size);
		if (!p) {
			rc = SQLITE_NOMEM;
			break;
		}
		*out = p;
		row(st, p + (*n)++ * size);
	}
	/* Reset: a read left open would pin the snapshot a writer waits on. */
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return 0;
	free(*out);
	*out = NULL;
	*n = 0;
	return index_errno(rc);
}

static void garbage_row(sqlite3_stmt *st, void *elem)
{
	struct catalog_garbage *g = elem;
	g->pack = sqlite3_column_int64(st, 0);
	g->dead = sqlite3_column_int64(st, 1);
	g->chunks = sqlite3_column_int64(st, 2);
	g->size = sqlite3_column_int64(st, 3);
}

int catalog_garbage_packs(struct index *ix, struct catalog_garbage **gs,
			  size_t *n)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT g.pack, g.dead, g.cnt, p.size FROM (SELECT pack, SUM(slen) AS dead,"
		" COUNT(*) AS cnt FROM chunk WHERE refs = 0 GROUP BY pack) g"
		" JOIN pack p ON p.id = g.pack WHERE p.state = 1");
	if (!st)
		return -EIO;
	void *out;
	int err = collect_rows(st, sizeof(**gs), garbage_row, &out, n);
	*gs = out;
	return err;
}

static void small_row(sqlite3_stmt *st, void *elem)
{
	struct catalog_small *p = elem;
	p->pack = sqlite3_column_int64(st, 0);
	p->size = sqlite3_column_int64(st, 1);
	p->live = sqlite3_column_int64(st, 2);
}

int catalog_small_packs(struct index *ix, int64_t below, struct catalog_small **ps,
			size_t *n)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT p.id, p.size, (SELECT COALESCE(SUM(slen), 0) FROM chunk"
		" WHERE pack = p.id AND refs > 0) FROM pack p"
		" WHERE p.state = 1 AND p.size < ?1 ORDER BY p.id");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, below);
	void *out;
	int err = collect_rows(st, sizeof(**ps), small_row, &out, n);
	*ps = out;
	return err;
}

int catalog_pack_live(struct index *ix, int64_t pack, int64_t *live)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT COUNT(*) FROM chunk WHERE pack = ?1 AND refs > 0");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, pack);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*live = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -EIO : index_errno(rc);
}

int catalog_pack_delete(struct index *ix, int64_t pack)
{
	int err = INDEX_EXEC(ix, "DELETE FROM pack_verified WHERE name ="
			     " (SELECT name FROM pack WHERE id = ?1)", pack);
	if (!err)
		err = INDEX_EXEC(ix, "DELETE FROM chunk WHERE pack = ?1 AND refs = 0", pack);
	if (!err)
		err = INDEX_EXEC(ix, "DELETE FROM pack WHERE id = ?1", pack);
	return err;
}

int catalog_trash_pending(struct index *ix, uint8_t (**names)[PACK_NAME_LEN],
			  size_t *n)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT name FROM pack_trash WHERE local_done = 0");
	if (!st)
		return -EIO;
	size_t cap = 0;
	*names = NULL;
	*n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_bytes(st, 0) != PACK_NAME_LEN)
			continue;	/* not a name a file can have */
		uint8_t (*p)[PACK_NAME_LEN] = buf_grow(*names, &cap, *n + 1, PACK_NAME_LEN);
		if (!p) {
			rc = SQLITE_NOMEM;
			break;
		}
		*names = p;
		memcpy(p[(*n)++], sqlite3_column_blob(st, 0), PACK_NAME_LEN);
	}
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return 0;
	free(*names);
	*names = NULL;
	*n = 0;
	return index_errno(rc);
}

int catalog_trash_local_done(struct index *ix, const uint8_t name[PACK_NAME_LEN])
{
	sqlite3_stmt *st = index_stmt(ix, "UPDATE pack_trash SET local_done = 1 WHERE name = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_blob(st, 1, name, PACK_NAME_LEN, SQLITE_STATIC);
	return index_exec(ix, st);
}

int catalog_trash_remove(struct index *ix, const uint8_t name[PACK_NAME_LEN])
{
	sqlite3_stmt *st = index_stmt(ix, "DELETE FROM pack_trash WHERE name = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_blob(st, 1, name, PACK_NAME_LEN, SQLITE_STATIC);
	return index_exec(ix, st);
}

int catalog_chunk_move(struct index *ix, int64_t rowid, int64_t pack,
		     uint64_t off)
{
	return INDEX_EXEC(ix, "UPDATE chunk SET pack = ?2, off = ?3 WHERE id = ?1",
		    rowid, pack, (int64_t)off);
}

int catalog_trash_add(struct index *ix, const uint8_t name[PACK_NAME_LEN],
		      int64_t time)
{
	sqlite3_stmt *st = index_stmt(ix,
		"INSERT OR REPLACE INTO pack_trash(name, time, local_done) VALUES (?1, ?2, 0)");
	if (!st)
		return -EIO;
	sqlite3_bind_blob(st, 1, name, PACK_NAME_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, time);
	return index_exec(ix, st);
}

int catalog_pack_size(struct index *ix, int64_t rowid, uint64_t *size)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT size FROM pack WHERE id = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, rowid);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*size = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
}

int catalog_pack_exists(struct index *ix, const uint8_t name[PACK_NAME_LEN])
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT 1 FROM pack WHERE name = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_blob(st, 1, name, PACK_NAME_LEN, SQLITE_STATIC);
	return index_exists(st);
}

int catalog_chunks_packless(struct index *ix,
			    void (*cb)(void *arg, int64_t chunk, int64_t pack,
				       uint64_t off),
			    void *arg)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT c.id, c.pack, c.off FROM chunk c LEFT JOIN pack p ON p.id = c.pack"
		" WHERE p.id IS NULL");
	if (!st)
		return -EIO;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		cb(arg, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
		   sqlite3_column_int64(st, 2));
	return rc == SQLITE_DONE ? 0 : index_errno(rc);
}

int catalog_pack_open_used(struct index *ix)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT 1 FROM chunk c JOIN pack p"
				      " ON p.id = c.pack WHERE p.state = 0 LIMIT 1");
	return st ? index_exists(st) : -EIO;
}

/* ---- pack_verified ---- */

static void count_row(sqlite3_stmt *st, void *elem)
{
	struct catalog_pack_count *c = elem;
	c->pack = sqlite3_column_int64(st, 0);
	c->chunks = sqlite3_column_int64(st, 1);
	c->rlen = sqlite3_column_int64(st, 2);
}

int catalog_pack_counts(struct index *ix, struct catalog_pack_count **ps,
			size_t *n)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT p.id, COUNT(c.id), COALESCE(SUM(c.rlen), 0) FROM pack p"
		" LEFT JOIN chunk c ON c.pack = p.id WHERE p.state = 1"
		" GROUP BY p.id ORDER BY p.id");
	if (!st)
		return -EIO;
	void *out;
	int err = collect_rows(st, sizeof(**ps), count_row, &out, n);
	*ps = out;
	return err;
}

int catalog_packs_due(struct index *ix, int64_t before, int64_t **ids,
		      size_t *n)
{
	/* NULL (never) sorts first. */
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT p.id FROM pack p LEFT JOIN pack_verified v ON v.name = p.name"
		" WHERE p.state = 1 AND (v.time IS NULL OR v.time < ?1)"
		" ORDER BY v.time, p.id");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, before);
	return index_collect_ints(st, ids, n);
}

int catalog_pack_verified(struct index *ix, int64_t pack, int64_t time)
{
	return INDEX_EXEC(ix, "INSERT OR REPLACE INTO pack_verified(name, time)"
			  " SELECT name, ?2 FROM pack WHERE id = ?1", pack, time);
}

int catalog_verified_prune(struct index *ix)
{
	sqlite3_stmt *st = index_stmt(ix, "DELETE FROM pack_verified WHERE name NOT IN"
				      " (SELECT name FROM pack)");
	return st ? index_exec(ix, st) : -EIO;
}

int catalog_verified_oldest(struct index *ix, uint64_t *never,
			    int64_t *oldest)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT COALESCE(SUM(v.time IS NULL), 0), COALESCE(MIN(v.time), 0)"
		" FROM pack p LEFT JOIN pack_verified v ON v.name = p.name"
		" WHERE p.state = 1");
	if (!st)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*never = sqlite3_column_int64(st, 0);
		*oldest = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -EIO : index_errno(rc);
}
