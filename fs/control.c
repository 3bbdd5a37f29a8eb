/*
 * control.c - the control socket (see control.h).
 *
 * Requests (one line each):
 *   ping                     -> ok
 *   snapshot BASE TIME_NS    -> ok NAME   (BASE: name wanted, TIME_NS: its time)
 *   opstats                  -> ok OPSTATS  (opstats.h's line: FUSE op latencies)
 *   forget-snapshot NAME     -> ok          (NAME was deleted behind the
 *                               daemon, by prune: the kernel forgets it)
 *   reads                    -> ok READS MAPS (read requests served, extent
 *                               maps built for them: the benchmark's figure)
 * Errors reply "error ERRNO MESSAGE".
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "control.h"
#include "../chunker/listener.h"
#include "../chunker/util.h"
#include "vfs.h"

struct control {
	struct vfs *v;
	struct listener l;
};

void control_addr(const char *store_dir, int64_t vol, void *sa, unsigned int *len)
{
	struct sockaddr_un *un = sa;
	uint8_t md[32];
	unsigned int mdlen = 0;
	char hex[65];
	EVP_Digest(store_dir, strlen(store_dir), md, &mdlen, EVP_sha256(), NULL);
	hex_encode(md, 16, hex);
	memset(un, 0, sizeof(*un));
	un->sun_family = AF_UNIX;
	int n = snprintf(un->sun_path + 1, sizeof(un->sun_path) - 1,
			 "tresor-%s-%lld", hex, (long long)vol);
	*len = offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

/* Serve one connection: read a line, act, answer. */
static void serve(struct control *c, int fd)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	char line[512], reply[512];
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		dprintf(fd, "error %d only root may control this daemon\n", EPERM);
		return;
	}
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t got = 0;
	while (got < sizeof(line) - 1 && !memchr(line, '\n', got)) {
		if (poll(&p, 1, 5000) <= 0)
			return;
		ssize_t r = read(fd, line + got, sizeof(line) - 1 - got);
		if (r <= 0)
			break;
		got += r;
	}
	line[got] = 0;
	line[strcspn(line, "\r\n")] = 0;
	char base[200];
	long long t;
	if (!strcmp(line, "ping")) {
		snprintf(reply, sizeof(reply), "ok");
	} else if (!strncmp(line, "forget-snapshot ", 16)) {
		/* Read-only mounts cache .snapshots too.  Called holding no
		 * lock: the kernel may need a FUSE request answered first. */
		vfs_inval_snapshot(c->v, line + 16);
		snprintf(reply, sizeof(reply), "ok");
	} else if (!strcmp(line, "reads")) {
		snprintf(reply, sizeof(reply), "ok %llu %llu",
			 (unsigned long long)__atomic_load_n(&c->v->fuse_reads, __ATOMIC_RELAXED),
			 (unsigned long long)__atomic_load_n(&c->v->xmap_loads, __ATOMIC_RELAXED));
	} else if (c->v->readonly && strcmp(line, "opstats")) {
		/* A read-only mount writes nothing: no snapshot, no freeze. */
		snprintf(reply, sizeof(reply), "error %d the volume is mounted read-only", EROFS);
	} else if (!strcmp(line, "freeze")) {
		/* Hold every write until the pusher has its read view: finish
		 * the open pack so the committed state names finished packs
		 * only, then wait for "thaw" (or the pusher's end), 60 s at most. */
		struct vfs *v = c->v;
		pthread_mutex_lock(&v->lock);
		int err = store_finish_current_pack(v->st);
		if (!err)
			err = vfs_commit(v);	/* with deferred attributes */
		if (err) {
			pthread_mutex_unlock(&v->lock);
			dprintf(fd, "error %d %s\n", -err, strerror(-err));
			return;
		}
		dprintf(fd, "ok\n");
		char b[16];
		struct pollfd w = { .fd = fd, .events = POLLIN };
		if (poll(&w, 1, 60000) > 0 && read(fd, b, sizeof(b)) < 0)
			tlog(LOG_WARN, "volume %s: control: %s", v->vol.name,
			     strerror(errno));
		pthread_mutex_unlock(&v->lock);
		return;
	} else if (!strcmp(line, "opstats")) {
		/* Longer than the usual reply: its own buffer. */
		char big[4096];
		if (opstats_format(&c->v->opstats, big, sizeof(big)) < 0)
			dprintf(fd, "error %d opstats too long\n", ENOSPC);
		else
			dprintf(fd, "ok %s\n", big);
		return;
	} else if (sscanf(line, "snapshot %199s %lld", base, &t) == 2) {
		struct snapshot_info si;
		int err = vfs_snapshot(c->v, base, t, &si);
		if (!err)
			vfs_inval_snapshot(c->v, si.name);	/* no lock held */
		if (err)
			snprintf(reply, sizeof(reply), "error %d %s", -err,
				 strerror(-err));
		else
			snprintf(reply, sizeof(reply), "ok %s", si.name);
	} else {
		snprintf(reply, sizeof(reply), "error %d unknown request", EINVAL);
	}
	dprintf(fd, "%s\n", reply);
}

/* The listener's callback: one connection, closed after the answer. */
static void serve_conn(void *arg, int fd)
{
	serve(arg, fd);
	close(fd);
}

int control_start(struct vfs *v, struct control **out)
{
	struct control *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->v = v;
	struct sockaddr_un un;
	unsigned int len;
	control_addr(v->st->dir, v->vol.id, &un, &len);
	int err = listener_open(&c->l, (struct sockaddr *)&un, len, serve_conn, c);
	if (err) {
		free(c);
		return err;
	}
	*out = c;
	return 0;
}

void control_stop(struct control *c)
{
	if (!c)
		return;
	listener_stop(&c->l);
	free(c);
}

int control_connect(const char *store_dir, int64_t vol, int *out)
{
	struct sockaddr_un un;
	unsigned int len;
	control_addr(store_dir, vol, &un, &len);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&un, len)) {
		int err = -errno;
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

int control_request(const char *store_dir, int64_t vol, const char *line,
		    char *reply, size_t size)
{
	int fd;
	int err = control_connect(store_dir, vol, &fd);
	if (err)
		return err;
	if (dprintf(fd, "%s\n", line) < 0)
		err = -EIO;
	size_t got = 0;
	while (!err && got < size - 1) {
		ssize_t r = read(fd, reply + got, size - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
		if (memchr(reply, '\n', got))
			break;
	}
	close(fd);
	if (err)
		return err;
	reply[got] = 0;
	reply[strcspn(reply, "\n")] = 0;
	return got ? 0 : -EIO;
}

int control_freeze(const char *store_dir, int64_t vol, int *out)
{
	int fd;
	int err = control_connect(store_dir, vol, &fd);
	if (err)
		return err;
	char reply[128];
	size_t got = 0;
	err = dprintf(fd, "freeze\n") < 0 ? -EIO : 0;
	while (!err && got < sizeof(reply) - 1) {
		ssize_t r = read(fd, reply + got, sizeof(reply) - 1 - got);
		if (r <= 0)
			break;
		got += r;
		if (memchr(reply, '\n', got))
			break;
	}
	reply[got] = 0;
	if (!err && strncmp(reply, "ok", 2))
		err = -EIO;
	if (err) {
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

void control_thaw(int fd)
{
	if (fd < 0)
		return;
	if (write(fd, "thaw\n", 5) < 0)
		tlog(LOG_DEBUG, "control: thaw: %s", strerror(errno));
	close(fd);
}
