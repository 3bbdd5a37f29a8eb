/*
 * damage.c - files and views a damaged pack or chunk affects (damage.h):
 * the rows come from the namespace (ns_check.c), the lines are made here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "damage.h"
#include "ns_check.h"

void damage_path(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		 char *buf, size_t size)
{
	/* Built backwards from the end of path: names are prepended. */
	char path[4096], name[512];
	size_t pos = sizeof(path) - 1;
	path[pos] = 0;
	uint64_t cur = ino;
	/* A bound on depth stops a cycle in a damaged index. */
	for (int depth = 0; cur != ROOT_INO && depth < 256; depth++) {
		uint64_t parent;
		if (ns_dentry_of(ix, vol, view, cur, &parent, name, sizeof(name))) {
			snprintf(buf, size, "(inode %llu, no name)", (unsigned long long)ino);
			return;
		}
		size_t len = strlen(name);
		if (len + 1 > pos)
			break;	/* too deep to show whole: keep the tail */
		pos -= len;
		memcpy(path + pos, name, len);
		path[--pos] = '/';
		cur = parent;
	}
	snprintf(buf, size, "%s", path[pos] ? path + pos : "/");
}

static int hit_cmp(const void *a, const void *b)
{
	const struct ns_extent_use *x = a, *y = b;
	if (x->vol != y->vol)
		return x->vol < y->vol ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return (x->birth > y->birth) - (x->birth < y->birth);
}

/* One file: its rows hs[0..n) (same vol, ino) -> one line. */
static void report_file(struct index *ix, const struct ns_extent_use *hs, size_t n,
			damage_cb cb, void *arg)
{
	char line[8192], path[4096], vname[256] = "?";
	int live = 0;
	for (size_t i = 0; i < n; i++)
		live |= hs[i].death == EPOCH_ALIVE;
	struct volume_info *vis = NULL;
	size_t nv = 0;
	if (!ns_volume_list(ix, &vis, &nv))
		for (size_t i = 0; i < nv; i++)
			if (vis[i].id == hs[0].vol)
				snprintf(vname, sizeof(vname), "%s", vis[i].name);
	free(vis);
	struct snapshot_info *ss = NULL;
	size_t ns = 0;
	ns_snapshot_list(ix, hs[0].vol, &ss, &ns);
	size_t len = 0;
	char snaps[4096] = "";
	int64_t view = live ? VIEW_LIVE : -1;
	size_t nsnap = 0;
	for (size_t s = 0; s < ns; s++) {
		int in = 0;
		for (size_t i = 0; i < n && !in; i++)
			in = hs[i].birth <= ss[s].epoch && ss[s].epoch < hs[i].death;
		if (!in)
			continue;
		if (view < 0)
			view = ss[s].epoch;
		nsnap++;
		if (len < sizeof(snaps) - 300)
			len += snprintf(snaps + len, sizeof(snaps) - len, "%s%s",
					nsnap > 1 ? ", " : "", ss[s].name);
	}
	free(ss);
	if (view < 0)
		view = hs[0].birth;	/* in no view: a row pruning left */
	damage_path(ix, hs[0].vol, view, hs[0].ino, path, sizeof(path));
	snprintf(line, sizeof(line), "volume %.255s: %.3000s (%s%s%s%.4000s)", vname, path,
		 live ? "live" : "", live && nsnap ? "; " : "",
		 nsnap ? (nsnap > 1 ? "snapshots " : "snapshot ") : "",
		 nsnap ? snaps : (live ? "" : "in no snapshot"));
	cb(arg, line);
}

int damage_affected(struct index *ix, int64_t pack_id, int64_t chunk_id,
		    size_t max, damage_cb cb, void *arg, size_t *files)
{
	struct ns_extent_use *hs;
	size_t n;
	int err = ns_extent_uses(ix, pack_id, chunk_id, &hs, &n);
	if (n)
		qsort(hs, n, sizeof(*hs), hit_cmp);
	size_t nfiles = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && hs[j].vol == hs[i].vol && hs[j].ino == hs[i].ino)
			j++;
		if (nfiles < max)
			report_file(ix, hs + i, j - i, cb, arg);
		nfiles++;
		i = j;
	}
	if (nfiles > max) {
		char line[128];
		snprintf(line, sizeof(line), "... and %zu more file(s)", nfiles - max);
		cb(arg, line);
	}
	free(hs);
	if (files)
		*files = nfiles;
	return err;
}

/* Keep the first unsafe entry and stop. */
struct first_name {
	int64_t *vol;
	uint64_t *parent;
	char *name;
	size_t size;
};

static int keep_first(void *arg, int64_t vol, uint64_t parent, int64_t birth,
		      const char *name)
{
	struct first_name *f = arg;
	(void)birth;
	*f->vol = vol;
	*f->parent = parent;
	snprintf(f->name, f->size, "%s", name);
	return 1;
}

int damage_unsafe_name(struct index *ix, int64_t *vol, uint64_t *parent,
		       char *name, size_t size)
{
	struct first_name f = { vol, parent, name, size };
	return ns_unsafe_names(ix, keep_first, &f);
}

int damage_check_names(struct index *ix, char *why, size_t size)
{
	int64_t vol;
	uint64_t parent;
	char name[300];
	int r = damage_unsafe_name(ix, &vol, &parent, name, sizeof(name));
	if (r == 1) {
		snprintf(why, size, "meta/ (an entry named '%.64s' in directory inode %llu of volume %lld)",
			 name, (unsigned long long)parent, (long long)vol);
		return -EUCLEAN;
	}
	return r;
}
