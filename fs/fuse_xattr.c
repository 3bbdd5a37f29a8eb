/*
 * fuse_xattr.c - the extended-attribute operations, with POSIX ACLs
 * linked to the mode (acl.h); snapshots answer reads and refuse writes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "acl.h"
#include "fuse_int.h"

int caller_in_group(fuse_req_t req, gid_t gid)
{
	if (fuse_req_ctx(req)->gid == gid)
		return 1;
	gid_t groups[64];
	int n = fuse_req_getgroups(req, 64, groups);
	for (int i = 0; i < n && i < 64; i++)
		if (groups[i] == gid)
			return 1;
	return 0;
}

/* Setting an access ACL sets the mode it implies, and stores the ACL only
 * when it says more (acl.h rule 2); like chmod, it drops the setgid bit
 * of a caller outside the file's group.  ctx->lock held. */
static int set_access_acl(fuse_req_t req, struct vfs *v, struct node *n,
			  const char *value, size_t size)
{
	mode_t perm;
	int more = acl_equiv_mode(value, size, &perm);
	if (more < 0)
		return more;
	int err = index_begin(v->st->ix);
	if (!err && more)
		err = ns_xattr_set(v->st->ix, v->vol.id, v->vol.epoch,
				      n->attr.ino, ACL_XATTR_ACCESS, value, size);
	else if (!err) {
		err = ns_xattr_remove(v->st->ix, v->vol.id, v->vol.epoch,
					 n->attr.ino, ACL_XATTR_ACCESS);
		err = err == -ENODATA ? 0 : err;
	}
	if (err)
		return err;
	mode_t mode = (n->attr.mode & ~(mode_t)0777) | perm;
	if ((mode & S_ISGID) && fuse_req_ctx(req)->uid != 0 &&
	    !caller_in_group(req, n->attr.gid))
		mode &= ~(mode_t)S_ISGID;
	n->attr.mode = mode;
	return 0;
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct vfs *v = V(req);
	if (v->readonly || INO_SLOT(ino)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (strlen(name) > 255 || size > 65536) {
		fuse_reply_err(req, strlen(name) > 255 ? ERANGE : E2BIG);
		return;
	}
	int is_acl = acl_is_acl_name(name);
	if (is_acl && !v->acl) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (is_acl && acl_valid(value, size)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	int err = 0;
	pthread_mutex_lock(&v->lock);
	struct node *n = node_get(v, ino, &err);
	if (n && is_acl && strcmp(name, ACL_XATTR_ACCESS) && !S_ISDIR(n->attr.mode))
		err = -EACCES;	/* a default ACL only on directories */
	if (n && !err) {
		v->xattrs_maybe = 1;	/* getxattr asks the index from now */
		int have = acl_xattr_get(v->st->ix, v->vol.id, VIEW_LIVE, ino,
					 n->attr.mode, name, NULL, 0);
		if (have < 0 && have != -ENODATA)
			err = have;
		else if ((flags & XATTR_CREATE) && have >= 0)
			err = -EEXIST;
		else if ((flags & XATTR_REPLACE) && have < 0)
			err = -ENODATA;
		else if (!strcmp(name, ACL_XATTR_ACCESS))
			err = set_access_acl(req, v, n, value, size);
		else if (!(err = index_begin(v->st->ix)))
			err = ns_xattr_set(v->st->ix, v->vol.id, v->vol.epoch,
					      ino, name, value, size);
		if (!err) {
			n->attr.ctime = vfs_now();
			n->nocap = 0;
			node_touch(v, n);	/* persisted at the next commit */
		}
	}
	pthread_mutex_unlock(&v->lock);
	fuse_reply_err(req, -err);
}

int xattr_read(struct vfs *v, int64_t view, uint64_t ino, mode_t mode,
	       const char *name, char *buf, size_t size)
{
	if (!name)
		return acl_xattr_list(v->st->ix, v->vol.id, view, ino, mode, buf, size);
	return acl_xattr_get(v->st->ix, v->vol.id, view, ino, mode, name, buf, size);
}

void xattr_reply(fuse_req_t req, int r, const char *buf, size_t size)
{
	if (r < 0)
		fuse_reply_err(req, -r);
	else if (!size)
		fuse_reply_xattr(req, r);
	else
		fuse_reply_buf(req, buf, r);
}

/* Answer a getxattr (list 0) or listxattr (list 1) in any view.  An
 * access ACL is read through the inode's current mode (acl.h rule 1). */
static void reply_xattrs(fuse_req_t req, fuse_ino_t ino, const char *name,
			 size_t size, int list)
{
	struct vfs *v = V(req);
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	struct vino vi;
	struct inode_attr a;
	int r = list ? 0 : -ENODATA;
	pthread_mutex_lock(&v->lock);
	/* A live tree without xattrs (the common case) answers without a
	 * query; .snapshots itself has none. */
	int any = (INO_SLOT(ino) || v->xattrs_maybe) && ino != SNAPDIR_INO;
	/* The kernel asks for security.capability before every write (and
	 * chown): a live node remembers that it has none. */
	int cap = !list && !INO_SLOT(ino) && !strcmp(name, "security.capability");
	struct node *n = cap && any ? node_find(v, ino) : NULL;
	if (n && n->nocap)
		any = 0;
	if (any && !(r = vino_resolve(v, ino, &vi)) && !(r = vino_attr(v, &vi, &a)))
		r = xattr_read(v, vi.view, vi.ino, a.mode, list ? NULL : name,
			       buf, size);
	if (n && r == -ENODATA)
		n->nocap = 1;
	pthread_mutex_unlock(&v->lock);
	xattr_reply(req, r, buf, size);
	free(buf);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	reply_xattrs(req, ino, name, size, 0);
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	reply_xattrs(req, ino, NULL, size, 1);
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct vfs *v = V(req);
	if (v->readonly || INO_SLOT(ino)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	int err = 0;
	pthread_mutex_lock(&v->lock);
	struct node *n = node_get(v, ino, &err);
	if (n && !(err = index_begin(v->st->ix)))
		err = ns_xattr_remove(v->st->ix, v->vol.id, v->vol.epoch, ino,
					 name);
	if (n && !err) {
		n->attr.ctime = vfs_now();
		node_touch(v, n);	/* persisted at the next commit */
	}
	pthread_mutex_unlock(&v->lock);
	fuse_reply_err(req, -err);
}
