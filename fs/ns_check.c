/*
 * ns_check.c - the namespace's whole-index scans (ns_check.h).  They join
 * extent rows with chunk rows, read-only: which rows a damaged chunk
 * holds up is the namespace's question, asked of the catalog's rows.
 */
#include <errno.h>
#include <stdlib.h>

#include "../chunker/buf.h"
#include "ns_check.h"
#include "../chunker/index_sql.h"

/* A scan runs once per check or damage report: prepared and finalized
 * here, it takes no slot of the statement cache the hot paths use. */
static sqlite3_stmt *scan(struct index *ix, const char *sql)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(index_db(ix), sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	return st;
}

int ns_extent_uses(struct index *ix, int64_t pack_id, int64_t chunk_id,
		   struct ns_extent_use **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *q = scan(ix, chunk_id
		? "SELECT vol, ino, birth, death FROM extent WHERE chunk = ?2"
		: "SELECT e.vol, e.ino, e.birth, e.death FROM extent e"
		  " JOIN chunk c ON c.id = e.chunk WHERE c.pack = ?1");
	if (!q)
		return -EIO;
	sqlite3_bind_int64(q, 1, pack_id);
	sqlite3_bind_int64(q, 2, chunk_id);
	size_t cap = 0;
	int rc, err = 0;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct ns_extent_use *p = buf_grow(*out, &cap, *n + 1, sizeof(**out));
		if (!p) {
			err = -ENOMEM;
			break;
		}
		*out = p;
		p[*n].vol = sqlite3_column_int64(q, 0);
		p[*n].ino = sqlite3_column_int64(q, 1);
		p[*n].birth = sqlite3_column_int64(q, 2);
		p[(*n)++].death = sqlite3_column_int64(q, 3);
	}
	sqlite3_finalize(q);
	if (!err && rc != SQLITE_DONE)
		err = -EIO;
	if (err) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return err;
}

int ns_unsafe_names(struct index *ix, ns_name_cb cb, void *arg)
{
	sqlite3_stmt *q = scan(ix, "SELECT vol, parent, birth, name FROM dentry WHERE"
		" name = '' OR name = '.' OR name = '..' OR instr(name, '/') > 0"
		" OR instr(CAST(name AS BLOB), x'00') > 0 OR length(CAST(name AS BLOB)) > 255");
	if (!q)
		return -EIO;
	int rc = SQLITE_DONE, r = 0;
	while (!r && (rc = sqlite3_step(q)) == SQLITE_ROW)
		r = cb(arg, sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1),
		       sqlite3_column_int64(q, 2), index_text(q, 3));
	sqlite3_finalize(q);
	return r ? r : rc == SQLITE_DONE ? 0 : -EIO;
}
