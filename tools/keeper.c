/*
 * keeper.c - passing a mount's FUSE connection between processes
 * (keeper.h says why and the wire).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../chunker/util.h"
#include "keeper.h"

int keeper_send(int sock, int fd, const void *init, size_t len)
{
	if (len > KEEPER_INIT_MAX)
		return -EMSGSIZE;
	struct iovec iov = { .iov_base = (void *)init, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

int keeper_recv(int sock, struct keeper_conn *conn)
{
	struct iovec iov = { .iov_base = conn->init, .iov_len = sizeof(conn->init) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	ssize_t n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	if (n == 0)
		return -EPIPE;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(sizeof(int)))
		return -EPROTO;
	memcpy(&conn->fd, CMSG_DATA(c), sizeof(int));
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		close(conn->fd);
		return -EPROTO;
	}
	conn->init_len = (size_t)n;
	return 1;
}

int keeper_unhex(const char *hex, unsigned char *out, size_t size)
{
	size_t n = strlen(hex);
	if (n % 2 || n / 2 > size || !n || hex_decode(hex, out, n / 2))
		return -EINVAL;
	return (int)(n / 2);
}

int keeper_adopt_from_env(struct keeper_conn *conn)
{
	const char *fd = getenv("TRESOR_FUSE_FD"), *init = getenv("TRESOR_FUSE_INIT");
	const char *gen = getenv("TRESOR_FUSE_GEN");
	if (!fd)
		return 0;
	char *end;
	long n = strtol(fd, &end, 10);
	int len = init ? keeper_unhex(init, conn->init, sizeof(conn->init)) : -EINVAL;
	int ok = !*end && n >= 0 && len > 0 && fcntl((int)n, F_GETFD) >= 0;
	conn->fd = (int)n;
	conn->init_len = len > 0 ? (size_t)len : 0;
	conn->gen = gen ? (unsigned)strtoul(gen, NULL, 10) : 1;
	conn->crashed = getenv("TRESOR_FUSE_CRASHED") != NULL;
	unsetenv("TRESOR_FUSE_CRASHED");
	unsetenv("TRESOR_FUSE_FD");
	unsetenv("TRESOR_FUSE_INIT");
	unsetenv("TRESOR_FUSE_GEN");
	if (!ok)
		return -EINVAL;
	fcntl(conn->fd, F_SETFD, FD_CLOEXEC);
	return 1;
}

int keeper_unmount(const char *mountpoint)
{
	if (umount2(mountpoint, MNT_DETACH) == 0)
		return 0;
	int err = -errno;
	if (err != -EPERM)
		return err;
	pid_t pid = fork();
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-z", mountpoint, (char *)NULL);
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return err;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : err;
}

/* TRESOR_HANDOVER: entries "VOLUME\037MOUNTPOINT\037FD\037GEN\037HEX\037NAME",
 * separated by \036 (characters no config name or path holds); NAME may
 * be empty, and an image before the fd store wrote no NAME field. */
int keeper_handover_add(char **env, const char *volume, const char *mountpoint,
			const struct keeper_conn *c)
{
	char hex[2 * KEEPER_INIT_MAX + 1];
	hex_encode(c->init, c->init_len, hex);
	size_t have = *env ? strlen(*env) : 0;
	size_t need = have + strlen(volume) + strlen(mountpoint) + strlen(hex) +
		      strlen(c->name) + 64;
	char *e = realloc(*env, need);
	if (!e)
		return -ENOMEM;
	snprintf(e + have, need - have, "%s%s\037%s\037%d\037%u\037%s\037%s",
		 have ? "\036" : "", volume, mountpoint, c->fd, c->gen, hex, c->name);
	*env = e;
	fcntl(c->fd, F_SETFD, 0);	/* across the exec */
	return 0;
}

void keeper_handover_each(void (*fn)(const char *volume, const char *mountpoint,
				     struct keeper_conn *c, void *arg), void *arg)
{
	const char *env = getenv("TRESOR_HANDOVER");
	char *copy = env ? strdup(env) : NULL;
	unsetenv("TRESOR_HANDOVER");
	char *save = NULL;
	for (char *e = copy ? strtok_r(copy, "\036", &save) : NULL; e;
	     e = strtok_r(NULL, "\036", &save)) {
		/* strsep, not strtok: an empty NAME is a field */
		char *f[6], *s2 = e;
		int n = 0;
		for (char *t; n < 6 && (t = strsep(&s2, "\037"));)
			f[n++] = t;
		struct keeper_conn c = { .fd = -1 };
		if (n < 5)
			continue;
		if (n == 6)
			snprintf(c.name, sizeof(c.name), "%s", f[5]);
		c.fd = atoi(f[2]);
		c.gen = (unsigned)strtoul(f[3], NULL, 10);
		int len = keeper_unhex(f[4], c.init, sizeof(c.init));
		if (len <= 0 || fcntl(c.fd, F_GETFD) < 0)
			continue;
		c.init_len = (size_t)len;
		fcntl(c.fd, F_SETFD, FD_CLOEXEC);
		fn(f[0], f[1], &c, arg);
	}
	free(copy);
}
