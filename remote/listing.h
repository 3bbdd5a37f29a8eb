/*
 * listing.h - the listing replies of object stores, from bytes to keys
 * (S3 ListObjectsV2 pages, WebDAV PROPFIND multistatus documents), and
 * the folder walk that SFTP and WebDAV list a prefix with.
 *
 * The parsers read what a server (or whoever sits between) sends, so
 * they take no struct remote and open no connection: the backends (s3.c,
 * webdav.c) and the fuzz targets (tests/fuzz/fuzz_s3_list.c,
 * fuzz_webdav_list.c) run the same code.  Keys handed on here still pass
 * remote.c's key check before a caller sees them.
 */
#ifndef TRESOR_LISTING_H
#define TRESOR_LISTING_H

#include <stddef.h>
#include <stdint.h>

#include "remote.h"

/* ---- S3 ---- */

struct s3_listing_ent {
	char *key;
	uint64_t size;
};

/* One ListObjectsV2 page. */
struct s3_listing {
	struct s3_listing_ent *ents;
	size_t n, cap;
	char *cur_key;
	uint64_t cur_size;
	int truncated;		/* IsTruncated was true */
	char *token;		/* NextContinuationToken */
	int is_error;		/* the body was an <Error> document */
	int nomem;
};

/* Parse one page into p (zeroed by the caller or by s3_listing_free).
 * 0; -ENOMEM; -EBADMSG for malformed XML.  An <Error> document sets
 * p->is_error and returns 0: its details are the caller's to read. */
int s3_listing_parse(const char *xml, size_t len, struct s3_listing *p);

/* Hand cb the keys of p that start with full (the remote's prefix plus
 * the listed prefix) and are longer than plen, minus their first plen
 * bytes (the remote's prefix), with their sizes.  Stops at cb's first
 * non-zero return, which it returns. */
int s3_listing_deliver(const struct s3_listing *p, const char *full,
		       size_t plen, remote_list_cb cb, void *arg);

void s3_listing_free(struct s3_listing *p);

/* ---- folder walks (SFTP, WebDAV) ---- */

/* Folders still to list, relative to the base ("" or "x/y/"). */
struct listing_dirs {
	char **v;
	size_t n, cap;
};

/* Push dir (malloc'd; freed on failure); -ENOMEM. */
int listing_dirs_push(struct listing_dirs *d, char *dir);

/* Does any key below folder dir start with prefix (or the reverse)? */
int listing_dir_may_match(const char *dir, const char *prefix);

/* List one folder dir of r: hand cb the files whose key starts with
 * prefix, push onto todo the folders below that may hold such keys. */
typedef int (*listing_dir_fn)(struct remote *r, const char *dir, const char *prefix,
			      struct listing_dirs *todo, remote_list_cb cb, void *arg);

/* Walk the folders below prefix depth-first, one list_dir each, starting
 * at its folder part ("data/a" starts at "data/").  Stops at the first
 * non-zero return, which it returns. */
int listing_walk(struct remote *r, const char *prefix, listing_dir_fn list_dir,
		 remote_list_cb cb, void *arg);

/* ---- WebDAV ---- */

/* The state of one PROPFIND reply's walk. */
struct dav_listing {
	const char *base_path;	/* the remote's path, decoded, ending in '/' */
	const char *dir;	/* the collection listed, relative */
	const char *prefix;	/* the keys wanted */
	struct listing_dirs *todo;	/* collections below get pushed here */
	remote_list_cb cb;
	void *arg;
	char problem[160];	/* why -EIO, for the caller's message */
	/* per <response> */
	char *href;
	int collection;
	int has_size;
	uint64_t size;
};

/* Walk one multistatus: files below the base whose key starts with
 * prefix go to cb (temporary upload names never), collections that may
 * hold such keys go onto todo.  0; cb's non-zero return; -ENOMEM;
 * -EBADMSG for malformed XML; -EIO with l->problem set when the server
 * answers for a path outside the base. */
int dav_listing_parse(const char *xml, size_t len, struct dav_listing *l);

/* Percent-decode n bytes of s into a new string (NULL: out of memory). */
char *dav_url_decode(const char *s, size_t n);

/* Is name one of the temporaries put uploads to before renaming
 * ("KEY.tmp-" and 16 hex digits; WebDAV and SFTP)?  They are never listed. */
int listing_is_temp_name(const char *name);

#endif
