/*
 * listing.c - S3 and WebDAV listing replies to keys, and the folder walk
 * of SFTP and WebDAV (listing.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "../chunker/buf.h"
#include "listing.h"
#include "xml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DAV_PROP "multistatus/response/propstat/prop/"
#define DAV_KEY_MAX 1024	/* remote.c's longest key */

/* ---- S3 ---- */

/* Collect Contents/Key and Contents/Size pairs, the truncation state. */
static int s3_listing_cb(void *arg, const char *path, const char *text)
{
	struct s3_listing *p = arg;

	if (!strncmp(path, "Error", 5)) {
		p->is_error = 1;
	} else if (!strcmp(path, "ListBucketResult/Contents/Key")) {
		free(p->cur_key);
		p->cur_key = strdup(text);
		if (!p->cur_key)
			p->nomem = 1;
	} else if (!strcmp(path, "ListBucketResult/Contents/Size")) {
		p->cur_size = strtoull(text, NULL, 10);
	} else if (!strcmp(path, "ListBucketResult/Contents")) {
		if (!p->cur_key)
			return 0;
		struct s3_listing_ent *e = buf_grow(p->ents, &p->cap, p->n + 1,
						    sizeof(*e));

		if (!e) {
			p->nomem = 1;
			return -ENOMEM;
		}
		p->ents = e;
		p->ents[p->n].key = p->cur_key;
		p->ents[p->n].size = p->cur_size;
		p->n++;
		p->cur_key = NULL;
		p->cur_size = 0;
	} else if (!strcmp(path, "ListBucketResult/IsTruncated")) {
		p->truncated = !strcasecmp(text, "true");
	} else if (!strcmp(path, "ListBucketResult/NextContinuationToken")) {
		free(p->token);
		p->token = strdup(text);
		if (!p->token)
			p->nomem = 1;
	}
	return 0;
}

int s3_listing_parse(const char *xml, size_t len, struct s3_listing *p)
{
	int rc = xml_walk(xml, len, s3_listing_cb, p);

	if (p->nomem || rc == -ENOMEM)
		return -ENOMEM;
	return rc ? -EBADMSG : 0;
}

int s3_listing_deliver(const struct s3_listing *p, const char *full,
		       size_t plen, remote_list_cb cb, void *arg)
{
	size_t flen = strlen(full);
	int rc = 0;

	for (size_t i = 0; !rc && i < p->n; i++) {
		const char *k = p->ents[i].key;

		if (strncmp(k, full, flen) || strlen(k) <= plen)
			continue;
		rc = cb(arg, k + plen, p->ents[i].size);
	}
	return rc;
}

void s3_listing_free(struct s3_listing *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->ents[i].key);
	free(p->ents);
	free(p->cur_key);
	free(p->token);
	memset(p, 0, sizeof(*p));
}

/* ---- WebDAV ---- */

char *dav_url_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;
	const char *e = s + n;

	if (!out)
		return NULL;
	while (s < e) {
		unsigned v;

		if (s[0] == '%' && e - s >= 3 && sscanf(s + 1, "%2x", &v) == 1) {
			*o++ = (char)v;
			s += 3;
		} else {
			*o++ = *s++;
		}
	}
	*o = 0;
	return out;
}

int listing_is_temp_name(const char *name)
{
	size_t n = strlen(name);

	if (n < 21 || strncmp(name + n - 21, ".tmp-", 5))
		return 0;
	for (size_t i = n - 16; i < n; i++)
		if (!strchr("0123456789abcdef", name[i]))
			return 0;
	return 1;
}

/* ---- folder walks ---- */

int listing_dirs_push(struct listing_dirs *d, char *dir)
{
	char **nv = buf_grow(d->v, &d->cap, d->n + 1, sizeof(*nv));
	if (!nv) {
		free(dir);
		return -ENOMEM;
	}
	d->v = nv;
	d->v[d->n++] = dir;
	return 0;
}

int listing_dir_may_match(const char *dir, const char *prefix)
{
	size_t a = strlen(dir), b = strlen(prefix);

	return !strncmp(dir, prefix, a < b ? a : b);
}

int listing_walk(struct remote *r, const char *prefix, listing_dir_fn list_dir,
		 remote_list_cb cb, void *arg)
{
	struct listing_dirs todo = { 0 };
	const char *slash = strrchr(prefix, '/');
	char *first = strndup(prefix, slash ? (size_t)(slash - prefix + 1) : 0);
	int rc;

	if (!first)
		return -ENOMEM;
	rc = listing_dirs_push(&todo, first);
	while (!rc && todo.n) {
		char *dir = todo.v[--todo.n];

		rc = list_dir(r, dir, prefix, &todo, cb, arg);
		free(dir);
	}
	while (todo.n)
		free(todo.v[--todo.n]);
	free(todo.v);
	return rc;
}

/* ---- WebDAV ---- */

/* Can the n bytes at rel name something below collection dir?  Strictly
 * below it, with no empty, "." or ".." component, and not longer than a
 * key may be: so a server cannot make the walk go round in circles or
 * down forever, whatever it answers. */
static int below_dir(const char *rel, size_t n, const char *dir)
{
	size_t dlen = strlen(dir), start = 0;

	if (n <= dlen || n > DAV_KEY_MAX || strncmp(rel, dir, dlen))
		return 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && rel[i] != '/')
			continue;
		size_t clen = i - start;

		if (clen == 0 || (clen == 1 && rel[start] == '.') ||
		    (clen == 2 && rel[start] == '.' && rel[start + 1] == '.'))
			return 0;
		start = i + 1;
	}
	return 1;
}

/* One <response> is complete: report a file or queue a collection. */
static int dav_listing_entry(struct dav_listing *l)
{
	size_t blen = strlen(l->base_path), n;
	const char *path = l->href, *rel, *name;
	char *key;
	int rc = 0;

	if (!path)
		return 0;
	/* an absolute URL: keep its path */
	if (!strncmp(path, "https://", 8) || !strncmp(path, "http://", 7)) {
		path = strchr(strchr(path, ':') + 3, '/');
		if (!path)
			return 0;
	}
	if (strncmp(path, l->base_path, blen)) {
		if (blen && !strncmp(path, l->base_path, blen - 1) &&
		    !path[blen - 1])
			return 0;	/* the base itself, without '/' */
		snprintf(l->problem, sizeof(l->problem),
			 "the server answered for %.100s, outside the base", path);
		return -EIO;
	}
	rel = path + blen;
	n = strlen(rel);
	while (n && rel[n - 1] == '/')
		n--;
	if (!n || (!strncmp(rel, l->dir, n) && strlen(l->dir) == n + 1))
		return 0;	/* the listed collection itself */
	if (!below_dir(rel, n, l->dir))
		return 0;	/* nothing a Depth: 1 reply should hold */
	if (l->collection) {
		if (asprintf(&key, "%.*s/", (int)n, rel) < 0)
			return -ENOMEM;
		if (listing_dir_may_match(key, l->prefix))
			return listing_dirs_push(l->todo, key);
		free(key);
		return 0;
	}
	if (!l->has_size)
		return 0;
	/* the name is judged as the key ends, without the '/'s cut off */
	if (asprintf(&key, "%.*s", (int)n, rel) < 0)
		return -ENOMEM;
	name = strrchr(key, '/');
	name = name ? name + 1 : key;
	if (!listing_is_temp_name(name) && !strncmp(key, l->prefix, strlen(l->prefix)))
		rc = l->cb(l->arg, key, l->size);
	free(key);
	return rc;
}

/* xml_walk callback over a multistatus. */
static int dav_listing_cb(void *arg, const char *path, const char *text)
{
	struct dav_listing *l = arg;
	int rc;

	if (!strcmp(path, "multistatus/response/href")) {
		free(l->href);
		l->href = dav_url_decode(text, strlen(text));
		if (!l->href)
			return -ENOMEM;
	} else if (!strcmp(path, DAV_PROP "resourcetype/collection")) {
		l->collection = 1;
	} else if (!strcmp(path, DAV_PROP "getcontentlength")) {
		char *end;

		if (*text) {
			l->size = strtoull(text, &end, 10);
			l->has_size = !*end;
		}
	} else if (!strcmp(path, "multistatus/response")) {
		rc = dav_listing_entry(l);
		free(l->href);
		l->href = NULL;
		l->collection = 0;
		l->has_size = 0;
		return rc;
	}
	return 0;
}

int dav_listing_parse(const char *xml, size_t len, struct dav_listing *l)
{
	int rc = xml_walk(xml, len, dav_listing_cb, l);

	free(l->href);
	l->href = NULL;
	return rc;
}
