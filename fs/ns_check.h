/*
 * ns_check.h - the namespace's whole-index scans for `tresor check` and
 * for damage reports: which extent rows a chunk or pack holds up, entry
 * names no file system may hold, rows that break the trees' rules.  Part of the namespace, the one owner of
 * its tables' SQL (namespace.h); it reads chunk rows too, never writes.
 */
#ifndef TRESOR_NS_CHECK_H
#define TRESOR_NS_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include "namespace.h"

/* An extent row, any version: whose file it maps, in which epochs. */
struct ns_extent_use {
	int64_t vol;
	uint64_t ino;
	int64_t birth, death;
};
/* The extent rows naming chunk chunk_id, or (chunk_id 0) any chunk of
 * pack pack_id; *out malloc'd (NULL on error). */
int ns_extent_uses(struct index *ix, int64_t pack_id, int64_t chunk_id,
		   struct ns_extent_use **out, size_t *n);

/* Call cb for every entry, in any view, whose name no file system may
 * hold (empty, ".", "..", '/' or NUL in it, over 255 bytes) until it
 * returns non-zero, which is returned; else 0 or -errno.  A damaged or
 * hostile index must not lead a restore or a mount outside its tree (I7). */
typedef int (*ns_name_cb)(void *arg, int64_t vol, uint64_t parent,
			  int64_t birth, const char *name);
int ns_unsafe_names(struct index *ix, ns_name_cb cb, void *arg);

/* `tresor check`'s questions to the trees: chunk.refs against the extent
 * rows naming each chunk (I2), extents inside their chunks, live entries
 * naming live inodes, live link counts against the entries.  cb gets one
 * line per problem; returns 0 or -errno. */
typedef void (*ns_line_cb)(void *arg, const char *line);
int ns_check_rows(struct index *ix, ns_line_cb cb, void *arg);
/* Rows checked: extents (any version), live inodes. */
int ns_check_counts(struct index *ix, uint64_t *extents, uint64_t *inodes);

#endif
