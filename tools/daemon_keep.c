/*
 * daemon_keep.c - the daemon's side of keeping mounts alive (keeper.h):
 * the connection each mount child sends, dropped when its volume stops
 * for good, handed to the daemon's next image by a re-exec (`tresor
 * daemon restart`), and kept in systemd's file-descriptor store too, with
 * what the next daemon needs to serve it in STATE-FILE.fds, so that it
 * outlives a crash of the daemon itself.
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

/*
 * systemd's fd store.  A kept connection is stored under a name of its
 * own ("tresor-vol-PID-N": never one an earlier entry, maybe not yet
 * removed, has); STATE-FILE.fds maps the names to what the next daemon
 * needs (docs/DAEMON.md):
 *   # comment
 *   NAME \t GEN \t INIT-HEX \t VOLUME \t MOUNTPOINT
 * written before the descriptor goes to systemd: a name systemd holds
 * that the file lacks is only closed, never guessed.
 */
#define FDSTORE_PREFIX "tresor-vol-"

static void fdstore_path(const struct daemon *d, char *path, size_t size, const char *ext)
{
	snprintf(path, size, "%s.fds%s", d->cfg.state_file, ext);
}

/* Tell systemd to forget name ("": never stored). */
static void fdstore_remove(const char *name)
{
	char msg[32 + KEEPER_NAME_MAX];
	if (!name[0])
		return;
	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	daemon_sd_notify(msg, -1);
}

void daemon_fdstore_save(struct daemon *d)
{
	if (!d->fdstore)
		return;
	char path[CONFIG_PATH + 16], tmp[CONFIG_PATH + 16];
	fdstore_path(d, path, sizeof(path), "");
	fdstore_path(d, tmp, sizeof(tmp), ".tmp");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		tlog(LOG_ERR, "daemon: cannot write %s: %s; after a crash of the daemon its mounts end",
		     tmp, strerror(errno));
		return;
	}
	fprintf(f, "# tresor daemon: the FUSE connections in systemd's fd store\n");
	for (int i = 0; i < d->cfg.nvol; i++) {
		const struct mount_child *m = &d->mc[i];
		char hex[2 * KEEPER_INIT_MAX + 1];
		if (!m->held || !m->conn.name[0])
			continue;
		hex_encode(m->conn.init, m->conn.init_len, hex);
		fprintf(f, "%s\t%u\t%s\t%s\t%s\n", m->conn.name, m->conn.gen, hex,
			d->cfg.vol[i].name, d->cfg.vol[i].mountpoint);
	}
	int err = fflush(f) || fsync(fileno(f));
	err |= fclose(f);
	if (err || rename(tmp, path))
		tlog(LOG_ERR, "daemon: cannot write %s: %s; after a crash of the daemon its mounts end",
		     path, strerror(errno));
}

/* Volume i's connection, just kept, into the store (job thread). */
static void fdstore_add(struct daemon *d, int i)
{
	struct keeper_conn *c = &d->mc[i].conn;
	for (int taken = 1; taken;) {
		snprintf(c->name, sizeof(c->name), FDSTORE_PREFIX "%d-%u", (int)getpid(),
			 ++d->fd_seq);
		taken = 0;
		for (int j = 0; j < d->cfg.nvol; j++)
			taken |= j != i && d->mc[j].held && !strcmp(d->mc[j].conn.name, c->name);
	}
	daemon_fdstore_save(d);
	char msg[32 + KEEPER_NAME_MAX];
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", c->name);
	if (daemon_sd_notify(msg, c->fd)) {
		c->name[0] = 0;
		daemon_fdstore_save(d);
	}
}

/* One line of STATE-FILE.fds: 1 parsed into c (c->fd -1), vol and mp
 * pointing into line. */
static int fdstore_parse(char *line, struct keeper_conn *c, char **vol, char **mp)
{
	char *f[5], *s = line;
	int n = 0;
	line[strcspn(line, "\n")] = 0;
	if (line[0] == '#')
		return 0;
	for (char *t; n < 5 && (t = strsep(&s, n < 4 ? "\t" : "")); )
		f[n++] = t;
	if (n < 5 || strlen(f[0]) >= sizeof(c->name))
		return 0;
	int len = keeper_unhex(f[2], c->init, sizeof(c->init));
	if (len <= 0)
		return 0;
	memset(c->name, 0, sizeof(c->name));
	snprintf(c->name, sizeof(c->name), "%s", f[0]);
	c->fd = -1;
	c->init_len = (size_t)len;
	c->gen = (unsigned)strtoul(f[1], NULL, 10);
	*vol = f[3];
	*mp = f[4];
	return 1;
}

/* The descriptor named name, handed back by systemd: adopted if
 * STATE-FILE.fds describes it, else closed and forgotten. */
static void fdstore_take_one(struct daemon *d, FILE *meta, int fd, const char *name)
{
	char line[3 * CONFIG_PATH];
	rewind(meta);
	while (fgets(line, sizeof(line), meta)) {
		struct keeper_conn c;
		char *vol, *mp;
		if (fdstore_parse(line, &c, &vol, &mp) && !strcmp(c.name, name)) {
			c.fd = fd;
			/* The daemon crashed; its children were told to leave
			 * their mounts, but systemd may have killed one first:
			 * writes may be lost (keeper.h, crashed). */
			c.crashed = 1;
			daemon_handover_take(vol, mp, &c, d);
			return;
		}
	}
	close(fd);
	if (!strncmp(name, FDSTORE_PREFIX, strlen(FDSTORE_PREFIX))) {
		fdstore_remove(name);
		tlog(LOG_WARN, "daemon: systemd handed back FUSE connection %s, which %s.fds does not describe: closed (its mount, if any, is mounted anew)",
		     name, d->cfg.state_file);
	}
}

void daemon_fdstore_take(struct daemon *d)
{
	const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	char *copy = pid && nfds && names && strtol(pid, NULL, 10) == (long)getpid()
			     ? strdup(names) : NULL;
	int n = copy ? atoi(nfds) : 0;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	char path[CONFIG_PATH + 16];
	fdstore_path(d, path, sizeof(path), "");
	FILE *meta = n > 0 ? fopen(path, "re") : NULL;
	if (n > 0 && !meta)
		tlog(LOG_ERR, "daemon: systemd handed back %d FUSE connection(s) but %s cannot be read (%s): they are closed and the volumes mounted anew",
		     n, path, strerror(errno));
	char *save = copy, *name;
	for (int k = 0; k < n; k++) {
		int fd = 3 + k;	/* SD_LISTEN_FDS_START */
		name = strsep(&save, ":");
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (meta)
			fdstore_take_one(d, meta, fd, name ? name : "");
		else
			close(fd);
	}
	if (meta)
		fclose(meta);
	free(copy);
}

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
		m->conn.name[0] = 0;
		if (d->fdstore)
			fdstore_add(d, i);
	}
	close(m->keeper);
	m->keeper_open = 0;
}

/* Close the kept connection: when the child has ended too, the mount's
 * connection ends (a mount left behind answers ENOTCONN). */
void daemon_keep_drop(struct daemon *d, int i)
{
	struct mount_child *m = &d->mc[i];
	if (m->held) {
		close(m->conn.fd);
		fdstore_remove(m->conn.name);
		m->conn.name[0] = 0;
		m->held = 0;
		daemon_fdstore_save(d);
	}
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
	fdstore_remove(c->name);
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
			daemon_keep_drop(d, i);
			keeper_unmount(d->cfg.vol[i].mountpoint);
		}
}

