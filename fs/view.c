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

int xmap_load(struct store *st, int64_t vol, int64_t view, uint64_t ino,
	      struct xmap **out)
{
	struct xmap *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	int err = ns_extents_in(st->ix, vol, view, ino, 0, INT64_MAX, &m->xs, &m->n);
	if (!err && m->n) {
		m->refs = malloc(m->n * sizeof(*m->refs));
		if (!m->refs)
			err = -ENOMEM;
		for (size_t i = 0; i < m->n && !err; i++)
			err = store_chunk_ref(st, m->xs[i].chunk, &m->refs[i]);
	}
	if (err) {
		xmap_free(m);
		return err;
	}
	*out = m;
	return 0;
}

void xmap_free(struct xmap *m)
{
	if (!m)
		return;
	free(m->xs);
	free(m->refs);
	free(m);
}

size_t xmap_find(const struct xmap *m, uint64_t off)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->xs[mid].off + m->xs[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Read [off, off+len) from the nx extents xs whose chunks are refs
 * (attempt: 1 on the last try, when a missing pack is damage). */
static int read_extents(struct store *st, pthread_mutex_t *lock, int64_t vol,
			int64_t view, uint64_t ino, void *buf, size_t len,
			uint64_t off, const char *volname,
			const struct extent *xs, const struct chunk_ref *refs,
			size_t nx, int attempt)
{
	int err = 0;
	for (size_t i = 0; i < nx && !err; i++) {
		uint64_t s = xs[i].off > off ? xs[i].off : off;
		uint64_t e = xs[i].off + xs[i].len;
		if (e > off + len)
			e = off + len;
		if (s >= e)
			continue;
		err = store_read_chunk(st, &refs[i], xs[i].coff + (s - xs[i].off),
				       (uint8_t *)buf + (s - off), e - s);
		if (err == -EWOULDBLOCK)
			break;	/* to be read where a fetch may wait */
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
	return err;
}

int view_read_map(struct store *st, pthread_mutex_t *lock, int64_t vol,
		  int64_t view, uint64_t ino, void *buf, size_t len,
		  uint64_t off, const char *volname, const struct xmap *map,
		  int *stale)
{
	if (stale)
		*stale = 0;
	if (map) {
		memset(buf, 0, len);
		size_t i = xmap_find(map, off), j = i;
		while (j < map->n && map->xs[j].off < off + len)
			j++;
		int err = read_extents(st, lock, vol, view, ino, buf, len, off,
				       volname, map->xs + i, map->refs + i,
				       j - i, 0);
		if (err != -ENOENT)
			return err;
		if (stale)
			*stale = 1;	/* a pack went away: resolve afresh */
	}
	return view_read(st, lock, vol, view, ino, buf, len, off, volname);
}

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
		if (!err)
			err = read_extents(st, lock, vol, view, ino, buf, len, off,
					   volname, xs, refs, nx, attempt);
		if (err != -ENOENT)
			break;
	}
	free(xs);
	free(refs);
	return err;
}
