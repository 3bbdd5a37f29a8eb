/*
 * repo.c - the remote repository's layout shared by push and recovery
 * (repo.h): object keys and sealed deltas; and the replication tables
 * (remote, remote_pack, remote_sending, remote_gone), whose SQL is all
 * here.
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
#include <zstd.h>
#include <openssl/evp.h>

#include "../chunker/buf.h"
#include "../chunker/changelog.h"
#include "../chunker/index_sql.h"
#include "repo.h"
#include "../chunker/util.h"

/* The replication tables (chunker/index.c defines them), and a writer id
 * for rows from before writer ids. */
static int ensure_schema(struct index *ix)
{
	int err = index_ensure_remote_tables(ix);
	if (!err && sqlite3_exec(index_db(ix), "UPDATE remote SET writer = randomblob(16)"
				 " WHERE writer IS NULL OR length(writer) != 16",
				 NULL, NULL, NULL) != SQLITE_OK)
		err = -EIO;
	return err;
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
		" lock_mode, lock_days, writer)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
		-1, &st, NULL) != SQLITE_OK)
		return -EIO;
	uint8_t writer[REPO_WRITER_LEN];
	err = random_bytes(writer, sizeof(writer));
	if (err) {
		sqlite3_finalize(st);
		return err;
	}
	sqlite3_bind_blob(st, 15, writer, sizeof(writer), SQLITE_TRANSIENT);
	const char *v[] = { c->opt.endpoint, c->opt.region, c->opt.ca_file,
			    c->opt.credentials_file, c->opt.ssh_key,
			    c->opt.known_hosts, c->opt.netrc_file };
	/* The port written out: what a URL without one means has changed
	 * once (sftp 23 -> 22, issue 18); a stored one never changes. */
	char url[sizeof(c->url)];
	if (remote_url_port_explicit(c->url, 22, url, sizeof(url))) {
		sqlite3_finalize(st);
		return -ENAMETOOLONG;
	}
	sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, url, -1, SQLITE_STATIC);
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
	/* An sftp URL stored without a port was written by a tresor from
	 * before issue 18, whose default was the Storage Box's port 23:
	 * read it so (a new row always has its port written out). */
	if (remote_url_port_explicit((const char *)sqlite3_column_text(st, 2), 23, c->url,
				     sizeof(c->url)))
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
	if (sqlite3_column_bytes(st, 18) == REPO_WRITER_LEN)
		memcpy(c->writer, sqlite3_column_blob(st, 18), REPO_WRITER_LEN);
	c->has_tip = sqlite3_column_bytes(st, 19) == REPO_HASH_LEN;
	if (c->has_tip)
		memcpy(c->tip, sqlite3_column_blob(st, 19), REPO_HASH_LEN);
	c->full_next = sqlite3_column_int(st, 20);
	c->has_pending = sqlite3_column_bytes(st, 21) == REPO_HASH_LEN;
	if (c->has_pending)
		memcpy(c->pending, sqlite3_column_blob(st, 21), REPO_HASH_LEN);
	c->image_meta = (uint64_t)sqlite3_column_int64(st, 22);
	c->image_size = (uint64_t)sqlite3_column_int64(st, 23);
	c->since_image = (uint64_t)sqlite3_column_int64(st, 24);
	c->meta_floor = (uint64_t)sqlite3_column_int64(st, 25);
	if (!c->meta_floor)
		c->meta_floor = 1;
}

#define CFG_COLS "id, name, url, endpoint, region, path_style, ca_file, credentials_file," \
		 " ssh_key, known_hosts, netrc_file, last_seq, next_meta, last_push," \
		 " grace_ns, lock_mode, lock_days, meta_lock_until, writer, tip, full_next," \
		 " pending, image_meta, image_size, since_image, meta_floor"

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
	size_t cap = 0;
	*cs = NULL;
	*n = 0;
	if (err || sqlite3_prepare_v2(index_db(ix), "SELECT " CFG_COLS
			       " FROM remote ORDER BY name", -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	while (sqlite3_step(st) == SQLITE_ROW) {
		void *p = buf_grow(*cs, &cap, *n + 1, sizeof(**cs));
		if (!p)
			break;
		*cs = p;
		cfg_row(st, &(*cs)[(*n)++]);
	}
	sqlite3_finalize(st);
	/* cfg_row pointed opt's strings into the element, which growing the
	 * array may have moved: redo them from the final array. */
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

/* Column 0 a pack rowid (or 0), 1 a pack name, 2 a number; ?1 the remote,
 * ?2 before. */
static const char *const packs_sql[] = {
	[REMOTE_PACKS_ALL] = "SELECT id, name, size FROM pack WHERE state = 1 ORDER BY name",
	[REMOTE_PACKS_LACKING] = "SELECT id, name, size FROM pack p WHERE state = 1"
		" AND NOT EXISTS (SELECT 1 FROM remote_pack r WHERE r.remote = ?1"
		" AND r.name = p.name)",
	[REMOTE_PACKS_HELD] = "SELECT p.id, p.name, p.size, rp.verified FROM pack p JOIN remote_pack rp"
		" ON rp.name = p.name WHERE rp.remote = ?1 AND p.state = 1",
	/* and the packs a push that died may have left there (remote_sending) */
	[REMOTE_PACKS_FREED] = "SELECT 0, name, lock_until FROM remote_pack r WHERE remote = ?1"
		" AND NOT EXISTS (SELECT 1 FROM pack p WHERE p.name = r.name)"
		" UNION SELECT 0, name, lock_until FROM remote_sending s WHERE remote = ?1"
		" AND NOT EXISTS (SELECT 1 FROM pack p WHERE p.name = s.name)"
		" AND NOT EXISTS (SELECT 1 FROM remote_pack r WHERE r.remote = ?1"
		" AND r.name = s.name)",
	[REMOTE_PACKS_EXPIRING] = "SELECT 0, name, lock_until FROM remote_pack r"
		" WHERE remote = ?1 AND lock_until < ?2"
		" AND EXISTS (SELECT 1 FROM pack p WHERE p.name = r.name)",
};

/* Prepared, not cached: fn may run queries of its own meanwhile. */
int remote_cfg_packs(struct index *ix, enum remote_cfg_packs_of which, int64_t remote,
		     int64_t before, int (*fn)(void *arg, const struct remote_cfg_pack *p),
		     void *arg)
{
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(index_db(ix), packs_sql[which], -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	/* binding a parameter the statement lacks is a harmless SQLITE_RANGE */
	sqlite3_bind_int64(q, 1, remote);
	sqlite3_bind_int64(q, 2, before);
	int err = 0, rc = SQLITE_DONE;
	while (!err && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (sqlite3_column_bytes(q, 1) != PACK_NAME_LEN)
			continue;	/* a damaged row is no pack of ours */
		struct remote_cfg_pack p = { .id = sqlite3_column_int64(q, 0),
					     .val = sqlite3_column_int64(q, 2),
					     .verified = sqlite3_column_int64(q, 3) };
		memcpy(p.name, sqlite3_column_blob(q, 1), PACK_NAME_LEN);
		err = fn(arg, &p);
	}
	if (!err && rc != SQLITE_DONE)
		err = -EIO;
	sqlite3_finalize(q);
	return err;
}

struct pending_sum {
	uint64_t packs, bytes;
};

static int pending_add(void *arg, const struct remote_cfg_pack *p)
{
	struct pending_sum *s = arg;
	s->packs++;
	s->bytes += (uint64_t)p->val;
	return 0;
}

int remote_cfg_pending(struct index *ix, int64_t remote, uint64_t *packs, uint64_t *bytes)
{
	struct pending_sum s = { 0 };
	int err = remote_cfg_packs(ix, REMOTE_PACKS_LACKING, remote, 0, pending_add, &s);
	*packs = err ? 0 : s.packs;
	*bytes = err ? 0 : s.bytes;
	return err;
}

/* One statement on a pack's rows: ?1 remote, ?2 name, ?3 and ?4 numbers. */
static int exec_pack(struct index *ix, const char *sql, int64_t remote, const uint8_t *name,
		     int64_t a, int64_t b)
{
	sqlite3_stmt *q = index_stmt(ix, sql);
	if (!q)
		return -EIO;
	int64_t v[] = { remote, 0, a, b };
	index_bind_i64s(q, 4, v);
	sqlite3_bind_blob(q, 2, name, PACK_NAME_LEN, SQLITE_STATIC);
	return index_exec(ix, q);
}

int remote_cfg_note_held(struct index *ix, int64_t remote, const uint8_t *name,
			 int64_t lock_until)
{
	/* An update keeps when check last verified the copy: a retention
	 * extended is the same bytes. */
	int err = exec_pack(ix, "INSERT INTO remote_pack(remote, name, lock_until)"
			    " VALUES (?1, ?2, ?3) ON CONFLICT(remote, name) DO UPDATE"
			    " SET lock_until = excluded.lock_until", remote, name, lock_until, 0);
	return err ? err : exec_pack(ix, "DELETE FROM remote_sending WHERE remote = ?1"
				     " AND name = ?2", remote, name, 0, 0);
}

int remote_cfg_note_sending(struct index *ix, int64_t remote, const uint8_t *name,
			    int64_t lock_until)
{
	/* A retry keeps the later retention: the object may have either.
	 * The table is there: remote came from remote_cfg_find. */
	return exec_pack(ix, "INSERT INTO remote_sending(remote, name, lock_until)"
			 " VALUES (?1, ?2, ?3) ON CONFLICT(remote, name) DO UPDATE"
			 " SET lock_until = max(lock_until, excluded.lock_until)",
			 remote, name, lock_until, 0);
}

int remote_cfg_note_verified(struct index *ix, int64_t remote, const uint8_t *name,
			     int64_t time)
{
	return exec_pack(ix, "UPDATE remote_pack SET verified = ?3 WHERE remote = ?1"
			 " AND name = ?2", remote, name, time, 0);
}

int remote_cfg_note_freed(struct index *ix, int64_t remote, const uint8_t *name,
			  int64_t freed, int64_t lock_until)
{
	int err = exec_pack(ix, "INSERT OR IGNORE INTO remote_gone(remote, name, freed,"
			    " lock_until) VALUES (?1, ?2, ?3, ?4)", remote, name, freed,
			    lock_until);
	if (!err)
		err = exec_pack(ix, "DELETE FROM remote_sending WHERE remote = ?1 AND name = ?2",
				remote, name, 0, 0);
	return err ? err : exec_pack(ix, "DELETE FROM remote_pack WHERE remote = ?1 AND"
				     " name = ?2", remote, name, 0, 0);
}

int remote_cfg_note_locked(struct index *ix, int64_t remote, const uint8_t *name,
			   int64_t until)
{
	return exec_pack(ix, "UPDATE remote_pack SET lock_until = ?3 WHERE remote = ?1"
			 " AND name = ?2", remote, name, until, 0);
}

int remote_cfg_note_deleted(struct index *ix, int64_t remote, const uint8_t *name)
{
	int err = exec_pack(ix, "DELETE FROM remote_gone WHERE remote = ?1 AND name = ?2",
			    remote, name, 0, 0);
	return err ? err : exec_pack(ix, "DELETE FROM pack_trash WHERE local_done = 1"
		" AND name = ?2 AND NOT EXISTS (SELECT 1 FROM remote_gone g WHERE g.name = ?2)"
		" AND NOT EXISTS (SELECT 1 FROM remote_pack p WHERE p.name = ?2)"
		" AND NOT EXISTS (SELECT 1 FROM remote_sending s WHERE s.name = ?2)",
		remote, name, 0, 0);
}

int remote_cfg_note_all_held(struct index *ix, int64_t remote)
{
	return INDEX_EXEC(ix, "INSERT OR IGNORE INTO remote_pack(remote, name)"
			  " SELECT ?1, name FROM pack WHERE state = 1", remote);
}

int remote_cfg_image_sending(struct index *ix, int64_t remote, uint64_t meta,
			     const uint8_t id[REPO_IMAGE_ID_LEN], uint32_t parts)
{
	return remote_cfg_image_published(ix, remote, meta, id, parts, 0, 0);
}

int remote_cfg_image_published(struct index *ix, int64_t remote, uint64_t meta,
			       const uint8_t id[REPO_IMAGE_ID_LEN], uint32_t parts,
			       int64_t now, int64_t lock_until)
{
	int err = ensure_schema(ix);
	sqlite3_stmt *q;
	if (err)
		return err;
	/* A row noted as sending gets its time now; one noted published
	 * keeps the earlier time. */
	if (sqlite3_prepare_v2(index_db(ix), "INSERT INTO remote_image(remote, meta, id, parts,"
			       " published, lock_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
			       " ON CONFLICT(remote, id) DO UPDATE SET published = excluded.published,"
			       " lock_until = excluded.lock_until WHERE published = 0",
			       -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(q, 1, remote);
	sqlite3_bind_int64(q, 2, (int64_t)meta);
	sqlite3_bind_blob(q, 3, id, REPO_IMAGE_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, parts);
	sqlite3_bind_int64(q, 5, now);
	sqlite3_bind_int64(q, 6, lock_until);
	int rc = sqlite3_step(q);
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int remote_cfg_images(struct index *ix, int64_t remote, struct remote_image_row **out,
		      size_t *n)
{
	sqlite3_stmt *q;
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	int err = ensure_schema(ix);
	if (err || sqlite3_prepare_v2(index_db(ix), "SELECT meta, id, parts, published,"
				      " lock_until FROM remote_image WHERE remote = ?1"
				      " ORDER BY meta", -1, &q, NULL) != SQLITE_OK)
		return err ? err : -EIO;
	sqlite3_bind_int64(q, 1, remote);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (sqlite3_column_bytes(q, 1) != REPO_IMAGE_ID_LEN)
			continue;
		struct remote_image_row *v = buf_grow(*out, &cap, *n + 1, sizeof(**out));
		if (!v) {
			rc = SQLITE_NOMEM;
			break;
		}
		*out = v;
		v += *n;
		v->meta = (uint64_t)sqlite3_column_int64(q, 0);
		memcpy(v->id, sqlite3_column_blob(q, 1), REPO_IMAGE_ID_LEN);
		v->parts = (uint32_t)sqlite3_column_int64(q, 2);
		v->published = sqlite3_column_int64(q, 3);
		v->lock_until = sqlite3_column_int64(q, 4);
		(*n)++;
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE) {
		free(*out);
		*out = NULL;
		*n = 0;
		return rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
	}
	return 0;
}

int remote_cfg_image_forget(struct index *ix, int64_t remote,
			    const uint8_t id[REPO_IMAGE_ID_LEN])
{
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(index_db(ix), "DELETE FROM remote_image WHERE remote = ?1"
			       " AND id = ?2", -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(q, 1, remote);
	sqlite3_bind_blob(q, 2, id, REPO_IMAGE_ID_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int remote_cfg_set_floor(struct index *ix, int64_t remote, uint64_t floor)
{
	return INDEX_EXEC(ix, "UPDATE remote SET meta_floor = ?2 WHERE id = ?1", remote,
			  (int64_t)floor);
}

int remote_cfg_forget_packs(struct index *ix, int64_t remote)
{
	int err = INDEX_EXEC(ix, "DELETE FROM remote_pack WHERE remote = ?1", remote);
	if (!err)
		err = INDEX_EXEC(ix, "DELETE FROM remote_sending WHERE remote = ?1", remote);
	return err ? err : INDEX_EXEC(ix, "DELETE FROM remote_gone WHERE remote = ?1", remote);
}

int remote_cfg_set_pushed(struct index *ix, int64_t remote, uint64_t last_seq,
			  uint64_t next_meta, int64_t last_push, int64_t meta_lock_until)
{
	return INDEX_EXEC(ix, "UPDATE remote SET last_seq = ?2, next_meta = ?3, last_push = ?4,"
			  " meta_lock_until = ?5 WHERE id = ?1", remote, (int64_t)last_seq,
			  (int64_t)next_meta, last_push, meta_lock_until);
}

int remote_cfg_set_meta_lock(struct index *ix, int64_t remote, int64_t until)
{
	return INDEX_EXEC(ix, "UPDATE remote SET meta_lock_until = ?2 WHERE id = ?1",
			  remote, until);
}

int remote_cfg_min_seq(struct index *ix, uint64_t *min)
{
	sqlite3_stmt *q = index_stmt(ix, "SELECT MIN(last_seq) FROM remote");
	if (!q)
		return -EIO;
	int rc = sqlite3_step(q);
	*min = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(q, 0) : 0;
	sqlite3_reset(q);
	return rc == SQLITE_ROW ? 0 : index_errno(rc);
}

/* Not index_begin: that one takes the write lock, and a push's view must
 * not keep the daemons from writing. */
int remote_cfg_read_begin(struct index *ix)
{
	return sqlite3_exec(index_db(ix), "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

void remote_cfg_read_end(struct index *ix)
{
	sqlite3_exec(index_db(ix), "COMMIT", NULL, NULL, NULL);
}

int remote_cfg_set_chain(struct index *ix, const struct remote_cfg *c)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(index_db(ix), "UPDATE remote SET next_meta = ?2, tip = ?3,"
			       " full_next = ?4, pending = NULL, image_meta = ?5, image_size = ?6,"
			       " since_image = ?7 WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(st, 5, (int64_t)c->image_meta);
	sqlite3_bind_int64(st, 6, (int64_t)c->image_size);
	sqlite3_bind_int64(st, 7, (int64_t)c->since_image);
	sqlite3_bind_int64(st, 1, c->id);
	sqlite3_bind_int64(st, 2, (int64_t)c->next_meta);
	if (c->has_tip)
		sqlite3_bind_blob(st, 3, c->tip, REPO_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, c->full_next);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int remote_cfg_set_pending(struct index *ix, int64_t id, const uint8_t hash[REPO_HASH_LEN])
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(index_db(ix), "UPDATE remote SET pending = ?2 WHERE id = ?1",
			       -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_blob(st, 2, hash, REPO_HASH_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
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

static int range_cb(void *arg, const char *key, uint64_t size)
{
	(void)size;
	uint64_t *mm = arg;
	unsigned long long v;
	if (sscanf(key, "meta/%16llx", &v) != 1 || !v)
		return 0;
	if (v > mm[1])
		mm[1] = v;
	if (!mm[0] || v < mm[0])
		mm[0] = v;
	return 0;
}

int repo_meta_range(struct remote *r, uint64_t *min, uint64_t *max)
{
	uint64_t mm[2] = { 0, 0 };
	int err = remote_list(r, "meta/", range_cb, mm);
	*min = mm[0];
	*max = mm[1];
	return err;
}

int repo_meta_max(struct remote *r, uint64_t *max)
{
	uint64_t min;
	return repo_meta_range(r, &min, max);
}

void repo_writer_hex(const uint8_t w[REPO_WRITER_LEN], char out[2 * REPO_WRITER_LEN + 1])
{
	hex_encode(w, REPO_WRITER_LEN, out);
}

void repo_origin(const char *dir, char *out, size_t size)
{
	char host[256] = "?";
	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = 0;
	char *abs = realpath(dir, NULL);
	snprintf(out, size, "%s:%s", host, abs ? abs : dir);
	free(abs);
}

#define META_MAGIC "TRSMETA3"
#define META_MAGIC2 "TRSMETA2"		/* version 2: no image fields */
#define META_PREFIX 12			/* magic, u32 sealed header length */
#define HDR_FIXED2 (REPO_WRITER_LEN + 8 + REPO_HASH_LEN + 4 + 8 + 1)
#define HDR_IMAGE (8 + REPO_IMAGE_ID_LEN + 4 + 8)
#define HDR_FIXED (HDR_FIXED2 + HDR_IMAGE)
#define HDR_MAX (HDR_FIXED + 255 + SEAL_OVERHEAD)

static void aad_n(const char *label, uint64_t n, const uint8_t *hash, uint8_t *aad,
		  size_t *alen)
{
	size_t l = strlen(label);
	memcpy(aad, label, l);
	put_le64(aad + l, n);
	*alen = l + 8;
	if (hash) {
		memcpy(aad + l + 8, hash, REPO_HASH_LEN);
		*alen += REPO_HASH_LEN;
	}
}

static int sha256(const void *p, size_t len, uint8_t out[REPO_HASH_LEN])
{
	return EVP_Digest(p, len, out, NULL, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
}

/* zstd-compress d and seal it (aad) into a malloc'd buffer that has room
 * for pre bytes before the sealed body. */
static int seal_body(const uint8_t key[KEY_LEN], const uint8_t *aad, size_t alen,
		     const uint8_t *d, size_t len, size_t pre, uint8_t **out, size_t *outlen)
{
	size_t bound = ZSTD_compressBound(len);
	uint8_t *z = malloc(bound ? bound : 1);
	if (!z)
		return -ENOMEM;
	size_t zl = ZSTD_compress(z, bound, d, len, 3);
	if (ZSTD_isError(zl)) {
		free(z);
		return -EIO;
	}
	uint8_t *o = malloc(pre + zl + SEAL_OVERHEAD);
	int err = o ? 0 : -ENOMEM;
	if (!err && aad)
		err = aead_seal(key, aad, alen, z, zl, o + pre);
	free(z);
	if (err) {
		free(o);
		return err;
	}
	*out = o;
	*outlen = pre + zl + SEAL_OVERHEAD;
	return 0;
}

int repo_seal_blob(const uint8_t key[KEY_LEN], const uint8_t *aad, size_t alen,
		   const uint8_t *d, size_t len, uint8_t **out, size_t *outlen)
{
	return seal_body(key, aad, alen, d, len, 0, out, outlen);
}

int repo_key_object(const void *keyfile, size_t len, char *key, size_t size)
{
	uint8_t h[REPO_HASH_LEN];
	char hex[2 * REPO_HASH_LEN + 1];
	int err = sha256(keyfile, len, h);
	if (err)
		return err;
	hex_encode(h, 16, hex);
	snprintf(key, size, "keys/key-%s", hex);
	return 0;
}

int repo_seal_meta(const struct store_keys *keys, uint64_t n, struct repo_meta_hdr *h,
		   const uint8_t *d, size_t len, uint8_t **out, size_t *outlen)
{
	size_t olen = strnlen(h->origin, 255);
	uint8_t hdr[HDR_FIXED + 255], aad[64];
	size_t alen;
	memcpy(hdr, h->writer, REPO_WRITER_LEN);
	put_le64(hdr + 16, h->parent);
	memcpy(hdr + 24, h->parent_hash, REPO_HASH_LEN);
	put_le32(hdr + 56, h->flags);
	put_le64(hdr + 60, (uint64_t)h->time_ns);
	put_le64(hdr + 68, h->image);
	memcpy(hdr + 76, h->image_id, REPO_IMAGE_ID_LEN);
	put_le32(hdr + 92, h->image_parts);
	put_le64(hdr + 96, h->image_size);
	hdr[104] = (uint8_t)olen;
	memcpy(hdr + HDR_FIXED, h->origin, olen);
	size_t hl = HDR_FIXED + olen + SEAL_OVERHEAD;
	uint8_t sealed[HDR_MAX], *o = NULL;
	size_t total = 0;
	aad_n("tresor meta hdr v3", n, NULL, aad, &alen);
	int err = aead_seal(keys->meta, aad, alen, hdr, hl - SEAL_OVERHEAD, sealed);
	if (!err)
		err = sha256(sealed, hl, h->hash);
	if (!err) {
		aad_n("tresor meta v3", n, h->hash, aad, &alen);
		err = seal_body(keys->meta, aad, alen, d, len, META_PREFIX + hl, &o, &total);
	}
	if (err)
		return err;
	memcpy(o, META_MAGIC, 8);
	put_le32(o + 8, (uint32_t)hl);
	memcpy(o + META_PREFIX, sealed, hl);
	h->v1 = 0;
	h->v2 = 0;
	*out = o;
	*outlen = total;
	return 0;
}

/* The object's version from its first 8 bytes: 3, 2, or 1 (no magic). */
static int meta_version(const uint8_t *b, size_t len)
{
	if (len >= META_PREFIX && !memcmp(b, META_MAGIC, 8))
		return 3;
	if (len >= META_PREFIX && !memcmp(b, META_MAGIC2, 8))
		return 2;
	return 1;
}

/* Open a sealed header of hl bytes as object n's (version ver) into h. */
static int open_hdr(const struct store_keys *keys, uint64_t n, int ver, const uint8_t *p,
		    size_t hl, struct repo_meta_hdr *h)
{
	uint8_t hdr[HDR_FIXED + 255], aad[64];
	size_t alen, fixed = ver == 3 ? HDR_FIXED : HDR_FIXED2;
	if (hl < fixed + SEAL_OVERHEAD || hl > fixed + 255 + SEAL_OVERHEAD)
		return -EBADMSG;
	aad_n(ver == 3 ? "tresor meta hdr v3" : "tresor meta hdr v2", n, NULL, aad, &alen);
	if (aead_open(keys->meta, aad, alen, p, hl, hdr))
		return -EBADMSG;
	size_t olen = hdr[fixed - 1];
	if (fixed + olen + SEAL_OVERHEAD != hl)
		return -EBADMSG;
	memset(h, 0, sizeof(*h));
	h->v2 = ver == 2;
	memcpy(h->writer, hdr, REPO_WRITER_LEN);
	h->parent = get_le64(hdr + 16);
	memcpy(h->parent_hash, hdr + 24, REPO_HASH_LEN);
	h->flags = get_le32(hdr + 56);
	h->time_ns = (int64_t)get_le64(hdr + 60);
	if (ver == 3) {
		h->image = get_le64(hdr + 68);
		memcpy(h->image_id, hdr + 76, REPO_IMAGE_ID_LEN);
		h->image_parts = get_le32(hdr + 92);
		h->image_size = get_le64(hdr + 96);
		if (h->image > n || (h->image && !h->image_parts))
			return -EBADMSG;
	}
	memcpy(h->origin, hdr + fixed, olen);
	for (size_t i = 0; i < olen; i++)	/* it goes into messages */
		if ((unsigned char)h->origin[i] < 0x20)
			h->origin[i] = '?';
	return sha256(p, hl, h->hash);
}

int repo_read_meta_hdr(struct remote *r, const struct store_keys *keys, uint64_t n,
		       struct repo_meta_hdr *h)
{
	char key[64];
	uint8_t *b = NULL;
	size_t got = 0;
	repo_meta_key(n, key, sizeof(key));
	/* One GET for prefix and header: a round trip fewer per header
	 * (recovery reads a few), and both from the same object. */
	int err = remote_get(r, key, 0, META_PREFIX + HDR_MAX, &b, &got);
	if (err)
		return err;
	int ver = meta_version(b, got);
	if (ver == 1) {
		free(b);
		memset(h, 0, sizeof(*h));
		h->v1 = 1;
		return 0;
	}
	uint32_t hl = get_le32(b + 8);
	if (hl > HDR_MAX || got < META_PREFIX + (size_t)hl)
		err = -EBADMSG;
	else
		err = open_hdr(keys, n, ver, b + META_PREFIX, hl, h);
	free(b);
	return err;
}

/* Decompress a zstd frame whose content size is set. */
static int unzstd(const uint8_t *z, size_t zl, uint8_t **out, size_t *outlen)
{
	unsigned long long raw = ZSTD_getFrameContentSize(z, zl);
	if (raw == ZSTD_CONTENTSIZE_ERROR || raw == ZSTD_CONTENTSIZE_UNKNOWN ||
	    raw > (1ull << 32))
		return -EBADMSG;
	uint8_t *d = malloc(raw ? raw : 1);
	size_t got = d ? ZSTD_decompress(d, raw, z, zl) : 0;
	if (!d || ZSTD_isError(got) || got != raw) {
		free(d);
		return d ? -EBADMSG : -ENOMEM;
	}
	*out = d;
	*outlen = got;
	return 0;
}

/* Open a sealed body (AAD given) and decompress it. */
static int open_body(const uint8_t key[KEY_LEN], const uint8_t *aad, size_t alen,
		     const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
	if (len < SEAL_OVERHEAD)
		return -EBADMSG;
	uint8_t *z = malloc(len - SEAL_OVERHEAD + 1);
	if (!z)
		return -ENOMEM;
	int err = aead_open(key, aad, alen, in, len, z) ? -EBADMSG : 0;
	if (!err)
		err = unzstd(z, len - SEAL_OVERHEAD, out, outlen);
	free(z);
	return err;
}

int repo_open_blob(const uint8_t key[KEY_LEN], const uint8_t *aad, size_t alen,
		   const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
	return open_body(key, aad, alen, in, len, out, outlen);
}

int repo_open_delta(const struct store_keys *keys, uint64_t n,
		    const uint8_t *in, size_t len, struct repo_meta_hdr *h,
		    uint8_t **out, size_t *outlen)
{
	struct repo_meta_hdr tmp;
	uint8_t aad[64];
	size_t alen;
	if (!h)
		h = &tmp;
	int ver = meta_version(in, len);
	if (ver > 1) {
		uint32_t hl = get_le32(in + 8);
		if (hl > len - META_PREFIX)
			return -EBADMSG;
		int err = open_hdr(keys, n, ver, in + META_PREFIX, hl, h);
		if (err)
			return err;
		aad_n(ver == 3 ? "tresor meta v3" : "tresor meta v2", n, h->hash, aad, &alen);
		return open_body(keys->meta, aad, alen, in + META_PREFIX + hl,
				 len - META_PREFIX - hl, out, outlen);
	}
	memset(h, 0, sizeof(*h));
	h->v1 = 1;
	aad_n("tresor meta v1", n, NULL, aad, &alen);
	return open_body(keys->meta, aad, alen, in, len, out, outlen);
}

size_t remote_cfg_gone(struct index *ix, const struct remote_cfg *c,
		       struct remote_gone_pack **out)
{
	sqlite3_stmt *q;
	size_t n = 0, cap = 0;
	*out = NULL;
	if (sqlite3_prepare_v2(index_db(ix), "SELECT name, freed, lock_until FROM remote_gone"
			       " WHERE remote = ?1 ORDER BY freed", -1, &q, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(q, 1, c->id);
	while (sqlite3_step(q) == SQLITE_ROW) {
		if (sqlite3_column_bytes(q, 0) != PACK_NAME_LEN)
			continue;
		struct remote_gone_pack *g = buf_grow(*out, &cap, n + 1, sizeof(**out));
		if (!g)
			break;
		*out = g;
		memcpy(g[n].name, sqlite3_column_blob(q, 0), PACK_NAME_LEN);
		repo_pack_key(g[n].name, g[n].key, sizeof(g[n].key));
		int64_t due = sqlite3_column_int64(q, 1) + c->grace_ns;
		int64_t lock = sqlite3_column_int64(q, 2) * 1000000000LL;
		g[n++].due = lock > due ? lock : due;
	}
	sqlite3_finalize(q);
	return n;
}
