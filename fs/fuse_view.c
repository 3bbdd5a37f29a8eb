/*
 * fuse_view.c - which view an inode number names (the live tree, the
 * .snapshots directory, or a snapshot), and an inode's attributes, bytes
 * and directory listing there.
 *
 * A snapshot view is the index seen at the snapshot's epoch.  The kernel
 * knows its inodes as SNAP_INO(snapshot id, inode): the same inode in two
 * views gets two numbers, a hard link within one view keeps one.  Owners
 * and modes are the original ones, so the kernel's permission checks apply
 * as they did to the live files.  The operations in fuse_ops.c and
 * fuse_xattr.c take the resolved vino; only the live view has nodes (and
 * unsealed bytes), every other view is read-only and read from the index.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "fuse_int.h"
#include "../chunker/buf.h"
#include "../chunker/util.h"

int vino_resolve(struct vfs *v, fuse_ino_t kino, struct vino *vi)
{
	vi->kino = kino;
	vi->slot = INO_SLOT(kino);
	vi->ino = INO_BASE(kino);
	vi->view = VIEW_LIVE;
	if (!vi->slot || vi->slot == SLOT_SNAPDIR)
		return 0;
	struct snapshot_info si;
	int err = ns_snapshot_get(v->st->ix, (int64_t)vi->slot, &si);
	if (!err && si.vol != v->vol.id)
		err = -ENOENT;
	if (!err)
		vi->view = si.epoch;
	return err;
}

int vino_child(struct vfs *v, const struct vino *dir, const char *name,
	       struct vino *child)
{
	if (!dir->slot && dir->ino == ROOT_INO && !strcmp(name, SNAPDIR_NAME))
		return vino_resolve(v, SNAPDIR_INO, child);
	if (dir->slot == SLOT_SNAPDIR) {
		struct snapshot_info si;
		int err = ns_snapshot_find(v->st->ix, v->vol.id, name, &si);
		if (err)
			return err;
		if (si.id >= (int64_t)SLOT_SNAPDIR)
			return -EOVERFLOW;
		return vino_resolve(v, SNAP_INO(si.id, ROOT_INO), child);
	}
	uint64_t ino = 0;
	int err = ns_dentry_lookup(v->st->ix, v->vol.id, dir->view, dir->ino,
				   name, &ino);
	if (!err) {
		*child = *dir;
		child->ino = ino;
		child->kino = SNAP_INO(dir->slot, ino);
	}
	return err;
}

int vino_attr(struct vfs *v, const struct vino *vi, struct inode_attr *a)
{
	if (vi->slot == SLOT_SNAPDIR) {
		/* .snapshots itself: a directory everyone may enter */
		memset(a, 0, sizeof(*a));
		a->ino = vi->ino;
		a->mode = S_IFDIR | 0555;
		a->nlink = 2;
		return 0;
	}
	if (vi->slot)
		return ns_inode_get(v->st->ix, v->vol.id, vi->view, vi->ino, a);
	int err = 0;
	struct node *n = node_get(v, vi->ino, &err);
	if (n)
		*a = n->attr;
	return err;
}

int vino_stat(struct vfs *v, fuse_ino_t kino, struct vino *vi,
	      struct stat *sb)
{
	struct inode_attr a;
	pthread_mutex_lock(&v->lock);
	int err = vino_resolve(v, kino, vi);
	if (!err)
		err = vino_attr(v, vi, &a);
	if (!err)
		attr_to_stat(v, vi->view, &a, sb);
	pthread_mutex_unlock(&v->lock);
	sb->st_ino = kino;
	return err;
}

struct node *vino_open_node(struct vfs *v, fuse_ino_t kino)
{
	if (INO_SLOT(kino))
		return NULL;
	pthread_mutex_lock(&v->lock);
	struct node *n = node_find(v, kino);
	if (v->adopted && (!n || !n->d)) {
		/* Opened by the process before a handover: open it here as
		 * well (its release closes it).  The kernel sends reads and
		 * writes only for files it holds open. */
		int err = 0;
		n = node_get(v, kino, &err);
		if (n && node_pin(v, n))
			n = NULL;
	}
	if (n && !n->d)
		n = NULL;	/* not open: a stale request */
	pthread_mutex_unlock(&v->lock);
	return n;
}

int vino_read(struct vfs *v, fuse_ino_t kino, char *buf, size_t size,
	      off_t off, size_t *got)
{
	*got = 0;
	if (!INO_SLOT(kino)) {
		/* the live view: a node's unsealed bytes are not in the index */
		struct node *n = vino_open_node(v, kino);
		if (!n)
			return -EBADF;
		pthread_mutex_lock(&n->d->dlock);
		int err = node_read(v, n, buf, size, off, got);
		pthread_mutex_unlock(&n->d->dlock);
		return err;
	}
	struct vino vi;
	struct stat sb;
	int err = vino_stat(v, kino, &vi, &sb);
	if (err || off >= sb.st_size)
		return err;
	if ((off_t)(off + size) > sb.st_size)
		size = sb.st_size - off;
	err = vfs_read_extents(v, vi.view, vi.ino, buf, size, off);
	if (!err)
		*got = size;
	return err;
}

int snapfile_read(struct vfs *v, fuse_ino_t kino, struct snapfile *sf,
		  char *buf, size_t size, off_t off, size_t *got)
{
	*got = 0;
	if ((uint64_t)off >= sf->size)
		return 0;
	if (off + size > sf->size)
		size = sf->size - off;
	/* The map is made once and kept until release (with -o mt, reads
	 * of one handle run in parallel: it is never freed under one). */
	pthread_mutex_lock(&v->lock);
	struct xmap *m = sf->nomap ? NULL : sf->map;
	int err = 0;
	if (!m && !sf->nomap) {
		/* Still there?  A pruned snapshot reads as gone. */
		struct vino vi;
		err = vino_resolve(v, kino, &vi);
		if (!err)
			err = xmap_load(v->st, v->vol.id, sf->view, sf->ino, &m);
		if (!err) {
			__atomic_fetch_add(&v->xmap_loads, 1, __ATOMIC_RELAXED);
			sf->map = m;
		}
	}
	pthread_mutex_unlock(&v->lock);
	if (err)
		return err;
	if (!m)
		return vino_read(v, kino, buf, size, off, got);
	__atomic_fetch_add(&v->fuse_reads, 1, __ATOMIC_RELAXED);
	if (size >= (64u << 10)) {
		uint64_t span = 2ull * v->st->cdc.avg_size, from = off + size;
		pthread_mutex_lock(&v->lock);
		for (size_t i = xmap_find(m, from); i < m->n && m->xs[i].off < from + span; i++)
			pipeline_prefetch(v, &m->refs[i]);
		pthread_mutex_unlock(&v->lock);
	}
	int stale = 0;
	err = view_read_map(v->st, &v->lock, v->vol.id, sf->view, sf->ino,
			    buf, size, off, v->vol.name, m, &stale);
	if (stale) {
		/* A pack went away (GC): resolve as without a map, from now
		 * on (the map stays allocated until release). */
		pthread_mutex_lock(&v->lock);
		sf->nomap = 1;
		pthread_mutex_unlock(&v->lock);
		return vino_read(v, kino, buf, size, off, got);
	}
	if (!err)
		*got = size;
	return err;
}

void snapfile_track(struct vfs *v, struct snapfile *sf)
{
	pthread_mutex_lock(&v->lock);
	sf->prev = NULL;
	sf->next = v->snapfiles;
	if (sf->next)
		sf->next->prev = sf;
	v->snapfiles = sf;
	pthread_mutex_unlock(&v->lock);
}

void snapfile_release(struct vfs *v, struct snapfile *sf)
{
	if (!sf)
		return;
	pthread_mutex_lock(&v->lock);
	if (sf->prev)
		sf->prev->next = sf->next;
	else
		v->snapfiles = sf->next;
	if (sf->next)
		sf->next->prev = sf->prev;
	pthread_mutex_unlock(&v->lock);
	xmap_free(sf->map);
	free(sf);
}

void snapfile_release_all(struct vfs *v)
{
	while (v->snapfiles)
		snapfile_release(v, v->snapfiles);
}

void vfs_inval_snapshot(struct vfs *v, const char *name)
{
	if (!v->se)
		return;
	/* -ENOENT: the kernel has not looked .snapshots up; nothing cached. */
	int err = fuse_lowlevel_notify_inval_entry(v->se, SNAPDIR_INO, name,
						   strlen(name));
	if (!err)
		err = fuse_lowlevel_notify_inval_inode(v->se, SNAPDIR_INO, -1, 0);
	if (err && err != -ENOENT)
		tlog(LOG_DEBUG, "volume %s: invalidating .snapshots/%s: %s",
		     v->vol.name, name, strerror(-err));
}

void attr_to_stat(struct vfs *v, int64_t view, const struct inode_attr *a,
		  struct stat *sb)
{
	memset(sb, 0, sizeof(*sb));
	sb->st_ino = a->ino;
	sb->st_mode = a->mode;
	sb->st_nlink = a->nlink;
	sb->st_uid = a->uid;
	sb->st_gid = a->gid;
	sb->st_size = a->size;
	sb->st_rdev = a->rdev;
	sb->st_blksize = 128 << 10;
	sb->st_blocks = (a->size + 511) / 512;
	/* Holes only matter in big files; a query per stat of every small
	 * file would cost more than it tells. */
	if (S_ISREG(a->mode) && a->size > (4u << 20)) {
		int64_t b = ns_extent_bytes(v->st->ix, v->vol.id, view,
					       a->ino);
		if (b >= 0 && (uint64_t)b < a->size)
			sb->st_blocks = (b + 511) / 512;
	}
	sb->st_atim.tv_sec = a->atime / 1000000000;
	sb->st_atim.tv_nsec = a->atime % 1000000000;
	sb->st_mtim.tv_sec = a->mtime / 1000000000;
	sb->st_mtim.tv_nsec = a->mtime % 1000000000;
	sb->st_ctim.tv_sec = a->ctime / 1000000000;
	sb->st_ctim.tv_nsec = a->ctime % 1000000000;
}

int dirlist_add(void *arg, const char *name, uint64_t ino, uint32_t mode)
{
	struct dirlist *d = arg;
	void *p = buf_grow(d->e, &d->cap, d->n + 1, sizeof(*d->e));
	if (!p)
		return -ENOMEM;
	d->e = p;
	d->e[d->n].name = strdup(name);
	if (!d->e[d->n].name)
		return -ENOMEM;
	d->e[d->n].ino = SNAP_INO(d->slot, ino);
	d->e[d->n].mode = mode;
	d->n++;
	return 0;
}

void dirlist_free(struct dirlist *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->e[i].name);
	free(d->e);
	free(d);
}

int dirlist_load(struct vfs *v, struct dirlist *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->e[i].name);
	d->n = 0;
	if (d->ino == SNAPDIR_INO)
		return snapdir_load(v, d);
	int err = dirlist_add(d, ".", INO_BASE(d->ino), S_IFDIR);
	if (!err)
		err = dirlist_add(d, "..", INO_BASE(d->ino), S_IFDIR);
	if (!err && d->ino == ROOT_INO && v->list_snapshots) {
		err = dirlist_add(d, SNAPDIR_NAME, 0, S_IFDIR);
		if (!err)
			d->e[d->n - 1].ino = SNAPDIR_INO;
	}
	if (!err) {
		pthread_mutex_lock(&v->lock);
		err = ns_dentry_list(v->st->ix, v->vol.id, d->view,
					INO_BASE(d->ino), NULL, dirlist_add, d);
		pthread_mutex_unlock(&v->lock);
	}
	return err;
}

int snapdir_load(struct vfs *v, struct dirlist *d)
{
	struct snapshot_info *s = NULL;
	size_t n = 0;
	int err = dirlist_add(d, ".", 0, S_IFDIR);
	if (!err)
		err = dirlist_add(d, "..", ROOT_INO, S_IFDIR);
	if (!err) {
		d->e[0].ino = SNAPDIR_INO;
		pthread_mutex_lock(&v->lock);
		err = ns_snapshot_list(v->st->ix, v->vol.id, &s, &n);
		pthread_mutex_unlock(&v->lock);
	}
	for (size_t i = 0; i < n && !err; i++) {
		err = dirlist_add(d, s[i].name, 0, S_IFDIR);
		if (!err)
			d->e[d->n - 1].ino = SNAP_INO(s[i].id, ROOT_INO);
	}
	free(s);
	return err;
}
