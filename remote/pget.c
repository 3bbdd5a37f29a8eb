/*
 * pget.c - several requests to one remote at once (pget.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "pget.h"

#define PGET_MAX_JOBS 32

struct pool {
	const char *url;
	const struct remote_options *opt;
	size_t n;
	int (*fn)(void *arg, struct remote *r, size_t i);
	void *arg;
	pthread_mutex_t lock;
	size_t next;		/* guarded by lock */
	int err;		/* guarded by lock: the first error; stops the rest */
};

/* Take items until none is left or one failed. */
static void pool_run(struct pool *p, struct remote *r)
{
	for (;;) {
		pthread_mutex_lock(&p->lock);
		size_t i = !p->err && p->next < p->n ? p->next++ : p->n;
		pthread_mutex_unlock(&p->lock);
		if (i >= p->n)
			return;
		int err = p->fn(p->arg, r, i);
		if (err) {
			pthread_mutex_lock(&p->lock);
			if (!p->err)
				p->err = err;
			pthread_mutex_unlock(&p->lock);
			return;
		}
	}
}

static void *pool_worker(void *arg)
{
	struct pool *p = arg;
	struct remote *r = NULL;
	/* without a connection, the other jobs carry on with fewer */
	if (!remote_open(p->url, p->opt, &r))
		pool_run(p, r);
	remote_close(r);
	return NULL;
}

int pget_each(struct remote *r, const char *url, const struct remote_options *opt,
	      size_t n, int jobs, int (*fn)(void *arg, struct remote *r, size_t i),
	      void *arg)
{
	if (jobs < 1 || !url)
		jobs = 1;
	if (jobs > PGET_MAX_JOBS)
		jobs = PGET_MAX_JOBS;
	if ((size_t)jobs > n)
		jobs = n ? (int)n : 1;
	struct pool p = { .url = url, .opt = opt, .n = n, .fn = fn, .arg = arg };
	pthread_mutex_init(&p.lock, NULL);
	pthread_t th[PGET_MAX_JOBS];
	int started = 0;
	for (int i = 1; i < jobs; i++) {
		if (pthread_create(&th[started], NULL, pool_worker, &p))
			break;
		started++;
	}
	pool_run(&p, r);	/* this thread is a job too, on the caller's connection */
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&p.lock);
	return p.err;
}

/* One whole object into its item; errors stay in the item. */
static int get_item(void *arg, struct remote *r, size_t i)
{
	struct pget_item *it = (struct pget_item *)arg + i;
	it->err = remote_get(r, it->key, 0, 0, &it->buf, &it->len);
	if (it->err) {
		free(it->buf);
		it->buf = NULL;
	}
	return 0;
}

int pget_run(struct remote *r, const char *url, const struct remote_options *opt,
	     struct pget_item *items, size_t n, int jobs)
{
	for (size_t i = 0; i < n; i++) {
		items[i].buf = NULL;
		items[i].len = 0;
		items[i].err = -ECANCELED;
	}
	return pget_each(r, url, opt, n, jobs, get_item, items);
}

void pget_free(struct pget_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(items[i].buf);
		items[i].buf = NULL;
	}
}
