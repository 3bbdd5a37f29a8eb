/*
 * daemon_keep.c - the daemon's side of keeping mounts alive (keeper.h):
 * the connection each mount child sends, dropped when its volume stops
 * for good, and handed to the daemon's next image by a re-exec
 * (`tresor daemon restart`).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../chunker/util.h"
#include "daemon.h"

/* The connection volume i's child sent, once (lock held). */
void daemon_keep_recv(struct daemon *d, int i)
{
	struct mount_child *m = &d->mc[i];
	if (!m->keeper_open)
		return;
	int r = keeper_recv(m->keeper, &m->conn);
	if (r == 0)
		return;
	if (r > 0) {
		m->held = 1;
		m->conn.gen = 1;
		m->conn.crashed = 0;
	}
	close(m->keeper);
	m->keeper_open = 0;
}

/* Close the kept connection: when the child has ended too, the mount's
 * connection ends (a mount left behind answers ENOTCONN). */
void daemon_keep_drop(struct mount_child *m)
{
	if (m->held)
		close(m->conn.fd);
	m->held = 0;
	if (m->keeper_open)
		close(m->keeper);
	m->keeper_open = 0;
}

/* Adopt a connection the previous image kept (keeper_handover_each). */
void daemon_handover_take(const char *volume, const char *mountpoint,
			  struct keeper_conn *c, void *arg)
{
	struct daemon *d = arg;
	for (int i = 0; i < d->cfg.nvol; i++) {
		struct mount_child *m = &d->mc[i];
		if (strcmp(d->cfg.vol[i].name, volume) ||
		    strcmp(d->cfg.vol[i].mountpoint, mountpoint) || m->held)
			continue;
		m->conn = *c;
		m->held = 1;
		tlog(LOG_INFO, "daemon: volume %s: its mount on %s goes on from the previous daemon",
		     volume, mountpoint);
		return;
	}
	/* not in this config any more (or moved): its mount ends */
	close(c->fd);
	keeper_unmount(mountpoint);
	tlog(LOG_INFO, "daemon: volume %s on %s is not in %s any more: unmounted", volume,
	     mountpoint, d->cfg_path);
}

/*
 * `tresor daemon restart`: the same process runs the binary anew (an
 * upgrade takes effect), the kept connections passed in TRESOR_HANDOVER
 * and the command line read back from /proc.  The mounts' children have
 * left their mounts (SIGUSR2), so requests wait in the kernel meanwhile.
 */
void daemon_reexec(struct daemon *d)
{
	char *env = NULL;
	for (int i = 0; i < d->cfg.nvol; i++)
		if (d->mc[i].held &&
		    keeper_handover_add(&env, d->cfg.vol[i].name, d->cfg.vol[i].mountpoint,
					&d->mc[i].conn))
			break;
	static char cmdline[8192];
	char *argv[64];
	int argc = 0, fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, cmdline, sizeof(cmdline) - 1) : -1;
	if (fd >= 0)
		close(fd);
	for (ssize_t p = 0; n > 0 && p < n && argc < 63; p += (ssize_t)strlen(cmdline + p) + 1)
		argv[argc++] = cmdline + p;
	argv[argc] = NULL;
	if (env)
		setenv("TRESOR_HANDOVER", env, 1);
	free(env);
	tlog(LOG_INFO, "daemon: restarting as %s", d->self);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (argc)
		execv(d->self, argv);
	tlog(LOG_ERR, "daemon: cannot restart %s: %s; stopping, and the volumes end", d->self,
	     strerror(argc ? errno : EINVAL));
	for (int i = 0; i < d->cfg.nvol; i++)
		if (d->mc[i].held) {
			daemon_keep_drop(&d->mc[i]);
			keeper_unmount(d->cfg.vol[i].mountpoint);
		}
}

