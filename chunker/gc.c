/*
 * gc.c - pack garbage collection (see gc.h): the policy; the rows it
 * reads and deletes are catalog.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "gc.h"
#include "util.h"

/* Unlink the files of packs in pack_trash not yet removed locally: the
 * index forgot them in a committed transaction (I3, docs/DESIGN.md). */
static int empty_trash(struct store *st)
{
	uint8_t (*names)[PACK_NAME_LEN];
	size_t n;
	int err = catalog_trash_pending(st->ix, &names, &n);
	for (size_t i = 0; i < n && !err; i++) {
		char *path = store_pack_path(st, names[i]);
		if (!path) {
			err = -ENOMEM;
			break;
		}
		if (unlink(path) && errno != ENOENT)
			err = -errno;
		free(path);
		if (!err)
			err = catalog_trash_local_done(st->ix, names[i]);
	}
	free(names);
	return err;
}

/* Forget pack id in the index and queue its file for removal. */
static int trash_pack(struct store *st, int64_t pack)
{
	uint8_t name[PACK_NAME_LEN];
	int err = catalog_pack_name(st->ix, pack, name);
	if (err)
		return err;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	err = catalog_trash_add(st->ix, name, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
	return err ? err : catalog_pack_delete(st->ix, pack);
}

/* Bytes a pack file takes on disk (its padding is a hole), or 0. */
static uint64_t pack_disk_bytes(struct store *st, const uint8_t name[PACK_NAME_LEN])
{
	char *path = store_pack_path(st, name);
	struct stat sb;
	uint64_t b = path && !stat(path, &sb) ? (uint64_t)sb.st_blocks * 512 : 0;
	free(path);
	return b;
}

/* 0 if the file of pack name is absent (a lazy store need not hold it);
 * 1 otherwise, also when unsure (the rewrite then reports the error). */
static int pack_is_local(struct store *st, const uint8_t name[PACK_NAME_LEN])
{
	char *path = store_pack_path(st, name);
	if (!path)
		return 1;
	struct stat sb;
	int absent = stat(path, &sb) && errno == ENOENT;
	free(path);
	return !absent;
}

/* Copy the live chunks of pack into the GC's new pack, started (named
 * newname, *have_new set) at the first one; sealed bytes as they are: a
 * record does not depend on the pack it is in.  Inside the caller's
 * transaction. */
static int copy_live(struct store *st, int64_t pack, uint8_t newname[PACK_NAME_LEN],
		     int *have_new)
{
	struct chunk_loc *cs = NULL;
	size_t n = 0;
	uint8_t name[PACK_NAME_LEN];
	int err = catalog_pack_name(st->ix, pack, name);
	if (!err)
		err = catalog_pack_chunks(st->ix, pack, &cs, &n);
	char *path = err ? NULL : store_pack_path(st, name);
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (!err && fd < 0)
		err = path ? -errno : -ENOMEM;
	uint8_t *buf = NULL;
	size_t bufcap = 0;
	for (size_t i = 0; i < n && !err; i++) {
		if (cs[i].refs == 0)
			continue;
		if (!st->pw) {
			err = store_new_gc_pack(st, newname);
			if (err)
				break;
			*have_new = 1;
		}
		uint8_t *nb = buf_grow(buf, &bufcap, cs[i].e.slen, 1);
		if (!nb) {
			err = -ENOMEM;
			break;
		}
		buf = nb;
		err = pread_full(fd, buf, cs[i].e.slen, cs[i].e.off);
		if (err)
			break;
		struct sealed_chunk sc = { .e = cs[i].e, .buf = buf };
		err = store_chunk_move(st, &sc, cs[i].rowid);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	free(cs);
	free(path);
	return err;
}

/* Finish the new pack (durable before the index names its records) and
 * take it out of pack_trash, then trash the n old packs.  Inside the
 * caller's transaction. */
static int replace_packs(struct store *st, const int64_t *old, size_t n,
			 const uint8_t newname[PACK_NAME_LEN], int have_new,
			 uint64_t *newbytes)
{
	int err = store_finish_current_pack(st);
	crash_point("gc-rewrite");
	if (!err && have_new)
		*newbytes = pack_disk_bytes(st, newname);
	if (!err && have_new)
		err = catalog_trash_remove(st->ix, newname);
	for (size_t i = 0; i < n && !err; i++)
		err = trash_pack(st, old[i]);
	return err;
}

/* Copy the live chunks of pack into a new pack, then trash the old one.
 * Inside the caller's transaction. */
static int rewrite_pack(struct store *st, int64_t pack, uint64_t *newbytes)
{
	uint8_t newname[PACK_NAME_LEN];
	int have_new = 0;
	int err = copy_live(st, pack, newname, &have_new);
	return err ? err : replace_packs(st, &pack, 1, newname, have_new, newbytes);
}

/*
 * Small packs: every push finishes the pack being written, so hourly
 * pushes leave a pack of a few KiB padded to PACK_PAD each hour (issue 18).
 * Once GC_MERGE_MIN finished packs under GC_MERGE_BELOW are here, their
 * live chunks go into one new pack (up to the pack target of live bytes
 * each) in one transaction, and the old ones are trashed, exactly as a
 * rewrite does; the next push uploads the new pack and deletes the old
 * ones on the remote after the grace.  A merged pack above the bound is
 * never merged again, so what is copied over time stays bounded.
 */
#define GC_MERGE_BELOW (1 << 20)
#define GC_MERGE_MIN 8

static int merge_group(struct store *st, const struct catalog_small *ps, size_t n,
		       struct gc_result *res)
{
	int64_t *ids = calloc(n, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	uint8_t newname[PACK_NAME_LEN];
	int have_new = 0;
	uint64_t before = 0, after = 0;
	int err = index_begin(st->ix);
	for (size_t i = 0; i < n && !err; i++) {
		uint8_t name[PACK_NAME_LEN];
		ids[i] = ps[i].pack;
		if (!catalog_pack_name(st->ix, ps[i].pack, name))
			before += pack_disk_bytes(st, name);
		err = copy_live(st, ps[i].pack, newname, &have_new);
	}
	if (!err)
		err = replace_packs(st, ids, n, newname, have_new, &after);
	if (!err)
		err = store_commit(st);
	if (err)
		index_rollback(st->ix);
	free(ids);
	if (err)
		return err;
	res->packs_merged += n;
	res->bytes_freed += before > after ? before - after : 0;
	return 0;
}

static int gc_merge_small(struct store *st, struct gc_result *res)
{
	struct catalog_small *ps = NULL;
	size_t n = 0, keep = 0;
	int err = catalog_small_packs(st->ix, GC_MERGE_BELOW, &ps, &n);
	for (size_t i = 0; i < n && !err; i++) {
		uint8_t name[PACK_NAME_LEN];
		/* a lazy store's packs not here stay as they are */
		if (ps[i].live > 0 && !catalog_pack_name(st->ix, ps[i].pack, name) &&
		    pack_is_local(st, name))
			ps[keep++] = ps[i];
	}
	uint64_t target = st->pack_target ? st->pack_target : STORE_PACK_TARGET;
	for (size_t from = 0; !err && keep >= GC_MERGE_MIN && from < keep;) {
		size_t to = from;
		uint64_t live = 0;
		while (to < keep && (to == from || live + (uint64_t)ps[to].live <= target))
			live += (uint64_t)ps[to++].live;
		if (to - from >= 2)
			err = merge_group(st, ps + from, to - from, res);
		from = to;
	}
	free(ps);
	return err;
}

/* The GC's lock file, held (flock) until closed; -EBUSY if another GC
 * holds it. */
static int gc_lock(struct store *st)
{
	int fd = store_lock(st->dir, "gc", 0);
	return fd == -EWOULDBLOCK ? -EBUSY : fd;
}

/* Finished packs holding enough garbage to be worth a rewrite (the rest
 * stays reclaimable until it is). */
static int gc_plan(struct store *st, struct catalog_garbage **gs, size_t *n)
{
	int err = catalog_garbage_packs(st->ix, gs, n);
	size_t keep = 0;
	for (size_t i = 0; i < *n && !err; i++)
		if ((*gs)[i].dead * 100 >= (*gs)[i].size * GC_REWRITE_PERCENT)
			(*gs)[keep++] = (*gs)[i];
	if (!err)
		*n = keep;
	return err;
}

/* Collect one pack in a transaction of its own, if it belongs to this
 * pass (empty: the packs with nothing live).  1 if it does not, or is
 * kept because a lazy store lacks its file. */
static int gc_pack(struct store *st, const struct catalog_garbage *g,
		   int empty, int lazy, struct gc_result *res)
{
	int64_t live = -1;
	int err = index_begin(st->ix);
	if (!err)
		err = catalog_pack_live(st->ix, g->pack, &live);
	if (!err && (live == 0) != empty) {
		index_rollback(st->ix);
		return 1;
	}
	uint8_t oldname[PACK_NAME_LEN];
	uint64_t before = 0, after = 0;
	int named = !err && !catalog_pack_name(st->ix, g->pack, oldname);
	if (named)
		before = pack_disk_bytes(st, oldname);
	/* A rewrite reads the pack; one not here is never rewritten from
	 * nothing.  Dropping a wholly dead one needs no file. */
	if (named && live > 0 && !pack_is_local(st, oldname)) {
		index_rollback(st->ix);
		if (lazy) {
			res->packs_not_local++;
			res->bytes_not_local += g->dead;
			return 1;
		}
		hex_encode(oldname, PACK_NAME_LEN, res->failed);
		return -ENOENT;
	}
	if (!err)
		err = live == 0 ? trash_pack(st, g->pack)
				: rewrite_pack(st, g->pack, &after);
	if (!err)
		err = store_commit(st);
	if (err) {
		index_rollback(st->ix);
		return err;
	}
	res->chunks_freed += g->chunks;
	/* What the disk gives back: the old file less the new one. */
	res->bytes_freed += before > after ? before - after : 0;
	if (live == 0)
		res->packs_deleted++;
	else
		res->packs_rewritten++;
	return 0;
}

int store_gc(struct store *st, struct gc_result *res)
{
	memset(res, 0, sizeof(*res));
	int lfd = gc_lock(st);
	if (lfd < 0)
		return lfd;
	int err = empty_trash(st);
	int64_t lazy = 0;
	index_meta_get(st->ix, "lazy", &lazy);
	struct catalog_garbage *gs = NULL;
	size_t np = 0;
	if (!err)
		err = gc_plan(st, &gs, &np);
	/* One transaction per pack, so a running daemon waits briefly.  Two
	 * passes: packs with nothing live go first and their files are
	 * removed before any rewrite, so on a full disk the space they give
	 * back is there for the rewrites (which write before they free). */
	for (size_t k = 0; k < 2 * np && !err; k++) {
		if (k == np)
			err = empty_trash(st);
		if (!err)
			err = gc_pack(st, &gs[k % np], k < np, lazy, res);
		if (err == 1)
			err = 0;
	}
	if (!err)
		err = gc_merge_small(st, res);
	crash_point("gc-trash");
	if (!err)
		err = empty_trash(st);
	free(gs);
	close(lfd);
	return err;
}
