/*
 * view.h - reading a file's bytes in a view (view.c).
 */
#ifndef TRESOR_VIEW_H
#define TRESOR_VIEW_H

#include <pthread.h>
#include "namespace.h"
#include "../chunker/store.h"

/*
 * An open file's extents and where their chunks live, loaded once (at the
 * first read) instead of one index query per read request.  Its owner
 * drops it whenever the file's extents change (a write's chunks applied,
 * a truncate); a pack the GC rewrote since shows as -ENOENT, and the read
 * then resolves afresh.
 */
struct xmap {
	struct extent *xs;	/* sorted by offset, disjoint */
	struct chunk_ref *refs;	/* refs[i] holds xs[i]'s chunk */
	size_t n;
};
/* Load every extent of ino in view (the caller holds the index lock). */
int xmap_load(struct store *st, int64_t vol, int64_t view, uint64_t ino,
	      struct xmap **out);
void xmap_free(struct xmap *m);
/* Index of the first extent of m ending after off. */
size_t xmap_find(const struct xmap *m, uint64_t off);

/*
 * Fill buf with [off, off+len) of inode ino of volume vol as seen in view,
 * from its extents (holes read as zeros).  lock (may be NULL) is held
 * around index access only.  A chunk that fails authentication gives
 * -EIO and a log line naming the volume, the file's path and the pack.
 * map (may be NULL) is the file's extent map: when given, the extents
 * come from it and no query is made; if it turns out stale (a pack gone)
 * the read resolves from the index and *stale is set, so the owner drops
 * the map.
 */
int view_read(struct store *st, pthread_mutex_t *lock, int64_t vol, int64_t view,
	      uint64_t ino, void *buf, size_t len, uint64_t off,
	      const char *volname);
int view_read_map(struct store *st, pthread_mutex_t *lock, int64_t vol,
		  int64_t view, uint64_t ino, void *buf, size_t len,
		  uint64_t off, const char *volname, const struct xmap *map,
		  int *stale);

#endif
