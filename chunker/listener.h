/*
 * listener.h - the control-socket primitive: a thread that accepts
 * connections on a listening socket and hands each to a callback, until
 * stopped.  Serves a mounted volume's control socket (fs/control.c), the
 * scheduling daemon's (tools/daemon_ctl.c) and its metrics endpoint
 * (tools/metrics.c).
 */
#ifndef TRESOR_LISTENER_H
#define TRESOR_LISTENER_H

#include <pthread.h>

struct listener {
	int fd;			/* listening socket, -1 when not running */
	int wake[2];		/* a byte here stops the thread */
	pthread_t thread;
	/* Called in the thread for each connection; owns conn (closes it). */
	void (*serve)(void *arg, int conn);
	void *arg;
};

/* Create a stream socket bound to sa (SO_REUSEADDR for TCP), listen and
 * serve it.  0 or -errno (-EADDRINUSE: someone else has the address). */
struct sockaddr;
int listener_open(struct listener *l, const struct sockaddr *sa, unsigned int len,
		  void (*serve)(void *, int), void *arg);
/* Stop the thread and close the socket; a no-op when not running. */
void listener_stop(struct listener *l);

#endif
