/*
 * control.c - the control socket (see control.h).
 *
 * Requests (one line each):
 *   ping                     -> ok
 *   take-snapshot TIME_NS PINNED [NAME] -> ok NAME  (NAME exactly, error 17
 *                               if taken; none: ns_snapshot_name's)
 *   opstats                  -> ok OPSTATS  (opstats.h's line: FUSE op latencies)
 *   freeze                   -> ok, then writes held until a line or hangup
 *   hold                     -> ok EPOCH, writes held; "release" -> ok
 *                               (a snapshot set's member, vfs_snapshot_hold)
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

/*
 * A snapshot set's member: flush and hold every write (vfs_snapshot_hold)
 * until the holder says "release" or hangs up, CONTROL_HOLD_MS at most:
 * the holder gives up on the set well before (control.h).
 */
static void serve_hold(struct vfs *v, int fd)
{
	struct vfs_hold *h;
	int64_t epoch;
	int err = vfs_snapshot_hold(v, &epoch, &h);
	if (err) {
		dprintf(fd, "error %d %s\n", -err, strerror(-err));
		return;
	}
	dprintf(fd, "ok %lld\n", (long long)epoch);
	char b[16];
	struct pollfd w = { .fd = fd, .events = POLLIN };
	int r = poll(&w, 1, CONTROL_HOLD_MS);
	if (r == 0)
		tlog(LOG_WARN, "volume %s: a snapshot set held writes for %d s and did not release them; releasing",
		     v->vol.name, CONTROL_HOLD_MS / 1000);
	else if (r > 0 && read(fd, b, sizeof(b)) < 0)
		tlog(LOG_WARN, "volume %s: control: %s", v->vol.name, strerror(errno));
	err = vfs_snapshot_release(v, h);
	if (err) {
		tlog(LOG_ERR, "volume %s: cannot read its epoch after a snapshot set: %s",
		     v->vol.name, strerror(-err));
		dprintf(fd, "error %d %s\n", -err, strerror(-err));
	} else {
		dprintf(fd, "ok\n");
	}
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
	char name[200];
	int pin = 0, k;
	long long t;
	if (!strcmp(line, "ping")) {
		snprintf(reply, sizeof(reply), "ok");
	} else if (!strcmp(line, "mountpoint")) {
		/* Longer than the usual reply: written directly. */
		if (c->v->mountpoint && !strchr(c->v->mountpoint, '\n'))
			dprintf(fd, "ok %s\n", c->v->mountpoint);
		else
			dprintf(fd, "error %d not known\n", ENOENT);
		return;
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
	} else if (!strcmp(line, "hold")) {
		serve_hold(c->v, fd);
		return;
	} else if (!strcmp(line, "opstats")) {
		/* Longer than the usual reply: its own buffer. */
		char big[4096];
		if (opstats_format(&c->v->opstats, big, sizeof(big)) < 0)
			dprintf(fd, "error %d opstats too long\n", ENOSPC);
		else
			dprintf(fd, "ok %s\n", big);
		return;
	} else if ((k = sscanf(line, "take-snapshot %lld %d %199s", &t, &pin, name)) >= 2) {
		/* take-snapshot TIME PINNED [NAME]: NAME exactly (error 17 if
		 * taken); none: ns_snapshot_name's, by this process's local
		 * time (the CLI names it by its own).  An older daemon answers
		 * "unknown request". */
		struct snapshot_info si;
		int err = vfs_snapshot(c->v, k == 3 ? name : NULL, t, pin, &si);
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

/* Read one reply line from fd into reply, waiting ms at most. */
static int read_reply(int fd, char *reply, size_t size, int ms)
{
	size_t got = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (got < size - 1) {
		int r = poll(&p, 1, ms);
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0 && errno == EINTR)
			continue;
		ssize_t n = r < 0 ? -1 : read(fd, reply + got, size - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
		if (memchr(reply, '\n', got))
			break;
	}
	reply[got] = 0;
	reply[strcspn(reply, "\n")] = 0;
	return got ? 0 : -EIO;
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

/* Connect to (store_dir, vol), send line, read the reply line (ms at
 * most); *out keeps the connection open. */
static int ask(const char *store_dir, int64_t vol, const char *line, int ms,
	       char *reply, size_t size, int *out)
{
	int fd;
	int err = control_connect(store_dir, vol, &fd);
	if (err)
		return err;
	err = dprintf(fd, "%s\n", line) < 0 ? -EIO : 0;
	if (!err)
		err = read_reply(fd, reply, size, ms);
	if (err)
		close(fd);
	else
		*out = fd;
	return err;
}

int control_request(const char *store_dir, int64_t vol, const char *line,
		    char *reply, size_t size)
{
	int fd;
	int err = ask(store_dir, vol, line, -1, reply, size, &fd);
	if (!err)
		close(fd);
	return err;
}

int control_freeze(const char *store_dir, int64_t vol, int *out)
{
	char reply[128];
	int fd;
	int err = ask(store_dir, vol, "freeze", -1, reply, sizeof(reply), &fd);
	if (!err && strncmp(reply, "ok", 2)) {
		close(fd);
		err = -EIO;
	}
	if (!err)
		*out = fd;
	return err;
}

void control_thaw(int fd)
{
	if (fd < 0)
		return;
	if (write(fd, "thaw\n", 5) < 0)
		tlog(LOG_DEBUG, "control: thaw: %s", strerror(errno));
	close(fd);
}

int control_ping(const char *store_dir, int64_t vol, int timeout_ms)
{
	char reply[64];
	int fd;
	int err = ask(store_dir, vol, "ping", timeout_ms, reply, sizeof(reply), &fd);
	if (err)
		return err;
	close(fd);
	return strcmp(reply, "ok") ? -EIO : 0;
}

int control_hold(const char *store_dir, int64_t vol, int timeout_ms,
		 int *out, int64_t *epoch)
{
	char reply[256];
	int fd;
	int err = ask(store_dir, vol, "hold", timeout_ms, reply, sizeof(reply), &fd);
	if (err)
		return err;
	long long e = 0;
	int code = 0;
	if (sscanf(reply, "ok %lld", &e) != 1) {
		close(fd);
		return sscanf(reply, "error %d", &code) == 1 && code > 0 ? -code : -EIO;
	}
	*epoch = e;
	*out = fd;
	return 0;
}

int control_release(int fd, int timeout_ms)
{
	char reply[256];
	int err = write(fd, "release\n", 8) == 8 ? 0 : -EIO;
	if (!err)
		err = read_reply(fd, reply, sizeof(reply), timeout_ms);
	if (!err && strcmp(reply, "ok"))
		err = -EIO;
	close(fd);
	return err;
}
