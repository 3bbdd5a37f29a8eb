/*
 * catalog.c - the rows of chunks and packs (catalog.h).
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

/* --- for remote/ --- */

int catalog_pack_open_used(struct index *ix)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT 1 FROM chunk c JOIN pack p"
				      " ON p.id = c.pack WHERE p.state = 0 LIMIT 1");
	return st ? index_exists(st) : -EIO;
}
