/*
 * verify.c - packs against the catalog, chunks against their tags
 * (verify.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "util.h"
#include "verify.h"

/* Remember a pack whose chunks verify_data must not read. */
static void skip_pack(struct verify *v, int64_t pack)
{
	int64_t *p = buf_grow(v->skip, &v->capskip, v->nskip + 1, sizeof(*p));
	if (!p)
		return;	/* its chunks are read and reported once more */
	v->skip = p;
	p[v->nskip++] = pack;
}

static int is_skipped(const struct verify *v, int64_t pack)
{
	for (size_t i = 0; i < v->nskip; i++)
		if (v->skip[i] == pack)
			return 1;
	return 0;
}

static void problem(struct verify *v, int64_t pack, int64_t chunk,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void problem(struct verify *v, int64_t pack, int64_t chunk,
		    const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	v->problem(v->arg, line, pack, chunk);
	if (pack && !chunk)
		skip_pack(v, pack);
}

static int entry_cmp(const void *a, const void *b)
{
	const struct pack_entry *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* An open pack (being written, or an orphan the next mount finishes): its
 * records must at least lie inside the file. */
static void check_open(struct verify *v, const char *path, const char *hex,
		       const struct chunk_loc *cs, size_t nc)
{
	struct stat sb;
	if (stat(path, &sb))
		return;
	for (size_t i = 0; i < nc; i++)
		if (cs[i].e.off + cs[i].e.slen > (uint64_t)sb.st_size)
			problem(v, 0, 0, "pack %s: chunk at offset %llu lies past the end of the file",
				hex, (unsigned long long)cs[i].e.off);
}

/* The footer of a finished pack lists exactly the catalog's chunk rows. */
static void check_footer(struct verify *v, int64_t pack, const char *path,
			 const uint8_t name[PACK_NAME_LEN], const char *hex,
			 const struct chunk_loc *cs, size_t nc)
{
	struct pack_entry *es = NULL;
	size_t ne = 0;
	int r = pack_read_footer(path, name, &v->st->keys, &es, &ne);
	if (r) {
		problem(v, pack, 0, "pack %s: footer %s", hex,
			r == -EBADMSG ? "fails authentication (damaged or swapped)"
				      : strerror(-r));
		return;
	}
	qsort(es, ne, sizeof(*es), entry_cmp);
	for (size_t i = 0; i < nc; i++) {
		struct pack_entry key = { .off = cs[i].e.off };
		struct pack_entry *f = bsearch(&key, es, ne, sizeof(*es), entry_cmp);
		if (!f || memcmp(f->id, cs[i].e.id, CHUNK_ID_LEN) ||
		    f->slen != cs[i].e.slen || f->rlen != cs[i].e.rlen ||
		    f->flags != cs[i].e.flags)
			problem(v, 0, cs[i].rowid,
				"pack %s: chunk at offset %llu is not what the index says",
				hex, (unsigned long long)cs[i].e.off);
	}
	free(es);
}

static int check_pack(struct verify *v, int64_t pack, int state, int lazy)
{
	uint8_t name[PACK_NAME_LEN];
	char hex[PACK_NAME_LEN * 2 + 1];
	int err = catalog_pack_name(v->st->ix, pack, name);
	if (err)
		return err;
	hex_encode(name, PACK_NAME_LEN, hex);
	char *path = store_pack_path(v->st, name);
	if (!path)
		return -ENOMEM;
	struct chunk_loc *cs = NULL;
	size_t nc = 0;
	err = catalog_pack_chunks(v->st->ix, pack, &cs, &nc);
	if (err)
		goto out;
	int fin = pack_is_finished(path);
	if (fin == -ENOENT && lazy && state == PACK_FINISHED) {
		v->not_local++;		/* on the remote; fetched when read */
		skip_pack(v, pack);
	} else if (fin < 0)
		problem(v, pack, 0, "pack %s: %s (%s)", hex, strerror(-fin),
			fin == -ENOENT ? "missing" : "unreadable");
	else if (state == PACK_FINISHED && !fin)
		problem(v, pack, 0, "pack %s: has no valid footer although the index says it is finished (truncated or damaged)",
			hex);
	else if (state == PACK_OPEN || !fin)
		check_open(v, path, hex, cs, nc);
	else
		check_footer(v, pack, path, name, hex, cs, nc);
out:
	v->packs++;
	free(cs);
	free(path);
	return err;
}

int verify_packs(struct verify *v)
{
	int64_t lazy = 0;
	index_meta_get(v->st->ix, "lazy", &lazy);
	int err = 0;
	for (int state = PACK_OPEN; state <= PACK_FINISHED && !err; state++) {
		int64_t *ids;
		size_t n;
		err = catalog_pack_list(v->st->ix, state, &ids, &n);
		for (size_t i = 0; i < n && !err; i++)
			err = check_pack(v, ids[i], state, lazy == 1);
		free(ids);
	}
	return err;
}

/* One pass of verify_data over a range of chunk ids. */
struct reader {
	struct verify *v;
	uint64_t limit, nread;	/* rows to take (0: all), taken */
	int64_t last;		/* the last id taken */
	uint8_t *buf;
	size_t cap;
};

/* Read and authenticate one chunk; a failure is a problem. */
static int read_one(void *arg, int64_t id, uint64_t rlen, int64_t pack)
{
	struct reader *r = arg;
	struct verify *v = r->v;
	r->last = id;
	r->nread++;
	int more = !r->limit || r->nread < r->limit ? 0 : 1;
	if (is_skipped(v, pack))
		return more;	/* reported (or not here) already */
	struct chunk_ref ref;
	int err = store_chunk_ref(v->st, id, &ref);
	if (err)
		return err;
	uint8_t *nb = buf_grow(r->buf, &r->cap, rlen ? rlen : 1, 1);
	if (!nb)
		return -ENOMEM;
	r->buf = nb;
	int rc = store_read_chunk(v->st, &ref, 0, nb, rlen);
	if (rc) {
		char hex[PACK_NAME_LEN * 2 + 1];
		hex_encode(ref.pack, PACK_NAME_LEN, hex);
		problem(v, 0, id, "pack %s: chunk %lld at offset %llu: %s", hex,
			(long long)id, (unsigned long long)ref.e.off,
			rc == -EBADMSG ? "fails authentication" : strerror(-rc));
	}
	v->bytes_read += rlen;
	v->chunks_read++;
	if (v->progress)
		v->progress(v->progress_arg, v->bytes_read, v->data_total);
	return more;
}

/* Read the chunks with after < id <= upto, until r->limit are taken. */
static int read_range(struct reader *r, int64_t after, int64_t upto)
{
	if (r->limit && r->nread >= r->limit)
		return 0;
	int err = catalog_chunk_each(r->v->st->ix, after, upto, read_one, r);
	return err > 0 ? 0 : err;
}

int verify_data(struct verify *v, int pct)
{
	uint64_t total = 0, bytes = 0;
	int terr = catalog_chunk_totals(v->st->ix, &total, &bytes);
	int all = !pct || pct >= 100;
	if (!terr)
		v->data_total = all ? bytes : bytes / 100 * pct;
	struct reader r = { .v = v };
	if (all) {
		int err = read_range(&r, 0, INT64_MAX);
		free(r.buf);
		return err;
	}
	if (terr)
		return terr;
	/* A share: from the cursor on, wrapping round to the start. */
	int64_t cursor = 0;
	index_meta_get(v->st->ix, "check_cursor", &cursor);
	r.limit = (total * pct + 99) / 100;
	r.last = cursor;
	int err = read_range(&r, cursor, INT64_MAX);
	if (!err && r.nread < r.limit) {
		r.last = 0;
		err = read_range(&r, 0, cursor);
	}
	free(r.buf);
	if (!err)
		err = index_begin(v->st->ix);
	if (!err)
		err = index_meta_set(v->st->ix, "check_cursor", r.last);
	if (!err)
		err = index_commit(v->st->ix);
	return err;
}

void verify_free(struct verify *v)
{
	free(v->skip);
	v->skip = NULL;
	v->nskip = v->capskip = 0;
}
