/*
 * push.c - push a store to a remote (push.h).
 *
 * Order is what makes the remote consistent: packs first, then the delta
 * that names them, then (locally) the note that they are there.  A push
 * killed anywhere leaves extra objects at worst; the next push sends a
 * delta covering everything since the last one it recorded, so applying
 * an older, smaller delta before it is harmless.
 *
 * The read view (which packs, which delta) is taken in one short read
 * transaction; the uploads run after it ends, so the daemons a caller
 * froze for it wait only for that, and the WAL is not pinned for the
 * length of an upload.  Packs are immutable files, read when sent.
 *
 * Remote deletion is slow on purpose: a pack the GC freed stays on the
 * remote until the delta that stops naming it is published, then for the
 * grace period (remote_gone, FORMAT.md §9.11), then until its Object Lock
 * retention has passed.  So the remote restores at every moment, and a
 * wrong prune or a compromised host cannot destroy the offsite copy at once.
 * That old business, done after the new state is out, is retire.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../chunker/buf.h"
#include "../chunker/catalog.h"
#include "../chunker/changelog.h"
#include "image.h"
#include "push.h"
#include "retire.h"
#include "../chunker/util.h"

#define NS 1000000000LL

/* The repository marker, on a first push; an older marker is replaced
 * (delete, then create) once this store continues an older chain with
 * objects of this version, so an older tresor refuses them as newer
 * rather than as damaged.  A marker lost to a crash in between
 * is written by the next push, which finds the tip still version 1. */
static int push_preamble(struct remote *r)
{
	uint8_t marker[16];
	memcpy(marker, "TRESORRP", 8);
	put_le32(marker + 8, REPO_VERSION);
	put_le32(marker + 12, 0);
	uint8_t *have = NULL;
	size_t hlen = 0;
	int err = remote_get(r, "tresor-repo", 0, 0, &have, &hlen);
	if (!err && hlen >= 16 && !memcmp(have, "TRESORRP", 8) &&
	    get_le32(have + 8) > REPO_VERSION)
		err = -EPROTONOSUPPORT;
	else if (!err && (hlen < 16 || memcmp(have, marker, 16)))
		/* Object Lock may keep the old marker: readers of version 2
		 * tell objects apart by their magic, so that is no harm. */
		err = remote_delete(r, "tresor-repo") ? 0 : -ENOENT;
	free(have);
	if (err == -ENOENT)
		err = remote_put_new(r, "tresor-repo", marker, sizeof(marker));
	if (err == -EEXIST)	/* another store upgraded it at the same moment */
		err = 0;
	return err;
}

/* The store's key file on the remote, at every push (one small GET):
 * keys/key, the first, is written create-only if none is there; one there
 * that differs is this store's after a passphrase change (keys/key-HASH
 * then holds the current one, FORMAT.md §15, written here once) or,
 * before this store's first delta (first), another repository's:
 * refused (-ESTALE). */
static int push_key(struct store *st, struct remote *r, int first, char *cur, size_t cursize)
{
	snprintf(cur, cursize, "keys/key");
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", st->dir, STORE_KEY_FILE);
	uint8_t *key;
	size_t klen;
	int err = read_file(path, &key, &klen);
	if (err)
		return err;
	uint8_t *there = NULL;
	size_t tlen = 0;
	err = remote_get(r, "keys/key", 0, 0, &there, &tlen);
	if (err == -ENOENT) {
		err = remote_put_new(r, "keys/key", key, klen);
		if (err == -EEXIST) {	/* another push at the same moment */
			err = remote_get(r, "keys/key", 0, 0, &there, &tlen);
		}
	}
	if (!err && there && (tlen != klen || memcmp(there, key, klen))) {
		char later[64];
		uint64_t size;
		err = repo_key_object(key, klen, later, sizeof(later));
		if (!err)
			err = remote_head(r, later, &size);
		if (err == -ENOENT && first)
			err = -ESTALE;	/* not this store's repository */
		else if (err == -ENOENT)
			err = remote_put_new(r, later, key, klen);
		if (err == -EEXIST)
			err = 0;	/* the same bytes: its name is their hash */
		if (!err)
			snprintf(cur, cursize, "%s", later);
	}
	free(there);
	free(key);
	return err;
}

struct pack_ref {
	uint8_t name[PACK_NAME_LEN];
	int64_t size;		/* todo: bytes; gone/retain: lock_until (s) */
	int done;		/* todo: 1 sent, 2 found there already */
};

struct pack_list {
	struct pack_ref *v;
	size_t n, cap;
};

static int list_add(struct pack_list *l, const void *name, int64_t size)
{
	void *p = buf_grow(l->v, &l->cap, l->n + 1, sizeof(*l->v));
	if (!p)
		return -ENOMEM;
	l->v = p;
	memset(&l->v[l->n], 0, sizeof(*l->v));
	memcpy(l->v[l->n].name, name, PACK_NAME_LEN);
	l->v[l->n++].size = size;
	return 0;
}

static int list_row(void *arg, const struct remote_cfg_pack *p)
{
	return list_add(arg, p->name, p->val);
}

/* ---- the read view ---- */

struct view {
	uint64_t to;			/* changelog sequence covered */
	struct pack_list todo;		/* finished packs the remote lacks */
	struct pack_list freed;		/* remote holds them; index no longer names them */
	struct pack_list renew;		/* in use, retention running out */
	uint8_t *delta;
	size_t dlen;
	int send;			/* a delta is due */
	char image[PATH_MAX];		/* the image file taken with it, "": none */
	int image_err;			/* making it failed (image names the file) */
	char key_object[64];		/* where the store's key file is: keys/key
					   or keys/key-HASH (push_key) */
};

static void view_free(struct view *v)
{
	free(v->todo.v);
	free(v->freed.v);
	free(v->renew.v);
	free(v->delta);
	if (v->image[0] && !v->image_err)
		unlink(v->image);
}

/* An image goes with delta n (dlen bytes) when it is a full one, when
 * image_every objects were published since the last image, or when the
 * deltas since hold half as many bytes as the index (FORMAT.md §15.5). */
static int image_due(const struct push_opts *po, const struct remote_cfg *c, uint64_t n,
		     int full, size_t dlen)
{
	int every = po->image_every ? po->image_every : PUSH_DEFAULT_IMAGE_EVERY;
	if (every <= 0)
		return 0;
	return full || n >= c->image_meta + (uint64_t)every ||
	       (c->image_size && 2 * (c->since_image + dlen) >= c->image_size);
}

/* One read transaction: what to send and what was freed, one state. */
static int take_view(struct store *st, struct remote_cfg *c, const struct push_opts *po,
		     int64_t renew_before, struct view *v)
{
	int err = index_commit(st->ix);
	if (!err)
		err = remote_cfg_read_begin(st->ix);
	if (err)
		return err;
	err = changelog_last(st->ix, &v->to);	/* also starts the snapshot */
	if (po->after_snapshot)
		po->after_snapshot(po->snapshot_arg);
	if (!err)
		err = remote_cfg_packs(st->ix, REMOTE_PACKS_LACKING, c->id, 0, list_row,
				       &v->todo);
	if (!err)
		err = remote_cfg_packs(st->ix, REMOTE_PACKS_FREED, c->id, 0, list_row,
				       &v->freed);
	if (!err && c->lock_days)
		err = remote_cfg_packs(st->ix, REMOTE_PACKS_EXPIRING, c->id, renew_before,
				       list_row, &v->renew);
	/* Packs whose index row says open cannot be sent yet: a daemon was
	 * not frozen.  Refuse rather than send a delta naming them. */
	if (!err && catalog_pack_open_used(st->ix) > 0)
		err = -EBUSY;
	/* The delta: everything since the last push (all rows the first time,
	 * and after a takeover). */
	uint64_t n = c->next_meta ? c->next_meta : 1;
	int full = n == 1 || c->full_next;
	v->send = full || v->to > c->last_seq;
	if (!err && v->send)
		err = full ? changelog_export_full(st->ix, v->to, &v->delta, &v->dlen)
			     : changelog_export(st->ix, c->last_seq, v->to, &v->delta, &v->dlen);
	/* The image in the same read transaction: exactly the delta's state. */
	if (!err && v->send && image_due(po, c, n, full, v->dlen)) {
		snprintf(v->image, sizeof(v->image), "%s/image-push-%lld.tmp", st->dir,
			 (long long)c->id);
		err = index_image(st->ix, v->image);
		v->image_err = err != 0;
	}
	remote_cfg_read_end(st->ix);
	return err;
}

/* ---- parallel pack uploads ---- */

struct uploader {
	struct store *st;
	struct remote_cfg *c;
	struct pack_list *todo;
	const struct push_opts *po;
	uint64_t per_job_limit;
	int lock_mode;
	int64_t lock_until;
	pthread_mutex_t lock;	/* guards everything below */
	size_t next;		/* next todo index to take */
	uint64_t total, sent_bytes;
	uint64_t packs, pack_bytes, skipped;
	int err;		/* first error; stops the others */
	char msg[600];
};

static void up_fail(struct uploader *u, int err, const char *msg)
{
	pthread_mutex_lock(&u->lock);
	if (!u->err) {
		u->err = err;
		snprintf(u->msg, sizeof(u->msg), "%s", msg);
	}
	pthread_mutex_unlock(&u->lock);
}

/* Send one pack unless the remote has it whole already. */
static int send_pack(struct uploader *u, struct remote *r, struct pack_ref *p,
		     char *msg, size_t msize)
{
	char key[128];
	repo_pack_key(p->name, key, sizeof(key));
	uint64_t have;
	int err = remote_head(r, key, &have);
	if (err == 0 && (int64_t)have == p->size) {
		p->done = 2;	/* sent by a push that died before noting it */
		return 0;
	}
	/* An object of another size is not ours whole: puts are atomic, so
	 * it cannot be a half-sent pack; write ours over it. */
	if (err && err != -ENOENT) {
		snprintf(msg, msize, "%s", remote_error(r));
		return err;
	}
	char *path = store_pack_path(u->st, p->name);
	uint8_t *buf = NULL;
	size_t len = 0;
	err = path ? read_file(path, &buf, &len) : -ENOMEM;
	if (err == -ENOENT)
		snprintf(msg, msize, "pack %s vanished while pushing (a prune ran at "
			 "the same time?); rerun the push", path ? path : key);
	else if (err)
		snprintf(msg, msize, "cannot read pack %s: %s", path ? path : key,
			 strerror(-err));
	free(path);
	if (!err && (int64_t)len != p->size) {
		err = -EBADMSG;
		snprintf(msg, msize, "pack %s is %zu bytes, the index says %lld",
			 key, len, (long long)p->size);
	}
	if (!err) {
		err = remote_put(r, key, buf, len);
		if (err)
			snprintf(msg, msize, "%s", remote_error(r));
	}
	free(buf);
	crash_point("push-pack");
	if (!err)
		p->done = 1;
	return err;
}

static void *upload_worker(void *arg)
{
	struct uploader *u = arg;
	struct remote_options opt = u->c->opt;
	opt.bandwidth_limit = u->per_job_limit;
	struct remote *r = NULL;
	int err = remote_open(u->c->url, &opt, &r);
	if (!err && u->lock_mode)
		err = remote_set_lock(r, u->lock_mode, u->lock_until);
	if (err) {
		up_fail(u, err, r ? remote_error(r) : strerror(-err));
		remote_close(r);
		return NULL;
	}
	for (;;) {
		pthread_mutex_lock(&u->lock);
		size_t i = u->next;
		int stop = u->err || i >= u->todo->n;
		if (!stop)
			u->next++;
		pthread_mutex_unlock(&u->lock);
		if (stop)
			break;
		struct pack_ref *p = &u->todo->v[i];
		char msg[600] = "";
		err = send_pack(u, r, p, msg, sizeof(msg));
		if (err) {
			up_fail(u, err, msg);
			break;
		}
		pthread_mutex_lock(&u->lock);
		u->sent_bytes += (uint64_t)p->size;
		if (p->done == 1) {
			u->packs++;
			u->pack_bytes += (uint64_t)p->size;
		} else {
			u->skipped++;
		}
		if (u->po->progress)
			u->po->progress(u->po->progress_arg, u->sent_bytes, u->total);
		pthread_mutex_unlock(&u->lock);
	}
	remote_close(r);
	return NULL;
}

/* Send every todo pack, jobs at a time; p->done says which made it. */
static int upload_packs(struct store *st, struct remote_cfg *c, const struct push_opts *po,
			struct pack_list *todo, int64_t lock_until, struct push_result *res)
{
	struct uploader u = { .st = st, .c = c, .todo = todo, .po = po,
			      .lock_mode = c->lock_days ? c->lock_mode : 0,
			      .lock_until = lock_until };
	int jobs = po->jobs > 0 ? po->jobs : PUSH_DEFAULT_JOBS;
	if (jobs > PUSH_MAX_JOBS)
		jobs = PUSH_MAX_JOBS;
	if ((size_t)jobs > todo->n)
		jobs = todo->n ? (int)todo->n : 1;
	res->jobs = jobs;
	if (!todo->n)
		return 0;
	/* The limit is for the whole push: each connection gets its share. */
	u.per_job_limit = po->limit_upload ? po->limit_upload / (uint64_t)jobs : 0;
	if (po->limit_upload && !u.per_job_limit)
		u.per_job_limit = 1;
	for (size_t i = 0; i < todo->n; i++)
		u.total += (uint64_t)todo->v[i].size;
	pthread_mutex_init(&u.lock, NULL);
	pthread_t th[PUSH_MAX_JOBS];
	int started = 0;
	for (int i = 0; i < jobs; i++) {
		if (pthread_create(&th[i], NULL, upload_worker, &u)) {
			up_fail(&u, -EAGAIN, "cannot start an upload thread");
			break;
		}
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&u.lock);
	res->packs = u.packs;
	res->pack_bytes = u.pack_bytes;
	res->packs_skipped = u.skipped;
	if (u.err)
		snprintf(res->error, sizeof(res->error), "%s", u.msg);
	return u.err;
}

/* ---- the chain: only the store that wrote the newest delta continues it ---- */

struct chain {
	uint64_t tip;			/* the object the new delta continues, 0: none */
	struct repo_meta_hdr th;	/* its header */
};

/* Say who wrote meta/n (not this store) and what to do; -ESTALE. */
static int refuse_foreign(const struct remote_cfg *c, uint64_t n,
			  const struct repo_meta_hdr *h, const char *how,
			  struct push_result *res)
{
	char id[2 * REPO_WRITER_LEN + 1], who[320];
	repo_writer_hex(h->writer, id);
	if (h->v1)
		snprintf(who, sizeof(who), "by another store (an older tresor, which names no store)");
	else if (!memcmp(h->writer, c->writer, REPO_WRITER_LEN))
		snprintf(who, sizeof(who), "under this store's id but is not the object it wrote"
			 " (a copy of this store pushed there, or the remote was rolled back)");
	else
		snprintf(who, sizeof(who), "by another store (%s, id %.16s)", h->origin, id);
	snprintf(res->error, sizeof(res->error),
		 "push to remote '%s': meta/%016llx was written %s%s, not by this one; this"
		 " store no longer owns the remote: run `tresor remote takeover STORE %s` on"
		 " the store that should push, or push to another remote; nothing was changed"
		 " there", c->name, (unsigned long long)n, who, how, c->name);
	return -ESTALE;
}

static int chain_fail(struct remote *r, int err, uint64_t n, const char *cname,
		      struct push_result *res)
{
	if (err == -EBADMSG)
		snprintf(res->error, sizeof(res->error), "push to remote '%s': meta/%016llx fails"
			 " authentication (damaged, or of another repository); run `tresor check"
			 " STORE --remote %s`; nothing was changed there", cname,
			 (unsigned long long)n, cname);
	else if (err == -ENOENT)
		snprintf(res->error, sizeof(res->error), "push to remote '%s': meta/%016llx is"
			 " missing: the chain is broken; run `tresor check STORE --remote %s`;"
			 " nothing was changed there", cname, (unsigned long long)n, cname);
	else
		snprintf(res->error, sizeof(res->error), "%s", remote_error(r));
	return err == -ENOENT ? -ESTALE : err;
}

/* c's chain (next_meta, tip, image) in one transaction; forget: the
 * packs noted as on the remote too (a takeover). */
static int note_chain(struct store *st, struct remote_cfg *c, int forget)
{
	int err = index_begin(st->ix);
	if (!err && forget)
		err = remote_cfg_forget_packs(st->ix, c->id);
	if (!err)
		err = remote_cfg_set_chain(st->ix, c);
	if (!err)
		err = index_commit(st->ix);
	else
		index_rollback(st->ix);
	return err;
}

/*
 * Before anything is sent: the remote's newest delta must be the one this
 * store wrote (or recovered from) last.  A delta on top of another store's
 * would mix two histories, so a chain another store continued is refused.
 * The one delta after it that a push of this store noted as pending and
 * died before noting as published is its own, and is continued (I5,
 * docs/DESIGN.md).
 */
static int chain_check(struct store *st, struct remote_cfg *c, struct remote *r,
		       struct chain *ch, struct push_result *res)
{
	memset(ch, 0, sizeof(*ch));
	uint64_t mine = c->next_meta ? c->next_meta - 1 : 0, max;
	int err = repo_meta_max(r, &max);
	if (err)
		return chain_fail(r, err, 0, c->name, res);
	if (max < mine) {
		snprintf(res->error, sizeof(res->error), "push to remote '%s': it holds metadata only"
			 " up to meta/%016llx but this store pushed up to meta/%016llx: objects were"
			 " deleted or the remote was rolled back; run `tresor check STORE --remote %s`;"
			 " nothing was changed there", c->name, (unsigned long long)max,
			 (unsigned long long)mine, c->name);
		return -ESTALE;
	}
	if (mine) {
		err = repo_read_meta_hdr(r, &st->keys, mine, &ch->th);
		if (err)
			return chain_fail(r, err, mine, c->name, res);
		if (c->has_tip ? memcmp(ch->th.hash, c->tip, REPO_HASH_LEN) != 0
			       : !ch->th.v1 && memcmp(ch->th.writer, c->writer, REPO_WRITER_LEN))
			return refuse_foreign(c, mine, &ch->th, "", res);
		ch->tip = mine;
	}
	for (uint64_t k = mine + 1; k <= max; k++) {
		struct repo_meta_hdr h;
		err = repo_read_meta_hdr(r, &st->keys, k, &h);
		if (err)
			return chain_fail(r, err, k, c->name, res);
		if (h.v1 || memcmp(h.writer, c->writer, REPO_WRITER_LEN) || k != mine + 1 ||
		    !c->has_pending || memcmp(h.hash, c->pending, REPO_HASH_LEN))
			return refuse_foreign(c, k, &h, " after the last delta this store"
					      " published", res);
		ch->tip = k;
		ch->th = h;
	}
	if (ch->tip > mine) {
		/* Noted as this store's own before anything else is sent: a
		 * push that dies after publishing the next one leaves its
		 * hash as the only pending, and this one must then already
		 * count as published, not as pending too. */
		c->next_meta = ch->tip + 1;
		memcpy(c->tip, ch->th.hash, REPO_HASH_LEN);
		c->has_tip = 1;
		err = note_chain(st, c, 0);
		if (err)
			snprintf(res->error, sizeof(res->error), "push to remote '%s': cannot note"
				 " meta/%016llx in the index of %s: %s; nothing was changed there",
				 c->name, (unsigned long long)ch->tip, st->dir, strerror(-err));
	}
	return err;
}

/*
 * Seal d as meta/n under header h and publish it create-only: of two
 * stores publishing at the same moment one gets it, never both.  A server
 * that ignores the condition, and a retry after a lost reply, are told
 * apart by reading the header back: its hash is ours, or another store
 * won (-ESTALE, its header in *other).
 */
static int publish(const struct store_keys *keys, struct remote *r, uint64_t n,
		   struct repo_meta_hdr *h, const uint8_t *d, size_t dl,
		   struct index *ix, int64_t cfg_id,
		   struct repo_meta_hdr *other, size_t *slen)
{
	char key[64];
	repo_meta_key(n, key, sizeof(key));
	uint8_t *sealed = NULL;
	int err = repo_seal_meta(keys, n, h, d, dl, &sealed, slen);
	if (!err && ix)	/* ix: note it first, so a rerun after a crash knows it */
		err = remote_cfg_set_pending(ix, cfg_id, h->hash);
	if (!err)
		err = remote_put_new(r, key, sealed, *slen);
	crash_point("push-meta");
	free(sealed);
	if (err && err != -EEXIST)
		return err;
	int existed = err == -EEXIST;
	err = repo_read_meta_hdr(r, keys, n, other);
	if (!err && (other->v1 || memcmp(other->hash, h->hash, REPO_HASH_LEN)))
		err = -ESTALE;
	if (err == -EBADMSG && existed) {	/* a store of another repository won */
		memset(other, 0, sizeof(*other));
		snprintf(other->origin, sizeof(other->origin), "of another repository");
		err = -ESTALE;
	}
	return err;
}

/* An object without an image of its own names its parent's (none after
 * a version 1 or 2 parent). */
static void image_inherit(struct repo_meta_hdr *h, const struct repo_meta_hdr *parent)
{
	if (!parent || parent->v1 || parent->v2 || !parent->image)
		return;
	h->image = parent->image;
	memcpy(h->image_id, parent->image_id, REPO_IMAGE_ID_LEN);
	h->image_parts = parent->image_parts;
	h->image_size = parent->image_size;
}

/* Publish the delta as meta/(tip + 1), continuing the tip; ch becomes
 * the object published. */
static int send_delta(struct store *st, struct remote_cfg *c, struct remote *r,
		      struct view *v, struct chain *ch, uint64_t *n_out,
		      uint8_t hash[REPO_HASH_LEN], struct push_result *res)
{
	uint64_t n = ch->tip + 1;
	res->records = get_le32(v->delta + 24);
	struct repo_meta_hdr h = { .parent = ch->tip, .time_ns = repo_now_ns() }, back;
	memcpy(h.writer, c->writer, REPO_WRITER_LEN);
	if (ch->tip && !ch->th.v1)
		memcpy(h.parent_hash, ch->th.hash, REPO_HASH_LEN);
	repo_origin(st->dir, h.origin, sizeof(h.origin));
	size_t slen = 0;
	int err = 0;
	if (v->image[0]) {	/* its parts before the object that names them */
		/* Noted first: the parts of a push that dies here are known,
		 * and deleted once a newer image makes them unnecessary. */
		uint8_t id[REPO_IMAGE_ID_LEN];
		struct stat sb;
		err = stat(v->image, &sb) ? -errno : random_bytes(id, sizeof(id));
		if (!err)
			err = index_begin(st->ix);
		if (!err) {
			err = remote_cfg_image_sending(st->ix, c->id, n, id,
						       image_part_count((uint64_t)sb.st_size));
			if (!err)
				err = index_commit(st->ix);
			else
				index_rollback(st->ix);
		}
		if (!err)
			err = image_put(r, &st->keys, n, id, v->image, &h, &res->image_bytes);
		if (err) {
			snprintf(res->error, sizeof(res->error), "push to remote '%s': cannot send"
				 " the image of meta/%016llx: %s; rerun the push (the remote still"
				 " recovers as before)", c->name, (unsigned long long)n,
				 *remote_error(r) ? remote_error(r) : strerror(-err));
			return err;
		}
		res->image = n;
	} else {
		image_inherit(&h, ch->tip ? &ch->th : NULL);
	}
	err = publish(&st->keys, r, n, &h, v->delta, v->dlen, st->ix, c->id, &back, &slen);
	if (err == -ESTALE)
		return refuse_foreign(c, n, &back, " at the same moment as this push", res);
	if (err == -EBADMSG || err == -ENOENT)
		return chain_fail(r, err, n, c->name, res);
	if (err) {
		snprintf(res->error, sizeof(res->error), "%s", remote_error(r));
		return err;
	}
	res->meta_bytes = slen;
	memcpy(hash, h.hash, REPO_HASH_LEN);
	*n_out = n;
	ch->tip = n;
	ch->th = h;
	return 0;
}

int push_claim(struct index *ix, const struct store_keys *keys, const char *dir,
	       struct remote_cfg *c, struct remote *r, uint64_t parent,
	       const struct repo_meta_hdr *ph, char *msg, size_t msize)
{
	uint64_t max, seq = 0;
	int err = repo_meta_max(r, &max);
	if (err) {
		snprintf(msg, msize, "%s", remote_error(r));
		return err;
	}
	uint8_t *d = NULL;
	size_t dl = 0, slen;
	err = changelog_last(ix, &seq);
	if (!err)
		err = changelog_export(ix, seq, seq, &d, &dl);	/* no records */
	struct repo_meta_hdr h = { .parent = parent, .flags = REPO_META_TAKEOVER,
				   .time_ns = repo_now_ns() }, back;
	memcpy(h.writer, c->writer, REPO_WRITER_LEN);
	if (parent && !ph->v1)
		memcpy(h.parent_hash, ph->hash, REPO_HASH_LEN);
	image_inherit(&h, parent ? ph : NULL);
	repo_origin(dir, h.origin, sizeof(h.origin));
	uint64_t n = max + 1;
	if (!err)
		err = publish(keys, r, n, &h, d, dl, NULL, 0, &back, &slen);
	free(d);
	if (err == -ESTALE) {
		char id[2 * REPO_WRITER_LEN + 1];
		repo_writer_hex(back.writer, id);
		snprintf(msg, msize, "another store (%s, id %.16s) wrote meta/%016llx at the"
			 " same moment", back.v1 ? "an older tresor" : back.origin, id,
			 (unsigned long long)n);
	} else if (err) {
		snprintf(msg, msize, "%s", *remote_error(r) ? remote_error(r) : strerror(-err));
	}
	if (err)
		return err;
	c->next_meta = n + 1;
	memcpy(c->tip, h.hash, REPO_HASH_LEN);
	c->has_tip = 1;
	return 0;
}

/* push_takeover with the push lock held. */
static int takeover_locked(struct store *st, struct remote_cfg *c, struct remote *r,
			   uint64_t *n_out, char *msg, size_t msize)
{
	uint64_t max;
	struct repo_meta_hdr ph = { 0 };
	int err = repo_meta_max(r, &max);
	if (!err && max)
		err = repo_read_meta_hdr(r, &st->keys, max, &ph);
	if (err == -EBADMSG || err == -ENOENT) {
		snprintf(msg, msize, "meta/%016llx, the newest delta there, fails authentication"
			 " (damaged, or of another repository); nothing was changed",
			 (unsigned long long)max);
		return -EBADMSG;
	}
	if (err) {
		snprintf(msg, msize, "%s", remote_error(r));
		return err;
	}
	if (max)
		err = push_claim(st->ix, &st->keys, st->dir, c, r, max, &ph, msg, msize);
	else
		c->next_meta = 1, c->has_tip = 0;
	if (err)
		return err;
	/* The chain before holds another store's state: the next delta is a
	 * full image, every pack is asked for again, and packs this store
	 * had scheduled for deletion stay (the other store's deltas may name
	 * them). */
	c->full_next = max > 0;
	err = note_chain(st, c, 1);
	if (err)
		snprintf(msg, msize, "the remote is taken over (meta/%016llx) but the store's"
			 " index could not note it: %s; run the takeover again",
			 (unsigned long long)(c->next_meta - 1), strerror(-err));
	*n_out = c->next_meta - 1;
	return err;
}

static int push_lock(struct store *st, const struct remote_cfg *c, int *fd);

int push_takeover(struct store *st, struct remote_cfg *c, struct remote *r,
		  uint64_t *n_out, char *msg, size_t msize)
{
	int lfd;
	int err = push_lock(st, c, &lfd);
	if (err) {
		if (err == -EALREADY)
			snprintf(msg, msize, "a push to it is running; retry when it is done");
		else
			snprintf(msg, msize, "cannot lock %s/locks: %s", st->dir, strerror(-err));
		return err;
	}
	err = takeover_locked(st, c, r, n_out, msg, msize);
	close(lfd);
	return err;
}

/* ---- noting what the remote holds ---- */

/* Before any byte goes: which packs may be on the remote if this push
 * dies, so that none is left there that nothing would ever delete. */
static int note_sending(struct store *st, struct remote_cfg *c, const struct pack_list *todo,
			int64_t lock_until)
{
	int err = index_begin(st->ix);
	for (size_t i = 0; i < todo->n && !err; i++)
		err = remote_cfg_note_sending(st->ix, c->id, todo->v[i].name, lock_until);
	if (!err)
		err = index_commit(st->ix);
	else
		index_rollback(st->ix);
	return err;
}

/* Packs that made it count even if the push failed later: a rerun need
 * not even ask for them. */
static int note_packs(struct store *st, struct remote_cfg *c, const struct pack_list *todo,
		      int64_t lock_until)
{
	int err = index_begin(st->ix);
	for (size_t i = 0; i < todo->n && !err; i++)
		if (todo->v[i].done)
			err = remote_cfg_note_held(st->ix, c->id, todo->v[i].name,
						   todo->v[i].done == 1 ? lock_until : 0);
	if (!err)
		err = index_commit(st->ix);
	else
		index_rollback(st->ix);
	return err;
}

/* The delta is out: record it, and start the grace of the packs it no
 * longer names. */
static int note_delta(struct store *st, struct remote_cfg *c, const struct view *v,
		      uint64_t next_meta, const uint8_t tip[REPO_HASH_LEN],
		      const struct repo_meta_hdr *pub, int64_t meta_lock_until)
{
	int64_t now = repo_now_ns();
	int err = index_begin(st->ix);
	for (size_t i = 0; i < v->freed.n && !err; i++)
		err = remote_cfg_note_freed(st->ix, c->id, v->freed.v[i].name, now,
					    v->freed.v[i].size);
	if (!err)
		err = remote_cfg_set_pushed(st->ix, c->id, v->to, next_meta, now,
					    meta_lock_until);
	/* Notes every remote has are no longer needed. */
	uint64_t min = 0;
	if (!err && !remote_cfg_min_seq(st->ix, &min))
		err = changelog_trim(st->ix, min);
	if (!err && tip) {
		if (pub->image && pub->image == next_meta - 1) {	/* it brought one */
			c->image_meta = pub->image;
			c->image_size = pub->image_size;
			c->since_image = 0;
		} else {
			if (pub->image > c->image_meta) {	/* adopted a dead push's */
				c->image_meta = pub->image;
				c->image_size = pub->image_size;
				c->since_image = 0;
			}
			c->since_image += v->dlen;
		}
		/* From now on it is the image a recovery starts from: what it
		 * makes unnecessary may go after the grace, and after the
		 * retention anything below it may have (now + lock_days at
		 * most: no push renews objects below the newest image). */
		if (pub->image && !pub->v1 && !pub->v2)
			err = remote_cfg_image_published(st->ix, c->id, pub->image, pub->image_id,
							 pub->image_parts, now, c->lock_days ?
							 now / NS + (int64_t)c->lock_days * 86400
							 : 0);
		c->next_meta = next_meta;
		memcpy(c->tip, tip, REPO_HASH_LEN);
		c->has_tip = 1;
		c->full_next = 0;
		err = remote_cfg_set_chain(st->ix, c);
	}
	if (!err) {
		c->last_seq = v->to;
		c->next_meta = next_meta;
		c->meta_lock_until = meta_lock_until;
		err = index_commit(st->ix);
	} else {
		index_rollback(st->ix);
	}
	return err;
}

/* ---- Object Lock: keep what is in use locked ---- */

/* Note each pack in l marked done (note(ix, id, name, val)) in one short
 * transaction. */
static int note_batch(struct store *st, int (*note)(struct index *, int64_t,
						     const uint8_t *, int64_t),
		      int64_t id, const struct pack_list *l, int64_t val)
{
	int err = index_begin(st->ix);
	for (size_t i = 0; i < l->n && !err; i++)
		if (l->v[i].done)
			err = note(st->ix, id, l->v[i].name, val);
	if (!err)
		err = index_commit(st->ix);
	else
		index_rollback(st->ix);
	return err;
}

/*
 * Extend the retention of packs still in use, and of the metadata objects
 * and the newest image's parts (newest: the newest object's header), to
 * now + lock_days once less than
 * half of it is left.  Costs one small request per object every
 * lock_days / 2.  The remote calls run outside any index transaction (a
 * mounted daemon must not wait for the network); what succeeded is noted
 * after, and a kill in between only means extending again next time.
 */
static int renew_locks(struct store *st, struct remote_cfg *c, struct remote *r,
		       struct view *v, const struct repo_meta_hdr *newest, int64_t until,
		       int64_t renew_before, struct push_result *res)
{
	int err = 0;
	for (size_t i = 0; i < v->renew.n && !err; i++) {
		char key[128];
		repo_pack_key(v->renew.v[i].name, key, sizeof(key));
		err = remote_retain(r, key, c->lock_mode, until);
		if (!err) {
			v->renew.v[i].done = 1;
			res->retained++;
		}
	}
	int e = note_batch(st, remote_cfg_note_locked, c->id, &v->renew, until);
	if (err || (err = e) || c->meta_lock_until >= renew_before)
		return err;
	return retire_renew_meta(st, c, r, newest, v->key_object, until, &res->retained);
}

/*
 * One push per remote at a time: two would race for the same delta slot.
 * An flock on STORE/locks/push-ID, released when the process ends.
 */
static int push_lock(struct store *st, const struct remote_cfg *c, int *fd)
{
	char name[32];
	snprintf(name, sizeof(name), "push-%lld", (long long)c->id);
	*fd = store_lock(st->dir, name, 0);
	if (*fd >= 0)
		return 0;
	int e = *fd == -EWOULDBLOCK ? -EALREADY : *fd;
	*fd = -1;
	return e;
}

int push_run(struct store *st, struct remote_cfg *c, struct remote *r,
	     const struct push_opts *po, struct push_result *res)
{
	memset(res, 0, sizeof(*res));
	int lfd;
	int lerr = push_lock(st, c, &lfd);
	if (lerr) {
		if (lerr == -EALREADY)
			snprintf(res->error, sizeof(res->error),
				 "another push to remote '%s' is running", c->name);
		else
			snprintf(res->error, sizeof(res->error), "cannot lock %s/locks: %s",
				 st->dir, strerror(-lerr));
		return lerr;
	}
	struct view v = { 0 };
	int64_t now_s = repo_now_ns() / NS;
	int64_t lock_s = (int64_t)c->lock_days * 86400;
	int64_t until = c->lock_days ? now_s + lock_s : 0;
	int64_t renew_before = now_s + lock_s / 2;
	int err = take_view(st, c, po, renew_before, &v);
	res->packs_pending = v.todo.n;
	if (err && v.image_err)
		snprintf(res->error, sizeof(res->error), "cannot write the image of the index to"
			 " %.900s: %s; free space there, or push with --image-every 0 for now",
			 v.image, strerror(-err));
	struct chain ch;
	if (!err)
		err = chain_check(st, c, r, &ch, res);
	if (!err && c->lock_days)
		err = remote_set_lock(r, c->lock_mode, until);
	int first = c->next_meta <= 1;
	if (!err && (first || ch.th.v1 || ch.th.v2 || !ch.tip))
		err = push_preamble(r);
	if (!err)
		err = push_key(st, r, !ch.tip, v.key_object, sizeof(v.key_object));
	if (err == -ESTALE && !res->error[0])
		snprintf(res->error, sizeof(res->error), "push to remote '%s': it holds the key"
			 " of another store (another repository) and none of this store's deltas;"
			 " push this store to another remote; nothing of this store's was published"
			 " there", c->name);
	if (err == -EPROTONOSUPPORT && !res->error[0])
		snprintf(res->error, sizeof(res->error), "push to remote '%s': it was written by a"
			 " newer tresor (repository version above %d); upgrade tresor", c->name,
			 REPO_VERSION);
	if (err && !res->error[0] && err != -EBUSY)
		snprintf(res->error, sizeof(res->error), "%s", remote_error(r));
	int up = 0;
	if (!err && v.todo.n)
		err = note_sending(st, c, &v.todo, until);
	if (!err) {
		up = 1;
		err = upload_packs(st, c, po, &v.todo, until, res);
	}
	uint64_t n = c->next_meta ? c->next_meta : 1;
	uint8_t tip[REPO_HASH_LEN];
	int published = 0;
	if (!err && v.send) {
		err = send_delta(st, c, r, &v, &ch, &n, tip, res);
		if (!err)
			n++;
	}
	if (!err)
		published = 1;
	/* Whatever packs made it are noted, even when something failed. */
	if (up) {
		int e = note_packs(st, c, &v.todo, until);
		if (!err)
			err = e;
	}
	if (!err && published) {
		int64_t mlock = c->meta_lock_until;
		if (c->lock_days && (first || !mlock))
			mlock = until;
		err = note_delta(st, c, &v, n, v.send ? tip : NULL, &ch.th, mlock);
	}
	/* Old business, once the new state is safely out. */
	if (!err && c->lock_days) {
		err = renew_locks(st, c, r, &v, &ch.th, until, renew_before, res);
		if (err && !res->error[0])
			snprintf(res->error, sizeof(res->error), "%s", remote_error(r));
	}
	if (!err) {
		int64_t grace = po->grace_ns >= 0 ? po->grace_ns : c->grace_ns;
		err = retire_packs(st, c, r, grace, res);
		if (!err && published)
			err = retire_meta(st, c, r, &ch.th, grace, res);
		if (err && !res->error[0])
			snprintf(res->error, sizeof(res->error), "%s", remote_error(r));
	}
	if (err && !res->error[0])
		snprintf(res->error, sizeof(res->error), "%s", strerror(-err));
	view_free(&v);
	close(lfd);
	return err;
}
