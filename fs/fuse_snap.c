/*
 * fuse_snap.c - snapshots as read-only folders: MOUNT/.snapshots/NAME/.
 *
 * A snapshot view is the index seen at the snapshot's epoch.  The kernel
 * knows its inodes as SNAP_INO(snapshot id, inode): the same inode in two
 * views gets two numbers, a hard link within one view keeps one.  Owners
 * and modes are the original ones, so the kernel's permission checks apply
 * as they did to the live files.  Nothing here writes; every write
 * operation on these inodes answers EROFS in fuse_ops.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "fuse_int.h"
#include "../chunker/util.h"

int snap_view(struct vfs *v, uint64_t slot, int64_t *view)
{
	struct snapshot_info si;
	pthread_mutex_lock(&v->lock);
	int err = ns_snapshot_get(v->st->ix, (int64_t)slot, &si);
	pthread_mutex_unlock(&v->lock);
	if (!err && si.vol != v->vol.id)
		err = -ENOENT;
	if (!err)
		*view = si.epoch;
	return err;
}

/* The attributes of .snapshots itself: a directory everyone may enter. */
static void snapdir_stat(struct vfs *v, struct stat *sb)
{
	memset(sb, 0, sizeof(*sb));
	sb->st_ino = SNAPDIR_INO;
	sb->st_mode = S_IFDIR | 0555;
	sb->st_nlink = 2;
	(void)v;
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

/* Look inode ino of view up; -ENOENT if not visible there. */
static int view_attr(struct vfs *v, uint64_t slot, uint64_t ino,
		     struct stat *sb)
{
	int64_t view;
	int err = snap_view(v, slot, &view);
	if (err)
		return err;
	struct inode_attr a;
	pthread_mutex_lock(&v->lock);
	err = ns_inode_get(v->st->ix, v->vol.id, view, ino, &a);
	if (!err)
		attr_to_stat(v, view, &a, sb);
	pthread_mutex_unlock(&v->lock);
	sb->st_ino = SNAP_INO(slot, ino);
	return err;
}

/* A name in .snapshots is looked up again at every use (entry timeout
 * 0): prune deletes snapshots behind the daemon's back, and a name taken
 * again names a new snapshot with a new id.  Below it, (id, inode) never
 * changes meaning, so the kernel may keep those entries. */
static void reply_snap_entry(fuse_req_t req, const struct stat *sb,
			     double entry_timeout)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = sb->st_ino;
	e.attr = *sb;
	e.attr_timeout = SNAP_TIMEOUT;
	e.entry_timeout = entry_timeout;
	fuse_reply_entry(req, &e);
}

void snap_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vfs *v = V(req);
	struct stat sb;
	int err;
	if (parent == ROOT_INO) {	/* name is .snapshots */
		snapdir_stat(v, &sb);
		reply_snap_entry(req, &sb, SNAP_TIMEOUT);
		return;
	}
	if (parent == SNAPDIR_INO) {
		struct snapshot_info si;
		pthread_mutex_lock(&v->lock);
		err = ns_snapshot_find(v->st->ix, v->vol.id, name, &si);
		pthread_mutex_unlock(&v->lock);
		if (!err && si.id >= (int64_t)SLOT_SNAPDIR)
			err = -EOVERFLOW;
		if (!err)
			err = view_attr(v, si.id, ROOT_INO, &sb);
	} else {
		uint64_t slot = INO_SLOT(parent), ino = 0;
		int64_t view;
		err = snap_view(v, slot, &view);
		if (!err) {
			pthread_mutex_lock(&v->lock);
			err = ns_dentry_lookup(v->st->ix, v->vol.id, view,
						  INO_BASE(parent), name, &ino);
			pthread_mutex_unlock(&v->lock);
		}
		if (!err)
			err = view_attr(v, slot, ino, &sb);
	}
	if (err)
		fuse_reply_err(req, -err);
	else
		reply_snap_entry(req, &sb, parent == SNAPDIR_INO ? 0 : SNAP_TIMEOUT);
}

void snap_getattr(fuse_req_t req, fuse_ino_t ino)
{
	struct vfs *v = V(req);
	struct stat sb;
	int err = 0;
	if (ino == SNAPDIR_INO)
		snapdir_stat(v, &sb);
	else
		err = view_attr(v, INO_SLOT(ino), INO_BASE(ino), &sb);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_attr(req, &sb, SNAP_TIMEOUT);
}

void snap_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct vfs *v = V(req);
	struct stat sb;
	int64_t view;
	int err = view_attr(v, INO_SLOT(ino), INO_BASE(ino), &sb);
	if (!err && !S_ISLNK(sb.st_mode))
		err = -EINVAL;
	if (!err && sb.st_size > PATH_MAX)
		err = -EIO;
	if (!err)
		err = snap_view(v, INO_SLOT(ino), &view);
	char buf[PATH_MAX + 1];
	if (!err)
		err = vfs_read_extents(v, view, INO_BASE(ino), buf, sb.st_size, 0);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	buf[sb.st_size] = 0;
	fuse_reply_readlink(req, buf);
}

void snap_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

void snap_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off)
{
	struct vfs *v = V(req);
	struct stat sb;
	int64_t view;
	int err = view_attr(v, INO_SLOT(ino), INO_BASE(ino), &sb);
	if (!err)
		err = snap_view(v, INO_SLOT(ino), &view);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	if (off >= sb.st_size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if ((off_t)(off + size) > sb.st_size)
		size = sb.st_size - off;
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	err = vfs_read_extents(v, view, INO_BASE(ino), buf, size, off);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_buf(req, buf, size);
	free(buf);
}

/* getxattr (list 0) or listxattr (list 1) in a snapshot, ACLs read
 * through the snapshot's mode (acl.h rule 1). */
static void snap_reply_xattrs(fuse_req_t req, fuse_ino_t ino,
			      const char *name, size_t size, int list)
{
	struct vfs *v = V(req);
	int64_t view = 0;
	struct inode_attr a;
	int r = ino == SNAPDIR_INO ? (list ? 0 : -ENODATA)
				   : snap_view(v, INO_SLOT(ino), &view);
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf)
		r = -ENOMEM;
	if (!r && ino != SNAPDIR_INO) {
		pthread_mutex_lock(&v->lock);
		r = ns_inode_get(v->st->ix, v->vol.id, view, INO_BASE(ino), &a);
		if (!r)
			r = xattr_read(v, view, INO_BASE(ino), a.mode,
				       list ? NULL : name, buf, size);
		pthread_mutex_unlock(&v->lock);
	}
	xattr_reply(req, r, buf, size);
	free(buf);
}

void snap_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		   size_t size)
{
	snap_reply_xattrs(req, ino, name, size, 0);
}

void snap_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	snap_reply_xattrs(req, ino, NULL, size, 1);
}
