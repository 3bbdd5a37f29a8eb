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
#include <time.h>

#include "ns_epoch.h"
#include "../chunker/buf.h"
#include "../chunker/index_sql.h"

/* The volume's current epoch. */
static int volume_epoch(struct index *ix, int64_t vol, int64_t *epoch)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT epoch FROM volume WHERE id = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, vol);
	int rc = sqlite3_step(st);
	*epoch = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
	return 0;
}

/* Whether any of the n volumes has a snapshot called name: 1, 0 or -errno. */
static int name_taken(struct index *ix, const int64_t *vols, size_t n, const char *name)
{
	struct snapshot_info si;
	for (size_t v = 0; v < n; v++) {
		int err = ns_snapshot_find(ix, vols[v], name, &si);
		if (err != -ENOENT)
			return err ? err : 1;
	}
	return 0;
}

/* The greatest (byte order) of the names the n volumes gave snapshots
 * taken at or before time; "" if none.  Names a person chose (--name,
 * not starting with a digit) take no part: they follow no order. */
static int name_floor(struct index *ix, const int64_t *vols, size_t n, int64_t time,
		      char *floor, size_t size)
{
	*floor = 0;
	sqlite3_stmt *st = index_stmt(ix, "SELECT MAX(name) FROM snapshot WHERE vol = ?1"
				      " AND time <= ?2 AND name GLOB '[0-9]*'");
	if (!st)
		return -EIO;
	for (size_t v = 0; v < n; v++) {
		sqlite3_bind_int64(st, 1, vols[v]);
		sqlite3_bind_int64(st, 2, time);
		int rc = sqlite3_step(st);
		if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT &&
		    strcmp(index_text(st, 0), floor) > 0)
			snprintf(floor, size, "%s", index_text(st, 0));
		sqlite3_reset(st);
		if (rc != SQLITE_ROW)
			return index_errno(rc);
	}
	return 0;
}

int ns_snapshot_name(struct index *ix, const int64_t *vols, size_t n, int64_t time,
		     char *name, size_t size)
{
	/* YYYY-MM-DD, then YYYY-MM-DD_HHMM, YYYY-MM-DD_HHMMSS, then that
	 * with .2, .3, ...: the first that sorts after every name of a
	 * snapshot taken before (so names sort as the snapshots were taken
	 * and none comes back after a prune, which keeps the newest) and
	 * that no volume has. */
	char floor[sizeof(((struct snapshot_info *)0)->name)], day[16], min[24], sec[32];
	int err = name_floor(ix, vols, n, time, floor, sizeof(floor));
	if (err)
		return err;
	time_t secs = time / 1000000000;
	struct tm tm;
	if (!localtime_r(&secs, &tm))
		return -EOVERFLOW;
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	strftime(min, sizeof(min), "%Y-%m-%d_%H%M", &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%d_%H%M%S", &tm);
	for (int i = 0; i <= 10000; i++) {
		if (i < 3)
			snprintf(name, size, "%s", i == 0 ? day : i == 1 ? min : sec);
		else
			snprintf(name, size, "%s.%d", sec, i - 1);
		if (strcmp(name, floor) <= 0)
			continue;
		int taken = name_taken(ix, vols, n, name);
		if (taken <= 0)
			return taken;
	}
	return -EEXIST;
}

/* name (NULL: ns_snapshot_name's) into buf, free in the n volumes. */
static int pick_name(struct index *ix, const int64_t *vols, size_t n, const char *name,
		     int64_t time, char *buf, size_t size)
{
	if (!name)
		return ns_snapshot_name(ix, vols, n, time, buf, size);
	if (strlen(name) >= size)
		return -ENAMETOOLONG;
	snprintf(buf, size, "%s", name);
	int taken = name_taken(ix, vols, n, name);
	return taken > 0 ? -EEXIST : taken;
}

/* Record vol's current epoch as snapshot name (free) of set (NULL: none)
 * and start a new epoch. */
static int snapshot_insert(struct index *ix, int64_t vol, const char *name,
			   int64_t time, int pinned, const char *set, const char *note,
			   struct snapshot_info *si)
{
	int64_t epoch;
	int err = volume_epoch(ix, vol, &epoch);
	if (err)
		return err;
	/* Ids are never reused, also after the newest snapshot is deleted:
	 * a mount's kernel caches a snapshot's files under inode numbers
	 * made from its id, so a reused id would show the old files (I9). */
	int64_t id = 0, top = 0;
	err = index_meta_get(ix, "snapshot_id_max", &id);
	if (err && err != -ENOENT)
		return err;
	sqlite3_stmt *st = index_stmt(ix, "SELECT COALESCE(MAX(id), 0) FROM snapshot");
	if (!st)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		top = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return index_errno(rc);
	id = (top > id ? top : id) + 1;
	err = index_meta_set(ix, "snapshot_id_max", id);
	if (err)
		return err;
	st = index_stmt(ix, "INSERT INTO snapshot(id, vol, name, epoch, time, pinned, set_name, note)"
			    " VALUES (?5, ?1, ?2, ?3, ?4, ?8, ?6, ?7)");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, vol);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, epoch);
	sqlite3_bind_int64(st, 4, time);
	sqlite3_bind_int64(st, 5, id);
	sqlite3_bind_int64(st, 8, !!pinned);
	if (set)
		sqlite3_bind_text(st, 6, set, -1, SQLITE_STATIC);
	if (note && *note)
		sqlite3_bind_text(st, 7, note, -1, SQLITE_STATIC);
	err = index_exec(ix, st);
	if (!err)
		err = INDEX_EXEC(ix, "UPDATE volume SET epoch = epoch + 1 WHERE id = ?1", vol);
	if (!err)
		err = ns_snapshot_find(ix, vol, name, si);
	return err;
}

int ns_snapshot_create(struct index *ix, int64_t vol, const char *name,
		       int64_t time, int pinned, struct snapshot_info *si)
{
	char buf[sizeof(si->name)];
	int err = pick_name(ix, &vol, 1, name, time, buf, sizeof(buf));
	return err ? err : snapshot_insert(ix, vol, buf, time, pinned, NULL, NULL, si);
}

int ns_snapshot_note(struct index *ix, int64_t id, const char *note)
{
	sqlite3_stmt *st = index_stmt(ix, "UPDATE snapshot SET note = ?2 WHERE id = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, id);
	if (note && *note)
		sqlite3_bind_text(st, 2, note, -1, SQLITE_STATIC);
	return index_exec(ix, st);
}

int ns_snapshot_create_set(struct index *ix, const char *set,
			   const int64_t *vols, size_t n, const char *name,
			   int64_t time, int pinned, const char *note,
			   struct snapshot_info *sis)
{
	char buf[sizeof(sis->name)];
	if (!n || !*set || strlen(set) >= sizeof(sis->set_name))
		return -EINVAL;
	int err = pick_name(ix, vols, n, name, time, buf, sizeof(buf));
	for (size_t i = 0; i < n && !err; i++)
		err = snapshot_insert(ix, vols[i], buf, time, pinned, set, note, &sis[i]);
	return err;
}

int ns_set_members(struct index *ix, const char *set, const char *name,
		   struct snapshot_info **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT id FROM snapshot WHERE set_name = ?1 AND name = ?2 ORDER BY vol");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, set, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	int64_t *ids;
	size_t k;
	int err = index_collect_ints(st, &ids, &k);
	if (err)
		return err;
	*out = calloc(k ? k : 1, sizeof(**out));
	if (!*out)
		err = -ENOMEM;
	for (size_t i = 0; i < k && !err; i++)
		err = ns_snapshot_get(ix, ids[i], &(*out)[i]);
	free(ids);
	if (err) {
		free(*out);
		*out = NULL;
		return err;
	}
	if (!k) {
		free(*out);
		*out = NULL;
		return -ENOENT;
	}
	*n = k;
	return 0;
}

int ns_set_list(struct index *ix, const char *set, struct set_snap **out, size_t *n)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT name, MIN(time) FROM snapshot WHERE set_name = ?1"
		" GROUP BY name ORDER BY MIN(time), name");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, set, -1, SQLITE_STATIC);
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct set_snap *p = buf_grow(*out, &cap, *n + 1, sizeof(**out));
		if (!p) {
			sqlite3_reset(st);
			return -ENOMEM;
		}
		*out = p;
		snprintf(p[*n].name, sizeof(p[*n].name), "%s", index_text(st, 0));
		p[(*n)++].time = sqlite3_column_int64(st, 1);
	}
	return rc == SQLITE_DONE ? 0 : index_errno(rc);
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
