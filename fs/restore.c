/*
 * restore.c - copy a tree out of a view (a snapshot) into a directory
 * outside the mount (restore.h).
 *
 * Names come from the index, so each is checked before use: no '/', no
 * "." or "..", never followed through a symlink (O_NOFOLLOW, *at calls
 * relative to the directory being filled).  A file already restored with
 * the right size and mtime is skipped, so an interrupted restore resumes.
 * Into the volume's own mount, files are copied from the mount's view of
 * the snapshot with copy_file_range: the mount maps the copies to the
 * same chunks (fs/fuse_share.c), so nothing is read, sealed or stored.
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

#include "../chunker/buf.h"
#include "acl.h"
#include "restore.h"
#include "view.h"
#include "vfs.h"
#include "../chunker/util.h"

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
	const struct restore_opts *o;
	uint64_t total;			/* bytes to restore, 0 if not known */
	int share_dfd;			/* o->share_from's dir of DEST, or -1 */
};

static int name_ok(const char *name)
{
	return *name && strcmp(name, ".") && strcmp(name, "..") &&
	       !strchr(name, '/') && strlen(name) <= NAME_MAX;
}

static void warn(struct restore *r, const char *path, const char *what, int err)
{
	if (r->o->report)
		r->o->report(r->o->arg, path, what, err);
	r->errors++;
}

static void progress(struct restore *r, uint64_t done)
{
	if (r->o->progress)
		r->o->progress(r->o->parg, done, r->total);
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

/*
 * Copy file a (at path under DEST) into fd from the mount's view of the
 * snapshot, by copy_file_range: 0 when done, -1 to copy the bytes
 * instead.  The file found there must be a's inode (the mount's inode
 * numbers keep it in their low bits).  EXDEV and its kin turn sharing off
 * for the rest of the restore.
 */
static int share_file(struct restore *r, int fd, const struct inode_attr *a,
		      const char *path)
{
	const char *rel = path + strlen(r->dest) + 1;
	int sfd = openat(r->share_dfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;
	if (sfd < 0)
		return -1;
	if (fstat(sfd, &sb) || !S_ISREG(sb.st_mode) ||
	    INO_BASE(sb.st_ino) != a->ino || (uint64_t)sb.st_size != a->size) {
		close(sfd);
		return -1;
	}
	loff_t off = 0, out = 0;
	ssize_t k = 1;
	while ((uint64_t)off < a->size &&
	       (k = copy_file_range(sfd, &off, fd, &out, a->size - off, 0)) > 0)
		progress(r, r->done + off);
	int e = errno;
	close(sfd);
	if ((uint64_t)off == a->size)
		return 0;
	if (k < 0 && (e == EXDEV || e == EOPNOTSUPP || e == ENOSYS)) {
		close(r->share_dfd);
		r->share_dfd = -1;
	}
	return -1;
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
		progress(r, r->done);
		return 0;	/* restored by an earlier run */
	}
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		warn(r, path, "create", errno);
		return -errno;
	}
	size_t bufsize = 4 << 20;
	int shared = r->share_dfd >= 0 && !share_file(r, fd, a, path);
	char *buf = shared ? NULL : malloc(bufsize);
	int err = buf || shared ? 0 : -ENOMEM;
	for (uint64_t off = 0; off < a->size && !err && !shared; off += bufsize) {
		size_t n = a->size - off < bufsize ? a->size - off : bufsize;
		err = view_read(r->st, NULL, r->vi.id, r->view, a->ino,
					 buf, n, off, r->vi.name);
		if (!err)
			err = pwrite_full(fd, buf, n, off);
		progress(r, r->done + off + n);
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

/* Names come from the index: one that is not a plain name is refused. */
static void refuse_name(struct restore *r, const char *dir, const char *name)
{
	char what[300];
	snprintf(what, sizeof(what), "refusing the name '%.250s'", name);
	warn(r, dir, what, 0);
}

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
	void *p = buf_grow(d->c, &d->cap, d->n + 1, sizeof(*d->c));
	if (!p)
		return -ENOMEM;
	d->c = p;
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
			refuse_name(r, path, d.c[i].name);
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
		void *p = buf_grow(r->links, &r->caplinks, r->nlinks + 1,
				   sizeof(*r->links));
		if (p) {
			r->links = p;
			/* linkat() wants it relative to DEST. */
			r->links[r->nlinks].ino = ino;
			r->links[r->nlinks++].path = strdup(path + strlen(r->dest) + 1);
		}
	}
	restore_xattrs(r, ino, a.mode, dfd, name, path);
	restore_meta(r, &a, dfd, name, path);
	return 0;
}

int restore_view(struct store *st, const struct volume_info *vi, int64_t view,
		 const char *tree, const char *dest, const struct restore_opts *o,
		 struct restore_result *res)
{
	struct restore r = { .dest = dest, .st = st, .vi = *vi, .view = view, .o = o,
			     .share_dfd = -1 };
	memset(res, 0, sizeof(*res));
	/* Walk PATH down from the root, component by component; the
	 * directory above the last one is, in the mount's view, the one
	 * DEST stands for. */
	uint64_t ino = ROOT_INO;
	char *copy = strdup(tree), *save = NULL;
	char *above = o->share_from ? calloc(1, strlen(o->share_from) + strlen(tree) + 2) : NULL;
	if (!copy || (o->share_from && !above)) {
		free(copy);
		free(above);
		return -ENOMEM;
	}
	if (above)
		strcpy(above, o->share_from);
	const char *last = "";
	int err = 0;
	for (char *c = strtok_r(copy, "/", &save); c && !err; c = strtok_r(NULL, "/", &save)) {
		if (!strcmp(c, "."))
			continue;
		if (!name_ok(c) || ns_dentry_lookup(st->ix, vi->id, view, ino, c, &ino))
			err = -ENOENT;
		if (above && *last)
			strcat(strcat(above, "/"), last);
		last = c;
	}
	if (above && !err)
		r.share_dfd = open(above, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(above);
	if (!err && mkdir(dest, 0700) && errno != EEXIST)
		err = -errno;
	if (!err && (r.root_dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		err = -errno;
	if (err) {
		if (r.share_dfd >= 0)
			close(r.share_dfd);
		free(copy);
		return err;
	}
	/* The whole volume's size is known; a subtree's is not summed first. */
	uint64_t nfiles = 0;
	if (!*last)
		ns_view_size(st->ix, vi->id, view, &r.total, &nfiles);
	char *path = NULL;
	if (asprintf(&path, "%s/%s", dest, last) < 0)
		path = NULL;
	if (!path) {
		err = -ENOMEM;
	} else if (*last) {
		restore_node(&r, ino, r.root_dfd, last, path);
	} else {
		/* The whole volume: its entries go into DEST itself. */
		struct dir_ctx d = { .r = &r, .dfd = r.root_dfd, .path = dest };
		err = ns_dentry_list(st->ix, vi->id, view, ROOT_INO, NULL, collect_child, &d);
		for (size_t i = 0; i < d.n; i++) {
			char *cp = NULL;
			if (!name_ok(d.c[i].name))
				refuse_name(&r, dest, d.c[i].name);
			else if (asprintf(&cp, "%s/%s", dest, d.c[i].name) > 0)
				restore_node(&r, d.c[i].ino, r.root_dfd, d.c[i].name, cp);
			free(cp);
			free(d.c[i].name);
		}
		free(d.c);
	}
	free(path);
	free(copy);
	for (size_t i = 0; i < r.nlinks; i++)
		free(r.links[i].path);
	free(r.links);
	close(r.root_dfd);
	if (r.share_dfd >= 0)
		close(r.share_dfd);
	res->files = r.files;
	res->bytes = r.bytes;
	res->skipped = r.skipped;
	res->errors = r.errors;
	return err;
}
