/*
 * pget.h - several requests to one remote at once, each thread on its own
 * connection: a recovery's requests wait for the network in parallel
 * instead of one after the other (round trips, not bandwidth, are what a
 * remote far away costs).
 */
#ifndef TRESOR_PGET_H
#define TRESOR_PGET_H

#include <stddef.h>
#include <stdint.h>
#include "remote.h"

#define PGET_DEFAULT_JOBS 8

struct pget_item {
	char key[96];		/* in: the object */
	uint8_t *buf;		/* out: its bytes (malloc'd), NULL on error */
	size_t len;
	int err;		/* out: 0 or -errno (-ENOENT: missing) */
};

/*
 * Fetch items[0..n) whole from the remote at url (options opt, may be
 * NULL), jobs at a time (r itself serves one job; the calling thread
 * works too, so fewer threads than asked is only slower).  Each item says
 * how it went.  Returns 0.
 */
int pget_run(struct remote *r, const char *url, const struct remote_options *opt,
	     struct pget_item *items, size_t n, int jobs);

/*
 * Call fn(arg, remote, i) for i in [0, n), jobs at a time, each job with
 * its own connection to url (options opt, may be NULL; url NULL: one job
 * on r); the calling thread is a job and uses r.  Stops handing out items
 * at fn's first error and returns it (fn runs concurrently: it guards
 * what it shares).  A job whose connection cannot open does nothing.
 */
int pget_each(struct remote *r, const char *url, const struct remote_options *opt,
	      size_t n, int jobs, int (*fn)(void *arg, struct remote *r, size_t i),
	      void *arg);

/* Free every item's buffer. */
void pget_free(struct pget_item *items, size_t n);

#endif
