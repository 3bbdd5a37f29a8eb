/*
 * verify.h - does the store hold what its catalog says?  Every pack the
 * catalog names exists and, once finished, its authenticated footer lists
 * exactly the chunks the catalog places in it; on request every chunk's
 * record reads and authenticates: all of them, or a rotating share (the
 * cursor "check_cursor" is kept in the index's meta).
 *
 * Reads only and repairs nothing, but for the cursor.  A problem is
 * reported as one line, with the pack or chunk whose data it loses, so the
 * caller can say which files that takes with it.  In a lazy store a
 * finished pack not held here is counted, not a problem.  Open packs held
 * by a running writer are checked only for records past their end.
 */
#ifndef TRESOR_VERIFY_H
#define TRESOR_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include "store.h"

/* A problem line; pack (chunk 0) or chunk (pack 0) whose data is bad, or
 * both 0 when no data is lost. */
typedef void (*verify_problem_fn)(void *arg, const char *line, int64_t pack,
				  int64_t chunk);

struct verify {
	/* Set by the caller. */
	struct store *st;
	verify_problem_fn problem;
	void *arg;
	/* Bytes of chunk data read so far / to read (may be NULL). */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
	/* Counted as it goes. */
	uint64_t packs, not_local, chunks_read, bytes_read;
	/* Its own: packs reported bad or not here, whose chunks verify_data
	 * does not read (again). */
	int64_t *skip;
	size_t nskip, capskip;
	uint64_t data_total;
};

/* Check every pack the catalog names, the open ones first.  0 when the
 * check ran (problems reported), -errno if it could not. */
int verify_packs(struct verify *v);

/* Read and authenticate every chunk (pct 0 or 100), or pct percent of them
 * from the cursor on, wrapping round, then move the cursor: ceil(100/pct)
 * runs read everything (the one that wraps may read a few chunks twice). */
int verify_data(struct verify *v, int pct);

/* Free what v holds. */
void verify_free(struct verify *v);

#endif
