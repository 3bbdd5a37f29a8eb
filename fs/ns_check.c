/*
 * ns_check.c - the namespace's whole-index scans (ns_check.h).  Several
 * read the catalog's chunk rows too (joins, a count), never writing them:
 * which files a chunk holds up and whether chunk.refs matches the extents
 * are the namespace's questions, so their SQL stays with its owner.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "../chunker/buf.h"
#include "ns_check.h"
#include "../chunker/index_sql.h"
#include "../chunker/util.h"

#define ALIVE "9223372036854775807"

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

/* The tree's checks: every row a query gives is one problem, its three
 * columns filling the line's three numbers. */
static const struct {
	const char *sql, *line;
} tree_checks[] = {
	{ "SELECT c.id, c.refs, (SELECT COUNT(*) FROM extent e WHERE e.chunk = c.id)"
	  " FROM chunk c WHERE c.refs != (SELECT COUNT(*) FROM extent e WHERE e.chunk = c.id)",
	  "chunk %lld: reference count %lld but %lld extents name it" },
	{ "SELECT e.vol, e.ino, e.off FROM extent e LEFT JOIN chunk c ON c.id = e.chunk"
	  " WHERE c.id IS NULL OR e.coff + e.len > c.rlen OR e.len <= 0",
	  "volume %lld inode %lld: extent at %lld names a missing chunk or lies outside it" },
	{ "SELECT d.vol, d.parent, d.ino FROM dentry d WHERE d.death = " ALIVE
	  " AND NOT EXISTS (SELECT 1 FROM inode i WHERE i.vol = d.vol AND i.ino = d.ino"
	  " AND i.death = " ALIVE ")",
	  "volume %lld directory %lld: entry names inode %lld, which does not exist" },
	{ "SELECT i.vol, i.ino, i.nlink FROM inode i WHERE i.death = " ALIVE
	  " AND (i.mode & 61440) != 16384 AND i.nlink != (SELECT COUNT(*) FROM dentry d"
	  " WHERE d.vol = i.vol AND d.ino = i.ino AND d.death = " ALIVE ")"
	  " AND NOT EXISTS (SELECT 1 FROM orphan o WHERE o.vol = i.vol AND o.ino = i.ino)",
	  "volume %lld inode %lld: link count %lld does not match its directory entries" },
};

int ns_check_rows(struct index *ix, ns_line_cb cb, void *arg)
{
	for (size_t i = 0; i < sizeof(tree_checks) / sizeof(tree_checks[0]); i++) {
		sqlite3_stmt *st = scan(ix, tree_checks[i].sql);
		if (!st) {
			tlog(LOG_ERR, "check: %s", sqlite3_errmsg(index_db(ix)));
			return -EIO;
		}
		int rc;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			char line[1024];
			snprintf(line, sizeof(line), tree_checks[i].line,
				 (long long)sqlite3_column_int64(st, 0),
				 (long long)sqlite3_column_int64(st, 1),
				 (long long)sqlite3_column_int64(st, 2));
			cb(arg, line);
		}
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return -EIO;
	}
	return 0;
}

static int count(struct index *ix, const char *sql, uint64_t *out)
{
	sqlite3_stmt *st = scan(ix, sql);
	if (!st)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -EIO;
}

int ns_check_counts(struct index *ix, uint64_t *extents, uint64_t *inodes)
{
	int err = count(ix, "SELECT COUNT(*) FROM extent", extents);
	if (!err)
		err = count(ix, "SELECT COUNT(*) FROM inode WHERE death = " ALIVE, inodes);
	return err;
}
