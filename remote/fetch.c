/*
 * fetch.c - packs from a remote copy (fetch.h): download, verify and
 * install packs; the fetcher behind a store's read path for packs that
 * are missing (lazy recovery) or bad (healing).
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../chunker/buf.h"
#include "fetch.h"
#include "../chunker/util.h"

/* Every record of a pack must open: a pack is not taken on its footer's
 * word (AES-GCM runs at GB/s; the download or disk read is the cost). */
static int verify_records(const struct store_keys *keys,
			  const struct pack_entry *es, size_t ne,
			  const uint8_t *buf, size_t len)
{
	int err = 0;
	uint8_t *raw = NULL;
	size_t cap = 0;
	for (size_t k = 0; k < ne && !err; k++) {
		if (es[k].off > len || es[k].slen > len - es[k].off) {
			err = -EBADMSG;
			break;
		}
		uint8_t *p = buf_grow(raw, &cap, es[k].rlen + 1, 1);
		if (!p) {
			err = -ENOMEM;
			break;
		}
		raw = p;
		err = chunk_open(keys, es[k].id, buf + es[k].off, es[k].slen,
				 es[k].flags, raw, es[k].rlen);
	}
	free(raw);
	return err;
}

/* Write buf to a new file at tmp (fsync'd).  */
static int write_new(const char *tmp, const uint8_t *buf, size_t len)
{
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int err = pwrite_full(fd, buf, len, 0);
	if (!err && fdatasync(fd))
		err = -errno;
	if (close(fd) && !err)
		err = -errno;
	return err;
}

/* A temp name unique across the threads and processes of this host. */
static void temp_name(char *out, size_t size, const char *base)
{
	snprintf(out, size, "%s.fetch-%d-%llx", base, (int)getpid(),
		 (unsigned long long)now_ns());
}

/* Footer from the file at path, records from buf (the same bytes). */
static int verify_pack(const struct store_keys *keys, const char *path,
		       const uint8_t name[PACK_NAME_LEN], const uint8_t *buf,
		       size_t len)
{
	struct pack_entry *es = NULL;
	size_t ne = 0;
	int err = pack_read_footer(path, name, keys, &es, &ne);
	if (err == -EIO || err == -ENOENT)
		err = err == -EIO ? -EBADMSG : err;
	if (!err)
		err = verify_records(keys, es, ne, buf, len);
	free(es);
	return err;
}

int pack_verify_bytes(const struct store_keys *keys, const char *tmpdir,
		      const uint8_t name[PACK_NAME_LEN], const uint8_t *buf,
		      size_t len)
{
	char base[PATH_MAX], tmp[PATH_MAX + 64];
	snprintf(base, sizeof(base), "%s/.verify", tmpdir);
	temp_name(tmp, sizeof(tmp), base);
	int err = write_new(tmp, buf, len);
	if (!err)
		err = verify_pack(keys, tmp, name, buf, len);
	unlink(tmp);
	return err;
}

int pack_verify_file(const struct store_keys *keys, const char *path,
		     const uint8_t name[PACK_NAME_LEN])
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int err = read_file(path, &buf, &len);
	if (!err)
		err = verify_pack(keys, path, name, buf, len);
	free(buf);
	return err;
}

/* Installed only whole and verified (I4, docs/DESIGN.md). */
int pack_fetch_install(struct remote *r, const struct store_keys *keys,
		       const char *dir, const uint8_t name[PACK_NAME_LEN],
		       uint64_t size, uint64_t *bytes)
{
	char key[128], hex[PACK_NAME_LEN * 2 + 1];
	char path[PATH_MAX], tmp[PATH_MAX + 64];
	repo_pack_key(name, key, sizeof(key));
	hex_encode(name, PACK_NAME_LEN, hex);
	uint8_t *buf = NULL;
	size_t len = 0;
	int err = remote_get(r, key, 0, 0, &buf, &len);
	if (err == -ENOENT)
		return -ENODATA;
	if (err)
		return err;
	if (size && len != size) {
		free(buf);
		return -EBADMSG;	/* truncated, or another object */
	}
	snprintf(path, sizeof(path), "%s/%s/%.2s", dir, STORE_PACK_DIR, hex);
	if (mkdir(path, 0700) && errno != EEXIST) {
		free(buf);
		return -errno;
	}
	snprintf(path, sizeof(path), "%s/%s/%.2s/%s", dir, STORE_PACK_DIR, hex, hex);
	temp_name(tmp, sizeof(tmp), path);
	err = write_new(tmp, buf, len);
	if (!err)
		err = verify_pack(keys, tmp, name, buf, len);
	if (!err && rename(tmp, path))
		err = -errno;
	if (err)
		unlink(tmp);
	else
		err = fsync_parent_dir(path);
	free(buf);
	if (!err && bytes)
		*bytes = len;
	return err;
}

/* ---- the fetcher ---- */

struct want {
	uint8_t name[PACK_NAME_LEN];
	int bad;		/* a local file existed and failed */
};

struct pack_size {
	uint8_t name[PACK_NAME_LEN];
	uint64_t size;
};

/*
 * Locking: rd_lock serialises the readers' remote (rd); lock guards the
 * queue, the seen set, the fill cursor and the stats.  The background
 * thread owns its remote alone.  lock may be taken while rd_lock is held
 * (a synchronous fetch counting its bytes), never the reverse; the chunk
 * cache's lock (store_pack_replaced) comes after both.
 */
struct pack_fetcher {
	struct store *st;
	struct remote_cfg cfg;		/* opt points into cfg.strs */
	char label[128];
	enum fetch_mode mode;
	pthread_mutex_t rd_lock;
	struct remote *rd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct want *q;			/* packs to fetch whole, FIFO */
	size_t nq, capq;
	struct want *seen;		/* queued or fetched (or failed): not again */
	size_t nseen, capseen;
	struct pack_size *sizes;	/* finished packs at attach, by name */
	size_t nsizes, sizes_cap;
	size_t *fill;			/* indices into sizes not local at attach */
	size_t nfill, fill_pos;
	int filling;			/* -o fill: fetch every pack not here */
	uint64_t fill_failed;		/* fetches of the fill that failed */
	int filled;			/* 1: the fill is complete, not yet taken */
	int (*wanted)(void *arg, const uint8_t name[PACK_NAME_LEN]);
	void *wanted_arg;
	int stop;
	pthread_t thread;
	int have_thread;
	struct fetch_stats stats;
};

static int name_cmp(const void *a, const void *b)
{
	return memcmp(a, b, PACK_NAME_LEN);
}

static uint64_t pack_size_of(const struct pack_fetcher *f,
			     const uint8_t name[PACK_NAME_LEN])
{
	const struct pack_size *p = bsearch(name, f->sizes, f->nsizes,
					    sizeof(*f->sizes), name_cmp);
	return p ? p->size : 0;	/* a pack newer than the fetcher: unchecked */
}

/* 1 if name is in seen (lock held). */
static int seen_has(struct pack_fetcher *f, const uint8_t name[PACK_NAME_LEN])
{
	for (size_t i = 0; i < f->nseen; i++)
		if (!memcmp(f->seen[i].name, name, PACK_NAME_LEN))
			return 1;
	return 0;
}

static void seen_add(struct pack_fetcher *f, const uint8_t name[PACK_NAME_LEN])
{
	void *p = buf_grow(f->seen, &f->capseen, f->nseen + 1, sizeof(*f->seen));
	if (p) {
		f->seen = p;
		memcpy(f->seen[f->nseen++].name, name, PACK_NAME_LEN);
	}
}

/* Fetch one pack whole with r and log what happened. */
static int fetch_one(struct pack_fetcher *f, struct remote *r,
		     const uint8_t name[PACK_NAME_LEN], int bad)
{
	char hex[PACK_NAME_LEN * 2 + 1];
	hex_encode(name, PACK_NAME_LEN, hex);
	uint64_t bytes = 0;
	int err = pack_fetch_install(r, &f->st->keys, f->st->dir, name,
				     pack_size_of(f, name), &bytes);
	pthread_mutex_lock(&f->lock);
	if (err) {
		f->stats.failed++;
	} else {
		f->stats.packs++;
		f->stats.bytes += bytes;
		f->stats.healed += bad;
	}
	pthread_mutex_unlock(&f->lock);
	if (!err) {
		store_pack_replaced(f->st, name);
		if (bad)
			tlog(LOG_WARN, "%s: healed pack %s from remote '%s' (the local copy was damaged or unreadable)",
			     f->label, hex, f->cfg.name);
		else
			tlog(f->mode == FETCH_SYNC ? LOG_DEBUG : LOG_INFO, "%s: fetched pack %s from remote '%s' (%llu bytes)",
			     f->label, hex, f->cfg.name, (unsigned long long)bytes);
	} else {
		tlog(LOG_ERR, "%s: cannot fetch pack %s from remote '%s': %s",
		     f->label, hex, f->cfg.name,
		     err == -EBADMSG ? "the remote copy fails verification (damaged or tampered with)"
		     : err == -ENODATA ? "the remote does not have it"
		     : *remote_error(r) ? remote_error(r) : strerror(-err));
	}
	return err;
}

static int file_exists(struct pack_fetcher *f, const uint8_t name[PACK_NAME_LEN])
{
	char *path = store_pack_path(f->st, name);
	struct stat sb;
	int r = path && !stat(path, &sb);
	free(path);
	return r;
}

static void *fill_thread(void *arg)
{
	struct pack_fetcher *f = arg;
	struct remote *bg = NULL;
	if (remote_open(f->cfg.url, &f->cfg.opt, &bg)) {
		tlog(LOG_ERR, "%s: cannot open remote '%s' for fetching packs",
		     f->label, f->cfg.name);
		return NULL;
	}
	pthread_mutex_lock(&f->lock);
	while (!f->stop) {
		struct want w;
		if (f->nq) {
			w = f->q[0];
			memmove(f->q, f->q + 1, (f->nq - 1) * sizeof(*f->q));
			f->nq--;
		} else if (f->fill_pos < f->nfill) {
			memcpy(w.name, f->sizes[f->fill[f->fill_pos++]].name, PACK_NAME_LEN);
			w.bad = 0;
			if (seen_has(f, w.name))
				continue;
			seen_add(f, w.name);
		} else {
			if (f->filling && !f->fill_failed) {
				f->filled = 1;	/* every pack is here now */
				f->filling = 0;
			}
			pthread_cond_wait(&f->cond, &f->lock);
			continue;
		}
		int (*wanted)(void *, const uint8_t *) = f->wanted;
		void *warg = f->wanted_arg;
		pthread_mutex_unlock(&f->lock);
		int err = 0;
		if (w.bad || (!file_exists(f, w.name) && (!wanted || wanted(warg, w.name))))
			err = fetch_one(f, bg, w.name, w.bad);
		pthread_mutex_lock(&f->lock);
		f->fill_failed += err != 0;
	}
	pthread_mutex_unlock(&f->lock);
	remote_close(bg);
	return NULL;
}

/* Queue name for a whole fetch unless it was seen before.  Returns 1 if
 * queued now (lock not held). */
static int enqueue(struct pack_fetcher *f, const uint8_t name[PACK_NAME_LEN],
		   int bad)
{
	int queued = 0;
	pthread_mutex_lock(&f->lock);
	void *nq = seen_has(f, name) ? NULL
		   : buf_grow(f->q, &f->capq, f->nq + 1, sizeof(*f->q));
	if (nq) {
		f->q = nq;
		memcpy(f->q[f->nq].name, name, PACK_NAME_LEN);
		f->q[f->nq++].bad = bad;
		seen_add(f, name);
		pthread_cond_signal(&f->cond);
		queued = 1;
	}
	pthread_mutex_unlock(&f->lock);
	return queued;
}

int fetcher_load(struct pack_fetcher *f, const struct chunk_ref *ref,
		 int local_err, uint8_t **sealed)
{
	char hex[PACK_NAME_LEN * 2 + 1];
	hex_encode(ref->pack, PACK_NAME_LEN, hex);
	int bad = local_err != -ENOENT;
	if (f->mode == FETCH_SYNC) {
		pthread_mutex_lock(&f->lock);
		int failed = seen_has(f, ref->pack);
		pthread_mutex_unlock(&f->lock);
		/* Tried already: read the local file once more (another thread
		 * may have just installed it), else the local error stands. */
		if (failed)
			return file_exists(f, ref->pack) ? 1 : -ENODATA;
		if (bad)
			tlog(LOG_WARN, "%s: pack %s: %s locally; fetching it from remote '%s'",
			     f->label, hex, local_err == -EBADMSG ? "fails authentication"
			     : strerror(-local_err), f->cfg.name);
		pthread_mutex_lock(&f->rd_lock);
		int err = !bad && file_exists(f, ref->pack) ? 0
			  : fetch_one(f, f->rd, ref->pack, bad);
		pthread_mutex_unlock(&f->rd_lock);
		/* Once per pack: after a failure the local error stands; after
		 * a success a pack failing again is not fetched in a loop. */
		pthread_mutex_lock(&f->lock);
		seen_add(f, ref->pack);
		pthread_mutex_unlock(&f->lock);
		return err ? err : 1;
	}
	char key[128];
	repo_pack_key(ref->pack, key, sizeof(key));
	uint8_t *buf = NULL;
	size_t got = 0;
	pthread_mutex_lock(&f->rd_lock);
	int err = remote_get(f->rd, key, ref->e.off, ref->e.slen, &buf, &got);
	pthread_mutex_unlock(&f->rd_lock);
	if (!err && got != ref->e.slen)
		err = -EBADMSG;
	if (err) {
		free(buf);
		tlog(LOG_ERR, "%s: pack %s: cannot read a record from remote '%s': %s",
		     f->label, hex, f->cfg.name, err == -ENOENT ? "no such object"
		     : strerror(-err));
		return err == -ENOENT ? -ENODATA : err;
	}
	pthread_mutex_lock(&f->lock);
	f->stats.records++;
	f->stats.bytes += got;
	pthread_mutex_unlock(&f->lock);
	if (enqueue(f, ref->pack, bad) && bad)
		tlog(LOG_WARN, "%s: pack %s: %s locally; reading from remote '%s' and healing it",
		     f->label, hex, local_err == -EBADMSG ? "fails authentication"
		     : strerror(-local_err), f->cfg.name);
	*sealed = buf;
	return 0;
}

static int size_add(void *arg, const struct remote_cfg_pack *p)
{
	struct pack_fetcher *f = arg;
	void *ns = buf_grow(f->sizes, &f->sizes_cap, f->nsizes + 1, sizeof(*f->sizes));
	if (!ns)
		return -ENOMEM;
	f->sizes = ns;
	memcpy(f->sizes[f->nsizes].name, p->name, PACK_NAME_LEN);
	f->sizes[f->nsizes++].size = p->val;
	return 0;
}

/* The finished packs' sizes, by name; fill: and which of them are not here. */
static int load_sizes(struct pack_fetcher *f, int fill)
{
	int err = remote_cfg_packs(f->st->ix, REMOTE_PACKS_ALL, 0, 0, size_add, f);
	if (err || !fill)
		return err;
	f->fill = malloc((f->nsizes ? f->nsizes : 1) * sizeof(*f->fill));
	if (!f->fill)
		return -ENOMEM;
	for (size_t i = 0; i < f->nsizes; i++)
		if (!file_exists(f, f->sizes[i].name))
			f->fill[f->nfill++] = i;
	return 0;
}

static void fetcher_free(struct pack_fetcher *f)
{
	remote_close(f->rd);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->rd_lock);
	pthread_cond_destroy(&f->cond);
	free(f->q);
	free(f->seen);
	free(f->sizes);
	free(f->fill);
	free(f);
	curl_global_cleanup();
}

static int load_for_store(struct store *st, const struct chunk_ref *ref,
			  int local_err, uint8_t **sealed)
{
	return fetcher_load(st->fetch, ref, local_err, sealed);
}

/* The remote packs are fetched from: name, else "origin", else the
 * first by name.  -ENOENT: none. */
static int fetch_pick_remote(struct index *ix, const char *name, struct remote_cfg *c)
{
	if (name && *name)
		return remote_cfg_find(ix, name, c);
	int err = remote_cfg_find(ix, "origin", c);
	if (err != -ENOENT)
		return err;
	struct remote_cfg *cs = NULL;
	size_t n = 0;
	err = remote_cfg_list(ix, &cs, &n);
	if (!err)
		err = n ? remote_cfg_find(ix, cs[0].name, c) : -ENOENT;
	free(cs);
	return err;
}

int fetch_lazy_check(struct index *ix, const char *remote_name, int probe,
		     char *name, size_t namesize, char *why, size_t whysize)
{
	int64_t lazy = 0;
	snprintf(name, namesize, "%s", remote_name && *remote_name ? remote_name : "origin");
	*why = 0;
	if (index_meta_get(ix, "lazy", &lazy) || !lazy)
		return 0;
	struct remote_cfg c;
	int err = fetch_pick_remote(ix, remote_name, &c);
	if (err) {
		snprintf(why, whysize, "%s", err == -ENOENT ? "the store has no such remote"
							    : strerror(-err));
		return err;
	}
	snprintf(name, namesize, "%s", c.name);
	/* Stored by an older tresor: relative to a directory long left. */
	const char *files[] = { c.opt.ca_file, c.opt.credentials_file, c.opt.ssh_key,
				c.opt.known_hosts, c.opt.netrc_file };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (files[i] && *files[i] && files[i][0] != '/') {
			snprintf(why, whysize, "its file %s is a relative path", files[i]);
			return -EINVAL;
		}
	/* A probe that answers in seconds: one attempt, a short timeout. */
	c.opt.no_retry = 1;
	c.opt.timeout_s = 20;
	struct remote *r = NULL;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	err = remote_open(c.url, &c.opt, &r);
	uint64_t size;
	if (!err && probe)
		err = remote_head(r, "tresor-repo", &size);
	if (err)
		snprintf(why, whysize, "%s", r && *remote_error(r) ? remote_error(r)
							   : strerror(-err));
	remote_close(r);
	curl_global_cleanup();
	return err;
}

int fetcher_attach(struct store *st, const char *remote_name,
		   const char *label, enum fetch_mode mode, int fill)
{
	struct pack_fetcher *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	f->st = st;
	f->mode = mode;
	snprintf(f->label, sizeof(f->label), "%s", label ? label : st->dir);
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->rd_lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	int err = fetch_pick_remote(st->ix, remote_name, &f->cfg);
	f->filling = fill && mode == FETCH_BACKGROUND;
	if (!err)
		err = load_sizes(f, f->filling);
	if (!err)
		err = remote_open(f->cfg.url, &f->cfg.opt, &f->rd);
	if (!err && mode == FETCH_BACKGROUND) {
		err = -pthread_create(&f->thread, NULL, fill_thread, f);
		f->have_thread = !err;
	}
	if (err) {
		fetcher_free(f);
		return err;
	}
	st->fetch = f;
	st->fetch_load = load_for_store;
	st->fetch_take_filled = fetcher_take_filled;
	return 0;
}

void fetcher_stop_thread(struct pack_fetcher *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stop = 1;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	if (f->have_thread)
		pthread_join(f->thread, NULL);
	f->have_thread = 0;
}

void fetcher_detach(struct store *st)
{
	struct pack_fetcher *f = st->fetch;
	if (!f)
		return;
	fetcher_stop_thread(f);
	st->fetch = NULL;
	st->fetch_load = NULL;
	st->fetch_take_filled = NULL;
	fetcher_free(f);
}

const char *fetcher_remote_name(const struct pack_fetcher *f)
{
	return f->cfg.name;
}

void fetcher_stats(struct pack_fetcher *f, struct fetch_stats *s)
{
	pthread_mutex_lock(&f->lock);
	*s = f->stats;
	pthread_mutex_unlock(&f->lock);
}

int fetcher_take_filled(struct pack_fetcher *f)
{
	pthread_mutex_lock(&f->lock);
	int r = f->filled;
	f->filled = 0;
	pthread_mutex_unlock(&f->lock);
	return r;
}

void fetcher_set_wanted(struct pack_fetcher *f,
			int (*wanted)(void *arg, const uint8_t name[PACK_NAME_LEN]),
			void *arg)
{
	pthread_mutex_lock(&f->lock);
	f->wanted = wanted;
	f->wanted_arg = arg;
	pthread_mutex_unlock(&f->lock);
}
