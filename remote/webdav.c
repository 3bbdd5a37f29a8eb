/*
 * webdav.c - the WebDAV backend over HTTPS (a Hetzner Storage Box,
 * Nextcloud, Apache mod_dav): https://host[:port]/path.
 *
 * Credentials come only from a netrc-style file (basic auth) that only
 * its owner may read, never from the URL.  A put uploads to
 * "KEY.tmp-RANDOM" (creating missing parent collections with MKCOL when
 * the server answers 409), checks the temporary's size, then MOVEs it
 * to KEY with "Overwrite: F": tresor never overwrites, so a 412 means
 * an earlier attempt (or, for a create-only put, another writer) already
 * published KEY and only its size decides.  The published object's size
 * is checked again: mod_dav_fs tests the condition before it renames, so
 * a racing writer's MOVE can replace ours.  Listing walks the
 * collections below the prefix with PROPFIND Depth: 1 (Depth: infinity
 * is disabled on most servers), parsing the multistatus with expat.
 * Temporary names are never listed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "http.h"
#include "listing.h"
#include "xml.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* libcurl's upload buffer: fewer, larger TLS writes for big packs. */
#define DAV_UPLOAD_BUFFER	(512L << 10)
/* A collection listing is retried this often on transient errors. */
#define DAV_LIST_TRIES		4
#define DAV_XML_TYPE		"Content-Type: application/xml; charset=utf-8"
/* Where a multistatus holds the properties we ask for. */
#define DAV_PROP		"multistatus/response/propstat/prop/"

static const char propfind_body[] =
	"<?xml version=\"1.0\" encoding=\"utf-8\"?>"
	"<D:propfind xmlns:D=\"DAV:\"><D:prop>"
	"<D:resourcetype/><D:getcontentlength/>"
	"</D:prop></D:propfind>";

struct webdav {
	CURL *c;
	char *base;		/* https://host[:port]/path/ (trailing '/') */
	char *base_path;	/* its path, percent-decoded, trailing '/' */
	size_t path_off;	/* where the path starts in base */
	char *netrc;
};

/* The bytes of an upload. */
struct source {
	const uint8_t *p;
	size_t len, off;
};

/* "$HOME/rest" (or the passwd entry's home), malloc'd. */
static char *home_path(const char *rest)
{
	const char *home = getenv("HOME");
	char *out;

	if (!home || !*home) {
		struct passwd *pw = getpwuid(getuid());

		home = pw ? pw->pw_dir : "/";
	}
	if (asprintf(&out, "%s/%s", home, rest) < 0)
		return NULL;
	return out;
}

static size_t source_read(char *data, size_t size, size_t n, void *arg)
{
	struct source *src = arg;
	size_t want = size * n, left = src->len - src->off;

	if (want > left)
		want = left;
	memcpy(data, src->p + src->off, want);
	src->off += want;
	return want;
}

/* Rewind an upload (libcurl asks when it must resend the body). */
static int source_seek(void *arg, curl_off_t off, int origin)
{
	struct source *src = arg;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > src->len)
		return CURL_SEEKFUNC_CANTSEEK;
	src->off = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

/*
 * A handle for one request: method, absolute URL, netrc basic auth.
 * Requests that move no body get a total time limit on top of the
 * low-speed limit http_easy sets.
 */
static CURL *dav_easy_url(struct remote *r, const char *method, const char *url,
			  int bodyless)
{
	struct webdav *w = r->priv;
	CURL *c = http_easy(r, &w->c);

	if (!c)
		return NULL;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NETRC, (long)CURL_NETRC_REQUIRED);
	curl_easy_setopt(c, CURLOPT_NETRC_FILE, w->netrc);
	curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else if (strcmp(method, "GET"))
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (bodyless)
		curl_easy_setopt(c, CURLOPT_TIMEOUT,
				 (long)(r->opt.timeout_s > 0 ? r->opt.timeout_s : 120));
	return c;
}

/* The same for a key (or collection) relative to the base. */
static CURL *dav_easy(struct remote *r, const char *method, const char *rel,
		      int bodyless)
{
	struct webdav *w = r->priv;
	CURL *c;
	char *url;

	/* keys are [A-Za-z0-9._-/]: nothing to encode */
	if (asprintf(&url, "%s%s", w->base, rel) < 0)
		return NULL;
	c = dav_easy_url(r, method, url, bodyless);
	free(url);
	return c;
}

/*
 * Turn a reply's status into -errno with a message saying what was
 * done to which key.
 */
static int dav_perform_status(struct remote *r, const struct http_resp *resp,
			      const char *what, const char *key)
{
	struct webdav *w = r->priv;
	int rc = http_status_errno(resp->status);

	switch (rc) {
	case 0:
		return 0;
	case -ENOENT:
		return remote_fail(r, rc, "%s: %s %s: not found", r->name, what,
				   key);
	case -EACCES:
		if (resp->status == 401)
			return remote_fail(r, rc, "%s: login refused (HTTP 401): "
					   "check the entry for this host in %s",
					   r->name, w->netrc);
		return remote_fail(r, rc, "%s: %s %s: forbidden (HTTP 403)",
				   r->name, what, key);
	case -EAGAIN:
		return remote_fail(r, rc, "%s: %s %s: HTTP %ld (will retry)",
				   r->name, what, key, resp->status);
	default:
		if (resp->status == 507)
			return remote_fail(r, -ENOSPC, "%s: %s %s: the server is "
					   "out of space (HTTP 507)", r->name,
					   what, key);
		return remote_fail(r, rc, "%s: %s %s: unexpected HTTP %ld",
				   r->name, what, key, resp->status);
	}
}

/* Perform, then judge the status (see dav_perform_status). */
static int dav_perform(struct remote *r, CURL *c, struct http_resp *resp,
		       const char *what, const char *key)
{
	int rc = http_perform(r, c, resp);

	return rc ? rc : dav_perform_status(r, resp, what, key);
}

/* A request without a body to send; the reply is left in resp. */
static int dav_simple(struct remote *r, const char *method, const char *rel,
		      struct curl_slist *hdrs, struct http_resp *resp)
{
	CURL *c = dav_easy(r, method, rel, 1);

	memset(resp, 0, sizeof(*resp));
	if (!c)
		return -ENOMEM;
	if (hdrs)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	return http_perform(r, c, resp);
}

/* PROPFIND rel for resourcetype and getcontentlength ("Depth: 0/1"). */
static int dav_propfind(struct remote *r, const char *rel, const char *depth,
			const char *what, const char *key, struct http_resp *resp)
{
	struct curl_slist *hdrs, *h;
	CURL *c = NULL;
	int rc = -ENOMEM;

	memset(resp, 0, sizeof(*resp));
	hdrs = curl_slist_append(NULL, depth);
	h = hdrs ? curl_slist_append(hdrs, DAV_XML_TYPE) : NULL;
	if (h)
		c = dav_easy(r, "PROPFIND", rel, 0);
	if (c) {
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, propfind_body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE,
				 (long)sizeof(propfind_body) - 1);
		rc = dav_perform(r, c, resp, what, key);
	}
	curl_slist_free_all(hdrs);
	return rc;
}

/* xml_walk callback: the getcontentlength of a Depth: 0 PROPFIND. */
static int size_cb(void *arg, const char *path, const char *text)
{
	int64_t *size = arg;
	char *end;

	if (!strcmp(path, DAV_PROP "getcontentlength") && *text) {
		uint64_t v = strtoull(text, &end, 10);

		if (!*end && v < INT64_MAX)
			*size = (int64_t)v;
	}
	return 0;
}

/* Size of rel by PROPFIND Depth: 0 (for servers whose HEAD has none). */
static int dav_size_propfind(struct remote *r, const char *rel, const char *key,
			     uint64_t *size)
{
	struct http_resp resp;
	int64_t got = -1;
	int rc;

	rc = dav_propfind(r, rel, "Depth: 0", "stat", key, &resp);
	if (!rc && resp.status == 207)
		rc = xml_walk((const char *)resp.body, resp.len, size_cb, &got);
	if (!rc && got < 0)
		rc = remote_fail(r, -EIO, "%s: stat %s: the server gave no size",
				 r->name, key);
	else if (rc == -EBADMSG)
		rc = remote_fail(r, -EIO, "%s: stat %s: malformed PROPFIND reply",
				 r->name, key);
	http_resp_free(&resp);
	if (!rc)
		*size = (uint64_t)got;
	return rc;
}

/*
 * Size of rel by HEAD; libcurl reports an empty body's length as
 * unknown, so then PROPFIND decides.
 */
static int dav_size(struct remote *r, const char *rel, const char *key,
		    uint64_t *size)
{
	struct http_resp resp;
	curl_off_t cl = -1;
	CURL *c = dav_easy(r, "HEAD", rel, 1);
	int rc;

	if (!c)
		return -ENOMEM;
	rc = dav_perform(r, c, &resp, "stat", key);
	http_resp_free(&resp);
	if (rc)
		return rc;
	curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (cl < 0)
		return dav_size_propfind(r, rel, key, size);
	*size = (uint64_t)cl;
	return 0;
}

/* DELETE rel; a missing one is fine. */
static int dav_delete_rel(struct remote *r, const char *rel, const char *key)
{
	struct http_resp resp;
	CURL *c = dav_easy(r, "DELETE", rel, 1);
	int rc;

	if (!c)
		return -ENOMEM;
	rc = dav_perform(r, c, &resp, "delete", key);
	http_resp_free(&resp);
	return rc == -ENOENT ? 0 : rc;
}

/* Remove a temporary, keeping the error that made us do it. */
static void dav_rm_quiet(struct remote *r, const char *rel)
{
	char err[sizeof(r->err)];

	memcpy(err, r->err, sizeof(err));
	(void)dav_delete_rel(r, rel, rel);
	memcpy(r->err, err, sizeof(err));
}

/*
 * Create every collection above key, the base's own path included (a
 * first push to a new folder), top down.  405 (exists) and 301 (exists,
 * Apache redirects to the slash form) are fine.
 */
static int dav_mkcols(struct remote *r, const char *key)
{
	struct webdav *w = r->priv;
	char *url, *p;
	int rc = 0;

	if (asprintf(&url, "%s%s", w->base, key) < 0)
		return -ENOMEM;
	for (p = strchr(url + w->path_off + 1, '/'); p && !rc;
	     p = strchr(p + 1, '/')) {
		struct http_resp resp = { 0 };
		char save = p[1];
		CURL *c;

		p[1] = 0;
		c = dav_easy_url(r, "MKCOL", url, 1);
		rc = c ? http_perform(r, c, &resp) : -ENOMEM;
		/* mod_dav_fs answers 403 when another client (a parallel
		 * push job) created the collection between its check and its
		 * mkdir (EEXIST): ask once more, an existing one gives 405 */
		if (!rc && resp.status == 403) {
			http_resp_free(&resp);
			c = dav_easy_url(r, "MKCOL", url, 1);
			rc = c ? http_perform(r, c, &resp) : -ENOMEM;
		}
		if (!rc && resp.status != 201 && resp.status != 405 &&
		    resp.status != 301) {
			rc = http_status_errno(resp.status);
			rc = remote_fail(r, rc ? rc : -EIO, "%s: create collection "
					 "%s: HTTP %ld", r->name,
					 url + w->path_off, resp.status);
		}
		http_resp_free(&resp);
		p[1] = save;
	}
	free(url);
	return rc;
}

/* PUT buf to rel; a 409 (no parent collection) is returned as -ENOTDIR. */
static int dav_put_raw(struct remote *r, const char *rel, const char *key,
		       const void *buf, size_t len)
{
	struct source src = { .p = buf, .len = len };
	struct http_resp resp;
	CURL *c = dav_easy(r, "PUT", rel, 0);
	int rc;

	if (!c)
		return -ENOMEM;
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, source_read);
	curl_easy_setopt(c, CURLOPT_READDATA, &src);
	curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, source_seek);
	curl_easy_setopt(c, CURLOPT_SEEKDATA, &src);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, DAV_UPLOAD_BUFFER);
	rc = http_perform(r, c, &resp);
	if (!rc && resp.status == 409)
		rc = -ENOTDIR;
	else if (!rc)
		rc = dav_perform_status(r, &resp, "upload", key);
	http_resp_free(&resp);
	return rc;
}

/* "KEY.tmp-" and 16 random hex digits. */
static int temp_key(struct remote *r, const char *key, char **out)
{
	uint8_t rnd[8];

	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		return remote_fail(r, -EIO, "%s: no random bytes", r->name);
	if (asprintf(out, "%s.tmp-%02x%02x%02x%02x%02x%02x%02x%02x", key,
		     rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6],
		     rnd[7]) < 0)
		return -ENOMEM;
	return 0;
}

/* Is this name one of our temporaries ("....tmp-" + 16 hex)? */
/*
 * PUT to a temporary, check its size, MOVE it into place without
 * overwriting, check the published size.  excl: KEY existing already is
 * -EEXIST, not an earlier attempt of ours.
 */
static int dav_write(struct remote *r, const char *key, const void *buf, size_t len,
		     int excl)
{
	struct webdav *w = r->priv;
	struct curl_slist *hdrs = NULL, *h;
	struct http_resp resp = { 0 };
	char *tmp = NULL, *dest = NULL;
	uint64_t size;
	int rc;

	rc = temp_key(r, key, &tmp);
	if (rc)
		return rc;
	rc = dav_put_raw(r, tmp, key, buf, len);
	if (rc == -ENOTDIR) {
		rc = dav_mkcols(r, key);
		if (!rc)
			rc = dav_put_raw(r, tmp, key, buf, len);
		if (rc == -ENOTDIR)
			rc = remote_fail(r, -EIO, "%s: upload %s: the server "
					 "still has no parent collection",
					 r->name, key);
	}
	if (rc)
		goto cleanup;
	rc = dav_size(r, tmp, key, &size);
	if (rc)
		goto cleanup;
	if (size != len) {
		rc = remote_fail(r, -EAGAIN, "%s: upload %s: the server holds "
				 "%llu of %zu bytes", r->name, key,
				 (unsigned long long)size, len);
		goto cleanup;
	}

	if (asprintf(&dest, "Destination: %s%s", w->base, key) < 0) {
		dest = NULL;
		rc = -ENOMEM;
		goto cleanup;
	}
	hdrs = curl_slist_append(NULL, dest);
	h = hdrs ? curl_slist_append(hdrs, "Overwrite: F") : NULL;
	if (!h) {
		rc = -ENOMEM;
		goto cleanup;
	}
	rc = dav_simple(r, "MOVE", tmp, hdrs, &resp);
	if (rc)
		goto cleanup;
	if (resp.status == 412 && excl) {
		rc = remote_fail(r, -EEXIST, "%s: %s exists already", r->name, key);
		goto cleanup;
	} else if (resp.status == 412) {
		/* KEY exists: published before (a retry after a lost reply). */
		dav_rm_quiet(r, tmp);
	} else {
		rc = dav_perform_status(r, &resp, "publish", key);
		if (rc)
			goto cleanup;
	}
	rc = dav_size(r, key, key, &size);
	/* mod_dav_fs checks "Overwrite: F" before it renames: two MOVEs at
	 * one moment may both succeed, the later replacing the earlier */
	if (!rc && size != len && excl)
		rc = remote_fail(r, -EEXIST, "%s: %s was published by another "
				 "writer at the same moment", r->name, key);
	else if (!rc && size != len)
		rc = remote_fail(r, -EBADMSG, "%s: %s exists with %llu bytes, "
				 "not %zu", r->name, key,
				 (unsigned long long)size, len);
	goto out;
cleanup:
	dav_rm_quiet(r, tmp);
out:
	http_resp_free(&resp);
	curl_slist_free_all(hdrs);
	free(dest);
	free(tmp);
	return rc;
}

static int dav_put(struct remote *r, const char *key, const void *buf, size_t len)
{
	return dav_write(r, key, buf, len, 0);
}

static int dav_put_new(struct remote *r, const char *key, const void *buf, size_t len)
{
	return dav_write(r, key, buf, len, 1);
}

/* GET with a Range; a server that ignores the range is handled too. */
static int dav_get(struct remote *r, const char *key, uint64_t off, size_t len,
		   uint8_t **buf, size_t *got)
{
	struct http_resp resp;
	char range[64];
	CURL *c = dav_easy(r, "GET", key, 0);
	int rc;

	if (!c)
		return -ENOMEM;
	if (len)
		snprintf(range, sizeof(range), "%llu-%llu",
			 (unsigned long long)off,
			 (unsigned long long)(off + len - 1));
	else
		snprintf(range, sizeof(range), "%llu-", (unsigned long long)off);
	if (off || len)
		curl_easy_setopt(c, CURLOPT_RANGE, range);
	rc = http_perform(r, c, &resp);
	if (rc)
		return rc;
	if (resp.status == 416) {
		/* the offset is at or past the end: nothing to read */
		resp.len = 0;
	} else {
		rc = dav_perform_status(r, &resp, "download", key);
		if (rc) {
			http_resp_free(&resp);
			return rc;
		}
		if (resp.status == 200 && off) {
			/* the whole object came back: cut out the range */
			if (off >= resp.len) {
				resp.len = 0;
			} else {
				memmove(resp.body, resp.body + off,
					resp.len - (size_t)off);
				resp.len -= (size_t)off;
			}
		}
		if (len && resp.len > len)
			resp.len = len;
	}
	*buf = resp.body;
	*got = resp.len;
	return 0;
}

static int dav_head(struct remote *r, const char *key, uint64_t *size)
{
	return dav_size(r, key, key, size);
}

static int dav_del(struct remote *r, const char *key)
{
	return dav_delete_rel(r, key, key);
}

/* PROPFIND Depth: 1 on one collection (with retries), walk the reply. */
static int list_dir(struct remote *r, const char *dir, const char *prefix,
		    struct listing_dirs *todo, remote_list_cb cb, void *arg)
{
	struct webdav *w = r->priv;
	struct dav_listing l = { .base_path = w->base_path, .dir = dir,
				 .prefix = prefix, .todo = todo, .cb = cb,
				 .arg = arg };
	struct http_resp resp = { 0 };
	int rc = 0;

	for (int t = 0; t < DAV_LIST_TRIES; t++) {
		struct timespec ts = { 1 << t, 0 };

		http_resp_free(&resp);
		rc = dav_propfind(r, dir, "Depth: 1", "list", *dir ? dir : "/",
				  &resp);
		if (rc != -EAGAIN)
			break;
		if (t + 1 < DAV_LIST_TRIES)
			nanosleep(&ts, NULL);
	}
	if (rc == -ENOENT) {
		rc = 0;		/* no such collection: nothing below it */
		goto out;
	}
	if (rc)
		goto out;
	if (resp.status != 207) {
		rc = remote_fail(r, -EIO, "%s: list %s: expected a multistatus, "
				 "got HTTP %ld", r->name, dir, resp.status);
		goto out;
	}
	rc = dav_listing_parse((const char *)resp.body, resp.len, &l);
	if (rc == -EBADMSG)
		rc = remote_fail(r, -EIO, "%s: list %s: malformed PROPFIND reply",
				 r->name, dir);
	else if (rc == -EIO && l.problem[0])
		rc = remote_fail(r, -EIO, "%s: list: %s", r->name, l.problem);
out:
	http_resp_free(&resp);
	return rc;
}

static int dav_list(struct remote *r, const char *prefix, remote_list_cb cb,
		    void *arg)
{
	return listing_walk(r, prefix, list_dir, cb, arg);
}

static void dav_close(struct remote *r)
{
	struct webdav *w = r->priv;

	if (!w)
		return;
	if (w->c)
		curl_easy_cleanup(w->c);
	free(w->base);
	free(w->base_path);
	free(w->netrc);
	free(w);
	r->priv = NULL;
}

static const struct remote_backend webdav_backend = {
	.scheme = "webdav",
	.put = dav_put,
	.put_new = dav_put_new,
	.get = dav_get,
	.head = dav_head,
	.del = dav_del,
	.list = dav_list,
	.close = dav_close,
};

/*
 * Check the netrc file (it must exist and be private) and split the
 * base URL; the connection is made on first use.
 */
int remote_webdav_open(struct remote *r, const char *base_url)
{
	struct webdav *w = calloc(1, sizeof(*w));
	const char *hostpart, *path, *q;
	size_t n;
	int rc;

	if (!w)
		return -ENOMEM;
	r->be = &webdav_backend;
	r->priv = w;
	w->netrc = r->opt.netrc_file && *r->opt.netrc_file
		   ? strdup(r->opt.netrc_file) : home_path(".netrc");
	if (!w->netrc)
		return -ENOMEM;
	rc = remote_check_secret_file(r, w->netrc, 0);
	if (rc)
		return rc;

	hostpart = strstr(base_url, "://");
	if (!hostpart || strchr(base_url, '?') || strchr(base_url, '#'))
		return remote_fail(r, -EINVAL, "%s: expected https://host[:port]/path",
				   r->name);
	hostpart += 3;
	path = strchr(hostpart, '/');
	if (!path)
		path = hostpart + strlen(hostpart);
	n = strlen(base_url);
	q = path;
	w->path_off = (size_t)(path - base_url);
	if (asprintf(&w->base, "%s%s", base_url,
		     n && base_url[n - 1] == '/' ? "" : "/") < 0) {
		w->base = NULL;
		return -ENOMEM;
	}
	if (*q) {
		char *dec = dav_url_decode(q, strlen(q));

		if (!dec)
			return -ENOMEM;
		n = strlen(dec);
		rc = asprintf(&w->base_path, "%s%s", dec,
			      n && dec[n - 1] == '/' ? "" : "/");
		free(dec);
	} else {
		rc = asprintf(&w->base_path, "/");
	}
	if (rc < 0) {
		w->base_path = NULL;
		return -ENOMEM;
	}
	return 0;
}
