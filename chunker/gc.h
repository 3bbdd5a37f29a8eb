/*
 * gc.h - give space back: delete chunks no extent names any more, rewrite
 * packs that are mostly garbage, remove packs that are all garbage, merge
 * small packs.
 *
 * Safe against a daemon writing at the same time: chunk rows are deleted
 * only where refs = 0 inside a write transaction, and the daemon's mapping
 * of a chunk fails (-ESTALE, then it stores the data again) if the row is
 * gone.  Pack files are unlinked only after the commit that forgets them,
 * through the pack_trash table, so a crash at any point leaves nothing a
 * rerun cannot finish.  Costs in proportion to the garbage, found through
 * the partial index on refs = 0.
 */
#ifndef TRESOR_GC_H
#define TRESOR_GC_H

#include "store.h"

struct gc_result {
	uint64_t chunks_freed, bytes_freed;	/* sealed bytes no longer stored */
	uint64_t packs_deleted, packs_rewritten;
	uint64_t packs_merged;	/* small packs merged into fewer */
	/* Lazy store (FORMAT.md §15.1): packs worth a rewrite that are not
	 * local, kept as they are, and the dead sealed bytes they hold; their
	 * dead chunk rows stay, so the GC after `recover --full` finds them. */
	uint64_t packs_not_local, bytes_not_local;
	/* On an error about one pack: its hex name, else empty. */
	char failed[PACK_NAME_LEN * 2 + 1];
};

/* Rewrite a pack when more than this share of it is garbage. */
#define GC_REWRITE_PERCENT 20

/* Run the GC.  -EBUSY if another GC runs.  In a lazy store a pack the
 * index names but the store does not hold is never read: wholly dead, it
 * leaves the index (its remote copies follow remote_gone); partly dead, it
 * is kept.  In a complete store a missing pack is damage: -ENOENT with
 * res->failed naming it. */
int store_gc(struct store *st, struct gc_result *res);

#endif
