/*
 * index_sql.h - what the modules that own tables of the index use to run
 * their SQL: the statement cache and the few shapes every query takes.
 * Only those modules include it (and sqlite3.h); everyone else calls
 * their functions.
 */
#ifndef TRESOR_INDEX_SQL_H
#define TRESOR_INDEX_SQL_H

#include <sqlite3.h>
#include "index.h"

/* The cached, reset statement for sql (a string literal: the cache is
 * keyed by its address), prepared on first use; NULL on error. */
sqlite3_stmt *index_stmt(struct index *ix, const char *sql);
/* Bind int64 arguments 1..n. */
void index_bind_i64s(sqlite3_stmt *st, int n, const int64_t *v);
/* Run a statement that returns no rows; -errno. */
int index_exec(struct index *ix, sqlite3_stmt *st);
/* Run an existence query ("SELECT 1 ... LIMIT 1"): 1 if it gave a row,
 * 0 if none, -errno. */
int index_exists(sqlite3_stmt *st);
/* Step st to the end, collecting its first column into a malloc'd array
 * (freed again on error).  The shape of every "list of ids" query. */
int index_collect_ints(sqlite3_stmt *st, int64_t **out, size_t *n);
/* Map an SQLite result code to a negative errno. */
int index_errno(int rc);
/* Text of column i, "" for NULL (a damaged row must not crash us). */
const char *index_text(sqlite3_stmt *st, int i);

/* Run the cached statement sql with int64 arguments; -errno. */
#define INDEX_EXEC(ix, sql, ...)                                             \
	({                                                                   \
		sqlite3_stmt *st_ = index_stmt(ix, sql);                     \
		int64_t a_[] = { __VA_ARGS__ };                              \
		st_ ? (index_bind_i64s(st_, sizeof(a_) / sizeof(a_[0]), a_), \
		       index_exec(ix, st_))                                  \
		    : -EIO;                                                  \
	})

#endif
