/*
 * push.h - replicate a store to a remote (layout: repo.h, docs/FORMAT.md).
 */
#ifndef TRESOR_PUSH_H
#define TRESOR_PUSH_H

#include "repo.h"

struct push_result {
	uint64_t packs, pack_bytes;	/* sent now */
	uint64_t meta_bytes, records;	/* the delta sent now */
	uint64_t packs_pending;		/* finished packs not yet there (before) */
};

/*
 * Push the store to r (configured as c).  after_snapshot (may be NULL) is
 * called once the consistent read view is taken: the caller thaws the
 * daemons it froze.  Returns 0 or -errno (message in remote_error(r) for
 * remote errors).
 */
int push_run(struct store *st, struct remote_cfg *c, struct remote *r,
	     void (*after_snapshot)(void *), void *arg,
	     struct push_result *res);

#endif
