/*
 * fuzz_index.c - libFuzzer target for the index (chunker/index.c, catalog.c, fs/namespace.c) reading a damaged
 * index.db.  The input is written as the database file (no -wal/-shm),
 * opened with index_open(create = 0) and read the way mount, ls, restore,
 * snapshot list and stats read it: volumes, the root inode and its
 * entries (one level down), their extents and xattrs, the chunks and packs
 * the extents name, the snapshots and their roots, the store figures.
 *
 * A damaged database must give errors (-EUCLEAN, -EIO, ...) or wrong
 * values, never a crash, hang or out-of-bounds access.  Names handed to
 * callbacks are read to their end (as callers strdup them).
 *
 * SQLite itself is the system library, not instrumented: coverage
 * feedback comes from the index modules and from the shape of the rows it gets.
 */
#include "fuzz_common.h"
#include "namespace.h"
#include "util.h"

#include <errno.h>
#include <sqlite3.h>

#define MAX_VOLS 4
#define MAX_ENTRIES 64
#define MAX_SNAPS 4
#define MAX_EXTENTS 64

static char dbpath[300], walpath[310], shmpath[310];
static volatile uint32_t sink;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *d = fuzz_tmpdir();

	(void)argc, (void)argv;
	snprintf(dbpath, sizeof(dbpath), "%s/index.db", d);
	snprintf(walpath, sizeof(walpath), "%s-wal", dbpath);
	snprintf(shmpath, sizeof(shmpath), "%s-shm", dbpath);
	/* the index logs SQL errors; a damaged file makes many. */
	log_set_level(LOG_ERR);
	return 0;
}

static void touch_str(const char *s, size_t max)
{
	uint32_t h = 0;
	size_t n = 0;

	if (!s)
		abort();	/* callers dereference it */
	for (; *s; s++, n++)
		h = h * 31 + (uint8_t)*s;
	if (n >= max)
		abort();
	sink += h;
}

struct ent {
	uint64_t ino;
	uint32_t mode;
};

struct dir {
	struct ent e[MAX_ENTRIES];
	size_t n;
	char last[256];
};

static int on_dentry(void *arg, const char *name, uint64_t ino,
		     uint32_t mode)
{
	struct dir *d = arg;

	if (!name) {
		fprintf(stderr, "ns_dentry_list: NULL name\n");
		abort();	/* cmd_restore.c strdup()s it */
	}
	touch_str(name, SIZE_MAX);
	snprintf(d->last, sizeof(d->last), "%s", name);
	d->e[d->n].ino = ino;
	d->e[d->n].mode = mode;
	if (++d->n == MAX_ENTRIES)
		return 1;
	return 0;
}

static void check_err(const char *what, int64_t ret)
{
	/* Any negative errno is fine; positive values are not documented. */
	if (ret > 0 && ret != 1) {
		fprintf(stderr, "%s: unexpected %lld\n", what, (long long)ret);
		abort();
	}
}

static void read_inode(struct index *ix, int64_t vol, int64_t view,
		       uint64_t ino)
{
	struct inode_attr a;
	struct extent *xs = NULL;
	size_t n = 0;
	char buf[512];
	int ret;

	ret = ns_inode_get(ix, vol, view, ino, &a);
	check_err("inode_get", ret);
	ret = ns_extents_in(ix, vol, view, ino, 0, UINT64_MAX / 2, &xs, &n);
	check_err("extents_in", ret);
	if (!ret) {
		if (n && !xs)
			abort();
		for (size_t i = 0; i < n && i < MAX_EXTENTS; i++) {
			struct chunk_loc c;

			sink += (uint32_t)(xs[i].off + xs[i].len + xs[i].coff);
			check_err("chunk_get",
				  catalog_chunk_get(ix, xs[i].chunk, &c));
		}
		free(xs);
	}
	sink += (uint32_t)ns_extent_bytes(ix, vol, view, ino);
	ret = ns_xattr_list(ix, vol, view, ino, NULL, 0);
	if (ret > 0 && (size_t)ret <= sizeof(buf)) {
		int got = ns_xattr_list(ix, vol, view, ino, buf, sizeof(buf));

		if (got > (int)sizeof(buf))
			abort();
		if (got > 0) {
			/* NUL-separated names: read one the way getxattr would. */
			char name[256];

			snprintf(name, sizeof(name), "%.*s", got, buf);
			ret = ns_xattr_get(ix, vol, view, ino, name, buf,
					      sizeof(buf));
			if (ret > (int)sizeof(buf))
				abort();
		}
	}
}

static void read_tree(struct index *ix, int64_t vol, int64_t view)
{
	struct dir *d = calloc(1, sizeof(*d));
	uint64_t parent;
	char name[256];
	int ret;

	if (!d)
		abort();
	read_inode(ix, vol, view, ROOT_INO);
	ret = ns_dentry_list(ix, vol, view, ROOT_INO, NULL, on_dentry, d);
	check_err("dentry_list", ret);
	if (ret == 1 && d->n == MAX_ENTRIES) {
		/* Resume after the last name, as readdir does. */
		struct dir *d2 = calloc(1, sizeof(*d2));

		if (!d2)
			abort();
		check_err("dentry_list", ns_dentry_list(ix, vol, view,
				ROOT_INO, d->last, on_dentry, d2));
		free(d2);
	}
	for (size_t i = 0; i < d->n; i++) {
		read_inode(ix, vol, view, d->e[i].ino);
		ret = ns_dentry_of(ix, vol, view, d->e[i].ino, &parent,
				      name, sizeof(name));
		check_err("dentry_of", ret);
		if (!ret)
			touch_str(name, sizeof(name));
		if ((d->e[i].mode & 0170000) == 0040000) {
			struct dir *sub = calloc(1, sizeof(*sub));

			if (!sub)
				abort();
			check_err("dentry_list", ns_dentry_list(ix, vol,
				view, d->e[i].ino, NULL, on_dentry, sub));
			check_err("dir_empty",
				  ns_dir_empty(ix, vol, view, d->e[i].ino));
			free(sub);
		}
	}
	free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct index *ix = NULL;
	struct volume_info *vis = NULL;
	struct ns_stats stats;
	size_t nv = 0;
	int64_t fmt, *packs = NULL;
	size_t np = 0;
	uint64_t a, b, c;
	int ret;

	unlink(walpath);
	unlink(shmpath);
	fuzz_write_file(dbpath, data, size);
	ret = index_open(dbpath, 0, &ix);
	if (ret) {
		check_err("index_open", ret);
		goto out;
	}
	check_err("meta_get", index_meta_get(ix, "format_version", &fmt));

	ret = ns_volume_list(ix, &vis, &nv);
	check_err("volume_list", ret);
	for (size_t i = 0; !ret && i < nv && i < MAX_VOLS; i++) {
		struct snapshot_info *si = NULL;
		size_t ns = 0;
		struct volume_info vi;

		touch_str(vis[i].name, sizeof(vis[i].name));
		check_err("volume_find", ns_volume_find(ix, vis[i].name, &vi));
		read_tree(ix, vis[i].id, VIEW_LIVE);
		ret = ns_snapshot_list(ix, vis[i].id, &si, &ns);
		check_err("snapshot_list", ret);
		for (size_t j = 0; !ret && j < ns && j < MAX_SNAPS; j++) {
			struct snapshot_info s2;

			touch_str(si[j].name, sizeof(si[j].name));
			check_err("snapshot_find", ns_snapshot_find(ix,
					vis[i].id, si[j].name, &s2));
			read_tree(ix, vis[i].id, si[j].epoch);
			check_err("view_size", ns_view_size(ix, vis[i].id,
					si[j].epoch, &a, &b));
		}
		free(si);
		ret = 0;
		check_err("stats", ns_stats(ix, vis[i].id, &stats));
	}

	ret = catalog_pack_list(ix, PACK_FINISHED, &packs, &np);
	check_err("pack_list", ret);
	for (size_t i = 0; !ret && i < np && i < 4; i++) {
		struct chunk_loc *cs = NULL;
		uint8_t nm[PACK_NAME_LEN];
		size_t nc = 0;

		check_err("pack_name", catalog_pack_name(ix, packs[i], nm));
		check_err("pack_chunks", catalog_pack_chunks(ix, packs[i], &cs,
							   &nc));
		free(cs);	/* the list calls may leave it set on errors */
	}
	free(packs);
	check_err("space", ns_space(ix, &a, &b, &c));
out:
	free(vis);
	index_close(ix);
	unlink(walpath);
	unlink(shmpath);
	return 0;
}
