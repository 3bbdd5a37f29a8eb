/*
 * damage.h - what a damaged or missing pack or chunk takes with it: the
 * files (paths) and the views (live tree, snapshots) whose data it holds.
 * Used by check, repair and the read path's error lines, so a person
 * learns which files to worry about, not only which pack.
 */
#ifndef TRESOR_DAMAGE_H
#define TRESOR_DAMAGE_H

#include <stddef.h>
#include <stdint.h>
#include "namespace.h"

/* Path of ino in view from the volume's root ("/a/b"), or "(inode N, no
 * name)" if it has none there.  Never fails; buf is always terminated. */
void damage_path(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		 char *buf, size_t size);

typedef void (*damage_cb)(void *arg, const char *line);

/*
 * Call cb once per file whose data lies in the chunks of pack pack_id
 * (chunk_id 0) or in chunk chunk_id alone, with a line like
 * "volume plans: /a/b.pdf (live; snapshots 2024-03-01, 2024-03-02)".
 * At most max lines, then one saying how many more.  *files receives the
 * number of files (may be NULL).
 */
int damage_affected(struct index *ix, int64_t pack_id, int64_t chunk_id,
		    size_t max, damage_cb cb, void *arg, size_t *files);

/* The first unsafe entry name in the index (any view; ns_unsafe_names):
 * 1 and its volume, directory and name, 0 if none, -errno. */
int damage_unsafe_name(struct index *ix, int64_t *vol, uint64_t *parent,
		       char *name, size_t size);

/* recover's check of a rebuilt index (recover_opts.check_index): 0 if no
 * entry has an unsafe name, else -EUCLEAN and the first one in why (I7,
 * docs/DESIGN.md). */
int damage_check_names(struct index *ix, char *why, size_t size);

#endif
