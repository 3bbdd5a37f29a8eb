/*
 * index.h - the store's SQLite database ("the index"): the single source
 * of truth for a store's metadata (docs/FORMAT.md §9).
 *
 * This module owns the connection, transactions, the store-wide settings
 * (meta) and the schema of every table, defined once (index.c).  The rows
 * of each table are owned by one module, which alone runs SQL on them:
 * chunks and packs by catalog.h, the namespace (volumes, inodes, entries,
 * extents, xattrs, snapshots) by fs/namespace.h, the change log by
 * changelog.h, remotes by the replication layer.  They run it through
 * index_sql.h.
 *
 * Not thread-safe: the caller serialises all calls on one struct index.
 */
#ifndef TRESOR_INDEX_H
#define TRESOR_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct index;

/* Open (create=1: create) the index database at path; WAL, FULL sync. */
int index_open(const char *path, int create, struct index **out);
void index_close(struct index *ix);

/* Start a write transaction unless one is open.  Batching many changes into
 * one commit is what makes metadata fast: a commit costs fsyncs. */
int index_begin(struct index *ix);
/* Commit the open transaction, if any. */
int index_commit(struct index *ix);
/* Roll back the open transaction, if any. */
void index_rollback(struct index *ix);
int index_in_tx(const struct index *ix);
/* A savepoint in the open transaction (begun if none is), for a change
 * that must happen whole or not at all: index_savepoint_end(ix, 0) keeps
 * what was done since, (ix, 1) undoes it and leaves the rest of the
 * transaction as it was.  Not nested. */
int index_savepoint(struct index *ix);
void index_savepoint_end(struct index *ix, int undo);

/* Store-wide settings (format version, chunker sizes...). */
int index_meta_get(struct index *ix, const char *key, int64_t *val);
int index_meta_set(struct index *ix, const char *key, int64_t val);

/* Tables made on first use, not by index_open(create), with the columns
 * added since their first release (FORMAT.md §9.11): the replication
 * tables, and the change log (whose triggers changelog.c makes). */
int index_ensure_remote_tables(struct index *ix);
int index_ensure_changelog_table(struct index *ix);

/* Write a consistent copy of the index to path (made anew), without
 * what is local to this store (FORMAT.md §15.5: the replication tables,
 * the change log and its triggers, pack_trash rows), as one file in
 * journal mode DELETE: an image for a remote.  Run it inside the caller's
 * read transaction to copy exactly that state. */
int index_image(struct index *ix, const char *path);

/* The raw handle, for the modules that own tables (index_sql.h). */
struct sqlite3 *index_db(struct index *ix);

#endif
