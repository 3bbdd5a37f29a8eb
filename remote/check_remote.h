/*
 * check_remote.h - does a remote hold what the store pushed to it?
 *
 * Every pack the store recorded as pushed must be there with its size
 * (and, reading data, verify completely); the metadata chain meta/1 ..
 * meta/N-1 must be complete and end where the store's last push ended
 * (a shorter chain is a rollback or a deletion, a longer one another
 * writer); with data, every delta must authenticate under its number.
 * Objects below the newest image may be deleted already (FORMAT.md
 * §15.5).  The newest image's parts (and older images' kept for the
 * grace) must be there; with data, each authenticates and they add up.
 * Reads only.  Problems go one line each to o->report, as store_check's.
 */
#ifndef TRESOR_CHECK_REMOTE_H
#define TRESOR_CHECK_REMOTE_H

#include "repo.h"

struct remote_check_result {
	uint64_t packs, metas, problems;
	uint64_t images, image_parts;	/* images of the index checked, their parts */
	uint64_t not_pushed;	/* packs made since the last push */
	uint64_t bytes_read;
	/* read_data: packs due (by_age: not verified within max_age; else
	 * all), and of them downloaded and verified */
	uint64_t packs_due, packs_due_read;
};

struct remote_check_opts {
	int read_data;		/* download and verify every pack and delta */
	/* With read_data and by_age: download only the packs not verified
	 * there within max_age ns of now (remote_pack.verified, noted for
	 * each pack that verifies); deltas and images are read all the same. */
	int by_age;
	int64_t max_age, now;
	void (*report)(void *arg, const char *line);	/* one problem */
	void *arg;
	void (*progress)(void *parg, uint64_t done, uint64_t total);	/* may be NULL */
	void *parg;
	/* Lines naming the files a missing or damaged pack takes with it (the
	 * namespace's damage_affected, fs/damage.h); NULL: none. */
	int (*affected)(struct index *ix, int64_t pack_id, int64_t chunk_id,
			size_t max, void (*cb)(void *arg, const char *line),
			void *arg, size_t *files);
};

int check_remote(struct store *st, struct remote *r, const struct remote_cfg *cfg,
		 const struct remote_check_opts *o, struct remote_check_result *res);

#endif
