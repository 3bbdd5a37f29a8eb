/*
 * namespace.h - the file trees of a store's volumes, as rows of the index
 * (docs/FORMAT.md §9.3-9.6, §10): volumes, inodes, directory entries,
 * extents, xattrs, orphans and snapshots.  The only module that runs SQL
 * on those tables: namespace.c holds the rows of the trees, ns_epoch.c
 * what spans epochs (taking and deleting snapshots, diffs), ns_check.c
 * the whole-index scans of check and damage reports.
 *
 * Versioned rows.  Every row of inode, dentry, extent and xattr carries
 * [birth, death): the epochs in which it is visible.  A volume has a current
 * epoch; a snapshot records an epoch and bumps the current one, so taking a
 * snapshot writes two rows whatever the volume's size.  Changing a row born
 * in an older epoch ends it (death = current) and inserts a new version;
 * a row born in the current epoch is changed in place.  A view is an epoch:
 * a row is visible in view E when birth <= E < death.  The live tree is the
 * view VIEW_LIVE, in which exactly the rows with death = EPOCH_ALIVE show.
 *
 * Chunk references: chunk.refs counts extent rows (any version) naming the
 * chunk (FORMAT.md §11).  This module keeps it as it inserts and deletes
 * extent rows, so a chunk whose refs is 0 is garbage (catalog.h).
 *
 * Not thread-safe: the caller serialises all calls on one struct index.
 */
#ifndef TRESOR_NAMESPACE_H
#define TRESOR_NAMESPACE_H

#include <stddef.h>
#include <stdint.h>
#include "../chunker/catalog.h"
#include "../chunker/index.h"

#define EPOCH_ALIVE INT64_MAX
#define VIEW_LIVE (INT64_MAX - 1)
#define ROOT_INO 1

struct volume_info {
	int64_t id;
	char name[256];
	int64_t epoch;		/* current epoch: rows written now are born here */
	uint64_t next_ino;
};

struct inode_attr {
	uint64_t ino;
	uint32_t mode, uid, gid, nlink;
	uint64_t size;
	uint64_t rdev;
	int64_t atime, mtime, ctime;	/* ns since the Unix epoch */
	int64_t birth;			/* epoch of this version */
};

struct extent {
	uint64_t off;		/* file offset */
	uint64_t len;
	int64_t chunk;		/* chunk rowid */
	uint64_t coff;		/* offset inside the chunk's raw bytes */
};

/* Volumes.  create makes the root directory (mode 0755, uid/gid given). */
int ns_volume_create(struct index *ix, const char *name, uint32_t uid,
			uint32_t gid, int64_t now, struct volume_info *vi);
int ns_volume_find(struct index *ix, const char *name,
		      struct volume_info *vi);
int ns_volume_list(struct index *ix, struct volume_info **vis, size_t *n);
int ns_volume_set_next_ino(struct index *ix, int64_t vol, uint64_t next);

/* Inodes.  get: -ENOENT if not visible in view. */
int ns_inode_get(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		    struct inode_attr *a);
/* Write a's attributes as the live version in epoch cur (COW as above). */
int ns_inode_put(struct index *ix, int64_t vol, int64_t cur,
		    struct inode_attr *a);
/* End the inode and all its extents and xattrs in epoch cur. */
int ns_inode_kill(struct index *ix, int64_t vol, int64_t cur, uint64_t ino);

/* Directory entries. */
int ns_dentry_lookup(struct index *ix, int64_t vol, int64_t view,
			uint64_t parent, const char *name, uint64_t *ino);
int ns_dentry_add(struct index *ix, int64_t vol, int64_t cur,
		     uint64_t parent, const char *name, uint64_t ino);
int ns_dentry_remove(struct index *ix, int64_t vol, int64_t cur,
			uint64_t parent, const char *name);
/* Call cb for each visible entry of parent with name > after (NULL: all),
 * in name order, until cb returns non-zero (which is returned). */
typedef int (*dentry_cb)(void *arg, const char *name, uint64_t ino,
			 uint32_t mode);
int ns_dentry_list(struct index *ix, int64_t vol, int64_t view,
		      uint64_t parent, const char *after, dentry_cb cb,
		      void *arg);
/* 1 if parent has no visible entries, 0 if it has, or -errno. */
int ns_dir_empty(struct index *ix, int64_t vol, int64_t view,
		    uint64_t parent);

/* Extents.  punch removes [start, end) from the live map (trimming extents
 * that straddle an edge); replace punches then maps [off, off+len) to
 * chunk at coff. */
int ns_extent_punch(struct index *ix, int64_t vol, int64_t cur,
		       uint64_t ino, uint64_t start, uint64_t end);
int ns_extent_replace(struct index *ix, int64_t vol, int64_t cur,
			 uint64_t ino, const struct extent *x);
/* Visible extents overlapping [start, end), sorted by offset; *xs malloc'd. */
int ns_extents_in(struct index *ix, int64_t vol, int64_t view,
		     uint64_t ino, uint64_t start, uint64_t end,
		     struct extent **xs, size_t *n);

/* Bytes mapped by visible extents (for st_blocks), or -errno. */
int64_t ns_extent_bytes(struct index *ix, int64_t vol, int64_t view,
			   uint64_t ino);

/* Extended attributes. get returns the value length or -ENODATA; with
 * size 0 only the length. */
/* 1 if volume vol has (or had: dead rows count) any xattr, 0 if never:
 * the daemon then answers getxattr without a query, since the kernel
 * asks security.capability before every write. */
int ns_xattr_any(struct index *ix, int64_t vol);
int ns_xattr_get(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		    const char *name, void *buf, size_t size);
int ns_xattr_set(struct index *ix, int64_t vol, int64_t cur, uint64_t ino,
		    const char *name, const void *val, size_t len);
int ns_xattr_remove(struct index *ix, int64_t vol, int64_t cur,
		       uint64_t ino, const char *name);
/* NUL-separated names into buf; returns the total length (size 0: only
 * the length) or -ERANGE. */
int ns_xattr_list(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		     char *buf, size_t size);

/* Inodes unlinked while still open. */
int ns_orphan_add(struct index *ix, int64_t vol, uint64_t ino);
int ns_orphan_remove(struct index *ix, int64_t vol, uint64_t ino);
int ns_orphan_list(struct index *ix, int64_t vol, uint64_t **inos,
		      size_t *n);

/* Snapshots: a name, a time and the epoch they see. */
struct snapshot_info {
	int64_t id;
	int64_t vol;
	char name[128];
	int64_t epoch;
	int64_t time;		/* ns since the Unix epoch */
	int pinned;
	char set_name[72];	/* the snapshot set it belongs to; "" alone */
	char note[200];		/* why it is marked (a hook failed); "" none */
};
/* Oldest first; *out malloc'd. */
int ns_snapshot_list(struct index *ix, int64_t vol,
			struct snapshot_info **out, size_t *n);
int ns_snapshot_find(struct index *ix, int64_t vol, const char *name,
			struct snapshot_info *si);
int ns_snapshot_get(struct index *ix, int64_t id, struct snapshot_info *si);

/* Bytes and count of regular files visible in view. */
int ns_view_size(struct index *ix, int64_t vol, int64_t view,
		    uint64_t *bytes, uint64_t *files);
/* One directory entry naming ino in view (its first by parent, name). */
int ns_dentry_of(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		    uint64_t *parent, char *name, size_t size);
/* Every entry naming ino in view: cb(arg, name, parent, 0). */
int ns_dentry_names(struct index *ix, int64_t vol, int64_t view,
		       uint64_t ino, dentry_cb cb, void *arg);
/* Sealed bytes: referenced by the live tree, only by snapshots, by none. */
int ns_space(struct index *ix, uint64_t *live, uint64_t *snap_only,
		uint64_t *reclaimable);

/* Bytes the live tree maps through extents, and the raw bytes of the
 * distinct chunks behind them: their ratio is the live dedup ratio. */
int ns_live_dedup(struct index *ix, uint64_t *mapped, uint64_t *unique);

/* Figures for `tresor stats`. */
struct ns_stats {
	uint64_t logical;	/* bytes of live regular files, all volumes */
	uint64_t files;
	uint64_t chunks, chunk_raw, chunk_stored;	/* referenced chunks */
	uint64_t garbage_chunks, garbage_stored;	/* refs == 0 */
	uint64_t packs, pack_bytes;
};
int ns_stats(struct index *ix, int64_t vol, struct ns_stats *s);

/* The rest of the namespace's calls: its callers include one header. */
#include "ns_epoch.h"

#endif
