/*
 * diff.c - what changed between two views of a volume (diff.h): the
 * inodes with rows born or ended between the two epochs, each compared
 * by attributes and extents, reported under every name it has.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../chunker/buf.h"
#include "diff.h"

/* The path of directory or file ino in view through its first link, or
 * NULL if not visible. */
static char *path_of(struct index *ix, int64_t vol, int64_t view, uint64_t ino)
{
	char *path = strdup("");
	int depth = 0;
	while (path && ino != ROOT_INO && depth++ < 4096) {
		uint64_t parent;
		char name[NAME_MAX + 1];
		if (ns_dentry_of(ix, vol, view, ino, &parent, name, sizeof(name))) {
			free(path);
			return NULL;
		}
		char *np = malloc(strlen(name) + strlen(path) + 2);
		if (!np)
			break;
		sprintf(np, "%s%s%s", name, *path ? "/" : "", path);
		free(path);
		path = np;
		ino = parent;
	}
	return path;
}

/* Every path of ino in a view: one per hard link. */
struct paths {
	struct index *ix;
	int64_t vol, view;
	char **p;
	size_t n, cap;
};

static int add_path(void *arg, const char *name, uint64_t parent, uint32_t mode)
{
	(void)mode;
	struct paths *ps = arg;
	char *dir = path_of(ps->ix, ps->vol, ps->view, parent);
	if (!dir)
		return 0;
	char *full = NULL;
	if (asprintf(&full, "%s%s%s", dir, *dir ? "/" : "", name) > 0) {
		char **np = buf_grow(ps->p, &ps->cap, ps->n + 1, sizeof(*np));
		if (np) {
			ps->p = np;
			ps->p[ps->n++] = full;
		} else {
			free(full);
		}
	}
	free(dir);
	return 0;
}

static void paths_of(struct index *ix, int64_t vol, int64_t view, uint64_t ino,
		     struct paths *ps)
{
	ps->ix = ix;
	ps->vol = vol;
	ps->view = view;
	ps->p = NULL;
	ps->n = 0;
	ns_dentry_names(ix, vol, view, ino, add_path, ps);
}

static int in_paths(const struct paths *ps, const char *p)
{
	for (size_t i = 0; i < ps->n; i++)
		if (!strcmp(ps->p[i], p))
			return 1;
	return 0;
}

static void paths_free(struct paths *ps)
{
	for (size_t i = 0; i < ps->n; i++)
		free(ps->p[i]);
	free(ps->p);
}

/* 1 if ino's content or metadata differ between views a and b. */
static int inode_differs(struct index *ix, int64_t vol, int64_t a, int64_t b,
			 uint64_t ino, const struct inode_attr *x,
			 const struct inode_attr *y)
{
	if (x->mode != y->mode || x->uid != y->uid || x->gid != y->gid ||
	    x->size != y->size || x->mtime != y->mtime)
		return 1;
	struct extent *ea, *eb;
	size_t na, nb;
	if (ns_extents_in(ix, vol, a, ino, 0, INT64_MAX, &ea, &na))
		return 1;
	if (ns_extents_in(ix, vol, b, ino, 0, INT64_MAX, &eb, &nb)) {
		free(ea);
		return 1;
	}
	int d = na != nb || (na && memcmp(ea, eb, na * sizeof(*ea)));
	free(ea);
	free(eb);
	return d;
}

static int path_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a + 2, *(char *const *)b + 2);
}

int diff_views(struct index *ix, int64_t vol, int64_t a, int64_t b,
	       char ***out, size_t *count)
{
	uint64_t *inos;
	size_t n;
	*out = NULL;
	*count = 0;
	int err = ns_changed_inodes(ix, vol, a < b ? a : b, a < b ? b : a, &inos, &n);
	if (err)
		return err;
	size_t cap = n ? 2 * n : 1, nl = 0;
	char **lines = calloc(cap, sizeof(*lines));
	if (!lines) {
		free(inos);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n && !err; i++) {
		struct inode_attr x, y;
		int ina = !ns_inode_get(ix, vol, a, inos[i], &x);
		int inb = !ns_inode_get(ix, vol, b, inos[i], &y);
		if (inos[i] == ROOT_INO)
			continue;
		struct paths pa = { 0 }, pb = { 0 };
		if (ina)
			paths_of(ix, vol, a, inos[i], &pa);
		if (inb)
			paths_of(ix, vol, b, inos[i], &pb);
		int changed = ina && inb && !S_ISDIR(x.mode) &&
			      inode_differs(ix, vol, a, b, inos[i], &x, &y);
		/* Every name: gone ones, new ones, and changed content under
		 * the names it kept (a hard link has several). */
		for (size_t k = 0; k < pa.n + pb.n && !err; k++) {
			const char *p = k < pa.n ? pa.p[k] : pb.p[k - pa.n];
			char kind = 0;
			if (k < pa.n && !in_paths(&pb, p))
				kind = '-';
			else if (k >= pa.n && !in_paths(&pa, p))
				kind = '+';
			else if (k >= pa.n && changed)
				kind = 'M';
			if (!kind)
				continue;
			char **nlines = buf_grow(lines, &cap, nl + 1, sizeof(*lines));
			if (!nlines) {
				err = -ENOMEM;
				break;
			}
			lines = nlines;
			char *l = NULL;
			if (asprintf(&l, "%c %s", kind, p) > 0)
				lines[nl++] = l;
		}
		paths_free(&pa);
		paths_free(&pb);
	}
	free(inos);
	qsort(lines, nl, sizeof(*lines), path_cmp);
	*out = lines;
	*count = nl;
	return err;
}
