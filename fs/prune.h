/*
 * prune.h - applying a retention policy to a volume's snapshots: which
 * to keep and why (retention.h decides), and deleting the others with
 * every row only they kept.  Space comes back with the store's GC
 * (chunker/gc.h), which the caller runs after.
 */
#ifndef TRESOR_PRUNE_H
#define TRESOR_PRUNE_H

#include <stddef.h>
#include <stdint.h>
#include "namespace.h"
#include "retention.h"

struct prune_plan {
	struct snapshot_info *snaps;	/* oldest first */
	struct retention_snap *rs;	/* rs[i] decides snaps[i] */
	size_t n;
	size_t removed;			/* how many are not kept */
	const char *set;		/* a set's plan (prune_set_plan): snaps[i]
					 * stands for every member of that name */
};

/* Decide for every snapshot of volume vol.  -EINVAL: a policy that keeps
 * nothing; -errno. */
int prune_plan(struct index *ix, int64_t vol, const struct retention_policy *keep,
	       struct prune_plan *p);
/* Snapshots of a set (ns_epoch.h) are the set's business: a volume's plan
 * keeps them ("in snapshot set NAME"), and prune_set_plan decides for the
 * set's snapshots, each standing for all its members (pinned if any
 * member is), which prune_delete then removes together, in one
 * transaction. */
int prune_set_plan(struct index *ix, const char *set,
		   const struct retention_policy *keep, struct prune_plan *p);
void prune_plan_free(struct prune_plan *p);

/* Delete the snapshots p does not keep, each (a set's: with all its
 * members) in a transaction of its own (a prune killed half way leaves
 * whole snapshots and whole sets).  progress(parg, done,
 * total) counts snapshots; may be NULL. */
int prune_delete(struct index *ix, const struct prune_plan *p,
		 void (*progress)(void *parg, uint64_t done, uint64_t total),
		 void *parg);

#endif
