/*
 * check.c - `tresor check`: is the store what its index says it is?
 *
 * Checks, in order: every pack named by the index exists and (if finished)
 * its authenticated footer lists exactly the chunks the index places in it;
 * chunk reference counts equal the extent rows naming them; every extent
 * lies inside its chunk; live directory entries name live inodes and live
 * link counts match the entries; optionally every chunk's bytes
 * authenticate.  Open packs held by a running daemon are skipped.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sqlite3.h>

#include "check.h"
#include "damage.h"
#include "ns_check.h"
#include "../chunker/util.h"

struct ctx {
	struct store *st;
	const struct check_opts *o;
	check_report_fn report;
	void *arg;
	struct check_result *res;
	int lazy;		/* a lazy recovery: missing packs are not lost */
	int64_t *bad_packs;	/* reported already: their chunks not again */
	size_t nbad, capbad;
	uint64_t data_total;	/* bytes --read-data expects to read */
};

static void affects_line(void *arg, const char *line)
{
	struct ctx *c = arg;
	char buf[8200];
	snprintf(buf, sizeof(buf), "  affects %s", line);
	c->report(c->arg, buf);
}

/* Remember a pack whose chunks --read-data must not read again. */
static void mark_bad(struct ctx *c, int64_t pack)
{
	if (c->nbad == c->capbad) {
		size_t nc = c->capbad ? c->capbad * 2 : 16;
		void *p = realloc(c->bad_packs, nc * sizeof(*c->bad_packs));
		if (!p)
			return;
		c->bad_packs = p;
		c->capbad = nc;
	}
	c->bad_packs[c->nbad++] = pack;
}

/* List the files (and their snapshots) whose data a bad pack (chunk 0)
 * or chunk holds, under the problem line just reported. */
static void affects(struct ctx *c, int64_t pack, int64_t chunk)
{
	size_t files = 0;
	damage_affected(c->st->ix, pack, chunk, c->o->max_files ? c->o->max_files : 20,
			affects_line, c, &files);
	c->res->files_affected += files;
	if (!chunk)
		mark_bad(c, pack);
}

static int pack_is_bad(const struct ctx *c, int64_t pack)
{
	for (size_t i = 0; i < c->nbad; i++)
		if (c->bad_packs[i] == pack)
			return 1;
	return 0;
}

static void problem(struct ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void problem(struct ctx *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	c->res->problems++;
	c->report(c->arg, line);
}

static int entry_cmp(const void *a, const void *b)
{
	const struct pack_entry *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Compare one pack's footer with the index's chunk rows for it. */
static int check_pack(struct ctx *c, int64_t pack, int state)
{
	uint8_t name[PACK_NAME_LEN];
	char hex[PACK_NAME_LEN * 2 + 1];
	int err = catalog_pack_name(c->st->ix, pack, name);
	if (err)
		return err;
	hex_encode(name, PACK_NAME_LEN, hex);
	char *path = store_pack_path(c->st, name);
	if (!path)
		return -ENOMEM;
	struct chunk_loc *cs = NULL;
	size_t nc = 0;
	err = catalog_pack_chunks(c->st->ix, pack, &cs, &nc);
	if (err)
		goto out;
	int fin = pack_is_finished(path);
	if (fin == -ENOENT && c->lazy && state == PACK_FINISHED) {
		c->res->not_local++;	/* on the remote; fetched when read */
		mark_bad(c, pack);	/* not read by --read-data either */
		goto out;
	}
	if (fin < 0) {
		problem(c, "pack %s: %s (%s)", hex, strerror(-fin),
			fin == -ENOENT ? "missing" : "unreadable");
		affects(c, pack, 0);
		goto out;
	}
	if (state == PACK_FINISHED && !fin) {
		problem(c, "pack %s: has no valid footer although the index says it is finished (truncated or damaged)",
			hex);
		affects(c, pack, 0);
		goto out;
	}
	if (state == PACK_OPEN || !fin) {
		/* Being written, or an orphan the next mount finishes: its
		 * records must at least lie inside the file. */
		struct stat sb;
		if (stat(path, &sb) == 0)
			for (size_t i = 0; i < nc; i++)
				if (cs[i].e.off + cs[i].e.slen > (uint64_t)sb.st_size)
					problem(c, "pack %s: chunk at offset %llu lies past the end of the file",
						hex, (unsigned long long)cs[i].e.off);
		goto out;
	}
	struct pack_entry *es = NULL;
	size_t ne = 0;
	int r = pack_read_footer(path, name, &c->st->keys, &es, &ne);
	if (r) {
		problem(c, "pack %s: footer %s", hex,
			r == -EBADMSG ? "fails authentication (damaged or swapped)"
				      : strerror(-r));
		affects(c, pack, 0);
		goto out;
	}
	qsort(es, ne, sizeof(*es), entry_cmp);
	for (size_t i = 0; i < nc; i++) {
		struct pack_entry key = { .off = cs[i].e.off };
		struct pack_entry *f = bsearch(&key, es, ne, sizeof(*es), entry_cmp);
		if (!f || memcmp(f->id, cs[i].e.id, CHUNK_ID_LEN) ||
		    f->slen != cs[i].e.slen || f->rlen != cs[i].e.rlen ||
		    f->flags != cs[i].e.flags) {
			problem(c, "pack %s: chunk at offset %llu is not what the index says",
				hex, (unsigned long long)cs[i].e.off);
			affects(c, 0, cs[i].rowid);
		}
	}
	free(es);
out:
	c->res->packs++;
	free(cs);
	free(path);
	return err;
}

static int count(struct ctx *c, const char *sql, uint64_t *out)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(index_db(c->st->ix), sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -EIO;
}

static void row_problem(void *arg, const char *line)
{
	problem(arg, "%s", line);
}

static void pack_problem(void *arg, int64_t chunk, int64_t pack, uint64_t off)
{
	problem(arg, "chunk %lld: names pack %lld (offset %lld), which the index does not have",
		(long long)chunk, (long long)pack, (long long)off);
}

static int name_problem(void *arg, int64_t vol, uint64_t parent,
			int64_t birth, const char *name)
{
	(void)name;
	problem(arg, "volume %lld directory %lld: an entry (born in epoch %lld) has an unsafe name ('', '.', '..', '/' or NUL in it)",
		(long long)vol, (long long)parent, (long long)birth);
	return 0;
}

/* The rows' own rules: the trees' (ns_check.h), then chunks naming no
 * pack, then unsafe names. */
static int check_rows(struct ctx *c)
{
	struct index *ix = c->st->ix;
	int err = ns_check_rows(ix, row_problem, c);
	if (!err)
		err = catalog_chunks_packless(ix, pack_problem, c);
	if (!err)
		err = ns_unsafe_names(ix, name_problem, c);
	if (!err)
		err = ns_check_counts(ix, &c->res->chunks, &c->res->extents,
				      &c->res->inodes);
	return err;
}

/* Read and authenticate one chunk; a failure is a problem. */
static int read_one(struct ctx *c, int64_t id, size_t rlen, uint8_t **buf)
{
	struct chunk_ref ref;
	int err = store_chunk_ref(c->st, id, &ref);
	if (err)
		return err;
	uint8_t *nb = realloc(*buf, rlen ? rlen : 1);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	int r = store_read_chunk(c->st, &ref, 0, nb, rlen);
	if (r) {
		char hex[PACK_NAME_LEN * 2 + 1];
		hex_encode(ref.pack, PACK_NAME_LEN, hex);
		problem(c, "pack %s: chunk %lld at offset %llu: %s", hex,
			(long long)id, (unsigned long long)ref.e.off,
			r == -EBADMSG ? "fails authentication" : strerror(-r));
		affects(c, 0, id);
	}
	c->res->bytes_read += rlen;
	c->res->chunks_read++;
	if (c->o->progress)
		c->o->progress(c->o->progress_arg, c->res->bytes_read, c->data_total);
	return 0;
}

/* Read chunks with id > after (up to limit of them, 0: all); *last gets
 * the last id read. */
static int read_range(struct ctx *c, int64_t after, int64_t upto,
		      uint64_t limit, int64_t *last, uint64_t *nread)
{
	sqlite3_stmt *st;
	sqlite3 *db = index_db(c->st->ix);
	if (sqlite3_prepare_v2(db, "SELECT id, rlen, pack FROM chunk WHERE id > ?1"
			       " AND id <= ?2 ORDER BY id", -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, upto);
	int err = 0;
	uint8_t *buf = NULL;
	while (!err && (!limit || *nread < limit) && sqlite3_step(st) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		*last = id;
		(*nread)++;
		if (pack_is_bad(c, sqlite3_column_int64(st, 2)))
			continue;	/* reported (or not local) already */
		err = read_one(c, id, sqlite3_column_int64(st, 1), &buf);
	}
	free(buf);
	sqlite3_finalize(st);
	return err;
}

/* Read and authenticate every chunk, or a rotating share of them. */
static int check_data(struct ctx *c)
{
	int64_t last = 0;
	uint64_t nread = 0, bytes = 0;
	if (!count(c, "SELECT COALESCE(SUM(rlen), 0) FROM chunk", &bytes))
		c->data_total = c->o->read_pct && c->o->read_pct < 100
				? bytes / 100 * c->o->read_pct : bytes;
	if (!c->o->read_pct || c->o->read_pct >= 100)
		return read_range(c, 0, INT64_MAX, 0, &last, &nread);
	/* A share: from the cursor on, wrapping round to the start. */
	uint64_t total = 0;
	int64_t cursor = 0;
	int err = count(c, "SELECT COUNT(*) FROM chunk", &total);
	if (err)
		return err;
	index_meta_get(c->st->ix, "check_cursor", &cursor);
	uint64_t want = (total * c->o->read_pct + 99) / 100;
	last = cursor;
	err = read_range(c, cursor, INT64_MAX, want, &last, &nread);
	if (!err && nread < want) {
		last = 0;
		err = read_range(c, 0, cursor, want, &last, &nread);
	}
	if (!err)
		err = index_begin(c->st->ix);
	if (!err)
		err = index_meta_set(c->st->ix, "check_cursor", last);
	if (!err)
		err = index_commit(c->st->ix);
	return err;
}

int store_check(struct store *st, const struct check_opts *o,
		check_report_fn report, void *arg, struct check_result *res)
{
	memset(res, 0, sizeof(*res));
	struct ctx c = { .st = st, .o = o, .report = report, .arg = arg, .res = res };
	int64_t lazy = 0;
	index_meta_get(st->ix, "lazy", &lazy);
	c.lazy = lazy == 1;
	int err = 0;
	for (int state = PACK_OPEN; state <= PACK_FINISHED && !err; state++) {
		int64_t *ids;
		size_t n;
		err = catalog_pack_list(st->ix, state, &ids, &n);
		for (size_t i = 0; i < n && !err; i++)
			err = check_pack(&c, ids[i], state);
		free(ids);
	}
	if (!err)
		err = check_rows(&c);
	if (!err && o->read_data)
		err = check_data(&c);
	free(c.bad_packs);
	return err;
}
