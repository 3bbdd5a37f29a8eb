/*
 * check_remote.c - verify a remote against the store (check_remote.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../chunker/buf.h"
#include "check_remote.h"
#include "fetch.h"
#include "image.h"
#include "../chunker/util.h"

struct obj {
	char *key;
	uint64_t size;
};

struct rctx {
	const struct remote_cfg *cfg;
	const struct remote_check_opts *o;
	struct remote_check_result *res;
	struct obj *objs;
	size_t n, cap;
	/* check_packs' arguments, for check_pack */
	struct store *st;
	struct remote *r;
	int read_data;
	void (*progress)(void *, uint64_t, uint64_t);
	void *parg;
	uint64_t total, done;
	/* Packs downloaded and verified, noted after the listing. */
	uint8_t (*ok)[PACK_NAME_LEN];
	size_t nok, capok;
};

static void rproblem(struct rctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void rproblem(struct rctx *c, const char *fmt, ...)
{
	char line[1024];
	int k = snprintf(line, sizeof(line), "remote '%s': ", c->cfg->name);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + k, sizeof(line) - k, fmt, ap);
	va_end(ap);
	c->res->problems++;
	c->o->report(c->o->arg, line);
}

static void affects_line(void *arg, const char *line)
{
	struct rctx *c = arg;
	char buf[8200];
	snprintf(buf, sizeof(buf), "  affects %s", line);
	c->o->report(c->o->arg, buf);
}

static int collect(void *arg, const char *key, uint64_t size)
{
	struct rctx *c = arg;
	struct obj *p = buf_grow(c->objs, &c->cap, c->n + 1, sizeof(*c->objs));
	if (!p)
		return -ENOMEM;
	c->objs = p;
	c->objs[c->n].key = strdup(key);
	c->objs[c->n++].size = size;
	return c->objs[c->n - 1].key ? 0 : -ENOMEM;
}

static int obj_cmp(const void *a, const void *b)
{
	return strcmp(((const struct obj *)a)->key, ((const struct obj *)b)->key);
}

static const struct obj *find(struct rctx *c, const char *key)
{
	struct obj k = { .key = (char *)key };
	return bsearch(&k, c->objs, c->n, sizeof(*c->objs), obj_cmp);
}

/* One pack the remote should hold: there, of its size, and (read_data)
 * verifying. */
static int check_pack(void *arg, const struct remote_cfg_pack *p)
{
	struct rctx *c = arg;
	uint64_t size = p->val;
	char key[128];
	repo_pack_key(p->name, key, sizeof(key));
	c->res->packs++;
	const struct obj *o = find(c, key);
	if (!o) {
		rproblem(c, "pack %s is missing", key);
	} else if (o->size != size) {
		rproblem(c, "pack %s is %llu bytes, the index says %llu (truncated or another object)",
			 key, (unsigned long long)o->size, (unsigned long long)size);
	} else if (c->read_data && c->o->by_age &&
		   p->verified >= c->o->now - c->o->max_age) {
		return 0;	/* verified there recently enough */
	} else if (c->read_data) {
		c->res->packs_due++;
		uint8_t *buf = NULL;
		size_t len = 0;
		int r2 = remote_get(c->r, key, 0, 0, &buf, &len);
		if (!r2)
			r2 = pack_verify_bytes(&c->st->keys, c->st->dir, p->name, buf, len);
		free(buf);
		c->res->bytes_read += len;
		c->done += size;
		if (c->progress)
			c->progress(c->parg, c->done, c->total);
		if (r2 == -EBADMSG)
			rproblem(c, "pack %s fails verification (damaged or tampered with)", key);
		else if (r2 == -ENOENT)
			rproblem(c, "pack %s is missing", key);
		else if (r2)
			return r2;	/* the remote failed, not the pack */
		c->res->packs_due_read++;
		if (!r2) {
			uint8_t (*ok)[PACK_NAME_LEN] = buf_grow(c->ok, &c->capok, c->nok + 1,
								PACK_NAME_LEN);
			if (ok) {	/* else: not noted, due again next time */
				c->ok = ok;
				memcpy(ok[c->nok++], p->name, PACK_NAME_LEN);
			}
			return 0;
		}
	} else {
		return 0;
	}
	if (c->o->affected)
		c->o->affected(c->st->ix, p->id, 0, 20, affects_line, c, NULL);
	return 0;
}

/* The packs this remote should hold: pushed, and still named by the index. */
static int check_packs(struct store *st, struct remote *r, struct rctx *c,
		       int read_data, void (*progress)(void *, uint64_t, uint64_t),
		       void *parg)
{
	c->st = st;
	c->r = r;
	c->read_data = read_data;
	c->progress = progress;
	c->parg = parg;
	if (read_data)
		for (size_t i = 0; i < c->n; i++)
			if (!strncmp(c->objs[i].key, "data/", 5))
				c->total += c->objs[i].size;
	int err = remote_cfg_packs(st->ix, REMOTE_PACKS_HELD, c->cfg->id, 0, check_pack, c);
	if (!err && c->nok) {
		/* After the listing (its statement is done), in one transaction. */
		err = index_begin(st->ix);
		for (size_t i = 0; i < c->nok && !err; i++)
			err = remote_cfg_note_verified(st->ix, c->cfg->id, c->ok[i], c->o->now);
		if (!err)
			err = index_commit(st->ix);
		if (err)
			index_rollback(st->ix);
	}
	free(c->ok);
	c->ok = NULL;
	uint64_t bytes;
	if (!err)
		remote_cfg_pending(st->ix, c->cfg->id, &c->res->not_pushed, &bytes);
	return err;
}

/*
 * One image: the header of its own object names it (the parts' count and
 * the index size), every part is listed, and (read_data) every part
 * authenticates as that part of that image and they add up to its size.
 * newest: the image a recovery starts from (else an older one, kept for
 * the grace).
 */
static int check_image(struct store *st, struct remote *r, struct rctx *c, uint64_t n,
		       const uint8_t id[REPO_IMAGE_ID_LEN], int newest, int read_data)
{
	const char *what = newest ? "the newest image" : "an older image";
	char key[96];
	struct repo_meta_hdr h;
	repo_meta_key(n, key, sizeof(key));
	int err = repo_read_meta_hdr(r, &st->keys, n, &h);
	if (err == -ENOENT || err == -EBADMSG) {
		if (newest)
			rproblem(c, "%s, the object of %s of the index, is %s", key, what,
				 err == -ENOENT ? "missing" : "damaged (fails authentication)");
		return 0;	/* older: its object may be gone already (deleted) */
	}
	if (err)
		return err;
	if (h.v1 || h.v2 || h.image != n || memcmp(h.image_id, id, REPO_IMAGE_ID_LEN)) {
		if (newest)
			rproblem(c, "%s does not name %s of the index as its own: a recovery"
				 " refuses the chain", key, what);
		return 0;
	}
	c->res->images++;
	uint64_t total = 0;
	int bad = 0;
	for (uint32_t p = 0; p < h.image_parts; p++) {
		image_part_key(n, id, p, key, sizeof(key));
		c->res->image_parts++;
		if (!find(c, key)) {
			rproblem(c, "image part %s (%s of the index, of meta/%016llx) is missing;"
				 " a recovery %s", key, what, (unsigned long long)n, newest ?
				 "falls back to an older image or a replay of the deltas, if they"
				 " are still there; the next push with --image-every 1 writes a new"
				 " image" : "cannot fall back to it");
			bad = 1;
			continue;
		}
		if (!read_data)
			continue;
		uint8_t *d = NULL;
		size_t dl = 0;
		uint64_t got = 0;
		int r2 = image_get_part(r, &st->keys, &h, p, &d, &dl, &got);
		free(d);
		c->res->bytes_read += got;
		total += dl;
		if (r2 == -EBADMSG || r2 == -ENODATA) {
			rproblem(c, "image part %s (%s of the index, of meta/%016llx) %s", key, what,
				 (unsigned long long)n, r2 == -ENODATA ? "is missing" :
				 "fails authentication (damaged, tampered with, or another image's"
				 " part)");
			bad = 1;
		} else if (r2) {
			return r2;
		}
	}
	if (read_data && !bad && total != h.image_size)
		rproblem(c, "the image of meta/%016llx holds %llu bytes, its header says %llu",
			 (unsigned long long)n, (unsigned long long)total,
			 (unsigned long long)h.image_size);
	return 0;
}

/* The images a recovery starts or may fall back from: the one the
 * newest object names, and those this store published there that no
 * push deleted yet. */
static int check_images(struct store *st, struct remote *r, struct rctx *c,
			uint64_t last, int read_data)
{
	struct repo_meta_hdr th;
	char key[64];
	repo_meta_key(last, key, sizeof(key));
	if (!last || !find(c, key))
		return 0;
	int err = repo_read_meta_hdr(r, &st->keys, last, &th);
	if (err == -EBADMSG || err == -ENOENT)
		return 0;	/* check_meta reports it */
	if (err)
		return err;
	if (!th.v1 && !th.v2 && th.image)
		err = check_image(st, r, c, th.image, th.image_id, 1, read_data);
	struct remote_image_row *rows;
	size_t nr;
	if (!err)
		err = remote_cfg_images(st->ix, c->cfg->id, &rows, &nr);
	if (err)
		return err;
	for (size_t i = 0; i < nr && !err; i++)
		if (rows[i].published && rows[i].meta < th.image)
			err = check_image(st, r, c, rows[i].meta, rows[i].id, 0, read_data);
	free(rows);
	return err;
}

/* meta/floor .. meta/(next_meta - 1), nothing after, each authenticating;
 * those a recovery reads (from the newest image on) must be there. */
static int check_meta(struct store *st, struct remote *r, struct rctx *c,
		      int read_data)
{
	uint64_t last = c->cfg->next_meta ? c->cfg->next_meta - 1 : 0;
	uint64_t floor = c->cfg->meta_floor ? c->cfg->meta_floor : 1;
	uint64_t needed = c->cfg->image_meta > floor ? c->cfg->image_meta : floor;
	uint64_t have_max = 0, count = 0;
	for (size_t i = 0; i < c->n; i++) {
		unsigned long long v;
		if (sscanf(c->objs[i].key, "meta/%16llx", &v) == 1) {
			count++;
			if (v > have_max)
				have_max = v;
		}
	}
	int err = 0;
	for (uint64_t k = floor; k <= last && !err; k++) {
		char key[64];
		repo_meta_key(k, key, sizeof(key));
		if (!find(c, key)) {
			if (k >= needed)
				rproblem(c, "metadata %s is missing: the chain is broken (deleted, or the remote was rolled back); a recovery would stop before it",
					 key);
			continue;	/* below the newest image: may be deleted already */
		}
		c->res->metas++;
		if (!read_data)
			continue;
		uint8_t *buf = NULL, *d = NULL;
		size_t len = 0, dl = 0;
		int r2 = remote_get(r, key, 0, 0, &buf, &len);
		if (!r2)
			r2 = repo_open_delta(&st->keys, k, buf, len, NULL, &d, &dl);
		free(buf);
		free(d);
		c->res->bytes_read += len;
		if (r2 == -EBADMSG)
			rproblem(c, "metadata %s fails authentication as delta %llu (damaged, tampered with, or another delta's bytes)",
				 key, (unsigned long long)k);
		else if (r2 && r2 != -ENOENT)
			err = r2;
	}
	if (!err && have_max > last)
		rproblem(c, "holds metadata up to meta/%016llx but this store pushed up to meta/%016llx: another store pushes here",
			 (unsigned long long)have_max, (unsigned long long)last);
	(void)count;
	if (!err && !find(c, "tresor-repo"))
		rproblem(c, "tresor-repo marker is missing");
	if (!err && !find(c, "keys/key"))
		rproblem(c, "keys/key is missing: a recovery from this remote is impossible");
	return err;
}

int check_remote(struct store *st, struct remote *r, const struct remote_cfg *cfg,
		 const struct remote_check_opts *o, struct remote_check_result *res)
{
	memset(res, 0, sizeof(*res));
	struct rctx c = { .cfg = cfg, .o = o, .res = res };
	int read_data = o->read_data;
	int err = remote_list(r, "", collect, &c);
	if (!err && c.n)
		qsort(c.objs, c.n, sizeof(*c.objs), obj_cmp);
	if (!err)
		err = check_packs(st, r, &c, read_data, o->progress, o->parg);
	if (!err)
		err = check_meta(st, r, &c, read_data);
	if (!err)
		err = check_images(st, r, &c, cfg->next_meta ? cfg->next_meta - 1 : 0, read_data);
	for (size_t i = 0; i < c.n; i++)
		free(c.objs[i].key);
	free(c.objs);
	return err;
}
