/*
 * verify.h - does the store hold what its catalog says?  Every pack the
 * catalog names exists and, once finished, its authenticated footer lists
 * exactly the chunks the catalog places in it; on request every chunk's
 * record reads and authenticates: all of them, a rotating share (the
 * cursor "check_cursor" is kept in the index's meta), or the packs whose
 * last such reading is older than a given age.  A finished pack whose
 * footer and every chunk record authenticate in a run is noted as
 * verified then (pack_verified, FORMAT.md §9.12).
 *
 * Reads only and repairs nothing, but for the cursor and those notes.  A problem is
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
	/* Time (ns) to note as the packs' verification (verify_data,
	 * verify_due). */
	int64_t now;
	/* Counted as it goes. */
	uint64_t packs, not_local, chunks_read, bytes_read;
	/* verify_due: packs due, and of them read (the others are reported
	 * bad, or not here); after the data is read, finished packs never
	 * verified, and the oldest verification time of the others (0:
	 * none). */
	uint64_t due, due_read, never;
	int64_t oldest;
	/* Its own: packs reported bad or not here, whose chunks verify_data
	 * does not read (again). */
	int64_t *skip;		/* sorted */
	size_t nskip, capskip;
	uint64_t data_total;
	/* Finished packs, by id: chunks read and authenticated this run. */
	struct verify_pack *vp;
	size_t nvp;
};

/* Check every pack the catalog names, the open ones first.  0 when the
 * check ran (problems reported), -errno if it could not. */
int verify_packs(struct verify *v);

/* Read and authenticate every chunk (pct 0 or 100), or pct percent of them
 * from the cursor on, wrapping round, then move the cursor: ceil(100/pct)
 * runs read everything (the one that wraps may read a few chunks twice).
 * Chunks of packs verify_due read are not read again. */
int verify_data(struct verify *v, int pct);

/* Read and authenticate, pack by pack, every finished pack not verified
 * within max_age ns of v->now: never verified first, then the oldest. */
int verify_due(struct verify *v, int64_t max_age);

/* Note as verified at v->now the finished packs read whole without a
 * problem (by verify_due or verify_data), and count never and oldest. */
int verify_note(struct verify *v);

/* Free what v holds. */
void verify_free(struct verify *v);

#endif
