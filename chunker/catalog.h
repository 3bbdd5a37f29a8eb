/*
 * catalog.h - the rows of chunks and packs in the index: where each
 * chunk's sealed record lives (pack, offset, lengths) and which packs
 * exist and are finished (docs/FORMAT.md §9.7, §9.8).
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

/* Queue a pack file for removal (pack_trash, FORMAT.md §9.9): time in
 * ns, 0 for a pack a GC rewrite is about to create. */
int catalog_trash_add(struct index *ix, const uint8_t name[PACK_NAME_LEN],
		      int64_t time);

/* --- for remote/ --- */

/* 1 if a pack the index says is open holds chunks (a writer is running
 * that was not frozen), 0 if none, -errno. */
int catalog_pack_open_used(struct index *ix);

#endif
