/*
 * push.c - push a store to a remote and recover one from it (push.h).
 *
 * Order is what makes the remote consistent: packs first, then the delta
 * that names them, then (locally) the note that they are there.  A push
 * killed anywhere leaves extra objects at worst; the next push sends a
 * delta covering everything since the last one it recorded, so applying
 * an older, smaller delta before it is harmless.
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
#include "push.h"
#include "util.h"

static const char *remote_schema =
	"CREATE TABLE IF NOT EXISTS remote(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
	"  url TEXT NOT NULL, endpoint TEXT, region TEXT, path_style INTEGER NOT NULL DEFAULT 0,"
	"  ca_file TEXT, credentials_file TEXT, ssh_key TEXT, known_hosts TEXT, netrc_file TEXT,"
	"  last_seq INTEGER NOT NULL DEFAULT 0, next_meta INTEGER NOT NULL DEFAULT 1,"
	"  last_push INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS remote_pack(remote INTEGER NOT NULL, name BLOB NOT NULL,"
	"  PRIMARY KEY(remote, name)) WITHOUT ROWID;";

static int ensure_schema(struct index *ix)
{
	return sqlite3_exec(index_db(ix), remote_schema, NULL, NULL, NULL) == SQLITE_OK
		       ? 0 : -EIO;
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
		" credentials_file, ssh_key, known_hosts, netrc_file, next_meta)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)", -1, &st, NULL) != SQLITE_OK)
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
}

#define CFG_COLS "id, name, url, endpoint, region, path_style, ca_file, credentials_file," \
		 " ssh_key, known_hosts, netrc_file, last_seq, next_meta, last_push"

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
	(void)opt_col;
	return 0;
}

static void pack_key(const uint8_t name[PACK_NAME_LEN], char *key, size_t size)
{
	char hex[PACK_NAME_LEN * 2 + 1];
	hex_encode(name, PACK_NAME_LEN, hex);
	snprintf(key, size, "data/%.2s/%s", hex, hex);
}

static void meta_key(uint64_t n, char *key, size_t size)
{
	snprintf(key, size, "meta/%016llx", (unsigned long long)n);
}

static void meta_aad(uint64_t n, uint8_t aad[22])
{
	memcpy(aad, "tresor meta v1", 14);
	put_le64(aad + 14, n);
}

/* Compress and seal a delta as meta object n. */
static int seal_delta(const struct store *st, uint64_t n, const uint8_t *d,
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
	meta_aad(n, aad);
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

/* Inverse of seal_delta: -EBADMSG if it does not authenticate as object n. */
static int open_delta(const struct store_keys *keys, uint64_t n,
		      const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
	if (len < SEAL_OVERHEAD)
		return -EBADMSG;
	uint8_t *z = malloc(len - SEAL_OVERHEAD + 1);
	uint8_t aad[22];
	meta_aad(n, aad);
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

/* The repository marker and the key file, on a first push. */
static int push_preamble(struct store *st, struct remote *r)
{
	uint8_t marker[16];
	memcpy(marker, "TRESORRP", 8);
	put_le32(marker + 8, REPO_VERSION);
	put_le32(marker + 12, 0);
	uint64_t size;
	int err = remote_head(r, "tresor-repo", &size);
	if (err == -ENOENT)
		err = remote_put(r, "tresor-repo", marker, sizeof(marker));
	if (err)
		return err;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", st->dir, STORE_KEY_FILE);
	uint8_t *key;
	size_t klen;
	err = read_file(path, &key, &klen);
	if (err)
		return err;
	err = remote_head(r, "keys/key", &size);
	if (err == -ENOENT)
		err = remote_put(r, "keys/key", key, klen);
	free(key);
	return err;
}

struct pack_todo {
	uint8_t name[PACK_NAME_LEN];
	int64_t size;
};

int push_run(struct store *st, struct remote_cfg *c, struct remote *r,
	     void (*after_snapshot)(void *), void *arg,
	     struct push_result *res)
{
	memset(res, 0, sizeof(*res));
	sqlite3 *db = index_db(st->ix);
	int err = index_commit(st->ix);
	if (err)
		return err;
	/* A read transaction: one consistent state for packs and delta. */
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_stmt *q;
	struct pack_todo *todo = NULL;
	size_t ntodo = 0;
	uint64_t to = 0;
	err = changelog_last(st->ix, &to);	/* also starts the snapshot */
	if (after_snapshot)
		after_snapshot(arg);
	if (!err && sqlite3_prepare_v2(db,
		"SELECT name, size FROM pack p WHERE state = 1 AND NOT EXISTS"
		" (SELECT 1 FROM remote_pack r WHERE r.remote = ?1 AND r.name = p.name)",
		-1, &q, NULL) != SQLITE_OK)
		err = -EIO;
	if (!err) {
		sqlite3_bind_int64(q, 1, c->id);
		while (sqlite3_step(q) == SQLITE_ROW) {
			void *p = realloc(todo, (ntodo + 1) * sizeof(*todo));
			if (!p) {
				err = -ENOMEM;
				break;
			}
			todo = p;
			memcpy(todo[ntodo].name, sqlite3_column_blob(q, 0), PACK_NAME_LEN);
			todo[ntodo++].size = sqlite3_column_int64(q, 1);
		}
		sqlite3_finalize(q);
	}
	/* Packs whose index row says open cannot be sent yet: a daemon was
	 * not frozen.  Refuse rather than send a delta naming them. */
	if (!err && sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM chunk c JOIN pack p"
		" ON p.id = c.pack WHERE p.state = 0", -1, &q, NULL) == SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int64(q, 0) > 0)
			err = -EBUSY;
		sqlite3_finalize(q);
	}
	res->packs_pending = ntodo;
	if (!err && c->next_meta <= 1)
		err = push_preamble(st, r);
	for (size_t i = 0; i < ntodo && !err; i++) {
		char key[128];
		pack_key(todo[i].name, key, sizeof(key));
		uint64_t have;
		if (remote_head(r, key, &have) == 0 && (int64_t)have == todo[i].size)
			continue;	/* sent by a push that died before noting it */
		char *path = store_pack_path(st, todo[i].name);
		uint8_t *buf = NULL;
		size_t len = 0;
		err = path ? read_file(path, &buf, &len) : -ENOMEM;
		free(path);
		if (!err)
			err = remote_put(r, key, buf, len);
		free(buf);
		if (!err) {
			res->packs++;
			res->pack_bytes += len;
		}
	}
	/* The delta: everything since the last push (all rows the first time). */
	uint8_t *delta = NULL, *sealed = NULL;
	size_t dlen = 0, slen = 0;
	uint64_t n = c->next_meta ? c->next_meta : 1;
	int send = 0;
	if (!err) {
		err = n == 1 ? changelog_export_full(st->ix, to, &delta, &dlen)
			     : changelog_export(st->ix, c->last_seq, to, &delta, &dlen);
		send = n == 1 || to > c->last_seq;
	}
	if (!err && send) {
		res->records = get_le32(delta + 24);
		/* A slot taken by a push that died after sending: the next one. */
		char key[64];
		uint64_t have;
		for (;;) {
			meta_key(n, key, sizeof(key));
			int h = remote_head(r, key, &have);
			if (h == -ENOENT)
				break;
			if (h) {
				err = h;
				break;
			}
			n++;
		}
		if (!err)
			err = seal_delta(st, n, delta, dlen, &sealed, &slen);
		if (!err)
			err = remote_put(r, key, sealed, slen);
		if (!err)
			res->meta_bytes = slen;
	}
	free(delta);
	free(sealed);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);	/* ends the read */
	/* Note what the remote has now. */
	if (!err)
		err = index_begin(st->ix);
	for (size_t i = 0; i < ntodo && !err; i++) {
		sqlite3_stmt *ins;
		if (sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO remote_pack(remote, name)"
				       " VALUES (?1, ?2)", -1, &ins, NULL) != SQLITE_OK) {
			err = -EIO;
			break;
		}
		sqlite3_bind_int64(ins, 1, c->id);
		sqlite3_bind_blob(ins, 2, todo[i].name, PACK_NAME_LEN, SQLITE_STATIC);
		if (sqlite3_step(ins) != SQLITE_DONE)
			err = -EIO;
		sqlite3_finalize(ins);
	}
	if (!err) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		char sql[256];
		snprintf(sql, sizeof(sql), "UPDATE remote SET last_seq = %llu, next_meta = %llu,"
			 " last_push = %lld WHERE id = %lld", (unsigned long long)to,
			 (unsigned long long)(send ? n + 1 : n),
			 (long long)ts.tv_sec * 1000000000 + ts.tv_nsec, (long long)c->id);
		if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
			err = -EIO;
		c->last_seq = to;
		c->next_meta = send ? n + 1 : n;
	}
	/* Notes every remote has are no longer needed. */
	if (!err && sqlite3_prepare_v2(db, "SELECT MIN(last_seq) FROM remote", -1, &q,
				       NULL) == SQLITE_OK) {
		uint64_t min = 0;
		if (sqlite3_step(q) == SQLITE_ROW)
			min = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
		err = changelog_trim(st->ix, min);
	}
	if (!err)
		err = index_commit(st->ix);
	else
		index_rollback(st->ix);
	free(todo);
	return err;
}

/* ---- recovery ---- */

static int find_max_meta(void *arg, const char *key, uint64_t size)
{
	(void)size;
	uint64_t *max = arg;
	unsigned long long v;
	if (sscanf(key, "meta/%16llx", &v) == 1 && v > *max)
		*max = v;
	return 0;
}

static int get_whole(struct remote *r, const char *key, uint8_t **buf,
		     size_t *len)
{
	return remote_get(r, key, 0, 0, buf, len);
}

int recover_run(struct remote *r, const char *url,
		const struct remote_options *opt, const char *dir,
		const char *pass, size_t passlen, struct recover_result *res)
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
	err = get_whole(r, "keys/key", &buf, &len);
	if (err)
		return err;
	snprintf(path, sizeof(path), "%s/%s", tmp, STORE_KEY_FILE);
	err = write_file_atomic(path, buf, len, 0600);
	free(buf);
	struct store_keys keys;
	if (!err)
		err = keyfile_open(path, pass, passlen, &keys);
	if (err)
		return err;
	/* The index: rebuilt from scratch by replaying every delta. */
	snprintf(path, sizeof(path), "%s/%s", tmp, STORE_INDEX_FILE);
	unlink(path);
	char wal[PATH_MAX + 256 + 8];
	snprintf(wal, sizeof(wal), "%s-wal", path);
	unlink(wal);
	snprintf(wal, sizeof(wal), "%s-shm", path);
	unlink(wal);
	struct index *ix;
	err = index_open(path, 1, &ix);
	if (err)
		goto out_keys;
	uint64_t n;
	for (n = 1; !err; n++) {
		char key[64];
		meta_key(n, key, sizeof(key));
		uint8_t *d = NULL;
		size_t dl = 0;
		err = get_whole(r, key, &buf, &len);
		if (err == -ENOENT) {
			err = 0;
			break;
		}
		if (!err)
			err = open_delta(&keys, n, buf, len, &d, &dl);
		if (err)
			snprintf(res->failed, sizeof(res->failed), "%s", key);
		free(buf);
		if (!err)
			err = index_begin(ix);
		if (!err)
			err = changelog_apply(ix, d, dl, NULL, NULL);
		if (!err)
			err = index_commit(ix);
		else
			index_rollback(ix);
		free(d);
		res->deltas++;
	}
	if (!err && res->deltas == 0) {
		snprintf(res->failed, sizeof(res->failed), "meta/%016llx", 1ull);
		err = -ENODATA;	/* a marker and a key but no metadata */
	}
	/* Deltas are read until one is missing; a later one existing means
	 * a gap (deleted or lost), not the end: refuse to roll back. */
	if (!err) {
		uint64_t max = 0;
		err = remote_list(r, "meta/", find_max_meta, &max);
		if (!err && max >= n) {
			meta_key(n, res->failed, sizeof(res->failed));
			err = -ENODATA;
		}
	}
	/* The packs the index names, verified against their footers. */
	sqlite3_stmt *q = NULL;
	if (!err && sqlite3_prepare_v2(index_db(ix), "SELECT name, size FROM pack"
				       " WHERE state = 1", -1, &q, NULL) != SQLITE_OK)
		err = -EIO;
	while (!err && sqlite3_step(q) == SQLITE_ROW) {
		uint8_t name[PACK_NAME_LEN];
		memcpy(name, sqlite3_column_blob(q, 0), PACK_NAME_LEN);
		int64_t size = sqlite3_column_int64(q, 1);
		char key[128], hex[PACK_NAME_LEN * 2 + 1];
		pack_key(name, key, sizeof(key));
		hex_encode(name, PACK_NAME_LEN, hex);
		snprintf(path, sizeof(path), "%s/%s/%.2s", tmp, STORE_PACK_DIR, hex);
		mkdir(path, 0700);
		snprintf(path, sizeof(path), "%s/%s/%.2s/%s", tmp, STORE_PACK_DIR, hex, hex);
		if (!stat(path, &sb) && sb.st_size == size)
			continue;	/* fetched by an earlier run */
		err = get_whole(r, key, &buf, &len);
		if (err == -ENOENT)
			err = -ENODATA;
		if (!err && (int64_t)len != size)
			err = -EBADMSG;
		if (!err)
			err = write_file_atomic(path, buf, len, 0600);
		struct pack_entry *es = NULL;
		size_t ne = 0;
		if (!err)
			err = pack_read_footer(path, name, &keys, &es, &ne);
		/* Every record must open: a pack is not taken on its footer's
		 * word (AES-GCM runs at GB/s, the download is the cost). */
		for (size_t k = 0; k < ne && !err; k++) {
			uint8_t *raw = malloc(es[k].rlen ? es[k].rlen : 1);
			if (!raw || es[k].off + es[k].slen > len)
				err = raw ? -EBADMSG : -ENOMEM;
			else
				err = chunk_open(&keys, es[k].id, buf + es[k].off,
						 es[k].slen, es[k].flags, raw, es[k].rlen);
			free(raw);
		}
		free(buf);
		free(es);
		if (err)
			snprintf(res->failed, sizeof(res->failed), "%s", key);
		if (err == -EBADMSG)
			unlink(path);
		if (!err) {
			res->packs++;
			res->bytes += len;
		}
	}
	if (q)
		sqlite3_finalize(q);
	/* Keep pushing to where we came from. */
	if (!err) {
		struct remote_cfg c = { 0 };
		snprintf(c.name, sizeof(c.name), "origin");
		snprintf(c.url, sizeof(c.url), "%s", url);
		if (opt)
			c.opt = *opt;
		c.next_meta = n;
		err = index_begin(ix);
		if (!err)
			err = remote_cfg_add(ix, &c);
		if (err == -EEXIST)
			err = 0;
		/* origin holds every pack we just fetched. */
		if (!err && sqlite3_exec(index_db(ix),
			"INSERT OR IGNORE INTO remote_pack(remote, name) SELECT r.id, p.name"
			" FROM remote r, pack p WHERE r.name = 'origin' AND p.state = 1",
			NULL, NULL, NULL) != SQLITE_OK)
			err = -EIO;
		if (!err)
			err = index_commit(ix);
	}
	index_close(ix);
	if (!err && rename(tmp, dir))
		err = -errno;
	if (!err)
		err = fsync_parent_dir(dir);
out_keys:
	secure_wipe(&keys, sizeof(keys));
	return err;
}
