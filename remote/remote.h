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
	const char *endpoint;		/* https://host[:port]; else $AWS_ENDPOINT_URL_S3,
					   $AWS_ENDPOINT_URL; else AWS */
	const char *region;		/* else $AWS_REGION, $AWS_DEFAULT_REGION;
					   else "us-east-1"; R2: "auto" */
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
 *   sftp://user@host[:port]/path        port 22 by default (Storage Box: :23)
 *   https://host[:port]/path            WebDAV
 * Credential files readable by group or others are refused (-EACCES with
 * a message naming the file).  Secrets are never taken from the URL.
 */
int remote_open(const char *url, const struct remote_options *opt,
		struct remote **out);
void remote_close(struct remote *r);

/*
 * The files opt names, checked without connecting: the secret ones
 * (credentials_file, ssh_key, netrc_file) as remote_open checks them
 * (present, regular, owner-only: secret_file_check), the trust ones
 * (known_hosts, ca_file) present and readable.  0, or -errno with one
 * line in why.
 */
int remote_check_files(const struct remote_options *opt, char *why, size_t whysize);

/*
 * Is url usable with opt, now?  Opens it (which checks the URL and the
 * credential and trust files: owner-only, present) and asks the server
 * one cheap question (a HEAD of the repository marker "tresor-repo"; a
 * new, empty repository is fine): DNS, connection, TLS, host key and
 * credentials are all tried.  One attempt, timeout_s seconds at most (0:
 * 20).  0, or -errno with one line in why naming the remote.
 */
int remote_probe(const char *url, const struct remote_options *opt, int timeout_s,
		 char *why, size_t whysize);

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

/* url with its port written out when it is sftp:// without one: port
 * in out ("sftp://u@h/p" -> "sftp://u@h:22/p" for 22); any other URL
 * copied as is.  What the store keeps (remote_cfg_add: 22, the default),
 * and how a row kept by a tresor from before issue 18 reads (23, the
 * default then).  -ENAMETOOLONG if out is too small. */
int remote_url_port_explicit(const char *url, int port, char *out, size_t size);

/* 1 if URLs a and b name the same repository (spelled differently: a
 * trailing slash, a default port, file://, the host's case), else 0. */
int remote_url_same(const char *a, const char *b);

/* One line saying what went wrong last, naming the remote (no secrets). */
const char *remote_error(const struct remote *r);

/* A printable name of the remote without credentials, e.g. "s3://b/p". */
const char *remote_name(const struct remote *r);

#endif
