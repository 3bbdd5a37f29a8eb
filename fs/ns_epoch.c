/*
 * ns_epoch.c - the namespace across epochs (ns_epoch.h): taking a
 * snapshot (which starts a new epoch), pinning and deleting one with the
 * rows only it kept, and what lies between two epochs.  Part of the
 * namespace, the one owner of its tables' SQL (namespace.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ns_epoch.h"
#include "../chunker/index_sql.h"

int ns_snapshot_create(struct index *ix, int64_t vol, const char *base,
			  int64_t time, struct snapshot_info *si)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT epoch FROM volume WHERE id = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, vol);
	int rc = sqlite3_step(st);
	int64_t epoch = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
	/* The first free name of base, base.2, base.3, ... */
	char name[sizeof(si->name)];
	for (int i = 1;; i++) {
		if (i == 1)
			snprintf(name, sizeof(name), "%s", base);
		else
			snprintf(name, sizeof(name), "%s.%d", base, i);
		int err = ns_snapshot_find(ix, vol, name, si);
		if (err == -ENOENT)
			break;
		if (err)
			return err;
		if (i > 10000)
			return -EEXIST;
	}
	/* Ids are never reused, also after the newest snapshot is deleted:
	 * a mount's kernel caches a snapshot's files under inode numbers
	 * made from its id, so a reused id would show the old files (I9). */
	int64_t id = 0, top = 0;
	int err = index_meta_get(ix, "snapshot_id_max", &id);
	if (err && err != -ENOENT)
		return err;
	st = index_stmt(ix, "SELECT COALESCE(MAX(id), 0) FROM snapshot");
	if (!st)
		return -EIO;
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		top = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return index_errno(rc);
	id = (top > id ? top : id) + 1;
	err = index_meta_set(ix, "snapshot_id_max", id);
	if (err)
		return err;
	st = index_stmt(ix, "INSERT INTO snapshot(id, vol, name, epoch, time, pinned) VALUES (?5, ?1, ?2, ?3, ?4, 0)");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, vol);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, epoch);
	sqlite3_bind_int64(st, 4, time);
	sqlite3_bind_int64(st, 5, id);
	err = index_exec(ix, st);
	if (!err)
		err = INDEX_EXEC(ix, "UPDATE volume SET epoch = epoch + 1 WHERE id = ?1", vol);
	if (!err)
		err = ns_snapshot_find(ix, vol, name, si);
	return err;
}

int ns_snapshot_pin(struct index *ix, int64_t id, int pinned)
{
	return INDEX_EXEC(ix, "UPDATE snapshot SET pinned = ?2 WHERE id = ?1", id,
		    (int64_t)pinned);
}

/*
 * Delete the rows of one table that snapshot epoch e alone kept: visible
 * at e (birth <= e < death), not at the previous kept snapshot p (birth >
 * p), not at the next one or the live tree (death <= n).  For extents the
 * chunk references drop too.  Scans only rows that died in (e, n].
 */
static int drop_rows(struct index *ix, const char *table, int64_t vol,
		     int64_t p, int64_t e, int64_t n, int64_t *dropped)
{
	char sql[512];
	int err = 0;
	if (!strcmp(table, "extent")) {
		err = INDEX_EXEC(ix,
			"UPDATE chunk SET refs = refs - (SELECT COUNT(*) FROM extent x"
			" WHERE x.vol = ?1 AND x.death > ?3 AND x.death <= ?4"
			" AND x.birth > ?2 AND x.birth <= ?3 AND x.chunk = chunk.id)"
			" WHERE id IN (SELECT chunk FROM extent x WHERE x.vol = ?1"
			" AND x.death > ?3 AND x.death <= ?4 AND x.birth > ?2 AND x.birth <= ?3)",
			vol, p, e, n);
		if (err)
			return err;
	}
	snprintf(sql, sizeof(sql),
		 "DELETE FROM %s WHERE vol = ?1 AND death > ?3 AND death <= ?4"
		 " AND birth > ?2 AND birth <= ?3", table);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(index_db(ix), sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	int64_t args[] = { vol, p, e, n };
	index_bind_i64s(st, 4, args);
	err = index_exec(ix, st);
	if (!err && dropped)
		*dropped += sqlite3_changes(index_db(ix));
	sqlite3_finalize(st);
	return err;
}

int ns_snapshot_delete(struct index *ix, int64_t id, int64_t *rows)
{
	struct snapshot_info si, *all = NULL;
	size_t n = 0;
	int err = ns_snapshot_get(ix, id, &si);
	if (!err)
		err = ns_snapshot_list(ix, si.vol, &all, &n);
	if (err) {
		free(all);
		return err;
	}
	int64_t prev = 0, next = EPOCH_ALIVE - 1;
	for (size_t i = 0; i < n; i++) {
		if (all[i].id == id)
			continue;
		if (all[i].epoch < si.epoch && all[i].epoch > prev)
			prev = all[i].epoch;
		if (all[i].epoch > si.epoch && all[i].epoch < next)
			next = all[i].epoch;
	}
	free(all);
	if (rows)
		*rows = 0;
	err = INDEX_EXEC(ix, "DELETE FROM snapshot WHERE id = ?1", id);
	static const char *tables[] = { "extent", "xattr", "dentry", "inode" };
	for (size_t i = 0; i < 4 && !err; i++)
		err = drop_rows(ix, tables[i], si.vol, prev, si.epoch, next, rows);
	return err;
}

int ns_exclusive_bytes(struct index *ix, int64_t vol, int64_t prev,
			  int64_t e, int64_t next, uint64_t *bytes)
{
	/* Chunks all of whose extent rows only snapshot e sees. */
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT COALESCE(SUM(c.slen), 0) FROM chunk c WHERE c.id IN"
		" (SELECT chunk FROM extent x WHERE x.vol = ?1 AND x.death > ?3"
		"  AND x.death <= ?4 AND x.birth > ?2 AND x.birth <= ?3)"
		" AND c.refs = (SELECT COUNT(*) FROM extent x WHERE x.chunk = c.id"
		"  AND x.vol = ?1 AND x.death > ?3 AND x.death <= ?4"
		"  AND x.birth > ?2 AND x.birth <= ?3)");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, prev, e, next };
	index_bind_i64s(st, 4, args);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*bytes = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : index_errno(rc);
}

int ns_changed_inodes(struct index *ix, int64_t vol, int64_t from,
			 int64_t to, uint64_t **inos, size_t *n)
{
	/* Rows born or ended in (from, to]: what changed between views. */
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT ino FROM inode WHERE vol = ?1 AND ((birth > ?2 AND birth <= ?3)"
		"  OR (death > ?2 AND death <= ?3))"
		" UNION SELECT ino FROM extent WHERE vol = ?1 AND ((birth > ?2 AND birth <= ?3)"
		"  OR (death > ?2 AND death <= ?3))"
		" UNION SELECT ino FROM xattr WHERE vol = ?1 AND ((birth > ?2 AND birth <= ?3)"
		"  OR (death > ?2 AND death <= ?3))"
		" UNION SELECT ino FROM dentry WHERE vol = ?1 AND ((birth > ?2 AND birth <= ?3)"
		"  OR (death > ?2 AND death <= ?3))");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, from, to };
	index_bind_i64s(st, 3, args);
	return index_collect_ints(st, (int64_t **)inos, n);
}
