/*
 * repo.c - the remote repository's layout shared by push and recovery
 * (repo.h): remotes configured in the index, object keys, sealed deltas.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>
#include <zstd.h>

#include "changelog.h"
#include "repo.h"
#include "util.h"

static const char *remote_schema =
	"CREATE TABLE IF NOT EXISTS remote(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
	"  url TEXT NOT NULL, endpoint TEXT, region TEXT, path_style INTEGER NOT NULL DEFAULT 0,"
	"  ca_file TEXT, credentials_file TEXT, ssh_key TEXT, known_hosts TEXT, netrc_file TEXT,"
	"  last_seq INTEGER NOT NULL DEFAULT 0, next_meta INTEGER NOT NULL DEFAULT 1,"
	"  last_push INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS remote_pack(remote INTEGER NOT NULL, name BLOB NOT NULL,"
	"  PRIMARY KEY(remote, name)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS remote_gone(remote INTEGER NOT NULL, name BLOB NOT NULL,"
	"  freed INTEGER NOT NULL, lock_until INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY(remote, name)) WITHOUT ROWID;";

/* Columns added after the first release of the replication tables: a store
 * made before them gets them (with their defaults) on first use. */
static const struct {
	const char *table, *column, *def;
} added_cols[] = {
	{ "remote", "grace_ns", "INTEGER NOT NULL DEFAULT 604800000000000" },
	{ "remote", "lock_mode", "INTEGER NOT NULL DEFAULT 0" },
	{ "remote", "lock_days", "INTEGER NOT NULL DEFAULT 0" },
	{ "remote", "meta_lock_until", "INTEGER NOT NULL DEFAULT 0" },
	{ "remote_pack", "lock_until", "INTEGER NOT NULL DEFAULT 0" },
};

static int has_column(sqlite3 *db, const char *table, const char *column)
{
	char sql[128];
	sqlite3_stmt *st;
	int found = 0;
	snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	while (sqlite3_step(st) == SQLITE_ROW)
		if (!strcmp((const char *)sqlite3_column_text(st, 1), column))
			found = 1;
	sqlite3_finalize(st);
	return found;
}

static int ensure_schema(struct index *ix)
{
	sqlite3 *db = index_db(ix);
	if (sqlite3_exec(db, remote_schema, NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	for (size_t i = 0; i < sizeof(added_cols) / sizeof(added_cols[0]); i++) {
		int h = has_column(db, added_cols[i].table, added_cols[i].column);
		if (h < 0)
			return h;
		if (h)
			continue;
		char sql[256];
		snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s",
			 added_cols[i].table, added_cols[i].column, added_cols[i].def);
		if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
			return -EIO;
	}
	return 0;
}

int64_t repo_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	const char *off = getenv("TRESOR_TEST_CLOCK_OFFSET");
	if (off && *off)
		now += strtoll(off, NULL, 10) * 1000000000LL;
	return now;
}

static const char *opt_col[] = { "endpoint", "region", "ca_file",
				 "credentials_file", "ssh_key", "known_hosts",
				 "netrc_file" };

int remote_cfg_add(struct index *ix, const struct remote_cfg *c)
{
	int err = ensure_schema(ix);
	if (err)
		return err;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(index_db(ix),
		"INSERT INTO remote(name, url, endpoint, region, path_style, ca_file,"
		" credentials_file, ssh_key, known_hosts, netrc_file, next_meta, grace_ns,"
		" lock_mode, lock_days)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
		-1, &st, NULL) != SQLITE_OK)
		return -EIO;
	const char *v[] = { c->opt.endpoint, c->opt.region, c->opt.ca_file,
			    c->opt.credentials_file, c->opt.ssh_key,
			    c->opt.known_hosts, c->opt.netrc_file };
	sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, c->url, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, v[0], -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, v[1], -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, c->opt.path_style);
	for (int i = 2; i < 7; i++)
		sqlite3_bind_text(st, 4 + i, v[i], -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 11, c->next_meta ? (int64_t)c->next_meta : 1);
	sqlite3_bind_int64(st, 12, c->grace_set ? c->grace_ns : REPO_DEFAULT_GRACE_NS);
	sqlite3_bind_int(st, 13, c->lock_days ? c->lock_mode : 0);
	sqlite3_bind_int(st, 14, c->lock_mode ? c->lock_days : 0);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_CONSTRAINT)
		return -EEXIST;
	if (rc != SQLITE_DONE)
		return -EIO;
	return changelog_enable(ix);
}

static void cfg_row(sqlite3_stmt *st, struct remote_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->id = sqlite3_column_int64(st, 0);
	snprintf(c->name, sizeof(c->name), "%s", sqlite3_column_text(st, 1));
	snprintf(c->url, sizeof(c->url), "%s", sqlite3_column_text(st, 2));
	const char **dst[] = { &c->opt.endpoint, &c->opt.region, &c->opt.ca_file,
			       &c->opt.credentials_file, &c->opt.ssh_key,
			       &c->opt.known_hosts, &c->opt.netrc_file };
	int col[] = { 3, 4, 6, 7, 8, 9, 10 };
	for (int i = 0, s = 0; i < 7 && s < 6; i++) {
		const unsigned char *t = sqlite3_column_text(st, col[i]);
		if (!t)
			continue;
		snprintf(c->strs[s], sizeof(c->strs[s]), "%s", t);
		*dst[i] = c->strs[s++];
	}
	c->opt.path_style = sqlite3_column_int(st, 5);
	c->last_seq = sqlite3_column_int64(st, 11);
	c->next_meta = sqlite3_column_int64(st, 12);
	c->last_push = sqlite3_column_int64(st, 13);
	c->grace_ns = sqlite3_column_int64(st, 14);
	c->grace_set = 1;
	c->lock_mode = sqlite3_column_int(st, 15);
	c->lock_days = sqlite3_column_int(st, 16);
	c->meta_lock_until = sqlite3_column_int64(st, 17);
}

#define CFG_COLS "id, name, url, endpoint, region, path_style, ca_file, credentials_file," \
		 " ssh_key, known_hosts, netrc_file, last_seq, next_meta, last_push," \
		 " grace_ns, lock_mode, lock_days, meta_lock_until"

int remote_cfg_find(struct index *ix, const char *name, struct remote_cfg *c)
{
	int err = ensure_schema(ix);
	sqlite3_stmt *st;
	if (err || sqlite3_prepare_v2(index_db(ix), "SELECT " CFG_COLS
			       " FROM remote WHERE name = ?1", -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		cfg_row(st, c);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int remote_cfg_list(struct index *ix, struct remote_cfg **cs, size_t *n)
{
	int err = ensure_schema(ix);
	sqlite3_stmt *st;
	*cs = NULL;
	*n = 0;
	if (err || sqlite3_prepare_v2(index_db(ix), "SELECT " CFG_COLS
			       " FROM remote ORDER BY name", -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	while (sqlite3_step(st) == SQLITE_ROW) {
		void *p = realloc(*cs, (*n + 1) * sizeof(**cs));
		if (!p)
			break;
		*cs = p;
		cfg_row(st, &(*cs)[(*n)++]);
		/* strs moved with the struct: re-point opt into the copy. */
	}
	sqlite3_finalize(st);
	/* cfg_row pointed opt's strings into the element, which realloc may
	 * have moved: redo them from the final array. */
	for (size_t i = 0; i < *n; i++)
		remote_cfg_find(ix, (*cs)[i].name, &(*cs)[i]);
	return 0;
}

int remote_cfg_set_opts(struct index *ix, const char *name, const struct remote_options *o)
{
	int err = ensure_schema(ix);
	if (err)
		return err;
	const char *v[] = { o->endpoint, o->region, o->ca_file, o->credentials_file,
			    o->ssh_key, o->known_hosts, o->netrc_file };
	for (int i = 0; i < 7; i++) {
		if (!v[i])
			continue;
		char sql[96];
		sqlite3_stmt *st;
		snprintf(sql, sizeof(sql), "UPDATE remote SET %s = ?1 WHERE name = ?2", opt_col[i]);
		if (sqlite3_prepare_v2(index_db(ix), sql, -1, &st, NULL) != SQLITE_OK)
			return -EIO;
		sqlite3_bind_text(st, 1, v[i], -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		int rc = sqlite3_step(st);
		int changed = sqlite3_changes(index_db(ix));
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return -EIO;
		if (!changed)
			return -ENOENT;
	}
	return 0;
}

int remote_cfg_pending(struct index *ix, int64_t remote, uint64_t *packs, uint64_t *bytes)
{
	sqlite3_stmt *q;
	*packs = *bytes = 0;
	if (sqlite3_prepare_v2(index_db(ix), "SELECT COUNT(*), COALESCE(SUM(size), 0)"
		" FROM pack p WHERE state = 1 AND NOT EXISTS (SELECT 1 FROM remote_pack r"
		" WHERE r.remote = ?1 AND r.name = p.name)", -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(q, 1, remote);
	int rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		*packs = sqlite3_column_int64(q, 0);
		*bytes = sqlite3_column_int64(q, 1);
	}
	sqlite3_finalize(q);
	return rc == SQLITE_ROW ? 0 : -EIO;
}

void repo_pack_key(const uint8_t name[PACK_NAME_LEN], char *key, size_t size)
{
	char hex[PACK_NAME_LEN * 2 + 1];
	hex_encode(name, PACK_NAME_LEN, hex);
	snprintf(key, size, "data/%.2s/%s", hex, hex);
}

void repo_meta_key(uint64_t n, char *key, size_t size)
{
	snprintf(key, size, "meta/%016llx", (unsigned long long)n);
}

static void repo_meta_aad(uint64_t n, uint8_t aad[22])
{
	memcpy(aad, "tresor meta v1", 14);
	put_le64(aad + 14, n);
}

/* Compress and seal a delta as meta object n. */
int repo_seal_delta(const struct store *st, uint64_t n, const uint8_t *d,
		      size_t len, uint8_t **out, size_t *outlen)
{
	size_t bound = ZSTD_compressBound(len);
	uint8_t *z = malloc(bound);
	if (!z)
		return -ENOMEM;
	size_t zl = ZSTD_compress(z, bound, d, len, 3);
	if (ZSTD_isError(zl)) {
		free(z);
		return -EIO;
	}
	uint8_t *sealed = malloc(zl + SEAL_OVERHEAD);
	uint8_t aad[22];
	repo_meta_aad(n, aad);
	int err = sealed ? aead_seal(st->keys.meta, aad, sizeof(aad), z, zl, sealed)
			 : -ENOMEM;
	free(z);
	if (err) {
		free(sealed);
		return err;
	}
	*out = sealed;
	*outlen = zl + SEAL_OVERHEAD;
	return 0;
}

/* Inverse of repo_seal_delta: -EBADMSG if it does not authenticate as object n. */
int repo_open_delta(const struct store_keys *keys, uint64_t n,
		      const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
	if (len < SEAL_OVERHEAD)
		return -EBADMSG;
	uint8_t *z = malloc(len - SEAL_OVERHEAD + 1);
	uint8_t aad[22];
	repo_meta_aad(n, aad);
	if (!z)
		return -ENOMEM;
	if (aead_open(keys->meta, aad, sizeof(aad), in, len, z)) {
		free(z);
		return -EBADMSG;
	}
	size_t zl = len - SEAL_OVERHEAD;
	unsigned long long raw = ZSTD_getFrameContentSize(z, zl);
	if (raw == ZSTD_CONTENTSIZE_ERROR || raw == ZSTD_CONTENTSIZE_UNKNOWN ||
	    raw > (1ull << 32)) {
		free(z);
		return -EBADMSG;
	}
	uint8_t *d = malloc(raw ? raw : 1);
	size_t got = d ? ZSTD_decompress(d, raw, z, zl) : 0;
	free(z);
	if (!d || ZSTD_isError(got) || got != raw) {
		free(d);
		return d ? -EBADMSG : -ENOMEM;
	}
	*out = d;
	*outlen = got;
	return 0;
}
