/*
 * changelog.c - index deltas for replication (see changelog.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

#include "buf.h"
#include "changelog.h"
#include "store.h"
#include "util.h"

#define MAX_COLS 16
/* from_seq of a full image: no changelog range starts there. */
#define DELTA_FULL_FROM UINT64_MAX

/* The replicated tables, their ids in deltas, and their key columns. */
static const struct table {
	const char *name;
	const char *key[4];
} tables[] = {
	{ "meta", { "key" } },
	{ "volume", { "id" } },
	{ "snapshot", { "id" } },
	{ "inode", { "vol", "ino", "birth" } },
	{ "dentry", { "vol", "parent", "name", "birth" } },
	{ "extent", { "vol", "ino", "off", "birth" } },
	{ "xattr", { "vol", "ino", "name", "birth" } },
	{ "chunk", { "id" } },
	{ "pack", { "id" } },
	{ "orphan", { "vol", "ino" } },
};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

/* The first n column names of table, comma-separated, into out.  -EINVAL
 * if it has fewer. */
static int column_names(sqlite3 *db, const char *table, int n, char *out,
			size_t size)
{
	char sql[128];
	sqlite3_stmt *st;
	snprintf(sql, sizeof(sql), "SELECT * FROM %s LIMIT 0", table);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	int err = sqlite3_column_count(st) < n ? -EINVAL : 0;
	size_t l = 0;
	out[0] = 0;
	for (int i = 0; i < n && !err; i++) {
		int w = snprintf(out + l, size - l, "%s%s", i ? "," : "",
				 sqlite3_column_name(st, i));
		if (w < 0 || (size_t)w >= size - l)
			err = -ENAMETOOLONG;
		else
			l += w;
	}
	sqlite3_finalize(st);
	return err;
}

static int nkeys(const struct table *t)
{
	int n = 0;
	while (n < 4 && t->key[n])
		n++;
	return n;
}

/* Run one statement built with printf. */
static int execf(sqlite3 *db, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int execf(sqlite3 *db, const char *fmt, ...)
{
	char sql[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		tlog(LOG_ERR, "changelog: %s: %s", sql, msg ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

int changelog_enable(struct index *ix)
{
	sqlite3 *db = index_db(ix);
	int err = index_ensure_changelog_table(ix);
	for (size_t i = 0; i < NTABLES && !err; i++) {
		const struct table *t = &tables[i];
		char newk[256] = "", oldk[256] = "";
		for (int k = 0; k < nkeys(t); k++) {
			size_t l = strlen(newk);
			snprintf(newk + l, sizeof(newk) - l, "%sNEW.%s", k ? "," : "", t->key[k]);
			l = strlen(oldk);
			snprintf(oldk + l, sizeof(oldk) - l, "%sOLD.%s", k ? "," : "", t->key[k]);
		}
		static const char *ev[] = { "INSERT", "UPDATE", "DELETE" };
		for (int e = 0; e < 3 && !err; e++)
			err = execf(db,
				"CREATE TRIGGER IF NOT EXISTS changelog_%s_%c AFTER %s ON %s"
				" BEGIN INSERT INTO changelog(tbl, pk) VALUES (%zu, json_array(%s)); END",
				t->name, ev[e][0], ev[e], t->name, i, e == 2 ? oldk : newk);
	}
	return err;
}

int changelog_last(struct index *ix, uint64_t *seq)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(index_db(ix), "SELECT COALESCE(MAX(seq), 0) FROM changelog",
			       -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*seq = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -EIO;
}

int changelog_trim(struct index *ix, uint64_t seq)
{
	return execf(index_db(ix), "DELETE FROM changelog WHERE seq <= %llu",
		     (unsigned long long)seq);
}

/* A growable output buffer. */
struct out {
	uint8_t *b;
	size_t len, cap;
	int err;
};

static void put(struct out *o, const void *p, size_t n)
{
	if (o->err || n == 0)
		return;
	uint8_t *nb = buf_grow(o->b, &o->cap, o->len + n, 1);
	if (!nb) {
		o->err = -ENOMEM;
		return;
	}
	o->b = nb;
	memcpy(o->b + o->len, p, n);
	o->len += n;
}

static void put_u8(struct out *o, uint8_t v)
{
	put(o, &v, 1);
}

static void put_u32(struct out *o, uint32_t v)
{
	uint8_t b[4];
	put_le32(b, v);
	put(o, b, 4);
}

static void put_u64(struct out *o, uint64_t v)
{
	uint8_t b[8];
	put_le64(b, v);
	put(o, b, 8);
}

/* Append column i of the current row of st as a typed value. */
static void put_value(struct out *o, sqlite3_stmt *st, int i)
{
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		put_u8(o, 1);
		put_u64(o, (uint64_t)sqlite3_column_int64(st, i));
		break;
	case SQLITE_TEXT:
		put_u8(o, 2);
		put_u32(o, sqlite3_column_bytes(st, i));
		put(o, sqlite3_column_text(st, i), sqlite3_column_bytes(st, i));
		break;
	case SQLITE_BLOB:
		put_u8(o, 3);
		put_u32(o, sqlite3_column_bytes(st, i));
		put(o, sqlite3_column_blob(st, i), sqlite3_column_bytes(st, i));
		break;
	default:
		put_u8(o, 4);
	}
}

/* Emit the record for one noted key: the row now, or its deletion. */
static int export_key(sqlite3 *db, struct out *o, int tbl, const char *pk,
		      uint32_t *count)
{
	const struct table *t = &tables[tbl];
	int nk = nkeys(t);
	char sql[512];
	int l = snprintf(sql, sizeof(sql), "SELECT * FROM %s WHERE ", t->name);
	for (int k = 0; k < nk; k++)
		l += snprintf(sql + l, sizeof(sql) - l, "%s%s = json_extract(?1, '$[%d]')",
			      k ? " AND " : "", t->key[k], k);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, pk, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		int ncol = sqlite3_column_count(st);
		put_u8(o, tbl);
		put_u8(o, 1);
		put_u8(o, ncol);
		for (int i = 0; i < ncol; i++)
			put_value(o, st, i);
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW) {
		(*count)++;
		return o->err;
	}
	if (rc != SQLITE_DONE)
		return -EIO;
	/* Gone: a deletion carrying the key, typed as json_each gives it. */
	if (sqlite3_prepare_v2(db, "SELECT value FROM json_each(?1) ORDER BY key",
			       -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, pk, -1, SQLITE_STATIC);
	put_u8(o, tbl);
	put_u8(o, 2);
	put_u8(o, nk);
	int n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < nk) {
		put_value(o, st, 0);
		n++;
	}
	sqlite3_finalize(st);
	if (n != nk)
		return -EIO;
	(*count)++;
	return o->err;
}

int changelog_export(struct index *ix, uint64_t from, uint64_t to,
		     uint8_t **buf, size_t *len)
{
	sqlite3 *db = index_db(ix);
	struct out o = { 0 };
	put(&o, "TRSDELT1", 8);
	put_u64(&o, from);
	put_u64(&o, to);
	size_t count_at = o.len;
	put_u32(&o, 0);
	uint32_t count = 0;
	sqlite3_stmt *st;
	/* One record per key, in the order of its last change. */
	if (sqlite3_prepare_v2(db,
		"SELECT tbl, pk FROM changelog WHERE seq > ?1 AND seq <= ?2"
		" GROUP BY tbl, pk ORDER BY MAX(seq)", -1, &st, NULL) != SQLITE_OK) {
		free(o.b);
		return -EIO;
	}
	sqlite3_bind_int64(st, 1, (int64_t)from);
	sqlite3_bind_int64(st, 2, (int64_t)to);
	int rc, err = 0;
	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int tbl = sqlite3_column_int(st, 0);
		if (tbl < 0 || (size_t)tbl >= NTABLES) {
			err = -EUCLEAN;
			break;
		}
		err = export_key(db, &o, tbl, (const char *)sqlite3_column_text(st, 1),
				 &count);
	}
	sqlite3_finalize(st);
	if (!err)
		err = o.err;
	if (err) {
		free(o.b);
		return err;
	}
	put_le32(o.b + count_at, count);
	*buf = o.b;
	*len = o.len;
	return 0;
}

/* A bounds-checked reader of a delta. */
struct in {
	const uint8_t *p, *end;
	int bad;
};

static const uint8_t *take(struct in *in, size_t n)
{
	if (in->bad || (size_t)(in->end - in->p) < n) {
		in->bad = 1;
		return NULL;
	}
	const uint8_t *r = in->p;
	in->p += n;
	return r;
}

static uint8_t take_u8(struct in *in)
{
	const uint8_t *b = take(in, 1);
	return b ? b[0] : 0;
}

static uint32_t take_u32(struct in *in)
{
	const uint8_t *b = take(in, 4);
	return b ? get_le32(b) : 0;
}

static uint64_t take_u64(struct in *in)
{
	const uint8_t *b = take(in, 8);
	return b ? get_le64(b) : 0;
}

/* A value as read: its type, and an int's value or a text's bytes. */
struct value {
	uint8_t type;
	int64_t i;
	const uint8_t *b;
	uint32_t n;
};

/* Read one value and bind it at index i of st (st may be NULL: check
 * only); what it was into v (may be NULL). */
static void bind_value(struct in *in, sqlite3_stmt *st, int i, struct value *v)
{
	uint8_t type = take_u8(in);
	uint32_t n;
	const uint8_t *b;
	if (v)
		*v = (struct value){ .type = type };
	switch (type) {
	case 1: {
		uint64_t x = take_u64(in);
		if (st)
			sqlite3_bind_int64(st, i, (int64_t)x);
		if (v)
			v->i = (int64_t)x;
		break;
	}
	case 2:
	case 3:
		n = take_u32(in);
		b = take(in, n);
		if (v) {
			v->b = b;
			v->n = n;
		}
		if (st && b) {
			if (type == 2)
				sqlite3_bind_text(st, i, (const char *)b, n, SQLITE_TRANSIENT);
			else
				sqlite3_bind_blob(st, i, b, n, SQLITE_TRANSIENT);
		}
		break;
	case 4:
		if (st)
			sqlite3_bind_null(st, i);
		break;
	default:
		in->bad = 1;
	}
}

/* Walk the records; with apply 0 only validate (ix may be NULL then).
 * format: the store format the delta's meta row format_version gives
 * (0: it has none). */
static int walk(struct index *ix, const uint8_t *buf, size_t len, int apply,
		uint64_t *from, uint64_t *to, int64_t *format)
{
	struct in in = { buf, buf + len, 0 };
	const uint8_t *magic = take(&in, 8);
	if (!magic || memcmp(magic, "TRSDELT1", 8))
		return -EBADMSG;
	uint64_t f = take_u64(&in), t = take_u64(&in);
	uint32_t count = take_u32(&in);
	sqlite3 *db = apply ? index_db(ix) : NULL;
	if (format)
		*format = 0;
	/* A full image (changelog_export_full) lists no deletions: rows an
	 * earlier delta brought must not outlive it.  That happens when the
	 * first push died after writing delta 1 and the next wrote a full
	 * image again as delta 2 (found by the crash torture). */
	if (apply && f == DELTA_FULL_FROM && !in.bad) {
		for (size_t i = 0; i < NTABLES; i++) {
			if (!strcmp(tables[i].name, "meta"))
				continue;	/* upserted below; keys never go */
			if (execf(db, "DELETE FROM %s", tables[i].name))
				return -EIO;
		}
	}
	for (uint32_t r = 0; r < count && !in.bad; r++) {
		uint8_t tbl = take_u8(&in), op = take_u8(&in), nv = take_u8(&in);
		if (tbl >= NTABLES || (op != 1 && op != 2) || nv == 0 || nv > MAX_COLS ||
		    (op == 2 && nv != nkeys(&tables[tbl]))) {
			in.bad = 1;
			break;
		}
		const struct table *tb = &tables[tbl];
		sqlite3_stmt *st = NULL;
		if (apply) {
			char sql[512];
			int l;
			if (op == 1) {
				/* By name: a row of an older format (FORMAT.md §2)
				 * lacks the columns added since, which take their
				 * defaults. */
				char cols[256];
				if (column_names(db, tb->name, nv, cols, sizeof(cols)))
					return -EBADMSG;	/* more columns than ours */
				l = snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO %s(%s) VALUES (",
					     tb->name, cols);
				for (int i = 0; i < nv; i++)
					l += snprintf(sql + l, sizeof(sql) - l, "%s?", i ? "," : "");
				snprintf(sql + l, sizeof(sql) - l, ")");
			} else {
				l = snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE ", tb->name);
				for (int k = 0; k < nv; k++)
					l += snprintf(sql + l, sizeof(sql) - l, "%s%s = ?",
						      k ? " AND " : "", tb->key[k]);
			}
			if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
				return -EBADMSG;	/* wrong column count: not our schema */
		}
		struct value k = { 0 }, v = { 0 };
		for (int i = 0; i < nv; i++)
			bind_value(&in, st, i + 1, i == 0 ? &k : i == 1 ? &v : NULL);
		/* The writer's store format (FORMAT.md §2), for the caller to
		 * refuse a newer one before anything is applied. */
		if (format && tbl == 0 && op == 1 && nv >= 2 && k.type == 2 &&
		    k.n == strlen("format_version") && k.b &&
		    !memcmp(k.b, "format_version", k.n) && v.type == 1)
			*format = v.i;
		if (st) {
			int rc = in.bad ? SQLITE_DONE : sqlite3_step(st);
			sqlite3_finalize(st);
			if (rc != SQLITE_DONE)
				return -EIO;
		}
	}
	if (in.bad || in.p != in.end)
		return -EBADMSG;
	if (from)
		*from = f;
	if (to)
		*to = t;
	return 0;
}

int changelog_format(const uint8_t *buf, size_t len, int64_t *format)
{
	return walk(NULL, buf, len, 0, NULL, NULL, format);
}

int changelog_apply(struct index *ix, const uint8_t *buf, size_t len,
		    uint64_t *from, uint64_t *to)
{
	/* Validate everything first, so a bad delta applies nothing, nor
	 * one of a newer store format: its rows may mean what this code
	 * does not know (FORMAT.md §2). */
	int64_t format;
	int err = walk(ix, buf, len, 0, NULL, NULL, &format);
	if (!err && format > STORE_FORMAT_VERSION)
		err = -EPROTONOSUPPORT;
	return err ? err : walk(ix, buf, len, 1, from, to, NULL);
}

int changelog_export_full(struct index *ix, uint64_t to, uint8_t **buf,
			  size_t *len)
{
	sqlite3 *db = index_db(ix);
	struct out o = { 0 };
	put(&o, "TRSDELT1", 8);
	put_u64(&o, DELTA_FULL_FROM);
	put_u64(&o, to);
	size_t count_at = o.len;
	put_u32(&o, 0);
	uint32_t count = 0;
	int err = 0;
	for (size_t t = 0; t < NTABLES && !err; t++) {
		char sql[128];
		snprintf(sql, sizeof(sql), "SELECT * FROM %s", tables[t].name);
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
			err = -EIO;
			break;
		}
		while (sqlite3_step(st) == SQLITE_ROW) {
			int ncol = sqlite3_column_count(st);
			put_u8(&o, t);
			put_u8(&o, 1);
			put_u8(&o, ncol);
			for (int i = 0; i < ncol; i++)
				put_value(&o, st, i);
			count++;
		}
		sqlite3_finalize(st);
	}
	if (!err)
		err = o.err;
	if (err) {
		free(o.b);
		return err;
	}
	put_le32(o.b + count_at, count);
	*buf = o.b;
	*len = o.len;
	return 0;
}
