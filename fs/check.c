/*
 * check.c - `tresor check`: is the store what its index says it is?
 *
 * The packs and, optionally, every chunk's bytes are chunker/verify.h's;
 * this adds which files a bad pack or chunk takes with it (damage.h) and
 * the namespace's checks: chunk reference counts equal the extent rows
 * naming them, every extent lies inside its chunk, live directory entries
 * name live inodes and live link counts match the entries.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sqlite3.h>

#include "check.h"
#include "damage.h"
#include "../chunker/util.h"
#include "../chunker/verify.h"

struct ctx {
	struct store *st;
	const struct check_opts *o;
	check_report_fn report;
	void *arg;
	struct check_result *res;
};

static void affects_line(void *arg, const char *line)
{
	struct ctx *c = arg;
	char buf[8200];
	snprintf(buf, sizeof(buf), "  affects %s", line);
	c->report(c->arg, buf);
}

/* A problem line, then the files (and their snapshots) whose data its bad
 * pack or chunk (verify.h) holds. */
static void data_problem(void *arg, const char *line, int64_t pack,
			   int64_t chunk)
{
	struct ctx *c = arg;
	c->res->problems++;
	c->report(c->arg, line);
	if (!pack && !chunk)
		return;
	size_t files = 0;
	damage_affected(c->st->ix, pack, chunk, c->o->max_files ? c->o->max_files : 20,
			affects_line, c, &files);
	c->res->files_affected += files;
}

static void problem(struct ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void problem(struct ctx *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	data_problem(c, line, 0, 0);
}

/* Run a query whose every row is a problem described by its columns. */
static int each_row(struct ctx *c, const char *sql, const char *what)
{
	sqlite3_stmt *st;
	sqlite3 *db = index_db(c->st->ix);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		tlog(LOG_ERR, "check: %s", sqlite3_errmsg(db));
		return -EIO;
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		problem(c, what, (long long)sqlite3_column_int64(st, 0),
			(long long)sqlite3_column_int64(st, 1),
			(long long)sqlite3_column_int64(st, 2));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static int count(struct ctx *c, const char *sql, uint64_t *out)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(index_db(c->st->ix), sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -EIO;
}

#define ALIVE "9223372036854775807"

static int check_rows(struct ctx *c)
{
	int err = each_row(c,
		"SELECT c.id, c.refs, (SELECT COUNT(*) FROM extent e WHERE e.chunk = c.id)"
		" FROM chunk c WHERE c.refs != (SELECT COUNT(*) FROM extent e WHERE e.chunk = c.id)",
		"chunk %lld: reference count %lld but %lld extents name it");
	if (!err)
		err = each_row(c,
			"SELECT e.vol, e.ino, e.off FROM extent e LEFT JOIN chunk c ON c.id = e.chunk"
			" WHERE c.id IS NULL OR e.coff + e.len > c.rlen OR e.len <= 0",
			"volume %lld inode %lld: extent at %lld names a missing chunk or lies outside it");
	if (!err)
		err = each_row(c,
			"SELECT d.vol, d.parent, d.ino FROM dentry d WHERE d.death = " ALIVE
			" AND NOT EXISTS (SELECT 1 FROM inode i WHERE i.vol = d.vol AND i.ino = d.ino"
			" AND i.death = " ALIVE ")",
			"volume %lld directory %lld: entry names inode %lld, which does not exist");
	if (!err)
		err = each_row(c,
			"SELECT i.vol, i.ino, i.nlink FROM inode i WHERE i.death = " ALIVE
			" AND (i.mode & 61440) != 16384 AND i.nlink != (SELECT COUNT(*) FROM dentry d"
			" WHERE d.vol = i.vol AND d.ino = i.ino AND d.death = " ALIVE ")"
			" AND NOT EXISTS (SELECT 1 FROM orphan o WHERE o.vol = i.vol AND o.ino = i.ino)",
			"volume %lld inode %lld: link count %lld does not match its directory entries");
	if (!err)
		err = each_row(c,
			"SELECT c.id, c.pack, c.off FROM chunk c LEFT JOIN pack p ON p.id = c.pack"
			" WHERE p.id IS NULL",
			"chunk %lld: names pack %lld (offset %lld), which the index does not have");
	if (!err)
		err = each_row(c,
			"SELECT vol, parent, birth FROM dentry WHERE " DAMAGE_UNSAFE_NAME,
			"volume %lld directory %lld: an entry (born in epoch %lld) has an unsafe name ('', '.', '..', '/' or NUL in it)");
	if (!err)
		err = count(c, "SELECT COUNT(*) FROM chunk", &c->res->chunks);
	if (!err)
		err = count(c, "SELECT COUNT(*) FROM extent", &c->res->extents);
	if (!err)
		err = count(c, "SELECT COUNT(*) FROM inode WHERE death = " ALIVE,
			    &c->res->inodes);
	return err;
}

int store_check(struct store *st, const struct check_opts *o,
		check_report_fn report, void *arg, struct check_result *res)
{
	memset(res, 0, sizeof(*res));
	struct ctx c = { .st = st, .o = o, .report = report, .arg = arg, .res = res };
	struct verify v = { .st = st, .problem = data_problem, .arg = &c,
			    .progress = o->progress, .progress_arg = o->progress_arg };
	int err = verify_packs(&v);
	if (!err)
		err = check_rows(&c);
	if (!err && o->read_data)
		err = verify_data(&v, o->read_pct);
	res->packs = v.packs;
	res->not_local = v.not_local;
	res->bytes_read = v.bytes_read;
	res->chunks_read = v.chunks_read;
	verify_free(&v);
	return err;
}
