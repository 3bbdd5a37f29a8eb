/*
 * store.c - a store directory and its chunk path (see store.h).
 *
 * Layout: DIR/tresor.key, DIR/index.db (+ WAL), DIR/packs/XX/NAME where
 * NAME is the pack's 32-hex-digit random name and XX its first two digits,
 * and DIR/locks/ (the flock files of the GC, volumes and pushes).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>


#include "store.h"
#include "util.h"

/* ---- the chunk cache ---- */

#define CACHE_BUDGET (48u << 20)
#define CACHE_SLOTS 64

struct cache_slot {
	int64_t rowid;		/* 0: empty */
	uint8_t *buf;
	size_t len;
	int users;		/* readers copying out of buf */
	uint64_t tick;		/* last use, for LRU */
};

#define FD_SLOTS 16

struct chunk_cache {
	pthread_mutex_t lock;
	struct cache_slot slot[CACHE_SLOTS];
	size_t bytes;
	uint64_t tick;
	/* Open pack files: an open() per chunk read cost more than the read. */
	struct fd_slot {
		uint8_t name[PACK_NAME_LEN];
		int fd;			/* -1: empty */
		int users;
		int stale;		/* the file was replaced: no new users */
		uint64_t tick;
	} fds[FD_SLOTS];
};

static struct chunk_cache *cache_new(void)
{
	struct chunk_cache *c = calloc(1, sizeof(*c));
	if (c) {
		pthread_mutex_init(&c->lock, NULL);
		for (int i = 0; i < FD_SLOTS; i++)
			c->fds[i].fd = -1;
	}
	return c;
}

static void cache_free(struct chunk_cache *c)
{
	if (!c)
		return;
	for (int i = 0; i < CACHE_SLOTS; i++)
		free(c->slot[i].buf);
	for (int i = 0; i < FD_SLOTS; i++)
		if (c->fds[i].fd >= 0)
			close(c->fds[i].fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Find rowid and pin it; returns the slot or NULL.  Caller holds lock. */
static struct cache_slot *cache_find(struct chunk_cache *c, int64_t rowid)
{
	for (int i = 0; i < CACHE_SLOTS; i++) {
		if (c->slot[i].rowid == rowid) {
			c->slot[i].users++;
			c->slot[i].tick = ++c->tick;
			return &c->slot[i];
		}
	}
	return NULL;
}

/* Insert buf (ownership passes) and pin it; evicts least recently used
 * unpinned slots to stay within budget.  Returns the slot, or NULL if
 * nothing could be evicted (the caller then uses buf uncached). */
static struct cache_slot *cache_insert(struct chunk_cache *c, int64_t rowid,
				       uint8_t *buf, size_t len)
{
	struct cache_slot *s = cache_find(c, rowid);
	if (s)
		return s;	/* another reader got there first */
	for (;;) {
		struct cache_slot *victim = NULL, *empty = NULL;
		for (int i = 0; i < CACHE_SLOTS; i++) {
			struct cache_slot *t = &c->slot[i];
			if (!t->rowid) {
				empty = t;
				continue;
			}
			if (!t->users && (!victim || t->tick < victim->tick))
				victim = t;
		}
		if (empty && c->bytes + len <= CACHE_BUDGET) {
			empty->rowid = rowid;
			empty->buf = buf;
			empty->len = len;
			empty->users = 1;
			empty->tick = ++c->tick;
			c->bytes += len;
			return empty;
		}
		if (!victim)
			return NULL;
		c->bytes -= victim->len;
		free(victim->buf);
		memset(victim, 0, sizeof(*victim));
	}
}

/* ---- layout ---- */

void store_params_default(struct store_params *p)
{
	p->chunk_min = 256u << 10;
	p->chunk_avg = 1u << 20;
	p->chunk_max = 4u << 20;
	p->kdf.log2n = KDF_LOG2N_DEFAULT;
	p->kdf.r = 8;
	p->kdf.p = 1;
}

static char *path_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);
	if (!p)
		return NULL;
	memcpy(p, a, la);
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	return p;
}

char *store_pack_path_in(const char *dir, const uint8_t name[PACK_NAME_LEN])
{
	char hex[PACK_NAME_LEN * 2 + 1];
	hex_encode(name, PACK_NAME_LEN, hex);
	size_t n = strlen(dir) + sizeof(STORE_PACK_DIR) + 4 + sizeof(hex);
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s/%.2s/%s", dir, STORE_PACK_DIR, hex, hex);
	return p;
}

int store_lock(const char *dir, const char *name, int shared)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/locks", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	if (mkdir(path, 0700) && errno != EEXIST)
		return -errno;
	if (snprintf(path, sizeof(path), "%s/locks/%s", dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB)) {
		int err = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
		close(fd);
		return err;
	}
	return fd;
}

char *store_pack_path(const struct store *st, const uint8_t name[PACK_NAME_LEN])
{
	return store_pack_path_in(st->dir, name);
}

uint64_t store_packs_disk_bytes(const char *dir, struct index *ix)
{
	uint64_t disk = 0;
	int64_t *ids = NULL;
	size_t n = 0;
	for (int state = PACK_OPEN; state <= PACK_FINISHED; state++) {
		if (catalog_pack_list(ix, state, &ids, &n))
			continue;
		for (size_t i = 0; i < n; i++) {
			uint8_t name[PACK_NAME_LEN];
			struct stat sb;
			char *path = catalog_pack_name(ix, ids[i], name) ? NULL
				     : store_pack_path_in(dir, name);
			if (path && !stat(path, &sb))
				disk += (uint64_t)sb.st_blocks * 512;
			free(path);
		}
		free(ids);
	}
	return disk;
}

/* 1 if dir is an empty directory, 0 if it does not exist, -errno else
 * (-ENOTEMPTY if it has entries, -ENOTDIR if not a directory). */
static int dir_state(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *de;
	int r = 1;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			r = -ENOTEMPTY;
			break;
		}
	}
	closedir(d);
	return r;
}

static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Fill the new store directory tmp: key file, index, pack directory. */
static int store_populate(const char *tmp, const struct store_params *p,
			  const char *pass, size_t passlen)
{
	struct store_keys keys;
	struct fastcdc_params cdc;
	char *kpath = path_join(tmp, STORE_KEY_FILE);
	char *ipath = path_join(tmp, STORE_INDEX_FILE);
	char *ppath = path_join(tmp, STORE_PACK_DIR);
	int err = -ENOMEM;
	struct index *ix = NULL;
	if (!kpath || !ipath || !ppath)
		goto out;
	/* Validate chunk sizes before the slow key derivation. */
	uint8_t seed[32] = { 0 };
	err = fastcdc_init(&cdc, p->chunk_min, p->chunk_avg, p->chunk_max, seed);
	if (err)
		goto out;
	if (mkdir(ppath, 0700)) {
		err = -errno;
		goto out;
	}
	err = keyfile_create(kpath, pass, passlen, &p->kdf, &keys);
	secure_wipe(&keys, sizeof(keys));
	if (err)
		goto out;
	err = index_open(ipath, 1, &ix);
	if (err)
		goto out;
	err = index_begin(ix);
	if (!err)
		err = index_meta_set(ix, "format_version", STORE_FORMAT_VERSION);
	if (!err)
		err = index_meta_set(ix, "chunk_min", p->chunk_min);
	if (!err)
		err = index_meta_set(ix, "chunk_avg", p->chunk_avg);
	if (!err)
		err = index_meta_set(ix, "chunk_max", p->chunk_max);
	if (!err)
		err = index_meta_set(ix, "created", wall_ns());
	if (!err)
		err = index_commit(ix);
out:
	index_close(ix);
	free(kpath);
	free(ipath);
	free(ppath);
	return err;
}

/* Remove a directory tree made by store_populate (best effort). */
static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char *p = path_join(dir, de->d_name);
			if (!p)
				break;
			struct stat sb;
			if (!lstat(p, &sb) && S_ISDIR(sb.st_mode))
				remove_tree(p);
			else
				unlink(p);
			free(p);
		}
		closedir(d);
	}
	rmdir(dir);
}

int store_init(const char *dir_arg, const struct store_params *p,
	       const char *pass, size_t passlen)
{
	/* "x/" must build "x.init-PID" beside x, not inside it. */
	char dir[PATH_MAX];
	size_t dl = strlen(dir_arg);
	while (dl > 1 && dir_arg[dl - 1] == '/')
		dl--;
	if (dl >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, dir_arg, dl);
	dir[dl] = 0;
	int state = dir_state(dir);
	if (state < 0)
		return state;
	size_t n = strlen(dir) + 32;
	char *tmp = malloc(n);
	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, n, "%s.init-%d", dir, (int)getpid());
	if (mkdir(tmp, 0700)) {
		int err = -errno;
		free(tmp);
		return err;
	}
	int err = store_populate(tmp, p, pass, passlen);
	if (!err && rename(tmp, dir))
		err = -errno;
	if (!err)
		err = fsync_parent_dir(dir);
	if (err)
		remove_tree(tmp);
	free(tmp);
	return err;
}

int store_open_index(struct store *st)
{
	char *ipath = path_join(st->dir, STORE_INDEX_FILE);
	if (!ipath)
		return -ENOMEM;
	int err = index_open(ipath, 0, &st->ix);
	free(ipath);
	return err;
}

int store_open(const char *dir, const char *pass, size_t passlen,
	       struct store **out)
{
	struct store *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	int err = -ENOMEM;
	/* Absolute: the daemon changes its directory to / when it detaches. */
	st->dir = realpath(dir, NULL);
	if (!st->dir) {
		int e = -errno;
		free(st);
		return e == -ENOTDIR ? -ENOENT : e;
	}
	char *kpath = path_join(dir, STORE_KEY_FILE);
	char *ipath = path_join(dir, STORE_INDEX_FILE);
	st->cache = cache_new();
	if (!st->dir || !kpath || !ipath || !st->cache)
		goto fail;
	/* Check the index exists first: "no store here" beats "bad key". */
	if (access(ipath, F_OK) || access(kpath, F_OK)) {
		err = -ENOENT;
		goto fail;
	}
	err = keyfile_open(kpath, pass, passlen, &st->keys);
	if (err)
		goto fail;
	err = store_open_index(st);
	if (err)
		goto fail;
	int64_t ver, mn, avg, mx;
	err = index_meta_get(st->ix, "format_version", &ver);
	if (!err && ver > STORE_FORMAT_VERSION)
		err = -EPROTONOSUPPORT;
	if (!err)
		err = index_meta_get(st->ix, "chunk_min", &mn);
	if (!err)
		err = index_meta_get(st->ix, "chunk_avg", &avg);
	if (!err)
		err = index_meta_get(st->ix, "chunk_max", &mx);
	if (err == -ENOENT)
		err = -EUCLEAN;
	if (!err)
		err = fastcdc_init(&st->cdc, mn, avg, mx, st->keys.gear);
	if (err)
		goto fail;
	st->pack_target = STORE_PACK_TARGET;
	/* Test knob: small packs make the crash torture seal many of them. */
	const char *pt = getenv("TRESOR_TEST_PACK_TARGET");
	if (pt && strtoull(pt, NULL, 10) > 0)
		st->pack_target = strtoull(pt, NULL, 10);
	st->zlevel = 3;
	free(kpath);
	free(ipath);
	*out = st;
	return 0;
fail:
	free(kpath);
	free(ipath);
	index_close(st->ix);
	cache_free(st->cache);
	free(st->dir);
	secure_wipe(&st->keys, sizeof(st->keys));
	free(st);
	return err;
}

/* Finish the open pack (if any) and mark it so in the index. */
static int store_finish_pack(struct store *st)
{
	if (!st->pw)
		return 0;
	char *path = store_pack_path(st, pack_name(st->pw));
	if (!path)
		return -ENOMEM;
	int err = pack_finish(st->pw, &st->keys);
	st->pw = NULL;
	struct stat sb;
	if (!err && stat(path, &sb))
		err = -errno;
	free(path);
	if (err)
		return err;	/* an orphan now: the next open finishes it */
	/* The index may say "finished" only after the file is. */
	err = index_begin(st->ix);
	if (!err)
		err = catalog_pack_finished(st->ix, st->pw_rowid, sb.st_size);
	return err;
}

int store_close(struct store *st)
{
	if (!st)
		return 0;
	int err = 0;
	if (st->pw) {
		/* Records must be durable before the footer lists them. */
		err = pack_sync(st->pw);
		if (!err)
			err = index_commit(st->ix);
		int e2 = store_finish_pack(st);
		err = err ? err : e2;
	}
	int e3 = index_commit(st->ix);
	err = err ? err : e3;
	index_close(st->ix);
	cache_free(st->cache);
	free(st->dir);
	secure_wipe(&st->keys, sizeof(st->keys));
	free(st);
	return err;
}

/* Data before the index that names it (I1, docs/DESIGN.md). */
int store_commit(struct store *st)
{
	if (!index_in_tx(st->ix))
		return 0;
	if (st->pw) {
		int err = pack_sync(st->pw);
		if (err)
			return err;
	}
	return index_commit(st->ix);
}

/* ---- chunks ---- */

void store_chunk_id(const struct store *st, const void *data, size_t len,
		    uint8_t id[CHUNK_ID_LEN])
{
	chunk_id_compute(&st->keys, data, len, id);
}

int store_seal_chunk(const struct store *st, const uint8_t id[CHUNK_ID_LEN],
		     const void *data, size_t len, struct sealed_chunk *sc,
		     struct chunk_sealer *cs)
{
	sc->buf = malloc(chunk_seal_bound(len));
	if (!sc->buf)
		return -ENOMEM;
	memcpy(sc->e.id, id, CHUNK_ID_LEN);
	sc->e.rlen = len;
	sc->e.off = 0;
	int err = chunk_seal(&st->keys, id, data, len, st->zlevel, sc->buf,
			     &sc->e.slen, &sc->e.flags, cs);
	if (err) {
		free(sc->buf);
		sc->buf = NULL;
	}
	return err;
}

int store_chunk_lookup(struct store *st, const uint8_t id[CHUNK_ID_LEN],
		       int64_t *rowid)
{
	struct chunk_loc c;
	int err = catalog_chunk_find(st->ix, id, &c);
	if (!err)
		*rowid = c.rowid;
	return err;
}

/* Start a new pack: random name, file, index row. */
static int store_new_pack_named(struct store *st,
				const uint8_t name[PACK_NAME_LEN]);

/* Start a new pack with a random name. */
static int store_new_pack(struct store *st)
{
	uint8_t name[PACK_NAME_LEN];
	int err = random_bytes(name, sizeof(name));
	return err ? err : store_new_pack_named(st, name);
}

int store_new_gc_pack(struct store *st, uint8_t name[PACK_NAME_LEN])
{
	int err = random_bytes(name, PACK_NAME_LEN);
	if (err)
		return err;
	/* The intent first, committed: if we die before the rewrite
	 * commits, the next GC removes the file through pack_trash. */
	err = index_begin(st->ix);
	if (!err)
		err = catalog_trash_add(st->ix, name, 0);
	if (!err)
		err = index_commit(st->ix);
	if (!err)
		err = index_begin(st->ix);
	return err ? err : store_new_pack_named(st, name);
}

static int store_new_pack_named(struct store *st,
				const uint8_t name[PACK_NAME_LEN])
{
	int err = 0;
	char *path = store_pack_path(st, name);
	if (!path)
		return -ENOMEM;
	/* packs/XX/ may not exist yet. */
	char *slash = strrchr(path, '/');
	*slash = 0;
	if (mkdir(path, 0700) == 0) {
		/* A new packs/XX/ must survive power loss with its packs. */
		err = fsync_parent_dir(path);
	} else if (errno != EEXIST) {
		err = -errno;
	}
	if (err) {
		free(path);
		return err;
	}
	*slash = '/';
	err = pack_create(path, name, &st->pw);
	free(path);
	if (err)
		return err;
	err = catalog_pack_insert(st->ix, name, &st->pw_rowid);
	if (err) {
		pack_abandon(st->pw);
		st->pw = NULL;
	}
	return err;
}

/*
 * New data is refused with ENOSPC while less than a reserve would be left
 * (2 % of the store's filesystem, at least a pack and 1 MiB so that the GC
 * can always rewrite one pack, at most that or 64 MiB), so a full disk fails
 * writes cleanly and keeps room for what must still work there: index
 * commits, pack footers, snapshots, and the GC that prune runs to give
 * space back (it moves chunks with store_chunk_move, not through here).
 */
static int store_space_check(struct store *st, uint64_t len)
{
	struct statvfs sv;
	if (statvfs(st->dir, &sv))
		return 0;	/* cannot tell: let the write itself decide */
	uint64_t total = (uint64_t)sv.f_blocks * sv.f_frsize;
	uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	uint64_t least = st->pack_target + (1u << 20);
	uint64_t reserve = total / 50;
	if (reserve > (64u << 20))
		reserve = 64u << 20;
	if (reserve < least)
		reserve = least;
	return avail < len + reserve ? -ENOSPC : 0;
}

int store_chunk_add(struct store *st, const struct sealed_chunk *sc,
		    int64_t *rowid)
{
	struct chunk_loc c;
	int err = catalog_chunk_find(st->ix, sc->e.id, &c);
	if (!err) {
		*rowid = c.rowid;
		return 0;
	}
	if (err != -ENOENT)
		return err;
	if ((err = store_space_check(st, sc->e.slen)))
		return err;
	if (!st->pw && (err = store_new_pack(st)))
		return err;
	c.e = sc->e;
	err = pack_append(st->pw, &c.e, sc->buf);
	if (err)
		return err;
	c.pack = st->pw_rowid;
	err = catalog_chunk_insert(st->ix, &c);
	if (err)
		return err;
	*rowid = c.rowid;
	if (pack_size(st->pw) >= st->pack_target)
		err = store_finish_pack(st);
	return err;
}

int store_put(struct store *st, const void *data, size_t len, int64_t *rowid)
{
	uint8_t id[CHUNK_ID_LEN];
	store_chunk_id(st, data, len, id);
	int err = store_chunk_lookup(st, id, rowid);
	if (err != -ENOENT)
		return err;
	struct sealed_chunk sc;
	err = store_seal_chunk(st, id, data, len, &sc, NULL);
	if (err)
		return err;
	err = store_chunk_add(st, &sc, rowid);
	free(sc.buf);
	return err;
}

int store_chunk_ref(struct store *st, int64_t rowid, struct chunk_ref *ref)
{
	struct chunk_loc c;
	int err = catalog_chunk_get(st->ix, rowid, &c);
	if (err)
		return err == -ENOENT ? -EUCLEAN : err;
	ref->rowid = rowid;
	ref->e = c.e;
	return catalog_pack_name(st->ix, c.pack, ref->pack);
}

/* Read and open one chunk into a new buffer. */
/* A pinned read-only fd of pack name (from the fd cache, opening it if
 * needed); give it back with pack_fd_put.  Returns the slot or NULL with
 * *err set. */
static struct fd_slot *pack_fd_get(struct store *st,
				   const uint8_t name[PACK_NAME_LEN], int *err)
{
	struct chunk_cache *c = st->cache;
	*err = 0;
	pthread_mutex_lock(&c->lock);
	struct fd_slot *hit = NULL, *victim = NULL;
	for (int i = 0; i < FD_SLOTS; i++) {
		struct fd_slot *f = &c->fds[i];
		if (f->fd >= 0 && !f->stale && !memcmp(f->name, name, PACK_NAME_LEN)) {
			hit = f;
			break;
		}
		if (!f->users && (!victim || f->fd < 0 ||
				  (victim->fd >= 0 && f->tick < victim->tick)))
			victim = f;
	}
	if (hit) {
		hit->users++;
		hit->tick = ++c->tick;
		pthread_mutex_unlock(&c->lock);
		return hit;
	}
	pthread_mutex_unlock(&c->lock);
	char *path = store_pack_path(st, name);
	if (!path) {
		*err = -ENOMEM;
		return NULL;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	*err = fd < 0 ? -errno : 0;
	free(path);
	if (fd < 0)
		return NULL;
	pthread_mutex_lock(&c->lock);
	/* Re-pick a victim: others may have changed the table meanwhile. */
	victim = NULL;
	for (int i = 0; i < FD_SLOTS; i++) {
		struct fd_slot *f = &c->fds[i];
		if (!f->users && (!victim || f->fd < 0 ||
				  (victim->fd >= 0 && f->tick < victim->tick)))
			victim = f;
	}
	if (!victim) {
		pthread_mutex_unlock(&c->lock);
		close(fd);
		*err = -EMFILE;
		return NULL;
	}
	if (victim->fd >= 0)
		close(victim->fd);
	memcpy(victim->name, name, PACK_NAME_LEN);
	victim->fd = fd;
	victim->users = 1;
	victim->tick = ++c->tick;
	pthread_mutex_unlock(&c->lock);
	return victim;
}

static void pack_fd_put(struct store *st, struct fd_slot *f)
{
	pthread_mutex_lock(&st->cache->lock);
	if (!--f->users && f->stale) {
		close(f->fd);
		f->fd = -1;
		f->stale = 0;
	}
	pthread_mutex_unlock(&st->cache->lock);
}

/* Read and open one chunk from its local pack into raw. */
static int chunk_load_local(struct store *st, const struct chunk_ref *ref,
			    uint8_t *raw)
{
	int err = 0;
	struct fd_slot *f = pack_fd_get(st, ref->pack, &err);
	if (!f)
		return err;
	uint8_t *sealed = malloc(ref->e.slen);
	if (!sealed)
		err = -ENOMEM;
	if (!err)
		err = pread_full(f->fd, sealed, ref->e.slen, ref->e.off);
	pack_fd_put(st, f);
	if (!err)
		err = chunk_open(&st->keys, ref->e.id, sealed, ref->e.slen,
				 ref->e.flags, raw, ref->e.rlen);
	free(sealed);
	return err;
}

/* Per thread, not shared: whether this thread's reads may wait for the
 * fetch hook (store_defer_fetches). */
static _Thread_local int defer_fetches;

void store_defer_fetches(int on)
{
	defer_fetches = on;
}

/* Read and open one chunk into a new buffer.  A pack missing or bad here
 * is asked of the fetcher (a remote) if the store has one: its bytes are
 * used only if they authenticate, like local ones. */
static int chunk_load(struct store *st, const struct chunk_ref *ref,
		      uint8_t **out)
{
	uint8_t *raw = malloc(ref->e.rlen ? ref->e.rlen : 1);
	if (!raw)
		return -ENOMEM;
	int err = chunk_load_local(st, ref, raw);
	if (err && err != -ENOMEM && st->fetch_load && defer_fetches)
		err = -EWOULDBLOCK;	/* read again off this thread */
	else if (err && err != -ENOMEM && st->fetch_load) {
		uint8_t *sealed = NULL;
		int r = st->fetch_load(st, ref, err, &sealed);
		if (r == 1)
			err = chunk_load_local(st, ref, raw);
		else if (r == 0)
			err = chunk_open(&st->keys, ref->e.id, sealed, ref->e.slen,
					 ref->e.flags, raw, ref->e.rlen);
		free(sealed);
	}
	if (err) {
		free(raw);
		return err;
	}
	*out = raw;
	return 0;
}

void store_pack_replaced(struct store *st, const uint8_t name[PACK_NAME_LEN])
{
	struct chunk_cache *c = st->cache;
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < FD_SLOTS; i++) {
		struct fd_slot *f = &c->fds[i];
		if (f->fd < 0 || memcmp(f->name, name, PACK_NAME_LEN))
			continue;
		if (!f->users) {
			close(f->fd);
			f->fd = -1;
		} else {
			f->stale = 1;	/* closed by its last user */
		}
		memset(f->name, 0, PACK_NAME_LEN);
	}
	pthread_mutex_unlock(&c->lock);
}

int store_prefetch_chunk(struct store *st, const struct chunk_ref *ref)
{
	struct chunk_cache *c = st->cache;
	pthread_mutex_lock(&c->lock);
	struct cache_slot *s = cache_find(c, ref->rowid);
	if (s)
		s->users--;
	pthread_mutex_unlock(&c->lock);
	if (s)
		return 0;
	uint8_t *raw;
	int err = chunk_load(st, ref, &raw);
	if (err)
		return err;
	pthread_mutex_lock(&c->lock);
	s = cache_insert(c, ref->rowid, raw, ref->e.rlen);
	if (s) {
		s->users--;
		if (s->buf != raw)
			free(raw);
	} else {
		free(raw);
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int store_chunk_cached(struct store *st, int64_t rowid)
{
	struct chunk_cache *c = st->cache;
	pthread_mutex_lock(&c->lock);
	int hit = 0;
	for (int i = 0; i < CACHE_SLOTS && !hit; i++)
		hit = c->slot[i].rowid == rowid;
	pthread_mutex_unlock(&c->lock);
	return hit;
}

int store_read_chunk(struct store *st, const struct chunk_ref *ref,
		     uint64_t coff, void *dst, size_t len)
{
	if (coff + len > ref->e.rlen)
		return -EUCLEAN;
	struct chunk_cache *c = st->cache;
	pthread_mutex_lock(&c->lock);
	struct cache_slot *s = cache_find(c, ref->rowid);
	pthread_mutex_unlock(&c->lock);
	if (!s) {
		uint8_t *raw;
		int err = chunk_load(st, ref, &raw);
		if (err)
			return err;
		pthread_mutex_lock(&c->lock);
		s = cache_insert(c, ref->rowid, raw, ref->e.rlen);
		pthread_mutex_unlock(&c->lock);
		if (!s) {
			memcpy(dst, raw + coff, len);
			free(raw);
			return 0;
		}
		if (s->buf != raw)
			free(raw);
	}
	memcpy(dst, s->buf + coff, len);
	pthread_mutex_lock(&c->lock);
	s->users--;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int store_finish_orphans(struct store *st)
{
	int64_t *ids;
	size_t n;
	int err = catalog_pack_list(st->ix, PACK_OPEN, &ids, &n);
	if (err)
		return err;
	int done = 0;
	for (size_t i = 0; i < n && !err; i++) {
		if (st->pw && ids[i] == st->pw_rowid)
			continue;
		uint8_t name[PACK_NAME_LEN];
		struct chunk_loc *cs = NULL;
		size_t nc = 0;
		err = catalog_pack_name(st->ix, ids[i], name);
		if (!err)
			err = catalog_pack_chunks(st->ix, ids[i], &cs, &nc);
		if (err)
			break;
		struct pack_entry *es = calloc(nc ? nc : 1, sizeof(*es));
		char *path = store_pack_path(st, name);
		if (!es || !path) {
			err = -ENOMEM;
		} else {
			for (size_t j = 0; j < nc; j++)
				es[j] = cs[j].e;
			err = pack_finish_orphan(path, name, es, nc, &st->keys);
		}
		if (err == -EWOULDBLOCK) {
			err = 0;	/* a live writer owns it */
		} else if (!err) {
			struct stat sb;
			if (stat(path, &sb))
				err = -errno;
			if (!err)
				err = index_begin(st->ix);
			if (!err)
				err = catalog_pack_finished(st->ix, ids[i], sb.st_size);
			if (!err)
				done++;
		} else {
			tlog(LOG_ERR, "store %s: cannot finish pack %s: %s",
			     st->dir, path ? path : "?", strerror(-err));
		}
		free(es);
		free(cs);
		free(path);
	}
	free(ids);
	if (!err)
		err = index_commit(st->ix);
	return err ? err : done;
}

int store_chunk_move(struct store *st, const struct sealed_chunk *sc,
		     int64_t rowid)
{
	if (!st->pw) {
		int err = store_new_pack(st);
		if (err)
			return err;
	}
	struct pack_entry e = sc->e;
	int err = pack_append(st->pw, &e, sc->buf);
	if (!err)
		err = catalog_chunk_move(st->ix, rowid, st->pw_rowid, e.off);
	return err;
}

int store_finish_current_pack(struct store *st)
{
	return store_finish_pack(st);
}
