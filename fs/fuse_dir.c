/*
 * fuse_dir.c - the FUSE operations on directories of a mounted volume:
 * opening one takes its listing (a dirlist, fuse_view.c), so offsets stay
 * stable while entries come and go; readdirplus hands out each entry's
 * attributes with it, so that a walk costs no LOOKUP per name.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuse_int.h"

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	struct vfs *v = V(req);
	pthread_mutex_lock(&v->lock);
	int err = vfs_commit(v);
	pthread_mutex_unlock(&v->lock);
	fuse_reply_err(req, -err);
}

void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct vfs *v = V(req);
	struct dirlist *d = calloc(1, sizeof(*d));
	int err = d ? 0 : -ENOMEM;
	if (d) {
		struct vino vi;
		pthread_mutex_lock(&v->lock);
		err = vino_resolve(v, ino, &vi);
		pthread_mutex_unlock(&v->lock);
		d->ino = ino;
		d->view = vi.view;
		d->slot = vi.slot == SLOT_SNAPDIR ? 0 : vi.slot;
	}
	if (!err)
		err = dirlist_load(v, d);
	if (err) {
		if (d)
			dirlist_free(d);
		fuse_reply_err(req, -err);
		return;
	}
	fi->fh = vfs_fh_make(v, d);
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dirlist_free(d);
}

/* A listing's page: the entries loaded at its start, a buffer for the
 * reply; NULL once an error is replied. */
static char *readdir_begin(fuse_req_t req, struct vfs *v, struct dirlist *d,
			   off_t off, size_t size)
{
	if (!d) {
		/* opened by the process before a handover */
		fuse_reply_err(req, EBADF);
		return NULL;
	}
	if (off == 0) {
		int err = dirlist_load(v, d);
		if (err) {
			fuse_reply_err(req, -err);
			return NULL;
		}
	}
	char *buf = malloc(size);
	if (!buf)
		fuse_reply_err(req, ENOMEM);
	return buf;
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)ino;
	struct vfs *v = V(req);
	struct dirlist *d = vfs_fh_get(v, fi->fh);
	char *buf = readdir_begin(req, v, d, off, size);
	if (!buf)
		return;
	size_t used = 0;
	for (size_t i = off; i < d->n; i++) {
		struct stat sb = { .st_ino = d->e[i].ino, .st_mode = d->e[i].mode };
		size_t l = fuse_add_direntry(req, buf + used, size - used,
					     d->e[i].name, &sb, i + 1);
		if (l > size - used)
			break;
		used += l;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

/*
 * READDIRPLUS: the listing with every entry's attributes, so that a walk
 * (find, du, ls -l, rsync) costs no LOOKUP per name.  Each entry but "."
 * and ".." counts as a lookup (the kernel takes a reference), and only
 * once it fits in the reply.  An entry whose attributes cannot be had
 * goes out as a plain name (ino 0: the kernel looks it up when used).
 */
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	struct vfs *v = V(req);
	struct dirlist *d = vfs_fh_get(v, fi->fh);
	char *buf = readdir_begin(req, v, d, off, size);
	if (!buf)
		return;
	size_t used = 0;
	struct vino dir;
	pthread_mutex_lock(&v->lock);
	int dir_ok = !vino_resolve(v, ino, &dir);
	for (size_t i = off; i < d->n; i++) {
		const char *name = d->e[i].name;
		struct fuse_entry_param e;
		struct node *n = NULL;
		int dot = name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]));
		struct vino child;
		int err = !dir_ok || dot;
		if (!err) {
			child.kino = d->e[i].ino;
			child.slot = INO_SLOT(child.kino);
			child.ino = INO_BASE(child.kino);
			child.view = dir.view;
			/* A name below a snapshot is in the directory's view;
			 * .snapshots and its entries resolve their own. */
			if (child.slot != dir.slot || dir.slot == SLOT_SNAPDIR)
				err = vino_resolve(v, child.kino, &child);
		}
		if (!err)
			err = vino_entry(v, &dir, &child, &e, &n);
		if (err) {
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = d->e[i].ino;
			e.attr.st_mode = d->e[i].mode;
			n = NULL;
		}
		size_t l = fuse_add_direntry_plus(req, buf + used, size - used,
						  name, &e, i + 1);
		if (l > size - used) {
			if (n)
				node_maybe_free(v, n);	/* not handed out */
			break;
		}
		used += l;
		if (n)
			n->nlookup++;
	}
	pthread_mutex_unlock(&v->lock);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	(void)ino;
	struct dirlist *d = vfs_fh_get(V(req), fi->fh);
	if (d)
		dirlist_free(d);
	fuse_reply_err(req, 0);
}

