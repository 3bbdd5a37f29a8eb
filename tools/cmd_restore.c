/*
 * cmd_restore.c - `tresor restore STORE VOLUME SNAPSHOT PATH DEST`: copy a
 * tree out of a snapshot with its modes, owners, times, symlinks, hard
 * links and xattrs.
 *
 * Names come from the index, so each is checked before use: no '/', no
 * "." or "..", never followed through a symlink (O_NOFOLLOW, *at calls
 * relative to the directory being filled).  A file already restored with
 * the right size and mtime is skipped, so an interrupted restore resumes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ftw.h>
#include <openssl/sha.h>

#include "../fs/acl.h"
#include "../remote/fetch.h"
#include "../fs/damage.h"
#include "../remote/recover.h"
#include "../fs/view.h"
#include "cli.h"
#include "progress.h"

struct restore {
	struct store *st;
	struct volume_info vi;
	int64_t view;
	uint64_t files, bytes, skipped;
	uint64_t done;			/* for the progress line */
	/* inode -> path relative to DEST of its first restored link */
	struct link_seen {
		uint64_t ino;
		char *path;
	} *links;
	size_t nlinks, caplinks;
	int errors;
	int root_dfd;
	const char *dest;
	struct progress prog;	/* bytes restored or found already there */
};

static int name_ok(const char *name)
{
	return *name && strcmp(name, ".") && strcmp(name, "..") &&
	       !strchr(name, '/') && strlen(name) <= NAME_MAX;
}

static void warn(struct restore *r, const char *path, const char *what, int err)
{
	fprintf(stderr, "tresor: restore: %s: %s: %s\n", path, what, strerror(err));
	r->errors++;
}

/* Copy xattrs of ino (of the given mode) onto the open fd (or the path,
 * for symlinks), ACLs as programs see them in the mount. */
static void restore_xattrs(struct restore *r, uint64_t ino, mode_t mode,
			   int dfd, const char *name, const char *path)
{
	int len = acl_xattr_list(r->st->ix, r->vi.id, r->view, ino, mode, NULL, 0);
	if (len <= 0)
		return;
	char *names = malloc(len);
	if (!names || acl_xattr_list(r->st->ix, r->vi.id, r->view, ino, mode, names, len) < 0) {
		free(names);
		return;
	}
	char proc[PATH_MAX];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dfd, name);
	for (char *x = names; x < names + len; x += strlen(x) + 1) {
		int vl = acl_xattr_get(r->st->ix, r->vi.id, r->view, ino, mode, x, NULL, 0);
		char *val = vl >= 0 ? malloc(vl ? vl : 1) : NULL;
		if (val && acl_xattr_get(r->st->ix, r->vi.id, r->view, ino, mode, x, val, vl) >= 0 &&
		    lsetxattr(proc, x, val, vl, 0))
			warn(r, path, x, errno);
		free(val);
	}
	free(names);
}

/* Owner, mode and times last: writing the content would undo them. */
static void restore_meta(struct restore *r, const struct inode_attr *a,
			 int dfd, const char *name, const char *path)
{
	if (fchownat(dfd, name, a->uid, a->gid, AT_SYMLINK_NOFOLLOW) && errno != EPERM)
		warn(r, path, "chown", errno);
	if (!S_ISLNK(a->mode) && fchmodat(dfd, name, a->mode & 07777, 0))
		warn(r, path, "chmod", errno);
	struct timespec ts[2] = {
		{ a->atime / 1000000000, a->atime % 1000000000 },
		{ a->mtime / 1000000000, a->mtime % 1000000000 },
	};
	if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW))
		warn(r, path, "set times", errno);
}

static int restore_file(struct restore *r, const struct inode_attr *a,
			int dfd, const char *name, const char *path)
{
	struct stat sb;
	if (!fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) && S_ISREG(sb.st_mode) &&
	    (uint64_t)sb.st_size == a->size &&
	    sb.st_mtim.tv_sec == a->mtime / 1000000000 &&
	    sb.st_mtim.tv_nsec == a->mtime % 1000000000) {
		r->skipped++;
		r->done += a->size;
		progress_set(&r->prog, r->done, 0);
		return 0;	/* restored by an earlier run */
	}
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		warn(r, path, "create", errno);
		return -errno;
	}
	size_t bufsize = 4 << 20;
	char *buf = malloc(bufsize);
	int err = buf ? 0 : -ENOMEM;
	for (uint64_t off = 0; off < a->size && !err; off += bufsize) {
		size_t n = a->size - off < bufsize ? a->size - off : bufsize;
		err = view_read(r->st, NULL, r->vi.id, r->view, a->ino,
					 buf, n, off, r->vi.name);
		if (!err)
			err = pwrite_full(fd, buf, n, off);
		progress_set(&r->prog, r->done + off + n, 0);
	}
	r->done += a->size;
	if (!err && ftruncate(fd, a->size))
		err = -errno;
	free(buf);
	close(fd);
	if (err) {
		/* No file with the right name and wrong bytes: a rerun
		 * writes it again. */
		unlinkat(dfd, name, 0);
		warn(r, path, "write", -err);
	}
	r->files++;
	r->bytes += a->size;
	return err;
}

static int restore_node(struct restore *r, uint64_t ino, int dfd,
			const char *name, const char *path);

struct dir_ctx {
	struct restore *r;
	int dfd;
	const char *path;
	struct child {
		char *name;
		uint64_t ino;
	} *c;
	size_t n, cap;
};

static int collect_child(void *arg, const char *name, uint64_t ino, uint32_t mode)
{
	(void)mode;
	struct dir_ctx *d = arg;
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 64;
		void *p = realloc(d->c, d->cap * sizeof(*d->c));
		if (!p)
			return -ENOMEM;
		d->c = p;
	}
	d->c[d->n].name = strdup(name);
	d->c[d->n++].ino = ino;
	return 0;
}

static int restore_dir(struct restore *r, const struct inode_attr *a, int pdfd,
		       const char *name, const char *path)
{
	if (mkdirat(pdfd, name, 0700) && errno != EEXIST) {
		warn(r, path, "mkdir", errno);
		return -errno;
	}
	int dfd = openat(pdfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		warn(r, path, "open directory (a symlink in the way?)", errno);
		return -errno;
	}
	struct dir_ctx d = { .r = r, .dfd = dfd, .path = path };
	int err = ns_dentry_list(r->st->ix, r->vi.id, r->view, a->ino, NULL,
				    collect_child, &d);
	for (size_t i = 0; i < d.n; i++) {
		char *cp = NULL;
		if (!name_ok(d.c[i].name)) {
			fprintf(stderr, "tresor: restore: %s: refusing the name '%s'\n",
				path, d.c[i].name);
			r->errors++;
		} else if (asprintf(&cp, "%s/%s", path, d.c[i].name) > 0) {
			restore_node(r, d.c[i].ino, dfd, d.c[i].name, cp);
		}
		free(cp);
		free(d.c[i].name);
	}
	free(d.c);
	close(dfd);
	return err;
}

static int restore_node(struct restore *r, uint64_t ino, int dfd,
			const char *name, const char *path)
{
	struct inode_attr a;
	int err = ns_inode_get(r->st->ix, r->vi.id, r->view, ino, &a);
	if (err) {
		warn(r, path, "read inode", -err);
		return err;
	}
	if (!S_ISDIR(a.mode) && a.nlink > 1) {
		for (size_t i = 0; i < r->nlinks; i++) {
			if (r->links[i].ino != ino)
				continue;
			unlinkat(dfd, name, 0);
			if (linkat(r->root_dfd, r->links[i].path, dfd, name, 0))
				warn(r, path, "hard link", errno);
			return 0;
		}
	}
	switch (a.mode & S_IFMT) {
	case S_IFDIR:
		err = restore_dir(r, &a, dfd, name, path);
		break;
	case S_IFREG:
		err = restore_file(r, &a, dfd, name, path);
		break;
	case S_IFLNK: {
		char target[PATH_MAX + 1];
		if (a.size > PATH_MAX) {
			warn(r, path, "symlink target", ENAMETOOLONG);
			return -ENAMETOOLONG;
		}
		err = view_read(r->st, NULL, r->vi.id, r->view, ino,
					 target, a.size, 0, r->vi.name);
		target[a.size] = 0;
		unlinkat(dfd, name, 0);
		if (!err && symlinkat(target, dfd, name))
			err = -errno;
		if (err)
			warn(r, path, "symlink", -err);
		break;
	}
	default:
		unlinkat(dfd, name, 0);
		if (mknodat(dfd, name, a.mode, a.rdev))
			warn(r, path, "mknod", errno);
	}
	if (err)
		return err;
	if (!S_ISDIR(a.mode) && a.nlink > 1 && r->nlinks < 1000000) {
		if (r->nlinks == r->caplinks) {
			r->caplinks = r->caplinks ? r->caplinks * 2 : 64;
			void *p = realloc(r->links, r->caplinks * sizeof(*r->links));
			if (p)
				r->links = p;
		}
		if (r->nlinks < r->caplinks) {
			/* linkat() wants it relative to DEST. */
			r->links[r->nlinks].ino = ino;
			r->links[r->nlinks++].path = strdup(path + strlen(r->dest) + 1);
		}
	}
	restore_xattrs(r, ino, a.mode, dfd, name, path);
	restore_meta(r, &a, dfd, name, path);
	return 0;
}

/* Restore PATH of snapshot snap of volume vol of the open store st (named
 * dir in messages) into dest; closes st.  Exit code. */
static int restore_tree(struct store *st, const char *dir, const char *vol,
			const char *snap, const char *tree, const char *dest)
{
	struct restore r = { .dest = dest, .st = st };
	find_volume(r.st->ix, dir, vol, &r.vi);
	struct snapshot_info si;
	find_snapshot(r.st->ix, dir, &r.vi, snap, &si);
	r.view = si.epoch;
	/* Walk PATH down from the root, component by component. */
	uint64_t ino = ROOT_INO;
	char *copy = strdup(tree), *save = NULL;
	const char *last = "";
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (!strcmp(c, "."))
			continue;
		if (!name_ok(c) || ns_dentry_lookup(r.st->ix, r.vi.id, r.view,
						       ino, c, &ino))
			die(1, "snapshot %s of volume '%s' has no '%s'", si.name,
			    r.vi.name, tree);
		last = c;
	}
	if (mkdir(dest, 0700) && errno != EEXIST)
		die(1, "cannot create %s: %s", dest, strerror(errno));
	r.root_dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r.root_dfd < 0)
		die(1, "cannot open %s: %s", dest, strerror(errno));
	/* The whole volume's size is known; a subtree's is not summed first. */
	uint64_t total = 0, nfiles = 0;
	if (!*last)
		ns_view_size(r.st->ix, r.vi.id, r.view, &total, &nfiles);
	progress_start(&r.prog, "restore", total);
	const char *name = *last ? last : ".";
	char *path = NULL;
	if (asprintf(&path, "%s/%s", dest, *last ? last : "") < 0)
		die(1, "out of memory");
	if (*last) {
		restore_node(&r, ino, r.root_dfd, name, path);
	} else {
		/* The whole volume: its entries go into DEST itself. */
		struct inode_attr a;
		ns_inode_get(r.st->ix, r.vi.id, r.view, ROOT_INO, &a);
		struct dir_ctx d = { .r = &r, .dfd = r.root_dfd, .path = dest };
		ns_dentry_list(r.st->ix, r.vi.id, r.view, ROOT_INO, NULL,
				  collect_child, &d);
		for (size_t i = 0; i < d.n; i++) {
			char *cp = NULL;
			if (!name_ok(d.c[i].name)) {
				fprintf(stderr, "tresor: restore: %s: refusing the name '%s'\n",
					dest, d.c[i].name);
				r.errors++;
			} else if (asprintf(&cp, "%s/%s", dest, d.c[i].name) > 0) {
				restore_node(&r, d.c[i].ino, r.root_dfd, d.c[i].name, cp);
			}
			free(cp);
			free(d.c[i].name);
		}
		free(d.c);
	}
	progress_end(&r.prog);
	free(path);
	free(copy);
	for (size_t i = 0; i < r.nlinks; i++)
		free(r.links[i].path);
	free(r.links);
	close(r.root_dfd);
	fetcher_detach(r.st);
	store_close(r.st);
	printf("restored %llu file(s), %llu bytes from %s into %s (%llu already there)%s\n",
	       (unsigned long long)r.files, (unsigned long long)r.bytes, si.name,
	       dest, (unsigned long long)r.skipped,
	       r.errors ? "; some items failed, see above" : "");
	return r.errors ? 1 : 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* Where restore --remote keeps its temporary lazy store for url: under
 * $TRESOR_CACHE_DIR, $XDG_CACHE_HOME/tresor or ~/.cache/tresor, named by
 * a hash of the URL so a rerun finds (and resumes from) it. */
static void cache_dir_for(const char *url, char *out, size_t size)
{
	const char *base = getenv("TRESOR_CACHE_DIR");
	char tmp[PATH_MAX];
	if (!base || !*base) {
		const char *xdg = getenv("XDG_CACHE_HOME");
		const char *home = getenv("HOME");
		if (xdg && *xdg)
			snprintf(tmp, sizeof(tmp), "%s/tresor", xdg);
		else
			snprintf(tmp, sizeof(tmp), "%s/.cache/tresor", home && *home ? home : "/tmp");
		base = tmp;
	}
	char parent[PATH_MAX - 32];
	snprintf(parent, sizeof(parent), "%.*s", (int)sizeof(parent) - 1, base);
	for (char *p = parent + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(parent, 0700);
			*p = '/';
		}
	mkdir(parent, 0700);
	uint8_t h[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)url, strlen(url), h);
	char hex[17];
	hex_encode(h, 8, hex);
	snprintf(out, size, "%.*s/restore-%s", (int)(size > 40 ? size - 40 : 0), parent, hex);
}

/* restore --remote URL VOLUME SNAPSHOT PATH DEST: no local store.  The
 * key and metadata are fetched into a temporary lazy store, then only the
 * packs the tree needs, whole and verified.  Kept if the restore fails, so
 * a rerun resumes; removed when it succeeds. */
static int restore_remote(struct opts *o)
{
	if (o->npos != 4)
		die(EXIT_USAGE, "usage: tresor restore --remote URL VOLUME SNAPSHOT PATH DEST [remote options]");
	const char *url = remote_url_abs(o, o->remote);
	char cache[PATH_MAX];
	cache_dir_for(url, cache, sizeof(cache));
	struct remote_options ro;
	remote_opts(o, &ro);
	char *pass = get_passphrase(o, 0, url);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (access(cache, F_OK)) {
		struct remote *r = open_remote(url, &ro);
		struct recover_opts rop = { .lazy = 1, .check_index = damage_check_names };
		struct recover_result res;
		int err = recover_run(r, url, &ro, cache, pass, strlen(pass), &rop, &res);
		char msg[600];
		snprintf(msg, sizeof(msg), "%s", *remote_error(r) ? remote_error(r) : strerror(-err));
		remote_close(r);
		if (err == -ENOENT)
			die(1, "%s is not a tresor repository (no tresor-repo marker or metadata)", url);
		if (err == -EKEYREJECTED)
			die(1, "wrong passphrase for the repository at %s", url);
		if (err == -EPROTONOSUPPORT)
			die(1, "%s was written by a newer tresor; upgrade tresor", url);
		if (err == -EBADMSG)
			die(1, "%s: object %s is damaged or was tampered with (it fails authentication); nothing restored",
			    url, res.failed);
		if (err == -ENODATA)
			die(1, "%s: object %s is missing; the repository is incomplete, nothing restored",
			    url, res.failed);
		if (err == -EUCLEAN)
			die(1, "%s: refused: the metadata holds an unsafe file name, %s; nothing restored",
			    url, res.failed);
		if (err)
			die(1, "reading the metadata of %s failed: %s; rerun to resume", url, msg);
	}
	struct store *st;
	int err = store_open(cache, pass, strlen(pass), &st);
	free_passphrase(pass);
	if (err)
		die(1, "cannot open the temporary store %s for %s: %s; remove it and rerun",
		    cache, url, strerror(-err));
	char label[700];
	snprintf(label, sizeof(label), "restore from %s", url);
	err = fetcher_attach(st, "origin", label, FETCH_SYNC, 0);
	if (err)
		die(1, "cannot fetch packs from %s: %s", url, strerror(-err));
	int rc = restore_tree(st, url, o->pos[0], o->pos[1], o->pos[2], o->pos[3]);
	curl_global_cleanup();
	if (rc == 0)
		nftw(cache, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	else
		fprintf(stderr, "tresor: restore from %s incomplete; rerun the same command to resume (fetched packs are kept in %s)\n",
			url, cache);
	return rc;
}

int cmd_restore(struct opts *o)
{
	if (o->remote)
		return restore_remote(o);
	if (o->npos != 5)
		die(EXIT_USAGE, "usage: tresor restore STORE VOLUME SNAPSHOT PATH DEST");
	struct store *st = open_store(o, o->pos[0]);
	/* A lazy store's packs, and bad ones, come from its remote if any. */
	char label[PATH_MAX + 16];
	snprintf(label, sizeof(label), "store %s", o->pos[0]);
	int err = fetcher_attach(st, NULL, label, FETCH_SYNC, 0);
	if (err && err != -ENOENT)
		fprintf(stderr, "tresor: store %s: its remote cannot be used to fetch missing or damaged packs: %s\n",
			o->pos[0], strerror(-err));
	return restore_tree(st, o->pos[0], o->pos[1], o->pos[2], o->pos[3], o->pos[4]);
}
