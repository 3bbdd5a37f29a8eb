/*
 * index.c - the store's SQLite database: the connection, transactions,
 * store-wide settings (meta), the schema of every table, and the
 * statement cache the modules that own the tables run their SQL through
 * (index.h).
 *
 * Statements are prepared once and cached by the address of their SQL
 * text, so callers pay for parsing only on first use.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sqlite3.h>
#include <unistd.h>

#include "buf.h"
#include "index_sql.h"
#include "util.h"

struct index {
	sqlite3 *db;
	int in_tx;
	/* One prepared statement per SQL literal, for the connection's life:
	 * the call sites are finite, so the cache grows to hold them all. */
	struct {
		const char *sql;
		sqlite3_stmt *st;
	} *stmts;
	size_t nstmts, capstmts;
};

static const char *schema_sql =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS volume(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
	"  epoch INTEGER NOT NULL, next_ino INTEGER NOT NULL, created INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS snapshot(id INTEGER PRIMARY KEY, vol INTEGER NOT NULL,"
	"  name TEXT NOT NULL, epoch INTEGER NOT NULL, time INTEGER NOT NULL,"
	"  pinned INTEGER NOT NULL DEFAULT 0, set_name TEXT, note TEXT, UNIQUE(vol, name));"
	"CREATE TABLE IF NOT EXISTS inode(vol INTEGER NOT NULL, ino INTEGER NOT NULL,"
	"  birth INTEGER NOT NULL, death INTEGER NOT NULL, mode INTEGER NOT NULL,"
	"  uid INTEGER NOT NULL, gid INTEGER NOT NULL, nlink INTEGER NOT NULL,"
	"  size INTEGER NOT NULL, rdev INTEGER NOT NULL, atime INTEGER NOT NULL,"
	"  mtime INTEGER NOT NULL, ctime INTEGER NOT NULL,"
	"  PRIMARY KEY(vol, ino, birth)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS dentry(vol INTEGER NOT NULL, parent INTEGER NOT NULL,"
	"  name TEXT NOT NULL, birth INTEGER NOT NULL, death INTEGER NOT NULL,"
	"  ino INTEGER NOT NULL, PRIMARY KEY(vol, parent, name, birth)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS extent(vol INTEGER NOT NULL, ino INTEGER NOT NULL,"
	"  off INTEGER NOT NULL, birth INTEGER NOT NULL, death INTEGER NOT NULL,"
	"  len INTEGER NOT NULL, chunk INTEGER NOT NULL, coff INTEGER NOT NULL,"
	"  PRIMARY KEY(vol, ino, off, birth)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS xattr(vol INTEGER NOT NULL, ino INTEGER NOT NULL,"
	"  name TEXT NOT NULL, birth INTEGER NOT NULL, death INTEGER NOT NULL,"
	"  value BLOB NOT NULL, PRIMARY KEY(vol, ino, name, birth)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS chunk(id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE,"
	"  pack INTEGER NOT NULL, off INTEGER NOT NULL, slen INTEGER NOT NULL,"
	"  rlen INTEGER NOT NULL, flags INTEGER NOT NULL, refs INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS chunk_pack ON chunk(pack, off);"
	"CREATE INDEX IF NOT EXISTS chunk_garbage ON chunk(refs) WHERE refs = 0;"
	"CREATE TABLE IF NOT EXISTS pack(id INTEGER PRIMARY KEY, name BLOB NOT NULL UNIQUE,"
	"  state INTEGER NOT NULL, size INTEGER NOT NULL);"
	/* Pruning finds rows ended in an epoch range without a full scan. */
	"CREATE INDEX IF NOT EXISTS inode_death ON inode(vol, death);"
	"CREATE INDEX IF NOT EXISTS dentry_death ON dentry(vol, death);"
	"CREATE INDEX IF NOT EXISTS extent_death ON extent(vol, death);"
	"CREATE INDEX IF NOT EXISTS xattr_death ON xattr(vol, death);"
	"CREATE INDEX IF NOT EXISTS extent_chunk ON extent(chunk);"
	/* Paths of an inode (diff, check's messages). */
	"CREATE INDEX IF NOT EXISTS dentry_ino ON dentry(vol, ino);"
	/* Inodes unlinked while open: ended at last close, or at next mount
	 * after a crash. */
	/* Packs deleted from the index whose files (local, then remote
	 * after a grace period) are still to be removed. */
	"CREATE TABLE IF NOT EXISTS pack_trash(name BLOB PRIMARY KEY, time INTEGER NOT NULL,"
	"  local_done INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS orphan(vol INTEGER NOT NULL, ino INTEGER NOT NULL,"
	"  PRIMARY KEY(vol, ino)) WITHOUT ROWID;";

/* Tables added within a format version (FORMAT.md §9.12): local, neither
 * replicated nor in an image, and ignored by an older tresor, so a store
 * of any version up to ours gets them at open (none is a version bump). */
static const char *local_schema =
	/* When each pack was last read whole and authenticated (check). */
	"CREATE TABLE IF NOT EXISTS pack_verified(name BLOB PRIMARY KEY,"
	"  time INTEGER NOT NULL) WITHOUT ROWID;";

/* The replication tables (FORMAT.md §9.11): made on first use, so a
 * store without remotes has none. */
static const char *remote_schema =
	"CREATE TABLE IF NOT EXISTS remote(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
	"  url TEXT NOT NULL, endpoint TEXT, region TEXT, path_style INTEGER NOT NULL DEFAULT 0,"
	"  ca_file TEXT, credentials_file TEXT, ssh_key TEXT, known_hosts TEXT, netrc_file TEXT,"
	"  last_seq INTEGER NOT NULL DEFAULT 0, next_meta INTEGER NOT NULL DEFAULT 1,"
	"  last_push INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS remote_pack(remote INTEGER NOT NULL, name BLOB NOT NULL,"
	"  PRIMARY KEY(remote, name)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS remote_gone(remote INTEGER NOT NULL, name BLOB NOT NULL,"
	"  freed INTEGER NOT NULL, lock_until INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY(remote, name)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS remote_image(remote INTEGER NOT NULL, meta INTEGER NOT NULL,"
	"  id BLOB NOT NULL, parts INTEGER NOT NULL, published INTEGER NOT NULL DEFAULT 0,"
	"  lock_until INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(remote, id)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS remote_sending(remote INTEGER NOT NULL, name BLOB NOT NULL,"
	"  lock_until INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(remote, name)) WITHOUT ROWID;";

/* Columns added after the first release of the replication tables: a store
 * made before them gets them (with their defaults) on first use. */
static const struct {
	const char *table, *column, *def;
} added_cols[] = {
	{ "remote", "grace_ns", "INTEGER NOT NULL DEFAULT 604800000000000" },
	{ "remote", "lock_mode", "INTEGER NOT NULL DEFAULT 0" },
	{ "remote", "lock_days", "INTEGER NOT NULL DEFAULT 0" },
	{ "remote", "meta_lock_until", "INTEGER NOT NULL DEFAULT 0" },
	{ "remote_pack", "lock_until", "INTEGER NOT NULL DEFAULT 0" },
	{ "remote", "writer", "BLOB" },
	{ "remote", "tip", "BLOB" },
	{ "remote", "full_next", "INTEGER NOT NULL DEFAULT 0" },
	{ "remote", "pending", "BLOB" },
	{ "remote", "image_meta", "INTEGER NOT NULL DEFAULT 0" },
	{ "remote", "image_size", "INTEGER NOT NULL DEFAULT 0" },
	{ "remote", "since_image", "INTEGER NOT NULL DEFAULT 0" },
	{ "remote", "meta_floor", "INTEGER NOT NULL DEFAULT 1" },
	{ "remote_pack", "verified", "INTEGER NOT NULL DEFAULT 0" },
};

/* What each store format version added to the tables of the one before
 * (FORMAT.md §2): a store of an older version gets it at its next open. */
static const struct {
	int64_t version;
	const char *table, *column, *def;
} upgrades[] = {
	{ 2, "snapshot", "set_name", "TEXT" },
	{ 2, "snapshot", "note", "TEXT" },
};

static int has_column(sqlite3 *db, const char *table, const char *column)
{
	char sql[128];
	sqlite3_stmt *st;
	int found = 0;
	snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	while (sqlite3_step(st) == SQLITE_ROW)
		if (!strcmp((const char *)sqlite3_column_text(st, 1), column))
			found = 1;
	sqlite3_finalize(st);
	return found;
}

/* Add a column unless the table has it. */
static int add_column(sqlite3 *db, const char *table, const char *column,
		      const char *def)
{
	int h = has_column(db, table, column);
	if (h)
		return h < 0 ? h : 0;
	char sql[256];
	snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s", table, column, def);
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

/* The newest format this program knows: the last upgrade's. */
static int64_t upgrades_top(void)
{
	int64_t top = 0;
	for (size_t i = 0; i < sizeof(upgrades) / sizeof(upgrades[0]); i++)
		if (upgrades[i].version > top)
			top = upgrades[i].version;
	return top;
}

/*
 * Bring an index of an older format up to this one, in one transaction:
 * the columns each newer version added, then meta.format_version.  An
 * index without a version (being created) or of a newer one is left
 * alone: the caller refuses the newer one.
 */
static int index_upgrade(struct index *ix)
{
	int64_t ver, top = upgrades_top();
	size_t n = sizeof(upgrades) / sizeof(upgrades[0]);
	int err = index_meta_get(ix, "format_version", &ver);
	if (err == -ENOENT || (!err && ver >= top))
		return 0;
	if (!err)
		err = index_begin(ix);
	for (size_t i = 0; i < n && !err; i++) {
		if (upgrades[i].version <= ver)
			continue;
		err = add_column(ix->db, upgrades[i].table, upgrades[i].column,
				 upgrades[i].def);
	}
	if (!err)
		err = index_meta_set(ix, "format_version", top);
	if (!err)
		err = index_commit(ix);
	if (err) {
		index_rollback(ix);
		tlog(LOG_ERR, "index: cannot upgrade from format %lld to %lld: %s",
		     (long long)ver, (long long)top, strerror(-err));
	} else {
		tlog(LOG_INFO, "index: upgraded from format %lld to %lld",
		     (long long)ver, (long long)top);
	}
	return err;
}

/* The local tables (local_schema), unless the index is of a newer format
 * (the caller refuses it: nothing may be written to it). */
static int ensure_local_tables(struct index *ix)
{
	int64_t ver;
	if (!index_meta_get(ix, "format_version", &ver) && ver > upgrades_top())
		return 0;
	char *msg = NULL;
	if (sqlite3_exec(ix->db, local_schema, NULL, NULL, &msg) != SQLITE_OK) {
		tlog(LOG_ERR, "index: cannot add the table pack_verified: %s",
		     msg ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

const char *index_text(sqlite3_stmt *st, int i)
{
	const char *t = (const char *)sqlite3_column_text(st, i);
	return t ? t : "";
}

int index_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	default:
		return -EIO;
	}
}

sqlite3_stmt *index_stmt(struct index *ix, const char *sql)
{
	for (size_t i = 0; i < ix->nstmts; i++) {
		if (ix->stmts[i].sql == sql) {
			sqlite3_reset(ix->stmts[i].st);
			sqlite3_clear_bindings(ix->stmts[i].st);
			return ix->stmts[i].st;
		}
	}
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v3(ix->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
			       NULL) != SQLITE_OK) {
		tlog(LOG_ERR, "index: cannot prepare \"%s\": %s", sql,
		     sqlite3_errmsg(ix->db));
		return NULL;
	}
	void *p = buf_grow(ix->stmts, &ix->capstmts, ix->nstmts + 1,
			   sizeof(*ix->stmts));
	if (!p) {
		sqlite3_finalize(st);
		return NULL;
	}
	ix->stmts = p;
	ix->stmts[ix->nstmts].sql = sql;
	ix->stmts[ix->nstmts].st = st;
	ix->nstmts++;
	return st;
}

void index_bind_i64s(sqlite3_stmt *st, int n, const int64_t *v)
{
	for (int i = 0; i < n; i++)
		sqlite3_bind_int64(st, i + 1, v[i]);
}

int index_exists(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : index_errno(rc);
}

int index_exec(struct index *ix, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		tlog(LOG_DEBUG, "index: %s", sqlite3_errmsg(ix->db));
		return index_errno(rc);
	}
	return 0;
}

int index_open(const char *path, int create, struct index **out)
{
	struct index *ix = calloc(1, sizeof(*ix));
	if (!ix)
		return -ENOMEM;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
		    (create ? SQLITE_OPEN_CREATE : 0);
	int rc = sqlite3_open_v2(path, &ix->db, flags, NULL);
	if (rc != SQLITE_OK) {
		int err = index_errno(rc);
		if (rc == SQLITE_CANTOPEN)
			err = -ENOENT;
		sqlite3_close(ix->db);
		free(ix);
		return err;
	}
	sqlite3_busy_timeout(ix->db, 30000);
	char *msg = NULL;
	rc = sqlite3_exec(ix->db,
			  "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
			  "PRAGMA foreign_keys=OFF; PRAGMA cache_size=-16384;",
			  NULL, NULL, &msg);
	if (rc == SQLITE_OK && create)
		rc = sqlite3_exec(ix->db, schema_sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		tlog(LOG_ERR, "index %s: %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		int err = index_errno(rc);
		sqlite3_close(ix->db);
		free(ix);
		return err;
	}
	if (create)
		chmod(path, 0600);
	int err = create ? 0 : index_upgrade(ix);
	if (!err)
		err = ensure_local_tables(ix);
	if (err) {
		index_close(ix);
		return err;
	}
	*out = ix;
	return 0;
}

void index_close(struct index *ix)
{
	if (!ix)
		return;
	index_rollback(ix);
	for (size_t i = 0; i < ix->nstmts; i++)
		sqlite3_finalize(ix->stmts[i].st);
	free(ix->stmts);
	sqlite3_close(ix->db);
	free(ix);
}

int index_begin(struct index *ix)
{
	if (ix->in_tx)
		return 0;
	int rc = sqlite3_exec(ix->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return index_errno(rc);
	ix->in_tx = 1;
	return 0;
}

int index_commit(struct index *ix)
{
	if (!ix->in_tx)
		return 0;
	crash_point("index-commit");
	int rc = sqlite3_exec(ix->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		/* SQLITE_FULL or an I/O error may have rolled the transaction
		 * back: then it is over, and a retry must not COMMIT nothing
		 * (nor run the next statements outside a transaction). */
		if (sqlite3_get_autocommit(ix->db)) {
			ix->in_tx = 0;
			tlog(LOG_ERR, "index: commit failed and was rolled back: %s",
			     sqlite3_errmsg(ix->db));
		}
		return index_errno(rc);
	}
	ix->in_tx = 0;
	return 0;
}

void index_rollback(struct index *ix)
{
	if (!ix->in_tx)
		return;
	sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
	ix->in_tx = 0;
}

int index_savepoint(struct index *ix)
{
	int err = index_begin(ix);
	if (err)
		return err;
	int rc = sqlite3_exec(ix->db, "SAVEPOINT tresor_sp", NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : index_errno(rc);
}

void index_savepoint_end(struct index *ix, int undo)
{
	if (!ix->in_tx)
		return;
	if (undo)
		sqlite3_exec(ix->db, "ROLLBACK TO tresor_sp", NULL, NULL, NULL);
	sqlite3_exec(ix->db, "RELEASE tresor_sp", NULL, NULL, NULL);
	/* SQLITE_FULL or an I/O error may have ended the whole transaction
	 * (as at index_commit). */
	if (sqlite3_get_autocommit(ix->db))
		ix->in_tx = 0;
}

int index_in_tx(const struct index *ix)
{
	return ix->in_tx;
}

struct sqlite3 *index_db(struct index *ix)
{
	return ix->db;
}

int index_meta_get(struct index *ix, const char *key, int64_t *val)
{
	sqlite3_stmt *st = index_stmt(ix, "SELECT value FROM meta WHERE key = ?1");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*val = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : index_errno(rc);
}

int index_meta_set(struct index *ix, const char *key, int64_t val)
{
	sqlite3_stmt *st = index_stmt(ix, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
	if (!st)
		return -EIO;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, val);
	return index_exec(ix, st);
}

int index_collect_ints(sqlite3_stmt *st, int64_t **out, size_t *n)
{
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t *p = buf_grow(*out, &cap, *n + 1, sizeof(**out));
		if (!p) {
			sqlite3_reset(st);
			free(*out);
			*out = NULL;
			*n = 0;
			return -ENOMEM;
		}
		*out = p;
		(*out)[(*n)++] = sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_DONE) {
		free(*out);
		*out = NULL;
		*n = 0;
		return index_errno(rc);
	}
	return 0;
}

int index_ensure_remote_tables(struct index *ix)
{
	if (sqlite3_exec(ix->db, remote_schema, NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	for (size_t i = 0; i < sizeof(added_cols) / sizeof(added_cols[0]); i++) {
		int err = add_column(ix->db, added_cols[i].table,
				     added_cols[i].column, added_cols[i].def);
		if (err)
			return err;
	}
	return 0;
}

int index_ensure_changelog_table(struct index *ix)
{
	return sqlite3_exec(ix->db, "CREATE TABLE IF NOT EXISTS changelog(seq INTEGER PRIMARY KEY"
			    " AUTOINCREMENT, tbl INTEGER NOT NULL, pk TEXT NOT NULL)",
			    NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

/* The store-local parts of a copy of the index: what an image leaves out. */
static const char image_strip_sql[] =
	"DROP TABLE IF EXISTS remote; DROP TABLE IF EXISTS remote_pack;"
	" DROP TABLE IF EXISTS remote_gone; DROP TABLE IF EXISTS remote_image;"
	" DROP TABLE IF EXISTS remote_sending;"
	" DROP TABLE IF EXISTS changelog; DROP TABLE IF EXISTS pack_verified;"
	" DELETE FROM pack_trash;";

/* Drop the change log's triggers (changelog_<table>_I|U|D) in db. */
static int drop_changelog_triggers(sqlite3 *db)
{
	sqlite3_stmt *q;
	char names[64][64];
	int n = 0, rc;
	if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'trigger'"
			       " AND name LIKE 'changelog!_%' ESCAPE '!'", -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW && n < 64)
		snprintf(names[n++], sizeof(names[0]), "%s", index_text(q, 0));
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return index_errno(rc);
	for (int i = 0; i < n; i++) {
		char sql[128];
		snprintf(sql, sizeof(sql), "DROP TRIGGER IF EXISTS \"%.63s\"", names[i]);
		if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
			return -EIO;
	}
	return n == 64 ? drop_changelog_triggers(db) : 0;
}

int index_image(struct index *ix, const char *path)
{
	unlink(path);
	sqlite3 *dst = NULL;
	int rc = sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	int err = index_errno(rc);
	sqlite3_backup *b = err ? NULL : sqlite3_backup_init(dst, "main", ix->db, "main");
	if (!err && !b)
		err = index_errno(sqlite3_errcode(dst));
	if (b) {
		/* One step: the pages of the caller's read transaction, all. */
		rc = sqlite3_backup_step(b, -1);
		if (rc != SQLITE_DONE)
			err = index_errno(rc) ? index_errno(rc) : -EIO;
		rc = sqlite3_backup_finish(b);
		if (!err)
			err = index_errno(rc);
	}
	if (!err && sqlite3_exec(dst, image_strip_sql, NULL, NULL, NULL) != SQLITE_OK)
		err = index_errno(sqlite3_errcode(dst));
	if (!err)
		err = drop_changelog_triggers(dst);
	if (!err && sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK)
		err = index_errno(sqlite3_errcode(dst));
	if (err)
		tlog(LOG_ERR, "index: cannot write the image %s: %s", path,
		     dst ? sqlite3_errmsg(dst) : strerror(-err));
	sqlite3_close(dst);
	if (err)
		unlink(path);
	return err;
}
