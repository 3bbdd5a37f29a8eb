/*
 * pipeline.c - storing chunks off the FUSE thread.
 *
 * The FUSE thread cuts a file's dirty data into chunks and queues each
 * one; worker threads hash, look up, compress and seal it, which is most
 * of the CPU cost, in parallel with the next writes.  A chunk is then applied (appended to the pack, mapped into the
 * file's extents) under the big lock, strictly in the order its node
 * queued it, so a later write to the same bytes always wins.  Until it is
 * applied, a queued chunk is part of the node's dirty data: reads overlay
 * it, flush/fsync/truncate/snapshot wait for it, and the size persisted
 * in the index does not cover it.
 *
 * A chunk's bytes are either a copy or a slice of a pipe_block: the
 * dirty range's own buffer, handed over whole when the chunks cut from
 * it cover most of it, so the bytes of a streaming write are not copied
 * once more on the FUSE thread.  The block is freed with its last chunk;
 * its bytes that are no chunk (the range's tail, copied out, and slack)
 * are charged to the last chunk, so PIPE_LIMIT still bounds memory.
 *
 * Locking: the queue, the per-node lists, the block references and every
 * counter here are under v->lock; the workers hold nothing while they
 * seal.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../chunker/util.h"
#include "vfs.h"

#define PIPE_LIMIT (64u << 20)	/* bytes queued before writers wait */
#define PIPE_INLINE_MAX (128u << 10)	/* stored in the caller's thread */

enum { P_QUEUED, P_READY, P_DONE };

struct pipe_block {
	uint8_t *mem;
	int refs;		/* chunks in it, plus its builder (v->lock) */
};

struct pending {
	int prefetch;		/* a read-ahead job: load ref into the cache */
	struct chunk_ref ref;
	struct pending *next;	/* node's list, in queue order */
	struct pending *qnext;	/* work queue */
	struct node *n;
	uint64_t off;
	size_t len;
	size_t charge;		/* its bytes in v->inflight */
	uint8_t *data;		/* a copy, or a slice of blk */
	struct pipe_block *blk;
	int state;
	int refs;		/* readers overlaying data */
	int zero;		/* all zeros: a hole, nothing stored */
	int found;		/* rowid came from a lookup, nothing to add */
	int64_t rowid;
	struct sealed_chunk sc;
	int err;
};

static int all_zero(const uint8_t *p, size_t len)
{
	return len && p[0] == 0 && !memcmp(p, p + 1, len - 1);
}

struct pipe_block *pipeline_block_new(uint8_t *mem)
{
	struct pipe_block *b = malloc(sizeof(*b));
	if (b) {
		b->mem = mem;
		b->refs = 1;
	}
	return b;
}

static void block_unref(struct pipe_block *b)
{
	if (--b->refs == 0) {
		free(b->mem);
		free(b);
	}
}

void pipeline_block_put(struct vfs *v, struct pipe_block *b, int used)
{
	if (!used)
		b->mem = NULL;	/* still the caller's */
	pthread_mutex_lock(&v->lock);
	block_unref(b);
	pthread_mutex_unlock(&v->lock);
}

/* Lock held: a block's references are under it. */
static void pending_free(struct pending *p)
{
	if (p->blk)
		block_unref(p->blk);
	else
		free(p->data);
	free(p->sc.buf);
	free(p);
}

/* Map one chunk into its node (lock held, inside the index transaction).
 * -ESTALE from the index means the GC removed a chunk we looked up: seal
 * it here (rare) and add it again. */
static int apply(struct vfs *v, struct pending *p)
{
	struct store *st = v->st;
	struct node *n = p->n;
	int err = index_begin(st->ix);
	if (err)
		return err;
	if (p->zero) {
		err = ns_extent_punch(st->ix, v->vol.id, v->vol.epoch, n->attr.ino,
					 p->off, p->off + p->len);
	} else {
		for (int attempt = 0; attempt < 2; attempt++) {
			if (!p->found) {
				err = store_chunk_add(st, &p->sc, &p->rowid);
				if (err)
					return err;
			}
			struct extent x = { .off = p->off, .len = p->len,
					    .chunk = p->rowid };
			err = ns_extent_replace(st->ix, v->vol.id,
						   v->vol.epoch, n->attr.ino, &x);
			if (err != -ESTALE || p->sc.buf)
				break;
			err = store_seal_chunk(st, p->sc.e.id, p->data, p->len,
					       &p->sc, NULL);
			if (err)
				return err;
			p->found = 0;
		}
	}
	n->d->xgen++;	/* the extents changed: a read map is stale */
	if (!err && p->off + p->len > n->d->psize && n->d->psize < n->attr.size) {
		struct inode_attr a = n->attr;
		a.size = p->off + p->len < n->attr.size ? p->off + p->len
							 : n->attr.size;
		err = ns_inode_put(st->ix, v->vol.id, v->vol.epoch, &a);
		if (!err) {
			n->d->psize = a.size;
			n->attr.birth = a.birth;
		}
	}
	return err;
}

/* Apply the ready chunks at the head of n's list (lock held). */
static void apply_ready(struct vfs *v, struct node *n)
{
	struct node_data *d = n->d;
	while (d->phead && d->phead->state == P_READY) {
		struct pending *p = d->phead;
		int err = p->err ? p->err : apply(v, p);
		if (err && !d->werr) {
			d->werr = err;
			tlog(LOG_ERR, "volume %s: inode %llu: storing %zu bytes at %llu failed: %s",
			     v->vol.name, (unsigned long long)n->attr.ino, p->len,
			     (unsigned long long)p->off, strerror(-err));
		}
		d->phead = p->next;
		if (!d->phead)
			d->ptail = NULL;
		p->state = P_DONE;
		v->inflight -= p->charge;
		d->dirty_bytes -= p->len;
		v->dirty_total -= p->len;
		n->nopen--;
		free(p->sc.buf);
		p->sc.buf = NULL;
		if (!p->refs)
			pending_free(p);
	}
	pthread_cond_broadcast(&v->pipe_done);
	if (!d->phead)
		node_maybe_free(v, n);
}

/* Hash, look up and seal p: the part that needs no lock.  cs: the
 * calling worker's compression context, or NULL. */
static void prepare(struct vfs *v, struct pending *p, struct chunk_sealer *cs)
{
	struct store *st = v->st;
	p->zero = all_zero(p->data, p->len);
	if (p->zero)
		return;
	uint8_t id[CHUNK_ID_LEN];
	store_chunk_id(st, p->data, p->len, id);
	pthread_mutex_lock(&v->lock);
	int err = store_chunk_lookup(st, id, &p->rowid);
	pthread_mutex_unlock(&v->lock);
	if (!err) {
		p->found = 1;
		memcpy(p->sc.e.id, id, CHUNK_ID_LEN);
		return;
	}
	if (err == -ENOENT)
		err = store_seal_chunk(st, id, p->data, p->len, &p->sc, cs);
	p->err = err;
}

static void *worker_main(void *arg)
{
	struct vfs *v = arg;
	struct chunk_sealer *cs = chunk_sealer_new();	/* NULL: one per chunk */
	pthread_mutex_lock(&v->lock);
	for (;;) {
		while (!v->pipe_head && !v->pipe_stop)
			pthread_cond_wait(&v->pipe_work, &v->lock);
		struct pending *p = v->pipe_head;
		if (!p)
			break;	/* stopping, and nothing left */
		v->pipe_head = p->qnext;
		if (!v->pipe_head)
			v->pipe_tail = NULL;
		pthread_mutex_unlock(&v->lock);
		if (p->prefetch) {
			/* Read-ahead never waits for a remote: these
			 * threads seal every write of the mount. */
			store_defer_fetches(1);
			store_prefetch_chunk(v->st, &p->ref);
			store_defer_fetches(0);
			free(p);
			pthread_mutex_lock(&v->lock);
			v->nprefetch--;
			continue;
		}
		prepare(v, p, cs);
		pthread_mutex_lock(&v->lock);
		p->state = P_READY;
		apply_ready(v, p->n);
	}
	pthread_mutex_unlock(&v->lock);
	chunk_sealer_free(cs);
	return NULL;
}

int pipeline_start(struct vfs *v, int nworkers)
{
	pthread_cond_init(&v->pipe_work, NULL);
	pthread_cond_init(&v->pipe_done, NULL);
	if (nworkers > PIPE_MAX_WORKERS)
		nworkers = PIPE_MAX_WORKERS;
	for (int i = 0; i < nworkers; i++) {
		int err = pthread_create(&v->workers[i], NULL, worker_main, v);
		if (err)
			return -err;
		v->nworkers++;
	}
	return 0;
}

void pipeline_stop(struct vfs *v)
{
	pthread_mutex_lock(&v->lock);
	v->pipe_stop = 1;
	pthread_cond_broadcast(&v->pipe_work);
	pthread_mutex_unlock(&v->lock);
	for (int i = 0; i < v->nworkers; i++)
		pthread_join(v->workers[i], NULL);
	v->nworkers = 0;
}

int pipeline_queue(struct vfs *v, struct node *n, struct pipe_block *blk,
		   const uint8_t *data, size_t len, uint64_t off, size_t extra)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	if (blk) {
		p->data = (uint8_t *)data;
	} else {
		p->data = malloc(len ? len : 1);
		if (!p->data) {
			free(p);
			return -ENOMEM;
		}
		memcpy(p->data, data, len);
	}
	p->n = n;
	p->off = off;
	p->len = len;
	p->charge = len + extra;
	pthread_mutex_lock(&v->lock);
	/* Bound memory: wait for the workers when too much is queued. */
	while (v->nworkers && v->inflight > PIPE_LIMIT)
		pthread_cond_wait(&v->pipe_done, &v->lock);
	n->nopen++;	/* the node lives until its chunks are applied */
	if (n->d->ptail)
		n->d->ptail->next = p;
	else
		n->d->phead = p;
	n->d->ptail = p;
	if (blk) {
		p->blk = blk;
		blk->refs++;
	}
	v->inflight += p->charge;
	/* A small chunk with nothing queued before it (a small file being
	 * closed) is cheaper stored here than handed to a worker and waited
	 * for: the hand-off costs two thread wake-ups. */
	int inline_small = len <= PIPE_INLINE_MAX && n->d->phead == p &&
			   !v->pipe_head;
	if (v->nworkers && !inline_small) {
		if (v->pipe_tail)
			v->pipe_tail->qnext = p;
		else
			v->pipe_head = p;
		v->pipe_tail = p;
		pthread_cond_signal(&v->pipe_work);
	} else {
		/* Small, or no workers (read-only, failed start): inline. */
		pthread_mutex_unlock(&v->lock);
		prepare(v, p, NULL);
		pthread_mutex_lock(&v->lock);
		p->state = P_READY;
		apply_ready(v, n);
	}
	pthread_mutex_unlock(&v->lock);
	return 0;
}

int pipeline_wait(struct vfs *v, struct node *n)
{
	while (n->d->phead)
		pthread_cond_wait(&v->pipe_done, &v->lock);
	int err = n->d->werr;
	n->d->werr = 0;
	return err;
}

struct pending **pipeline_pin(struct vfs *v, struct node *n, uint64_t off,
			      size_t len, size_t *count)
{
	(void)v;
	size_t cnt = 0;
	for (struct pending *p = n->d->phead; p; p = p->next)
		if (p->off < off + len && p->off + p->len > off)
			cnt++;
	*count = 0;
	if (!cnt)
		return NULL;
	struct pending **ps = malloc(cnt * sizeof(*ps));
	if (!ps)
		return NULL;
	for (struct pending *p = n->d->phead; p; p = p->next) {
		if (p->off < off + len && p->off + p->len > off) {
			p->refs++;
			ps[(*count)++] = p;
		}
	}
	return ps;
}

void pipeline_overlay(struct pending **ps, size_t count, uint8_t *buf,
		      size_t len, uint64_t off)
{
	for (size_t i = 0; i < count; i++) {
		struct pending *p = ps[i];
		uint64_t s = p->off > off ? p->off : off;
		uint64_t e = p->off + p->len < off + len ? p->off + p->len : off + len;
		if (s < e)
			memcpy(buf + (s - off), p->data + (s - p->off), e - s);
	}
}

void pipeline_unpin(struct vfs *v, struct pending **ps, size_t count)
{
	(void)v;
	for (size_t i = 0; i < count; i++) {
		struct pending *p = ps[i];
		if (--p->refs == 0 && p->state == P_DONE)
			pending_free(p);
	}
	free(ps);
}

/* Queue loading chunk ref into the cache, unless it is there, queued
 * recently, or too many loads are queued (lock held). */
void pipeline_prefetch(struct vfs *v, const struct chunk_ref *ref)
{
	if (!v->nworkers || v->nprefetch >= 4 || store_chunk_cached(v->st, ref->rowid))
		return;
	for (int i = 0; i < PREFETCH_RECENT; i++)
		if (v->prefetch_recent[i] == ref->rowid)
			return;
	struct pending *p = calloc(1, sizeof(*p));
	if (!p)
		return;
	p->prefetch = 1;
	p->ref = *ref;
	v->prefetch_recent[v->prefetch_pos++ % PREFETCH_RECENT] = ref->rowid;
	v->nprefetch++;
	if (v->pipe_tail)
		v->pipe_tail->qnext = p;
	else
		v->pipe_head = p;
	v->pipe_tail = p;
	pthread_cond_signal(&v->pipe_work);
}

void pipeline_readahead(struct vfs *v, int64_t view, uint64_t ino,
			uint64_t from)
{
	struct extent *xs = NULL;
	size_t n = 0;
	uint64_t span = 2ull * v->st->cdc.avg_size;
	pthread_mutex_lock(&v->lock);
	if (v->nworkers &&
	    !ns_extents_in(v->st->ix, v->vol.id, view, ino, from, from + span,
			      &xs, &n)) {
		for (size_t i = 0; i < n; i++) {
			struct chunk_ref ref;
			if (!store_chunk_ref(v->st, xs[i].chunk, &ref))
				pipeline_prefetch(v, &ref);
		}
	}
	pthread_mutex_unlock(&v->lock);
	free(xs);
}
