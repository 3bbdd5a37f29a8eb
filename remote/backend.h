/*
 * backend.h - what remote.c needs from each backend, and what backends
 * share (the struct remote and its error buffer).  Internal to remote/.
 */
#ifndef TRESOR_REMOTE_BACKEND_H
#define TRESOR_REMOTE_BACKEND_H

#include "remote.h"

struct remote_backend {
	const char *scheme;
	int (*put)(struct remote *r, const char *key, const void *buf, size_t len);
	/* As put, but -EEXIST (never a replace) if key exists. */
	int (*put_new)(struct remote *r, const char *key, const void *buf, size_t len);
	int (*get)(struct remote *r, const char *key, uint64_t off, size_t len,
		   uint8_t **buf, size_t *got);
	int (*head)(struct remote *r, const char *key, uint64_t *size);
	int (*del)(struct remote *r, const char *key);
	int (*list)(struct remote *r, const char *prefix, remote_list_cb cb,
		    void *arg);
	void (*close)(struct remote *r);
	/* Object Lock (NULL: not supported): retention of an existing key. */
	int (*retain)(struct remote *r, const char *key, int mode, int64_t until);
};

struct remote {
	const struct remote_backend *be;
	struct remote_options opt;	/* strings point into url copies/caller */
	char name[512];			/* printable, no secrets */
	char err[512];			/* last error, one line */
	void *priv;			/* the backend's state */
	int lock_mode;			/* REMOTE_LOCK_*: retention of puts */
	int64_t lock_until;		/* Unix seconds */
};

/* Record the last error (printf-style) and return err. */
int remote_fail(struct remote *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Backend constructors: fill r->be, r->priv, r->name; -errno. */
int remote_local_open(struct remote *r, const char *path);
int remote_s3_open(struct remote *r, const char *bucket, const char *prefix);
int remote_sftp_open(struct remote *r, const char *user, const char *host,
		     int port, const char *path);
int remote_webdav_open(struct remote *r, const char *base_url);

/* 0 if path is a file only its owner can read (or does not exist when
 * optional), else -EACCES with an error naming it. */
int remote_check_secret_file(struct remote *r, const char *path, int optional);

#endif
