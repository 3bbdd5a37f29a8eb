/*
 * check.c - `tresor check`: is the store what its index says it is?
 *
 * The packs and, optionally, every chunk's bytes are chunker/verify.h's;
 * this adds which files a bad pack or chunk takes with it (damage.h) and
 * the namespace's checks: chunk reference counts equal the extent rows
 * naming them, every extent lies inside its chunk, live directory entries
 * name live inodes and live link counts match the entries.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "damage.h"
#include "ns_check.h"
#include "../chunker/util.h"
#include "../chunker/verify.h"

struct ctx {
	struct store *st;
	const struct check_opts *o;
	check_report_fn report;
	void *arg;
	struct check_result *res;
};

static void affects_line(void *arg, const char *line)
{
	struct ctx *c = arg;
	char buf[8200];
	snprintf(buf, sizeof(buf), "  affects %s", line);
	c->report(c->arg, buf);
}

/* A problem line, then the files (and their snapshots) whose data its bad
 * pack or chunk (verify.h) holds. */
static void data_problem(void *arg, const char *line, int64_t pack,
			   int64_t chunk)
{
	struct ctx *c = arg;
	c->res->problems++;
	c->report(c->arg, line);
	if (!pack && !chunk)
		return;
	size_t files = 0;
	damage_affected(c->st->ix, pack, chunk, c->o->max_files ? c->o->max_files : 20,
			affects_line, c, &files);
	c->res->files_affected += files;
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
	data_problem(c, line, 0, 0);
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
	uint64_t rlen;
	if (!err)
		err = catalog_chunk_totals(ix, &c->res->chunks, &rlen);
	if (!err)
		err = ns_check_counts(ix, &c->res->extents, &c->res->inodes);
	return err;
}

int store_check(struct store *st, const struct check_opts *o,
		check_report_fn report, void *arg, struct check_result *res)
{
	memset(res, 0, sizeof(*res));
	struct ctx c = { .st = st, .o = o, .report = report, .arg = arg, .res = res };
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct verify v = { .st = st, .problem = data_problem, .arg = &c,
			    .progress = o->progress, .progress_arg = o->progress_arg,
			    .now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec };
	int err = verify_packs(&v);
	if (!err)
		err = check_rows(&c);
	if (!err && o->read_data && o->by_age)
		err = verify_due(&v, o->max_age);
	if (!err && o->read_data && (!o->by_age || o->read_pct))
		err = verify_data(&v, o->read_pct);
	if (!err && o->read_data)
		err = verify_note(&v);
	res->packs_due = v.due;
	res->packs_due_read = v.due_read;
	res->packs_never = v.never;
	res->oldest_verified = v.oldest;
	res->packs = v.packs;
	res->not_local = v.not_local;
	res->bytes_read = v.bytes_read;
	res->chunks_read = v.chunks_read;
	verify_free(&v);
	return err;
}
