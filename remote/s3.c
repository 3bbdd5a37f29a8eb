/*
 * s3.c - the S3 backend (AWS, Cloudflare R2, MinIO, any S3-compatible
 * store) over libcurl: requests, their replies and errors.  Signing
 * (libcurl's SigV4 and what it leaves out: payload hash, key and query
 * encoding, credentials) is s3_sign.c's; the query strings built here
 * are sorted by name, a bare parameter written "uploads=".
 *
 * Integrity: a PUT carries Content-MD5 (the server refuses a corrupted
 * body) and its ETag must equal the MD5 we computed.  Bodies over 40 MiB
 * go as a multipart upload of 8 MiB parts, each checked the same way,
 * then the whole object's size is checked with HEAD; a failed multipart
 * upload is aborted.  GETs check the length received.  Listing uses
 * ListObjectsV2 with continuation tokens and never assumes an order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../chunker/buf.h"
#include "backend.h"
#include "http.h"
#include "listing.h"
#include "s3_sign.h"
#include "xml.h"

/* Packs (~32 MiB plus one chunk) go in one PUT: S3 takes up to 5 GB that
 * way, and a multipart upload costs requests and, on s3rver, half the
 * throughput.  Bigger bodies go multipart. */
#define S3_MULTIPART_OVER	(40u << 20)
#define S3_PART_SIZE		(8u << 20)
#define S3_MAX_PARTS		10000
#define S3_PART_RETRIES		2		/* extra tries of one part */
#define S3_PAGE_RETRIES		5		/* extra tries of a list page */
#define S3_KEY_MAX		1024

struct s3 {
	char *bucket;
	char *prefix;			/* "" or "some/prefix/" */
	char *origin;			/* scheme://host[:port] requests go to */
	char *base;			/* "/bucket" (path-style) or "" */
	struct s3_sign sign;
	CURL *curl;
};

static struct s3 *S(struct remote *r)
{
	return r->priv;
}

/* Append s to a growing string; -ENOMEM leaves *dst as it was. */
static int sb_add(char **dst, size_t *len, size_t *cap, const char *s, size_t n)
{
	char *p = buf_grow(*dst, cap, *len + n + 1, 1);
	if (!p)
		return -ENOMEM;
	*dst = p;
	memcpy(*dst + *len, s, n);
	*len += n;
	(*dst)[*len] = 0;
	return 0;
}

/* ---- requests ---- */

struct s3_req {
	const char *method;		/* GET PUT POST HEAD DELETE */
	const char *key;		/* relative to the remote prefix; NULL: bucket */
	const char *query;		/* sorted, encoded; NULL for none */
	const void *body;
	size_t len;
	const char *content_md5;	/* base64, or NULL */
	const char *range;		/* "bytes=A-B", or NULL */
	int lock;			/* carry the remote's Object Lock headers */
	int if_none_match;		/* "If-None-Match: *": create only */
};

/* Upload source for PUT bodies. */
struct s3_src {
	const uint8_t *start;
	const uint8_t *p;
	size_t left;
};

static size_t s3_read_cb(char *dst, size_t size, size_t n, void *arg)
{
	struct s3_src *s = arg;
	size_t k = size * n;

	if (k > s->left)
		k = s->left;
	memcpy(dst, s->p, k);
	s->p += k;
	s->left -= k;
	return k;
}

/* libcurl rewinds when it resends on a fresh connection (a kept-alive
 * one the server had closed): start over from the offset it asks. */
static int s3_seek_cb(void *arg, curl_off_t offset, int origin)
{
	struct s3_src *s = arg;
	size_t done = (size_t)(s->p - s->start);

	if (origin != SEEK_SET || offset < 0 ||
	    (uint64_t)offset > (uint64_t)(done + s->left))
		return CURL_SEEKFUNC_FAIL;
	s->left = done + s->left - (size_t)offset;
	s->p = s->start + offset;
	return CURL_SEEKFUNC_OK;
}

/* Object Lock mode as S3 spells it. */
static const char *lock_mode_name(int mode)
{
	return mode == REMOTE_LOCK_COMPLIANCE ? "COMPLIANCE" : "GOVERNANCE";
}

/* A retain-until date: ISO 8601 in UTC with milliseconds, as S3 writes. */
static void lock_date(int64_t t, char *out, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

/* origin + base + "/" + encoded(prefix + key) [+ "?" query]. */
static char *s3_url(struct s3 *s, const char *key, const char *query)
{
	char *full = NULL, *enc = NULL, *url = NULL;

	if (key) {
		if (asprintf(&full, "%s%s", s->prefix, key) < 0)
			return NULL;
		enc = s3_sign_uri_encode(full, 1);
		free(full);
		if (!enc)
			return NULL;
	}
	/* a bucket-level request on a path-style URL: /bucket?..., else /?... */
	if (asprintf(&url, "%s%s%s%s%s%s", s->origin, s->base,
		     key || !*s->base ? "/" : "", enc ? enc : "",
		     query ? "?" : "", query ? query : "") < 0)
		url = NULL;
	free(enc);
	return url;
}

/*
 * Send one signed request and collect the reply.  Returns http_perform's
 * value: 0 when any reply arrived (the caller reads the status).
 */
static int s3_do(struct remote *r, const struct s3_req *q, struct http_resp *resp)
{
	struct s3 *s = S(r);
	struct curl_slist *h = NULL, *nh;
	struct s3_src src = { q->body, q->body, q->len };
	char line[4096];
	char *url;
	CURL *c;
	int rc;

	memset(resp, 0, sizeof(*resp));
	url = s3_url(s, q->key, q->query);
	if (!url)
		return remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
	c = http_easy(r, &s->curl);
	if (!c) {
		free(url);
		return -ENOMEM;
	}

#define ADDH(...) do { \
		if (snprintf(line, sizeof(line), __VA_ARGS__) >= (int)sizeof(line)) \
			goto toolong; \
		nh = curl_slist_append(h, line); \
		if (!nh) \
			goto nomem; \
		h = nh; \
	} while (0)

	rc = s3_sign_request(r, &s->sign, c, q->body, q->len, &h);
	if (rc) {
		curl_slist_free_all(h);
		free(url);
		return rc;
	}
	if (q->content_md5)
		ADDH("Content-MD5: %s", q->content_md5);
	if (q->range)
		ADDH("Range: %s", q->range);
	if (q->if_none_match)
		ADDH("If-None-Match: *");
	if (q->lock && r->lock_mode) {
		char until[40];

		lock_date(r->lock_until, until, sizeof(until));
		ADDH("x-amz-object-lock-mode: %s", lock_mode_name(r->lock_mode));
		ADDH("x-amz-object-lock-retain-until-date: %s", until);
	}
#undef ADDH

	curl_easy_setopt(c, CURLOPT_URL, url);
	if (!strcmp(q->method, "HEAD")) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(q->method, "DELETE")) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
	} else if (!strcmp(q->method, "PUT")) {
		/* libcurl adds "Expect: 100-continue" after signing; an
		 * "Expect:" to drop it would be signed yet not sent (403) */
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, s3_read_cb);
		curl_easy_setopt(c, CURLOPT_READDATA, &src);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, s3_seek_cb);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, &src);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->len);
	} else if (!strcmp(q->method, "POST")) {
		/* an explicit type: an empty "Content-Type:" would be signed
		 * but not sent; the create's type becomes the object's */
		nh = curl_slist_append(h, q->len ? "Content-Type: application/xml"
				       : "Content-Type: application/octet-stream");
		if (!nh)
			goto nomem;
		h = nh;
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->len);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->len ? q->body : "");
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	rc = http_perform(r, c, resp);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(h);
	free(url);
	return rc;
nomem:
	curl_slist_free_all(h);
	free(url);
	return remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
toolong:
	curl_slist_free_all(h);
	free(url);
	return remote_fail(r, -EINVAL, "%s: a request header is too long "
			   "(AWS_SESSION_TOKEN?)", r->name);
}

/* ---- error replies ---- */

struct s3_err {
	char code[64];
	char msg[200];
	int is_error;			/* root element is <Error> */
};

static int err_cb(void *arg, const char *path, const char *text)
{
	struct s3_err *e = arg;

	if (!strcmp(path, "Error/Code"))
		snprintf(e->code, sizeof(e->code), "%s", text);
	else if (!strcmp(path, "Error/Message"))
		snprintf(e->msg, sizeof(e->msg), "%s", text);
	else if (!strcmp(path, "Error"))
		e->is_error = 1;
	return 0;
}

/* What to tell the user for a well-known S3 error code, and its errno. */
static const struct {
	const char *code;
	int err;
	const char *hint;
} s3_codes[] = {
	{ "SignatureDoesNotMatch", -EACCES,
	  "check AWS_SECRET_ACCESS_KEY (or the credentials file)" },
	{ "InvalidAccessKeyId", -EACCES,
	  "check AWS_ACCESS_KEY_ID (or the credentials file)" },
	{ "AccessDenied", -EACCES,
	  "access denied: check the key's permissions on the bucket" },
	{ "InvalidToken", -EACCES, "check AWS_SESSION_TOKEN" },
	{ "ExpiredToken", -EACCES, "the session token has expired" },
	{ "RequestTimeTooSkewed", -EACCES,
	  "the clock differs from the server's by more than 15 minutes" },
	{ "AuthorizationHeaderMalformed", -EINVAL,
	  "check the region (R2: auto)" },
	{ "PermanentRedirect", -EINVAL,
	  "the bucket is in another region or needs another endpoint" },
	{ "NoSuchBucket", -EIO, "the bucket does not exist" },
	{ "NoSuchKey", -ENOENT, "no such object" },
	{ "NoSuchUpload", -EIO, "the multipart upload vanished" },
	{ "BadDigest", -EBADMSG, "the body was corrupted on the way (Content-MD5)" },
	{ "InvalidDigest", -EBADMSG, "the server refused the Content-MD5" },
	{ "IncompleteBody", -EAGAIN, "the body was cut short" },
	{ "ObjectLockConfigurationNotFoundError", -EINVAL,
	  "the bucket has no Object Lock: create it with Object Lock enabled "
	  "or remove --object-lock-days" },
	{ "EntityTooSmall", -EIO, "a multipart part was too small" },
	{ "InvalidPart", -EIO, "a multipart part is missing or its ETag differs" },
	{ "SlowDown", -EAGAIN, "the server asks to slow down" },
	{ "ServiceUnavailable", -EAGAIN, "service unavailable" },
	{ "InternalError", -EAGAIN, "internal server error" },
	{ "RequestTimeout", -EAGAIN, "request timed out" },
};

/*
 * Turn a failed reply into an error: the S3 <Code> decides the errno and
 * the hint where known, else the HTTP status does.  what names the
 * operation ("put data/x").
 */
static int s3_error(struct remote *r, const struct http_resp *resp,
		    const char *what)
{
	int err = http_status_errno(resp->status);
	const char *hint = NULL;
	struct s3_err e;

	memset(&e, 0, sizeof(e));
	if (err == 0)
		err = -EIO;	/* a 2xx carrying an <Error> */
	if (resp->len && resp->body)
		(void)xml_walk((const char *)resp->body, resp->len, err_cb, &e);
	if (e.code[0]) {
		for (size_t i = 0; i < sizeof(s3_codes) / sizeof(s3_codes[0]); i++) {
			if (!strcmp(e.code, s3_codes[i].code)) {
				err = s3_codes[i].err;
				hint = s3_codes[i].hint;
				break;
			}
		}
		return remote_fail(r, err, "%s: %s: %s: %s (HTTP %ld)", r->name,
				   what, e.code, hint ? hint : e.msg[0] ? e.msg :
				   "error", resp->status);
	}
	/* no XML (HEAD has no body) */
	switch (resp->status) {
	case 301:
	case 307:
		return remote_fail(r, -EINVAL, "%s: %s: HTTP %ld: the bucket is in "
				   "another region or needs another endpoint",
				   r->name, what, resp->status);
	case 400:
		return remote_fail(r, -EINVAL, "%s: %s: HTTP 400 Bad Request "
				   "(check the region and endpoint)", r->name, what);
	case 401:
	case 403:
		return remote_fail(r, -EACCES, "%s: %s: HTTP %ld access denied: "
				   "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
				   "and the clock", r->name, what, resp->status);
	case 404:
		return remote_fail(r, -ENOENT, "%s: %s: not found", r->name, what);
	}
	return remote_fail(r, err, "%s: %s: HTTP %ld%s", r->name, what,
			   resp->status, err == -EAGAIN ? " (will retry)" : "");
}

/* Sleep for backoff between page or part retries: 0.5 s, 1, 2, 4, 8. */
static void s3_backoff(int attempt)
{
	unsigned ms = 500u << (attempt > 4 ? 4 : attempt);
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- put ---- */

/* Compare an ETag with a hex digest, ignoring case. */
static int etag_is(const char *etag, const char *hex)
{
	return !strcasecmp(etag, hex);
}

/* One PUT of a whole small object with Content-MD5 and ETag check;
 * excl: create only (412 or 409: someone else's object is there). */
static int s3_put_single(struct remote *r, const char *key, const void *buf,
			 size_t len, int excl)
{
	struct s3_req q = { .method = "PUT", .key = key, .body = buf, .len = len,
			    .lock = 1, .if_none_match = excl };
	struct http_resp resp;
	unsigned char raw[16];
	char hex[33], b64[25], what[S3_KEY_MAX + 16];
	int rc;

	snprintf(what, sizeof(what), "put %s", key);
	if (s3_sign_md5(buf, len, raw, hex, b64))
		return remote_fail(r, -EIO, "%s: MD5 failed", r->name);
	q.content_md5 = b64;
	rc = s3_do(r, &q, &resp);
	if (rc)
		return rc;
	if (excl && (resp.status == 412 || resp.status == 409))
		rc = remote_fail(r, -EEXIST, "%s: %s exists already", r->name, key);
	else if (resp.status != 200)
		rc = s3_error(r, &resp, what);
	else if (!etag_is(resp.etag, hex))
		rc = remote_fail(r, -EBADMSG, "%s: %s: the server's ETag '%s' is not "
				 "the MD5 %s of what was sent", r->name, what,
				 resp.etag, hex);
	http_resp_free(&resp);
	return rc;
}

struct mp_ctx {
	char upload_id[1024];
	char etag[128];
	struct s3_err err;
};

static int mp_cb(void *arg, const char *path, const char *text)
{
	struct mp_ctx *m = arg;

	if (!strcmp(path, "InitiateMultipartUploadResult/UploadId"))
		snprintf(m->upload_id, sizeof(m->upload_id), "%s", text);
	else if (!strcmp(path, "CompleteMultipartUploadResult/ETag"))
		snprintf(m->etag, sizeof(m->etag), "%s", text);
	return err_cb(&m->err, path, text);
}

/* Strip the quotes around an ETag in place. */
static void unquote(char *s)
{
	size_t n = strlen(s);

	if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
		memmove(s, s + 1, n - 2);
		s[n - 2] = 0;
	}
}

/* Upload part number pn (1-based) with Content-MD5; its ETag must match. */
static int s3_put_part(struct remote *r, const char *key, const char *qid,
		       int pn, const uint8_t *p, size_t n, char etag_out[33])
{
	struct s3_req q = { .method = "PUT", .key = key, .body = p, .len = n };
	struct http_resp resp;
	unsigned char raw[16];
	char b64[25], query[1200], what[S3_KEY_MAX + 32];
	int rc;

	if (s3_sign_md5(p, n, raw, etag_out, b64))
		return remote_fail(r, -EIO, "%s: MD5 failed", r->name);
	/* sorted: partNumber < uploadId */
	snprintf(query, sizeof(query), "partNumber=%d&uploadId=%s", pn, qid);
	snprintf(what, sizeof(what), "put %s part %d", key, pn);
	q.query = query;
	q.content_md5 = b64;
	for (int attempt = 0;; attempt++) {
		rc = s3_do(r, &q, &resp);
		if (!rc) {
			if (resp.status != 200)
				rc = s3_error(r, &resp, what);
			else if (!etag_is(resp.etag, etag_out))
				rc = remote_fail(r, -EBADMSG, "%s: %s: the server's ETag "
						 "'%s' is not the part's MD5 %s",
						 r->name, what, resp.etag, etag_out);
			http_resp_free(&resp);
		}
		if (rc != -EAGAIN || attempt == S3_PART_RETRIES)
			return rc;
		s3_backoff(attempt);
	}
}

/* POST a multipart request (create or complete) and parse its reply. */
static int s3_mp_post(struct remote *r, const char *key, const char *query,
		      const char *body, size_t len, const char *what,
		      struct mp_ctx *m)
{
	/* the retention of a multipart object is set when it is created */
	struct s3_req q = { .method = "POST", .key = key, .query = query,
			    .body = body, .len = len, .lock = !body };
	struct http_resp resp;
	int rc;

	rc = s3_do(r, &q, &resp);
	if (rc)
		return rc;
	memset(&m->err, 0, sizeof(m->err));
	if (resp.status == 200 && resp.len &&
	    xml_walk((const char *)resp.body, resp.len, mp_cb, m))
		rc = remote_fail(r, -EIO, "%s: %s: malformed XML reply", r->name, what);
	else if (resp.status != 200 || m->err.is_error)
		rc = s3_error(r, &resp, what);	/* a 200 can carry <Error> */
	http_resp_free(&resp);
	return rc;
}

/* Best effort: abort a failed multipart upload so its parts are freed. */
static void s3_mp_abort(struct remote *r, const char *key, const char *qid)
{
	struct s3_req q = { .method = "DELETE", .key = key };
	struct http_resp resp;
	char query[1100], saved[sizeof(r->err)];

	memcpy(saved, r->err, sizeof(saved));
	snprintf(query, sizeof(query), "uploadId=%s", qid);
	q.query = query;
	if (!s3_do(r, &q, &resp))
		http_resp_free(&resp);
	memcpy(r->err, saved, sizeof(saved));
}

static int s3_head_raw(struct remote *r, const char *key, uint64_t *size);

/*
 * Multipart upload: create, parts of part_size (8 MiB, more when the
 * object would need over 10,000 parts), complete with the list of part
 * ETags, then HEAD must show the full size.  The final ETag is checked
 * too when it has a known form: md5-of-part-md5s-N (AWS, R2, MinIO) or
 * the plain MD5 of the object (s3rver).
 */
static int s3_put_multipart(struct remote *r, const char *key,
			    const uint8_t *buf, size_t len)
{
	size_t part = S3_PART_SIZE, nparts, xlen = 0, xcap = 0;
	char (*etags)[33] = NULL;
	unsigned char *md5s = NULL;
	char *qid = NULL, *xml = NULL, what[S3_KEY_MAX + 16], query[1200];
	struct mp_ctx m;
	uint64_t size;
	int rc;

	while ((len + part - 1) / part > S3_MAX_PARTS)
		part *= 2;
	nparts = (len + part - 1) / part;
	snprintf(what, sizeof(what), "put %s", key);
	memset(&m, 0, sizeof(m));
	rc = s3_mp_post(r, key, "uploads=", NULL, 0, what, &m);
	if (rc)
		return rc;
	if (!m.upload_id[0])
		return remote_fail(r, -EIO, "%s: %s: no UploadId in the reply",
				   r->name, what);
	qid = s3_sign_uri_encode(m.upload_id, 0);
	etags = calloc(nparts, sizeof(*etags));
	md5s = malloc(nparts * 16);
	if (!qid || !etags || !md5s) {
		rc = remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
		goto abort;
	}
	for (size_t i = 0; i < nparts; i++) {
		size_t off = i * part, n = len - off < part ? len - off : part;

		rc = s3_put_part(r, key, qid, (int)i + 1, buf + off, n, etags[i]);
		if (rc)
			goto abort;
		for (int k = 0; k < 16; k++)
			sscanf(etags[i] + 2 * k, "%2hhx", &md5s[16 * i + k]);
	}
	rc = sb_add(&xml, &xlen, &xcap, "<CompleteMultipartUpload>", 25);
	for (size_t i = 0; !rc && i < nparts; i++) {
		char one[160];
		int n = snprintf(one, sizeof(one), "<Part><PartNumber>%zu</PartNumber>"
				 "<ETag>\"%s\"</ETag></Part>", i + 1, etags[i]);

		rc = sb_add(&xml, &xlen, &xcap, one, (size_t)n);
	}
	if (!rc)
		rc = sb_add(&xml, &xlen, &xcap, "</CompleteMultipartUpload>", 26);
	if (rc) {
		rc = remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
		goto abort;
	}
	snprintf(query, sizeof(query), "uploadId=%s", qid);
	rc = s3_mp_post(r, key, query, xml, xlen, what, &m);
	if (rc)
		goto abort;
	unquote(m.etag);
	if (m.etag[0]) {
		unsigned char raw[16];
		char hex[33], b64[25], want[48];

		s3_sign_md5(md5s, nparts * 16, raw, hex, b64);
		snprintf(want, sizeof(want), "%s-%zu", hex, nparts);
		if (!etag_is(m.etag, want)) {
			s3_sign_md5(buf, len, raw, hex, b64);
			if (!etag_is(m.etag, hex)) {
				rc = remote_fail(r, -EBADMSG, "%s: %s: multipart ETag '%s' "
						 "matches neither %s nor the MD5 %s",
						 r->name, what, m.etag, want, hex);
				goto out;
			}
		}
	}
	rc = s3_head_raw(r, key, &size);
	if (!rc && size != len)
		rc = remote_fail(r, -EBADMSG, "%s: %s: %llu bytes stored, %zu sent",
				 r->name, what, (unsigned long long)size, len);
	goto out;
abort:
	s3_mp_abort(r, key, qid ? qid : m.upload_id);
out:
	free(xml);
	free(md5s);
	free(etags);
	free(qid);
	return rc;
}

static int s3_put(struct remote *r, const char *key, const void *buf, size_t len)
{
	if (len > S3_MULTIPART_OVER)
		return s3_put_multipart(r, key, buf, len);
	return s3_put_single(r, key, buf, len, 0);
}

/*
 * Create only.  One conditional PUT whatever the size (S3 takes 5 GiB in
 * one).  The HEAD first makes a server that ignores If-None-Match refuse
 * at least an object that is there already; a concurrent one it cannot
 * see, which is why callers read back.
 */
static int s3_put_new(struct remote *r, const char *key, const void *buf, size_t len)
{
	uint64_t size;
	int rc = s3_head_raw(r, key, &size);

	if (!rc)
		return remote_fail(r, -EEXIST, "%s: %s exists already", r->name, key);
	if (rc != -ENOENT)
		return rc;
	return s3_put_single(r, key, buf, len, 1);
}

/* ---- get, head, delete ---- */

static int s3_get(struct remote *r, const char *key, uint64_t off, size_t len,
		  uint8_t **buf, size_t *got)
{
	struct s3_req q = { .method = "GET", .key = key };
	struct http_resp resp;
	char range[64], what[S3_KEY_MAX + 16];
	int rc;

	snprintf(what, sizeof(what), "get %s", key);
	if (len)
		snprintf(range, sizeof(range), "bytes=%llu-%llu",
			 (unsigned long long)off, (unsigned long long)(off + len - 1));
	else
		snprintf(range, sizeof(range), "bytes=%llu-", (unsigned long long)off);
	if (off || len)
		q.range = range;
	rc = s3_do(r, &q, &resp);
	if (rc)
		return rc;
	if (resp.status == 416) {
		/* the range starts at or past the end: nothing to read */
		resp.len = 0;
	} else if (resp.status != 200 && resp.status != 206) {
		rc = s3_error(r, &resp, what);
		http_resp_free(&resp);
		return rc;
	} else if (resp.content_length && resp.content_length != resp.len) {
		rc = remote_fail(r, -EAGAIN, "%s: %s: %zu bytes received of %llu",
				 r->name, what, resp.len,
				 (unsigned long long)resp.content_length);
		http_resp_free(&resp);
		return rc;
	} else if (resp.status == 200 && q.range) {
		/* the server ignored Range and sent everything: cut it */
		size_t skip = off > resp.len ? resp.len : (size_t)off;
		size_t n = resp.len - skip;

		if (len && n > len)
			n = len;
		memmove(resp.body, resp.body + skip, n);
		resp.len = n;
	}
	/* a server that sends more than the range asked (s3rver answers
	 * bytes=0-0 with everything from 0): the bytes start at off */
	if (len && resp.len > len)
		resp.len = len;
	*buf = resp.body;
	*got = resp.len;
	return 0;
}

/* HEAD without retries or key checks, for the multipart size check. */
static int s3_head_raw(struct remote *r, const char *key, uint64_t *size)
{
	struct s3_req q = { .method = "HEAD", .key = key };
	struct http_resp resp;
	char what[S3_KEY_MAX + 16];
	int rc;

	snprintf(what, sizeof(what), "head %s", key);
	rc = s3_do(r, &q, &resp);
	if (rc)
		return rc;
	if (resp.status == 200)
		*size = resp.content_length;
	else
		rc = s3_error(r, &resp, what);
	http_resp_free(&resp);
	return rc;
}

static int s3_head(struct remote *r, const char *key, uint64_t *size)
{
	return s3_head_raw(r, key, size);
}

static int s3_del(struct remote *r, const char *key)
{
	struct s3_req q = { .method = "DELETE", .key = key };
	struct http_resp resp;
	char what[S3_KEY_MAX + 16];
	int rc;

	snprintf(what, sizeof(what), "delete %s", key);
	rc = s3_do(r, &q, &resp);
	if (rc)
		return rc;
	if (resp.status != 200 && resp.status != 204 && resp.status != 404)
		rc = s3_error(r, &resp, what);
	http_resp_free(&resp);
	return rc;
}

/*
 * PutObjectRetention: set or extend the retention of key (the current
 * version).  S3 wants Content-MD5 on it like on every Object Lock write.
 * Extending needs no bypass permission; shortening a GOVERNANCE lock
 * would, and is never asked for.
 */
static int s3_retain(struct remote *r, const char *key, int mode, int64_t until)
{
	struct s3_req q = { .method = "PUT", .key = key, .query = "retention=" };
	struct http_resp resp;
	unsigned char raw[16];
	char hex[33], b64[25], date[40], xml[256], what[S3_KEY_MAX + 24];
	int n, rc;

	lock_date(until, date, sizeof(date));
	n = snprintf(xml, sizeof(xml), "<Retention xmlns=\"http://s3.amazonaws.com/"
		     "doc/2006-03-01/\"><Mode>%s</Mode><RetainUntilDate>%s"
		     "</RetainUntilDate></Retention>", lock_mode_name(mode), date);
	q.body = xml;
	q.len = (size_t)n;
	if (s3_sign_md5(xml, q.len, raw, hex, b64))
		return remote_fail(r, -EIO, "%s: MD5 failed", r->name);
	q.content_md5 = b64;
	snprintf(what, sizeof(what), "retain %s", key);
	rc = s3_do(r, &q, &resp);
	if (rc)
		return rc;
	if (resp.status != 200 && resp.status != 204)
		rc = s3_error(r, &resp, what);
	http_resp_free(&resp);
	return rc;
}

/* ---- list ---- */

/* Fetch and parse one ListObjectsV2 page. */
static int list_page_get(struct remote *r, const char *query,
			 struct s3_listing *p)
{
	struct s3_req q = { .method = "GET", .query = query };
	struct http_resp resp;
	int rc;

	rc = s3_do(r, &q, &resp);
	if (rc)
		return rc;
	if (resp.status != 200) {
		rc = s3_error(r, &resp, "list");
	} else {
		rc = s3_listing_parse((const char *)resp.body, resp.len, p);
		if (rc == -ENOMEM)
			rc = remote_fail(r, -ENOMEM, "%s: out of memory listing", r->name);
		else if (rc)
			rc = remote_fail(r, -EIO, "%s: list: malformed XML reply",
					 r->name);
		else if (p->is_error)
			rc = s3_error(r, &resp, "list");
	}
	http_resp_free(&resp);
	return rc;
}

/*
 * ListObjectsV2 over all pages.  Pages after the first are retried here
 * on transient errors (keys of earlier pages were already handed out);
 * the first is retried by remote.c.  Keys outside the remote's prefix
 * (should a server send them) are skipped.
 */
static int s3_list(struct remote *r, const char *prefix, remote_list_cb cb,
		   void *arg)
{
	struct s3 *s = S(r);
	size_t plen = strlen(s->prefix);
	char *full = NULL, *eprefix = NULL, *etoken = NULL, *query = NULL;
	struct s3_listing p;
	int rc = 0, page = 0;

	memset(&p, 0, sizeof(p));
	if (asprintf(&full, "%s%s", s->prefix, prefix) < 0)
		return remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
	eprefix = s3_sign_uri_encode(full, 0);
	if (!eprefix) {
		rc = remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
		goto out;
	}
	for (;;) {
		/* sorted by name: continuation-token < list-type < prefix */
		free(query);
		query = NULL;
		if (asprintf(&query, "%s%s%slist-type=2&prefix=%s",
			     etoken ? "continuation-token=" : "",
			     etoken ? etoken : "", etoken ? "&" : "", eprefix) < 0) {
			query = NULL;
			rc = remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
			break;
		}
		for (int attempt = 0;; attempt++) {
			s3_listing_free(&p);
			rc = list_page_get(r, query, &p);
			if (rc != -EAGAIN || !page || attempt == S3_PAGE_RETRIES)
				break;
			s3_backoff(attempt);
		}
		if (rc)
			break;
		rc = s3_listing_deliver(&p, full, plen, cb, arg);
		if (rc || !p.truncated)
			break;
		if (!p.token || !p.token[0]) {
			rc = remote_fail(r, -EIO, "%s: list: truncated reply without "
					 "a continuation token", r->name);
			break;
		}
		free(etoken);
		etoken = s3_sign_uri_encode(p.token, 0);
		if (!etoken) {
			rc = remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
			break;
		}
		page++;
	}
out:
	s3_listing_free(&p);
	free(query);
	free(etoken);
	free(eprefix);
	free(full);
	return rc;
}

/* ---- open / close ---- */

static void s3_close(struct remote *r)
{
	struct s3 *s = r->priv;

	if (!s)
		return;
	if (s->curl)
		curl_easy_cleanup(s->curl);
	free(s->bucket);
	free(s->prefix);
	free(s->origin);
	free(s->base);
	s3_sign_free(&s->sign);
	free(s);
	r->priv = NULL;
}

static const struct remote_backend s3_backend = {
	.scheme = "s3",
	.put = s3_put,
	.put_new = s3_put_new,
	.get = s3_get,
	.head = s3_head,
	.del = s3_del,
	.list = s3_list,
	.close = s3_close,
	.retain = s3_retain,
};

/*
 * Work out where requests go.  endpoint is "http[s]://host[:port]" (no
 * path; https assumed without a scheme); none means AWS,
 * s3.REGION.amazonaws.com.  opt.path_style: 1 forces path-style
 * (endpoint/bucket/key), a negative value forces virtual-hosted
 * (bucket.host/key), 0 chooses: path-style with an explicit endpoint
 * (MinIO, s3rver, R2 all take it) or a bucket name with dots (TLS
 * wildcard certificates do not cover them), virtual-hosted on AWS.
 */
static int s3_locate(struct remote *r, struct s3 *s)
{
	const char *ep = r->opt.endpoint, *scheme = "https://", *hostport;
	int path_style = r->opt.path_style;
	char *hp = NULL;
	size_t n;
	int rc = 0;

	if (ep && *ep) {
		if (!strncmp(ep, "https://", 8)) {
			hostport = ep + 8;
		} else if (!strncmp(ep, "http://", 7)) {
			scheme = "http://";
			hostport = ep + 7;
		} else if (strstr(ep, "://")) {
			return remote_fail(r, -EINVAL, "%s: endpoint %s: only http:// "
					   "and https:// are supported", r->name, ep);
		} else {
			hostport = ep;
		}
		n = strcspn(hostport, "/");
		if (hostport[n] && strspn(hostport + n, "/") != strlen(hostport + n))
			return remote_fail(r, -EINVAL, "%s: endpoint %s must not have "
					   "a path", r->name, ep);
		if (!n || memchr(hostport, '@', n) || memchr(hostport, '?', n))
			return remote_fail(r, -EINVAL, "%s: endpoint %s: expected "
					   "https://host[:port]", r->name, ep);
		hp = strndup(hostport, n);
		if (path_style == 0)
			path_style = 1;
	} else {
		if (asprintf(&hp, "s3.%s.amazonaws.com", r->opt.region) < 0)
			hp = NULL;
		if (path_style == 0)
			path_style = strchr(s->bucket, '.') ? 1 : -1;
	}
	if (!hp)
		return remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
	if (path_style > 0) {
		if (asprintf(&s->origin, "%s%s", scheme, hp) < 0)
			s->origin = NULL;
		if (asprintf(&s->base, "/%s", s->bucket) < 0)
			s->base = NULL;
	} else {
		if (asprintf(&s->origin, "%s%s.%s", scheme, s->bucket, hp) < 0)
			s->origin = NULL;
		s->base = strdup("");
	}
	if (!s->origin || !s->base)
		rc = remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
	free(hp);
	return rc;
}

int remote_s3_open(struct remote *r, const char *bucket, const char *prefix)
{
	const char *region = r->opt.region ? r->opt.region : "us-east-1";
	struct s3 *s;
	int rc;

	snprintf(r->name, sizeof(r->name), "s3://%s%s%s", bucket,
		 *prefix ? "/" : "", prefix);
	if (!*region || strspn(region, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
	    strlen(region))
		return remote_fail(r, -EINVAL, "%s: bad region '%s'", r->name, region);
	s = calloc(1, sizeof(*s));
	if (!s)
		return remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
	r->priv = s;
	r->be = &s3_backend;	/* so remote_open's failure path frees s */
	s->bucket = strdup(bucket);
	if (asprintf(&s->prefix, "%s%s", prefix, *prefix ? "/" : "") < 0)
		s->prefix = NULL;
	if (!s->bucket || !s->prefix)
		return remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
	rc = s3_locate(r, s);
	if (rc)
		return rc;
	return s3_sign_load(r, &s->sign, region);
}
