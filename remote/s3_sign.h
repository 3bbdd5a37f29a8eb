/*
 * s3_sign.h - what an S3 request needs to be signed, beyond what
 * libcurl's SigV4 (CURLOPT_AWS_SIGV4) computes itself: the credentials,
 * the payload hash header, RFC 3986 encoding of keys and query values,
 * and body digests.  s3.c builds the requests.
 */
#ifndef TRESOR_S3_SIGN_H
#define TRESOR_S3_SIGN_H

#include <stddef.h>
#include <curl/curl.h>

struct remote;

struct s3_sign {
	char sigv4[96];			/* aws:amz:REGION:s3 */
	char *access_key;
	char *secret_key;
	char *session_token;		/* or NULL */
};

/* Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and
 * AWS_SESSION_TOKEN) from the environment, else the shared credentials
 * file (r->opt.credentials_file, AWS_SHARED_CREDENTIALS_FILE or
 * ~/.aws/credentials; profile r->opt.profile, AWS_PROFILE or default),
 * which must be private to its owner. */
int s3_sign_load(struct remote *r, struct s3_sign *g, const char *region);
/* Wipe and free the secrets. */
void s3_sign_free(struct s3_sign *g);
/* Make c sign its request with g, adding the headers the signature
 * needs (x-amz-content-sha256 of body, the session token) to *h. */
int s3_sign_request(struct remote *r, const struct s3_sign *g, CURL *c,
		    const void *body, size_t len, struct curl_slist **h);

/* Percent-encode s (RFC 3986: only A-Za-z0-9-._~ stay, plus '/' when
 * keep_slash, as object paths need).  Returns a malloc'd string. */
char *s3_sign_uri_encode(const char *s, int keep_slash);
/* MD5 of buf as raw bytes, lower-case hex and base64 (Content-MD5). */
int s3_sign_md5(const void *buf, size_t len, unsigned char raw[16], char hex[33],
		char b64[25]);

#endif
