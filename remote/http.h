/*
 * http.h - the libcurl plumbing S3 and WebDAV share: one easy handle per
 * remote, TLS with an optional extra CA, timeouts, the upload bandwidth
 * limit, and mapping of transport failures and HTTP statuses to errno.
 */
#ifndef TRESOR_REMOTE_HTTP_H
#define TRESOR_REMOTE_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include "backend.h"

struct http_resp {
	long status;
	uint8_t *body;			/* malloc'd, NUL-terminated */
	size_t len;
	char etag[128];			/* ETag header without quotes, or "" */
	uint64_t content_length;	/* Content-Length header, or 0 */
};

/* A reset easy handle set up for r (CA file, timeouts, no signals,
 * bandwidth limit, fail on nothing: statuses are checked by the caller).
 * The handle is kept in *slot and reused between calls. */
CURL *http_easy(struct remote *r, CURL **slot);

/* Perform; fill resp (body, status, etag, content length).  Returns 0 if
 * a response arrived (any status), -EAGAIN for timeouts / resets /
 * connection failures, -EPROTO for TLS and protocol errors (message
 * recorded in r). */
int http_perform(struct remote *r, CURL *c, struct http_resp *resp);

/* 2xx -> 0, 404 -> -ENOENT, 401/403 -> -EACCES, 408/429/5xx -> -EAGAIN,
 * anything else -> -EIO. */
int http_status_errno(long status);

void http_resp_free(struct http_resp *resp);

#endif
