/*
 * fuse_defer.c - answering reads, and those that wait for a remote off the
 * request thread.
 *
 * A read runs on the FUSE request thread with fetches deferred
 * (store_defer_fetches): if a chunk's pack is not here, the read is handed
 * to one of a few threads of its own, which reads it again, waiting for
 * the fetch, and replies.  So a slow remote stalls only the reads that
 * need it; every other request of the mount goes on (issue 15).
 *
 * Design notes:
 *  1. The threads start on the first deferred read (most mounts never
 *     fetch) and number at most four: more would only queue at the remote.
 *  2. A deferred read keeps its snapshot handle (sf): the kernel sends no
 *     RELEASE for a file with a read in flight.
 *  3. Before the session goes, defer_stop() answers what is queued with
 *     EINTR and waits for the reads in progress: no reply may reach a
 *     destroyed session.
 */
#include <errno.h>
#include <stdlib.h>

#include "fuse_int.h"
#include "../chunker/util.h"

struct deferred_read {
	struct deferred_read *next;
	fuse_req_t req;
	fuse_ino_t ino;
	struct snapfile *sf;
	size_t size;
	off_t off;
};

void read_answer(fuse_req_t req, struct vfs *v, fuse_ino_t ino, struct snapfile *sf,
		 size_t size, off_t off, int may_defer)
{
	char *buf = malloc(size ? size : 1);
	size_t got = 0;
	store_defer_fetches(may_defer);
	int err = !buf ? -ENOMEM
		  : sf ? snapfile_read(v, ino, sf, buf, size, off, &got)
		  : vino_read(v, ino, buf, size, off, &got);
	store_defer_fetches(0);
	if (err == -EWOULDBLOCK && may_defer) {
		free(buf);
		if (!defer_read(v, req, ino, sf, size, off))
			return;	/* a pack to fetch: answered by another thread */
		read_answer(req, v, ino, sf, size, off, 0);
		return;
	}
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_buf(req, buf, got);
	free(buf);
}

static void *defer_thread(void *arg)
{
	struct vfs *v = arg;
	pthread_mutex_lock(&v->defer_lock);
	for (;;) {
		while (!v->defer_head && !v->defer_stop) {
			v->defer_idle++;
			pthread_cond_wait(&v->defer_cond, &v->defer_lock);
			v->defer_idle--;
		}
		struct deferred_read *d = v->defer_head;
		if (!d)
			break;	/* stopping, and nothing queued */
		v->defer_head = d->next;
		if (!v->defer_head)
			v->defer_tail = NULL;
		int stopping = v->defer_stop;
		pthread_mutex_unlock(&v->defer_lock);
		if (stopping)
			fuse_reply_err(d->req, EINTR);
		else
			read_answer(d->req, v, d->ino, d->sf, d->size, d->off, 0);
		free(d);
		pthread_mutex_lock(&v->defer_lock);
	}
	pthread_mutex_unlock(&v->defer_lock);
	return NULL;
}

int defer_read(struct vfs *v, fuse_req_t req, fuse_ino_t ino, struct snapfile *sf,
	       size_t size, off_t off)
{
	struct deferred_read *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	*d = (struct deferred_read){ .req = req, .ino = ino, .sf = sf, .size = size,
				     .off = off };
	pthread_mutex_lock(&v->defer_lock);
	if (v->defer_stop) {
		pthread_mutex_unlock(&v->defer_lock);
		free(d);
		return -EINTR;
	}
	if (v->defer_tail)
		v->defer_tail->next = d;
	else
		v->defer_head = d;
	v->defer_tail = d;
	int n = v->ndefer_threads;
	if (!v->defer_idle && n < (int)(sizeof(v->defer_threads) / sizeof(v->defer_threads[0])) &&
	    !pthread_create(&v->defer_threads[n], NULL, defer_thread, v))
		v->ndefer_threads++;
	int ok = v->ndefer_threads > 0;
	if (ok)
		pthread_cond_signal(&v->defer_cond);
	else	/* no thread: take it back, read here */
		v->defer_head = v->defer_tail = NULL;
	pthread_mutex_unlock(&v->defer_lock);
	if (!ok) {
		free(d);
		return -EAGAIN;
	}
	return 0;
}

void defer_stop(struct vfs *v)
{
	pthread_mutex_lock(&v->defer_lock);
	v->defer_stop = 1;
	pthread_cond_broadcast(&v->defer_cond);
	int n = v->ndefer_threads;
	pthread_mutex_unlock(&v->defer_lock);
	for (int i = 0; i < n; i++)
		pthread_join(v->defer_threads[i], NULL);
	v->ndefer_threads = 0;
}
