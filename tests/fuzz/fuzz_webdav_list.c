/*
 * fuzz_webdav_list.c - libFuzzer target for the WebDAV PROPFIND
 * multistatus parser (remote/listing.c: dav_listing_parse), the code
 * webdav.c runs on every collection it lists.  The first input byte
 * picks the base path, the collection listed and the wanted prefix; the
 * rest is the reply body.  Checked, for whatever the server sends:
 * every key handed on is non-empty, starts with the prefix, lies below
 * the listed collection, has no trailing '/', and is no upload
 * temporary; every collection queued ends in '/', lies strictly below
 * the listed one and has no empty, "." or ".." component (so the walk
 * ends); an -EIO comes with a reason; nothing leaks (ASan).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "listing.h"

static const char *const bases[] = { "/", "/dav/", "/remote.php/dav/files/u/tresor/" };
static const char *const dirs[] = { "", "data/", "data/0a/", "meta/" };
static const char *const prefixes[] = { "", "data/", "data/0", "meta/" };

static int bad_components(const char *k, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i < n && k[i] != '/')
			continue;
		size_t c = i - start;
		if (c == 0 || (c == 1 && k[start] == '.') ||
		    (c == 2 && k[start] == '.' && k[start + 1] == '.'))
			return 1;
		start = i + 1;
	}
	return 0;
}

struct ctx {
	const char *dir, *prefix;
	size_t calls;
};

static int on_key(void *arg, const char *key, uint64_t size)
{
	struct ctx *c = arg;
	size_t n = strlen(key);
	const char *name = strrchr(key, '/');

	(void)size;
	if (!n || key[n - 1] == '/' || strncmp(key, c->prefix, strlen(c->prefix)) ||
	    strncmp(key, c->dir, strlen(c->dir)) || n <= strlen(c->dir) ||
	    bad_components(key, n) || listing_is_temp_name(name ? name + 1 : key))
		abort();
	c->calls++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct listing_dirs todo = { 0 };
	struct ctx c = { .dir = dirs[(data[0] >> 2) % 4],
			 .prefix = prefixes[(data[0] >> 4) % 4] };
	struct dav_listing l = { .base_path = bases[data[0] % 3], .dir = c.dir,
				 .prefix = c.prefix, .todo = &todo,
				 .cb = on_key, .arg = &c };
	int rc = dav_listing_parse((const char *)data + 1, size - 1, &l);

	if (rc != 0 && rc != -ENOMEM && rc != -EBADMSG && rc != -EIO)
		abort();
	if (rc == -EIO && !l.problem[0])
		abort();
	if (l.href)
		abort();
	for (size_t i = 0; i < todo.n; i++) {
		const char *k = todo.v[i];
		size_t n = strlen(k);

		if (!n || k[n - 1] != '/' || strncmp(k, c.dir, strlen(c.dir)) ||
		    n <= strlen(c.dir) || bad_components(k, n - 1))
			abort();
		free(todo.v[i]);
	}
	free(todo.v);
	return 0;
}
