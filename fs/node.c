/*
 * node.c - in-memory inodes of a mounted volume and the file data path.
 *
 * Writes land in per-file dirty ranges.  A range is cut into
 * content-defined chunks once it holds more than two maximum-size chunks
 * (keeping the tail, so a file written front to back gets exactly the cuts
 * a whole-file chunking would give), and whole at flush/fsync/close.  Each
 * chunk is stored (deduplicated, sealed, appended to a pack) and mapped
 * into the file's extents.  The size persisted in the index never runs
 * ahead of the data mapped by extents, so after a crash a file never shows
 * bytes it never had.  Locking is described in vfs.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../chunker/buf.h"
#include "view.h"
#include "../chunker/util.h"
#include "vfs.h"

#define DIRTY_LIMIT (96u << 20)	/* all files: flush the writer beyond it */

/* ---- node table ---- */

static size_t hash_ino(uint64_t ino, size_t size)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 20) & (size - 1);
}

static int table_grow(struct vfs *v)
{
	size_t nsize = v->tabsize ? v->tabsize * 2 : 1024;
	struct node **nt = calloc(nsize, sizeof(*nt));
	if (!nt)
		return -ENOMEM;
	for (size_t i = 0; i < v->tabsize; i++) {
		struct node *n = v->tab[i];
		while (n) {
			struct node *next = n->next;
			size_t h = hash_ino(n->attr.ino, nsize);
			n->next = nt[h];
			nt[h] = n;
			n = next;
		}
	}
	free(v->tab);
	v->tab = nt;
	v->tabsize = nsize;
	return 0;
}

struct node *node_find(struct vfs *v, uint64_t ino)
{
	if (!v->tabsize)
		return NULL;
	for (struct node *n = v->tab[hash_ino(ino, v->tabsize)]; n; n = n->next)
		if (n->attr.ino == ino)
			return n;
	return NULL;
}

struct node *node_new(struct vfs *v, const struct inode_attr *a)
{
	if (v->nnodes >= v->tabsize && table_grow(v))
		return NULL;
	struct node *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->attr = *a;
	size_t h = hash_ino(n->attr.ino, v->tabsize);
	n->next = v->tab[h];
	v->tab[h] = n;
	v->nnodes++;
	return n;
}

struct node *node_get(struct vfs *v, uint64_t ino, int *err)
{
	struct node *n = node_find(v, ino);
	if (n)
		return n;
	struct inode_attr a;
	*err = ns_inode_get(v->st->ix, v->vol.id, VIEW_LIVE, ino, &a);
	if (*err)
		return NULL;
	n = node_new(v, &a);
	if (!n)
		*err = -ENOMEM;
	return n;
}

static void node_unlink_table(struct vfs *v, struct node *n)
{
	struct node **pp = &v->tab[hash_ino(n->attr.ino, v->tabsize)];
	while (*pp && *pp != n)
		pp = &(*pp)->next;
	if (*pp)
		*pp = n->next;
	v->nnodes--;
}

/* Free n's data-path state and whatever it still buffers (lock held;
 * nobody holds a pin, so nobody holds dlock). */
void node_data_free(struct vfs *v, struct node *n)
{
	struct node_data *d = n->d;
	if (!d)
		return;
	for (size_t i = 0; i < d->nranges; i++)
		free(d->ranges[i].buf);
	free(d->ranges);
	xmap_free(d->xmap);
	v->dirty_total -= d->dirty_bytes;
	pthread_mutex_destroy(&d->dlock);
	free(d);
	n->d = NULL;
}

int node_pin(struct vfs *v, struct node *n)
{
	if (!n->d) {
		struct node_data *d = calloc(1, sizeof(*d));
		if (!d)
			return -ENOMEM;
		pthread_mutex_init(&d->dlock, NULL);
		/* Nothing is buffered or queued without node_data, so all
		 * its data is in extents and any size up to attr.size may be
		 * persisted.  A file reopened to append goes on where its
		 * data ends, as if its last writer had never closed it. */
		d->psize = n->attr.size;
		d->stream_end = n->attr.size;
		n->d = d;
	}
	n->nopen++;
	node_mark_hot(v, n);
	return 0;
}

void node_mark_hot(struct vfs *v, struct node *n)
{
	if (n->hot)
		return;
	struct node **h = buf_grow(v->hot, &v->hotcap, v->nhot + 1, sizeof(*h));
	if (!h) {
		/* The walkers fall back to the whole table. */
		v->hot_overflow = 1;
		return;
	}
	v->hot = h;
	v->hot[v->nhot++] = n;
	n->hot = (uint32_t)v->nhot;
}

void node_touch(struct vfs *v, struct node *n)
{
	n->attr_dirty = 1;
	node_mark_hot(v, n);
}

static void hot_remove(struct vfs *v, struct node *n)
{
	if (!n->hot)
		return;
	size_t i = n->hot - 1;
	struct node *last = v->hot[--v->nhot];
	v->hot[i] = last;
	last->hot = (uint32_t)i + 1;
	n->hot = 0;
}

/* 1 if n still belongs on the hot list. */
static int node_is_hot(const struct node *n)
{
	return n->nopen || n->attr_dirty ||
	       (n->d && (n->d->dirty_bytes || n->d->nranges || n->d->phead));
}

/*
 * Call fn on every node that may be open, dirty or attr_dirty (lock
 * held), dropping the ones that are none of these any more.  fn may not
 * free nodes; it returns non-zero to stop.  Without a hot list (memory
 * ran out once) it walks the whole table.
 */
int node_hot_walk(struct vfs *v, int (*fn)(struct vfs *, struct node *, void *),
		  void *arg)
{
	int err = 0;
	if (v->hot_overflow) {
		for (size_t i = 0; i < v->tabsize && !err; i++)
			for (struct node *n = v->tab[i]; n && !err; n = n->next)
				err = fn(v, n, arg);
		return err;
	}
	for (size_t i = 0; i < v->nhot && !err;) {
		struct node *n = v->hot[i];
		if (!node_is_hot(n)) {
			hot_remove(v, n);	/* the last one moves to i */
			continue;
		}
		err = fn(v, n, arg);
		i++;
	}
	return err;
}

/* Drop n from memory once the kernel and every handle let go of it; an
 * inode with no links left ends then.  Its node_data goes as soon as no
 * pin is left and nothing is buffered.  ctx->lock held. */
void node_maybe_free(struct vfs *v, struct node *n)
{
	struct node_data *d = n->d;
	if (!n->nopen && d && !d->nranges && !d->phead && !d->dirty_bytes &&
	    !d->werr)
		node_data_free(v, n);
	if (n->nlookup || n->nopen || (n->d && n->d->phead) ||
	    n->attr.ino == ROOT_INO)
		return;
	if (n->attr.nlink == 0 && !v->readonly) {
		int err = index_begin(v->st->ix);
		if (!err)
			err = ns_inode_kill(v->st->ix, v->vol.id,
					       v->vol.epoch, n->attr.ino);
		if (!err)
			err = ns_orphan_remove(v->st->ix, v->vol.id, n->attr.ino);
		if (err)
			tlog(LOG_ERR, "volume %s: cannot free inode %llu: %s",
			     v->vol.name, (unsigned long long)n->attr.ino,
			     strerror(-err));
	} else if (n->attr_dirty && !v->readonly) {
		node_persist(v, n);
	}
	node_unlink_table(v, n);
	hot_remove(v, n);
	node_data_free(v, n);
	free(n);
}

void node_forget(struct vfs *v, struct node *n, uint64_t count)
{
	n->nlookup = count > n->nlookup ? 0 : n->nlookup - count;
	node_maybe_free(v, n);
}

void node_release(struct vfs *v, struct node *n)
{
	if (n->nopen > 0)
		n->nopen--;
	node_maybe_free(v, n);
}

int node_persist(struct vfs *v, struct node *n)
{
	struct inode_attr a = n->attr;
	/* With data still unchunked, the persisted size may not run ahead
	 * of what the extents hold. */
	size_t dirty = n->d ? n->d->dirty_bytes : 0;
	if (dirty && a.size > n->d->psize)
		a.size = n->d->psize;
	int err = index_begin(v->st->ix);
	if (!err)
		err = ns_inode_put(v->st->ix, v->vol.id, v->vol.epoch, &a);
	if (err)
		return err;
	n->attr.birth = a.birth;
	if (n->d)
		n->d->psize = a.size;
	if (!dirty)
		n->attr_dirty = 0;
	return 0;
}

/* ---- dirty ranges ---- */

static int range_reserve(struct range *r, size_t need)
{
	/* A range starts at 64 KiB: small writes come in runs. */
	uint8_t *b = buf_grow(r->buf, &r->cap, need < (64 << 10) ? 64 << 10 : need, 1);
	if (!b)
		return -ENOMEM;
	r->buf = b;
	return 0;
}

/*
 * Put [off, off+len) into n's ranges, merging every range it overlaps or
 * touches into one.  Returns the index of that range, or -errno.  *added
 * gets the growth in buffered bytes.
 */
static long ranges_add(struct node *n, const void *buf, size_t len,
		       uint64_t off, size_t *added)
{
	struct node_data *d = n->d;
	uint64_t end = off + len;
	size_t i = 0;
	while (i < d->nranges && d->ranges[i].off + d->ranges[i].len < off)
		i++;
	size_t j = i;
	uint64_t nstart = off, nend = end;
	size_t before = 0;
	while (j < d->nranges && d->ranges[j].off <= end) {
		if (d->ranges[j].off < nstart)
			nstart = d->ranges[j].off;
		if (d->ranges[j].off + d->ranges[j].len > nend)
			nend = d->ranges[j].off + d->ranges[j].len;
		before += d->ranges[j].len;
		j++;
	}
	if (j == i) {
		/* No neighbour: a new range at position i. */
		void *p = buf_grow(d->ranges, &d->rangecap, d->nranges + 1,
				   sizeof(*d->ranges));
		if (!p)
			return -ENOMEM;
		d->ranges = p;
		memmove(&d->ranges[i + 1], &d->ranges[i],
			(d->nranges - i) * sizeof(*d->ranges));
		d->nranges++;
		struct range *r = &d->ranges[i];
		memset(r, 0, sizeof(*r));
		r->off = off;
		if (range_reserve(r, len)) {
			memmove(&d->ranges[i], &d->ranges[i + 1],
				(d->nranges - i - 1) * sizeof(*d->ranges));
			d->nranges--;
			return -ENOMEM;
		}
		memcpy(r->buf, buf, len);
		r->len = len;
		*added = len;
		return i;
	}
	/* Merge ranges i..j-1 into range i, which starts at nstart. */
	struct range *r = &d->ranges[i];
	if (r->off > nstart) {
		/* The new data starts before range i: shift it up. */
		size_t shift = r->off - nstart;
		if (range_reserve(r, r->len + shift))
			return -ENOMEM;
		memmove(r->buf + shift, r->buf, r->len);
		r->off = nstart;
		r->len += shift;
	}
	if (range_reserve(r, nend - nstart))
		return -ENOMEM;
	for (size_t k = i + 1; k < j; k++) {
		struct range *o = &d->ranges[k];
		memcpy(r->buf + (o->off - nstart), o->buf, o->len);
		free(o->buf);
	}
	r->len = nend - nstart;
	memcpy(r->buf + (off - nstart), buf, len);
	memmove(&d->ranges[i + 1], &d->ranges[j],
		(d->nranges - j) * sizeof(*d->ranges));
	d->nranges -= j - i - 1;
	*added = r->len - before;
	return i;
}

/* Drop the first used bytes of range idx (now queued as chunks),
 * removing the range when empty.  With tail, the rest was copied there
 * and the old buffer now belongs to the pipeline. */
static void range_consume(struct node *n, size_t idx, size_t used,
			  uint8_t *tail)
{
	struct node_data *d = n->d;
	struct range *r = &d->ranges[idx];
	if (used == r->len) {
		if (!tail)
			free(r->buf);
		free(tail);	/* handed over whole: no tail to keep */
		memmove(&d->ranges[idx], &d->ranges[idx + 1],
			(d->nranges - idx - 1) * sizeof(*d->ranges));
		d->nranges--;
		return;
	}
	if (tail) {
		memcpy(tail, r->buf + used, r->len - used);
		r->buf = tail;
	} else {
		memmove(r->buf, r->buf + used, r->len - used);
	}
	r->off += used;
	r->len -= used;
	/* A drained streaming buffer need not stay at its peak. */
	if (r->cap > (16u << 20) && r->len < r->cap / 4) {
		uint8_t *b = realloc(r->buf, r->cap / 2);
		if (b) {
			r->buf = b;
			r->cap /= 2;
		}
	}
}

/*
 * Whether range r's buffer itself should carry the chunks about to be cut
 * from it (at least done bytes): yes when they are at least half of it,
 * or at least a chunk's average (the bytes are then worth more than the
 * slack the pipeline is charged for).  *tail then holds a buffer of the
 * same size for what stays; NULL means copy the chunks, as always done
 * when memory is short.
 */
static struct pipe_block *range_handoff(const struct range *r, size_t done,
					size_t avg, uint8_t **tail)
{
	*tail = NULL;
	if (!done || (done < r->cap / 2 && done < avg))
		return NULL;
	*tail = malloc(r->cap);
	if (!*tail)
		return NULL;
	struct pipe_block *b = pipeline_block_new(r->buf);
	if (!b) {
		free(*tail);
		*tail = NULL;
	}
	return b;
}

/* Cut range idx into chunks and queue them for storing.  Unless final,
 * keep the tail that may still grow into a different chunk.  dlock held. */
static int range_cut(struct vfs *v, struct node *n, size_t idx, int final)
{
	const struct fastcdc_params *cdc = &v->st->cdc;
	struct range *r = &n->d->ranges[idx];
	/* At least this much is cut: all but the last max_size bytes. */
	size_t done = final ? r->len
			    : r->len > cdc->max_size ? r->len - cdc->max_size : 0;
	uint8_t *tail;
	struct pipe_block *blk = range_handoff(r, done, cdc->avg_size, &tail);
	size_t pos = 0;
	int err = 0;
	while (pos < r->len) {
		size_t rem = r->len - pos;
		if (!final && rem <= cdc->max_size)
			break;
		size_t c = fastcdc_cut(cdc, r->buf + pos, rem);
		size_t left = rem - c;
		int last = !left || (!final && left <= cdc->max_size);
		err = pipeline_queue(v, n, blk, r->buf + pos, c, r->off + pos,
				     blk && last ? r->cap - (pos + c) : 0);
		if (err)
			break;
		pos += c;
	}
	if (pos) {
		n->d->stream_end = r->off + pos;
		range_consume(n, idx, pos, tail);	/* NULL unless blk */
	} else {
		free(tail);	/* nothing went: the range keeps its buffer */
	}
	if (blk)
		pipeline_block_put(v, blk, pos > 0);
	return err;
}

int node_flush(struct vfs *v, struct node *n)
{
	int err = 0;
	while (n->d->nranges && !err)
		err = range_cut(v, n, 0, 1);
	pthread_mutex_lock(&v->lock);
	int e2 = pipeline_wait(v, n);
	err = err ? err : e2;
	if (!err && n->attr_dirty)
		err = node_persist(v, n);
	pthread_mutex_unlock(&v->lock);
	return err;
}

int node_write(struct vfs *v, struct node *n, const void *buf, size_t len,
	       uint64_t off)
{
	size_t added = 0;
	long idx = ranges_add(n, buf, len, off, &added);
	if (idx < 0)
		return (int)idx;
	int64_t now = vfs_now();
	pthread_mutex_lock(&v->lock);
	n->d->dirty_bytes += added;
	v->dirty_total += added;
	if (off + len > n->attr.size)
		n->attr.size = off + len;
	n->attr.mtime = n->attr.ctime = now;
	node_touch(v, n);
	size_t total = v->dirty_total;
	pthread_mutex_unlock(&v->lock);
	/* Cut a streaming range only where the last cut ended, so that
	 * writes arriving out of order (several FUSE threads, kernel
	 * writeback) still give the cuts of a whole-file chunking; a range
	 * elsewhere waits for the gap to fill, within a memory bound. */
	int err = 0;
	struct range *r = &n->d->ranges[idx];
	size_t max = v->st->cdc.max_size;
	size_t bound = 8 * max > (32u << 20) ? 8 * max : (32u << 20);
	if ((r->len >= 2 * max && (r->off == 0 || r->off == n->d->stream_end)) ||
	    r->len >= bound)
		err = range_cut(v, n, idx, 0);
	if (!err && total > DIRTY_LIMIT)
		err = node_flush(v, n);
	return err;
}

int vfs_read_extents(struct vfs *v, int64_t view, uint64_t ino, void *buf,
		     size_t len, uint64_t off)
{
	int err = view_read(v->st, &v->lock, v->vol.id, view, ino,
				     buf, len, off, v->vol.name);
	if (!err && len >= (64u << 10))
		pipeline_readahead(v, view, ino, off + len);
	return err;
}

/* Files with more extents than this are read through index queries: the
 * map would cost more memory than the queries cost time. */
#define XMAP_MAX_EXTENTS 65536

/* n's extent map, loaded if missing or stale; NULL if it cannot be had
 * (dlock and lock held). */
static struct xmap *node_xmap(struct vfs *v, struct node *n)
{
	struct node_data *d = n->d;
	if (d->xmap && d->xmap_gen == d->xgen)
		return d->xmap;
	xmap_free(d->xmap);
	d->xmap = NULL;
	struct xmap *m;
	if (xmap_load(v->st, v->vol.id, VIEW_LIVE, n->attr.ino, &m))
		return NULL;
	if (m->n > XMAP_MAX_EXTENTS) {
		xmap_free(m);
		return NULL;
	}
	__atomic_fetch_add(&v->xmap_loads, 1, __ATOMIC_RELAXED);
	d->xmap = m;
	d->xmap_gen = d->xgen;
	return m;
}

/* Queue the chunks of the extents of m in [from, from + span) for the
 * workers to load (lock held). */
static void xmap_readahead(struct vfs *v, const struct xmap *m, uint64_t from)
{
	uint64_t span = 2ull * v->st->cdc.avg_size;
	for (size_t i = xmap_find(m, from); i < m->n && m->xs[i].off < from + span; i++)
		pipeline_prefetch(v, &m->refs[i]);
}

int node_read(struct vfs *v, struct node *n, void *buf, size_t len,
	      uint64_t off, size_t *got)
{
	pthread_mutex_lock(&v->lock);
	uint64_t size = n->attr.size;
	*got = 0;
	if (off >= size) {
		pthread_mutex_unlock(&v->lock);
		return 0;
	}
	if (off + len > size)
		len = size - off;
	__atomic_fetch_add(&v->fuse_reads, 1, __ATOMIC_RELAXED);
	/* Chunks still in the pipeline are newer than the extents: pin them
	 * before looking the extents up (no new ones come: we hold dlock). */
	size_t np;
	struct pending **ps = pipeline_pin(v, n, off, len, &np);
	/* The map stays valid without the lock: only a reader holding dlock
	 * replaces it, and a change of the extents after this point is
	 * covered by the pinned chunks, as a query's answer would be. */
	struct xmap *m = node_xmap(v, n);
	if (m && len >= (64u << 10))
		xmap_readahead(v, m, off + len);
	pthread_mutex_unlock(&v->lock);
	int err, stale = 0;
	if (m)
		err = view_read_map(v->st, &v->lock, v->vol.id, VIEW_LIVE,
				    n->attr.ino, buf, len, off, v->vol.name, m,
				    &stale);
	else
		err = vfs_read_extents(v, VIEW_LIVE, n->attr.ino, buf, len, off);
	pipeline_overlay(ps, np, buf, len, off);
	pthread_mutex_lock(&v->lock);
	pipeline_unpin(v, ps, np);
	if (stale) {
		xmap_free(n->d->xmap);	/* a pack was rewritten: load again */
		n->d->xmap = NULL;
	}
	pthread_mutex_unlock(&v->lock);
	if (err)
		return err;
	for (size_t i = 0; i < n->d->nranges; i++) {
		struct range *r = &n->d->ranges[i];
		uint64_t s = r->off > off ? r->off : off;
		uint64_t e = r->off + r->len;
		if (e > off + len)
			e = off + len;
		if (s < e)
			memcpy((uint8_t *)buf + (s - off), r->buf + (s - r->off),
			       e - s);
	}
	*got = len;
	return 0;
}

int node_truncate(struct vfs *v, struct node *n, uint64_t size)
{
	struct node_data *d = n->d;
	size_t dropped = 0;
	for (size_t i = 0; i < d->nranges;) {
		struct range *r = &d->ranges[i];
		if (r->off >= size) {
			dropped += r->len;
			free(r->buf);
			memmove(r, r + 1, (d->nranges - i - 1) * sizeof(*r));
			d->nranges--;
			continue;
		}
		if (r->off + r->len > size) {
			dropped += r->off + r->len - size;
			r->len = size - r->off;
		}
		i++;
	}
	int64_t now = vfs_now();
	pthread_mutex_lock(&v->lock);
	d->dirty_bytes -= dropped;
	v->dirty_total -= dropped;
	/* Queued chunks past the new end would land after the punch. */
	int err = pipeline_wait(v, n);
	if (!err)
		err = index_begin(v->st->ix);
	if (!err && size < n->attr.size) {
		err = ns_extent_punch(v->st->ix, v->vol.id, v->vol.epoch,
					 n->attr.ino, size, INT64_MAX);
		d->xgen++;
	}
	if (!err) {
		n->attr.size = size;
		if (d->psize > size)
			d->psize = size;
		n->attr.mtime = n->attr.ctime = now;
		node_touch(v, n);
		err = node_persist(v, n);
	}
	pthread_mutex_unlock(&v->lock);
	return err;
}
