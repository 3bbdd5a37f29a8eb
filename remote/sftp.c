/*
 * sftp.c - the SFTP backend (a Hetzner Storage Box, sftp://u@host:23/path, any
 * OpenSSH server) through libcurl's libssh2 support.
 *
 * Trust: the server's host key must match an entry of a known_hosts file
 * (no file, no connection; a missing or different key is refused with
 * the ssh-keyscan line that would add it).  Authentication is by an SSH
 * key only, a key file others can read is refused.
 *
 * Objects: a put uploads to "KEY.tmp-RANDOM" (creating parent folders),
 * checks the temporary file's size on the server, then renames it to
 * KEY.  SFTP rename never replaces an existing target; tresor never
 * overwrites an object, so an existing KEY of the right size means an
 * earlier attempt already published it.  Temporary names are never
 * listed.  Listing walks the folders below the prefix with long
 * directory listings (type and size of every entry in one round trip).
 *
 * One easy handle per remote keeps the SSH session open between
 * requests.  Uploads are pipelined by libssh2 over the whole upload
 * buffer (2 MiB), so throughput is not bound to one 32 KiB packet per
 * round trip.  Every request has a total time limit and transfers
 * abort below 1 KiB/s for timeout_s seconds, so a stalled server never
 * hangs us.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "../chunker/buf.h"
#include "backend.h"
#include "listing.h"

#include <curl/curl.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SFTP_CONNECT_TIMEOUT_S	15L
#define SFTP_LOW_SPEED_BYTES	1024L
/* libssh2 keeps the whole upload buffer in flight (~70 packets of 30000
 * bytes; libcurl's maximum) and reads ahead as much on downloads. */
#define SFTP_BUFFER		(2L << 20)
/* For the total time limit of a transfer, assume at least this rate. */
#define SFTP_MIN_RATE		(8u << 10)
/* A folder listing is retried this often on transient errors, and its
 * time limit allows for this many bytes of listing. */
#define SFTP_LIST_TRIES		4
#define SFTP_LIST_BUDGET	(1u << 20)
#define SFTP_GET_MAX		((uint64_t)1 << 32)

struct sftp {
	CURL *c;
	char *user;
	char *host;
	int port;
	char *dir;		/* server path of the base, no trailing '/' */
	char *url_base;		/* sftp://host:port/encoded-dir, no trailing '/' */
	char *key;		/* private key file */
	char *pubkey;		/* KEY.pub if it exists, else NULL */
	char *known_hosts;
	int khmatch;		/* last host key verdict, CURLKHMATCH_* or -1 */
};

/* A growing NUL-terminated buffer for downloads and listings. */
struct sink {
	uint8_t *p;
	size_t len, cap;
	uint64_t max;
	int nomem;
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

/* Percent-decode a URL path (the path as the server sees it). */
static char *url_decode(const char *s)
{
	char *out = malloc(strlen(s) + 1), *o = out;

	if (!out)
		return NULL;
	while (*s) {
		unsigned v;

		if (s[0] == '%' && s[1] && s[2] && sscanf(s + 1, "%2x", &v) == 1) {
			*o++ = (char)v;
			s += 3;
		} else {
			*o++ = *s++;
		}
	}
	*o = 0;
	return out;
}

/* Percent-encode a server path for a URL, keeping '/' and unreserved. */
static char *url_encode_path(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~' || c == '/') {
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

/* A quote command: CMD "arg1" ["arg2"], arguments escaped for libcurl. */
static struct curl_slist *quote_add(struct curl_slist *l, const char *cmd,
				    const char *a1, const char *a2)
{
	char *line = malloc(strlen(cmd) + 2 * (strlen(a1) + (a2 ? strlen(a2) : 0)) + 8);
	struct curl_slist *nl;
	const char *args[2] = { a1, a2 };
	char *o = line;

	if (!line) {
		curl_slist_free_all(l);
		return NULL;
	}
	o = stpcpy(o, cmd);
	for (int i = 0; i < 2 && args[i]; i++) {
		*o++ = ' ';
		*o++ = '"';
		for (const char *s = args[i]; *s; s++) {
			if (*s == '"' || *s == '\\')
				*o++ = '\\';
			*o++ = *s;
		}
		*o++ = '"';
	}
	*o = 0;
	nl = curl_slist_append(l, line);
	free(line);
	if (!nl)
		curl_slist_free_all(l);
	return nl;
}

/* Server path and URL of a key (or "" for the base), malloc'd. */
static char *key_path(const struct sftp *s, const char *key)
{
	char *out;

	if (asprintf(&out, "%s/%s", s->dir, key) < 0)
		return NULL;
	return out;
}

static char *key_url(const struct sftp *s, const char *key)
{
	char *out;

	/* keys are [A-Za-z0-9._-/]: nothing to encode */
	if (asprintf(&out, "%s/%s", s->url_base, key) < 0)
		return NULL;
	return out;
}

/* Accept the server only if its key is in known_hosts exactly. */
static int sftp_keyfunc(CURL *easy, const struct curl_khkey *knownkey,
			const struct curl_khkey *foundkey, enum curl_khmatch match,
			void *arg)
{
	struct sftp *s = arg;

	(void)easy, (void)knownkey, (void)foundkey;
	s->khmatch = match;
	return match == CURLKHMATCH_OK ? CURLKHSTAT_FINE : CURLKHSTAT_REJECT;
}

static size_t sink_write(char *data, size_t size, size_t n, void *arg)
{
	struct sink *k = arg;
	size_t len = size * n;

	if (k->len + len + 1 > k->cap) {
		uint8_t *np;

		/* a known length (a range read) is allocated at once, exactly:
		 * buf_grow's first allocation is the capacity it is given */
		if (!k->p && k->max < (256u << 20))
			k->cap = (size_t)k->max + 1;
		if (k->len + len > k->max ||
		    !(np = buf_grow(k->p, &k->cap, k->len + len + 1, 1))) {
			k->nomem = 1;
			return 0;
		}
		k->p = np;
	}
	memcpy(k->p + k->len, data, len);
	k->len += len;
	k->p[k->len] = 0;
	return len;
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

/*
 * A reset handle for one request on url: key auth, host key check,
 * timeouts.  xfer is the number of bytes the request moves (for its
 * total time limit); 0 for stat, rename, listing.
 */
static CURL *sftp_easy(struct remote *r, const char *url, uint64_t xfer)
{
	struct sftp *s = r->priv;
	long stall = r->opt.timeout_s > 0 ? r->opt.timeout_s : 60;
	uint64_t rate = SFTP_MIN_RATE, total;

	if (s->c) {
		curl_easy_reset(s->c);
	} else if (!(s->c = curl_easy_init())) {
		remote_fail(r, -ENOMEM, "%s: cannot create a curl handle", r->name);
		return NULL;
	}
	if (r->opt.bandwidth_limit && r->opt.bandwidth_limit / 2 < rate)
		rate = r->opt.bandwidth_limit / 2 ? r->opt.bandwidth_limit / 2 : 1;
	total = (uint64_t)stall + xfer / rate;
	s->khmatch = -1;
	curl_easy_setopt(s->c, CURLOPT_URL, url);
	curl_easy_setopt(s->c, CURLOPT_PROTOCOLS_STR, "sftp");
	curl_easy_setopt(s->c, CURLOPT_USERNAME, s->user);
	curl_easy_setopt(s->c, CURLOPT_SSH_AUTH_TYPES, (long)CURLSSH_AUTH_PUBLICKEY);
	curl_easy_setopt(s->c, CURLOPT_SSH_PRIVATE_KEYFILE, s->key);
	if (s->pubkey)
		curl_easy_setopt(s->c, CURLOPT_SSH_PUBLIC_KEYFILE, s->pubkey);
	curl_easy_setopt(s->c, CURLOPT_SSH_KNOWNHOSTS, s->known_hosts);
	curl_easy_setopt(s->c, CURLOPT_SSH_KEYFUNCTION, sftp_keyfunc);
	curl_easy_setopt(s->c, CURLOPT_SSH_KEYDATA, s);
	curl_easy_setopt(s->c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->c, CURLOPT_CONNECTTIMEOUT,
			 stall < SFTP_CONNECT_TIMEOUT_S ? stall : SFTP_CONNECT_TIMEOUT_S);
	curl_easy_setopt(s->c, CURLOPT_LOW_SPEED_LIMIT, SFTP_LOW_SPEED_BYTES);
	curl_easy_setopt(s->c, CURLOPT_LOW_SPEED_TIME, stall);
	curl_easy_setopt(s->c, CURLOPT_SERVER_RESPONSE_TIMEOUT, stall);
	if (total > 10000000)
		total = 10000000;
	curl_easy_setopt(s->c, CURLOPT_TIMEOUT, (long)total);
	curl_easy_setopt(s->c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(s->c, CURLOPT_NEW_FILE_PERMS, 0600L);
	curl_easy_setopt(s->c, CURLOPT_NEW_DIRECTORY_PERMS, 0700L);
	curl_easy_setopt(s->c, CURLOPT_UPLOAD_BUFFERSIZE, SFTP_BUFFER);
	curl_easy_setopt(s->c, CURLOPT_BUFFERSIZE, SFTP_BUFFER);
	if (r->opt.bandwidth_limit)
		curl_easy_setopt(s->c, CURLOPT_MAX_SEND_SPEED_LARGE,
				 (curl_off_t)r->opt.bandwidth_limit);
	return s->c;
}

/*
 * Run the request; on failure record a message about what (an action
 * and the key) went wrong and return -errno: -ENOENT for a missing
 * file, -EACCES for a refused key or permission, -EPROTO for a host key
 * not in known_hosts, -EAGAIN for everything a retry may cure.
 */
static int sftp_perform(struct remote *r, struct sink *sink, const char *what,
			const char *key)
{
	struct sftp *s = r->priv;
	char ebuf[CURL_ERROR_SIZE];
	const char *msg;
	CURLcode rc;

	ebuf[0] = 0;
	curl_easy_setopt(s->c, CURLOPT_ERRORBUFFER, ebuf);
	if (sink) {
		curl_easy_setopt(s->c, CURLOPT_WRITEFUNCTION, sink_write);
		curl_easy_setopt(s->c, CURLOPT_WRITEDATA, sink);
	}
	rc = curl_easy_perform(s->c);
	curl_easy_setopt(s->c, CURLOPT_ERRORBUFFER, NULL);
	if (rc == CURLE_OK)
		return 0;
	msg = ebuf[0] ? ebuf : curl_easy_strerror(rc);
	switch (rc) {
	case CURLE_REMOTE_FILE_NOT_FOUND:
		return remote_fail(r, -ENOENT, "%s: %s %s: no such file",
				   r->name, what, key);
	case CURLE_PEER_FAILED_VERIFICATION: {
		/* how known_hosts names the server */
		char hspec[300];

		if (s->port == 22)
			snprintf(hspec, sizeof(hspec), "%s", s->host);
		else
			snprintf(hspec, sizeof(hspec), "[%s]:%d", s->host, s->port);
		if (s->khmatch == CURLKHMATCH_MISMATCH)
			return remote_fail(r, -EPROTO,
				"%s: host key of %s does NOT match the one in %s "
				"(the server's key changed, or this is not the "
				"server you think); only if the change is "
				"expected: ssh-keygen -R '%s' -f %s, then "
				"ssh-keyscan -p %d %s >> %s",
					   r->name, s->host, s->known_hosts, hspec,
					   s->known_hosts, s->port, s->host,
					   s->known_hosts);
		return remote_fail(r, -EPROTO,
				   "%s: host key of %s not in %s: add it with "
				   "ssh-keyscan -p %d %s >> %s (and check it)",
				   r->name, s->host, s->known_hosts, s->port, s->host,
				   s->known_hosts);
	}
	case CURLE_LOGIN_DENIED:
		return remote_fail(r, -EACCES,
				   "%s: %s refused the SSH key %s for user %s (%s)",
				   r->name, s->host, s->key, s->user, msg);
	case CURLE_REMOTE_ACCESS_DENIED:
		return remote_fail(r, -EACCES, "%s: %s %s: permission denied (%s)",
				   r->name, what, key, msg);
	case CURLE_REMOTE_DISK_FULL:
		return remote_fail(r, -ENOSPC, "%s: %s %s: remote disk full",
				   r->name, what, key);
	case CURLE_WRITE_ERROR:
		if (sink && sink->nomem)
			return remote_fail(r, -ENOMEM, "%s: %s %s: too large for memory",
					   r->name, what, key);
		break;
	case CURLE_OUT_OF_MEMORY:
		return remote_fail(r, -ENOMEM, "%s: out of memory", r->name);
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_SSH:
	case CURLE_AGAIN:
		return remote_fail(r, -EAGAIN, "%s: %s %s failed (will retry): %s",
				   r->name, what, key, msg);
	default:
		break;
	}
	return remote_fail(r, -EIO, "%s: %s %s: %s", r->name, what, key, msg);
}

static int size_by_listing(struct remote *r, const char *rel, const char *key,
			   uint64_t *size);

/*
 * Size of the file rel (a stat through a body-less request, after the
 * quote commands and before the postquote ones).  libcurl reports an
 * empty file's size as unknown: then its folder's listing decides.
 */
static int sftp_stat(struct remote *r, const char *rel, const char *key,
		     struct curl_slist *quote, struct curl_slist *postquote,
		     uint64_t *size)
{
	char *url = key_url(r->priv, rel);
	curl_off_t cl = -1;
	CURL *c = url ? sftp_easy(r, url, 0) : NULL;
	int rc;

	free(url);
	if (!c)
		return -ENOMEM;
	curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (quote)
		curl_easy_setopt(c, CURLOPT_QUOTE, quote);
	if (postquote)
		curl_easy_setopt(c, CURLOPT_POSTQUOTE, postquote);
	rc = sftp_perform(r, NULL, "stat", key);
	if (rc)
		return rc;
	curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (cl < 0)
		return size_by_listing(r, rel, key, size);
	*size = (uint64_t)cl;
	return 0;
}

static int sftp_del(struct remote *r, const char *key);

/* Remove a temporary, keeping the error that made us do it. */
static void sftp_rm_quiet(struct remote *r, const char *key)
{
	char err[sizeof(r->err)];

	memcpy(err, r->err, sizeof(err));
	(void)sftp_del(r, key);
	memcpy(r->err, err, sizeof(err));
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

/*
 * Upload to a temporary name, check its size, rename it into place.
 * The rename request renames (ignoring failure), stats the final name
 * and removes the temporary (ignoring failure: gone after a rename), so
 * "the final object exists with our size" decides, whether we or an
 * earlier attempt published it.  excl: an SFTP rename never replaces, so
 * a failed rename with the final name there means another writer won
 * (-EEXIST); the rename's failure is then not ignored.
 */
static int sftp_write(struct remote *r, const char *key, const void *buf, size_t len,
		      int excl)
{
	struct sftp *s = r->priv;
	struct source src = { .p = buf, .len = len };
	char *tmp = NULL, *tmp_url = NULL, *tmp_path = NULL, *path = NULL;
	struct curl_slist *q = NULL, *pq = NULL;
	uint64_t size;
	CURL *c;
	int rc;

	rc = temp_key(r, key, &tmp);
	if (rc)
		return rc;
	tmp_url = key_url(s, tmp);
	tmp_path = key_path(s, tmp);
	path = key_path(s, key);
	if (!tmp_url || !tmp_path || !path) {
		rc = -ENOMEM;
		goto out;
	}

	c = sftp_easy(r, tmp_url, len);
	if (!c) {
		rc = -ENOMEM;
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, source_read);
	curl_easy_setopt(c, CURLOPT_READDATA, &src);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(c, CURLOPT_FTP_CREATE_MISSING_DIRS,
			 (long)CURLFTP_CREATE_DIR_RETRY);
	rc = sftp_perform(r, NULL, "upload", key);
	if (rc)
		goto cleanup;

	rc = sftp_stat(r, tmp, key, NULL, NULL, &size);
	if (rc)
		goto cleanup;
	if (size != len) {
		rc = remote_fail(r, -EAGAIN,
				 "%s: upload %s: the server holds %llu of %zu bytes",
				 r->name, key, (unsigned long long)size, len);
		goto cleanup;
	}

	q = quote_add(NULL, excl ? "rename" : "*rename", tmp_path, path);
	pq = quote_add(NULL, "*rm", tmp_path, NULL);
	if (!q || !pq) {
		rc = -ENOMEM;
		goto cleanup;
	}
	rc = sftp_stat(r, key, key, q, pq, &size);
	if (rc && excl && sftp_stat(r, key, key, NULL, NULL, &size) == 0) {
		rc = remote_fail(r, -EEXIST, "%s: %s exists already", r->name, key);
		goto cleanup;
	}
	if (rc == -ENOENT)
		rc = remote_fail(r, -EIO, "%s: publish %s: renaming %s failed",
				 r->name, key, tmp);
	if (rc)
		goto cleanup;
	if (size != len)
		rc = remote_fail(r, -EBADMSG,
				 "%s: %s already exists with %llu bytes, not %zu",
				 r->name, key, (unsigned long long)size, len);
	goto out;
cleanup:
	sftp_rm_quiet(r, tmp);
out:
	curl_slist_free_all(q);
	curl_slist_free_all(pq);
	free(tmp);
	free(tmp_url);
	free(tmp_path);
	free(path);
	return rc;
}

static int sftp_put(struct remote *r, const char *key, const void *buf, size_t len)
{
	return sftp_write(r, key, buf, len, 0);
}

static int sftp_put_new(struct remote *r, const char *key, const void *buf, size_t len)
{
	return sftp_write(r, key, buf, len, 1);
}

/* An empty result for a read at or past the end (like pread). */
static int empty_read(uint8_t **buf, size_t *got)
{
	*buf = malloc(1);
	*got = 0;
	return *buf ? 0 : -ENOMEM;
}

/*
 * Download len bytes at off.  A whole-object read (len 0) stats first:
 * the size bounds the request's time limit and is checked against what
 * arrives.
 */
static int sftp_get(struct remote *r, const char *key, uint64_t off, size_t len,
		    uint8_t **buf, size_t *got)
{
	struct sftp *s = r->priv;
	struct sink sink = { 0 };
	uint64_t size = 0;
	int whole = !len;
	char *url, range[64];
	CURL *c;
	int rc;

	if (whole) {
		rc = sftp_stat(r, key, key, NULL, NULL, &size);
		if (rc)
			return rc;
		if (off >= size)
			return empty_read(buf, got);
		if (size - off > SFTP_GET_MAX)
			return remote_fail(r, -ENOMEM, "%s: download %s: %llu "
					   "bytes is too large for memory",
					   r->name, key,
					   (unsigned long long)(size - off));
		len = (size_t)(size - off);
	}
	sink.max = len;
	url = key_url(s, key);
	c = url ? sftp_easy(r, url, len) : NULL;
	free(url);
	if (!c)
		return -ENOMEM;
	snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)off,
		 (unsigned long long)(off + len - 1));
	curl_easy_setopt(c, CURLOPT_RANGE, range);
	rc = sftp_perform(r, &sink, "download", key);
	if (rc == -EIO && off && !whole) {
		/* libcurl refuses an offset past the end; tell that from
		 * other failures by the object's size */
		int rc2 = sftp_stat(r, key, key, NULL, NULL, &size);

		if (!rc2 && off >= size) {
			free(sink.p);
			return empty_read(buf, got);
		}
		if (rc2)
			rc = rc2;
	}
	if (rc) {
		free(sink.p);
		return rc;
	}
	/* libcurl checks the byte count against the file size; a whole
	 * object is checked once more against the size we stat'ed */
	if (whole && sink.len != len) {
		free(sink.p);
		return remote_fail(r, -EAGAIN,
				   "%s: download %s: got %zu of %zu bytes",
				   r->name, key, sink.len, len);
	}
	if (sink.len > len)
		sink.len = len;
	if (!sink.p)
		return empty_read(buf, got);
	*buf = sink.p;
	*got = sink.len;
	return 0;
}

static int sftp_head(struct remote *r, const char *key, uint64_t *size)
{
	return sftp_stat(r, key, key, NULL, NULL, size);
}

/* rm (ignoring failure), then stat: gone is success, present is not. */
static int sftp_del(struct remote *r, const char *key)
{
	struct sftp *s = r->priv;
	char *path = key_path(s, key);
	struct curl_slist *q = path ? quote_add(NULL, "*rm", path, NULL) : NULL;
	uint64_t size;
	int rc = -ENOMEM;

	if (q) {
		rc = sftp_stat(r, key, key, q, NULL, &size);
		if (rc == -ENOENT)
			rc = 0;
		else if (!rc)
			rc = remote_fail(r, -EACCES, "%s: delete %s: the server "
					 "refused to remove it", r->name, key);
	}
	curl_slist_free_all(q);
	free(path);
	return rc;
}

/*
 * One line of a long listing, "perms links owner group size mon day
 * time name": its type ('d', '-', 'l', ...), size and name.
 */
static int parse_long_line(char *line, char *type, uint64_t *size, char **name)
{
	char *f[8], *p = line, *end;

	for (int i = 0; i < 8; i++) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			return -1;
		f[i] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (*p)
			*p++ = 0;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p || strlen(f[0]) != 10)
		return -1;
	*size = strtoull(f[4], &end, 10);
	if (*end || end == f[4])
		return -1;
	*type = f[0][0];
	*name = p;
	return 0;
}

/* Fetch the long listing of folder dir ("" or ending in '/') into sink. */
static int fetch_listing(struct remote *r, const char *dir, struct sink *sink)
{
	struct sftp *s = r->priv;
	char *url;
	int rc = -ENOMEM;

	if (asprintf(&url, "%s/%s", s->url_base, dir) < 0)
		return -ENOMEM;
	for (int t = 0; t < SFTP_LIST_TRIES; t++) {
		struct timespec ts = { 1 << t, 0 };
		CURL *c = sftp_easy(r, url, SFTP_LIST_BUDGET);

		if (!c) {
			rc = -ENOMEM;
			break;
		}
		sink->len = 0;
		rc = sftp_perform(r, sink, "list", *dir ? dir : "/");
		if (rc != -EAGAIN)
			break;
		if (t + 1 < SFTP_LIST_TRIES)
			nanosleep(&ts, NULL);
	}
	free(url);
	return rc;
}

/* The size of rel as its folder's listing gives it. */
static int size_by_listing(struct remote *r, const char *rel, const char *key,
			   uint64_t *size)
{
	struct sink sink = { .max = SFTP_GET_MAX };
	const char *slash = strrchr(rel, '/');
	const char *want = slash ? slash + 1 : rel;
	char *dir = strndup(rel, slash ? (size_t)(slash - rel + 1) : 0), *line, *next;
	int rc;

	if (!dir)
		return -ENOMEM;
	rc = fetch_listing(r, dir, &sink);
	free(dir);
	if (!rc)
		rc = remote_fail(r, -ENOENT, "%s: stat %s: no such file", r->name, key);
	else
		goto out;
	for (line = (char *)sink.p; line && *line; line = next) {
		char type, *name;
		uint64_t sz;

		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		line[strcspn(line, "\r")] = 0;
		if (!parse_long_line(line, &type, &sz, &name) && type == '-' &&
		    !strcmp(name, want)) {
			*size = sz;
			rc = 0;
			break;
		}
	}
out:
	free(sink.p);
	return rc;
}

/* List one folder (with retries), reporting files and pushing folders. */
static int list_dir(struct remote *r, const char *dir, const char *prefix,
		    struct listing_dirs *todo, remote_list_cb cb, void *arg)
{
	struct sink sink = { .max = SFTP_GET_MAX };
	char *line, *next;
	int rc;

	rc = fetch_listing(r, dir, &sink);
	if (rc == -ENOENT)
		rc = 0;		/* no such folder: nothing below it */
	if (rc || !sink.p)
		goto out;
	for (line = (char *)sink.p; line && *line && !rc; line = next) {
		char type, *name, shown[81];
		uint64_t size;
		size_t n;

		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		n = strlen(line);
		if (n && line[n - 1] == '\r')
			line[--n] = 0;
		if (!n)
			continue;
		snprintf(shown, sizeof(shown), "%s", line);
		if (parse_long_line(line, &type, &size, &name)) {
			rc = remote_fail(r, -EIO, "%s: list %s: cannot read the "
					 "listing line '%s'", r->name, dir, shown);
			break;
		}
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		if (type == 'd') {
			char *sub;

			if (asprintf(&sub, "%s%s/", dir, name) < 0) {
				rc = -ENOMEM;
				break;
			}
			if (listing_dir_may_match(sub, prefix))
				rc = listing_dirs_push(todo, sub);
			else
				free(sub);
		} else if (type == '-' && !listing_is_temp_name(name)) {
			char *k;

			if (asprintf(&k, "%s%s", dir, name) < 0) {
				rc = -ENOMEM;
				break;
			}
			if (!strncmp(k, prefix, strlen(prefix)))
				rc = cb(arg, k, size);
			free(k);
		}
		/* symbolic links and others: never written by tresor */
	}
out:
	free(sink.p);
	return rc;
}

/* With long listings, one folder at a time. */
static int sftp_list(struct remote *r, const char *prefix, remote_list_cb cb,
		     void *arg)
{
	return listing_walk(r, prefix, list_dir, cb, arg);
}

static void sftp_close(struct remote *r)
{
	struct sftp *s = r->priv;

	if (!s)
		return;
	if (s->c)
		curl_easy_cleanup(s->c);
	free(s->user);
	free(s->host);
	free(s->dir);
	free(s->url_base);
	free(s->key);
	free(s->pubkey);
	free(s->known_hosts);
	free(s);
	r->priv = NULL;
}

static const struct remote_backend sftp_backend = {
	.scheme = "sftp",
	.put = sftp_put,
	.put_new = sftp_put_new,
	.get = sftp_get,
	.head = sftp_head,
	.del = sftp_del,
	.list = sftp_list,
	.close = sftp_close,
};

/*
 * Check the key and known_hosts files up front (nothing is sent without
 * both) and build the base URL; the connection is made on first use.
 */
int remote_sftp_open(struct remote *r, const char *user, const char *host,
		     int port, const char *path)
{
	struct sftp *s = calloc(1, sizeof(*s));
	char *enc = NULL, *pub = NULL;
	struct stat st;
	size_t n;
	int rc;

	if (!s)
		return -ENOMEM;
	r->be = &sftp_backend;
	r->priv = s;
	s->port = port > 0 ? port : 22;
	s->user = strdup(user);
	s->host = strdup(host);
	s->dir = url_decode(path && *path ? path : "/");
	s->key = r->opt.ssh_key && *r->opt.ssh_key ? strdup(r->opt.ssh_key)
						   : home_path(".ssh/id_ed25519");
	s->known_hosts = r->opt.known_hosts && *r->opt.known_hosts
			 ? strdup(r->opt.known_hosts)
			 : home_path(".ssh/known_hosts");
	if (!s->user || !s->host || !s->dir || !s->key || !s->known_hosts)
		return -ENOMEM;
	n = strlen(s->dir);
	while (n && s->dir[n - 1] == '/')
		s->dir[--n] = 0;

	if (stat(s->key, &st) < 0)
		return remote_fail(r, -EACCES, "%s: SSH key %s: %s (give one "
				   "with the ssh key option)", r->name, s->key,
				   strerror(errno));
	rc = remote_check_secret_file(r, s->key, 0);
	if (rc)
		return rc;
	if (asprintf(&pub, "%s.pub", s->key) < 0)
		return -ENOMEM;
	if (access(pub, R_OK) == 0)
		s->pubkey = pub;
	else
		free(pub);
	if (access(s->known_hosts, R_OK) < 0)
		return remote_fail(r, -EACCES, "%s: known_hosts file %s: %s; "
				   "without it the server cannot be trusted: "
				   "create it with ssh-keyscan -p %d %s >> %s "
				   "(and check the key)", r->name, s->known_hosts,
				   strerror(errno), s->port, host, s->known_hosts);

	enc = url_encode_path(s->dir);
	if (!enc)
		return -ENOMEM;
	if (strchr(host, ':'))
		rc = asprintf(&s->url_base, "sftp://[%s]:%d%s%s", host, s->port,
			      enc[0] == '/' ? "" : "/", enc);
	else
		rc = asprintf(&s->url_base, "sftp://%s:%d%s%s", host, s->port,
			      enc[0] == '/' ? "" : "/", enc);
	free(enc);
	if (rc < 0) {
		s->url_base = NULL;
		return -ENOMEM;
	}
	return 0;
}
