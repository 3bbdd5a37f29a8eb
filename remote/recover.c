/*
 * recover.c - rebuild a store from a remote and the passphrase alone
 * (recover.h): key file, every metadata delta in order, every pack
 * (lazy: none until read or filled).
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

#include "../chunker/buf.h"
#include "../chunker/changelog.h"
#include "fetch.h"
#include "push.h"
#include "recover.h"
#include "repo.h"
#include "../chunker/util.h"

/* One metadata object as the chain plan sees it. */
struct cnode {
	struct repo_meta_hdr h;
	uint64_t parent;	/* the object it continues (version 1: the one before) */
	int linked;		/* the parent there is the one it names */
	int children;		/* objects linked to it */
	int on_path;		/* to be applied */
};

/* res->forks: every branch head, "meta/N by ORIGIN (id ...)". */
static void describe_forks(const struct cnode *cn, uint64_t max, struct recover_result *res)
{
	size_t k0 = 0;
	for (uint64_t k = max; k >= 1 && k0 < sizeof(res->forks) - 80; k--) {
		if (cn[k].children)
			continue;
		char id[2 * REPO_WRITER_LEN + 1];
		repo_writer_hex(cn[k].h.writer, id);
		k0 += snprintf(res->forks + k0, sizeof(res->forks) - k0, "%smeta/%016llx by %s%s%.16s%s",
			       k0 ? "; " : "", (unsigned long long)k,
			       cn[k].h.v1 ? "an older tresor" : cn[k].h.origin,
			       cn[k].h.v1 ? "" : " (id ", cn[k].h.v1 ? "" : id,
			       cn[k].h.v1 ? "" : ")");
	}
}

/*
 * Which deltas to apply: the path from the newest one back to the first,
 * along the object each continues.  Objects off that path mean two stores
 * continued the chain (a fork), unless a takeover delta on the path comes
 * after them (the store that took over left them on purpose).  A fork is
 * refused unless ro->chain names the branch: never a mix of two.  Only
 * headers are read here (small ranged reads).
 */
static int plan_chain(struct remote *r, const struct store_keys *keys,
		      const struct recover_opts *ro, struct cnode **out, uint64_t *max,
		      uint64_t *tip, struct recover_result *res)
{
	int err = repo_meta_max(r, max);
	if (err)
		return err;
	if (!*max) {
		repo_meta_key(1, res->failed, sizeof(res->failed));
		return -ENODATA;	/* a marker and a key but no metadata */
	}
	struct cnode *cn = calloc(*max + 1, sizeof(*cn));
	if (!cn)
		return -ENOMEM;
	*out = cn;
	for (uint64_t k = 1; k <= *max && !err; k++) {
		err = repo_read_meta_hdr(r, keys, k, &cn[k].h);
		if (err == -ENOENT)
			err = -ENODATA;	/* a gap: a later delta exists */
		uint64_t p = cn[k].h.v1 ? k - 1 : cn[k].h.parent;
		if (!err && p >= k)
			err = -EBADMSG;
		if (err) {
			repo_meta_key(k, res->failed, sizeof(res->failed));
			break;
		}
		cn[k].parent = p;
		cn[k].linked = !p || cn[k].h.v1 || cn[p].h.v1 ||
			       !memcmp(cn[k].h.parent_hash, cn[p].h.hash, REPO_HASH_LEN);
		if (cn[k].linked && p)
			cn[p].children++;
	}
	if (err)
		return err;
	*tip = *max;
	if (ro->chain) {
		*tip = 0;
		for (uint64_t k = *max; k >= 1 && !*tip; k--) {
			char id[2 * REPO_WRITER_LEN + 1];
			repo_writer_hex(cn[k].h.writer, id);
			if (!cn[k].h.v1 && !strncasecmp(id, ro->chain, strlen(ro->chain)))
				*tip = k;
		}
		if (!*tip) {
			describe_forks(cn, *max, res);
			return -ESRCH;
		}
	}
	uint64_t takeover = 0;
	for (uint64_t k = *tip; k && !err; k = cn[k].parent) {
		cn[k].on_path = 1;
		if ((cn[k].h.flags & REPO_META_TAKEOVER) && k > takeover)
			takeover = k;
		if (!cn[k].linked)
			err = -ENOTUNIQ;	/* it continues an object not there */
	}
	for (uint64_t k = 1; k <= *max && !err && !ro->chain; k++)
		if (!cn[k].on_path && k > takeover)
			err = -ENOTUNIQ;
	if (err)
		describe_forks(cn, *max, res);
	return err;
}

static int get_whole(struct remote *r, const char *key, uint8_t **buf,
		     size_t *len)
{
	return remote_get(r, key, 0, 0, buf, len);
}

struct want {
	uint8_t name[PACK_NAME_LEN];
	uint64_t size;
};

struct wants {
	const char *dir;
	struct want *v;
	size_t n, cap;
	uint64_t total;
};

/* Note pack p unless dir holds it (fetched by an earlier run). */
static int want_add(void *arg, const struct remote_cfg_pack *p)
{
	struct wants *w = arg;
	char hex[PACK_NAME_LEN * 2 + 1], path[PATH_MAX + 256];
	hex_encode(p->name, PACK_NAME_LEN, hex);
	snprintf(path, sizeof(path), "%s/%s/%.2s/%s", w->dir, STORE_PACK_DIR, hex, hex);
	struct stat sb;
	if (!stat(path, &sb) && sb.st_size == p->val)
		return 0;
	struct want *v = buf_grow(w->v, &w->cap, w->n + 1, sizeof(*w->v));
	if (!v)
		return -ENOMEM;
	w->v = v;
	memcpy(v[w->n].name, p->name, PACK_NAME_LEN);
	v[w->n++].size = p->val;
	w->total += p->val;
	return 0;
}

/* Fetch every finished pack the index names that dir does not hold yet
 * (verified, installed atomically): the body of a full recovery and of
 * the fill of a lazy one.  Resumable: packs already here are kept. */
static int fetch_missing(struct remote *r, const struct store_keys *keys,
			 const char *dir, struct index *ix, int64_t lacking,
			 const struct recover_opts *ro, struct recover_result *res)
{
	/* lacking > 0: only packs remote id lacking is not known to hold. */
	struct wants w = { .dir = dir };
	int err = remote_cfg_packs(ix, lacking > 0 ? REMOTE_PACKS_LACKING : REMOTE_PACKS_ALL,
				   lacking, 0, want_add, &w);
	struct want *ws = w.v;
	size_t n = w.n;
	uint64_t total = w.total, done = 0;
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

static int key_object_cb(void *arg, const char *key, uint64_t size)
{
	(void)size;
	struct { char names[16][64]; int n; } *l = arg;
	if (!strncmp(key, "keys/key-", 9) && strlen(key) < 64 && l->n < 16)
		snprintf(l->names[l->n++], 64, "%s", key);
	return 0;
}

/* The key file that opens with the passphrase, written to path: keys/key
 * (the first), else a later one (keys/key-HASH, written by a push after
 * a passphrase change; FORMAT.md §15).  -EKEYREJECTED if none does. */
static int recover_key(struct remote *r, const char *path, const char *pass,
		       size_t passlen, struct store_keys *keys)
{
	uint8_t *buf;
	size_t len;
	int err = get_whole(r, "keys/key", &buf, &len);
	if (err)
		return err;
	err = write_file_atomic(path, buf, len, 0600);
	free(buf);
	if (!err)
		err = keyfile_open(path, pass, passlen, keys);
	if (err != -EKEYREJECTED)
		return err;
	struct { char names[16][64]; int n; } later = { .n = 0 };
	int lerr = remote_list(r, "keys/", key_object_cb, &later);
	if (lerr && lerr != -ENOENT)
		return lerr;
	for (int i = 0; i < later.n; i++) {
		int e = get_whole(r, later.names[i], &buf, &len);
		if (e == -ENOENT)
			continue;
		if (e)
			return e;
		e = write_file_atomic(path, buf, len, 0600);
		free(buf);
		if (!e)
			e = keyfile_open(path, pass, passlen, keys);
		if (e != -EKEYREJECTED && e != -EBADMSG)
			return e;
	}
	return -EKEYREJECTED;
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
	struct store_keys keys;
	snprintf(path, sizeof(path), "%s/%s", tmp, STORE_KEY_FILE);
	err = recover_key(r, path, pass, passlen, &keys);
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
	struct cnode *cn = NULL;
	uint64_t max = 0, tip = 0;
	err = plan_chain(r, &keys, ro, &cn, &max, &tip, res);
	for (uint64_t k = 1; k <= max && !err; k++) {
		if (!cn[k].on_path)
			continue;
		char key[64];
		repo_meta_key(k, key, sizeof(key));
		uint8_t *d = NULL;
		size_t dl = 0;
		struct repo_meta_hdr h;
		err = get_whole(r, key, &buf, &len);
		if (err == -ENOENT)
			err = -ENODATA;
		if (!err)
			err = repo_open_delta(&keys, k, buf, len, &h, &d, &dl);
		/* the object read whole must be the one planned with */
		if (!err && (h.v1 != cn[k].h.v1 || memcmp(h.hash, cn[k].h.hash, REPO_HASH_LEN)))
			err = -EBADMSG;
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
	res->tip = tip;
	/* Names are used as path components by mounts and restores: a
	 * damaged or hostile history must not name "..", "." or "a/b". */
	if (!err)
		err = ro->check_index ? ro->check_index(ix, res->failed, sizeof(res->failed))
				      : -EINVAL;
	/* The packs the index names, verified (lazy: later, on demand). */
	if (!err && !ro->lazy)
		err = fetch_missing(r, &keys, tmp, ix, 0, ro, res);
	if (!err)
		err = index_begin(ix);
	if (!err)
		err = index_meta_set(ix, "lazy", ro->lazy ? 1 : 0);
	if (!err)
		err = index_commit(ix);
	/* Keep pushing to where we came from: from the delta recovered, which
	 * the first push continues only if it is still the newest there. */
	if (!err) {
		struct remote_cfg c = { 0 };
		snprintf(c.name, sizeof(c.name), "origin");
		snprintf(c.url, sizeof(c.url), "%s", url);
		if (opt)
			c.opt = *opt;
		err = index_begin(ix);
		if (!err)
			err = remote_cfg_add(ix, &c);
		if (err == -EEXIST)
			err = 0;
		if (!err)
			err = remote_cfg_find(ix, "origin", &c);
		if (!err) {
			c.next_meta = tip + 1;
			c.has_tip = !cn[tip].h.v1;
			memcpy(c.tip, cn[tip].h.hash, REPO_HASH_LEN);
			c.full_next = 0;
			err = remote_cfg_set_chain(ix, &c);
		}
		/* origin holds every pack we just fetched. */
		if (!err)
			err = remote_cfg_note_all_held(ix, c.id);
		if (!err)
			err = index_commit(ix);
		/* Before the store is in place: a rerun writes another
		 * takeover after this one, which is harmless. */
		if (!err && ro->takeover) {
			int e = push_claim(ix, &keys, dir, &c, r, tip, &cn[tip].h,
					   res->claim_error, sizeof(res->claim_error));
			if (!e) {
				res->claimed = c.next_meta - 1;
				err = remote_cfg_set_chain(ix, &c);
			}
		}
	}
	free(cn);
	index_close(ix);
	if (!err && rename(tmp, dir))
		err = -errno;
	if (!err)
		err = fsync_parent_dir(dir);
out_keys:
	secure_wipe(&keys, sizeof(keys));
	return err;
}
