/*
 * s3_sign.c - what an S3 request needs to be signed beyond libcurl's
 * SigV4 (s3_sign.h).
 *
 * libcurl 7.88 signs exactly what it is given, so this supplies what it
 * leaves out: an x-amz-content-sha256 header on every request, and the
 * encoding of object keys and query values (everything but
 * A-Za-z0-9-._~, and '/' in keys, percent-encoded; s3.c sorts the
 * query).  The credentials go to libcurl as user name and password for
 * signing and never appear in a message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "../chunker/util.h"
#include "backend.h"
#include "s3_sign.h"

#define EMPTY_SHA256 \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

char *s3_sign_uri_encode(const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
		    c == '~' || (keep_slash && c == '/')) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = 0;
	return out;
}

/* One-shot digest with OpenSSL's EVP; md_len receives the length. */
static int digest(const EVP_MD *md, const void *buf, size_t len,
		  unsigned char *out, unsigned *md_len)
{
	return EVP_Digest(buf, len, out, md_len, md, NULL) == 1 ? 0 : -EIO;
}

/* SHA-256 hex (64+1 bytes) of buf: the x-amz-content-sha256 value. */
static int sha256_hex(const void *buf, size_t len, char out[65])
{
	unsigned char d[32];
	unsigned n;

	if (!len) {
		strcpy(out, EMPTY_SHA256);
		return 0;
	}
	if (digest(EVP_sha256(), buf, len, d, &n))
		return -EIO;
	hex_encode(d, 32, out);
	return 0;
}

int s3_sign_md5(const void *buf, size_t len, unsigned char raw[16], char hex[33],
		char b64[25])
{
	unsigned n;

	if (digest(EVP_md5(), buf, len, raw, &n))
		return -EIO;
	hex_encode(raw, 16, hex);
	EVP_EncodeBlock((unsigned char *)b64, raw, 16);
	return 0;
}

/* Wipe and free a secret string. */
static void free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* Trim spaces at both ends in place. */
static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
			 e[-1] == '\n'))
		*--e = 0;
	return s;
}

/*
 * Read the [profile] section of an AWS shared credentials file (INI:
 * aws_access_key_id, aws_secret_access_key, aws_session_token).  The
 * file has passed remote_check_secret_file.
 */
static int read_credentials_file(struct remote *r, struct s3_sign *s, const char *path,
				 const char *profile)
{
		char line[4096], *t;
	int in = 0, rc = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return remote_fail(r, -errno, "%s: credentials file %s: %s", r->name,
				   path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *eq, *k, *v, **dst = NULL;

		t = trim(line);
		if (!*t || *t == '#' || *t == ';')
			continue;
		if (*t == '[') {
			char *e = strchr(t, ']');

			if (!e)
				continue;
			*e = 0;
			t = trim(t + 1);
			if (!strncmp(t, "profile ", 8))
				t = trim(t + 8);
			in = !strcmp(t, profile);
			continue;
		}
		if (!in || !(eq = strchr(t, '=')))
			continue;
		*eq = 0;
		k = trim(t);
		v = trim(eq + 1);
		if (!strcasecmp(k, "aws_access_key_id"))
			dst = &s->access_key;
		else if (!strcasecmp(k, "aws_secret_access_key"))
			dst = &s->secret_key;
		else if (!strcasecmp(k, "aws_session_token") ||
			 !strcasecmp(k, "aws_security_token"))
			dst = &s->session_token;
		if (dst && *v) {
			free_secret(*dst);
			*dst = strdup(v);
			if (!*dst)
				rc = -ENOMEM;
		}
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	if (rc)
		return remote_fail(r, rc, "%s: out of memory", r->name);
	if (!s->access_key || !s->secret_key)
		return remote_fail(r, -EACCES, "%s: credentials file %s has no "
				   "aws_access_key_id and aws_secret_access_key "
				   "for profile [%s]", r->name, path, profile);
	return 0;
}

int s3_sign_load(struct remote *r, struct s3_sign *s, const char *region)
{
		const char *id = getenv("AWS_ACCESS_KEY_ID");
	const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
	const char *token = getenv("AWS_SESSION_TOKEN");
	const char *profile, *home, *path;
	char def[4096];
	int optional = 0, rc;

	snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", region);

	if ((id && *id) || (secret && *secret)) {
		if (!id || !*id || !secret || !*secret)
			return remote_fail(r, -EINVAL, "%s: set both AWS_ACCESS_KEY_ID "
					   "and AWS_SECRET_ACCESS_KEY", r->name);
		s->access_key = strdup(id);
		s->secret_key = strdup(secret);
		if (token && *token)
			s->session_token = strdup(token);
		if (!s->access_key || !s->secret_key ||
		    (token && *token && !s->session_token))
			return remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
		return 0;
	}
	path = r->opt.credentials_file;
	if (!path || !*path)
		path = getenv("AWS_SHARED_CREDENTIALS_FILE");
	if (!path || !*path) {
		home = getenv("HOME");
		if (!home || !*home)
			home = "/";
		snprintf(def, sizeof(def), "%s/.aws/credentials", home);
		path = def;
		optional = 1;
	}
	rc = remote_check_secret_file(r, path, optional);
	if (rc)
		return rc;
	profile = r->opt.profile;
	if (!profile || !*profile)
		profile = getenv("AWS_PROFILE");
	if (!profile || !*profile)
		profile = "default";
	if (optional && access(path, F_OK) < 0)
		return remote_fail(r, -EACCES, "%s: no credentials: set "
				   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or "
				   "write %s", r->name, path);
	return read_credentials_file(r, s, path, profile);
}

void s3_sign_free(struct s3_sign *g)
{
	free_secret(g->access_key);
	free_secret(g->secret_key);
	free_secret(g->session_token);
	g->access_key = g->secret_key = g->session_token = NULL;
}

/* Append a header line to *h; the line may hold a secret: wiped after. */
static int add_header(struct remote *r, struct curl_slist **h, const char *fmt,
		      const char *v)
{
	char line[4096];
	int n = snprintf(line, sizeof(line), fmt, v);
	struct curl_slist *nh = n < (int)sizeof(line) ? curl_slist_append(*h, line) : NULL;
	OPENSSL_cleanse(line, sizeof(line));
	if (n >= (int)sizeof(line))
		return remote_fail(r, -EINVAL, "%s: a request header is too long "
				   "(AWS_SESSION_TOKEN?)", r->name);
	if (!nh)
		return remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
	*h = nh;
	return 0;
}

int s3_sign_request(struct remote *r, const struct s3_sign *g, CURL *c,
		    const void *body, size_t len, struct curl_slist **h)
{
	char sha[65];
	if (sha256_hex(body, len, sha))
		return remote_fail(r, -EIO, "%s: SHA-256 failed", r->name);
	int rc = add_header(r, h, "x-amz-content-sha256: %s", sha);
	if (!rc && g->session_token)
		rc = add_header(r, h, "x-amz-security-token: %s", g->session_token);
	if (rc)
		return rc;
	curl_easy_setopt(c, CURLOPT_AWS_SIGV4, g->sigv4);
	curl_easy_setopt(c, CURLOPT_USERNAME, g->access_key);
	curl_easy_setopt(c, CURLOPT_PASSWORD, g->secret_key);
	return 0;
}
