/*
 * http.c - the libcurl plumbing S3 and WebDAV share.
 *
 * One easy handle per remote, kept in a slot the backend owns and reset
 * before every request, so connections (and TLS sessions) are reused
 * while no option leaks from one request into the next.  A stalled
 * server never hangs us: connects time out after 15 s (or timeout_s if
 * shorter) and any transfer slower than 1 KiB/s for timeout_s seconds
 * is aborted (waiting for a reply counts as a transfer).  Transport
 * failures map to -EAGAIN (retry) or -EPROTO (TLS / protocol: retrying
 * will not help); HTTP statuses map to errno in http_status_errno.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "../chunker/buf.h"
#include "http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef TRESOR_VERSION
#define TRESOR_VERSION "0"
#endif

#define HTTP_CONNECT_TIMEOUT_S	15L
#define HTTP_LOW_SPEED_BYTES	1024L
#define HTTP_DEFAULT_STALL_S	60L
/* Refuse to buffer a reply larger than this (a sane pack is far smaller). */
#define HTTP_BODY_MAX		((size_t)1 << 32)

/* What the callbacks of one http_perform share. */
struct http_sink {
	struct http_resp *resp;
	size_t cap;
	int nomem;
};

/*
 * A reset handle set up for r.  Statuses are never turned into curl
 * errors (no FAILONERROR): the caller reads them from the response.
 */
CURL *http_easy(struct remote *r, CURL **slot)
{
	CURL *c = *slot;
	long stall = r->opt.timeout_s > 0 ? r->opt.timeout_s : HTTP_DEFAULT_STALL_S;

	if (c) {
		curl_easy_reset(c);
	} else {
		c = curl_easy_init();
		if (!c) {
			remote_fail(r, -ENOMEM, "%s: cannot create a curl handle",
				    r->name);
			return NULL;
		}
		*slot = c;
	}
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
			 stall < HTTP_CONNECT_TIMEOUT_S ? stall : HTTP_CONNECT_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, HTTP_LOW_SPEED_BYTES);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stall);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "tresor/" TRESOR_VERSION);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
	if (r->opt.ca_file && *r->opt.ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, r->opt.ca_file);
	if (r->opt.bandwidth_limit)
		curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE,
				 (curl_off_t)r->opt.bandwidth_limit);
	return c;
}

/* Grow the body buffer to hold at least need bytes plus the NUL. */
static int sink_reserve(struct http_sink *s, size_t need)
{
	if (need >= HTTP_BODY_MAX)
		return -ENOMEM;
	uint8_t *nb = buf_grow(s->resp->body, &s->cap, need + 1, 1);
	if (!nb)
		return -ENOMEM;
	s->resp->body = nb;
	return 0;
}

/* Body bytes: append to the growing NUL-terminated buffer. */
static size_t http_write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct http_sink *s = arg;
	size_t len = size * n;

	/* Size the buffer once for the whole announced body (only here: a
	 * HEAD announces a length but never calls this). */
	if (!s->resp->len && s->resp->content_length > len &&
	    s->resp->content_length < HTTP_BODY_MAX)
		(void)sink_reserve(s, (size_t)s->resp->content_length);
	if (sink_reserve(s, s->resp->len + len)) {
		s->nomem = 1;
		return 0;
	}
	memcpy(s->resp->body + s->resp->len, data, len);
	s->resp->len += len;
	s->resp->body[s->resp->len] = 0;
	return len;
}

/*
 * One header line.  A status line starts a new response (100 Continue,
 * or a retried auth round) so what was captured before is dropped.
 */
static size_t http_header_cb(char *data, size_t size, size_t n, void *arg)
{
	struct http_sink *s = arg;
	size_t len = size * n, vlen;
	const char *v;

	if (len >= 5 && !strncmp(data, "HTTP/", 5)) {
		s->resp->etag[0] = 0;
		s->resp->content_length = 0;
		return len;
	}
	if (len > 5 && !strncasecmp(data, "ETag:", 5)) {
		v = data + 5;
		vlen = len - 5;
	} else if (len > 15 && !strncasecmp(data, "Content-Length:", 15)) {
		char tmp[32];

		v = data + 15;
		vlen = len - 15;
		while (vlen && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		if (vlen >= sizeof(tmp))
			return len;
		memcpy(tmp, v, vlen);
		tmp[vlen] = 0;
		s->resp->content_length = strtoull(tmp, NULL, 10);
		return len;
	} else {
		return len;
	}
	while (vlen && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
			v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	if (vlen >= 2 && v[0] == 'W' && v[1] == '/')
		v += 2, vlen -= 2;
	if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"')
		v++, vlen -= 2;
	if (vlen >= sizeof(s->resp->etag))
		vlen = sizeof(s->resp->etag) - 1;
	memcpy(s->resp->etag, v, vlen);
	s->resp->etag[vlen] = 0;
	return len;
}

/* Which curl failures are worth a retry and which are not. */
static int curl_errno(CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_AGAIN:
		return -EAGAIN;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_USE_SSL_FAILED:
		return -EPROTO;
	default:
		return -EPROTO;
	}
}

/*
 * Perform the request set up on c, collecting the reply into resp.
 * Any status is a success here; only a missing reply is an error.
 */
int http_perform(struct remote *r, CURL *c, struct http_resp *resp)
{
	struct http_sink sink = { .resp = resp };
	char ebuf[CURL_ERROR_SIZE];
	const char *what;
	CURLcode rc;
	int err;

	memset(resp, 0, sizeof(*resp));
	ebuf[0] = 0;
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, http_header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);
	rc = curl_easy_perform(c);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	if (rc == CURLE_OK && !sink.nomem) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
		if (!resp->body) {
			resp->body = malloc(1);
			if (!resp->body)
				return remote_fail(r, -ENOMEM, "%s: out of memory",
						   r->name);
			resp->body[0] = 0;
		}
		return 0;
	}
	free(resp->body);
	resp->body = NULL;
	resp->len = 0;
	if (sink.nomem)
		return remote_fail(r, -ENOMEM, "%s: reply too large for memory",
				   r->name);
	err = curl_errno(rc);
	what = ebuf[0] ? ebuf : curl_easy_strerror(rc);
	if (err == -EAGAIN)
		return remote_fail(r, err, "%s: transfer failed (will retry): %s",
				   r->name, what);
	if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE)
		return remote_fail(r, err, "%s: TLS certificate not trusted: %s "
				   "(an own CA can be given as the CA file)",
				   r->name, what);
	return remote_fail(r, err, "%s: %s", r->name, what);
}

/* HTTP status to the errno vocabulary of remote.h. */
int http_status_errno(long status)
{
	if (status >= 200 && status < 300)
		return 0;
	if (status == 404)
		return -ENOENT;
	if (status == 401 || status == 403)
		return -EACCES;
	if (status == 408 || status == 429 || (status >= 500 && status < 600))
		return -EAGAIN;
	return -EIO;
}

void http_resp_free(struct http_resp *resp)
{
	if (!resp)
		return;
	free(resp->body);
	resp->body = NULL;
	resp->len = 0;
}
