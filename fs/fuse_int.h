/*
 * fuse_int.h - what the FUSE operation files share (fs/ internal): the
 * request's volume, attributes as a stat, directory listings and their
 * operations (fuse_dir.c), xattr replies, the views an inode number names
 * (fuse_view.c), and the operations on extents (fuse_share.c).
 */
#ifndef TRESOR_FUSE_INT_H
#define TRESOR_FUSE_INT_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include "vfs.h"
#include "view.h"

/* How long the kernel may cache the live tree's entries and attributes
 * unless -o cache_timeout says otherwise (seconds). */
#define CACHE_TIMEOUT_DEFAULT 1.0
#define SNAP_TIMEOUT 60.0	/* snapshots never change */
#define NAME_MAX_LEN 255

static inline struct vfs *V(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* A handle's fi->fh: the pointer, its top 16 bits the process's
 * generation (v->fh_gen).  After a handover the kernel still holds the
 * earlier process's handles: those read back as NULL, never as a pointer
 * of this one (user-space pointers fit in 48 bits on x86-64 and arm64). */
#define FH_PTR_BITS 48
static inline uint64_t vfs_fh_make(const struct vfs *v, void *p)
{
	return (uint64_t)(uintptr_t)p | (uint64_t)v->fh_gen << FH_PTR_BITS;
}

static inline void *vfs_fh_get(const struct vfs *v, uint64_t fh)
{
	if (fh >> FH_PTR_BITS != v->fh_gen)
		return NULL;
	return (void *)(uintptr_t)(fh & ((UINT64_C(1) << FH_PTR_BITS) - 1));
}
/* A live file's handle holds no pointer: bit 0 says it was opened to
 * write, and vfs_fh_get of it is NULL, or not, by its generation. */
#define FH_WRITES 1

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
/* 1 if the caller of req is in group gid (primary or supplementary);
 * reads /proc, so no lock held. */
int caller_in_group(fuse_req_t req, gid_t gid);

/* Operations on a file's extents (fuse_share.c): copies that share
 * chunks, fallocate, SEEK_DATA/SEEK_HOLE. */
void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			struct fuse_file_info *fi_in, fuse_ino_t ino_out,
			off_t off_out, struct fuse_file_info *fi_out,
			size_t len, int flags);
void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off,
		  off_t len, struct fuse_file_info *fi);
void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
	      struct fuse_file_info *fi);

/* The operations of a mounted volume (fuse_ops.c). */
const struct fuse_lowlevel_ops *vfs_fuse_ops(void);

/* Directories (fuse_dir.c). */
void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
struct snapfile;
/* Reads (fuse_defer.c).  Read and reply; with
 * may_defer, a read that would wait for a fetch is handed to
 * defer_read instead. */
void read_answer(fuse_req_t req, struct vfs *v, fuse_ino_t ino, struct snapfile *sf,
		 size_t size, off_t off, int may_defer);
/* Queue a read for a thread that may wait (it replies): 0, or -errno and
 * the caller reads it itself. */
int defer_read(struct vfs *v, fuse_req_t req, fuse_ino_t ino, struct snapfile *sf,
	       size_t size, off_t off);
/* Answer what is queued (EINTR), wait for the reads in progress: before
 * the session goes. */
void defer_stop(struct vfs *v);

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi);
void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		 struct fuse_file_info *fi);

/* ops with timing wrappers (fuse_timed.c), built in out; sets
 * v->inner_ops to ops. */
const struct fuse_lowlevel_ops *fuse_timed_ops(const struct fuse_lowlevel_ops *ops,
					       struct fuse_lowlevel_ops *out,
					       struct vfs *v);

/* An inode's attributes as a stat (fuse_view.c). */
void attr_to_stat(struct vfs *v, int64_t view, const struct inode_attr *a,
		  struct stat *sb);

/* A directory listing taken at opendir (and again at a rewind), so that
 * offsets stay stable while entries are removed (fuse_view.c). */
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

/* Views (fuse_view.c).  The kernel's inode number kino names an inode in
 * one view: the live tree (slot 0), .snapshots (SLOT_SNAPDIR) or a
 * snapshot (slot = its id).  Operations resolve it once and take it. */
struct vino {
	fuse_ino_t kino;	/* as the kernel knows it */
	uint64_t slot;		/* INO_SLOT(kino) */
	int64_t view;		/* VIEW_LIVE or the snapshot's epoch */
	uint64_t ino;		/* the inode within the view */
};
/* Resolve kino; -ENOENT if its snapshot is gone.  ctx->lock held. */
int vino_resolve(struct vfs *v, fuse_ino_t kino, struct vino *vi);
/* name in directory dir (.snapshots in the live root, a snapshot in
 * .snapshots, an entry elsewhere).  ctx->lock held. */
int vino_child(struct vfs *v, const struct vino *dir, const char *name,
	       struct vino *child);
/* The entry of child, a name in directory dir, for a lookup or
 * readdirplus reply, with the kernel's reference counted; *np its live
 * node (NULL in other views).  ctx->lock held (fuse_ops.c). */
int vino_entry(struct vfs *v, const struct vino *dir,
	       const struct vino *child, struct fuse_entry_param *e,
	       struct node **np);
/* Attributes of vi (from its node in the live view).  ctx->lock held. */
int vino_attr(struct vfs *v, const struct vino *vi, struct inode_attr *a);
/* Resolve kino and stat it, st_ino being kino.  Takes ctx->lock. */
int vino_stat(struct vfs *v, fuse_ino_t kino, struct vino *vi,
	      struct stat *sb);
/* The live node behind an open handle, NULL if not open (it is held by
 * nopen, so no lock is needed to keep it alive). */
struct node *vino_open_node(struct vfs *v, fuse_ino_t kino);
/* Read [off, off+size) of kino into buf; *got the bytes read. */
int vino_read(struct vfs *v, fuse_ino_t kino, char *buf, size_t size,
	      off_t off, size_t *got);
/* An open file of a snapshot (fi->fh): its size and extents, read once
 * (a snapshot never changes). */
struct snapfile {
	int64_t view;
	uint64_t ino, size;
	struct xmap *map;	/* NULL until the first read (ctx->lock) */
	int nomap;		/* the map went stale: read without (ctx->lock) */
	struct snapfile *prev, *next;	/* v->snapfiles (ctx->lock) */
};
/* Read [off, off+size) of the snapshot file kino through its handle sf. */
int snapfile_read(struct vfs *v, fuse_ino_t kino, struct snapfile *sf,
		  char *buf, size_t size, off_t off, size_t *got);
/* Note sf among the open handles / drop and free it (lock NOT held). */
void snapfile_track(struct vfs *v, struct snapfile *sf);
void snapfile_release(struct vfs *v, struct snapfile *sf);
/* Free the handles whose RELEASE never came: the kernel drops requests
 * still queued when the file system is unmounted.  Once no request can
 * run any more. */
void snapfile_release_all(struct vfs *v);
/* Fill d with the snapshots' names (d->ino is SNAPDIR_INO). */
int snapdir_load(struct vfs *v, struct dirlist *d);

#endif
