/*
 * namespace.c - the rows of the file trees: volumes, inodes, directory
 * entries, extents, xattrs, orphans and snapshot rows, versioned by epoch
 * (namespace.h), the chunk references their extents hold, and the sizes
 * and figures read from them.  Taking and deleting snapshots is in
 * ns_epoch.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../chunker/buf.h"
#include "namespace.h"
#include "../chunker/index_sql.h"
#include "../chunker/util.h"

/* ---- volumes ---- */

static void volume_row(sqlite3_stmt *st, struct volume_info *vi)
{
	vi->id = sqlite3_column_int64(st, 0);
	snprintf(vi->name, sizeof(vi->name), "%s",
		 index_text(st, 1));
	vi->epoch = sqlite3_column_int64(st, 2);
	vi->next_ino = sqlite3_column_int64(st, 3);
}

int ns_volume_find(struct index *ix, const char *name,
		      struct volume_info *vi)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT id, name, epoch, next_ino FROM volume WHERE name = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		volume_row(st, vi);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
}

int ns_volume_list(struct index *ix, struct volume_info **vis, size_t *n)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT id, name, epoch, next_ino FROM volume ORDER BY name");
	if (!st)
		return -EIO;
	*vis = NULL;
	*n = 0;
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct volume_info *p = buf_grow(*vis, &cap, *n + 1, sizeof(**vis));
		if (!p)
			return -ENOMEM;
		*vis = p;
		volume_row(st, &(*vis)[(*n)++]);
	}
	return rc == SQLITE_DONE ? 0 : index_errno(rc);
}

int ns_volume_create(struct index *ix, const char *name, uint32_t uid,
			uint32_t gid, int64_t now, struct volume_info *vi)
{
	sqlite3_stmt *st = index_stmt(ix, "INSERT INTO volume(name, epoch, next_ino, created) VALUES (?1, 1, 2, ?2)");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	int err = index_exec(ix, st);
	if (err)
		return err;
	err = ns_volume_find(ix, name, vi);
	if (err)
		return err;
	struct inode_attr root = {
		.ino = ROOT_INO, .mode = S_IFDIR | 0755, .uid = uid,
		.gid = gid, .nlink = 2, .atime = now, .mtime = now,
		.ctime = now,
	};
	return ns_inode_put(ix, vi->id, vi->epoch, &root);
}

int ns_volume_set_next_ino(struct index *ix, int64_t vol, uint64_t next)
{
	return INDEX_EXEC(ix, "UPDATE volume SET next_ino = ?2 WHERE id = ?1", vol,
		    (int64_t)next);
}

/* ---- inodes ---- */

int ns_inode_get(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		    struct inode_attr *a)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT mode, uid, gid, nlink, size, rdev, atime, mtime, ctime, birth"
		" FROM inode WHERE vol = ?1 AND ino = ?2 AND +birth <= ?3 AND +death > ?3"
		" ORDER BY birth DESC LIMIT 1");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)ino, view };
	index_bind_i64s(st, 3, args);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
	a->ino = ino;
	a->mode = sqlite3_column_int64(st, 0);
	a->uid = sqlite3_column_int64(st, 1);
	a->gid = sqlite3_column_int64(st, 2);
	a->nlink = sqlite3_column_int64(st, 3);
	a->size = sqlite3_column_int64(st, 4);
	a->rdev = sqlite3_column_int64(st, 5);
	a->atime = sqlite3_column_int64(st, 6);
	a->mtime = sqlite3_column_int64(st, 7);
	a->ctime = sqlite3_column_int64(st, 8);
	a->birth = sqlite3_column_int64(st, 9);
	sqlite3_reset(st);
	return 0;
}

/*
 * End the live version of a row born in epoch birth: a row born in the
 * current epoch is no snapshot's business and is deleted; an older one is
 * kept for the snapshots that see it.  Returns 1 if deleted, 0 if ended.
 */
static int end_row(struct index *ix, const char *del_sql, const char *upd_sql,
		   int64_t vol, int64_t key, int64_t birth, int64_t cur)
{
	int err;
	if (birth == cur) {
		err = INDEX_EXEC(ix, del_sql, vol, key, birth);
		return err ? err : 1;
	}
	return INDEX_EXEC(ix, upd_sql, vol, key, birth, cur);
}

int ns_inode_put(struct index *ix, int64_t vol, int64_t cur,
		    struct inode_attr *a)
{
	struct inode_attr old;
	int err = ns_inode_get(ix, vol, VIEW_LIVE, a->ino, &old);
	if (err && err != -ENOENT)
		return err;
	if (!err && old.birth == cur) {
		a->birth = cur;
		return INDEX_EXEC(ix,
			"UPDATE inode SET mode=?4, uid=?5, gid=?6, nlink=?7, size=?8,"
			" rdev=?9, atime=?10, mtime=?11, ctime=?12"
			" WHERE vol=?1 AND ino=?2 AND birth=?3",
			vol, (int64_t)a->ino, cur, a->mode, a->uid, a->gid,
			a->nlink, (int64_t)a->size, (int64_t)a->rdev, a->atime,
			a->mtime, a->ctime);
	}
	if (!err) {
		err = INDEX_EXEC(ix, "UPDATE inode SET death=?4 WHERE vol=?1 AND ino=?2 AND birth=?3",
			   vol, (int64_t)a->ino, old.birth, cur);
		if (err)
			return err;
	}
	a->birth = cur;
	return INDEX_EXEC(ix,
		"INSERT INTO inode(vol, ino, birth, death, mode, uid, gid, nlink, size,"
		" rdev, atime, mtime, ctime) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
		vol, (int64_t)a->ino, cur, EPOCH_ALIVE, a->mode, a->uid, a->gid,
		a->nlink, (int64_t)a->size, (int64_t)a->rdev, a->atime, a->mtime,
		a->ctime);
}

/* Drop one reference from a chunk (an extent row naming it was deleted):
 * refs counts extent rows (I2, docs/DESIGN.md). */
static int chunk_unref(struct index *ix, int64_t chunk)
{
	return INDEX_EXEC(ix, "UPDATE chunk SET refs = refs - 1 WHERE id = ?1", chunk);
}

static int chunk_ref(struct index *ix, int64_t chunk)
{
	return INDEX_EXEC(ix, "UPDATE chunk SET refs = refs + 1 WHERE id = ?1", chunk);
}

int ns_inode_kill(struct index *ix, int64_t vol, int64_t cur, uint64_t ino)
{
	struct inode_attr old;
	int err = ns_inode_get(ix, vol, VIEW_LIVE, ino, &old);
	if (err)
		return err;
	err = ns_extent_punch(ix, vol, cur, ino, 0, UINT64_MAX >> 1);
	if (err)
		return err;
	/* xattrs: delete those born now, end the others. */
	err = INDEX_EXEC(ix, "DELETE FROM xattr WHERE vol=?1 AND ino=?2 AND birth=?3 AND death=?4",
		   vol, (int64_t)ino, cur, EPOCH_ALIVE);
	if (!err)
		err = INDEX_EXEC(ix, "UPDATE xattr SET death=?3 WHERE vol=?1 AND ino=?2 AND death=?4",
			   vol, (int64_t)ino, cur, EPOCH_ALIVE);
	if (err)
		return err;
	err = end_row(ix, "DELETE FROM inode WHERE vol=?1 AND ino=?2 AND birth=?3",
		      "UPDATE inode SET death=?4 WHERE vol=?1 AND ino=?2 AND birth=?3",
		      vol, (int64_t)ino, old.birth, cur);
	return err < 0 ? err : 0;
}

/* ---- directory entries ---- */

/* Find the visible entry (parent, name) in view; its birth in *birth. */
static int dentry_find(struct index *ix, int64_t vol, int64_t view,
		       uint64_t parent, const char *name, uint64_t *ino,
		       int64_t *birth)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT ino, birth FROM dentry WHERE vol=?1 AND parent=?2 AND name=?4"
		" AND +birth <= ?3 AND +death > ?3 ORDER BY birth DESC LIMIT 1");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)parent, view };
	index_bind_i64s(st, 3, args);
	sqlite3_bind_text(st, 4, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
	*ino = sqlite3_column_int64(st, 0);
	if (birth)
		*birth = sqlite3_column_int64(st, 1);
	sqlite3_reset(st);
	return 0;
}

int ns_dentry_lookup(struct index *ix, int64_t vol, int64_t view,
			uint64_t parent, const char *name, uint64_t *ino)
{
	return dentry_find(ix, vol, view, parent, name, ino, NULL);
}

int ns_dentry_add(struct index *ix, int64_t vol, int64_t cur,
		     uint64_t parent, const char *name, uint64_t ino)
{
	sqlite3_stmt *st = index_stmt(ix,
		"INSERT INTO dentry(vol, parent, name, birth, death, ino)"
		" VALUES (?1, ?2, ?6, ?3, ?4, ?5)");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)parent, cur, EPOCH_ALIVE, (int64_t)ino };
	index_bind_i64s(st, 5, args);
	sqlite3_bind_text(st, 6, name, -1, SQLITE_STATIC);
	return index_exec(ix, st);
}

int ns_dentry_remove(struct index *ix, int64_t vol, int64_t cur,
			uint64_t parent, const char *name)
{
	uint64_t ino;
	int64_t birth;
	int err = dentry_find(ix, vol, VIEW_LIVE, parent, name, &ino, &birth);
	if (err)
		return err;
	sqlite3_stmt *st;
	if (birth == cur)
		st = index_stmt(ix, "DELETE FROM dentry WHERE vol=?1 AND parent=?2 AND birth=?3 AND name=?5");
	else
		st = index_stmt(ix, "UPDATE dentry SET death=?4 WHERE vol=?1 AND parent=?2 AND birth=?3 AND name=?5");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)parent, birth, cur };
	index_bind_i64s(st, 4, args);
	sqlite3_bind_text(st, 5, name, -1, SQLITE_STATIC);
	return index_exec(ix, st);
}

int ns_dentry_list(struct index *ix, int64_t vol, int64_t view,
		      uint64_t parent, const char *after, dentry_cb cb,
		      void *arg)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT d.name, d.ino, (SELECT mode FROM inode i WHERE i.vol = d.vol"
		" AND i.ino = d.ino AND +i.birth <= ?3 AND +i.death > ?3"
		" ORDER BY i.birth DESC LIMIT 1)"
		" FROM dentry d WHERE d.vol=?1 AND d.parent=?2 AND d.name > ?4"
		" AND +d.birth <= ?3 AND +d.death > ?3 ORDER BY d.name");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)parent, view };
	index_bind_i64s(st, 3, args);
	sqlite3_bind_text(st, 4, after ? after : "", -1, SQLITE_STATIC);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (!sqlite3_column_text(st, 0)) {
			sqlite3_reset(st);
			return -EUCLEAN;
		}
		int r = cb(arg, (const char *)sqlite3_column_text(st, 0),
			   sqlite3_column_int64(st, 1),
			   (uint32_t)sqlite3_column_int64(st, 2));
		if (r) {
			sqlite3_reset(st);
			return r;
		}
	}
	return rc == SQLITE_DONE ? 0 : index_errno(rc);
}

int ns_dir_empty(struct index *ix, int64_t vol, int64_t view,
		    uint64_t parent)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT 1 FROM dentry WHERE vol=?1 AND parent=?2"
		" AND +birth <= ?3 AND +death > ?3 LIMIT 1");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)parent, view };
	index_bind_i64s(st, 3, args);
	int r = index_exists(st);
	return r < 0 ? r : !r;
}

/* ---- extents ---- */

/* Live extents (with their birth) overlapping [start, end). */
struct live_extent {
	struct extent x;
	int64_t birth;
};

static int live_extents(struct index *ix, int64_t vol, uint64_t ino,
			uint64_t start, uint64_t end, struct live_extent **out,
			size_t *n, int64_t view)
{
	/* The one extent that may start before start and reach into the
	 * range, then all that start inside it. */
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT off, len, chunk, coff, birth FROM extent WHERE vol=?1 AND ino=?2"
		" AND off < ?3 AND +birth <= ?5 AND +death > ?5 ORDER BY off DESC LIMIT 1");
	if (!st)
		return -EIO;
	size_t cap = 0, cnt = 0;
	struct live_extent *v = buf_grow(NULL, &cap, 16, sizeof(*v));
	if (!v)
		return -ENOMEM;
	int64_t a1[] = { vol, (int64_t)ino, (int64_t)start, 0, view };
	index_bind_i64s(st, 5, a1);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		uint64_t off = sqlite3_column_int64(st, 0);
		uint64_t len = sqlite3_column_int64(st, 1);
		if (off + len > start) {
			v[cnt].x.off = off;
			v[cnt].x.len = len;
			v[cnt].x.chunk = sqlite3_column_int64(st, 2);
			v[cnt].x.coff = sqlite3_column_int64(st, 3);
			v[cnt].birth = sqlite3_column_int64(st, 4);
			cnt++;
		}
		sqlite3_reset(st);
	} else if (rc != SQLITE_DONE) {
		free(v);
		return index_errno(rc);
	}
	st = index_stmt(ix,
		"SELECT off, len, chunk, coff, birth FROM extent WHERE vol=?1 AND ino=?2"
		" AND off >= ?3 AND off < ?4 AND +birth <= ?5 AND +death > ?5 ORDER BY off");
	if (!st) {
		free(v);
		return -EIO;
	}
	int64_t a2[] = { vol, (int64_t)ino, (int64_t)start, (int64_t)end, view };
	index_bind_i64s(st, 5, a2);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		void *p = buf_grow(v, &cap, cnt + 1, sizeof(*v));
		if (!p) {
			free(v);
			return -ENOMEM;
		}
		v = p;
		v[cnt].x.off = sqlite3_column_int64(st, 0);
		v[cnt].x.len = sqlite3_column_int64(st, 1);
		v[cnt].x.chunk = sqlite3_column_int64(st, 2);
		v[cnt].x.coff = sqlite3_column_int64(st, 3);
		v[cnt].birth = sqlite3_column_int64(st, 4);
		cnt++;
	}
	if (rc != SQLITE_DONE) {
		free(v);
		return index_errno(rc);
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* Insert an extent row and count its reference.  -ESTALE if the chunk is
 * gone (the GC deleted it after the caller looked it up): the caller
 * stores the data again. */
static int extent_insert(struct index *ix, int64_t vol, int64_t cur,
			 uint64_t ino, const struct extent *x)
{
	int err = chunk_ref(ix, x->chunk);
	if (!err && sqlite3_changes(index_db(ix)) != 1)
		err = -ESTALE;
	if (!err)
		err = INDEX_EXEC(ix,
			"INSERT INTO extent(vol, ino, off, birth, death, len, chunk, coff)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
			vol, (int64_t)ino, (int64_t)x->off, cur, EPOCH_ALIVE,
			(int64_t)x->len, x->chunk, (int64_t)x->coff);
	return err;
}

int ns_extent_punch(struct index *ix, int64_t vol, int64_t cur,
		       uint64_t ino, uint64_t start, uint64_t end)
{
	struct live_extent *v;
	size_t n;
	int err = live_extents(ix, vol, ino, start, end, &v, &n, VIEW_LIVE);
	if (err)
		return err;
	for (size_t i = 0; i < n && !err; i++) {
		struct extent x = v[i].x;
		/* Born now: no snapshot sees it, delete; else end it. */
		if (v[i].birth == cur) {
			err = INDEX_EXEC(ix, "DELETE FROM extent WHERE vol=?1 AND ino=?2 AND off=?3 AND birth=?4",
				   vol, (int64_t)ino, (int64_t)x.off, cur);
			if (!err)
				err = chunk_unref(ix, x.chunk);
		} else {
			err = INDEX_EXEC(ix, "UPDATE extent SET death=?5 WHERE vol=?1 AND ino=?2 AND off=?3 AND birth=?4",
				   vol, (int64_t)ino, (int64_t)x.off, v[i].birth, cur);
		}
		if (err)
			break;
		if (x.off < start) {
			struct extent left = x;
			left.len = start - x.off;
			err = extent_insert(ix, vol, cur, ino, &left);
		}
		if (!err && x.off + x.len > end) {
			struct extent right = x;
			right.off = end;
			right.coff = x.coff + (end - x.off);
			right.len = x.off + x.len - end;
			err = extent_insert(ix, vol, cur, ino, &right);
		}
	}
	free(v);
	return err;
}

int ns_extent_replace(struct index *ix, int64_t vol, int64_t cur,
			 uint64_t ino, const struct extent *x)
{
	int err = ns_extent_punch(ix, vol, cur, ino, x->off, x->off + x->len);
	return err ? err : extent_insert(ix, vol, cur, ino, x);
}

int ns_extents_in(struct index *ix, int64_t vol, int64_t view,
		     uint64_t ino, uint64_t start, uint64_t end,
		     struct extent **xs, size_t *n)
{
	struct live_extent *v;
	int err = live_extents(ix, vol, ino, start, end, &v, n, view);
	if (err)
		return err;
	/* struct extent is the first member: compact in place. */
	struct extent *out = (struct extent *)v;
	for (size_t i = 0; i < *n; i++)
		memmove(&out[i], &v[i].x, sizeof(struct extent));
	*xs = out;
	return 0;
}

/* ---- xattrs ---- */

static int xattr_find(struct index *ix, int64_t vol, int64_t view,
		      uint64_t ino, const char *name, int64_t *birth,
		      sqlite3_stmt **row)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT birth, value FROM xattr WHERE vol=?1 AND ino=?2 AND name=?4"
		" AND +birth <= ?3 AND +death > ?3 ORDER BY birth DESC LIMIT 1");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)ino, view };
	index_bind_i64s(st, 3, args);
	sqlite3_bind_text(st, 4, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENODATA : index_errno(rc);
	*birth = sqlite3_column_int64(st, 0);
	if (row)
		*row = st;	/* the caller resets it */
	else
		sqlite3_reset(st);
	return 0;
}

int ns_xattr_any(struct index *ix, int64_t vol)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT 1 FROM xattr WHERE vol=?1 LIMIT 1");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, vol);
	return index_exists(st);
}

int ns_xattr_get(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		    const char *name, void *buf, size_t size)
{
	int64_t birth;
	sqlite3_stmt *st;
	int err = xattr_find(ix, vol, view, ino, name, &birth, &st);
	if (err)
		return err;
	int len = sqlite3_column_bytes(st, 1);
	if (size && (size_t)len > size)
		len = -ERANGE;
	else if (size && len)
		memcpy(buf, sqlite3_column_blob(st, 1), len);
	sqlite3_reset(st);
	return len;
}

int ns_xattr_remove(struct index *ix, int64_t vol, int64_t cur,
		       uint64_t ino, const char *name)
{
	int64_t birth;
	int err = xattr_find(ix, vol, VIEW_LIVE, ino, name, &birth, NULL);
	if (err)
		return err;
	sqlite3_stmt *st = birth == cur
		? index_stmt(ix, "DELETE FROM xattr WHERE vol=?1 AND ino=?2 AND birth=?3 AND name=?5")
		: index_stmt(ix, "UPDATE xattr SET death=?4 WHERE vol=?1 AND ino=?2 AND birth=?3 AND name=?5");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)ino, birth, cur };
	index_bind_i64s(st, 4, args);
	sqlite3_bind_text(st, 5, name, -1, SQLITE_STATIC);
	return index_exec(ix, st);
}

int ns_xattr_set(struct index *ix, int64_t vol, int64_t cur, uint64_t ino,
		    const char *name, const void *val, size_t len)
{
	int err = ns_xattr_remove(ix, vol, cur, ino, name);
	if (err && err != -ENODATA)
		return err;
	sqlite3_stmt *st = index_stmt(ix,
		"INSERT INTO xattr(vol, ino, name, birth, death, value)"
		" VALUES (?1, ?2, ?5, ?3, ?4, ?6)");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)ino, cur, EPOCH_ALIVE };
	index_bind_i64s(st, 4, args);
	sqlite3_bind_text(st, 5, name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 6, len ? val : "", (int)len, SQLITE_STATIC);
	return index_exec(ix, st);
}

int ns_xattr_list(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		     char *buf, size_t size)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT name FROM xattr WHERE vol=?1 AND ino=?2"
		" AND +birth <= ?3 AND +death > ?3 ORDER BY name");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)ino, view };
	index_bind_i64s(st, 3, args);
	size_t total = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		if (!name) {
			sqlite3_reset(st);
			return -EUCLEAN;
		}
		size_t l = strlen(name) + 1;
		if (size) {
			if (total + l > size) {
				sqlite3_reset(st);
				return -ERANGE;
			}
			memcpy(buf + total, name, l);
		}
		total += l;
	}
	return rc == SQLITE_DONE ? (int)total : index_errno(rc);
}

/* ---- stats ---- */

/* Run a query returning one row of up to 4 integers. */
static int query_ints(struct index *ix, const char *sql, int64_t arg,
		      uint64_t *a, uint64_t *b, uint64_t *c)
{
	sqlite3_stmt *st = index_stmt(ix, sql);
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, arg);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? -EIO : index_errno(rc);
	}
	if (a)
		*a = sqlite3_column_int64(st, 0);
	if (b)
		*b = sqlite3_column_int64(st, 1);
	if (c)
		*c = sqlite3_column_int64(st, 2);
	sqlite3_reset(st);
	return 0;
}

int ns_stats(struct index *ix, int64_t vol, struct ns_stats *s)
{
	memset(s, 0, sizeof(*s));
	int err = query_ints(ix,
		"SELECT COALESCE(SUM(size), 0), COUNT(*) FROM inode"
		" WHERE (?1 < 0 OR vol = ?1) AND death = 9223372036854775807"
		" AND (mode & 61440) = 32768",
		vol, &s->logical, &s->files, NULL);
	if (!err)
		err = query_ints(ix,
			"SELECT COUNT(*), COALESCE(SUM(rlen), 0), COALESCE(SUM(slen), 0)"
			" FROM chunk WHERE refs > 0 AND ?1 = ?1",
			0, &s->chunks, &s->chunk_raw, &s->chunk_stored);
	if (!err)
		err = query_ints(ix,
			"SELECT COUNT(*), COALESCE(SUM(slen), 0) FROM chunk"
			" WHERE refs = 0 AND ?1 = ?1",
			0, &s->garbage_chunks, &s->garbage_stored, NULL);
	if (!err)
		err = query_ints(ix,
			/* An open pack's size is what its chunks take so far. */
			"SELECT COUNT(*), COALESCE(SUM(CASE WHEN state = 1 THEN size ELSE"
			" 16 + (SELECT COALESCE(SUM(slen), 0) FROM chunk c WHERE c.pack = p.id)"
			" END), 0) FROM pack p WHERE ?1 = ?1",
			0, &s->packs, &s->pack_bytes, NULL);
	return err;
}

int ns_orphan_add(struct index *ix, int64_t vol, uint64_t ino)
{
	return INDEX_EXEC(ix, "INSERT OR IGNORE INTO orphan(vol, ino) VALUES (?1, ?2)",
		    vol, (int64_t)ino);
}

int ns_orphan_remove(struct index *ix, int64_t vol, uint64_t ino)
{
	return INDEX_EXEC(ix, "DELETE FROM orphan WHERE vol = ?1 AND ino = ?2", vol,
		    (int64_t)ino);
}

int ns_orphan_list(struct index *ix, int64_t vol, uint64_t **inos,
		      size_t *n)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT ino FROM orphan WHERE vol = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, vol);
	return index_collect_ints(st, (int64_t **)inos, n);
}

int64_t ns_extent_bytes(struct index *ix, int64_t vol, int64_t view,
			   uint64_t ino)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT COALESCE(SUM(len), 0) FROM extent WHERE vol=?1 AND ino=?2"
		" AND +birth <= ?3 AND +death > ?3");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)ino, view };
	index_bind_i64s(st, 3, args);
	int rc = sqlite3_step(st);
	int64_t r = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : index_errno(rc);
	sqlite3_reset(st);
	return r;
}

/* ---- snapshots ---- */

static void snapshot_row(sqlite3_stmt *st, struct snapshot_info *si)
{
	si->id = sqlite3_column_int64(st, 0);
	si->vol = sqlite3_column_int64(st, 1);
	snprintf(si->name, sizeof(si->name), "%s",
		 index_text(st, 2));
	si->epoch = sqlite3_column_int64(st, 3);
	si->time = sqlite3_column_int64(st, 4);
	si->pinned = sqlite3_column_int(st, 5);
	snprintf(si->set_name, sizeof(si->set_name), "%s", index_text(st, 6));
	snprintf(si->note, sizeof(si->note), "%s", index_text(st, 7));
}

int ns_snapshot_list(struct index *ix, int64_t vol,
			struct snapshot_info **out, size_t *n)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT id, vol, name, epoch, time, pinned, set_name, note FROM snapshot"
		" WHERE vol = ?1 ORDER BY epoch");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, vol);
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct snapshot_info *p = buf_grow(*out, &cap, *n + 1, sizeof(**out));
		if (!p) {
			sqlite3_reset(st);
			return -ENOMEM;
		}
		*out = p;
		snapshot_row(st, &(*out)[(*n)++]);
	}
	return rc == SQLITE_DONE ? 0 : index_errno(rc);
}

static int snapshot_one(struct index *ix, sqlite3_stmt *st,
			struct snapshot_info *si)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		snapshot_row(st, si);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	(void)ix;
	return rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
}

int ns_snapshot_find(struct index *ix, int64_t vol, const char *name,
			struct snapshot_info *si)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT id, vol, name, epoch, time, pinned, set_name, note FROM snapshot"
		" WHERE vol = ?1 AND name = ?2");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, vol);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	return snapshot_one(ix, st, si);
}

int ns_snapshot_get(struct index *ix, int64_t id, struct snapshot_info *si)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT id, vol, name, epoch, time, pinned, set_name, note FROM snapshot WHERE id = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, id);
	return snapshot_one(ix, st, si);
}

int ns_view_size(struct index *ix, int64_t vol, int64_t view,
		    uint64_t *bytes, uint64_t *files)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT COALESCE(SUM(size), 0), COUNT(*) FROM inode WHERE vol = ?1"
		" AND +birth <= ?2 AND +death > ?2 AND (mode & 61440) = 32768");
	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, vol);
	sqlite3_bind_int64(st, 2, view);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*bytes = sqlite3_column_int64(st, 0);
		*files = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : index_errno(rc);
}

int ns_dentry_of(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		    uint64_t *parent, char *name, size_t size)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT parent, name FROM dentry WHERE vol = ?1 AND ino = ?2"
		" AND +birth <= ?3 AND +death > ?3 ORDER BY parent, name LIMIT 1");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)ino, view };
	index_bind_i64s(st, 3, args);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*parent = sqlite3_column_int64(st, 0);
		snprintf(name, size, "%s", index_text(st, 1));
	}
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
}

int ns_live_dedup(struct index *ix, uint64_t *mapped, uint64_t *unique)
{
	int err = query_ints(ix,
		"SELECT COALESCE(SUM(len), 0) FROM extent WHERE death = 9223372036854775807"
		" AND ?1 = ?1", 0, mapped, NULL, NULL);
	if (!err)
		err = query_ints(ix,
			"SELECT COALESCE(SUM(rlen), 0) FROM chunk c WHERE EXISTS (SELECT 1"
			" FROM extent x WHERE x.chunk = c.id AND x.death = 9223372036854775807)"
			" AND ?1 = ?1", 0, unique, NULL, NULL);
	return err;
}

int ns_space(struct index *ix, uint64_t *live, uint64_t *snap_only,
		uint64_t *reclaimable)
{
	int err = query_ints(ix,
		"SELECT COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM extent x WHERE"
		" x.chunk = c.id AND x.death = 9223372036854775807) THEN slen ELSE 0 END), 0),"
		" COALESCE(SUM(CASE WHEN NOT EXISTS (SELECT 1 FROM extent x WHERE"
		" x.chunk = c.id AND x.death = 9223372036854775807) THEN slen ELSE 0 END), 0)"
		" FROM chunk c WHERE refs > 0 AND ?1 = ?1", 0, live, snap_only, NULL);
	if (!err)
		err = query_ints(ix,
			"SELECT COALESCE(SUM(slen), 0) FROM chunk WHERE refs = 0 AND ?1 = ?1",
			0, reclaimable, NULL, NULL);
	return err;
}

int ns_dentry_names(struct index *ix, int64_t vol, int64_t view,
		       uint64_t ino, dentry_cb cb, void *arg)
{
	sqlite3_stmt *st = index_stmt(ix,
		"SELECT name, parent FROM dentry WHERE vol = ?1 AND ino = ?2"
		" AND +birth <= ?3 AND +death > ?3 ORDER BY parent, name");
	if (!st)
		return -EIO;
	int64_t args[] = { vol, (int64_t)ino, view };
	index_bind_i64s(st, 3, args);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int r = cb(arg, index_text(st, 0), sqlite3_column_int64(st, 1), 0);
		if (r) {
			sqlite3_reset(st);
			return r;
		}
	}
	return rc == SQLITE_DONE ? 0 : index_errno(rc);
}
