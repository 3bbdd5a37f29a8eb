/*
 * view.c - a file's bytes as a view (the live tree or a snapshot) sees
 * them: its extents from the namespace, their chunks from the store.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "damage.h"
#include "view.h"
#include "../chunker/util.h"

int view_read(struct store *st, pthread_mutex_t *lock, int64_t vol, int64_t view,
	      uint64_t ino, void *buf, size_t len, uint64_t off,
	      const char *volname)
{
	struct extent *xs = NULL;
	size_t nx = 0;
	struct chunk_ref *refs = NULL;
	int err = 0;
	memset(buf, 0, len);
	/* A pack may be rewritten by GC between resolving and reading: on
	 * ENOENT resolve once more. */
	for (int attempt = 0; attempt < 2; attempt++) {
		free(xs);
		free(refs);
		xs = NULL;
		refs = NULL;
		if (lock)
			pthread_mutex_lock(lock);
		err = ns_extents_in(st->ix, vol, view, ino, off, off + len,
				       &xs, &nx);
		if (!err && nx) {
			refs = malloc(nx * sizeof(*refs));
			if (!refs)
				err = -ENOMEM;
			for (size_t i = 0; i < nx && !err; i++)
				err = store_chunk_ref(st, xs[i].chunk, &refs[i]);
		}
		if (lock)
			pthread_mutex_unlock(lock);
		for (size_t i = 0; i < nx && !err; i++) {
			uint64_t s = xs[i].off > off ? xs[i].off : off;
			uint64_t e = xs[i].off + xs[i].len;
			if (e > off + len)
				e = off + len;
			if (s >= e)
				continue;
			err = store_read_chunk(st, &refs[i], xs[i].coff + (s - xs[i].off),
					       (uint8_t *)buf + (s - off), e - s);
			/* ENOENT: maybe a GC rewrite; resolve again once, then
			 * the pack is missing: EIO like any other damage. */
			if (err && (err != -ENOENT || attempt == 1)) {
				char hex[PACK_NAME_LEN * 2 + 1], path[1024];
				hex_encode(refs[i].pack, PACK_NAME_LEN, hex);
				/* Name the file, not only the inode. */
				if (lock)
					pthread_mutex_lock(lock);
				damage_path(st->ix, vol, view, ino, path, sizeof(path));
				if (lock)
					pthread_mutex_unlock(lock);
				tlog(LOG_ERR, "volume %s: %s (inode %llu) at offset %llu: chunk in pack %s: %s%s",
				     volname, path, (unsigned long long)ino,
				     (unsigned long long)s, hex,
				     err == -EBADMSG ? "failed authentication"
				     : err == -ENOENT ? "the pack file is missing" : strerror(-err),
				     st->fetch ? " here and could not be fetched from the remote"
					       : "; no remote to heal it from ('tresor repair')");
				err = -EIO;
			}
		}
		if (err != -ENOENT)
			break;
	}
	free(xs);
	free(refs);
	return err;
}
