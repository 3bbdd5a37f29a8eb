/*
 * recover.c - rebuild a store from a remote and the passphrase alone
 * (recover.h): key file, every metadata delta in order, every pack.
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
#include "damage.h"
#include "fetch.h"
#include "recover.h"
#include "repo.h"
#include "util.h"

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

/* Fetch every finished pack the index names that dir does not hold yet
 * (verified, installed atomically): the body of a full recovery and of
 * the fill of a lazy one.  Resumable: packs already here are kept. */
static int fetch_missing(struct remote *r, const struct store_keys *keys,
			 const char *dir, struct index *ix, int64_t lacking,
			 const struct recover_opts *ro, struct recover_result *res)
{
	sqlite3_stmt *q = NULL;
	/* lacking > 0: only packs remote id lacking is not known to hold. */
	if (sqlite3_prepare_v2(index_db(ix), lacking > 0 ?
			       "SELECT name, size FROM pack p WHERE state = 1 AND length(name) = 16"
			       " AND NOT EXISTS (SELECT 1 FROM remote_pack r WHERE r.remote = ?1"
			       " AND r.name = p.name)" :
			       "SELECT name, size FROM pack"
			       " WHERE state = 1 AND length(name) = 16", -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	if (lacking > 0)
		sqlite3_bind_int64(q, 1, lacking);
	struct want { uint8_t name[PACK_NAME_LEN]; uint64_t size; } *ws = NULL;
	size_t n = 0, cap = 0;
	uint64_t total = 0, done = 0;
	int err = 0;
	char path[PATH_MAX + 256];
	while (!err && sqlite3_step(q) == SQLITE_ROW) {
		char hex[PACK_NAME_LEN * 2 + 1];
		const void *name = sqlite3_column_blob(q, 0);
		uint64_t size = sqlite3_column_int64(q, 1);
		hex_encode(name, PACK_NAME_LEN, hex);
		snprintf(path, sizeof(path), "%s/%s/%.2s/%s", dir, STORE_PACK_DIR, hex, hex);
		struct stat sb;
		if (!stat(path, &sb) && (uint64_t)sb.st_size == size)
			continue;	/* fetched by an earlier run */
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			void *p = realloc(ws, cap * sizeof(*ws));
			if (!p) {
				err = -ENOMEM;
				break;
			}
			ws = p;
		}
		memcpy(ws[n].name, name, PACK_NAME_LEN);
		ws[n++].size = size;
		total += size;
	}
	sqlite3_finalize(q);
	if (!r) {	/* count only */
		free(ws);
		res->packs = n;
		return err;
	}
	for (size_t i = 0; i < n && !err; i++) {
		uint64_t len = 0;
		err = pack_fetch_install(r, keys, dir, ws[i].name, ws[i].size, &len);
		if (err)
			repo_pack_key(ws[i].name, res->failed, sizeof(res->failed));
		else {
			res->packs++;
			res->bytes += len;
		}
		done += ws[i].size;
		if (ro->progress)
			ro->progress(ro->progress_arg, done, total);
	}
	free(ws);
	return err;
}

int recover_fill(struct store *st, struct remote *r,
		 const struct recover_opts *ro, struct recover_result *res)
{
	memset(res, 0, sizeof(*res));
	int err = fetch_missing(r, &st->keys, st->dir, st->ix, 0, ro, res);
	if (!err)
		err = index_begin(st->ix);
	if (!err)
		err = index_meta_set(st->ix, "lazy", 0);
	if (!err)
		err = index_commit(st->ix);
	return err;
}

int recover_fill_for(struct store *st, struct remote *r, int64_t target,
		     const struct recover_opts *ro, struct recover_result *res)
{
	memset(res, 0, sizeof(*res));
	return fetch_missing(r, &st->keys, st->dir, st->ix, target, ro, res);
}

int recover_run(struct remote *r, const char *url,
		const struct remote_options *opt, const char *dir,
		const char *pass, size_t passlen, const struct recover_opts *ro,
		struct recover_result *res)
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
		repo_meta_key(n, key, sizeof(key));
		uint8_t *d = NULL;
		size_t dl = 0;
		err = get_whole(r, key, &buf, &len);
		if (err == -ENOENT) {
			err = 0;
			break;
		}
		if (!err)
			err = repo_open_delta(&keys, n, buf, len, &d, &dl);
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
			repo_meta_key(n, res->failed, sizeof(res->failed));
			err = -ENODATA;
		}
	}
	/* Names are used as path components by mounts and restores: a
	 * damaged or hostile history must not name "..", "." or "a/b". */
	if (!err) {
		int64_t vol;
		uint64_t parent;
		char name[300];
		int r2 = damage_unsafe_name(ix, &vol, &parent, name, sizeof(name));
		if (r2 == 1) {
			snprintf(res->failed, sizeof(res->failed),
				 "meta/ (an entry named '%.64s' in directory inode %llu of volume %lld)",
				 name, (unsigned long long)parent, (long long)vol);
			err = -EUCLEAN;
		} else if (r2 < 0) {
			err = r2;
		}
	}
	/* The packs the index names, verified (lazy: later, on demand). */
	if (!err && !ro->lazy)
		err = fetch_missing(r, &keys, tmp, ix, 0, ro, res);
	if (!err)
		err = index_begin(ix);
	if (!err)
		err = index_meta_set(ix, "lazy", ro->lazy ? 1 : 0);
	if (!err)
		err = index_commit(ix);
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
