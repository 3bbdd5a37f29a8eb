/*
 * remote.h - one small interface over the places a store's sealed packs
 * and encrypted metadata are replicated to: a local directory (USB disk,
 * NFS), S3 and S3-compatible stores (AWS, R2, MinIO), SFTP (a Hetzner
 * Storage Box on port 23), WebDAV over HTTPS.
 *
 * Objects are named by relative keys made of [A-Za-z0-9._-] and '/', for
 * example "data/ab/ab12...ef" or "meta/0000000000000042".  Objects are written
 * once and never overwritten, so no backend needs an atomic replace; a
 * put is atomic (the object exists whole or not at all) and verified
 * (size, and a checksum where the protocol has one) before it returns 0.
 * Listing order is whatever the server gives: callers never rely on it.
 *
 * Errors are negative errno values: -ENOENT (no such object), -EACCES
 * (credentials refused), -EAGAIN (transient: 5xx, timeout, connection
 * reset; the caller may retry), -EIO (the server answered something
 * that makes no sense), -EINVAL (bad URL or option), -EPROTO (protocol
 * or TLS failure), -EBADMSG (the object failed verification).
 * remote_error() gives a one-line human explanation of the last error.
 *
 * Not thread-safe: one struct remote per thread.
 */
#ifndef TRESOR_REMOTE_H
#define TRESOR_REMOTE_H

#include <stddef.h>
#include <stdint.h>

struct remote;

struct remote_options {
	/* S3 */
	const char *endpoint;		/* https://host[:port]; default AWS */
	const char *region;		/* default "us-east-1"; R2: "auto" */
	int path_style;			/* 1: host/bucket/key; 0: bucket.host/key */
	const char *credentials_file;	/* AWS-style; default ~/.aws/credentials;
					   env AWS_ACCESS_KEY_ID/SECRET first */
	const char *profile;		/* default "default" or $AWS_PROFILE */
	/* SFTP */
	const char *ssh_key;		/* private key; default ~/.ssh/id_ed25519 */
	const char *known_hosts;	/* default ~/.ssh/known_hosts; required */
	/* WebDAV */
	const char *netrc_file;		/* default ~/.netrc */
	/* HTTPS (S3, WebDAV) */
	const char *ca_file;		/* extra CA bundle (tests' own CA) */
	/* all */
	uint64_t bandwidth_limit;	/* bytes/s for uploads, 0 = none */
	int timeout_s;			/* per request; default 120 */
	int no_retry;			/* 1: one attempt, no backoff (a quick probe) */
};

/*
 * Parse url and connect lazily.  URL forms:
 *   /abs/path or file:///abs/path      local directory
 *   s3://bucket[/prefix]                with options->endpoint/region
 *   sftp://user@host[:port]/path        port 23 by default
 *   https://host[:port]/path            WebDAV
 * Credential files readable by group or others are refused (-EACCES with
 * a message naming the file).  Secrets are never taken from the URL.
 */
int remote_open(const char *url, const struct remote_options *opt,
		struct remote **out);
void remote_close(struct remote *r);

/* Store buf under key: whole or not at all, verified before returning 0. */
int remote_put(struct remote *r, const char *key, const void *buf, size_t len);

/*
 * Store buf under key only if no object key exists: -EEXIST if one does
 * (then nothing is replaced).  Local directories link(2), SFTP renames
 * (which never replaces there), WebDAV moves with "Overwrite: F", S3 puts
 * with "If-None-Match: *".  A server that ignores that header (older S3
 * compatibles) lets a concurrent writer replace the object: a caller that
 * must be sure it won reads the object back.  A retry after a lost reply
 * may also see -EEXIST for its own object: the same read-back tells.
 */
int remote_put_new(struct remote *r, const char *key, const void *buf, size_t len);

/* Read len bytes at off of key (len 0: the whole object) into a malloc'd
 * *buf; *got receives the length read.  -ENOENT if missing. */
int remote_get(struct remote *r, const char *key, uint64_t off, size_t len,
	       uint8_t **buf, size_t *got);

/* Size of key, or -ENOENT. */
int remote_head(struct remote *r, const char *key, uint64_t *size);

/* Delete key; deleting a missing key is not an error. */
int remote_delete(struct remote *r, const char *key);

/* Call cb for every object whose key starts with prefix (a "folder" like
 * "data/" or "meta/"), in no particular order, until cb returns non-zero
 * (which is returned). */
typedef int (*remote_list_cb)(void *arg, const char *key, uint64_t size);
int remote_list(struct remote *r, const char *prefix, remote_list_cb cb,
		void *arg);

/*
 * S3 Object Lock.  remote_set_lock makes every later put carry a
 * retention (mode and retain-until date, Unix seconds) so the object
 * cannot be deleted or overwritten before then; mode REMOTE_LOCK_NONE
 * stops it.  remote_retain sets or extends the retention of an existing
 * object (S3 PutObjectRetention).  Backends without Object Lock return
 * -EOPNOTSUPP from both.
 */
enum { REMOTE_LOCK_NONE = 0, REMOTE_LOCK_GOVERNANCE = 1, REMOTE_LOCK_COMPLIANCE = 2 };
int remote_set_lock(struct remote *r, int mode, int64_t until);
int remote_retain(struct remote *r, const char *key, int mode, int64_t until);

/* 1 if URLs a and b name the same repository (spelled differently: a
 * trailing slash, a default port, file://, the host's case), else 0. */
int remote_url_same(const char *a, const char *b);

/* One line saying what went wrong last, naming the remote (no secrets). */
const char *remote_error(const struct remote *r);

/* A printable name of the remote without credentials, e.g. "s3://b/p". */
const char *remote_name(const struct remote *r);

#endif
