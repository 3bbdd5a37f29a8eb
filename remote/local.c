/*
 * local.c - the directory backend (a USB disk, an NFS mount): key
 * "data/ab/xyz" is the file ROOT/data/ab/xyz.
 *
 * A put writes a temporary file in the object's own directory, fsyncs
 * it, checks its size, renames it over the final name and fsyncs the
 * directory, so after a crash the object is either whole or absent.
 * A create-only put links instead of renaming: link(2) never replaces.
 * Temporary names contain '~', which no key may hold, so list never
 * shows them (not even the leftovers of a crash).
 *
 * All paths are resolved relative to a descriptor of the root opened
 * once, so a remount or rename of the root's path between calls cannot
 * redirect writes elsewhere.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"

#define LOCAL_KEY_MAX	1100
#define LOCAL_DEPTH_MAX	64
#define LOCAL_TMP_MARK	".~tmp."

struct local {
	int dirfd;			/* the root, O_DIRECTORY */
};

static struct local *L(struct remote *r)
{
	return r->priv;
}

/* A name as a list can return it: key characters only, not "." or "..". */
static int name_is_key(const char *n)
{
	if (!strcmp(n, ".") || !strcmp(n, ".."))
		return 0;
	for (; *n; n++) {
		unsigned char c = (unsigned char)*n;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* Split key into its directory ("" or "a/b") and its base name. */
static void split_key(const char *key, char *dir, size_t dsz, const char **base)
{
	const char *slash = strrchr(key, '/');
	size_t n = slash ? (size_t)(slash - key) : 0;

	if (n >= dsz)
		n = dsz - 1;
	memcpy(dir, key, n);
	dir[n] = 0;
	*base = slash ? slash + 1 : key;
}

/*
 * Open directory rel under the root (the root itself for ""), creating
 * missing components (mkdir -p); each new directory's parent is fsynced
 * so the new entry survives a crash.  Returns an fd or -errno.
 */
static int open_dir_p(struct remote *r, const char *rel, int create)
{
	char buf[LOCAL_KEY_MAX];
	char *comp, *save = NULL;
	int fd, nfd;

	fd = openat(L(r)->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	snprintf(buf, sizeof(buf), "%s", rel);
	for (comp = strtok_r(buf, "/", &save); comp;
	     comp = strtok_r(NULL, "/", &save)) {
		nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, comp, 0700) < 0 && errno != EEXIST) {
				int e = errno;

				close(fd);
				return -e;
			}
			if (fsync(fd) < 0) {
				int e = errno;

				close(fd);
				return -e;
			}
			nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
				     O_CLOEXEC);
		}
		if (nfd < 0) {
			int e = errno;

			close(fd);
			return -e;
		}
		close(fd);
		fd = nfd;
	}
	return fd;
}

/* Write all of buf to fd. */
static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* tmp + fsync + size check + rename + fsync dir: whole or absent.
 * excl: link instead of rename, which fails if the key exists (-EEXIST). */
static int local_write(struct remote *r, const char *key, const void *buf,
		       size_t len, int excl)
{
	char dir[LOCAL_KEY_MAX], tmp[64];
	const char *base;
	uint64_t rnd;
	struct stat st;
	int dfd, fd, rc;

	split_key(key, dir, sizeof(dir), &base);
	dfd = open_dir_p(r, dir, 1);
	if (dfd < 0)
		return remote_fail(r, dfd, "%s: cannot create directory for %s: %s",
				   r->name, key, strerror(-dfd));
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&rnd;
	snprintf(tmp, sizeof(tmp), LOCAL_TMP_MARK "%016llx", (unsigned long long)rnd);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		close(dfd);
		return remote_fail(r, rc, "%s: cannot create %s: %s", r->name,
				   key, strerror(-rc));
	}
	rc = write_all(fd, buf, len);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (!rc && fstat(fd, &st) < 0)
		rc = -errno;
	if (!rc && (uint64_t)st.st_size != len)
		rc = -EBADMSG;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && !excl && renameat(dfd, tmp, dfd, base) < 0)
		rc = -errno;
	if (!rc && excl) {
		if (linkat(dfd, tmp, dfd, base, 0) < 0)
			rc = -errno;
		unlinkat(dfd, tmp, 0);
	}
	if (rc) {
		unlinkat(dfd, tmp, 0);
		close(dfd);
		if (rc == -EEXIST)
			return remote_fail(r, rc, "%s: %s exists already", r->name, key);
		return remote_fail(r, rc, "%s: writing %s failed: %s", r->name, key,
				   strerror(-rc));
	}
	if (fsync(dfd) < 0) {
		rc = -errno;
		close(dfd);
		return remote_fail(r, rc, "%s: fsync of the directory of %s: %s",
				   r->name, key, strerror(-rc));
	}
	close(dfd);
	return 0;
}

static int local_put(struct remote *r, const char *key, const void *buf,
		     size_t len)
{
	return local_write(r, key, buf, len, 0);
}

static int local_put_new(struct remote *r, const char *key, const void *buf,
			 size_t len)
{
	return local_write(r, key, buf, len, 1);
}

/* Read [off, off+len) (len 0: to the end); past the end reads nothing. */
static int local_get(struct remote *r, const char *key, uint64_t off,
		     size_t len, uint8_t **buf, size_t *got)
{
	struct stat st;
	uint8_t *b;
	size_t n, done = 0;
	int fd, rc;

	fd = openat(L(r)->dirfd, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ENOENT || rc == -ENOTDIR || rc == -ELOOP)
			return remote_fail(r, -ENOENT, "%s: %s: no such object",
					   r->name, key);
		return remote_fail(r, rc, "%s: %s: %s", r->name, key, strerror(-rc));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return remote_fail(r, -ENOENT, "%s: %s: not a regular file",
				   r->name, key);
	}
	n = off >= (uint64_t)st.st_size ? 0 : (size_t)((uint64_t)st.st_size - off);
	if (len && len < n)
		n = len;
	b = malloc(n ? n : 1);
	if (!b) {
		close(fd);
		return remote_fail(r, -ENOMEM, "%s: out of memory reading %s",
				   r->name, key);
	}
	while (done < n) {
		ssize_t k = pread(fd, b + done, n - done, (off_t)(off + done));

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = k < 0 ? -errno : -EIO;
			free(b);
			close(fd);
			return remote_fail(r, rc, "%s: reading %s: %s", r->name, key,
					   k < 0 ? strerror(-rc) : "file ended early");
		}
		done += (size_t)k;
	}
	close(fd);
	*buf = b;
	*got = n;
	return 0;
}

static int local_head(struct remote *r, const char *key, uint64_t *size)
{
	struct stat st;

	if (fstatat(L(r)->dirfd, key, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		int e = errno;

		if (e == ENOENT || e == ENOTDIR)
			return remote_fail(r, -ENOENT, "%s: %s: no such object",
					   r->name, key);
		return remote_fail(r, -e, "%s: %s: %s", r->name, key, strerror(e));
	}
	if (!S_ISREG(st.st_mode))
		return remote_fail(r, -ENOENT, "%s: %s: not a regular file",
				   r->name, key);
	*size = (uint64_t)st.st_size;
	return 0;
}

/* Unlink and make the removal durable; a missing key is fine. */
static int local_del(struct remote *r, const char *key)
{
	char dir[LOCAL_KEY_MAX];
	const char *base;
	int dfd, rc = 0;

	split_key(key, dir, sizeof(dir), &base);
	dfd = open_dir_p(r, dir, 0);
	if (dfd == -ENOENT || dfd == -ENOTDIR)
		return 0;
	if (dfd < 0)
		return remote_fail(r, dfd, "%s: %s: %s", r->name, key, strerror(-dfd));
	if (unlinkat(dfd, base, 0) < 0) {
		rc = errno == ENOENT ? 0 : -errno;
	} else if (fsync(dfd) < 0) {
		rc = -errno;
	}
	close(dfd);
	if (rc)
		return remote_fail(r, rc, "%s: deleting %s: %s", r->name, key,
				   strerror(-rc));
	return 0;
}

struct walk {
	struct remote *r;
	const char *prefix;
	size_t plen;
	remote_list_cb cb;
	void *arg;
	char key[LOCAL_KEY_MAX];	/* key of the directory being walked */
};

/*
 * Walk directory fd whose key is w->key[0..klen) ("" or "a/b/"): report
 * regular files whose key starts with the prefix, descend into
 * directories that can hold such keys.  Skips anything whose name is not
 * a key (temporary files, foreign files) and symlinks.
 */
static int walk_dir(struct walk *w, int fd, size_t klen, int depth)
{
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (depth > LOCAL_DEPTH_MAX)
		return 0;
	d = fdopendir(fd);
	if (!d) {
		rc = -errno;
		close(fd);
		return remote_fail(w->r, rc, "%s: listing: %s", w->r->name,
				   strerror(-rc));
	}
	while (!rc) {
		struct stat st;
		size_t nlen, cmp;

		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno)
				rc = remote_fail(w->r, -errno, "%s: listing: %s",
						 w->r->name, strerror(errno));
			break;
		}
		if (!name_is_key(de->d_name))
			continue;
		nlen = strlen(de->d_name);
		if (klen + nlen + 2 > sizeof(w->key))
			continue;
		memcpy(w->key + klen, de->d_name, nlen + 1);
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;	/* removed meanwhile */
		if (S_ISREG(st.st_mode)) {
			if (!strncmp(w->key, w->prefix, w->plen))
				rc = w->cb(w->arg, w->key, (uint64_t)st.st_size);
		} else if (S_ISDIR(st.st_mode)) {
			int sub;

			w->key[klen + nlen] = '/';
			w->key[klen + nlen + 1] = 0;
			/* descend only if prefix and this folder can overlap */
			cmp = klen + nlen + 1 < w->plen ? klen + nlen + 1 : w->plen;
			if (strncmp(w->key, w->prefix, cmp))
				continue;
			sub = openat(dirfd(d), de->d_name,
				     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				continue;
			rc = walk_dir(w, sub, klen + nlen + 1, depth + 1);
		}
	}
	closedir(d);
	return rc;
}

static int local_list(struct remote *r, const char *prefix, remote_list_cb cb,
		      void *arg)
{
	struct walk w = { .r = r, .prefix = prefix, .plen = strlen(prefix),
			  .cb = cb, .arg = arg };
	const char *slash = strrchr(prefix, '/');
	size_t dlen = slash ? (size_t)(slash - prefix) + 1 : 0;
	char dir[LOCAL_KEY_MAX];
	int fd;

	/* start at the deepest directory the prefix names entirely */
	if (dlen >= sizeof(dir))
		return remote_fail(r, -EINVAL, "%s: prefix too long", r->name);
	memcpy(dir, prefix, dlen);
	dir[dlen] = 0;
	fd = open_dir_p(r, dir, 0);
	if (fd == -ENOENT || fd == -ENOTDIR)
		return 0;
	if (fd < 0)
		return remote_fail(r, fd, "%s: listing %s: %s", r->name, prefix,
				   strerror(-fd));
	memcpy(w.key, dir, dlen + 1);
	return walk_dir(&w, fd, dlen, 0);
}

static void local_close(struct remote *r)
{
	struct local *l = r->priv;

	if (!l)
		return;
	close(l->dirfd);
	free(l);
	r->priv = NULL;
}

static const struct remote_backend local_backend = {
	.scheme = "file",
	.put = local_put,
	.put_new = local_put_new,
	.get = local_get,
	.head = local_head,
	.del = local_del,
	.list = local_list,
	.close = local_close,
};

/*
 * The root must already exist: creating it would, for an unmounted USB
 * disk, silently fill the mount point's file system instead.
 */
int remote_local_open(struct remote *r, const char *path)
{
	struct local *l;
	int fd;

	if (path[0] != '/')
		return remote_fail(r, -EINVAL, "%s: a local remote needs an absolute path",
				   path);
	snprintf(r->name, sizeof(r->name), "%s", path);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		return remote_fail(r, -e, "%s: %s%s", path, strerror(e),
				   e == ENOENT ? " (is the disk mounted? create the directory first)" : "");
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return remote_fail(r, -ENOMEM, "%s: out of memory", path);
	}
	l->dirfd = fd;
	r->priv = l;
	r->be = &local_backend;
	return 0;
}
