/*
 * check.h - verify a store: the index against itself and against the packs.
 *
 * Repairs nothing; reading data, it writes only the cursor and when each
 * pack was verified (FORMAT.md §9.12).  Each problem is reported through a callback
 * as one line naming what is wrong and where, so the tool decides how to
 * show it.
 */
#ifndef TRESOR_CHECK_H
#define TRESOR_CHECK_H

#include "../chunker/store.h"

struct check_opts {
	int read_data;		/* also read and authenticate chunks */
	/* With read_data: read only this percentage of the chunks, from
	 * where the last run stopped (the cursor "check_cursor" is kept in
	 * the index), so 100/N daily runs read everything.  0: all. */
	int read_pct;
	/* With read_data and by_age: read, pack by pack, the finished packs
	 * not verified within max_age ns (never verified first, then the
	 * oldest), and with read_pct its share too, but no other chunk.  Every finished pack read whole without a
	 * problem is noted as verified now (FORMAT.md §9.12). */
	int by_age;
	int64_t max_age;
	/* Files listed per damaged pack or chunk (0: 20). */
	size_t max_files;
	/* Bytes of chunk data read so far / to read (may be NULL). */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
};

struct check_result {
	uint64_t packs, chunks, extents, inodes, problems;
	uint64_t bytes_read, chunks_read;
	uint64_t not_local;	/* packs of a lazy store not fetched yet */
	uint64_t files_affected;
	/* With read_data: packs due by max_age, and of them read (the others
	 * are reported bad, or not here); then finished packs never verified
	 * and the oldest verification of the others (ns, 0: none). */
	uint64_t packs_due, packs_due_read, packs_never;
	int64_t oldest_verified;
};

/* A problem line, or (starting with two spaces) a line saying which file
 * and snapshots the problem above it affects. */
typedef void (*check_report_fn)(void *arg, const char *line);

/* Returns 0 when the check ran (problems counted in res), -errno if it
 * could not run. */
int store_check(struct store *st, const struct check_opts *o,
		check_report_fn report, void *arg, struct check_result *res);

#endif
