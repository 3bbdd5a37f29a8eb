/*
 * restore.h - copy a tree out of a view of a volume (a snapshot) into a
 * directory, with modes, owners, times, symlinks, hard links, xattrs and
 * ACLs; resumable; by sharing extents when the destination is the
 * volume's own mount.  A library call: problems with single items go to a
 * callback, and the caller decides what to print.
 */
#ifndef TRESOR_RESTORE_H
#define TRESOR_RESTORE_H

#include <stdint.h>
#include "namespace.h"
#include "../chunker/store.h"

struct restore_opts {
	/* Bytes restored or found already there, of total (0 if not known:
	 * a subtree).  May be NULL. */
	void (*progress)(void *parg, uint64_t done, uint64_t total);
	void *parg;
	/* One item that could not be restored (path, what failed, errno or
	 * 0); the restore goes on.  May be NULL. */
	void (*report)(void *arg, const char *path, const char *what, int err);
	void *arg;
	/* The view as the volume's running mount shows it
	 * (MOUNT/.snapshots/NAME), when the destination is in that mount;
	 * or NULL.  Files are then copied from there with copy_file_range,
	 * which shares their chunks (fs/fuse_share.c) instead of storing
	 * their bytes again; where that fails (EXDEV: another file system)
	 * the bytes are copied from the index as without it. */
	const char *share_from;
};

struct restore_result {
	uint64_t files, bytes, skipped;	/* skipped: already there */
	uint64_t errors;		/* items reported */
};

/*
 * Restore tree (a path in view of volume vi, "" or "/" for the whole
 * volume) into dest, created if missing: the whole volume's entries go
 * into dest itself, a subtree into dest/LAST.  -ENOENT: no such path in
 * the view; -errno if dest cannot be made or opened.  Items that fail
 * are counted in res->errors, not returned.
 */
int restore_view(struct store *st, const struct volume_info *vi, int64_t view,
		 const char *tree, const char *dest, const struct restore_opts *o,
		 struct restore_result *res);

#endif
