/*
 * prune.c - a retention policy applied to a volume's snapshots (prune.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"

int prune_plan(struct index *ix, int64_t vol, const struct retention_policy *keep,
	       struct prune_plan *p)
{
	memset(p, 0, sizeof(*p));
	int err = ns_snapshot_list(ix, vol, &p->snaps, &p->n);
	if (err)
		return err;
	p->rs = calloc(p->n ? p->n : 1, sizeof(*p->rs));
	if (!p->rs) {
		prune_plan_free(p);
		return -ENOMEM;
	}
	for (size_t i = 0; i < p->n; i++) {
		p->rs[i].name = p->snaps[i].name;
		p->rs[i].time_ns = p->snaps[i].time;
		p->rs[i].pinned = p->snaps[i].pinned;
	}
	err = retention_apply(keep, p->rs, p->n);
	if (err) {
		prune_plan_free(p);
		return err;
	}
	for (size_t i = 0; i < p->n; i++)
		p->removed += !p->rs[i].keep;
	return 0;
}

void prune_plan_free(struct prune_plan *p)
{
	free(p->rs);
	free(p->snaps);
	memset(p, 0, sizeof(*p));
}

int prune_delete(struct index *ix, const struct prune_plan *p,
		 void (*progress)(void *parg, uint64_t done, uint64_t total),
		 void *parg)
{
	int err = 0;
	uint64_t gone = 0;
	for (size_t i = 0; i < p->n && !err; i++) {
		if (p->rs[i].keep)
			continue;
		if (progress)
			progress(parg, gone++, p->removed);
		int64_t rows = 0;
		err = index_begin(ix);
		if (!err)
			err = ns_snapshot_delete(ix, p->snaps[i].id, &rows);
		if (!err)
			err = index_commit(ix);
		else
			index_rollback(ix);
	}
	return err;
}
