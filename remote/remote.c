/*
 * remote.c - the front of the remote layer (see remote.h): URL parsing,
 * key validation, and the retry policy every backend shares.
 *
 * Backends do one attempt per call and report transient trouble as
 * -EAGAIN; this file retries those (and only those) up to 5 times with
 * exponential backoff, 0.5 s doubling to 8 s, so a flaky link or a server
 * restart costs at most ~16 s of waiting before the error reaches the
 * caller (a probe, opt.no_retry, does not wait).  Every other error is
 * final at once.
 *
 * struct remote is embedded in a private wrapper that owns copies of the
 * option strings, so callers need not keep them alive.
 *
 * When remote_open fails, *out is still set (unless memory ran out) to a
 * closed remote that only carries the error text: print remote_error(*out)
 * and free it with remote_close(*out).  This keeps messages such as
 * "credentials file X is readable by others" without global state.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../chunker/util.h"
#include "backend.h"

#define REMOTE_RETRIES		5
#define REMOTE_BACKOFF_MS	500
#define REMOTE_BACKOFF_MAX_MS	8000
#define REMOTE_KEY_MAX		1024
#define REMOTE_DEFAULT_TIMEOUT	120

/* What remote_open allocates: the shared struct plus owned strings. */
struct remote_owner {
	struct remote r;
	char *strs[16];			/* option string copies, freed at close */
	int nstrs;
};

#define owner_of(rp) \
	((struct remote_owner *)((char *)(rp) - offsetof(struct remote_owner, r)))

int remote_fail(struct remote *r, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	/* One line: a server's message could hold a newline. */
	for (char *p = r->err; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return err;
}

const char *remote_error(const struct remote *r)
{
	return r->err[0] ? r->err : "no error";
}

const char *remote_name(const struct remote *r)
{
	return r->name;
}

/*
 * A file holding secrets must be a regular file that only its owner can
 * read or write; a missing one is fine when optional (the caller then
 * looks elsewhere).
 */
int remote_check_secret_file(struct remote *r, const char *path, int optional)
{
	char why[600];
	int rc;

	if (optional && access(path, F_OK) < 0 && errno == ENOENT)
		return 0;
	rc = secret_file_check(path, "credentials file", why, sizeof(why));
	if (rc)
		return remote_fail(r, rc, "%s: %s", r->name, why);
	return 0;
}

int remote_check_files(const struct remote_options *opt, char *why, size_t whysize)
{
	const char *secret[] = { opt->credentials_file, opt->ssh_key, opt->netrc_file };
	const char *sname[] = { "credentials file", "SSH key", "netrc file" };
	const char *trust[] = { opt->known_hosts, opt->ca_file };
	const char *tname[] = { "known_hosts file", "CA file" };
	int rc;

	*why = 0;
	for (int i = 0; i < 3; i++)
		if (secret[i] && *secret[i]) {
			rc = secret_file_check(secret[i], sname[i], why, whysize);
			if (rc)
				return rc;
		}
	for (int i = 0; i < 2; i++)
		if (trust[i] && *trust[i] && access(trust[i], R_OK) < 0) {
			rc = -errno;
			snprintf(why, whysize, "%s %s: %s", tname[i], trust[i], strerror(-rc));
			return rc;
		}
	return 0;
}

/* Key bytes: [A-Za-z0-9._-] and '/'. */
static int key_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
	       c == '/';
}

/*
 * What is wrong with a key (is_prefix 0) or a list prefix (1), or NULL:
 * allowed characters only, relative, no ".." anywhere, no empty or "."
 * component.  A prefix may be empty and may end in '/' (a "folder"); a
 * key may not.
 */
static const char *key_problem(const char *key, int is_prefix)
{
	size_t len = strlen(key), i, start = 0;

	if (!len && !is_prefix)
		return "is empty";
	if (len > REMOTE_KEY_MAX)
		return "is too long";
	if (key[0] == '/')
		return "starts with '/'";
	if (strstr(key, ".."))
		return "holds '..'";
	for (i = 0; i <= len; i++) {
		size_t clen;

		if (i < len && !key_char_ok((unsigned char)key[i]))
			return "has a character outside [A-Za-z0-9._/-]";
		if (i < len && key[i] != '/')
			continue;
		clen = i - start;
		/* the last component of a prefix may be partial or empty */
		if (i == len && is_prefix)
			break;
		if (clen == 0)
			return "has an empty component";
		if (clen == 1 && key[start] == '.')
			return "has a '.' component";
		start = i + 1;
	}
	return NULL;
}

/* -EINVAL with a message naming the remote and the key, or 0. */
static int check_key(struct remote *r, const char *key, int is_prefix)
{
	const char *what = is_prefix ? "prefix" : "key";
	const char *why;

	if (!key)
		return remote_fail(r, -EINVAL, "%s: no %s given", r->name, what);
	why = key_problem(key, is_prefix);
	if (why)
		return remote_fail(r, -EINVAL, "%s: %s '%.200s' %s", r->name, what,
				   key, why);
	return 0;
}

/* Retries after a transient failure: none for a probe (opt.no_retry). */
static int retries(const struct remote *r)
{
	return r->opt.no_retry ? 0 : REMOTE_RETRIES;
}

/* Sleep ms milliseconds, resuming after signals. */
static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Backoff before retry number attempt (1-based): 0.5 s, 1, 2, 4, 8. */
static void backoff(int attempt)
{
	unsigned ms = REMOTE_BACKOFF_MS << (attempt - 1);

	sleep_ms(ms > REMOTE_BACKOFF_MAX_MS ? REMOTE_BACKOFF_MAX_MS : ms);
}

/*
 * The last attempt failed transiently too: say so, and drop a backend's
 * "(will retry)" that is no longer true.
 */
static int give_up(struct remote *r, int rc, int attempts)
{
	char msg[sizeof(r->err)], *p;

	snprintf(msg, sizeof(msg), "%s", r->err);
	p = strstr(msg, " (will retry)");
	if (p)
		memmove(p, p + 13, strlen(p + 13) + 1);
	if (attempts <= 1)	/* a probe: one attempt was all it meant to make */
		return remote_fail(r, rc, "%.440s", msg);
	return remote_fail(r, rc, "%.440s (gave up after %d attempts)", msg,
			   attempts);
}

/* Keep a copy of an option string owned by the remote. */
static const char *own(struct remote_owner *o, const char *s)
{
	char *c;

	if (!s)
		return NULL;
	if (o->nstrs >= (int)(sizeof(o->strs) / sizeof(o->strs[0])))
		return NULL;
	c = strdup(s);
	if (c)
		o->strs[o->nstrs++] = c;
	return c;
}

/* Copy the caller's options (strings included) and fill in defaults. */
static int copy_options(struct remote_owner *o, const struct remote_options *opt)
{
	struct remote_options *d = &o->r.opt;
	const char **strs[] = {
		&d->endpoint, &d->region, &d->credentials_file, &d->profile,
		&d->ssh_key, &d->known_hosts, &d->netrc_file, &d->ca_file,
	};

	if (opt)
		*d = *opt;
	/* As the AWS CLI and SDKs: options given win, then the environment
	 * (read at each use, so a stored remote follows it), then defaults. */
	if (!d->endpoint || !*d->endpoint) {
		const char *e = getenv("AWS_ENDPOINT_URL_S3");
		if (!e || !*e)
			e = getenv("AWS_ENDPOINT_URL");
		d->endpoint = e && *e ? e : NULL;
	}
	if (!d->region || !*d->region) {
		const char *e = getenv("AWS_REGION");
		if (!e || !*e)
			e = getenv("AWS_DEFAULT_REGION");
		d->region = e && *e ? e : NULL;
	}
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (!*strs[i])
			continue;
		*strs[i] = own(o, *strs[i]);
		if (!*strs[i])
			return -ENOMEM;
	}
	if (!d->region || !*d->region)
		d->region = "us-east-1";
	if (d->timeout_s <= 0)
		d->timeout_s = REMOTE_DEFAULT_TIMEOUT;
	return 0;
}

/* url with any user-info (user:password@) replaced by "***@", for names
 * and messages: a secret typed into a URL must not reach a log. */
static void mask_url(const char *url, char *out, size_t size)
{
	const char *scheme = strstr(url, "://");
	const char *auth = scheme ? scheme + 3 : url;
	size_t alen = strcspn(auth, "/");
	const char *at = memchr(auth, '@', alen);
	if (!at || !memchr(auth, ':', (size_t)(at - auth))) {
		snprintf(out, size, "%s", url);	/* no password in it */
		return;
	}
	snprintf(out, size, "%.*s***%s", (int)(auth - url), url, at);
}

/* Refuse user:password@ in a URL: secrets never come from the command line. */
static int reject_userinfo(struct remote *r, const char *url, const char *auth,
			   size_t len, int user_allowed)
{
	const char *at = memchr(auth, '@', len);

	if (!at)
		return 0;
	if (!user_allowed || memchr(auth, ':', (size_t)(at - auth))) {
		char masked[256];
		mask_url(url, masked, sizeof(masked));
		return remote_fail(r, -EINVAL,
				   "%s: credentials are never taken from the URL; "
				   "use the credentials file or environment", masked);
	}
	return 0;
}

/* s3://bucket[/prefix] */
static int open_s3(struct remote *r, const char *url)
{
	const char *b = url + 5, *slash = strchr(b, '/');
	size_t blen = slash ? (size_t)(slash - b) : strlen(b);
	char bucket[64], prefix[REMOTE_KEY_MAX + 1];
	const char *p;
	size_t plen;
	int rc;

	rc = reject_userinfo(r, url, b, blen, 0);
	if (rc)
		return rc;
	if (blen < 3 || blen > 63)
		return remote_fail(r, -EINVAL, "%s: bucket name must be 3-63 characters",
				   url);
	for (size_t i = 0; i < blen; i++) {
		char c = b[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return remote_fail(r, -EINVAL,
					   "%s: bucket name may hold only [a-z0-9.-]", url);
	}
	memcpy(bucket, b, blen);
	bucket[blen] = 0;
	/* the prefix, without leading and trailing slashes */
	p = slash ? slash : b + blen;
	while (*p == '/')
		p++;
	plen = strlen(p);
	while (plen && p[plen - 1] == '/')
		plen--;
	if (plen >= sizeof(prefix))
		return remote_fail(r, -EINVAL, "%s: prefix too long", url);
	memcpy(prefix, p, plen);
	prefix[plen] = 0;
	snprintf(r->name, sizeof(r->name), "s3://%s%s%.400s", bucket,
		 plen ? "/" : "", prefix);
	if (plen && key_problem(prefix, 0))
		return remote_fail(r, -EINVAL, "%s: the prefix %s", url,
				   key_problem(prefix, 0));
	return remote_s3_open(r, bucket, prefix);
}

/* sftp://user@host[:port]/path; host may be [v6]. */
static int open_sftp(struct remote *r, const char *url)
{
	const char *a = url + 7, *slash = strchr(a, '/'), *at, *h, *hend, *pe;
	size_t alen = slash ? (size_t)(slash - a) : strlen(a);
	char user[128], host[256];
	long port = 22;	/* every SFTP client's; a Storage Box says :23 */
	int rc;

	rc = reject_userinfo(r, url, a, alen, 1);
	if (rc)
		return rc;
	at = memchr(a, '@', alen);
	if (!at || at == a || (size_t)(at - a) >= sizeof(user))
		return remote_fail(r, -EINVAL, "%s: expected sftp://user@host[:port]/path",
				   url);
	memcpy(user, a, (size_t)(at - a));
	user[at - a] = 0;
	h = at + 1;
	hend = a + alen;
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(hend - h));

		if (!rb)
			return remote_fail(r, -EINVAL, "%s: unterminated [IPv6] host", url);
		pe = rb + 1;
		h++;
		if ((size_t)(rb - h) >= sizeof(host))
			return remote_fail(r, -EINVAL, "%s: host name too long", url);
		memcpy(host, h, (size_t)(rb - h));
		host[rb - h] = 0;
	} else {
		pe = memchr(h, ':', (size_t)(hend - h));
		if (!pe)
			pe = hend;
		if ((size_t)(pe - h) >= sizeof(host))
			return remote_fail(r, -EINVAL, "%s: host name too long", url);
		memcpy(host, h, (size_t)(pe - h));
		host[pe - h] = 0;
	}
	if (!host[0])
		return remote_fail(r, -EINVAL, "%s: no host", url);
	if (pe < hend) {
		char *end;

		if (*pe != ':')
			return remote_fail(r, -EINVAL, "%s: bad host:port", url);
		port = strtol(pe + 1, &end, 10);
		if (end != hend || port < 1 || port > 65535)
			return remote_fail(r, -EINVAL, "%s: bad port", url);
	}
	snprintf(r->name, sizeof(r->name), "%s", url);
	return remote_sftp_open(r, user, host, (int)port, slash ? slash : "/");
}

/* https://host[:port]/path (WebDAV) */
static int open_webdav(struct remote *r, const char *url)
{
	const char *a = url + 8, *slash = strchr(a, '/');
	size_t alen = slash ? (size_t)(slash - a) : strlen(a);
	int rc;

	rc = reject_userinfo(r, url, a, alen, 0);
	if (rc)
		return rc;
	if (!alen)
		return remote_fail(r, -EINVAL, "%s: no host", url);
	snprintf(r->name, sizeof(r->name), "%s", url);
	return remote_webdav_open(r, url);
}

/* /abs/path or file:///abs/path (file://localhost/abs/path too). */
static int open_local(struct remote *r, const char *url)
{
	const char *path = url;

	if (!strncmp(url, "file://", 7)) {
		path = url + 7;
		if (!strncmp(path, "localhost/", 10))
			path += 9;
		if (path[0] != '/')
			return remote_fail(r, -EINVAL,
					   "%s: expected file:///absolute/path", url);
	}
	snprintf(r->name, sizeof(r->name), "%s", path);
	return remote_local_open(r, path);
}

/* url in one spelling per repository: file:// and file://localhost
 * dropped, scheme and host lower case, the default port (sftp 22, https
 * 443) left out, repeated and trailing slashes of the path dropped. */
static void url_normal(const char *url, char *out, size_t size)
{
	size_t n = 0;
	const char *p = url;

	if (!strncmp(p, "file://", 7)) {
		p += 7;
		if (!strncmp(p, "localhost/", 10))
			p += 9;
	}
	const char *scheme = strstr(p, "://");
	if (scheme && p[0] != '/') {
		const char *auth = scheme + 3;
		size_t alen = strcspn(auth, "/");
		const char *port = auth + alen;
		const char *at = memchr(auth, '@', alen);
		const char *host = at ? at + 1 : auth;
		/* the last ':' after the host, outside an [IPv6] literal */
		for (const char *c = auth + alen; c > host; c--)
			if (c[-1] == ':' && !memchr(c, ']', (size_t)(auth + alen - c))) {
				port = c - 1;
				break;
			}
		int dflt = (!strncmp(p, "sftp://", 7) && !strncmp(port, ":22", 3) &&
			    port + 3 == auth + alen) ||
			   (!strncmp(p, "https://", 8) && !strncmp(port, ":443", 4) &&
			    port + 4 == auth + alen);
		for (const char *c = p; c < auth + alen && n + 1 < size; c++) {
			if (dflt && c == port)
				break;
			/* the user part keeps its case */
			out[n++] = c < host && c >= auth ? *c
				 : (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
		}
		p = auth + alen;
	}
	for (; *p && n + 1 < size; p++)
		if (*p != '/' || (p[1] && p[1] != '/'))
			out[n++] = *p;
	if (!n && size > 1 && url[0])
		out[n++] = '/';	/* the root directory */
	out[n] = 0;
}

int remote_url_port_explicit(const char *url, int port, char *out, size_t size)
{
	if (strncmp(url, "sftp://", 7)) {
		if ((size_t)snprintf(out, size, "%s", url) >= size)
			return -ENAMETOOLONG;
		return 0;
	}
	const char *auth = url + 7;
	size_t alen = strcspn(auth, "/");
	const char *at = memchr(auth, '@', alen);
	const char *host = at ? at + 1 : auth, *end = auth + alen;
	/* a port: a ':' after the host, outside an [IPv6] literal */
	const char *rb = *host == '[' ? memchr(host, ']', (size_t)(end - host)) : NULL;
	const char *colon = memchr(rb ? rb : host, ':', (size_t)(end - (rb ? rb : host)));
	int n;
	if (colon)
		n = snprintf(out, size, "%s", url);
	else
		n = snprintf(out, size, "%.*s:%d%s", (int)(end - url), url, port, end);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int remote_url_same(const char *a, const char *b)
{
	char na[1100], nb[1100];

	url_normal(a, na, sizeof(na));
	url_normal(b, nb, sizeof(nb));
	return !strcmp(na, nb);
}

int remote_open(const char *url, const struct remote_options *opt,
		struct remote **out)
{
	struct remote_owner *o;
	struct remote *r;
	int rc;

	*out = NULL;
	if (!url || !*url)
		return -EINVAL;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	r = &o->r;
	mask_url(url, r->name, sizeof(r->name));
	rc = copy_options(o, opt);
	if (rc) {
		remote_fail(r, rc, "%s: out of memory", url);
		goto fail;
	}
	if (!strncmp(url, "s3://", 5))
		rc = open_s3(r, url);
	else if (!strncmp(url, "sftp://", 7))
		rc = open_sftp(r, url);
	else if (!strncmp(url, "https://", 8))
		rc = open_webdav(r, url);
	else if (url[0] == '/' || !strncmp(url, "file://", 7))
		rc = open_local(r, url);
	else if (!strncmp(url, "http://", 7))
		rc = remote_fail(r, -EINVAL,
				 "%s: plain http is not supported for WebDAV; use https://",
				 url);
	else
		rc = remote_fail(r, -EINVAL,
				 "%s: unknown remote (expected /path, file://, s3://, sftp:// or https://)",
				 url);
	if (rc)
		goto fail;
	*out = r;
	return 0;
fail:
	/* *out keeps the error text for remote_error(); the caller frees it
	 * with remote_close() like an open remote.  Every other call on it
	 * fails with -EINVAL. */
	if (r->be && r->be->close)
		r->be->close(r);
	r->be = NULL;
	r->priv = NULL;
	*out = r;
	return rc;
}

void remote_close(struct remote *r)
{
	struct remote_owner *o;

	if (!r)
		return;
	o = owner_of(r);
	if (r->be && r->be->close)
		r->be->close(r);
	for (int i = 0; i < o->nstrs; i++)
		free(o->strs[i]);
	free(o);
}

/* Calls on a remote whose open failed report that, never crash. */
static int check_open(struct remote *r)
{
	if (!r->be)
		return remote_fail(r, -EINVAL, "%s: remote is not open", r->name);
	return 0;
}

int remote_put(struct remote *r, const char *key, const void *buf, size_t len)
{
	int rc = check_open(r);

	if (rc || (rc = check_key(r, key, 0)))
		return rc;
	for (int attempt = 0;; attempt++) {
		rc = r->be->put(r, key, buf, len);
		if (rc != -EAGAIN)
			return rc;
		if (attempt >= retries(r))
			return give_up(r, rc, attempt + 1);
		backoff(attempt + 1);
	}
}

int remote_put_new(struct remote *r, const char *key, const void *buf, size_t len)
{
	int rc = check_open(r);

	if (rc || (rc = check_key(r, key, 0)))
		return rc;
	for (int attempt = 0;; attempt++) {
		rc = r->be->put_new(r, key, buf, len);
		if (rc != -EAGAIN)
			return rc;
		if (attempt == REMOTE_RETRIES)
			return give_up(r, rc, attempt + 1);
		backoff(attempt + 1);
	}
}

int remote_get(struct remote *r, const char *key, uint64_t off, size_t len,
	       uint8_t **buf, size_t *got)
{
	int rc = check_open(r);

	*buf = NULL;
	*got = 0;
	if (rc || (rc = check_key(r, key, 0)))
		return rc;
	for (int attempt = 0;; attempt++) {
		rc = r->be->get(r, key, off, len, buf, got);
		if (rc != -EAGAIN)
			return rc;
		if (attempt >= retries(r))
			return give_up(r, rc, attempt + 1);
		backoff(attempt + 1);
	}
}

int remote_head(struct remote *r, const char *key, uint64_t *size)
{
	int rc = check_open(r);

	if (rc || (rc = check_key(r, key, 0)))
		return rc;
	for (int attempt = 0;; attempt++) {
		rc = r->be->head(r, key, size);
		if (rc != -EAGAIN)
			return rc;
		if (attempt >= retries(r))
			return give_up(r, rc, attempt + 1);
		backoff(attempt + 1);
	}
}

int remote_delete(struct remote *r, const char *key)
{
	int rc = check_open(r);

	if (rc || (rc = check_key(r, key, 0)))
		return rc;
	for (int attempt = 0;; attempt++) {
		rc = r->be->del(r, key);
		if (rc != -EAGAIN)
			return rc;
		if (attempt >= retries(r))
			return give_up(r, rc, attempt + 1);
		backoff(attempt + 1);
	}
}

int remote_set_lock(struct remote *r, int mode, int64_t until)
{
	int rc = check_open(r);

	if (rc)
		return rc;
	if (mode != REMOTE_LOCK_NONE && !r->be->retain)
		return remote_fail(r, -EOPNOTSUPP, "%s: Object Lock is only "
				   "available on S3 remotes", r->name);
	if (mode < REMOTE_LOCK_NONE || mode > REMOTE_LOCK_COMPLIANCE || until < 0)
		return remote_fail(r, -EINVAL, "%s: bad Object Lock setting", r->name);
	r->lock_mode = mode;
	r->lock_until = mode ? until : 0;
	return 0;
}

int remote_retain(struct remote *r, const char *key, int mode, int64_t until)
{
	int rc = check_open(r);

	if (rc || (rc = check_key(r, key, 0)))
		return rc;
	if (!r->be->retain)
		return remote_fail(r, -EOPNOTSUPP, "%s: Object Lock is only "
				   "available on S3 remotes", r->name);
	if (mode != REMOTE_LOCK_GOVERNANCE && mode != REMOTE_LOCK_COMPLIANCE)
		return remote_fail(r, -EINVAL, "%s: bad Object Lock mode", r->name);
	for (int attempt = 0;; attempt++) {
		rc = r->be->retain(r, key, mode, until);
		if (rc != -EAGAIN)
			return rc;
		if (attempt >= retries(r))
			return give_up(r, rc, attempt + 1);
		backoff(attempt + 1);
	}
}

/* Counts what reached the caller, so a retry never repeats a key;
 * passes on only names that are valid keys. */
struct list_guard {
	remote_list_cb cb;
	void *arg;
	uint64_t delivered;
};

static int list_guard_cb(void *arg, const char *key, uint64_t size)
{
	struct list_guard *g = arg;

	/* foreign objects whose names are no keys are not ours: skip them,
	 * as no other call would accept their names */
	if (key_problem(key, 0))
		return 0;
	g->delivered++;
	return g->cb(g->arg, key, size);
}

/*
 * A listing is retried as a whole only while nothing has been handed to
 * the caller; after that a transient failure is returned as -EAGAIN
 * (backends retry their own page requests).
 */
int remote_list(struct remote *r, const char *prefix, remote_list_cb cb,
		void *arg)
{
	struct list_guard g = { .cb = cb, .arg = arg };
	int rc = check_open(r);

	if (rc || (rc = check_key(r, prefix ? prefix : "", 1)))
		return rc;
	for (int attempt = 0;; attempt++) {
		rc = r->be->list(r, prefix ? prefix : "", list_guard_cb, &g);
		if (rc != -EAGAIN || g.delivered)
			return rc;
		if (attempt >= retries(r))
			return give_up(r, rc, attempt + 1);
		backoff(attempt + 1);
	}
}

int remote_probe(const char *url, const struct remote_options *opt, int timeout_s,
		 char *why, size_t whysize)
{
	struct remote_options o = { 0 };
	struct remote *r = NULL;
	uint64_t size;
	int err;

	if (opt)
		o = *opt;
	o.no_retry = 1;
	o.timeout_s = timeout_s > 0 ? timeout_s : 20;
	*why = 0;
	err = remote_open(url, &o, &r);
	if (!err) {
		err = remote_head(r, "tresor-repo", &size);
		if (err == -ENOENT)
			err = 0;	/* reached: nothing pushed there yet */
	}
	if (err)
		snprintf(why, whysize, "%s%s%s", r && r->err[0] ? r->err : url,
			 r && r->err[0] ? "" : ": ", r && r->err[0] ? "" : strerror(-err));
	remote_close(r);
	return err;
}
