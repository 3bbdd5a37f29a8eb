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

/* A finished pack's tally of this run. */
struct verify_pack {
	int64_t pack;
	uint64_t chunks, rlen;	/* its chunk rows, their plain bytes */
	uint64_t ok;		/* of them read and authenticated */
	int bad;		/* a chunk of it failed */
	int done;		/* read whole by verify_due */
};

static int id_cmp(const void *a, const void *b)
{
	const int64_t *x = a, *y = b;
	return *x < *y ? -1 : *x > *y;
}

/* Remember a pack whose chunks verify_data must not read; kept sorted
 * (verify_packs goes by id, so it is almost always an append). */
static void skip_pack(struct verify *v, int64_t pack)
{
	int64_t *p = buf_grow(v->skip, &v->capskip, v->nskip + 1, sizeof(*p));
	if (!p)
		return;	/* its chunks are read and reported once more */
	v->skip = p;
	size_t i = v->nskip;
	while (i && p[i - 1] > pack)
		i--;
	if (i && p[i - 1] == pack)
		return;
	memmove(p + i + 1, p + i, (v->nskip - i) * sizeof(*p));
	p[i] = pack;
	v->nskip++;
}

static int is_skipped(const struct verify *v, int64_t pack)
{
	return v->nskip && bsearch(&pack, v->skip, v->nskip, sizeof(*v->skip), id_cmp);
}

/* This run's tally of finished pack id, or NULL (an open pack). */
static struct verify_pack *tally_of(struct verify *v, int64_t pack)
{
	return v->nvp ? bsearch(&pack, v->vp, v->nvp, sizeof(*v->vp), id_cmp) : NULL;
}

/* Load the finished packs' tallies, once. */
static int tally_load(struct verify *v)
{
	if (v->vp)
		return 0;
	struct catalog_pack_count *pc;
	size_t n;
	int err = catalog_pack_counts(v->st->ix, &pc, &n);
	if (err)
		return err;
	v->vp = calloc(n ? n : 1, sizeof(*v->vp));
	if (!v->vp) {
		free(pc);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		v->vp[i] = (struct verify_pack){ .pack = pc[i].pack,
			.chunks = pc[i].chunks, .rlen = pc[i].rlen };
	v->nvp = n;
	free(pc);
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
		    f->flags != cs[i].e.flags) {
			struct verify_pack *t = tally_of(v, pack);
			if (t)
				t->bad = 1;
			problem(v, 0, cs[i].rowid,
				"pack %s: chunk at offset %llu is not what the index says",
				hex, (unsigned long long)cs[i].e.off);
		}
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
	int err = tally_load(v);
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

/* Read and authenticate one chunk of pack; a failure is a problem. */
static int read_chunk(struct reader *r, int64_t id, uint64_t rlen, int64_t pack)
{
	struct verify *v = r->v;
	struct chunk_ref ref;
	int err = store_chunk_ref(v->st, id, &ref);
	if (err)
		return err;
	uint8_t *nb = buf_grow(r->buf, &r->cap, rlen ? rlen : 1, 1);
	if (!nb)
		return -ENOMEM;
	r->buf = nb;
	int rc = store_read_chunk(v->st, &ref, 0, nb, rlen);
	struct verify_pack *t = tally_of(v, pack);
	if (rc) {
		char hex[PACK_NAME_LEN * 2 + 1];
		hex_encode(ref.pack, PACK_NAME_LEN, hex);
		problem(v, 0, id, "pack %s: chunk %lld at offset %llu: %s", hex,
			(long long)id, (unsigned long long)ref.e.off,
			rc == -EBADMSG ? "fails authentication" : strerror(-rc));
		if (t)
			t->bad = 1;
	} else if (t) {
		t->ok++;
	}
	v->bytes_read += rlen;
	v->chunks_read++;
	if (v->progress)
		v->progress(v->progress_arg, v->bytes_read, v->data_total);
	return 0;
}

/* verify_data's step: the next chunk by id, unless its pack is reported
 * (or not here) already or verify_due read it. */
static int read_one(void *arg, int64_t id, uint64_t rlen, int64_t pack)
{
	struct reader *r = arg;
	struct verify *v = r->v;
	r->last = id;
	r->nread++;
	int more = !r->limit || r->nread < r->limit ? 0 : 1;
	struct verify_pack *t = tally_of(v, pack);
	if (is_skipped(v, pack) || (t && t->done))
		return more;
	int err = read_chunk(r, id, rlen, pack);
	return err ? err : more;
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
	int err = tally_load(v);
	if (err)
		return err;
	uint64_t total = 0, bytes = 0;
	int terr = catalog_chunk_totals(v->st->ix, &total, &bytes);
	int all = !pct || pct >= 100;
	if (!terr)
		v->data_total = v->bytes_read + (all ? bytes : bytes / 100 * pct);
	struct reader r = { .v = v };
	if (all) {
		err = read_range(&r, 0, INT64_MAX);
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
	err = read_range(&r, cursor, INT64_MAX);
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

int verify_due(struct verify *v, int64_t max_age)
{
	int err = tally_load(v);
	int64_t *ids = NULL;
	size_t n = 0;
	if (!err)
		err = catalog_packs_due(v->st->ix, v->now - max_age, &ids, &n);
	if (err)
		return err;
	v->due = n;
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		struct verify_pack *t = tally_of(v, ids[i]);
		if (t && !is_skipped(v, ids[i]))
			total += t->rlen;
	}
	v->data_total = v->bytes_read + total;
	struct reader r = { .v = v };
	for (size_t i = 0; i < n && !err; i++) {
		struct verify_pack *t = tally_of(v, ids[i]);
		if (!t || is_skipped(v, ids[i]))
			continue;	/* reported bad, or not here */
		struct chunk_loc *cs = NULL;
		size_t nc = 0;
		/* By offset: the file is read front to back. */
		err = catalog_pack_chunks(v->st->ix, ids[i], &cs, &nc);
		for (size_t k = 0; k < nc && !err; k++)
			err = read_chunk(&r, cs[k].rowid, cs[k].e.rlen, ids[i]);
		free(cs);
		/* done even when the catalog changed under us: verify_note
		 * compares the count read with the count expected. */
		t->done = 1;
		v->due_read++;
	}
	free(r.buf);
	free(ids);
	return err;
}

int verify_note(struct verify *v)
{
	struct index *ix = v->st->ix;
	int err = index_begin(ix);
	for (size_t i = 0; i < v->nvp && !err; i++) {
		struct verify_pack *t = &v->vp[i];
		if (!t->bad && t->ok == t->chunks && !is_skipped(v, t->pack))
			err = catalog_pack_verified(ix, t->pack, v->now);
	}
	if (!err)
		err = catalog_verified_prune(ix);
	if (!err)
		err = index_commit(ix);
	else
		index_rollback(ix);
	if (!err)
		err = catalog_verified_oldest(ix, &v->never, &v->oldest);
	return err;
}

void verify_free(struct verify *v)
{
	free(v->vp);
	v->vp = NULL;
	v->nvp = 0;
	free(v->skip);
	v->skip = NULL;
	v->nskip = v->capskip = 0;
}
