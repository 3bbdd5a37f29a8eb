/*
 * view.h - reading a file's bytes in a view (view.c).
 */
#ifndef TRESOR_VIEW_H
#define TRESOR_VIEW_H

#include <pthread.h>
#include "namespace.h"
#include "../chunker/store.h"

/*
 * Fill buf with [off, off+len) of inode ino of volume vol as seen in view,
 * from its extents (holes read as zeros).  lock (may be NULL) is held
 * around index access only.  A chunk that fails authentication gives
 * -EIO and a log line naming the volume, the file's path and the pack.
 */
int view_read(struct store *st, pthread_mutex_t *lock, int64_t vol, int64_t view,
	      uint64_t ino, void *buf, size_t len, uint64_t off,
	      const char *volname);

#endif
