/*
 * keeper.h - keeping a volume's FUSE connection alive across its server
 * process: the daemon holds a copy of each mount's /dev/fuse descriptor,
 * so a mount process that crashes, or a daemon that re-executes itself
 * (`tresor daemon restart`, SIGUSR2), hands the same connection to the
 * next process instead of unmounting.  Bind mounts of the volume (a
 * container's) never see ENOTCONN; requests in flight are resent by the
 * kernel (FUSE_NOTIFY_RESEND, Linux 6.9+) or, before that, fail.
 *
 * Terminology:
 *   connection  the kernel's FUSE connection of one mount; it ends when
 *               the last descriptor of /dev/fuse opened for it closes.
 *   INIT        the connection's first request; the kernel sends it once,
 *               so the next server replays the bytes the first one got.
 *   generation  a number per server process of a volume, in the top bits
 *               of every file handle it gives the kernel: a handle of an
 *               earlier process is then recognised, never dereferenced.
 *
 * Wire: the mount process sends one SOCK_SEQPACKET message on the
 * descriptor TRESOR_KEEPER_FD names: the INIT bytes, with the connection's
 * descriptor as SCM_RIGHTS.  A process started to adopt a connection finds
 * it in TRESOR_FUSE_FD, TRESOR_FUSE_INIT (hex) and TRESOR_FUSE_GEN.
 */
#ifndef TRESOR_KEEPER_H
#define TRESOR_KEEPER_H

#include <stddef.h>

#define KEEPER_INIT_MAX 256

/* A connection as handed on: descriptor, INIT bytes, next generation,
 * and its name in systemd's file-descriptor store ("" not stored there). */
#define KEEPER_NAME_MAX 64
struct keeper_conn {
	int fd;
	unsigned char init[KEEPER_INIT_MAX];
	size_t init_len;
	unsigned gen;
	int crashed;	/* its last process ended without leaving it */
	char name[KEEPER_NAME_MAX];
};

/* Send len bytes (at most KEEPER_INIT_MAX) on sock, with descriptor fd
 * as SCM_RIGHTS (fd < 0: none): a connection's INIT bytes to the daemon,
 * or a notify datagram to systemd.  0 or -errno. */
int keeper_send(int sock, int fd, const void *init, size_t len);
/* Receive them (non-blocking): 1 got one (conn->fd open), 0 none yet,
 * -errno (the sender is gone: -EPIPE). */
int keeper_recv(int sock, struct keeper_conn *conn);

/* The INIT bytes back from hex (hex_encode's, of any length up to
 * size): the length, or -EINVAL. */
int keeper_unhex(const char *hex, unsigned char *out, size_t size);

/* The connection the environment hands this process (TRESOR_FUSE_*),
 * taken out of the environment: 1 found, 0 none, -EINVAL malformed. */
int keeper_adopt_from_env(struct keeper_conn *conn);

/* Detach mountpoint lazily (umount2 MNT_DETACH, fusermount3 -u -z
 * without root): a mount whose connection a process adopted is not
 * libfuse's to unmount. */
int keeper_unmount(const char *mountpoint);

/* Across the daemon's re-exec (`tresor daemon restart`): each kept
 * connection goes into TRESOR_HANDOVER (env, malloc'd; its descriptor
 * made to survive exec, its fd-store name with it), and the new image
 * takes them back out, fn called for each (fn owns c->fd). */
int keeper_handover_add(char **env, const char *volume, const char *mountpoint,
			const struct keeper_conn *c);
void keeper_handover_each(void (*fn)(const char *volume, const char *mountpoint,
				     struct keeper_conn *c, void *arg), void *arg);

#endif
