/*
 * prune.c - a retention policy applied to a volume's snapshots (prune.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"

/* Fill p->rs from p->snaps and apply keep, to the entries that are not a
 * set's (those are kept: a set is pruned as one, prune_set_plan). */
static int plan_apply(const struct retention_policy *keep, struct prune_plan *p)
{
	p->rs = calloc(p->n ? p->n : 1, sizeof(*p->rs));
	struct retention_snap *alone = calloc(p->n ? p->n : 1, sizeof(*alone));
	size_t *at = calloc(p->n ? p->n : 1, sizeof(*at));
	int err = p->rs && alone && at ? 0 : -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < p->n && !err; i++) {
		struct retention_snap *r = &p->rs[i];
		r->name = p->snaps[i].name;
		r->time_ns = p->snaps[i].time;
		r->pinned = p->snaps[i].pinned;
		if (p->snaps[i].set_name[0] && !p->set) {
			r->keep = 1;
			snprintf(r->reasons, sizeof(r->reasons), "in snapshot set %s",
				 p->snaps[i].set_name);
			continue;
		}
		at[k] = i;
		alone[k++] = *r;
	}
	if (!err)
		err = retention_apply(keep, alone, k);
	for (size_t j = 0; j < k && !err; j++)
		p->rs[at[j]] = alone[j];
	for (size_t i = 0; i < p->n && !err; i++)
		p->removed += !p->rs[i].keep;
	free(alone);
	free(at);
	if (err)
		prune_plan_free(p);
	return err;
}

int prune_plan(struct index *ix, int64_t vol, const struct retention_policy *keep,
	       struct prune_plan *p)
{
	memset(p, 0, sizeof(*p));
	int err = ns_snapshot_list(ix, vol, &p->snaps, &p->n);
	return err ? err : plan_apply(keep, p);
}

int prune_set_plan(struct index *ix, const char *set,
		   const struct retention_policy *keep, struct prune_plan *p)
{
	memset(p, 0, sizeof(*p));
	p->set = set;
	struct set_snap *ss;
	size_t n;
	int err = ns_set_list(ix, set, &ss, &n);
	if (err)
		return err;
	p->snaps = calloc(n ? n : 1, sizeof(*p->snaps));
	if (!p->snaps)
		err = -ENOMEM;
	for (size_t i = 0; i < n && !err; i++) {
		struct snapshot_info *m;
		size_t nm;
		err = ns_set_members(ix, set, ss[i].name, &m, &nm);
		if (err)
			break;
		/* The set's entry: its name and time; pinned if any member is. */
		p->snaps[i] = m[0];
		for (size_t j = 1; j < nm; j++)
			p->snaps[i].pinned |= m[j].pinned;
		p->snaps[i].time = ss[i].time;
		p->n = i + 1;
		free(m);
	}
	free(ss);
	if (err) {
		prune_plan_free(p);
		return err;
	}
	return plan_apply(keep, p);
}

void prune_plan_free(struct prune_plan *p)
{
	free(p->rs);
	free(p->snaps);
	memset(p, 0, sizeof(*p));
}

/* Delete every member of set snapshot name: one transaction. */
static int delete_set_entry(struct index *ix, const char *set, const char *name)
{
	struct snapshot_info *m;
	size_t nm;
	int err = ns_set_members(ix, set, name, &m, &nm);
	for (size_t j = 0; j < nm && !err; j++)
		err = ns_snapshot_delete(ix, m[j].id, NULL);
	free(m);
	return err == -ENOENT ? 0 : err;	/* gone already: done */
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
		err = index_begin(ix);
		if (!err && p->set)
			err = delete_set_entry(ix, p->set, p->snaps[i].name);
		else if (!err)
			err = ns_snapshot_delete(ix, p->snaps[i].id, NULL);
		if (!err)
			err = index_commit(ix);
		else
			index_rollback(ix);
	}
	return err;
}
