/*
 * vfs.c - a mounted volume as a whole: opening and closing it (its lock,
 * the orphans a crash left), the commits that make its buffered state
 * durable (and the thread that runs them), inode numbers, and snapshots
 * of it while it is mounted.  The nodes and the file data path are in
 * node.c; locking is described in vfs.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../chunker/buf.h"
#include "view.h"
#include "../chunker/util.h"
#include "vfs.h"

#define INO_BATCH 1024

int64_t vfs_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t vfs_alloc_ino(struct vfs *v, int *err)
{
	if (v->vol.next_ino >= INO_LIVE_MAX - 1) {
		*err = -ENOSPC;	/* the kernel's numbers would collide */
		return 0;
	}
	if (v->vol.next_ino >= v->ino_reserved) {
		uint64_t upto = v->vol.next_ino + INO_BATCH;
		*err = index_begin(v->st->ix);
		if (!*err)
			*err = ns_volume_set_next_ino(v->st->ix, v->vol.id,
							 upto);
		if (*err)
			return 0;
		v->ino_reserved = upto;
	}
	*err = 0;
	return v->vol.next_ino++;
}

static int persist_dirty(struct vfs *v, struct node *n, void *arg)
{
	(void)arg;
	return n->attr_dirty ? node_persist(v, n) : 0;
}

struct pinned {
	int (*want)(const struct node *n);
	struct node **ns;
	size_t count, cap;
};

static int pin_one(struct vfs *v, struct node *n, void *arg)
{
	struct pinned *pl = arg;
	if (!pl->want(n))
		return 0;
	void *p = buf_grow(pl->ns, &pl->cap, pl->count + 1, sizeof(*pl->ns));
	if (!p)
		return -ENOMEM;
	pl->ns = p;
	int err = node_pin(v, n);
	if (!err)
		pl->ns[pl->count++] = n;
	return err;
}

/* Pin every hot node want() picks (lock held), so that its data lock
 * can be taken and held with the big lock released. */
static int pin_nodes(struct vfs *v, int (*want)(const struct node *),
		     struct pinned *pl)
{
	memset(pl, 0, sizeof(*pl));
	pl->want = want;
	return node_hot_walk(v, pin_one, pl);
}

/* Drop the pins of pin_nodes (lock held, no dlock held). */
static void unpin_nodes(struct vfs *v, struct pinned *pl)
{
	for (size_t i = 0; i < pl->count; i++) {
		pl->ns[i]->nopen--;
		node_maybe_free(v, pl->ns[i]);
	}
	free(pl->ns);
	pl->ns = NULL;
	pl->count = 0;
}

static int has_ranges(const struct node *n)
{
	return n->d && n->d->nranges;
}

static int may_get_data(const struct node *n)
{
	return n->nopen || (n->d && n->d->dirty_bytes);
}

int vfs_commit(struct vfs *v)
{
	if (v->readonly)
		return 0;
	int err = node_hot_walk(v, persist_dirty, NULL);
	/* A lazy store the daemon has completed (-o fill) is whole now. */
	if (!err && v->st->fetch && v->st->fetch_take_filled(v->st->fetch)) {
		err = index_begin(v->st->ix);
		if (!err)
			err = index_meta_set(v->st->ix, "lazy", 0);
		if (!err)
			tlog(LOG_INFO, "volume %s: every pack of store %s is local now",
			     v->vol.name, v->st->dir);
	}
	if (!err)
		err = store_commit(v->st);
	if (err) {
		v->commit_errors++;
		tlog(LOG_ERR, "volume %s: commit failed: %s", v->vol.name,
		     strerror(-err));
	}
	return err;
}

int vfs_pack_wanted(void *arg, const uint8_t name[PACK_NAME_LEN])
{
	struct vfs *v = arg;
	pthread_mutex_lock(&v->lock);
	int r = catalog_pack_exists(v->st->ix, name);
	pthread_mutex_unlock(&v->lock);
	return r != 0;	/* in doubt, fetch: a stray pack costs only space */
}

static void *committer_main(void *arg)
{
	struct vfs *v = arg;
	pthread_mutex_lock(&v->lock);
	while (!v->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&v->stop_cond, &v->lock, &ts);
		if (!v->stopping)
			vfs_commit(v);
	}
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

int vfs_start_committer(struct vfs *v)
{
	int err = pipeline_start(v, v->nworkers_wanted);
	if (err || v->readonly)
		return err;
	return -pthread_create(&v->committer, NULL, committer_main, v);
}

/* Take the volume's lock file, so one volume has one daemon at a time. */
static int volume_lock(struct vfs *v)
{
	int fd = vfs_volume_lock(v->st->dir, v->vol.id, v->readonly);
	if (fd < 0)
		return fd == -EWOULDBLOCK ? -EBUSY : fd;
	v->lockfd = fd;
	return 0;
}

int vfs_volume_lock(const char *dir, int64_t vol, int shared)
{
	char name[32];
	snprintf(name, sizeof(name), "volume-%lld", (long long)vol);
	return store_lock(dir, name, shared);
}

/* End inodes that were unlinked while open when the daemon died. */
static int reap_orphans(struct vfs *v)
{
	uint64_t *inos;
	size_t n;
	int err = ns_orphan_list(v->st->ix, v->vol.id, &inos, &n);
	if (err || !n) {
		free(inos);
		return err;
	}
	err = index_begin(v->st->ix);
	for (size_t i = 0; i < n && !err; i++) {
		err = ns_inode_kill(v->st->ix, v->vol.id, v->vol.epoch, inos[i]);
		if (err == -ENOENT)
			err = 0;
		if (!err)
			err = ns_orphan_remove(v->st->ix, v->vol.id, inos[i]);
	}
	free(inos);
	return err ? err : store_commit(v->st);
}

int vfs_open(struct vfs *v, struct store *st, const char *volume, int readonly,
	     int adopted)
{
	memset(v, 0, sizeof(*v));
	v->st = st;
	v->readonly = readonly;
	v->lockfd = -1;
	v->nworkers_wanted = 2;
	pthread_mutex_init(&v->lock, NULL);
	pthread_mutex_init(&v->snap_lock, NULL);
	pthread_cond_init(&v->stop_cond, NULL);
	pthread_mutex_init(&v->defer_lock, NULL);
	pthread_cond_init(&v->defer_cond, NULL);
	int err = ns_volume_find(st->ix, volume, &v->vol);
	if (err)
		return err;
	err = volume_lock(v);
	if (err)
		return err;
	v->ino_reserved = v->vol.next_ino;
	v->xattrs_maybe = ns_xattr_any(st->ix, v->vol.id) != 0;
	v->adopted = adopted;
	if (!readonly) {
		err = store_finish_orphans(st);
		if (err > 0)
			tlog(LOG_INFO, "store %s: finished %d pack(s) left open by a crash",
			     st->dir, err);
		if (err >= 0 && !adopted)
			err = reap_orphans(v);
	}
	int e2 = 0;
	struct node *root = err < 0 ? NULL : node_get(v, ROOT_INO, &e2);
	if (!err && e2)
		err = e2;
	if (root)
		root->nlookup = 1;
	return err < 0 ? err : 0;
}

int vfs_close(struct vfs *v)
{
	if (v->committer) {
		pthread_mutex_lock(&v->lock);
		v->stopping = 1;
		pthread_cond_signal(&v->stop_cond);
		pthread_mutex_unlock(&v->lock);
		pthread_join(v->committer, NULL);
	}
	struct pinned pl;
	pthread_mutex_lock(&v->lock);
	int err = pin_nodes(v, has_ranges, &pl);
	pthread_mutex_unlock(&v->lock);
	for (size_t i = 0; i < pl.count; i++) {
		struct node *n = pl.ns[i];
		pthread_mutex_lock(&n->d->dlock);
		int e = node_flush(v, n);
		pthread_mutex_unlock(&n->d->dlock);
		if (e && !err)
			err = e;
	}
	pthread_mutex_lock(&v->lock);
	unpin_nodes(v, &pl);
	pthread_mutex_unlock(&v->lock);
	pipeline_stop(v);
	pthread_mutex_lock(&v->lock);
	int e = vfs_commit(v);
	err = err ? err : e;
	for (size_t i = 0; i < v->tabsize; i++) {
		struct node *n = v->tab[i];
		while (n) {
			struct node *next = n->next;
			node_data_free(v, n);
			free(n);
			n = next;
		}
	}
	free(v->tab);
	v->tab = NULL;
	v->tabsize = v->nnodes = 0;
	free(v->hot);
	v->hot = NULL;
	v->nhot = v->hotcap = 0;
	pthread_mutex_unlock(&v->lock);
	if (v->lockfd >= 0)
		close(v->lockfd);
	return err;
}

static int node_ptr_cmp(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(struct node *const *)a;
	uintptr_t y = (uintptr_t)*(struct node *const *)b;
	return x < y ? -1 : x > y;
}

/*
 * The instant of a snapshot: pull in the kernel's dirty pages (syncfs),
 * pin every node that may hold or receive data, hold their data locks,
 * flush them and persist dirty attributes in the open transaction.
 * Returns with snap_lock, the data locks and v->lock held (also on error:
 * snap_end releases them).
 */
static int snap_begin(struct vfs *v, struct pinned *pl)
{
	pthread_mutex_lock(&v->snap_lock);
	/* Writes still in the kernel's page cache come to us first. */
	if (v->mountpoint) {
		int fd = open(v->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			if (syncfs(fd))
				tlog(LOG_WARN, "volume %s: syncfs before snapshot: %s",
				     v->vol.name, strerror(errno));
			close(fd);
		}
	}
	pthread_mutex_lock(&v->lock);
	int err = pin_nodes(v, may_get_data, pl);
	pthread_mutex_unlock(&v->lock);
	struct node **ns = pl->ns;
	size_t n = pl->count;
	/* Address order, as copy_file_range's two (fuse_share.c): the
	 * only places that hold more than one dlock. */
	if (n)	/* ns is NULL when nothing is hot */
		qsort(ns, n, sizeof(*ns), node_ptr_cmp);
	for (size_t i = 0; i < n; i++)
		pthread_mutex_lock(&ns[i]->d->dlock);
	for (size_t i = 0; i < n && !err; i++)
		err = node_flush(v, ns[i]);
	pthread_mutex_lock(&v->lock);
	if (!err)
		err = index_begin(v->st->ix);
	if (!err)
		err = node_hot_walk(v, persist_dirty, NULL);
	return err;
}

/* Release what snap_begin holds. */
static void snap_end(struct vfs *v, struct pinned *pl)
{
	pthread_mutex_unlock(&v->lock);
	for (size_t i = 0; i < pl->count; i++)
		pthread_mutex_unlock(&pl->ns[i]->d->dlock);
	pthread_mutex_lock(&v->lock);
	unpin_nodes(v, pl);
	pthread_mutex_unlock(&v->lock);
	pthread_mutex_unlock(&v->snap_lock);
}

int vfs_snapshot(struct vfs *v, const char *name, int64_t time, int pinned,
		 struct snapshot_info *si)
{
	if (v->readonly)
		return -EROFS;
	struct pinned pl;
	int err = snap_begin(v, &pl);
	crash_point("snapshot");
	if (!err)
		err = ns_snapshot_create(v->st->ix, v->vol.id, name, time, pinned, si);
	if (!err)
		err = store_commit(v->st);
	/* On error the open transaction stays: it holds other changes too,
	 * and the committer retries it. */
	if (!err)
		v->vol.epoch = si->epoch + 1;
	snap_end(v, &pl);
	return err;
}

struct vfs_hold {
	struct pinned pl;
};

int vfs_snapshot_hold(struct vfs *v, int64_t *epoch, struct vfs_hold **out)
{
	if (v->readonly)
		return -EROFS;
	struct vfs_hold *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	int err = snap_begin(v, &h->pl);
	crash_point("snapshot");	/* as vfs_snapshot's: a set's member */
	if (!err)
		err = store_commit(v->st);
	if (err) {
		snap_end(v, &h->pl);
		free(h);
		return err;
	}
	*epoch = v->vol.epoch;
	*out = h;
	return 0;
}

int vfs_snapshot_release(struct vfs *v, struct vfs_hold *h)
{
	/* Whether the holder's transaction committed or not, the index
	 * says which epoch rows are born in now. */
	struct volume_info vi;
	int err = ns_volume_find(v->st->ix, v->vol.name, &vi);
	if (!err && vi.epoch != v->vol.epoch) {
		tlog(LOG_INFO, "volume %s: snapshot set taken, epoch %lld -> %lld",
		     v->vol.name, (long long)v->vol.epoch, (long long)vi.epoch);
		v->vol.epoch = vi.epoch;
	}
	snap_end(v, &h->pl);
	free(h);
	return err;
}
