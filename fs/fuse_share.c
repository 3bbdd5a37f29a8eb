/*
 * fuse_share.c - the FUSE operations on a file's extents rather than its
 * bytes: copy_file_range (the destination maps the source's chunks, from
 * the live tree or a snapshot), fallocate (sizes and holes, no zeros
 * stored) and lseek's SEEK_DATA/SEEK_HOLE.
 *
 * A copy shares every source extent that lies whole in the copied range:
 * the destination gets an extent row naming the same chunk, and
 * ns_extent_replace counts the reference (chunk.refs, I2).  The pieces
 * of extents the range cuts (its head and tail, at most two) are stored
 * as new chunks of their bytes, so a small copy out of a large chunk
 * does not keep the whole chunk alive.  Holes stay holes.  The whole
 * copy, with the size, goes into the index's open transaction in one
 * section under ctx->lock (the sealing done before, without it), and is
 * committed by the committer or fsync like a write: after a crash the
 * destination shows all of the copy or none of it.  Within the
 * transaction the mapping is a savepoint: a copy that fails midway
 * leaves the destination as it was.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fuse_int.h"
#include "../chunker/buf.h"
#include "../chunker/util.h"

#define FILE_MAX (1ull << 60)	/* as op_write */

/* A piece of the source range: a hole, an extent shared whole, or bytes. */
enum seg_kind { SEG_HOLE, SEG_SHARE, SEG_BYTES };
struct seg {
	uint64_t off, len;	/* in the source */
	enum seg_kind kind;
	struct extent x;	/* SEG_SHARE: the source's extent */
	struct sealed_chunk sc;	/* SEG_BYTES: the piece as a new chunk */
};

struct plan {
	struct seg *s;
	size_t n, cap;
};

static int plan_add(struct plan *p, enum seg_kind kind, uint64_t off,
		    uint64_t len, const struct extent *x)
{
	if (!len)
		return 0;
	struct seg *s = buf_grow(p->s, &p->cap, p->n + 1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	p->s = s;
	memset(&s[p->n], 0, sizeof(*s));
	s[p->n].off = off;
	s[p->n].len = len;
	s[p->n].kind = kind;
	if (x)
		s[p->n].x = *x;
	p->n++;
	return 0;
}

/* Cut [a, b) of the source's extents xs (sorted, disjoint) into pieces. */
static int plan_make(const struct extent *xs, size_t n, uint64_t a,
		     uint64_t b, struct plan *p)
{
	uint64_t pos = a;
	int err = 0;
	for (size_t i = 0; i < n && !err; i++) {
		uint64_t s = xs[i].off > a ? xs[i].off : a;
		uint64_t t = xs[i].off + xs[i].len < b ? xs[i].off + xs[i].len : b;
		if (s >= t)
			continue;
		err = plan_add(p, SEG_HOLE, pos, s - pos, NULL);
		int whole = s == xs[i].off && t == xs[i].off + xs[i].len;
		if (!err)
			err = plan_add(p, whole ? SEG_SHARE : SEG_BYTES, s, t - s,
				       &xs[i]);
		pos = t;
	}
	return err ? err : plan_add(p, SEG_HOLE, pos, b - pos, NULL);
}

static void plan_free(struct plan *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->s[i].sc.buf);
	free(p->s);
}

/* Read and seal the byte pieces of p from the source (view, ino), with
 * no lock held: each lies in one source extent, so it is one chunk. */
static int plan_seal(struct vfs *v, struct plan *p, int64_t view,
		     uint64_t ino)
{
	uint8_t *buf = NULL;
	size_t cap = 0;
	int err = 0;
	for (size_t i = 0; i < p->n && !err; i++) {
		struct seg *s = &p->s[i];
		if (s->kind != SEG_BYTES)
			continue;
		uint8_t *b = buf_grow(buf, &cap, s->len, 1);
		if (!b) {
			err = -ENOMEM;
			break;
		}
		buf = b;
		err = vfs_read_extents(v, view, ino, buf, s->len, s->off);
		uint8_t id[CHUNK_ID_LEN];
		if (!err) {
			store_chunk_id(v->st, buf, s->len, id);
			err = store_seal_chunk(v->st, id, buf, s->len, &s->sc, NULL);
		}
	}
	free(buf);
	return err;
}

/* Store the byte pieces of p as chunks (ctx->lock held, in the open
 * transaction).  First, so that what fails for want of space fails
 * before a row of the file changes; a chunk left unmapped is garbage. */
static int plan_chunks(struct vfs *v, struct plan *p)
{
	int err = index_begin(v->st->ix);
	for (size_t i = 0; i < p->n && !err; i++)
		if (p->s[i].kind == SEG_BYTES)
			err = store_chunk_add(v->st, &p->s[i].sc, &p->s[i].x.chunk);
	return err;
}

/* Map p into dst at delta from the source: holes punched, extents shared,
 * the byte pieces' chunks mapped (ctx->lock held, in the open
 * transaction, after plan_chunks). */
static int plan_map(struct vfs *v, const struct plan *p, uint64_t dst,
		    int64_t delta)
{
	int err = 0;
	for (size_t i = 0; i < p->n && !err; i++) {
		const struct seg *s = &p->s[i];
		struct extent x = s->x;
		x.off = s->off + delta;
		if (s->kind == SEG_HOLE) {
			err = ns_extent_punch(v->st->ix, v->vol.id, v->vol.epoch,
					      dst, x.off, x.off + s->len);
			continue;
		}
		if (s->kind == SEG_BYTES) {
			x.coff = 0;
			x.len = s->len;
		}
		err = ns_extent_replace(v->st->ix, v->vol.id, v->vol.epoch,
					dst, &x);
	}
	return err;
}

/* Are the source's extents in [a, b) still xs (ctx->lock held)?  A
 * snapshot may have been deleted, and its chunks collected, since. */
static int src_same(struct vfs *v, const struct vino *vi, uint64_t a,
		    uint64_t b, const struct extent *xs, size_t n)
{
	struct extent *now = NULL;
	size_t m = 0;
	int err = vino_resolve(v, vi->kino, &(struct vino){ 0 });
	if (!err)
		err = ns_extents_in(v->st->ix, v->vol.id, vi->view, vi->ino, a,
				    b, &now, &m);
	if (!err && (m != n || (n && memcmp(now, xs, n * sizeof(*xs)))))
		err = -ENOENT;
	free(now);
	return err;
}

/* The source of a copy: its view and inode; the live node if it is in
 * the live tree (held by its open handle).  Takes ctx->lock. */
struct copy_src {
	struct vino vi;
	struct node *n;
};

static int src_resolve(struct vfs *v, fuse_ino_t kino, struct copy_src *cs)
{
	memset(cs, 0, sizeof(*cs));
	if (!INO_SLOT(kino)) {
		cs->n = vino_open_node(v, kino);
		if (!cs->n)
			return -EBADF;
	}
	struct inode_attr a;
	pthread_mutex_lock(&v->lock);
	int err = vino_resolve(v, kino, &cs->vi);
	if (!err)
		err = vino_attr(v, &cs->vi, &a);
	pthread_mutex_unlock(&v->lock);
	if (err)
		return err;
	if (S_ISDIR(a.mode))
		return -EISDIR;
	return S_ISREG(a.mode) ? 0 : -EINVAL;
}

/* Both data locks, in address order (vfs_snapshot's order too). */
static void lock_two(struct node *a, struct node *b)
{
	if (a && b && a != b && (uintptr_t)b < (uintptr_t)a) {
		struct node *t = a;
		a = b;
		b = t;
	}
	if (a)
		pthread_mutex_lock(&a->d->dlock);
	if (b && b != a)
		pthread_mutex_lock(&b->d->dlock);
}

static void unlock_two(struct node *a, struct node *b)
{
	if (a)
		pthread_mutex_unlock(&a->d->dlock);
	if (b && b != a)
		pthread_mutex_unlock(&b->d->dlock);
}

/*
 * Copy [off_in, off_in + len) of cs to off_out of dn, both data locks
 * held.  *done gets the bytes copied (len clipped at the source's end).
 */
static int share_copy(struct vfs *v, struct copy_src *cs, uint64_t off_in,
		      struct node *dn, uint64_t off_out, uint64_t len,
		      uint64_t *done)
{
	*done = 0;
	/* Unsealed bytes of either file go to the index first: the source's
	 * are what is copied, the destination's would land on the copy. */
	int err = cs->n ? node_flush(v, cs->n) : 0;
	if (!err && dn != cs->n)
		err = node_flush(v, dn);
	if (err)
		return err;
	pthread_mutex_lock(&v->lock);
	uint64_t size = 0;
	if (cs->n) {
		size = cs->n->attr.size;
	} else {
		struct inode_attr a;
		err = vino_attr(v, &cs->vi, &a);
		size = a.size;
	}
	if (!err && off_in < size && len > size - off_in)
		len = size - off_in;
	if (err || off_in >= size || !len) {
		pthread_mutex_unlock(&v->lock);
		return err;
	}
	if (cs->n == dn && off_out < off_in + len && off_in < off_out + len)
		err = -EINVAL;
	else if (off_out > FILE_MAX || len > FILE_MAX - off_out)
		err = -EFBIG;
	if (err) {
		pthread_mutex_unlock(&v->lock);
		return err;
	}
	struct extent *xs = NULL;
	size_t nx = 0;
	struct plan p = { 0 };
	err = ns_extents_in(v->st->ix, v->vol.id, cs->vi.view, cs->vi.ino,
			    off_in, off_in + len, &xs, &nx);
	pthread_mutex_unlock(&v->lock);
	if (!err)
		err = plan_make(xs, nx, off_in, off_in + len, &p);
	/* Neither file changes meanwhile (both data locks are held), but
	 * a snapshot may go. */
	if (!err)
		err = plan_seal(v, &p, cs->vi.view, cs->vi.ino);
	/* One transaction: a crash leaves the old or the new mapping; a
	 * savepoint: an error leaves the old one. */
	pthread_mutex_lock(&v->lock);
	if (!err && !cs->n)
		err = src_same(v, &cs->vi, off_in, off_in + len, xs, nx);
	free(xs);
	if (!err)
		err = plan_chunks(v, &p);
	if (!err)
		err = index_savepoint(v->st->ix);
	if (!err) {
		struct inode_attr old = dn->attr;
		err = plan_map(v, &p, dn->attr.ino, (int64_t)(off_out - off_in));
		dn->d->xgen++;	/* the extents changed: a read map is stale */
		if (!err) {
			if (off_out + len > dn->attr.size)
				dn->attr.size = off_out + len;
			dn->attr.mtime = dn->attr.ctime = vfs_now();
			node_touch(v, dn);
			err = node_persist(v, dn);
		}
		if (err)
			dn->attr = old;		/* as the index has it again */
		else if (off_out + len >= dn->attr.size)
			dn->d->stream_end = off_out + len; /* appends go on here */
		index_savepoint_end(v->st->ix, err != 0);
	}
	crash_point("copy");	/* mapped in the open transaction only */
	pthread_mutex_unlock(&v->lock);
	plan_free(&p);
	if (!err)
		*done = len;
	return err;
}

void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			struct fuse_file_info *fi_in, fuse_ino_t ino_out,
			off_t off_out, struct fuse_file_info *fi_out,
			size_t len, int flags)
{
	(void)fi_in;
	(void)fi_out;
	struct vfs *v = V(req);
	if (v->readonly || INO_SLOT(ino_out)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	int err = flags ? -EINVAL : 0;
	if (!err && (off_in < 0 || off_out < 0))
		err = -EINVAL;
	struct copy_src cs;
	if (!err)
		err = src_resolve(v, ino_in, &cs);
	struct node *dn = err ? NULL : vino_open_node(v, ino_out);
	if (!err && !dn)
		err = -EBADF;
	if (!err && !S_ISREG(dn->attr.mode))
		err = S_ISDIR(dn->attr.mode) ? -EISDIR : -EINVAL;
	uint64_t done = 0;
	if (!err) {
		lock_two(cs.n, dn);
		err = share_copy(v, &cs, off_in, dn, off_out, len, &done);
		unlock_two(cs.n, dn);
	}
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_write(req, done);
}

/* ---- fallocate ---- */

/* Bytes of [off, end) of ino no live extent maps (ctx->lock held). */
static int unmapped_bytes(struct vfs *v, uint64_t ino, uint64_t off,
			  uint64_t end, uint64_t *out)
{
	struct extent *xs = NULL;
	size_t n = 0;
	int err = ns_extents_in(v->st->ix, v->vol.id, VIEW_LIVE, ino, off, end,
				&xs, &n);
	uint64_t mapped = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t s = xs[i].off > off ? xs[i].off : off;
		uint64_t t = xs[i].off + xs[i].len < end ? xs[i].off + xs[i].len : end;
		if (s < t)
			mapped += t - s;
	}
	free(xs);
	*out = end - off - mapped;
	return err;
}

/*
 * Promise space without storing zeros: the store's disk must hold the
 * bytes not mapped yet (tresor cannot reserve them, since dedup decides
 * what a write costs; this refuses what surely would not fit).
 */
static int falloc_space(struct vfs *v, struct node *n, uint64_t off,
			uint64_t end)
{
	uint64_t want;
	pthread_mutex_lock(&v->lock);
	int err = unmapped_bytes(v, n->attr.ino, off, end, &want);
	pthread_mutex_unlock(&v->lock);
	struct statvfs sv;
	if (!err && !statvfs(v->st->dir, &sv) &&
	    want / sv.f_frsize > sv.f_bavail)
		err = -ENOSPC;
	return err;
}

/* n's dlock held. */
static int falloc_node(struct vfs *v, struct node *n, int mode, uint64_t off,
		       uint64_t end)
{
	int drop = mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE);
	int err = drop ? node_flush(v, n) : falloc_space(v, n, off, end);
	if (err)
		return err;
	pthread_mutex_lock(&v->lock);
	int64_t now = vfs_now();
	struct inode_attr old = n->attr;
	/* Whole or not at all, as a copy. */
	err = index_savepoint(v->st->ix);
	if (err) {
		pthread_mutex_unlock(&v->lock);
		return err;
	}
	if (drop) {
		err = ns_extent_punch(v->st->ix, v->vol.id, v->vol.epoch,
				      n->attr.ino, off, end);
		n->d->xgen++;	/* a read map is stale */
		n->attr.mtime = now;
	}
	if (!(mode & FALLOC_FL_KEEP_SIZE) && end > n->attr.size) {
		n->attr.size = end;
		n->attr.mtime = now;
	}
	n->attr.ctime = now;
	node_touch(v, n);
	if (!err)
		err = node_persist(v, n);
	if (err)
		n->attr = old;		/* as the index has it again */
	index_savepoint_end(v->st->ix, err != 0);
	pthread_mutex_unlock(&v->lock);
	return err;
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off,
		  off_t len, struct fuse_file_info *fi)
{
	(void)fi;
	struct vfs *v = V(req);
	int err = 0;
	if (v->readonly || INO_SLOT(ino))
		err = -EROFS;
	else if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE |
			  FALLOC_FL_ZERO_RANGE))
		err = -EOPNOTSUPP;
	else if ((mode & FALLOC_FL_PUNCH_HOLE) &&
		 (!(mode & FALLOC_FL_KEEP_SIZE) || (mode & FALLOC_FL_ZERO_RANGE)))
		err = -EOPNOTSUPP;	/* as the VFS says */
	else if (off < 0 || len <= 0)
		err = -EINVAL;
	else if ((uint64_t)off + (uint64_t)len > FILE_MAX)
		err = -EFBIG;
	struct node *n = err ? NULL : vino_open_node(v, ino);
	if (!err && !n)
		err = -EBADF;
	if (!err && !S_ISREG(n->attr.mode))
		err = S_ISDIR(n->attr.mode) ? -EISDIR : -ENODEV;
	if (!err) {
		pthread_mutex_lock(&n->d->dlock);
		err = falloc_node(v, n, mode, off, (uint64_t)off + len);
		pthread_mutex_unlock(&n->d->dlock);
	}
	fuse_reply_err(req, -err);
}

/* ---- SEEK_DATA / SEEK_HOLE ---- */

/*
 * The first data (or hole) at or after off in a file of size bytes,
 * from its extents in view; a hole is always found at size.  -ENXIO
 * when off is at or past the end, or no data follows.  ctx->lock held.
 */
static int64_t seek_extents(struct vfs *v, int64_t view, uint64_t ino,
			    uint64_t off, uint64_t size, int whence)
{
	uint64_t pos = off, win = 64u << 20;
	int64_t r = -1;
	while (r < 0 && pos < size) {
		uint64_t end = size - pos > win ? pos + win : size;
		struct extent *xs = NULL;
		size_t n = 0;
		int err = ns_extents_in(v->st->ix, v->vol.id, view, ino, pos,
					end, &xs, &n);
		if (err)
			return err;
		for (size_t i = 0; i < n && r < 0; i++) {
			uint64_t xe = xs[i].off + xs[i].len;
			if (xe <= pos)
				continue;
			if (xs[i].off > pos)	/* a hole up to xs[i].off */
				r = whence == SEEK_HOLE ? (int64_t)pos
							: (int64_t)xs[i].off;
			else if (whence == SEEK_DATA)
				r = (int64_t)pos;
			else
				pos = xe;
		}
		free(xs);
		if (r < 0 && whence == SEEK_HOLE && pos < end)
			r = (int64_t)pos;	/* nothing after pos here */
		if (r < 0 && pos < end)
			pos = end;
		win *= 2;
	}
	if (r < 0 || (uint64_t)r >= size)
		return whence == SEEK_HOLE && off < size ? (int64_t)size : -ENXIO;
	return r;
}

void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
	      struct fuse_file_info *fi)
{
	(void)fi;
	struct vfs *v = V(req);
	int64_t r = 0;
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	/* With the kernel's write-back cache, data may sit in its pages
	 * that we have not seen: ENOSYS has it answer by itself from now
	 * on, all data and no holes (as without this operation). */
	if (v->writeback) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	/* A live file's unsealed bytes are data the index does not know
	 * yet: they are stored first, as at a close. */
	struct node *n = INO_SLOT(ino) ? NULL : vino_open_node(v, ino);
	if (!INO_SLOT(ino) && !n)
		r = -EBADF;
	if (n && !v->readonly) {
		pthread_mutex_lock(&n->d->dlock);
		r = node_flush(v, n);
		pthread_mutex_unlock(&n->d->dlock);
	}
	struct vino vi;
	struct inode_attr a;
	pthread_mutex_lock(&v->lock);
	if (!r)
		r = vino_resolve(v, ino, &vi);
	if (!r)
		r = vino_attr(v, &vi, &a);
	if (!r && !S_ISREG(a.mode))
		r = S_ISDIR(a.mode) ? -EISDIR : -EINVAL;
	if (!r)
		r = seek_extents(v, vi.view, vi.ino, off, a.size, whence);
	pthread_mutex_unlock(&v->lock);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_lseek(req, r);
}
