/*
 * fuse_ops.c - the FUSE low-level operations of a mounted volume, but for
 * directory listings (fuse_dir.c), xattrs (fuse_xattr.c) and those on
 * extents (fuse_share.c); each resolves the view its inode number names
 * (fuse_view.c).  The mount and its serve loop are mount.c.
 *
 * The kernel does permission checks (default_permissions), so these
 * operations check only what it cannot: names, emptiness, types.  New
 * inodes take the caller's uid/gid (and a setgid directory's group).
 * Every change goes into the index's open transaction, committed by the
 * committer thread each second and at fsync.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "acl.h"
#include "control.h"
#include "fuse_int.h"
#include "../chunker/util.h"


/* Reply with an entry for n and count the kernel's new reference. */
static void reply_entry(fuse_req_t req, struct vfs *v, struct node *n)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = n->attr.ino;
	e.attr_timeout = v->attr_timeout;
	e.entry_timeout = v->entry_timeout;
	attr_to_stat(v, VIEW_LIVE, &n->attr, &e.attr);
	n->nlookup++;
	fuse_reply_entry(req, &e);
}

/*
 * The entry of child, a name in directory dir, for a reply (lookup or
 * readdirplus), with the kernel's new reference counted; *n the live node
 * (NULL in other views).  What the kernel may cache, and for how long:
 * the live tree for the mount's cache_timeout (every change to it comes
 * through a request the kernel sees); a name in .snapshots as long, since
 * the daemon tells the kernel when one comes or goes (vfs_inval_snapshot:
 * its own snapshots, and prune's through the control socket); below a
 * snapshot, (id, inode) never changes meaning.  ctx->lock held.
 */
int vino_entry(struct vfs *v, const struct vino *dir,
	       const struct vino *child, struct fuse_entry_param *e,
	       struct node **np)
{
	memset(e, 0, sizeof(*e));
	*np = NULL;
	if (!child->slot) {
		int err = 0;
		struct node *n = node_get(v, child->ino, &err);
		if (!n)
			return err;
		e->ino = n->attr.ino;
		e->attr_timeout = v->attr_timeout;
		e->entry_timeout = v->entry_timeout;
		attr_to_stat(v, VIEW_LIVE, &n->attr, &e->attr);
		*np = n;
		return 0;
	}
	struct inode_attr a;
	int err = vino_attr(v, child, &a);
	if (err)
		return err;
	attr_to_stat(v, child->view, &a, &e->attr);
	e->ino = e->attr.st_ino = child->kino;
	e->attr_timeout = SNAP_TIMEOUT;
	e->entry_timeout = dir->slot == SLOT_SNAPDIR ? v->entry_timeout : SNAP_TIMEOUT;
	return 0;
}

static int check_name(const char *name)
{
	if (strlen(name) > NAME_MAX_LEN)
		return -ENAMETOOLONG;
	return 0;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct vfs *v = userdata;
	conn->max_write = 1 << 20;
	conn->max_readahead = 1 << 20;
	/* The kernel's write-back cache is off unless asked for: with it, a
	 * write() reaches us later and page by page, so a snapshot could
	 * hold half of a write and times we did not see; without it, every
	 * write() has reached us when it returns. */
	if (v->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	else
		conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	/* Listings carry attributes (op_readdirplus), every time: a walk
	 * lists a directory and then stats what it found, and the kernel's
	 * "auto" mode would fall back to names only after the first page. */
	if (conn->capable & FUSE_CAP_READDIRPLUS) {
		conn->want |= FUSE_CAP_READDIRPLUS;
		conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	}
	/* ACLs as on ext4: the kernel checks them; the umask and the link
	 * to the mode are ours (acl.h), so we take the umask unapplied.
	 * Without the kernel's support ACL xattrs are refused, and tools
	 * fall back to chmod. */
	uint64_t acl_caps = FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
	v->acl = !v->noacl && (conn->capable & acl_caps) == acl_caps;
	if (v->acl)
		conn->want |= acl_caps;
}

/* A name is looked up in the view its directory is in (entry_of says
 * what the kernel may keep).  A missing name may be cached in the live
 * tree and in .snapshots (a new snapshot's name is invalidated), not
 * below a snapshot, where nothing is ever created. */
static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vfs *v = V(req);
	struct vino dir = { 0 }, child;
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	int err = check_name(name);
	pthread_mutex_lock(&v->lock);
	if (!err)
		err = vino_resolve(v, parent, &dir);
	if (!err)
		err = vino_child(v, &dir, name, &child);
	struct node *n = NULL;
	if (!err)
		err = vino_entry(v, &dir, &child, &e, &n);
	if (!err) {
		if (n)
			n->nlookup++;
		if (fuse_reply_entry(req, &e) == -ENOENT && n)
			n->nlookup--;	/* interrupted: the kernel took none */
	} else if (err == -ENOENT && (!dir.slot || dir.slot == SLOT_SNAPDIR)) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = v->entry_timeout;	/* negative entry */
		fuse_reply_entry(req, &e);
	} else {
		fuse_reply_err(req, -err);
	}
	pthread_mutex_unlock(&v->lock);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct vfs *v = V(req);
	pthread_mutex_lock(&v->lock);
	struct node *n = INO_SLOT(ino) ? NULL : node_find(v, ino);
	if (n)
		node_forget(v, n, nlookup);
	pthread_mutex_unlock(&v->lock);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *fd)
{
	struct vfs *v = V(req);
	pthread_mutex_lock(&v->lock);
	for (size_t i = 0; i < count; i++) {
		struct node *n = INO_SLOT(fd[i].ino) ? NULL : node_find(v, fd[i].ino);
		if (n)
			node_forget(v, n, fd[i].nlookup);
	}
	pthread_mutex_unlock(&v->lock);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	(void)fi;
	struct vino vi;
	struct stat sb;
	int err = vino_stat(V(req), ino, &vi, &sb);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_attr(req, &sb, vi.slot ? SNAP_TIMEOUT : V(req)->attr_timeout);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *sb,
		       int to_set, struct fuse_file_info *fi)
{
	(void)fi;
	struct vfs *v = V(req);
	int err = 0;
	if (v->readonly || INO_SLOT(ino)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_mutex_lock(&v->lock);
	struct node *n = node_get(v, ino, &err);
	if (n && (to_set & FUSE_SET_ATTR_SIZE) && (err = node_pin(v, n)))
		n = NULL;	/* pinned across the unlocked truncate */
	pthread_mutex_unlock(&v->lock);
	if (!n) {
		fuse_reply_err(req, -err);
		return;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (!S_ISREG(n->attr.mode)) {
			err = S_ISDIR(n->attr.mode) ? -EISDIR : -EINVAL;
		} else {
			pthread_mutex_lock(&n->d->dlock);
			err = node_truncate(v, n, sb->st_size);
			pthread_mutex_unlock(&n->d->dlock);
		}
	}
	pthread_mutex_lock(&v->lock);
	if (to_set & FUSE_SET_ATTR_SIZE)
		n->nopen--;
	int64_t now = vfs_now();
	if (!err) {
		struct inode_attr *a = &n->attr;
		if (to_set & FUSE_SET_ATTR_MODE)
			a->mode = (a->mode & S_IFMT) | (sb->st_mode & 07777);
		if (to_set & FUSE_SET_ATTR_UID)
			a->uid = sb->st_uid;
		if (to_set & FUSE_SET_ATTR_GID)
			a->gid = sb->st_gid;
		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			a->atime = now;
		else if (to_set & FUSE_SET_ATTR_ATIME)
			a->atime = sb->st_atim.tv_sec * 1000000000LL + sb->st_atim.tv_nsec;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			a->mtime = now;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			a->mtime = sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
		if (to_set & FUSE_SET_ATTR_CTIME)
			a->ctime = sb->st_ctim.tv_sec * 1000000000LL + sb->st_ctim.tv_nsec;
		else
			a->ctime = now;
		node_touch(v, n);	/* persisted at the next commit */
	}
	struct stat out;
	if (!err)
		attr_to_stat(v, VIEW_LIVE, &n->attr, &out);
	if (to_set & FUSE_SET_ATTR_SIZE)
		node_maybe_free(v, n);	/* drops the data state it took */
	pthread_mutex_unlock(&v->lock);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_attr(req, &out, v->attr_timeout);
}

/*
 * How the kernel should treat an open file.  An appending handle (logs,
 * journals) goes direct, without the page cache: the kernel then hands
 * each write() to us whole (up to 1 MiB), where through the page cache it
 * splits a write at a page it has not read, and a snapshot could catch
 * half a record.  Other handles keep the page cache, since a direct
 * handle cannot be mmap'ed with shared writes (SQLite's -shm needs that)
 * through this libfuse.  Pages are not kept across opens, as a direct
 * writer may have changed the file behind them.
 */
static void open_flags(struct vfs *v, struct fuse_file_info *fi)
{
	/* The live handle carries no pointer, only its generation and
	 * whether it writes: see handle_lost_writes. */
	fi->fh = vfs_fh_make(v, NULL) |
		 ((fi->flags & O_ACCMODE) != O_RDONLY ? FH_WRITES : 0);
	if (v->writeback) {
		fi->keep_cache = 1;
		return;
	}
	if ((fi->flags & O_APPEND) && (fi->flags & O_ACCMODE) != O_RDONLY)
		fi->direct_io = 1;
	fi->keep_cache = 0;
}

/* A new inode's mode under directory p, and the ACLs it inherits from
 * p's default ACL (acl.h rule 3): *acc is its access ACL (NULL when the
 * mode says it all), *def a new directory's default ACL, *len bytes each,
 * malloc'd.  ctx->lock held. */
static int inherit_acls(struct vfs *v, const struct fuse_ctx *ctx,
			const struct node *p, mode_t *mode, uint8_t **acc,
			uint8_t **def, size_t *len)
{
	*acc = *def = NULL;
	if (!v->acl || S_ISLNK(*mode))
		return 0;	/* without ACLs the kernel applied the umask */
	int l = -ENODATA;
	if (v->xattrs_maybe)
		l = ns_xattr_get(v->st->ix, v->vol.id, VIEW_LIVE, p->attr.ino,
				    ACL_XATTR_DEFAULT, NULL, 0);
	uint8_t *dacl = l > 0 ? malloc(l) : NULL, *out = l > 0 ? malloc(l) : NULL;
	if (l > 0 && (!dacl || !out))
		l = -ENOMEM;
	if (l > 0)
		l = ns_xattr_get(v->st->ix, v->vol.id, VIEW_LIVE, p->attr.ino,
				    ACL_XATTR_DEFAULT, dacl, l);
	mode_t m = *mode;
	int more = l > 0 ? acl_inherit(dacl, l, &m, out) : -ENODATA;
	if (l < 0 && l != -ENODATA) {
		free(dacl);
		free(out);
		return l;
	}
	if (more < 0) {		/* none, or malformed (an old store's blob) */
		*mode &= ~(mode_t)(ctx->umask & 0777);
		free(dacl);
		free(out);
		return 0;
	}
	*mode = m;
	*len = l;
	*acc = more ? out : NULL;
	if (!more)
		free(out);
	if (S_ISDIR(m))
		*def = dacl;
	else
		free(dacl);
	return 0;
}

/* Create an inode of the given mode under parent/name and reply with its
 * entry.  data (len bytes) becomes its content (the target of a symlink). */
static void make_node(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, dev_t rdev, const void *data, size_t len,
		      struct fuse_file_info *fi)
{
	struct vfs *v = V(req);
	if (v->readonly || INO_SLOT(parent)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int err = check_name(name);
	if (!err && parent == ROOT_INO && !strcmp(name, SNAPDIR_NAME))
		err = -EEXIST;
	int64_t rowid = 0;
	pthread_mutex_lock(&v->lock);
	struct node *p = err ? NULL : node_get(v, parent, &err);
	uint64_t ino;
	if (p && !S_ISDIR(p->attr.mode))
		err = -ENOTDIR;
	if (!err && p->attr.nlink == 0)
		err = -ENOENT;
	if (!err) {
		err = ns_dentry_lookup(v->st->ix, v->vol.id, VIEW_LIVE,
					  parent, name, &ino);
		err = err == -ENOENT ? 0 : (err ? err : -EEXIST);
	}
	if (!err)
		err = index_begin(v->st->ix);
	if (!err && len)
		err = store_put(v->st, data, len, &rowid);
	uint8_t *acc = NULL, *def = NULL;
	size_t acl_len = 0;
	if (!err)
		err = inherit_acls(v, ctx, p, &mode, &acc, &def, &acl_len);
	ino = err ? 0 : vfs_alloc_ino(v, &err);
	struct node *n = NULL;
	if (!err) {
		int64_t now = vfs_now();
		struct inode_attr a = {
			.ino = ino, .mode = mode, .uid = ctx->uid,
			.gid = ctx->gid, .nlink = S_ISDIR(mode) ? 2 : 1,
			.size = len, .rdev = rdev, .atime = now, .mtime = now,
			.ctime = now,
		};
		if (p->attr.mode & S_ISGID) {
			a.gid = p->attr.gid;
			if (S_ISDIR(mode))
				a.mode |= S_ISGID;
		}
		err = ns_inode_put(v->st->ix, v->vol.id, v->vol.epoch, &a);
		if (!err && acc)
			err = ns_xattr_set(v->st->ix, v->vol.id, v->vol.epoch,
					      ino, ACL_XATTR_ACCESS, acc, acl_len);
		if (!err && def)
			err = ns_xattr_set(v->st->ix, v->vol.id, v->vol.epoch,
					      ino, ACL_XATTR_DEFAULT, def, acl_len);
		if (!err && len) {
			struct extent x = { .off = 0, .len = len, .chunk = rowid };
			err = ns_extent_replace(v->st->ix, v->vol.id,
						   v->vol.epoch, ino, &x);
		}
		if (!err)
			err = ns_dentry_add(v->st->ix, v->vol.id, v->vol.epoch,
					       parent, name, ino);
		if (!err && S_ISDIR(mode))
			p->attr.nlink++;
		if (!err) {
			p->attr.mtime = p->attr.ctime = now;
			node_touch(v, p);	/* persisted at the next commit */
		}
		if (!err) {
			n = node_new(v, &a);
			if (!n)
				err = -ENOMEM;
			else
				n->nocap = 1;	/* a new inode: no capability */
		}
	}
	if (!err && fi)
		err = node_pin(v, n);
	if (!err && fi) {
		open_flags(v, fi);
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		e.ino = n->attr.ino;
		e.attr_timeout = v->attr_timeout;
		e.entry_timeout = v->entry_timeout;
		attr_to_stat(v, VIEW_LIVE, &n->attr, &e.attr);
		n->nlookup++;
		if (fuse_reply_create(req, &e, fi) == -ENOENT) {
			n->nlookup--;
			n->nopen--;
		}
	} else if (!err) {
		reply_entry(req, v, n);
	} else {
		fuse_reply_err(req, -err);
	}
	pthread_mutex_unlock(&v->lock);
	free(acc);
	free(def);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	make_node(req, parent, name, mode, rdev, NULL, 0, NULL);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	make_node(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL, 0, NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	make_node(req, parent, name, S_IFLNK | 0777, 0, link, strlen(link),
		  NULL);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	make_node(req, parent, name, S_IFREG | (mode & 07777), 0, NULL, 0, fi);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct vfs *v = V(req);
	struct vino vi;
	struct stat sb;
	char buf[PATH_MAX + 1];
	int err = vino_stat(v, ino, &vi, &sb);
	if (!err && !S_ISLNK(sb.st_mode))
		err = -EINVAL;
	if (!err && sb.st_size > PATH_MAX)
		err = -EIO;
	if (!err)
		err = vfs_read_extents(v, vi.view, vi.ino, buf, sb.st_size, 0);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	buf[sb.st_size] = 0;
	fuse_reply_readlink(req, buf);
}

/* Remove parent/name, which must be a directory iff want_dir.  Drops a
 * link of the target; an inode with no links left ends when no one holds
 * it any more.  ctx->lock held. */
static int remove_entry(struct vfs *v, fuse_ino_t parent, const char *name,
			int want_dir, int64_t now)
{
	uint64_t ino;
	int err = ns_dentry_lookup(v->st->ix, v->vol.id, VIEW_LIVE, parent,
				      name, &ino);
	if (err)
		return err;
	struct node *p = node_get(v, parent, &err);
	struct node *n = p ? node_get(v, ino, &err) : NULL;
	if (!n)
		return err;
	if (want_dir && !S_ISDIR(n->attr.mode))
		return -ENOTDIR;
	if (!want_dir && S_ISDIR(n->attr.mode))
		return -EISDIR;
	if (want_dir) {
		err = ns_dir_empty(v->st->ix, v->vol.id, VIEW_LIVE, ino);
		if (err <= 0)
			return err ? err : -ENOTEMPTY;
	}
	err = index_begin(v->st->ix);
	if (!err)
		err = ns_dentry_remove(v->st->ix, v->vol.id, v->vol.epoch,
					  parent, name);
	if (err)
		return err;
	if (want_dir) {
		n->attr.nlink = 0;
		p->attr.nlink--;
	} else {
		n->attr.nlink--;
	}
	n->attr.ctime = now;
	p->attr.mtime = p->attr.ctime = now;
	node_touch(v, n);
	node_touch(v, p);
	/* The parent is persisted at the next commit; the inode now, since
	 * its last link may be gone. */
	err = node_persist(v, n);
	if (!err && n->attr.nlink == 0) {
		/* Ended when the last holder lets go (now, if none). */
		err = ns_orphan_add(v->st->ix, v->vol.id, ino);
		if (!err)
			node_forget(v, n, 0);
	}
	return err;
}

/* Writes to a snapshot, or to .snapshots itself, are refused: EROFS also
 * for root. */
static int entry_read_only(struct vfs *v, fuse_ino_t parent, const char *name)
{
	return v->readonly || INO_SLOT(parent) ||
	       (parent == ROOT_INO && !strcmp(name, SNAPDIR_NAME));
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vfs *v = V(req);
	if (entry_read_only(v, parent, name)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_mutex_lock(&v->lock);
	int err = remove_entry(v, parent, name, 0, vfs_now());
	pthread_mutex_unlock(&v->lock);
	fuse_reply_err(req, -err);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vfs *v = V(req);
	if (entry_read_only(v, parent, name)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_mutex_lock(&v->lock);
	int err = remove_entry(v, parent, name, 1, vfs_now());
	pthread_mutex_unlock(&v->lock);
	fuse_reply_err(req, -err);
}

/* RENAME_EXCHANGE: parent/name and newparent/newname, which must both
 * exist, swap inodes; a directory changing parents moves a link of
 * theirs (the kernel refuses a swap that would make a loop).  ctx->lock
 * held. */
static int rename_exchange(struct vfs *v, fuse_ino_t parent,
			   const char *name, fuse_ino_t newparent,
			   const char *newname)
{
	uint64_t a, b;
	struct index *ix = v->st->ix;
	int err = ns_dentry_lookup(ix, v->vol.id, VIEW_LIVE, parent, name, &a);
	if (!err)
		err = ns_dentry_lookup(ix, v->vol.id, VIEW_LIVE, newparent,
				       newname, &b);
	if (err || a == b)
		return err;
	struct node *na = node_get(v, a, &err);
	struct node *nb = na ? node_get(v, b, &err) : NULL;
	struct node *op = nb ? node_get(v, parent, &err) : NULL;
	struct node *np = op ? node_get(v, newparent, &err) : NULL;
	if (!np)
		return err;
	int64_t cur = v->vol.epoch;
	err = index_savepoint(ix);	/* both names or neither */
	if (err)
		return err;
	err = ns_dentry_remove(ix, v->vol.id, cur, parent, name);
	if (!err)
		err = ns_dentry_remove(ix, v->vol.id, cur, newparent, newname);
	if (!err)
		err = ns_dentry_add(ix, v->vol.id, cur, parent, name, b);
	if (!err)
		err = ns_dentry_add(ix, v->vol.id, cur, newparent, newname, a);
	index_savepoint_end(ix, err != 0);
	if (err)
		return err;
	if (parent != newparent) {
		int da = S_ISDIR(na->attr.mode), db = S_ISDIR(nb->attr.mode);
		op->attr.nlink += db - da;
		np->attr.nlink += da - db;
	}
	int64_t now = vfs_now();
	na->attr.ctime = nb->attr.ctime = now;
	op->attr.mtime = op->attr.ctime = np->attr.mtime = np->attr.ctime = now;
	node_touch(v, na);
	node_touch(v, nb);
	node_touch(v, op);
	node_touch(v, np);
	return 0;
}

static int do_rename(struct vfs *v, fuse_ino_t parent, const char *name,
		     fuse_ino_t newparent, const char *newname,
		     unsigned int flags)
{
	if (flags == RENAME_EXCHANGE)
		return check_name(newname) ? -ENAMETOOLONG :
		       rename_exchange(v, parent, name, newparent, newname);
	if (flags & ~RENAME_NOREPLACE)
		return -EINVAL;
	int err = check_name(newname);
	uint64_t ino, tino;
	if (!err)
		err = ns_dentry_lookup(v->st->ix, v->vol.id, VIEW_LIVE,
					  parent, name, &ino);
	struct node *n = err ? NULL : node_get(v, ino, &err);
	struct node *np = n ? node_get(v, newparent, &err) : NULL;
	struct node *op = np ? node_get(v, parent, &err) : NULL;
	if (!op)
		return err;
	if (!S_ISDIR(np->attr.mode))
		return -ENOTDIR;
	int64_t now = vfs_now();
	err = ns_dentry_lookup(v->st->ix, v->vol.id, VIEW_LIVE, newparent,
				  newname, &tino);
	if (!err) {
		if (tino == ino)
			return 0;	/* hard links of one inode: no-op */
		if (flags & RENAME_NOREPLACE)
			return -EEXIST;
		struct node *t = node_get(v, tino, &err);
		if (!t)
			return err;
		if (S_ISDIR(n->attr.mode) && !S_ISDIR(t->attr.mode))
			return -ENOTDIR;
		if (!S_ISDIR(n->attr.mode) && S_ISDIR(t->attr.mode))
			return -EISDIR;
		err = remove_entry(v, newparent, newname,
				   S_ISDIR(t->attr.mode), now);
		if (err)
			return err;
	} else if (err != -ENOENT) {
		return err;
	}
	err = index_begin(v->st->ix);
	if (!err)
		err = ns_dentry_remove(v->st->ix, v->vol.id, v->vol.epoch,
					  parent, name);
	if (!err)
		err = ns_dentry_add(v->st->ix, v->vol.id, v->vol.epoch,
				       newparent, newname, ino);
	if (err)
		return err;
	if (S_ISDIR(n->attr.mode) && parent != newparent) {
		op->attr.nlink--;
		np->attr.nlink++;
	}
	n->attr.ctime = now;
	op->attr.mtime = op->attr.ctime = now;
	np->attr.mtime = np->attr.ctime = now;
	node_touch(v, n);
	node_touch(v, op);
	node_touch(v, np);
	/* All three are persisted at the next commit (attr_dirty). */
	return err;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct vfs *v = V(req);
	if (entry_read_only(v, parent, name) ||
	    entry_read_only(v, newparent, newname)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_mutex_lock(&v->lock);
	int err = do_rename(v, parent, name, newparent, newname, flags);
	pthread_mutex_unlock(&v->lock);
	fuse_reply_err(req, -err);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	struct vfs *v = V(req);
	if (INO_SLOT(ino) || entry_read_only(v, newparent, newname)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	uint64_t tino;
	int err = check_name(newname);
	pthread_mutex_lock(&v->lock);
	struct node *n = err ? NULL : node_get(v, ino, &err);
	struct node *p = n ? node_get(v, newparent, &err) : NULL;
	if (p && S_ISDIR(n->attr.mode))
		err = -EPERM;
	if (p && !err) {
		err = ns_dentry_lookup(v->st->ix, v->vol.id, VIEW_LIVE,
					  newparent, newname, &tino);
		err = err == -ENOENT ? 0 : (err ? err : -EEXIST);
	}
	if (p && !err)
		err = index_begin(v->st->ix);
	if (p && !err)
		err = ns_dentry_add(v->st->ix, v->vol.id, v->vol.epoch,
				       newparent, newname, ino);
	if (p && !err) {
		int64_t now = vfs_now();
		if (n->attr.nlink == 0)
			ns_orphan_remove(v->st->ix, v->vol.id, ino);
		n->attr.nlink++;
		n->attr.ctime = now;
		p->attr.mtime = p->attr.ctime = now;
		node_touch(v, n);
		node_touch(v, p);
		/* Both are persisted at the next commit (attr_dirty). */
	}
	if (!err)
		reply_entry(req, v, n);
	else
		fuse_reply_err(req, -err);
	pthread_mutex_unlock(&v->lock);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = V(req);
	int err = 0;
	if ((v->readonly || INO_SLOT(ino)) &&
	    ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (INO_SLOT(ino)) {
		/* A snapshot never changes: the kernel keeps its pages, and
		 * the handle its size and (from the first read) extents. */
		struct vino vi;
		struct stat sb;
		struct snapfile *sf = calloc(1, sizeof(*sf));
		err = sf ? vino_stat(v, ino, &vi, &sb) : -ENOMEM;
		if (err) {
			free(sf);
			fuse_reply_err(req, -err);
			return;
		}
		sf->view = vi.view;
		sf->ino = vi.ino;
		sf->size = sb.st_size;
		fi->fh = vfs_fh_make(v, sf);
		fi->keep_cache = 1;
		snapfile_track(v, sf);
		if (fuse_reply_open(req, fi) == -ENOENT)
			snapfile_release(v, sf);
		return;
	}
	pthread_mutex_lock(&v->lock);
	struct node *n = node_get(v, ino, &err);
	if (n && (err = node_pin(v, n)))
		n = NULL;
	pthread_mutex_unlock(&v->lock);
	if (!n) {
		fuse_reply_err(req, -err);
		return;
	}
	if (fi->flags & O_TRUNC) {
		pthread_mutex_lock(&n->d->dlock);
		err = node_truncate(v, n, 0);
		pthread_mutex_unlock(&n->d->dlock);
		if (err) {
			pthread_mutex_lock(&v->lock);
			node_release(v, n);
			pthread_mutex_unlock(&v->lock);
			fuse_reply_err(req, -err);
			return;
		}
	}
	open_flags(v, fi);
	if (fuse_reply_open(req, fi) == -ENOENT) {
		pthread_mutex_lock(&v->lock);
		node_release(v, n);
		pthread_mutex_unlock(&v->lock);
	}
}


static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct vfs *v = V(req);
	struct snapfile *sf = INO_SLOT(ino) ? vfs_fh_get(v, fi->fh) : NULL;
	read_answer(req, v, ino, sf, size, off, 1);
}

/*
 * A write by a caller without CAP_FSETID (taken as: not root) drops
 * set-user-ID, and set-group-ID where the group may execute or the caller
 * is outside the file's group, as the kernel's file_remove_privs does on
 * a local filesystem.  Through the page cache the kernel sends that as a
 * SETATTR before the write (then there is nothing left to drop here); on
 * a direct handle (appends, open_flags) it leaves it to us.
 */
static void write_kill_suid(fuse_req_t req, struct vfs *v, struct node *n)
{
	pthread_mutex_lock(&v->lock);
	mode_t m = n->attr.mode;
	gid_t gid = n->attr.gid;
	pthread_mutex_unlock(&v->lock);
	if (!(m & (S_ISUID | S_ISGID)))
		return;
	int drop_gid = (m & S_IXGRP) || !caller_in_group(req, gid);
	pthread_mutex_lock(&v->lock);
	m = n->attr.mode;
	mode_t kill = (m & S_ISUID) | (drop_gid ? (m & S_ISGID) : 0);
	if (kill) {
		n->attr.mode = m & ~kill;
		n->attr.ctime = vfs_now();
		node_touch(v, n);	/* persisted at the next commit */
	}
	pthread_mutex_unlock(&v->lock);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct vfs *v = V(req);
	struct node *n = vino_open_node(v, ino);
	if (!n) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if ((uint64_t)off + size > (1ull << 60)) {
		fuse_reply_err(req, EFBIG);
		return;
	}
	(void)fi;
	if (fuse_req_ctx(req)->uid != 0)
		write_kill_suid(req, v, n);
	pthread_mutex_lock(&n->d->dlock);
	int err = node_write(v, n, buf, size, off);
	pthread_mutex_unlock(&n->d->dlock);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_write(req, size);
}

/*
 * A handle that wrote through a mount process that then crashed: what it
 * wrote since the last commit is gone, and the kernel took it as written.
 * Its flush and fsync say EIO (as a disk's lost write-back would), never
 * success; a handle of a process that left cleanly (restart) lost nothing.
 */
static int handle_lost_writes(struct vfs *v, fuse_ino_t ino, const struct fuse_file_info *fi)
{
	if (!v->adopted_crash || !fi || vfs_fh_get(v, fi->fh) || !(fi->fh & FH_WRITES) ||
	    INO_SLOT(ino))
		return 0;
	tlog(LOG_ERR, "volume %s: inode %llu was open for writing when the mount process crashed: writes not committed then are lost; its flush and fsync report EIO",
	     v->vol.name, (unsigned long long)ino);
	return 1;
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfs *v = V(req);
	if (handle_lost_writes(v, ino, fi)) {
		fuse_reply_err(req, EIO);
		return;
	}
	struct node *n = vino_open_node(v, ino);
	int err = 0;
	if (n && !v->readonly) {
		pthread_mutex_lock(&n->d->dlock);
		err = node_flush(v, n);
		pthread_mutex_unlock(&n->d->dlock);
	}
	fuse_reply_err(req, -err);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct vfs *v = V(req);
	if (INO_SLOT(ino)) {
		snapfile_release(v, vfs_fh_get(v, fi->fh));
		fuse_reply_err(req, 0);
		return;
	}
	struct node *n = vino_open_node(v, ino);
	/* nranges is only read under dlock: another handle's fsync may be
	 * cutting ranges right now (-o mt; found by ThreadSanitizer). */
	if (n && !v->readonly) {
		pthread_mutex_lock(&n->d->dlock);
		if (n->d->nranges)
			node_flush(v, n);
		pthread_mutex_unlock(&n->d->dlock);
	}
	pthread_mutex_lock(&v->lock);
	if (n)
		node_release(v, n);
	pthread_mutex_unlock(&v->lock);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	(void)datasync;
	struct vfs *v = V(req);
	if (handle_lost_writes(v, ino, fi)) {
		fuse_reply_err(req, EIO);
		return;
	}
	struct node *n = vino_open_node(v, ino);
	int err = 0;
	if (v->readonly) {
		fuse_reply_err(req, 0);
		return;
	}
	if (n) {
		pthread_mutex_lock(&n->d->dlock);
		err = node_flush(v, n);
		pthread_mutex_unlock(&n->d->dlock);
	}
	pthread_mutex_lock(&v->lock);
	if (!err)
		err = vfs_commit(v);
	pthread_mutex_unlock(&v->lock);
	fuse_reply_err(req, -err);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct vfs *v = V(req);
	struct statvfs sv;
	if (statvfs(v->st->dir, &sv)) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = NAME_MAX_LEN;
	pthread_mutex_lock(&v->lock);
	sv.f_files = sv.f_files > v->vol.next_ino ? sv.f_files : v->vol.next_ino;
	pthread_mutex_unlock(&v->lock);
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops vfs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
	.copy_file_range = op_copy_file_range,
	.lseek = op_lseek,
};

const struct fuse_lowlevel_ops *vfs_fuse_ops(void)
{
	return &vfs_ops;
}
