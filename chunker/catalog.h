/*
 * catalog.h - the rows of chunks and packs in the index: where each
 * chunk's sealed record lives (pack, offset, lengths) and which packs
 * exist and are finished (docs/FORMAT.md §9.7, §9.8); pack_trash, the
 * packs the index forgot whose files are still to be removed (§9.9); and
 * pack_verified, when each pack was last read whole (§9.12).
 * The only SQL about these tables.
 *
 * chunk.refs counts the extent rows that name a chunk; the namespace,
 * which owns the extents, keeps it (fs/namespace.h), and a chunk whose
 * refs is 0 is garbage for the GC.
 */
#ifndef TRESOR_CATALOG_H
#define TRESOR_CATALOG_H

#include <stddef.h>
#include <stdint.h>
#include "crypto.h"
#include "index.h"
#include "pack.h"

struct chunk_loc {
	int64_t rowid;
	int64_t pack;		/* pack rowid */
	struct pack_entry e;	/* id, off, slen, rlen, flags */
	int64_t refs;
};

enum pack_state { PACK_OPEN = 0, PACK_FINISHED = 1 };

/* Chunks.  find and get: -ENOENT if there is no such row. */
int catalog_chunk_find(struct index *ix, const uint8_t id[CHUNK_ID_LEN],
		       struct chunk_loc *c);
int catalog_chunk_get(struct index *ix, int64_t rowid, struct chunk_loc *c);
/* Insert c (refs 0) and set c->rowid. */
int catalog_chunk_insert(struct index *ix, struct chunk_loc *c);
/* Point a chunk at a new location (the GC rewriting a pack). */
int catalog_chunk_move(struct index *ix, int64_t rowid, int64_t pack,
		       uint64_t off);

/* How many chunk rows there are, and the sum of their plain lengths. */
int catalog_chunk_totals(struct index *ix, uint64_t *count, uint64_t *rlen);
/* Call fn for each chunk row with after < id <= upto, by id, until it
 * returns nonzero; returns that, or 0, or -errno.  fn may use the index
 * but not change the chunk table. */
typedef int (*catalog_chunk_fn)(void *arg, int64_t id, uint64_t rlen,
				int64_t pack);
int catalog_chunk_each(struct index *ix, int64_t after, int64_t upto,
		       catalog_chunk_fn fn, void *arg);

/* Packs. */
int catalog_pack_insert(struct index *ix, const uint8_t name[PACK_NAME_LEN],
			int64_t *rowid);
int catalog_pack_finished(struct index *ix, int64_t rowid, uint64_t size);
int catalog_pack_name(struct index *ix, int64_t rowid,
		      uint8_t name[PACK_NAME_LEN]);
/* The size a finished pack has (0 while open). */
int catalog_pack_size(struct index *ix, int64_t rowid, uint64_t *size);
/* Rowids of packs in the given state; *ids malloc'd. */
int catalog_pack_list(struct index *ix, int state, int64_t **ids, size_t *n);
/* All chunk records of a pack, by offset; *cs malloc'd. */
int catalog_pack_chunks(struct index *ix, int64_t pack, struct chunk_loc **cs,
			size_t *n);

/* What the GC asks; gc.c decides what to do with it. */
struct catalog_garbage {
	int64_t pack;
	int64_t dead;		/* sealed bytes of its chunks with refs 0 */
	int64_t chunks;		/* how many those are */
	int64_t size;		/* the pack's size */
};
/* A finished pack smaller than the GC's merge bound (gc.c). */
struct catalog_small {
	int64_t pack;
	int64_t size;		/* the pack file's size */
	int64_t live;		/* sealed bytes of its chunks with refs > 0 */
};
/* Finished packs smaller than below bytes, oldest first; *ps malloc'd. */
int catalog_small_packs(struct index *ix, int64_t below, struct catalog_small **ps,
			size_t *n);
/* Finished packs holding garbage; *gs malloc'd. */
int catalog_garbage_packs(struct index *ix, struct catalog_garbage **gs,
			  size_t *n);
/* How many chunks of pack something still names (refs > 0). */
int catalog_pack_live(struct index *ix, int64_t pack, int64_t *live);
/* Forget a pack: its row and its garbage chunk rows. */
int catalog_pack_delete(struct index *ix, int64_t pack);
/* pack_trash rows whose file is not yet removed here; *names malloc'd. */
int catalog_trash_pending(struct index *ix, uint8_t (**names)[PACK_NAME_LEN],
			  size_t *n);
/* The file of a trashed pack is gone here. */
int catalog_trash_local_done(struct index *ix, const uint8_t name[PACK_NAME_LEN]);
/* Drop a pack_trash row: a GC rewrite's new pack is in the index now. */
int catalog_trash_remove(struct index *ix, const uint8_t name[PACK_NAME_LEN]);

/* Queue a pack file for removal (pack_trash, FORMAT.md §9.9): time in
 * ns, 0 for a pack a GC rewrite is about to create. */
int catalog_trash_add(struct index *ix, const uint8_t name[PACK_NAME_LEN],
		      int64_t time);

/* 1 if the index has a pack row named name, 0 if not, -errno. */
int catalog_pack_exists(struct index *ix, const uint8_t name[PACK_NAME_LEN]);
/* cb(arg, rowid, pack, offset) for each chunk whose pack has no row (a
 * damaged index); 0 or -errno. */
int catalog_chunks_packless(struct index *ix,
			    void (*cb)(void *arg, int64_t chunk, int64_t pack,
				       uint64_t off),
			    void *arg);

/* When packs were last read whole and authenticated (pack_verified,
 * FORMAT.md §9.12; times in ns). */
struct catalog_pack_count {
	int64_t pack;
	uint64_t chunks, rlen;	/* its chunk rows, the sum of their rlen */
};
/* Every finished pack with its chunk rows' count and plain bytes, by
 * pack id; *ps malloc'd. */
int catalog_pack_counts(struct index *ix, struct catalog_pack_count **ps,
			size_t *n);
/* Finished packs not verified since before (never verified first, then
 * the oldest); *ids malloc'd. */
int catalog_packs_due(struct index *ix, int64_t before, int64_t **ids,
		      size_t *n);
/* Pack rowid was read whole and authenticated at time. */
int catalog_pack_verified(struct index *ix, int64_t pack, int64_t time);
/* Forget the times of packs the index no longer has (an older tresor's
 * GC does not remove them). */
int catalog_verified_prune(struct index *ix);
/* Of the finished packs: how many were never verified, and the oldest
 * time of those that were (0 if none). */
int catalog_verified_oldest(struct index *ix, uint64_t *never,
			    int64_t *oldest);

/* 1 if a pack the index says is open holds chunks (a writer is running
 * that was not frozen), 0 if none, -errno. */
int catalog_pack_open_used(struct index *ix);

#endif
