/*
 * listener.c - accept loop in a thread (see listener.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"
#include "listener.h"

static void *listener_main(void *arg)
{
	struct listener *l = arg;
	struct pollfd p[2] = {
		{ .fd = l->fd, .events = POLLIN },
		{ .fd = l->wake[0], .events = POLLIN },
	};
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		int conn = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		if (conn >= 0)
			l->serve(l->arg, conn);
	}
	return NULL;
}

int listener_open(struct listener *l, const struct sockaddr *sa, unsigned int len,
		  void (*serve)(void *, int), void *arg)
{
	l->fd = -1;
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (sa->sa_family == AF_INET)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, sa, len) || listen(fd, 16)) {
		int err = -errno;
		close(fd);
		return err;
	}
	l->fd = fd;
	l->serve = serve;
	l->arg = arg;
	int err = pipe2(l->wake, O_CLOEXEC) ? -errno : 0;
	if (!err) {
		err = -pthread_create(&l->thread, NULL, listener_main, l);
		if (err) {
			close(l->wake[0]);
			close(l->wake[1]);
		}
	}
	if (err) {
		close(fd);
		l->fd = -1;
	}
	return err;
}

void listener_stop(struct listener *l)
{
	if (l->fd < 0)
		return;
	if (write(l->wake[1], "x", 1) < 0)
		tlog(LOG_WARN, "daemon: cannot wake a listener thread");
	pthread_join(l->thread, NULL);
	close(l->fd);
	close(l->wake[0]);
	close(l->wake[1]);
	l->fd = -1;
}
