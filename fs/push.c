/*
 * push.c - push a store to a remote (push.h).
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
		repo_pack_key(todo[i].name, key, sizeof(key));
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
		crash_point("push-pack");
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
			repo_meta_key(n, key, sizeof(key));
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
			err = repo_seal_delta(st, n, delta, dlen, &sealed, &slen);
		if (!err)
			err = remote_put(r, key, sealed, slen);
		crash_point("push-meta");
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
