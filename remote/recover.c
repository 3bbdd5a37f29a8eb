/*
 * recover.c - rebuild a store from a remote and the passphrase alone
 * (recover.h): key file, every metadata delta in order, every pack
 * (lazy: none until read or filled).
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
#include "../chunker/changelog.h"
#include "fetch.h"
#include "image.h"
#include "pget.h"
#include "push.h"
#include "recover.h"
#include "repo.h"
#include "../chunker/util.h"

/* One metadata object as the chain plan sees it. */
struct cnode {
	struct repo_meta_hdr h;
	uint64_t parent;	/* the object it continues (version 1: the one before) */
	int read;		/* h was read */
	int linked;		/* the parent there is the one it names */
	int children;		/* objects linked to it */
	int on_path;		/* to be applied */
	uint8_t *delta;		/* fetched whole already: its delta (opened) */
	size_t dlen;
};

/* The chain plan: objects lo .. max were read; apply base .. tip on the
 * path (base > 1 or an image: the image of object base stands for the
 * objects up to it, FORMAT.md §15.5). */
struct plan {
	struct cnode *cn;
	uint64_t min, max, tip, base;
	int image;		/* base's image is the starting index */
	struct repo_meta_hdr named;	/* the header that named base's image */
};

/* res->forks: every branch head from lo up, "meta/N by ORIGIN (id ...)". */
static void describe_forks(const struct cnode *cn, uint64_t lo, uint64_t max,
			   struct recover_result *res)
{
	size_t k0 = 0;
	for (uint64_t k = max; k >= lo && k >= 1 && k0 < sizeof(res->forks) - 80; k--) {
		if (cn[k].children)
			continue;
		char id[2 * REPO_WRITER_LEN + 1];
		repo_writer_hex(cn[k].h.writer, id);
		k0 += snprintf(res->forks + k0, sizeof(res->forks) - k0, "%smeta/%016llx by %s%s%.16s%s",
			       k0 ? "; " : "", (unsigned long long)k,
			       cn[k].h.v1 ? "an older tresor" : cn[k].h.origin,
			       cn[k].h.v1 ? "" : " (id ", cn[k].h.v1 ? "" : id,
			       cn[k].h.v1 ? "" : ")");
	}
}

/* Read the header of object k once (a missing one is a gap). */
static int read_node(struct remote *r, const struct store_keys *keys, struct cnode *cn,
		     uint64_t k, struct recover_result *res)
{
	if (cn[k].read)
		return 0;
	int err = repo_read_meta_hdr(r, keys, k, &cn[k].h);
	if (err == -ENOENT)
		err = -ENODATA;	/* a gap: a later delta exists */
	uint64_t p = cn[k].h.v1 ? k - 1 : cn[k].h.parent;
	if (!err && p >= k)
		err = -EBADMSG;
	if (err) {
		repo_meta_key(k, res->failed, sizeof(res->failed));
		return err;
	}
	cn[k].parent = p;
	cn[k].read = 1;
	return 0;
}

/* The branch head: the newest object, or with ro->chain the newest one
 * that store wrote (-ESRCH: none). */
static int find_tip(struct remote *r, const struct store_keys *keys,
		    const struct recover_opts *ro, struct plan *pl, struct recover_result *res)
{
	pl->tip = 0;
	for (uint64_t k = pl->max; k >= 1 && !pl->tip; k--) {
		int err = read_node(r, keys, pl->cn, k, res);
		if (err)
			return err;
		char id[2 * REPO_WRITER_LEN + 1];
		repo_writer_hex(pl->cn[k].h.writer, id);
		if (!ro->chain || (!pl->cn[k].h.v1 && !strncasecmp(id, ro->chain, strlen(ro->chain))))
			pl->tip = k;
	}
	return pl->tip ? 0 : -ESRCH;
}

/*
 * Objects lo .. max, fetched whole in parallel and opened: their headers
 * for the plan and their deltas for applying, one GET each instead of
 * header reads and a GET later.  Only after an image, where they are few.
 */
static int prefetch(struct remote *r, const char *url, const struct remote_options *opt,
		    const struct store_keys *keys, struct cnode *cn, uint64_t lo,
		    uint64_t max, struct recover_result *res)
{
	if (lo > max)
		return 0;
	size_t n = max - lo + 1;
	struct pget_item *it = calloc(n, sizeof(*it));
	if (!it)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		repo_meta_key(lo + i, it[i].key, sizeof(it[i].key));
	int err = pget_run(r, url, opt, it, n, PGET_DEFAULT_JOBS);
	for (size_t i = 0; i < n && !err; i++) {
		uint64_t k = lo + i;
		struct cnode *c = &cn[k];
		err = it[i].err == -ENOENT ? -ENODATA : it[i].err;
		if (!err)
			err = repo_open_delta(keys, k, it[i].buf, it[i].len, &c->h, &c->delta,
					      &c->dlen);
		c->parent = c->h.v1 ? k - 1 : c->h.parent;
		if (!err && c->parent >= k)
			err = -EBADMSG;
		if (err)
			repo_meta_key(k, res->failed, sizeof(res->failed));
		else
			c->read = 1;
	}
	pget_free(it, n);
	free(it);
	return err;
}

/* The image the path names must be object base's own, as base names it. */
static int check_image(const struct plan *pl, struct recover_result *res)
{
	const struct repo_meta_hdr *t = &pl->named, *b = &pl->cn[pl->base].h;
	if (b->v1 || b->v2 || b->image != pl->base || b->image_parts != t->image_parts ||
	    b->image_size != t->image_size || memcmp(b->image_id, t->image_id, REPO_IMAGE_ID_LEN)) {
		repo_meta_key(pl->base, res->failed, sizeof(res->failed));
		return -EBADMSG;
	}
	return 0;
}

/*
 * Which deltas to apply: the path from the newest one back to the newest
 * image it names (without one, to the first), along the object each
 * continues.  Objects off that path mean two stores continued the chain
 * (a fork), unless a takeover delta on the path comes after them (the
 * store that took over left them on purpose).  A fork is refused unless
 * ro->chain names the branch: never a mix of two.  Only headers are read
 * here (small ranged reads), and none below the image.
 */
static int plan_chain(struct remote *r, const char *url, const struct remote_options *opt,
		      const struct store_keys *keys, const struct recover_opts *ro,
		      uint64_t below, struct plan *pl, struct recover_result *res)
{
	int err = repo_meta_range(r, &pl->min, &pl->max);
	if (err)
		return err;
	if (!pl->max) {
		repo_meta_key(1, res->failed, sizeof(res->failed));
		return -ENODATA;	/* a marker and a key but no metadata */
	}
	struct cnode *cn = calloc(pl->max + 1, sizeof(*cn));
	if (!cn)
		return -ENOMEM;
	pl->cn = cn;
	err = find_tip(r, keys, ro, pl, res);
	if (err == -ESRCH)
		describe_forks(cn, 1, pl->max, res);
	if (err)
		return err;
	/* The newest image on the path; with below (its image failed), the
	 * newest one under below: the object before an image's own object
	 * names the image before it (none: a replay from object 1). */
	const struct repo_meta_hdr *th = &cn[pl->tip].h;
	uint64_t b = !th->v1 && !th->v2 ? th->image : 0;
	while (b && below && b >= below) {
		err = read_node(r, keys, cn, b, res);
		uint64_t p = err ? 0 : cn[b].parent;
		if (!err && p)
			err = read_node(r, keys, cn, p, res);
		if (err)
			return err;
		th = p ? &cn[p].h : NULL;
		b = th && !th->v1 && !th->v2 ? th->image : 0;
	}
	if (th)
		pl->named = *th;
	pl->image = b != 0;
	pl->base = pl->image ? b : 1;
	if (pl->image)
		err = prefetch(r, url, opt, keys, cn, pl->base + 1, pl->max, res);
	for (uint64_t k = pl->base; k <= pl->max && !err; k++)
		err = read_node(r, keys, cn, k, res);
	if (!err && pl->image)
		err = check_image(pl, res);
	for (uint64_t k = pl->base; k <= pl->max && !err; k++) {
		uint64_t p = cn[k].parent;
		if (p < pl->base)	/* only the image's object may continue one below */
			cn[k].linked = !p || k == pl->base;
		else
			cn[k].linked = cn[k].h.v1 || cn[p].h.v1 ||
				       !memcmp(cn[k].h.parent_hash, cn[p].h.hash, REPO_HASH_LEN);
		if (cn[k].linked && p >= pl->base)
			cn[p].children++;
	}
	if (err)
		return err;
	uint64_t takeover = 0;
	for (uint64_t k = pl->tip; k && !err; k = k == pl->base ? 0 : cn[k].parent) {
		cn[k].on_path = 1;
		if ((cn[k].h.flags & REPO_META_TAKEOVER) && k > takeover)
			takeover = k;
		if (!cn[k].linked || k < pl->base)
			err = -ENOTUNIQ;	/* it continues an object not there */
	}
	for (uint64_t k = pl->base; k <= pl->max && !err && !ro->chain; k++)
		if (!cn[k].on_path && k > takeover)
			err = -ENOTUNIQ;
	if (err)
		describe_forks(cn, pl->base, pl->max, res);
	return err;
}

static int get_whole(struct remote *r, const char *key, uint8_t **buf,
		     size_t *len)
{
	return remote_get(r, key, 0, 0, buf, len);
}

/* Fetch meta/k (unless prefetched), check it is the object planned with
 * (c's header), and apply its delta to ix in one transaction. */
static int apply_one(struct remote *r, const struct store_keys *keys, struct index *ix,
		     uint64_t k, struct cnode *c, struct recover_result *res)
{
	char key[64];
	repo_meta_key(k, key, sizeof(key));
	uint8_t *buf = NULL, *d = c->delta;
	size_t len = 0, dl = c->dlen;
	struct repo_meta_hdr h;
	int err = 0;
	c->delta = NULL;
	if (!d) {
		err = get_whole(r, key, &buf, &len);
		if (err == -ENOENT)
			err = -ENODATA;
		if (!err)
			err = repo_open_delta(keys, k, buf, len, &h, &d, &dl);
		/* the object read whole must be the one planned with */
		if (!err && (h.v1 != c->h.v1 || memcmp(h.hash, c->h.hash, REPO_HASH_LEN)))
			err = -EBADMSG;
	}
	if (err)
		snprintf(res->failed, sizeof(res->failed), "%s", key);
	free(buf);
	/* A store of a newer format wrote it (FORMAT.md §2): refused before
	 * any of it is applied, and said so, not "damaged". */
	int64_t format = 0;
	if (!err && !changelog_format(d, dl, &format) && format > STORE_FORMAT_VERSION) {
		res->store_format = format;
		snprintf(res->failed, sizeof(res->failed), "%s", key);
		err = -EPROTONOSUPPORT;
	}
	if (!err)
		err = index_begin(ix);
	if (!err) {
		err = changelog_apply(ix, d, dl, NULL, NULL);
		if (err)	/* a malformed delta: the message names it */
			snprintf(res->failed, sizeof(res->failed), "%s", key);
	}
	if (!err)
		err = index_commit(ix);
	else
		index_rollback(ix);
	free(d);
	res->deltas++;
	return err;
}

struct want {
	uint8_t name[PACK_NAME_LEN];
	uint64_t size;
};

struct wants {
	const char *dir;
	struct want *v;
	size_t n, cap;
	uint64_t total;
};

/* Note pack p unless dir holds it (fetched by an earlier run). */
static int want_add(void *arg, const struct remote_cfg_pack *p)
{
	struct wants *w = arg;
	char hex[PACK_NAME_LEN * 2 + 1], path[PATH_MAX + 256];
	hex_encode(p->name, PACK_NAME_LEN, hex);
	snprintf(path, sizeof(path), "%s/%s/%.2s/%s", w->dir, STORE_PACK_DIR, hex, hex);
	struct stat sb;
	if (!stat(path, &sb) && sb.st_size == p->val)
		return 0;
	struct want *v = buf_grow(w->v, &w->cap, w->n + 1, sizeof(*w->v));
	if (!v)
		return -ENOMEM;
	w->v = v;
	memcpy(v[w->n].name, p->name, PACK_NAME_LEN);
	v[w->n++].size = p->val;
	w->total += p->val;
	return 0;
}

/* The packs of fetch_missing, fetched by several jobs. */
struct fetch_job {
	const struct store_keys *keys;
	const char *dir;
	const struct want *ws;
	const struct recover_opts *ro;
	struct recover_result *res;
	pthread_mutex_t lock;	/* guards res and done */
	uint64_t done, total;
};

static int fetch_one(void *arg, struct remote *r, size_t i)
{
	struct fetch_job *j = arg;
	uint64_t len = 0;
	int err = pack_fetch_install(r, j->keys, j->dir, j->ws[i].name, j->ws[i].size, &len);
	pthread_mutex_lock(&j->lock);
	if (err && !j->res->failed[0])
		repo_pack_key(j->ws[i].name, j->res->failed, sizeof(j->res->failed));
	if (!err) {
		j->res->packs++;
		j->res->bytes += len;
	}
	j->done += j->ws[i].size;
	if (j->ro->progress)
		j->ro->progress(j->ro->progress_arg, j->done, j->total);
	pthread_mutex_unlock(&j->lock);
	return err;
}

/* Fetch every finished pack the index names that dir does not hold yet
 * (verified, installed atomically): the body of a full recovery and of
 * the fill of a lazy one.  Resumable: packs already here are kept.  With
 * url, PGET_DEFAULT_JOBS packs at a time, each on its own connection. */
static int fetch_missing(struct remote *r, const char *url, const struct remote_options *opt,
			 const struct store_keys *keys, const char *dir, struct index *ix,
			 int64_t lacking, const struct recover_opts *ro,
			 struct recover_result *res)
{
	/* lacking > 0: only packs remote id lacking is not known to hold. */
	struct wants w = { .dir = dir };
	int err = remote_cfg_packs(ix, lacking > 0 ? REMOTE_PACKS_LACKING : REMOTE_PACKS_ALL,
				   lacking, 0, want_add, &w);
	struct want *ws = w.v;
	size_t n = w.n;
	uint64_t total = w.total;
	if (!r) {	/* count only */
		free(ws);
		res->packs = n;
		return err;
	}
	if (!err) {
		struct fetch_job j = { .keys = keys, .dir = dir, .ws = ws, .ro = ro, .res = res,
				       .total = total };
		pthread_mutex_init(&j.lock, NULL);
		err = pget_each(r, url, opt, n, PGET_DEFAULT_JOBS, fetch_one, &j);
		pthread_mutex_destroy(&j.lock);
	}
	free(ws);
	return err;
}

int recover_fill(struct store *st, struct remote *r,
		 const struct recover_opts *ro, struct recover_result *res)
{
	memset(res, 0, sizeof(*res));
	int err = fetch_missing(r, NULL, NULL, &st->keys, st->dir, st->ix, 0, ro, res);
	if (!err)
		err = index_begin(st->ix);
	if (!err)
		err = index_meta_set(st->ix, "lazy", 0);
	if (!err)
		err = index_commit(st->ix);
	return err;
}

int recover_fill_for(struct store *st, struct remote *r, int64_t target,
		     const struct recover_opts *ro, struct recover_result *res)
{
	memset(res, 0, sizeof(*res));
	return fetch_missing(r, NULL, NULL, &st->keys, st->dir, st->ix, target, ro, res);
}

static int key_object_cb(void *arg, const char *key, uint64_t size)
{
	(void)size;
	struct { char names[16][64]; int n; } *l = arg;
	if (!strncmp(key, "keys/key-", 9) && strlen(key) < 64 && l->n < 16)
		snprintf(l->names[l->n++], 64, "%s", key);
	return 0;
}

/* The key file that opens with the passphrase, written to path: keys/key
 * (the first), else a later one (keys/key-HASH, written by a push after
 * a passphrase change; FORMAT.md §15).  -EKEYREJECTED if none does. */
static int recover_key(struct remote *r, const char *path, const char *pass,
		       size_t passlen, struct store_keys *keys)
{
	uint8_t *buf;
	size_t len;
	int err = get_whole(r, "keys/key", &buf, &len);
	if (err)
		return err;
	err = write_file_atomic(path, buf, len, 0600);
	free(buf);
	if (!err)
		err = keyfile_open(path, pass, passlen, keys);
	if (err != -EKEYREJECTED)
		return err;
	struct { char names[16][64]; int n; } later = { .n = 0 };
	int lerr = remote_list(r, "keys/", key_object_cb, &later);
	if (lerr && lerr != -ENOENT)
		return lerr;
	for (int i = 0; i < later.n; i++) {
		int e = get_whole(r, later.names[i], &buf, &len);
		if (e == -ENOENT)
			continue;
		if (e)
			return e;
		e = write_file_atomic(path, buf, len, 0600);
		free(buf);
		if (!e)
			e = keyfile_open(path, pass, passlen, keys);
		if (e != -EKEYREJECTED && e != -EBADMSG)
			return e;
	}
	return -EKEYREJECTED;
}

int recover_run(struct remote *r, const char *url,
		const struct remote_options *opt, const char *dir,
		const char *pass, size_t passlen, const struct recover_opts *ro,
		struct recover_result *res)
{
	memset(res, 0, sizeof(*res));
	struct stat sb;
	if (!stat(dir, &sb))
		return -EEXIST;
	char tmp[PATH_MAX], path[PATH_MAX + 256];
	snprintf(tmp, sizeof(tmp), "%s.recover", dir);
	uint8_t *buf = NULL;
	size_t len = 0;
	int err = get_whole(r, "tresor-repo", &buf, &len);
	if (err)
		return err == -ENOENT ? -ENOENT : err;
	if (len < 16 || memcmp(buf, "TRESORRP", 8)) {
		free(buf);
		return -ENOENT;
	}
	uint32_t ver = get_le32(buf + 8);
	free(buf);
	if (ver > REPO_VERSION)
		return -EPROTONOSUPPORT;
	if (mkdir(tmp, 0700) && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/%s", tmp, STORE_PACK_DIR);
	if (mkdir(path, 0700) && errno != EEXIST)
		return -errno;
	/* The key: from the remote, checked with the passphrase. */
	struct store_keys keys;
	snprintf(path, sizeof(path), "%s/%s", tmp, STORE_KEY_FILE);
	err = recover_key(r, path, pass, passlen, &keys);
	if (err)
		return err;
	/* The index: the newest image, or an empty one, then the deltas after.
	 * An image that is missing or fails authentication is passed over for
	 * the one before it (or a replay from object 1) while the objects
	 * that takes are there; if they are not, the image's failure is the
	 * answer (res->image_failed names its part). */
	struct plan pl = { 0 };
	uint64_t below = 0;
	int image_err = 0;
	snprintf(path, sizeof(path), "%s/%s", tmp, STORE_INDEX_FILE);
	char wal[PATH_MAX + 256 + 8];
	snprintf(wal, sizeof(wal), "%s-wal", path);
	unlink(wal);
	snprintf(wal, sizeof(wal), "%s-shm", path);
	unlink(wal);
	unlink(path);
	for (;;) {
		err = plan_chain(r, url, opt, &keys, ro, below, &pl, res);
		int from_image = !err && pl.image;
		if (from_image) {
			err = image_get(r, &keys, &pl.cn[pl.base].h, path, res->failed,
					sizeof(res->failed));
			res->image = pl.base;
		}
		if (err && image_err && !from_image) {	/* no way round the first one */
			snprintf(res->fallback_failed, sizeof(res->fallback_failed), "%s",
				 res->failed);
			snprintf(res->failed, sizeof(res->failed), "%s", res->image_failed);
			res->fallback_err = err;
			err = image_err;
		}
		if (!(from_image && (err == -ENODATA || err == -EBADMSG)))
			break;
		if (!image_err) {
			image_err = err;
			snprintf(res->image_failed, sizeof(res->image_failed), "%s", res->failed);
		}
		res->image = 0;
		res->failed[0] = 0;
		below = pl.base;
		for (uint64_t k = 0; k <= pl.max; k++)
			free(pl.cn[k].delta);
		free(pl.cn);
		memset(&pl, 0, sizeof(pl));
	}
	if (!err && image_err)
		res->image_err = image_err;	/* recovered round it */
	struct cnode *cn = pl.cn;
	uint64_t max = pl.max, tip = pl.tip;
	struct index *ix = NULL;
	uint64_t since = 0;	/* delta bytes applied after the image */
	if (!err)
		err = index_open(path, 1, &ix);
	/* An image of a newer store format: refused as a delta of one is. */
	int64_t format = 0;
	if (!err && pl.image && !index_meta_get(ix, "format_version", &format) &&
	    format > STORE_FORMAT_VERSION) {
		res->store_format = format;
		image_part_key(pl.base, cn[pl.base].h.image_id, 0, res->failed,
			       sizeof(res->failed));
		err = -EPROTONOSUPPORT;
	}
	for (uint64_t k = pl.image ? pl.base + 1 : 1; k <= max && !err; k++) {
		if (!cn[k].on_path)
			continue;
		since += cn[k].dlen;
		err = apply_one(r, &keys, ix, k, &cn[k], res);
	}
	res->tip = tip;
	/* Names are used as path components by mounts and restores: a
	 * damaged or hostile history must not name "..", "." or "a/b". */
	if (!err)
		err = ro->check_index ? ro->check_index(ix, res->failed, sizeof(res->failed))
				      : -EINVAL;
	/* The packs the index names, verified (lazy: later, on demand). */
	if (!err && !ro->lazy)
		err = fetch_missing(r, url, opt, &keys, tmp, ix, 0, ro, res);
	if (!err)
		err = index_begin(ix);
	if (!err)
		err = index_meta_set(ix, "lazy", ro->lazy ? 1 : 0);
	if (!err)
		err = index_commit(ix);
	/* Keep pushing to where we came from: from the delta recovered, which
	 * the first push continues only if it is still the newest there. */
	if (!err) {
		struct remote_cfg c = { 0 };
		snprintf(c.name, sizeof(c.name), "origin");
		snprintf(c.url, sizeof(c.url), "%s", url);
		if (opt)
			c.opt = *opt;
		err = index_begin(ix);
		if (!err)
			err = remote_cfg_add(ix, &c);
		if (err == -EEXIST)
			err = 0;
		if (!err)
			err = remote_cfg_find(ix, "origin", &c);
		if (!err) {
			c.next_meta = tip + 1;
			c.image_meta = pl.image ? pl.base : 0;
			c.image_size = pl.image ? cn[pl.base].h.image_size : 0;
			c.since_image = since;
			c.has_tip = !cn[tip].h.v1;
			memcpy(c.tip, cn[tip].h.hash, REPO_HASH_LEN);
			c.full_next = 0;
			err = remote_cfg_set_chain(ix, &c);
		}
		/* What this store may delete there once a newer image of its
		 * own makes it unnecessary: the image it started from, the
		 * objects from the lowest one listed (a hint: the listing
		 * decides nothing else) up. */
		if (!err && pl.image)
			err = remote_cfg_image_published(ix, c.id, pl.base, cn[pl.base].h.image_id,
							 cn[pl.base].h.image_parts, repo_now_ns(),
							 0);
		if (!err)
			err = remote_cfg_set_floor(ix, c.id, pl.min ? pl.min : 1);
		/* origin holds every pack we just fetched. */
		if (!err)
			err = remote_cfg_note_all_held(ix, c.id);
		if (!err)
			err = index_commit(ix);
		/* Before the store is in place: a rerun writes another
		 * takeover after this one, which is harmless. */
		if (!err && ro->takeover) {
			int e = push_claim(ix, &keys, dir, &c, r, tip, &cn[tip].h,
					   res->claim_error, sizeof(res->claim_error));
			if (!e) {
				res->claimed = c.next_meta - 1;
				err = remote_cfg_set_chain(ix, &c);
			}
		}
	}
	for (uint64_t k = 0; cn && k <= max; k++)
		free(cn[k].delta);
	free(cn);
	if (ix)
		index_close(ix);
	if (!err && rename(tmp, dir))
		err = -errno;
	if (!err)
		err = fsync_parent_dir(dir);
	secure_wipe(&keys, sizeof(keys));
	return err;
}
