/*
 * pget.c - several whole objects at once (pget.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "pget.h"

#define PGET_MAX_JOBS 32

struct pget {
	struct remote *r0;	/* the caller's connection, for one job */
	const char *url;
	const struct remote_options *opt;
	struct pget_item *items;
	size_t n;
	pthread_mutex_t lock;
	size_t next;		/* guarded by lock */
	int r0_taken;		/* guarded by lock */
};

static void *pget_worker(void *arg)
{
	struct pget *g = arg;
	struct remote *r = NULL;
	int own = 0, err = 0;
	pthread_mutex_lock(&g->lock);
	if (!g->r0_taken) {
		g->r0_taken = 1;
		r = g->r0;
	}
	pthread_mutex_unlock(&g->lock);
	if (!r) {
		err = remote_open(g->url, g->opt, &r);
		own = 1;
	}
	for (;;) {
		pthread_mutex_lock(&g->lock);
		size_t i = g->next < g->n ? g->next++ : g->n;
		pthread_mutex_unlock(&g->lock);
		if (i >= g->n)
			break;
		struct pget_item *it = &g->items[i];
		it->err = err ? err : remote_get(r, it->key, 0, 0, &it->buf, &it->len);
		if (it->err) {
			free(it->buf);
			it->buf = NULL;
		}
	}
	if (own)
		remote_close(r);
	return NULL;
}

int pget_run(struct remote *r, const char *url, const struct remote_options *opt,
	     struct pget_item *items, size_t n, int jobs)
{
	for (size_t i = 0; i < n; i++) {
		items[i].buf = NULL;
		items[i].len = 0;
		items[i].err = -ECANCELED;
	}
	if (jobs < 1)
		jobs = 1;
	if (jobs > PGET_MAX_JOBS)
		jobs = PGET_MAX_JOBS;
	if ((size_t)jobs > n)
		jobs = n ? (int)n : 1;
	struct pget g = { .r0 = r, .url = url, .opt = opt, .items = items, .n = n };
	pthread_mutex_init(&g.lock, NULL);
	pthread_t th[PGET_MAX_JOBS];
	int started = 0;
	for (int i = 1; i < jobs; i++) {
		if (pthread_create(&th[started], NULL, pget_worker, &g))
			break;
		started++;
	}
	pget_worker(&g);	/* this thread is a job too */
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&g.lock);
	return 0;
}

void pget_free(struct pget_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(items[i].buf);
		items[i].buf = NULL;
	}
}
