/*
 * check_remote.c - verify a remote against the store (check_remote.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

#include "../chunker/buf.h"
#include "check_remote.h"
#include "fetch.h"
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

/* The packs this remote should hold: pushed, and still named by the index. */
static int check_packs(struct store *st, struct remote *r, struct rctx *c,
		       int read_data, void (*progress)(void *, uint64_t, uint64_t),
		       void *parg)
{
	sqlite3 *db = index_db(st->ix);
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(db, "SELECT p.id, p.name, p.size FROM pack p JOIN remote_pack rp"
			       " ON rp.name = p.name WHERE rp.remote = ?1 AND p.state = 1"
			       " AND length(p.name) = 16", -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(q, 1, c->cfg->id);
	uint64_t total = 0, done = 0;
	if (read_data)
		for (size_t i = 0; i < c->n; i++)
			if (!strncmp(c->objs[i].key, "data/", 5))
				total += c->objs[i].size;
	int err = 0;
	while (!err && sqlite3_step(q) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(q, 0);
		uint8_t name[PACK_NAME_LEN];
		memcpy(name, sqlite3_column_blob(q, 1), PACK_NAME_LEN);
		uint64_t size = sqlite3_column_int64(q, 2);
		char key[128];
		repo_pack_key(name, key, sizeof(key));
		c->res->packs++;
		const struct obj *o = find(c, key);
		if (!o) {
			rproblem(c, "pack %s is missing", key);
		} else if (o->size != size) {
			rproblem(c, "pack %s is %llu bytes, the index says %llu (truncated or another object)",
				 key, (unsigned long long)o->size, (unsigned long long)size);
		} else if (read_data) {
			uint8_t *buf = NULL;
			size_t len = 0;
			int r2 = remote_get(r, key, 0, 0, &buf, &len);
			if (!r2)
				r2 = pack_verify_bytes(&st->keys, st->dir, name, buf, len);
			free(buf);
			c->res->bytes_read += len;
			done += size;
			if (progress)
				progress(parg, done, total);
			if (r2 == -EBADMSG)
				rproblem(c, "pack %s fails verification (damaged or tampered with)", key);
			else if (r2 == -ENOENT)
				rproblem(c, "pack %s is missing", key);
			else if (r2)
				err = r2;	/* the remote failed, not the pack */
			if (!r2 || err)
				continue;
		} else {
			continue;
		}
		if (c->o->affected)
			c->o->affected(st->ix, id, 0, 20, affects_line, c, NULL);
	}
	sqlite3_finalize(q);
	if (!err && sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM pack p WHERE p.state = 1 AND NOT EXISTS"
				       " (SELECT 1 FROM remote_pack rp WHERE rp.remote = ?1"
				       " AND rp.name = p.name)", -1, &q, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(q, 1, c->cfg->id);
		if (sqlite3_step(q) == SQLITE_ROW)
			c->res->not_pushed = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
	}
	return err;
}

/* meta/1 .. meta/(next_meta - 1), nothing after, each authenticating. */
static int check_meta(struct store *st, struct remote *r, struct rctx *c,
		      int read_data)
{
	uint64_t last = c->cfg->next_meta ? c->cfg->next_meta - 1 : 0;
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
	for (uint64_t k = 1; k <= last && !err; k++) {
		char key[64];
		repo_meta_key(k, key, sizeof(key));
		c->res->metas++;
		if (!find(c, key)) {
			rproblem(c, "metadata %s is missing: the chain is broken (deleted, or the remote was rolled back); a recovery would stop before it",
				 key);
			continue;
		}
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
	for (size_t i = 0; i < c.n; i++)
		free(c.objs[i].key);
	free(c.objs);
	return err;
}
