/*
 * fuse_int.h - what the FUSE operation files share: reply helpers,
 * directory listings, and the snapshot views (fuse_snap.c).
 */
#ifndef TRESOR_FUSE_INT_H
#define TRESOR_FUSE_INT_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include "vfs.h"

#define TIMEOUT 1.0
#define SNAP_TIMEOUT 60.0	/* snapshots never change */
#define NAME_MAX_LEN 255

static inline struct vfs *V(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Extended attributes and ACLs of the live tree (fuse_xattr.c). */
/* name's value (name NULL: the list) of ino in view, ACLs read through
 * mode (acl.h rule 1); ctx->lock held.  Length or -errno. */
int xattr_read(struct vfs *v, int64_t view, uint64_t ino, mode_t mode,
	       const char *name, char *buf, size_t size);
/* Reply to a getxattr/listxattr with xattr_read's result. */
void xattr_reply(fuse_req_t req, int r, const char *buf, size_t size);
void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		 const char *value, size_t size, int flags);
void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* The operations of a mounted volume (fuse_ops.c). */
const struct fuse_lowlevel_ops *vfs_fuse_ops(void);

/* ops with timing wrappers (fuse_timed.c), built in out; sets
 * v->inner_ops to ops. */
const struct fuse_lowlevel_ops *fuse_timed_ops(const struct fuse_lowlevel_ops *ops,
					       struct fuse_lowlevel_ops *out,
					       struct vfs *v);

void attr_to_stat(struct vfs *v, int64_t view, const struct inode_attr *a,
		  struct stat *sb);

/* A directory listing taken at opendir (and again at a rewind), so that
 * offsets stay stable while entries are removed. */
struct dirlist {
	uint64_t ino;		/* the directory, as the kernel knows it */
	int64_t view;
	uint64_t slot;		/* added to entries' inode numbers */
	size_t n, cap;
	struct dirent_mem {
		char *name;
		uint64_t ino;
		uint32_t mode;
	} *e;
};
int dirlist_add(void *arg, const char *name, uint64_t ino, uint32_t mode);
int dirlist_load(struct vfs *v, struct dirlist *d);
void dirlist_free(struct dirlist *d);

/* Snapshot views (fuse_snap.c). */
/* The epoch of snapshot slot in this volume, or -ENOENT. */
int snap_view(struct vfs *v, uint64_t slot, int64_t *view);
int snapdir_load(struct vfs *v, struct dirlist *d);
void snap_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void snap_getattr(fuse_req_t req, fuse_ino_t ino);
void snap_readlink(fuse_req_t req, fuse_ino_t ino);
void snap_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void snap_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off);
void snap_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		   size_t size);
void snap_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);

#endif
