/*
 * push.h - replicate a store to a remote (layout: repo.h, docs/FORMAT.md).
 */
#ifndef TRESOR_PUSH_H
#define TRESOR_PUSH_H

#include "repo.h"

#define PUSH_DEFAULT_JOBS 4
#define PUSH_MAX_JOBS 32
/* Every how many objects a push sends an image of the index with its
 * delta (FORMAT.md §15.5); full deltas always bring one. */
#define PUSH_DEFAULT_IMAGE_EVERY 64

struct push_opts {
	int jobs;			/* packs uploaded at once; 0: 4 */
	uint64_t limit_upload;		/* bytes/s over all jobs, 0 = none */
	int64_t grace_ns;		/* < 0: the remote's own grace */
	int image_every;		/* 0: PUSH_DEFAULT_IMAGE_EVERY; < 0: never */
	/* Called once the consistent read view is taken: the caller thaws
	 * the daemons it froze (may be NULL). */
	void (*after_snapshot)(void *arg);
	void *snapshot_arg;
	/* Bytes of packs sent so far of the total to send (may be NULL);
	 * called from the pushing threads under a lock. */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
};

struct push_result {
	uint64_t packs, pack_bytes;	/* sent now */
	uint64_t packs_skipped;		/* found whole on the remote already */
	uint64_t meta_bytes, records;	/* the delta sent now */
	uint64_t image, image_bytes;	/* the image sent now: its object, bytes */
	uint64_t packs_pending;		/* finished packs not yet there (before) */
	uint64_t deleted;		/* freed packs deleted from the remote now */
	uint64_t awaiting_deletion;	/* freed packs still inside their grace */
	uint64_t retained;		/* Object Lock retentions extended */
	uint64_t meta_deleted;		/* metadata objects and image parts deleted now */
	uint64_t meta_awaiting;		/* newer images whose grace has not passed */
	int jobs;			/* uploads run at once */
	char error[1200];		/* what failed (one line), if anything */
};

/*
 * Push the store to r (configured as c): packs the remote lacks (po->jobs
 * at once, each job on its own connection), then the metadata delta that
 * names them, then note locally what the remote holds.  Packs freed since
 * are scheduled for deletion after the grace period, and deleted once it
 * (and any Object Lock retention) has passed; the retention of packs still
 * in use is extended before it runs out.  Returns 0 or -errno with the
 * message in res->error.
 */
int push_run(struct store *st, struct remote_cfg *c, struct remote *r,
	     const struct push_opts *po, struct push_result *res);

/*
 * Announce on remote r that the store behind c (index ix, keys, dir) now
 * owns its chain: an empty delta flagged REPO_META_TAKEOVER, published
 * create-only after the remote's newest object, continuing meta/parent
 * (header ph).  Every other store's push is refused from then on.  On
 * success c's next_meta and tip say so (the caller notes them).
 * -ESTALE if another store published at the same moment; msg says what
 * failed, one line.
 */
int push_claim(struct index *ix, const struct store_keys *keys, const char *dir,
	       struct remote_cfg *c, struct remote *r, uint64_t parent,
	       const struct repo_meta_hdr *ph, char *msg, size_t msize);

/*
 * `tresor remote takeover`: store st takes the chain on remote c over
 * from whichever store pushed there last (push_claim after the newest
 * delta), and notes it: its next push sends a full image, so nothing of
 * the other store's state mixes in.  *n_out: the takeover object's number.
 */
int push_takeover(struct store *st, struct remote_cfg *c, struct remote *r,
		  uint64_t *n_out, char *msg, size_t msize);

#endif
